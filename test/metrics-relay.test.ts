/**
 * /metrics of the real relay process (two workers), parsed whole by a strict exposition parser
 * (test/support/exposition.ts) on every scrape: one broadcast counts once relay-wide, the fan-out
 * latency histogram grows with the frames delivered and holds loopback-plausible values, and a
 * refused session is counted by its close reason.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { MoqClient } from "../src/client/index.ts";
import { connectQuic } from "../src/quic/client.ts";
import { type Exposition, parseExposition, sampleSum, sampleValue } from "./support/exposition.ts";
import { type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import "./support/quiet.ts";
import { sleep, until } from "./support/wait.ts";

const REPO = resolve(import.meta.dirname, "..");
const NODE = join(REPO, "node_modules", ".bin", "node");
const MOQ_TOKEN = join(REPO, "node_modules", ".bin", "moq-token");
const WORKERS = 2;
const LATENCY = "moq_fanout_fanout_latency_seconds";
const RELAY_LATENCY = "moq_fanout_relay_fanout_latency_seconds";

async function client(relay: RelayProcess, path: string): Promise<MoqClient> {
	const quic = await connectQuic({ host: "127.0.0.1", port: relay.port, alpns: ["moq-lite-05"], insecure: true });
	return MoqClient.connect(quic, { path });
}

async function scrape(relay: RelayProcess): Promise<Exposition> {
	const res = await fetch(`${relay.base}/metrics`);
	assert.equal(res.status, 200);
	assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
	return parseExposition(await res.text());
}

/** Scrapes (every scrape fully validated) until `check` holds; workers publish once a second. */
async function scrapeUntil(relay: RelayProcess, what: string, check: (e: Exposition) => boolean): Promise<Exposition> {
	const deadline = Date.now() + 6000;
	for (;;) {
		const e = await scrape(relay);
		if (check(e)) return e;
		if (Date.now() > deadline) throw new Error(`/metrics never showed ${what}`);
		await sleep(200);
	}
}

describe("/metrics of the relay process", { timeout: 120_000 }, () => {
	let dir: string;
	let relay: RelayProcess;
	const clients: MoqClient[] = [];

	before(async () => {
		dir = mkdtempSync(join(tmpdir(), "moq-metrics-"));
		const key = join(dir, "root.jwk");
		execFileSync(NODE, [MOQ_TOKEN, "generate", "--key", key, "--algorithm", "HS256"]);
		const config = join(dir, "relay.toml");
		writeFileSync(
			config,
			`[server.tls]\ngenerate = ["localhost", "127.0.0.1"]\n[auth]\npublic = "anon"\nkey = ${JSON.stringify(key)}\n`,
		);
		relay = await startRelayProcess([config, "--workers", String(WORKERS), "--log-level", "error"]);
	});
	after(async () => {
		for (const c of clients) c.close(0, "");
		await relay?.stop();
		rmSync(dir, { recursive: true, force: true });
	});

	test("a fresh relay: valid exposition, per-worker process figures, empty histograms", async () => {
		const { samples, types } = await scrape(relay);
		assert.equal(types.get(LATENCY), "histogram");
		assert.equal(types.get(RELAY_LATENCY), "histogram");
		assert.equal(sampleValue(samples, "moq_fanout_workers", {}), WORKERS);
		assert.ok(sampleValue(samples, "moq_fanout_process_resident_memory_bytes", {}) > 0);
		// The C allocator's figures (native addon + glibc, both on every machine this runs on).
		assert.ok(sampleValue(samples, "moq_fanout_native_heap_in_use_bytes", {}) > 0);
		assert.ok(sampleValue(samples, "moq_fanout_native_heap_free_bytes", {}) >= 0);
		assert.equal(types.get("moq_fanout_malloc_trims_total"), "counter");
		for (let w = 0; w < WORKERS; w++) {
			const worker = String(w);
			assert.ok(sampleValue(samples, "moq_fanout_worker_cpu_seconds_total", { worker, mode: "user" }) > 0);
			assert.ok(sampleValue(samples, "moq_fanout_worker_heap_used_bytes", { worker }) > 0);
			for (const q of ["p50", "p99", "max"]) {
				const v = sampleValue(samples, `moq_fanout_worker_event_loop_delay_${q}_seconds`, { worker });
				assert.ok(v >= 0 && v < 1, `worker ${w} event-loop delay ${q} = ${v}`);
			}
			assert.ok(sampleValue(samples, `${LATENCY}_count`, { worker }) >= 0);
		}
		// Relay-wide families carry no worker label; per-worker ones only worker="N" series.
		for (const s of samples) {
			const relayWide = /^moq_fanout_(relay_|process_|native_heap_|workers$|build_info$)/.test(s.family);
			assert.equal("worker" in s.labels, !relayWide, `${s.name}${JSON.stringify(s.labels)}`);
		}
	});

	test("one broadcast counts once relay-wide; the latency histogram grows with frames delivered", async () => {
		const pub = await client(relay, "/anon");
		clients.push(pub);
		const viewer = await client(relay, "/anon");
		clients.push(viewer);
		const watch = viewer.announced("");
		const track = pub.publish("metrics-bcast").track("video");
		await until(() => watch.active.has("metrics-bcast"), 5000, "the announcement");

		let received = 0;
		let started = false;
		viewer.subscribe("metrics-bcast", "video", {}, { onFrame: () => received++, onGroup: () => (started = true) });
		const payload = new Uint8Array(1200);
		const burst = async (groups: number) => {
			for (let i = 0; i < groups; i++) {
				const g = track.openGroup();
				for (let f = 0; f < 5; f++) g.writeFrame(payload);
				g.close();
				await sleep(20);
			}
		};
		// Until the subscription is live, then a counted burst.
		while (!started) await burst(1);
		const relayCount = (e: Exposition) => sampleValue(e.samples, `${RELAY_LATENCY}_count`, {});

		await burst(20);
		const firstSeen = received;
		// Per-worker gauges are copied to shared memory once a second: wait for both workers' copies too.
		let e = await scrapeUntil(
			relay,
			"the frames delivered so far, and every worker's broadcast gauge",
			(x) => relayCount(x) >= firstSeen && sampleSum(x.samples, "moq_fanout_broadcasts") === WORKERS,
		);
		const { samples } = e;
		assert.equal(sampleSum(samples, "moq_fanout_broadcasts"), WORKERS, "every worker replicates the broadcast");
		assert.equal(sampleValue(samples, "moq_fanout_relay_broadcasts", {}), 1, "counted once relay-wide");
		assert.equal(sampleSum(samples, "moq_fanout_published_broadcasts"), 1);
		// The merged histogram is the sum of the workers'.
		assert.equal(relayCount(e), sampleSum(samples, `${LATENCY}_count`));
		const count1 = relayCount(e);

		await burst(20);
		const secondSeen = received;
		assert.ok(secondSeen >= firstSeen + 100, `the viewer received the second burst (${firstSeen} → ${secondSeen})`);
		e = await scrapeUntil(relay, "the second burst", (x) => relayCount(x) >= count1 + (secondSeen - firstSeen));
		const count2 = relayCount(e);
		assert.ok(count2 >= secondSeen, `histogram count ${count2} covers the ${secondSeen} frames the viewer got`);
		// Plausible on loopback: every sample under a second, a mean well under 100 ms.
		const under1s = sampleValue(e.samples, `${RELAY_LATENCY}_bucket`, { le: "1" });
		assert.equal(under1s, count2, "every frame was fanned out in under 1 s");
		const sum = sampleValue(e.samples, `${RELAY_LATENCY}_sum`, {});
		assert.ok(sum > 0 && sum / count2 < 0.1, `mean fan-out latency ${((sum / count2) * 1e3).toFixed(3)} ms`);
		console.log(
			`fan-out latency over ${count2} frames: mean ${((sum / count2) * 1e6).toFixed(0)} µs, ` +
				`≤ 1 ms: ${sampleValue(e.samples, `${RELAY_LATENCY}_bucket`, { le: "0.001" })}`,
		);
	});

	test("a refused session is counted under its close reason", async () => {
		const before = sampleSum((await scrape(relay)).samples, "moq_fanout_session_closes_total", {
			reason: "unauthorized",
		});
		// No token for a path that is not public: the relay closes the session with UNAUTHORIZED.
		const c = await client(relay, "/private-room");
		await until(() => c.closed, 5000, "the refused session to close");
		const e = await scrapeUntil(
			relay,
			"the unauthorized close",
			(x) => sampleSum(x.samples, "moq_fanout_session_closes_total", { reason: "unauthorized" }) >= before + 1,
		);
		assert.ok(sampleSum(e.samples, "moq_fanout_refusals_total", { reason: "auth" }) >= 1);
		const reasons = new Set(
			e.samples.filter((s) => s.name === "moq_fanout_session_closes_total").map((s) => s.labels.reason),
		);
		assert.deepEqual(
			[...reasons].sort(),
			["fault", "limit", "normal", "other", "protocol", "timeout", "unauthorized"],
			"a fixed set of reasons",
		);
	});
});
