/**
 * Results: the summary over runs (min / median / max of the headline numbers: the per-packet costs
 * and their ratios, and the capacity per core count), the tables as text, and the JSON document.
 * @module
 */

import { cpus } from "node:os";
import { type BenchOptions, ENGINES, type Engine } from "./args.ts";
import type { PumpRun } from "./pump-trial.ts";
import type { StepResult, SweepResult } from "./sweep.ts";

export interface Spread {
	min: number;
	median: number;
	max: number;
}

export interface CoreSummary {
	cores: number;
	/** The relay's QUIC engine of these sweeps. */
	engine: Engine;
	runs: number;
	/** Max subscribers with p99 ≤ target and no loss, over runs. */
	capacity: Spread;
	/** This engine's capacity ÷ the quiche engine's, same run and core count (null for quiche, or without it). */
	capacityToQuiche: Spread | null;
	/** True when some run stopped because the load generator saturated: capacity is a lower bound. */
	lowerBound: boolean;
	/** At each run's capacity step. */
	p99AtCapacityMs: Spread | null;
	/** The generators' read-time p99 at capacity, when the target judged arrival (absent before 2026-12-05). */
	p99ReadAtCapacityMs?: Spread | null;
	mbpsAtCapacity: Spread | null;
	/** Relay CPU per egress packet (µs) over every valid step, and its ratio to the bare pump's (dgram, median). */
	usPerPacket: Spread | null;
	ratioToBare: Spread | null;
	/** Worker threads only (from /metrics). */
	workerUsPerPacket: Spread | null;
	/** Median latency percentiles per subscriber count over runs (the chart's data). */
	curve: { subscribers: number; p50: number; p90: number; p99: number; p999: number; runs: number }[];
}

/** One engine's relay runs on one core (1 worker, 2 workers), min / median / max over runs. */
export interface EngineCost {
	engine: Engine;
	oneWorkerUs: Spread | null;
	twoWorkersUs: Spread | null;
	/** 1 worker ÷ the bare pump of the same run. */
	toBareDgram: Spread | null;
	toBareGso: Spread | null;
	/**
	 * 1 worker ÷ the bare pump on this engine with GSO (quiche: the GSO pump; ngtcp2: the ngtcp2
	 * pump), same run: what the relay costs above its engine's own floor. Absent in older documents.
	 */
	toBareEngine?: Spread | null;
	/**
	 * 1 worker ÷ the pump on this engine sending the same track to as many connections (the media
	 * pump), same run: what the relay's own code costs per packet, the audience being equal.
	 */
	toBareMedia?: Spread | null;
	twoWorkersToOne: Spread | null;
	/** 1 worker: this engine ÷ the quiche engine, same run (null for quiche itself, or without it). */
	toQuiche: Spread | null;
	runs: { oneWorker: number; twoWorkers: number };
	load: { oneWorker: Load | null; twoWorkers: Load | null };
}

/**
 * The per-packet costs on one core, min / median / max over runs; ratios are taken run by run.
 * The relay fields at the top level are the quiche engine's (as before the engine comparison);
 * `engines` has every engine measured, quiche included.
 */
export interface BaselineSummary {
	/** CPU µs per egress packet of the bare quiche push pump, dgram and GSO egress. */
	bareDgramUs: Spread | null;
	bareGsoUs: Spread | null;
	/** The same pump on the ngtcp2 engine with GSO (absent in older documents, null when not run). */
	bareNgtcp2Us?: Spread | null;
	/** The ngtcp2 pump ÷ the quiche GSO pump, same run: the engines alone, no relay above them. */
	bareNgtcp2ToGso?: Spread | null;
	/** The GSO pumps sending the bench's track to the relay runs' audience (media pumps). */
	mediaGsoUs?: Spread | null;
	mediaNgtcp2Us?: Spread | null;
	/** The ngtcp2 media pump ÷ the quiche one, same run. */
	mediaNgtcp2ToGso?: Spread | null;
	/** Relay CPU µs per egress packet, 1 worker, and 2 workers on the same core. */
	relayOneWorkerUs: Spread | null;
	relayTwoWorkersUs: Spread | null;
	/** Relay (1 worker) ÷ the bare pump of the same run. */
	relayToBareDgram: Spread | null;
	relayToBareGso: Spread | null;
	/** 2 workers ÷ 1 worker on one core, same run: the cost of the multi-worker machinery. */
	twoWorkersToOne: Spread | null;
	/** Runs each spread is over. */
	runs: {
		bareDgram: number;
		bareGso: number;
		bareNgtcp2?: number;
		mediaGso?: number;
		mediaNgtcp2?: number;
		relayOneWorker: number;
		relayTwoWorkers: number;
	};
	/** Per engine (quiche first), those that ran. */
	engines: EngineCost[];
	/** The GSO pump ÷ the dgram pump, same run. */
	gsoToDgram: Spread | null;
	/** The load each was measured at (median over runs): egress packets per second, and CPU in cores. */
	load: {
		bareDgram: Load | null;
		bareGso: Load | null;
		bareNgtcp2?: Load | null;
		mediaGso?: Load | null;
		mediaNgtcp2?: Load | null;
		relayOneWorker: Load | null;
		relayTwoWorkers: Load | null;
	};
}

export interface Load {
	packetsPerSec: number;
	cpuCores: number;
}

export interface BaselineResults {
	/** Every pump run (dgram and GSO). */
	pumps: PumpRun[];
	/** Why the GSO pump did not run (null when it did, or the pump phase was not asked for). */
	gsoSkipped: string | null;
	/** The fixed-load relay runs on one core: one step each, `workers` 1 or 2. */
	relays: SweepResult[];
	summary: BaselineSummary;
}

export interface BenchDocument {
	version: 1;
	date: string;
	machine: { cpus: number; model: string; node: string };
	options: BenchOptions;
	/** The bare pump's (dgram) µs per packet that `ratioToBare` divides by: measured in this run (median), null when not run. */
	bare: { usPerPacket: number | null; source: string };
	baseline: BaselineResults;
	summary: CoreSummary[];
	sweeps: SweepResult[];
}

export function spread(values: number[]): Spread | null {
	if (values.length === 0) return null;
	const v = [...values].sort((a, b) => a - b);
	const mid = v.length >> 1;
	const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
	return { min: v[0], median: Math.round(median * 1000) / 1000, max: v[v.length - 1] };
}

function atCapacity(s: SweepResult): StepResult | undefined {
	return s.steps.find((x) => x.subscribers === s.capacity && x.pass);
}

/** A run's engine: documents from before the engine comparison ran quiche only. */
export const engineOf = (r: SweepResult): Engine => r.engine ?? "quiche";

/** The engines that have results, in ENGINES order; `fallback` when none has. */
function enginesIn(results: SweepResult[], fallback: Engine[]): Engine[] {
	const present = ENGINES.filter((e) => results.some((r) => engineOf(r) === e));
	return present.length > 0 ? present : fallback.slice(0, 1);
}

export function summarize(sweeps: SweepResult[], coreCounts: number[], engines: Engine[] = ["quiche"]): CoreSummary[] {
	const list = enginesIn(sweeps, engines);
	return coreCounts.flatMap((cores) => list.map((engine) => summarizeOne(sweeps, cores, engine)));
}

function summarizeOne(sweeps: SweepResult[], cores: number, engine: Engine): CoreSummary {
	{
		const mine = sweeps.filter((s) => s.cores === cores && engineOf(s) === engine);
		const quiche = sweeps.filter((s) => s.cores === cores && engineOf(s) === "quiche" && s.error === null);
		const capRatios: number[] = [];
		if (engine !== "quiche")
			for (const s of mine) {
				const q = quiche.find((x) => x.run === s.run);
				if (s.error === null && q !== undefined && q.capacity > 0)
					capRatios.push(Math.round((s.capacity / q.capacity) * 100) / 100);
			}
		const caps = mine.map((s) => s.capacity);
		const at = mine.map(atCapacity).filter((x): x is StepResult => x !== undefined);
		const valid = mine.flatMap((s) => s.steps.filter((x) => x.valid && x.usPerPacket !== null && x.subscribers >= 25));
		const bySubs = new Map<number, StepResult[]>();
		for (const s of mine)
			for (const x of s.steps) if (x.valid) bySubs.set(x.subscribers, [...(bySubs.get(x.subscribers) ?? []), x]);
		const med = (xs: number[]) => spread(xs)?.median ?? 0;
		return {
			cores,
			engine,
			runs: mine.length,
			capacity: spread(caps) ?? { min: 0, median: 0, max: 0 },
			capacityToQuiche: spread(capRatios),
			lowerBound: mine.some((s) => s.stoppedBy === "generator" || s.stoppedBy === "max"),
			p99AtCapacityMs: spread(at.map((x) => x.latencyMs.p99)),
			p99ReadAtCapacityMs: spread(
				at.filter((x) => x.latencyAt === "arrival" && x.readLatencyMs).map((x) => x.readLatencyMs!.p99),
			),
			mbpsAtCapacity: spread(at.map((x) => x.deliveredMbps)),
			usPerPacket: spread(valid.map((x) => x.usPerPacket as number)),
			// Null without a pump run in this bench (--phases sweep): "n/a", not 0.
			ratioToBare: spread(valid.filter((x) => x.ratioToBare !== null).map((x) => x.ratioToBare as number)),
			workerUsPerPacket: spread(
				valid.filter((x) => x.workerUsPerPacket !== null).map((x) => x.workerUsPerPacket as number),
			),
			curve: [...bySubs.entries()]
				.sort((a, b) => a[0] - b[0])
				.map(([subscribers, xs]) => ({
					subscribers,
					p50: med(xs.map((x) => x.latencyMs.p50)),
					p90: med(xs.map((x) => x.latencyMs.p90)),
					p99: med(xs.map((x) => x.latencyMs.p99)),
					p999: med(xs.map((x) => x.latencyMs.p999)),
					runs: xs.length,
				})),
		};
	}
}

/** A relay run's CPU per packet, when its step measured the relay (the load was not the limit). */
function relayUs(r: SweepResult | undefined): number | null {
	const step = r?.steps[0];
	return r && r.error === null && step?.valid && step.usPerPacket !== null ? step.usPerPacket : null;
}

function pumpUs(p: PumpRun | undefined): number | null {
	return p && p.error === null && p.usPerPacket !== null ? p.usPerPacket : null;
}

/** Run-by-run ratios a[run] ÷ b[run], over the runs where both were measured. */
function ratios(runs: number, a: (run: number) => number | null, b: (run: number) => number | null): Spread | null {
	const out: number[] = [];
	for (let run = 1; run <= runs; run++) {
		const x = a(run);
		const y = b(run);
		if (x !== null && y !== null && y > 0) out.push(Math.round((x / y) * 1000) / 1000);
	}
	return spread(out);
}

/** A pump run's audience; documents before the media pumps have bulk ones only. */
const audienceOf = (p: PumpRun): "bulk" | "media" => p.audience ?? "bulk";

export function summarizeBaseline(runs: number, pumps: PumpRun[], relays: SweepResult[]): BaselineSummary {
	const pumpOf = (audience: "bulk" | "media", egress: PumpRun["egress"], run: number) =>
		pumpUs(pumps.find((p) => audienceOf(p) === audience && p.egress === egress && p.run === run));
	const pump = (egress: PumpRun["egress"], run: number) => pumpOf("bulk", egress, run);
	const media = (egress: PumpRun["egress"], run: number) => pumpOf("media", egress, run);
	const pumpLoads = (audience: "bulk" | "media", egress: PumpRun["egress"]) =>
		load(pumps.filter((p) => audienceOf(p) === audience && p.egress === egress && pumpUs(p) !== null).map(pumpLoad));
	const relayOf = (engine: Engine, workers: number, run: number) =>
		relayUs(relays.find((r) => engineOf(r) === engine && r.workers === workers && r.run === run));
	const relay = (workers: number, run: number) => relayOf("quiche", workers, run);
	const all = (f: (run: number) => number | null) =>
		Array.from({ length: runs }, (_, i) => f(i + 1)).filter((x): x is number => x !== null);
	const bareDgram = all((r) => pump("dgram", r));
	const bareGso = all((r) => pump("gso", r));
	const bareNgtcp2 = all((r) => pump("ngtcp2", r));
	const mediaGso = all((r) => media("gso", r));
	const mediaNgtcp2 = all((r) => media("ngtcp2", r));
	const one = all((r) => relay(1, r));
	const two = all((r) => relay(2, r));
	return {
		bareDgramUs: spread(bareDgram),
		bareGsoUs: spread(bareGso),
		bareNgtcp2Us: spread(bareNgtcp2),
		bareNgtcp2ToGso: ratios(
			runs,
			(r) => pump("ngtcp2", r),
			(r) => pump("gso", r),
		),
		mediaGsoUs: spread(mediaGso),
		mediaNgtcp2Us: spread(mediaNgtcp2),
		mediaNgtcp2ToGso: ratios(
			runs,
			(r) => media("ngtcp2", r),
			(r) => media("gso", r),
		),
		relayOneWorkerUs: spread(one),
		relayTwoWorkersUs: spread(two),
		relayToBareDgram: ratios(
			runs,
			(r) => relay(1, r),
			(r) => pump("dgram", r),
		),
		relayToBareGso: ratios(
			runs,
			(r) => relay(1, r),
			(r) => pump("gso", r),
		),
		twoWorkersToOne: ratios(
			runs,
			(r) => relay(2, r),
			(r) => relay(1, r),
		),
		runs: {
			bareDgram: bareDgram.length,
			bareGso: bareGso.length,
			bareNgtcp2: bareNgtcp2.length,
			mediaGso: mediaGso.length,
			mediaNgtcp2: mediaNgtcp2.length,
			relayOneWorker: one.length,
			relayTwoWorkers: two.length,
		},
		engines: enginesIn(relays, []).map((engine) => {
			const mine = (workers: number) =>
				relays.filter((r) => engineOf(r) === engine && r.workers === workers && relayUs(r) !== null);
			const oneW = all((r) => relayOf(engine, 1, r));
			const twoW = all((r) => relayOf(engine, 2, r));
			return {
				engine,
				oneWorkerUs: spread(oneW),
				twoWorkersUs: spread(twoW),
				toBareDgram: ratios(
					runs,
					(r) => relayOf(engine, 1, r),
					(r) => pump("dgram", r),
				),
				toBareGso: ratios(
					runs,
					(r) => relayOf(engine, 1, r),
					(r) => pump("gso", r),
				),
				toBareEngine: ratios(
					runs,
					(r) => relayOf(engine, 1, r),
					(r) => pump(engine === "ngtcp2" ? "ngtcp2" : "gso", r),
				),
				toBareMedia: ratios(
					runs,
					(r) => relayOf(engine, 1, r),
					(r) => media(engine === "ngtcp2" ? "ngtcp2" : "gso", r),
				),
				twoWorkersToOne: ratios(
					runs,
					(r) => relayOf(engine, 2, r),
					(r) => relayOf(engine, 1, r),
				),
				toQuiche:
					engine === "quiche"
						? null
						: ratios(
								runs,
								(r) => relayOf(engine, 1, r),
								(r) => relayOf("quiche", 1, r),
							),
				runs: { oneWorker: oneW.length, twoWorkers: twoW.length },
				load: { oneWorker: load(mine(1).map(relayLoad)), twoWorkers: load(mine(2).map(relayLoad)) },
			};
		}),
		gsoToDgram: ratios(
			runs,
			(r) => pump("gso", r),
			(r) => pump("dgram", r),
		),
		load: {
			bareDgram: pumpLoads("bulk", "dgram"),
			bareGso: pumpLoads("bulk", "gso"),
			bareNgtcp2: pumpLoads("bulk", "ngtcp2"),
			mediaGso: pumpLoads("media", "gso"),
			mediaNgtcp2: pumpLoads("media", "ngtcp2"),
			relayOneWorker: load(
				relays.filter((r) => engineOf(r) === "quiche" && r.workers === 1 && relayUs(r) !== null).map(relayLoad),
			),
			relayTwoWorkers: load(
				relays.filter((r) => engineOf(r) === "quiche" && r.workers === 2 && relayUs(r) !== null).map(relayLoad),
			),
		},
	};
}

function pumpLoad(p: PumpRun): Load {
	return { packetsPerSec: p.packetsPerSec, cpuCores: p.cpuCores ?? 0 };
}

function relayLoad(r: SweepResult): Load {
	const s = r.steps[0];
	return { packetsPerSec: Math.round(((s.packetsOut ?? 0) * 1000) / s.windowMs), cpuCores: s.relayCpuCores ?? 0 };
}

function load(xs: Load[]): Load | null {
	const pps = spread(xs.map((x) => x.packetsPerSec));
	const cpu = spread(xs.map((x) => x.cpuCores));
	return pps && cpu ? { packetsPerSec: pps.median, cpuCores: cpu.median } : null;
}

/**
 * The JSON document. The sweep steps' `ratioToBare` is filled in here, against the bare dgram
 * pump's median of this bench (the sweep's steps are not paired with pump runs).
 */
export function document(
	opts: BenchOptions,
	sweeps: SweepResult[],
	pumps: PumpRun[] = [],
	relays: SweepResult[] = [],
	gsoSkipped: string | null = null,
): BenchDocument {
	const c = cpus();
	const baseline = summarizeBaseline(opts.runs, pumps, relays);
	const bare = baseline.bareDgramUs?.median ?? null;
	for (const sweep of [...sweeps, ...relays])
		for (const step of sweep.steps)
			step.ratioToBare =
				bare !== null && step.usPerPacket !== null ? Math.round((step.usPerPacket / bare) * 100) / 100 : null;
	return {
		version: 1,
		date: new Date().toISOString(),
		machine: { cpus: c.length, model: c[0]?.model ?? "unknown", node: process.version },
		options: opts,
		bare: {
			usPerPacket: bare,
			source:
				bare === null
					? "not measured (the pump phase did not run)"
					: `measured in this bench: bare quiche + dgram push pump (bench/pump.ts), ${opts.pumpConnections} connections, one core, median of ${baseline.runs.bareDgram} run(s)`,
		},
		baseline: { pumps, gsoSkipped, relays, summary: baseline },
		summary: summarize(sweeps, opts.cores, opts.engines ?? ["quiche"]),
		sweeps,
	};
}

/** Machine busy share above which a run's figures are flagged (every core nearly always busy). */
const BUSY_MACHINE = 0.9;

const loadText = (l: Load | null) =>
	l === null ? "n/a" : `${(l.packetsPerSec / 1000).toFixed(1)} kpps, ${Math.round(l.cpuCores * 100)}% of a core`;

const fmt = (s: Spread | null, digits = 0) =>
	s === null
		? "n/a"
		: s.min === s.max
			? s.median.toFixed(digits)
			: `${s.min.toFixed(digits)} / ${s.median.toFixed(digits)} / ${s.max.toFixed(digits)}`;

/** The per-packet cost table (one core), as printed. */
/** How the load generators received and acknowledged (older documents: the defaults of their day). */
export function receiversText(o: BenchDocument["options"]): string {
	if (o.generator !== "native") return "receivers: the JS generator (quiche; ACK every 2nd packet, no GRO)";
	return (
		`receivers: moq-loadgen, ACK every ${o.ackEvery ?? 2} ack-eliciting packets, UDP GRO ${o.receiverGro ? "on" : "off"}` +
		`; latency ${latencyText(o)}`
	);
}

/** Which latency the target judged (documents from before 2026-12-05: the generators' read time). */
export function latencyText(o: BenchDocument["options"]): string {
	return (o.latencyAt ?? "read") === "arrival"
		? "at arrival (publish → the kernel's receive time of the frame's last datagram at the subscriber)"
		: "when read (publish → the generator read the frame's last datagram, its own queueing included)";
}

export function costTable(doc: BenchDocument): string {
	const o = doc.options;
	const b = doc.baseline.summary;
	const over = (n: number) => (n > 1 ? ` (${n} runs)` : n === 1 ? " (1 run)" : "");
	const lines = [
		`CPU per egress packet on one core — min / median / max over runs; ratios run by run (same run's numbers)`,
		receiversText(o),
		"",
		"| measurement | µs CPU / egress packet | ratio | load (median) |",
		"|---|---|---|---|",
		`| bare quiche + dgram push pump, ${o.pumpConnections} connections | ${fmt(b.bareDgramUs, 2)}${over(b.runs.bareDgram)} | baseline | ${loadText(b.load.bareDgram)} |`,
		`| bare quiche + GSO push pump, ${o.pumpConnections} connections | ${doc.baseline.gsoSkipped ? `skipped: ${doc.baseline.gsoSkipped}` : `${fmt(b.bareGsoUs, 2)}${over(b.runs.bareGso)}`} | ${b.gsoToDgram ? `${fmt(b.gsoToDgram, 2)} × bare dgram` : ""} | ${loadText(b.load.bareGso)} |`,
		...(b.bareNgtcp2Us
			? [
					`| bare ngtcp2 + GSO push pump, ${o.pumpConnections} connections | ${fmt(b.bareNgtcp2Us, 2)}${over(b.runs.bareNgtcp2 ?? 0)} | ${b.bareNgtcp2ToGso ? `${fmt(b.bareNgtcp2ToGso, 2)} × bare quiche GSO` : ""} | ${loadText(b.load.bareNgtcp2 ?? null)} |`,
				]
			: []),
		...(b.mediaGsoUs
			? [
					`| bare quiche + GSO pump, the track to ${o.trialSubscribers} connections (the relay runs' audience) | ${fmt(b.mediaGsoUs, 2)}${over(b.runs.mediaGso ?? 0)} | | ${loadText(b.load.mediaGso ?? null)} |`,
				]
			: []),
		...(b.mediaNgtcp2Us
			? [
					`| bare ngtcp2 + GSO pump, the track to ${o.trialSubscribers} connections | ${fmt(b.mediaNgtcp2Us, 2)}${over(b.runs.mediaNgtcp2 ?? 0)} | ${b.mediaNgtcp2ToGso ? `${fmt(b.mediaNgtcp2ToGso, 2)} × quiche's, same audience` : ""} | ${loadText(b.load.mediaNgtcp2 ?? null)} |`,
				]
			: []),
		...(b.engines ?? []).flatMap((e) => [
			`| relay (${e.engine} engine), 1 worker, ${o.trialSubscribers} subscribers × ${o.bitrate} Mbit/s | ${fmt(e.oneWorkerUs, 2)}${over(e.runs.oneWorker)} | ${fmt(e.toBareDgram, 2)} × bare dgram${e.toBareGso ? `; ${fmt(e.toBareGso, 2)} × bare GSO` : ""}${e.engine === "ngtcp2" && e.toBareEngine ? `; ${fmt(e.toBareEngine, 2)} × bare ngtcp2` : ""}${e.toBareMedia ? `; ${fmt(e.toBareMedia, 2)} × its engine's pump, same audience` : ""}${e.toQuiche ? `; **${fmt(e.toQuiche, 2)} × quiche engine**` : ""} | ${loadText(e.load.oneWorker)} |`,
			`| relay (${e.engine} engine), 2 workers on the same core, same load | ${fmt(e.twoWorkersUs, 2)}${over(e.runs.twoWorkers)} | ${fmt(e.twoWorkersToOne, 3)} × 1 worker | ${loadText(e.load.twoWorkers)} |`,
		]),
		"",
		"µs / egress packet: the process's CPU (all threads, /proc/<pid>/stat) ÷ its egress packets in the window (the pump's own count;",
		"for the relay, the datagrams the load generators received). n/a: not measured, or every run was limited by the load.",
	];
	// A saturated machine (other tenants, or the load itself) makes every figure wait for a CPU: say so.
	const busy = [
		...doc.baseline.pumps
			.filter((p) => (p.machineBusy ?? 0) >= BUSY_MACHINE)
			.map(
				(p) =>
					`run ${p.run} ${p.egress}${audienceOf(p) === "media" ? " media" : ""} pump ${Math.round((p.machineBusy ?? 0) * 100)}%`,
			),
		...doc.baseline.relays
			.filter((r) => (r.steps[0]?.machineBusy ?? 0) >= BUSY_MACHINE)
			.map(
				(r) =>
					`run ${r.run} relay ${engineOf(r)} ${r.workers} worker${r.workers > 1 ? "s" : ""} ${Math.round((r.steps[0].machineBusy ?? 0) * 100)}%`,
			),
	];
	if (busy.length > 0)
		lines.push(
			`WARNING: the machine was ≥ ${BUSY_MACHINE * 100}% busy during ${busy.join(", ")}: those runs competed for CPU; measure on a quiet machine.`,
		);
	return lines.join("\n");
}

/** The capacity table per VM size, as printed. */
export function capacityTable(doc: BenchDocument): string {
	const o = doc.options;
	const bare = doc.bare.usPerPacket === null ? "not measured" : `${doc.bare.usPerPacket.toFixed(1)} µs, measured`;
	const lines = [
		`Capacity at ${o.bitrate} Mbit/s per subscriber, keyframe weight ${o.keyframeWeight}, p99 ≤ ${o.targetP99Ms} ms, no group loss` +
			(o.runs > 1 ? ` — min / median / max over ${o.runs} runs` : ""),
		receiversText(o),
		"",
		`| engine | cores | max subscribers | × quiche engine | p99 at max (ms) | read p99 at max (ms) | delivered at max (Mbit/s) | relay µs / egress packet | × bare quiche+dgram (${bare}) | worker threads µs / packet |`,
		"|---|---|---|---|---|---|---|---|---|---|",
	];
	for (const s of doc.summary) {
		const cap = `${fmt(s.capacity)}${s.lowerBound ? " (≥, load-bound)" : ""}`;
		const engine = s.engine ?? "quiche";
		const toQuiche = engine === "quiche" ? "1" : fmt(s.capacityToQuiche ?? null, 2);
		lines.push(
			`| ${o.url ? `${engine} (--url)` : engine} | ${s.cores} | ${cap} | ${toQuiche} | ${fmt(s.p99AtCapacityMs, 1)} | ${fmt(s.p99ReadAtCapacityMs ?? null, 1)} | ${fmt(s.mbpsAtCapacity, 1)} | ${fmt(s.usPerPacket, 1)} | ${fmt(s.ratioToBare, 2)} | ${fmt(s.workerUsPerPacket, 1)} |`,
		);
	}
	lines.push("");
	lines.push(
		o.refine > 0
			? `max subscribers: the largest count that passed; the steps (${o.steps.slice(0, 6).join(", ")}, …), then up to ${o.refine} counts evenly between the last pass and the first failure, in a fresh relay (--refine).`
			: "max subscribers: the largest step that passed (--refine 0: the gap to the first failure was not narrowed).",
	);
	lines.push(
		"µs / egress packet: relay process CPU (all threads, /proc) ÷ packets the load generators received, over steps with ≥ 25 subscribers that the generators did not limit.",
	);
	lines.push(
		"× quiche engine: the engine's capacity ÷ the quiche engine's in the same run (min / median / max of the run-by-run ratios).",
	);
	lines.push(
		"(≥, load-bound): the sweep ended because the load generators, not the relay, ran out of CPU (or at --max-subscribers); the relay carries at least this many.",
	);
	return lines.join("\n");
}
