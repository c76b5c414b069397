/**
 * Per-worker figures in one SharedArrayBuffer, readable from any thread without messaging.
 *
 * Layout: a Float64Array of `count` regions, one per worker, each `STRIDE` slots (a multiple of 8
 * slots = 64 bytes, so two workers' hot slots never share a cache line). Slot `i` of a region is
 * the field at position `i` of `FIELDS`.
 *
 * Writers: every slot has exactly one writing thread. The worker owns all slots of its region
 * except `restarts`, which only the main thread writes. With a single writer, plain `+=` on the
 * typed array is exact (no lost updates) and costs one load and one store: no Atomics on the hot path.
 *
 * Readers (the main thread, or any worker serving /metrics) read plain values. The ECMAScript
 * memory model only promises tear-free non-atomic access for integer element types, so a Float64
 * read racing a write is allowed to tear in theory; V8 emits one aligned 8-byte load/store for
 * Float64Array elements on x64 and arm64, which the hardware performs as a single access, so in
 * practice a reader sees the old or the new value. Even a torn read would only skew one scrape:
 * the writer never reads its slot back from a torn value (it is the only writer), so the stored
 * counter stays exact. Float64 holds integers exactly up to 2^53: a worker moving 10 Gbit/s would
 * need ~83 days to lose byte precision. A replacement worker keeps its predecessor's counters
 * (only gauges are zeroed, see `resetGauges`), so counters stay monotonic across restarts.
 */

import { type EventLoopUtilization, monitorEventLoopDelay, performance } from "node:perf_hooks";
import { getHeapStatistics } from "node:v8";

/** How a figure behaves: counters only go up; gauges are a current value. */
export type FieldKind = "counter" | "gauge";

/** How per-worker values combine into the pool total. */
export type FieldTotal = "sum" | "mean";

export interface FieldSpec {
	readonly name: FieldName;
	readonly kind: FieldKind;
	readonly total: FieldTotal;
}

/** Every field, in slot order. Append only: the position is the slot index. */
export const FIELDS = [
	{ name: "sessionsQuic", kind: "gauge", total: "sum" },
	{ name: "sessionsWebTransport", kind: "gauge", total: "sum" },
	{ name: "sessionsWebSocket", kind: "gauge", total: "sum" },
	{ name: "subscriptions", kind: "gauge", total: "sum" },
	{ name: "broadcasts", kind: "gauge", total: "sum" },
	{ name: "tracks", kind: "gauge", total: "sum" },
	{ name: "bytesIn", kind: "counter", total: "sum" },
	{ name: "bytesOut", kind: "counter", total: "sum" },
	{ name: "packetsIn", kind: "counter", total: "sum" },
	{ name: "packetsOut", kind: "counter", total: "sum" },
	{ name: "groupsIn", kind: "counter", total: "sum" },
	{ name: "groupsOut", kind: "counter", total: "sum" },
	{ name: "groupsDropped", kind: "counter", total: "sum" },
	{ name: "framesIn", kind: "counter", total: "sum" },
	{ name: "cacheBytes", kind: "gauge", total: "sum" },
	{ name: "upstreamSubscriptions", kind: "gauge", total: "sum" },
	{ name: "routeChanges", kind: "counter", total: "sum" },
	{ name: "cpuUserMicros", kind: "counter", total: "sum" },
	{ name: "cpuSystemMicros", kind: "counter", total: "sum" },
	{ name: "eventLoopUtilization", kind: "gauge", total: "mean" },
	{ name: "heapUsedBytes", kind: "gauge", total: "sum" },
	{ name: "restarts", kind: "counter", total: "sum" },
	{ name: "refusedSessions", kind: "counter", total: "sum" },
	{ name: "refusedTcpConnections", kind: "counter", total: "sum" },
	{ name: "refusedConnectionsPerIp", kind: "counter", total: "sum" },
	{ name: "refusedHandshakeRate", kind: "counter", total: "sum" },
	{ name: "refusedHandshakes", kind: "counter", total: "sum" },
	{ name: "refusedHandshakesPerIp", kind: "counter", total: "sum" },
	{ name: "refusedQuicConnections", kind: "counter", total: "sum" },
	{ name: "refusedRetryToken", kind: "counter", total: "sum" },
	{ name: "refusedBroadcasts", kind: "counter", total: "sum" },
	{ name: "refusedSubscriptions", kind: "counter", total: "sum" },
	{ name: "refusedAnnounceRequests", kind: "counter", total: "sum" },
	{ name: "refusedAuth", kind: "counter", total: "sum" },
	{ name: "refusedHeaderTimeout", kind: "counter", total: "sum" },
	{ name: "refusedIdleTimeout", kind: "counter", total: "sum" },
	{ name: "refusedProtocol", kind: "counter", total: "sum" },
	{ name: "refusedAnnounceRoute", kind: "counter", total: "sum" },
	{ name: "sessionFaults", kind: "counter", total: "sum" },
	{ name: "quicRetries", kind: "counter", total: "sum" },
	{ name: "quicHandshakes", kind: "gauge", total: "sum" },
	{ name: "tcpConnections", kind: "gauge", total: "sum" },
	// Broadcasts whose publishing session is on this worker: summed over workers, each broadcast once.
	{ name: "broadcastsPublished", kind: "gauge", total: "sum" },
	// Session closes by reason (metrics/session-closes.ts).
	{ name: "closesNormal", kind: "counter", total: "sum" },
	{ name: "closesProtocol", kind: "counter", total: "sum" },
	{ name: "closesUnauthorized", kind: "counter", total: "sum" },
	{ name: "closesTimeout", kind: "counter", total: "sum" },
	{ name: "closesFault", kind: "counter", total: "sum" },
	{ name: "closesLimit", kind: "counter", total: "sum" },
	{ name: "closesOther", kind: "counter", total: "sum" },
	// Event-loop delay over the last sampling interval, in seconds (sampled with the CPU figures).
	{ name: "eventLoopDelayP50", kind: "gauge", total: "mean" },
	{ name: "eventLoopDelayP99", kind: "gauge", total: "mean" },
	{ name: "eventLoopDelayMax", kind: "gauge", total: "mean" },
	// Fan-out latency histogram (metrics/latency.ts): per-bucket counts, not cumulative, in the
	// order of LATENCY_BUCKETS, then +Inf; and the sum of the samples in microseconds.
	{ name: "latencyBucket0", kind: "counter", total: "sum" },
	{ name: "latencyBucket1", kind: "counter", total: "sum" },
	{ name: "latencyBucket2", kind: "counter", total: "sum" },
	{ name: "latencyBucket3", kind: "counter", total: "sum" },
	{ name: "latencyBucket4", kind: "counter", total: "sum" },
	{ name: "latencyBucket5", kind: "counter", total: "sum" },
	{ name: "latencyBucket6", kind: "counter", total: "sum" },
	{ name: "latencyBucket7", kind: "counter", total: "sum" },
	{ name: "latencyBucket8", kind: "counter", total: "sum" },
	{ name: "latencyBucket9", kind: "counter", total: "sum" },
	{ name: "latencyBucket10", kind: "counter", total: "sum" },
	{ name: "latencyBucket11", kind: "counter", total: "sum" },
	{ name: "latencyBucketInf", kind: "counter", total: "sum" },
	{ name: "latencySumMicros", kind: "counter", total: "sum" },
	// QUIC egress by path (quic/sender.ts): GSO super-packets, the addon's single packets, dgram.send.
	{ name: "quicPacketsGso", kind: "counter", total: "sum" },
	{ name: "quicPacketsBatched", kind: "counter", total: "sum" },
	{ name: "quicPacketsDgram", kind: "counter", total: "sum" },
	{ name: "quicSendSyscalls", kind: "counter", total: "sum" },
	{ name: "quicGsoFallbacks", kind: "counter", total: "sum" },
	{ name: "quicSendStalls", kind: "counter", total: "sum" },
	// QUIC ingress (quic/receiver.ts): recvmmsg calls, or one per datagram dgram delivered.
	{ name: "quicRecvSyscalls", kind: "counter", total: "sum" },
	// Datagrams the ngtcp2 engine read itself for established connections (server.ts engineIntake).
	{ name: "quicEngineReads", kind: "counter", total: "sum" },
	// Fan-out writes (quic/shared-writer.ts): engine calls, and the viewer stream writes they carried.
	{ name: "quicSharedWrites", kind: "counter", total: "sum" },
	{ name: "quicSharedWriteStreams", kind: "counter", total: "sum" },
	// The ngtcp2 engine's send buffers (quic/engine.ts SendBufferStats): bytes copied in, bytes held.
	{ name: "quicSendCopiedBytes", kind: "counter", total: "sum" },
	{ name: "quicSendBufferBytes", kind: "gauge", total: "sum" },
	// The QUIC socket's kernel buffers as the kernel reports them ([server.quic] udp_recv_buffer / udp_send_buffer).
	{ name: "quicUdpRecvBufferBytes", kind: "gauge", total: "sum" },
	{ name: "quicUdpSendBufferBytes", kind: "gauge", total: "sum" },
	// The QUIC socket's receive queue (quic/receive-queue.ts): bytes waiting, datagrams the kernel dropped.
	{ name: "quicUdpRecvQueueBytes", kind: "gauge", total: "sum" },
	{ name: "quicUdpRecvDrops", kind: "counter", total: "sum" },
	// The C allocator's periodic trim (worker/native-heap.ts): trims run, RSS bytes given back.
	{ name: "mallocTrims", kind: "counter", total: "sum" },
	{ name: "mallocTrimmedBytes", kind: "counter", total: "sum" },
] as const satisfies readonly { name: string; kind: FieldKind; total: FieldTotal }[];

export type FieldName = (typeof FIELDS)[number]["name"];

/** The fan-out latency bucket fields, in bucket order (+Inf last). */
export const LATENCY_BUCKET_FIELDS = [
	"latencyBucket0",
	"latencyBucket1",
	"latencyBucket2",
	"latencyBucket3",
	"latencyBucket4",
	"latencyBucket5",
	"latencyBucket6",
	"latencyBucket7",
	"latencyBucket8",
	"latencyBucket9",
	"latencyBucket10",
	"latencyBucket11",
	"latencyBucketInf",
] as const satisfies readonly FieldName[];

/** Event-loop delay monitor resolution: the timer whose lateness is measured fires this often. */
export const EVENT_LOOP_DELAY_RESOLUTION_MS = 10;

/** Per-thread CPU time (Node ≥ 22.19 / 23.9); see WorkerCounters.sample. */
const hasThreadCpuUsage = typeof (process as { threadCpuUsage?: unknown }).threadCpuUsage === "function";

/** Slot index of each field: `counters.slots[Field.bytesIn] += n`. */
export const Field = Object.freeze(Object.fromEntries(FIELDS.map((f, i) => [f.name, i]))) as {
	readonly [K in FieldName]: number;
};

/** One worker's figures as plain numbers (a snapshot). */
export type WorkerFigures = { index: number } & { [K in FieldName]: number };

/** Slots per worker region, rounded up to a 64-byte cache line. */
export const STRIDE = Math.ceil(FIELDS.length / 8) * 8;

/** Bytes of SharedArrayBuffer needed for `count` workers. */
export function countersByteLength(count: number): number {
	return count * STRIDE * Float64Array.BYTES_PER_ELEMENT;
}

/** Allocates the shared block for `count` workers (main thread, once). */
export function createCountersBuffer(count: number): SharedArrayBuffer {
	if (!Number.isInteger(count) || count < 1) throw new RangeError("count must be a positive integer");
	return new SharedArrayBuffer(countersByteLength(count));
}

function workerCount(buffer: SharedArrayBuffer): number {
	const count = buffer.byteLength / (STRIDE * Float64Array.BYTES_PER_ELEMENT);
	if (!Number.isInteger(count) || count < 1) throw new RangeError("not a counters buffer: wrong size");
	return count;
}

/**
 * The writer inside one worker. Hot path: `c.slots[Field.framesIn]++` or `c.add(Field.bytesOut, n)`;
 * both are a typed-array slot update (the method inlines). Sampled figures (thread CPU, event-loop
 * utilisation, heap) are refreshed by `startSampling()` once a second.
 */
export class WorkerCounters {
	/** This worker's region: index with `Field.*`. */
	readonly slots: Float64Array;
	readonly index: number;
	#timer: ReturnType<typeof setInterval> | null = null;
	#cpuBaseUser = 0;
	#cpuBaseSystem = 0;
	#elu: EventLoopUtilization | null = null;
	#delay: ReturnType<typeof monitorEventLoopDelay> | null = null;

	constructor(buffer: SharedArrayBuffer, index: number) {
		const count = workerCount(buffer);
		if (!Number.isInteger(index) || index < 0 || index >= count)
			throw new RangeError(`worker index ${index} out of range`);
		this.index = index;
		this.slots = new Float64Array(buffer, index * STRIDE * Float64Array.BYTES_PER_ELEMENT, STRIDE);
		// A replacement worker continues its predecessor's CPU totals: this thread's own usage starts at 0.
		this.#cpuBaseUser = this.slots[Field.cpuUserMicros];
		this.#cpuBaseSystem = this.slots[Field.cpuSystemMicros];
	}

	add(field: number, n: number): void {
		this.slots[field] += n;
	}

	set(field: number, value: number): void {
		this.slots[field] = value;
	}

	get(field: number): number {
		return this.slots[field];
	}

	/** Refreshes the sampled figures now (also called by the sampling timer). */
	sample(): void {
		// process.threadCpuUsage() exists from Node 22.19 / 23.9. On 22.12–22.18 a worker's own CPU
		// time cannot be read (process.cpuUsage() is the whole process's, which would count every
		// worker N times): the per-worker CPU figures then stay at 0 rather than lie.
		if (hasThreadCpuUsage) {
			const cpu = process.threadCpuUsage();
			this.slots[Field.cpuUserMicros] = this.#cpuBaseUser + cpu.user;
			this.slots[Field.cpuSystemMicros] = this.#cpuBaseSystem + cpu.system;
		}
		const now = performance.eventLoopUtilization();
		// Utilisation over the last interval, not since thread start, so a busy minute shows up.
		this.slots[Field.eventLoopUtilization] = this.#elu
			? performance.eventLoopUtilization(now, this.#elu).utilization
			: now.utilization;
		this.#elu = now;
		// Per isolate: in a worker this is the worker's own heap (process.memoryUsage() also pays for RSS).
		this.slots[Field.heapUsedBytes] = getHeapStatistics().used_heap_size;
		const delay = this.#delay;
		if (delay && delay.count > 0) {
			// The monitor records each interval between its timer's runs (ns); the delay is what exceeds
			// the resolution. Over the last sampling interval only: reset after reading.
			const base = EVENT_LOOP_DELAY_RESOLUTION_MS * 1e6;
			const late = (ns: number) => Math.max(0, ns - base) / 1e9;
			this.slots[Field.eventLoopDelayP50] = late(delay.percentile(50));
			this.slots[Field.eventLoopDelayP99] = late(delay.percentile(99));
			this.slots[Field.eventLoopDelayMax] = late(delay.max);
			delay.reset();
		}
	}

	/** Samples every `intervalMs` (default 1 s) on an unref'd timer; idempotent. */
	startSampling(intervalMs = 1000): void {
		if (this.#timer) return;
		this.#delay = monitorEventLoopDelay({ resolution: EVENT_LOOP_DELAY_RESOLUTION_MS });
		this.#delay.enable();
		this.sample();
		this.#timer = setInterval(() => this.sample(), intervalMs);
		this.#timer.unref();
	}

	stopSampling(): void {
		if (this.#timer) clearInterval(this.#timer);
		this.#timer = null;
		this.#delay?.disable();
		this.#delay = null;
	}
}

/** Reads every worker's region; usable from any thread holding the buffer. */
export class CountersReader {
	readonly buffer: SharedArrayBuffer;
	readonly count: number;
	readonly #all: Float64Array;

	constructor(buffer: SharedArrayBuffer) {
		this.buffer = buffer;
		this.count = workerCount(buffer);
		this.#all = new Float64Array(buffer);
	}

	/** A snapshot of one worker's figures. */
	read(index: number): WorkerFigures {
		const base = index * STRIDE;
		const out = { index } as WorkerFigures;
		for (let i = 0; i < FIELDS.length; i++) out[FIELDS[i].name] = this.#all[base + i];
		return out;
	}

	readAll(): WorkerFigures[] {
		const out: WorkerFigures[] = [];
		for (let w = 0; w < this.count; w++) out.push(this.read(w));
		return out;
	}

	/** Main thread only: counts a replacement of worker `index`. */
	addRestart(index: number): void {
		this.#all[index * STRIDE + Field.restarts] += 1;
	}

	/**
	 * Main thread only, between a worker's exit and its replacement's start: zeroes the gauges the
	 * dead thread owned (its sessions and caches are gone) and keeps the counters, so they stay
	 * monotonic across replacements. Nothing writes the region at that moment.
	 */
	resetGauges(index: number): void {
		const base = index * STRIDE;
		for (let i = 0; i < FIELDS.length; i++) if (FIELDS[i].kind === "gauge") this.#all[base + i] = 0;
	}
}

/** Combines per-worker snapshots into pool totals (sums, or means for ratios). */
export function totalFigures(figures: readonly WorkerFigures[]): WorkerFigures {
	const out = { index: -1 } as WorkerFigures;
	for (const f of FIELDS) {
		let sum = 0;
		for (const w of figures) sum += w[f.name];
		out[f.name] = f.total === "mean" && figures.length > 0 ? sum / figures.length : sum;
	}
	return out;
}
