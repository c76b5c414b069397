import type { CacheBudget } from "../cache/budget.ts";
import type { RingWriter } from "../cache/ring-writer.ts";
import type { RelayConfig } from "../config/types.ts";
import { DROPPED } from "../errors/codes.ts";
import type { Logger } from "../log/logger.ts";
import type { Path } from "../path/index.ts";
import { AnnounceRegistry } from "./announcements.ts";
import { RemoteTrack, type RemoteTrackLink } from "./remote-track.ts";
import { RelayTrack, type TrackConsumer } from "./track.ts";
import type { SubscriptionParams, TrackInfo, UpstreamPublisher } from "./types.ts";

/** Announce owner ids at or above this name another worker (REMOTE_OWNER + index); below are local sessions. */
export const REMOTE_OWNER = 1_000_000_000;

/** How the relay core reaches the other workers (the shard link); null when running alone. */
export interface RelayLink extends RemoteTrackLink {
	localPublished(path: Path, hops: readonly number[]): void;
	localUnpublished(path: Path): void;
	/** A local ring has new records: wake the other workers that read it (batched per turn). */
	ringActivity(ring: RingWriter): void;
	/** TRACK_INFO of a broadcast whose publisher is on `worker`. */
	fetchTrackInfo(worker: number, path: Path, track: string): Promise<TrackInfo>;
}

/** A broadcast known to this worker: published by a local session, or by a session on another worker. */
export class RelayBroadcast {
	readonly path: Path;
	/** The local publishing session, or null when another worker holds it. */
	readonly publisher: UpstreamPublisher | null;
	/** The worker holding the publisher's session. */
	readonly worker: number;
	readonly tracks = new Map<string, RelayTrack | RemoteTrack>();
	/** TRACK_INFO per track name, asked of the publisher once. */
	readonly info = new Map<string, Promise<TrackInfo>>();

	constructor(path: Path, publisher: UpstreamPublisher | null, worker: number) {
		this.path = path;
		this.publisher = publisher;
		this.worker = worker;
	}
}

export interface RelayFigures {
	sessions: number;
	broadcasts: number;
	tracks: number;
	subscriptions: number;
	groupsIn: number;
	framesIn: number;
	bytesIn: number;
	groupsOut: number;
	bytesOut: number;
	groupsDropped: number;
}

/** A viewer worker reading one of our rings: it counts as one consumer for the upstream aggregate. */
class RemoteReader implements TrackConsumer {
	params: SubscriptionParams;
	constructor(params: SubscriptionParams) {
		this.params = params;
	}
	attach(): void {}
	drain(): void {}
	abort(): void {}
	fault(): void {}
}

/**
 * The relay core of one worker: which broadcasts exist (a replica of every announcement), the tracks
 * being relayed, and their ring buffers. Sessions talk to it; it never touches a transport.
 */
export class Relay {
	readonly config: RelayConfig;
	readonly log: Logger;
	/** Our hop id in announce chains: random, below 2^53 so JS peers can read it. */
	readonly hopId: number;
	readonly announces = new AnnounceRegistry();
	readonly broadcasts = new Map<string, RelayBroadcast>();
	readonly budget: CacheBudget | null;
	/** This worker's index (0 when alone). */
	readonly worker: number;
	link: RelayLink | null = null;
	readonly figures: RelayFigures = {
		sessions: 0,
		broadcasts: 0,
		tracks: 0,
		subscriptions: 0,
		groupsIn: 0,
		framesIn: 0,
		bytesIn: 0,
		groupsOut: 0,
		bytesOut: 0,
		groupsDropped: 0,
	};
	/** Remote tracks with viewers here: the doorbell drains them. */
	readonly remoteTracks = new Set<RemoteTrack>();
	readonly #remoteReaders = new Map<string, RemoteReader>();
	#nextSessionId = 1;

	constructor(config: RelayConfig, log: Logger, budget: CacheBudget | null, worker = 0, hopId?: number) {
		this.config = config;
		this.log = log;
		this.budget = budget;
		this.worker = worker;
		this.hopId = hopId ?? 1 + Math.floor(Math.random() * 0xfffffffffff);
	}

	nextSessionId(): number {
		return this.#nextSessionId++;
	}

	/** A local publisher announced `path` active. Replaces an older publisher of the same path. */
	publish(path: Path, hops: readonly number[], publisher: UpstreamPublisher): RelayBroadcast {
		const b = this.#install(path, hops, publisher, this.worker, publisher.id);
		this.link?.localPublished(path, hops);
		return b;
	}

	/** A local publisher announced `path` ended, or went away. */
	unpublish(path: Path, publisher: UpstreamPublisher): void {
		const b = this.broadcasts.get(path);
		if (!b || b.publisher !== publisher) return;
		this.#uninstall(b, publisher.id);
		this.link?.localUnpublished(path);
	}

	/** Another worker holds the publisher of `path` (replicated announcement). */
	publishRemote(path: Path, hops: readonly number[], worker: number): void {
		const existing = this.broadcasts.get(path);
		if (existing && existing.publisher === null && existing.worker === worker) return;
		this.#install(path, hops, null, worker, REMOTE_OWNER + worker);
	}

	unpublishRemote(path: Path, worker: number): void {
		const b = this.broadcasts.get(path);
		if (!b || b.publisher !== null || b.worker !== worker) return;
		this.#uninstall(b, REMOTE_OWNER + worker);
	}

	/** A worker died: everything it published is gone. */
	dropWorker(worker: number): void {
		for (const b of [...this.broadcasts.values()]) {
			if (b.publisher !== null || b.worker !== worker) continue;
			// Its rings will never get a TRACK_ABORT record: end the viewers' subscriptions here.
			for (const t of b.tracks.values()) if (t instanceof RemoteTrack) t.abort(DROPPED);
			this.unpublishRemote(b.path, worker);
		}
		for (const [key, r] of this.#remoteReaders) {
			if (key.startsWith(`${worker}\u0000`)) {
				this.#remoteReaders.delete(key);
				// The key is `${worker}\0${path}\0${name}`, built from a Path.
				const [, path, name] = key.split("\u0000") as [string, Path, string];
				const t = this.broadcasts.get(path)?.tracks.get(name);
				if (t instanceof RelayTrack) {
					t.remoteReaders--;
					t.removeConsumer(r);
				}
			}
		}
	}

	#install(path: Path, hops: readonly number[], publisher: UpstreamPublisher | null, worker: number, owner: number) {
		const old = this.broadcasts.get(path);
		if (old) this.#drop(old);
		const b = new RelayBroadcast(path, publisher, worker);
		this.broadcasts.set(path, b);
		this.figures.broadcasts = this.broadcasts.size;
		this.announces.add({ path, hops, owner });
		return b;
	}

	#uninstall(b: RelayBroadcast, owner: number): void {
		this.broadcasts.delete(b.path);
		this.figures.broadcasts = this.broadcasts.size;
		this.announces.remove(b.path, owner);
		this.#drop(b);
	}

	#drop(b: RelayBroadcast): void {
		for (const t of b.tracks.values()) {
			if (t instanceof RelayTrack) {
				t.abortTrack(DROPPED);
				t.close();
			} else if (t.buffer) {
				// The publisher's worker wrote TRACK_ABORT into the ring before telling us: drain it.
				t.deliver();
			} else t.abort(DROPPED);
		}
		b.tracks.clear();
		this.figures.tracks = this.#countTracks();
	}

	/**
	 * The track for a viewer's subscription, created on first use: a local ring when the publisher's
	 * session is here, a remote track (another worker's ring) otherwise.
	 * undefined: no such broadcast. null: the cache budget is exhausted.
	 */
	track(path: Path, name: string): RelayTrack | RemoteTrack | null | undefined {
		const b = this.broadcasts.get(path);
		if (!b) return undefined;
		const existing = b.tracks.get(name);
		if (existing && !existing.closed) return existing;
		if (b.publisher === null) {
			const link = this.link;
			if (!link) return undefined;
			const t = new RemoteTrack(path, name, b.worker, link, (gone) => {
				if (b.tracks.get(name) === gone) b.tracks.delete(name);
				this.remoteTracks.delete(gone);
				this.figures.tracks = this.#countTracks();
			});
			b.tracks.set(name, t);
			this.remoteTracks.add(t);
			this.figures.tracks = this.#countTracks();
			return t;
		}
		return this.#localTrack(b, name);
	}

	#localTrack(b: RelayBroadcast, name: string): RelayTrack | null {
		const existing = b.tracks.get(name);
		if (existing instanceof RelayTrack && !existing.closed) return existing;
		const bytes = this.config.cache.trackBytes;
		if (this.budget && !this.budget.tryReserve(bytes)) return null;
		const publisher = b.publisher!;
		const t = new RelayTrack(b.path, name, publisher, bytes, this.config.limits.maxFrameBytes, this.budget, (gone) => {
			if (b.tracks.get(name) === gone) b.tracks.delete(name);
			this.figures.tracks = this.#countTracks();
		});
		const link = this.link;
		if (link) t.onRingActivity = (ring) => link.ringActivity(ring);
		b.tracks.set(name, t);
		this.figures.tracks = this.#countTracks();
		return t;
	}

	/**
	 * Another worker wants to read a local track (first viewer there). Returns the ring to hand over,
	 * undefined when the broadcast is not (or no longer) published here, null when over budget.
	 */
	remoteWant(
		worker: number,
		path: Path,
		name: string,
		params: TrackConsumer["params"],
	): SharedArrayBuffer | null | undefined {
		const b = this.broadcasts.get(path);
		if (!b || b.publisher === null) return undefined;
		const t = this.#localTrack(b, name);
		if (!t) return null;
		const key = `${worker}\u0000${path}\u0000${name}`;
		if (!this.#remoteReaders.has(key)) {
			const r = new RemoteReader(params);
			this.#remoteReaders.set(key, r);
			t.remoteReaders++;
			t.addConsumer(r);
		}
		return t.ring.buffer;
	}

	remoteUpdate(worker: number, path: Path, name: string, params: TrackConsumer["params"]): void {
		const r = this.#remoteReaders.get(`${worker}\u0000${path}\u0000${name}`);
		const t = this.broadcasts.get(path)?.tracks.get(name);
		if (!r || !(t instanceof RelayTrack)) return;
		r.params = params;
		t.consumerUpdated();
	}

	remoteUnwant(worker: number, path: Path, name: string): void {
		const key = `${worker}\u0000${path}\u0000${name}`;
		const r = this.#remoteReaders.get(key);
		if (!r) return;
		this.#remoteReaders.delete(key);
		const t = this.broadcasts.get(path)?.tracks.get(name);
		if (t instanceof RelayTrack) {
			t.remoteReaders--;
			t.removeConsumer(r);
		}
	}

	/** TRACK_INFO for a track of a known broadcast (asked upstream once, cached with the broadcast). */
	trackInfo(path: Path, name: string): Promise<TrackInfo> | undefined {
		const b = this.broadcasts.get(path);
		if (!b) return undefined;
		let p = b.info.get(name);
		if (!p) {
			if (b.publisher) p = b.publisher.fetchTrackInfo(path, name);
			else if (this.link) p = this.link.fetchTrackInfo(b.worker, path, name);
			else return undefined;
			b.info.set(name, p);
			p.catch(() => b.info.delete(name));
		}
		return p;
	}

	#countTracks(): number {
		let n = 0;
		for (const b of this.broadcasts.values()) n += b.tracks.size;
		return n;
	}
}
