/**
 * One sweep: a relay with k workers on k cores, a publisher, load generators, and subscriber counts
 * stepped up until the p99 target is crossed, groups are lost, or the generator saturates.
 * @module
 */

import { availableParallelism } from "node:os";
import * as hdr from "hdr-histogram-js";
import type { BenchOptions, Engine } from "./args.ts";
import { Child } from "./children.ts";
import { type RelayTarget, resolveTarget } from "./connect.ts";
import { metric, perWorker, type Sample, scrape } from "./metrics.ts";
import { frameSizes, type TrackShape } from "./payload.ts";
import { machineCpuSample, processCpuSeconds, processRss, udpDrops } from "./procstat.ts";
import type { FromGenerator, FromPublisher, GeneratorReport, ToGenerator, ToPublisher } from "./protocol.ts";
import { type RelayProcess, startRelay } from "./relay-process.ts";

/** A generator process above this share of a core is the bottleneck, not the relay. */
export const GENERATOR_SATURATED = 0.9;

export interface Latency {
	p50: number;
	p90: number;
	p99: number;
	p999: number;
	max: number;
}

export interface StepResult {
	subscribers: number;
	/** Subscribers actually connected and subscribed. */
	connected: number;
	windowMs: number;
	/** The latency the target judges: `arrivalLatencyMs` or `readLatencyMs`, as `latencyAt` says. */
	latencyMs: Latency;
	/** Which one `latencyMs` is (absent in documents from before 2026-12-05: "read"). */
	latencyAt?: "arrival" | "read";
	/** Publish → the generator read the frame's last datagram (before 2026-12-05: `latencyMs`). */
	readLatencyMs?: Latency;
	/** Publish → the kernel's receive time of that datagram; null when a generator did not report it. */
	arrivalLatencyMs?: Latency | null;
	deliveredMbps: number;
	framesReceived: number;
	framesExpected: number;
	groupsComplete: number;
	groupsLost: number;
	silentSubscribers: number;
	failures: number;
	/** Relay CPU: cores busy (CPU s / s), and that divided by k. Null when unmeasurable. */
	relayCpuCores: number | null;
	relayCpuPerCore: number | null;
	relayCpuSource: "proc" | "metrics" | "none";
	/** Relay egress packets: counted by the load generators' sockets during the window. */
	packetsOut: number | null;
	/** The same from the relay's /metrics (its counters are published once a second: ±1 s of packets). */
	packetsOutMetrics: number | null;
	/** Relay process CPU (every thread) per egress packet, µs. */
	usPerPacket: number | null;
	/** Worker threads' CPU (from /metrics, sampled once a second) per egress packet, µs. */
	workerUsPerPacket: number | null;
	/** usPerPacket ÷ the bare pump's µs per packet measured in the same bench (median over runs); null without it. */
	ratioToBare: number | null;
	/** Per worker: CPU cores busy, egress packets/s, sessions. */
	workers: { worker: number; cpuCores: number | null; packetsPerSec: number | null; sessions: number | null }[];
	rssBytes: number | null;
	/**
	 * UDP datagrams the kernel dropped during the window (receive buffer full), on the relay's port
	 * and on every other socket of the machine (the load generators, mostly). Local relays only.
	 */
	udpDrops: { relay: number; other: number } | null;
	/** Each generator process's CPU share of one core, and the publisher's. */
	generatorCpu: number[];
	machineBusy: number | null;
	valid: boolean;
	invalidReason: string | null;
	pass: boolean;
	failReason: string | null;
	/** A step of the refinement (refineSweep): measured in a fresh relay after the sweep failed. */
	refine?: boolean;
}

export interface SweepResult {
	run: number;
	/** The relay's QUIC engine (absent in documents from before the engine comparison: quiche). */
	engine?: Engine;
	cores: number;
	/** Relay worker threads (the sweep: one per core; the worker runs: 1 or 2 on one core). */
	workers: number;
	steps: StepResult[];
	/** Largest passing subscriber count (0 when the first step failed). */
	capacity: number;
	/** Why the sweep stopped. */
	stoppedBy: "target" | "loss" | "generator" | "max" | "error";
	error: string | null;
	/** The counts the refinement tried between the last pass and the first failure (absent: none). */
	refined?: number[];
	/** Why the refinement did not finish (its relay failed); the capacity is then the sweep's. */
	refineError?: string | null;
}

export type Progress = (line: string, final: boolean) => void;

/** Cleanups of the sweep in progress (children and relay), for an interrupted bench. */
const active = new Set<() => Promise<void>>();

/** Stops whatever a running sweep started. */
export async function stopAll(): Promise<void> {
	await Promise.all([...active].map((stop) => stop()));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function cpuList(from: number, count: number): number[] {
	return Array.from({ length: count }, (_, i) => from + i);
}

function workerCpu(samples: Sample[] | null): Map<number, number> {
	return samples ? perWorker(samples, "moq_fanout_worker_cpu_seconds_total") : new Map();
}

/** A fixed-load relay run instead of a sweep: these workers, these subscriber counts. */
export interface SweepOverride {
	workers: number;
	steps: number[];
	/** The counts are a sweep's refinement: labelled and reported as sweep steps. */
	refine?: boolean;
}

/**
 * `n` evenly spaced subscriber counts strictly between a sweep's last passing count and its first
 * failing one, ascending, without repeats (fewer when the gap is narrow).
 */
export function refineSteps(pass: number, fail: number, n: number): number[] {
	const out: number[] = [];
	for (let k = 1; k <= n; k++) {
		const count = Math.round(pass + ((fail - pass) * k) / (n + 1));
		if (count > pass && count < fail && out[out.length - 1] !== count) out.push(count);
	}
	return out;
}

/**
 * Narrows a sweep that failed a step, or whose last step the load generators limited: the counts
 * of refineSteps in a fresh relay, upward until one fails. The sweep's capacity becomes the largest
 * count that passed; the steps join its own (marked `refine`). A refinement step that fails on the
 * target or on loss ends the lower bound of a generator-limited sweep; a generator-limited or
 * broken refinement leaves the sweep's verdict as it was.
 */
export async function refineSweep(
	opts: BenchOptions,
	sweep: SweepResult,
	progress: Progress,
	engine: Engine = "quiche",
): Promise<void> {
	const stopped = sweep.stoppedBy;
	if (
		opts.refine === 0 ||
		sweep.error !== null ||
		(stopped !== "target" && stopped !== "loss" && stopped !== "generator")
	)
		return;
	const failed = sweep.steps[sweep.steps.length - 1]?.subscribers;
	if (failed === undefined) return;
	const steps = refineSteps(sweep.capacity, failed, opts.refine);
	if (steps.length === 0) return;
	sweep.refined = steps;
	const r = await runSweep(
		opts,
		sweep.cores,
		sweep.run,
		progress,
		{ workers: sweep.workers, steps, refine: true },
		engine,
	);
	for (const step of r.steps) sweep.steps.push({ ...step, refine: true });
	sweep.refineError = r.error;
	if (r.error !== null) return;
	if (r.capacity > sweep.capacity) sweep.capacity = r.capacity;
	if (r.stoppedBy === "target" || r.stoppedBy === "loss") sweep.stoppedBy = r.stoppedBy;
}

export async function runSweep(
	opts: BenchOptions,
	cores: number,
	run: number,
	progress: Progress,
	override: SweepOverride | null = null,
	engine: Engine = "quiche",
): Promise<SweepResult> {
	const workers = override?.workers ?? cores;
	const trial = override !== null && override.refine !== true;
	const label = trial
		? `run ${run}/${opts.runs} · relay ${engine.padEnd(6)}, ${cores} core, ${workers} worker${workers > 1 ? "s" : " "}`
		: `${engine} ${cores} core(s)${override?.refine ? " · refine" : ""}`;
	const cpus = availableParallelism();
	const relayCores = cpuList(0, Math.min(cores, cpus));
	// Load on the cores the relay does not use; on a machine without spare cores, share them (the
	// generator check below then decides whether a step measured the relay or the generator).
	const spare = cpus > cores ? cpuList(cores, cpus - cores) : cpuList(0, cpus);
	const shape: TrackShape = {
		bitrate: opts.bitrate,
		fps: opts.fps,
		groupMs: opts.groupMs,
		keyframeWeight: opts.keyframeWeight,
	};
	let relay: RelayProcess | null = null;
	let target: RelayTarget;
	if (opts.url === null) {
		relay = await startRelay(relayCores, { workers, engine });
		target = { host: "127.0.0.1", port: relay.port, path: "/bench", fingerprint: relay.fingerprint };
	} else {
		target = await resolveTarget(opts.url);
	}
	const publisher = new Child<ToPublisher, FromPublisher>("publisher-child.ts", spare);
	const generators = Array.from(
		{ length: opts.generators },
		() =>
			new Child<ToGenerator, FromGenerator>(
				opts.generator === "native" ? "native-generator-child.ts" : "generator-child.ts",
				spare,
			),
	);
	const result: SweepResult = {
		run,
		engine,
		cores,
		workers,
		steps: [],
		capacity: 0,
		stoppedBy: "max",
		error: null,
	};
	const kill = async () => {
		for (const g of generators) g.kill();
		publisher.kill();
		await relay?.stop();
	};
	active.add(kill);
	try {
		await publisher.request({ type: "start", target, shape }, "ready", 20_000);
		await Promise.all(
			generators.map((g) => g.request({ type: "init", target, sockets: opts.sockets, groupMs: opts.groupMs }, "ready")),
		);
		const counts = generators.map(() => 0);
		for (const n of override?.steps ?? opts.steps) {
			// Spread the new subscribers evenly over the generators.
			const add = generators.map(() => 0);
			for (let i = counts.reduce((a, b) => a + b, 0); i < n; i++) {
				const g = i % generators.length;
				add[g]++;
				counts[g]++;
			}
			progress(`  ${label} · ${String(n).padStart(5)} subscribers · connecting`, false);
			const added = await Promise.all(
				generators.map((g, i) => (add[i] > 0 ? g.request({ type: "add", count: add[i] }, "added") : null)),
			);
			const failedToAdd = added.reduce((a, r) => a + (r?.failed ?? 0), 0);
			const addError = added.find((r) => r?.error)?.error;
			progress(`  ${label} · ${String(n).padStart(5)} subscribers · settling`, false);
			await sleep(opts.warmupMs);
			const step = await measure(
				opts,
				n,
				relay,
				target,
				generators,
				label,
				cores,
				cpus > cores ? spare.length : 0,
				progress,
			);
			if (failedToAdd > 0) {
				step.valid = false;
				step.invalidReason = `${failedToAdd} subscribers failed to connect${addError ? ` (${addError})` : ""}`;
				step.pass = false;
			}
			result.steps.push(step);
			progress(trial ? trialLine(label, step) : stepLine(label, step), true);
			if (!step.valid) {
				result.stoppedBy = "generator";
				break;
			}
			if (!step.pass) {
				result.stoppedBy = step.groupsLost > 0 || step.silentSubscribers > 0 ? "loss" : "target";
				break;
			}
			result.capacity = n;
		}
	} catch (err) {
		result.error = (err as Error).message + (relay ? `\nrelay log:\n${relay.log()}` : "");
		result.stoppedBy = "error";
	} finally {
		for (const g of generators) g.send({ type: "stop" });
		publisher.send({ type: "stop" });
		await sleep(200);
		await kill();
		active.delete(kill);
	}
	return result;
}

async function measure(
	opts: BenchOptions,
	subscribers: number,
	relay: RelayProcess | null,
	target: RelayTarget,
	generators: Child<ToGenerator, FromGenerator>[],
	label: string,
	cores: number,
	/** Cores reserved for the load (0: it shares the relay's cores). */
	loadCores: number,
	progress: Progress,
): Promise<StepResult> {
	const m0 = await scrape(target.host, target.port);
	const mach0 = machineCpuSample();
	const drops0 = relay ? udpDrops(relay.port) : null;
	await Promise.all(generators.map((g) => g.request({ type: "reset" }, "reset")));
	const cpu0 = relay ? processCpuSeconds(relay.pid) : null;
	const t0 = performance.now();
	const spinner = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏";
	for (let i = 0; performance.now() - t0 < opts.windowMs; i++) {
		const left = Math.ceil((opts.windowMs - (performance.now() - t0)) / 1000);
		progress(
			`  ${label} · ${String(subscribers).padStart(5)} subscribers · measuring ${spinner[i % spinner.length]} ${left}s`,
			false,
		);
		await sleep(Math.min(250, Math.max(0, opts.windowMs - (performance.now() - t0))));
	}
	const cpu1 = relay ? processCpuSeconds(relay.pid) : null;
	const elapsed = (performance.now() - t0) / 1000;
	const reports = (await Promise.all(
		generators.map((g) => g.request({ type: "report" }, "report")),
	)) as GeneratorReport[];
	const mach1 = machineCpuSample();
	const drops1 = relay ? udpDrops(relay.port) : null;
	const m1 = await scrape(target.host, target.port);

	const readLatencyMs = mergedLatency(reports.map((r) => r.histogram));
	const arrivals = reports.map((r) => r.arrivalHistogram);
	const arrivalLatencyMs = arrivals.every((h) => h !== undefined) ? mergedLatency(arrivals as string[]) : null;
	if (opts.latencyAt === "arrival" && arrivalLatencyMs === null)
		throw new Error("--latency-at arrival: a load generator reported no receive timestamps");
	const latencyAt = opts.latencyAt;
	const latencyMs = latencyAt === "arrival" && arrivalLatencyMs !== null ? arrivalLatencyMs : readLatencyMs;
	const sum = (f: (r: GeneratorReport) => number) => reports.reduce((a, r) => a + f(r), 0);
	const framesReceived = sum((r) => r.frames);
	const connected = sum((r) => r.subscribers);

	// Relay CPU: /proc when local (every thread of the process), else the per-worker metrics.
	let relayCpuCores: number | null = null;
	let relayCpuSource: StepResult["relayCpuSource"] = "none";
	const w0 = workerCpu(m0);
	const w1 = workerCpu(m1);
	if (cpu0 !== null && cpu1 !== null) {
		relayCpuCores = (cpu1 - cpu0) / elapsed;
		relayCpuSource = "proc";
	} else if (w0.size > 0 && w1.size > 0) {
		let d = 0;
		for (const [w, v] of w1) d += v - (w0.get(w) ?? 0);
		relayCpuCores = d / elapsed;
		relayCpuSource = "metrics";
	}
	const pk0 = m0 ? metric(m0, "moq_fanout_sent_packets_total") : null;
	const pk1 = m1 ? metric(m1, "moq_fanout_sent_packets_total") : null;
	const packetsOutMetrics = pk0 !== null && pk1 !== null ? pk1 - pk0 : null;
	const packetsOut = sum((r) => r.packetsIn);
	const usPerPacket = relayCpuCores !== null && packetsOut > 0 ? (relayCpuCores * elapsed * 1e6) / packetsOut : null;
	let workerCpuSeconds: number | null = null;
	if (w0.size > 0 && w1.size > 0) {
		workerCpuSeconds = 0;
		for (const [w, v] of w1) workerCpuSeconds += v - (w0.get(w) ?? 0);
	}
	const workerUsPerPacket = workerCpuSeconds !== null && packetsOut > 0 ? (workerCpuSeconds * 1e6) / packetsOut : null;
	const p0 = m0 ? perWorker(m0, "moq_fanout_sent_packets_total") : new Map<number, number>();
	const p1 = m1 ? perWorker(m1, "moq_fanout_sent_packets_total") : new Map<number, number>();
	const s1 = m1 ? perWorker(m1, "moq_fanout_sessions") : new Map<number, number>();
	const workerIds = [...new Set([...w1.keys(), ...p1.keys(), ...s1.keys()])].sort((a, b) => a - b);
	const workers = workerIds.map((w) => ({
		worker: w,
		cpuCores: w1.has(w) && w0.has(w) ? round((w1.get(w)! - w0.get(w)!) / elapsed, 3) : null,
		packetsPerSec: p1.has(w) && p0.has(w) ? Math.round((p1.get(w)! - p0.get(w)!) / elapsed) : null,
		sessions: s1.get(w) ?? null,
	}));
	const rssBytes = relay ? processRss(relay.pid) : m1 ? metric(m1, "moq_fanout_process_resident_memory_bytes") : null;
	const generatorCpu = reports.map((r) => round(r.cpuMicros / 1000 / r.elapsedMs, 3));
	const machineBusy =
		mach0 && mach1 ? round((mach1.busy - mach0.busy) / Math.max(1, mach1.total - mach0.total), 3) : null;

	const framesPerGroup = frameSizes({ bitrate: opts.bitrate, fps: opts.fps, groupMs: opts.groupMs }).length;
	const framesExpected = Math.round(connected * ((framesPerGroup * 1000) / opts.groupMs) * elapsed);
	const groupsLost = sum((r) => r.groupsLost);
	const silent = sum((r) => r.silent);
	const hot = generatorCpu.findIndex((c) => c > GENERATOR_SATURATED);
	let invalidReason: string | null = null;
	// The generators together may also run out of cores: their own (pinned), or what the relay leaves.
	const loadCpu = generatorCpu.reduce((a, b) => a + b, 0);
	const available = loadCores > 0 ? loadCores : availableParallelism() - (relayCpuCores ?? 0);
	if (hot >= 0) invalidReason = `load generator ${hot} at ${Math.round(generatorCpu[hot] * 100)}% of a core`;
	else if (loadCpu > GENERATOR_SATURATED * available)
		invalidReason = `load generators use ${loadCpu.toFixed(2)} of ${available.toFixed(2)} available cores`;
	const step: StepResult = {
		subscribers,
		connected,
		windowMs: Math.round(elapsed * 1000),
		latencyMs,
		latencyAt,
		readLatencyMs,
		arrivalLatencyMs,
		deliveredMbps: round((sum((r) => r.bytes) * 8) / 1e6 / elapsed, 2),
		framesReceived,
		framesExpected,
		groupsComplete: sum((r) => r.groupsComplete),
		groupsLost,
		silentSubscribers: silent,
		failures: sum((r) => r.failures),
		relayCpuCores: relayCpuCores === null ? null : round(relayCpuCores, 3),
		relayCpuPerCore: relayCpuCores === null ? null : round(relayCpuCores / cores, 3),
		relayCpuSource,
		packetsOut,
		packetsOutMetrics,
		usPerPacket: usPerPacket === null ? null : round(usPerPacket, 2),
		workerUsPerPacket: workerUsPerPacket === null ? null : round(workerUsPerPacket, 2),
		ratioToBare: null,
		workers,
		rssBytes,
		udpDrops: drops0 && drops1 ? { relay: drops1.relay - drops0.relay, other: drops1.other - drops0.other } : null,
		generatorCpu,
		machineBusy,
		valid: invalidReason === null,
		invalidReason,
		pass: false,
		failReason: null,
	};
	if (latencyMs.p99 > opts.targetP99Ms) step.failReason = `p99 ${latencyMs.p99} ms > ${opts.targetP99Ms} ms`;
	else if (groupsLost > 0) step.failReason = `${groupsLost} groups lost`;
	else if (silent > 0) step.failReason = `${silent} subscribers received nothing`;
	else if (framesReceived === 0) step.failReason = "no frames received";
	step.pass = step.valid && step.failReason === null;
	return step;
}

/** The generators' histograms (compressed base64, µs) merged, as percentiles in ms. */
function mergedLatency(encoded: string[]): Latency {
	const merged = hdr.build({
		bitBucketSize: 32,
		lowestDiscernibleValue: 1,
		highestTrackableValue: 120_000_000,
		numberOfSignificantValueDigits: 3,
	});
	for (const h of encoded) merged.add(hdr.decodeFromCompressedBase64(h, 32));
	const ms = (us: number) => Math.round(us) / 1000;
	return {
		p50: ms(merged.getValueAtPercentile(50)),
		p90: ms(merged.getValueAtPercentile(90)),
		p99: ms(merged.getValueAtPercentile(99)),
		p999: ms(merged.getValueAtPercentile(99.9)),
		max: ms(merged.maxValue),
	};
}

/** " (read p99 X)" when the target judges arrival: the generators' own queueing beside it. */
function readAside(s: StepResult): string {
	if (s.latencyAt !== "arrival" || s.readLatencyMs === undefined) return "";
	return ` (read p99 ${s.readLatencyMs.p99.toFixed(1)})`;
}

function round(x: number, digits: number): number {
	const f = 10 ** digits;
	return Math.round(x * f) / f;
}

/** A fixed-load relay run: what it measured, without the sweep's pass / fail verdict. */
export function trialLine(label: string, s: StepResult): string {
	const cpu = s.relayCpuCores === null ? "n/a" : `${Math.round(s.relayCpuCores * 100)}%`;
	const us = s.usPerPacket === null ? "n/a" : s.usPerPacket.toFixed(2);
	const pps = s.workers.map((w) => w.packetsPerSec ?? 0);
	const total = pps.reduce((a, b) => a + b, 0);
	const balance =
		s.workers.length > 1 && total > 0 ? ` · workers ${pps.map((p) => Math.round((p * 100) / total)).join("/")}%` : "";
	const gen = s.generatorCpu.map((c) => `${Math.round(c * 100)}`).join("/");
	const verdict = s.valid ? "" : ` · INVALID (${s.invalidReason})`;
	return (
		`  ${label} · ${String(s.connected).padStart(4)} subs · ${(s.packetsOut === null ? 0 : s.packetsOut / (s.windowMs / 1000) / 1000).toFixed(1).padStart(6)} kpps · ` +
		`${s.deliveredMbps.toFixed(0).padStart(5)} Mbit/s · relay ${cpu} of a core · ${us} µs/pkt${balance} · ` +
		`p99 ${s.latencyMs.p99.toFixed(1)} ms${readAside(s)} · lost ${s.groupsLost} · gen ${gen}% · ` +
		`machine ${s.machineBusy === null ? "n/a" : `${Math.round(s.machineBusy * 100)}%`} busy${verdict}`
	);
}

export function stepLine(label: string, s: StepResult): string {
	const l = s.latencyMs;
	const cpu = s.relayCpuPerCore === null ? "  n/a" : `${String(Math.round(s.relayCpuPerCore * 100)).padStart(4)}%`;
	const us = s.usPerPacket === null ? "   n/a" : `${s.usPerPacket.toFixed(1).padStart(6)}`;
	const gen = s.generatorCpu.map((c) => `${Math.round(c * 100)}`).join("/");
	const pps = s.workers.map((w) => w.packetsPerSec ?? 0);
	const total = pps.reduce((a, b) => a + b, 0);
	const drops = s.udpDrops ? ` · udp drops ${s.udpDrops.relay}/${s.udpDrops.other}` : "";
	const balance =
		s.workers.length > 1 && total > 0 ? ` · workers ${pps.map((p) => Math.round((p * 100) / total)).join("/")}%` : "";
	const verdict = !s.valid ? `INVALID (${s.invalidReason})` : s.pass ? "ok" : `FAIL (${s.failReason})`;
	return (
		`  ${label} · ${String(s.subscribers).padStart(5)} subs · ${s.deliveredMbps.toFixed(1).padStart(7)} Mbit/s · ` +
		`p50 ${l.p50.toFixed(1)} p90 ${l.p90.toFixed(1)} p99 ${l.p99.toFixed(1)} p99.9 ${l.p999.toFixed(1)} max ${l.max.toFixed(1)} ms${readAside(s)} · ` +
		`lost ${s.groupsLost} · relay ${cpu}/core ${us} µs/pkt${balance}${drops} · gen ${gen}% · ${verdict}`
	);
}
