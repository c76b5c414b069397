/**
 * src/cluster/routes.ts: route order (incl. moq-relay's FNV-1a tie-break), acceptance, per-version hop
 * chains, split horizon, restarts, change notifications and the tree policy.
 *
 * The hash vectors marked "rustc" were printed by moq-dev/moq's `fnv_key` (rs/moq-net/src/model/origin.rs
 * at c867f2083), copied verbatim into a standalone program and compiled with rustc.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
	acceptAnnounce,
	advertiseAction,
	compareRoutes,
	duplicateIsRestart,
	hopsContain,
	hopsReceived,
	hopsToSend,
	type LinkRole,
	MAX_HOPS,
	mayAdvertise,
	ROUTE_HASH_PRIME,
	ROUTE_HASH_SEED,
	type Route,
	RouteTable,
	routeHash,
	samePublisher,
	type Tier,
} from "../src/cluster/routes.ts";
import type { LiteVersion } from "../src/moq/lite/wire/version.ts";

/** Textbook FNV-1a 64 with a chosen basis, on two 32-bit halves (independent of routes.ts's BigInt code). */
function fnv1a64(bytes: Iterable<number>, basis: bigint): bigint {
	let hi = Number(basis >> 32n);
	let lo = Number(basis & 0xffffffffn);
	for (const b of bytes) {
		lo = (lo ^ b) >>> 0;
		// x * (2^40 + 0x1b3) mod 2^64: x*0x1b3 plus (lo << 8) added into the high word.
		const loProd = lo * 0x1b3;
		const newLo = loProd % 0x100000000;
		const carry = Math.floor(loProd / 0x100000000);
		const newHi = (hi * 0x1b3 + carry + ((lo << 8) >>> 0)) % 0x100000000;
		hi = newHi >>> 0;
		lo = newLo >>> 0;
	}
	return (BigInt(hi) << 32n) | BigInt(lo);
}

function le64(id: number): number[] {
	const out: number[] = [];
	let v = BigInt(id);
	for (let i = 0; i < 8; i++) {
		out.push(Number(v & 0xffn));
		v >>= 8n;
	}
	return out;
}

const utf8 = (s: string) => [...new TextEncoder().encode(s)];
const reference = (path: string, hops: number[]) => fnv1a64([...utf8(path), ...hops.flatMap(le64)], ROUTE_HASH_SEED);

describe("routeHash", () => {
	test("the reference FNV-1a matches the published 64-bit test vectors", () => {
		const basis = 0xcbf29ce484222325n;
		assert.equal(fnv1a64([], basis), 0xcbf29ce484222325n);
		assert.equal(fnv1a64(utf8("a"), basis), 0xaf63dc4c8601ec8cn);
		assert.equal(fnv1a64(utf8("foobar"), basis), 0x85944171f73967e8n);
	});

	test("by hand: no input is the seed; one byte is (seed ^ b) * prime, wrapping", () => {
		assert.equal(ROUTE_HASH_SEED, 0x420c0decb00bn);
		assert.equal(ROUTE_HASH_PRIME, (1n << 40n) + 0x1b3n);
		assert.equal(routeHash("", []), ROUTE_HASH_SEED);
		const x = ROUTE_HASH_SEED ^ 0x61n; // 'a'
		// prime = 2^40 + 0x1b3, so x * prime = (x << 40) + x * 0x1b3, taken mod 2^64.
		const byHand = ((x << 40n) + x * 0x1b3n) % (1n << 64n);
		assert.equal(byHand, 0xed20a47ba92fc41en);
		assert.equal(routeHash("a", []), byHand);
	});

	test("vectors from moq-relay's fnv_key (rustc)", () => {
		const vectors: [string, number[], bigint][] = [
			["", [], 0x0000420c0decb00bn],
			["a", [], 0xed20a47ba92fc41en],
			["room/cam", [], 0x3f7aeb14f09f2bb0n],
			["room/cam", [0], 0x7b2d90bfb07581b0n],
			["room/cam", [7], 0x540901fefd008897n],
			["room/cam", [42], 0xd1a075f8bfe522dan],
			["room/cam", [7, 42], 0x408ee97ccf0b425dn],
			["room/cam", [42, 7], 0x117d3b9626f0607dn],
			["room/cam", [Number.MAX_SAFE_INTEGER], 0xea3a601c4c327c05n],
			["", [1], 0xc4da34c6f3bb954an],
			["room/cam", [1, 2], 0x0b566986d2e64433n],
			["room/cam", [1, 3], 0xec5ba27dc7f6fa12n],
			["live/a", [1, 2], 0x5bdca15c99cd0d2an],
			["live/a", [1, 3], 0x7ad76865a4bc574bn],
			["cam0", [1, 2], 0xc12cc7f16036d295n],
			["cam0", [1, 3], 0xa23200e855478874n],
			["cam1", [1, 2], 0xedf2fc7dd2a2010an],
			["cam1", [1, 3], 0x0cedc386dd914b2bn],
		];
		for (const [path, hops, want] of vectors) {
			assert.equal(routeHash(path, hops), want, `${path} ${hops}`);
			assert.equal(reference(path, hops), want, `reference ${path} ${hops}`);
		}
	});

	test("the path counts as bytes (UTF-8), and the full path differs from a suffix", () => {
		assert.equal(routeHash("é", []), reference("é", []));
		assert.notEqual(routeHash("room/cam", [7]), routeHash("cam", [7]));
		// Ids are 8 bytes each: [1] is not [0, 1] nor [256].
		assert.notEqual(routeHash("p", [1]), routeHash("p", [0, 1]));
		assert.notEqual(routeHash("p", [1]), routeHash("p", [256]));
		assert.equal(routeHash("p", [0x123456789a]), reference("p", [0x123456789a]));
	});

	test("refuses ids that are not u53 integers", () => {
		assert.throws(() => routeHash("p", [-1]), RangeError);
		assert.throws(() => routeHash("p", [1.5]), RangeError);
		assert.throws(() => routeHash("p", [2 ** 53]), RangeError);
	});
});

function route(path: string, hops: number[], seq: number, extra: Partial<Route<string>> = {}): Route<string> {
	return { peer: `p${seq}`, hops, hash: routeHash(path, hops), seq, announced: true, cost: 0, ...extra };
}

describe("compareRoutes", () => {
	const p = "room/cam";
	test("announced, then cost, then hop count", () => {
		const long = route(p, [1, 2, 3], 1);
		const short = route(p, [1], 2);
		assert.ok(compareRoutes(short, long) < 0);
		assert.ok(compareRoutes(long, { ...short, announced: false }) < 0, "an offline route loses to any announced one");
		assert.ok(compareRoutes({ ...long, cost: 0 }, { ...short, cost: 1 }) < 0, "cost ranks above hop count");
	});

	test("equal length: the lower hash wins, and the path decides which", () => {
		// cam0: [1,3] hashes lower; room/cam: [1,2] does (rustc vectors above).
		assert.ok(compareRoutes(route("cam0", [1, 3], 1), route("cam0", [1, 2], 2)) < 0);
		assert.ok(compareRoutes(route(p, [1, 2], 1), route(p, [1, 3], 2)) < 0);
		assert.ok(compareRoutes(route(p, [1, 2], 2), route(p, [1, 3], 1)) < 0, "the hash outranks age");
	});

	test("identical chains: the newest wins", () => {
		assert.ok(compareRoutes(route(p, [7], 2), route(p, [7], 1)) < 0);
	});
});

describe("acceptance and per-version hops", () => {
	test("acceptAnnounce: own id, length, and 0 never matching", () => {
		assert.equal(acceptAnnounce([7, 42], 42), false);
		assert.equal(acceptAnnounce([7, 8], 42), true);
		assert.equal(acceptAnnounce(Array(MAX_HOPS).fill(5), 42), true);
		assert.equal(acceptAnnounce(Array(MAX_HOPS + 1).fill(5), 42), false, "33 hops");
		assert.equal(acceptAnnounce([0, 0], 0), true, "a relay without id detects nothing");
		assert.equal(acceptAnnounce([0], 42), true);
		assert.equal(hopsContain([0], 0), false);
	});

	test("forwarding route [7] from relay 42, per version", () => {
		const cases: [LiteVersion, number[] | null, number[]][] = [
			// version, hopsToSend, what the receiver rebuilds from what our decoder yields
			[2, [], [0]],
			[3, [7, 42], [0, 0]],
			[4, [7, 42], [7, 42]],
			[5, [7], [7, 42]],
		];
		for (const [v, send, received] of cases) {
			assert.deepEqual(hopsToSend(v, [7], 42), send, `send ${v}`);
			// The decoder gives 02 no hops and 03 as many zeros as the count.
			const wire = v === 2 ? [] : v === 3 ? send!.map(() => 0) : send!;
			assert.deepEqual(hopsReceived(v, wire, v === 5 ? 42 : 0), received, `receive ${v}`);
		}
	});

	test("a 32-hop chain: 02/03/04 senders skip it, 05 sends it and the receiver drops it", () => {
		const full = Array.from({ length: MAX_HOPS }, (_, i) => i + 100);
		for (const v of [2, 3, 4] as const) assert.equal(hopsToSend(v, full, 42), null);
		const sent = hopsToSend(5, full, 42)!;
		assert.equal(sent.length, MAX_HOPS);
		const got = hopsReceived(5, sent, 42);
		assert.equal(got.length, MAX_HOPS + 1);
		assert.equal(acceptAnnounce(got, 99), false);
		assert.deepEqual(hopsToSend(4, full.slice(1), 42)?.length, MAX_HOPS);
	});

	test("peer ids stand in where the wire has none", () => {
		assert.deepEqual(hopsReceived(2, [], 0, 9), [9]);
		assert.deepEqual(hopsReceived(3, [0, 0], 0, 9), [9, 0], "moq-net's replace_first");
		assert.deepEqual(hopsReceived(4, [], 0, 9), [9]);
		assert.deepEqual(hopsReceived(5, [7], 0, 9), [7, 9], "ANNOUNCE_OK origin 0");
		assert.deepEqual(hopsReceived(5, [7], 42, 9), [7, 42], "a declared origin wins");
		assert.deepEqual(hopsReceived(5, [], 0), [0]);
	});

	test("duplicate actives are restarts on 05 only; publishers compare first hops", () => {
		assert.deepEqual(
			[2, 3, 4, 5].map((v) => duplicateIsRestart(v as LiteVersion)),
			[false, false, false, true],
		);
		assert.equal(samePublisher([7, 1], [7, 2, 3]), true);
		assert.equal(samePublisher([7], [8]), false);
		assert.equal(samePublisher([0, 1], [0, 1]), false, "unknown identifies nothing");
		assert.equal(samePublisher([], []), true, "two local publishes");
		assert.equal(samePublisher([], [7]), false);
	});
});

describe("RouteTable", () => {
	const P = "room/cam";
	const SELF = 42;

	test("best, routes, paths; an Ended for an unknown path is accepted", () => {
		const t = new RouteTable<string>(SELF);
		assert.equal(t.best(P), undefined);
		const miss = t.remove(P, "a");
		assert.equal(miss.accepted, false);
		assert.equal(miss.changed, false);
		assert.equal(miss.routesChanged, false);
		const u = t.add(P, "a", [7, 3]);
		assert.equal(u.accepted, true);
		assert.equal(u.changed, true);
		assert.equal(u.before, undefined);
		assert.equal(u.after?.peer, "a");
		assert.equal(u.splice, false, "nothing to splice from");
		t.add(P, "b", [7]);
		assert.equal(t.best(P)?.peer, "b", "fewer hops");
		assert.deepEqual(
			t.routes(P).map((r) => r.peer),
			["b", "a"],
		);
		assert.deepEqual([...t.paths()], [P]);
		assert.equal(t.remove(P, "c").accepted, false, "a peer with no route here");
		assert.equal(t.remove("other", "a").accepted, false);
		assert.equal(t.size, 1);
	});

	test("order does not depend on arrival order", () => {
		const sets = [
			["a", [1, 2]],
			["b", [1, 3]],
			["c", [5]],
			["d", [1, 2, 3]],
		] as const;
		const t1 = new RouteTable<string>(SELF);
		const t2 = new RouteTable<string>(SELF);
		for (const [peer, hops] of sets) t1.add("cam0", peer, hops);
		for (const [peer, hops] of [...sets].reverse()) t2.add("cam0", peer, hops);
		const order = (t: RouteTable<string>) => t.routes("cam0").map((r) => r.peer);
		// c (1 hop), then b ([1,3] hashes lower on cam0), a, d.
		assert.deepEqual(order(t1), ["c", "b", "a", "d"]);
		assert.deepEqual(order(t2), order(t1));
	});

	test("loops: own id or 33 hops are dropped, not stored", () => {
		const t = new RouteTable<string>(SELF);
		const own = t.add(P, "a", [7, SELF, 3]);
		assert.equal(own.accepted, false);
		assert.equal(own.routesChanged, false);
		assert.equal(t.add(P, "a", Array(33).fill(9)).accepted, false);
		assert.equal(t.best(P), undefined);
		assert.equal(t.size, 0);
		// Unknown ids never look like us.
		assert.equal(new RouteTable<string>(0).add(P, "a", [0]).accepted, true);
	});

	test("restart: a duplicate from the same peer replaces its route", () => {
		const t = new RouteTable<string>(SELF);
		t.add(P, "a", [7, 3]);
		const r = t.add(P, "a", [7, 5, 3]);
		assert.equal(r.accepted, true);
		assert.equal(r.replaced, true);
		assert.equal(t.routes(P).length, 1);
		assert.deepEqual(t.best(P)?.hops, [7, 5, 3]);
		assert.equal(r.changed, true);
		assert.equal(r.splice, true, "same publisher 7: splice");
		const again = t.add(P, "a", [7, 5, 3]);
		assert.equal(again.changed, false, "the same chain again changes nothing downstream");
		const other = t.add(P, "a", [8, 3]);
		assert.equal(other.changed, true);
		assert.equal(other.splice, false, "a new publisher replaces the broadcast");
	});

	test("restart age: same publisher keeps it, a new publisher is new", () => {
		const t = new RouteTable<string>(SELF);
		t.add(P, "a", [7, 3]);
		t.add(P, "b", [7, 3]); // a second session from the same relay: newer, so preferred
		assert.equal(t.best(P)?.peer, "b");
		const seqA = t.route(P, "a")!.seq;
		t.add(P, "a", [7, 3]);
		assert.equal(t.route(P, "a")!.seq, seqA);
		assert.equal(t.best(P)?.peer, "b", "a same-publisher restart does not jump the queue");
		t.add(P, "a", [0, 3]);
		assert.ok(t.route(P, "a")!.seq > seqA, "unknown first hop: new content");
	});

	test("a restart that now loops retires the peer's route", () => {
		const t = new RouteTable<string>(SELF);
		t.add(P, "a", [7, 3]);
		t.add(P, "b", [7, 4, 5]);
		const r = t.add(P, "a", [7, SELF, 3]);
		assert.equal(r.accepted, false);
		assert.equal(r.replaced, true);
		assert.equal(r.routesChanged, true);
		assert.equal(r.changed, true);
		assert.equal(r.after?.peer, "b");
		assert.equal(r.splice, true);
		assert.equal(t.route(P, "a"), undefined);
	});

	test("best-route change notifications", () => {
		const t = new RouteTable<string>(SELF);
		t.add(P, "a", [7, 3]);
		const worse = t.add(P, "b", [7, 4, 5]);
		assert.equal(worse.changed, false);
		assert.equal(worse.routesChanged, true, "a standby still changes what some peers may be told");
		const better = t.add(P, "c", [7]);
		assert.equal(better.changed, true);
		assert.equal(better.before?.peer, "a");
		assert.equal(better.after?.peer, "c");
		assert.equal(better.splice, true);
		const standbyGone = t.remove(P, "b");
		assert.equal(standbyGone.accepted, true);
		assert.equal(standbyGone.changed, false);
		const failover = t.remove(P, "c");
		assert.equal(failover.changed, true);
		assert.equal(failover.after?.peer, "a");
		assert.equal(failover.splice, true);
		const last = t.remove(P, "a");
		assert.equal(last.changed, true);
		assert.equal(last.after, undefined);
		assert.equal(last.splice, false);
		assert.equal(t.size, 0);
		// Different publisher as failover: no splice.
		t.add(P, "x", [7]);
		t.add(P, "y", [8, 1]);
		assert.equal(t.remove(P, "x").splice, false);
	});

	test("removePeer: one update per path", () => {
		const t = new RouteTable<string>(SELF);
		t.add("p1", "a", [7]);
		t.add("p2", "a", [8]);
		t.add("p2", "b", [8, 1]);
		const ups = t.removePeer("a");
		assert.deepEqual(
			ups.map((u) => [u.path, u.after?.peer]),
			[
				["p1", undefined],
				["p2", "b"],
			],
		);
		assert.deepEqual([...t.paths()], ["p2"]);
		assert.deepEqual(t.removePeer("a"), []);
	});

	test("split horizon: never advertise a route through the peer or through us", () => {
		const t = new RouteTable<number>(SELF);
		t.add(P, 3, [7, 3]);
		t.add(P, 5, [7, 9, 5]);
		assert.equal(t.best(P)?.peer, 3);
		assert.equal(t.bestExcluding(P, 3)?.peer, 5, "peer 3 gets the standby");
		assert.equal(t.bestExcluding(P, 5)?.peer, 3);
		assert.equal(t.bestExcluding(P, 9)?.peer, 3);
		assert.equal(t.bestExcluding(P, 7), undefined, "the publisher's own relay hears nothing back");
		assert.equal(t.bestExcluding(P, 0)?.peer, 3, "an unknown peer excludes nothing");
		assert.equal(
			t.bestExcluding(P, 5, (r) => r.peer !== 3),
			undefined,
			"allow filters too",
		);
		// The same rule picks the source for a subscriber.
		assert.equal(t.dispatch(P, 3)?.peer, 5);
		assert.equal(t.dispatch(P, 7), undefined);
	});

	test("advertise: per-version hops, skipping a route with no room for us", () => {
		const t = new RouteTable<number>(SELF);
		t.add(P, 3, [200, 201, 3]);
		assert.deepEqual(t.advertise(P, 5, 99)?.hops, [200, 201, 3]);
		assert.deepEqual(t.advertise(P, 4, 99)?.hops, [200, 201, 3, SELF]);
		assert.deepEqual(t.advertise(P, 3, 99)?.hops, [200, 201, 3, SELF]);
		assert.deepEqual(t.advertise(P, 2, 99)?.hops, []);
		// A 32-hop route that ranks first (only a lower cost can do that): 02-04 skip to the next route.
		const full = [...Array.from({ length: MAX_HOPS - 1 }, (_, i) => i + 100), 1];
		t.add(P, 3, [200, 201, 3], { cost: 1 });
		t.add(P, 1, full);
		assert.equal(t.best(P)?.peer, 1);
		assert.equal(t.advertise(P, 5, 99)?.route.peer, 1);
		assert.equal(t.advertise(P, 5, 99)?.hops.length, MAX_HOPS);
		assert.equal(t.advertise(P, 4, 99)?.route.peer, 3);
		assert.equal(t.advertise(P, 2, 99)?.route.peer, 3);
		assert.equal(t.advertise(P, 4, 200), undefined, "split horizon leaves only the full chain");
	});

	test("offline routes: served by exact path, never advertised", () => {
		const t = new RouteTable<string>(SELF);
		t.add(P, "off", [7], { announced: false });
		t.add(P, "on", [7, 1, 2]);
		assert.equal(t.best(P)?.peer, "on");
		t.remove(P, "on");
		assert.equal(t.best(P)?.peer, "off");
		assert.equal(t.bestExcluding(P, 99), undefined);
		assert.equal(t.advertise(P, 5, 99), undefined);
		assert.equal(t.dispatch(P, 99)?.peer, "off");
	});
});

test("advertiseAction", () => {
	assert.equal(advertiseAction(5, null, null), "none");
	assert.equal(advertiseAction(5, null, [7]), "active");
	assert.equal(advertiseAction(5, [7], null), "ended");
	assert.equal(advertiseAction(5, [7], [7]), "none");
	assert.equal(advertiseAction(5, [7], [7, 1]), "restart");
	assert.equal(advertiseAction(4, [7], [7, 1]), "none", "no restart before 05: the peer keeps the first chain");
	assert.equal(advertiseAction(4, [7], null), "ended");
	assert.equal(advertiseAction(2, null, []), "active");
});

describe("tree policy", () => {
	test("the rule", () => {
		const roles: LinkRole[] = ["local", "parent", "child", "peer"];
		const table = (tier: Tier) =>
			roles.map((from) =>
				roles
					.map((to) => (mayAdvertise(tier, from, to) ? "y" : "."))
					.join("")
					.padEnd(4),
			);
		// rows: learned on local, parent, child, peer; columns: advertised to local, parent, child, peer.
		assert.deepEqual(table("origin"), ["yyyy", "y.y.", "yyyy", "y.y."]);
		assert.deepEqual(table("mid"), ["yyyy", "y.y.", "yyyy", "y.y."]);
		assert.deepEqual(table("edge"), ["yyyy", "y...", "y...", "y..."]);
	});

	interface Node {
		id: number;
		tier: Tier;
		links: Map<number, LinkRole>;
		table: RouteTable<number | "local">;
	}

	/** What one directed link advertises: the hops sent, and who the sender learned the route from. */
	interface Sent {
		hops: number[];
		via: number | "local";
	}

	/** Builds a tree; `parents` maps a child id to its parents. */
	function tree(tiers: [number, Tier][], parents: [number, number[]][]): Map<number, Node> {
		const nodes = new Map<number, Node>();
		for (const [id, tier] of tiers) nodes.set(id, { id, tier, links: new Map(), table: new RouteTable(id) });
		for (const [child, ps] of parents) {
			for (const p of ps) {
				nodes.get(child)!.links.set(p, "parent");
				nodes.get(p)!.links.set(child, "child");
			}
		}
		return nodes;
	}

	/**
	 * Runs the lite-05 announce exchange to a fixpoint. `sent` (updated and returned) holds what each
	 * directed link "from>to" currently advertises.
	 * With `policy` off, only split horizon applies.
	 */
	function converge(
		nodes: Map<number, Node>,
		path: string,
		policy: boolean,
		sent = new Map<string, Sent>(),
	): Map<string, Sent> {
		for (let round = 0; round < 50; round++) {
			let moved = false;
			for (const n of nodes.values()) {
				for (const [to, roleTo] of n.links) {
					const allow = policy
						? (r: Route<number | "local">) =>
								mayAdvertise(n.tier, r.peer === "local" ? "local" : n.links.get(r.peer)!, roleTo)
						: undefined;
					const ad = n.table.advertise(path, 5, to, allow);
					const key = `${n.id}>${to}`;
					const prev = sent.get(key)?.hops ?? null;
					const action = advertiseAction(5, prev, ad?.hops ?? null);
					if (action === "none") continue;
					moved = true;
					const peer = nodes.get(to)!;
					if (action === "ended") {
						sent.delete(key);
						peer.table.remove(path, n.id);
					} else {
						sent.set(key, { hops: ad!.hops, via: ad!.route.peer });
						peer.table.add(path, n.id, hopsReceived(5, ad!.hops, n.id));
					}
				}
			}
			if (!moved) return sent;
		}
		throw new Error("no fixpoint");
	}

	const TIERS: [number, Tier][] = [
		[1, "origin"],
		[11, "mid"],
		[12, "mid"],
		[101, "edge"],
		[102, "edge"],
		[103, "edge"],
		[104, "edge"],
	];

	function publish(nodes: Map<number, Node>, at: number, path: string): void {
		// A lite-05 publisher client with its own origin id 9000.
		nodes.get(at)!.table.add(path, "local", hopsReceived(5, [], 9000));
	}

	/** Directed data links (upstream>downstream) from every node's pick. */
	function dataLinks(nodes: Map<number, Node>, path: string): string[] {
		const out: string[] = [];
		for (const n of nodes.values()) {
			const best = n.table.best(path);
			assert.ok(best, `node ${n.id} has a route`);
			assert.ok(!best.hops.includes(n.id), `node ${n.id}'s chain avoids itself`);
			if (best.peer !== "local") out.push(`${best.peer}>${n.id}`);
		}
		return out.sort();
	}

	test("1-2-4 tree: each link carries the broadcast once", () => {
		const nodes = tree(TIERS, [
			[11, [1]],
			[12, [1]],
			[101, [11]],
			[102, [11]],
			[103, [12]],
			[104, [12]],
		]);
		publish(nodes, 101, "room/cam");
		const sent = converge(nodes, "room/cam", true);
		assert.deepEqual([...sent.keys()].sort(), ["101>11", "11>1", "11>102", "12>103", "12>104", "1>12"]);
		assert.deepEqual(sent.get("12>104")?.hops, [9000, 101, 11, 1], "05 sender omits itself");
		assert.deepEqual(nodes.get(104)!.table.best("room/cam")?.hops, [9000, 101, 11, 1, 12]);
		assert.deepEqual(dataLinks(nodes, "room/cam"), ["101>11", "11>1", "11>102", "12>103", "12>104", "1>12"]);
	});

	test("multi-homed edges: no edge transits, media crosses each link at most once", () => {
		const both: number[] = [11, 12];
		const links: [number, number[]][] = [
			[11, [1]],
			[12, [1]],
			[101, both],
			[102, both],
			[103, both],
			[104, both],
		];
		const nodes = tree(TIERS, links);
		publish(nodes, 101, "live/x");
		const sent = converge(nodes, "live/x", true);
		for (const [key, { via }] of sent) {
			const [from, to] = key.split(">").map(Number);
			const n = nodes.get(from)!;
			if (n.tier === "edge") assert.equal(from, 101, `edge ${from} advertised to ${to}`);
			// Upward only what was learned locally or from a child.
			if (n.links.get(to) === "parent") assert.ok(via === "local" || n.links.get(via) === "child", key);
		}
		const data = dataLinks(nodes, "live/x");
		const undirected = data.map((l) => l.split(">").sort().join("-"));
		assert.equal(new Set(undirected).size, undirected.length, `a link used both ways: ${data}`);
		// Without the policy an edge relays between its two parents.
		const open = tree(TIERS, links);
		publish(open, 101, "live/x");
		const openSent = converge(open, "live/x", false);
		assert.ok(
			[...openSent.keys()].some((k) => open.get(Number(k.split(">")[0]))!.tier === "edge" && !k.startsWith("101>")),
			"split horizon alone lets edges transit",
		);
	});

	test("unpublish retracts everywhere", () => {
		const nodes = tree(TIERS, [
			[11, [1]],
			[12, [1]],
			[101, [11]],
			[102, [11]],
			[103, [12]],
			[104, [12]],
		]);
		publish(nodes, 103, "a");
		const sent = converge(nodes, "a", true);
		assert.equal(sent.size, 6);
		nodes.get(103)!.table.remove("a", "local");
		converge(nodes, "a", true, sent);
		assert.equal(sent.size, 0);
		for (const n of nodes.values()) assert.equal(n.table.best("a"), undefined, `node ${n.id}`);
	});
});
