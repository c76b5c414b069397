/**
 * `GET /debug/gc-probe` (only with `MOQ_FANOUT_GC_PROBE=1`; see src/metrics/collection.ts): every
 * worker's probe counts, after forcing full collections in every worker (`?gc=0` skips that), and
 * its memory figures. With `?snapshot=1` each worker also writes a V8 heap snapshot into the temp
 * directory and reports its file (for diffing by constructor and retainers).
 *
 * Like the status page (status.ts), the answering worker asks the others over the mesh (`gc?`) and
 * gathers their answers (`gc`); a worker that does not answer in time is reported `answered: false`.
 */
import os from "node:os";
import path from "node:path";
import v8 from "node:v8";
import { collectGarbage, type ProbeCounts, probeCounts } from "../metrics/collection.ts";
import type { Relay } from "../relay/relay.ts";

export interface ProbeRequest {
	/** Force full collections first (several, with turns of the event loop in between). */
	gc: boolean;
	/** Write a heap snapshot (after the collections). */
	snapshot: boolean;
}

export interface WorkerProbeReport {
	index: number;
	answered: boolean;
	/** Whether a forced collection ran (false: no gc() available, or not asked for). */
	collected: boolean;
	created: ProbeCounts;
	live: ProbeCounts;
	/** This thread's process.memoryUsage() (heap figures are the thread's; rss is the process's). */
	memory: { rss: number; heapTotal: number; heapUsed: number; external: number; arrayBuffers: number };
	/** The relay core's per-broadcast and per-session state in this worker. */
	relay: { broadcasts: number; tracks: number; remoteTracks: number; announces: number; sessions: number };
	snapshot: string | null;
}

export type GcProbeMessage =
	| { type: "gc?"; id: number; request: ProbeRequest }
	| { type: "gc"; id: number; report: WorkerProbeReport };

export interface ProbePool {
	readonly index: number;
	readonly count: number;
	send(to: number, msg: unknown): void;
}

/** Answers for this worker. */
export async function localReport(index: number, relay: Relay, request: ProbeRequest): Promise<WorkerProbeReport> {
	const collected = request.gc ? await collectGarbage() : false;
	const snapshot = request.snapshot
		? v8.writeHeapSnapshot(path.join(os.tmpdir(), `moq-fanout-${process.pid}-w${index}-${Date.now()}.heapsnapshot`))
		: null;
	const counts = probeCounts();
	const m = process.memoryUsage();
	let tracks = 0;
	for (const b of relay.broadcasts.values()) tracks += b.tracks.size;
	return {
		index,
		answered: true,
		collected,
		created: counts.created,
		live: counts.live,
		memory: {
			rss: m.rss,
			heapTotal: m.heapTotal,
			heapUsed: m.heapUsed,
			external: m.external,
			arrayBuffers: m.arrayBuffers,
		},
		relay: {
			broadcasts: relay.broadcasts.size,
			tracks,
			remoteTracks: relay.remoteTracks.size,
			announces: relay.announces.size,
			sessions: relay.figures.sessions,
		},
		snapshot,
	};
}

export class GcProbeCollector {
	readonly #relay: Relay;
	readonly #pool: ProbePool;
	readonly #timeoutMs: number;
	readonly #rounds = new Map<number, (from: number, r: WorkerProbeReport) => void>();
	#nextId = 1;

	constructor(relay: Relay, pool: ProbePool, timeoutMs = 10_000) {
		this.#relay = relay;
		this.#pool = pool;
		this.#timeoutMs = timeoutMs;
	}

	/** A peer's question (answered once its collections ran) or an answer to one of ours. */
	receive(from: number, msg: GcProbeMessage): void {
		if (from < 0 || from >= this.#pool.count || from === this.#pool.index) return;
		if (msg.type === "gc?") {
			void localReport(this.#pool.index, this.#relay, msg.request).then((report) =>
				this.#pool.send(from, { type: "gc", id: msg.id, report } satisfies GcProbeMessage),
			);
			return;
		}
		this.#rounds.get(msg.id)?.(from, msg.report);
	}

	/** Every worker's report, by index; the workers collect concurrently. */
	async collect(request: ProbeRequest): Promise<{ workers: WorkerProbeReport[] }> {
		const { index, count } = this.#pool;
		const reports: (WorkerProbeReport | null)[] = new Array(count).fill(null);
		const id = this.#nextId++;
		const others = new Promise<void>((resolve) => {
			let waiting = count - 1;
			if (waiting === 0) return resolve();
			const timer = setTimeout(() => finish(), this.#timeoutMs);
			const finish = () => {
				clearTimeout(timer);
				this.#rounds.delete(id);
				resolve();
			};
			this.#rounds.set(id, (from, r) => {
				if (reports[from] !== null) return;
				reports[from] = r;
				if (--waiting === 0) finish();
			});
			for (let w = 0; w < count; w++)
				if (w !== index) this.#pool.send(w, { type: "gc?", id, request } satisfies GcProbeMessage);
		});
		reports[index] = await localReport(index, this.#relay, request);
		await others;
		return { workers: reports.map((r, w) => r ?? missing(w)) };
	}
}

function missing(index: number): WorkerProbeReport {
	const none = { session: 0, connection: 0, track: 0, ring: 0, reader: 0, serve: 0 };
	return {
		index,
		answered: false,
		collected: false,
		created: none,
		live: { ...none },
		memory: { rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 },
		relay: { broadcasts: 0, tracks: 0, remoteTracks: 0, announces: 0, sessions: 0 },
		snapshot: null,
	};
}
