/**
 * Cluster wire vectors: announce streams with hop chains for each moq-lite version, as moq-relay 0.14.x
 * writes them (moq-dev/moq c867f2083: rs/moq-net/src/lite/announce.rs, lite/message.rs (every message is
 * varint-size-prefixed), lite/setup.rs + parameters.rs, lite/stream.rs), checked against our codecs in
 * src/moq/lite/wire/. Each vector is encoded and decoded both ways with exact bytes.
 *
 * Path `room/cam` is `08 726f6f6d2f63616d` on the wire (varint length + UTF-8).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { hopsReceived, hopsToSend } from "../src/cluster/routes.ts";
import { DecodeError } from "../src/coding/errors.ts";
import { Reader } from "../src/coding/reader.ts";
import { Writer } from "../src/coding/writer.ts";
import * as A from "../src/moq/lite/wire/announce.ts";
import * as S from "../src/moq/lite/wire/setup.ts";
import { BIDI, UNI } from "../src/moq/lite/wire/stream-type.ts";
import type { LiteVersion } from "../src/moq/lite/wire/version.ts";

const PATH = "726f6f6d2f63616d"; // room/cam

function bytes(h: string): Uint8Array {
	return Uint8Array.from(Buffer.from(h.replace(/[\s<>]+/g, "").replace("path", PATH), "hex"));
}

function hexOf(fn: (w: Writer) => void): string {
	const w = new Writer(4);
	fn(w);
	return Buffer.from(w.finish()).toString("hex");
}

function want(h: string): string {
	return Buffer.from(bytes(h)).toString("hex");
}

/** Decodes all of `h` with `fn`, requiring every byte consumed. */
function decodeAll<T>(h: string, fn: (r: Reader) => T): T {
	const r = new Reader(bytes(h));
	const m = fn(r);
	assert.equal(r.pos, r.end, "trailing bytes");
	return m;
}

function refused(fn: () => unknown, why?: RegExp): void {
	assert.throws(fn, (e: unknown) => e instanceof DecodeError && (why === undefined || why.test(e.message)));
}

describe("lite-05 (the notes' vectors)", () => {
	const v: LiteVersion = 5;

	test("ANNOUNCE_OK{origin 42, active 3} = 02 2a 03 (size prefix, no type byte)", () => {
		assert.equal(
			hexOf((w) => A.encodeAnnounceOk(w, { hopId: 42, activeCount: 3 }, v)),
			"022a03",
		);
		assert.deepEqual(
			decodeAll("02 2a 03", (r) => A.decodeAnnounceOk(r, v)),
			{ hopId: 42, activeCount: 3 },
		);
	});

	test("Active{hops [7]} = 0c 01 08 <path> 01 07", () => {
		const h = "0c 01 08 <path> 01 07";
		assert.equal(
			hexOf((w) => A.encodeAnnounce(w, { active: true, suffix: "room/cam", hops: [7] }, v)),
			want(h),
		);
		assert.deepEqual(
			decodeAll(h, (r) => A.decodeAnnounce(r, v)),
			{ active: true, suffix: "room/cam", hops: [7] },
		);
	});

	test("Ended = 0b 00 08 <path> 00", () => {
		const h = "0b 00 08 <path> 00";
		assert.equal(
			hexOf((w) => A.encodeAnnounce(w, { active: false, suffix: "room/cam", hops: [7] }, v)),
			want(h),
		);
		assert.deepEqual(
			decodeAll(h, (r) => A.decodeAnnounce(r, v)),
			{ active: false, suffix: "room/cam", hops: [] },
		);
		// moq-net's Ended decoder reads a chain too; a stray one is dropped.
		assert.deepEqual(
			decodeAll("0c 00 08 <path> 01 07", (r) => A.decodeAnnounce(r, v)),
			{ active: false, suffix: "room/cam", hops: [] },
		);
	});

	test('announce stream start, prefix "" exclude_hop 42 = 01 02 00 2a', () => {
		const start = (w: Writer) => {
			w.varint(BIDI.ANNOUNCE);
			A.encodeAnnounceRequest(w, { prefix: "", excludeHop: 42 }, v);
		};
		assert.equal(hexOf(start), "0102002a");
		const r = new Reader(bytes("01 02 00 2a"));
		assert.equal(r.varint(), BIDI.ANNOUNCE);
		assert.deepEqual(A.decodeAnnounceRequest(r, v), { prefix: "", excludeHop: 42 });
		assert.equal(r.pos, r.end);
	});

	test("explicit restart status 2 reads as an active (moq-net accepts it on 05, never sends it)", () => {
		assert.deepEqual(
			decodeAll("0c 02 08 <path> 01 07", (r) => A.decodeAnnounce(r, v)),
			{ active: true, suffix: "room/cam", hops: [7] },
		);
		refused(() => decodeAll("0d 02 08 <path> 02 07 2a", (r) => A.decodeAnnounce(r, 4)), /status 2/);
	});

	test("relay 42 forwarding route [7]: the whole stream reply, and what the receiver rebuilds", () => {
		const hops = hopsToSend(v, [7], 42)!;
		const reply = hexOf((w) => {
			A.encodeAnnounceOk(w, { hopId: 42, activeCount: 1 }, v);
			A.encodeAnnounce(w, { active: true, suffix: "room/cam", hops }, v);
		});
		assert.equal(reply, want("02 2a 01 0c 01 08 <path> 01 07"));
		const r = new Reader(bytes(reply));
		const ok = A.decodeAnnounceOk(r, v);
		const a = A.decodeAnnounce(r, v);
		assert.deepEqual(hopsReceived(v, a.hops, ok.hopId), [7, 42]);
	});

	test("multi-byte hop ids: 1000 is a 2-byte varint, 2^53-1 an 8-byte one", () => {
		const h = "0d 01 08 <path> 01 43e8";
		assert.equal(
			hexOf((w) => A.encodeAnnounce(w, { active: true, suffix: "room/cam", hops: [1000] }, v)),
			want(h),
		);
		assert.deepEqual(decodeAll(h, (r) => A.decodeAnnounce(r, v)).hops, [1000]);
		const big = "13 01 08 <path> 01 c01fffffffffffff";
		assert.equal(
			hexOf((w) => A.encodeAnnounce(w, { active: true, suffix: "room/cam", hops: [Number.MAX_SAFE_INTEGER] }, v)),
			want(big),
		);
		assert.deepEqual(decodeAll(big, (r) => A.decodeAnnounce(r, v)).hops, [Number.MAX_SAFE_INTEGER]);
	});

	test("LIMITATION: a hop id of 2^53 or more (moq-relay allows a configured `id` below 2^62) is refused", () => {
		// Origin 2^53 as an 8-byte varint: c0 20 00 00 00 00 00 00. moq-net decodes it; our Reader throws,
		// so the whole announce (and its stream) fails. moq-relay's random ids stay below 2^53.
		refused(() => decodeAll("13 01 08 <path> 01 c020000000000000", (r) => A.decodeAnnounce(r, v)), /2\^53/);
		refused(() => decodeAll("09 c020000000000000 00", (r) => A.decodeAnnounceOk(r, v)), /2\^53/);
		// In SETUP too, where moq-net would at worst ignore the param (ids of 2^62 and up read as none).
		refused(() => decodeAll("0b 01 05 08 c020000000000000", (r) => S.decodeLiteSetup(r, v)), /2\^53/);
	});

	test("32 hops decode, 33 are refused (moq-net: BoundsExceeded)", () => {
		const ids32 = "01".repeat(32);
		const h32 = `2b 01 08 <path> 20 ${ids32}`; // size 1 + 9 + 1 + 32 = 43
		const enc = hexOf((w) => A.encodeAnnounce(w, { active: true, suffix: "room/cam", hops: Array(32).fill(1) }, v));
		assert.equal(enc, want(h32));
		assert.equal(decodeAll(h32, (r) => A.decodeAnnounce(r, v)).hops.length, 32);
		refused(() => decodeAll(`2c 01 08 <path> 21 ${ids32}01`, (r) => A.decodeAnnounce(r, v)), /33 hops/);
		assert.throws(() =>
			hexOf((w) => A.encodeAnnounce(w, { active: true, suffix: "room/cam", hops: Array(33).fill(1) }, v)),
		);
	});

	test("SETUP (uni stream type 1) with Origin param 0x5 = 01 04 01 05 01 2a", () => {
		const h = "01 04 01 05 01 2a"; // type, size 4, 1 param: id 5, length 1, varint 42
		const enc = hexOf((w) => {
			w.varint(UNI.SETUP);
			S.encodeLiteSetup(w, { origin: 42 }, v);
		});
		assert.equal(enc, want(h));
		const r = new Reader(bytes(h));
		assert.equal(r.varint(), UNI.SETUP);
		assert.deepEqual(S.decodeLiteSetup(r, v), { origin: 42 });
		// A 2-byte origin: the param length is the varint's size.
		assert.equal(
			hexOf((w) => S.encodeLiteSetup(w, { origin: 1000 }, v)),
			"0501050243e8",
		);
		assert.deepEqual(
			decodeAll("05 01 05 02 43e8", (r) => S.decodeLiteSetup(r, v)),
			{ origin: 1000 },
		);
	});

	test("SETUP as moq-relay sends it: params in hash-map order, Cost (0x4) skipped, origin 0 = none", () => {
		// probe Report (1) + origin 42, both orders (moq-net's Parameters is a HashMap).
		for (const h of ["07 02 01 01 01 05 01 2a", "07 02 05 01 2a 01 01 01"]) {
			assert.deepEqual(
				decodeAll(h, (r) => S.decodeLiteSetup(r, v)),
				{ probe: 1, origin: 42 },
			);
		}
		// A dialer's `?cost=3` travels as param 4 on lite-05 too; we ignore it.
		assert.deepEqual(
			decodeAll("07 02 04 01 03 05 01 2a", (r) => S.decodeLiteSetup(r, v)),
			{ origin: 42 },
		);
		assert.deepEqual(
			decodeAll("04 01 05 01 00", (r) => S.decodeLiteSetup(r, v)),
			{},
		);
	});
});

describe("lite-04: the sender appends itself", () => {
	const v: LiteVersion = 4;
	test("relay 42 forwarding route [7]: Active = 0d 01 08 <path> 02 07 2a", () => {
		const hops = hopsToSend(v, [7], 42)!;
		assert.deepEqual(hops, [7, 42]);
		const h = "0d 01 08 <path> 02 07 2a";
		assert.equal(
			hexOf((w) => A.encodeAnnounce(w, { active: true, suffix: "room/cam", hops }, v)),
			want(h),
		);
		const a = decodeAll(h, (r) => A.decodeAnnounce(r, v));
		assert.deepEqual(a, { active: true, suffix: "room/cam", hops: [7, 42] });
		assert.deepEqual(hopsReceived(v, a.hops), [7, 42]);
	});

	test("Ended = 0b 00 08 <path> 00; stream start = 01 02 00 2a; no ANNOUNCE_OK", () => {
		assert.equal(
			hexOf((w) => A.encodeAnnounce(w, { active: false, suffix: "room/cam", hops: [] }, v)),
			want("0b 00 08 <path> 00"),
		);
		assert.equal(
			hexOf((w) => {
				w.varint(BIDI.ANNOUNCE);
				A.encodeAnnounceRequest(w, { prefix: "", excludeHop: 42 }, v);
			}),
			"0102002a",
		);
		assert.throws(() => hexOf((w) => A.encodeAnnounceOk(w, { hopId: 42, activeCount: 0 }, v)));
	});
});

describe("lite-03: a count only, the sender counted", () => {
	const v: LiteVersion = 3;
	test("relay 42 forwarding route [7]: Active = 0b 01 08 <path> 02", () => {
		const hops = hopsToSend(v, [7], 42)!;
		const h = "0b 01 08 <path> 02";
		assert.equal(
			hexOf((w) => A.encodeAnnounce(w, { active: true, suffix: "room/cam", hops }, v)),
			want(h),
		);
		const a = decodeAll(h, (r) => A.decodeAnnounce(r, v));
		assert.deepEqual(a, { active: true, suffix: "room/cam", hops: [0, 0] });
		assert.deepEqual(hopsReceived(v, a.hops), [0, 0], "unknown ids: loop-blind");
	});

	test("Ended = 0b 00 08 <path> 00; stream start has no exclude_hop = 01 01 00", () => {
		assert.equal(
			hexOf((w) => A.encodeAnnounce(w, { active: false, suffix: "room/cam", hops: [] }, v)),
			want("0b 00 08 <path> 00"),
		);
		assert.equal(
			hexOf((w) => {
				w.varint(BIDI.ANNOUNCE);
				A.encodeAnnounceRequest(w, { prefix: "", excludeHop: 42 }, v);
			}),
			"010100",
		);
		assert.deepEqual(
			decodeAll("01 00", (r) => A.decodeAnnounceRequest(r, v)),
			{ prefix: "", excludeHop: 0 },
		);
	});
});

describe("lite-02: no hops", () => {
	const v: LiteVersion = 2;
	test("Active = 0a 01 08 <path>; Ended = 0a 00 08 <path>", () => {
		assert.equal(
			hexOf((w) => A.encodeAnnounce(w, { active: true, suffix: "room/cam", hops: hopsToSend(v, [7], 42)! }, v)),
			want("0a 01 08 <path>"),
		);
		const a = decodeAll("0a 01 08 <path>", (r) => A.decodeAnnounce(r, v));
		assert.deepEqual(a, { active: true, suffix: "room/cam", hops: [] });
		assert.deepEqual(hopsReceived(v, a.hops), [0], "moq-relay records [0]");
		assert.equal(
			hexOf((w) => A.encodeAnnounce(w, { active: false, suffix: "room/cam", hops: [] }, v)),
			want("0a 00 08 <path>"),
		);
	});

	test("ANNOUNCE_INIT{[room/cam]} has the same bytes as an Active (count 1 vs status 1)", () => {
		assert.equal(
			hexOf((w) => A.encodeAnnounceInit(w, { suffixes: ["room/cam"] }, v)),
			want("0a 01 08 <path>"),
		);
		assert.deepEqual(
			decodeAll("0a 01 08 <path>", (r) => A.decodeAnnounceInit(r, v)),
			{ suffixes: ["room/cam"] },
		);
	});

	test("stream start = 01 01 00; status 2 is refused", () => {
		assert.equal(
			hexOf((w) => {
				w.varint(BIDI.ANNOUNCE);
				A.encodeAnnounceRequest(w, { prefix: "", excludeHop: 42 }, v);
			}),
			"010100",
		);
		refused(() => decodeAll("0a 02 08 <path>", (r) => A.decodeAnnounce(r, v)), /status 2/);
	});
});
