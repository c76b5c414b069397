/**
 * moq-lite message framing shared by every codec: a varint body length then the body, which must be
 * consumed exactly (in @moq/net and moq-net alike, so never add trailing fields). Decoders are
 * synchronous over a `Reader`:
 * - `NEED_MORE` when the message is not fully buffered yet (caller rewinds `r.pos`, retries later);
 *   a decoder never starts on a body that is not entirely present, so a truncated message can only
 *   ever produce NEED_MORE;
 * - `DecodeError(msg, code)` on garbage, including a body shorter or longer than its length
 *   (code 15), and a declared length above the limit, which is refused before the body arrives.
 * @module
 */

import { DecodeError, NEED_MORE } from "../../../coding/errors.ts";
import type { Reader } from "../../../coding/reader.ts";
import { varintSize, writeVarint } from "../../../coding/varint.ts";
import type { Writer } from "../../../coding/writer.ts";
import { PROTOCOL_VIOLATION } from "../../../errors/codes.ts";
import { MAX_PATH_SEGMENTS, normalizePath, type Path } from "../../../path/index.ts";
import type { LiteVersion } from "./version.ts";

/** Bounds applied while decoding; every field is optional (defaults below). */
export interface DecodeLimits {
	/** Largest message body accepted (default 65536). */
	maxMessageBytes?: number;
	/** Broadcast paths, prefixes and suffixes may have at most this many segments (default 32). */
	maxPathSegments?: number;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 65536;
/** Byte bounds on strings, so that what a hostile peer can make us hold stays small. */
export const MAX_PATH_BYTES = 1024;
export const MAX_TRACK_BYTES = 1024;
export const MAX_URI_BYTES = 8192;
/** Hop chains longer than this are rejected (matches @moq/net and moq-net `MAX_HOPS`). */
export const MAX_HOPS = 32;

/** Decodes one message body; always a module-level function so decoding allocates no closure. */
export type BodyDecoder<T> = (r: Reader, v: LiteVersion, limits: DecodeLimits | undefined) => T;

/** Reads a varint-length-prefixed message and decodes its body with `body`. See the module doc. */
export function decodeMessage<T>(r: Reader, v: LiteVersion, limits: DecodeLimits | undefined, body: BodyDecoder<T>): T {
	const len = r.varint();
	return decodeBody(r, len, v, limits, body);
}

/**
 * Decodes a body of `len` bytes (the length was already read, e.g. the 0x20 SETUP's u16): checks the
 * limit, waits for the whole body, runs `body` inside it and requires exact consumption.
 */
export function decodeBody<T>(
	r: Reader,
	len: number,
	v: LiteVersion,
	limits: DecodeLimits | undefined,
	body: BodyDecoder<T>,
): T {
	const max = limits?.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
	if (len > max) throw new DecodeError(`message of ${len} bytes exceeds ${max}`, PROTOCOL_VIOLATION);
	if (r.end - r.pos < len) throw NEED_MORE;
	const outerEnd = r.end;
	const bodyEnd = r.pos + len;
	r.end = bodyEnd;
	let m: T;
	try {
		m = body(r, v, limits);
	} catch (e) {
		// The whole body is buffered, so running out inside it means the length lied.
		if (e === NEED_MORE) throw new DecodeError("message shorter than its fields", PROTOCOL_VIOLATION);
		throw e;
	} finally {
		r.end = outerEnd;
	}
	if (r.pos !== bodyEnd) throw new DecodeError(`${bodyEnd - r.pos} trailing bytes in message`, PROTOCOL_VIOLATION);
	return m;
}

/**
 * Starts a length-prefixed message: reserves room for the largest varint length and returns the
 * start for `endMessage`. Same layout trick as `Writer.framed`, without a closure per message.
 */
export function beginMessage(w: Writer): number {
	const start = w.pos;
	w.ensure(8);
	w.pos += 8;
	return start;
}

/** Writes the body length reserved by `beginMessage` and moves the body down to close the gap. */
export function endMessage(w: Writer, start: number): void {
	const len = w.pos - start - 8;
	const size = varintSize(len);
	w.buf.copyWithin(start + size, start + 8, w.pos);
	writeVarint(w.buf, start, len);
	w.pos = start + size + len;
}

/**
 * A broadcast path, prefix or suffix: bounded, UTF-8, and validated here, once (src/path): a "." or
 * ".." segment or too many segments throw PathError (a DecodeError, 15).
 */
export function readPath(r: Reader, limits: DecodeLimits | undefined): Path {
	return normalizePath(r.string(MAX_PATH_BYTES), limits?.maxPathSegments ?? MAX_PATH_SEGMENTS);
}

/** A track name: a raw bounded string. */
export function readTrack(r: Reader): string {
	return r.string(MAX_TRACK_BYTES);
}

/** Writes a u8, refusing values a byte cannot hold (a relay never emits a silently wrapped priority). */
export function writeU8(w: Writer, v: number): void {
	if (!(v >= 0 && v <= 255 && Number.isInteger(v))) throw new RangeError(`u8 out of range: ${v}`);
	w.u8(v);
}

/** Optional group numbers travel as value+1, 0 meaning absent (latest start / unbounded end). */
export function writeOptionalGroup(w: Writer, group: number | null): void {
	w.varint(group === null ? 0 : group + 1);
}

export function readOptionalGroup(r: Reader): number | null {
	const v = r.varint();
	return v === 0 ? null : v - 1;
}

/** Decoders for a version where a message does not exist throw this (the stream is reset with `code`). */
export function unsupported(what: string, v: LiteVersion, code: number): DecodeError {
	return new DecodeError(`${what} does not exist in moq-lite-0${v}`, code);
}

/** Encoders for a version where a message does not exist throw this: it is a bug in the caller. */
export function notInVersion(what: string, v: LiteVersion): Error {
	return new Error(`${what} does not exist in moq-lite-0${v}`);
}
