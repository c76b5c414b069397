import type { CacheBudget } from "../cache/budget.ts";
import type { RelayConfig } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import { AnnounceRegistry } from "./announcements.ts";
import { RelayTrack } from "./track.ts";
import type { UpstreamPublisher } from "./types.ts";

/** A broadcast published through this relay by one upstream publisher. */
export class RelayBroadcast {
	readonly path: string;
	readonly publisher: UpstreamPublisher;
	readonly tracks = new Map<string, RelayTrack>();

	constructor(path: string, publisher: UpstreamPublisher) {
		this.path = path;
		this.publisher = publisher;
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
	#nextSessionId = 1;

	constructor(config: RelayConfig, log: Logger, budget: CacheBudget | null) {
		this.config = config;
		this.log = log;
		this.budget = budget;
		this.hopId = 1 + Math.floor(Math.random() * 0xfffffffffff);
	}

	nextSessionId(): number {
		return this.#nextSessionId++;
	}

	/** A publisher announced `path` active. Replaces an older publisher of the same path. */
	publish(path: string, hops: readonly number[], publisher: UpstreamPublisher): RelayBroadcast {
		const old = this.broadcasts.get(path);
		if (old) this.#drop(old);
		const b = new RelayBroadcast(path, publisher);
		this.broadcasts.set(path, b);
		this.figures.broadcasts = this.broadcasts.size;
		this.announces.add({ path, hops, owner: publisher.id });
		return b;
	}

	/** The publisher announced `path` ended, or went away. */
	unpublish(path: string, publisher: UpstreamPublisher): void {
		const b = this.broadcasts.get(path);
		if (!b || b.publisher !== publisher) return;
		this.broadcasts.delete(path);
		this.figures.broadcasts = this.broadcasts.size;
		this.announces.remove(path, publisher.id);
		this.#drop(b);
	}

	#drop(b: RelayBroadcast): void {
		for (const t of b.tracks.values()) {
			t.ring.abortTrack(24);
			t.notify();
			t.close();
		}
		b.tracks.clear();
		this.figures.tracks = this.#countTracks();
	}

	/**
	 * The relay track for a viewer's subscription, created (with its ring) on first use.
	 * undefined: no such broadcast. null: the cache budget is exhausted.
	 */
	track(path: string, name: string): RelayTrack | null | undefined {
		const b = this.broadcasts.get(path);
		if (!b) return undefined;
		let t = b.tracks.get(name);
		if (t && !t.closed) return t;
		const bytes = this.config.cache.trackBytes;
		if (this.budget && !this.budget.tryReserve(bytes)) return null;
		t = new RelayTrack(path, name, b.publisher, bytes, this.config.limits.maxFrameBytes, this.budget, (gone) => {
			if (b.tracks.get(name) === gone) b.tracks.delete(name);
			this.figures.tracks = this.#countTracks();
		});
		b.tracks.set(name, t);
		this.figures.tracks = this.#countTracks();
		return t;
	}

	#countTracks(): number {
		let n = 0;
		for (const b of this.broadcasts.values()) n += b.tracks.size;
		return n;
	}
}
