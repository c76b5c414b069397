/**
 * moq-relay's HTTP routes against the real relay process (two workers): `GET /announced[/prefix]`
 * and `GET /fetch/<broadcast>/<track>[?group=N|latest]` scoped by `?jwt=`, and `[internal] listen`
 * serving /metrics and /health while the public /metrics is a 404.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { MoqClient } from "../src/client/index.ts";
import type { PublishedTrack } from "../src/client/publisher.ts";
import { connectQuic } from "../src/quic/client.ts";
import { frameBytes } from "./support/frames.ts";
import { freePort, type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import "./support/quiet.ts";
import { until } from "./support/wait.ts";

const REPO = resolve(import.meta.dirname, "..");
const NODE = join(REPO, "node_modules", ".bin", "node");
const MOQ_TOKEN = join(REPO, "node_modules", ".bin", "moq-token");
const FRAMES = 3;

function moqToken(args: string[]): string {
	return execFileSync(NODE, [MOQ_TOKEN, ...args], { encoding: "utf8" }).trim();
}

/** The bytes /fetch answers for group `seq`: the frames' payloads back to back. */
function groupBody(seq: number): Buffer {
	return Buffer.concat(Array.from({ length: FRAMES }, (_, f) => frameBytes(seq, f, 3000)));
}

function publishGroup(track: PublishedTrack): number {
	const g = track.openGroup();
	for (let f = 0; f < FRAMES; f++) g.writeFrame(frameBytes(g.seq, f, 3000));
	g.close();
	return g.seq;
}

describe("HTTP /announced, /fetch and [internal] listen (moq-relay's web routes)", { timeout: 60_000 }, () => {
	let dir: string;
	let relay: RelayProcess;
	let internal: string;
	const clients: MoqClient[] = [];
	const tokens: Record<string, string> = {};

	async function client(path: string): Promise<MoqClient> {
		const fingerprint = await (await fetch(`${relay.base}/certificate.sha256`)).text();
		const quic = await connectQuic({
			host: "127.0.0.1",
			port: relay.port,
			alpns: ["moq-lite-05"],
			certificateHashes: [fingerprint],
			timeoutMs: 5000,
		});
		const c = await MoqClient.connect(quic, { path });
		clients.push(c);
		return c;
	}

	const get = (path: string) => fetch(`${relay.base}${path}`);
	const text = async (path: string) => {
		const r = await get(path);
		return { status: r.status, body: await r.text(), headers: r.headers };
	};

	before(async () => {
		dir = mkdtempSync(join(tmpdir(), "moq-http-media-"));
		const key = join(dir, "relay.jwk");
		moqToken(["generate", "--key", key, "--algorithm", "HS256", "--id", "relay"]);
		const sign = (...args: string[]) => moqToken(["sign", "--key", key, ...args]);
		tokens.room1 = sign("--root", "rooms/1", "--publish", "", "--subscribe", "");
		tokens.publishOnly = sign("--root", "rooms/1", "--publish", "");
		const internalPort = await freePort();
		internal = `http://127.0.0.1:${internalPort}`;
		const config = join(dir, "relay.toml");
		writeFileSync(
			config,
			`[server.tls]\ngenerate = ["localhost", "127.0.0.1"]\n[auth]\nkey = ${JSON.stringify(key)}\npublic = "anon"\n` +
				`[workers]\ncount = 2\n[internal]\nlisten = "127.0.0.1:${internalPort}"\n`,
		);
		relay = await startRelayProcess([config]);
	});

	after(async () => {
		for (const c of clients) c.close();
		await relay?.stop();
		rmSync(dir, { recursive: true, force: true });
	});

	it("[internal] listen serves /metrics and /health; the public /metrics is a 404", async () => {
		const metrics = await fetch(`${internal}/metrics`);
		assert.equal(metrics.status, 200);
		assert.match(metrics.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
		assert.match(await metrics.text(), /^moq_fanout_/m);
		const health = await fetch(`${internal}/health`);
		assert.equal(health.status, 200);
		assert.equal(((await health.json()) as { status: string }).status, "ok");
		assert.equal((await get("/metrics")).status, 404, "metrics are internal-only");
		assert.equal((await get("/health")).status, 200, "the public /health stays");
		assert.equal((await fetch(`${internal}/announced`)).status, 404, "no media routes on the internal listener");
	});

	it("/announced lists live broadcasts relative to the prefix, within the token's scope", async () => {
		const anon = await client("/anon");
		anon.publish("show").track("video");
		anon.publish("talk/one").track("video");
		const room = await client(`/rooms/1?jwt=${tokens.room1}`);
		room.publish("cam").track("video");
		await until(async () => (await text("/announced/anon")).body.split("\n").length === 2, 10_000, "announced");

		const all = await text("/announced/anon");
		assert.equal(all.status, 200);
		assert.equal(all.headers.get("content-type"), "text/plain; charset=utf-8");
		assert.equal(all.headers.get("access-control-allow-origin"), "*");
		assert.equal(all.body, "show\ntalk/one", "newline-separated, relative to the prefix, no trailing newline");
		assert.deepEqual(await text("/announced/anon/talk"), {
			status: 200,
			body: "one",
			headers: (await get("/announced/anon/talk")).headers,
		});
		assert.equal((await text("/announced/anon/nothing")).body, "");
		// Anonymous access covers anon/ alone: from the root it lists only that (moq-relay: a path that
		// is a parent of a public prefix is anonymous too); other prefixes need a token.
		assert.equal((await text("/announced")).body, "anon/show\nanon/talk/one");
		assert.equal((await text("/announced/rooms/1")).status, 401);
		assert.equal((await text("/announced/rooms/1?jwt=not.a.token")).status, 401);

		// A token rooted at rooms/1 lists only its own broadcasts, wherever it asks from.
		assert.equal((await text(`/announced/rooms/1?jwt=${tokens.room1}`)).body, "cam");
		assert.equal((await text(`/announced/rooms?jwt=${tokens.room1}`)).body, "1/cam");
		assert.equal((await text(`/announced?jwt=${tokens.room1}`)).body, "rooms/1/cam");
		assert.equal((await text(`/announced/rooms/2?jwt=${tokens.room1}`)).status, 403);
		assert.equal((await text(`/announced/rooms/1?jwt=${tokens.publishOnly}`)).status, 403);
	});

	it("/fetch returns the exact frames of a cached group, by number and latest; 404 for what is not there", async () => {
		const pub = await client("/anon");
		const track = pub.publish("fetchme").track("video");
		await until(async () => (await text("/announced/anon")).body.includes("fetchme"), 10_000, "announced");
		// A viewer keeps the track subscribed, so the relay caches its groups.
		const viewer = await client("/anon");
		const ended: number[] = [];
		viewer.subscribe("fetchme", "video", {}, { onGroupEnd: (seq) => ended.push(seq) });
		await until(() => track.subscribers > 0, 10_000, "the relay's upstream subscription");
		const groups = [publishGroup(track), publishGroup(track), publishGroup(track)];
		await until(() => ended.includes(groups[2]), 10_000, "the viewer received the last group");

		for (const seq of groups) {
			const r = await get(`/fetch/anon/fetchme/video?group=${seq}`);
			assert.equal(r.status, 200, `group ${seq}`);
			assert.equal(r.headers.get("content-type"), "application/octet-stream");
			assert.deepEqual(Buffer.from(await r.arrayBuffer()), groupBody(seq), `group ${seq} byte-exact`);
		}
		for (const q of ["?group=latest", ""]) {
			const r = await get(`/fetch/anon/fetchme/video${q}`);
			assert.equal(r.status, 200);
			assert.deepEqual(Buffer.from(await r.arrayBuffer()), groupBody(groups[2]), `latest (${q || "default"})`);
		}

		assert.equal((await text(`/fetch/anon/fetchme/video?group=${groups[2] + 50}`)).status, 404, "not yet published");
		assert.equal((await text("/fetch/anon/nobody/video?group=0")).status, 404, "unknown broadcast");
		assert.equal((await text("/fetch/anon/fetchme/video?group=abc")).status, 400);
		assert.equal((await text("/fetch/anon")).status, 400, "a broadcast and a track are needed");
		assert.equal((await text("/fetch/rooms/1/cam/video?group=0")).status, 401, "no token");
		assert.equal((await text(`/fetch/rooms/2/cam/video?jwt=${tokens.room1}`)).status, 403, "outside the token");
	});

	it("/fetch of a track nobody watches subscribes on demand: latest waits for the next group", async () => {
		const room = await client(`/rooms/1?jwt=${tokens.room1}`);
		const track = room.publish("live").track("audio");
		await until(
			async () => (await text(`/announced/rooms/1?jwt=${tokens.room1}`)).body.includes("live"),
			10_000,
			"announced",
		);
		assert.equal(track.subscribers, 0);
		const pending = get(`/fetch/rooms/1/live/audio?group=latest&jwt=${tokens.room1}`);
		await until(() => track.subscribers > 0, 10_000, "the on-demand upstream subscription");
		const seq = publishGroup(track);
		const r = await pending;
		assert.equal(r.status, 200);
		assert.deepEqual(Buffer.from(await r.arrayBuffer()), groupBody(seq));
		await until(() => track.subscribers === 0, 10_000, "the subscription ends with the fetch");
	});
});
