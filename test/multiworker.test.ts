import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as Net from "@moq/net";
import { frameBytes } from "./support/frames.ts";
import { metricSum, type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import "./support/quiet.ts";
import { spawnJson } from "./support/child.ts";
import { until } from "./support/wait.ts";

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

type Report = { viewers: ViewerReport[] };

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
		const ticker = setInterval(publishGroup, 100);

		const fpg = String(FRAMES_PER_GROUP);
		const viewers = [
			...Array.from({ length: WS_PROCESSES }, () =>
				spawnJson<Report>(["test/fixtures/ws-viewers.ts", url, String(WS_PER_PROCESS), "bbb", "video", fpg]),
			),
			...Array.from({ length: QUIC_PROCESSES }, () =>
				spawnJson<Report>([
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
		// A viewer process or the relay that dies fails the test at once, saying which and why.
		const relayDied = new Promise<never>((_, reject) =>
			relay.child.once("exit", (code, signal) =>
				reject(new Error(`the relay process exited (${code ?? signal}): ${relay.stderr.join("").slice(-2000)}`)),
			),
		);
		relayDied.catch(() => {});
		const alive = <T>(p: Promise<T>): Promise<T> => Promise.race([p, relayDied, ...viewers.map((v) => v.died)]);
		/** Every viewer (from the processes' heartbeats) has completed a group at or after `seq`. */
		const everyViewerAt = (seq: number): boolean => {
			const newest = viewers.flatMap((v) => (v.heartbeat()?.newest as number[] | undefined) ?? []);
			return newest.length === total && newest.every((n) => n >= seq);
		};
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
			await alive(
				until(() => metricSum(m, "moq_fanout_subscriptions") >= total, 60_000, "all viewers subscribed"),
			).finally(() => clearInterval(progress));
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

			// 20 s under load (200 groups), with one worker (not the publisher's) killed after 8 s.
			const victim = (pubWorker! + 1) % WORKERS;
			await alive(
				until(
					() => published >= start + 80 && everyViewerAt(start),
					30_000,
					"80 groups published and every viewer receiving them",
				),
			);
			relay.child.stdin!.write(`crash ${victim}\n`);
			await alive(
				until(() => metricSum(m, "moq_fanout_worker_restarts_total") >= 1, 10_000, "the worker to be replaced"),
			);
			const restartedAt = published;
			await alive(
				until(
					() => published >= restartedAt + 120 && everyViewerAt(restartedAt + 10),
					40_000,
					"120 more groups published, and every viewer (the moved ones reconnected) receiving them",
				),
			);
			clearInterval(ticker);
			const last = published - 1;
			// The last groups in flight arrive (viewers that lost one are reported by the assertions below).
			await alive(until(() => everyViewerAt(last), 5000, `every viewer to complete group ${last}`)).catch((err) => {
				if (!(err instanceof Error && err.message.startsWith("timed out"))) throw err;
			});

			const reports = (await Promise.all(viewers.map((v) => v.stop()))).flatMap((r) => r.viewers);
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
			for (const v of viewers) v.child.kill("SIGKILL");
			pub.close();
		}
	});
});
