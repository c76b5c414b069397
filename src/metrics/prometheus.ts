/**
 * Renders the pool's figures in the Prometheus text exposition format (version 0.0.4), for
 * `GET /metrics`. Every per-worker family has one series per worker (`worker="N"`) plus one
 * series without the `worker` label holding the pool total (sums; a mean for utilisation).
 * Query totals with `{worker=""}`, or sum the per-worker series with `{worker!=""}`; summing
 * both double counts.
 */
import type { FieldName, WorkerFigures } from "../pool/counters.ts";
import { totalFigures } from "../pool/counters.ts";
import type { RefusalReason } from "../transport/refusals.ts";

/** The counters field of each refusal reason (transport/refusals.ts). */
export const REFUSAL_FIELDS: Record<RefusalReason, FieldName> = {
	sessions: "refusedSessions",
	tcp_connections: "refusedTcpConnections",
	connections_per_ip: "refusedConnectionsPerIp",
	handshake_rate: "refusedHandshakeRate",
	handshakes: "refusedHandshakes",
	handshakes_per_ip: "refusedHandshakesPerIp",
	quic_connections: "refusedQuicConnections",
	retry_token: "refusedRetryToken",
	broadcasts: "refusedBroadcasts",
	subscriptions: "refusedSubscriptions",
	announce_requests: "refusedAnnounceRequests",
	auth: "refusedAuth",
	header_timeout: "refusedHeaderTimeout",
	idle_timeout: "refusedIdleTimeout",
	protocol: "refusedProtocol",
};

export const PREFIX = "moq_fanout_";

/** Process-level figures of the thread that renders (see `sampleProcessInfo`). */
export interface ProcessInfo {
	/** Resident set size of the whole process. */
	rssBytes: number;
	/** V8 heap of the rendering thread (the others report theirs per worker). */
	heapUsedBytes: number;
	heapTotalBytes: number;
	/** Seconds since the process started. */
	uptimeSeconds: number;
	/** The relay's version, for `moq_fanout_build_info`. */
	version?: string;
}

/** Samples `ProcessInfo` now; works on the main thread and in a worker. */
export function sampleProcessInfo(version?: string): ProcessInfo {
	const mem = process.memoryUsage();
	return {
		rssBytes: mem.rss,
		heapUsedBytes: mem.heapUsed,
		heapTotalBytes: mem.heapTotal,
		uptimeSeconds: process.uptime(),
		version,
	};
}

type MetricType = "counter" | "gauge";

interface Series {
	readonly field: FieldName;
	/** Extra labels, already rendered (`transport="quic"`). */
	readonly labels?: string;
	/** Multiplier from the stored unit to the exposed one (µs → s). */
	readonly scale?: number;
}

interface Family {
	readonly name: string;
	readonly type: MetricType;
	readonly help: string;
	readonly series: readonly Series[];
}

/** The per-worker families, in output order. Every counters field appears exactly once. */
export const WORKER_FAMILIES: readonly Family[] = [
	{
		name: "sessions",
		type: "gauge",
		help: "Open client sessions, by transport.",
		series: [
			{ field: "sessionsQuic", labels: 'transport="quic"' },
			{ field: "sessionsWebTransport", labels: 'transport="webtransport"' },
			{ field: "sessionsWebSocket", labels: 'transport="websocket"' },
		],
	},
	{ name: "subscriptions", type: "gauge", help: "Active track subscriptions.", series: [{ field: "subscriptions" }] },
	{ name: "broadcasts", type: "gauge", help: "Broadcasts the worker tracks.", series: [{ field: "broadcasts" }] },
	{ name: "tracks", type: "gauge", help: "Tracks the worker tracks.", series: [{ field: "tracks" }] },
	{
		name: "received_bytes_total",
		type: "counter",
		help: "Bytes received from clients.",
		series: [{ field: "bytesIn" }],
	},
	{ name: "sent_bytes_total", type: "counter", help: "Bytes sent to clients.", series: [{ field: "bytesOut" }] },
	{ name: "received_packets_total", type: "counter", help: "Packets received.", series: [{ field: "packetsIn" }] },
	{ name: "sent_packets_total", type: "counter", help: "Packets sent.", series: [{ field: "packetsOut" }] },
	{
		name: "groups_received_total",
		type: "counter",
		help: "Groups received from publishers.",
		series: [{ field: "groupsIn" }],
	},
	{
		name: "groups_sent_total",
		type: "counter",
		help: "Groups delivered to subscribers.",
		series: [{ field: "groupsOut" }],
	},
	{
		name: "groups_dropped_total",
		type: "counter",
		help: "Groups skipped for subscribers that fell behind.",
		series: [{ field: "groupsDropped" }],
	},
	{
		name: "frames_received_total",
		type: "counter",
		help: "Frames received from publishers.",
		series: [{ field: "framesIn" }],
	},
	{ name: "cache_bytes", type: "gauge", help: "Group cache bytes in use.", series: [{ field: "cacheBytes" }] },
	{
		name: "worker_cpu_seconds_total",
		type: "counter",
		help: "CPU time of the worker thread, by mode.",
		series: [
			{ field: "cpuUserMicros", labels: 'mode="user"', scale: 1e-6 },
			{ field: "cpuSystemMicros", labels: 'mode="system"', scale: 1e-6 },
		],
	},
	{
		name: "worker_event_loop_utilization",
		type: "gauge",
		help: "Share of the last second the worker's event loop was busy (0..1; the total is the mean).",
		series: [{ field: "eventLoopUtilization" }],
	},
	{
		name: "worker_heap_used_bytes",
		type: "gauge",
		help: "V8 heap used by the worker thread.",
		series: [{ field: "heapUsedBytes" }],
	},
	{
		name: "worker_restarts_total",
		type: "counter",
		help: "Times the worker was replaced after dying.",
		series: [{ field: "restarts" }],
	},
	{
		name: "refusals_total",
		type: "counter",
		help: "Connections, sessions and requests refused or cut off, by the limit or rule that refused them.",
		series: (Object.keys(REFUSAL_FIELDS) as RefusalReason[]).map((reason) => ({
			field: REFUSAL_FIELDS[reason],
			labels: `reason="${reason}"`,
		})),
	},
	{
		name: "session_faults_total",
		type: "counter",
		help: "Sessions closed because handling their input threw (a bug; the worker and other sessions carry on).",
		series: [{ field: "sessionFaults" }],
	},
	{
		name: "quic_retries_total",
		type: "counter",
		help: "QUIC Retry packets sent (address validation).",
		series: [{ field: "quicRetries" }],
	},
	{
		name: "quic_handshakes",
		type: "gauge",
		help: "QUIC handshakes in progress.",
		series: [{ field: "quicHandshakes" }],
	},
	{
		name: "tcp_connections",
		type: "gauge",
		help: "Open TCP connections (HTTP and WebSocket).",
		series: [{ field: "tcpConnections" }],
	},
];

/** Escapes a label value: backslash, double quote and line feed. */
export function escapeLabelValue(v: string): string {
	return v.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

/** Escapes HELP text: backslash and line feed. */
export function escapeHelp(v: string): string {
	return v.replace(/[\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\\\"));
}

/** A sample value as Prometheus writes it (Go float syntax, with NaN and ±Inf spelled out). */
export function formatValue(v: number): string {
	if (Number.isNaN(v)) return "NaN";
	if (v === Number.POSITIVE_INFINITY) return "+Inf";
	if (v === Number.NEGATIVE_INFINITY) return "-Inf";
	return String(v);
}

function labelSet(parts: (string | undefined)[]): string {
	const present = parts.filter((p) => p !== undefined && p !== "");
	return present.length === 0 ? "" : `{${present.join(",")}}`;
}

function header(out: string[], name: string, type: MetricType, help: string): void {
	out.push(`# HELP ${PREFIX}${name} ${escapeHelp(help)}`, `# TYPE ${PREFIX}${name} ${type}`);
}

/** The whole /metrics body: per-worker families with totals, then process-level gauges. */
export function renderMetrics(figures: readonly WorkerFigures[], proc: ProcessInfo): string {
	const out: string[] = [];
	const total = totalFigures(figures);
	for (const fam of WORKER_FAMILIES) {
		header(out, fam.name, fam.type, fam.help);
		for (const s of fam.series) {
			const scale = s.scale ?? 1;
			for (const w of figures) {
				out.push(
					`${PREFIX}${fam.name}${labelSet([`worker="${w.index}"`, s.labels])} ${formatValue(w[s.field] * scale)}`,
				);
			}
			out.push(`${PREFIX}${fam.name}${labelSet([s.labels])} ${formatValue(total[s.field] * scale)}`);
		}
	}
	header(out, "workers", "gauge", "Relay worker threads configured.");
	out.push(`${PREFIX}workers ${figures.length}`);
	header(out, "process_resident_memory_bytes", "gauge", "Resident set size of the relay process.");
	out.push(`${PREFIX}process_resident_memory_bytes ${formatValue(proc.rssBytes)}`);
	header(out, "process_heap_used_bytes", "gauge", "V8 heap used by the thread serving /metrics.");
	out.push(`${PREFIX}process_heap_used_bytes ${formatValue(proc.heapUsedBytes)}`);
	header(out, "process_heap_total_bytes", "gauge", "V8 heap reserved by the thread serving /metrics.");
	out.push(`${PREFIX}process_heap_total_bytes ${formatValue(proc.heapTotalBytes)}`);
	header(out, "process_uptime_seconds", "gauge", "Seconds since the relay process started.");
	out.push(`${PREFIX}process_uptime_seconds ${formatValue(proc.uptimeSeconds)}`);
	header(out, "build_info", "gauge", "Always 1; labels carry the relay and Node.js versions.");
	const version = escapeLabelValue(proc.version ?? "unknown");
	out.push(`${PREFIX}build_info{version="${version}",node="${escapeLabelValue(process.version)}"} 1`);
	return out.join("\n") + "\n";
}
