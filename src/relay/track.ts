import type { CacheBudget } from "../cache/budget.ts";
import { ringReleased } from "../cache/reclaim.ts";
import { RingWriter, type RingWriterHandover } from "../cache/ring-writer.ts";
import { DROPPED } from "../errors/codes.ts";
import { probe } from "../metrics/collection.ts";
import type { Path } from "../path/index.ts";
import type { SubscriptionParams, TrackHandle, UpstreamPublisher } from "./types.ts";

/** A downstream subscription as its track sees it. */
export interface TrackConsumer {
	readonly params: Readonly<SubscriptionParams>;
	/**
	 * The viewer's session, as an opaque identity (for counting distinct viewers on the status page);
	 * absent for consumers that are not a viewer's subscription (another worker's reader, a fetch).
	 */
	readonly viewer?: object;
	/** The track's ring is available (immediately for local tracks, once the owner answers for remote ones). */
	attach(buffer: SharedArrayBuffer): void;
	/** New records are in the ring: read them. Called at most once per event-loop turn per track. */
	drain(): void;
	/** The track can never be served (its publisher worker died before the ring said so). */
	abort(code: number): void;
	/**
	 * The track ended cleanly before this consumer got its ring (its broadcast was unannounced while
	 * the ring was being handed over): end the subscription the clean way.
	 */
	end(): void;
	/** Reading threw: close this consumer's session alone (the guard in `drainConsumers`). */
	fault(err: unknown): void;
	/**
	 * Present on consumers that can drain in rounds with the others of their track (see
	 * drainConsumers): what their staged frames go out through.
	 */
	readonly fanout?: FanoutRound | null;
	/**
	 * Reads records up to and including the next frame, which it stages in `fanout` instead of
	 * writing it, and returns true; or reads to the end of what the ring holds (or until it must
	 * wait) and returns false.
	 */
	drainRound?(): boolean;
}

/** What a round of drainRound calls staged: flush() writes it (each frame once for all its viewers). */
export interface FanoutRound {
	flush(): void;
}

/**
 * Wakes every consumer of a track. Runs outside any one session's input handling (a batched
 * setImmediate, or the cross-thread doorbell), so it is the session guard for fan-out: a consumer
 * that throws is faulted alone and the others, and the worker, carry on.
 */
export function drainConsumers(consumers: ReadonlySet<TrackConsumer>): void {
	let round: TrackConsumer[] | null = null;
	let fanout: FanoutRound | null = null;
	const several = consumers.size > 1;
	for (const c of consumers) {
		if (several && c.fanout && c.drainRound) {
			if (round === null) round = [];
			round.push(c);
			fanout = c.fanout;
			continue;
		}
		try {
			c.drain();
		} catch (err) {
			c.fault(err);
		}
	}
	if (round === null || fanout === null) return;
	if (round.length === 1) {
		try {
			round[0].drain();
		} catch (err) {
			round[0].fault(err);
		}
		return;
	}
	// Lock-step: each viewer advances by at most one frame per round, and the round's frames go out
	// together, one transport call per frame for all the viewers that are at it (usually all).
	while (round.length > 0) {
		let kept = 0;
		for (let i = 0; i < round.length; i++) {
			const c = round[i];
			try {
				if (c.drainRound!()) round[kept++] = c;
			} catch (err) {
				c.fault(err);
			}
		}
		round.length = kept;
		fanout.flush();
	}
}

/** What a viewer's subscription needs from a track, whether this worker writes its ring or another does. */
export interface TrackHost {
	readonly broadcastPath: Path;
	readonly name: string;
	readonly closed: boolean;
	addConsumer(c: TrackConsumer): void;
	removeConsumer(c: TrackConsumer): void;
	consumerUpdated(): void;
}

/** Called when any local ring has new records (the doorbell wakes other workers reading it). */
export type RingActivity = (ring: RingWriter) => void;

let pending: RelayTrack[] = [];
let scheduled = false;

function flushPending(): void {
	const batch = pending;
	pending = [];
	scheduled = false;
	for (const t of batch) t.deliver();
}

/**
 * One track of a published broadcast: its ring buffer (written only by the publisher's session),
 * its viewers, and the aggregate of their subscription parameters, which drives the single
 * upstream subscription.
 */
export class RelayTrack implements TrackHandle, TrackHost {
	readonly broadcastPath: Path;
	readonly name: string;
	readonly ring: RingWriter;
	/** Where the upstream subscription goes; another route's session after a splice. */
	publisher: UpstreamPublisher;
	/** Times the upstream moved (a group the new route repeats is then refused quietly, not as a violation). */
	splices = 0;
	readonly consumers = new Set<TrackConsumer>();
	aggregate: SubscriptionParams = { priority: 0, ordered: true, maxLatencyMs: 0, startGroup: null, endGroup: null };
	#queued = false;
	#closed = false;
	/** Handed over: the host that now holds this track's viewers. */
	#forward: TrackHost | null = null;
	#ended = false;
	readonly #budget: CacheBudget | null;
	readonly #ringBytes: number;
	readonly #onEmpty: (t: RelayTrack) => void;
	/** Other workers reading this ring (each counts as one consumer for the upstream aggregate). */
	remoteReaders = 0;
	onRingActivity: RingActivity | null = null;
	/**
	 * Called once when the track has ended, aborted or closed: a broadcast unannounced cleanly is
	 * withdrawn only after each of its tracks has ended (Relay.unpublish).
	 */
	onEnded: (() => void) | null = null;

	constructor(
		broadcastPath: Path,
		name: string,
		publisher: UpstreamPublisher,
		ringBytes: number,
		maxFrameBytes: number,
		budget: CacheBudget | null,
		onEmpty: (t: RelayTrack) => void,
		adopted?: RingWriter,
	) {
		this.broadcastPath = broadcastPath;
		this.name = name;
		this.publisher = publisher;
		this.#budget = budget;
		this.#ringBytes = ringBytes;
		this.#onEmpty = onEmpty;
		this.ring = adopted ?? RingWriter.create({ bytes: ringBytes, maxFrameBytes });
		probe("track", this);
	}

	/**
	 * The cluster route moved to a session on another worker, which goes on writing this ring
	 * (`RingWriter.adopt`): open groups are aborted, the upstream subscription stops, and the ring's
	 * budget reservation goes with it. The viewers here stay subscribed through `forwardTo`.
	 */
	handOver(code: number): RingWriterHandover {
		const h = this.ring.handOver(code > 0 && code <= 0x7fffffff ? code : DROPPED);
		if (!this.#closed && !this.#ended && this.consumers.size > 0) this.publisher.unsubscribeUpstream(this);
		this.#closed = true;
		this.notify();
		this.onEnded = null;
		return h;
	}

	/** After a hand-over: this track's viewers are now the consumers of `host` (a remote track on the same ring). */
	forwardTo(host: TrackHost): void {
		this.#forward = host;
		this.consumers.clear();
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** TRACK_END or TRACK_ABORT is in the ring: nothing more will be written. */
	get ended(): boolean {
		return this.#ended;
	}

	/**
	 * Moves the upstream subscription to another route's session (a splice): the ring, and every
	 * viewer reading it, stay. The new route's groups continue the ring from where it is; one it
	 * repeats is refused as a duplicate.
	 */
	rehome(publisher: UpstreamPublisher): void {
		if (this.#ended || this.#closed || publisher === this.publisher) return;
		const old = this.publisher;
		this.publisher = publisher;
		this.splices++;
		old.unsubscribeUpstream(this);
		if (this.consumers.size > 0) publisher.subscribeUpstream(this);
	}

	addConsumer(c: TrackConsumer): void {
		if (this.#forward) {
			this.#forward.addConsumer(c);
			return;
		}
		const first = this.consumers.size === 0;
		this.consumers.add(c);
		c.attach(this.ring.buffer);
		if (first) {
			this.aggregate = aggregateOf(this.consumers);
			this.publisher.subscribeUpstream(this);
		} else this.#reaggregate();
	}

	removeConsumer(c: TrackConsumer): void {
		if (this.#forward) {
			this.#forward.removeConsumer(c);
			return;
		}
		if (!this.consumers.delete(c)) return;
		if (this.consumers.size === 0) {
			if (!this.#closed) this.publisher.unsubscribeUpstream(this);
			this.close();
			this.#onEmpty(this);
		} else this.#reaggregate();
	}

	/** A viewer changed its parameters (SUBSCRIBE_UPDATE). */
	consumerUpdated(): void {
		if (this.#forward) {
			this.#forward.consumerUpdated();
			return;
		}
		this.#reaggregate();
	}

	#reaggregate(): void {
		const next = aggregateOf(this.consumers);
		const a = this.aggregate;
		if (
			next.priority === a.priority &&
			next.ordered === a.ordered &&
			next.maxLatencyMs === a.maxLatencyMs &&
			next.startGroup === a.startGroup &&
			next.endGroup === a.endGroup
		)
			return;
		this.aggregate = next;
		if (!this.#closed) this.publisher.updateUpstream(this);
	}

	/** The publisher wrote into the ring: wake the viewers once this turn (batched across tracks). */
	notify(): void {
		if (this.remoteReaders > 0) this.onRingActivity?.(this.ring);
		if (this.#queued) return;
		this.#queued = true;
		pending.push(this);
		if (!scheduled) {
			scheduled = true;
			setImmediate(flushPending);
		}
	}

	/** @internal called by the batch flush */
	deliver(): void {
		this.#queued = false;
		drainConsumers(this.consumers);
	}

	/**
	 * The publisher ended the track (FIN) or went away (abort). Idempotent: the ring refuses a second
	 * end, and a network event must never throw out of a transport callback.
	 */
	endTrack(finalExclusive: number): void {
		if (this.#ended) return;
		this.#ended = true;
		this.ring.endTrack(finalExclusive);
		this.notify();
		this.#fireEnded();
	}

	/** Ends the track after the latest group the ring has seen (the publisher said no more, without saying where). */
	endAfterLatest(): void {
		this.endTrack(this.ring.latestSeq + 1);
	}

	abortTrack(code: number): void {
		if (this.#ended) return;
		this.#ended = true;
		this.ring.abortTrack(code > 0 && code <= 0x7fffffff ? code : DROPPED);
		this.notify();
		this.#fireEnded();
	}

	/** Frees the ring's budget. Viewers still reading see the records already written (end/abort). */
	close(): void {
		// Handed over: the ring and its reservation are the adopting worker's.
		if (this.#closed) return;
		this.#closed = true;
		this.#budget?.release(this.#ringBytes);
		ringReleased(this.ring.buffer);
		this.#fireEnded();
	}

	#fireEnded(): void {
		const cb = this.onEnded;
		this.onEnded = null;
		cb?.();
	}
}

/** moq-lite's aggregation: max priority, ordered only if all, max latency, earliest start, unbounded end if any. */
export function aggregateOf(consumers: Iterable<TrackConsumer>): SubscriptionParams {
	let priority = 0;
	let ordered = true;
	let maxLatencyMs = 0;
	let startGroup: number | null = null;
	let endGroup: number | null = 0;
	let any = false;
	for (const c of consumers) {
		const p = c.params;
		any = true;
		if (p.priority > priority) priority = p.priority;
		if (!p.ordered) ordered = false;
		if (p.maxLatencyMs > maxLatencyMs) maxLatencyMs = p.maxLatencyMs;
		if (p.startGroup !== null && (startGroup === null || p.startGroup < startGroup)) startGroup = p.startGroup;
		if (p.endGroup === null) endGroup = null;
		else if (endGroup !== null && p.endGroup > endGroup) endGroup = p.endGroup;
	}
	if (!any) ordered = false;
	return { priority, ordered, maxLatencyMs, startGroup, endGroup };
}
