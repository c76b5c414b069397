import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DecodeError, NEED_MORE } from "../src/coding/errors.ts";
import { Reader } from "../src/coding/reader.ts";
import { Writer } from "../src/coding/writer.ts";
import * as A from "../src/moq/lite/wire/announce.ts";
import * as F from "../src/moq/lite/wire/fetch.ts";
import * as Gw from "../src/moq/lite/wire/goaway.ts";
import * as G from "../src/moq/lite/wire/group.ts";
import * as P from "../src/moq/lite/wire/probe.ts";
import * as Se from "../src/moq/lite/wire/session.ts";
import * as S from "../src/moq/lite/wire/setup.ts";
import * as Sub from "../src/moq/lite/wire/subscribe.ts";
import * as T from "../src/moq/lite/wire/track.ts";
import type { LiteVersion } from "../src/moq/lite/wire/version.ts";
import { ALL, cases } from "./support/moq-wire-cases.ts";
import { prng } from "./support/prng.ts";

type Decoder = (r: Reader) => unknown;

/** Every decoder in every version (including versions where it must refuse). */
function decoders(): [string, Decoder][] {
	const out: [string, Decoder][] = [
		["CLIENT_SETUP", (r) => S.decodeClientSetup(r)],
		["SERVER_SETUP", (r) => S.decodeServerSetup(r)],
	];
	for (const v of ALL) {
		const add = (name: string, fn: (r: Reader, v: LiteVersion) => unknown) =>
			out.push([`${name} v${v}`, (r) => fn(r, v)]);
		add("SETUP", S.decodeLiteSetup);
		add("SESSION_INFO", Se.decodeSessionInfo);
		add("ANNOUNCE_REQUEST", A.decodeAnnounceRequest);
		add("ANNOUNCE_OK", A.decodeAnnounceOk);
		add("ANNOUNCE_INIT", A.decodeAnnounceInit);
		add("ANNOUNCE", A.decodeAnnounce);
		add("SUBSCRIBE", Sub.decodeSubscribe);
		add("SUBSCRIBE_UPDATE", Sub.decodeSubscribeUpdate);
		add("SUBSCRIBE_RESPONSE", Sub.decodeSubscribeResponse);
		add("TRACK", T.decodeTrackRequest);
		add("TRACK_INFO", T.decodeTrackInfo);
		add("FETCH", F.decodeFetchRequest);
		add("PROBE", P.decodeProbe);
		add("GOAWAY", Gw.decodeGoaway);
		add("GROUP", G.decodeGroupHeader);
	}
	return out;
}

/** Runs a decoder over `b`; only success, NEED_MORE or DecodeError are allowed. */
function run(name: string, fn: Decoder, b: Uint8Array): "ok" | "more" | "error" {
	const r = new Reader(b);
	try {
		fn(r);
		assert.ok(r.pos <= b.length, `${name} read past the end`);
		assert.equal(r.end, b.length, `${name} restored the reader's end`);
		return "ok";
	} catch (e) {
		if (e === NEED_MORE) return "more";
		if (e instanceof DecodeError) {
			assert.equal(typeof e.code, "number");
			return "error";
		}
		assert.fail(`${name} threw ${String(e)} on ${Buffer.from(b).toString("hex")}`);
	}
}

describe("moq-wire garbage", () => {
	test("random bytes: every decoder ends in a value, NEED_MORE or DecodeError", () => {
		const rnd = prng(1);
		const tally = { ok: 0, more: 0, error: 0 };
		for (const [name, fn] of decoders()) {
			for (let i = 0; i < 1000; i++) {
				const len = Math.floor(rnd() * 48);
				const b = new Uint8Array(len);
				// Bias towards small bytes so lengths and counts are often plausible.
				for (let j = 0; j < len; j++) b[j] = rnd() < 0.5 ? Math.floor(rnd() * 8) : Math.floor(rnd() * 256);
				tally[run(name, fn, b)]++;
			}
		}
		assert.ok(tally.ok > 0 && tally.more > 0 && tally.error > 0, JSON.stringify(tally));
	});

	test("mutated valid messages: flips, inserts, deletes", () => {
		const rnd = prng(2);
		for (const k of cases()) {
			const w = new Writer();
			k.encode(w);
			const good = w.finish().subarray(k.skip);
			for (let i = 0; i < 400; i++) {
				const b = Array.from(good);
				const edits = 1 + Math.floor(rnd() * 3);
				for (let e = 0; e < edits; e++) {
					const at = Math.floor(rnd() * (b.length + 1));
					const kind = rnd();
					if (kind < 0.5 && b.length > 0) b[at % b.length] = Math.floor(rnd() * 256);
					else if (kind < 0.75) b.splice(at, 0, Math.floor(rnd() * 256));
					else b.splice(at, 1);
				}
				run(k.name, k.decode, Uint8Array.from(b));
			}
		}
	});

	test("random bytes into the frame parsers: only DecodeError, never a hang", () => {
		const rnd = prng(3);
		for (const v of ALL) {
			for (let i = 0; i < 2000; i++) {
				const d = i % 2 === 0 ? new G.GroupStreamDecoder(v, 256) : new G.FrameParser(v, 256);
				let frames = 0;
				d.onFrameEnd = () => frames++;
				const len = Math.floor(rnd() * 300);
				const b = new Uint8Array(len);
				for (let j = 0; j < len; j++) b[j] = rnd() < 0.7 ? Math.floor(rnd() * 16) : Math.floor(rnd() * 256);
				try {
					for (let p = 0; p < len; ) {
						const n = 1 + Math.floor(rnd() * 20);
						d.push(b.subarray(p, p + n));
						p += n;
					}
					d.finish();
				} catch (e) {
					if (!(e instanceof DecodeError)) assert.fail(`v${v} threw ${String(e)}`);
				}
			}
		}
	});
});
