/**
 * The data behind the status page (`GET /status`, rendered by `GET /`: src/http/status-page.ts).
 *
 * Gathered on request, nothing on the hot path:
 * - per worker: sessions by transport, subscriptions, tracks and byte counters, read from the
 *   pool's shared counters (src/pool/counters.ts), which any worker reads for every worker; each
 *   worker copies its figures there once a second, so the page turns byte counters into a bitrate
 *   over successive samples;
 * - the broadcasts: every worker holds a replica of every announcement (`Relay.broadcasts`), so the
 *   list is the answering worker's own;
 * - viewers per broadcast and per track: a viewer's subscriptions live on the worker holding its
 *   session, so the answering worker asks every other one (`status?`) for its counts and sums the
 *   answers (`status`). A worker that does not answer within `timeoutMs` (down, being replaced) is
 *   left out and flagged (`answered: false`, `complete: false`).
 *
 * Concurrent requests share one round of questions, so polling clients cost one message per peer
 * per round, however many there are.
 */
import type { WorkerFigures } from "../pool/counters.ts";
import type { Relay } from "../relay/relay.ts";

/** One worker's viewers: per broadcast with tracks there, [path, distinct viewer sessions, [track, subscriptions][]]. */
export type LocalViewers = [path: string, viewers: number, tracks: [name: string, subscriptions: number][]][];

/** Worker → worker: the status page's question and its answer. */
export type StatusMessage = { type: "status?"; id: number } | { type: "status"; id: number; viewers: LocalViewers };

export interface WorkerStatus {
	index: number;
	sessions: { quic: number; webtransport: number; websocket: number };
	subscriptions: number;
	tracks: number;
	/** Broadcasts whose publisher's session is on this worker. */
	publishing: number;
	/** Distinct viewer sessions, summed over broadcasts (a session watching two counts twice). */
	viewers: number;
	bytesIn: number;
	bytesOut: number;
	groupsIn: number;
	groupsOut: number;
	groupsDropped: number;
	/** Datagrams the kernel dropped at this worker's QUIC socket, its receive queue full (quic/receive-queue.ts). */
	udpRecvDrops: number;
	cacheBytes: number;
	eventLoopUtilization: number;
	restarts: number;
	/** Whether it answered for its viewers in time (false: its viewers are missing from the counts). */
	answered: boolean;
}

export interface TrackStatus {
	name: string;
	/** Subscriptions to this track, relay-wide. */
	viewers: number;
}

export interface BroadcastStatus {
	path: string;
	/** The worker holding the publisher's session. */
	worker: number;
	/** Distinct viewer sessions subscribed to any of its tracks, relay-wide. */
	viewers: number;
	tracks: TrackStatus[];
}

export interface RelayStatus {
	/** Wall-clock ms when gathered (the page divides byte deltas by its deltas). */
	time: number;
	version: string;
	/** The worker that answered this request. */
	worker: number;
	/** Every worker answered for its viewers. */
	complete: boolean;
	workers: WorkerStatus[];
	broadcasts: BroadcastStatus[];
}

/** This worker's viewers of each broadcast it has tracks of (computed on request). */
export function localViewers(relay: Relay): LocalViewers {
	const out: LocalViewers = [];
	for (const b of relay.broadcasts.values()) {
		if (b.tracks.size === 0) continue;
		const sessions = new Set<object>();
		const tracks: [string, number][] = [];
		for (const [name, t] of b.tracks) {
			let n = 0;
			for (const c of t.consumers) {
				if (c.viewer === undefined) continue;
				n++;
				sessions.add(c.viewer);
			}
			tracks.push([name, n]);
		}
		out.push([b.path, sessions.size, tracks]);
	}
	return out;
}

/** What the collector needs of the pool (the worker's PoolContext). */
export interface StatusPool {
	readonly index: number;
	readonly count: number;
	send(to: number, msg: unknown): void;
	figures(): WorkerFigures[];
}

interface Round {
	readonly answers: (LocalViewers | null)[];
	waiting: number;
	finish(): void;
}

export class StatusCollector {
	readonly #relay: Relay;
	readonly #pool: StatusPool;
	readonly #version: string;
	readonly #timeoutMs: number;
	readonly #rounds = new Map<number, Round>();
	#nextId = 1;
	#current: Promise<RelayStatus> | null = null;

	constructor(relay: Relay, pool: StatusPool, version: string, timeoutMs = 500) {
		this.#relay = relay;
		this.#pool = pool;
		this.#version = version;
		this.#timeoutMs = timeoutMs;
	}

	/** The relay's status; concurrent calls share one round of questions. */
	collect(): Promise<RelayStatus> {
		this.#current ??= this.#round().finally(() => {
			this.#current = null;
		});
		return this.#current;
	}

	/** A peer's question (answered at once) or an answer to one of ours. */
	receive(from: number, msg: StatusMessage): void {
		if (from < 0 || from >= this.#pool.count || from === this.#pool.index) return;
		if (msg.type === "status?") {
			this.#pool.send(from, { type: "status", id: msg.id, viewers: localViewers(this.#relay) } satisfies StatusMessage);
			return;
		}
		const round = this.#rounds.get(msg.id);
		if (round === undefined || round.answers[from] !== null) return;
		round.answers[from] = msg.viewers;
		if (--round.waiting === 0) round.finish();
	}

	async #round(): Promise<RelayStatus> {
		const { index, count } = this.#pool;
		const answers: (LocalViewers | null)[] = new Array(count).fill(null);
		answers[index] = localViewers(this.#relay);
		if (count > 1) {
			const id = this.#nextId++;
			await new Promise<void>((resolve) => {
				const timer = setTimeout(() => finish(), this.#timeoutMs);
				const finish = () => {
					clearTimeout(timer);
					this.#rounds.delete(id);
					resolve();
				};
				this.#rounds.set(id, { answers, waiting: count - 1, finish });
				for (let w = 0; w < count; w++)
					if (w !== index) this.#pool.send(w, { type: "status?", id } satisfies StatusMessage);
			});
		}
		return this.#assemble(answers);
	}

	#assemble(answers: readonly (LocalViewers | null)[]): RelayStatus {
		const broadcasts = new Map<string, BroadcastStatus>();
		const publishing = new Array<number>(answers.length).fill(0);
		for (const b of this.#relay.broadcasts.values()) {
			broadcasts.set(b.path, { path: b.path, worker: b.worker, viewers: 0, tracks: [] });
			if (b.worker >= 0 && b.worker < publishing.length) publishing[b.worker]++;
		}
		const viewers = new Array<number>(answers.length).fill(0);
		answers.forEach((local, w) => {
			for (const [path, n, tracks] of local ?? []) {
				const b = broadcasts.get(path);
				// Announced or ended on that worker a moment before or after our replica saw it.
				if (b === undefined) continue;
				b.viewers += n;
				viewers[w] += n;
				for (const [name, subs] of tracks) {
					const t = b.tracks.find((x) => x.name === name);
					if (t) t.viewers += subs;
					else b.tracks.push({ name, viewers: subs });
				}
			}
		});
		const list = [...broadcasts.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
		for (const b of list) b.tracks.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
		const workers = this.#pool.figures().map(
			(f): WorkerStatus => ({
				index: f.index,
				sessions: { quic: f.sessionsQuic, webtransport: f.sessionsWebTransport, websocket: f.sessionsWebSocket },
				subscriptions: f.subscriptions,
				tracks: f.tracks,
				publishing: publishing[f.index] ?? 0,
				viewers: viewers[f.index] ?? 0,
				bytesIn: f.bytesIn,
				bytesOut: f.bytesOut,
				groupsIn: f.groupsIn,
				groupsOut: f.groupsOut,
				groupsDropped: f.groupsDropped,
				udpRecvDrops: f.quicUdpRecvDrops,
				cacheBytes: f.cacheBytes,
				eventLoopUtilization: f.eventLoopUtilization,
				restarts: f.restarts,
				answered: answers[f.index] !== null,
			}),
		);
		return {
			time: Date.now(),
			version: this.#version,
			worker: this.#pool.index,
			complete: answers.every((a) => a !== null),
			workers,
			broadcasts: list,
		};
	}
}
