/**
 * Why the relay turned something away or cut it off, counted per worker thread and published to
 * /metrics as `moq_fanout_refusals_total{reason}` (and faults as `moq_fanout_session_faults_total`).
 * Logging is rate limited per reason: a flood must not turn into a log flood.
 * @module
 */

import type { LogLine } from "../log/logger.ts";

/** Every refusal reason; the metric's `reason` label is the key. */
export const REFUSAL_REASONS = [
	/** `[limits] max_sessions` (relay-wide) was reached. */
	"sessions",
	/** `[limits] max_tcp_connections` (relay-wide) was reached. */
	"tcp_connections",
	/** `[limits] max_connections_per_ip` was reached for the client's address. */
	"connections_per_ip",
	/** `[limits] handshake_rate_per_ip`: too many new connections this second from one address. */
	"handshake_rate",
	/** `[server.quic] max_handshakes`: too many QUIC handshakes in progress on one worker. */
	"handshakes",
	/** `[server.quic] max_handshakes_per_ip`: too many QUIC handshakes in progress from one address. */
	"handshakes_per_ip",
	/** `[server.quic] max_connections`: the worker's QUIC connection table is full. */
	"quic_connections",
	/** An Initial whose Retry token was forged, expired, or for another address. */
	"retry_token",
	/** `[limits] max_broadcasts_per_session`. */
	"broadcasts",
	/** `[limits] max_subscriptions` per session. */
	"subscriptions",
	/** `[limits] max_announce_requests` per session. */
	"announce_requests",
	/** No token, a bad token, or a token that does not cover the path or role. */
	"auth",
	/** `[limits] http_header_timeout`: request headers did not arrive in time (slowloris). */
	"header_timeout",
	/** `[limits] idle_timeout`: a TCP connection sent nothing for that long. */
	"idle_timeout",
	/** A protocol violation (undecodable or out-of-order input) closed a session or stream. */
	"protocol",
	/** An announcement refused by the cluster's rules: `.internal/` from a non-peer, a loop, too many hops. */
	"announce_route",
] as const;

export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** This thread's counts, by reason; `faults` counts exceptions the session guard caught. */
export interface RefusalCounts {
	readonly byReason: Record<RefusalReason, number>;
	faults: number;
}

function zero(): RefusalCounts {
	return {
		byReason: Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<RefusalReason, number>,
		faults: 0,
	};
}

/** Module state is per thread under worker_threads: each worker counts its own. */
const counts = zero();

/** This thread's refusal and fault counts (read by the metrics publisher). */
export function refusalCounts(): RefusalCounts {
	return counts;
}

const LOG_INTERVAL_MS = 10_000;
const lastLogged = new Map<string, { at: number; suppressed: number }>();

/**
 * Counts one refusal and logs it at most once per reason every 10 s (with how many were not
 * logged in between). `fields` must hold nothing secret: addresses and reasons, never tokens.
 */
export function refuse(reason: RefusalReason, log?: LogLine, fields?: Record<string, unknown>): void {
	counts.byReason[reason]++;
	if (log) logLimited(`refused:${reason}`, log, "refused", { reason, ...fields });
}

/** Counts one fault caught by a session guard; logs like `refuse`. */
export function countFault(log?: LogLine, fields?: Record<string, unknown>): void {
	counts.faults++;
	if (log) logLimited("fault", log, "session fault: closed the session", fields ?? {});
}

function logLimited(key: string, log: LogLine, message: string, fields: Record<string, unknown>): void {
	const now = Date.now();
	const last = lastLogged.get(key);
	if (last && now - last.at < LOG_INTERVAL_MS) {
		last.suppressed++;
		return;
	}
	const suppressed = last?.suppressed ?? 0;
	lastLogged.set(key, { at: now, suppressed: 0 });
	log(message, suppressed > 0 ? { ...fields, suppressed } : fields);
}
