/** Unit tests of the qmux frame, transport-parameter and subprotocol codecs. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
// @moq/qmux 0.3.3's own codec, for cross-checking the wire bytes.
import * as Q3Frame from "../node_modules/@moq/net/node_modules/@moq/qmux/frame.js";
import { DecodeError, NEED_MORE } from "../src/coding/errors.ts";
import { Reader } from "../src/coding/reader.ts";
import { Writer } from "../src/coding/writer.ts";
import { QuicError } from "../src/errors/codes.ts";
import { QmuxError } from "../src/qmux/error.ts";
import {
	decodeFrame,
	encodeApplicationClose,
	encodeConnectionClose,
	encodeMaxData,
	encodeMaxStreamData,
	encodeMaxStreams,
	encodePing,
	encodeResetStream,
	encodeResetStreamAt,
	encodeStopSending,
	encodeStream,
	Frame,
	FrameType,
	type Framing,
} from "../src/qmux/frames.ts";
import { decodeTransportParameters, defaultParams, encodeTransportParameters } from "../src/qmux/params.ts";
import { parseOffer, parseSubprotocol, preferenceList, selectSubprotocol } from "../src/qmux/subprotocol.ts";

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const w = (): Writer => new Writer();

function decodeOne(bytes: Uint8Array, framing: Framing): Frame {
	const r = new Reader(bytes);
	const f = new Frame();
	decodeFrame(r, framing, f);
	assert.equal(r.remaining, 0, "frame consumed exactly");
	return f;
}

describe("frame hex vectors", () => {
	const vectors: { name: string; framing: Framing; bytes: string; encode?: () => Writer; check: (f: Frame) => void }[] =
		[
			{
				name: "qmux STREAM with OFF|LEN|FIN",
				framing: "qmux-01",
				bytes: "0f 02 00 03 aabbcc",
				encode: () => encodeStream(w(), true, 2, 0, hex("aabbcc"), true),
				check: (f) => {
					assert.equal(f.type, FrameType.STREAM);
					assert.equal(f.streamId, 2);
					assert.equal(f.offset, 0);
					assert.equal(f.fin, true);
					assert.equal(toHex(f.data), "aabbcc");
				},
			},
			{
				name: "qmux STREAM as 0.0.6 sends it (LEN, no OFF)",
				framing: "qmux-00",
				bytes: "0a 06 02 0102",
				check: (f) => {
					assert.equal(f.streamId, 6);
					assert.equal(f.offset, -1);
					assert.equal(f.fin, false);
					assert.equal(toHex(f.data), "0102");
				},
			},
			{
				name: "qmux STREAM without LEN runs to the end",
				framing: "qmux-00",
				bytes: "0d 04 4001 ffee",
				check: (f) => {
					assert.equal(f.offset, 1);
					assert.equal(f.fin, true);
					assert.equal(toHex(f.data), "ffee");
				},
			},
			{
				name: "legacy STREAM FIN",
				framing: "webtransport",
				bytes: "09 02 aabbcc",
				encode: () => encodeStream(w(), false, 2, 0, hex("aabbcc"), true),
				check: (f) => {
					assert.equal(f.streamId, 2);
					assert.equal(f.fin, true);
					assert.equal(toHex(f.data), "aabbcc");
				},
			},
			{
				name: "RESET_STREAM",
				framing: "qmux-00",
				bytes: "04 02 2a 4100",
				encode: () => encodeResetStream(w(), true, 2, 42, 256),
				check: (f) => {
					assert.equal(f.type, FrameType.RESET_STREAM);
					assert.equal(f.code, 42);
					assert.equal(f.finalSize, 256);
				},
			},
			{
				name: "legacy RESET_STREAM (no final size)",
				framing: "webtransport",
				bytes: "04 02 2a",
				encode: () => encodeResetStream(w(), false, 2, 42, 256),
				check: (f) => {
					assert.equal(f.code, 42);
					assert.equal(f.finalSize, -1);
				},
			},
			{
				name: "RESET_STREAM_AT",
				framing: "qmux-02",
				bytes: "24 01 05 0a 04",
				encode: () => encodeResetStreamAt(w(), 1, 5, 10, 4),
				check: (f) => {
					assert.equal(f.type, FrameType.RESET_STREAM_AT);
					assert.equal(f.finalSize, 10);
					assert.equal(f.reliableSize, 4);
				},
			},
			{
				name: "STOP_SENDING",
				framing: "qmux-01",
				bytes: "05 03 07",
				encode: () => encodeStopSending(w(), 3, 7),
				check: (f) => {
					assert.equal(f.type, FrameType.STOP_SENDING);
					assert.equal(f.streamId, 3);
					assert.equal(f.code, 7);
				},
			},
			{
				name: "MAX_DATA",
				framing: "qmux-01",
				bytes: "10 80100000",
				encode: () => encodeMaxData(w(), 1048576),
				check: (f) => assert.equal(f.value, 1048576),
			},
			{
				name: "MAX_DATA of 2^62-1 clamps to 2^53-1",
				framing: "qmux-01",
				bytes: "10 ffffffffffffffff",
				check: (f) => assert.equal(f.value, Number.MAX_SAFE_INTEGER),
			},
			{
				name: "MAX_STREAM_DATA",
				framing: "qmux-01",
				bytes: "11 04 80040000",
				encode: () => encodeMaxStreamData(w(), 4, 262144),
				check: (f) => {
					assert.equal(f.streamId, 4);
					assert.equal(f.value, 262144);
				},
			},
			{
				name: "MAX_STREAMS uni",
				framing: "qmux-00",
				bytes: "13 4064",
				encode: () => encodeMaxStreams(w(), false, 100),
				check: (f) => {
					assert.equal(f.type, FrameType.MAX_STREAMS_UNI);
					assert.equal(f.value, 100);
				},
			},
			{
				name: "STREAMS_BLOCKED bidi",
				framing: "qmux-00",
				bytes: "16 05",
				check: (f) => assert.equal(f.value, 5),
			},
			{
				name: "CONNECTION_CLOSE",
				framing: "qmux-01",
				bytes: "1c 0a 08 03 626164",
				encode: () => encodeConnectionClose(w(), true, 0x0a, 0x08, "bad"),
				check: (f) => {
					assert.equal(f.type, FrameType.CONNECTION_CLOSE);
					assert.equal(f.code, 0x0a);
					assert.equal(f.value, 0x08);
					assert.equal(Buffer.from(f.reason).toString(), "bad");
				},
			},
			{
				name: "APPLICATION_CLOSE",
				framing: "qmux-01",
				bytes: "1d 03 03 627965",
				encode: () => encodeApplicationClose(w(), true, 3, "bye"),
				check: (f) => {
					assert.equal(f.type, FrameType.APPLICATION_CLOSE);
					assert.equal(f.code, 3);
					assert.equal(Buffer.from(f.reason).toString(), "bye");
				},
			},
			{
				name: "APPLICATION_CLOSE with 0.0.6's extra frame type (qmux-00, lenient)",
				framing: "qmux-00",
				bytes: "1d 03 00 03 627965",
				check: (f) => assert.equal(Buffer.from(f.reason).toString(), "bye"),
			},
			{
				name: "legacy APPLICATION_CLOSE (reason runs to the end)",
				framing: "webtransport",
				bytes: "1d 03 627965",
				encode: () => encodeApplicationClose(w(), false, 3, "bye"),
				check: (f) => {
					assert.equal(f.code, 3);
					assert.equal(Buffer.from(f.reason).toString(), "bye");
				},
			},
			{
				name: "QX_PING request",
				framing: "qmux-01",
				bytes: "f48c67529ef8c7bd 05",
				encode: () => encodePing(w(), false, Uint8Array.of(5)),
				check: (f) => {
					assert.equal(f.type, FrameType.PING_REQUEST);
					assert.equal(toHex(f.seq), "05");
				},
			},
			{
				name: "QX_PING response with a 62-bit sequence",
				framing: "qmux-02",
				bytes: "f48c67529ef8c7be ffffffffffffffff",
				encode: () => encodePing(w(), true, hex("ffffffffffffffff")),
				check: (f) => {
					assert.equal(f.type, FrameType.PING_RESPONSE);
					assert.equal(toHex(f.seq), "ffffffffffffffff");
				},
			},
			{
				name: "DATAGRAM with length",
				framing: "qmux-01",
				bytes: "31 02 abcd",
				check: (f) => {
					assert.equal(f.type, FrameType.DATAGRAM);
					assert.equal(toHex(f.data), "abcd");
				},
			},
		];
	for (const v of vectors) {
		test(v.name, () => {
			const bytes = hex(v.bytes);
			if (v.encode) assert.equal(toHex(v.encode().finish()), toHex(bytes), "encoder output");
			v.check(decodeOne(bytes, v.framing));
		});
	}
});

describe("frame decoding rejects bad input", () => {
	test("truncated length-delimited frames throw NEED_MORE at every cut", () => {
		const frames = [
			"0f 02 00 03 aabbcc",
			"04 02 2a 4100",
			"11 04 80040000",
			"1c 0a 08 03 626164",
			"1d 03 03 627965",
			"f48c67529ef8c7bd 05",
			"ff5153300d0a0d0a 03 04 01 05",
		];
		for (const h of frames) {
			const bytes = hex(h);
			for (let cut = 1; cut < bytes.length; cut++) {
				const r = new Reader(bytes, 0, cut);
				assert.throws(
					() => decodeFrame(r, "qmux-01", new Frame()),
					(e) => e === NEED_MORE,
					`${h} cut at ${cut}`,
				);
			}
		}
	});

	test("unknown types are FRAME_ENCODING_ERROR in every framing", () => {
		for (const [framing, h] of [
			["qmux-01", "4099"],
			["qmux-00", "18"],
			["qmux-01", "c000000100000000"], // a wide varint type nobody defined
			["webtransport", "10 05"], // MAX_DATA does not exist on the legacy binding
		] as const) {
			assert.throws(
				() => decodeOne(hex(h), framing),
				(e) => e instanceof QmuxError && e.code === QuicError.FRAME_ENCODING_ERROR,
			);
		}
	});

	test("RESET_STREAM_AT with reliable size above final size is FRAME_ENCODING_ERROR", () => {
		assert.throws(
			() => decodeOne(hex("24 01 05 02 04"), "qmux-02"),
			(e) => e instanceof QmuxError && e.code === QuicError.FRAME_ENCODING_ERROR,
		);
	});

	test("random garbage never throws anything but a decode signal", () => {
		let seed = 12345;
		const rand = (): number => {
			seed = (seed * 1103515245 + 12345) >>> 0;
			return seed >>> 16;
		};
		const framings: Framing[] = ["webtransport", "qmux-00", "qmux-01", "qmux-02"];
		const f = new Frame();
		for (let i = 0; i < 20_000; i++) {
			const bytes = new Uint8Array(1 + (rand() % 24));
			for (let j = 0; j < bytes.length; j++) bytes[j] = rand() & 0xff;
			const r = new Reader(bytes);
			try {
				while (r.remaining > 0) decodeFrame(r, framings[i % 4], f);
			} catch (e) {
				assert.ok(e === NEED_MORE || e instanceof QmuxError || e instanceof DecodeError, String(e));
			}
		}
	});
});

describe("transport parameters", () => {
	const ours = {
		...defaultParams(),
		maxIdleTimeout: 30000,
		initialMaxData: 16 * 1024 * 1024,
		initialMaxStreamDataBidiLocal: 1 << 20,
		initialMaxStreamDataBidiRemote: 1 << 20,
		initialMaxStreamDataUni: 4 << 20,
		initialMaxStreamsBidi: 256,
		initialMaxStreamsUni: 1024,
		maxRecordSize: 65536,
		resetStreamAt: true,
	};

	test("round trip on qmux-02", () => {
		const frame = encodeTransportParameters(w(), ours, "qmux-02").finish();
		const f = decodeOne(frame, "qmux-02");
		assert.equal(f.type, FrameType.TRANSPORT_PARAMETERS);
		assert.deepEqual(decodeTransportParameters(f.params, "qmux-02"), ours);
	});

	test("qmux-00 omits max_record_size and reset_stream_at", () => {
		const f = decodeOne(encodeTransportParameters(w(), ours, "qmux-00").finish(), "qmux-00");
		const p = decodeTransportParameters(f.params, "qmux-00");
		assert.equal(p.maxRecordSize, 16382);
		assert.equal(p.resetStreamAt, false);
		assert.equal(p.initialMaxStreamsUni, 1024);
	});

	test("@moq/qmux 0.3.3 decodes ours and we decode theirs", () => {
		const frame = encodeTransportParameters(w(), ours, "qmux-02").finish();
		const theirs = Q3Frame.decode(frame, "qmux-02") as unknown as {
			type: string;
			params: Record<string, bigint | boolean>;
		};
		assert.equal(theirs.type, "transport_parameters");
		assert.equal(theirs.params.initialMaxData, 16n * 1024n * 1024n);
		assert.equal(theirs.params.initialMaxStreamsUni, 1024n);
		assert.equal(theirs.params.maxRecordSize, 65536n);
		assert.equal(theirs.params.maxDatagramFrameSize, 0n);
		assert.equal(theirs.params.resetStreamAt, true);

		const q3 = Q3Frame.encode(
			{ type: "transport_parameters", params: { ...Q3Frame.RECOMMENDED_TRANSPORT_PARAMS, resetStreamAt: true } },
			"qmux-02",
		);
		const f = decodeOne(q3, "qmux-02");
		const p = decodeTransportParameters(f.params, "qmux-02");
		assert.equal(p.maxIdleTimeout, 30000);
		assert.equal(p.initialMaxData, 1048576);
		assert.equal(p.initialMaxStreamDataUni, 262144);
		assert.equal(p.initialMaxStreamsBidi, 100);
		assert.equal(p.maxDatagramFrameSize, 16382);
		assert.equal(p.resetStreamAt, true);
	});

	const bad: [string, string][] = [
		["forbidden id 0x00", "00 01 00"],
		["forbidden id 0x0c", "0c 00"],
		["duplicate max_data", "04 01 05 04 01 06"],
		["value with trailing bytes", "04 02 05 00"],
		["truncated value", "04 04 05"],
		["non-empty reset_stream_at", "1d 01 00"],
		["max_record_size below 16382", "c571c59429cd0845 02 4000"],
		["application_protocols over WebSocket", "fd4f9c2a8b1e6075 00"],
	];
	for (const [name, h] of bad) {
		test(`${name} → TRANSPORT_PARAMETER_ERROR`, () => {
			assert.throws(
				() => decodeTransportParameters(hex(h), "qmux-02"),
				(e) => e instanceof QmuxError && e.code === QuicError.TRANSPORT_PARAMETER_ERROR,
			);
		});
	}

	test("unknown ids are skipped, even repeated", () => {
		const p = decodeTransportParameters(hex("4abc 01 07 4abc 00 04 01 09"), "qmux-01");
		assert.equal(p.initialMaxData, 9);
	});
});

describe("subprotocol selection", () => {
	test("our preference wins over the client's order", () => {
		// @moq/net 0.3.4's offer (abridged): newest qmux first per app protocol.
		const offer = [
			"qmux-02.moq-lite-05",
			"qmux-01.moq-lite-05",
			"qmux-00.moq-lite-05",
			"qmux-02.moq-lite-04",
			"qmux-02",
			"qmux-01",
			"qmux-00",
			"webtransport",
		];
		assert.equal(selectSubprotocol(offer), "qmux-01.moq-lite-05");
		assert.equal(selectSubprotocol(["qmux-02.moq-lite-04", "qmux-00.moq-lite-05"]), "qmux-00.moq-lite-05");
		assert.equal(selectSubprotocol(["qmux-02.moql", "qmux-00"]), "qmux-02.moql");
	});

	test("bare forms when no app protocol fits; null when nothing does", () => {
		assert.equal(selectSubprotocol(["qmux-00", "webtransport"]), "qmux-00"); // @moq/lite 0.2.2
		assert.equal(selectSubprotocol(["webtransport"]), "webtransport");
		assert.equal(selectSubprotocol(["qmux-01.moqt-99", "chat"]), null);
	});

	test("parsing a selected value", () => {
		assert.deepEqual(parseSubprotocol("qmux-02.moq-lite-05"), { framing: "qmux-02", protocol: "moq-lite-05" });
		assert.deepEqual(parseSubprotocol("qmux-00"), { framing: "qmux-00", protocol: "" });
		assert.deepEqual(parseSubprotocol("webtransport"), { framing: "webtransport", protocol: "" });
		assert.deepEqual(parseSubprotocol(""), { framing: "webtransport", protocol: "" });
	});

	test("header parsing and the preference list", () => {
		assert.deepEqual(parseOffer(" qmux-01.moql , ,webtransport"), ["qmux-01.moql", "webtransport"]);
		assert.deepEqual(parseOffer(undefined), []);
		const list = preferenceList(["a"], ["qmux-00"]);
		assert.deepEqual(list, ["qmux-00.a", "qmux-00", "webtransport"]);
	});
});
