/**
 * The bounded attack test of the hardening issue (≤ 60 s): against the real relay process with 2
 * workers, a fake-Initial flood, garbage streams and slowloris run at once (one attacker process,
 * test/fixtures/attacker.ts) while 20 real viewers (test/fixtures/quic-viewers.ts) watch a live
 * broadcast. It must hold that: no worker dies; the viewers lose no group; a new client connects
 * within 2 s during the attack; the relay's RSS after the attack is within 1.25× of before; the
 * slowloris sockets are cut by the header timeout.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { MoqClient } from "../src/client/index.ts";
import { connectQuic } from "../src/quic/client.ts";
import { frameBytes } from "./support/frames.ts";
import { metricSum, type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import "./support/quiet.ts";
import { type JsonChild, spawnJson } from "./support/child.ts";
import { until } from "./support/wait.ts";

const VIEWERS = 20;
const FRAMES_PER_GROUP = 3;
const ATTACK_SECONDS = 15;
/** ≈ the reported flood (100 k Initials in 15 s), scaled to leave the 2 shared cores to the relay. */
const FLOOD_PPS = 5000;
const SLOWLORIS = 200;

interface ViewerReport {
	id: number;
	incomplete: number[];
	short: number[];
	complete: number[];
	bad: number;
	reconnects: number;
}

function rssKiB(pid: number): number {
	const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
	return m ? Number(m[1]) : Number.NaN;
}

describe("attack: flood + garbage streams + slowloris while viewers watch", { timeout: 90_000 }, () => {
	let dir: string;
	let relay: RelayProcess;

	before(async () => {
		dir = mkdtempSync(join(tmpdir(), "moq-attack-"));
		const config = join(dir, "relay.toml");
		// A short header timeout so the slowloris sockets are cut inside the test's window.
		writeFileSync(
			config,
			`[server.tls]\ngenerate = ["localhost", "127.0.0.1"]\n[auth]\npublic = "anon"\n[log]\nlevel = "warn"\n[limits]\nhttp_header_timeout = "3s"\n`,
		);
		relay = await startRelayProcess([config, "--workers", "2"]);
	});
	after(async () => {
		await relay?.stop();
		rmSync(dir, { recursive: true, force: true });
	});

	test("no worker dies, no viewer loses a group, a new client connects within 2 s, memory comes back", async () => {
		const fingerprint = await (await fetch(`${relay.base}/certificate.sha256`)).text();
		const dial = async () => {
			const quic = await connectQuic({
				host: "127.0.0.1",
				port: relay.port,
				alpns: ["moq-lite-05"],
				certificateHashes: [fingerprint],
			});
			return MoqClient.connect(quic, { path: "/anon" });
		};
		const pub = await dial();
		const track = pub.publish("live").track("video");
		let published = 0;
		let ticker = setInterval(() => {
			const seq = track.nextSequence;
			track.writeGroup(Array.from({ length: FRAMES_PER_GROUP }, (_, f) => frameBytes(seq, f)));
			published = seq + 1;
		}, 100);

		const viewers = spawnJson<{ viewers: ViewerReport[] }>([
			"test/fixtures/quic-viewers.ts",
			"127.0.0.1",
			String(relay.port),
			String(VIEWERS),
			"live",
			"video",
			String(FRAMES_PER_GROUP),
		]);
		let m = await relay.metrics();
		const refresh = setInterval(async () => {
			m = await relay.metrics().catch(() => m);
		}, 250);
		let attacker: JsonChild<Record<string, number>> | null = null;
		try {
			await until(() => metricSum(m, "moq_fanout_subscriptions") >= VIEWERS, 30_000, "every viewer subscribed");
			// Settle, then take the baseline.
			await new Promise((r) => setTimeout(r, 2000));
			const rssBefore = rssKiB(relay.child.pid!);
			const start = published + 1;

			attacker = spawnJson<Record<string, number>>([
				"test/fixtures/attacker.ts",
				"127.0.0.1",
				String(relay.port),
				String(ATTACK_SECONDS),
				String(FLOOD_PPS),
				String(SLOWLORIS),
			]);
			// Mid-attack: a new, well-behaved client connects (handshake + SETUP) within 2 s.
			await new Promise((r) => setTimeout(r, 7000));
			const t0 = performance.now();
			const fresh = await dial();
			const connectMs = performance.now() - t0;
			fresh.close(0, "");
			attacker.expectExit();
			const attack = await attacker.result;
			attacker = null;

			const last = published - 1;
			// Let the relay settle and the allocator give memory back, then stop publishing.
			await new Promise((r) => setTimeout(r, 4000));
			clearInterval(ticker);
			ticker = setInterval(() => {}, 1000);
			const rssAfter = rssKiB(relay.child.pid!);
			viewers.child.kill("SIGTERM");
			const reports = (await viewers.result).viewers;
			m = await relay.metrics();
			const summary = {
				attack,
				connectMs: Math.round(connectMs),
				rssBeforeMiB: Math.round(rssBefore / 1024),
				rssAfterMiB: Math.round(rssAfter / 1024),
				refusals: metricSum(m, "moq_fanout_refusals_total"),
				headerTimeouts: metricSum(m, "moq_fanout_refusals_total", 'reason="header_timeout"'),
				groups: [start, last],
			};
			console.error(`attack summary: ${JSON.stringify(summary)}`);

			assert.equal(relay.child.exitCode, null, "the relay process is up");
			assert.equal(metricSum(m, "moq_fanout_worker_restarts_total"), 0, "no worker died");
			assert.ok(attack.initials >= FLOOD_PPS * ATTACK_SECONDS * 0.5, `the flood ran (${attack.initials} Initials)`);
			assert.ok(attack.garbageStreams > 100, `garbage streams were sent (${attack.garbageStreams})`);
			assert.ok(connectMs < 2000, `a new client connected in ${Math.round(connectMs)} ms during the attack`);
			assert.equal(reports.length, VIEWERS);
			assert.equal(
				reports.reduce((n, r) => n + r.bad, 0),
				0,
				"no corrupted frame",
			);
			for (const r of reports) {
				const have = new Set(r.complete);
				const missing: number[] = [];
				for (let seq = start; seq <= last; seq++) if (!have.has(seq)) missing.push(seq);
				assert.deepEqual(
					missing,
					[],
					`viewer ${r.id} lost groups (reconnects: ${r.reconnects - 1}, reset: ${r.incomplete.filter((s) => s >= start && s <= last)}, short: ${r.short.filter((s) => s >= start && s <= last)})`,
				);
			}
			assert.ok(
				attack.slowClosedByRelay >= SLOWLORIS * 0.9,
				`slowloris sockets cut by the header timeout: ${attack.slowClosedByRelay} of ${SLOWLORIS}`,
			);
			assert.ok(rssAfter <= rssBefore * 1.25, `RSS ${summary.rssBeforeMiB} MiB → ${summary.rssAfterMiB} MiB`);
		} finally {
			clearInterval(refresh);
			clearInterval(ticker);
			attacker?.child.kill("SIGKILL");
			viewers.child.kill("SIGKILL");
			pub.close(0, "");
		}
	});
});
