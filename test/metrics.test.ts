import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
	escapeHelp,
	escapeLabelValue,
	formatValue,
	renderMetrics,
	sampleProcessInfo,
	WORKER_FAMILIES,
} from "../src/metrics/prometheus.ts";
import { CountersReader, createCountersBuffer, FIELDS, Field, WorkerCounters } from "../src/pool/counters.ts";

interface Sample {
	name: string;
	labels: Record<string, string>;
	value: number;
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL = `([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\\\\n]|\\\\[\\\\"n])*)"`;
const VALUE = "([+-]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][+-]?\\d+)?|NaN|[+-]Inf)";
const SAMPLE_RE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*,?)?\\})? ${VALUE}(?: -?\\d+)?$`);
const LABEL_RE = new RegExp(LABEL, "g");
const HELP_RE = new RegExp(`^# HELP (${NAME}) ((?:[^\\\\\\n]|\\\\[\\\\n])*)$`);
const TYPE_RE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);

function unescapeValue(v: string): string {
	return v.replace(/\\(.)/g, (_m, c: string) => (c === "n" ? "\n" : c));
}

/**
 * A small checker of the text exposition format: every line is HELP, TYPE or a sample; a family's
 * HELP and TYPE come once, before its samples; a family's samples are contiguous; no duplicate series.
 */
function parseExposition(text: string): { samples: Sample[]; types: Map<string, string>; help: Map<string, string> } {
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
		assert.ok(types.has(name) && help.has(name), `sample before its HELP/TYPE, ${where}`);
		if (current !== name) {
			assert.ok(!finished.has(name), `family ${name} is not contiguous, ${where}`);
			if (current) finished.add(current);
			current = name;
		}
		const labels: Record<string, string> = {};
		const labelText = m[2] ?? "";
		for (const lm of labelText.matchAll(LABEL_RE)) {
			assert.ok(!(lm[1] in labels), `duplicate label, ${where}`);
			labels[lm[1]] = unescapeValue(lm[2]);
		}
		const key = name + JSON.stringify(Object.entries(labels).sort());
		assert.ok(!seen.has(key), `duplicate series, ${where}`);
		seen.add(key);
		const raw = m.at(-1)!;
		const value = raw === "NaN" ? Number.NaN : raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw);
		samples.push({ name, labels, value });
	}
	return { samples, types, help };
}

function get(samples: Sample[], name: string, labels: Record<string, string>): number {
	const found = samples.filter(
		(s) =>
			s.name === name &&
			Object.keys(s.labels).length === Object.keys(labels).length &&
			Object.entries(labels).every(([k, v]) => s.labels[k] === v),
	);
	assert.equal(found.length, 1, `one sample ${name} ${JSON.stringify(labels)}`);
	return found[0].value;
}

/** Two workers' counters filled in-thread through the real writer and reader. */
function figuresFixture() {
	const buf = createCountersBuffer(2);
	const w0 = new WorkerCounters(buf, 0);
	const w1 = new WorkerCounters(buf, 1);
	w0.set(Field.sessionsQuic, 3);
	w1.set(Field.sessionsQuic, 4);
	w1.set(Field.sessionsWebSocket, 2);
	w0.add(Field.bytesOut, 1000);
	w1.add(Field.bytesOut, 500);
	w0.slots[Field.framesIn]++;
	w0.set(Field.cpuUserMicros, 1_500_000);
	w1.set(Field.cpuUserMicros, 500_000);
	w0.set(Field.eventLoopUtilization, 0.2);
	w1.set(Field.eventLoopUtilization, 0.6);
	const reader = new CountersReader(buf);
	reader.addRestart(1);
	return reader.readAll();
}

describe("Prometheus rendering", () => {
	test("output parses: grammar, HELP/TYPE before samples, contiguous families", () => {
		const text = renderMetrics(figuresFixture(), sampleProcessInfo("0.1.0"));
		const { samples, types } = parseExposition(text);
		assert.ok(samples.length > 50);
		for (const s of samples) assert.ok(s.name.startsWith("moq_fanout_"), s.name);
		for (const [name, type] of types) {
			if (type === "counter") assert.ok(name.endsWith("_total"), `${name}: counters end in _total`);
		}
	});

	test("per-worker series carry worker=N and the total series carries none", () => {
		const { samples } = parseExposition(renderMetrics(figuresFixture(), sampleProcessInfo()));
		assert.equal(get(samples, "moq_fanout_sessions", { worker: "0", transport: "quic" }), 3);
		assert.equal(get(samples, "moq_fanout_sessions", { worker: "1", transport: "quic" }), 4);
		assert.equal(get(samples, "moq_fanout_sessions", { transport: "quic" }), 7);
		assert.equal(get(samples, "moq_fanout_sessions", { transport: "websocket" }), 2);
		assert.equal(get(samples, "moq_fanout_sent_bytes_total", { worker: "0" }), 1000);
		assert.equal(get(samples, "moq_fanout_sent_bytes_total", {}), 1500);
		assert.equal(get(samples, "moq_fanout_frames_received_total", {}), 1);
		assert.equal(get(samples, "moq_fanout_worker_cpu_seconds_total", { worker: "0", mode: "user" }), 1.5);
		assert.equal(get(samples, "moq_fanout_worker_cpu_seconds_total", { mode: "user" }), 2);
		assert.ok(Math.abs(get(samples, "moq_fanout_worker_event_loop_utilization", {}) - 0.4) < 1e-12, "mean, not sum");
		assert.equal(get(samples, "moq_fanout_worker_restarts_total", { worker: "1" }), 1);
		assert.equal(get(samples, "moq_fanout_worker_restarts_total", {}), 1);
		assert.equal(get(samples, "moq_fanout_workers", {}), 2);
		assert.ok(get(samples, "moq_fanout_process_resident_memory_bytes", {}) > 0);
		assert.ok(get(samples, "moq_fanout_process_uptime_seconds", {}) > 0);
	});

	test("label values and HELP text are escaped", () => {
		const nasty = 'v1 "quoted" back\\slash\nnewline';
		const text = renderMetrics(figuresFixture(), { ...sampleProcessInfo(), version: nasty });
		assert.ok(text.includes('version="v1 \\"quoted\\" back\\\\slash\\nnewline"'));
		const { samples } = parseExposition(text);
		const info = samples.find((s) => s.name === "moq_fanout_build_info");
		assert.equal(info?.labels.version, nasty);
		assert.equal(info?.labels.node, process.version);
		assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
		assert.equal(escapeHelp('a\\b\nc"d'), 'a\\\\b\\nc"d');
	});

	test("special values use the exposition spellings", () => {
		assert.equal(formatValue(Number.NaN), "NaN");
		assert.equal(formatValue(Infinity), "+Inf");
		assert.equal(formatValue(-Infinity), "-Inf");
		assert.equal(formatValue(1e21), "1e+21");
		assert.match(`x ${formatValue(1e21)}`, SAMPLE_RE);
		const { samples } = parseExposition(
			renderMetrics(figuresFixture(), { ...sampleProcessInfo(), uptimeSeconds: NaN }),
		);
		assert.ok(Number.isNaN(get(samples, "moq_fanout_process_uptime_seconds", {})));
	});

	test("every counters field is exposed exactly once", () => {
		const exposed = WORKER_FAMILIES.flatMap((f) => f.series.map((s) => s.field)).sort();
		assert.deepEqual(exposed, FIELDS.map((f) => f.name).sort());
		for (const fam of WORKER_FAMILIES) {
			const kinds = new Set(fam.series.map((s) => FIELDS[Field[s.field]].kind));
			assert.deepEqual([...kinds], [fam.type], `${fam.name}: type matches the fields' kind`);
		}
	});

	test("the checker rejects malformed output", () => {
		assert.throws(() => parseExposition('moq_fanout_x{a="b"} 1\n'), /before its HELP/);
		assert.throws(() => parseExposition('# HELP x h\n# TYPE x gauge\nx{a="b\nc"} 1\n'), /not a sample/);
		assert.throws(
			() => parseExposition("# HELP x h\n# TYPE x gauge\nx 1\n# HELP y h\n# TYPE y gauge\ny 1\nx 2\n"),
			/contiguous/,
		);
		assert.throws(() => parseExposition("# HELP x h\n# TYPE x gauge\nx one\n"), /not a sample/);
	});
});

describe("shared counters", () => {
	test("a replacement writer continues CPU totals and gauges reset on restart", () => {
		const buf = createCountersBuffer(1);
		const first = new WorkerCounters(buf, 0);
		first.sample();
		first.set(Field.subscriptions, 9);
		first.add(Field.bytesIn, 10);
		const reader = new CountersReader(buf);
		const cpuBefore = reader.read(0).cpuUserMicros;
		assert.ok(cpuBefore > 0);
		reader.resetGauges(0);
		reader.addRestart(0);
		const second = new WorkerCounters(buf, 0);
		second.sample();
		const f = reader.read(0);
		assert.equal(f.subscriptions, 0);
		assert.equal(f.bytesIn, 10);
		assert.equal(f.restarts, 1);
		assert.ok(f.cpuUserMicros >= cpuBefore, "CPU continues from the predecessor's total");
	});

	test("regions are cache-line aligned and indices are checked", () => {
		const buf = createCountersBuffer(3);
		assert.equal(buf.byteLength % (3 * 64), 0);
		assert.throws(() => new WorkerCounters(buf, 3), /out of range/);
		assert.throws(() => new CountersReader(new SharedArrayBuffer(12)), /wrong size/);
	});
});
