/**
 * Bench child process speaking the pump-clients protocol (pump-clients-child.ts) with the native
 * load generator in raw mode (`moq-loadgen --raw`): plain QUIC readers that acknowledge exactly as
 * the native subscribers do, so the bare pump and the relay it is compared with face the same
 * clients (the same ACKs to process per sent packet).
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { nativeGeneratorPath } from "./native-generator.ts";
import type { FromPumpClients, ToPumpClients } from "./pump-clients-child.ts";

const send = (m: FromPumpClients) => process.send?.(m);

interface RawReport {
	subscribers: number;
	silent: number;
	bytes: number;
	packetsIn: number;
	cpuMicros: number;
	elapsedMs: number;
}

let binary: ChildProcess | null = null;
let connections = 0;
let cpu0 = process.cpuUsage();

function start(m: Extract<ToPumpClients, { type: "init" }>): void {
	connections = m.connections;
	binary = spawn(nativeGeneratorPath(), ["--raw", "127.0.0.1", String(m.port), "-", m.fingerprint], {
		stdio: ["pipe", "pipe", "inherit"],
	});
	binary.on("exit", (code, signal) => {
		send({ type: "error", message: `moq-loadgen exited (${signal ?? code})` });
		process.exit(1);
	});
	createInterface({ input: binary.stdout! }).on("line", onLine);
}

function onLine(line: string): void {
	const space = line.indexOf(" ");
	const word = space < 0 ? line : line.slice(0, space);
	const rest = space < 0 ? "" : line.slice(space + 1);
	switch (word) {
		case "ready":
			binary?.stdin?.write(`add ${connections}\n`);
			return;
		case "added":
			send({ type: "ready", connected: Number(rest.split(" ")[0]) });
			return;
		case "reset":
			cpu0 = process.cpuUsage();
			send({ type: "reset" });
			return;
		case "report": {
			const r = JSON.parse(rest) as RawReport;
			const own = process.cpuUsage(cpu0);
			send({
				type: "report",
				packetsIn: r.packetsIn,
				bytes: r.bytes,
				receiving: r.subscribers - r.silent,
				cpuMicros: r.cpuMicros + own.user + own.system,
				elapsedMs: r.elapsedMs,
			});
			return;
		}
		default:
			send({ type: "error", message: `moq-loadgen said "${line}"` });
	}
}

process.on("message", (m: ToPumpClients) => {
	switch (m.type) {
		case "init":
			start(m);
			return;
		case "reset":
		case "report":
			binary?.stdin?.write(`${m.type}\n`);
			return;
		case "stop":
			binary?.removeAllListeners("exit");
			binary?.stdin?.write("stop\n");
			setTimeout(() => process.exit(0), 100);
			return;
	}
});
process.on("disconnect", () => {
	binary?.kill("SIGKILL");
	process.exit(0);
});
