/**
 * The relay under test as a separate process: `taskset -c 0..k-1 node src/bin/moq-fanout.ts
 * --workers k` with a generated certificate, on a free port of 127.0.0.1 (UDP for QUIC, TCP for
 * HTTP on the same number).
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";
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

/** A TCP port that is free now (the relay binds the same number on UDP too). */
async function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.once("error", reject);
		s.listen(0, "127.0.0.1", () => {
			const port = (s.address() as net.AddressInfo).port;
			s.close(() => resolve(port));
		});
	});
}

export function hasTaskset(): boolean {
	try {
		readFileSync("/usr/bin/taskset");
		return true;
	} catch {
		return false;
	}
}

export async function startRelay(cores: number[], opts: { logLevel?: string } = {}): Promise<RelayProcess> {
	const port = await freePort();
	const node = process.execPath;
	const relayArgs = [
		join(REPO, "src/bin/moq-fanout.ts"),
		"--bind",
		`127.0.0.1:${port}`,
		"--tls-generate",
		"localhost,127.0.0.1",
		"--auth-public",
		"bench",
		"--workers",
		String(cores.length),
		"--log-level",
		opts.logLevel ?? "warn",
	];
	const pinned = hasTaskset();
	const child: ChildProcess = pinned
		? spawn("taskset", ["-c", cores.join(","), node, ...relayArgs], { stdio: ["ignore", "ignore", "pipe"] })
		: spawn(node, relayArgs, { stdio: ["ignore", "ignore", "pipe"] });
	let stderr = "";
	child.stderr?.on("data", (d: Buffer) => {
		stderr = (stderr + d.toString()).slice(-8000);
	});
	const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
	let fingerprint = "";
	const deadline = Date.now() + 20_000;
	for (;;) {
		if (child.exitCode !== null) throw new Error(`relay exited (${child.exitCode}): ${stderr}`);
		try {
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
