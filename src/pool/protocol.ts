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
