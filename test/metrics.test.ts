import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { monotonicMicros } from "../src/metrics/clock.ts";
import {
	elapsedMicros,
	fanoutLatency,
	LATENCY_BUCKETS,
	LatencyHistogram,
	recordFanout,
} from "../src/metrics/latency.ts";
import {
	escapeHelp,
	escapeLabelValue,
	formatValue,
	renderMetrics,
	sampleProcessInfo,
	WORKER_FAMILIES,
} from "../src/metrics/prometheus.ts";
import { SESSION_CLOSE_REASONS, sessionCloseReason } from "../src/metrics/session-closes.ts";
import {
	CountersReader,
	createCountersBuffer,
	FIELDS,
	Field,
	LATENCY_BUCKET_FIELDS,
	WorkerCounters,
} from "../src/pool/counters.ts";
import { parseExposition, SAMPLE_RE, sampleValue } from "./support/exposition.ts";

const get = sampleValue;

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
	w0.set(Field.broadcasts, 1);
	w1.set(Field.broadcasts, 1);
	w1.set(Field.broadcastsPublished, 1);
	w1.add(Field.closesUnauthorized, 2);
	// Latency: worker 0 saw 3 samples (≤ 0.5 ms, ≤ 0.5 ms, ≤ 5 ms), worker 1 one above the last bound.
	w0.add(Field.latencyBucket0, 2);
	w0.add(Field.latencyBucket3, 1);
	w0.add(Field.latencySumMicros, 4000);
	w1.add(Field.latencyBucketInf, 1);
	w1.add(Field.latencySumMicros, 3_000_000);
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

	test("per-worker families carry only worker=N series; relay-wide figures are their own families", () => {
		const { samples, types } = parseExposition(renderMetrics(figuresFixture(), sampleProcessInfo()));
		assert.equal(get(samples, "moq_fanout_sessions", { worker: "0", transport: "quic" }), 3);
		assert.equal(get(samples, "moq_fanout_sessions", { worker: "1", transport: "quic" }), 4);
		assert.equal(get(samples, "moq_fanout_sent_bytes_total", { worker: "0" }), 1000);
		assert.equal(get(samples, "moq_fanout_worker_cpu_seconds_total", { worker: "0", mode: "user" }), 1.5);
		assert.equal(get(samples, "moq_fanout_worker_restarts_total", { worker: "1" }), 1);
		assert.equal(get(samples, "moq_fanout_session_closes_total", { worker: "1", reason: "unauthorized" }), 2);
		// No family mixes a total in: summing a family over workers is the relay's total.
		for (const s of samples) {
			const relayWide = /^moq_fanout_(relay_|process_|workers$|build_info$)/.test(s.family);
			assert.equal("worker" in s.labels, !relayWide, `${s.name} ${JSON.stringify(s.labels)}`);
		}
		// A broadcast is replicated on both workers, but counted once relay-wide.
		assert.equal(get(samples, "moq_fanout_broadcasts", { worker: "0" }), 1);
		assert.equal(get(samples, "moq_fanout_broadcasts", { worker: "1" }), 1);
		assert.equal(get(samples, "moq_fanout_relay_broadcasts", {}), 1);
		assert.equal(get(samples, "moq_fanout_workers", {}), 2);
		assert.ok(get(samples, "moq_fanout_process_resident_memory_bytes", {}) > 0);
		assert.ok(get(samples, "moq_fanout_process_cpu_seconds_total", { mode: "user" }) > 0);
		assert.ok(get(samples, "moq_fanout_process_uptime_seconds", {}) > 0);
		// The latency histogram, per worker and merged.
		assert.equal(types.get("moq_fanout_fanout_latency_seconds"), "histogram");
		assert.equal(types.get("moq_fanout_relay_fanout_latency_seconds"), "histogram");
		const h = "moq_fanout_fanout_latency_seconds";
		assert.equal(get(samples, `${h}_bucket`, { worker: "0", le: "0.0005" }), 2);
		assert.equal(get(samples, `${h}_bucket`, { worker: "0", le: "0.0025" }), 2);
		assert.equal(get(samples, `${h}_bucket`, { worker: "0", le: "0.005" }), 3);
		assert.equal(get(samples, `${h}_bucket`, { worker: "0", le: "+Inf" }), 3);
		assert.equal(get(samples, `${h}_count`, { worker: "0" }), 3);
		assert.equal(get(samples, `${h}_sum`, { worker: "0" }), 0.004);
		assert.equal(get(samples, `${h}_bucket`, { worker: "1", le: "2.5" }), 0);
		assert.equal(get(samples, `${h}_count`, { worker: "1" }), 1);
		const r = "moq_fanout_relay_fanout_latency_seconds";
		assert.equal(get(samples, `${r}_bucket`, { le: "0.005" }), 3);
		assert.equal(get(samples, `${r}_bucket`, { le: "+Inf" }), 4);
		assert.equal(get(samples, `${r}_count`, {}), 4);
		assert.equal(get(samples, `${r}_sum`, {}), 3.004);
		const les = samples.filter((s) => s.name === `${r}_bucket`).map((s) => s.labels.le);
		assert.deepEqual(les, [...LATENCY_BUCKETS.map(String), "+Inf"]);
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
		const exposed = [
			...WORKER_FAMILIES.flatMap((f) => f.series.map((s) => s.field)),
			...LATENCY_BUCKET_FIELDS,
			"latencySumMicros",
		].sort();
		assert.deepEqual(exposed, FIELDS.map((f) => f.name).sort());
		for (const fam of WORKER_FAMILIES) {
			const kinds = new Set(fam.series.map((s) => FIELDS[Field[s.field]].kind));
			assert.deepEqual([...kinds], [fam.type], `${fam.name}: type matches the fields' kind`);
		}
	});

	test("the checker rejects inconsistent histograms", () => {
		const head = "# HELP h x\n# TYPE h histogram\n";
		const ok = `${head}h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n`;
		assert.equal(parseExposition(ok).samples.length, 4);
		assert.throws(
			() => parseExposition(`${head}h_bucket{le="1"} 3\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n`),
			/cumulative/,
		);
		assert.throws(() => parseExposition(`${head}h_bucket{le="1"} 1\nh_sum 3\nh_count 1\n`), /\+Inf/);
		assert.throws(
			() => parseExposition(`${head}h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 3\n`),
			/equals _count/,
		);
		assert.throws(() => parseExposition(`${head}h_bucket{le="+Inf"} 2\nh_count 2\n`), /_sum or _count/);
		assert.throws(() => parseExposition(`${head}h 2\n`), /bare sample/);
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

describe("fan-out latency and session close reasons", () => {
	test("buckets are inclusive upper bounds; skew and 32-bit wrap are handled", () => {
		const h = new LatencyHistogram();
		h.record(500); // exactly 0.5 ms: the first bucket (le is inclusive)
		h.record(501);
		h.record(-5); // a receive time after the clock read: 0
		h.record(10_000_000); // 10 s: +Inf
		assert.deepEqual([...h.counts], [2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
		assert.equal(h.count, 4);
		assert.equal(h.sumMicros, 10_001_001);
		// Receive time stored as the low 32 bits; the difference survives the wrap.
		const received = 2 ** 32 - 100;
		assert.equal(elapsedMicros(2 ** 33 + 50, received >>> 0), 150);
		assert.equal(elapsedMicros(1000, 2000), 0, "received after now");
	});

	test("recordFanout: unknown receive times are skipped; a reused clock reading never goes backwards", async () => {
		const before = fanoutLatency.count;
		recordFanout(0);
		assert.equal(fanoutLatency.count, before, "0 = not recorded");
		recordFanout(monotonicMicros() >>> 0);
		await Promise.resolve(); // a microtask checkpoint drops the reused reading
		// Received 2 ms ago, then (same pass) a frame received after the reading it would reuse.
		const sum0 = fanoutLatency.sumMicros;
		recordFanout((monotonicMicros() - 2000) >>> 0);
		recordFanout((monotonicMicros() + 5) >>> 0);
		assert.equal(fanoutLatency.count, before + 3);
		const added = fanoutLatency.sumMicros - sum0;
		assert.ok(added >= 2000 && added < 2000 + 50_000, `2 ms sample recorded as ${added} µs`);
	});

	test("close codes map onto the fixed reasons", () => {
		assert.equal(sessionCloseReason(0), "normal");
		assert.equal(sessionCloseReason(6), "unauthorized");
		assert.equal(sessionCloseReason(15), "protocol");
		assert.equal(sessionCloseReason(3), "timeout");
		assert.equal(sessionCloseReason(1), "fault");
		assert.equal(sessionCloseReason(17), "limit");
		assert.equal(sessionCloseReason(64 + 7), "other");
		assert.equal(sessionCloseReason(0x1234567), "other");
		assert.equal(new Set(SESSION_CLOSE_REASONS).size, SESSION_CLOSE_REASONS.length);
	});

	test("event-loop delay is sampled per worker", async () => {
		const buf = createCountersBuffer(1);
		const w = new WorkerCounters(buf, 0);
		w.startSampling(60_000);
		try {
			// Block the loop for ~60 ms, then let the monitor's timer see it.
			await new Promise((r) => setTimeout(r, 30));
			const until = Date.now() + 60;
			while (Date.now() < until);
			await new Promise((r) => setTimeout(r, 30));
			w.sample();
			const f = new CountersReader(buf).read(0);
			assert.ok(f.eventLoopDelayMax >= 0.03, `max delay ${f.eventLoopDelayMax}`);
			assert.ok(f.eventLoopDelayP50 >= 0 && f.eventLoopDelayP50 <= f.eventLoopDelayP99, "p50 <= p99");
			assert.ok(f.eventLoopDelayP99 <= f.eventLoopDelayMax, "p99 <= max");
		} finally {
			w.stopSampling();
		}
	});
});
