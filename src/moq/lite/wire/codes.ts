/**
 * moq-lite stream reset and session close codes (moq-net `error.rs`). Application codes start at 64.
 * @module
 */

export const CANCEL = 0;
export const OLD = 2;
export const TIMEOUT = 3;
export const UNAUTHORIZED = 6;
export const VERSION = 9;
export const UNEXPECTED_STREAM = 10;
export const DUPLICATE = 12;
export const NOT_FOUND = 13;
export const PROTOCOL_VIOLATION = 15;
export const UNEXPECTED_MESSAGE = 16;
export const UNSUPPORTED = 17;
export const DROPPED = 24;
export const CLOSED = 25;
export const LAGGED = 26;
export const FRAME_TOO_LARGE = 27;
export const TIMESTAMP_MISMATCH = 29;
export const UNROUTABLE = 30;
export const EVICTED = 31;
/** Codes at or above this are application defined. */
export const APPLICATION_BASE = 64;

const NAMES: Record<number, string> = {
	[CANCEL]: "cancel",
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

/** A readable name for logs ("protocol violation", "app 3", "unknown 7"). */
export function codeName(code: number): string {
	if (code >= APPLICATION_BASE) return `app ${code - APPLICATION_BASE}`;
	return NAMES[code] ?? `unknown ${code}`;
}
