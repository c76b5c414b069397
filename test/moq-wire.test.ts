import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DecodeError, NEED_MORE } from "../src/coding/errors.ts";
import { Reader } from "../src/coding/reader.ts";
import { Writer } from "../src/coding/writer.ts";
import * as Codes from "../src/errors/codes.ts";
import * as A from "../src/moq/lite/wire/announce.ts";
import * as F from "../src/moq/lite/wire/fetch.ts";
import * as Gw from "../src/moq/lite/wire/goaway.ts";
import * as P from "../src/moq/lite/wire/probe.ts";
import * as Se from "../src/moq/lite/wire/session.ts";
import * as S from "../src/moq/lite/wire/setup.ts";
import { BIDI, UNI } from "../src/moq/lite/wire/stream-type.ts";
import * as Sub from "../src/moq/lite/wire/subscribe.ts";
import * as T from "../src/moq/lite/wire/track.ts";
import * as V from "../src/moq/lite/wire/version.ts";
import { PathError } from "../src/path/index.ts";
import { type Case, cases, hex } from "./support/moq-wire-cases.ts";

function encode(k: Case): Uint8Array {
	const w = new Writer(4);
	k.encode(w);
	return w.finish();
}

function bytes(h: string): Uint8Array {
	return Uint8Array.from(Buffer.from(h.replace(/\s+/g, ""), "hex"));
}

function toHex(b: Uint8Array): string {
	return Buffer.from(b).toString("hex");
}

/** Asserts `fn` throws a DecodeError with `code`. */
function rejects(fn: () => unknown, code: number, what?: RegExp): void {
	assert.throws(fn, (e: unknown) => {
		assert.ok(e instanceof DecodeError, `expected DecodeError, got ${String(e)}`);
		assert.equal(e.code, code, `code of "${e.message}"`);
		if (what) assert.match(e.message, what);
		return true;
	});
}

/** Splits a framed message into (prefix up to the length field, length, body) for forging lengths. */
function split(k: Case, b: Uint8Array): { head: Uint8Array; body: Uint8Array } {
	let p = k.skip;
	if (k.framing === "u16") {
		return { head: b.subarray(0, p), body: b.subarray(p + 2) };
	}
	const r = new Reader(b, p);
	if (k.framing === "typed") r.varint();
	p = r.pos;
	r.varint();
	return { head: b.subarray(0, p), body: b.subarray(r.pos) };
}

function frame(k: Case, head: Uint8Array, len: number, body: Uint8Array): Uint8Array {
	const w = new Writer();
	w.bytes(head);
	if (k.framing === "u16") w.u16(len);
	else w.varint(len);
	w.bytes(body);
	return w.finish();
}

describe("moq-wire round trips", () => {
	for (const k of cases()) {
		test(k.name, () => {
			const b = encode(k);
			if (k.hex) assert.equal(toHex(b), k.hex, "bytes match the known encoding");
			const r = new Reader(b, k.skip);
			assert.deepEqual(k.decode(r), k.value);
			assert.equal(r.pos, b.length, "consumed exactly");
			// A second message right behind the first: the decoder must stop at its own end.
			const twice = new Uint8Array(b.length * 2);
			twice.set(b);
			twice.set(b, b.length);
			const r2 = new Reader(twice, k.skip);
			assert.deepEqual(k.decode(r2), k.value);
			assert.equal(r2.pos, b.length);
		});
	}
});

describe("moq-wire truncation and exact length", () => {
	test("every truncation of every message throws NEED_MORE, nothing else", () => {
		for (const k of cases()) {
			const b = encode(k);
			for (let n = k.skip; n < b.length; n++) {
				const r = new Reader(b, k.skip, n);
				assert.throws(
					() => k.decode(r),
					(e) => e === NEED_MORE,
					`${k.name} cut at ${n}/${b.length}`,
				);
			}
		}
	});

	test("a trailing byte inside the length is a violation (15)", () => {
		for (const k of cases()) {
			const { head, body } = split(k, encode(k));
			const longer = new Uint8Array(body.length + 1);
			longer.set(body);
			const forged = frame(k, head, longer.length, longer);
			rejects(() => k.decode(new Reader(forged, k.skip)), Codes.PROTOCOL_VIOLATION);
		}
	});

	test("a body shorter than its fields is a violation (15), not NEED_MORE", () => {
		for (const k of cases()) {
			const { head, body } = split(k, encode(k));
			if (body.length === 0) continue;
			// Drop the last body byte but keep the stream going with other bytes after it.
			const short = body.subarray(0, body.length - 1);
			const forged = frame(k, head, short.length, new Uint8Array([...short, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
			rejects(
				() => k.decode(new Reader(forged, k.skip)),
				Codes.PROTOCOL_VIOLATION,
				/shorter|trailing|string|UTF|varint/,
			);
		}
	});

	test("a declared length above maxMessageBytes is refused before the body arrives", () => {
		const w = new Writer();
		w.varint(70000); // no body at all
		const b = w.finish();
		rejects(() => Sub.decodeSubscribe(new Reader(b), 5), Codes.PROTOCOL_VIOLATION, /exceeds/);
		rejects(() => A.decodeAnnounce(new Reader(bytes("4064")), 4, { maxMessageBytes: 50 }), 15, /exceeds 50/);
		// At the limit it just waits.
		assert.throws(
			() => A.decodeAnnounce(new Reader(bytes("4032")), 4, { maxMessageBytes: 50 }),
			(e) => e === NEED_MORE,
		);
		rejects(() => S.decodeClientSetup(new Reader(bytes("0100")), { maxMessageBytes: 200 }), 15, /exceeds 200/);
	});
});

describe("moq-wire field rules", () => {
	test("bools are strictly 0 or 1", () => {
		// SUBSCRIBE v4 with ordered = 2
		rejects(
			() => Sub.decodeSubscribe(new Reader(bytes(hex(0x10, 0, 3, "bbb", 5, "video", 2, 2, 0, 0, 0))), 4),
			15,
			/bool/,
		);
		rejects(() => T.decodeTrackInfo(new Reader(bytes("0601025388" + "43e8")), 5), 15, /bool/);
	});

	test("announce status: 0/1 everywhere, 2 (restart) only on 05", () => {
		const restart = bytes(hex(7, 2, 3, "bbb", 1, 7));
		assert.deepEqual(A.decodeAnnounce(new Reader(restart), 5), { active: true, suffix: "bbb", hops: [7] });
		rejects(() => A.decodeAnnounce(new Reader(restart), 4), 15, /status/);
		rejects(() => A.decodeAnnounce(new Reader(bytes(hex(6, 3, 3, "bbb", 0))), 5), 15, /status/);
	});

	test("more than 32 hops is a violation; 32 is fine", () => {
		for (const v of [3, 4, 5] as const) {
			const ok: A.Announce<string> = { active: true, suffix: "x", hops: new Array(32).fill(v === 3 ? 0 : 1) };
			const w = new Writer();
			A.encodeAnnounce(w, ok, v);
			assert.deepEqual(A.decodeAnnounce(new Reader(w.finish()), v), ok);
			const body = [1, 1, "x".charCodeAt(0), 33, ...(v === 3 ? [] : new Array(33).fill(1))];
			rejects(() => A.decodeAnnounce(new Reader(Uint8Array.from([body.length, ...body])), v), 15, /hops/);
		}
		assert.throws(
			() => A.encodeAnnounce(new Writer(), { active: true, suffix: "x", hops: new Array(33).fill(1) }, 4),
			RangeError,
		);
	});

	test("string bounds: paths and tracks ≤ 1024 bytes, URIs ≤ 8192", () => {
		const long = "a".repeat(1025);
		const w = new Writer();
		A.encodeAnnounceRequest(w, { prefix: long, excludeHop: 0 }, 3);
		rejects(() => A.decodeAnnounceRequest(new Reader(w.finish()), 3), 15, /exceeds 1024/);
		w.clear();
		Sub.encodeSubscribe(
			w,
			{
				id: 1,
				broadcast: "b",
				track: long,
				priority: 0,
				ordered: false,
				maxLatencyMs: 0,
				startGroup: null,
				endGroup: null,
			},
			5,
		);
		rejects(() => Sub.decodeSubscribe(new Reader(w.finish()), 5), 15, /exceeds 1024/);
		w.clear();
		Gw.encodeGoaway(w, { uri: "u".repeat(8192) }, 4);
		assert.equal(Gw.decodeGoaway(new Reader(w.finish()), 4).uri.length, 8192);
		w.clear();
		Gw.encodeGoaway(w, { uri: "u".repeat(8193) }, 4);
		rejects(() => Gw.decodeGoaway(new Reader(w.finish()), 4), 15, /exceeds 8192/);
	});

	test("invalid UTF-8 is a violation", () => {
		rejects(() => Gw.decodeGoaway(new Reader(bytes("0201ff")), 4), 15, /UTF-8/);
	});

	test("paths are normalised on decode and limited to 32 segments", () => {
		const w = new Writer();
		A.encodeAnnounceRequest(w, { prefix: "//anon//live/", excludeHop: 0 }, 4);
		assert.equal(A.decodeAnnounceRequest(new Reader(w.finish()), 4).prefix, "anon/live");
		const deep = new Array(33).fill("s").join("/");
		w.clear();
		F.encodeFetchRequest(w, { broadcast: deep, track: "t", priority: 0, group: 0 }, 5);
		const b = w.finish();
		rejects(() => F.decodeFetchRequest(new Reader(b), 5), 15, /segments/);
		assert.equal(F.decodeFetchRequest(new Reader(b), 5, { maxPathSegments: 40 }).broadcast, deep);
		w.clear();
		A.encodeAnnounceRequest(w, { prefix: "a/b/c", excludeHop: 0 }, 4);
		rejects(() => A.decodeAnnounceRequest(new Reader(w.finish()), 4, { maxPathSegments: 2 }), 15, /segments/);
	});

	test("varints above 2^53-1 are rejected", () => {
		// SUBSCRIBE_END v5 with group = 2^53
		rejects(() => Sub.decodeSubscribeResponse(new Reader(bytes("0108c020000000000000")), 5), 15, /2\^53/);
	});

	test("unknown subscribe response types are code 16", () => {
		rejects(() => Sub.decodeSubscribeResponse(new Reader(bytes("0201000000")), 4), Codes.UNEXPECTED_MESSAGE);
		rejects(() => Sub.decodeSubscribeResponse(new Reader(bytes("030100")), 5), Codes.UNEXPECTED_MESSAGE);
		// 02's SUBSCRIBE_OK is untyped and empty: any body is trailing bytes.
		rejects(() => Sub.decodeSubscribeResponse(new Reader(bytes("0100")), 2), 15, /trailing/);
	});

	test("messages decoded in a version that lacks them are code 17", () => {
		const r = () => new Reader(bytes("00"));
		rejects(() => T.decodeTrackRequest(r(), 4), Codes.UNSUPPORTED);
		rejects(() => T.decodeTrackInfo(r(), 3), Codes.UNSUPPORTED);
		rejects(() => A.decodeAnnounceOk(r(), 4), Codes.UNSUPPORTED);
		rejects(() => A.decodeAnnounceInit(r(), 3), Codes.UNSUPPORTED);
		rejects(() => P.decodeProbe(r(), 2), Codes.UNSUPPORTED);
		rejects(() => Gw.decodeGoaway(r(), 3), Codes.UNSUPPORTED);
		rejects(() => F.decodeFetchRequest(r(), 2), Codes.UNSUPPORTED);
		rejects(() => Se.decodeSessionInfo(r(), 3), Codes.UNSUPPORTED);
		rejects(() => S.decodeLiteSetup(r(), 4), Codes.UNSUPPORTED);
	});

	test("encoders refuse messages their version lacks and out-of-range values", () => {
		const w = new Writer();
		assert.throws(() => Sub.encodeSubscribeEnd(w, { group: 1 }, 4));
		assert.throws(() => Sub.encodeSubscribeDrop(w, { start: 1, end: 1, error: 0 }, 2));
		assert.throws(() => Sub.encodeSubscribeOk(w, {}, 5), RangeError);
		assert.throws(
			() => T.encodeTrackInfo(w, { priority: 0, ordered: false, maxLatencyMs: 0, timescale: 0 }, 5),
			RangeError,
		);
		assert.throws(() => Gw.encodeGoaway(w, { uri: "" }, 3));
		assert.throws(
			() =>
				Sub.encodeSubscribe(
					w,
					{
						id: 1,
						broadcast: "b",
						track: "t",
						priority: 256,
						ordered: false,
						maxLatencyMs: 0,
						startGroup: null,
						endGroup: null,
					},
					4,
				),
			RangeError,
		);
		assert.throws(
			() => S.encodeClientSetup(w, { versions: [], params: new Map([[2, new Uint8Array(1)]]) }),
			RangeError,
		);
		assert.throws(() => S.encodeClientSetup(w, { versions: [], params: new Map([[7, 1]]) }), RangeError);
	});

	test("TRACK_INFO with timescale 0 is a violation", () => {
		rejects(() => T.decodeTrackInfo(new Reader(bytes("05010053880" + "0")), 5), 15, /timescale/);
	});

	test("lite-05 SETUP: unknown ids skipped, duplicates and > 64 params rejected, values normalised", () => {
		// count 3: unknown id 9 (3 bytes), probe = 7 (saturates to 2), role = 5 (unknown → both)
		const b = bytes("0c03" + "0903aabbcc" + "010107" + "030105");
		assert.deepEqual(S.decodeLiteSetup(new Reader(b), 5), { probe: 2, role: 0 });
		// origin 0 means no identity
		assert.deepEqual(S.decodeLiteSetup(new Reader(bytes("0401050100")), 5), {});
		rejects(() => S.decodeLiteSetup(new Reader(bytes("0702010101010102")), 5), 15, /duplicate/);
		rejects(() => S.decodeLiteSetup(new Reader(bytes("024041")), 5), 15, /65 setup params/);
		// a varint param whose length disagrees with its varint
		rejects(() => S.decodeLiteSetup(new Reader(bytes("050101020700")), 5), 15, /length/);
		const w = new Writer();
		w.varint(65);
		for (let i = 0; i < 65; i++) w.u8(0x10 + i).u8(0);
		const body = w.finish();
		const framed = new Writer();
		framed.varint(body.length).bytes(body);
		rejects(() => S.decodeLiteSetup(new Reader(framed.finish()), 5), 15, /65 setup params/);
	});

	test("0x20 SETUP: duplicate params rejected, byte params copied out of the receive buffer", () => {
		rejects(() => S.decodeClientSetup(new Reader(bytes("0006" + "00" + "02" + "0201" + "0202"))), 15, /duplicate/);
		rejects(() => S.decodeClientSetup(new Reader(bytes("0003" + "00" + "4041"))), 15, /65 setup params/);
		const b = bytes("0005" + "00" + "01" + "0701" + "61");
		const m = S.decodeClientSetup(new Reader(b));
		b.fill(0);
		assert.deepEqual(m.params.get(7), Uint8Array.of(0x61));
	});
});

describe("moq-wire version, codes, stream types", () => {
	test("ALPNs and version codes", () => {
		assert.equal(V.versionFromAlpn("moq-lite-05"), 5);
		assert.equal(V.versionFromAlpn("moq-lite-04"), 4);
		assert.equal(V.versionFromAlpn("moq-lite-03"), 3);
		assert.equal(V.versionFromAlpn("moql"), null);
		assert.equal(V.versionFromAlpn(""), null);
		assert.equal(V.versionFromAlpn("moq-lite-06-wip"), null);
		assert.deepEqual(V.SUPPORTED_ALPNS, ["moq-lite-05", "moq-lite-04", "moq-lite-03", "moql"]);
		assert.equal(V.versionCode(5), V.LITE_05);
		assert.equal(V.versionFromCode(V.LITE_02), 2);
		assert.equal(V.versionFromCode(V.LITE_01), null);
		assert.equal(V.versionFromCode(V.DRAFT_14), null);
		assert.equal(V.selectCompatVersion([V.LITE_02, V.LITE_01, V.DRAFT_14]), 2);
		assert.equal(V.selectCompatVersion([V.LITE_01, V.DRAFT_14]), null);
	});

	test("codes and stream types", () => {
		assert.equal(Codes.PROTOCOL_VIOLATION, 15);
		assert.equal(Codes.FRAME_TOO_LARGE, 27);
		assert.equal(Codes.EVICTED, 31);
		assert.equal(Codes.codeName(27), "frame too large");
		assert.equal(Codes.codeName(66), "app 2");
		assert.equal(BIDI.TRACK, 6);
		assert.equal(BIDI.SETUP_SERVER, 0x21);
		assert.equal(UNI.SETUP, 1);
	});
});

describe("moq-wire paths", () => {
	// Decoders validate every path once (src/path, its own unit tests in path.test.ts).
	const prefixOf = (prefix: string, maxPathSegments?: number) => {
		const w = new Writer(2048);
		A.encodeAnnounceRequest(w, { prefix, excludeHop: 0 }, 5);
		return A.decodeAnnounceRequest(new Reader(w.view()), 5, { maxPathSegments }).prefix;
	};

	test("a decoded path is normalised", () => {
		assert.equal(prefixOf(""), "");
		assert.equal(prefixOf("///"), "");
		assert.equal(prefixOf("/a//b/"), "a/b");
		const p32 = new Array(32).fill("x").join("/");
		assert.equal(prefixOf(p32), p32);
	});

	test("too many segments and dot segments are refused with 15 (PathError)", () => {
		const p32 = new Array(32).fill("x").join("/");
		rejects(() => prefixOf(`${p32}/y`), Codes.PROTOCOL_VIOLATION, /segments/);
		rejects(() => prefixOf("a/b/c", 2), Codes.PROTOCOL_VIOLATION, /segments/);
		for (const bad of ["..", "a/./b", "a/.."]) {
			rejects(() => prefixOf(bad), Codes.PROTOCOL_VIOLATION, /not allowed/);
			assert.throws(() => prefixOf(bad), PathError);
		}
	});
});
