/**
 * One scaling trial: a relay in one configuration (A/B/C), one publisher of a high-bitrate track,
 * and enough subscribers on the load generators to saturate it; then one measurement window of
 * delivered throughput, relay CPU, per-worker balance, UDP drops and the load's own CPU. The trial
 * says what limited it: the relay (valid), the load generators, the shared cores, or the offered load.
 * @module
 */

import { availableParallelism } from "node:os";
import { Child } from "./children.ts";
import { type RelayTarget, resolveTarget } from "./connect.ts";
import { metric, perWorker, type Sample, scrape } from "./metrics.ts";
import { machineCpuSample, processCpuSeconds, processRss, udpDrops } from "./procstat.ts";
import type { FromGenerator, FromPublisher, GeneratorReport, ToGenerator, ToPublisher } from "./protocol.ts";
import type { RelayProcess } from "./relay-process.ts";
import {
	type ConfigId,
	configSpec,
	loadCoresFor,
	type RelayConfigSpec,
	relayCoresFor,
	type ScalingOptions,
} from "./scaling-args.ts";
import { startScalingRelay } from "./scaling-relay.ts";
import { type UdpCounters, udpCounters } from "./scaling-snmp.ts";

/** A process above this share of its cores is saturated. */
export const SATURATED = 0.9;
/**
 * CPU (cores) used by neither the relay nor the load above which a local trial counts as disturbed
 * by other tenants (the dev machine is shared; unattributed kernel work alone stays near 0.2).
 */
export const DISTURBED_CORES = 0.3;

export const LIMITS = ["relay", "relay+generators", "generators", "shared-cpu", "offered-load", "unknown"] as const;
/**
 * relay: the relay used ≥ 90 % of its cores (a valid measurement of the relay).
 * relay+generators: both were saturated: the throughput is the relay's at most, and the load may have held it lower
 *   (datagrams dropped at the load's sockets still cost the relay CPU, so µs/packet reads high).
 * generators: a generator process, or the load as a whole on its own cores, was saturated.
 * shared-cpu: relay and load share the cores and together kept the machine ≥ 90 % busy, the relay below 90 %.
 * offered-load: everything was delivered; add subscribers or bitrate.
 * unknown: nothing saturated and not everything was delivered.
 */
export type Limit = (typeof LIMITS)[number];

export interface WorkerShare {
	worker: number;
	/** Egress packets during the window from /metrics (published once a second: ±1 s of traffic). */
	packets: number | null;
	/** packets / all workers' packets. */
	share: number | null;
	cpuCores: number | null;
	sessions: number | null;
}

export interface TrialResult {
	config: ConfigId;
	run: number;
	workers: number;
	reusePort: boolean;
	relayCores: number[];
	loadCores: number[];
	/** True when the load runs on the relay's cores. */
	sharedCores: boolean;
	subscribers: number;
	connected: number;
	windowS: number;
	offeredMbps: number;
	/** Frame payload received by the subscribers. */
	deliveredMbps: number;
	/** UDP datagrams the generators' sockets received per second (the relay's egress to them). */
	packetsPerSec: number;
	packetsOut: number;
	/** The relay's own count (/metrics, ±1 s). */
	packetsOutMetrics: number | null;
	relayCpuSource: "proc" | "metrics" | "none";
	/** Relay CPU in cores busy (all threads), and per core given to it. */
	relayCpuCores: number | null;
	relayCpuPerCore: number | null;
	/** Relay CPU µs per delivered egress packet; the worker threads' share from /metrics. */
	usPerPacket: number | null;
	workerUsPerPacket: number | null;
	workerShares: WorkerShare[];
	/** UDP counters of the whole machine (/proc/net/snmp) and drops per socket (/proc/net/udp). */
	udp: {
		rcvbufErrors: number | null;
		inErrors: number | null;
		relayPortDrops: number | null;
		otherDrops: number | null;
	};
	/** Each generator's share of one core, the publisher's, and the machine's busy share. */
	generatorCpu: number[];
	publisherCpu: number | null;
	loadCpuCores: number;
	machineBusy: number | null;
	/**
	 * Machine CPU (cores) used by neither the relay nor the load during the window: other tenants,
	 * plus kernel work (softirq) not charged to either process. Local relays only.
	 */
	otherCpuCores: number | null;
	/** The machine's busy share (other tenants) just before the trial started; see waitForQuietMachine. */
	machineBusyBefore: number | null;
	relayRssBytes: number | null;
	groupsLost: number;
	failures: number;
	limitedBy: Limit;
	/** Why, in words (printed and stored). */
	limitNote: string;
	/** Other processes took ≥ DISTURBED_CORES during the window: the trial is discarded and repeated. */
	disturbed: boolean;
	/** 1 for the first try of this run of this configuration, +1 per repeat after a disturbed one. */
	attempt: number;
	/** limitedBy === "relay": the trial measured the relay's capacity. */
	valid: boolean;
	error: string | null;
}

export type Progress = (line: string, final: boolean) => void;

/** Cleanups of the trial in progress, for an interrupted bench. */
const active = new Set<() => Promise<void>>();

export async function stopAllTrials(): Promise<void> {
	await Promise.all([...active].map((stop) => stop()));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const round = (x: number, digits: number) => {
	const f = 10 ** digits;
	return Math.round(x * f) / f;
};

function workerCpu(samples: Sample[] | null): Map<number, number> {
	return samples ? perWorker(samples, "moq_fanout_worker_cpu_seconds_total") : new Map();
}

export async function runTrial(
	opts: ScalingOptions,
	id: ConfigId,
	run: number,
	progress: Progress,
	attempt = 1,
): Promise<TrialResult> {
	const spec = configSpec(id, opts.cores);
	const url = opts.urls[id];
	const relayCores = url ? [] : relayCoresFor(spec);
	const load = url
		? {
				cores: opts.loadCores ?? Array.from({ length: availableParallelism() }, (_, i) => i),
				shared: false,
			}
		: loadCoresFor(opts, spec);
	const tag = `  ${id} run ${run}${attempt > 1 ? ` (attempt ${attempt})` : ""}`;
	const result = emptyResult(opts, spec, run, relayCores, load.cores, load.shared);
	result.attempt = attempt;
	let relay: RelayProcess | null = null;
	let publisher: Child<ToPublisher, FromPublisher> | null = null;
	let generators: Child<ToGenerator, FromGenerator>[] = [];
	const kill = async () => {
		for (const g of generators) g.kill();
		publisher?.kill();
		await relay?.stop();
	};
	active.add(kill);
	try {
		result.machineBusyBefore = await waitForQuietMachine(opts.quietWaitS, (busy) =>
			progress(`${tag} · waiting for a quiet machine (${Math.round(busy * 100)}% busy)`, false),
		);
		progress(`${tag} · starting the relay`, false);
		let target: RelayTarget;
		if (url) target = await resolveTarget(url);
		else {
			relay = await startScalingRelay(relayCores, spec.workers, spec.reusePort);
			target = { host: "127.0.0.1", port: relay.port, path: "/bench", fingerprint: relay.fingerprint };
		}
		publisher = new Child<ToPublisher, FromPublisher>("publisher-child.ts", load.cores);
		generators = Array.from(
			{ length: opts.generators },
			() => new Child<ToGenerator, FromGenerator>("generator-child.ts", load.cores),
		);
		const shape = { bitrate: opts.bitrate, fps: opts.fps, groupMs: opts.groupMs, keyframeWeight: opts.keyframeWeight };
		await publisher.request({ type: "start", target, shape, idleUntilGo: true }, "ready", 20_000);
		await Promise.all(
			generators.map((g) => g.request({ type: "init", target, sockets: opts.sockets, groupMs: opts.groupMs }, "ready")),
		);
		let connected = 0;
		const failures = await Promise.all(
			generators.map(async (g, i) => {
				const count =
					Math.floor(opts.subscribers / generators.length) + (i < opts.subscribers % generators.length ? 1 : 0);
				// One at a time: generator-child.ts picks a viewer's socket from the count of viewers
				// already subscribed, so viewers added in one batch would all share one socket (one
				// 4-tuple, hence one worker under SO_REUSEPORT). Singly, they go round the sockets.
				let failed = 0;
				let error: string | undefined;
				for (let k = 0; k < count; k++) {
					const r = await g.request({ type: "add", count: 1 }, "added");
					failed += r.failed;
					error ??= r.error;
					progress(`${tag} · connecting ${++connected} of ${opts.subscribers} subscribers`, false);
				}
				return { failed, error };
			}),
		);
		const failed = failures.reduce((a, r) => a + r.failed, 0);
		if (failed > 0) {
			const why = failures.find((r) => r.error)?.error;
			throw new Error(`${failed} of ${opts.subscribers} subscribers failed to connect${why ? ` (${why})` : ""}`);
		}
		// Full bitrate only now: handshakes into an already saturated relay stall.
		await publisher.request({ type: "go" }, "going", opts.groupMs * 3 + 10_000);
		for (let left = opts.warmupS; left > 0; left -= 0.5) {
			progress(`${tag} · settling ${Math.ceil(left)} s`, false);
			await sleep(Math.min(500, left * 1000));
		}
		await measure(opts, result, relay, target, publisher, generators, (s) =>
			progress(`${tag} · measuring ${s}`, false),
		);
	} catch (err) {
		result.error = (err as Error).message + (relay ? `\nrelay log:\n${relay.log()}` : "");
		result.limitNote = "error";
		result.limitedBy = "unknown";
	} finally {
		for (const g of generators) g.send({ type: "stop" });
		publisher?.send({ type: "stop" });
		await sleep(200);
		await kill();
		active.delete(kill);
	}
	return result;
}

/** A trial starts on a machine this idle at most (others may share it), or after --quiet-wait regardless. */
const QUIET_BUSY = 0.15;

/** Waits (up to `seconds`) until the whole machine is ≤ 15 % busy over a second; returns the last busy share. */
async function waitForQuietMachine(seconds: number, onBusy: (busy: number) => void): Promise<number | null> {
	let busy: number | null = null;
	for (let i = 0; i < seconds; i++) {
		const a = machineCpuSample();
		await sleep(1000);
		const b = machineCpuSample();
		if (!a || !b) return null;
		busy = round((b.busy - a.busy) / Math.max(1, b.total - a.total), 3);
		if (busy <= QUIET_BUSY) break;
		onBusy(busy);
	}
	return busy;
}

function emptyResult(
	opts: ScalingOptions,
	spec: RelayConfigSpec,
	run: number,
	relayCores: number[],
	loadCores: number[],
	shared: boolean,
): TrialResult {
	return {
		config: spec.id,
		run,
		workers: spec.workers,
		reusePort: spec.reusePort,
		relayCores,
		loadCores,
		sharedCores: shared,
		subscribers: opts.subscribers,
		connected: 0,
		windowS: 0,
		offeredMbps: round(opts.subscribers * opts.bitrate, 1),
		deliveredMbps: 0,
		packetsPerSec: 0,
		packetsOut: 0,
		packetsOutMetrics: null,
		relayCpuSource: "none",
		relayCpuCores: null,
		relayCpuPerCore: null,
		usPerPacket: null,
		workerUsPerPacket: null,
		workerShares: [],
		udp: { rcvbufErrors: null, inErrors: null, relayPortDrops: null, otherDrops: null },
		generatorCpu: [],
		publisherCpu: null,
		loadCpuCores: 0,
		machineBusy: null,
		machineBusyBefore: null,
		otherCpuCores: null,
		relayRssBytes: null,
		groupsLost: 0,
		failures: 0,
		limitedBy: "unknown",
		limitNote: "",
		disturbed: false,
		attempt: 1,
		valid: false,
		error: null,
	};
}

function publisherCpuMicros(publisher: Child<ToPublisher, FromPublisher>): { micros: number; at: number } | null {
	const s = publisher.latest.get("stats");
	return s && s.type === "stats" ? { micros: s.cpuMicros, at: performance.now() } : null;
}

async function measure(
	opts: ScalingOptions,
	r: TrialResult,
	relay: RelayProcess | null,
	target: RelayTarget,
	publisher: Child<ToPublisher, FromPublisher>,
	generators: Child<ToGenerator, FromGenerator>[],
	tick: (status: string) => void,
): Promise<void> {
	const m0 = await scrape(target.host, target.port);
	const snmp0: UdpCounters | null = relay ? udpCounters() : null;
	const drops0 = relay ? udpDrops(relay.port) : null;
	const mach0 = machineCpuSample();
	const pub0 = publisherCpuMicros(publisher);
	await Promise.all(generators.map((g) => g.request({ type: "reset" }, "reset")));
	const cpu0 = relay ? processCpuSeconds(relay.pid) : null;
	const t0 = performance.now();
	const windowMs = opts.durationS * 1000;
	const spinner = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏";
	for (let i = 0; performance.now() - t0 < windowMs; i++) {
		tick(`${spinner[i % spinner.length]} ${Math.ceil((windowMs - (performance.now() - t0)) / 1000)} s`);
		await sleep(Math.min(250, Math.max(0, windowMs - (performance.now() - t0))));
	}
	const cpu1 = relay ? processCpuSeconds(relay.pid) : null;
	const elapsed = (performance.now() - t0) / 1000;
	const reports = (await Promise.all(
		generators.map((g) => g.request({ type: "report" }, "report")),
	)) as GeneratorReport[];
	const pub1 = publisherCpuMicros(publisher);
	const mach1 = machineCpuSample();
	const drops1 = relay ? udpDrops(relay.port) : null;
	const snmp1: UdpCounters | null = relay ? udpCounters() : null;
	const m1 = await scrape(target.host, target.port);
	r.relayRssBytes = relay ? processRss(relay.pid) : null;

	const sum = (f: (x: GeneratorReport) => number) => reports.reduce((a, x) => a + f(x), 0);
	r.windowS = round(elapsed, 2);
	r.connected = sum((x) => x.subscribers);
	r.deliveredMbps = round((sum((x) => x.bytes) * 8) / 1e6 / elapsed, 1);
	r.packetsOut = sum((x) => x.packetsIn);
	r.packetsPerSec = Math.round(r.packetsOut / elapsed);
	r.groupsLost = sum((x) => x.groupsLost);
	r.failures = sum((x) => x.failures);

	const w0 = workerCpu(m0);
	const w1 = workerCpu(m1);
	let workerCpuSeconds: number | null = null;
	if (w0.size > 0 && w1.size > 0) {
		workerCpuSeconds = 0;
		for (const [w, v] of w1) workerCpuSeconds += v - (w0.get(w) ?? 0);
	}
	if (cpu0 !== null && cpu1 !== null) {
		r.relayCpuCores = round((cpu1 - cpu0) / elapsed, 3);
		r.relayCpuSource = "proc";
	} else if (workerCpuSeconds !== null) {
		r.relayCpuCores = round(workerCpuSeconds / elapsed, 3);
		r.relayCpuSource = "metrics";
	}
	const relayCoreCount = r.relayCores.length > 0 ? r.relayCores.length : r.workers;
	if (r.relayCpuCores !== null) r.relayCpuPerCore = round(r.relayCpuCores / relayCoreCount, 3);
	if (r.relayCpuCores !== null && r.packetsOut > 0)
		r.usPerPacket = round((r.relayCpuCores * elapsed * 1e6) / r.packetsOut, 2);
	if (workerCpuSeconds !== null && r.packetsOut > 0)
		r.workerUsPerPacket = round((workerCpuSeconds * 1e6) / r.packetsOut, 2);

	const pk0 = m0 ? metric(m0, "moq_fanout_sent_packets_total") : null;
	const pk1 = m1 ? metric(m1, "moq_fanout_sent_packets_total") : null;
	r.packetsOutMetrics = pk0 !== null && pk1 !== null ? pk1 - pk0 : null;
	const p0 = m0 ? perWorker(m0, "moq_fanout_sent_packets_total") : new Map<number, number>();
	const p1 = m1 ? perWorker(m1, "moq_fanout_sent_packets_total") : new Map<number, number>();
	const s1 = m1 ? perWorker(m1, "moq_fanout_sessions") : new Map<number, number>();
	const ids = [...new Set([...p1.keys(), ...w1.keys(), ...s1.keys()])].sort((a, b) => a - b);
	const packets = ids.map((w) => (p1.has(w) && p0.has(w) ? p1.get(w)! - p0.get(w)! : null));
	const total = packets.reduce<number>((a, b) => a + (b ?? 0), 0);
	r.workerShares = ids.map((w, i) => ({
		worker: w,
		packets: packets[i],
		share: packets[i] !== null && total > 0 ? round(packets[i]! / total, 3) : null,
		cpuCores: w1.has(w) && w0.has(w) ? round((w1.get(w)! - w0.get(w)!) / elapsed, 3) : null,
		sessions: s1.get(w) ?? null,
	}));

	r.udp = {
		rcvbufErrors: snmp0 && snmp1 ? snmp1.rcvbufErrors - snmp0.rcvbufErrors : null,
		inErrors: snmp0 && snmp1 ? snmp1.inErrors - snmp0.inErrors : null,
		relayPortDrops: drops0 && drops1 ? drops1.relay - drops0.relay : null,
		otherDrops: drops0 && drops1 ? drops1.other - drops0.other : null,
	};
	r.generatorCpu = reports.map((x) => round(x.cpuMicros / 1000 / x.elapsedMs, 3));
	r.publisherCpu =
		pub0 && pub1 && pub1.at > pub0.at ? round((pub1.micros - pub0.micros) / 1000 / (pub1.at - pub0.at), 3) : null;
	r.loadCpuCores = round(r.generatorCpu.reduce((a, b) => a + b, 0) + (r.publisherCpu ?? 0), 3);
	r.machineBusy = mach0 && mach1 ? round((mach1.busy - mach0.busy) / Math.max(1, mach1.total - mach0.total), 3) : null;
	if (relay && r.machineBusy !== null && r.relayCpuCores !== null)
		r.otherCpuCores = round(Math.max(0, r.machineBusy * availableParallelism() - r.relayCpuCores - r.loadCpuCores), 3);
	classify(r);
}

/** What limited the trial; only a relay-limited trial measured the relay's capacity. */
export function classify(r: TrialResult): void {
	const hot = r.generatorCpu.findIndex((c) => c > SATURATED);
	const relayBusy = r.relayCpuPerCore ?? 0;
	const relayText =
		r.relayCpuCores === null
			? "relay CPU unknown"
			: `relay ${r.relayCpuCores.toFixed(2)} of ${r.relayCores.length || r.workers} cores`;
	const loadText = `load ${r.loadCpuCores.toFixed(2)} cores on [${r.loadCores.join(",")}]`;
	const drops = r.udp.otherDrops ?? 0;
	const loadSaturated = hot >= 0 || (!r.sharedCores && r.loadCpuCores >= SATURATED * r.loadCores.length);
	if (loadSaturated && relayBusy >= SATURATED) {
		r.limitedBy = "relay+generators";
		r.limitNote = `${relayText} and ${loadText}: both saturated`;
	} else if (hot >= 0) {
		r.limitedBy = "generators";
		r.limitNote = `generator ${hot} at ${Math.round(r.generatorCpu[hot] * 100)}% of a core; ${relayText}`;
	} else if (!r.sharedCores && r.loadCpuCores >= SATURATED * r.loadCores.length) {
		r.limitedBy = "generators";
		r.limitNote = `${loadText} (saturated); ${relayText}`;
	} else if (relayBusy >= SATURATED) {
		r.limitedBy = "relay";
		r.limitNote = `${relayText} (saturated); ${loadText}`;
	} else if (r.sharedCores && (r.machineBusy ?? 0) >= SATURATED) {
		r.limitedBy = "shared-cpu";
		r.limitNote = `machine ${Math.round((r.machineBusy ?? 0) * 100)}% busy: ${relayText}, ${loadText}`;
	} else if (r.deliveredMbps >= 0.95 * r.offeredMbps) {
		r.limitedBy = "offered-load";
		r.limitNote = `all ${r.offeredMbps} Mbit/s offered was delivered; ${relayText}: add subscribers`;
	} else {
		r.limitedBy = "unknown";
		r.limitNote = `nothing saturated: ${relayText}, ${loadText}`;
	}
	if (drops > 0) r.limitNote += `; ${drops} datagrams dropped at the load's sockets`;
	r.disturbed = (r.otherCpuCores ?? 0) >= DISTURBED_CORES;
	if (r.disturbed) r.limitNote += `; DISTURBED: other processes used ${r.otherCpuCores?.toFixed(2)} cores`;
	r.valid = r.limitedBy === "relay" && !r.disturbed && r.error === null;
}
