import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DecodeError } from "../src/coding/errors.ts";
import { Writer } from "../src/coding/writer.ts";
import { fromH3, H3, toH3 } from "../src/errors/codes.ts";
import { Setting } from "../src/webtransport/codes.ts";
import {
	Body,
	closeReasonBytes,
	decodeCloseCapsule,
	decodeSettings,
	peerWebTransportSessions,
	type TlvHandler,
	TlvParser,
	writeCloseCapsuleFrame,
	writeSettingsFrame,
} from "../src/webtransport/frames.ts";
import { HUFFMAN_CODES, huffmanDecode, huffmanEncode } from "../src/webtransport/huffman.ts";
import { decodeFieldSection, encodeFieldSection, type Field, STATIC_TABLE } from "../src/webtransport/qpack.ts";
import { parseConnectRequest, selectProtocol } from "../src/webtransport/request.ts";
import { parseProtocolItem, parseProtocolList, serializeSfString } from "../src/webtransport/sfv.ts";
import { chromiumConnectSection } from "./support/h3-bytes.ts";

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"));
const ascii = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array) => new TextDecoder().decode(b);

function throwsCode(fn: () => unknown, code: number): void {
	assert.throws(fn, (err: unknown) => err instanceof DecodeError && err.code === code);
}

describe("huffman (RFC 7541 Appendix B)", () => {
	// RFC 7541 C.4.1–C.4.3 (requests) and C.6.1 (responses).
	const vectors: [string, string][] = [
		["www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"],
		["no-cache", "a8eb 1064 9cbf"],
		["custom-key", "25a8 49e9 5ba9 7d7f"],
		["custom-value", "25a8 49e9 5bb8 e8b4 bf"],
		["302", "6402"],
		["private", "aec3 771a 4b"],
		["Mon, 21 Oct 2013 20:13:21 GMT", "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"],
		["https://www.example.com", "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"],
	];
	for (const [text, encoded] of vectors) {
		it(`decodes and encodes ${JSON.stringify(text)}`, () => {
			assert.equal(str(huffmanDecode(hex(encoded))), text);
			assert.deepEqual(huffmanEncode(ascii(text)), hex(encoded));
		});
	}

	it("derives the RFC's codes from the code lengths (spot checks)", () => {
		assert.equal(HUFFMAN_CODES[0], 0x1ff8);
		assert.equal(HUFFMAN_CODES[1], 0x7fffd8);
		assert.equal(HUFFMAN_CODES[9], 0xffffea);
		assert.equal(HUFFMAN_CODES[10], 0x3ffffffc);
		assert.equal(HUFFMAN_CODES[22], 0x3ffffffe);
		assert.equal(HUFFMAN_CODES[32], 0x14);
		assert.equal(HUFFMAN_CODES[48], 0x0);
		assert.equal(HUFFMAN_CODES[97], 0x3);
		assert.equal(HUFFMAN_CODES[255], 0x3ffffee);
		assert.equal(HUFFMAN_CODES[256], 0x3fffffff);
	});

	it("round-trips every byte value", () => {
		const all = Uint8Array.from({ length: 256 }, (_, i) => i);
		assert.deepEqual(huffmanDecode(huffmanEncode(all)), all);
	});

	it("rejects bad padding and EOS", () => {
		// "0" is 00000; padding with zeros instead of ones.
		throwsCode(() => huffmanDecode(hex("00")), H3.QPACK_DECOMPRESSION_FAILED);
		// A whole byte of padding (8 one-bits) after a complete symbol.
		throwsCode(() => huffmanDecode(hex("07 ff")), H3.QPACK_DECOMPRESSION_FAILED);
		// EOS (30 one-bits) inside the string.
		throwsCode(() => huffmanDecode(hex("ff ff ff ff")), H3.QPACK_DECOMPRESSION_FAILED);
	});
});

describe("qpack", () => {
	it("has the RFC 9204 static table", () => {
		assert.equal(STATIC_TABLE.length, 99);
		assert.deepEqual(STATIC_TABLE[0], [":authority", ""]);
		assert.deepEqual(STATIC_TABLE[15], [":method", "CONNECT"]);
		assert.deepEqual(STATIC_TABLE[23], [":scheme", "https"]);
		assert.deepEqual(STATIC_TABLE[25], [":status", "200"]);
		assert.deepEqual(STATIC_TABLE[67], [":status", "400"]);
		assert.deepEqual(STATIC_TABLE[90], ["origin", ""]);
		assert.deepEqual(STATIC_TABLE[98], ["x-frame-options", "sameorigin"]);
	});

	it("decodes Chromium's extended CONNECT (Huffman strings, multi-byte index)", () => {
		const fields = decodeFieldSection(chromiumConnectSection(), 16384);
		assert.deepEqual(fields, [
			[":scheme", "https"],
			[":method", "CONNECT"],
			[":authority", "127.0.0.1:4443"],
			[":path", "/room/abc?jwt=xyz"],
			[":protocol", "webtransport"],
			["sec-webtransport-http3-draft02", "1"],
			["origin", "https://example.com"],
			["wt-available-protocols", '"moq-lite-05", "moq-lite-04", "moql"'],
		]);
		const request = parseConnectRequest(fields);
		assert.ok(!("status" in request));
		assert.equal(request.path, "/room/abc");
		assert.equal(request.query.get("jwt"), "xyz");
		assert.deepEqual(request.protocols, ["moq-lite-05", "moq-lite-04", "moql"]);
		assert.equal(request.headers.get("origin"), "https://example.com");
	});

	it("round-trips through the encoder (indexed, name-ref and literal forms, long values)", () => {
		const fields: Field[] = [
			[":status", "200"],
			[":status", "403"], // index 68: multi-byte 6-bit prefix
			["sec-webtransport-http3-draft", "draft02"],
			["wt-protocol", '"moq-lite-05"'],
			["origin", "x".repeat(300)],
		];
		const w = new Writer();
		encodeFieldSection(w, fields);
		const bytes = w.finish();
		assert.equal(bytes[2], 0xd9); // 0xc0 | 25
		assert.deepEqual([bytes[3], bytes[4]], [0xff, 68 - 63]);
		assert.deepEqual(decodeFieldSection(bytes, 16384), fields);
	});

	it("rejects dynamic table references and truncation with QPACK_DECOMPRESSION_FAILED", () => {
		const bad = [
			"01 00 d9", // Required Insert Count 1
			"00 81 d9", // Delta Base with sign bit
			"00 00 80", // indexed, dynamic (T=0)
			"00 00 40 00", // literal with dynamic name reference
			"00 00 10", // post-base indexed
			"00 00 00 00", // post-base name reference
			"00 00 ff 30", // static index 63+48 = 111 > 98
			"00 00 51 85 61", // :path value claims 5 bytes, has 1
			"00 00 5f", // truncated multi-byte integer
			"00", // truncated prefix
			"00 00 51 81 00", // Huffman value with zero padding
		];
		for (const h of bad) throwsCode(() => decodeFieldSection(hex(h), 16384), H3.QPACK_DECOMPRESSION_FAILED);
	});

	it("enforces the field section size limit", () => {
		throwsCode(() => decodeFieldSection(chromiumConnectSection(), 100), H3.EXCESSIVE_LOAD);
	});
});

describe("structured fields", () => {
	it("parses a list of sf-strings with escapes and parameters", () => {
		assert.deepEqual(parseProtocolList('"moq-lite-05", "moq-lite-04", "moql"'), ["moq-lite-05", "moq-lite-04", "moql"]);
		assert.deepEqual(parseProtocolList('"a\\"b", "c\\\\d";q=1;x, "e";n=-1.5;b=?0;s="t";y=:AQ==:'), [
			'a"b',
			"c\\d",
			"e",
		]);
		assert.deepEqual(parseProtocolList("  "), []);
		assert.deepEqual(parseProtocolList('"x",\t"y"'), ["x", "y"]);
	});

	it("tolerates tokens", () => {
		assert.deepEqual(parseProtocolList('moq-lite-05, "moql"'), ["moq-lite-05", "moql"]);
		assert.equal(parseProtocolItem("moq-lite-05"), "moq-lite-05");
	});

	it("rejects malformed lists", () => {
		for (const bad of ['"a",', '"a" "b"', '"unterminated', '"bad\\escape"', "(inner list)", "1, 2", '"a";Q=1', '"é"']) {
			assert.equal(parseProtocolList(bad), null, bad);
		}
		assert.equal(parseProtocolItem('"a", "b"'), null);
	});

	it("serializes sf-strings", () => {
		assert.equal(serializeSfString("moq-lite-05"), '"moq-lite-05"');
		assert.equal(serializeSfString('a"b\\c'), '"a\\"b\\\\c"');
		assert.throws(() => serializeSfString("tab\t"), RangeError);
	});

	it("selects the first client-offered protocol we support", () => {
		assert.equal(selectProtocol(["moq-lite-05", "moq-lite-04"], ["moq-lite-04", "moq-lite-05"]), "moq-lite-05");
		assert.equal(selectProtocol(["moqt-15", "moql"], ["moq-lite-05", "moql"]), "moql");
		assert.equal(selectProtocol(["moqt-15"], ["moq-lite-05"]), null);
		assert.equal(selectProtocol([], ["moq-lite-05"]), null);
	});
});

describe("request validation", () => {
	const base: Field[] = [
		[":method", "CONNECT"],
		[":protocol", "webtransport"],
		[":scheme", "https"],
		[":authority", "h"],
		[":path", "/a%20b/c?x=1&jwt=t%2B"],
	];
	const status = (fields: Field[]) => {
		const r = parseConnectRequest(fields);
		return "status" in r ? r.status : 200;
	};
	const without = (name: string) => base.filter(([n]) => n !== name);

	it("decodes path and query", () => {
		const r = parseConnectRequest(base);
		assert.ok(!("status" in r));
		assert.equal(r.path, "/a b/c");
		assert.equal(r.query.get("jwt"), "t+");
		assert.deepEqual(r.protocols, []);
	});

	it("maps problems to statuses", () => {
		assert.equal(status(base), 200);
		assert.equal(status([[":method", "GET"], ...without(":method")]), 404);
		assert.equal(status(without(":method")), 400);
		assert.equal(status(without(":protocol")), 400);
		assert.equal(status([[":protocol", "websocket"], ...without(":protocol")]), 400);
		assert.equal(status([[":scheme", "http"], ...without(":scheme")]), 400);
		assert.equal(status(without(":authority")), 400);
		assert.equal(status(without(":path")), 400);
		assert.equal(status([[":path", "/%zz"], ...without(":path")]), 400);
		assert.equal(status([...base, [":method", "CONNECT"]]), 400);
		assert.equal(status([...base, [":status", "200"]]), 400);
		assert.equal(status([["origin", "o"], ...base]), 400); // pseudo after regular
		assert.equal(status([...base, ["Origin", "o"]]), 400); // uppercase name
		assert.equal(status([...base, ["wt-available-protocols", '"a",']]), 400);
	});
});

describe("error code mapping", () => {
	it("matches the values verified against Chromium", () => {
		assert.equal(toH3(42), 91141958510854);
		assert.equal(fromH3(91141958510854), 42);
		assert.equal(toH3(0), 0x52e4a40fa8db);
		assert.equal(toH3(0xffffffff), 0x52e5ac983162);
		for (const n of [0, 1, 29, 30, 31, 77, 255, 1000, 65535, 2 ** 31, 2 ** 32 - 1]) assert.equal(fromH3(toH3(n)), n);
	});

	it("never produces a GREASE codepoint and rejects codes outside the range", () => {
		for (let n = 0; n < 2000; n++) assert.notEqual((toH3(n) - 0x21) % 0x1f, 0);
		assert.equal(fromH3(H3.WT_SESSION_GONE), null);
		assert.equal(fromH3(H3.REQUEST_CANCELLED), null);
		assert.equal(fromH3(0x52e4a40fa8db - 1), null);
		assert.equal(fromH3(0x52e5ac983162 + 1), null);
		// The first GREASE value inside the range.
		let grease = 0x52e4a40fa8db;
		while ((grease - 0x21) % 0x1f !== 0) grease++;
		assert.equal(fromH3(grease), null);
	});

	it("clamps out-of-range application codes to u32", () => {
		assert.equal(toH3(2 ** 40), toH3(0xffffffff));
		assert.equal(toH3(-5), toH3(0));
	});
});

describe("settings", () => {
	it("encodes and decodes, ignoring GREASE ids", () => {
		const w = new Writer();
		writeSettingsFrame(w, [
			[Setting.QPACK_MAX_TABLE_CAPACITY, 65536],
			[Setting.H3_DATAGRAM, 1],
			[0x1f * 123456789 + 0x21, 7], // GREASE id
			[Setting.ENABLE_WEBTRANSPORT, 1],
		]);
		const bytes = w.finish();
		assert.equal(bytes[0], 0x04);
		const settings = decodeSettings(bytes.subarray(2));
		assert.equal(settings.get(Setting.QPACK_MAX_TABLE_CAPACITY), 65536);
		assert.equal(peerWebTransportSessions(settings), 1);
	});

	it("decides WebTransport support like web-transport-proto", () => {
		const m = (pairs: [number, number][]) => peerWebTransportSessions(new Map(pairs));
		assert.equal(m([[Setting.ENABLE_WEBTRANSPORT, 1]]), 0); // no datagrams
		assert.equal(m([[Setting.H3_DATAGRAM, 1]]), 0); // no WebTransport
		assert.equal(
			m([
				[Setting.H3_DATAGRAM_DRAFT04, 1],
				[Setting.ENABLE_WEBTRANSPORT, 1],
			]),
			1,
		);
		assert.equal(
			m([
				[Setting.H3_DATAGRAM, 1],
				[Setting.ENABLE_WEBTRANSPORT, 1],
				[Setting.WEBTRANSPORT_MAX_SESSIONS_DRAFT, 4],
			]),
			4,
		);
		assert.equal(
			m([
				[Setting.H3_DATAGRAM, 1],
				[Setting.WT_MAX_SESSIONS, 3],
			]),
			3,
		);
	});

	it("rejects duplicates, HTTP/2 ids and truncation", () => {
		throwsCode(() => decodeSettings(hex("01 00 01 00")), H3.SETTINGS_ERROR);
		throwsCode(() => decodeSettings(hex("02 00")), H3.SETTINGS_ERROR);
		throwsCode(() => decodeSettings(hex("01")), H3.FRAME_ERROR);
		throwsCode(() => decodeSettings(hex("01 40")), H3.FRAME_ERROR);
	});
});

describe("capsules and the TLV parser", () => {
	it("encodes CLOSE_WEBTRANSPORT_SESSION in a DATA frame, byte-exact", () => {
		const w = new Writer();
		writeCloseCapsuleFrame(w, 7, "bye");
		// DATA(len 10) { type 0x2843 (2-byte varint 0x68 0x43), len 7, u32 7, "bye" }
		assert.deepEqual(w.finish(), hex("00 0a 68 43 07 00 00 00 07 62 79 65"));
		assert.deepEqual(decodeCloseCapsule(hex("00 00 00 09 73 72 76")), { code: 9, reason: "srv" });
		throwsCode(() => decodeCloseCapsule(hex("00 00 01")), H3.MESSAGE_ERROR);
	});

	it("cuts long reasons at a character boundary", () => {
		assert.equal(closeReasonBytes("é".repeat(600)).length, 1024);
		assert.equal(closeReasonBytes(`x${"é".repeat(600)}`).length, 1023);
	});

	it("parses frames split at every byte, buffering, streaming and skipping", () => {
		const events: string[] = [];
		const handler: TlvHandler = {
			tlvHeader: (type, length) => {
				events.push(`h${type}:${length}`);
				return type === 0 ? Body.STREAM : type === 1 ? Body.BUFFER : Body.SKIP;
			},
			tlvBody: (type, payload) => events.push(`b${type}:${str(payload)}`),
			tlvChunk: (type, bytes) => events.push(`c${type}:${str(bytes)}`),
		};
		// HEADERS "abc", GREASE frame (8-byte type) skipped, DATA "xy", empty HEADERS.
		const bytes = hex("01 03 616263  c0 00 00 00 00 00 00 21 02 ffff  00 02 7879  01 00");
		const whole = new TlvParser(handler);
		whole.push(bytes);
		const expected = events.splice(0);
		assert.deepEqual(expected, ["h1:3", "b1:abc", "h33:2", "h0:2", "c0:xy", "h1:0", "b1:"]);
		const split = new TlvParser(handler);
		for (let i = 0; i < bytes.length; i++) split.push(bytes.subarray(i, i + 1));
		assert.deepEqual(
			events.filter((e) => !e.startsWith("c")),
			expected.filter((e) => !e.startsWith("c")),
		);
		assert.equal(
			events
				.filter((e) => e.startsWith("c"))
				.map((e) => e.slice(3))
				.join(""),
			"xy",
		);
		assert.ok(split.atBoundary);
		split.push(hex("01"));
		assert.ok(!split.atBoundary);
	});
});
