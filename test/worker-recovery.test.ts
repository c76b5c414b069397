/**
 * The real binary's behaviour when things go wrong underneath viewers: workers crashing over and
 * over (the port must keep answering, threads and mapped memory must stay bounded), a viewer whose
 * publisher's worker dies (its subscription must end, not stall), and a viewer too slow for its
 * track (every group it loses must be counted in groups_dropped_total).
 *
 * Crashes go through the relay's test hook: with MOQ_FANOUT_DEBUG=1, "crash N" on the relay's
 * stdin makes worker N throw (nothing on the network can trigger it).
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { MoqClient } from "../src/client/index.ts";
import { connectQuic } from "../src/quic/client.ts";
import { metricSum, type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import "./support/quiet.ts";
import { sleep, until } from "./support/wait.ts";

function threadCount(pid: number): number {
	return readdirSync(`/proc/${pid}/task`).length;
}

/** Distinct quiche addon instances mapped into the process (one per loaded copy). */
function quicheInstances(pid: number): number {
	const files = new Set<string>();
	for (const line of readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")) {
		const m = /(\S*moq-fanout-quiche-\S*)/.exec(line);
		if (m) files.add(m[1]);
	}
	return files.size;
}

async function crash(relay: RelayProcess, worker: number): Promise<void> {
	relay.child.stdin!.write(`crash ${worker}\n`);
}

/** /metrics, retried: a request can land on a worker in the middle of crashing. */
async function metrics(relay: RelayProcess): Promise<Map<string, number>> {
	const deadline = Date.now() + 30_000;
	for (;;) {
		try {
			return await relay.metrics();
		} catch (e) {
			if (Date.now() > deadline) throw e;
			await sleep(100);
		}
	}
}

async function restarts(relay: RelayProcess): Promise<number> {
	return metricSum(await metrics(relay), "moq_fanout_worker_restarts_total");
}

async function sessionsPerWorker(relay: RelayProcess, workers: number): Promise<number[]> {
	const m = await metrics(relay);
	return Array.from({ length: workers }, (_, w) => metricSum(m, "moq_fanout_sessions", `worker="${w}"`));
}

async function quicClient(relay: RelayProcess, port = relay.port): Promise<MoqClient> {
	const fingerprint = await (await fetch(`${relay.base}/certificate.sha256`)).text();
	const quic = await connectQuic({
		host: "127.0.0.1",
		port,
		alpns: ["moq-lite-05"],
		certificateHashes: [fingerprint],
		timeoutMs: 5000,
	});
	return MoqClient.connect(quic, { path: "/anon" });
}

/**
 * Connects a QUIC session and finds the worker it landed on (from the per-worker session gauge,
 * which workers publish once a second). SO_REUSEPORT picks the worker by the client's port.
 */
async function connectAndLocate(relay: RelayProcess, workers: number): Promise<{ client: MoqClient; worker: number }> {
	const before = await sessionsPerWorker(relay, workers);
	const client = await quicClient(relay);
	const deadline = Date.now() + 5000;
	while (Date.now() < deadline) {
		await sleep(100);
		const now = await sessionsPerWorker(relay, workers);
		const worker = now.findIndex((n, w) => n > before[w]);
		if (worker >= 0) return { client, worker };
	}
	throw new Error("the new session did not show up in any worker's figures");
}

describe("worker supervision (real process)", { timeout: 180_000 }, () => {
	test("20 crashes: the port never stays down, threads and addon copies stay bounded", async () => {
		const WORKERS = 2;
		const CRASHES = 20;
		const relay = await startRelayProcess(["--workers", String(WORKERS), "--log-level", "error"], {
			MOQ_FANOUT_DEBUG: "1",
		});
		try {
			const pid = relay.child.pid!;
			await sleep(500);
			const threadsBefore = threadCount(pid);
			const instancesBefore = quicheInstances(pid);
			// Poll /health on fresh connections: each lands on whichever worker's listener is up, so
			// it gets no answer only while every worker is down (it answers 503 while one is).
			let stop = false;
			let downSince = 0;
			let longestDown = 0;
			const poller = (async () => {
				while (!stop) {
					const ok = await fetch(`${relay.base}/health`, { signal: AbortSignal.timeout(500) }).then(
						(r) => r.status === 200 || r.status === 503,
						() => false,
					);
					const now = performance.now();
					if (ok) downSince = 0;
					else {
						downSince ||= now;
						longestDown = Math.max(longestDown, now - downSince);
					}
					await sleep(25);
				}
			})();
			// Alternate victims every second: each one's crash streak (and so its backoff) keeps growing.
			for (let i = 0; i < CRASHES; i++) {
				await crash(relay, i % WORKERS);
				await sleep(1000);
			}
			// Let every slot come back, then measure.
			const deadline = Date.now() + 60_000;
			for (;;) {
				const h = await fetch(`${relay.base}/metrics`).then(
					(r) => r.text(),
					() => "",
				);
				const workersUp = /moq_fanout_workers (\d+)/.exec(h);
				const up = (await Promise.all(Array.from({ length: 8 }, () => freshHealth(relay)))).filter((w) => w >= 0);
				if (workersUp && new Set(up).size === WORKERS) break;
				if (Date.now() > deadline) throw new Error("workers did not all come back");
				await sleep(200);
			}
			await sleep(500);
			stop = true;
			await poller;
			const threadsAfter = threadCount(pid);
			const instancesAfter = quicheInstances(pid);
			const restarted = await restarts(relay);
			if (process.env.MOQ_TEST_TRACE)
				console.error(
					JSON.stringify({ threadsBefore, threadsAfter, instancesBefore, instancesAfter, longestDown, restarted }),
				);
			assert.ok(restarted >= CRASHES / 2, `workers were restarted (${restarted})`);
			assert.ok(longestDown < 3000, `every worker down at once for ${longestDown.toFixed(0)} ms`);
			assert.ok(
				threadsAfter <= threadsBefore + 4,
				`threads after ${restarted} restarts: ${threadsAfter} (started with ${threadsBefore})`,
			);
			assert.ok(
				instancesAfter <= WORKERS,
				`quiche instances mapped after ${restarted} restarts: ${instancesAfter} (started with ${instancesBefore})`,
			);
			// The replacements still speak QUIC on the reused addon instances.
			for (let i = 0; i < 4; i++) {
				const c = await quicClient(relay);
				c.close();
			}
			assert.equal(relay.child.exitCode, null, "the relay process stays up");
		} finally {
			await relay.stop();
		}
	});

	test("a viewer whose publisher's worker dies has its subscription ended within 2 s", async () => {
		const WORKERS = 2;
		const relay = await startRelayProcess(["--workers", String(WORKERS), "--log-level", "error"], {
			MOQ_FANOUT_DEBUG: "1",
		});
		const clients: MoqClient[] = [];
		let ticker: ReturnType<typeof setInterval> | undefined;
		try {
			// Give both workers a crash streak first: the next crash of either is followed by a
			// restart backoff of seconds (6.4 s), the window in which a viewer used to hear nothing.
			for (let round = 0; round < 6; round++) {
				const n = await restarts(relay);
				for (let w = 0; w < WORKERS; w++) await crash(relay, w);
				const deadline = Date.now() + 30_000;
				while ((await restarts(relay)) < n + WORKERS || (await freshHealthAll(relay, WORKERS)) < WORKERS) {
					if (Date.now() > deadline) throw new Error(`round ${round}: the workers did not come back`);
					await sleep(100);
				}
			}
			const pub = await connectAndLocate(relay, WORKERS);
			clients.push(pub.client);
			const broadcast = pub.client.publish("bbb");
			const track = broadcast.track("video");
			const payload = new Uint8Array(200);
			ticker = setInterval(() => {
				const g = track.openGroup();
				for (let f = 0; f < 3; f++) g.writeFrame(payload);
				g.close();
			}, 50);
			let viewer: { client: MoqClient; worker: number } | null = null;
			for (let i = 0; i < 20 && !viewer; i++) {
				const v = await connectAndLocate(relay, WORKERS);
				clients.push(v.client);
				if (v.worker !== pub.worker) viewer = v;
			}
			assert.ok(viewer, "a viewer session on another worker than the publisher's");
			let lastGroupAt = 0;
			let endCode: number | null = null;
			let endedAt = 0;
			let withdrawnAt = 0;
			const announced = viewer.client.announced("");
			announced.onAnnounce = (path, active) => {
				if (path === "bbb" && !active) withdrawnAt = performance.now();
			};
			viewer.client.subscribe(
				"bbb",
				"video",
				{},
				{
					onGroup: () => {
						lastGroupAt = performance.now();
					},
					onEnd: (code) => {
						endCode = code;
						endedAt = performance.now();
					},
				},
			);
			await until(() => lastGroupAt > 0, 5000, "groups reaching the viewer across workers");
			const t0 = performance.now();
			await crash(relay, pub.worker);
			await until(() => endedAt > 0, 4000, "the viewer's subscription to end").catch(() => {});
			assert.ok(endedAt > 0, "the viewer was told its subscription ended");
			const ms = endedAt - t0;
			assert.ok(ms < 2000, `ended ${ms.toFixed(0)} ms after the publisher's worker died`);
			assert.equal(endCode, 24, "reset with DROPPED (24): the upstream is gone");
			await until(() => withdrawnAt > 0, 2000, "the announcement to be withdrawn");
			assert.ok(withdrawnAt - t0 < 2000);
			assert.equal(viewer.client.closed, false, "the viewer's own session is untouched");
		} finally {
			clearInterval(ticker);
			for (const c of clients) c.close();
			await relay.stop();
		}
	});
});

/** GET /health on a fresh connection: the answering worker's index, or -1. */
async function freshHealth(relay: RelayProcess): Promise<number> {
	try {
		const r = await fetch(`${relay.base}/health`, {
			signal: AbortSignal.timeout(1000),
			headers: { connection: "close" },
		});
		return ((await r.json()) as { worker: number }).worker;
	} catch {
		return -1;
	}
}

/** How many distinct workers answer /health (up to `workers`), from a handful of fresh connections. */
async function freshHealthAll(relay: RelayProcess, workers: number): Promise<number> {
	const seen = new Set<number>();
	for (let i = 0; i < 12 && seen.size < workers; i++) {
		const w = await freshHealth(relay);
		if (w >= 0) seen.add(w);
	}
	return seen.size;
}

/** A UDP relay between a client and the relay's port that can stop forwarding (a viewer whose network stalls). */
async function udpProxy(target: number): Promise<{ port: number; paused: boolean; close(): void }> {
	const front = dgram.createSocket("udp4");
	const back = dgram.createSocket("udp4");
	await new Promise<void>((r) => front.bind(0, "127.0.0.1", () => r()));
	await new Promise<void>((r) => back.bind(0, "127.0.0.1", () => r()));
	let client: { port: number; address: string } | null = null;
	const proxy = {
		port: front.address().port,
		paused: false,
		close() {
			front.close();
			back.close();
		},
	};
	front.on("message", (msg, rinfo) => {
		client = rinfo;
		if (!proxy.paused) back.send(msg, target, "127.0.0.1");
	});
	back.on("message", (msg) => {
		if (!proxy.paused && client) front.send(msg, client.port, client.address);
	});
	return proxy;
}

describe("drop accounting (real process)", { timeout: 60_000 }, () => {
	test("every group a stalled viewer skips is counted in groups_dropped_total", async () => {
		const dir = await mkdtemp(join(tmpdir(), "moq-drops-"));
		const config = join(dir, "relay.toml");
		// A small ring, so a viewer that stops taking data is lapped within a second.
		await writeFile(
			config,
			`[server.tls]\ngenerate = ["localhost", "127.0.0.1"]\n[auth]\npublic = "anon"\n[workers]\ncount = 1\n[cache]\ntrack_bytes = "256KiB"\n[limits]\nmax_frame_bytes = "64KiB"\n`,
		);
		const relay = await startRelayProcess(["--config", config, "--log-level", "error"]);
		const proxy = await udpProxy(relay.port);
		let ticker: ReturnType<typeof setInterval> | undefined;
		const clients: MoqClient[] = [];
		try {
			const publisher = await quicClient(relay);
			clients.push(publisher);
			const track = publisher.publish("fast").track("video");
			const frame = new Uint8Array(4000);
			let published = -1;
			ticker = setInterval(() => {
				const g = track.openGroup();
				for (let f = 0; f < 5; f++) g.writeFrame(frame);
				g.close();
				published = g.seq;
			}, 20);
			// The viewer grants few group streams at a time, so when its network stalls the relay runs
			// out of streams to open, waits at a group, and the writer laps it.
			const fingerprint = await (await fetch(`${relay.base}/certificate.sha256`)).text();
			const quic = await connectQuic({
				host: "127.0.0.1",
				port: proxy.port,
				alpns: ["moq-lite-05"],
				certificateHashes: [fingerprint],
				timeoutMs: 5000,
				limits: { maxStreamsUni: 8 },
			});
			const viewer = await MoqClient.connect(quic, { path: "/anon" });
			clients.push(viewer);
			const sub = viewer.subscribe("fast", "video");
			await until(() => sub.groupsComplete > 10, 5000, "the viewer receiving groups");
			const droppedBefore = metricSum(await metrics(relay), "moq_fanout_groups_dropped_total");
			const first = sub.startGroup ?? 0;
			proxy.paused = true;
			await sleep(3000);
			proxy.paused = false;
			await sleep(3000);
			clearInterval(ticker);
			const last = published;
			// Let the viewer finish what is in flight, and the worker publish its counters (1/s).
			await sleep(2500);
			const dropped = metricSum(await metrics(relay), "moq_fanout_groups_dropped_total") - droppedBefore;
			const offered = last - first + 1;
			const missed = offered - sub.groupsComplete;
			if (process.env.MOQ_TEST_TRACE)
				console.error(
					JSON.stringify({ offered, complete: sub.groupsComplete, incomplete: sub.groupsIncomplete, missed, dropped }),
				);
			assert.ok(missed >= 30, `the stalled viewer missed groups (${missed} of ${offered})`);
			assert.ok(
				dropped >= missed - 3,
				`groups_dropped_total rose by ${dropped}, the viewer missed ${missed} of ${offered} groups`,
			);
			assert.ok(dropped <= missed + 3, `no group counted twice (${dropped} counted, ${missed} missed)`);
		} finally {
			clearInterval(ticker);
			for (const c of clients) c.close();
			proxy.close();
			await relay.stop();
			await rm(dir, { recursive: true, force: true });
		}
	});
});
