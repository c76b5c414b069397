/**
 * HTTP/3 (RFC 9114), QPACK (RFC 9204), HTTP Datagrams (RFC 9297) and WebTransport draft-02 wire
 * constants. Their error codes (`H3`) and WebTransport's application code mapping (`toH3`,
 * `fromH3`) are in the one code table, src/errors/codes.ts.
 */

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

/** GREASE frame / setting / stream types are 0x1f·N + 0x21; capsule GREASE is 0x29·N + 0x17. */
export function isGreaseH3(type: number): boolean {
	return type >= 0x21 && (type - 0x21) % 0x1f === 0;
}
