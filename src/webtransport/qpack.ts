/**
 * The QPACK subset a WebTransport endpoint needs (RFC 9204): our decoder advertises a dynamic
 * table capacity of 0, so any dynamic-table reference is QPACK_DECOMPRESSION_FAILED. Decoding
 * supports the static table, literals and Huffman strings; the encoder emits static references and
 * plain literals only, so a peer never needs to consult its own state to read us.
 */

import { DecodeError } from "../coding/errors.ts";
import type { Writer } from "../coding/writer.ts";
import { H3 } from "../errors/codes.ts";
import { huffmanDecode } from "./huffman.ts";

export type Field = [name: string, value: string];

/** RFC 9204 Appendix A. */
export const STATIC_TABLE: readonly Field[] = [
	[":authority", ""],
	[":path", "/"],
	["age", "0"],
	["content-disposition", ""],
	["content-length", "0"],
	["cookie", ""],
	["date", ""],
	["etag", ""],
	["if-modified-since", ""],
	["if-none-match", ""],
	["last-modified", ""],
	["link", ""],
	["location", ""],
	["referer", ""],
	["set-cookie", ""],
	[":method", "CONNECT"],
	[":method", "DELETE"],
	[":method", "GET"],
	[":method", "HEAD"],
	[":method", "OPTIONS"],
	[":method", "POST"],
	[":method", "PUT"],
	[":scheme", "http"],
	[":scheme", "https"],
	[":status", "103"],
	[":status", "200"],
	[":status", "304"],
	[":status", "404"],
	[":status", "503"],
	["accept", "*/*"],
	["accept", "application/dns-message"],
	["accept-encoding", "gzip, deflate, br"],
	["accept-ranges", "bytes"],
	["access-control-allow-headers", "cache-control"],
	["access-control-allow-headers", "content-type"],
	["access-control-allow-origin", "*"],
	["cache-control", "max-age=0"],
	["cache-control", "max-age=2592000"],
	["cache-control", "max-age=604800"],
	["cache-control", "no-cache"],
	["cache-control", "no-store"],
	["cache-control", "public, max-age=31536000"],
	["content-encoding", "br"],
	["content-encoding", "gzip"],
	["content-type", "application/dns-message"],
	["content-type", "application/javascript"],
	["content-type", "application/json"],
	["content-type", "application/x-www-form-urlencoded"],
	["content-type", "image/gif"],
	["content-type", "image/jpeg"],
	["content-type", "image/png"],
	["content-type", "text/css"],
	["content-type", "text/html; charset=utf-8"],
	["content-type", "text/plain"],
	["content-type", "text/plain;charset=utf-8"],
	["range", "bytes=0-"],
	["strict-transport-security", "max-age=31536000"],
	["strict-transport-security", "max-age=31536000; includesubdomains"],
	["strict-transport-security", "max-age=31536000; includesubdomains; preload"],
	["vary", "accept-encoding"],
	["vary", "origin"],
	["x-content-type-options", "nosniff"],
	["x-xss-protection", "1; mode=block"],
	[":status", "100"],
	[":status", "204"],
	[":status", "206"],
	[":status", "302"],
	[":status", "400"],
	[":status", "403"],
	[":status", "421"],
	[":status", "425"],
	[":status", "500"],
	["accept-language", ""],
	["access-control-allow-credentials", "FALSE"],
	["access-control-allow-credentials", "TRUE"],
	["access-control-allow-headers", "*"],
	["access-control-allow-methods", "get"],
	["access-control-allow-methods", "get, post, options"],
	["access-control-allow-methods", "options"],
	["access-control-expose-headers", "content-length"],
	["access-control-request-headers", "content-type"],
	["access-control-request-method", "get"],
	["access-control-request-method", "post"],
	["alt-svc", "clear"],
	["authorization", ""],
	["content-security-policy", "script-src 'none'; object-src 'none'; base-uri 'none'"],
	["early-data", "1"],
	["expect-ct", ""],
	["forwarded", ""],
	["if-range", ""],
	["origin", ""],
	["purpose", "prefetch"],
	["server", ""],
	["timing-allow-origin", "*"],
	["upgrade-insecure-requests", "1"],
	["user-agent", ""],
	["x-forwarded-for", ""],
	["x-frame-options", "deny"],
	["x-frame-options", "sameorigin"],
];

const EXACT_INDEX = new Map<string, number>();
const NAME_INDEX = new Map<string, number>();
for (let i = STATIC_TABLE.length - 1; i >= 0; i--) {
	const [name, value] = STATIC_TABLE[i];
	EXACT_INDEX.set(`${name}\n${value}`, i);
	NAME_INDEX.set(name, i);
}

/** RFC 9204 §4.5: each field counts its name and value bytes plus 32 towards the section size. */
const FIELD_OVERHEAD = 32;
/** Prefix integers above this are garbage for anything a field section can hold. */
const MAX_PREFIX_INT = 0xffffffff;

const text = new TextDecoder("utf-8");

function fail(message: string): DecodeError {
	return new DecodeError(`qpack: ${message}`, H3.QPACK_DECOMPRESSION_FAILED);
}

/** A cursor over one complete field section; running out of bytes is garbage, not "need more". */
class SectionCursor {
	buf: Uint8Array;
	pos = 0;
	constructor(buf: Uint8Array) {
		this.buf = buf;
	}

	/** RFC 7541 §5.1 prefix integer whose first byte is at `pos`, keeping its low `bits` bits. */
	prefixInt(bits: number): number {
		if (this.pos >= this.buf.length) throw fail("truncated integer");
		const mask = (1 << bits) - 1;
		let value = this.buf[this.pos++] & mask;
		if (value < mask) return value;
		let scale = 1;
		for (;;) {
			if (this.pos >= this.buf.length) throw fail("truncated integer");
			const b = this.buf[this.pos++];
			value += (b & 0x7f) * scale;
			if (value > MAX_PREFIX_INT) throw fail("integer overflow");
			if ((b & 0x80) === 0) return value;
			scale *= 128;
		}
	}

	/** A string literal whose H bit is `hBit` in the current byte and whose length has a `bits`-bit prefix. */
	string(hBit: number, bits: number): string {
		const huffman = (this.buf[this.pos] & hBit) !== 0;
		const len = this.prefixInt(bits);
		if (this.pos + len > this.buf.length) throw fail("truncated string");
		const raw = this.buf.subarray(this.pos, this.pos + len);
		this.pos += len;
		return text.decode(huffman ? huffmanDecode(raw) : raw);
	}
}

function staticEntry(index: number): Field {
	if (index >= STATIC_TABLE.length) throw fail(`static index ${index} out of range`);
	return STATIC_TABLE[index];
}

/**
 * Decodes one complete field section (a HEADERS frame payload). Throws DecodeError with
 * QPACK_DECOMPRESSION_FAILED for garbage or dynamic references, H3_EXCESSIVE_LOAD past `maxBytes`
 * (counted as RFC 9204 §4.5 does).
 */
export function decodeFieldSection(block: Uint8Array, maxBytes: number): Field[] {
	const c = new SectionCursor(block);
	// Required Insert Count and Delta Base: with no dynamic table both must be zero (sign bit too).
	if (c.prefixInt(8) !== 0) throw fail("dynamic table reference (required insert count)");
	if (c.pos >= block.length) throw fail("truncated prefix");
	if (block[c.pos] & 0x80 || c.prefixInt(7) !== 0) throw fail("non-zero delta base");

	const fields: Field[] = [];
	let size = 0;
	while (c.pos < block.length) {
		const b = block[c.pos];
		let field: Field;
		if (b & 0x80) {
			// 1Txxxxxx: indexed field line.
			if ((b & 0x40) === 0) throw fail("dynamic table reference");
			field = staticEntry(c.prefixInt(6));
		} else if (b & 0x40) {
			// 01NTxxxx: literal value with a name reference.
			if ((b & 0x10) === 0) throw fail("dynamic table name reference");
			const name = staticEntry(c.prefixInt(4))[0];
			field = [name, c.string(0x80, 7)];
		} else if (b & 0x20) {
			// 001NHxxx: literal name and value.
			const name = c.string(0x08, 3);
			field = [name, c.string(0x80, 7)];
		} else {
			throw fail("post-base reference");
		}
		size += field[0].length + field[1].length + FIELD_OVERHEAD;
		if (size > maxBytes) throw new DecodeError(`field section exceeds ${maxBytes} bytes`, H3.EXCESSIVE_LOAD);
		fields.push(field);
	}
	return fields;
}

/** Writes an RFC 7541 prefix integer: `flags` fills the bits above the `bits`-bit prefix. */
export function writePrefixInt(w: Writer, flags: number, bits: number, value: number): void {
	const max = (1 << bits) - 1;
	if (value < max) {
		w.u8(flags | value);
		return;
	}
	w.u8(flags | max);
	let rest = value - max;
	while (rest >= 128) {
		w.u8((rest % 128) | 0x80);
		rest = Math.floor(rest / 128);
	}
	w.u8(rest);
}

const utf8 = new TextEncoder();

function writeLiteral(w: Writer, flags: number, bits: number, s: string): void {
	const bytes = utf8.encode(s);
	writePrefixInt(w, flags, bits, bytes.length);
	w.bytes(bytes);
}

/** Encodes a field section: static index on an exact match, else a literal (H=0). */
export function encodeFieldSection(w: Writer, fields: readonly Field[]): void {
	w.u8(0).u8(0); // Required Insert Count 0, Delta Base 0
	for (const [name, value] of fields) {
		const exact = EXACT_INDEX.get(`${name}\n${value}`);
		if (exact !== undefined) {
			writePrefixInt(w, 0xc0, 6, exact);
			continue;
		}
		const nameIndex = NAME_INDEX.get(name);
		if (nameIndex !== undefined) {
			writePrefixInt(w, 0x50, 4, nameIndex);
		} else {
			writeLiteral(w, 0x20, 3, name);
		}
		writeLiteral(w, 0x00, 7, value);
	}
}
