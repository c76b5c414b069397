import type { CacheBudget } from "../cache/budget.ts";
import { ringReleased } from "../cache/reclaim.ts";
import { RingWriter, type RingWriterHandover } from "../cache/ring-writer.ts";
import type { RelayConfig } from "../config/types.ts";
import { DROPPED } from "../errors/codes.ts";
import type { Logger } from "../log/logger.ts";
import { probe } from "../metrics/collection.ts";
import type { Path } from "../path/index.ts";
import { AnnounceRegistry } from "./announcements.ts";
import { RemoteTrack, type RemoteTrackLink } from "./remote-track.ts";
import { hopsEqual, routeHash } from "./route-order.ts";
import { aggregateOf, RelayTrack, type TrackConsumer } from "./track.ts";
import type { SubscriptionParams, TrackInfo, UpstreamPublisher } from "./types.ts";

/** Announce owner ids at or above this name another worker (REMOTE_OWNER + index); below are local sessions. */
export const REMOTE_OWNER = 1_000_000_000;

/**
 * How long a broadcast unannounced cleanly waits for its tracks to end before the relay ends them
 * itself (after the latest group it has). The publisher's session already gives a finished track's
 * in-flight groups 2 s; this is the backstop for a publisher that unannounces and never ends them.
 */
export const BROADCAST_END_GRACE_MS = 3000;

/** How the relay core reaches the other workers (the shard link); null when running alone. */
export interface RelayLink extends RemoteTrackLink {
	/** This worker's best offer of `path` (`peer`: learned from another relay) for the shard owner. */
	localPublished(path: Path, hops: readonly number[], peer: boolean): void;
	/** `clean`: unannounced by its publisher after its tracks ended; otherwise lost abruptly. */
	localUnpublished(path: Path, clean: boolean): void;
	/** A local ring has new records: wake the other workers that read it (batched per turn). */
	ringActivity(ring: RingWriter): void;
	/** TRACK_INFO of a broadcast whose publisher is on `worker`. */
	fetchTrackInfo(worker: number, path: Path, track: string): Promise<TrackInfo>;
	/**
	 * This worker's route to `path` died abruptly and it lingers: the shard owner may move the
	 * broadcast to another worker's route now (see `publishRemote`'s hand-over).
	 */
	localRouteLost(path: Path): void;
	/** Hands a track's ring to worker `to`, which now holds the route (`Relay.adoptRing` there). */
	handOver(
		to: number,
		path: Path,
		track: string,
		sab: SharedArrayBuffer,
		h: RingWriterHandover,
		readers: RingReaderOf[],
	): void;
}

/** A worker reading a handed-over ring, with the aggregate of its viewers' parameters. */
export interface RingReaderOf {
	w: number;
	params: SubscriptionParams;
}

/**
 * One local session's offer of a broadcast: a publishing client, or a peer relay with the hop chain
 * it came through. Several can offer the same path (a mesh); the best one is the broadcast's upstream.
 */
interface LocalRoute {
	readonly publisher: UpstreamPublisher;
	readonly hops: readonly number[];
	readonly hash: bigint;
	/** Arrival order: the newest wins a tie, as in moq-relay. */
	readonly seq: number;
	/** Learned from another relay: an abrupt loss lingers (a reconnect may resume it). */
	readonly peer: boolean;
}

/** moq-relay's route order (lower wins): hop count, then the FNV-1a hash of path and hops, then newest. */
function compareLocalRoutes(a: LocalRoute, b: LocalRoute): number {
	if (a.hops.length !== b.hops.length) return a.hops.length - b.hops.length;
	if (a.hash !== b.hash) return a.hash < b.hash ? -1 : 1;
	return b.seq - a.seq;
}

/** A broadcast known to this worker: published by a local session, or by a session on another worker. */
export class RelayBroadcast {
	readonly path: Path;
	/**
	 * The local publishing session (the best local route; it changes when a route is spliced), or
	 * null when another worker holds it.
	 */
	publisher: UpstreamPublisher | null;
	/** The hop chain of the route in use. */
	hops: readonly number[] = [];
	/** Times the upstream moved to another route without the broadcast ending. */
	splices = 0;
	/** The route in use was learned from another relay (not a publishing client of ours). */
	fromPeer = false;
	/** Its only route was a peer that vanished: kept this long for a route to come back. */
	lingering: ReturnType<typeof setTimeout> | null = null;
	/** The worker holding the publisher's session (it changes when a cluster route moves workers). */
	worker: number;
	readonly tracks = new Map<string, RelayTrack | RemoteTrack>();
	/** TRACK_INFO per track name, asked of the publisher once. */
	readonly info = new Map<string, Promise<TrackInfo>>();
	/** Unannounced cleanly; withdrawn once its tracks have ended. No new track is created meanwhile. */
	ending: ReturnType<typeof setTimeout> | null = null;

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
	end(): void {}
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
	/** Every local session's offer per path, best first (the first is the broadcast's publisher). */
	readonly #routes = new Map<Path, LocalRoute[]>();
	#routeSeq = 0;
	/** Route changes that kept the broadcast (splices), for metrics. */
	routeChanges = 0;
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

	/**
	 * A local session announced `path` active, with the hop chain it came through (empty for a
	 * publishing client). Each session's offer is kept as a route; the best (moq-relay's order) is the
	 * broadcast's upstream. A better route than the one in use takes over at a group boundary: the
	 * tracks' rings stay, their upstream subscription moves (a splice), and viewers keep theirs.
	 */
	publish(path: Path, hops: readonly number[], publisher: UpstreamPublisher, peer = false): RelayBroadcast {
		let routes = this.#routes.get(path);
		if (!routes) this.#routes.set(path, (routes = []));
		const i = routes.findIndex((r) => r.publisher === publisher);
		if (i >= 0) routes.splice(i, 1);
		routes.push({ publisher, hops: [...hops], hash: routeHash(path, hops), seq: ++this.#routeSeq, peer });
		routes.sort(compareLocalRoutes);
		const best = routes[0];
		const b = this.broadcasts.get(path);
		if (b && b.publisher !== null && !b.ending) {
			// A lingering broadcast resumes only over a route whose hops are all known (see unpublish).
			if (b.lingering && best.hops.includes(0)) return b;
			this.#useRoute(b, best);
			this.link?.localPublished(path, best.hops, best.peer);
			return b;
		}
		if (b && b.publisher === null && this.link) {
			// Another worker's route is in use: ours is an offer, and the path's owner worker decides
			// (it answers with `activateLocal` when ours is the better one).
			this.link.localPublished(path, best.hops, best.peer);
			return b;
		}
		const nb = this.#install(path, best.hops, best.publisher, this.worker, best.publisher.id, best.peer);
		this.link?.localPublished(path, best.hops, best.peer);
		return nb;
	}

	/** Makes `route` the broadcast's upstream (a splice when it is another session's) and stops any linger. */
	#useRoute(b: RelayBroadcast, route: LocalRoute): void {
		if (b.lingering) clearTimeout(b.lingering);
		b.lingering = null;
		const moved = b.publisher !== route.publisher;
		const sameChain = !moved && hopsEqual(b.hops, route.hops);
		b.hops = route.hops;
		if (moved) {
			b.publisher = route.publisher;
			b.splices++;
			this.routeChanges++;
			b.info.clear();
			for (const t of b.tracks.values()) if (t instanceof RelayTrack) t.rehome(route.publisher);
		}
		b.fromPeer = route.peer;
		if (moved || !sameChain)
			this.announces.update({ path: b.path, hops: route.hops, owner: route.publisher.id, peer: route.peer });
	}

	/** The best local route for `path` after `publisher`'s offer is removed. */
	#dropRoute(path: Path, publisher: UpstreamPublisher): LocalRoute | undefined {
		const routes = this.#routes.get(path);
		if (!routes) return undefined;
		const i = routes.findIndex((r) => r.publisher === publisher);
		if (i >= 0) routes.splice(i, 1);
		if (routes.length === 0) this.#routes.delete(path);
		return routes[0];
	}

	/**
	 * The shard owner chose this worker's route for `path` (again): make the best local one the
	 * upstream. `from`: the route moved here from that worker, which hands its rings over
	 * (`adoptRing`): the replica becomes the local broadcast in place, its remote tracks waiting.
	 */
	activateLocal(path: Path, from?: number): void {
		const best = this.#routes.get(path)?.[0];
		const b = this.broadcasts.get(path);
		if (!best) {
			// Our route went away while the owner chose it (our unpublish crossed its announcement): a
			// replica of the worker it moved from must not stay behind, and the owner must choose again.
			if (b && b.publisher === null) this.#uninstall(b, REMOTE_OWNER + b.worker, false);
			this.link?.localUnpublished(path, false);
			return;
		}
		if (b && b.publisher !== null) return;
		if (b && from !== undefined && b.worker === from) {
			b.publisher = best.publisher;
			b.worker = this.worker;
			b.hops = best.hops;
			b.fromPeer = best.peer;
			b.splices++;
			this.routeChanges++;
			b.info.clear();
			this.announces.update({ path, hops: best.hops, owner: best.publisher.id, peer: best.peer });
			return;
		}
		this.#install(path, best.hops, best.publisher, this.worker, best.publisher.id, best.peer);
	}

	/**
	 * This worker's lingering broadcast moves to `worker`, which holds another route to it: each
	 * track's ring goes there with the workers reading it (`adoptRing` continues writing it), and
	 * the viewers here read on from the same ring as a remote track. Tracks nobody reads just close.
	 */
	#handOverTo(b: RelayBroadcast, worker: number, hops: readonly number[], peer: boolean): void {
		const link = this.link;
		if (!link) return;
		if (b.lingering) clearTimeout(b.lingering);
		b.lingering = null;
		if (b.ending) clearTimeout(b.ending);
		b.ending = null;
		const nb = new RelayBroadcast(b.path, null, worker);
		nb.hops = [...hops];
		nb.fromPeer = peer;
		nb.splices = b.splices + 1;
		this.routeChanges++;
		for (const [name, t] of b.tracks) {
			if (!(t instanceof RelayTrack) || t.closed) continue;
			if (t.ended || t.consumers.size === 0) {
				t.close();
				continue;
			}
			const readers: RingReaderOf[] = [];
			const local: TrackConsumer[] = [];
			for (const c of t.consumers) if (!(c instanceof RemoteReader)) local.push(c);
			const prefix = `\u0000${b.path}\u0000${name}`;
			for (const [key, r] of this.#remoteReaders) {
				if (!key.endsWith(prefix)) continue;
				const w = Number(key.slice(0, key.length - prefix.length));
				if (key !== `${w}${prefix}`) continue;
				readers.push({ w, params: r.params });
				this.#remoteReaders.delete(key);
			}
			if (local.length > 0) readers.push({ w: this.worker, params: aggregateOf(local) });
			const h = t.handOver(DROPPED);
			link.handOver(worker, b.path, name, t.ring.buffer, h, readers);
			if (local.length === 0) continue;
			const rt = new RemoteTrack(b.path, name, worker, link, (gone) => {
				if (nb.tracks.get(name) === gone) nb.tracks.delete(name);
				this.remoteTracks.delete(gone);
				this.figures.tracks = this.#countTracks();
			});
			nb.tracks.set(name, rt);
			this.remoteTracks.add(rt);
			t.forwardTo(rt);
			rt.continueFrom(t.ring.buffer, local);
		}
		b.tracks.clear();
		// Readers of tracks that had ended or closed (those handed over were moved above).
		this.#forgetRemoteReaders(b.path);
		this.broadcasts.set(b.path, nb);
		this.figures.tracks = this.#countTracks();
		this.announces.update({ path: b.path, hops, owner: REMOTE_OWNER + worker, peer });
		// A live route of ours stays an offer with the owner (as it is); with none, we have nothing to offer.
		if (!this.#routes.has(b.path)) link.localUnpublished(b.path, false);
	}

	/**
	 * Worker `from` handed us a track's ring (our route took over its broadcast): continue writing
	 * it from our route's upstream subscription. The viewers here that read it as a remote track,
	 * and the workers reading it (`readers`), are now this track's consumers. If the broadcast is no
	 * longer ours to write (it moved again, or ended meanwhile), the ring is ended with DROPPED so
	 * that its readers stop.
	 */
	adoptRing(path: Path, name: string, sab: SharedArrayBuffer, h: RingWriterHandover, readers: RingReaderOf[]): void {
		const b = this.broadcasts.get(path);
		const writer = RingWriter.adopt(sab, h);
		const bytes = this.config.cache.trackBytes;
		const existing = b?.tracks.get(name);
		if (!b || b.publisher === null || b.ending || b.lingering || (existing instanceof RelayTrack && !existing.closed)) {
			writer.abortTrack(DROPPED);
			this.link?.ringActivity(writer);
			this.budget?.release(bytes);
			ringReleased(sab);
			return;
		}
		const t = new RelayTrack(
			path,
			name,
			b.publisher,
			bytes,
			this.config.limits.maxFrameBytes,
			this.budget,
			(gone) => {
				if (b.tracks.get(name) === gone) b.tracks.delete(name);
				this.figures.tracks = this.#countTracks();
			},
			writer,
		);
		t.splices = 1;
		const link = this.link;
		if (link) t.onRingActivity = (ring) => link.ringActivity(ring);
		if (existing instanceof RemoteTrack) {
			existing.handTo(t);
			this.remoteTracks.delete(existing);
		}
		for (const r of readers) {
			if (r.w === this.worker) continue;
			const key = `${r.w}\u0000${path}\u0000${name}`;
			const reader = new RemoteReader(r.params);
			probe("serve", reader);
			this.#remoteReaders.set(key, reader);
			t.remoteReaders++;
			t.consumers.add(reader);
		}
		b.tracks.set(name, t);
		this.figures.tracks = this.#countTracks();
		if (t.consumers.size === 0) {
			t.close();
			b.tracks.delete(name);
			return;
		}
		t.aggregate = aggregateOf(t.consumers);
		b.publisher.subscribeUpstream(t);
		t.notify();
	}

	/** Routes offered by local sessions for `path`, best first (the /cluster page). */
	localRoutes(path: Path): readonly { publisher: number; hops: readonly number[]; peer: boolean }[] {
		return (this.#routes.get(path) ?? []).map((r) => ({ publisher: r.publisher.id, hops: r.hops, peer: r.peer }));
	}

	/**
	 * A local publisher announced `path` ended (`clean`), or went away. A clean end withdraws the
	 * broadcast only after each of its tracks has ended (the publisher's session ends them once
	 * their in-flight groups are in), so viewers see every track end cleanly and never a reset;
	 * an abrupt one resets the tracks at once with DROPPED.
	 */
	unpublish(path: Path, publisher: UpstreamPublisher, clean = false): void {
		const wasPeer = this.#routes.get(path)?.find((r) => r.publisher === publisher)?.peer ?? false;
		this.#dropRoute(path, publisher);
		// Failover only onto a route whose every hop is known: a chain with unknown (0) ids came over
		// a lite-02/03 link, where a loop cannot be seen, and may be this very broadcast coming back
		// (the ghost broadcasts of moq-relay's issues #1148 and #2718). Those routes stay offers.
		const next = this.#routes.get(path)?.find((r) => !r.hops.includes(0));
		const b = this.broadcasts.get(path);
		if (!b || b.publisher !== publisher) {
			// A standby route went away: the shard owner learns this worker's best offer now.
			if (!b || b.publisher === null) {
				if (next) this.link?.localPublished(path, next.hops, next.peer);
				else this.link?.localUnpublished(path, clean);
			}
			return;
		}
		if (next && !b.ending) {
			// Another session offers it: splice onto that route, the viewers keep their subscriptions.
			this.#useRoute(b, next);
			this.link?.localPublished(path, next.hops, next.peer);
			return;
		}
		if (!clean) {
			const linger = this.config.cluster?.lingerMs ?? 0;
			if (wasPeer && linger > 0 && !b.lingering) {
				// A peer vanished: its broadcast may come back over a redialled or another route. Keep the
				// tracks (no new ones meanwhile); a route within the linger splices back in.
				b.lingering = setTimeout(() => {
					b.lingering = null;
					if (this.broadcasts.get(path) === b && !this.#routes.has(path)) this.#withdrawLocal(b, false);
				}, linger);
				// Another worker may hold a route to it (a peer that dialled in there): the shard owner
				// moves the broadcast to it now, and this worker hands its rings over (publishRemote).
				this.link?.localRouteLost(path);
				return;
			}
			this.#withdrawLocal(b, false);
			return;
		}
		if (b.ending) return;
		let waiting = 1;
		const ended = () => {
			// After the tracks' own wake-ups (queued before this): their ends reach the viewers first.
			if (--waiting === 0) setImmediate(() => this.#withdrawLocal(b, true));
		};
		for (const t of b.tracks.values()) {
			if (!(t instanceof RelayTrack) || t.ended || t.closed) continue;
			waiting++;
			t.onEnded = ended;
		}
		b.ending = setTimeout(() => {
			for (const t of b.tracks.values()) if (t instanceof RelayTrack) t.endAfterLatest();
		}, BROADCAST_END_GRACE_MS);
		ended();
	}

	#withdrawLocal(b: RelayBroadcast, clean: boolean): void {
		if (this.broadcasts.get(b.path) !== b || b.publisher === null) return;
		if (b.lingering) clearTimeout(b.lingering);
		b.lingering = null;
		this.#uninstall(b, b.publisher.id, clean);
		this.link?.localUnpublished(b.path, clean);
	}

	/**
	 * Another worker holds the publisher of `path` (replicated announcement). `from`: the route
	 * moved there from that worker, which lingered after losing its own: if that is this worker, it
	 * hands its rings over; elsewhere the replica follows in place. Either way the viewers keep
	 * their subscriptions and read on from the same rings (a splice across workers).
	 */
	publishRemote(path: Path, hops: readonly number[], worker: number, peer = false, from?: number): void {
		const existing = this.broadcasts.get(path);
		if (existing && from !== undefined && existing.worker === from) {
			if (existing.publisher !== null) {
				if (from === this.worker) this.#handOverTo(existing, worker, hops, peer);
				return;
			}
			existing.worker = worker;
			existing.hops = [...hops];
			existing.fromPeer = peer;
			existing.splices++;
			this.routeChanges++;
			this.announces.update({ path, hops, owner: REMOTE_OWNER + worker, peer });
			return;
		}
		if (existing && existing.publisher === null && existing.worker === worker) {
			// The same worker's route with another hop chain (it spliced): the replica follows.
			if (!hopsEqual(existing.hops, hops) || existing.fromPeer !== peer) {
				existing.hops = [...hops];
				existing.fromPeer = peer;
				this.announces.update({ path, hops, owner: REMOTE_OWNER + worker, peer });
			}
			return;
		}
		this.#install(path, hops, null, worker, REMOTE_OWNER + worker, peer);
	}

	/**
	 * `clean`: the publisher's worker ended its tracks (TRACK_END is in each ring) before telling us.
	 * `any`: the path's owner says it ended (its word is final, whichever worker our replica names).
	 */
	unpublishRemote(path: Path, worker: number, clean = false, any = false): void {
		const b = this.broadcasts.get(path);
		if (!b || b.publisher !== null || (b.worker !== worker && !any)) return;
		this.#uninstall(b, REMOTE_OWNER + b.worker, clean);
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

	#install(
		path: Path,
		hops: readonly number[],
		publisher: UpstreamPublisher | null,
		worker: number,
		owner: number,
		peer: boolean,
	) {
		const old = this.broadcasts.get(path);
		if (old) this.#drop(old, false);
		const b = new RelayBroadcast(path, publisher, worker);
		b.hops = [...hops];
		this.broadcasts.set(path, b);
		this.figures.broadcasts = this.broadcasts.size;
		b.fromPeer = peer;
		this.announces.add({ path, hops, owner, peer });
		return b;
	}

	#uninstall(b: RelayBroadcast, owner: number, clean: boolean): void {
		this.broadcasts.delete(b.path);
		this.figures.broadcasts = this.broadcasts.size;
		// Tracks first: a viewer learns that each track ended before it learns the broadcast did.
		this.#drop(b, clean);
		this.announces.remove(b.path, owner);
	}

	/** Ends what the broadcast still holds: cleanly after a clean unannounce, with DROPPED otherwise. */
	#drop(b: RelayBroadcast, clean: boolean): void {
		if (b.ending) clearTimeout(b.ending);
		b.ending = null;
		if (b.lingering) clearTimeout(b.lingering);
		b.lingering = null;
		for (const t of b.tracks.values()) {
			if (t instanceof RelayTrack) {
				t.onEnded = null;
				if (clean) t.endAfterLatest();
				else t.abortTrack(DROPPED);
				t.close();
			} else if (t.buffer) {
				// The publisher's worker wrote TRACK_END or TRACK_ABORT into the ring before telling us: drain it.
				t.deliver();
			} else if (clean) t.end();
			else t.abort(DROPPED);
		}
		b.tracks.clear();
		b.info.clear();
		this.figures.tracks = this.#countTracks();
		if (b.publisher !== null) this.#forgetRemoteReaders(b.path);
	}

	/**
	 * A local broadcast is gone: forget the other workers reading its rings. Their `unwant` goes to
	 * the path's owner, which no longer forwards it once the broadcast is unpublished, so these
	 * entries would otherwise stay (one per viewer worker and track, for every broadcast ever
	 * relayed) and a later broadcast of the same path would find them and never subscribe upstream.
	 */
	#forgetRemoteReaders(path: Path): void {
		for (const key of this.#remoteReaders.keys()) {
			if (key.split("\u0000")[1] === path) this.#remoteReaders.delete(key);
		}
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
		// Unannounced and waiting for its tracks to end, or lingering without a route: no new ones.
		if (b.ending || b.lingering) return undefined;
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
			probe("serve", r);
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

	/**
	 * Cache bytes of the rings this worker writes (its share of the relay-wide budget). The budget's
	 * own count is relay-wide: reported per worker it would be summed once per worker.
	 */
	localCacheBytes(): number {
		let n = 0;
		for (const b of this.broadcasts.values())
			for (const t of b.tracks.values()) if (t instanceof RelayTrack && !t.closed) n += t.ring.buffer.byteLength;
		return n;
	}

	/** Upstream subscriptions this worker holds: one per track with viewers, whatever their number. */
	upstreamSubscriptions(): number {
		let n = 0;
		for (const b of this.broadcasts.values())
			for (const t of b.tracks.values()) if (t instanceof RelayTrack && !t.closed && !t.ended) n++;
		return n;
	}

	#countTracks(): number {
		let n = 0;
		for (const b of this.broadcasts.values()) n += b.tracks.size;
		return n;
	}
}
