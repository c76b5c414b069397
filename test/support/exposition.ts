/**
 * A small strict parser of the Prometheus text exposition format (0.0.4), for tests: every line is
 * HELP, TYPE or a sample; a family's HELP and TYPE come once, before its samples; a family's samples
 * are contiguous; no duplicate series; histogram families hold only `_bucket` (with `le`), `_sum` and
 * `_count` samples, whose buckets are cumulative, end at `le="+Inf"` and equal `_count`.
 */
import assert from "node:assert/strict";

export interface Sample {
	/** The sample's own name (a histogram's `…_bucket`, `…_sum`, `…_count`). */
	name: string;
	/** The family it belongs to (the histogram's base name). */
	family: string;
	labels: Record<string, string>;
	value: number;
}

export interface Exposition {
	samples: Sample[];
	types: Map<string, string>;
	help: Map<string, string>;
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL = `([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\\\\n]|\\\\[\\\\"n])*)"`;
const VALUE = "([+-]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][+-]?\\d+)?|NaN|[+-]Inf)";
export const SAMPLE_RE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*,?)?\\})? ${VALUE}(?: -?\\d+)?$`);
const LABEL_RE = new RegExp(LABEL, "g");
const HELP_RE = new RegExp(`^# HELP (${NAME}) ((?:[^\\\\\\n]|\\\\[\\\\n])*)$`);
const TYPE_RE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const HISTOGRAM_SUFFIXES = ["_bucket", "_sum", "_count"];

function unescapeValue(v: string): string {
	return v.replace(/\\(.)/g, (_m, c: string) => (c === "n" ? "\n" : c));
}

function parseValue(raw: string): number {
	return raw === "NaN" ? Number.NaN : raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw);
}

/** The family a sample name belongs to, given the TYPEs declared so far. */
function familyOf(name: string, types: Map<string, string>): string {
	if (types.has(name)) return name;
	for (const suffix of HISTOGRAM_SUFFIXES) {
		if (!name.endsWith(suffix)) continue;
		const base = name.slice(0, -suffix.length);
		const t = types.get(base);
		if (t === "histogram" || (t === "summary" && suffix !== "_bucket")) return base;
	}
	return name;
}

/** Parses and validates a whole /metrics body; throws an AssertionError naming the first bad line. */
export function parseExposition(text: string): Exposition {
	assert.ok(text.endsWith("\n"), "ends with a line feed");
	const samples: Sample[] = [];
	const types = new Map<string, string>();
	const help = new Map<string, string>();
	const finished = new Set<string>();
	const seen = new Set<string>();
	let current: string | null = null;
	const lines = text.slice(0, -1).split("\n");
	for (const [n, line] of lines.entries()) {
		const where = `line ${n + 1}: ${JSON.stringify(line)}`;
		let m: RegExpMatchArray | null;
		if ((m = line.match(HELP_RE))) {
			assert.ok(!help.has(m[1]), `HELP twice, ${where}`);
			assert.ok(!finished.has(m[1]) && current !== m[1], `HELP after samples, ${where}`);
			help.set(m[1], unescapeValue(m[2]));
			continue;
		}
		if ((m = line.match(TYPE_RE))) {
			assert.ok(!types.has(m[1]), `TYPE twice, ${where}`);
			assert.ok(!finished.has(m[1]) && current !== m[1], `TYPE after samples, ${where}`);
			types.set(m[1], m[2]);
			continue;
		}
		assert.ok(!line.startsWith("#"), `unknown comment form, ${where}`);
		m = line.match(SAMPLE_RE);
		assert.ok(m, `not a sample line, ${where}`);
		const name = m[1];
		const family = familyOf(name, types);
		assert.ok(types.has(family) && help.has(family), `sample before its HELP/TYPE, ${where}`);
		if (types.get(family) === "histogram") {
			assert.ok(name !== family, `bare sample in histogram ${family}, ${where}`);
		}
		if (current !== family) {
			assert.ok(!finished.has(family), `family ${family} is not contiguous, ${where}`);
			if (current) finished.add(current);
			current = family;
		}
		const labels: Record<string, string> = {};
		for (const lm of (m[2] ?? "").matchAll(LABEL_RE)) {
			assert.ok(!(lm[1] in labels), `duplicate label, ${where}`);
			labels[lm[1]] = unescapeValue(lm[2]);
		}
		if (name === `${family}_bucket`) assert.ok("le" in labels, `bucket without le, ${where}`);
		else assert.ok(!("le" in labels) || types.get(family) !== "histogram", `le outside a bucket, ${where}`);
		const key = name + JSON.stringify(Object.entries(labels).sort());
		assert.ok(!seen.has(key), `duplicate series, ${where}`);
		seen.add(key);
		samples.push({ name, family, labels, value: parseValue(m.at(-1)!) });
	}
	for (const [family, type] of types) if (type === "histogram") checkHistogram(family, samples);
	return { samples, types, help };
}

/** Label set without `le`, as a key. */
function seriesKey(labels: Record<string, string>): string {
	return JSON.stringify(
		Object.entries(labels)
			.filter(([k]) => k !== "le")
			.sort(),
	);
}

/** Per label set: buckets in increasing `le`, cumulative, ending at +Inf = `_count`; `_sum` present. */
function checkHistogram(family: string, samples: Sample[]): void {
	const series = new Map<string, { buckets: { le: number; v: number }[]; sum?: number; count?: number }>();
	const of = (labels: Record<string, string>) => {
		const k = seriesKey(labels);
		let s = series.get(k);
		if (!s) series.set(k, (s = { buckets: [] }));
		return s;
	};
	for (const s of samples) {
		if (s.family !== family) continue;
		const h = of(s.labels);
		if (s.name === `${family}_bucket`) {
			const le = parseValue(s.labels.le);
			assert.ok(!Number.isNaN(le), `${family}: le="${s.labels.le}" is not a number`);
			h.buckets.push({ le, v: s.value });
		} else if (s.name === `${family}_sum`) h.sum = s.value;
		else if (s.name === `${family}_count`) h.count = s.value;
	}
	assert.ok(series.size > 0, `histogram ${family} has no samples`);
	for (const [k, h] of series) {
		const what = `${family}${k}`;
		assert.ok(h.buckets.length > 0, `${what}: no buckets`);
		for (let i = 1; i < h.buckets.length; i++) {
			assert.ok(h.buckets[i].le > h.buckets[i - 1].le, `${what}: le not increasing`);
			assert.ok(h.buckets[i].v >= h.buckets[i - 1].v, `${what}: buckets not cumulative`);
		}
		const last = h.buckets.at(-1)!;
		assert.equal(last.le, Infinity, `${what}: last bucket is not +Inf`);
		assert.ok(h.count !== undefined && h.sum !== undefined, `${what}: _sum or _count missing`);
		assert.equal(last.v, h.count, `${what}: +Inf bucket equals _count`);
		assert.ok(h.sum >= 0 || h.count === 0, `${what}: negative _sum`);
	}
}

/** The one sample of `name` with exactly `labels`. */
export function sampleValue(samples: Sample[], name: string, labels: Record<string, string>): number {
	const found = samples.filter(
		(s) =>
			s.name === name &&
			Object.keys(s.labels).length === Object.keys(labels).length &&
			Object.entries(labels).every(([k, v]) => s.labels[k] === v),
	);
	assert.equal(found.length, 1, `one sample ${name} ${JSON.stringify(labels)}`);
	return found[0].value;
}

/** Sum of the samples of `name` whose labels include `labels`. */
export function sampleSum(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
	let sum = 0;
	for (const s of samples) {
		if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
	}
	return sum;
}
