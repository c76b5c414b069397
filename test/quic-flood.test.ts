/**
 * The QUIC part of the hardening issue against the real relay process: a flood of real-looking
 * client Initials (scripts/attack-initials.ts, from 256 source addresses, never completing) must
 * not grow the relay's memory for good nor lock new clients out. With the default
 * `[server.quic] retry = "auto"`, the worker answers with stateless Retries once 64 handshakes are
 * in progress. Reported before the fix: RSS 200 MB → 1 GB after one flood, never returned; a new
 * client needed 9 s to connect. Also: the per-IP handshake caps show in /metrics.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connectQuic } from "../src/quic/client.ts";
import { metricSum, type RelayProcess, startRelayProcess } from "./support/process-relay.ts";

const FLOOD = 40_000;
const FLOOD_SECONDS = 8;

function flood(port: number, count: number, seconds: number, sources: number): Promise<string> {
	return new Promise((resolve, reject) => {
		const child = spawn(
			process.execPath,
			[
				"scripts/attack-initials.ts",
				"--port",
				String(port),
				"--count",
				String(count),
				"--seconds",
				String(seconds),
				"--sources",
				String(sources),
			],
			{ stdio: ["ignore", "pipe", "inherit"] },
		);
		let out = "";
		child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
		child.on("error", reject);
		child.on("exit", () => resolve(out.trim()));
	});
}

function rssMb(relay: RelayProcess): number {
	const status = readFileSync(`/proc/${relay.child.pid}/status`, "utf8");
	return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function timeToConnect(port: number): Promise<number> {
	const started = performance.now();
	const conn = await connectQuic({ host: "127.0.0.1", port, alpns: ["moq-lite-05"], insecure: true, timeoutMs: 5000 });
	const ms = performance.now() - started;
	conn.close(0, "");
	return ms;
}

async function relayWith(dir: string, name: string, quic: string): Promise<RelayProcess> {
	const config = join(dir, `${name}.toml`);
	writeFileSync(
		config,
		`[server.tls]\ngenerate = ["localhost"]\n[auth]\npublic = "anon"\n[workers]\ncount = 1\n[server.quic]\n${quic}\n`,
	);
	return await startRelayProcess(["--config", config, "--log-level", "error"]);
}

describe("QUIC Initial flood against the relay process", { timeout: 60_000 }, () => {
	let dir: string;
	const relays: RelayProcess[] = [];
	before(() => {
		dir = mkdtempSync(join(tmpdir(), "moq-quic-flood-"));
	});
	after(async () => {
		for (const relay of relays) await relay.stop();
		rmSync(dir, { recursive: true, force: true });
	});

	test('retry = "auto": memory returns to within 1.25× and new clients connect within 2 s', async () => {
		const relay = await relayWith(dir, "auto", `retry = "auto"`);
		relays.push(relay);
		await timeToConnect(relay.port);
		await new Promise((r) => setTimeout(r, 1000));
		const before = rssMb(relay);
		const attack = flood(relay.port, FLOOD, FLOOD_SECONDS, 256);
		await new Promise((r) => setTimeout(r, (FLOOD_SECONDS * 1000) / 2));
		const during = await timeToConnect(relay.port);
		const result = JSON.parse(await attack) as { sent: number; retries: number };
		const after = await timeToConnect(relay.port);
		// Settle: half-open handshakes end within the 3 s idle timeout, then their memory is collected.
		await new Promise((r) => setTimeout(r, 5000));
		const settled = rssMb(relay);
		const m = await relay.metrics();
		const retries = metricSum(m, "moq_fanout_quic_retries_total");
		console.log(
			`flood ${JSON.stringify(result)}: RSS ${before.toFixed(0)} → ${settled.toFixed(0)} MB; ` +
				`connect during ${during.toFixed(0)} ms, after ${after.toFixed(0)} ms; retries ${retries}`,
		);
		assert.equal(result.sent, FLOOD);
		assert.ok(during < 2000, `a new client needed ${during} ms during the flood`);
		assert.ok(after < 2000, `a new client needed ${after} ms after the flood`);
		assert.ok(settled <= before * 1.25, `RSS ${before.toFixed(0)} → ${settled.toFixed(0)} MB`);
		assert.ok(retries > 0, "the flood was answered with Retries");
		const handshakes = metricSum(await relay.metrics(), "moq_fanout_quic_handshakes");
		assert.ok(handshakes <= 64, `handshakes in progress: ${handshakes}`);
	});

	test("per-IP handshake caps are counted in /metrics", async () => {
		const relay = await relayWith(dir, "perip", `retry = "off"\nmax_handshakes_per_ip = 4`);
		relays.push(relay);
		// Four source addresses, each sending far more than four Initials.
		await flood(relay.port, 400, 1, 4);
		let refused = 0;
		for (let i = 0; i < 30 && refused === 0; i++) {
			await new Promise((r) => setTimeout(r, 200));
			const m = await relay.metrics();
			refused = metricSum(m, "moq_fanout_refusals_total", 'reason="handshakes_per_ip"');
		}
		assert.ok(refused > 0, "handshakes_per_ip refusals in /metrics");
		// The relay still serves: another address is under its own cap.
		assert.ok((await timeToConnect(relay.port)) < 2000);
	});
});
