/**
 * Session setup messages.
 * - The 0x20/0x21 compat exchange (lite-01/02 and moqt-14, which ALPN does not fix): type byte, u16 big-endian
 *   length, body. Params are draft-14 style: a count, then per param an id, and an even id takes a
 *   varint value, an odd id a length and bytes. The encoders write the type byte; the decoders start
 *   after it, because the caller reads it (0x20 is also the stream type, 0x21 the reply's type).
 * - The lite-05 SETUP, one from each side on a uni stream of type `UNI.SETUP` (capabilities only;
 *   ALPN already fixed the version): a normal length-prefixed
 *   message of `(id, length, bytes)` params. The caller writes/reads the stream type.
 * @module
 */

import { ownedCopy } from "../../../coding/bytes.ts";
import { DecodeError } from "../../../coding/errors.ts";
import type { Reader } from "../../../coding/reader.ts";
import type { Writer } from "../../../coding/writer.ts";
import { PROTOCOL_VIOLATION, UNSUPPORTED } from "../../../errors/codes.ts";
import {
	beginMessage,
	type DecodeLimits,
	decodeBody,
	decodeMessage,
	endMessage,
	MAX_URI_BYTES,
	notInVersion,
	unsupported,
} from "./message.ts";
import { BIDI } from "./stream-type.ts";
import { hasLiteSetup, type LiteVersion } from "./version.ts";

/** Draft-14 setup params: even ids carry a varint, odd ids carry bytes. */
export type SetupParams = Map<number, number | Uint8Array>;

/** 0x20 CLIENT_SETUP body. */
export interface ClientSetup {
	/** Offered version codes, client preference first (e.g. 0xff0dad02, 0xff0dad01, 0xff00000e). */
	versions: number[];
	params: SetupParams;
}

/** 0x21 SERVER_SETUP body. */
export interface ServerSetup {
	/** The chosen version code. */
	version: number;
	params: SetupParams;
}

/** Well-known draft-14 setup param ids. */
export const SETUP_PARAM = {
	PATH: 1,
	MAX_REQUEST_ID: 2,
	AUTHORIZATION_TOKEN: 3,
	IMPLEMENTATION: 7,
	SOLICIT: 0x40b5a,
} as const;

/** Bounds a hostile SETUP: @moq/net accepts at most 128 versions; 64 params is plenty (lite-05 uses the same cap). */
export const MAX_SETUP_VERSIONS = 128;
export const MAX_SETUP_PARAMS = 64;

// The 0x20/0x21 exchange does not depend on the moq-lite version; decodeBody only passes it through.
const COMPAT: LiteVersion = 2;

function beginCompat(w: Writer, type: number): number {
	w.u8(type);
	w.u16(0);
	return w.pos;
}

function endCompat(w: Writer, bodyStart: number): void {
	const len = w.pos - bodyStart;
	if (len > 0xffff) throw new RangeError(`setup of ${len} bytes does not fit a u16 length`);
	w.buf[bodyStart - 2] = len >>> 8;
	w.buf[bodyStart - 1] = len & 0xff;
}

function writeParams(w: Writer, params: SetupParams): void {
	w.varint(params.size);
	// Varint params first, then byte params: the order @moq/net writes, so our bytes match theirs.
	for (const [id, value] of params) {
		if (id % 2 !== 0) continue;
		if (typeof value !== "number") throw new RangeError(`setup param ${id} is even, so its value must be a number`);
		w.varint(id);
		w.varint(value);
	}
	for (const [id, value] of params) {
		if (id % 2 === 0) continue;
		if (typeof value === "number") throw new RangeError(`setup param ${id} is odd, so its value must be bytes`);
		w.varint(id);
		w.varint(value.length);
		w.bytes(value);
	}
}

function readParams(r: Reader): SetupParams {
	const count = r.varint();
	if (count > MAX_SETUP_PARAMS) throw new DecodeError(`${count} setup params`, PROTOCOL_VIOLATION);
	const params: SetupParams = new Map();
	for (let i = 0; i < count; i++) {
		const id = r.varint();
		if (params.has(id)) throw new DecodeError(`duplicate setup param ${id}`, PROTOCOL_VIOLATION);
		if (id % 2 === 0) {
			params.set(id, r.varint());
		} else {
			// Copied: the reader's buffer is only valid during the call (transport ownership rules).
			params.set(id, ownedCopy(r.bytes(r.varint())));
		}
	}
	return params;
}

/** Writes `20`, u16 length, versions (8-byte varints, as the clients do), params. */
export function encodeClientSetup(w: Writer, m: ClientSetup): void {
	const start = beginCompat(w, BIDI.SETUP_CLIENT);
	w.varint(m.versions.length);
	for (const version of m.versions) w.varint8(version);
	writeParams(w, m.params);
	endCompat(w, start);
}

/** Reads a CLIENT_SETUP after its `20` type byte. */
export function decodeClientSetup(r: Reader, limits?: DecodeLimits): ClientSetup {
	return decodeBody(r, r.u16(), COMPAT, limits, clientSetupBody);
}

function clientSetupBody(r: Reader): ClientSetup {
	const count = r.varint();
	if (count > MAX_SETUP_VERSIONS) throw new DecodeError(`${count} setup versions`, PROTOCOL_VIOLATION);
	const versions: number[] = [];
	for (let i = 0; i < count; i++) versions.push(r.varint());
	return { versions, params: readParams(r) };
}

/** Writes `21`, u16 length, the chosen version (8-byte varint), params. */
export function encodeServerSetup(w: Writer, m: ServerSetup): void {
	const start = beginCompat(w, BIDI.SETUP_SERVER);
	w.varint8(m.version);
	writeParams(w, m.params);
	endCompat(w, start);
}

/** Reads a SERVER_SETUP after its `21` type byte. */
export function decodeServerSetup(r: Reader, limits?: DecodeLimits): ServerSetup {
	return decodeBody(r, r.u16(), COMPAT, limits, serverSetupBody);
}

/** Reads a whole SERVER_SETUP, its `21` type byte first (what a lite-02 client reads back). */
export function decodeServerSetupMessage(r: Reader, limits?: DecodeLimits): ServerSetup {
	const type = r.varint();
	if (type !== BIDI.SETUP_SERVER) throw new DecodeError(`expected SERVER_SETUP, got type 0x${type.toString(16)}`);
	return decodeServerSetup(r, limits);
}

function serverSetupBody(r: Reader): ServerSetup {
	const version = r.varint();
	return { version, params: readParams(r) };
}

// ---- lite-05 SETUP ----

/** Probe capability levels (param 1). */
export const PROBE_LEVEL = { NONE: 0, REPORT: 1, INCREASE: 2 } as const;
/** Client roles (param 3). */
export const ROLE = { BOTH: 0, PUBLISHER: 1, SUBSCRIBER: 2 } as const;

const PARAM_PROBE = 1;
const PARAM_PATH = 2;
const PARAM_ROLE = 3;
const PARAM_ORIGIN = 5;

/**
 * lite-05 SETUP (capabilities). Absent fields are not sent. Decoding normalises as the draft asks:
 * a probe level above 2 reads as 2, an unknown role as 0 (both), origin 0 ("no identity") as absent;
 * unknown param ids are skipped.
 */
export interface LiteSetup {
	probe?: number;
	/** Client only, and only on transports without a request URI (never WT/WS). */
	path?: string;
	/** Client only. */
	role?: number;
	/** The sender's hop id (≤ 53 bits). */
	origin?: number;
}

const utf8 = new TextEncoder();
const utf8Fatal = new TextDecoder("utf-8", { fatal: true });

function writeVarintParam(w: Writer, id: number, value: number): void {
	w.varint(id);
	// A varint param is length-prefixed like any other; its length is the varint's encoded size.
	const lenAt = w.pos;
	w.u8(0);
	const start = w.pos;
	w.varint(value);
	w.buf[lenAt] = w.pos - start;
}

/** Writes the SETUP message (length + params). The caller writes the `UNI.SETUP` stream type first. */
export function encodeLiteSetup(w: Writer, m: LiteSetup, v: LiteVersion): void {
	if (!hasLiteSetup(v)) throw notInVersion("SETUP", v);
	const start = beginMessage(w);
	const count =
		(m.probe !== undefined ? 1 : 0) +
		(m.path !== undefined ? 1 : 0) +
		(m.role !== undefined ? 1 : 0) +
		(m.origin !== undefined ? 1 : 0);
	w.varint(count);
	if (m.probe !== undefined) writeVarintParam(w, PARAM_PROBE, m.probe);
	if (m.path !== undefined) {
		const bytes = utf8.encode(m.path);
		w.varint(PARAM_PATH);
		w.varint(bytes.length);
		w.bytes(bytes);
	}
	if (m.role !== undefined) writeVarintParam(w, PARAM_ROLE, m.role);
	if (m.origin !== undefined) writeVarintParam(w, PARAM_ORIGIN, m.origin);
	endMessage(w, start);
}

/** Reads the SETUP message after the `UNI.SETUP` stream type. */
export function decodeLiteSetup(r: Reader, v: LiteVersion, limits?: DecodeLimits): LiteSetup {
	if (!hasLiteSetup(v)) throw unsupported("SETUP", v, UNSUPPORTED);
	return decodeMessage(r, v, limits, liteSetupBody);
}

function liteSetupBody(r: Reader): LiteSetup {
	const count = r.varint();
	if (count > MAX_SETUP_PARAMS) throw new DecodeError(`${count} setup params`, PROTOCOL_VIOLATION);
	const m: LiteSetup = {};
	const seen: number[] = [];
	for (let i = 0; i < count; i++) {
		const id = r.varint();
		if (seen.includes(id)) throw new DecodeError(`duplicate setup param ${id}`, PROTOCOL_VIOLATION);
		seen.push(id);
		const len = r.varint();
		switch (id) {
			case PARAM_PROBE:
				m.probe = Math.min(readVarintValue(r, len), PROBE_LEVEL.INCREASE);
				break;
			case PARAM_ROLE: {
				const role = readVarintValue(r, len);
				m.role = role <= ROLE.SUBSCRIBER ? role : ROLE.BOTH;
				break;
			}
			case PARAM_ORIGIN: {
				const origin = readVarintValue(r, len);
				if (origin !== 0) m.origin = origin;
				break;
			}
			case PARAM_PATH: {
				if (len > MAX_URI_BYTES) throw new DecodeError(`setup path of ${len} bytes`, PROTOCOL_VIOLATION);
				try {
					m.path = utf8Fatal.decode(r.bytes(len));
				} catch (e) {
					if (e instanceof TypeError) throw new DecodeError("invalid UTF-8 in setup path", PROTOCOL_VIOLATION);
					throw e;
				}
				break;
			}
			default:
				r.skip(len);
		}
	}
	return m;
}

/** A param value that must be exactly one varint. */
function readVarintValue(r: Reader, len: number): number {
	const end = r.pos + len;
	const value = r.varint();
	if (r.pos !== end) throw new DecodeError("setup param length does not match its varint", PROTOCOL_VIOLATION);
	return value;
}
