/**
 * Connection IDs and the few header fields the endpoint needs to route a datagram, parsed in JS:
 * `Header.fromSlice` crosses napi and allocates an object per packet, while routing only needs the
 * first byte, the version and the destination connection ID (RFC 8999 invariants).
 */
import { randomFillSync } from "node:crypto";

/** Length of the connection IDs we choose (server and client side). */
export const CID_LEN = 16;
/** RFC 9000 §7.2: a client's first Destination Connection ID is at least 8 bytes. */
export const MIN_INITIAL_DCID_LEN = 8;
/** RFC 9000 §14.1: a client's Initial datagram is at least 1200 bytes. */
export const MIN_INITIAL_DATAGRAM = 1200;

/**
 * The worker that chose this connection ID: the first byte of every server CID is the worker
 * index, so a packet the kernel hashed to the wrong worker can be forwarded to its owner.
 */
export function cidOwner(dcid: Uint8Array): number {
	return dcid.length > 0 ? dcid[0] : -1;
}

const RANDOM_POOL = Buffer.allocUnsafe(CID_LEN * 256);
let randomOffset = RANDOM_POOL.length;

/** A fresh connection ID whose first byte names the owning worker (0–255). */
export function newCid(owner: number): Buffer {
	if (randomOffset + CID_LEN > RANDOM_POOL.length) {
		randomFillSync(RANDOM_POOL);
		randomOffset = 0;
	}
	const cid = Buffer.allocUnsafe(CID_LEN);
	RANDOM_POOL.copy(cid, 0, randomOffset, randomOffset + CID_LEN);
	randomOffset += CID_LEN;
	cid[0] = owner & 0xff;
	return cid;
}

/** Map key for a connection ID (latin1 keeps one char per byte; cheap and collision-free). */
export function cidKey(cid: Uint8Array, start = 0, end = cid.length): string {
	const buf = Buffer.isBuffer(cid) ? cid : Buffer.from(cid.buffer, cid.byteOffset, cid.byteLength);
	return buf.toString("latin1", start, end);
}

export const PacketForm = {
	/** Not a QUIC packet we can parse (too short, fixed bit clear, bad lengths). */
	Invalid: 0,
	Short: 1,
	Long: 2,
} as const;
export type PacketForm = (typeof PacketForm)[keyof typeof PacketForm];

/** Long-header packet types of QUIC v1 (first byte bits 4–5). */
export const LongType = { Initial: 0, ZeroRtt: 1, Handshake: 2, Retry: 3 } as const;

/**
 * Parse results, written into one reused object (no allocation per packet). Offsets index into
 * the datagram passed to `parseHeader`.
 */
export interface ParsedHeader {
	form: PacketForm;
	/** Long header: the version (0 = version negotiation). */
	version: number;
	/** Long header: packet type bits (see LongType), meaningful for version 1 only. */
	longType: number;
	dcidStart: number;
	dcidEnd: number;
	scidStart: number;
	scidEnd: number;
	/**
	 * Initial packets: the token (RFC 9000 §17.2.2, after a varint length); tokenEnd is -1 when the
	 * length runs past the datagram. Parsed here so admission needs no `Header.fromSlice` per Initial.
	 */
	tokenStart: number;
	tokenEnd: number;
}

export function newParsedHeader(): ParsedHeader {
	return {
		form: PacketForm.Invalid,
		version: 0,
		longType: 0,
		dcidStart: 0,
		dcidEnd: 0,
		scidStart: 0,
		scidEnd: 0,
		tokenStart: 0,
		tokenEnd: 0,
	};
}

/**
 * Parses the routing fields of the first packet in a datagram. `shortDcidLen` is the length of
 * our own connection IDs (short headers do not carry it).
 */
export function parseHeader(data: Uint8Array, shortDcidLen: number, out: ParsedHeader): PacketForm {
	out.form = PacketForm.Invalid;
	if (data.length < 1) return PacketForm.Invalid;
	const first = data[0];
	if ((first & 0x80) === 0) {
		// Short header: 1 byte, then our DCID, then at least a packet number and a tag.
		if (data.length < 1 + shortDcidLen + 1 + 16) return PacketForm.Invalid;
		out.dcidStart = 1;
		out.dcidEnd = 1 + shortDcidLen;
		out.form = PacketForm.Short;
		return PacketForm.Short;
	}
	if (data.length < 7) return PacketForm.Invalid;
	out.version = ((data[1] << 24) | (data[2] << 16) | (data[3] << 8) | data[4]) >>> 0;
	out.longType = (first >> 4) & 3;
	const dcidLen = data[5];
	if (dcidLen > 255 || 6 + dcidLen + 1 > data.length) return PacketForm.Invalid;
	out.dcidStart = 6;
	out.dcidEnd = 6 + dcidLen;
	const scidLen = data[out.dcidEnd];
	out.scidStart = out.dcidEnd + 1;
	out.scidEnd = out.scidStart + scidLen;
	if (out.scidEnd > data.length) return PacketForm.Invalid;
	out.tokenStart = out.tokenEnd = out.scidEnd;
	if (out.longType === LongType.Initial) parseToken(data, out);
	out.form = PacketForm.Long;
	return PacketForm.Long;
}

/** Reads an Initial's token length (a QUIC varint, RFC 9000 §16) and sets tokenStart/tokenEnd. */
function parseToken(data: Uint8Array, out: ParsedHeader): void {
	let p = out.scidEnd;
	if (p >= data.length) {
		out.tokenEnd = -1;
		return;
	}
	const first = data[p];
	const size = 1 << (first >> 6);
	if (p + size > data.length) {
		out.tokenEnd = -1;
		return;
	}
	// A token longer than a datagram cannot be valid: 4 bytes of length are plenty.
	let length = first & 0x3f;
	for (let i = 1; i < size; i++) length = length * 256 + data[p + i];
	p += size;
	out.tokenStart = p;
	out.tokenEnd = p + length <= data.length ? p + length : -1;
}
