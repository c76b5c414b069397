/**
 * The leading-ones variable-length integer of moq-transport drafts 17+ (`hasLeadingOnesVarints`):
 * the count of leading 1 bits in the first byte gives the length.
 *
 *   0xxxxxxx            1 byte,  7 bits      11110xxx + 4 bytes   5 bytes, 35 bits
 *   10xxxxxx + 1 byte   2 bytes, 14 bits     111110xx + 5 bytes   6 bytes, 42 bits
 *   110xxxxx + 2 bytes  3 bytes, 21 bits     1111110x + 6 bytes   7 bytes, 49 bits (18+; 17 reserves it)
 *   1110xxxx + 3 bytes  4 bytes, 28 bits     11111110 + 7 bytes   8 bytes, 56 bits
 *                                            11111111 + 8 bytes   9 bytes, 64 bits
 *
 * Values stay `number`s: anything above 2^53-1 is refused (JS peers cannot represent it). The encoder
 * writes the shortest form and never the 7-byte one (as @moq/net 0.3.4's `encodeLeadingOnes`), so
 * its bytes are valid on every draft. `LoReader` / `LoWriter` are the coding Reader / Writer with
 * this varint in place of QUIC's, so one decoder body serves both families.
 * @module
 */

import { DecodeError, NEED_MORE } from "../../../coding/errors.ts";
import { Reader } from "../../../coding/reader.ts";
import { Writer } from "../../../coding/writer.ts";

/** Bytes the leading-ones form of `v` takes (1–9; never 7). */
export function loSize(v: number): number {
	if (v < 0x80) return 1;
	if (v < 0x4000) return 2;
	if (v < 0x200000) return 3;
	if (v < 0x10000000) return 4;
	if (v < 0x800000000) return 5;
	if (v < 0x40000000000) return 6;
	if (v < 0x100000000000000) return 8;
	return 9;
}

/** Writes `v` at `buf[pos]` (room: `loSize(v)`) and returns the end. RangeError for a negative, fractional or > 2^53-1 value. */
export function writeLo(buf: Uint8Array, pos: number, v: number): number {
	if (v < 0x80 && v >= 0) {
		buf[pos] = v;
		return pos + 1;
	}
	if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`varint out of range: ${v}`);
	const n = loSize(v);
	if (n === 2) {
		buf[pos] = 0x80 | (v >>> 8);
		buf[pos + 1] = v & 0xff;
		return pos + 2;
	}
	// Big-endian value bytes after the prefix byte; the prefix's free bits hold the top bits.
	const hi = Math.floor(v / 0x100000000);
	const lo = v >>> 0;
	const bytes = n - 1; // value bytes after the first
	// Fill from the end.
	let p = pos + n - 1;
	let l = lo;
	let h = hi;
	for (let i = 0; i < bytes; i++) {
		buf[p--] = l & 0xff;
		l = (l >>> 8) | ((h & 0xff) << 24);
		l >>>= 0;
		h >>>= 8;
	}
	// What is left of the value goes in the prefix byte's free bits.
	const prefix = n === 8 ? 0xfe : n === 9 ? 0xff : (0xff << (8 - (n - 1))) & 0xff;
	buf[pos] = prefix | (n >= 8 ? 0 : l & (0xff >> n));
	return pos + n;
}

/**
 * Reads one leading-ones varint at `buf[pos]` (not past `end`): the value, with `lastLoEnd` set to the
 * position after it. NEED_MORE when it is cut short; DecodeError for the 7-byte form when `seven`
 * is false (draft 17), or a value above 2^53-1.
 */
export function readLo(buf: Uint8Array, pos: number, end: number, seven: boolean): number {
	if (pos >= end) throw NEED_MORE;
	const first = buf[pos];
	if (first < 0x80) {
		lastLoEnd = pos + 1;
		return first;
	}
	let n: number;
	if (first < 0xc0) n = 2;
	else if (first < 0xe0) n = 3;
	else if (first < 0xf0) n = 4;
	else if (first < 0xf8) n = 5;
	else if (first < 0xfc) n = 6;
	else if (first < 0xfe) {
		if (!seven) throw new DecodeError("the 7-byte varint form (1111110x) is reserved on draft-17");
		n = 7;
	} else if (first === 0xfe) n = 8;
	else n = 9;
	if (pos + n > end) throw NEED_MORE;
	// Top bits: what the prefix byte leaves (none for the 8- and 9-byte forms).
	let v = n >= 8 ? 0 : first & (0xff >> n);
	for (let i = 1; i < n; i++) {
		v = v * 256 + buf[pos + i];
		if (v > Number.MAX_SAFE_INTEGER) throw new DecodeError("varint above 2^53-1");
	}
	lastLoEnd = pos + n;
	return v;
}

/** The position after the varint `readLo` last returned. */
export let lastLoEnd = 0;

/** A Reader whose varints are leading-ones (drafts 17+). */
export class LoReader extends Reader {
	seven: boolean;

	constructor(buf: Uint8Array, pos = 0, end = buf.length, seven = true) {
		super(buf, pos, end);
		this.seven = seven;
	}

	override varint(): number {
		const v = readLo(this.buf, this.pos, this.end, this.seven);
		this.pos = lastLoEnd;
		return v;
	}
}

/** A Writer whose varints are leading-ones (drafts 17+). */
export class LoWriter extends Writer {
	override varint(v: number): this {
		this.ensure(9);
		this.pos = writeLo(this.buf, this.pos, v);
		return this;
	}
}
