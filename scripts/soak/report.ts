/**
 * The soak's numbers: samples, their trend (first, last, max, least-squares slope over the second
 * half), the pass/fail criteria of issue 16, and the artifacts (CSV, JSON, an SVG chart, an ASCII
 * chart for the terminal). Pure functions of the samples: no I/O here.
 * @module
 */

/** One reading of the relay. */
export interface SoakSample {
	/** Seconds since the churn started (negative: before it). */
	t: number;
	/** "idle" before the churn, "churn" while it runs, "rest" after every client left. */
	phase: "idle" | "churn" | "rest";
	/** Rounds finished so far. */
	rounds: number;
	/** Rounds in flight. */
	inFlight: number;
	/** VmRSS of the relay process, bytes. */
	rss: number;
	/** The relay's own counts (/metrics). */
	sessions: number;
	broadcasts: number;
	broadcastReplicas: number;
	tracks: number;
	subscriptions: number;
	cacheBytes: number;
	heapBytes: number;
	/** Viewers' view of publisher ends so far: clean ends seen clean, seen as a reset; abrupt ends seen as a reset. */
	cleanSeenClean: number;
	cleanSeenReset: number;
	abruptSeenReset: number;
}

/** The columns that are trended (everything numeric but time and the end tallies). */
export const SERIES = [
	{ key: "rss", label: "RSS", unit: "MB", scale: 1e-6 },
	{ key: "heapBytes", label: "worker heap", unit: "MB", scale: 1e-6 },
	{ key: "sessions", label: "sessions", unit: "", scale: 1 },
	{ key: "broadcasts", label: "broadcasts", unit: "", scale: 1 },
	{ key: "broadcastReplicas", label: "broadcast replicas", unit: "", scale: 1 },
	{ key: "tracks", label: "tracks", unit: "", scale: 1 },
	{ key: "subscriptions", label: "subscriptions", unit: "", scale: 1 },
	{ key: "cacheBytes", label: "cache", unit: "MiB", scale: 1 / 2 ** 20 },
] as const;
export type SeriesKey = (typeof SERIES)[number]["key"];

/** Issue 16's criteria. */
export const MAX_SLOPE_BYTES_PER_ROUND = 50_000;
export const MAX_RSS_RATIO = 1.25;

export interface Trend {
	/** At the first sample after round 1 finished. */
	first: number;
	last: number;
	min: number;
	median: number;
	max: number;
	/** Least-squares slope over the second half of the churn, per finished round and per minute. */
	slopePerRound: number;
	slopePerMinute: number;
	/** Largest value in the second half. */
	maxSecondHalf: number;
	/** last / first (NaN when first is 0). */
	ratio: number;
}

export interface Verdict {
	name: string;
	ok: boolean;
	detail: string;
}

/** Least-squares slope of y over x (NaN with fewer than 3 points or no spread in x). */
export function slope(xs: number[], ys: number[]): number {
	const n = xs.length;
	if (n < 3) return Number.NaN;
	let mx = 0;
	let my = 0;
	for (let i = 0; i < n; i++) {
		mx += xs[i];
		my += ys[i];
	}
	mx /= n;
	my /= n;
	let sxy = 0;
	let sxx = 0;
	for (let i = 0; i < n; i++) {
		sxy += (xs[i] - mx) * (ys[i] - my);
		sxx += (xs[i] - mx) ** 2;
	}
	return sxx === 0 ? Number.NaN : sxy / sxx;
}

function median(v: number[]): number {
	if (v.length === 0) return Number.NaN;
	const s = [...v].sort((a, b) => a - b);
	const m = s.length >> 1;
	return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The churn samples from the first one after round 1, and the second half of the churn's duration. */
export function windows(samples: SoakSample[]): { churn: SoakSample[]; secondHalf: SoakSample[] } {
	const churn = samples.filter((s) => s.phase === "churn" && s.rounds >= 1);
	if (churn.length === 0) return { churn, secondHalf: [] };
	const end = churn[churn.length - 1].t;
	return { churn, secondHalf: churn.filter((s) => s.t >= end / 2) };
}

export function trend(samples: SoakSample[], key: SeriesKey): Trend {
	const { churn, secondHalf } = windows(samples);
	const v = churn.map((s) => s[key]);
	const h = secondHalf.map((s) => s[key]);
	const first = v[0] ?? Number.NaN;
	const last = v.at(-1) ?? Number.NaN;
	return {
		first,
		last,
		min: v.length ? Math.min(...v) : Number.NaN,
		median: median(v),
		max: v.length ? Math.max(...v) : Number.NaN,
		slopePerRound: slope(
			secondHalf.map((s) => s.rounds),
			h,
		),
		slopePerMinute: slope(
			secondHalf.map((s) => s.t / 60),
			h,
		),
		maxSecondHalf: h.length ? Math.max(...h) : Number.NaN,
		ratio: first > 0 ? last / first : Number.NaN,
	};
}

/** The RSS criteria (slope, ratio) and that the counts went back to zero at rest. */
export function verdicts(samples: SoakSample[], rest: Partial<Record<SeriesKey, number>> | null): Verdict[] {
	const rss = trend(samples, "rss");
	const out: Verdict[] = [];
	const slopeKb = rss.slopePerRound / 1000;
	out.push({
		name: `RSS slope over the second half ≤ ${MAX_SLOPE_BYTES_PER_ROUND / 1000} KB/round`,
		ok: Number.isFinite(slopeKb) && slopeKb <= MAX_SLOPE_BYTES_PER_ROUND / 1000,
		detail: Number.isFinite(slopeKb)
			? `${fmt(slopeKb, 1)} KB/round (${fmt(rss.slopePerMinute / 1e6, 2)} MB/min)`
			: "too few samples in the second half",
	});
	const ratio = rss.maxSecondHalf / rss.first;
	out.push({
		name: `RSS over the second half ≤ ${MAX_RSS_RATIO} × RSS after round 1`,
		ok: Number.isFinite(ratio) && ratio <= MAX_RSS_RATIO,
		detail: `max ${mb(rss.maxSecondHalf)} / ${mb(rss.first)} = ${fmt(ratio, 3)}× (last ${fmt(rss.ratio, 3)}×)`,
	});
	if (rest !== null) {
		const left = Object.entries(rest).filter(([, v]) => v !== 0);
		out.push({
			name: "relay counts back to zero once every client left",
			ok: left.length === 0,
			detail: left.length === 0 ? "all zero" : left.map(([k, v]) => `${k} ${v}`).join(", "),
		});
	}
	return out;
}

export function fmt(v: number, digits = 1): string {
	return Number.isFinite(v) ? v.toFixed(digits) : "n/a";
}

function mb(bytes: number): string {
	return `${fmt(bytes / 1e6, 1)} MB`;
}

export function clock(seconds: number): string {
	const s = Math.max(0, Math.round(seconds));
	return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function pad(s: string, n: number): string {
	return s.length >= n ? s : " ".repeat(n - s.length) + s;
}

/** The trend table: one line per series. */
export function trendTable(samples: SoakSample[]): string {
	const head = ["", "first", "last", "min", "median", "max", "slope/round", "slope/min", "last/first"];
	const widths = [20, 10, 10, 10, 10, 10, 14, 12, 12];
	const rows: string[][] = [head];
	for (const s of SERIES) {
		const t = trend(samples, s.key);
		const d = s.scale === 1 ? 0 : 1;
		const u = s.unit ? ` ${s.unit}` : "";
		const v = (x: number) => fmt(x * s.scale, d);
		rows.push([
			`${s.label}${u ? ` (${s.unit})` : ""}`,
			v(t.first),
			v(t.last),
			v(t.min),
			v(t.median),
			v(t.max),
			s.key === "rss" || s.key === "heapBytes"
				? `${fmt(t.slopePerRound / 1000, 1)} KB`
				: fmt(t.slopePerRound * s.scale, 3),
			s.key === "rss" || s.key === "heapBytes"
				? `${fmt(t.slopePerMinute / 1e6, 2)} MB`
				: fmt(t.slopePerMinute * s.scale, 2),
			fmt(t.ratio, 2),
		]);
	}
	return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : pad(c, widths[i]))).join("")).join("\n");
}

// ── artifacts ──────────────────────────────────────────────────────────────────────────────────

const COLUMNS: (keyof SoakSample)[] = [
	"t",
	"phase",
	"rounds",
	"inFlight",
	"rss",
	"heapBytes",
	"sessions",
	"broadcasts",
	"broadcastReplicas",
	"tracks",
	"subscriptions",
	"cacheBytes",
	"cleanSeenClean",
	"cleanSeenReset",
	"abruptSeenReset",
];

export function toCsv(samples: SoakSample[]): string {
	const lines = [COLUMNS.join(",")];
	for (const s of samples) lines.push(COLUMNS.map((c) => (c === "t" ? s.t.toFixed(1) : String(s[c]))).join(","));
	return `${lines.join("\n")}\n`;
}

/** A small terminal chart of one series over time (columns are time buckets; the mean of each). */
export function asciiChart(samples: SoakSample[], key: SeriesKey, width = 64, height = 10, limit?: number): string {
	const pts = samples.filter((s) => s.phase !== "idle");
	if (pts.length < 2) return "(too few samples to chart)";
	const spec = SERIES.find((s) => s.key === key)!;
	const t0 = pts[0].t;
	const t1 = pts[pts.length - 1].t;
	const cols: number[][] = Array.from({ length: width }, () => []);
	for (const p of pts) {
		const c = Math.min(width - 1, Math.floor(((p.t - t0) / Math.max(1e-9, t1 - t0)) * width));
		cols[c].push(p[key] * spec.scale);
	}
	const vals = cols.map((c) => (c.length ? c.reduce((a, b) => a + b, 0) / c.length : Number.NaN));
	const finite = vals.filter(Number.isFinite);
	let lo = Math.min(...finite);
	let hi = Math.max(...finite);
	if (limit !== undefined) {
		lo = Math.min(lo, limit * spec.scale);
		hi = Math.max(hi, limit * spec.scale);
	}
	if (hi - lo < 1e-9) hi = lo + 1;
	const rowOf = (v: number) => Math.round(((v - lo) / (hi - lo)) * (height - 1));
	const grid = Array.from({ length: height }, () => Array.from({ length: width }, () => " "));
	if (limit !== undefined) {
		const r = rowOf(limit * spec.scale);
		for (let c = 0; c < width; c++) grid[r][c] = "·";
	}
	for (let c = 0; c < width; c++) if (Number.isFinite(vals[c])) grid[rowOf(vals[c])][c] = "*";
	const label = (v: number) => pad(fmt(v, 1), 8);
	const out: string[] = [];
	for (let r = height - 1; r >= 0; r--) {
		const v = lo + ((hi - lo) * r) / (height - 1);
		out.push(`${r === height - 1 || r === 0 || r === height >> 1 ? label(v) : " ".repeat(8)} │${grid[r].join("")}`);
	}
	out.push(`${" ".repeat(8)} └${"─".repeat(width)}`);
	const left = clock(t0);
	const right = clock(t1);
	out.push(`${" ".repeat(10)}${left}${" ".repeat(Math.max(1, width - left.length - right.length))}${right}`);
	return `${spec.label} (${spec.unit}${limit !== undefined ? `; ··· ${MAX_RSS_RATIO}× after round 1` : ""})\n${out.join("\n")}`;
}

export function esc(s: string): string {
	return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function niceStep(span: number, target: number): number {
	const raw = span / Math.max(1, target);
	const e = 10 ** Math.floor(Math.log10(raw));
	for (const m of [1, 2, 5, 10]) if (m * e >= raw) return m * e;
	return 10 * e;
}

interface Line {
	key: SeriesKey;
	color: string;
	dash?: string;
}

const W = 960;
const PANEL_H = 220;
const M = { left: 70, right: 230, top: 84, gap: 40, bottom: 44 };

/**
 * The chart: RSS (with the least-squares fit over the second half and the 1.25× limit), the relay's
 * counts, and the cache and worker heap, over time. Hand-written SVG, self-contained.
 */
export function chartSvg(samples: SoakSample[], title: string, subtitle: string[]): string {
	const pts = samples;
	const { churn, secondHalf } = windows(samples);
	const rssTrend = trend(samples, "rss");
	const panels: { title: string; unit: string; scale: number; lines: Line[]; fit?: boolean; limit?: number }[] = [
		{
			title: "Relay RSS",
			unit: "MB",
			scale: 1e-6,
			lines: [{ key: "rss", color: "#1f77b4" }],
			fit: true,
			limit: rssTrend.first * MAX_RSS_RATIO,
		},
		{
			title: "Relay counts (/metrics)",
			unit: "",
			scale: 1,
			lines: [
				{ key: "sessions", color: "#d62728" },
				{ key: "subscriptions", color: "#ff7f0e" },
				{ key: "tracks", color: "#2ca02c" },
				{ key: "broadcasts", color: "#9467bd" },
			],
		},
		{
			title: "Cache and worker heap",
			unit: "MB / MiB",
			scale: 1,
			lines: [
				{ key: "cacheBytes", color: "#8c564b" },
				{ key: "heapBytes", color: "#17becf", dash: "5 3" },
			],
		},
	];
	const H = M.top + panels.length * PANEL_H + (panels.length - 1) * M.gap + M.bottom;
	const pw = W - M.left - M.right;
	const ph = PANEL_H;
	const tMin = pts.length ? Math.min(0, pts[0].t) : 0;
	const tMax = pts.length ? Math.max(pts[pts.length - 1].t, 1) : 1;
	const x = (t: number) => M.left + ((t - tMin) / (tMax - tMin)) * pw;
	const out: string[] = [];
	out.push(
		`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
	);
	out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
	out.push(`<text x="${M.left}" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`);
	subtitle.forEach((line, i) => {
		out.push(`<text x="${M.left}" y="${42 + i * 16}" fill="#555">${esc(line)}</text>`);
	});
	const half = churn.length ? churn[churn.length - 1].t / 2 : Number.NaN;
	const churnEnd = churn.length ? churn[churn.length - 1].t : Number.NaN;
	panels.forEach((panel, i) => {
		const top = M.top + i * (PANEL_H + M.gap);
		const scaleOf = (k: SeriesKey) => (panel.scale === 1 ? (SERIES.find((s) => s.key === k)?.scale ?? 1) : panel.scale);
		const vals = pts.flatMap((p) => panel.lines.map((l) => p[l.key] * scaleOf(l.key)));
		if (panel.limit !== undefined && Number.isFinite(panel.limit)) vals.push(panel.limit * panel.scale);
		let lo = vals.length ? Math.min(...vals) : 0;
		let hi = vals.length ? Math.max(...vals) : 1;
		// Counts and bytes from zero; RSS zoomed in on its range.
		if (i > 0) lo = Math.min(0, lo);
		if (hi - lo < 1e-9) hi = lo + 1;
		const pad = (hi - lo) * 0.08;
		lo = i > 0 ? lo : lo - pad;
		hi += pad;
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
		if (Number.isFinite(churnEnd) && churnEnd < tMax) {
			out.push(
				`<rect x="${x(churnEnd).toFixed(1)}" y="${top}" width="${(x(tMax) - x(churnEnd)).toFixed(1)}" height="${ph}" fill="#f4f4f4"/>`,
			);
		}
		if (Number.isFinite(half)) {
			out.push(
				`<line x1="${x(half).toFixed(1)}" y1="${top}" x2="${x(half).toFixed(1)}" y2="${top + ph}" stroke="#bbb" stroke-dasharray="2 3"/>`,
			);
		}
		out.push(`<rect x="${M.left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
		if (panel.unit)
			out.push(
				`<text transform="translate(18 ${top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(panel.unit)}</text>`,
			);
		let legendY = top + 14;
		const legend = (color: string, dash: string | undefined, text: string) => {
			const lx = M.left + pw + 14;
			out.push(
				`<line x1="${lx}" y1="${legendY - 4}" x2="${lx + 22}" y2="${legendY - 4}" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ""}/>`,
			);
			out.push(`<text x="${lx + 28}" y="${legendY}">${esc(text)}</text>`);
			legendY += 18;
		};
		for (const l of panel.lines) {
			const d = pts
				.map((p, j) => `${j === 0 ? "M" : "L"}${x(p.t).toFixed(1)},${y(p[l.key] * scaleOf(l.key)).toFixed(1)}`)
				.join(" ");
			out.push(
				`<path class="series" data-key="${l.key}" d="${d}" fill="none" stroke="${l.color}" stroke-width="1.6"${l.dash ? ` stroke-dasharray="${l.dash}"` : ""}/>`,
			);
			const spec = SERIES.find((s) => s.key === l.key)!;
			legend(l.color, l.dash, `${spec.label}${spec.unit && panel.scale === 1 ? ` (${spec.unit})` : ""}`);
		}
		if (panel.fit && secondHalf.length >= 3) {
			const ts = secondHalf.map((s) => s.t);
			const vs = secondHalf.map((s) => s.rss);
			const k = slope(ts, vs);
			const mt = ts.reduce((a, b) => a + b, 0) / ts.length;
			const mv = vs.reduce((a, b) => a + b, 0) / vs.length;
			const at = (t: number) => (mv + k * (t - mt)) * panel.scale;
			const a = ts[0];
			const b = ts[ts.length - 1];
			out.push(
				`<line class="fit" x1="${x(a).toFixed(1)}" y1="${y(at(a)).toFixed(1)}" x2="${x(b).toFixed(1)}" y2="${y(at(b)).toFixed(1)}" stroke="#d62728" stroke-width="2" stroke-dasharray="6 3"/>`,
			);
			legend("#d62728", "6 3", `2nd-half fit: ${fmt(rssTrend.slopePerRound / 1000, 1)} KB/round`);
		}
		if (panel.limit !== undefined && Number.isFinite(panel.limit)) {
			const ly = y(panel.limit * panel.scale).toFixed(1);
			out.push(
				`<line class="limit" x1="${M.left}" y1="${ly}" x2="${M.left + pw}" y2="${ly}" stroke="#888" stroke-dasharray="1 3"/>`,
			);
			legend("#888", "1 3", `${MAX_RSS_RATIO}× RSS after round 1`);
		}
	});
	out.push(
		`<text x="${M.left + pw / 2}" y="${H - 10}" text-anchor="middle">minutes since the churn started (grey: after it)</text>`,
	);
	out.push("</svg>");
	return `${out.join("\n")}\n`;
}
