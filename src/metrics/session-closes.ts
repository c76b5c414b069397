/**
 * Why sessions ended, counted per worker thread and published to /metrics as
 * `moq_fanout_session_closes_total{reason}`. The close code (a moq-lite code, either side's) maps
 * onto a small fixed set of reasons, so the label's cardinality stays bounded whatever a peer sends.
 * @module
 */
import * as Code from "../errors/codes.ts";

export const SESSION_CLOSE_REASONS = [
	/** Closed without error: CANCEL (0) or CLOSED, by either side (a viewer leaving, a shutdown). */
	"normal",
	/** The peer broke the protocol (violation, unexpected stream or message, bad version, …). */
	"protocol",
	/** The token did not allow the session, or expired. */
	"unauthorized",
	/** No SETUP in time, or another timeout. */
	"timeout",
	/** The relay's code threw on the session's input (see `moq_fanout_session_faults_total`). */
	"fault",
	/** A limit or unsupported feature (UNSUPPORTED), or the cache had no room (EVICTED). */
	"limit",
	/** Any other code, including application codes. */
	"other",
] as const;

export type SessionCloseReason = (typeof SESSION_CLOSE_REASONS)[number];

/** The reason a close code is counted under. */
export function sessionCloseReason(code: number): SessionCloseReason {
	switch (code) {
		case Code.CANCEL:
		case Code.CLOSED:
			return "normal";
		case Code.PROTOCOL_VIOLATION:
		case Code.UNEXPECTED_STREAM:
		case Code.UNEXPECTED_MESSAGE:
		case Code.DUPLICATE:
		case Code.VERSION:
		case Code.FRAME_TOO_LARGE:
		case Code.TIMESTAMP_MISMATCH:
			return "protocol";
		case Code.UNAUTHORIZED:
			return "unauthorized";
		case Code.TIMEOUT:
			return "timeout";
		case Code.FAULT:
			return "fault";
		case Code.UNSUPPORTED:
		case Code.EVICTED:
			return "limit";
		default:
			return "other";
	}
}

/** Module state is per thread under worker_threads: each worker counts its own. */
const counts = Object.fromEntries(SESSION_CLOSE_REASONS.map((r) => [r, 0])) as Record<SessionCloseReason, number>;

/** Counts one session close with `code` (called once per session, from its teardown). */
export function countSessionClose(code: number): void {
	counts[sessionCloseReason(code)]++;
}

/** This thread's counts by reason (read by the metrics publisher). */
export function sessionCloseCounts(): Readonly<Record<SessionCloseReason, number>> {
	return counts;
}
