/**
 * `npm run bench`'s baseline in the same run: the bare quiche push pump (dgram, and GSO when the
 * native addon is built) and the relay with 1 and 2 workers on one core. The summary's arithmetic
 * (run-by-run ratios, runs the load limited left out), the options, and a tiny end-to-end run of
 * the pump and worker phases with real processes. No timing assertions (the machine may be busy).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { parseArgs } from "../bench/lib/args.ts";
import type { PumpRun } from "../bench/lib/pump-trial.ts";
import { type BenchDocument, capacityTable, costTable, document, summarizeBaseline } from "../bench/lib/report.ts";
import { costChart } from "../bench/lib/svg.ts";
import type { StepResult, SweepResult } from "../bench/lib/sweep.ts";

const REPO = resolve(import.meta.dirname, "..");
const NODE = join(REPO, "node_modules", ".bin", "node");
const out = mkdtempSync(join(tmpdir(), "moq-bench-baseline-"));
after(() => rmSync(out, { recursive: true, force: true }));

function pump(
	egress: PumpRun["egress"],
	run: number,
	usPerPacket: number | null,
	error: string | null = null,
	audience: PumpRun["audience"] = "bulk",
): PumpRun {
	return {
		egress,
		audience,
		run,
		connections: 20,
		receiving: 20,
		windowS: 5,
		packetsOut: 100_000,
		packetsIn: 100_000,
		packetsPerSec: 20_000,
		deliveredMbps: 200,
		cpuCores: usPerPacket === null ? null : 0.5,
		usPerPacket,
		syscallsPerPacket: 1,
		gsoShare: null,
		clientCpu: [0.3],
		lost: 0,
		cwnd: 100_000,
		rtt: 1,
		machineBusy: 0.5,
		limitedBy: "neither",
		error,
	};
}

function relay(
	workers: number,
	run: number,
	usPerPacket: number | null,
	valid = true,
	engine?: "quiche" | "ngtcp2",
): SweepResult {
	const step = {
		subscribers: 100,
		connected: 100,
		windowMs: 5000,
		packetsOut: 50_000,
		relayCpuCores: 0.4,
		usPerPacket,
		valid,
		ratioToBare: null,
		latencyMs: { p50: 5, p90: 9, p99: 20, p999: 30, max: 40 },
		machineBusy: workers === 2 && run === 2 ? 0.95 : 0.5,
	} as unknown as StepResult;
	return { run, engine, cores: 1, workers, steps: [step], capacity: 0, stoppedBy: "max", error: null };
}

test("bench options: phases, the sweep on one core by default, trial sizes", () => {
	const d = parseArgs([]);
	assert.ok(d !== "help");
	assert.deepEqual(d.phases, ["pump", "workers", "sweep"]);
	assert.deepEqual(d.cores, [1]);
	assert.equal(d.runs, 3);
	assert.equal(d.pumpConnections, 20);
	assert.equal(d.trialSubscribers, 100);
	const q = parseArgs(["--quick"]);
	assert.ok(q !== "help");
	assert.equal(q.trialSubscribers, 40);
	const some = parseArgs(["--phases", "sweep,pump", "--pump-connections", "8", "--trial-subscribers=30"]);
	assert.ok(some !== "help");
	assert.deepEqual(some.phases, ["pump", "sweep"], "in the bench's order");
	assert.equal(some.pumpConnections, 8);
	assert.equal(some.trialSubscribers, 30);
	assert.throws(() => parseArgs(["--phases", "pump,bogus"]), /--phases/);
	// An external relay: only the sweep can run.
	const remote = parseArgs(["--url", "https://relay:4443/bench"]);
	assert.ok(remote !== "help");
	assert.deepEqual(remote.phases, ["sweep"]);
	assert.throws(() => parseArgs(["--url", "https://relay:4443/bench", "--phases", "workers"]), /only the sweep/);
});

test("the baseline summary: min / median / max over runs, ratios taken run by run", () => {
	const pumps = [
		pump("dgram", 1, 20),
		pump("gso", 1, 10),
		pump("dgram", 2, 25),
		pump("gso", 2, 12.5),
		pump("dgram", 3, null, "the pump sent nothing"),
		pump("gso", 3, 11),
	];
	const relays = [
		relay(1, 1, 40),
		relay(2, 1, 44),
		relay(1, 2, 45),
		relay(2, 2, 54),
		relay(1, 3, 50),
		// The load limited this run: no CPU-per-packet figure from it.
		relay(2, 3, 70, false),
	];
	const s = summarizeBaseline(3, pumps, relays);
	assert.deepEqual(s.bareDgramUs, { min: 20, median: 22.5, max: 25 });
	assert.deepEqual(s.bareGsoUs, { min: 10, median: 11, max: 12.5 });
	assert.deepEqual(s.relayOneWorkerUs, { min: 40, median: 45, max: 50 });
	assert.deepEqual(s.relayTwoWorkersUs, { min: 44, median: 49, max: 54 });
	// Run 1: 40/20 = 2, run 2: 45/25 = 1.8; run 3 has no dgram pump.
	assert.deepEqual(s.relayToBareDgram, { min: 1.8, median: 1.9, max: 2 });
	assert.deepEqual(s.relayToBareGso, { min: 3.6, median: 4, max: 4.545 });
	// Run 1: 44/40 = 1.1, run 2: 54/45 = 1.2; run 3's 2-worker run was load-bound.
	assert.deepEqual(s.twoWorkersToOne, { min: 1.1, median: 1.15, max: 1.2 });
	assert.deepEqual(s.gsoToDgram, { min: 0.5, median: 0.5, max: 0.5 });
	assert.deepEqual(s.runs, {
		bareDgram: 2,
		bareGso: 3,
		bareNgtcp2: 0,
		mediaGso: 0,
		mediaNgtcp2: 0,
		relayOneWorker: 3,
		relayTwoWorkers: 2,
	});
	assert.equal(s.bareNgtcp2Us, null, "no ngtcp2 pump ran");
	assert.equal(s.bareNgtcp2ToGso, null);

	// The document divides the sweep's per-packet costs by the measured dgram pump (median).
	const opts = parseArgs(["--runs", "3"]);
	assert.ok(opts !== "help");
	const sweep = relay(1, 1, 45);
	const doc = document(opts, [sweep], pumps, relays, null);
	assert.equal(doc.bare.usPerPacket, 22.5);
	assert.equal(sweep.steps[0].ratioToBare, 2);
	assert.match(doc.bare.source, /measured in this bench/);
	const table = costTable(doc);
	assert.match(
		table,
		/\| bare quiche \+ dgram push pump, 20 connections \| 20\.00 \/ 22\.50 \/ 25\.00 \(2 runs\) \| baseline/,
	);
	assert.match(
		table,
		/\| relay \(quiche engine\), 2 workers on the same core, same load \| 44\.00 \/ 49\.00 \/ 54\.00 \(2 runs\) \| 1\.100 \/ 1\.150 \/ 1\.200 × 1 worker/,
	);
	assert.match(table, /WARNING: the machine was ≥ 90% busy during run 2 relay quiche 2 workers 95%/);
	const svg = costChart(doc);
	assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
	assert.equal((svg.match(/class="bar"/g) ?? []).length, 4);

	// A second engine: its own rows, its ratios to the bare pump and to the quiche engine, run by run.
	const withNg = [
		...relays,
		relay(1, 1, 10, true, "ngtcp2"),
		relay(2, 1, 11, true, "ngtcp2"),
		relay(1, 2, 9, true, "ngtcp2"),
		relay(2, 2, 9.9, true, "ngtcp2"),
	];
	const both = summarizeBaseline(3, pumps, withNg);
	assert.deepEqual(both.relayOneWorkerUs, s.relayOneWorkerUs, "the top-level relay fields stay the quiche engine's");
	assert.deepEqual(
		both.engines.map((e) => e.engine),
		["quiche", "ngtcp2"],
	);
	const ng = both.engines[1];
	assert.deepEqual(ng.oneWorkerUs, { min: 9, median: 9.5, max: 10 });
	// Run 1: 10/40 = 0.25, run 2: 9/45 = 0.2.
	assert.deepEqual(ng.toQuiche, { min: 0.2, median: 0.225, max: 0.25 });
	// Run 1: 10/20 = 0.5, run 2: 9/25 = 0.36.
	assert.deepEqual(ng.toBareDgram, { min: 0.36, median: 0.43, max: 0.5 });
	assert.deepEqual(ng.twoWorkersToOne, { min: 1.1, median: 1.1, max: 1.1 });
	assert.equal(both.engines[0].toQuiche, null);
	const bothTable = costTable(document(opts, [], pumps, withNg, null));
	assert.match(
		bothTable,
		/\| relay \(ngtcp2 engine\), 1 worker, 100 subscribers .*\*\*0\.20 \/ 0\.23 \/ 0\.25 × quiche engine\*\*/,
	);
	assert.equal((costChart(document(opts, [], pumps, withNg, null)).match(/class="bar"/g) ?? []).length, 6);
	assert.doesNotMatch(bothTable, /bare ngtcp2/, "no ngtcp2 pump row without an ngtcp2 pump");

	// The pump on the ngtcp2 engine: its row, its ratio to the quiche GSO pump, and the ngtcp2 relay
	// over it, run by run (run 3 has no ngtcp2 relay run, run 2 no ngtcp2 pump).
	const withNgPump = [...pumps, pump("ngtcp2", 1, 4), pump("ngtcp2", 3, 5.5)];
	const floor = summarizeBaseline(3, withNgPump, withNg);
	assert.deepEqual(floor.bareNgtcp2Us, { min: 4, median: 4.75, max: 5.5 });
	// Run 1: 4/10 = 0.4, run 3: 5.5/11 = 0.5.
	assert.deepEqual(floor.bareNgtcp2ToGso, { min: 0.4, median: 0.45, max: 0.5 });
	assert.equal(floor.runs.bareNgtcp2, 2);
	// Run 1: 10/4 = 2.5; the quiche relay over the quiche GSO pump: 40/10, 45/12.5, 50/11.
	assert.deepEqual(floor.engines[1].toBareEngine, { min: 2.5, median: 2.5, max: 2.5 });
	assert.deepEqual(floor.engines[0].toBareEngine, floor.relayToBareGso);
	const floorTable = costTable(document(opts, [], withNgPump, withNg, null));
	assert.match(
		floorTable,
		/\| bare ngtcp2 \+ GSO push pump, 20 connections \| 4\.00 \/ 4\.75 \/ 5\.50 \(2 runs\) \| 0\.40 \/ 0\.45 \/ 0\.50 × bare quiche GSO \|/,
	);
	assert.match(floorTable, /\| relay \(ngtcp2 engine\), 1 worker, .*; 2\.50 × bare ngtcp2; \*\*/);
	assert.equal((costChart(document(opts, [], withNgPump, withNg, null)).match(/class="bar"/g) ?? []).length, 7);

	// The media pumps (the track to the relay runs' audience): their own rows, never mixed with the
	// bulk pumps of the same egress, and each relay over its engine's media pump, run by run.
	const withMedia = [
		...withNgPump,
		pump("gso", 1, 20, null, "media"),
		pump("ngtcp2", 1, 8, null, "media"),
		pump("gso", 2, 30, null, "media"),
		pump("ngtcp2", 2, 6, null, "media"),
	];
	const m = summarizeBaseline(3, withMedia, withNg);
	assert.deepEqual(m.bareGsoUs, s.bareGsoUs, "media pumps are not bulk ones");
	assert.deepEqual(m.bareNgtcp2Us, floor.bareNgtcp2Us);
	assert.deepEqual(m.mediaGsoUs, { min: 20, median: 25, max: 30 });
	assert.deepEqual(m.mediaNgtcp2Us, { min: 6, median: 7, max: 8 });
	// Run 1: 8/20 = 0.4, run 2: 6/30 = 0.2.
	assert.deepEqual(m.mediaNgtcp2ToGso, { min: 0.2, median: 0.3, max: 0.4 });
	// quiche relay: 40/20 = 2, 45/30 = 1.5; ngtcp2 relay: 10/8 = 1.25, 9/6 = 1.5.
	assert.deepEqual(m.engines[0].toBareMedia, { min: 1.5, median: 1.75, max: 2 });
	assert.deepEqual(m.engines[1].toBareMedia, { min: 1.25, median: 1.375, max: 1.5 });
	assert.deepEqual(m.load.bareGso, { packetsPerSec: 20_000, cpuCores: 0.5 });
	assert.deepEqual([m.runs.mediaGso, m.runs.mediaNgtcp2], [2, 2]);
	const mediaTable = costTable(document(opts, [], withMedia, withNg, null));
	assert.match(
		mediaTable,
		/\| bare ngtcp2 \+ GSO pump, the track to 100 connections \| 6\.00 \/ 7\.00 \/ 8\.00 \(2 runs\) \| 0\.20 \/ 0\.30 \/ 0\.40 × quiche's, same audience \|/,
	);
	assert.match(
		mediaTable,
		/\| relay \(ngtcp2 engine\), 1 worker, .*; 1\.25 \/ 1\.38 \/ 1\.50 × its engine's pump, same audience; \*\*/,
	);
	assert.equal((costChart(document(opts, [], withMedia, withNg, null)).match(/class="bar"/g) ?? []).length, 9);

	// Capacity per engine, and ngtcp2 ÷ quiche run by run.
	const sweepOf = (engine: "quiche" | "ngtcp2", run: number, capacity: number): SweepResult => ({
		...relay(1, run, 20, true, engine),
		capacity,
	});
	const caps = document(
		opts,
		[sweepOf("quiche", 1, 25), sweepOf("ngtcp2", 1, 100), sweepOf("quiche", 2, 50), sweepOf("ngtcp2", 2, 400)],
		pumps,
		relays,
		null,
	);
	assert.deepEqual(
		caps.summary.map((x) => [x.engine, x.cores, x.capacity.median]),
		[
			["quiche", 1, 37.5],
			["ngtcp2", 1, 250],
		],
	);
	assert.deepEqual(caps.summary[1].capacityToQuiche, { min: 4, median: 6, max: 8 });
	assert.equal(caps.summary[0].capacityToQuiche, null);

	// p99 at capacity: the latency the target judged (arrival), beside the generators' read time.
	const atArrival = (run: number, read: number | null): SweepResult => {
		const sweep = sweepOf("ngtcp2", run, 100);
		const step = {
			...sweep.steps[0],
			pass: true,
			latencyAt: read === null ? "read" : "arrival",
			readLatencyMs: { p50: 6, p90: 10, p99: read ?? 20, p999: 90, max: 95 },
		} as StepResult;
		return { ...sweep, steps: [step] };
	};
	const judged = document(opts, [atArrival(1, 60), atArrival(2, 80)], pumps, relays, null);
	assert.deepEqual(judged.summary[0].p99AtCapacityMs, { min: 20, median: 20, max: 20 });
	assert.deepEqual(judged.summary[0].p99ReadAtCapacityMs, { min: 60, median: 70, max: 80 });
	assert.match(capacityTable(judged), /\| p99 at max \(ms\) \| read p99 at max \(ms\) \|/);
	assert.match(capacityTable(judged), /\| 20\.0 \| 60\.0 \/ 70\.0 \/ 80\.0 \|/);
	// Judged when read (the JS generator, or documents from before): no second column's figure.
	const readOnly = document(opts, [atArrival(1, null)], pumps, relays, null);
	assert.equal(readOnly.summary[0].p99ReadAtCapacityMs, null);

	// Without the pump phase there is nothing to divide by.
	const none = document(opts, [relay(1, 1, 45)], [], [], null);
	assert.equal(none.bare.usPerPacket, null);
	assert.equal(none.sweeps[0].steps[0].ratioToBare, null);
	assert.equal(none.summary[0].ratioToBare, null, "the capacity table says n/a, not 0.00");
	assert.doesNotMatch(capacityTable(none), /\| 0\.00 \|/);
});

test("a tiny bench of the pump and worker phases writes a consistent JSON and cost chart", {
	timeout: 150_000,
}, async () => {
	const args = [
		join(REPO, "bench", "run.ts"),
		"--phases",
		"pump,workers",
		"--runs",
		"1",
		"--pump-connections",
		"2",
		"--trial-subscribers",
		"2",
		"--bitrate",
		"0.5",
		"--group-ms",
		"500",
		"--warmup-ms",
		"300",
		"--window-ms",
		"1000",
		"--generators",
		"1",
		"--sockets",
		"2",
		"--out",
		out,
	];
	const { stdout } = await promisify(execFile)(NODE, args, { cwd: REPO, timeout: 140_000 });
	assert.match(stdout, /\| measurement \| µs CPU \/ egress packet \| ratio \|/);
	assert.doesNotMatch(stdout, /\| cores \| max subscribers/, "no sweep was asked for");

	const doc = JSON.parse(readFileSync(join(out, "latest.json"), "utf8")) as BenchDocument;
	assert.equal(doc.sweeps.length, 0);
	const { pumps, relays, gsoSkipped, summary } = doc.baseline;
	// The ngtcp2 pump runs with GSO when the relay is benched on that engine too; then the GSO pumps
	// send the track to the relay runs' audience.
	const gsoPumps = doc.options.engines.includes("ngtcp2") ? ["gso", "ngtcp2"] : ["gso"];
	assert.deepEqual(
		pumps.map((p) => `${p.egress} ${p.audience}`),
		gsoSkipped !== null
			? ["dgram bulk"]
			: ["dgram bulk", ...gsoPumps.map((e) => `${e} bulk`), ...gsoPumps.map((e) => `${e} media`)],
	);
	for (const p of pumps) {
		assert.equal(p.error, null);
		assert.ok(p.packetsOut > 0 && p.packetsIn > 0, "the pump sent and the clients received");
		assert.ok(p.usPerPacket !== null && p.usPerPacket > 0);
		// --pump-connections 2 for bulk, --trial-subscribers 2 for media.
		assert.equal(p.connections, 2);
		assert.equal(p.receiving, 2);
	}
	assert.deepEqual(
		relays.map((r) => [r.engine, r.workers]),
		doc.options.engines.flatMap((e) => [
			[e, 1],
			[e, 2],
		]),
	);
	for (const r of relays) {
		assert.equal(r.error, null);
		assert.equal(r.cores, 1);
		assert.equal(r.steps.length, 1);
		assert.equal(r.steps[0].connected, 2);
		assert.ok((r.steps[0].packetsOut ?? 0) > 0);
	}
	assert.ok(summary.bareDgramUs !== null);
	assert.equal(doc.bare.usPerPacket, summary.bareDgramUs.median);
	const svg = readFileSync(join(out, "latest-cost.svg"), "utf8");
	assert.match(svg, /<\/svg>\n$/);
});
