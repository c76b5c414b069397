/**
 * A tiny `npm run bench` end to end: the real relay as a separate process over raw QUIC, one core,
 * two steps, short windows. Checks that the JSON and SVG are written and agree with each other;
 * no timing assertions (the machine may be busy).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { parseArgs } from "../bench/lib/args.ts";
import { nativeGeneratorAvailable } from "../bench/lib/native-generator.ts";
import type { BenchDocument } from "../bench/lib/report.ts";
import { refineSteps, type SweepResult } from "../bench/lib/sweep.ts";

const REPO = resolve(import.meta.dirname, "..");
const NODE = join(REPO, "node_modules", ".bin", "node");
const out = mkdtempSync(join(tmpdir(), "moq-bench-"));
after(() => rmSync(out, { recursive: true, force: true }));

test("bench options: defaults, quick, and explicit steps", () => {
	const quick = parseArgs(["--quick", "--cores", "1"]);
	assert.ok(quick !== "help", "options, not help");
	assert.ok(quick.engines[0] === "quiche", "quiche first, and ngtcp2 too when its addon is built");
	const engines = parseArgs(["--engines", "ngtcp2,quiche"]);
	assert.ok(engines !== "help");
	assert.deepEqual(engines.engines, ["quiche", "ngtcp2"], "in the bench's order");
	assert.throws(() => parseArgs(["--engines", "msquic"]), /--engines/);
	assert.equal(quick.runs, 1);
	assert.deepEqual(quick.steps, [10, 25, 50, 100, 200, 400]);
	const full = parseArgs(["--steps", "5,2", "--bitrate", "1.5", "--runs", "3"]);
	assert.ok(full !== "help", "options, not help");
	assert.deepEqual(full.steps, [2, 5]);
	assert.equal(full.bitrate, 1.5);
	assert.throws(() => parseArgs(["--bogus", "1"]), /unknown option/);
	const js = parseArgs(["--generator", "js"]);
	assert.ok(js !== "help" && js.generator === "js");
	assert.throws(() => parseArgs(["--generator", "rust"]), /--generator/);
	assert.equal(parseArgs(["--help"]), "help");
	assert.ok(quick.receiverGro === false && quick.ackEvery === 2, "receivers as in the baselines by default");
	if (nativeGeneratorAvailable()) {
		const receivers = parseArgs(["--receiver-gro", "on", "--ack-every", "10"]);
		assert.ok(receivers !== "help" && receivers.receiverGro && receivers.ackEvery === 10);
		assert.throws(() => parseArgs(["--ack-every", "1"]), /--ack-every/);
		assert.throws(() => parseArgs(["--ack-every", "2.5"]), /--ack-every/);
		assert.throws(() => parseArgs(["--receiver-gro", "yes"]), /--receiver-gro/);
	}
	assert.throws(() => parseArgs(["--generator", "js", "--receiver-gro", "on"]), /native generator/);
	// The target judges arrival when the generator can see it (the native one reads receive timestamps).
	assert.equal(js.latencyAt, "read", "the JS generator measures only when it read a frame");
	assert.equal(quick.latencyAt, nativeGeneratorAvailable() ? "arrival" : "read");
	const read = parseArgs(["--latency-at", "read"]);
	assert.ok(read !== "help" && read.latencyAt === "read");
	assert.throws(() => parseArgs(["--latency-at", "send"]), /--latency-at/);
	assert.throws(() => parseArgs(["--generator", "js", "--latency-at", "arrival"]), /native generator/);
	assert.equal(full.refine, 3, "a sweep is refined between its last pass and first failure by default");
	assert.equal(quick.refine, 0);
	const refine = parseArgs(["--refine", "0"]);
	assert.ok(refine !== "help" && refine.refine === 0);
	assert.throws(() => parseArgs(["--refine", "1.5"]), /--refine/);
	assert.throws(() => parseArgs(["--refine", "9"]), /--refine/);
});

test("refineSteps: evenly spaced counts strictly between the last pass and the first failure", () => {
	assert.deepEqual(refineSteps(200, 400, 3), [250, 300, 350]);
	assert.deepEqual(refineSteps(400, 800, 1), [600]);
	assert.deepEqual(refineSteps(0, 10, 3), [3, 5, 8]);
	assert.deepEqual(refineSteps(2, 4, 3), [3], "no repeats, nothing at either end");
	assert.deepEqual(refineSteps(5, 6, 3), []);
});

test("a sweep that fails a step is refined in a fresh relay", { timeout: 90_000 }, async () => {
	const dir = mkdtempSync(join(tmpdir(), "moq-bench-refine-"));
	try {
		const args = [
			...["--phases", "sweep", "--engines", "quiche", "--cores", "1", "--steps", "4", "--refine", "1"],
			...["--runs", "1", "--bitrate", "0.5", "--group-ms", "500", "--warmup-ms", "500", "--window-ms", "1000"],
			...["--generators", "1", "--sockets", "2", "--generator", generators[0]],
			// No relay meets a p99 of a microsecond: every step fails, on the target, not on loss.
			...["--target-p99-ms", "0.001", "--out", dir],
		];
		const { stdout } = await promisify(execFile)(NODE, [join(REPO, "bench", "run.ts"), ...args], {
			cwd: REPO,
			timeout: 80_000,
		});
		const doc = JSON.parse(readFileSync(join(dir, "latest.json"), "utf8")) as BenchDocument;
		const [sweep] = doc.sweeps;
		assert.equal(sweep.error, null);
		assert.deepEqual(sweep.refined, [2], "one count halfway between 0 (no pass) and the failing 4");
		assert.deepEqual(
			sweep.steps.map((s) => [s.subscribers, s.refine === true, s.pass]),
			[
				[4, false, false],
				[2, true, false],
			],
		);
		assert.ok(sweep.steps[1].framesReceived > 0, "the refinement measured a relay of its own");
		assert.equal(sweep.capacity, 0);
		assert.equal(sweep.stoppedBy, "target");
		assert.match(stdout, /capacity 0 subscribers \(refined from 0: tried 2\)/);
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
});

const generators: ("native" | "js")[] = nativeGeneratorAvailable() ? ["native", "js"] : ["js"];

for (const generator of generators)
	test(`a tiny bench writes a consistent JSON and SVG (${generator} load generator)`, { timeout: 90_000 }, async () => {
		await tinyBench(generator);
	});

async function tinyBench(generator: "native" | "js"): Promise<void> {
	// The JS generator's run takes every default phase, as `npm run bench` does (pump, workers, then
	// the sweep, in one document); the native one only the sweep, the part this test is about (its
	// pump and worker phases are bench-baseline.test.ts's), which saves about 35 s.
	const everyPhase = generator === "js";
	const args = [
		join(REPO, "bench", "run.ts"),
		...(everyPhase ? [] : ["--phases", "sweep"]),
		"--cores",
		"1",
		"--steps",
		"2,4",
		"--runs",
		"1",
		"--bitrate",
		"0.5",
		"--group-ms",
		"500",
		"--warmup-ms",
		"500",
		"--window-ms",
		"1200",
		"--generators",
		"1",
		"--sockets",
		"2",
		// A generous target: this checks plumbing, not the machine's speed.
		"--target-p99-ms",
		"5000",
		"--generator",
		generator,
		// The native generator's GRO receive path and a non-default ACK rate, in a real run.
		...(generator === "native" ? ["--receiver-gro", "on", "--ack-every", "3"] : []),
		"--out",
		out,
	];
	const { stdout } = await promisify(execFile)(NODE, args, { cwd: REPO, timeout: 80_000 });
	assert.match(stdout, /\| cores \| max subscribers/);

	const doc = JSON.parse(readFileSync(join(out, "latest.json"), "utf8")) as BenchDocument;
	assert.equal(doc.version, 1);
	// One sweep per engine (quiche, and ngtcp2 when its addon is built), in the same run.
	assert.deepEqual(
		doc.sweeps.map((s) => s.engine),
		doc.options.engines,
	);
	for (const sweep of doc.sweeps) checkSweep(doc, sweep);

	const svg = readFileSync(join(out, "latest.svg"), "utf8");
	assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
	assert.match(svg, /<\/svg>\n$/);
	assert.match(svg, /class="target"/);
	for (const summary of doc.summary) {
		if (summary.curve.length > 0) {
			assert.match(svg, new RegExp(`data-cores="1" data-engine="${summary.engine}" data-percentile="p99"`));
			assert.match(svg, new RegExp(`data-cores="1" data-engine="${summary.engine}" data-percentile="p50"`));
		}
	}
	// The timestamped copies are the same documents.
	assert.match(stdout, /wrote .*bench-.*\.json/);
	assert.equal(doc.options.generator, generator);
	assert.deepEqual(doc.options.phases, everyPhase ? ["pump", "workers", "sweep"] : ["sweep"]);
	assert.equal(doc.bare.usPerPacket !== null, everyPhase, "the bare pump ran when its phase did");
	if (generator === "native") {
		assert.ok(doc.options.receiverGro && doc.options.ackEvery === 3);
		assert.match(stdout, /receivers: moq-loadgen, ACK every 3 ack-eliciting packets, UDP GRO on; latency at arrival/);
		assert.match(stdout, /\(read p99 [0-9.]+\)/);
	}
}

function checkSweep(doc: BenchDocument, sweep: SweepResult): void {
	assert.equal(sweep.error, null);
	assert.equal(sweep.cores, 1);
	// Two steps, and the refinement's one count (3) when the second failed.
	assert.ok(sweep.steps.length >= 1 && sweep.steps.length <= 3);
	for (const step of sweep.steps) {
		assert.equal(step.connected, step.subscribers);
		assert.ok(step.framesReceived > 0, "frames were measured, not configured");
		assert.ok(
			step.latencyMs.p50 > 0 && step.latencyMs.p50 <= step.latencyMs.p99 && step.latencyMs.p99 <= step.latencyMs.max,
		);
		const read = step.readLatencyMs;
		assert.ok(read, "the generators' read-time latency is always reported");
		if (doc.options.generator === "native") {
			// Both from the same frames: each frame's arrival (the kernel's receive time) comes no later
			// than its read, so every percentile of one is at most the other's.
			const arrival = step.arrivalLatencyMs;
			assert.ok(arrival, "the native generator reports receive timestamps");
			assert.equal(step.latencyAt, "arrival");
			assert.deepEqual(step.latencyMs, arrival);
			assert.ok(arrival.p50 > 0 && arrival.p50 <= read.p50 && arrival.p99 <= read.p99 && arrival.max <= read.max);
		} else {
			assert.equal(step.latencyAt, "read");
			assert.equal(step.arrivalLatencyMs, null);
			assert.deepEqual(step.latencyMs, read);
		}
		assert.ok(step.packetsOut !== null && step.packetsOut > 0);
		assert.equal(step.pass, step.valid && step.failReason === null);
	}
	// The capacity is the last passing step of the sweep, and the summary reports it.
	const passing = sweep.steps.filter((s) => s.pass).map((s) => s.subscribers);
	assert.equal(sweep.capacity, passing.length ? Math.max(...passing) : 0);
	const summary = doc.summary.find((s) => s.cores === 1 && s.engine === sweep.engine);
	assert.ok(summary);
	assert.equal(summary.capacity.median, sweep.capacity);
	assert.deepEqual(
		summary.curve.map((p) => p.subscribers),
		sweep.steps
			.filter((s) => s.valid)
			.map((s) => s.subscribers)
			.sort((a, b) => a - b),
	);
}
