/**
 * Load-test child processes (test/fixtures/*.ts): spawned with Node, they print one JSON report as
 * the last line of stdout when they end, and may write JSON heartbeat lines on stderr meanwhile.
 */
import { type ChildProcess, spawn } from "node:child_process";

export interface JsonChild<T> {
	child: ChildProcess;
	/** The report: the last stdout line, parsed, once the child exits. Rejects when there is none. */
	result: Promise<T>;
	/**
	 * Rejects as soon as the child exits before `stop()` (or `expectExit()`) was called: race a wait
	 * against it so that a crashed child fails the test at once, saying why, instead of at the timeout.
	 */
	died: Promise<never>;
	/** The newest JSON object the child wrote as a line on stderr (its heartbeat), or null. */
	heartbeat(): Record<string, unknown> | null;
	/** From now on an exit is expected (the child ends by itself); `died` stays pending. */
	expectExit(): void;
	/** SIGTERM (the child reports and exits), then its report. */
	stop(): Promise<T>;
}

export function spawnJson<T>(args: string[]): JsonChild<T> {
	const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "pipe"] });
	let out = "";
	let err = "";
	let line = "";
	let beat: Record<string, unknown> | null = null;
	let expected = false;
	child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
	child.stderr!.setEncoding("utf8").on("data", (d: string) => {
		err = (err + d).slice(-4000);
		line += d;
		const lines = line.split("\n");
		line = lines.pop()!;
		for (const l of lines) {
			if (!l.startsWith("{")) continue;
			try {
				beat = JSON.parse(l) as Record<string, unknown>;
			} catch {
				// a diagnostic that happens to start with a brace
			}
		}
	});
	const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
		child.once("exit", (code, signal) => resolve({ code, signal })),
	);
	const result = exited.then(({ code, signal }) => {
		try {
			return JSON.parse(out.trim().split("\n").pop()!) as T;
		} catch {
			throw new Error(`${args[0]} exited (${code ?? signal}) without a report: ${err}`);
		}
	});
	const died = exited.then(({ code, signal }) => {
		if (expected) return new Promise<never>(() => {});
		throw new Error(`${args[0]} died (${code ?? signal}) while the test still needed it: ${err}`);
	});
	result.catch(() => {});
	died.catch(() => {});
	return {
		child,
		result,
		died,
		heartbeat: () => beat,
		expectExit: () => {
			expected = true;
		},
		stop: () => {
			expected = true;
			child.kill("SIGTERM");
			return result;
		},
	};
}
