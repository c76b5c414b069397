/**
 * The relay under test for the scaling bench: like relay-process.ts's `startRelay`, plus the
 * worker count and `--reuse-port` chosen per configuration (the single-socket fallback is
 * `--reuse-port false`).
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import { join } from "node:path";
import { fetchFingerprint } from "./connect.ts";
import { hasTaskset, type RelayProcess } from "./relay-process.ts";

const REPO = join(import.meta.dirname, "..", "..");

/** A TCP port that is free now (the relay binds the same number on UDP too). */
function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.once("error", reject);
		s.listen(0, "127.0.0.1", () => {
			const port = (s.address() as net.AddressInfo).port;
			s.close(() => resolve(port));
		});
	});
}

export async function startScalingRelay(cores: number[], workers: number, reusePort: boolean): Promise<RelayProcess> {
	const port = await freePort();
	const args = [
		join(REPO, "src/bin/moq-fanout.ts"),
		"--bind",
		`127.0.0.1:${port}`,
		"--tls-generate",
		"localhost,127.0.0.1",
		"--auth-public",
		"bench",
		"--workers",
		String(workers),
		"--reuse-port",
		String(reusePort),
		// info: the main thread logs "moq-fanout listening" once every worker is ready (and little else).
		"--log-level",
		"info",
	];
	const node = process.execPath;
	// taskset execs node, so the child's pid is the relay's (its /proc/<pid>/stat covers every thread).
	const child: ChildProcess = hasTaskset()
		? spawn("taskset", ["-c", cores.join(","), node, ...args], { stdio: ["ignore", "ignore", "pipe"] })
		: spawn(node, args, { stdio: ["ignore", "ignore", "pipe"] });
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
			// Worker 0 may answer HTTP before worker 1 has bound its socket; connections made then
			// would all land on worker 0. "listening" is logged once every worker is ready.
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
