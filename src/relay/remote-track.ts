import { ringReleased } from "../cache/reclaim.ts";
import { RingReader } from "../cache/ring-reader.ts";
import { probe } from "../metrics/collection.ts";
import type { Path } from "../path/index.ts";
import { aggregateOf, drainConsumers, type TrackConsumer, type TrackHost } from "./track.ts";
import type { SubscriptionParams } from "./types.ts";

/** How a remote track reaches the broadcast's owner and publisher workers (the shard link). */
export interface RemoteTrackLink {
	readonly self: number;
	want(path: Path, track: string, params: SubscriptionParams): void;
	update(path: Path, track: string, params: SubscriptionParams): void;
	unwant(path: Path, track: string): void;
}

/**
 * A track whose ring another worker writes (the one holding the publisher's session). This worker's
 * viewers read that SharedArrayBuffer directly; only the subscribe/unsubscribe and the one-time
 * handover of the buffer are messages. The writer's doorbell wakes this worker, once per turn.
 */
export class RemoteTrack implements TrackHost {
	readonly broadcastPath: Path;
	readonly name: string;
	readonly publisherWorker: number;
	readonly consumers = new Set<TrackConsumer>();
	buffer: SharedArrayBuffer | null = null;
	#watcher: RingReader | null = null;
	#closed = false;
	readonly #link: RemoteTrackLink;
	readonly #onEmpty: (t: RemoteTrack) => void;
	#aggregate: SubscriptionParams | null = null;
	/** Adopted by this worker (the route moved here): the local track now holding the viewers. */
	#forward: TrackHost | null = null;

	constructor(
		path: Path,
		name: string,
		publisherWorker: number,
		link: RemoteTrackLink,
		onEmpty: (t: RemoteTrack) => void,
	) {
		this.broadcastPath = path;
		this.name = name;
		this.publisherWorker = publisherWorker;
		this.#link = link;
		this.#onEmpty = onEmpty;
		probe("track", this);
	}

	get closed(): boolean {
		return this.#closed;
	}

	addConsumer(c: TrackConsumer): void {
		if (this.#forward) {
			this.#forward.addConsumer(c);
			return;
		}
		const first = this.consumers.size === 0;
		this.consumers.add(c);
		if (this.buffer) c.attach(this.buffer);
		if (first) {
			this.#aggregate = aggregateOf(this.consumers);
			this.#link.want(this.broadcastPath, this.name, this.#aggregate);
		} else this.consumerUpdated();
	}

	removeConsumer(c: TrackConsumer): void {
		if (this.#forward) {
			this.#forward.removeConsumer(c);
			return;
		}
		if (!this.consumers.delete(c)) return;
		if (this.consumers.size > 0) {
			this.consumerUpdated();
			return;
		}
		if (!this.#closed) this.#link.unwant(this.broadcastPath, this.name);
		this.close();
		this.#onEmpty(this);
	}

	consumerUpdated(): void {
		if (this.#forward) {
			this.#forward.consumerUpdated();
			return;
		}
		const next = aggregateOf(this.consumers);
		const a = this.#aggregate;
		if (a && a.priority === next.priority && a.ordered === next.ordered && a.maxLatencyMs === next.maxLatencyMs) return;
		this.#aggregate = next;
		if (!this.#closed) this.#link.update(this.broadcastPath, this.name, next);
	}

	/** The request for the ring was lost (the owner worker died before answering): send it again. */
	rewant(): void {
		if (this.#closed || this.buffer || this.consumers.size === 0) return;
		this.#aggregate = aggregateOf(this.consumers);
		this.#link.want(this.broadcastPath, this.name, this.#aggregate);
	}

	/** The publisher's worker handed over the ring. */
	attach(buffer: SharedArrayBuffer): void {
		if (this.#closed || this.buffer) return;
		this.buffer = buffer;
		this.#watcher = new RingReader(buffer);
		this.#watcher.watch(this.#link.self);
		for (const c of this.consumers) c.attach(buffer);
		this.deliver();
	}

	/**
	 * This worker handed the ring over (its route moved to another worker's session): the viewers it
	 * served locally read on, already attached to this very buffer, now written by that worker.
	 */
	continueFrom(buffer: SharedArrayBuffer, consumers: Iterable<TrackConsumer>): void {
		this.buffer = buffer;
		this.#watcher = new RingReader(buffer);
		this.#watcher.watch(this.#link.self);
		for (const c of consumers) this.consumers.add(c);
		this.#aggregate = aggregateOf(this.consumers);
		this.deliver();
	}

	/**
	 * The route moved to this worker, which now writes the ring (`track`): the local viewers become
	 * its consumers (still attached to the same buffer), and this track stops reading as a remote one.
	 */
	handTo(track: TrackHost & { readonly consumers: Set<TrackConsumer> }): void {
		for (const c of this.consumers) track.consumers.add(c);
		this.consumers.clear();
		this.#forward = track;
		if (this.#closed) return;
		this.#closed = true;
		this.#watcher?.unwatch(this.#link.self);
		this.#watcher = null;
	}

	/** Doorbell: the writer appended records this turn. */
	deliver(): void {
		drainConsumers(this.consumers);
	}

	/** The publisher's worker is gone (or refused): nothing more will be written. */
	abort(code: number): void {
		for (const c of [...this.consumers]) c.abort(code);
		this.close();
	}

	/** The broadcast was unannounced cleanly before its ring reached us: its viewers end cleanly. */
	end(): void {
		for (const c of [...this.consumers]) c.end();
		this.close();
	}

	close(): void {
		if (this.#closed) return;
		this.#closed = true;
		this.#watcher?.unwatch(this.#link.self);
		this.#watcher = null;
		if (this.buffer) ringReleased(this.buffer);
	}
}
