/**
 * Results: the summary over runs (min / median / max of the headline numbers per core count), the
 * capacity table as text, and the JSON document.
 * @module
 */

import { cpus } from "node:os";
import type { BenchOptions } from "./args.ts";
import { BARE_US_PER_PACKET, type StepResult, type SweepResult } from "./sweep.ts";

export interface Spread {
	min: number;
	median: number;
	max: number;
}

export interface CoreSummary {
	cores: number;
	runs: number;
	/** Max subscribers with p99 ≤ target and no loss, over runs. */
	capacity: Spread;
	/** True when some run stopped because the load generator saturated: capacity is a lower bound. */
	lowerBound: boolean;
	/** At each run's capacity step. */
	p99AtCapacityMs: Spread | null;
	mbpsAtCapacity: Spread | null;
	/** Relay CPU per egress packet (µs) over every valid step, and its ratio to the bare quiche+UDP figure. */
	usPerPacket: Spread | null;
	ratioToBare: Spread | null;
	/** Worker threads only (closest to the per-thread BARE_US_PER_PACKET baseline). */
	workerUsPerPacket: Spread | null;
	/** Median latency percentiles per subscriber count over runs (the chart's data). */
	curve: { subscribers: number; p50: number; p90: number; p99: number; p999: number; runs: number }[];
}

export interface BenchDocument {
	version: 1;
	date: string;
	machine: { cpus: number; model: string; node: string };
	options: BenchOptions;
	bare: { usPerPacket: number; source: string };
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

export function summarize(sweeps: SweepResult[], coreCounts: number[]): CoreSummary[] {
	return coreCounts.map((cores) => {
		const mine = sweeps.filter((s) => s.cores === cores);
		const caps = mine.map((s) => s.capacity);
		const at = mine.map(atCapacity).filter((x): x is StepResult => x !== undefined);
		const valid = mine.flatMap((s) => s.steps.filter((x) => x.valid && x.usPerPacket !== null && x.subscribers >= 25));
		const bySubs = new Map<number, StepResult[]>();
		for (const s of mine)
			for (const x of s.steps) if (x.valid) bySubs.set(x.subscribers, [...(bySubs.get(x.subscribers) ?? []), x]);
		const med = (xs: number[]) => spread(xs)?.median ?? 0;
		return {
			cores,
			runs: mine.length,
			capacity: spread(caps) ?? { min: 0, median: 0, max: 0 },
			lowerBound: mine.some((s) => s.stoppedBy === "generator" || s.stoppedBy === "max"),
			p99AtCapacityMs: spread(at.map((x) => x.latencyMs.p99)),
			mbpsAtCapacity: spread(at.map((x) => x.deliveredMbps)),
			usPerPacket: spread(valid.map((x) => x.usPerPacket as number)),
			ratioToBare: spread(valid.map((x) => x.ratioToBare as number)),
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
	});
}

export function document(opts: BenchOptions, sweeps: SweepResult[]): BenchDocument {
	const c = cpus();
	return {
		version: 1,
		date: new Date().toISOString(),
		machine: { cpus: c.length, model: c[0]?.model ?? "unknown", node: process.version },
		options: opts,
		bare: {
			usPerPacket: BARE_US_PER_PACKET,
			source: "baseline: Node dgram + quiche, 20-conn fan-out (median)",
		},
		summary: summarize(sweeps, opts.cores),
		sweeps,
	};
}

const fmt = (s: Spread | null, digits = 0) =>
	s === null
		? "n/a"
		: s.min === s.max
			? s.median.toFixed(digits)
			: `${s.min.toFixed(digits)} / ${s.median.toFixed(digits)} / ${s.max.toFixed(digits)}`;

/** The capacity table per VM size, as printed. */
export function capacityTable(doc: BenchDocument): string {
	const o = doc.options;
	const lines = [
		`Capacity at ${o.bitrate} Mbit/s per subscriber, p99 ≤ ${o.targetP99Ms} ms, no group loss` +
			(o.runs > 1 ? ` — min / median / max over ${o.runs} runs` : ""),
		"",
		"| cores | max subscribers | p99 at max (ms) | delivered at max (Mbit/s) | relay µs / egress packet | × bare quiche+UDP (20.5 µs) | worker threads µs / packet |",
		"|---|---|---|---|---|---|---|",
	];
	for (const s of doc.summary) {
		const cap = `${fmt(s.capacity)}${s.lowerBound ? " (≥, load-bound)" : ""}`;
		lines.push(
			`| ${s.cores} | ${cap} | ${fmt(s.p99AtCapacityMs, 1)} | ${fmt(s.mbpsAtCapacity, 1)} | ${fmt(s.usPerPacket, 1)} | ${fmt(s.ratioToBare, 2)} | ${fmt(s.workerUsPerPacket, 1)} |`,
		);
	}
	lines.push("");
	lines.push(
		"µs / egress packet: relay process CPU (all threads, /proc) ÷ packets the load generators received, over steps with ≥ 25 subscribers that the generators did not limit.",
	);
	lines.push(
		"(≥, load-bound): the sweep ended because the load generators, not the relay, ran out of CPU (or at --max-subscribers); the relay carries at least this many.",
	);
	return lines.join("\n");
}
