/**
 * The messages between the pool's main thread and its workers, and the shape of the pool's part
 * of `workerData`. Control plane only: structured clone, no hot-path traffic.
 */
import type { MessagePort } from "node:worker_threads";

/** `from` of a message that came from the main thread rather than a peer worker. */
export const MAIN = -1;

/** What the pool puts in each worker's `workerData`. */
export interface PoolWorkerData {
	/** Marks the object as ours, so `connectToPool()` can refuse to run elsewhere with a clear error. */
	readonly moqFanoutPool: 1;
	readonly index: number;
	readonly count: number;
	/** 1 for the first thread in this slot, +1 per replacement. */
	readonly generation: number;
	/** One end of a MessageChannel per other worker, by that worker's index (own index: null). */
	readonly peers: (MessagePort | null)[];
	/** The pool's shared counters (see counters.ts). */
	readonly counters: SharedArrayBuffer;
	/** The pool's state (see `PoolState`): whether it drains, and which slots are ready. Main thread writes. */
	readonly state: SharedArrayBuffer;
	/** What the caller's `workerData(index)` returned. */
	readonly data: unknown;
}

/** Main thread → worker. */
export type ToWorker =
	| { readonly type: "peer"; readonly index: number; readonly port: MessagePort }
	/** Worker `index` exited; its replacement (if any) is announced later with `peer`. */
	| { readonly type: "peer-down"; readonly index: number }
	| { readonly type: "shutdown" }
	| { readonly type: "app"; readonly msg: unknown };

/** Worker → main thread. */
export type FromWorker =
	| { readonly type: "ready"; readonly info: unknown }
	| { readonly type: "app"; readonly msg: unknown };

/**
 * The pool's state in shared memory, so any worker can answer readiness (/health) without
 * messaging: Int32 slot 0 is 1 once the pool drains, slot 1 + i is 1 while worker i is ready.
 * Only the main thread writes it.
 */
export class PoolState {
	readonly buffer: SharedArrayBuffer;
	readonly count: number;
	readonly #slots: Int32Array;

	constructor(bufferOrCount: SharedArrayBuffer | number) {
		this.buffer =
			typeof bufferOrCount === "number"
				? new SharedArrayBuffer((1 + bufferOrCount) * Int32Array.BYTES_PER_ELEMENT)
				: bufferOrCount;
		this.#slots = new Int32Array(this.buffer);
		this.count = this.#slots.length - 1;
	}

	get draining(): boolean {
		return Atomics.load(this.#slots, 0) === 1;
	}

	/** Workers that reported ready and have not exited since. */
	get ready(): number {
		let n = 0;
		for (let i = 1; i <= this.count; i++) n += Atomics.load(this.#slots, i);
		return n;
	}

	setDraining(): void {
		Atomics.store(this.#slots, 0, 1);
	}

	setReady(index: number, ready: boolean): void {
		Atomics.store(this.#slots, 1 + index, ready ? 1 : 0);
	}
}

export function isPoolWorkerData(v: unknown): v is PoolWorkerData {
	return typeof v === "object" && v !== null && (v as { moqFanoutPool?: unknown }).moqFanoutPool === 1;
}

export function isToWorker(v: unknown): v is ToWorker {
	if (typeof v !== "object" || v === null) return false;
	const t = (v as { type?: unknown }).type;
	return t === "peer" || t === "peer-down" || t === "shutdown" || t === "app";
}

export function isFromWorker(v: unknown): v is FromWorker {
	if (typeof v !== "object" || v === null) return false;
	const t = (v as { type?: unknown }).type;
	return t === "ready" || t === "app";
}
