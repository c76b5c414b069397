/**
 * Inputs the fuzzers found, each named after what it found. New ones come from the snippet that
 * `npm run fuzz` prints for a crashing case (the hex is the input; the target replays it).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseConnectTarget } from "../src/auth/params.ts";
import { DecodeError } from "../src/coding/errors.ts";
import { Reader } from "../src/coding/reader.ts";
import { Writer } from "../src/coding/writer.ts";
import { decodeAnnounce, encodeAnnounce } from "../src/moq/lite/wire/announce.ts";
import { encodeLiteSetup } from "../src/moq/lite/wire/setup.ts";
import { runCase } from "./fuzz/engine.ts";
import { targetNamed } from "./fuzz/targets.ts";

function hex(s: string): Uint8Array {
	return Uint8Array.from(Buffer.from(s, "hex"));
}

test("moq-lite-03: an ended ANNOUNCE with stray hops decodes without them, so it round-trips (fuzz seed 1 case 1881)", async () => {
	// 07 = ANNOUNCE decoder, then `06 00 03 "bbb" 20`: ended, suffix "bbb", 32 hops (03 sends no hop ids).
	assert.equal(await runCase(targetNamed("moq-lite-03"), hex("0706000362626220")), "ok");
	const m = decodeAnnounce(new Reader(hex("06000362626220")), 3);
	assert.deepEqual(m, { active: false, suffix: "bbb", hops: [] });
	const w = new Writer(16);
	encodeAnnounce(w, m, 3);
	assert.deepEqual(decodeAnnounce(new Reader(w.finish()), 3), m);
});

test("moq SETUP path: malformed percent-encoding is a refusal, not a URIError (the live fuzzer killed a worker with SETUP path /%zz)", async () => {
	assert.equal(parseConnectTarget("/%zz"), null);
	assert.equal(parseConnectTarget("/anon/%E0%A4%A?jwt=x"), null);
	const setup = (path: string) => {
		const w = new Writer(64);
		encodeLiteSetup(w, { path }, 5);
		return w.finish();
	};
	const target = targetNamed("moq SETUP path");
	assert.equal(await runCase(target, setup("/%zz")), "rejected");
	// Not a URL authority, just a path: accepted as one (no TypeError from a URL parser).
	assert.equal(await runCase(target, setup("//[")), "ok");
});

test("moq stream type: 8 bytes of 0xff is DecodeError 15, not a crash (the live fuzzer killed a raw-QUIC worker with it)", async () => {
	const eight = hex("ffffffffffffffff");
	assert.throws(
		() => new Reader(eight).varint(),
		(err: unknown) => err instanceof DecodeError && err.code === 15,
	);
	const target = targetNamed("moq stream type");
	assert.equal(await runCase(target, hex(`01${"ff".repeat(8)}`)), "rejected");
	assert.equal(await runCase(target, hex(`00${"ff".repeat(8)}00`)), "rejected");
});
