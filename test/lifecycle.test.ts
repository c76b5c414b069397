/**
 * The real binary's life cycle, as an operator deploys it: graceful drain on SIGTERM (existing
 * viewers served until `[server] drain_timeout`, new QUIC and WebSocket sessions refused, /health
 * 503, moq-lite GOAWAY with the sibling's URL), a second signal exiting at once, start-up errors
 * (exit 2 and one line each), a second instance on a held port refused, and /health 503 while a
 * worker is down.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import dgram from "node:dgram";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { MoqClient } from "../src/client/index.ts";
import { connectQuic } from "../src/quic/client.ts";
import { generateCertificate } from "../src/tls/generate.ts";
import { freePort, type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import "./support/quiet.ts";
import { rawUpgrade } from "./support/raw-upgrade.ts";
import { sleep, until } from "./support/wait.ts";

const SIBLING = "https://sibling.example:4443/";
const trace = (what: unknown) => {
	if (process.env.MOQ_TEST_TRACE) console.error(JSON.stringify(what));
};

let dir = "";
before(async () => {
	dir = await mkdtemp(join(tmpdir(), "moq-lifecycle-"));
});
after(async () => {
	await rm(dir, { recursive: true, force: true });
});

async function config(name: string, toml: string): Promise<string> {
	const path = join(dir, name);
	await writeFile(path, toml);
	return path;
}

async function quicClient(relay: RelayProcess, timeoutMs = 5000): Promise<MoqClient> {
	const fingerprint = await (await fetch(`${relay.base}/certificate.sha256`)).text();
	const quic = await connectQuic({
		host: "127.0.0.1",
		port: relay.port,
		alpns: ["moq-lite-05"],
		certificateHashes: [fingerprint],
		timeoutMs,
	});
	return MoqClient.connect(quic, { path: "/anon" });
}

function exited(relay: RelayProcess): Promise<{ code: number | null; at: number }> {
	return new Promise((resolve) => {
		if (relay.child.exitCode !== null) resolve({ code: relay.child.exitCode, at: performance.now() });
		else relay.child.once("exit", (code) => resolve({ code, at: performance.now() }));
	});
}

async function health(relay: RelayProcess): Promise<{ status: number; body: { status?: string; ready?: number } }> {
	const r = await fetch(`${relay.base}/health`, {
		signal: AbortSignal.timeout(1000),
		headers: { connection: "close" },
	});
	return { status: r.status, body: (await r.json()) as { status?: string } };
}

describe("graceful drain (real process)", { timeout: 60_000 }, () => {
	test("SIGTERM: viewers served until drain_timeout, new sessions refused, /health 503, GOAWAY", async () => {
		const DRAIN_MS = 3000;
		const path = await config(
			"drain.toml",
			`[server]\ndrain_timeout = "${DRAIN_MS}ms"\n[server.tls]\ngenerate = ["localhost", "127.0.0.1"]\n[auth]\npublic = "anon"\n[workers]\ncount = 2\n[cluster]\nconnect = ["${SIBLING}"]\n`,
		);
		const relay = await startRelayProcess(["--config", path, "--log-level", "warn"]);
		let ticker: ReturnType<typeof setInterval> | undefined;
		const clients: MoqClient[] = [];
		try {
			const h0 = await health(relay);
			assert.equal(h0.status, 200);
			assert.equal(h0.body.status, "ok");
			const publisher = await quicClient(relay);
			clients.push(publisher);
			const track = publisher.publish("live").track("video");
			const frame = new Uint8Array(500);
			ticker = setInterval(() => {
				const g = track.openGroup();
				for (let f = 0; f < 2; f++) g.writeFrame(frame);
				g.close();
			}, 50);
			const viewer = await quicClient(relay);
			clients.push(viewer);
			let lastFrameAt = 0;
			let frames = 0;
			let goawayAt = 0;
			viewer.onGoaway = () => {
				goawayAt = performance.now();
			};
			viewer.subscribe(
				"live",
				"video",
				{},
				{
					onFrame: () => {
						frames++;
						lastFrameAt = performance.now();
					},
				},
			);
			await until(() => frames > 5, 5000, "frames reaching the viewer");
			const exit = exited(relay);

			const t0 = performance.now();
			relay.child.kill("SIGTERM");

			// /health says draining at once.
			await until(async () => (await health(relay).catch(() => ({ status: 0 }))).status === 503, 2000, "/health 503");
			const h1 = await health(relay);
			assert.equal(h1.status, 503);
			assert.equal(h1.body.status, "draining");
			// The viewer is told where to go (moq-lite-05 GOAWAY with the [cluster] peer).
			await until(() => goawayAt > 0, 2000, "GOAWAY at the viewer");
			assert.equal(viewer.goaway, SIBLING);
			// New sessions are refused: a QUIC handshake fails fast, a WebSocket upgrade gets 503.
			const q0 = performance.now();
			await assert.rejects(quicClient(relay, 4000), "a new QUIC session is refused");
			const quicRefusedMs = performance.now() - q0;
			assert.ok(quicRefusedMs < 2000, `QUIC refused in ${quicRefusedMs.toFixed(0)} ms (not a timeout)`);
			const ws = await rawUpgrade(relay.port, "/anon", "moq-lite-05");
			assert.equal(ws.status, 503, "WebSocket upgrade while draining");
			// The viewer keeps receiving until the drain deadline, then the process exits 0.
			const midway = frames;
			await sleep(1000);
			assert.ok(frames > midway + 10, `frames keep flowing while draining (${frames - midway} in 1 s)`);
			const { code, at } = await exit;
			const result = {
				drainTimeoutMs: DRAIN_MS,
				lastFrameAfterSigtermMs: Math.round(lastFrameAt - t0),
				exitAfterSigtermMs: Math.round(at - t0),
				goawayAfterSigtermMs: Math.round(goawayAt - t0),
				quicRefusedMs: Math.round(quicRefusedMs),
			};
			trace(result);
			assert.equal(code, 0);
			assert.ok(lastFrameAt - t0 >= DRAIN_MS - 300, `last frame ${result.lastFrameAfterSigtermMs} ms after SIGTERM`);
			assert.ok(at - t0 < DRAIN_MS + 4000, `exited ${result.exitAfterSigtermMs} ms after SIGTERM`);
		} finally {
			clearInterval(ticker);
			for (const c of clients) c.close();
			if (relay.child.exitCode === null) relay.child.kill("SIGKILL");
		}
	});

	test("a second signal exits at once", async () => {
		const path = await config(
			"drain-long.toml",
			`[server]\ndrain_timeout = "30s"\n[server.tls]\ngenerate = ["localhost", "127.0.0.1"]\n[auth]\npublic = "anon"\n[workers]\ncount = 2\n`,
		);
		const relay = await startRelayProcess(["--config", path, "--log-level", "warn"]);
		const client = await quicClient(relay);
		try {
			const exit = exited(relay);
			relay.child.kill("SIGTERM");
			await sleep(500);
			assert.equal(relay.child.exitCode, null, "still draining (a session is open)");
			const t1 = performance.now();
			relay.child.kill("SIGTERM");
			const { code, at } = await exit;
			trace({ secondSignalExitMs: Math.round(at - t1), code });
			assert.equal(code, 1);
			assert.ok(at - t1 < 1000, `exited ${(at - t1).toFixed(0)} ms after the second signal`);
		} finally {
			client.close();
			if (relay.child.exitCode === null) relay.child.kill("SIGKILL");
		}
	});

	test("with no session left the drain ends early", async () => {
		const path = await config(
			"drain-idle.toml",
			`[server]\ndrain_timeout = "30s"\n[server.tls]\ngenerate = ["localhost", "127.0.0.1"]\n[auth]\npublic = "anon"\n[workers]\ncount = 2\n`,
		);
		const relay = await startRelayProcess(["--config", path, "--log-level", "warn"]);
		const exit = exited(relay);
		const t0 = performance.now();
		relay.child.kill("SIGTERM");
		const { code, at } = await exit;
		trace({ idleDrainExitMs: Math.round(at - t0) });
		assert.equal(code, 0);
		assert.ok(at - t0 < 5000, `exited ${(at - t0).toFixed(0)} ms after SIGTERM`);
	});
});

/** Runs the binary to its exit; returns its status and stderr. */
function run(args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stderr: string }> {
	return new Promise((resolve) => {
		const child = spawn(process.execPath, ["src/bin/moq-fanout.ts", ...args], { stdio: ["ignore", "ignore", "pipe"] });
		let stderr = "";
		child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
		const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
		child.once("exit", (code) => {
			clearTimeout(timer);
			resolve({ code, stderr });
		});
	});
}

function assertOneLine(r: { code: number | null; stderr: string }, pattern: RegExp): void {
	const lines = r.stderr.trim().split("\n");
	assert.equal(r.code, 2, `exit status (stderr: ${r.stderr})`);
	assert.equal(lines.length, 1, `one line, got: ${r.stderr}`);
	assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack trace");
	assert.match(lines[0], pattern);
}

describe("start-up errors exit 2 with one line (real process)", { timeout: 60_000 }, () => {
	test("bad TLS key, PEM as [auth] key, key + key_dir", async () => {
		const cert = generateCertificate(["localhost"]);
		await writeFile(join(dir, "cert.pem"), cert.certPem);
		await writeFile(join(dir, "key.pem"), cert.keyPem);
		await writeFile(join(dir, "bad.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
		await rm(join(dir, "keys"), { recursive: true, force: true });
		await import("node:fs/promises").then((fs) => fs.mkdir(join(dir, "keys")));
		const port = await freePort();
		const bind = `[server]\nbind = "127.0.0.1:${port}"\n`;
		const badTls = await config(
			"bad-tls.toml",
			`${bind}[server.tls]\ncert = "cert.pem"\nkey = "bad.pem"\n[auth]\npublic = ""\n`,
		);
		assertOneLine(await run([badTls]), /bad-tls\.toml: \[server\.tls\] key: .*bad\.pem: not a valid private key/);
		const pemKey = await config(
			"pem-key.toml",
			`${bind}[server.tls]\ngenerate = ["localhost"]\n[auth]\nkey = "key.pem"\n`,
		);
		assertOneLine(await run([pemKey]), /\[auth\] key ".*key\.pem".*pem-key\.toml.*not a valid moq-token JWK/);
		const both = await config(
			"both.toml",
			`${bind}[server.tls]\ngenerate = ["localhost"]\n[auth]\nkey = "key.pem"\nkey_dir = "keys"\n`,
		);
		assertOneLine(await run([both]), /both\.toml: \[auth\] key_dir: cannot be combined with \[auth\] key/);
	});

	test("a port another program holds", async () => {
		const port = await freePort();
		const holder = dgram.createSocket("udp4");
		await new Promise<void>((r) => holder.bind({ port, address: "127.0.0.1", exclusive: true }, () => r()));
		try {
			const path = await config(
				"busy.toml",
				`[server]\nbind = "127.0.0.1:${port}"\n[server.tls]\ngenerate = ["localhost"]\n[auth]\npublic = ""\n`,
			);
			assertOneLine(await run([path]), new RegExp(`\\[server\\] bind: UDP 127\\.0\\.0\\.1:${port} is already in use`));
		} finally {
			holder.close();
		}
	});

	test("a second instance on a port another moq-fanout holds refuses to start", async () => {
		const path = await config(
			"first.toml",
			`[server.tls]\ngenerate = ["localhost", "127.0.0.1"]\n[auth]\npublic = "anon"\n[workers]\ncount = 2\n`,
		);
		const first = await startRelayProcess(["--config", path, "--log-level", "warn"]);
		try {
			const second = await run([path, "--bind", `127.0.0.1:${first.port}`, "--workers", "2"]);
			assertOneLine(
				second,
				new RegExp(`UDP 127\\.0\\.0\\.1:${first.port} is held by another moq-fanout \\(pid ${first.child.pid}`),
			);
			// The first one still serves every client.
			assert.equal((await health(first)).status, 200);
		} finally {
			await first.stop();
		}
	});
});

describe("/health readiness (real process)", { timeout: 60_000 }, () => {
	test("503 while a worker is down, 200 once every worker is back", async () => {
		const relay = await startRelayProcess(["--workers", "2", "--log-level", "error"], { MOQ_FANOUT_DEBUG: "1" });
		try {
			const h0 = await health(relay);
			assert.equal(h0.status, 200);
			assert.equal(h0.body.ready, 2);
			let down: { status: number; body: { status?: string; ready?: number } } | null = null;
			const deadline = performance.now() + 5000;
			relay.child.stdin!.write("crash 0\n");
			while (down === null && performance.now() < deadline) {
				const h = await health(relay).catch(() => null);
				if (h !== null && h.status === 503) down = h;
				else await sleep(5);
			}
			assert.ok(down, "/health answered 503 while worker 0 was down");
			assert.equal(down.body.status, "starting");
			assert.equal(down.body.ready, 1);
			await until(
				async () => (await health(relay).catch(() => ({ status: 0 }))).status === 200,
				10_000,
				"/health 200 again",
			);
		} finally {
			await relay.stop();
		}
	});
});
