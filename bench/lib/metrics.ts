/**
 * A minimal Prometheus text parser for the relay's /metrics: enough to read counters and gauges by
 * name and label (`worker="N"` per-worker series; the unlabelled total).
 * @module
 */

export interface Sample {
	name: string;
	labels: Record<string, string>;
	value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text: string): Sample[] {
	const out: Sample[] = [];
	for (const line of text.split("\n")) {
		if (line.startsWith("#") || line.trim() === "") continue;
		const m = LINE.exec(line);
		if (!m) continue;
		const labels: Record<string, string> = {};
		if (m[2]) for (const l of m[2].matchAll(LABEL)) labels[l[1]] = l[2];
		out.push({ name: m[1], labels, value: Number(m[3]) });
	}
	return out;
}

/**
 * Sum of the samples of `name` whose labels include `match`: for a per-worker family (every series
 * has a `worker` label, no family mixes in a total) the relay's total, or one worker's if asked.
 */
export function metric(samples: Sample[], name: string, match: Record<string, string> = {}): number | null {
	let found = false;
	let sum = 0;
	for (const s of samples) {
		if (s.name !== name) continue;
		if (!Object.entries(match).every(([k, v]) => s.labels[k] === v)) continue;
		found = true;
		sum += s.value;
	}
	return found ? sum : null;
}

/** Per-worker values of `name` (summed over other labels), keyed by worker index. */
export function perWorker(samples: Sample[], name: string): Map<number, number> {
	const out = new Map<number, number>();
	for (const s of samples) {
		if (s.name !== name || s.labels.worker === undefined) continue;
		const w = Number(s.labels.worker);
		out.set(w, (out.get(w) ?? 0) + s.value);
	}
	return out;
}

export async function scrape(host: string, port: number): Promise<Sample[] | null> {
	const h = host.includes(":") ? `[${host}]` : host;
	try {
		const res = await fetch(`http://${h}:${port}/metrics`, { signal: AbortSignal.timeout(3000) });
		if (!res.ok) return null;
		return parseMetrics(await res.text());
	} catch {
		return null;
	}
}
