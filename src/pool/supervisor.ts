/**
 * The relay's worker pool: N long-lived worker threads, each owning its sockets and a stable
 * index (shard ownership is `hash(path) % count`), supervised from the main thread.
 *
 * - Start: every worker must post `{type:"ready"}` (worker-side `ready(info)`) within
 *   `readyTimeoutMs`; otherwise `start()` rejects naming the worker, and no thread is left behind.
 * - Supervision: a worker that throws or exits on its own is replaced in the same slot, after a
 *   backoff that doubles per consecutive crash (reset once a worker stays up `stableAfterMs`).
 *   The other workers keep running untouched, and are told at once (`{type:"peer-down"}`) so they
 *   end what depended on the dead thread instead of waiting for its replacement.
 * - Never all down: the backoff only protects a relay that still serves. When no other worker is
 *   ready, a worker that crashed after serving restarts immediately, and every slot still waiting
 *   out a backoff is cut to the first step, so a crash streak on every slot can not leave the
 *   port refusing connections for the length of the longest backoff.
 * - Mesh: a MessageChannel per worker pair, so workers talk directly; a replacement gets fresh
 *   channels to every live worker, and each of them receives its new end as `{type:"peer"}`.
 * - Figures: a SharedArrayBuffer of per-worker counters (counters.ts), read without messaging.
 *
 * Hand-written rather than piscina: piscina schedules short tasks onto interchangeable threads;
 * relay workers are long-lived, stateful, own sockets and a shard index, and must be restarted
 * in place with the same index.
 */
import { MessageChannel, type MessagePort, type ResourceLimits, Worker } from "node:worker_threads";
import type { Logger } from "../log/logger.ts";
import { CountersReader, createCountersBuffer } from "./counters.ts";
import { isFromWorker, PoolState, type PoolWorkerData, type ToWorker } from "./protocol.ts";

export interface WorkerPoolOptions {
	/** Worker threads (≥ 1). */
	count: number;
	/** The module each worker runs (a .ts file is fine: Node 24 strips types in workers too). */
	entry: URL;
	/** The caller's part of `workerData` for worker `index` (reachable as `ctx.data`). Called again on each restart. */
	workerData?: (index: number) => unknown;
	log: Logger;
	/** Delay before the first restart of a crashed worker; doubles per consecutive crash. Default 100 ms. */
	restartBackoffMs?: number;
	/** Cap on the restart delay. Default 30 s. */
	maxRestartBackoffMs?: number;
	/** A worker that stayed up this long after ready resets its crash streak. Default 60 s. */
	stableAfterMs?: number;
	/** How long a worker may take to post ready. Default 15 s. */
	readyTimeoutMs?: number;
	resourceLimits?: ResourceLimits;
	/** Extra Node flags for the workers (default: inherit the main thread's). */
	execArgv?: string[];
}

/** One slot's state as `status()` reports it. */
export interface WorkerStatus {
	index: number;
	/** The current thread's id, or null while the slot waits for a restart. */
	threadId: number | null;
	/** 1 for the first thread, +1 per replacement. */
	generation: number;
	ready: boolean;
	/** Replacements so far. */
	restarts: number;
	/** What the worker passed to `ready(info)`. */
	info: unknown;
}

export type ReadyHandler = (index: number, info: unknown, generation: number) => void;
export type ExitHandler = (index: number, code: number, error: Error | null) => void;
export type PoolMessageHandler = (index: number, msg: unknown) => void;

const DEFAULTS = {
	restartBackoffMs: 100,
	maxRestartBackoffMs: 30_000,
	stableAfterMs: 60_000,
	readyTimeoutMs: 15_000,
} as const;

interface Slot {
	readonly index: number;
	worker: Worker | null;
	generation: number;
	ready: boolean;
	readyAt: number;
	info: unknown;
	restarts: number;
	/** Crashes since the last stable run; sets the backoff. */
	streak: number;
	/** The error event preceding an exit, if any. */
	lastError: Error | null;
	readyTimer: ReturnType<typeof setTimeout> | null;
	restartTimer: ReturnType<typeof setTimeout> | null;
	/** performance.now() at which restartTimer fires. */
	restartDue: number;
	/** Resolves when the current thread has exited. */
	exited: Promise<void>;
}

function positiveInt(name: string, v: unknown): number {
	if (typeof v !== "number" || !Number.isInteger(v) || v < 1)
		throw new RangeError(`options.${name} must be a positive integer`);
	return v;
}

function nonNegative(name: string, v: unknown, fallback: number): number {
	if (v === undefined) return fallback;
	if (typeof v !== "number" || !Number.isFinite(v) || v < 0)
		throw new RangeError(`options.${name} must be a non-negative number`);
	return v;
}

function asError(e: unknown): Error {
	return e instanceof Error ? e : new Error(String(e));
}

export class WorkerPool {
	readonly count: number;
	/** Every worker's figures, read from shared memory (no messaging). */
	readonly counters: CountersReader;
	/** Readiness and draining, shared with the workers (they answer /health from it). */
	readonly state: PoolState;
	readonly #opts: Required<Omit<WorkerPoolOptions, "resourceLimits" | "execArgv">> &
		Pick<WorkerPoolOptions, "resourceLimits" | "execArgv">;
	readonly #log: Logger;
	readonly #slots: Slot[] = [];
	readonly #onReady = new Set<ReadyHandler>();
	readonly #onExit = new Set<ExitHandler>();
	readonly #onMessage = new Set<PoolMessageHandler>();
	/** Set once every first-generation worker is ready; before that a failure fails `start()`. */
	#started = false;
	#failStart: ((e: Error) => void) | null = null;
	#closing: Promise<void> | null = null;
	/** Set by `drain()`: a worker that dies now is not replaced. */
	#draining = false;

	/** Starts `count` workers and resolves once all of them are ready. */
	static async start(opts: WorkerPoolOptions): Promise<WorkerPool> {
		const pool = new WorkerPool(opts);
		await pool.#startAll();
		return pool;
	}

	private constructor(opts: WorkerPoolOptions) {
		const count = positiveInt("count", opts.count);
		if (!(opts.entry instanceof URL)) throw new TypeError("options.entry must be a URL");
		if (!opts.log) throw new TypeError("options.log is required");
		this.count = count;
		this.#log = opts.log;
		this.#opts = {
			count,
			entry: opts.entry,
			workerData: opts.workerData ?? (() => undefined),
			log: opts.log,
			restartBackoffMs: nonNegative("restartBackoffMs", opts.restartBackoffMs, DEFAULTS.restartBackoffMs),
			maxRestartBackoffMs: nonNegative("maxRestartBackoffMs", opts.maxRestartBackoffMs, DEFAULTS.maxRestartBackoffMs),
			stableAfterMs: nonNegative("stableAfterMs", opts.stableAfterMs, DEFAULTS.stableAfterMs),
			readyTimeoutMs: nonNegative("readyTimeoutMs", opts.readyTimeoutMs, DEFAULTS.readyTimeoutMs),
			resourceLimits: opts.resourceLimits,
			execArgv: opts.execArgv,
		};
		this.counters = new CountersReader(createCountersBuffer(count));
		this.state = new PoolState(count);
		for (let index = 0; index < count; index++) {
			this.#slots.push({
				index,
				worker: null,
				generation: 0,
				ready: false,
				readyAt: 0,
				info: undefined,
				restarts: 0,
				streak: 0,
				lastError: null,
				readyTimer: null,
				restartTimer: null,
				restartDue: 0,
				exited: Promise.resolve(),
			});
		}
	}

	async #startAll(): Promise<void> {
		const t0 = performance.now();
		// One channel per pair: port1 to the lower index, port2 to the higher.
		const peers: (MessagePort | null)[][] = this.#slots.map(() => new Array(this.count).fill(null));
		for (let i = 0; i < this.count; i++) {
			for (let j = i + 1; j < this.count; j++) {
				const { port1, port2 } = new MessageChannel();
				peers[i][j] = port1;
				peers[j][i] = port2;
			}
		}
		const allReady = new Promise<void>((resolve, reject) => {
			let waiting = this.count;
			const unsubscribe = this.onWorkerReady(() => {
				if (--waiting === 0) {
					unsubscribe();
					resolve();
				}
			});
			this.#failStart = (e) => {
				unsubscribe();
				reject(e);
			};
		});
		try {
			for (const slot of this.#slots) this.#spawn(slot, peers[slot.index]);
			await allReady;
		} catch (e) {
			// Leave no thread behind: the caller gets the error and nothing to close.
			this.#failStart = null;
			await this.#terminateAll();
			throw e;
		}
		this.#failStart = null;
		this.#started = true;
		this.#log.info("worker pool started", { workers: this.count, ms: Math.round(performance.now() - t0) });
	}

	#spawn(slot: Slot, peers: (MessagePort | null)[]): void {
		slot.generation++;
		slot.ready = false;
		slot.info = undefined;
		slot.lastError = null;
		const data: PoolWorkerData = {
			moqFanoutPool: 1,
			index: slot.index,
			count: this.count,
			generation: slot.generation,
			peers,
			counters: this.counters.buffer,
			state: this.state.buffer,
			data: this.#opts.workerData(slot.index),
		};
		const transferList = peers.filter((p): p is MessagePort => p !== null);
		let worker: Worker;
		try {
			worker = new Worker(this.#opts.entry, {
				workerData: data,
				transferList,
				resourceLimits: this.#opts.resourceLimits,
				execArgv: this.#opts.execArgv,
				name: `moq-fanout worker ${slot.index}`,
			});
		} catch (e) {
			for (const p of transferList) p.close();
			this.#fail(slot, asError(e));
			return;
		}
		slot.worker = worker;
		slot.exited = new Promise((resolve) => worker.once("exit", () => resolve()));
		const generation = slot.generation;
		worker.on("message", (m: unknown) => this.#onWorkerMessage(slot, generation, m));
		worker.on("error", (e: unknown) => {
			slot.lastError = asError(e);
		});
		worker.on("messageerror", (e: unknown) => {
			this.#log.warn("worker message could not be deserialized", { worker: slot.index, error: asError(e).message });
		});
		worker.on("exit", (code: number) => this.#onWorkerExit(slot, worker, code));
		if (this.#opts.readyTimeoutMs > 0) {
			slot.readyTimer = setTimeout(() => {
				slot.readyTimer = null;
				const e = new Error(`worker ${slot.index} did not report ready within ${this.#opts.readyTimeoutMs} ms`);
				slot.lastError = e;
				if (!this.#started) this.#failStart?.(e);
				else void worker.terminate();
			}, this.#opts.readyTimeoutMs);
		}
	}

	#onWorkerMessage(slot: Slot, generation: number, m: unknown): void {
		if (!isFromWorker(m) || generation !== slot.generation) return;
		if (m.type === "app") {
			for (const h of this.#onMessage) h(slot.index, m.msg);
			return;
		}
		if (slot.ready) return;
		if (slot.readyTimer) clearTimeout(slot.readyTimer);
		slot.readyTimer = null;
		slot.ready = true;
		this.state.setReady(slot.index, true);
		slot.readyAt = performance.now();
		slot.info = m.info;
		this.#log.debug("worker ready", { worker: slot.index, generation, threadId: slot.worker?.threadId });
		for (const h of this.#onReady) h(slot.index, m.info, generation);
	}

	#onWorkerExit(slot: Slot, worker: Worker, code: number): void {
		if (slot.worker !== worker) return;
		if (slot.readyTimer) clearTimeout(slot.readyTimer);
		slot.readyTimer = null;
		slot.worker = null;
		const wasReady = slot.ready;
		slot.ready = false;
		this.state.setReady(slot.index, false);
		const error = slot.lastError;
		for (const h of this.#onExit) h(slot.index, code, error);
		if (this.#closing) return;
		// The dead thread's sessions and caches are gone; its counters stay monotonic.
		this.counters.resetGauges(slot.index);
		if (!this.#started) {
			const why = error ? `: ${error.message}` : "";
			this.#failStart?.(
				new Error(`worker ${slot.index} exited with code ${code} before it was ready${why}`, {
					cause: error ?? undefined,
				}),
			);
			return;
		}
		// The survivors hold broadcasts, subscriptions and mesh ports that lead to the dead thread:
		// tell them now, not when the replacement starts (that can be a whole backoff later).
		const down: ToWorker = { type: "peer-down", index: slot.index };
		for (const other of this.#slots) other.worker?.postMessage(down);
		this.#fail(slot, error ?? new Error(`exited with code ${code}`), code, wasReady);
	}

	/** True when some slot other than `except` has a worker that reported ready (the relay serves). */
	#anyReady(except: Slot | null): boolean {
		for (const s of this.#slots) if (s !== except && s.ready) return true;
		return false;
	}

	/** Schedules the replacement of a dead slot, backing off on a crash streak. */
	#fail(slot: Slot, error: Error, code?: number, wasReady = false): void {
		if (!this.#started) {
			this.#failStart?.(new Error(`worker ${slot.index} failed to start: ${error.message}`, { cause: error }));
			return;
		}
		if (this.#draining) {
			// Its sessions are gone; a replacement would only refuse new ones until the pool closes.
			this.#log.error("worker died while draining; not replacing it", {
				worker: slot.index,
				generation: slot.generation,
				code,
				error: error.message,
			});
			return;
		}
		if (wasReady && performance.now() - slot.readyAt >= this.#opts.stableAfterMs) slot.streak = 0;
		slot.streak++;
		const base = this.#opts.restartBackoffMs;
		const backoff = Math.min(this.#opts.maxRestartBackoffMs, base * 2 ** (slot.streak - 1));
		// Backing off is only safe while another worker serves. With none, a worker that had been
		// serving comes back at once; one that died while starting (it may fail again the same
		// way) waits the first step only, so a start failure on every slot retries at a bounded rate.
		const allDown = !this.#anyReady(slot);
		const delayMs = allDown ? (wasReady ? 0 : Math.min(backoff, base)) : backoff;
		this.#log.error("worker died; restarting it", {
			worker: slot.index,
			generation: slot.generation,
			code,
			error: error.message,
			stack: error.stack,
			delayMs,
			streak: slot.streak,
			restarts: slot.restarts,
			allDown,
		});
		this.#scheduleRestart(slot, delayMs);
		if (allDown) this.#expedite();
	}

	#scheduleRestart(slot: Slot, delayMs: number): void {
		if (slot.restartTimer) clearTimeout(slot.restartTimer);
		slot.restartDue = performance.now() + delayMs;
		slot.restartTimer = setTimeout(() => {
			slot.restartTimer = null;
			if (this.#closing) return;
			this.#respawn(slot);
		}, delayMs);
	}

	/** No worker serves: every slot still waiting out a backoff restarts within the first step. */
	#expedite(): void {
		const base = this.#opts.restartBackoffMs;
		const latest = performance.now() + base;
		for (const s of this.#slots) {
			if (s.restartTimer === null || s.restartDue <= latest) continue;
			this.#log.warn("no worker is serving; cutting a restart backoff short", {
				worker: s.index,
				remainingMs: Math.round(s.restartDue - latest + base),
			});
			this.#scheduleRestart(s, base);
		}
	}

	/** Starts a replacement in `slot` and rewires the mesh between it and every live worker. */
	#respawn(slot: Slot): void {
		const peers: (MessagePort | null)[] = new Array(this.count).fill(null);
		for (const other of this.#slots) {
			if (other === slot || other.worker === null) continue;
			const { port1, port2 } = new MessageChannel();
			peers[other.index] = port1;
			// Messages to a worker that has not started yet are queued by Node, so this also
			// reaches a peer that is itself still starting.
			const msg: ToWorker = { type: "peer", index: slot.index, port: port2 };
			other.worker.postMessage(msg, [port2]);
		}
		slot.restarts++;
		this.counters.addRestart(slot.index);
		this.#log.info("worker restarting", {
			worker: slot.index,
			generation: slot.generation + 1,
			restarts: slot.restarts,
		});
		this.#spawn(slot, peers);
	}

	/** Sends an application message to worker `index` (it arrives with `from` = MAIN). False if the slot is down. */
	post(index: number, msg: unknown): boolean {
		const w = this.#slots[index]?.worker;
		if (!w || this.#closing) return false;
		const m: ToWorker = { type: "app", msg };
		w.postMessage(m);
		return true;
	}

	/** Sends an application message to every running worker. */
	broadcast(msg: unknown): void {
		for (let i = 0; i < this.count; i++) this.post(i, msg);
	}

	/** Application messages from workers (`ctx.sendToMain`). Returns an unsubscribe function. */
	onMessage(handler: PoolMessageHandler): () => void {
		this.#onMessage.add(handler);
		return () => this.#onMessage.delete(handler);
	}

	/** Called each time a worker (first start or replacement) reports ready. */
	onWorkerReady(handler: ReadyHandler): () => void {
		this.#onReady.add(handler);
		return () => this.#onReady.delete(handler);
	}

	/** Called each time a worker thread exits (crash, or shutdown during close). */
	onWorkerExit(handler: ExitHandler): () => void {
		this.#onExit.add(handler);
		return () => this.#onExit.delete(handler);
	}

	/** Replacements across all slots. */
	get restarts(): number {
		let n = 0;
		for (const s of this.#slots) n += s.restarts;
		return n;
	}

	status(): WorkerStatus[] {
		return this.#slots.map((s) => ({
			index: s.index,
			threadId: s.worker?.threadId ?? null,
			generation: s.generation,
			ready: s.ready,
			restarts: s.restarts,
			info: s.info,
		}));
	}

	/**
	 * Marks the pool as draining (workers' `/health` answers 503 from `state`) and stops replacing
	 * workers that die. The workers keep running; tell them what to do with `broadcast`, end with `close`.
	 */
	drain(): void {
		if (this.#draining) return;
		this.#draining = true;
		this.state.setDraining();
		for (const s of this.#slots) {
			if (s.restartTimer) clearTimeout(s.restartTimer);
			s.restartTimer = null;
		}
	}

	/**
	 * Asks every worker to drain (`{type:"shutdown"}`: worker-side `onShutdown` handlers run),
	 * waits up to `timeoutMs` for them to exit, then terminates the rest. Idempotent: later
	 * calls return the same promise.
	 */
	close(timeoutMs = 5000): Promise<void> {
		this.#closing ??= this.#close(timeoutMs);
		return this.#closing;
	}

	async #close(timeoutMs: number): Promise<void> {
		const t0 = performance.now();
		for (const s of this.#slots) {
			if (s.restartTimer) clearTimeout(s.restartTimer);
			if (s.readyTimer) clearTimeout(s.readyTimer);
			s.restartTimer = s.readyTimer = null;
		}
		const live = this.#slots.filter((s) => s.worker !== null);
		const shutdown: ToWorker = { type: "shutdown" };
		for (const s of live) s.worker!.postMessage(shutdown);
		let timer: ReturnType<typeof setTimeout> | null = null;
		const timedOut = new Promise<void>((resolve) => {
			timer = setTimeout(resolve, timeoutMs);
		});
		await Promise.race([Promise.all(live.map((s) => s.exited)), timedOut]);
		if (timer) clearTimeout(timer);
		const stragglers = this.#slots.filter((s) => s.worker !== null).map((s) => s.index);
		if (stragglers.length > 0)
			this.#log.warn("workers did not drain in time; terminating them", { workers: stragglers, timeoutMs });
		await this.#terminateAll();
		this.#log.info("worker pool closed", { ms: Math.round(performance.now() - t0) });
	}

	async #terminateAll(): Promise<void> {
		const pending: Promise<void>[] = [];
		for (const s of this.#slots) {
			if (s.readyTimer) clearTimeout(s.readyTimer);
			if (s.restartTimer) clearTimeout(s.restartTimer);
			s.readyTimer = s.restartTimer = null;
			if (s.worker) {
				void s.worker.terminate();
				pending.push(s.exited);
			}
		}
		await Promise.all(pending);
	}
}
