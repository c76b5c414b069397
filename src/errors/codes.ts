/**
 * Every error code the relay puts on the wire, in one table, and how each transport carries them.
 *
 * - moq-lite codes (moq-net `error.rs`, plus FAULT) are the relay's own: stream resets, STOP_SENDING
 *   and session closes. Codes at or above APPLICATION_BASE are application defined.
 * - QUIC transport codes (RFC 9000 §20.1) are what qmux's transport CONNECTION_CLOSE (0x1c) carries.
 * - HTTP/3 and QPACK codes (RFC 9114, RFC 9204) and WebTransport's are what the HTTP/3 layer closes
 *   connections and resets its own streams with.
 *
 * A moq-lite code reaches the peer as is on raw QUIC and qmux (RESET_STREAM / STOP_SENDING codes,
 * CONNECTION_CLOSE 0x1d), and on WebTransport as a u32 in CLOSE_WEBTRANSPORT_SESSION; stream codes
 * on WebTransport are mapped into HTTP/3's application range (`toH3` / `fromH3`). `streamCodeOn`,
 * `streamCodeFrom` and `sessionCodeOn` say that per transport.
 *
 * Layering: this module imports nothing, so every layer (coding, path, auth, cache, relay, moq, the
 * transports, the workers) may import it.
 * @module
 */

// ---------------------------------------------------------------------------------------------
// moq-lite

/** The peer (or we) no longer want the stream or session; not an error. */
export const CANCEL = 0;
/**
 * A session whose input made the relay's code throw (the session guard, src/transport/guard.ts).
 * moq-lite leaves 1 unassigned; a client can tell "the relay failed on my input" from a refusal.
 */
export const FAULT = 1;
/** The group is older than the subscription's window. */
export const OLD = 2;
export const TIMEOUT = 3;
/** The token does not allow the session or the request. */
export const UNAUTHORIZED = 6;
/** No moq-lite version in common. */
export const VERSION = 9;
export const UNEXPECTED_STREAM = 10;
export const DUPLICATE = 12;
/** No such broadcast or track (also: its publisher's worker went away). */
export const NOT_FOUND = 13;
export const PROTOCOL_VIOLATION = 15;
export const UNEXPECTED_MESSAGE = 16;
/** Not supported by this version, or over one of the relay's limits (sessions, subscriptions, …). */
export const UNSUPPORTED = 17;
/** The track's publisher went away (or was replaced) before the group or subscription ended. */
export const DROPPED = 24;
export const CLOSED = 25;
/** A viewer fell a ring behind and skipped to the newest group. */
export const LAGGED = 26;
export const FRAME_TOO_LARGE = 27;
export const TIMESTAMP_MISMATCH = 29;
export const UNROUTABLE = 30;
/** The cache had no room (its budget, or ring pressure protecting the latest group). */
export const EVICTED = 31;
/** Codes at or above this are application defined. */
export const APPLICATION_BASE = 64;

const NAMES: Record<number, string> = {
	[CANCEL]: "cancel",
	[FAULT]: "fault",
	[OLD]: "old",
	[TIMEOUT]: "timeout",
	[UNAUTHORIZED]: "unauthorized",
	[VERSION]: "version",
	[UNEXPECTED_STREAM]: "unexpected stream",
	[DUPLICATE]: "duplicate",
	[NOT_FOUND]: "not found",
	[PROTOCOL_VIOLATION]: "protocol violation",
	[UNEXPECTED_MESSAGE]: "unexpected message",
	[UNSUPPORTED]: "unsupported",
	[DROPPED]: "dropped",
	[CLOSED]: "closed",
	[LAGGED]: "lagged",
	[FRAME_TOO_LARGE]: "frame too large",
	[TIMESTAMP_MISMATCH]: "timestamp mismatch",
	[UNROUTABLE]: "unroutable",
	[EVICTED]: "evicted",
};

/** A readable name for a moq-lite code, for logs ("protocol violation", "app 3", "unknown 7"). */
export function codeName(code: number): string {
	if (code >= APPLICATION_BASE) return `app ${code - APPLICATION_BASE}`;
	return NAMES[code] ?? `unknown ${code}`;
}

// ---------------------------------------------------------------------------------------------
// QUIC transport codes (qmux)

/**
 * QUIC transport error codes (RFC 9000 §20.1), which qmux reuses in its transport CONNECTION_CLOSE
 * (0x1c). Application closes (0x1d) carry the moq-lite code instead.
 */
export const QuicError = {
	NO_ERROR: 0x00,
	INTERNAL_ERROR: 0x01,
	CONNECTION_REFUSED: 0x02,
	FLOW_CONTROL_ERROR: 0x03,
	STREAM_LIMIT_ERROR: 0x04,
	STREAM_STATE_ERROR: 0x05,
	FINAL_SIZE_ERROR: 0x06,
	FRAME_ENCODING_ERROR: 0x07,
	TRANSPORT_PARAMETER_ERROR: 0x08,
	PROTOCOL_VIOLATION: 0x0a,
} as const;
export type QuicErrorCode = (typeof QuicError)[keyof typeof QuicError];

// ---------------------------------------------------------------------------------------------
// HTTP/3, QPACK and WebTransport

/** HTTP/3 and QPACK error codes (connection close / stream reset codes on the wire), and WebTransport's own. */
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

const FIRST_APP_CODE = 0x52e4a40fa8db;
const LAST_APP_CODE = 0x52e5ac983162;
/** WebTransport application codes are u32. */
const MAX_APP_CODE = 0xffffffff;

/**
 * A WebTransport application error code (u32) as an HTTP/3 stream error code: the range skips
 * every GREASE codepoint (0x1f·N + 0x21), hence the extra n/0x1e.
 */
export function toH3(code: number): number {
	const n = clampU32(code);
	return FIRST_APP_CODE + n + Math.floor(n / 0x1e);
}

/** The inverse of toH3; null for codes outside the WebTransport range or on a GREASE codepoint. */
export function fromH3(h3: number): number | null {
	if (h3 < FIRST_APP_CODE || h3 > LAST_APP_CODE) return null;
	if ((h3 - 0x21) % 0x1f === 0) return null;
	const shifted = h3 - FIRST_APP_CODE;
	return shifted - Math.floor(shifted / 0x1f);
}

function clampU32(code: number): number {
	return code < 0 ? 0 : code > MAX_APP_CODE ? MAX_APP_CODE : Math.floor(code);
}

// ---------------------------------------------------------------------------------------------
// moq-lite codes per transport

/** The transports a moq-lite session runs over. */
export type Carrier = "quic" | "qmux" | "webtransport";

/** The stream error code (RESET_STREAM, STOP_SENDING) that carries moq-lite `code` on `carrier`. */
export function streamCodeOn(carrier: Carrier, code: number): number {
	return carrier === "webtransport" ? toH3(code) : code;
}

/**
 * The moq-lite code a received stream error code carries on `carrier`; null when it carries none
 * (on WebTransport, an HTTP/3 code outside its application range, such as H3_REQUEST_CANCELLED).
 */
export function streamCodeFrom(carrier: Carrier, wire: number): number | null {
	return carrier === "webtransport" ? fromH3(wire) : wire;
}

/**
 * The code a session close carries for moq-lite `code`: raw QUIC and qmux send it as the
 * application CONNECTION_CLOSE (0x1d) code, WebTransport as CLOSE_WEBTRANSPORT_SESSION's u32.
 */
export function sessionCodeOn(carrier: Carrier, code: number): number {
	return carrier === "webtransport" ? clampU32(code) : code;
}

// ---------------------------------------------------------------------------------------------
// IETF moq-transport (drafts 14–16; docs/ietf.md). Values from each draft's IANA registries; the
// three drafts agree on every code listed here.

/** Session termination codes: the CONNECTION_CLOSE / CLOSE_WEBTRANSPORT_SESSION code of an IETF session. */
export const IetfClose = {
	NO_ERROR: 0x0,
	INTERNAL_ERROR: 0x1,
	UNAUTHORIZED: 0x2,
	PROTOCOL_VIOLATION: 0x3,
	/** A request ID of the wrong parity, or not above the last one on the control stream. */
	INVALID_REQUEST_ID: 0x4,
	DUPLICATE_TRACK_ALIAS: 0x5,
	KEY_VALUE_FORMATTING_ERROR: 0x6,
	/** A request ID at or above the MAX_REQUEST_ID we granted. */
	TOO_MANY_REQUESTS: 0x7,
	/** The SETUP PATH parameter where the transport has a URL (WebTransport, WebSocket). */
	INVALID_PATH: 0x8,
	MALFORMED_PATH: 0x9,
	GOAWAY_TIMEOUT: 0x10,
	CONTROL_MESSAGE_TIMEOUT: 0x11,
	DATA_STREAM_TIMEOUT: 0x12,
	/** Draft-14 SETUP: the client offered no version this relay speaks. */
	VERSION_NEGOTIATION_FAILED: 0x15,
} as const;

/**
 * Request refusals: draft-14's per-message *_ERROR registries (SUBSCRIBE_ERROR, PUBLISH_NAMESPACE_ERROR,
 * FETCH_ERROR, PUBLISH_ERROR, TRACK_STATUS_ERROR, SUBSCRIBE_NAMESPACE_ERROR) and the one REQUEST_ERROR
 * registry of drafts 15/16. 0x0–0x3 mean the same in all of them.
 */
export const IetfRequestError = {
	INTERNAL_ERROR: 0x0,
	UNAUTHORIZED: 0x1,
	TIMEOUT: 0x2,
	NOT_SUPPORTED: 0x3,
	/** Draft-14 SUBSCRIBE_ERROR / FETCH_ERROR TRACK_DOES_NOT_EXIST. */
	TRACK_DOES_NOT_EXIST_14: 0x4,
	/** Drafts 15/16 REQUEST_ERROR DOES_NOT_EXIST. */
	DOES_NOT_EXIST: 0x10,
	INVALID_RANGE: 0x11,
} as const;

/** PUBLISH_DONE status codes. */
export const IetfPublishDone = {
	INTERNAL_ERROR: 0x0,
	UNAUTHORIZED: 0x1,
	TRACK_ENDED: 0x2,
	SUBSCRIPTION_ENDED: 0x3,
	GOING_AWAY: 0x4,
	EXPIRED: 0x5,
	TOO_FAR_BEHIND: 0x6,
} as const;

/** Data stream RESET_STREAM codes (and what the relay sends as STOP_SENDING on an IETF data stream). */
export const IetfStreamReset = {
	INTERNAL_ERROR: 0x0,
	CANCELLED: 0x1,
	DELIVERY_TIMEOUT: 0x2,
	SESSION_CLOSED: 0x3,
} as const;
