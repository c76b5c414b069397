import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import * as Net from "@moq/net";
import { frameBytes } from "./fixtures/frames.ts";
import { metricSum, type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import { until } from "./support/relay.ts";

/**
 * The real binary with 3 worker threads on one SO_REUSEPORT port, loaded by 100+ viewer sessions
 * from separate client processes for 20 s. Publisher and viewers land on different workers, so
 * every frame crosses threads through the SharedArrayBuffer rings. Then one worker is killed
 * mid-stream: the others' viewers lose nothing, its viewers reconnect and resume, the process lives.
 */

const WORKERS = 3;
const FRAMES_PER_GROUP = 5;
const WS_PROCESSES = 3;
const WS_PER_PROCESS = 20;
const QUIC_PROCESSES = 2;
const QUIC_PER_PROCESS = 25;

interface ViewerReport {
	id: number;
	complete: number[];
	bad: number;
	reconnects: number;
}

function spawnViewers(args: string[]): { child: ChildProcess; result: Promise<ViewerReport[]> } {
	const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "pipe"] });
	let out = "";
	let err = "";
	child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
	child.stderr!.setEncoding("utf8").on("data", (d: string) => (err = (err + d).slice(-4000)));
	const result = new Promise<ViewerReport[]>((resolve) => {
		child.once("exit", (code, signal) => {
			try {
				resolve((JSON.parse(out.trim().split("\n").pop()!) as { viewers: ViewerReport[] }).viewers);
			} catch {
				throw new Error(`viewer process exited (${code ?? signal}) without a report: ${err}`);
			}
		});
	});
	result.catch(() => {});
	return { child, result };
}

describe("multi-core relay", { timeout: 120_000 }, () => {
	let relay: RelayProcess;
	before(async () => {
		relay = await startRelayProcess(["--workers", String(WORKERS), "--log-level", "warn"], { MOQ_FANOUT_DEBUG: "1" });
	});
	after(async () => {
		await relay?.stop();
	});

	it("fans out across 3 workers under load, and survives a worker being killed", async () => {
		const url = `${relay.base}/anon`;
		const pub = await Net.Connection.connect(new URL(url), { websocket: { delay: 0 } });
		const broadcast = new Net.Broadcast.Producer();
		const video = broadcast.createTrack("video");
		pub.publish(Net.Path.from("bbb"), broadcast);
		let published = 0;
		const publishGroup = () => {
			const g = video.appendGroup();
			for (let f = 0; f < FRAMES_PER_GROUP; f++)
				g.writeFrame({ payload: frameBytes(g.sequence, f), timestamp: Net.Time.Timestamp.now() });
			g.close();
			published = g.sequence + 1;
		};
		let ticker = setInterval(publishGroup, 100);

		const fpg = String(FRAMES_PER_GROUP);
		const viewers = [
			...Array.from({ length: WS_PROCESSES }, () =>
				spawnViewers(["test/fixtures/ws-viewers.ts", url, String(WS_PER_PROCESS), "bbb", "video", fpg]),
			),
			...Array.from({ length: QUIC_PROCESSES }, () =>
				spawnViewers([
					"test/fixtures/quic-viewers.ts",
					"127.0.0.1",
					String(relay.port),
					String(QUIC_PER_PROCESS),
					"bbb",
					"video",
					fpg,
				]),
			),
		];
		const total = WS_PROCESSES * WS_PER_PROCESS + QUIC_PROCESSES * QUIC_PER_PROCESS;
		let m = await relay.metrics();
		// until() polls a snapshot: keep it fresh.
		const refresh = setInterval(async () => {
			m = await relay.metrics().catch(() => m);
		}, 250);
		try {
			const progress = setInterval(
				() =>
					process.env.MOQ_TEST_TRACE &&
					console.error(
						"subs",
						metricSum(m, "moq_fanout_subscriptions"),
						"sessions",
						metricSum(m, "moq_fanout_sessions"),
						total,
					),
				3000,
			);
			await until(() => metricSum(m, "moq_fanout_subscriptions") >= total, 60_000, "all viewers subscribed").finally(
				() => clearInterval(progress),
			);
			m = await relay.metrics();
			const perWorker = Array.from({ length: WORKERS }, (_, w) => metricSum(m, "moq_fanout_sessions", `worker="${w}"`));
			assert.ok(
				perWorker.every((n) => n > 0),
				`sessions spread over every worker: ${perWorker}`,
			);
			const pubWorker = [...Array(WORKERS).keys()].find(
				(w) => metricSum(m, "moq_fanout_frames_received_total", `worker="${w}"`) > 0,
			);
			assert.notEqual(pubWorker, undefined, "the publisher's worker ingests frames");
			const start = published + 1;

			// 20 s under load, with one worker (not the publisher's) killed at 8 s.
			const victim = (pubWorker! + 1) % WORKERS;
			await new Promise((r) => setTimeout(r, 8000));
			relay.child.stdin!.write(`crash ${victim}\n`);
			await until(() => metricSum(m, "moq_fanout_worker_restarts_total") >= 1, 10_000, "the worker to be replaced");
			await new Promise((r) => setTimeout(r, 12_000));
			clearInterval(ticker);
			ticker = setInterval(() => {}, 1000);
			const last = published - 1;
			await new Promise((r) => setTimeout(r, 1500));

			for (const v of viewers) v.child.kill("SIGTERM");
			const reports = (await Promise.all(viewers.map((v) => v.result))).flat();
			assert.equal(reports.length, total);
			const bad = reports.reduce((n, r) => n + r.bad, 0);
			assert.equal(bad, 0, "no corrupted frame");
			const steady = reports.filter((r) => r.reconnects === 0);
			const moved = reports.filter((r) => r.reconnects > 0);
			if (process.env.MOQ_TEST_TRACE)
				console.error(
					JSON.stringify({
						victim,
						pubWorker,
						perWorker,
						start,
						last,
						summary: reports.map((r) => [r.reconnects, r.complete.length, r.complete[0], r.complete.at(-1)]),
					}),
				);
			assert.ok(moved.length > 0, "some viewers were on the killed worker");
			assert.ok(steady.length > 0, "some viewers were not");
			for (const r of steady) {
				const have = new Set(r.complete);
				const missing: number[] = [];
				for (let seq = start; seq <= last; seq++) if (!have.has(seq)) missing.push(seq);
				if (missing.length && process.env.MOQ_TEST_TRACE) {
					const mm = await relay.metrics();
					console.error("dropped", metricSum(mm, "moq_fanout_groups_dropped_total"), JSON.stringify(r).slice(0, 300));
				}
				assert.deepEqual(missing, [], `viewer ${r.id} on a surviving worker lost groups`);
			}
			for (const r of moved)
				assert.ok(
					r.complete.includes(last) || r.complete.includes(last - 1),
					`viewer ${r.id} resumed after reconnecting`,
				);
			assert.equal(relay.child.exitCode, null, "the relay process stays up");
			const restarted = metricSum(await relay.metrics(), "moq_fanout_worker_restarts_total");
			assert.equal(restarted, 1);
		} finally {
			clearInterval(refresh);
			clearInterval(ticker);
			pub.close();
		}
	});
});
