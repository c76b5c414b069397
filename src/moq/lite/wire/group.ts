/**
 * Group streams (uni type 0; one stream per group per subscription, opened by the publisher): `00`,
 * GROUP `len, subscribeId, sequence`, then FRAMEs, FIN.
 * FRAME is `size, payload` on 02–04 and `zigzag(tsDelta), size, payload` on 05, with no length prefix
 * of its own. A FETCH reply (05) is the same frames with no stream type or GROUP header.
 *
 * Who writes the stream type: `encodeGroupHeader`/`decodeGroupHeader` handle the GROUP message only,
 * like every other codec (the session's uni-stream dispatcher reads the type). The fan-out path uses
 * `writeGroupStreamHeader`, which writes type + GROUP into a scratch buffer in one go.
 *
 * Reading a publisher's group stream (recipe): the dispatcher reads the uni type varint; if it is
 * `UNI.GROUP` it hands the rest of that chunk to a `GroupStreamDecoder` (`push(chunk, afterType)`)
 * and every later chunk with `push(chunk)`; on FIN it calls `finish()`; on reset it drops the group.
 * @module
 */

import { DecodeError } from "../../../coding/errors.ts";
import type { Reader } from "../../../coding/reader.ts";
import { writeVarint } from "../../../coding/varint.ts";
import type { Writer } from "../../../coding/writer.ts";
import { FRAME_TOO_LARGE, PROTOCOL_VIOLATION } from "../../../errors/codes.ts";
import { beginMessage, type DecodeLimits, decodeMessage, endMessage } from "./message.ts";
import { UNI } from "./stream-type.ts";
import { hasFrameTimestamps, type LiteVersion } from "./version.ts";

export interface GroupHeader {
	/** The subscription id chosen by the receiving side: rewritten for every fan-out copy. */
	subscribeId: number;
	sequence: number;
}

/** Room `writeGroupStreamHeader` may need: type byte, length byte, two 8-byte varints. */
export const GROUP_STREAM_HEADER_MAX = 18;
/** Room `writeFrameHeader` may need: two 8-byte varints. */
export const FRAME_HEADER_MAX = 16;

/** Writes the GROUP message (length + body), without the stream type. */
export function encodeGroupHeader(w: Writer, m: GroupHeader, _v: LiteVersion): void {
	const start = beginMessage(w);
	w.varint(m.subscribeId);
	w.varint(m.sequence);
	endMessage(w, start);
}

/** Reads the GROUP message (after the stream type). */
export function decodeGroupHeader(r: Reader, v: LiteVersion, limits?: DecodeLimits): GroupHeader {
	return decodeMessage(r, v, limits, groupHeaderBody);
}

function groupHeaderBody(r: Reader): GroupHeader {
	const subscribeId = r.varint();
	return { subscribeId, sequence: r.varint() };
}

/**
 * Writes `00`, GROUP length, subscribeId, sequence at `buf[pos]` and returns the end position.
 * No allocation: meant for a per-worker scratch buffer of at least GROUP_STREAM_HEADER_MAX bytes
 * (transports copy on write, so the scratch can be reused right away).
 */
export function writeGroupStreamHeader(buf: Uint8Array, pos: number, subscribeId: number, sequence: number): number {
	buf[pos] = UNI.GROUP;
	// The body is at most 16 bytes, so its length is always a 1-byte varint.
	let p = writeVarint(buf, pos + 2, subscribeId);
	p = writeVarint(buf, p, sequence);
	buf[pos + 1] = p - pos - 2;
	return p;
}

/**
 * Writes one FRAME header at `buf[pos]` (05: zigzag(tsDelta) then size; 02–04: size) and returns the
 * end position. `buf` needs FRAME_HEADER_MAX bytes of room. The payload follows, written separately.
 */
export function writeFrameHeader(buf: Uint8Array, pos: number, size: number, tsDelta: number, v: LiteVersion): number {
	let p = pos;
	if (hasFrameTimestamps(v)) p = writeVarint(buf, p, zigzag(tsDelta));
	return writeVarint(buf, p, size);
}

/** Signed → unsigned: n ≥ 0 → 2n, n < 0 → −2n−1 (moq-net `from_zigzag`). Arithmetic, not bitwise: values exceed 32 bits. */
export function zigzag(n: number): number {
	return n >= 0 ? n * 2 : -n * 2 - 1;
}

/** Inverse of `zigzag`. */
export function unzigzag(u: number): number {
	return u % 2 === 0 ? u / 2 : -(u + 1) / 2;
}

// Varint parsing over a raw byte range for the incremental parsers below: returns the end position,
// NEED_BYTES when the range ends first, or TOO_BIG above 2^53-1; the value is left in `parsedValue`
// (no result object, no exception on the hot path).
let parsedValue = 0;
const NEED_BYTES = -1;
const TOO_BIG = -2;

function parseVarint(buf: Uint8Array, p: number, end: number): number {
	if (p >= end) return NEED_BYTES;
	const first = buf[p];
	const tag = first >> 6;
	if (tag === 0) {
		parsedValue = first;
		return p + 1;
	}
	if (tag === 1) {
		if (p + 2 > end) return NEED_BYTES;
		parsedValue = ((first & 0x3f) << 8) | buf[p + 1];
		return p + 2;
	}
	if (tag === 2) {
		if (p + 4 > end) return NEED_BYTES;
		parsedValue = (((first & 0x3f) << 24) >>> 0) + (buf[p + 1] << 16) + (buf[p + 2] << 8) + buf[p + 3];
		return p + 4;
	}
	if (p + 8 > end) return NEED_BYTES;
	const hi = (((first & 0x3f) << 24) >>> 0) + (buf[p + 1] << 16) + (buf[p + 2] << 8) + buf[p + 3];
	if (hi > 0x1fffff) return TOO_BIG;
	const lo = ((buf[p + 4] << 24) >>> 0) + (buf[p + 5] << 16) + (buf[p + 6] << 8) + buf[p + 7];
	parsedValue = hi * 0x100000000 + lo;
	return p + 8;
}

/**
 * Incremental, non-allocating parser of a run of FRAMEs (a group stream after its header, or a FETCH
 * reply). Feed it chunks as they arrive; it calls back, in order:
 * `onFrameBegin(size, tsDelta)` (tsDelta is 0 before lite-05), `onFrameData(view)` zero or more times
 * (views into the pushed chunk, valid only during the call: copy to keep), `onFrameEnd()`.
 * A header split across chunks is kept in a 16-byte stash. A frame above `maxFrameBytes` throws
 * DecodeError code 27 as soon as its header is read; after any DecodeError the parser stays failed.
 * Callbacks are set once (fields), not per call.
 */
export class FrameParser {
	onFrameBegin: ((size: number, tsDelta: number) => void) | null = null;
	onFrameData: ((view: Uint8Array) => void) | null = null;
	onFrameEnd: (() => void) | null = null;

	readonly version: LiteVersion;
	readonly maxFrameBytes: number;

	#timestamps: boolean;
	/** Payload bytes still expected for the current frame; 0 = at a frame header. */
	#remaining = 0;
	#stash = new Uint8Array(FRAME_HEADER_MAX);
	#stashLen = 0;
	#size = 0;
	#tsDelta = 0;
	/** Set by the first DecodeError; every later call rethrows it. */
	protected failed: DecodeError | null = null;

	constructor(v: LiteVersion, maxFrameBytes: number) {
		this.version = v;
		this.maxFrameBytes = maxFrameBytes;
		this.#timestamps = hasFrameTimestamps(v);
	}

	/** True between frames: a FIN here ends the stream cleanly. */
	get atBoundary(): boolean {
		return this.#remaining === 0 && this.#stashLen === 0;
	}

	/** Parses `chunk[start..]`. Throws DecodeError (15 garbage, 27 frame too large). */
	push(chunk: Uint8Array, start = 0): void {
		if (this.failed !== null) throw this.failed;
		const end = chunk.length;
		let p = start;
		while (p < end) {
			if (this.#remaining > 0) {
				const n = Math.min(this.#remaining, end - p);
				this.onFrameData?.(chunk.subarray(p, p + n));
				p += n;
				this.#remaining -= n;
				if (this.#remaining === 0) this.onFrameEnd?.();
				continue;
			}
			if (this.#stashLen === 0) {
				const q = this.#parseHeader(chunk, p, end);
				if (q >= 0) {
					p = q;
					this.#beginFrame();
					continue;
				}
				// A complete header is at most 16 bytes, so what is left here fits the stash.
				for (let i = p; i < end; i++) this.#stash[this.#stashLen++] = chunk[i];
				return;
			}
			// Continue a header split across chunks: top up the stash and retry.
			const before = this.#stashLen;
			const take = Math.min(FRAME_HEADER_MAX - before, end - p);
			for (let i = 0; i < take; i++) this.#stash[before + i] = chunk[p + i];
			const q = this.#parseHeader(this.#stash, 0, before + take);
			if (q < 0) {
				this.#stashLen = before + take;
				return;
			}
			p += q - before;
			this.#stashLen = 0;
			this.#beginFrame();
		}
	}

	/** Call at FIN: throws DecodeError (15) when the stream ended inside a frame. */
	finish(): void {
		if (this.failed !== null) throw this.failed;
		if (!this.atBoundary) this.fail(new DecodeError("stream ended inside a frame", PROTOCOL_VIOLATION));
	}

	/** Makes the parser reusable for another stream (same version and limit). */
	reset(): void {
		this.#remaining = 0;
		this.#stashLen = 0;
		this.failed = null;
	}

	/** Returns the end of a complete header at `buf[p]`, or -1 when more bytes are needed. */
	#parseHeader(buf: Uint8Array, p: number, end: number): number {
		let q = p;
		let tsDelta = 0;
		if (this.#timestamps) {
			q = parseVarint(buf, q, end);
			if (q < 0) return this.checkShort(q);
			tsDelta = unzigzag(parsedValue);
		}
		q = parseVarint(buf, q, end);
		if (q < 0) return this.checkShort(q);
		this.#size = parsedValue;
		this.#tsDelta = tsDelta;
		return q;
	}

	#beginFrame(): void {
		const size = this.#size;
		if (size > this.maxFrameBytes) {
			this.fail(new DecodeError(`frame of ${size} bytes exceeds ${this.maxFrameBytes}`, FRAME_TOO_LARGE));
		}
		this.onFrameBegin?.(size, this.#tsDelta);
		if (size === 0) this.onFrameEnd?.();
		else this.#remaining = size;
	}

	/** Records the failure (later calls rethrow it) and throws. */
	protected fail(e: DecodeError): never {
		this.failed = e;
		throw e;
	}

	/** Maps a short parseVarint result: TOO_BIG fails the stream, NEED_BYTES passes through as -1. */
	protected checkShort(q: number): -1 {
		if (q === TOO_BIG) this.fail(new DecodeError("varint above 2^53-1", PROTOCOL_VIOLATION));
		return -1;
	}
}

/** Bytes the GROUP message can take at most: an 8-byte length (non-minimal forms are legal) + 16-byte body. */
const GROUP_HEADER_STASH = 24;
const GROUP_BODY_MAX = 16;

/**
 * A group stream from the byte after its `00` type: the GROUP header (reported once through
 * `onHeader(subscribeId, sequence)`), then frames exactly as `FrameParser`. No allocation per frame.
 */
export class GroupStreamDecoder extends FrameParser {
	onHeader: ((subscribeId: number, sequence: number) => void) | null = null;

	#headerDone = false;
	#stash = new Uint8Array(GROUP_HEADER_STASH);
	#stashLen = 0;

	/** True once the GROUP header has been read. */
	get hasHeader(): boolean {
		return this.#headerDone;
	}

	override push(chunk: Uint8Array, start = 0): void {
		if (this.failed !== null) throw this.failed;
		if (this.#headerDone) {
			super.push(chunk, start);
			return;
		}
		const end = chunk.length;
		let p = start;
		if (this.#stashLen === 0) {
			const q = this.#parseGroupHeader(chunk, p, end);
			if (q < 0) {
				for (let i = p; i < end; i++) this.#stash[this.#stashLen++] = chunk[i];
				return;
			}
			p = q;
		} else {
			const before = this.#stashLen;
			const take = Math.min(GROUP_HEADER_STASH - before, end - p);
			for (let i = 0; i < take; i++) this.#stash[before + i] = chunk[p + i];
			const q = this.#parseGroupHeader(this.#stash, 0, before + take);
			if (q < 0) {
				this.#stashLen = before + take;
				return;
			}
			p += q - before;
			this.#stashLen = 0;
		}
		if (p < end) super.push(chunk, p);
	}

	override finish(): void {
		if (this.failed !== null) throw this.failed;
		if (!this.#headerDone) this.fail(new DecodeError("group stream ended before its header", PROTOCOL_VIOLATION));
		super.finish();
	}

	override reset(): void {
		super.reset();
		this.#headerDone = false;
		this.#stashLen = 0;
	}

	/** Returns the end of the header, or -1 when more bytes are needed; reports it via onHeader. */
	#parseGroupHeader(buf: Uint8Array, p: number, end: number): number {
		let q = parseVarint(buf, p, end);
		if (q < 0) return this.checkShort(q);
		const len = parsedValue;
		if (len > GROUP_BODY_MAX) this.fail(new DecodeError(`GROUP header of ${len} bytes`, PROTOCOL_VIOLATION));
		if (end - q < len) return -1;
		const bodyEnd = q + len;
		q = parseVarint(buf, q, bodyEnd);
		if (q === TOO_BIG) this.checkShort(q);
		if (q < 0) this.fail(new DecodeError("GROUP header shorter than its fields", PROTOCOL_VIOLATION));
		const subscribeId = parsedValue;
		q = parseVarint(buf, q, bodyEnd);
		if (q === TOO_BIG) this.checkShort(q);
		if (q < 0) this.fail(new DecodeError("GROUP header shorter than its fields", PROTOCOL_VIOLATION));
		if (q !== bodyEnd) this.fail(new DecodeError("trailing bytes in GROUP header", PROTOCOL_VIOLATION));
		this.#headerDone = true;
		this.onHeader?.(subscribeId, parsedValue);
		return q;
	}
}
