/**
 * Scaling results: min / median / max per configuration over runs, the ratios B/A (target ≥ 1.8×
 * for 2 workers) and C/B, the printed table, the JSON document and an SVG bar chart.
 * @module
 */

import { cpus } from "node:os";
import { type Spread, spread } from "./report.ts";
import { type ConfigId, configSpec, type ScalingOptions } from "./scaling-args.ts";
import { LIMITS, type Limit, type TrialResult } from "./scaling-trial.ts";

export const TARGET_RATIO = 1.8;

export interface ConfigSummary {
	config: ConfigId;
	label: string;
	workers: number;
	reusePort: boolean;
	/** Trials that completed (error-free); every spread below is over them. */
	runs: number;
	/** Of those, trials the relay's CPU limited (the others measured something else first). */
	relayLimitedRuns: number;
	/** Trials still disturbed by other processes after every retry (included above, flagged). */
	disturbedRuns: number;
	errors: number;
	limits: Record<Limit, number>;
	deliveredMbps: Spread | null;
	packetsPerSec: Spread | null;
	relayCpuCores: Spread | null;
	usPerPacket: Spread | null;
	workerUsPerPacket: Spread | null;
	loadCpuCores: Spread | null;
	/** Each worker's share of the egress packets, over runs. */
	workerShare: { worker: number; share: Spread }[];
	udpRcvbufErrors: Spread | null;
}

export interface Ratio {
	name: "B/A" | "C/B";
	/** Median packets/s of the first ÷ median of the second. */
	ofMedians: number | null;
	/** Per-run ratios (trial i of one ÷ trial i of the other: interleaved, so they shared the machine's mood). */
	paired: Spread | null;
	/**
	 * CPU cost ratio: µs/packet of the second ÷ µs/packet of the first (medians), times the first's
	 * core share. A projection of the ratio had each relay had its cores to itself; not a measurement.
	 */
	cpuProjection: number | null;
	/** Only for B/A: whether the measured ratio of medians reached TARGET_RATIO. */
	target: number | null;
	met: boolean | null;
	/** Both sides limited by the relay in every run: otherwise the measured ratio says more about the load. */
	relayLimited: boolean;
}

export interface ScalingDocument {
	version: 1;
	kind: "scaling";
	date: string;
	machine: { cpus: number; model: string; node: string };
	options: ScalingOptions;
	summary: ConfigSummary[];
	ratios: Ratio[];
	/** One per run and configuration: the last attempt (disturbed only when every retry was). */
	trials: TrialResult[];
	/** Attempts that other processes disturbed and that were repeated (not in the summary). */
	discarded: TrialResult[];
}

const ok = (t: TrialResult) => t.error === null;

export function summarizeConfig(id: ConfigId, opts: ScalingOptions, trials: TrialResult[]): ConfigSummary {
	const spec = configSpec(id, opts.cores);
	const all = trials.filter((t) => t.config === id);
	const mine = all.filter(ok);
	const nums = (f: (t: TrialResult) => number | null) =>
		spread(mine.map(f).filter((x): x is number => x !== null && Number.isFinite(x)));
	const limits = Object.fromEntries(LIMITS.map((l) => [l, 0])) as Record<Limit, number>;
	for (const t of mine) limits[t.limitedBy]++;
	const workerIds = [...new Set(mine.flatMap((t) => t.workerShares.map((w) => w.worker)))].sort((a, b) => a - b);
	return {
		config: id,
		label: spec.label,
		workers: spec.workers,
		reusePort: spec.reusePort,
		runs: mine.length,
		relayLimitedRuns: mine.filter((t) => t.valid).length,
		disturbedRuns: mine.filter((t) => t.disturbed).length,
		errors: all.length - mine.length,
		limits,
		deliveredMbps: nums((t) => t.deliveredMbps),
		packetsPerSec: nums((t) => t.packetsPerSec),
		relayCpuCores: nums((t) => t.relayCpuCores),
		usPerPacket: nums((t) => t.usPerPacket),
		workerUsPerPacket: nums((t) => t.workerUsPerPacket),
		loadCpuCores: nums((t) => t.loadCpuCores),
		workerShare: workerIds
			.map((w) => ({
				worker: w,
				share: nums((t) => t.workerShares.find((x) => x.worker === w)?.share ?? null),
			}))
			.filter((x): x is { worker: number; share: Spread } => x.share !== null),
		udpRcvbufErrors: nums((t) => t.udp.rcvbufErrors),
	};
}

function ratio(
	name: Ratio["name"],
	top: ConfigSummary | undefined,
	bottom: ConfigSummary | undefined,
	trials: TrialResult[],
): Ratio | null {
	if (!top || !bottom) return null;
	const a = top.packetsPerSec?.median ?? null;
	const b = bottom.packetsPerSec?.median ?? null;
	const ofMedians = a !== null && b !== null && b > 0 ? Math.round((a / b) * 1000) / 1000 : null;
	const paired: number[] = [];
	for (const t of trials) {
		if (t.config !== top.config || !ok(t)) continue;
		const other = trials.find((x) => x.config === bottom.config && x.run === t.run && ok(x));
		if (other && other.packetsPerSec > 0)
			paired.push(Math.round((t.packetsPerSec / other.packetsPerSec) * 1000) / 1000);
	}
	const usTop = top.usPerPacket?.median ?? null;
	const usBottom = bottom.usPerPacket?.median ?? null;
	const cpuProjection =
		usTop !== null && usBottom !== null && usTop > 0
			? Math.round((top.workers / bottom.workers) * (usBottom / usTop) * 1000) / 1000
			: null;
	const isTarget = name === "B/A";
	return {
		name,
		ofMedians,
		paired: spread(paired),
		cpuProjection,
		target: isTarget ? TARGET_RATIO : null,
		met: isTarget && ofMedians !== null ? ofMedians >= TARGET_RATIO : null,
		relayLimited:
			top.runs > 0 && bottom.runs > 0 && top.relayLimitedRuns === top.runs && bottom.relayLimitedRuns === bottom.runs,
	};
}

export function scalingDocument(
	opts: ScalingOptions,
	trials: TrialResult[],
	discarded: TrialResult[] = [],
): ScalingDocument {
	const c = cpus();
	const summary = opts.configs.map((id) => summarizeConfig(id, opts, trials));
	const by = (id: ConfigId) => summary.find((s) => s.config === id);
	return {
		version: 1,
		kind: "scaling",
		date: new Date().toISOString(),
		machine: { cpus: c.length, model: c[0]?.model ?? "unknown", node: process.version },
		options: opts,
		summary,
		ratios: [ratio("B/A", by("B"), by("A"), trials), ratio("C/B", by("C"), by("B"), trials)].filter(
			(r): r is Ratio => r !== null,
		),
		trials,
		discarded,
	};
}

const fmt = (s: Spread | null, digits = 0, scale = 1) =>
	s === null
		? "n/a"
		: s.min === s.max
			? (s.median * scale).toFixed(digits)
			: `${(s.min * scale).toFixed(digits)} / ${(s.median * scale).toFixed(digits)} / ${(s.max * scale).toFixed(digits)}`;

/** One line per finished trial (progress output). */
export function trialLine(t: TrialResult): string {
	if (t.error) return `  ${t.config} run ${t.run} · ERROR ${t.error.split("\n")[0]}`;
	const shares =
		t.workerShares.length > 1
			? ` · workers ${t.workerShares.map((w) => Math.round((w.share ?? 0) * 100)).join("/")}%`
			: "";
	const gen = t.generatorCpu.map((c) => Math.round(c * 100)).join("/");
	return (
		`  ${t.config} run ${t.run} · ${t.deliveredMbps.toFixed(1).padStart(6)} of ${t.offeredMbps} Mbit/s · ` +
		`${(t.packetsPerSec / 1000).toFixed(1).padStart(5)} kpps · relay ${t.relayCpuCores?.toFixed(2) ?? "n/a"} cores · ` +
		`${t.usPerPacket?.toFixed(1) ?? "n/a"} µs/pkt${shares} · rcvbuf drops ${t.udp.rcvbufErrors ?? "n/a"} · ` +
		`gen ${gen}% pub ${Math.round((t.publisherCpu ?? 0) * 100)}% · machine ${Math.round((t.machineBusy ?? 0) * 100)}%` +
		`${t.otherCpuCores === null ? "" : ` (others ${t.otherCpuCores.toFixed(2)} cores)`} · ` +
		`limited by ${t.limitedBy}${t.valid ? "" : " (not a relay measurement)"}` +
		(t.disturbed ? ` · DISTURBED (others used ${t.otherCpuCores?.toFixed(2)} cores)` : "")
	);
}

function limitsText(s: ConfigSummary): string {
	const parts = LIMITS.filter((l) => s.limits[l] > 0).map((l) => `${l} ×${s.limits[l]}`);
	return parts.length ? parts.join(", ") : "n/a";
}

export function scalingTable(doc: ScalingDocument): string {
	const o = doc.options;
	const lines = [
		`Scaling at ${o.subscribers} subscribers × ${o.bitrate} Mbit/s (${Math.round(o.subscribers * o.bitrate)} Mbit/s offered)` +
			` — min / median / max over ${o.runs} run(s)`,
		"",
		"| config | delivered Mbit/s | egress kpps | relay CPU (cores) | relay µs / egress packet | per-worker packet share | UDP RcvbufErrors | load CPU (cores) | limited by |",
		"|---|---|---|---|---|---|---|---|---|",
	];
	for (const s of doc.summary) {
		const shares =
			s.workerShare.length > 1 ? s.workerShare.map((w) => `w${w.worker} ${fmt(w.share, 0, 100)}%`).join("; ") : "—";
		lines.push(
			`| ${s.config}: ${s.label} | ${fmt(s.deliveredMbps, 1)} | ${fmt(s.packetsPerSec, 1, 0.001)} | ${fmt(s.relayCpuCores, 2)} | ` +
				`${fmt(s.usPerPacket, 1)} | ${shares} | ${fmt(s.udpRcvbufErrors)} | ${fmt(s.loadCpuCores, 2)} | ${limitsText(s)}` +
				`${s.errors ? `, ${s.errors} failed` : ""}${s.disturbedRuns ? `, ${s.disturbedRuns} disturbed` : ""} |`,
		);
	}
	lines.push("");
	for (const r of doc.ratios) {
		const measured = r.ofMedians === null ? "n/a" : `${r.ofMedians.toFixed(2)}×`;
		const paired = r.paired ? ` (per run ${fmt(r.paired, 2)})` : "";
		const target =
			r.target === null
				? ""
				: ` · target ≥ ${r.target}×: ${r.met ? "met" : "NOT met"}${r.relayLimited ? "" : " (not every run was relay-limited: this ratio measures the set-up, not only the relay)"}`;
		const proj =
			r.cpuProjection === null
				? ""
				: ` · from CPU per packet: ${r.cpuProjection.toFixed(2)}× (projection, not measured)`;
		lines.push(`${r.name} egress packets/s: ${measured}${paired}${target}${proj}`);
	}
	lines.push("");
	lines.push(
		"µs / egress packet: relay process CPU (all threads) ÷ UDP datagrams the load generators received. limited by: relay = the relay used ≥ 90 % of its cores (a valid capacity measurement); relay+generators = both saturated (the relay's capacity at most); generators = a load process saturated; shared-cpu = relay and load shared the cores and the machine was ≥ 90 % busy.",
	);
	return lines.join("\n");
}

const COLORS: Record<ConfigId, string> = { A: "#1f77b4", B: "#2ca02c", C: "#d62728" };

function esc(s: string): string {
	return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Median egress kpps per configuration with min–max whiskers. */
export function scalingChart(doc: ScalingDocument): string {
	const W = 560;
	const H = 360;
	const M = { left: 64, right: 20, top: 44, bottom: 64 };
	const pw = W - M.left - M.right;
	const ph = H - M.top - M.bottom;
	const rows = doc.summary.filter((s) => s.packetsPerSec !== null);
	const top = Math.max(1, ...rows.map((s) => s.packetsPerSec!.max / 1000)) * 1.15;
	const y = (kpps: number) => M.top + ph - (kpps / top) * ph;
	const slot = pw / Math.max(1, rows.length);
	const out: string[] = [
		`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
		`<rect width="${W}" height="${H}" fill="white"/>`,
		`<text x="${M.left}" y="22" font-size="14" font-weight="bold">${esc(`Relay egress, ${doc.options.subscribers} subscribers × ${doc.options.bitrate} Mbit/s (median, min–max)`)}</text>`,
	];
	const step = top > 50 ? 20 : top > 20 ? 10 : top > 5 ? 2 : 0.5;
	for (let v = 0; v <= top; v += step) {
		out.push(
			`<line x1="${M.left}" y1="${y(v).toFixed(1)}" x2="${M.left + pw}" y2="${y(v).toFixed(1)}" stroke="#eee"/>`,
		);
		out.push(`<text x="${M.left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v}</text>`);
	}
	out.push(`<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">egress kpps</text>`);
	rows.forEach((s, i) => {
		const p = s.packetsPerSec!;
		const cx = M.left + slot * (i + 0.5);
		const bw = Math.min(80, slot * 0.5);
		out.push(
			`<rect class="bar" data-config="${s.config}" data-median="${p.median}" x="${(cx - bw / 2).toFixed(1)}" y="${y(p.median / 1000).toFixed(1)}" width="${bw.toFixed(1)}" height="${(M.top + ph - y(p.median / 1000)).toFixed(1)}" fill="${COLORS[s.config]}"/>`,
		);
		out.push(
			`<line x1="${cx.toFixed(1)}" y1="${y(p.min / 1000).toFixed(1)}" x2="${cx.toFixed(1)}" y2="${y(p.max / 1000).toFixed(1)}" stroke="#222" stroke-width="1.5"/>`,
		);
		for (const v of [p.min, p.max])
			out.push(
				`<line x1="${(cx - 8).toFixed(1)}" y1="${y(v / 1000).toFixed(1)}" x2="${(cx + 8).toFixed(1)}" y2="${y(v / 1000).toFixed(1)}" stroke="#222" stroke-width="1.5"/>`,
			);
		out.push(
			`<text x="${cx.toFixed(1)}" y="${(y(p.max / 1000) - 6).toFixed(1)}" text-anchor="middle">${(p.median / 1000).toFixed(1)}</text>`,
		);
		out.push(
			`<text x="${cx.toFixed(1)}" y="${M.top + ph + 18}" text-anchor="middle" font-weight="bold">${s.config}</text>`,
		);
		out.push(`<text x="${cx.toFixed(1)}" y="${M.top + ph + 34}" text-anchor="middle">${esc(s.label)}</text>`);
		if (s.relayLimitedRuns < s.runs)
			out.push(
				`<text x="${cx.toFixed(1)}" y="${M.top + ph + 50}" text-anchor="middle" fill="#a00">${s.runs - s.relayLimitedRuns} of ${s.runs} not relay-limited</text>`,
			);
	});
	out.push(`<line x1="${M.left}" y1="${M.top + ph}" x2="${M.left + pw}" y2="${M.top + ph}" stroke="#333"/>`);
	out.push("</svg>");
	return `${out.join("\n")}\n`;
}
