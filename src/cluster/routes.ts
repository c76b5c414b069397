/**
 * Cluster routes: which peer to pull each broadcast from, and what to advertise to each peer, computed
 * the way moq-relay (moq-dev/moq 0.14.x, `rs/moq-net`) computes them, so a mixed cluster converges on
 * the same routes. Pure and synchronous: no I/O, no timers; the session layer feeds it announces and
 * acts on what it returns.
 *
 * **Hop chains.** A route's `hops` is the chain of relay ids the announcement crossed, original
 * publisher first, the peer we learned it from last (`[src … sender]`). Id 0 is "unknown" (a lite-02/03
 * link, or a peer that declared no id): it never matches anything, so it can neither be excluded nor
 * detected as a loop. How a chain travels differs per version (`moq-net/src/lite/announce.rs`,
 * `publisher.rs::select_route`, `subscriber.rs::start_announce`):
 *
 * | ver | wire                | sender                               | receiver                                  |
 * |-----|---------------------|--------------------------------------|-------------------------------------------|
 * | 02  | nothing             | (skips a chain already at 32)        | chain = `[peerOrigin]` (0 in moq-relay)   |
 * | 03  | a count             | counts itself (chain + self, ≤ 32)   | `count` zeros; first one ← `peerOrigin`   |
 * | 04  | count + ids         | appends itself (≤ 32, else next route) | as sent; empty → `[peerOrigin]`         |
 * | 05  | count + ids         | omits itself                         | appends `ANNOUNCE_OK.origin` (0 → `peerOrigin`) |
 *
 * The receiver then drops the announce if the chain holds its own id or is longer than 32 (for 05, a
 * full 32-id chain plus the appended sender). On 03/04 a wire chain over 32 is a decode error instead.
 *
 * **Route order** (`origin.rs::route_order`, lower wins): not announced, cost (0 below lite-06), hop
 * count, `routeHash(fullPath, hops)` (FNV-1a, seed 0x420C0DECB00B, prime 0x100000001b3, wrapping 64-bit,
 * over the path's UTF-8 bytes then each hop id as 8 little-endian bytes), then the newest attach. The
 * path is the absolute broadcast path in the relay (`FrontState::path`), i.e. the full path a
 * prefix-`""` peer announces, never the suffix relative to an announce prefix.
 *
 * **Split horizon** (`broadcast.rs::advertisable_routes`): to peer P a relay advertises the best
 * announced route whose chain holds neither P's id nor its own; a SUBSCRIBE from P is served only from a
 * route without P's id (`FrontState::dispatch`). Routes are re-evaluated per peer whenever a path's route
 * set changes; on lite-05 a changed chain goes out as a duplicate ANNOUNCE (a restart).
 *
 * **Tree policy** (ours, not moq-relay's): `mayAdvertise`. Each node has a tier (origin, mid, edge) and
 * each link a role seen from this node: `local` (a client session: publishers and viewers), `parent`
 * (towards the origin), `child` (away from it), or `peer` (a same-tier link). The rule is "valley-free"
 * routing, as BGP's customer/provider export rule: an announcement travels up from where it was
 * published, then down, and never up again.
 *
 * - Anything may be shown to local viewers.
 * - Learned from a local publisher or from a child: advertise on every link (parents, peers, children).
 * - Learned from a parent or a peer: advertise to children only.
 * - An edge never transits: what it learned from any relay link is for its local viewers only.
 *   (Edges have no children, so this is the rule above; it is also enforced when an edge is
 *   misconfigured with children.)
 *
 * In a 1-2-4 tree (one origin O, mids M1 M2, edges E1 E2 under M1 and E3 E4 under M2), a broadcast
 * published at E1 is advertised E1→M1 (child to parent), M1→O and M1→E2, O→M2 (split horizon skips M1),
 * M2→E3 and M2→E4: each link carries it once, in one direction, and since each relay subscribes upstream
 * once per track on its single active route, the media also crosses each link at most once. M2 learned
 * it from its parent, so it never offers it back up, and no edge ever offers a relay route to another
 * relay. With multi-homed edges (each edge under both mids) a link can carry an advertisement each way
 * (O tells M1 about the copy via M2), but a relay pulls on its best route only, and in that topology no
 * link carries the media both ways (checked in test/cluster-routes.test.ts; a general mesh has no such
 * guarantee). The split-horizon filter applies on top of this policy.
 *
 * **Not modeled here** (left to the caller): the linger after an ungraceful loss; moq-net's
 * `prefer_untainted` (its active route also avoids chains through peers currently reading the
 * broadcast, unless none is left); and its rule that a route from a *different* publisher (first hop)
 * takes the path over (newest publisher wins, the old sources park), where this table keeps ranking
 * both and only reports `splice: false` when the best moves between publishers.
 * @module
 */

import { MAX_HOPS } from "../moq/lite/wire/message.ts";
import { checkId, hopsEqual, ROUTE_HASH_PRIME, ROUTE_HASH_SEED, routeHash } from "../relay/route-order.ts";

export { hopsEqual, ROUTE_HASH_PRIME, ROUTE_HASH_SEED, routeHash };

import { hasAnnounceOk, hasAnnounceRestart, hasHopCount, hasHops, type LiteVersion } from "../moq/lite/wire/version.ts";

export { MAX_HOPS };

/** The "unknown" hop id: never equal to any id, not even another 0. */
export const UNKNOWN_HOP = 0;

/** Whether `hops` holds `id`. Id 0 (unknown) never matches. */
export function hopsContain(hops: readonly number[], id: number): boolean {
	return id !== UNKNOWN_HOP && hops.includes(id);
}

/**
 * Whether a received chain (as `hopsReceived` rebuilt it) is usable: not longer than 32 and not through
 * `selfId`. A rejected announce is dropped silently (never a session error); a rejected restart retires
 * the route it replaced (`RouteTable.add` does that).
 */
export function acceptAnnounce(hops: readonly number[], selfId: number): boolean {
	return hops.length <= MAX_HOPS && !hopsContain(hops, selfId);
}

/**
 * The `hops` to hand our `encodeAnnounce` when forwarding a route with chain `hops` to a peer on
 * `version`, or null when the chain has no room for us (03/04 at 32 hops: try the next route).
 * - 02: `[]` (no hop field on the wire), null at 32 hops like 03/04;
 * - 03/04: `[...hops, selfId]` (03 puts only the length on the wire);
 * - 05: `hops` unchanged: the receiver appends our `ANNOUNCE_OK.origin`. A 32-hop chain is still sent,
 *   as moq-relay does; the receiver drops it.
 */
export function hopsToSend(version: LiteVersion, hops: readonly number[], selfId: number): number[] | null {
	if (hasAnnounceOk(version)) return [...hops];
	// moq-relay stamps itself before deciding what the version carries, so 02 skips a full chain too.
	if (hops.length >= MAX_HOPS) return null;
	return hasHopCount(version) ? [...hops, selfId] : [];
}

/**
 * The chain a received ANNOUNCE stands for, from its decoded `wireHops` (our decoder gives 02 `[]` and
 * 03 `count` zeros). `announceOkOrigin` is the 05 stream's ANNOUNCE_OK hop id; `peerOrigin` is an id we
 * assigned the peer out of band (moq-net's `with_peer_origin`; moq-relay never sets one, so 0), used
 * where the peer gives none. The result may be 33 long (05): `acceptAnnounce` refuses it.
 */
export function hopsReceived(
	version: LiteVersion,
	wireHops: readonly number[],
	announceOkOrigin = UNKNOWN_HOP,
	peerOrigin = UNKNOWN_HOP,
): number[] {
	const hops = [...wireHops];
	if (hasAnnounceOk(version)) {
		hops.push(announceOkOrigin !== UNKNOWN_HOP ? announceOkOrigin : peerOrigin);
		return hops;
	}
	// 03 carries only placeholders: the first one becomes the link's id (moq-net's replace_first).
	if (hasHopCount(version) && !hasHops(version) && peerOrigin !== UNKNOWN_HOP) {
		const i = hops.indexOf(UNKNOWN_HOP);
		if (i >= 0) hops[i] = peerOrigin;
	}
	if (hops.length === 0) hops.push(peerOrigin);
	return hops;
}

/**
 * Whether a second ANNOUNCE (active) for a path the peer already announced is a restart (05) rather
 * than a protocol error (moq-net answers it with `Error::Duplicate` on 02-04).
 */
export function duplicateIsRestart(version: LiteVersion): boolean {
	return hasAnnounceRestart(version);
}

/**
 * Whether two chains carry the same content (moq-net's `same_publisher`): equal first hops, where an
 * unknown (0) first hop matches nothing and two local (empty) chains match. Only then may a route change
 * be spliced at a group boundary; otherwise the broadcast is replaced (unannounce, then announce).
 */
export function samePublisher(a: readonly number[], b: readonly number[]): boolean {
	if (a.length === 0 || b.length === 0) return a.length === b.length;
	return a[0] !== UNKNOWN_HOP && a[0] === b[0];
}

/** One way to reach a broadcast. Immutable: a restart replaces the object. */
export interface Route<K> {
	/** Who we learned it from (an opaque session key). */
	readonly peer: K;
	/** The full chain, original publisher first, `peer`'s id last. */
	readonly hops: readonly number[];
	/** `routeHash(path, hops)`, computed once. */
	readonly hash: bigint;
	/** Attach order in its table: higher is newer. A same-publisher restart keeps it. */
	readonly seq: number;
	/** False for an offline source: reachable by exact path, ranked last, never advertised. */
	readonly announced: boolean;
	/** Route cost (lite-06); always 0 on lite-02..05. */
	readonly cost: number;
}

/** moq-net's `route_order` (negative: `a` wins). Both routes must be for the same path. */
export function compareRoutes<K>(a: Route<K>, b: Route<K>): number {
	if (a.announced !== b.announced) return a.announced ? -1 : 1;
	if (a.cost !== b.cost) return a.cost - b.cost;
	if (a.hops.length !== b.hops.length) return a.hops.length - b.hops.length;
	if (a.hash !== b.hash) return a.hash < b.hash ? -1 : 1;
	return b.seq - a.seq;
}

/** What an `add` / `remove` did to one path. */
export interface RouteUpdate<K> {
	readonly path: string;
	/**
	 * add: the route was stored (false: dropped as a loop or too long). remove: a route was removed
	 * (false: none from that peer, e.g. an Ended for a path we dropped or never saw: not an error).
	 */
	readonly accepted: boolean;
	/** add: the peer already had a route at this path (a restart), now replaced or, if refused, retired. */
	readonly replaced: boolean;
	/** The path's route set changed: re-run `advertise` for every peer. */
	readonly routesChanged: boolean;
	/** The best route before and after (undefined: none). */
	readonly before: Route<K> | undefined;
	readonly after: Route<K> | undefined;
	/** The best route moved to another peer or chain (or appeared, or went away). */
	readonly changed: boolean;
	/** `changed` with a route on both sides carrying the same content: splice at a group boundary. */
	readonly splice: boolean;
}

/** What to advertise to one peer for one path. */
export interface Advertisement<K> {
	readonly route: Route<K>;
	/** The `hops` to encode for the peer's version (see `hopsToSend`). */
	readonly hops: number[];
}

/** Options for `RouteTable.add`. */
export interface AddOptions {
	announced?: boolean;
	cost?: number;
}

function sameRoute<K>(a: Route<K> | undefined, b: Route<K> | undefined): boolean {
	if (a === b) return true;
	if (a === undefined || b === undefined) return false;
	return a.peer === b.peer && a.announced === b.announced && a.cost === b.cost && hopsEqual(a.hops, b.hops);
}

const NONE: readonly Route<never>[] = [];

/**
 * The routes to each broadcast path, one per (path, peer), kept in `compareRoutes` order.
 * `selfId` is this relay's hop id (non-zero for loop detection to work).
 */
export class RouteTable<K> {
	readonly selfId: number;
	#byPath = new Map<string, Route<K>[]>();
	#byPeer = new Map<K, Set<string>>();
	#seq = 0;

	constructor(selfId: number) {
		checkId(selfId);
		this.selfId = selfId;
	}

	/**
	 * A route to `path` via `peer` with the full chain `hops` (see `hopsReceived`). A second add from the
	 * same peer replaces its route (a lite-05 restart; whether a duplicate is legal is the session's call,
	 * see `duplicateIsRestart`): keeping its age if the publisher (first hop) is the same, else as new.
	 * A chain failing `acceptAnnounce` is not stored, and retires the peer's previous route if any.
	 */
	add(path: string, peer: K, hops: readonly number[], opts?: AddOptions): RouteUpdate<K> {
		for (const id of hops) checkId(id);
		const list = this.#byPath.get(path);
		const before = list?.[0];
		const index = list ? list.findIndex((r) => r.peer === peer) : -1;
		const old = index >= 0 ? list![index] : undefined;
		if (!acceptAnnounce(hops, this.selfId)) {
			if (old === undefined) return this.#update(path, false, false, false, before, before);
			this.#delete(path, peer, list!, index);
			return this.#update(path, false, true, true, before, this.#byPath.get(path)?.[0]);
		}
		const route: Route<K> = {
			peer,
			hops: Object.freeze([...hops]),
			hash: routeHash(path, hops),
			seq: old !== undefined && samePublisher(old.hops, hops) ? old.seq : ++this.#seq,
			announced: opts?.announced ?? true,
			cost: opts?.cost ?? 0,
		};
		let routes = list;
		if (routes === undefined) {
			routes = [];
			this.#byPath.set(path, routes);
		}
		if (old !== undefined) routes.splice(index, 1);
		// Insert in order (a handful of routes per path).
		let at = 0;
		while (at < routes.length && compareRoutes(routes[at], route) < 0) at++;
		routes.splice(at, 0, route);
		let paths = this.#byPeer.get(peer);
		if (paths === undefined) {
			paths = new Set();
			this.#byPeer.set(peer, paths);
		}
		paths.add(path);
		return this.#update(path, true, old !== undefined, true, before, routes[0]);
	}

	/** The peer's route to `path` ended. An unknown (path, peer) is accepted: `accepted: false`, nothing changes. */
	remove(path: string, peer: K): RouteUpdate<K> {
		const list = this.#byPath.get(path);
		const before = list?.[0];
		const index = list ? list.findIndex((r) => r.peer === peer) : -1;
		if (index < 0) return this.#update(path, false, false, false, before, before);
		this.#delete(path, peer, list!, index);
		return this.#update(path, true, false, true, before, this.#byPath.get(path)?.[0]);
	}

	/** The peer's session is gone: remove all its routes (one update per path it had). */
	removePeer(peer: K): RouteUpdate<K>[] {
		const paths = this.#byPeer.get(peer);
		if (paths === undefined) return [];
		return [...paths].map((path) => this.remove(path, peer));
	}

	/** The best route to `path` (the one to pull from), or undefined. */
	best(path: string): Route<K> | undefined {
		return this.#byPath.get(path)?.[0];
	}

	/** All routes to `path`, best first. */
	routes(path: string): readonly Route<K>[] {
		return this.#byPath.get(path) ?? NONE;
	}

	/** The route from one peer, if any. */
	route(path: string, peer: K): Route<K> | undefined {
		return this.#byPath.get(path)?.find((r) => r.peer === peer);
	}

	/**
	 * Split horizon: the best announced route to `path` whose chain holds neither `peerId` nor our id and
	 * that `allow` accepts (e.g. `mayAdvertise` for the link it was learned on): what peer `peerId` may be told.
	 */
	bestExcluding(path: string, peerId: number, allow?: (route: Route<K>) => boolean): Route<K> | undefined {
		for (const route of this.routes(path)) {
			if (this.#advertisable(route, peerId, allow)) return route;
		}
		return undefined;
	}

	/**
	 * What to advertise for `path` to a peer on `version` with id `peerId` (0 if unknown): the first route
	 * `bestExcluding` would consider that also has room for our hop (`hopsToSend`), or undefined.
	 */
	advertise(
		path: string,
		version: LiteVersion,
		peerId: number,
		allow?: (route: Route<K>) => boolean,
	): Advertisement<K> | undefined {
		for (const route of this.routes(path)) {
			if (!this.#advertisable(route, peerId, allow)) continue;
			const hops = hopsToSend(version, route.hops, this.selfId);
			if (hops !== null) return { route, hops };
		}
		return undefined;
	}

	/**
	 * The route to serve a SUBSCRIBE from requester `requesterId` (0 if unknown): the best route, announced
	 * or not, whose chain does not hold the requester, so it is never handed its own bytes back.
	 */
	dispatch(path: string, requesterId: number): Route<K> | undefined {
		for (const route of this.routes(path)) {
			if (!hopsContain(route.hops, requesterId)) return route;
		}
		return undefined;
	}

	/** Paths with at least one route. */
	paths(): IterableIterator<string> {
		return this.#byPath.keys();
	}

	/** Number of paths with at least one route. */
	get size(): number {
		return this.#byPath.size;
	}

	#advertisable(route: Route<K>, peerId: number, allow: ((route: Route<K>) => boolean) | undefined): boolean {
		return (
			route.announced &&
			!hopsContain(route.hops, peerId) &&
			!hopsContain(route.hops, this.selfId) &&
			(allow === undefined || allow(route))
		);
	}

	#delete(path: string, peer: K, list: Route<K>[], index: number): void {
		list.splice(index, 1);
		if (list.length === 0) this.#byPath.delete(path);
		const paths = this.#byPeer.get(peer);
		if (paths !== undefined) {
			paths.delete(path);
			if (paths.size === 0) this.#byPeer.delete(peer);
		}
	}

	#update(
		path: string,
		accepted: boolean,
		replaced: boolean,
		routesChanged: boolean,
		before: Route<K> | undefined,
		after: Route<K> | undefined,
	): RouteUpdate<K> {
		const changed = !sameRoute(before, after);
		const splice = changed && before !== undefined && after !== undefined && samePublisher(before.hops, after.hops);
		return { path, accepted, replaced, routesChanged, before, after, changed, splice };
	}
}

/** What a relay does to a peer's view of one path when its advertisable route changes. */
export type AdvertiseAction = "none" | "active" | "restart" | "ended";

/**
 * Given the hops last sent to a peer (null: nothing live there) and the hops `advertise` now yields
 * (null: nothing advertisable), what to send, as moq-relay's publisher does:
 * - nothing → something: `active`; something → nothing: `ended` (the route now loops through the peer);
 * - a different chain: lite-05 `restart` (a duplicate ANNOUNCE; the peer splices if the first hop is
 *   unchanged). Before 05 there is no restart: `none`, the peer keeps the chain first sent (so keep it as
 *   the "sent" one).
 * Unlike moq-relay, which does not re-evaluate routes for pre-05 peers at all, this also retracts and
 * re-announces for them when a path stops / starts being advertisable (legal on every version).
 * The caller stores `next` as sent after `active`/`restart`, and null after `ended`.
 */
export function advertiseAction(
	version: LiteVersion,
	sent: readonly number[] | null,
	next: readonly number[] | null,
): AdvertiseAction {
	if (sent === null) return next === null ? "none" : "active";
	if (next === null) return "ended";
	if (hopsEqual(sent, next)) return "none";
	return hasAnnounceRestart(version) ? "restart" : "none";
}

/** A relay's place in a tiered cluster. */
export type Tier = "origin" | "mid" | "edge";
/** A link seen from this relay: a client session, or a relay towards the origin, away from it, or beside it. */
export type LinkRole = "local" | "parent" | "child" | "peer";

/**
 * The tree policy (see the module doc): may a broadcast learned on a link of role `learnedOn` be
 * advertised on a link of role `advertiseOn` by a relay of tier `tier`? Split horizon applies on top.
 */
export function mayAdvertise(tier: Tier, learnedOn: LinkRole, advertiseOn: LinkRole): boolean {
	if (advertiseOn === "local") return true;
	if (learnedOn === "local") return true;
	if (tier === "edge") return false;
	if (learnedOn === "child") return true;
	return advertiseOn === "child";
}
