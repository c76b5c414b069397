/**
 * The fuzz targets: one per decoder the relay runs on untrusted input. Each has a corpus of valid
 * encodings, built here from the encoders (or fixed texts), and a `run` that drives the real decoder
 * the way the relay does, then checks cheap invariants (nothing read past the input, views inside
 * it, valid decodes re-encode to the same value).
 *
 * Targets that decode several message kinds take a selector in the input's first byte, so mutations
 * also cross message kinds (a SUBSCRIBE body fed to the ANNOUNCE decoder, and so on).
 */
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { AuthError, Authenticator, parseConnectTarget } from "../../src/auth/index.ts";
import { KeyError, parseKey } from "../../src/auth/jwk.ts";
import { DecodeError } from "../../src/coding/errors.ts";
import { Reader } from "../../src/coding/reader.ts";
import { Writer } from "../../src/coding/writer.ts";
import { DEVELOPMENT_CONFIG } from "../../src/config/defaults.ts";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { silentLogger } from "../../src/log/logger.ts";
import * as A from "../../src/moq/lite/wire/announce.ts";
import * as F from "../../src/moq/lite/wire/fetch.ts";
import * as Gw from "../../src/moq/lite/wire/goaway.ts";
import * as G from "../../src/moq/lite/wire/group.ts";
import * as P from "../../src/moq/lite/wire/probe.ts";
import * as Se from "../../src/moq/lite/wire/session.ts";
import * as S from "../../src/moq/lite/wire/setup.ts";
import { BIDI, UNI } from "../../src/moq/lite/wire/stream-type.ts";
import * as Sub from "../../src/moq/lite/wire/subscribe.ts";
import * as T from "../../src/moq/lite/wire/track.ts";
import type { LiteVersion } from "../../src/moq/lite/wire/version.ts";
import { MessageBuffer } from "../../src/moq/message-buffer.ts";
import { normalizePath } from "../../src/path/index.ts";
import { QmuxError } from "../../src/qmux/error.ts";
import * as Q from "../../src/qmux/frames.ts";
import { decodeTransportParameters, defaultParams, encodeTransportParameters } from "../../src/qmux/params.ts";
import { parseOffer, parseSubprotocol, selectSubprotocol } from "../../src/qmux/subprotocol.ts";
import { Capsule, Frame as H3Frame, isHttp2ReservedFrame } from "../../src/webtransport/codes.ts";
import { type ConnectOwner, ConnectStream } from "../../src/webtransport/connect.ts";
import { ourSettings, DEFAULT_LIMITS as WT_LIMITS } from "../../src/webtransport/connection.ts";
import {
	Body,
	type BodyMode,
	decodeSettings,
	looseVarint,
	peerWebTransportSessions,
	type TlvHandler,
	TlvParser,
	writeCloseCapsuleFrame,
	writeDrainCapsuleFrame,
	writeSettingsFrame,
	writeTlvHeader,
} from "../../src/webtransport/frames.ts";
import { huffmanEncode } from "../../src/webtransport/huffman.ts";
import { decodeFieldSection, encodeFieldSection, type Field, writePrefixInt } from "../../src/webtransport/qpack.ts";
import { parseProtocolItem, parseProtocolList, serializeSfStringList } from "../../src/webtransport/sfv.ts";
import { cases } from "../support/moq-wire-cases.ts";
import { invariant, type Outcome, Rng, type Target } from "./engine.ts";
import { ietfTargets } from "./ietf-targets.ts";
import { FUZZ_KEYS } from "./keys.ts";

const utf8 = new TextEncoder();
const latin1 = new TextDecoder("latin1");
const utf8Lenient = new TextDecoder("utf-8");

function bytes(build: (w: Writer) => void): Uint8Array {
	const w = new Writer(256);
	build(w);
	return w.finish();
}

function cat(...parts: (Uint8Array | number[])[]): Uint8Array {
	const out: number[] = [];
	for (const p of parts) out.push(...p);
	return Uint8Array.from(out);
}

/** A typed decode error with an integer code: the only refusal a wire decoder may produce. */
function isDecodeError(err: unknown): boolean {
	return err instanceof DecodeError && Number.isInteger(err.code);
}

/** `view` is a window of `msg`'s memory (decoders hand out views, never reads past the message). */
function within(view: Uint8Array, msg: Uint8Array, what: string): void {
	if (view.length === 0) return;
	invariant(view.buffer === msg.buffer, `${what} is not a view of the input`);
	invariant(
		view.byteOffset >= msg.byteOffset && view.byteOffset + view.length <= msg.byteOffset + msg.length,
		`${what} lies outside the input`,
	);
}

/** Splits `input` into chunks whose sizes depend only on `input` (so a crash replays from its hex). */
function chunks(input: Uint8Array, salt: number): Uint8Array[] {
	const rng = new Rng(input.length * 0x9e3779b1 + salt);
	const out: Uint8Array[] = [];
	const whole = rng.chance(0.3);
	for (let p = 0; p < input.length; ) {
		const n = whole ? input.length : 1 + rng.int(rng.chance(0.5) ? 4 : 64);
		out.push(input.subarray(p, p + n));
		p += n;
	}
	return out;
}

// ---- moq-lite messages, one target per version --------------------------------------------------

interface WireDecoder {
	name: string;
	decode: (r: Reader, v: LiteVersion) => unknown;
	/** Re-encodes a decoded value (for the round-trip check); absent where there is no single encoder. */
	encode?: (w: Writer, m: never, v: LiteVersion) => void;
	/** Bytes the encoder writes before what the decoder reads (the compat SETUP's 0x20/0x21 type). */
	skip?: number;
}

const WIRE: WireDecoder[] = [
	{ name: "CLIENT_SETUP", decode: (r) => S.decodeClientSetup(r), encode: (w, m) => S.encodeClientSetup(w, m), skip: 1 },
	{ name: "SERVER_SETUP", decode: (r) => S.decodeServerSetup(r), encode: (w, m) => S.encodeServerSetup(w, m), skip: 1 },
	{ name: "SETUP", decode: S.decodeLiteSetup, encode: S.encodeLiteSetup },
	{ name: "SESSION_INFO", decode: Se.decodeSessionInfo, encode: Se.encodeSessionInfo },
	{ name: "ANNOUNCE_REQUEST", decode: A.decodeAnnounceRequest, encode: A.encodeAnnounceRequest },
	{ name: "ANNOUNCE_OK", decode: A.decodeAnnounceOk, encode: A.encodeAnnounceOk },
	{ name: "ANNOUNCE_INIT", decode: A.decodeAnnounceInit, encode: A.encodeAnnounceInit },
	{ name: "ANNOUNCE", decode: A.decodeAnnounce, encode: A.encodeAnnounce },
	{ name: "SUBSCRIBE", decode: Sub.decodeSubscribe, encode: Sub.encodeSubscribe },
	{ name: "SUBSCRIBE_UPDATE", decode: Sub.decodeSubscribeUpdate, encode: Sub.encodeSubscribeUpdate },
	{ name: "SUBSCRIBE_RESPONSE", decode: Sub.decodeSubscribeResponse, encode: encodeSubscribeResponse },
	{ name: "TRACK", decode: T.decodeTrackRequest, encode: T.encodeTrackRequest },
	{ name: "TRACK_INFO", decode: T.decodeTrackInfo, encode: T.encodeTrackInfo },
	{ name: "FETCH", decode: F.decodeFetchRequest, encode: F.encodeFetchRequest },
	{ name: "PROBE", decode: P.decodeProbe, encode: P.encodeProbe },
	{ name: "GOAWAY", decode: Gw.decodeGoaway, encode: Gw.encodeGoaway },
	{ name: "GROUP", decode: G.decodeGroupHeader, encode: G.encodeGroupHeader },
];

function encodeSubscribeResponse(w: Writer, m: Sub.SubscribeResponse, v: LiteVersion): void {
	if (m.type === "ok") Sub.encodeSubscribeOk(w, m, v);
	else if (m.type === "end") Sub.encodeSubscribeEnd(w, m, v);
	else Sub.encodeSubscribeDrop(w, m, v);
}

/** Which decoder a moq-wire-cases fixture belongs to ("SUBSCRIBE_OK v3" → SUBSCRIBE_RESPONSE). */
function decoderOf(caseName: string): string {
	const head = caseName.split(" ")[0];
	return head === "SUBSCRIBE_OK" || head === "SUBSCRIBE_END" || head === "SUBSCRIBE_DROP" ? "SUBSCRIBE_RESPONSE" : head;
}

function decodeWire(d: WireDecoder, body: Uint8Array, v: LiteVersion): unknown {
	const r = new Reader(body);
	const m = d.decode(r, v);
	invariant(r.pos <= body.length, `${d.name} read past the end`);
	invariant(r.end === body.length, `${d.name} did not restore the reader's end`);
	return m;
}

function moqLiteTarget(v: LiteVersion): Target {
	const corpus: Uint8Array[] = [];
	for (const c of cases()) {
		// The compat 0x20/0x21 SETUP is version-independent: it starts every version's corpus.
		if (c.v !== v && c.skip === 0) continue;
		const sel = WIRE.findIndex((d) => d.name === decoderOf(c.name));
		if (sel < 0) throw new Error(`no decoder for fixture ${c.name}`);
		const w = new Writer(256);
		c.encode(w);
		corpus.push(cat([sel], w.finish().subarray(c.skip)));
	}
	return {
		name: `moq-lite-0${v}`,
		corpus,
		maxInput: 2048,
		expected: isDecodeError,
		run(input) {
			if (input.length === 0) return "more";
			const d = WIRE[input[0] % WIRE.length];
			const m = decodeWire(d, input.subarray(1), v);
			if (d.encode) {
				// Round trip: what we accepted must re-encode to something that decodes to the same value.
				const w = new Writer(256);
				(d.encode as (w: Writer, m: unknown, v: LiteVersion) => void)(w, m, v);
				const again = decodeWire(d, w.finish().subarray(d.skip ?? 0), v);
				invariant(isDeepStrictEqual(again, m), `${d.name} v${v} does not round-trip`);
			}
			return "ok";
		},
	};
}

/** Group streams: header then frames, pushed in arbitrary chunks, as the data plane receives them. */
function groupStreamTarget(): Target {
	const corpus: Uint8Array[] = [];
	for (const v of [2, 3, 4, 5] as LiteVersion[]) {
		for (const parser of [0, 4]) {
			const w = new Writer(256);
			if (parser === 0) {
				w.varint(UNI.GROUP);
				G.encodeGroupHeader(w, { subscribeId: 7, sequence: 42 }, v);
			}
			for (const [size, delta] of [
				[3, 0],
				[0, 5],
				[70, 1],
			]) {
				const head = new Uint8Array(G.FRAME_HEADER_MAX);
				const n = G.writeFrameHeader(head, 0, size, delta, v);
				w.bytes(head.subarray(0, n)).bytes(new Uint8Array(size).fill(0x61));
			}
			const body = w.finish();
			// The stream-type byte is read by the dispatcher before the group decoder sees the stream.
			corpus.push(cat([(v - 2) | parser], parser === 0 ? body.subarray(1) : body));
		}
	}
	return {
		name: "moq-lite group stream",
		corpus,
		maxInput: 4096,
		expected: isDecodeError,
		run(input) {
			if (input.length === 0) return "more";
			const v = ((input[0] & 3) + 2) as LiteVersion;
			const d = input[0] & 4 ? new G.FrameParser(v, 1024) : new G.GroupStreamDecoder(v, 1024);
			const body = input.subarray(1);
			let total = 0;
			let open = -1;
			let got = 0;
			d.onFrameBegin = (size) => {
				invariant(open === -1, "frame began inside a frame");
				invariant(size <= 1024, `frame of ${size} bytes above the limit`);
				open = size;
				got = 0;
			};
			d.onFrameData = (view) => {
				got += view.length;
				total += view.length;
				invariant(got <= open, "frame data beyond its size");
			};
			d.onFrameEnd = () => {
				invariant(got === open, `frame ended after ${got} of ${open} bytes`);
				open = -1;
			};
			for (const c of chunks(body, 1)) d.push(c);
			d.finish();
			invariant(total <= body.length, "more payload than input");
			return "ok";
		},
	};
}

const UNI_STREAM = 0;
const BIDI_STREAM = 1;

/**
 * The first bytes of a moq-lite stream as the session's dispatcher sees them: type, then a message.
 * Input: a selector byte (bit 0: bidi), then the stream's bytes.
 */
function streamTypeTarget(): Target {
	const v = 5;
	const corpus = [
		cat(
			[UNI_STREAM, UNI.GROUP],
			bytes((w) => G.encodeGroupHeader(w, { subscribeId: 1, sequence: 2 }, v)),
		),
		cat(
			[UNI_STREAM, UNI.SETUP],
			bytes((w) => S.encodeLiteSetup(w, { path: "/anon", role: 2 }, v)),
		),
		cat(
			[BIDI_STREAM, BIDI.ANNOUNCE],
			bytes((w) => A.encodeAnnounceRequest(w, { prefix: "a", excludeHop: 0 }, v)),
		),
		cat(
			[BIDI_STREAM, BIDI.SUBSCRIBE],
			bytes((w) =>
				Sub.encodeSubscribe(
					w,
					{
						id: 1,
						broadcast: "b",
						track: "t",
						priority: 1,
						ordered: false,
						maxLatencyMs: 0,
						startGroup: null,
						endGroup: null,
					},
					v,
				),
			),
		),
		cat(
			[BIDI_STREAM, BIDI.TRACK],
			bytes((w) => T.encodeTrackRequest(w, { broadcast: "b", track: "t" }, v)),
		),
		cat(
			[BIDI_STREAM, BIDI.PROBE],
			bytes((w) => P.encodeProbe(w, { bitrate: 1000 }, v)),
		),
		// The compat SETUP's 0x20 is both the stream type and the message type: the encoder writes it.
		cat(
			[BIDI_STREAM],
			bytes((w) => S.encodeClientSetup(w, { versions: [0xff0dad02], params: new Map() })),
		),
	];
	const bidiDecoders = new Map<number, (r: Reader) => unknown>([
		[BIDI.ANNOUNCE, (r) => A.decodeAnnounceRequest(r, v)],
		[BIDI.SUBSCRIBE, (r) => Sub.decodeSubscribe(r, v)],
		[BIDI.TRACK, (r) => T.decodeTrackRequest(r, v)],
		[BIDI.FETCH, (r) => F.decodeFetchRequest(r, v)],
		[BIDI.PROBE, (r) => P.decodeProbe(r, v)],
		[BIDI.SETUP_CLIENT, (r) => S.decodeClientSetup(r)],
	]);
	const uniDecoders = new Map<number, (r: Reader) => unknown>([
		[UNI.GROUP, (r) => G.decodeGroupHeader(r, v)],
		[UNI.SETUP, (r) => S.decodeLiteSetup(r, v)],
	]);
	return {
		name: "moq stream type",
		corpus,
		maxInput: 1024,
		expected: isDecodeError,
		run(input) {
			if (input.length === 0) return "more";
			// The selector byte says bidi or uni (the transport knows; the peer chose it); every byte after
			// it is the stream's, so the type itself can be any varint, 8 bytes of 0xff included.
			const bidi = (input[0] & 1) === 1;
			const body = input.subarray(1);
			const buf = new MessageBuffer(65536);
			let type: number | undefined;
			let message: unknown;
			for (const c of chunks(body, 2)) {
				buf.push(c);
				if (type === undefined) type = buf.tryDecode((r) => r.varint());
				if (type === undefined) continue;
				const decode = (bidi ? bidiDecoders : uniDecoders).get(type);
				if (decode === undefined) return "ok"; // unknown type: the stream is reset, nothing decoded
				if (message === undefined) message = buf.tryDecode(decode);
			}
			return type === undefined || message === undefined ? "more" : "ok";
		},
	};
}

/**
 * lite-05 SETUP on raw QUIC carries the connection's "path?query": the SETUP decoder, then the
 * request-target parser and path normaliser that authorise it. Bad percent-encoding, "." segments
 * or too many segments must be refusals (null / PathError), never URIError or TypeError.
 */
function setupPathTarget(): Target {
	const paths = [
		"/anon",
		"/anon/room?jwt=eyJhbGciOiJIUzI1NiJ9.e30.sig",
		"/a%20b/c?x=1&jwt=&jwt=t",
		"",
		"/",
		"//a///b/",
		"/%E2%9C%93?jwt=%41",
	];
	const corpus = paths.map((path) => bytes((w) => S.encodeLiteSetup(w, { path, role: 1, probe: 1, origin: 9 }, 5)));
	return {
		name: "moq SETUP path",
		corpus,
		maxInput: 1024,
		expected: isDecodeError,
		run(input) {
			const setup = S.decodeLiteSetup(new Reader(input), 5);
			if (setup.path === undefined) return "ok";
			const target = parseConnectTarget(setup.path);
			if (target === null) return "rejected";
			normalizePath(target.path);
			return "ok";
		},
	};
}

// ---- qmux (WebSocket) ---------------------------------------------------------------------------

const FRAMINGS: Q.Framing[] = ["webtransport", "qmux-00", "qmux-01", "qmux-02"];

function qmuxCorpus(): Uint8Array[] {
	const out: Uint8Array[] = [];
	const data = utf8.encode("hello moq");
	for (const [sel, framing] of FRAMINGS.entries()) {
		const qmux = Q.isQmux(framing);
		const frames: Uint8Array[] = [
			bytes((w) => Q.encodeStream(w, qmux, 4, 0, data, false)),
			bytes((w) => Q.encodeStream(w, qmux, 2, 9, data, true)),
			bytes((w) => Q.encodeResetStream(w, qmux, 4, 3, 10)),
			bytes((w) => Q.encodeStopSending(w, 4, 3)),
			bytes((w) => Q.encodeConnectionClose(w, qmux, 10, 8, "bad")),
			bytes((w) => Q.encodeApplicationClose(w, qmux, 0, "bye")),
		];
		if (qmux) {
			frames.push(
				bytes((w) => Q.encodeMaxData(w, 1 << 20)),
				bytes((w) => Q.encodeMaxStreamData(w, 4, 65536)),
				bytes((w) => Q.encodeMaxStreams(w, true, 100)),
				bytes((w) => Q.encodeMaxStreams(w, false, 100)),
				bytes((w) => Q.encodePing(w, false, Uint8Array.of(0x41, 0x02))),
				bytes((w) => Q.encodePing(w, true, Uint8Array.of(0x05))),
				bytes((w) => {
					const p = defaultParams();
					p.initialMaxData = 1 << 20;
					p.initialMaxStreamsBidi = 100;
					p.maxIdleTimeout = 30000;
					p.maxRecordSize = 65536;
					p.resetStreamAt = true;
					encodeTransportParameters(w, p, framing);
				}),
			);
		}
		if (framing === "qmux-02") frames.push(bytes((w) => Q.encodeResetStreamAt(w, 4, 3, 10, 5)));
		for (const f of frames) out.push(cat([sel], f));
		if (Q.usesRecords(framing)) {
			// A record with several frames and padding (the record-framed drafts allow it).
			out.push(
				cat(
					[sel],
					frames[frames.length - 1],
					frames[2],
					bytes((w) => Q.encodePadding(w, 3)),
					frames[0],
				),
			);
		}
	}
	return out;
}

/** One WebSocket message as WsSession decodes it: a frame, or a record of frames. */
function qmuxTarget(): Target {
	return {
		name: "qmux frames",
		corpus: qmuxCorpus(),
		maxInput: 2048,
		expected: (err) => err instanceof QmuxError || isDecodeError(err),
		run(input) {
			if (input.length === 0) return "more";
			const framing = FRAMINGS[input[0] & 3];
			const msg = input.subarray(1);
			if (msg.length === 0) return "rejected"; // WsSession refuses an empty message before decoding
			const r = new Reader(msg);
			const f = new Q.Frame();
			do {
				Q.decodeFrame(r, framing, f);
				invariant(r.pos <= msg.length, "frame decoder read past the message");
				within(f.data, msg, "STREAM/DATAGRAM data");
				within(f.reason, msg, "close reason");
				within(f.params, msg, "transport parameters");
				within(f.seq, msg, "ping sequence");
				invariant(Number.isSafeInteger(f.streamId) && f.streamId >= 0, `stream id ${f.streamId}`);
				if (f.type === Q.FrameType.TRANSPORT_PARAMETERS) decodeTransportParameters(f.params, framing);
			} while (Q.usesRecords(framing) && r.remaining > 0);
			return "ok";
		},
	};
}

// ---- HTTP/3, QPACK, capsules --------------------------------------------------------------------

const REQUEST: Field[] = [
	[":method", "CONNECT"],
	[":scheme", "https"],
	[":authority", "relay.example:443"],
	[":path", "/anon/room?jwt=abc"],
	[":protocol", "webtransport"],
	["sec-webtransport-http3-draft02", "1"],
	["wt-available-protocols", '"moq-lite-05", "moq-lite-04"'],
	["origin", "https://example.com"],
];

/** A field section with Huffman-coded literals (our encoder never emits them, browsers do). */
function huffmanSection(fields: Field[]): Uint8Array {
	const w = new Writer(512);
	w.u8(0).u8(0);
	for (const [name, value] of fields) {
		const n = huffmanEncode(utf8.encode(name));
		const v = huffmanEncode(utf8.encode(value));
		writePrefixInt(w, 0x28, 3, n.length); // 001 N=0 H=1, 3-bit length prefix
		w.bytes(n);
		writePrefixInt(w, 0x80, 7, v.length);
		w.bytes(v);
	}
	return w.finish();
}

function qpackTarget(): Target {
	return {
		name: "qpack field section",
		corpus: [
			bytes((w) => encodeFieldSection(w, REQUEST)),
			bytes((w) =>
				encodeFieldSection(w, [
					[":status", "200"],
					["wt-protocol", '"moq-lite-05"'],
				]),
			),
			huffmanSection(REQUEST),
			huffmanSection([["x-long", "a".repeat(200)]]),
		],
		maxInput: 2048,
		expected: isDecodeError,
		run(input) {
			const fields = decodeFieldSection(input, 16384);
			const again = decodeFieldSection(
				bytes((w) => encodeFieldSection(w, fields)),
				16384,
			);
			invariant(isDeepStrictEqual(again, fields), "field section does not round-trip");
			return "ok";
		},
	};
}

/**
 * The peer's H3 control stream (SETTINGS first, then GOAWAY / unknown frames), with the same rules
 * as ControlStream in src/webtransport/connection.ts (not exported): its decoders are the shared
 * TlvParser, decodeSettings and the GOAWAY check.
 */
class ControlModel implements TlvHandler {
	gotSettings = false;
	tlvHeader(type: number, length: number): BodyMode {
		if (!this.gotSettings && type !== H3Frame.SETTINGS) throw new DecodeError("frame before SETTINGS", 0x10a);
		if (type === H3Frame.SETTINGS) {
			if (this.gotSettings) throw new DecodeError("second SETTINGS", 0x105);
			if (length > WT_LIMITS.maxControlFrameBytes) throw new DecodeError("SETTINGS too long", 0x107);
			return Body.BUFFER;
		}
		if (type === H3Frame.GOAWAY) {
			if (length > 8) throw new DecodeError("GOAWAY too long", 0x106);
			return Body.BUFFER;
		}
		if (type === H3Frame.DATA || type === H3Frame.HEADERS || isHttp2ReservedFrame(type)) {
			throw new DecodeError(`frame ${type} on the control stream`, 0x105);
		}
		return Body.SKIP;
	}
	tlvBody(type: number, payload: Uint8Array): void {
		if (type === H3Frame.SETTINGS) {
			this.gotSettings = true;
			peerWebTransportSessions(decodeSettings(payload));
		} else if (type === H3Frame.GOAWAY) {
			if (payload.length === 0 || 1 << (payload[0] >> 6) !== payload.length) {
				throw new DecodeError("malformed GOAWAY", 0x106);
			}
			looseVarint(payload, 0);
		}
	}
	tlvChunk(): void {}
}

function h3ControlTarget(): Target {
	const settings = bytes((w) => writeSettingsFrame(w, ourSettings(false, WT_LIMITS)));
	return {
		name: "h3 control stream",
		corpus: [
			settings,
			cat(
				settings,
				bytes((w) => writeTlvHeader(w, H3Frame.GOAWAY, 1)),
				[0x04],
			),
			cat(
				settings,
				bytes((w) => writeTlvHeader(w, 0x21, 3)),
				[1, 2, 3],
			),
			bytes((w) =>
				writeSettingsFrame(w, [
					[0x21, 7],
					[0x33, 1],
					[0x2b603742, 1],
					[0xc671706a, 4],
				]),
			),
		],
		maxInput: 2048,
		expected: isDecodeError,
		run(input) {
			const parser = new TlvParser(new ControlModel());
			for (const c of chunks(input, 3)) parser.push(c);
			return parser.atBoundary ? "ok" : "more";
		},
	};
}

/** A stand-in for H3Connection with what ConnectStream touches; `fail` keeps the first error. */
class FakeConn implements ConnectOwner {
	limits = WT_LIMITS;
	error: unknown = null;
	closed: { code: number; reason: string } | null = null;
	fail(err: unknown): void {
		this.error ??= err;
	}
	log = silentLogger;
	connectStreamEnded(): void {}
}

function fakeQuic() {
	return {
		id: 0,
		bidi: true,
		local: false,
		buffered: 0,
		onData: null as ((chunk: Uint8Array) => void) | null,
		onFin: null as (() => void) | null,
		onReset: null as ((code: number) => void) | null,
		onStop: null as ((code: number) => void) | null,
		onDrain: null,
		write() {},
		finish() {},
		reset() {},
		stop() {},
		setPriority() {},
	};
}

/**
 * The real ConnectStream (HTTP/3 frames → QPACK HEADERS → DATA frames → capsules), driven the way a
 * server drives it: the first HEADERS establishes the session; the stream then ends with FIN.
 */
function runConnectStream(input: Uint8Array): "ok" {
	const conn = new FakeConn();
	const quic = fakeQuic();
	const connect = new ConnectStream(quic as never, conn);
	const session = {
		closed: false,
		peerClosed(code: number, reason: string) {
			invariant(Number.isInteger(code) && code >= 0 && code <= 0xffffffff, `close code ${code}`);
			invariant(typeof reason === "string", "close reason");
			this.closed = true;
		},
	};
	connect.onHeaders = (fields) => {
		invariant(Array.isArray(fields), "fields");
		if (connect.final) return;
		connect.final = true;
		connect.attach(session);
	};
	for (const c of chunks(input, 4)) {
		quic.onData?.(c);
		if (conn.error !== null) throw conn.error;
	}
	quic.onFin?.();
	if (conn.error !== null) throw conn.error;
	return "ok";
}

function headersFrame(fields: Field[]): Uint8Array {
	const section = bytes((w) => encodeFieldSection(w, fields));
	return cat(
		bytes((w) => writeTlvHeader(w, H3Frame.HEADERS, section.length)),
		section,
	);
}

function dataFrame(payload: Uint8Array): Uint8Array {
	return cat(
		bytes((w) => writeTlvHeader(w, H3Frame.DATA, payload.length)),
		payload,
	);
}

function h3RequestTarget(): Target {
	const headers = headersFrame(REQUEST);
	return {
		name: "h3 request stream",
		corpus: [
			headers,
			cat(
				headers,
				bytes((w) => writeCloseCapsuleFrame(w, 7, "done")),
			),
			cat(
				headers,
				bytes((w) => writeDrainCapsuleFrame(w)),
			),
			cat(
				headers,
				bytes((w) => writeTlvHeader(w, 0x21, 2)),
				[9, 9],
				headersFrame([["trailer", "x"]]),
			),
		],
		maxInput: 2048,
		expected: isDecodeError,
		run: runConnectStream,
	};
}

/** Capsules alone: the input is the capsule sequence, wrapped in one DATA frame after a valid CONNECT. */
function capsuleTarget(): Target {
	const headers = headersFrame(REQUEST);
	const capsule = (type: number, payload: Uint8Array) =>
		cat(
			bytes((w) => writeTlvHeader(w, type, payload.length)),
			payload,
		);
	return {
		name: "webtransport capsules",
		corpus: [
			capsule(Capsule.CLOSE_WEBTRANSPORT_SESSION, cat([0, 0, 1, 0], utf8.encode("going away"))),
			capsule(Capsule.DRAIN_WEBTRANSPORT_SESSION, new Uint8Array(0)),
			cat(
				capsule(0x29 * 3 + 0x17, Uint8Array.of(1, 2, 3)),
				capsule(Capsule.CLOSE_WEBTRANSPORT_SESSION, Uint8Array.of(0, 0, 0, 0)),
			),
			capsule(Capsule.CLOSE_WEBTRANSPORT_SESSION, cat([0xff, 0xff, 0xff, 0xff], utf8.encode("✓ done"))),
		],
		maxInput: 2048,
		expected: isDecodeError,
		run: (input) => runConnectStream(cat(headers, dataFrame(input))),
	};
}

/** Structured-field values of WebTransport protocol headers and the WebSocket subprotocol offer. */
function headerValueTarget(): Target {
	const texts = [
		serializeSfStringList(["moq-lite-05", "moq-lite-04", "moql"]),
		'"moq-lite-05"',
		'"a\\"b";q=1, "c"',
		"qmux-01.moq-lite-05, qmux-02.moq-lite-04, webtransport",
	];
	return {
		name: "wt-protocol / ws-subprotocol",
		corpus: texts.map((t) => utf8.encode(t)),
		maxInput: 1024,
		expected: () => false,
		run(input) {
			const text = latin1.decode(input);
			const list = parseProtocolList(text);
			const item = parseProtocolItem(text);
			if (list !== null) {
				// What we parsed re-serialises to a list that parses back to the same items.
				invariant(isDeepStrictEqual(parseProtocolList(serializeSfStringList(list)), list), "sf list round trip");
			}
			const chosen = selectSubprotocol(parseOffer(text));
			if (chosen !== null) parseSubprotocol(chosen);
			return list === null && item === null ? "rejected" : "ok";
		},
	};
}

// ---- configuration and tokens -------------------------------------------------------------------

const FULL_TOML = `
[server]
bind = "127.0.0.1:4443"
[server.tls]
generate = ["localhost", "127.0.0.1"]
[web.http]
listen = "127.0.0.1:8080"
[auth]
public = ["anon", "demo/open"]
[log]
level = "warn"
format = "json"
[cache]
track_bytes = "8MiB"
total_bytes = "1GiB"
max_age = "30s"
[limits]
max_frame_bytes = "4MiB"
max_message_bytes = 65536
max_sessions = 100
max_subscriptions = 64
max_announce_requests = 8
max_path_segments = 16
[workers]
count = 2
`;

function tomlTarget(): Target {
	const baseDir = process.cwd();
	return {
		name: "toml config",
		corpus: [
			DEVELOPMENT_CONFIG,
			FULL_TOML,
			'server.bind = "[::1]:443"\nserver.tls.generate = "localhost"\nauth.public = ""\n',
		].map((t) => utf8.encode(t)),
		maxInput: 2048,
		expected: (err) => err instanceof ConfigError,
		run(input) {
			parseConfig(utf8Lenient.decode(input), "fuzz.toml", { baseDir });
			return "ok";
		},
	};
}

function jwkTarget(): Target {
	const texts: string[] = [];
	for (const json of Object.values(FUZZ_KEYS)) {
		texts.push(json, Buffer.from(json).toString("base64url"));
	}
	const scoped = JSON.parse(FUZZ_KEYS.HS256);
	scoped.scope = { root: "demo", put: ["live"], get: ["", "x/y"] };
	texts.push(JSON.stringify(scoped, null, 2));
	return {
		name: "jwk key file",
		corpus: texts.map((t) => utf8.encode(t)),
		maxInput: 8192,
		expected: (err) => err instanceof KeyError,
		run(input) {
			parseKey(utf8Lenient.decode(input));
			return "ok";
		},
	};
}

const HS_SECRET = Buffer.from(JSON.parse(FUZZ_KEYS.HS256).k, "base64url");

function b64(s: Uint8Array | string): string {
	return Buffer.from(s).toString("base64url");
}

function signHs256(header: Uint8Array | string, payload: Uint8Array | string): string {
	const input = `${b64(header)}.${b64(payload)}`;
	return `${input}.${createHmac("sha256", HS_SECRET).update(input).digest("base64url")}`;
}

/**
 * JWT verification as the relay runs it (Authenticator with one key file). Mode byte: 0 the rest is a
 * whole token (signatures mostly fail: the parser and jose's refusals), 1 the rest is a payload we
 * sign (claims parsing and path scoping), 2 the rest is a header we sign over a valid payload.
 */
function jwtTarget(): Target {
	let auth: Promise<Authenticator> | null = null;
	const header = '{"alg":"HS256","typ":"JWT"}';
	const payload = '{"root":"demo","put":["live"],"get":["","x"],"exp":4102444800,"iat":1700000000}';
	return {
		name: "jwt token",
		corpus: [
			cat([0], utf8.encode(signHs256(header, payload))),
			cat([1], utf8.encode(payload)),
			cat([1], utf8.encode('{"root":"","get":"demo/a"}')),
			cat([2], utf8.encode('{"alg":"HS256","kid":"hs"}')),
		],
		maxInput: 2048,
		expected: (err) => err instanceof AuthError,
		async run(input): Promise<Outcome> {
			auth ??= createAuthenticator();
			const authenticator = await auth;
			const rest = input.subarray(1);
			const mode = input.length === 0 ? 0 : input[0] % 3;
			const token = mode === 0 ? latin1.decode(rest) : mode === 1 ? signHs256(header, rest) : signHs256(rest, payload);
			// Through the request-target parser, as a WebTransport :path or a lite-05 SETUP path carries it.
			const grant = await authenticator.authorizeTarget(`/demo?jwt=${encodeURIComponent(token)}`, 1_750_000_000_000);
			invariant(typeof grant.root === "string", "grant without a root");
			return "ok";
		},
	};
}

/** An Authenticator over the fixed HS256 key, created on first use (it needs a key file). */
function createAuthenticator(): Promise<Authenticator> {
	const dir = mkdtempSync(join(tmpdir(), "moq-fuzz-"));
	process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
	const keyFile = join(dir, "hs.jwk");
	writeFileSync(keyFile, FUZZ_KEYS.HS256);
	return Authenticator.create({ key: keyFile, keyDir: null, public: ["anon"] }, "fuzz");
}

/** Every target, in the order the summary prints them. */
export function allTargets(): Target[] {
	return [
		moqLiteTarget(2),
		moqLiteTarget(3),
		moqLiteTarget(4),
		moqLiteTarget(5),
		groupStreamTarget(),
		...ietfTargets(),
		streamTypeTarget(),
		setupPathTarget(),
		qmuxTarget(),
		h3ControlTarget(),
		h3RequestTarget(),
		qpackTarget(),
		capsuleTarget(),
		headerValueTarget(),
		tomlTarget(),
		jwkTarget(),
		jwtTarget(),
		...selfTest(),
	];
}

/**
 * MOQ_FUZZ_SELFTEST=crash|hang adds a target that crashes (TypeError past 40 bytes) or hangs (an
 * endless loop on one byte value): checks the script's crash report and hang watchdog end to end.
 */
function selfTest(): Target[] {
	const mode = process.env.MOQ_FUZZ_SELFTEST;
	if (mode !== "crash" && mode !== "hang") return [];
	return [
		{
			name: `selftest-${mode}`,
			corpus: [new Uint8Array(8)],
			expected: () => false,
			run(input) {
				if (mode === "crash" && input.length > 40) throw new TypeError("self-test crash");
				if (mode === "hang" && input.includes(0xc0)) for (;;);
				return "ok";
			},
		},
	];
}

export function targetNamed(name: string): Target {
	const t = allTargets().find((x) => x.name === name);
	if (!t) throw new Error(`no fuzz target named ${JSON.stringify(name)}`);
	return t;
}
