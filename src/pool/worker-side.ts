/**
 * The worker's end of the pool: its index, the direct mesh to the other workers, its counters,
 * and the ready/shutdown handshake with the main thread. Call `connectToPool()` once at the top
 * of the worker's entry module.
 *
 * Peer messages are batched: everything sent to one peer during one synchronous run goes out as
 * one array in one postMessage (flushed on a microtask), so a burst costs one structured clone
 * and one wake-up of the receiver instead of one per message.
 */
import { type MessagePort, parentPort, workerData } from "node:worker_threads";
import { CountersReader, WorkerCounters, type WorkerFigures } from "./counters.ts";
import { type FromWorker, isPoolWorkerData, isToWorker, MAIN, PoolState, type PoolWorkerData } from "./protocol.ts";

export { MAIN } from "./protocol.ts";

/** `from` is the sending worker's index, or `MAIN` (-1) for `pool.post()`/`pool.broadcast()`. */
export type PeerMessageHandler = (from: number, msg: unknown) => void;

export interface PoolContext {
	readonly index: number;
	readonly count: number;
	/** 1 for this slot's first thread, +1 per replacement. */
	readonly generation: number;
	/** What the main thread's `workerData(index)` returned for this worker. */
	readonly data: unknown;
	/** This worker's shared counters (hot path: `counters.slots[Field.x] += n`). Sampling runs once a second. */
	readonly counters: WorkerCounters;
	/** Every worker's figures, read from shared memory (for /metrics served by this worker). */
	figures(): WorkerFigures[];
	/** The pool's readiness, from shared memory: how many workers are ready, and whether the pool drains. */
	poolState(): { ready: number; count: number; draining: boolean };
	/**
	 * Sends to worker `to` directly (batched per peer). Control plane only. A message to a peer
	 * that is down or being replaced is dropped; `onPeerRestart` tells you when to resync.
	 */
	send(to: number, msg: unknown): void;
	/** Sends to every other worker. */
	broadcast(msg: unknown): void;
	/** Sends to the main thread (`pool.onMessage`). */
	sendToMain(msg: unknown): void;
	/** Messages from peers and from the main thread. Peer messages are held until the first handler is set. */
	onMessage(handler: PeerMessageHandler): void;
	/** Worker `index` was replaced: the mesh to it is fresh, and it has lost its state. */
	onPeerRestart(handler: (index: number) => void): void;
	/**
	 * Worker `index` exited (crash or exit): everything it held is gone now. Sends to it are dropped
	 * until `onPeerRestart` reports its replacement.
	 */
	onPeerDown(handler: (index: number) => void): void;
	/** Tells the main thread this worker is serving (once). */
	ready(info?: unknown): void;
	/**
	 * Runs on `pool.close()`: drain here (close listeners, end sessions). When every handler has
	 * settled the mesh is closed and the thread exits.
	 */
	onShutdown(handler: () => void | Promise<void>): void;
}

let context: PoolContext | null = null;

/** Connects this worker to its pool; later calls return the same context. */
export function connectToPool(): PoolContext {
	context ??= createContext();
	return context;
}

function createContext(): PoolContext {
	const port = parentPort;
	if (!port || !isPoolWorkerData(workerData))
		throw new Error("connectToPool() must run inside a WorkerPool worker thread");
	const wd: PoolWorkerData = workerData;
	const { index, count } = wd;
	const peers: (MessagePort | null)[] = wd.peers.slice();
	const outbox: (unknown[] | null)[] = new Array(count).fill(null);
	const messageHandlers: PeerMessageHandler[] = [];
	const restartHandlers: ((index: number) => void)[] = [];
	const downHandlers: ((index: number) => void)[] = [];
	const shutdownHandlers: (() => void | Promise<void>)[] = [];
	const counters = new WorkerCounters(wd.counters, index);
	const reader = new CountersReader(wd.counters);
	const state = new PoolState(wd.state);
	let flushScheduled = false;
	let listening = false;
	let readySent = false;
	let shuttingDown = false;

	const deliver = (from: number, msg: unknown) => {
		for (const h of messageHandlers) h(from, msg);
	};

	// One listener per peer port; `from` is known from the port, so senders never stamp it.
	const listen = (from: number, p: MessagePort) => {
		p.on("message", (batch: unknown) => {
			if (!Array.isArray(batch)) return;
			for (const msg of batch) deliver(from, msg);
		});
		// The parent port keeps the thread alive; peer ports must not keep a finished worker up.
		p.unref();
	};

	const flush = () => {
		flushScheduled = false;
		for (let to = 0; to < count; to++) {
			const batch = outbox[to];
			if (batch === null) continue;
			outbox[to] = null;
			peers[to]?.postMessage(batch);
		}
	};

	const send = (to: number, msg: unknown) => {
		if (!Number.isInteger(to) || to < 0 || to >= count || to === index) {
			throw new RangeError(`send: no peer worker ${to} (this is worker ${index} of ${count})`);
		}
		if (shuttingDown) return;
		const batch = outbox[to];
		if (batch === null) outbox[to] = [msg];
		else batch.push(msg);
		if (!flushScheduled) {
			flushScheduled = true;
			queueMicrotask(flush);
		}
	};

	const post = (m: FromWorker) => port.postMessage(m);

	const shutdown = async () => {
		if (shuttingDown) return;
		shuttingDown = true;
		for (const h of shutdownHandlers) {
			try {
				await h();
			} catch (e) {
				// A failing drain must not keep the thread alive; the main thread logs the exit.
				process.emitWarning(`shutdown handler failed: ${e instanceof Error ? e.message : String(e)}`);
			}
		}
		counters.stopSampling();
		for (const p of peers) p?.close();
		port.close();
		process.exit(0);
	};

	port.on("message", (m: unknown) => {
		if (!isToWorker(m)) return;
		switch (m.type) {
			case "peer": {
				peers[m.index]?.close();
				peers[m.index] = m.port;
				if (listening) listen(m.index, m.port);
				for (const h of restartHandlers) h(m.index);
				return;
			}
			case "peer-down": {
				// The dead thread's end of the channel is gone: close ours so it is not kept (and its
				// queued batches are not held) until the replacement arrives.
				peers[m.index]?.close();
				peers[m.index] = null;
				outbox[m.index] = null;
				for (const h of downHandlers) h(m.index);
				return;
			}
			case "app":
				deliver(MAIN, m.msg);
				return;
			case "shutdown":
				void shutdown();
				return;
		}
	});

	counters.startSampling();

	return {
		index,
		count,
		generation: wd.generation,
		data: wd.data,
		counters,
		figures: () => reader.readAll(),
		poolState: () => ({ ready: state.ready, count: state.count, draining: state.draining }),
		send,
		broadcast(msg) {
			for (let to = 0; to < count; to++) if (to !== index) send(to, msg);
		},
		sendToMain(msg) {
			post({ type: "app", msg });
		},
		onMessage(handler) {
			messageHandlers.push(handler);
			if (listening) return;
			// Ports buffer messages until a listener is attached, so nothing sent before the
			// worker set up its handlers is lost.
			listening = true;
			for (let i = 0; i < count; i++) {
				const p = peers[i];
				if (p) listen(i, p);
			}
		},
		onPeerRestart(handler) {
			restartHandlers.push(handler);
		},
		onPeerDown(handler) {
			downHandlers.push(handler);
		},
		ready(info) {
			if (readySent) return;
			readySent = true;
			post({ type: "ready", info });
		},
		onShutdown(handler) {
			shutdownHandlers.push(handler);
		},
	};
}
