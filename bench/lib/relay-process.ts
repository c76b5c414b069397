/**
 * The relay under test as a separate process: `taskset -c 0..k-1 node src/bin/moq-fanout.ts
 * --workers k` with a generated certificate, on a free port of 127.0.0.1 (UDP for QUIC, TCP for
 * HTTP on the same number).
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import dgram from "node:dgram";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fetchFingerprint } from "./connect.ts";

export interface RelayProcess {
	readonly pid: number;
	readonly port: number;
	readonly fingerprint: string;
	readonly cores: number[];
	/** The relay's stderr tail (for failure reports). */
	log(): string;
	stop(): Promise<void>;
}

const REPO = join(import.meta.dirname, "..", "..");

/** A port free now on both TCP and UDP (the relay binds the same number on both). */
async function freePort(): Promise<number> {
	for (;;) {
		const port = await new Promise<number>((resolve, reject) => {
			const s = net.createServer();
			s.once("error", reject);
			s.listen(0, "127.0.0.1", () => {
				const p = (s.address() as net.AddressInfo).port;
				s.close(() => resolve(p));
			});
		});
		const udp = dgram.createSocket("udp4");
		const free = await new Promise<boolean>((resolve) => {
			udp.once("error", () => resolve(false));
			udp.bind(port, "127.0.0.1", () => resolve(true));
		});
		if (free) {
			await new Promise<void>((resolve) => udp.close(() => resolve()));
			return port;
		}
	}
}

export function hasTaskset(): boolean {
	try {
		readFileSync("/usr/bin/taskset");
		return true;
	} catch {
		return false;
	}
}

export interface StartRelayOptions {
	/** Worker threads (default: one per pinned core). */
	workers?: number;
	/** false: the single-socket fallback (worker 0 owns the socket). Default: the relay's default. */
	reusePort?: boolean;
	/** The QUIC engine (MOQ_SERVER_QUIC_ENGINE); default: the relay's default. */
	engine?: "quiche" | "ngtcp2";
}

/**
 * Starts the relay pinned to `cores` and resolves once every worker is ready: the main thread logs
 * "moq-fanout listening" only then (worker 0 may answer HTTP before the others have bound their
 * sockets, and connections made in between would all land on it).
 */
/**
 * The bench's load generators are hundreds of clients on one address (127.0.0.1): the per-address
 * limits that protect a production relay from one abusive host would throttle the measurement, so
 * the bench lifts them (and only them; every other limit stays at its default).
 */
function benchConfig(): string {
	const path = join(mkdtempSync(join(tmpdir(), "moq-bench-")), "bench.toml");
	writeFileSync(
		path,
		[
			"[limits]",
			"max_connections_per_ip = 1000000",
			"handshake_rate_per_ip = 1000000",
			"[server.quic]",
			"max_handshakes_per_ip = 1000000",
			"max_handshakes = 1000000",
			'retry = "off"',
			"",
		].join("\n"),
	);
	return path;
}

export async function startRelay(cores: number[], opts: StartRelayOptions = {}): Promise<RelayProcess> {
	const port = await freePort();
	const node = process.execPath;
	const relayArgs = [
		...(process.env.MOQ_BENCH_RELAY_NODE_ARGS ? process.env.MOQ_BENCH_RELAY_NODE_ARGS.split(" ") : []),
		join(REPO, "src/bin/moq-fanout.ts"),
		benchConfig(),
		"--bind",
		`127.0.0.1:${port}`,
		"--tls-generate",
		"localhost,127.0.0.1",
		"--auth-public",
		"bench",
		"--workers",
		String(opts.workers ?? cores.length),
		// info: the main thread logs "moq-fanout listening" once every worker is ready (and little else).
		"--log-level",
		"info",
	];
	if (opts.reusePort !== undefined) relayArgs.push("--reuse-port", String(opts.reusePort));
	const env = opts.engine ? { ...process.env, MOQ_SERVER_QUIC_ENGINE: opts.engine } : process.env;
	// taskset execs node, so the child's pid is the relay's (its /proc/<pid>/stat covers every thread).
	const child: ChildProcess = hasTaskset()
		? spawn("taskset", ["-c", cores.join(","), node, ...relayArgs], { stdio: ["ignore", "ignore", "pipe"], env })
		: spawn(node, relayArgs, { stdio: ["ignore", "ignore", "pipe"], env });
	let stderr = "";
	let listening = false;
	child.stderr?.on("data", (d: Buffer) => {
		stderr = (stderr + d.toString()).slice(-8000);
		if (!listening && stderr.includes("moq-fanout listening")) listening = true;
	});
	const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
	let fingerprint = "";
	const deadline = Date.now() + 20_000;
	for (;;) {
		if (child.exitCode !== null) throw new Error(`relay exited (${child.exitCode}): ${stderr}`);
		try {
			if (!listening) throw new Error("not every worker is ready");
			fingerprint = await fetchFingerprint("127.0.0.1", port, 1000);
			break;
		} catch {
			if (Date.now() > deadline) {
				child.kill("SIGKILL");
				throw new Error(`relay did not come up on port ${port}: ${stderr}`);
			}
			await new Promise((r) => setTimeout(r, 100));
		}
	}
	return {
		pid: child.pid ?? 0,
		port,
		fingerprint,
		cores,
		log: () => stderr,
		async stop() {
			if (child.exitCode !== null) return;
			child.kill("SIGTERM");
			const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
			await exited;
			clearTimeout(timer);
		},
	};
}

/** Pins a running process and all its threads to `cores` (no-op without taskset). */
export function pin(pid: number, cores: number[]): void {
	if (!hasTaskset() || cores.length === 0) return;
	spawn("taskset", ["-a", "-p", "-c", cores.join(","), String(pid)], { stdio: "ignore" });
}
