/**
 * Regression tests for the hardening issue, against the real relay process (`src/bin/moq-fanout.ts`
 * with its worker pool), each named after the attack it replays:
 * - 8 bytes of 0xff as a stream type on a raw QUIC connection without SETUP killed a worker;
 * - random bytes on 1,024 streams killed one about one time in four;
 * - a token in the lite-05 SETUP path was logged in full; with two `jwt=` the first won;
 * - `[limits] max_sessions` held per worker (3 let 6 in with 2 workers);
 * - nothing bounded the broadcasts one session may publish.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { MoqClient } from "../src/client/index.ts";
import { connectQuic } from "../src/quic/client.ts";
import type { QuicConnection } from "../src/quic/connection.ts";
import { prng } from "./support/prng.ts";
import { metricSum, type RelayProcess, startRelayProcess } from "./support/process-relay.ts";

const REPO = resolve(import.meta.dirname, "..");
const NODE = join(REPO, "node_modules", ".bin", "node");
const MOQ_TOKEN = join(REPO, "node_modules", ".bin", "moq-token");
const PROTOCOL_VIOLATION = 15;

function moqToken(args: string[]): string {
	return execFileSync(NODE, [MOQ_TOKEN, ...args], { encoding: "utf8" }).trim();
}

function rawQuic(relay: RelayProcess): Promise<QuicConnection> {
	return connectQuic({ host: "127.0.0.1", port: relay.port, alpns: ["moq-lite-05"], insecure: true });
}

/** Resolves with the close code the relay sent (or null after `ms`). */
function closeCode(conn: QuicConnection, ms = 5000): Promise<number | null> {
	return new Promise((resolve) => {
		const timer = setTimeout(() => resolve(null), ms);
		conn.onClose = (code) => {
			clearTimeout(timer);
			resolve(code);
		};
	});
}

async function client(relay: RelayProcess, path: string): Promise<MoqClient> {
	return MoqClient.connect(await rawQuic(relay), { path });
}

/** A fresh client publishes a broadcast and another receives a frame of it: the relay still serves. */
async function stillServes(relay: RelayProcess, name: string): Promise<void> {
	const pub = await client(relay, "/anon");
	const viewer = await client(relay, "/anon");
	try {
		const watch = viewer.announced("");
		const track = pub.publish(name).track("v");
		const deadline = Date.now() + 5000;
		while (!watch.active.has(name)) {
			if (Date.now() > deadline) throw new Error(`${name} was never announced`);
			await new Promise((r) => setTimeout(r, 20));
		}
		const got = new Promise<number>((resolve) => {
			viewer.subscribe(name, "v", {}, { onFrame: (_s, _i, p) => resolve(p[0]) });
		});
		// The viewer may subscribe before or after the announcement reaches its worker: keep writing.
		let n = 0;
		const timer = setInterval(() => track.writeGroup([new Uint8Array([++n])]), 50);
		try {
			const first = await Promise.race([
				got,
				new Promise<number>((_, rej) => setTimeout(() => rej(new Error("no frame in 5 s")), 5000)),
			]);
			assert.ok(first > 0);
		} finally {
			clearInterval(timer);
		}
	} finally {
		pub.close(0, "");
		viewer.close(0, "");
	}
}

/** Polls /metrics (published once a second per worker) until `check` holds, or fails after 4 s. */
async function metricsUntil(
	relay: RelayProcess,
	check: (m: Map<string, number>) => boolean,
	what: string,
): Promise<Map<string, number>> {
	const deadline = Date.now() + 4000;
	for (;;) {
		const m = await relay.metrics();
		if (check(m)) return m;
		if (Date.now() > deadline) throw new Error(`metrics never showed: ${what}`);
		await new Promise((r) => setTimeout(r, 250));
	}
}

/** Connects a lite-05 client; resolves whether the relay still holds the session after authorising it. */
async function accepted(relay: RelayProcess, path: string): Promise<boolean> {
	const conn = await rawQuic(relay);
	try {
		const c = await MoqClient.connect(conn, { path });
		// Authorisation is asynchronous: a refused session closes right after SETUP.
		await new Promise((r) => setTimeout(r, 300));
		const ok = !c.closed;
		c.close(0, "");
		return ok;
	} catch {
		return false;
	}
}

function writeConfig(dir: string, name: string, body: string): string {
	const path = join(dir, name);
	writeFileSync(path, `[server.tls]\ngenerate = ["localhost", "127.0.0.1"]\n${body}`);
	return path;
}

describe("hardening: hostile input against the relay process", { timeout: 120_000 }, () => {
	let dir: string;
	let relay: RelayProcess;
	let key: string;

	before(async () => {
		dir = mkdtempSync(join(tmpdir(), "moq-harden-"));
		key = join(dir, "root.jwk");
		moqToken(["generate", "--key", key, "--algorithm", "HS256"]);
		const config = writeConfig(dir, "relay.toml", `[auth]\npublic = "anon"\nkey = ${JSON.stringify(key)}\n`);
		relay = await startRelayProcess([config, "--workers", "2"]);
	});
	after(async () => {
		await relay?.stop();
		rmSync(dir, { recursive: true, force: true });
	});

	test("8 bytes of 0xff as a stream type, without SETUP: that session closes with a protocol violation, no worker dies", async () => {
		for (const bidi of [false, true]) {
			const conn = await rawQuic(relay);
			const closed = closeCode(conn);
			const s = bidi ? conn.openBidi() : conn.openUni();
			assert.ok(s);
			s.write(new Uint8Array(8).fill(0xff));
			assert.equal(await closed, PROTOCOL_VIOLATION, `${bidi ? "bidi" : "uni"} stream`);
		}
		const m = await metricsUntil(
			relay,
			(m) => metricSum(m, "moq_fanout_refusals_total", 'reason="protocol"') >= 2,
			"both violations counted",
		);
		assert.equal(metricSum(m, "moq_fanout_worker_restarts_total"), 0, "no worker was replaced");
		await stillServes(relay, "after-0xff");
	});

	test("random bytes on 1,024 streams never kill a worker", async () => {
		const random = prng(0x5eed);
		let streams = 0;
		let connections = 0;
		while (streams < 1024) {
			const conn = await rawQuic(relay);
			connections++;
			const closed = closeCode(conn, 3000);
			// Open a batch in one turn: the relay sees them together, as the attacker's flush did.
			for (let i = 0; i < 32 && streams < 1024; i++, streams++) {
				const s = random() < 0.5 ? conn.openUni() : conn.openBidi();
				if (!s) break;
				const bytes = new Uint8Array(1 + Math.floor(random() * 64));
				for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(random() * 256);
				s.write(bytes);
				if (random() < 0.5) s.finish();
			}
			await Promise.race([closed, new Promise((r) => setTimeout(r, 100))]);
			if (!conn.closed) conn.close(0, "");
		}
		assert.ok(connections >= 32);
		const m = await relay.metrics();
		assert.equal(metricSum(m, "moq_fanout_worker_restarts_total"), 0, "no worker was replaced");
		assert.equal(relay.child.exitCode, null);
		await stillServes(relay, "after-random");
	});

	test("a token in the lite-05 SETUP path is never logged", async () => {
		const secret = "eyJhbGciOiJIUzI1NiJ9.eyJyb290Ijoic2VjcmV0In0.c2VjcmV0LXNpZ25hdHVyZS0xMjM0NTY3ODk";
		const before = relay.stderr.join("").length;
		for (const path of [`/room?jwt=${secret}`, `/room?j%77t=${secret}`, `/room?x=1&jwt=${secret}&jwt=${secret}`]) {
			assert.equal(await accepted(relay, path), false, "a forged token is refused");
		}
		await new Promise((r) => setTimeout(r, 200));
		const log = relay.stderr.join("").slice(before);
		assert.match(log, /session refused/, "the refusal is logged");
		assert.ok(!log.includes(secret), "the token never reaches the log");
		assert.ok(!log.includes(secret.slice(0, 20)), "not even its start");
		await metricsUntil(
			relay,
			(m) => metricSum(m, "moq_fanout_refusals_total", 'reason="auth"') >= 3,
			"3 auth refusals",
		);
	});

	test("with two jwt= parameters the last non-empty one wins (as moq-relay and docs/auth.md say)", async () => {
		const valid = moqToken(["sign", "--key", key, "--root", "room", "--subscribe", "", "--publish", ""]);
		const forged = `${valid.slice(0, -4)}AAAA`;
		assert.equal(
			await accepted(relay, `/room?jwt=${forged}&jwt=${valid}`),
			true,
			"forged then valid: the valid one is used",
		);
		assert.equal(
			await accepted(relay, `/room?jwt=${valid}&jwt=${forged}`),
			false,
			"valid then forged: the forged one is used",
		);
		assert.equal(await accepted(relay, `/room?jwt=${valid}&jwt=`), true, "an empty jwt= counts as absent");
	});
});

describe("hardening: limits hold per relay", { timeout: 120_000 }, () => {
	let dir: string;
	let relay: RelayProcess;

	before(async () => {
		dir = mkdtempSync(join(tmpdir(), "moq-limits-"));
		const config = writeConfig(
			dir,
			"relay.toml",
			`[auth]\npublic = "anon"\n[limits]\nmax_sessions = 3\nmax_broadcasts_per_session = 2\n`,
		);
		relay = await startRelayProcess([config, "--workers", "2"]);
	});
	after(async () => {
		await relay?.stop();
		rmSync(dir, { recursive: true, force: true });
	});

	test("max_sessions = 3 with 2 workers lets exactly 3 sessions in, not 6", async () => {
		const conns: QuicConnection[] = [];
		const codes: (number | null)[] = [];
		try {
			// Separate sockets: SO_REUSEPORT spreads them over both workers by 4-tuple.
			for (let i = 0; i < 6; i++) {
				const conn = await rawQuic(relay);
				conns.push(conn);
				const closed = closeCode(conn, 1500);
				void closed.then((c) => codes.push(c));
			}
			await new Promise((r) => setTimeout(r, 1700));
			const open = conns.filter((c) => !c.closed).length;
			assert.equal(open, 3, `open sessions: ${open}`);
			const m = await metricsUntil(
				relay,
				(m) => metricSum(m, "moq_fanout_refusals_total", 'reason="sessions"') >= 3,
				"3 session refusals",
			);
			assert.equal(metricSum(m, "moq_fanout_refusals_total", 'reason="sessions"'), 3);
			const perWorker = [0, 1].map((w) =>
				metricSum(m, "moq_fanout_refusals_total", `worker="${w}"`, 'reason="sessions"'),
			);
			assert.equal(
				perWorker[0] + perWorker[1],
				3,
				`refusals by worker: ${perWorker.join("/")} (both workers enforce one relay-wide count)`,
			);
		} finally {
			for (const c of conns) c.close(0, "");
		}
		// Released: new sessions get in again.
		await new Promise((r) => setTimeout(r, 300));
		const again = await rawQuic(relay);
		const code = await closeCode(again, 800);
		assert.equal(code, null, "a session fits once the others left");
		again.close(0, "");
	});

	test("max_broadcasts_per_session = 2: a third broadcast from the same session is refused and counted", async () => {
		const pub = await client(relay, "/anon");
		const viewer = await client(relay, "/anon");
		try {
			const watch = viewer.announced("");
			for (const name of ["b1", "b2", "b3"]) pub.publish(name).track("v");
			await new Promise((r) => setTimeout(r, 1000));
			assert.deepEqual([...watch.active].sort(), ["b1", "b2"]);
			const m = await metricsUntil(
				relay,
				(m) => metricSum(m, "moq_fanout_refusals_total", 'reason="broadcasts"') >= 1,
				"the broadcast refusal",
			);
			assert.equal(metricSum(m, "moq_fanout_refusals_total", 'reason="broadcasts"'), 1);
			assert.equal(pub.closed, false, "the session itself stays up");
		} finally {
			pub.close(0, "");
			viewer.close(0, "");
		}
	});
});
