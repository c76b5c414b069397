/**
 * The latency chart: p50 / p99 latency (ms, log scale) against subscribers (log scale), one colour
 * per core count, and the p99 target. Hand-written SVG, no dependency.
 * @module
 */

import type { BenchDocument } from "./report.ts";

const W = 760;
const H = 440;
const M = { left: 64, right: 170, top: 40, bottom: 52 };
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
const SERIES = [
	{ key: "p50", dash: "4 3", label: "p50" },
	{ key: "p99", dash: "", label: "p99" },
] as const;

function esc(s: string): string {
	return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function logTicks(lo: number, hi: number): number[] {
	const ticks: number[] = [];
	for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
		for (const m of [1, 2, 5]) {
			const v = m * 10 ** e;
			if (v >= lo && v <= hi) ticks.push(v);
		}
	}
	return ticks;
}

export function latencyChart(doc: BenchDocument): string {
	const points = doc.summary.flatMap((s) => s.curve);
	const xs = points.map((p) => p.subscribers);
	const ys = points.flatMap((p) => [p.p50, p.p99]).filter((v) => v > 0);
	const target = doc.options.targetP99Ms;
	const xLo = Math.max(1, Math.min(...xs, 10) / 1.2);
	const xHi = Math.max(...xs, 20) * 1.2;
	const yLo = Math.max(0.01, Math.min(...ys, target) / 1.5);
	const yHi = Math.max(...ys, target) * 1.5;
	const pw = W - M.left - M.right;
	const ph = H - M.top - M.bottom;
	const x = (v: number) => M.left + ((Math.log10(v) - Math.log10(xLo)) / (Math.log10(xHi) - Math.log10(xLo))) * pw;
	const y = (v: number) =>
		M.top + ph - ((Math.log10(Math.max(v, yLo)) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo))) * ph;
	const out: string[] = [];
	out.push(
		`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
	);
	out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
	const o = doc.options;
	out.push(
		`<text x="${M.left}" y="22" font-size="14" font-weight="bold">${esc(`Fan-out latency vs subscribers (${o.bitrate} Mbit/s, ${o.fps} fps, ${o.groupMs} ms groups)`)}</text>`,
	);
	for (const t of logTicks(xLo, xHi)) {
		out.push(`<line x1="${x(t).toFixed(1)}" y1="${M.top}" x2="${x(t).toFixed(1)}" y2="${M.top + ph}" stroke="#eee"/>`);
		out.push(`<text x="${x(t).toFixed(1)}" y="${M.top + ph + 16}" text-anchor="middle">${t}</text>`);
	}
	for (const t of logTicks(yLo, yHi)) {
		out.push(
			`<line x1="${M.left}" y1="${y(t).toFixed(1)}" x2="${M.left + pw}" y2="${y(t).toFixed(1)}" stroke="#eee"/>`,
		);
		out.push(`<text x="${M.left - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${t}</text>`);
	}
	out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
	out.push(`<text x="${M.left + pw / 2}" y="${H - 12}" text-anchor="middle">subscribers</text>`);
	out.push(`<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">latency (ms)</text>`);
	out.push(
		`<line class="target" x1="${M.left}" y1="${y(target).toFixed(1)}" x2="${M.left + pw}" y2="${y(target).toFixed(1)}" stroke="#888" stroke-dasharray="1 3"/>`,
	);
	out.push(
		`<text x="${M.left + pw - 4}" y="${(y(target) - 4).toFixed(1)}" text-anchor="end" fill="#666">p99 target ${target} ms</text>`,
	);
	let legendY = M.top + 8;
	doc.summary.forEach((s, i) => {
		const color = COLORS[i % COLORS.length];
		for (const series of SERIES) {
			if (s.curve.length === 0) continue;
			const d = s.curve
				.map((p, j) => `${j === 0 ? "M" : "L"}${x(p.subscribers).toFixed(1)},${y(p[series.key]).toFixed(1)}`)
				.join(" ");
			out.push(
				`<path class="series" data-cores="${s.cores}" data-engine="${s.engine ?? "quiche"}" data-percentile="${series.label}" d="${d}" fill="none" stroke="${color}" stroke-width="2"${series.dash ? ` stroke-dasharray="${series.dash}"` : ""}/>`,
			);
			for (const p of s.curve)
				out.push(
					`<circle cx="${x(p.subscribers).toFixed(1)}" cy="${y(p[series.key]).toFixed(1)}" r="2.5" fill="${color}"/>`,
				);
			const lx = M.left + pw + 14;
			out.push(
				`<line x1="${lx}" y1="${legendY}" x2="${lx + 26}" y2="${legendY}" stroke="${color}" stroke-width="2"${series.dash ? ` stroke-dasharray="${series.dash}"` : ""}/>`,
			);
			out.push(
				`<text x="${lx + 32}" y="${legendY + 4}">${s.engine ?? "quiche"}, ${s.cores} core${s.cores > 1 ? "s" : ""} ${series.label}</text>`,
			);
			legendY += 18;
		}
	});
	out.push("</svg>");
	return `${out.join("\n")}\n`;
}

/**
 * The per-packet cost chart: CPU µs per egress packet on one core, one bar per measurement (the
 * median, with a min–max whisker over runs): the bare pump (quiche with dgram and GSO, ngtcp2 with GSO) and the relay (1 worker,
 * 2 workers on the same core), labelled with the ratios of the summary.
 */
export function costChart(doc: BenchDocument): string {
	const b = doc.baseline.summary;
	const o = doc.options;
	const ratio = (s: { median: number } | null, of: string) => (s ? ` (${s.median.toFixed(2)} × ${of})` : "");
	const rows = [
		{ label: "bare quiche + dgram pump", s: b.bareDgramUs, note: "", color: "#7f7f7f" },
		{
			label: "bare quiche + GSO pump",
			s: b.bareGsoUs,
			note: doc.baseline.gsoSkipped ? "skipped (no native addon)" : ratio(b.gsoToDgram, "bare dgram"),
			color: "#bcbd22",
		},
		...(b.bareNgtcp2Us
			? [
					{
						label: "bare ngtcp2 + GSO pump",
						s: b.bareNgtcp2Us,
						note: ratio(b.bareNgtcp2ToGso ?? null, "bare quiche GSO"),
						color: "#17becf",
					},
				]
			: []),
		...(b.mediaGsoUs
			? [{ label: "bare quiche + GSO, track", s: b.mediaGsoUs, note: " (the relay runs' audience)", color: "#c5b0d5" }]
			: []),
		...(b.mediaNgtcp2Us
			? [
					{
						label: "bare ngtcp2 + GSO, track",
						s: b.mediaNgtcp2Us,
						note: ratio(b.mediaNgtcp2ToGso ?? null, "quiche, same audience"),
						color: "#9edae5",
					},
				]
			: []),
		...(b.engines ?? []).flatMap((e) => [
			{
				label: `relay ${e.engine}, 1 worker`,
				s: e.oneWorkerUs,
				note:
					ratio(e.toBareDgram, "bare dgram") +
					(e.toBareMedia ? `, ${e.toBareMedia.median.toFixed(2)} × its pump (track)` : "") +
					(e.toQuiche ? `, ${e.toQuiche.median.toFixed(2)} × quiche` : ""),
				color: e.engine === "quiche" ? "#1f77b4" : "#2ca02c",
			},
			{
				label: `relay ${e.engine}, 2 workers, 1 core`,
				s: e.twoWorkersUs,
				note: ratio(e.twoWorkersToOne, "1 worker"),
				color: e.engine === "quiche" ? "#d62728" : "#9467bd",
			},
		]),
	];
	const width = 760;
	const left = 230;
	// Room for the value and ratio printed after the longest bar.
	const right = 250;
	const top = 48;
	const rowH = 44;
	const height = top + rows.length * rowH + 44;
	const max = Math.max(1, ...rows.map((r) => r.s?.max ?? 0)) * 1.1;
	const pw = width - left - right;
	const x = (v: number) => left + (v / max) * pw;
	const out: string[] = [];
	out.push(
		`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
	);
	out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
	out.push(
		`<text x="${left}" y="22" font-size="14" font-weight="bold">${esc(`CPU per egress packet on one core (µs), min–median–max over ${o.runs} run(s)`)}</text>`,
	);
	for (const t of niceTicks(max)) {
		out.push(
			`<line x1="${x(t).toFixed(1)}" y1="${top - 6}" x2="${x(t).toFixed(1)}" y2="${top + rows.length * rowH}" stroke="#eee"/>`,
		);
		out.push(`<text x="${x(t).toFixed(1)}" y="${top + rows.length * rowH + 16}" text-anchor="middle">${t}</text>`);
	}
	rows.forEach((r, i) => {
		const y = top + i * rowH;
		out.push(`<text x="${left - 8}" y="${y + 20}" text-anchor="end">${esc(r.label)}</text>`);
		if (r.s === null) {
			out.push(`<text x="${left + 4}" y="${y + 20}" fill="#888">${esc(r.note || "not measured")}</text>`);
			return;
		}
		out.push(
			`<rect class="bar" data-row="${i}" x="${left}" y="${y + 8}" width="${(x(r.s.median) - left).toFixed(1)}" height="18" fill="${r.color}"/>`,
		);
		out.push(
			`<line x1="${x(r.s.min).toFixed(1)}" y1="${y + 17}" x2="${x(r.s.max).toFixed(1)}" y2="${y + 17}" stroke="#222" stroke-width="1.5"/>`,
		);
		for (const v of [r.s.min, r.s.max])
			out.push(`<line x1="${x(v).toFixed(1)}" y1="${y + 11}" x2="${x(v).toFixed(1)}" y2="${y + 23}" stroke="#222"/>`);
		out.push(
			`<text x="${(x(r.s.max) + 6).toFixed(1)}" y="${y + 21}">${esc(`${r.s.median.toFixed(1)}${r.note}`)}</text>`,
		);
	});
	out.push(
		`<text x="${left + pw / 2}" y="${height - 8}" text-anchor="middle">µs of CPU per egress packet (process CPU from /proc)</text>`,
	);
	out.push("</svg>");
	return `${out.join("\n")}\n`;
}

function niceTicks(max: number): number[] {
	const step = 10 ** Math.floor(Math.log10(max / 2));
	const unit = max / step > 10 ? step * 5 : max / step > 5 ? step * 2 : step;
	const ticks: number[] = [];
	for (let t = 0; t <= max; t += unit) ticks.push(Math.round(t * 1000) / 1000);
	return ticks;
}
