/**
 * HTTP/3 (RFC 9114), QPACK (RFC 9204), HTTP Datagrams (RFC 9297) and WebTransport draft-02 wire
 * constants, plus the application error code mapping WebTransport uses on QUIC streams.
 */

/** HTTP/3 and QPACK error codes (connection close / stream reset codes on the wire). */
export const H3 = {
	NO_ERROR: 0x100,
	GENERAL_PROTOCOL_ERROR: 0x101,
	INTERNAL_ERROR: 0x102,
	STREAM_CREATION_ERROR: 0x103,
	CLOSED_CRITICAL_STREAM: 0x104,
	FRAME_UNEXPECTED: 0x105,
	FRAME_ERROR: 0x106,
	EXCESSIVE_LOAD: 0x107,
	ID_ERROR: 0x108,
	SETTINGS_ERROR: 0x109,
	MISSING_SETTINGS: 0x10a,
	REQUEST_REJECTED: 0x10b,
	REQUEST_CANCELLED: 0x10c,
	REQUEST_INCOMPLETE: 0x10d,
	MESSAGE_ERROR: 0x10e,
	CONNECT_ERROR: 0x10f,
	DATAGRAM_ERROR: 0x33,
	QPACK_DECOMPRESSION_FAILED: 0x200,
	QPACK_ENCODER_STREAM_ERROR: 0x201,
	QPACK_DECODER_STREAM_ERROR: 0x202,
	WT_SESSION_GONE: 0x170d7b68,
	WT_BUFFERED_STREAM_REJECTED: 0x3994bd84,
} as const;

/** HTTP/3 frame types; 0x41 is WebTransport's bidi stream signal, valid only as a stream's first bytes. */
export const Frame = {
	DATA: 0x00,
	HEADERS: 0x01,
	CANCEL_PUSH: 0x03,
	SETTINGS: 0x04,
	PUSH_PROMISE: 0x05,
	GOAWAY: 0x07,
	MAX_PUSH_ID: 0x0d,
	WT_BIDI_SIGNAL: 0x41,
} as const;

/** Frame types reserved because they were HTTP/2 frames; receiving one is H3_FRAME_UNEXPECTED (RFC 9114 §7.2.8). */
export function isHttp2ReservedFrame(type: number): boolean {
	return type === 0x02 || type === 0x06 || type === 0x08 || type === 0x09;
}

/** Unidirectional stream types (first varint of a uni stream). */
export const UniStream = {
	CONTROL: 0x00,
	PUSH: 0x01,
	QPACK_ENCODER: 0x02,
	QPACK_DECODER: 0x03,
	WEBTRANSPORT: 0x54,
} as const;

/**
 * SETTINGS identifiers used here: HTTP/3's own (RFC 9114), extended CONNECT (RFC 9220), datagrams
 * (RFC 9297, and the id of its draft 04), and WebTransport's across its drafts (02: ENABLE_WEBTRANSPORT;
 * 05–06: its session limit; 07 on: WT_MAX_SESSIONS).
 */
export const Setting = {
	QPACK_MAX_TABLE_CAPACITY: 0x01,
	MAX_FIELD_SECTION_SIZE: 0x06,
	QPACK_BLOCKED_STREAMS: 0x07,
	ENABLE_CONNECT_PROTOCOL: 0x08,
	H3_DATAGRAM: 0x33,
	H3_DATAGRAM_DRAFT04: 0xffd277,
	ENABLE_WEBTRANSPORT: 0x2b603742,
	WEBTRANSPORT_MAX_SESSIONS_DRAFT: 0x2b603743,
	WT_MAX_SESSIONS: 0xc671706a,
} as const;

/** Capsule types (RFC 9297 capsule protocol, carried in DATA frames on the CONNECT stream). */
export const Capsule = {
	CLOSE_WEBTRANSPORT_SESSION: 0x2843,
	DRAIN_WEBTRANSPORT_SESSION: 0x78ae,
} as const;

/** Largest reason a CLOSE_WEBTRANSPORT_SESSION capsule may carry (bytes of UTF-8). */
export const MAX_CLOSE_REASON_BYTES = 1024;

const FIRST_APP_CODE = 0x52e4a40fa8db;
const LAST_APP_CODE = 0x52e5ac983162;
const MAX_APP_CODE = 0xffffffff;

/**
 * A WebTransport application error code (u32) as an HTTP/3 stream error code: the range skips
 * every GREASE codepoint (0x1f·N + 0x21), hence the extra n/0x1e.
 */
export function toH3(code: number): number {
	const n = code < 0 ? 0 : code > MAX_APP_CODE ? MAX_APP_CODE : Math.floor(code);
	return FIRST_APP_CODE + n + Math.floor(n / 0x1e);
}

/** The inverse of toH3; null for codes outside the WebTransport range or on a GREASE codepoint. */
export function fromH3(h3: number): number | null {
	if (h3 < FIRST_APP_CODE || h3 > LAST_APP_CODE) return null;
	if ((h3 - 0x21) % 0x1f === 0) return null;
	const shifted = h3 - FIRST_APP_CODE;
	return shifted - Math.floor(shifted / 0x1f);
}

/** GREASE frame / setting / stream types are 0x1f·N + 0x21; capsule GREASE is 0x29·N + 0x17. */
export function isGreaseH3(type: number): boolean {
	return type >= 0x21 && (type - 0x21) % 0x1f === 0;
}
