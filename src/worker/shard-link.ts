import type { Doorbell } from "../cache/doorbell.ts";
import type { RingWriter, RingWriterHandover } from "../cache/ring-writer.ts";
import { NOT_FOUND } from "../errors/codes.ts";
import type { Logger } from "../log/logger.ts";
import type { Path } from "../path/index.ts";
import type { Relay, RelayLink, RingReaderOf } from "../relay/relay.ts";
import { RemoteTrack } from "../relay/remote-track.ts";
import { hopsEqual, routeHash } from "../relay/route-order.ts";
import type { SubscriptionParams, TrackInfo } from "../relay/types.ts";
import { reportFault } from "../transport/guard.ts";
import type { ShardMessage } from "./messages.ts";

/**
 * The slice of the pool's worker context the link needs (see src/pool/worker-side.ts). Messages
 * from peers reach the link through `receive`, from the worker's one message handler (entry.ts).
 */
export interface PeerChannel {
	readonly index: number;
	readonly count: number;
	send(to: number, msg: ShardMessage): void;
	onPeerRestart(handler: (index: number) => void): void;
	/** A worker exited; its replacement (if any) is reported later through onPeerRestart. */
	onPeerDown?(handler: (index: number) => void): void;
}

/** FNV-1a (32-bit) over the path's UTF-16 code units: cheap, stable across threads and restarts. */
export function pathHash(path: string): number {
	let h = 0x811c9dc5;
	for (let i = 0; i < path.length; i++) {
		h ^= path.charCodeAt(i);
		h = Math.imul(h, 0x01000193);
	}
	return h >>> 0;
}

const INFO_TIMEOUT_MS = 10_000;

/**
 * Sharding between relay workers. The worker `pathHash(path) % count` owns a broadcast's control
 * state: which worker holds its publisher and which workers have viewers of each track. It is the
 * single place that orders a path's publish/unpublish, and it replicates announcements to every
 * worker. Subscriptions go viewer worker → owner → publisher worker, which answers with the track's
 * SharedArrayBuffer ring; from then on the viewer worker reads the ring directly and is woken by the
 * publisher worker's doorbell at most once per event-loop turn. Control messages only: no frame
 * ever crosses a MessagePort.
 */
export class ShardLink implements RelayLink {
	readonly self: number;
	readonly #count: number;
	readonly #relay: Relay;
	readonly #peers: PeerChannel;
	readonly #doorbell: Doorbell;
	readonly #log: Logger;
	/** Owner role: publisher location of the paths this worker owns. */
	readonly #owned = new Map<Path, { w: number; hops: number[]; peer: boolean }>();
	/**
	 * Owner role: each worker's best offer of a path. In a cluster, sessions on several workers can
	 * reach the same broadcast (peers dial in wherever the kernel puts them); the best offer in
	 * moq-relay's route order is the one in use, and the newest wins a tie (a publisher that
	 * reconnects replaces its old session).
	 */
	readonly #offers = new Map<Path, Map<number, { hops: number[]; peer: boolean }>>();
	/** Owner role: workers with viewers, per path + track. */
	readonly #interest = new Map<string, Set<number>>();
	/** Broadcasts published by local sessions (re-announced to an owner that restarts). */
	readonly #localPaths = new Map<Path, { hops: number[]; peer: boolean }>();
	readonly #infoWaiters = new Map<
		number,
		{
			worker: number;
			resolve: (i: TrackInfo) => void;
			reject: (e: Error) => void;
			timer: ReturnType<typeof setTimeout>;
		}
	>();
	#nextInfoId = 1;

	constructor(relay: Relay, peers: PeerChannel, doorbell: Doorbell, log: Logger) {
		this.self = peers.index;
		this.#count = peers.count;
		this.#relay = relay;
		this.#peers = peers;
		this.#doorbell = doorbell;
		this.#log = log;
		peers.onPeerRestart((index) => this.#peerRestarted(index));
		peers.onPeerDown?.((index) => this.#peerDown(index));
		doorbell.listen(() => {
			for (const t of relay.remoteTracks) t.deliver();
		});
		relay.link = this;
	}

	/**
	 * Shard messages carry what sessions on other workers received (paths, subscription parameters):
	 * a message whose handling throws is dropped and counted as a fault, so one bad request on one
	 * worker cannot take down the others by way of the shard link.
	 */
	receive(from: number, msg: ShardMessage): void {
		try {
			this.#handle(from, msg);
		} catch (err) {
			reportFault(err, this.#log.warn, { from, message: msg.type });
		}
	}

	ownerOf(path: string): number {
		return pathHash(path) % this.#count;
	}

	#send(to: number, msg: ShardMessage): void {
		if (to === this.self) queueMicrotask(() => this.#handle(this.self, msg));
		else this.#peers.send(to, msg);
	}

	#sendAll(msg: ShardMessage): void {
		for (let w = 0; w < this.#count; w++) this.#send(w, msg);
	}

	// RelayLink ---------------------------------------------------------------------------------

	localPublished(path: Path, hops: readonly number[], peer: boolean): void {
		this.#localPaths.set(path, { hops: [...hops], peer });
		this.#send(this.ownerOf(path), { type: "pub", path, hops: [...hops], w: this.self, peer });
	}

	localRouteLost(path: Path): void {
		this.#send(this.ownerOf(path), { type: "lost", path, w: this.self });
	}

	handOver(
		to: number,
		path: Path,
		track: string,
		sab: SharedArrayBuffer,
		handover: RingWriterHandover,
		readers: RingReaderOf[],
	): void {
		this.#send(to, { type: "adopt", path, track, sab, handover, readers });
	}

	localUnpublished(path: Path, clean: boolean): void {
		this.#localPaths.delete(path);
		this.#send(this.ownerOf(path), { type: "unpub", path, w: this.self, clean });
	}

	ringActivity(ring: RingWriter): void {
		this.#doorbell.ring(ring);
	}

	want(path: Path, track: string, params: SubscriptionParams): void {
		this.#send(this.ownerOf(path), { type: "want", path, track, w: this.self, params });
	}

	update(path: Path, track: string, params: SubscriptionParams): void {
		const b = this.#relay.broadcasts.get(path);
		if (b) this.#send(b.worker, { type: "update", path, track, w: this.self, params });
	}

	unwant(path: Path, track: string): void {
		this.#send(this.ownerOf(path), { type: "unwant", path, track, w: this.self });
	}

	fetchTrackInfo(worker: number, path: Path, track: string): Promise<TrackInfo> {
		return new Promise((resolve, reject) => {
			const id = this.#nextInfoId++;
			const timer = setTimeout(() => {
				this.#infoWaiters.delete(id);
				reject(new Error("TRACK_INFO from the publisher's worker timed out"));
			}, INFO_TIMEOUT_MS);
			this.#infoWaiters.set(id, { worker, resolve, reject, timer });
			this.#send(worker, { type: "info?", id, path, track });
		});
	}

	// Messages ----------------------------------------------------------------------------------

	#handle(from: number, m: ShardMessage): void {
		const relay = this.#relay;
		switch (m.type) {
			case "pub": {
				// Owner: record the worker's offer; the best one is announced to everyone.
				let offers = this.#offers.get(m.path);
				if (!offers) this.#offers.set(m.path, (offers = new Map()));
				offers.delete(m.w);
				offers.set(m.w, { hops: m.hops, peer: m.peer });
				// A better offer takes over from the worker in use, which hands its rings over.
				this.#choose(m.path, m.w, this.#owned.get(m.path)?.w);
				return;
			}
			case "unpub": {
				const offers = this.#offers.get(m.path);
				offers?.delete(m.w);
				if (offers?.size === 0) this.#offers.delete(m.path);
				const cur = this.#owned.get(m.path);
				if (!cur || cur.w !== m.w) return;
				if (offers && offers.size > 0 && this.#choose(m.path, -1)) return;
				this.#owned.delete(m.path);
				this.#forgetInterest(m.path);
				this.#sendAll({ type: "end", path: m.path, w: m.w, clean: m.clean });
				return;
			}
			case "lost": {
				// Owner: the worker in use lost its route and lingers. Another worker's offer whose hops are
				// all known takes over now, its rings handed over (a splice across workers); with none the
				// broadcast lingers where it is.
				const offers = this.#offers.get(m.path);
				offers?.delete(m.w);
				if (offers?.size === 0) this.#offers.delete(m.path);
				const cur = this.#owned.get(m.path);
				if (!cur || cur.w !== m.w || !offers || offers.size === 0) return;
				this.#choose(m.path, -1, m.w);
				return;
			}
			case "adopt":
				relay.adoptRing(m.path, m.track, m.sab, m.handover, m.readers);
				return;
			case "ann":
				if (m.w !== this.self) relay.publishRemote(m.path, m.hops, m.w, m.peer, m.from);
				else relay.activateLocal(m.path, m.from);
				return;
			case "end":
				// The owner's word: no worker holds the path now. A replica left from an earlier move goes too.
				relay.unpublishRemote(m.path, m.w, m.clean, true);
				return;
			case "want": {
				if (!m.fwd) {
					// Owner: record the interest, route to the publisher's worker.
					const pub = this.#owned.get(m.path);
					if (!pub) {
						this.#send(m.w, { type: "gone", path: m.path, track: m.track });
						return;
					}
					const key = `${m.path}\u0000${m.track}`;
					let set = this.#interest.get(key);
					if (!set) this.#interest.set(key, (set = new Set()));
					set.add(m.w);
					this.#send(pub.w, { ...m, fwd: true });
					return;
				}
				const sab = relay.remoteWant(m.w, m.path, m.track, m.params);
				if (sab) this.#send(m.w, { type: "ring", path: m.path, track: m.track, sab });
				else this.#send(m.w, { type: "gone", path: m.path, track: m.track });
				return;
			}
			case "update":
				relay.remoteUpdate(m.w, m.path, m.track, m.params);
				return;
			case "unwant": {
				if (!m.fwd) {
					const key = `${m.path}\u0000${m.track}`;
					const set = this.#interest.get(key);
					set?.delete(m.w);
					if (set && set.size === 0) this.#interest.delete(key);
					const pub = this.#owned.get(m.path);
					if (pub) this.#send(pub.w, { ...m, fwd: true });
					return;
				}
				relay.remoteUnwant(m.w, m.path, m.track);
				return;
			}
			case "ring": {
				const t = relay.broadcasts.get(m.path)?.tracks.get(m.track);
				if (t instanceof RemoteTrack) t.attach(m.sab);
				return;
			}
			case "gone": {
				const t = relay.broadcasts.get(m.path)?.tracks.get(m.track);
				if (t instanceof RemoteTrack) t.abort(NOT_FOUND);
				return;
			}
			case "info?": {
				const p = relay.trackInfo(m.path, m.track);
				if (!p) {
					this.#send(from, { type: "info", id: m.id, info: null });
					return;
				}
				p.then(
					(info) => this.#send(from, { type: "info", id: m.id, info }),
					() => this.#send(from, { type: "info", id: m.id, info: null }),
				);
				return;
			}
			case "info": {
				const waiter = this.#infoWaiters.get(m.id);
				if (!waiter) return;
				this.#infoWaiters.delete(m.id);
				clearTimeout(waiter.timer);
				if (m.info) waiter.resolve(m.info);
				else waiter.reject(new Error("unknown track"));
				return;
			}
		}
	}

	/**
	 * Owner: `path` is no longer published: forget which workers wanted its tracks. A viewer worker
	 * whose remote track ended before its ring arrived (or was refused) sends no `unwant`, so
	 * without this an entry would stay for every such broadcast.
	 */
	#forgetInterest(path: Path): void {
		const prefix = `${path}\u0000`;
		for (const key of this.#interest.keys()) if (key.startsWith(prefix)) this.#interest.delete(key);
	}

	/**
	 * Owner: the best offer of `path` (fewest hops, then moq-relay's hash; `newest` wins a tie) becomes
	 * the one in use, announced to every worker when it changes.
	 */
	#choose(path: Path, newest: number, from?: number): boolean {
		const offers = this.#offers.get(path);
		if (!offers || offers.size === 0) return false;
		const cur = this.#owned.get(path);
		// Failing over (the route in use is gone): only onto a route whose hops are all known. An
		// unknown (0) id came over a lite-02/03 link, where a loop cannot be seen, and may be this very
		// broadcast coming back around (the ghosts of moq-relay's issues #1148 and #2718).
		const failover = newest < 0;
		let best: { w: number; hops: number[]; hash: bigint; peer: boolean } | null = null;
		for (const [w, { hops, peer }] of offers) {
			if (failover && hops.includes(0)) continue;
			const hash = routeHash(path, hops);
			if (
				best === null ||
				hops.length < best.hops.length ||
				(hops.length === best.hops.length && (hash < best.hash || (hash === best.hash && w === newest)))
			)
				best = { w, hops, hash, peer };
		}
		if (!best) return false;
		if (cur && cur.w === best.w && hopsEqual(cur.hops, best.hops) && best.w !== newest) {
			// A worse offer changed nothing; its worker may have installed it while it had no replica
			// yet: tell it the route in use.
			if (newest >= 0) this.#send(newest, { type: "ann", path, hops: best.hops, w: best.w, peer: best.peer });
			return true;
		}
		this.#owned.set(path, { w: best.w, hops: best.hops, peer: best.peer });
		const moved = from !== undefined && from !== best.w ? { from } : {};
		this.#sendAll({ type: "ann", path, hops: best.hops, w: best.w, peer: best.peer, ...moved });
		return true;
	}

	/**
	 * A worker exited. Whatever it published is gone: its rings will never be written again and will
	 * never get a TRACK_ABORT record, so end every viewer's subscription to them here (reset with
	 * code 24, announcement withdrawn) rather than letting them wait for the replacement, which
	 * can be a whole restart backoff away. Idempotent: #peerRestarted runs the same cleanup.
	 */
	#peerDown(index: number): void {
		this.#log.warn("peer worker down; ending what it published", { peer: index });
		this.#relay.dropWorker(index);
		for (const [path, offers] of [...this.#offers]) {
			offers.delete(index);
			if (offers.size === 0) this.#offers.delete(path);
		}
		for (const [path, pub] of [...this.#owned]) {
			if (pub.w !== index) continue;
			// Another worker reaches it too (a cluster route, all hops known): that one takes over.
			if (this.#offers.has(path) && this.#choose(path, -1)) continue;
			this.#owned.delete(path);
			this.#forgetInterest(path);
			this.#sendAll({ type: "end", path, w: index, clean: false });
		}
		for (const [key, set] of [...this.#interest]) {
			set.delete(index);
			if (set.size === 0) this.#interest.delete(key);
		}
		for (const [id, waiter] of [...this.#infoWaiters]) {
			if (waiter.worker !== index) continue;
			this.#infoWaiters.delete(id);
			clearTimeout(waiter.timer);
			waiter.reject(new Error("the publisher's worker exited"));
		}
	}

	/**
	 * A worker was replaced: its sessions, broadcasts and owner state are gone. Forget what it
	 * published, and rebuild its owner state from what the rest of us know.
	 */
	#peerRestarted(index: number): void {
		this.#log.warn("peer worker restarted; resyncing shard state", { peer: index });
		this.#peerDown(index);
		for (const [path, pub] of this.#owned) {
			// Tell the new thread about broadcasts it missed.
			if (pub.w !== this.self) this.#send(index, { type: "ann", path, hops: pub.hops, w: pub.w, peer: pub.peer });
		}
		// Re-register our own broadcasts with their owner if it is the restarted worker, and announce them to it.
		for (const [path, { hops, peer }] of this.#localPaths) {
			if (this.ownerOf(path) === index) this.#send(index, { type: "pub", path, hops, w: this.self, peer });
			else this.#send(index, { type: "ann", path, hops, w: this.self, peer });
		}
		// A subscription whose request went to the dead owner was lost with it: ask the new one (it
		// answers "gone" if it has not heard from the publisher's worker yet: a clean end, not a stall).
		for (const t of this.#relay.remoteTracks) {
			if (t.buffer === null && !t.closed && this.ownerOf(t.broadcastPath) === index) t.rewant();
		}
	}
}
