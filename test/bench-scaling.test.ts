/**
 * A tiny `npm run bench:scaling` end to end: the real relay as a separate process in all three
 * configurations (1 worker; 2 workers with SO_REUSEPORT; 2 workers behind the single socket), a
 * handful of subscribers, one short window each. Checks that the JSON and SVG are written and
 * consistent with each other; no timing assertions (the machine may be busy).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { parseScalingArgs } from "../bench/lib/scaling-args.ts";
import type { ScalingDocument } from "../bench/lib/scaling-report.ts";
import { parseSnmpUdp } from "../bench/lib/scaling-snmp.ts";

const REPO = resolve(import.meta.dirname, "..");
const NODE = join(REPO, "node_modules", ".bin", "node");
const out = mkdtempSync(join(tmpdir(), "moq-scaling-"));
after(() => rmSync(out, { recursive: true, force: true }));

test("scaling options: defaults, configs, external relays", () => {
	const d = parseScalingArgs([]);
	assert.ok(d !== "help", "options, not help");
	assert.equal(d.runs, 3);
	assert.deepEqual(d.configs, ["A", "B", "C"]);
	assert.equal(d.cores, 2);
	const some = parseScalingArgs(["--configs", "c,a", "--load-cores", "2-4,7", "--runs=5"]);
	assert.ok(some !== "help", "options, not help");
	assert.deepEqual(some.configs, ["A", "C"]);
	assert.deepEqual(some.loadCores, [2, 3, 4, 7]);
	assert.equal(some.runs, 5);
	// External relays: only the configurations given a URL run.
	const remote = parseScalingArgs(["--url", "A=https://r:4441/bench", "--url", "B=https://r:4442/bench"]);
	assert.ok(remote !== "help", "options, not help");
	assert.deepEqual(remote.configs, ["A", "B"]);
	assert.equal(remote.urls.B, "https://r:4442/bench");
	assert.throws(() => parseScalingArgs(["--url", "D=https://x"]), /ID=URL/);
	assert.throws(() => parseScalingArgs(["--cores", "1"]), /--cores/);
	assert.throws(() => parseScalingArgs(["--bogus", "1"]), /unknown option/);
	assert.equal(parseScalingArgs(["-h"]), "help");
});

test("UDP counters from /proc/net/snmp text", () => {
	const text =
		"Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"Udp: 100 2 7 90 5 0 0 0 0\n";
	assert.deepEqual(parseSnmpUdp(text), { rcvbufErrors: 5, inErrors: 7 });
	assert.equal(parseSnmpUdp("Ip: a\nIp: 1\n"), null);
});

test("a tiny scaling bench writes a consistent JSON and SVG", { timeout: 120_000 }, async () => {
	const args = [
		join(REPO, "bench", "scaling.ts"),
		"--runs",
		"1",
		"--subscribers",
		"4",
		"--bitrate",
		"0.3",
		"--group-ms",
		"500",
		// ≥ 2 s: the relay publishes its per-worker counters once a second.
		"--duration",
		"2",
		"--warmup",
		"0.3",
		"--generators",
		"1",
		"--sockets",
		"2",
		"--quiet-wait",
		"0",
		"--retries",
		"0",
		"--out",
		out,
	];
	const { stdout } = await promisify(execFile)(NODE, args, { cwd: REPO, timeout: 110_000 });
	assert.match(stdout, /\| config \| delivered Mbit\/s/);
	assert.match(stdout, /B\/A egress packets\/s/);

	const doc = JSON.parse(readFileSync(join(out, "scaling-latest.json"), "utf8")) as ScalingDocument;
	assert.equal(doc.kind, "scaling");
	assert.deepEqual(
		doc.trials.map((t) => [t.config, t.workers, t.reusePort]),
		[
			["A", 1, true],
			["B", 2, true],
			["C", 2, false],
		],
	);
	for (const t of doc.trials) {
		assert.equal(t.error, null, t.error ?? "");
		assert.equal(t.connected, 4);
		assert.ok(t.packetsOut > 0, "egress packets were counted at the generators");
		assert.ok(Math.abs(t.packetsPerSec - t.packetsOut / t.windowS) <= 1 + t.packetsPerSec * 0.01);
		assert.ok(t.deliveredMbps > 0);
		assert.equal(t.workerShares.length, t.workers, "one balance entry per worker from /metrics");
		const shares = t.workerShares.map((w) => w.share ?? 0);
		assert.ok(Math.abs(shares.reduce((a, b) => a + b, 0) - 1) < 0.01, `shares sum to 1: ${shares}`);
		assert.equal(t.valid, t.limitedBy === "relay" && !t.disturbed);
		if (t.relayCpuCores !== null && t.usPerPacket !== null)
			assert.ok(Math.abs(t.usPerPacket - (t.relayCpuCores * t.windowS * 1e6) / t.packetsOut) <= t.usPerPacket * 0.02);
	}
	// The summary of one run is that run, and the ratios are the ratios of the summaries.
	for (const s of doc.summary) {
		const t = doc.trials.find((x) => x.config === s.config)!;
		assert.equal(s.runs, 1);
		assert.deepEqual(s.packetsPerSec, { min: t.packetsPerSec, median: t.packetsPerSec, max: t.packetsPerSec });
	}
	const pps = (id: string) => doc.summary.find((s) => s.config === id)!.packetsPerSec!.median;
	const ba = doc.ratios.find((r) => r.name === "B/A")!;
	const cb = doc.ratios.find((r) => r.name === "C/B")!;
	assert.ok(Math.abs(ba.ofMedians! - pps("B") / pps("A")) < 0.001);
	assert.ok(Math.abs(cb.ofMedians! - pps("C") / pps("B")) < 0.001);
	assert.equal(ba.target, 1.8);
	assert.equal(ba.met, ba.ofMedians! >= 1.8);

	const svg = readFileSync(join(out, "scaling-latest.svg"), "utf8");
	assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
	for (const id of ["A", "B", "C"]) assert.match(svg, new RegExp(`class="bar" data-config="${id}"`));
	assert.match(stdout, /wrote .*scaling-.*\.json/);
});
