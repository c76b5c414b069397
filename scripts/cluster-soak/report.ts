/**
 * The cluster churn soak's numbers: per-relay RSS trends (reference after the first minute, slope
 * over the second half), route and broadcast counts over time against their bounds, the verdicts,
 * and the artifacts (summary text with ASCII charts, CSV, SVG). Pure functions of the samples and
 * the run's result, except for what scripts/soak/report.ts provides (slope, formatting, limits).
 * @module
 */

import {
	clock,
	esc,
	fmt,
	MAX_RSS_RATIO,
	MAX_SLOPE_BYTES_PER_ROUND,
	niceStep,
	slope,
	type Verdict,
} from "../soak/report.ts";
import type { RestCount } from "./cluster.ts";
import type { EndSeen } from "./driver.ts";
import type { ClusterSample, ClusterSoakResult, ClusterVerdict } from "./result.ts";

export type { ClusterSample, ClusterVerdict, Verdict };

const MB = (b: number) => fmt(b / 1e6, 1);

function pad(s: string, n: number): string {
	return s.length >= n ? s : " ".repeat(n - s.length) + s;
}

function table(rows: string[][]): string {
	const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
	return rows
		.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : pad(cell, widths[c]))).join("  "))
		.join("\n");
}

// ── progress ───────────────────────────────────────────────────────────────────────────────────

export function progressLine(row: (ClusterSample | null)[], rounds: number, inFlight: number, label = ""): string {
	const t = row.find((s) => s)?.t ?? 0;
	const parts = row.map((s, i) =>
		s
			? `${s.name} ${pad(MB(s.rss), 5)} MB bc ${pad(String(s.broadcasts), 2)} rt ${pad(String(s.routes), 2)} up ${pad(String(s.upstreams), 2)} sub ${pad(String(s.subscriptions), 2)}${s.lingering ? ` ling ${s.lingering}` : ""}${s.stale ? ` STALE ${s.stale}` : ""}${s.peersUp < s.peersDialled ? ` links ${s.peersUp}/${s.peersDialled}` : ""}`
			: `r${i} (no answer)`,
	);
	return `${label ? `${label} ` : ""}${pad(clock(t), 5)} round ${pad(String(rounds), 4)} (${inFlight} live) | ${parts.join(" | ")}`;
}

// ── bounds ─────────────────────────────────────────────────────────────────────────────────────

/**
 * Each count's bound during the churn, per broadcast that may be live (in flight, or ended less than
 * the settle time before the sample), above its baseline:
 * - broadcasts, lingering ones, moq_fanout_relay_broadcasts: 1 each;
 * - routes (every worker's local routes): one per relay of the mesh (its own publisher, or each peer);
 * - upstream subscriptions: one per track (2);
 * - subscriptions: the viewers (maxViewers) and each peer's subscription per track (2 × (relays − 1)).
 */
export function boundOf(
	key: "broadcasts" | "lingering" | "relayBroadcasts" | "routes" | "upstreams" | "subscriptions",
	live: number,
	relays: number,
	maxViewers: number,
): number {
	switch (key) {
		case "routes":
			return relays * live;
		case "upstreams":
			return 2 * live;
		case "subscriptions":
			return (maxViewers + 2 * (relays - 1)) * live;
		default:
			return live;
	}
}

export const BOUNDED = ["broadcasts", "lingering", "relayBroadcasts", "routes", "upstreams", "subscriptions"] as const;

/** Counts above their bound during the churn: one line per relay and count (how often, the worst). */
export function countBounds(
	samples: ClusterSample[],
	baseline: Record<RestCount, number>[],
	relays: number,
	maxViewers: number,
): string[] {
	const out: string[] = [];
	for (let i = 0; i < relays; i++) {
		for (const key of BOUNDED) {
			const over = samples
				.filter((s) => s.relay === i && s.phase === "churn")
				.map((s) => ({ s, bound: baseline[i][key] + boundOf(key, s.live, relays, maxViewers) }))
				.filter(({ s, bound }) => s[key] > bound);
			if (over.length === 0) continue;
			const worst = over.reduce((a, b) => (b.s[key] - b.bound > a.s[key] - a.bound ? b : a));
			out.push(
				`${worst.s.name}: ${key} above its bound in ${over.length} sample(s); worst at ${clock(worst.s.t)}: ${worst.s[key]} > ${worst.bound} (${worst.s.live} broadcasts possibly live, ${worst.s.inFlight} rounds in flight; per worker b/rt/l ${worst.s.perWorker})`,
			);
		}
	}
	return out;
}

// ── RSS trends ─────────────────────────────────────────────────────────────────────────────────

export interface RssTrend {
	relay: string;
	/** Before the churn. */
	idle: number;
	/** The first sample at or after the reference time (1 minute, or a quarter of a shorter churn). */
	ref: number;
	refT: number;
	/** The last churn sample, and the last sample at rest. */
	end: number;
	rest: number;
	/** The largest churn sample from the reference on. */
	max: number;
	/** Least squares over the second half of the churn, bytes per finished round and per minute. */
	slopePerRound: number;
	slopePerMinute: number;
	ratio: number;
}

export function refSeconds(churnSeconds: number): number {
	return Math.min(60, churnSeconds / 4);
}

export function rssTrends(r: Pick<ClusterSoakResult, "samples" | "relays" | "churnSeconds">): RssTrend[] {
	const refT = refSeconds(r.churnSeconds);
	return r.relays.map((relay, i) => {
		const mine = r.samples.filter((s) => s.relay === i);
		const churn = mine.filter((s) => s.phase === "churn");
		const fromRef = churn.filter((s) => s.t >= refT);
		const ref = fromRef[0];
		const endT = churn.at(-1)?.t ?? 0;
		const half = churn.filter((s) => s.t >= endT / 2);
		const max = fromRef.length ? Math.max(...fromRef.map((s) => s.rss)) : Number.NaN;
		return {
			relay: relay.name,
			idle: mine.find((s) => s.phase === "idle")?.rss ?? Number.NaN,
			ref: ref?.rss ?? Number.NaN,
			refT: ref?.t ?? Number.NaN,
			end: churn.at(-1)?.rss ?? Number.NaN,
			rest: mine.filter((s) => s.phase === "rest").at(-1)?.rss ?? Number.NaN,
			max,
			slopePerRound: slope(
				half.map((s) => s.rounds),
				half.map((s) => s.rss),
			),
			slopePerMinute: slope(
				half.map((s) => s.t / 60),
				half.map((s) => s.rss),
			),
			ratio: ref ? max / ref.rss : Number.NaN,
		};
	});
}

// ── verdicts ───────────────────────────────────────────────────────────────────────────────────

export function verdicts(r: ClusterSoakResult): ClusterVerdict[] {
	const out: ClusterVerdict[] = [];
	const trends = rssTrends(r);
	const slopes = trends.map((t) => t.slopePerRound / 1000);
	out.push({
		short: "RSS slope",
		name: `RSS slope over the second half ≤ ${MAX_SLOPE_BYTES_PER_ROUND / 1000} KB/round on every relay`,
		ok: slopes.every((k) => Number.isFinite(k) && k <= MAX_SLOPE_BYTES_PER_ROUND / 1000),
		detail: trends
			.map((t, i) => `${t.relay} ${fmt(slopes[i], 1)} KB/round (${fmt(t.slopePerMinute / 1e6, 2)} MB/min)`)
			.join(", "),
	});
	out.push({
		short: "RSS ≤ 1.25× ref",
		name: `RSS ≤ ${MAX_RSS_RATIO} × its reference (after ${clock(refSeconds(r.churnSeconds))}) on every relay`,
		ok: trends.every((t) => Number.isFinite(t.ratio) && t.ratio <= MAX_RSS_RATIO),
		detail: trends.map((t) => `${t.relay} max ${MB(t.max)} / ${MB(t.ref)} MB = ${fmt(t.ratio, 3)}×`).join(", "),
	});
	out.push({
		short: "counts back at rest",
		name: "every count back to its baseline at rest, every link up",
		ok: r.leftovers.length === 0 && r.restSeconds !== null,
		detail:
			r.leftovers.length === 0 && r.restSeconds !== null
				? `back ${fmt(r.restSeconds, 1)} s after the last client left (broadcasts, routes, lingering, replicas, relay broadcasts, upstream subscriptions, subscriptions, tracks, sessions, cache bytes, links)`
				: r.leftovers.map((l) => l.split("\n")[0]).join("; ") || "no reading at rest",
	});
	out.push({
		short: "nothing retained",
		name: "at rest, no track or ring alive beyond what the relay core holds (GC probe, forced collections)",
		ok: r.retained !== null && r.retained.length === 0,
		detail:
			r.retained === null
				? "the GC probe did not answer (relays without MOQ_FANOUT_GC_PROBE=1)"
				: r.retained.length === 0
					? "every worker of every relay"
					: r.retained.join("; "),
	});
	out.push({
		short: "counts bounded",
		name: "counts during the churn bounded by the broadcasts in flight",
		ok: r.overBound.length === 0,
		detail:
			r.overBound.length === 0
				? `${r.samples.filter((s) => s.phase === "churn").length} samples within bounds`
				: r.overBound.join("; "),
	});
	out.push({
		short: "no ghosts",
		name: "no ghost broadcasts (none listed > linger + peer idle + 2 s after its end)",
		ok: r.stale.length === 0,
		detail:
			r.stale.length === 0
				? "none"
				: `${r.stale.length} broadcast(s) listed after their end: ${r.stale
						.slice(0, 5)
						.map(
							(s) =>
								`${s.relay} ${s.path} from ${clock(s.firstT)} to ${clock(s.lastT)} (${s.endedAgoMs === null ? "not ours" : `${s.mode} end`})`,
						)
						.join("; ")}${r.stale.length > 5 ? "; …" : ""}`,
	});
	const st = r.stats;
	out.push({
		short: "delivery",
		name: "delivery: every viewer got every group whole, once",
		ok: st.problemCount === 0 && st.groupsChecked > 0,
		detail:
			st.problemCount === 0
				? `${st.groupsChecked} groups checked at ${st.viewerSessions} viewers, ${st.groupsReceived} received`
				: `${st.problemCount} problem(s), ${st.starvedViewers} viewers got nothing: ${st.problems.slice(0, 3).join("; ")}`,
	});
	out.push({
		short: "no relay exit",
		name: "no relay exited",
		ok: r.exits.length === 0,
		detail:
			r.exits.length === 0
				? `all ${r.relays.length} ran to the end (exit on SIGTERM: ${r.exitCodes.join(", ")})`
				: r.exits.map((e) => `${e.relay} exited (${e.code}) at ${clock(e.t)}`).join(", "),
	});
	return out;
}

// ── the summary ───────────────────────────────────────────────────────────────────────────────

function endSeen(e: EndSeen): string {
	const resets = Object.values(e.reset).reduce((a, b) => a + b, 0);
	const codes = Object.entries(e.reset)
		.map(([k, v]) => `code ${k}: ${v}`)
		.join(", ");
	return `${e.clean} ended cleanly, ${resets} reset${codes ? ` (${codes})` : ""}, ${e.none} saw nothing`;
}

const COUNT_COLUMNS: [RestCount | "routeChanges", string][] = [
	["broadcasts", "broadcasts"],
	["routes", "routes"],
	["lingering", "lingering"],
	["replicas", "replicas"],
	["upstreams", "upstream subs"],
	["subscriptions", "subscriptions"],
	["tracks", "tracks"],
	["sessions", "sessions"],
	["cacheBytes", "cache bytes"],
	["routeChanges", "route changes"],
	["peersUp", "links up"],
];

/** The report printed at the end and written to summary.txt. */
export function summary(r: ClusterSoakResult): string[] {
	const lines: string[] = [];
	const out = (l = "") => lines.push(l);
	const st = r.stats;
	const o = r.options;
	out(
		`cluster soak summary: ${clock(r.churnSeconds)} of churn (every round done at ${clock(r.drainedSeconds)}), ${st.roundsDone} rounds on ${o.relays} relays × ${o.workers} workers (full mesh from one nodes list), seed ${o.seed}${r.interrupted ? " (interrupted)" : ""}`,
	);
	out(
		`  a round every ${o.roundMs} ms, publishing ${o.watchMs} ms (2 tracks, a group every 100 ms), 1-${o.maxViewers} viewers on other relays; linger ${o.lingerMs} ms, peer idle timeout ${o.peerIdleMs} ms`,
	);
	out(
		`  rounds: ${st.roundsStarted} started, ${st.roundsDone} done, ${st.roundsSkipped} skipped (too many in flight), at most ${r.maxInFlight} in flight at a sample; ends: ${st.ends.clean} clean unpublish, ${st.ends.close} connection closed, ${st.ends["viewers-first"]} viewers-first`,
	);
	out(
		`  publishers per relay: ${r.relays.map((x, i) => `${x.name} ${st.publishersPerRelay[i]}`).join(", ")}; viewers per relay: ${r.relays.map((x, i) => `${x.name} ${st.viewersPerRelay[i]}`).join(", ")}`,
	);
	out(
		`  delivery: ${st.viewerSessions} viewers (${st.viewerOpenFailures} failed to subscribe, ${st.publishFailures} publishers failed to connect); ${st.groupsPublished} groups published, ${st.groupsReceived} received, ${st.groupsChecked} checked whole and once; ${st.starvedViewers} viewers got nothing, ${st.earlyEnds} subscriptions ended early; ${st.problemCount} problems`,
	);
	for (const p of st.problems.slice(0, 20)) out(`    - ${p}`);
	if (st.problemCount > 20) out(`    … ${st.problemCount - 20} more (samples.json has up to 200)`);
	out(`  ends seen by viewers that stayed: after an unpublish ${endSeen(st.afterUnpublish)}`);
	out(`                                   after the publisher's connection closed ${endSeen(st.afterClose)}`);
	if (Object.keys(st.errors).length) {
		out("  client errors:");
		for (const [msg, n] of Object.entries(st.errors)) out(`    ${n} × ${msg}`);
	}
	const last = r.relays.map((_, i) => r.samples.filter((s) => s.relay === i).at(-1));
	out(
		`  relays: ${r.relays.map((x, i) => `${x.name} exit ${r.exitCodes[i]}, ${last[i]?.sessionFaults ?? "?"} session faults, ${last[i]?.workerRestarts ?? "?"} worker restarts`).join("; ")}`,
	);
	if (r.exits.length) out(`  RELAY EXITS: ${r.exits.map((e) => `${e.relay} (${e.code}) at ${clock(e.t)}`).join(", ")}`);
	if (r.sampleErrors.length) out(`  ${r.sampleErrors.length} failed reads: ${r.sampleErrors.slice(0, 3).join("; ")}`);

	out();
	const trends = rssTrends(r);
	out(
		`RSS per relay (reference: the first sample from ${clock(refSeconds(r.churnSeconds))} on; slopes over the second half of the churn, least squares; max from the reference on):`,
	);
	out(
		table([
			["relay", "idle MB", "ref MB", "end MB", "rest MB", "max MB", "slope/round", "slope/min", "max/ref"],
			...trends.map((t) => [
				t.relay,
				MB(t.idle),
				MB(t.ref),
				MB(t.end),
				MB(t.rest),
				MB(t.max),
				`${fmt(t.slopePerRound / 1000, 1)} KB`,
				`${fmt(t.slopePerMinute / 1e6, 2)} MB`,
				`${fmt(t.ratio, 3)}×`,
			]),
		]),
	);
	out();
	out("Counts per relay: max during the churn / at rest (baseline):");
	out(
		table([
			["relay", ...COUNT_COLUMNS.map(([, l]) => l)],
			...r.relays.map((x, i) => {
				const churn = r.samples.filter((s) => s.relay === i && s.phase === "churn");
				const rest = r.samples.filter((s) => s.relay === i && s.phase === "rest").at(-1);
				return [
					x.name,
					...COUNT_COLUMNS.map(([k]) => {
						const max = churn.length ? Math.max(...churn.map((s) => s[k])) : Number.NaN;
						const b = k === "routeChanges" ? null : r.baseline[i][k];
						return `${max} / ${rest?.[k] ?? "?"}${b === null ? "" : ` (${b})`}`;
					}),
				];
			}),
		]),
	);
	const live = r.samples.filter((s) => s.phase === "churn").map((s) => s.live);
	out(
		`Broadcasts possibly live at a sample (in flight, or ended < linger + peer idle + 2 s before): max ${live.length ? Math.max(...live) : 0}. Routes per relay are bounded by ${o.relays} per such broadcast, upstream subscriptions by 2, subscriptions by ${o.maxViewers + 2 * (o.relays - 1)}.`,
	);
	for (const x of r.overBound) out(`  OVER BOUND: ${x}`);
	for (const s of r.stale.slice(0, 12))
		out(
			`  GHOST: ${s.relay} listed ${s.path} in ${s.samples} sample(s) from ${clock(s.firstT)} to ${clock(s.lastT)}, first ${s.endedAgoMs === null ? "(not a round of ours)" : `${s.endedAgoMs} ms after its ${s.mode} end (${s.round})`}${s.excerpt ? `\n    /cluster: ${s.excerpt.replace(/\n/g, "\n    ")}` : ""}`,
		);
	if (r.stale.length > 12) out(`  … ${r.stale.length - 12} more ghosts (samples.json lists them all)`);
	for (const l of r.leftovers) out(`  AT REST: ${l}`);

	for (const [i, x] of r.relays.entries()) {
		const mine = r.samples.filter((s) => s.relay === i && s.phase !== "idle");
		const t = trends[i];
		out();
		out(`${x.name} (${x.url}, hop id ${x.id}, dials ${x.dials.length ? x.dials.join(" ") : "none"})`);
		out(
			asciiPlot([{ label: "RSS (MB)", glyph: "*", points: mine.map((s) => [s.t, s.rss / 1e6]) }], {
				width: 64,
				height: 8,
				limit: Number.isFinite(t.ref) ? (t.ref * MAX_RSS_RATIO) / 1e6 : undefined,
			}),
		);
		out(
			asciiPlot(
				[
					{ label: "routes", glyph: "r", points: mine.map((s) => [s.t, s.routes]) },
					{ label: "broadcasts", glyph: "b", points: mine.map((s) => [s.t, s.broadcasts]) },
					{ label: "upstream subs", glyph: "u", points: mine.map((s) => [s.t, s.upstreams]) },
				],
				{ width: 64, height: 8, fromZero: true },
			),
		);
	}
	out();
	for (const v of r.verdicts) out(`${v.ok ? "PASS" : "FAIL"}  ${v.name}: ${v.detail}`);
	out(r.ok ? "cluster soak: PASS" : `cluster soak: FAIL${r.interrupted ? " (interrupted)" : ""}`);
	if (!r.ok && r.logs) {
		out();
		out(r.logs);
	}
	return lines;
}

// ── ASCII chart ────────────────────────────────────────────────────────────────────────────────

export interface PlotSeries {
	label: string;
	glyph: string;
	points: [number, number][];
}

/**
 * Series over time in a terminal chart: columns are time buckets (the mean of each), later series
 * drawn over earlier ones; `limit` as a dotted line; the time axis in minutes:seconds.
 */
export function asciiPlot(
	series: PlotSeries[],
	opts: { width?: number; height?: number; limit?: number; fromZero?: boolean } = {},
): string {
	const width = opts.width ?? 64;
	const height = opts.height ?? 8;
	const all = series.flatMap((s) => s.points);
	if (all.length < 2) return "(too few samples to chart)";
	const t0 = Math.min(...all.map((p) => p[0]));
	const t1 = Math.max(...all.map((p) => p[0]));
	const cols = series.map((s) => {
		const buckets: number[][] = Array.from({ length: width }, () => []);
		for (const [t, v] of s.points) {
			const c = Math.min(width - 1, Math.floor(((t - t0) / Math.max(1e-9, t1 - t0)) * width));
			buckets[c].push(v);
		}
		return buckets.map((b) => (b.length ? b.reduce((a, x) => a + x, 0) / b.length : Number.NaN));
	});
	const finite = cols.flat().filter(Number.isFinite);
	let lo = Math.min(...finite);
	let hi = Math.max(...finite);
	if (opts.fromZero) lo = Math.min(0, lo);
	if (opts.limit !== undefined) {
		lo = Math.min(lo, opts.limit);
		hi = Math.max(hi, opts.limit);
	}
	if (hi - lo < 1e-9) hi = lo + 1;
	const rowOf = (v: number) => Math.round(((v - lo) / (hi - lo)) * (height - 1));
	const grid = Array.from({ length: height }, () => Array.from({ length: width }, () => " "));
	if (opts.limit !== undefined) for (let c = 0; c < width; c++) grid[rowOf(opts.limit)][c] = "·";
	series.forEach((s, k) => {
		for (let c = 0; c < width; c++) if (Number.isFinite(cols[k][c])) grid[rowOf(cols[k][c])][c] = s.glyph;
	});
	const digits = hi - lo < 10 ? 1 : 0;
	const out: string[] = [];
	for (let r = height - 1; r >= 0; r--) {
		const v = lo + ((hi - lo) * r) / (height - 1);
		const label = r === height - 1 || r === 0 || r === height >> 1 ? pad(fmt(v, digits), 8) : " ".repeat(8);
		out.push(`${label} │${grid[r].join("")}`);
	}
	out.push(`${" ".repeat(8)} └${"─".repeat(width)}`);
	const left = clock(t0);
	const right = clock(t1);
	out.push(`${" ".repeat(10)}${left}${" ".repeat(Math.max(1, width - left.length - right.length))}${right}`);
	const legend = series.map((s) => `${s.glyph} ${s.label}`).join("  ");
	return `${legend}${opts.limit !== undefined ? `  ··· ${MAX_RSS_RATIO}× the reference` : ""}\n${out.join("\n")}`;
}

// ── CSV ───────────────────────────────────────────────────────────────────────────────────────

const COLUMNS: (keyof ClusterSample)[] = [
	"t",
	"phase",
	"relay",
	"name",
	"rounds",
	"inFlight",
	"live",
	"rss",
	"broadcasts",
	"routes",
	"lingering",
	"stale",
	"replicas",
	"relayBroadcasts",
	"upstreams",
	"subscriptions",
	"tracks",
	"sessions",
	"cacheBytes",
	"routeChanges",
	"peersUp",
	"peersDialled",
	"sessionFaults",
	"workerRestarts",
	"perWorker",
];

export function toCsv(samples: ClusterSample[]): string {
	const lines = [COLUMNS.join(",")];
	for (const s of samples) lines.push(COLUMNS.map((c) => (c === "t" ? s.t.toFixed(1) : String(s[c]))).join(","));
	return `${lines.join("\n")}\n`;
}

// ── SVG ───────────────────────────────────────────────────────────────────────────────────────

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
const W = 960;
const PANEL_H = 200;
const M = { left: 70, right: 240, top: 100, gap: 40, bottom: 44 };

interface SvgLine {
	label: string;
	color: string;
	dash?: string;
	width?: number;
	points: [number, number][];
}

/**
 * The chart: RSS per relay (each with its 1.25 × reference limit, dotted, in its colour), routes
 * offered per relay with the broadcasts possibly live (grey), and subscriptions and upstream
 * subscriptions per relay. Hand-written SVG, self-contained.
 */
export function chartSvg(r: ClusterSoakResult): string {
	const trends = rssTrends(r);
	const ofRelay = (i: number) => r.samples.filter((s) => s.relay === i);
	const liveRow = r.samples.filter((s) => s.relay === 0 && s.phase !== "idle");
	const panels: {
		title: string;
		unit: string;
		lines: SvgLine[];
		limits: { v: number; color: string }[];
		zero: boolean;
	}[] = [
		{
			title: "Relay RSS (one line per relay)",
			unit: "MB",
			zero: false,
			lines: r.relays.map((x, i) => ({
				label: `${x.name} RSS`,
				color: COLORS[i % COLORS.length],
				points: ofRelay(i).map((s) => [s.t, s.rss / 1e6]),
			})),
			limits: trends
				.map((t, i) => ({ v: (t.ref * MAX_RSS_RATIO) / 1e6, color: COLORS[i % COLORS.length] }))
				.filter((l) => Number.isFinite(l.v)),
		},
		{
			title: "Routes offered (/cluster, all workers) and broadcasts possibly live",
			unit: "count",
			zero: true,
			lines: [
				...r.relays.map((x, i) => ({
					label: `${x.name} routes`,
					color: COLORS[i % COLORS.length],
					points: ofRelay(i).map((s): [number, number] => [s.t, s.routes]),
				})),
				...r.relays.map((x, i) => ({
					label: `${x.name} broadcasts`,
					color: COLORS[i % COLORS.length],
					dash: "4 3",
					width: 1.2,
					points: ofRelay(i).map((s): [number, number] => [s.t, s.broadcasts]),
				})),
				{ label: "live broadcasts", color: "#999", width: 1, points: liveRow.map((s) => [s.t, s.live]) },
			],
			limits: [],
		},
		{
			title: "Subscriptions and upstream subscriptions (/metrics)",
			unit: "count",
			zero: true,
			lines: [
				...r.relays.map((x, i) => ({
					label: `${x.name} subscriptions`,
					color: COLORS[i % COLORS.length],
					points: ofRelay(i).map((s): [number, number] => [s.t, s.subscriptions]),
				})),
				...r.relays.map((x, i) => ({
					label: `${x.name} upstream`,
					color: COLORS[i % COLORS.length],
					dash: "4 3",
					width: 1.2,
					points: ofRelay(i).map((s): [number, number] => [s.t, s.upstreams]),
				})),
			],
			limits: [],
		},
	];
	const st = r.stats;
	const title = `moq-fanout cluster soak: ${clock(r.churnSeconds)} of churn, ${st.roundsDone} rounds, ${r.options.relays} relays × ${r.options.workers} workers — ${r.ok ? "PASS" : "FAIL"}`;
	const subtitle = [
		`a round every ${r.options.roundMs} ms (${r.options.watchMs} ms each, 1-${r.options.maxViewers} viewers on other relays), linger ${r.options.lingerMs} ms, peer idle ${r.options.peerIdleMs} ms; ${st.groupsReceived} groups received, ${st.problemCount} delivery problems`,
		`RSS MB idle → reference → end: ${trends.map((t) => `${t.relay} ${MB(t.idle)} → ${MB(t.ref)} → ${MB(t.end)} (${fmt(t.slopePerRound / 1000, 1)} KB/round)`).join(", ")}`,
		r.verdicts.map((v) => `${v.ok ? "PASS" : "FAIL"} ${v.short}`).join(" · "),
	];
	const H = M.top + panels.length * PANEL_H + (panels.length - 1) * M.gap + M.bottom;
	const pw = W - M.left - M.right;
	const ph = PANEL_H;
	const ts = r.samples.map((s) => s.t);
	const tMin = Math.min(0, ...ts);
	const tMax = Math.max(1, ...ts);
	const x = (t: number) => M.left + ((t - tMin) / (tMax - tMin)) * pw;
	const churnEnd = Math.max(0, ...r.samples.filter((s) => s.phase === "churn").map((s) => s.t));
	const out: string[] = [];
	out.push(
		`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
	);
	out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
	out.push(`<text x="${M.left}" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`);
	subtitle.forEach((line, i) => {
		out.push(`<text x="${M.left}" y="${42 + i * 16}" fill="#555" font-size="11">${esc(line)}</text>`);
	});
	panels.forEach((panel, i) => {
		const top = M.top + i * (PANEL_H + M.gap);
		const vals = [...panel.lines.flatMap((l) => l.points.map((p) => p[1])), ...panel.limits.map((l) => l.v)];
		let lo = vals.length ? Math.min(...vals) : 0;
		let hi = vals.length ? Math.max(...vals) : 1;
		if (panel.zero) lo = Math.min(0, lo);
		if (hi - lo < 1e-9) hi = lo + 1;
		const margin = (hi - lo) * 0.08;
		if (!panel.zero) lo -= margin;
		hi += margin;
		const y = (v: number) => top + ph - ((v - lo) / (hi - lo)) * ph;
		out.push(`<text x="${M.left}" y="${top - 8}" font-weight="bold">${esc(panel.title)}</text>`);
		const step = niceStep(hi - lo, 5);
		for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
			out.push(
				`<line x1="${M.left}" y1="${y(v).toFixed(1)}" x2="${M.left + pw}" y2="${y(v).toFixed(1)}" stroke="#eee"/>`,
			);
			out.push(`<text x="${M.left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${Number(v.toFixed(6))}</text>`);
		}
		const tStep = niceStep((tMax - tMin) / 60, 8) * 60;
		for (let t = Math.ceil(tMin / tStep) * tStep; t <= tMax; t += tStep) {
			out.push(`<line x1="${x(t).toFixed(1)}" y1="${top}" x2="${x(t).toFixed(1)}" y2="${top + ph}" stroke="#f2f2f2"/>`);
			out.push(
				`<text x="${x(t).toFixed(1)}" y="${top + ph + 14}" text-anchor="middle" fill="#666">${Number((t / 60).toFixed(2))}</text>`,
			);
		}
		if (churnEnd > 0 && churnEnd < tMax)
			out.push(
				`<rect x="${x(churnEnd).toFixed(1)}" y="${top}" width="${(x(tMax) - x(churnEnd)).toFixed(1)}" height="${ph}" fill="#f4f4f4"/>`,
			);
		if (churnEnd > 0)
			out.push(
				`<line x1="${x(churnEnd / 2).toFixed(1)}" y1="${top}" x2="${x(churnEnd / 2).toFixed(1)}" y2="${top + ph}" stroke="#bbb" stroke-dasharray="2 3"/>`,
			);
		out.push(`<rect x="${M.left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
		out.push(
			`<text transform="translate(18 ${top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(panel.unit)}</text>`,
		);
		let legendY = top + 12;
		const legend = (color: string, dash: string | undefined, text: string) => {
			const lx = M.left + pw + 14;
			out.push(
				`<line x1="${lx}" y1="${legendY - 4}" x2="${lx + 22}" y2="${legendY - 4}" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ""}/>`,
			);
			out.push(`<text x="${lx + 28}" y="${legendY}" font-size="11">${esc(text)}</text>`);
			legendY += 15;
		};
		for (const l of panel.lines) {
			if (l.points.length === 0) continue;
			const d = l.points.map((p, j) => `${j === 0 ? "M" : "L"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
			out.push(
				`<path class="series" d="${d}" fill="none" stroke="${l.color}" stroke-width="${l.width ?? 1.6}"${l.dash ? ` stroke-dasharray="${l.dash}"` : ""}/>`,
			);
			legend(l.color, l.dash, l.label);
		}
		for (const lim of panel.limits) {
			const ly = y(lim.v).toFixed(1);
			out.push(
				`<line class="limit" x1="${M.left}" y1="${ly}" x2="${M.left + pw}" y2="${ly}" stroke="${lim.color}" stroke-dasharray="1 3"/>`,
			);
		}
		if (panel.limits.length) legend("#888", "1 3", `${MAX_RSS_RATIO}× each relay's reference`);
	});
	out.push(
		`<text x="${M.left + pw / 2}" y="${H - 10}" text-anchor="middle">minutes since the churn started (grey: after it; dots: half-way)</text>`,
	);
	out.push("</svg>");
	return `${out.join("\n")}\n`;
}
