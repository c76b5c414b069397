/**
 * Loads quiche's napi binding (from `@matrixai/quic-linux-x64`), one private copy per thread.
 *
 * Why a copy: the binding is built with napi-rs 2.10, whose global state is not thread-safe. With
 * several worker threads sharing one loaded copy the process crashed (SIGSEGV / V8 fatal in
 * `napi_delete_reference`); with each thread loading its own file (so the dynamic loader maps a
 * separate instance) it did not (test/quic-workers.test.ts guards this). The copy is unlinked right
 * after loading (Linux keeps the mapping), elsewhere at process exit.
 *
 * Why per slot, not per thread: a loaded addon is never unloaded, and each instance starts its own
 * tokio runtime threads (napi-rs) that outlive the thread that loaded it. With a copy per thread,
 * every worker restart left one more instance mapped and its runtime threads running (13 threads
 * grew to 45 over a dozen restarts). A pool worker names its copy after its slot instead
 * (`useQuicheInstance`): the dynamic loader finds that name already loaded and hands the dead
 * thread's instance to its replacement, which registers the module afresh for its own
 * environment. Only one live thread ever uses an instance, so the concurrency problem above does
 * not arise, and a process maps at most one instance per slot however often workers restart.
 */
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { threadId } from "node:worker_threads";
import type { Quiche } from "@matrixai/quic/native/quiche.js";

export type {
	Config as QuicheConfig,
	Connection as QuicheConnection,
	ConnectionError as QuicheConnectionError,
	Host as QuicheHostPort,
	RecvInfo as QuicheRecvInfo,
} from "@matrixai/quic/native/types.js";
export type { Quiche };

const require = createRequire(import.meta.url);

let loaded: Quiche | null = null;
let instanceName: string | null = null;

/**
 * Names this thread's copy (call before the first `loadQuiche()`). Threads that never run at the
 * same time may share a name, and then share one loaded instance; threads that may run
 * concurrently must use different names.
 */
export function useQuicheInstance(name: string): void {
	if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) throw new RangeError(`invalid quiche instance name "${name}"`);
	if (loaded !== null && name !== instanceName) throw new Error("quiche is already loaded in this thread");
	instanceName = name;
}

/** The original addon file inside node_modules. */
export function addonPath(): string {
	return require.resolve("@matrixai/quic-linux-x64/node.napi.node");
}

/**
 * The binding package and its version, as the start-up log names the engine's library (the package
 * does not report the quiche version it bundles): "@matrixai/quic-linux-x64 2.0.9", or the bare
 * name when its package.json cannot be read.
 */
export function bindingName(): string {
	const name = "@matrixai/quic-linux-x64";
	try {
		const file = path.join(path.dirname(addonPath()), "package.json");
		const version = (JSON.parse(fs.readFileSync(file, "utf8")) as { version?: unknown }).version;
		return typeof version === "string" ? `${name} ${version}` : name;
	} catch {
		return name;
	}
}

/** Where this thread's private copy lives. */
export function threadCopyPath(): string {
	return path.join(os.tmpdir(), `moq-fanout-quiche-${process.pid}-${instanceName ?? threadId}.node`);
}

const copies = new Set<string>();
let exitHookInstalled = false;

function removeCopies(): void {
	for (const file of copies) {
		try {
			fs.unlinkSync(file);
		} catch {
			// already gone
		}
	}
	copies.clear();
}

/** Returns this thread's instance of the binding, loading a private copy on first use. */
export function loadQuiche(): Quiche {
	if (loaded !== null) return loaded;
	const target = threadCopyPath();
	fs.copyFileSync(addonPath(), target);
	copies.add(target);
	if (!exitHookInstalled) {
		exitHookInstalled = true;
		process.once("exit", removeCopies);
	}
	try {
		loaded = require(target) as Quiche;
	} finally {
		// Once mapped, the file is no longer needed on Linux: unlink it now so that nothing is
		// left in the temp dir even if the process is killed. Elsewhere it goes at exit.
		if (loaded === null || process.platform === "linux") removeCopies();
	}
	return loaded;
}
