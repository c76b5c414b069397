/**
 * Forked bench children (publisher, load generators) with a tiny request/response helper over IPC.
 * @module
 */

import { type ChildProcess, fork } from "node:child_process";
import { join } from "node:path";
import { pin } from "./relay-process.ts";

export class Child<In, Out extends { type: string }> {
	readonly proc: ChildProcess;
	readonly #waiters: { type: string; resolve: (m: Out) => void; reject: (e: Error) => void }[] = [];
	/** Messages nobody waited for (e.g. publisher stats), latest per type. */
	readonly latest = new Map<string, Out>();
	#exitError: Error | null = null;

	constructor(file: string, cores: number[]) {
		this.proc = fork(join(import.meta.dirname, file), [], {
			execPath: process.execPath,
			execArgv: [],
			stdio: ["ignore", "inherit", "inherit", "ipc"],
		});
		if (this.proc.pid !== undefined) pin(this.proc.pid, cores);
		this.proc.on("message", (m: Out) => {
			const i = this.#waiters.findIndex((w) => w.type === m.type || m.type === "error");
			if (i >= 0) {
				const [w] = this.#waiters.splice(i, 1);
				if (m.type === "error") w.reject(new Error((m as unknown as { message: string }).message));
				else w.resolve(m);
			} else this.latest.set(m.type, m);
		});
		this.proc.on("exit", (code) => {
			this.#exitError = new Error(`${file} exited (${code})`);
			for (const w of this.#waiters.splice(0)) w.reject(this.#exitError);
		});
	}

	send(m: In): void {
		this.proc.send(m as object);
	}

	/** Sends `m` (if given) and waits for a reply of `type`. */
	request<T extends Out["type"]>(m: In | null, type: T, timeoutMs = 120_000): Promise<Extract<Out, { type: T }>> {
		if (this.#exitError) return Promise.reject(this.#exitError);
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => reject(new Error(`timed out waiting for "${type}"`)), timeoutMs);
			this.#waiters.push({
				type,
				resolve: (x) => {
					clearTimeout(timer);
					resolve(x as Extract<Out, { type: T }>);
				},
				reject: (e) => {
					clearTimeout(timer);
					reject(e);
				},
			});
			if (m !== null) this.send(m);
		});
	}

	kill(): void {
		if (this.proc.exitCode === null) this.proc.kill("SIGKILL");
	}
}
