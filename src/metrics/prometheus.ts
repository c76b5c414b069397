/**
 * Renders the pool's figures in the Prometheus text exposition format (version 0.0.4), for
 * `GET /metrics`. Per-worker families carry one series per worker (`worker="N"`) and nothing else,
 * so `sum without (worker) (…)` is the relay's total. Figures that are relay-wide by nature are
 * their own families without a `worker` label (`moq_fanout_relay_*`, `moq_fanout_process_*`,
 * `moq_fanout_workers`): no family mixes per-worker series with a total, so no query double counts.
 */
import type { FieldName, WorkerFigures } from "../pool/counters.ts";
import { LATENCY_BUCKET_FIELDS } from "../pool/counters.ts";
import type { RefusalReason } from "../transport/refusals.ts";
import { LATENCY_BUCKETS } from "./latency.ts";
import type { SessionCloseReason } from "./session-closes.ts";

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
	announce_route: "refusedAnnounceRoute",
};

/** The counters field of each session close reason (metrics/session-closes.ts). */
export const SESSION_CLOSE_FIELDS: Record<SessionCloseReason, FieldName> = {
	normal: "closesNormal",
	protocol: "closesProtocol",
	unauthorized: "closesUnauthorized",
	timeout: "closesTimeout",
	fault: "closesFault",
	limit: "closesLimit",
	other: "closesOther",
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
	/** CPU time of the whole process (every thread), in seconds. */
	cpuUserSeconds?: number;
	cpuSystemSeconds?: number;
	/**
	 * The C allocator's process-wide figures (worker/native-heap.ts): bytes in use, and free bytes it
	 * keeps mapped. Absent without the native addon or glibc.
	 */
	nativeHeap?: { inUse: number; free: number } | null;
	/** The relay's version, for `moq_fanout_build_info`. */
	version?: string;
}

/** Samples `ProcessInfo` now; works on the main thread and in a worker. */
export function sampleProcessInfo(version?: string): ProcessInfo {
	const mem = process.memoryUsage();
	const cpu = process.cpuUsage();
	return {
		cpuUserSeconds: cpu.user / 1e6,
		cpuSystemSeconds: cpu.system / 1e6,
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
	{
		name: "broadcasts",
		type: "gauge",
		help: "Broadcasts the worker knows (every worker replicates every announcement: do not sum; see moq_fanout_relay_broadcasts).",
		series: [{ field: "broadcasts" }],
	},
	{
		name: "published_broadcasts",
		type: "gauge",
		help: "Broadcasts whose publishing session is on the worker (summed over workers: each broadcast once).",
		series: [{ field: "broadcastsPublished" }],
	},
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
	{
		name: "cache_bytes",
		type: "gauge",
		help: "Group cache bytes in use (each worker's rings; the total is the relay's).",
		series: [{ field: "cacheBytes" }],
	},
	{
		name: "upstream_subscriptions",
		type: "gauge",
		help: "Subscriptions toward publishers and peer relays: one per track with viewers, whatever their number.",
		series: [{ field: "upstreamSubscriptions" }],
	},
	{
		name: "route_changes_total",
		type: "counter",
		help: "Broadcasts whose upstream moved to another route without ending (cluster failover, a better route).",
		series: [{ field: "routeChanges" }],
	},
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
		name: "worker_event_loop_delay_p50_seconds",
		type: "gauge",
		help: "Median event-loop delay of the worker over the last second (lateness of a 10 ms timer).",
		series: [{ field: "eventLoopDelayP50" }],
	},
	{
		name: "worker_event_loop_delay_p99_seconds",
		type: "gauge",
		help: "99th percentile event-loop delay of the worker over the last second.",
		series: [{ field: "eventLoopDelayP99" }],
	},
	{
		name: "worker_event_loop_delay_max_seconds",
		type: "gauge",
		help: "Largest event-loop delay of the worker over the last second.",
		series: [{ field: "eventLoopDelayMax" }],
	},
	{
		name: "worker_heap_used_bytes",
		type: "gauge",
		help: "V8 heap used by the worker thread.",
		series: [{ field: "heapUsedBytes" }],
	},
	{
		name: "malloc_trims_total",
		type: "counter",
		help: "Times the relay handed the C allocator's free pages back to the kernel ([workers] malloc_trim).",
		series: [{ field: "mallocTrims" }],
	},
	{
		name: "malloc_trimmed_bytes_total",
		type: "counter",
		help: "Resident memory those trims gave back to the kernel.",
		series: [{ field: "mallocTrimmedBytes" }],
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
		name: "session_closes_total",
		type: "counter",
		help: "Sessions closed, by either side, by the reason their close code maps to.",
		series: (Object.keys(SESSION_CLOSE_FIELDS) as SessionCloseReason[]).map((reason) => ({
			field: SESSION_CLOSE_FIELDS[reason],
			labels: `reason="${reason}"`,
		})),
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
		name: "quic_sent_packets_by_path_total",
		type: "counter",
		help: "QUIC packets sent, by egress path: in GSO super-packets, alone in a sendmmsg batch, or with dgram.send.",
		series: [
			{ field: "quicPacketsGso", labels: 'path="gso"' },
			{ field: "quicPacketsBatched", labels: 'path="sendmmsg"' },
			{ field: "quicPacketsDgram", labels: 'path="dgram"' },
		],
	},
	{
		name: "quic_send_syscalls_total",
		type: "counter",
		help: "Send syscalls for QUIC packets (sendmmsg calls, one per dgram.send).",
		series: [{ field: "quicSendSyscalls" }],
	},
	{
		name: "quic_gso_fallbacks_total",
		type: "counter",
		help: "Sockets on which GSO was turned off (the kernel refused UDP_SEGMENT) or the native egress addon given up.",
		series: [{ field: "quicGsoFallbacks" }],
	},
	{
		name: "quic_send_stalls_total",
		type: "counter",
		help: "Egress batches cut short by a full socket send buffer (the rest queued in dgram).",
		series: [{ field: "quicSendStalls" }],
	},
	{
		name: "quic_recv_syscalls_total",
		type: "counter",
		help: "Receive syscalls for QUIC datagrams: recvmmsg calls that returned datagrams, or one per datagram received with dgram.",
		series: [{ field: "quicRecvSyscalls" }],
	},
	{
		name: "quic_engine_reads_total",
		type: "counter",
		help: "Datagrams of established connections that the ngtcp2 engine read itself from a receive batch, without a JS call each.",
		series: [{ field: "quicEngineReads" }],
	},
	{
		name: "quic_fanout_writes_total",
		type: "counter",
		help: "Engine calls that wrote one frame to many QUIC viewers' streams, raw QUIC and WebTransport ([server.quic] fanout_writes, ngtcp2 engine).",
		series: [{ field: "quicSharedWrites" }],
	},
	{
		name: "quic_fanout_write_streams_total",
		type: "counter",
		help: "Viewer stream writes carried by those calls: divided by quic_fanout_writes_total, the viewers served per call.",
		series: [{ field: "quicSharedWriteStreams" }],
	},
	{
		name: "quic_send_copied_bytes_total",
		type: "counter",
		help: "Stream bytes copied into the ngtcp2 engine's send buffers: with fanout_writes, once per frame for all its viewers.",
		series: [{ field: "quicSendCopiedBytes" }],
	},
	{
		name: "quic_send_buffer_bytes",
		type: "gauge",
		help: "Stream bytes the ngtcp2 engine holds until the peers acknowledge them (its send buffers' memory).",
		series: [{ field: "quicSendBufferBytes" }],
	},
	{
		name: "quic_udp_recv_buffer_bytes",
		type: "gauge",
		help: "The QUIC socket's receive buffer (SO_RCVBUF) as the kernel reports it: twice what it granted on Linux, where net.core.rmem_max caps [server.quic] udp_recv_buffer. A burst of ACKs beyond it is dropped.",
		series: [{ field: "quicUdpRecvBufferBytes" }],
	},
	{
		name: "quic_udp_send_buffer_bytes",
		type: "gauge",
		help: "The QUIC socket's send buffer (SO_SNDBUF) as the kernel reports it: twice what it granted on Linux, where net.core.wmem_max caps [server.quic] udp_send_buffer.",
		series: [{ field: "quicUdpSendBufferBytes" }],
	},
	{
		name: "quic_udp_recv_queue_bytes",
		type: "gauge",
		help: "Bytes waiting in the QUIC socket's kernel receive queue when last read (once a second; buffer truesize, what counts against the receive buffer).",
		series: [{ field: "quicUdpRecvQueueBytes" }],
	},
	{
		name: "quic_udp_recv_drops_total",
		type: "counter",
		help: "Datagrams the kernel dropped on arrival at the QUIC socket, nearly always because its receive queue was full: ACKs and media alike, with no error to the relay. Rising in bursts: raise [server.quic] udp_recv_buffer (and net.core.rmem_max), or add workers.",
		series: [{ field: "quicUdpRecvDrops" }],
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

function header(out: string[], name: string, type: MetricType | "histogram", help: string): void {
	out.push(`# HELP ${PREFIX}${name} ${escapeHelp(help)}`, `# TYPE ${PREFIX}${name} ${type}`);
}

/** The fan-out latency histogram's name (per worker), and the relay-wide merge's. */
export const LATENCY_FAMILY = "fanout_latency_seconds";
export const RELAY_LATENCY_FAMILY = "relay_fanout_latency_seconds";

/** `le` label values of the latency buckets, +Inf last (Go float syntax, as Prometheus writes them). */
const LE = [...LATENCY_BUCKETS.map((b) => formatValue(b)), "+Inf"];

/**
 * One histogram's samples: cumulative `_bucket`s, `_sum` and `_count`. The count is the +Inf
 * bucket by construction (a scrape racing a publish still renders a consistent histogram).
 */
function histogram(out: string[], name: string, labels: string | undefined, buckets: number[], sumSeconds: number) {
	let cumulative = 0;
	for (let i = 0; i < buckets.length; i++) {
		cumulative += buckets[i];
		out.push(`${PREFIX}${name}_bucket${labelSet([labels, `le="${LE[i]}"`])} ${formatValue(cumulative)}`);
	}
	out.push(`${PREFIX}${name}_sum${labelSet([labels])} ${formatValue(sumSeconds)}`);
	out.push(`${PREFIX}${name}_count${labelSet([labels])} ${formatValue(cumulative)}`);
}

/** A worker's latency bucket counts (not cumulative), +Inf last. */
function latencyBuckets(w: WorkerFigures): number[] {
	return LATENCY_BUCKET_FIELDS.map((f) => w[f]);
}

/**
 * The whole /metrics body: per-worker families, the per-worker latency histogram, then the
 * relay-wide families (each counted once per relay) and process-level gauges.
 */
export function renderMetrics(figures: readonly WorkerFigures[], proc: ProcessInfo): string {
	const out: string[] = [];
	for (const fam of WORKER_FAMILIES) {
		header(out, fam.name, fam.type, fam.help);
		for (const s of fam.series) {
			const scale = s.scale ?? 1;
			for (const w of figures) {
				out.push(
					`${PREFIX}${fam.name}${labelSet([`worker="${w.index}"`, s.labels])} ${formatValue(w[s.field] * scale)}`,
				);
			}
		}
	}
	const latencyHelp =
		"Time from a frame's arrival from its publisher to its handing to a viewer's transport, per frame and viewer";
	header(out, LATENCY_FAMILY, "histogram", `${latencyHelp}, on the worker serving the viewer.`);
	const merged = new Array<number>(LATENCY_BUCKET_FIELDS.length).fill(0);
	let mergedSum = 0;
	for (const w of figures) {
		const b = latencyBuckets(w);
		histogram(out, LATENCY_FAMILY, `worker="${w.index}"`, b, w.latencySumMicros / 1e6);
		for (let i = 0; i < b.length; i++) merged[i] += b[i];
		mergedSum += w.latencySumMicros;
	}
	header(out, RELAY_LATENCY_FAMILY, "histogram", `${latencyHelp}, merged over the workers.`);
	histogram(out, RELAY_LATENCY_FAMILY, undefined, merged, mergedSum / 1e6);
	header(
		out,
		"relay_broadcasts",
		"gauge",
		"Broadcasts on the relay, each counted once (by the worker holding its publisher).",
	);
	let published = 0;
	for (const w of figures) published += w.broadcastsPublished;
	out.push(`${PREFIX}relay_broadcasts ${formatValue(published)}`);
	header(out, "workers", "gauge", "Relay worker threads configured.");
	out.push(`${PREFIX}workers ${figures.length}`);
	header(out, "process_resident_memory_bytes", "gauge", "Resident set size of the relay process.");
	out.push(`${PREFIX}process_resident_memory_bytes ${formatValue(proc.rssBytes)}`);
	if (proc.cpuUserSeconds !== undefined && proc.cpuSystemSeconds !== undefined) {
		header(out, "process_cpu_seconds_total", "counter", "CPU time of the whole relay process (all threads), by mode.");
		out.push(`${PREFIX}process_cpu_seconds_total{mode="user"} ${formatValue(proc.cpuUserSeconds)}`);
		out.push(`${PREFIX}process_cpu_seconds_total{mode="system"} ${formatValue(proc.cpuSystemSeconds)}`);
	}
	header(out, "process_heap_used_bytes", "gauge", "V8 heap used by the thread serving /metrics.");
	out.push(`${PREFIX}process_heap_used_bytes ${formatValue(proc.heapUsedBytes)}`);
	header(out, "process_heap_total_bytes", "gauge", "V8 heap reserved by the thread serving /metrics.");
	out.push(`${PREFIX}process_heap_total_bytes ${formatValue(proc.heapTotalBytes)}`);
	if (proc.nativeHeap) {
		header(out, "native_heap_in_use_bytes", "gauge", "Bytes the relay process holds from the C allocator (malloc).");
		out.push(`${PREFIX}native_heap_in_use_bytes ${formatValue(proc.nativeHeap.inUse)}`);
		header(
			out,
			"native_heap_free_bytes",
			"gauge",
			"Free bytes the C allocator keeps mapped (resident until trimmed, see [workers] malloc_trim).",
		);
		out.push(`${PREFIX}native_heap_free_bytes ${formatValue(proc.nativeHeap.free)}`);
	}
	header(out, "process_uptime_seconds", "gauge", "Seconds since the relay process started.");
	out.push(`${PREFIX}process_uptime_seconds ${formatValue(proc.uptimeSeconds)}`);
	header(out, "build_info", "gauge", "Always 1; labels carry the relay and Node.js versions.");
	const version = escapeLabelValue(proc.version ?? "unknown");
	out.push(`${PREFIX}build_info{version="${version}",node="${escapeLabelValue(process.version)}"} 1`);
	return out.join("\n") + "\n";
}
