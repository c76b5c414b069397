/**
 * The native load generator, native/build/moq-loadgen (native/loadgen.c, built by
 * native/build-ngtcp2.mjs next to the ngtcp2 engine when the system's ngtcp2 and GnuTLS are
 * present), and the line protocol its two bench children (native-generator-child.ts,
 * native-pump-clients-child.ts) speak with it: one command per line on its stdin, one answer per
 * line on its stdout ("word rest").
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

export function nativeGeneratorPath(): string {
	return process.env.MOQ_FANOUT_LOADGEN ?? join(import.meta.dirname, "..", "..", "native", "build", "moq-loadgen");
}

export function nativeGeneratorAvailable(): boolean {
	return existsSync(nativeGeneratorPath());
}

/** A running moq-loadgen: `send` writes a command; answers arrive at `onAnswer`. */
export class Loadgen {
	readonly #process: ChildProcess;

	/** `onExit` reports an exit nobody asked for (stop() silences it); the caller's process should end. */
	constructor(args: string[], onAnswer: (word: string, rest: string) => void, onExit: (message: string) => void) {
		this.#process = spawn(nativeGeneratorPath(), args, { stdio: ["pipe", "pipe", "inherit"] });
		this.#process.on("exit", (code, signal) => onExit(`moq-loadgen exited (${signal ?? code})`));
		createInterface({ input: this.#process.stdout! }).on("line", (line) => {
			const space = line.indexOf(" ");
			onAnswer(space < 0 ? line : line.slice(0, space), space < 0 ? "" : line.slice(space + 1));
		});
	}

	send(command: string): void {
		this.#process.stdin?.write(`${command}\n`);
	}

	/** Closes every connection (the binary sends its CONNECTION_CLOSEs) and lets it exit. */
	stop(): void {
		this.#process.removeAllListeners("exit");
		this.send("stop");
	}

	kill(): void {
		this.#process.kill("SIGKILL");
	}
}

/**
 * What both bench children do alike: forward "reset" and "report", "stop" the binary and exit, and
 * take the binary down when the parent goes. Returns false for the messages the child handles itself.
 */
export function commonMessage(loadgen: Loadgen | null, type: string): boolean {
	switch (type) {
		case "reset":
		case "report":
			loadgen?.send(type);
			return true;
		case "stop":
			loadgen?.stop();
			setTimeout(() => process.exit(0), 100);
			return true;
		default:
			return false;
	}
}

/** The child's end when its binary exits on its own: the parent hears why. */
export function exitWith(send: (m: { type: "error"; message: string }) => void): (message: string) => void {
	return (message) => {
		send({ type: "error", message });
		process.exit(1);
	};
}

export function killOnDisconnect(loadgen: () => Loadgen | null): void {
	process.on("disconnect", () => {
		loadgen()?.kill();
		process.exit(0);
	});
}
