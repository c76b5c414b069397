/**
 * The WebTransport server layer driven by a raw HTTP/3 peer speaking Chromium 156's bytes over the
 * in-memory loopback pair: settings, stream ordering, CONNECT handling, rejections, capsules, and
 * garbage that must close the connection with a precise HTTP/3 / QPACK code.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fromH3, H3, toH3 } from "../src/errors/codes.ts";
import type { TransportSession, TransportStream } from "../src/transport/types.ts";
import { Setting } from "../src/webtransport/codes.ts";
import { decodeSettings } from "../src/webtransport/frames.ts";
import { acceptHttp3, type WebTransportServerOptions } from "../src/webtransport/server.ts";
import {
	CHROMIUM_SETTINGS,
	chromiumConnectSection,
	concat,
	controlStreamBytes,
	frame,
	headersIn,
	parseFrames,
	settingsFrame,
	varints,
} from "./support/h3-bytes.ts";
import { type LoopbackSession, type LoopbackStream, loopbackPair } from "./support/loopback.ts";
import { until } from "./support/wait.ts";

const TIMEOUT = { timeout: 5000 };
const PROTOCOLS = ["moq-lite-05", "moq-lite-04", "moq-lite-03", "moql"];

function serve(opts: Partial<WebTransportServerOptions> = {}) {
	const { client, server } = loopbackPair();
	const sessions: TransportSession[] = [];
	acceptHttp3(server, { protocols: PROTOCOLS, onSession: (s) => sessions.push(s), ...opts });
	return { client, server, sessions };
}

/** Opens the raw client's control stream (Chromium's SETTINGS) and sends the CONNECT. */
function chromiumConnect(client: LoopbackSession, section = chromiumConnectSection()): LoopbackStream {
	client.openUni()!.write(controlStreamBytes());
	const request = client.openBidi()!;
	request.write(frame(0x01, section));
	return request;
}

async function responseOf(request: LoopbackStream): Promise<Map<string, string>> {
	await until(() => request.received.length > 0, 10_000, "response");
	const [fields] = headersIn(request.received);
	return new Map(fields);
}

async function closedWith(client: LoopbackSession): Promise<number> {
	const info = await client.whenClosed();
	assert.ok(info.byPeer, "the server closed the connection");
	return info.code;
}

describe("webtransport server: handshake", () => {
	it(
		"sends SETTINGS with the union every WebTransport draft and Chromium need, on a control stream",
		TIMEOUT,
		async () => {
			const { client } = serve();
			await until(() => (client.streams.get(3)?.received.length ?? 0) > 0, 10_000, "server control stream");
			const control = client.streams.get(3)!.received;
			assert.equal(control[0], 0x00);
			const [settingsFrame] = parseFrames(control.slice(1));
			assert.equal(settingsFrame.type, 0x04);
			const settings = decodeSettings(settingsFrame.payload);
			assert.equal(settings.get(Setting.ENABLE_WEBTRANSPORT), 1);
			assert.equal(settings.get(Setting.H3_DATAGRAM), 1);
			assert.equal(settings.get(Setting.H3_DATAGRAM_DRAFT04), 1);
			assert.equal(settings.get(Setting.ENABLE_CONNECT_PROTOCOL), 1);
			assert.equal(settings.get(Setting.WT_MAX_SESSIONS), 1);
			assert.equal(settings.get(Setting.WEBTRANSPORT_MAX_SESSIONS_DRAFT), 1);
			assert.equal(settings.get(Setting.QPACK_MAX_TABLE_CAPACITY), 0);
			assert.equal(settings.get(Setting.QPACK_BLOCKED_STREAMS), 0);
		},
	);

	it("accepts Chromium's CONNECT: 200, draft02, quoted wt-protocol, no FIN", TIMEOUT, async () => {
		const { client, sessions } = serve();
		// Uni streams in an awkward order: QPACK encoder, a GREASE stream type, then control.
		const encoder = client.openUni()!;
		encoder.write(Uint8Array.of(0x02, 0x3f, 0xe1, 0x1f)); // Set Dynamic Table Capacity: ignored
		const grease = client.openUni()!;
		grease.write(Uint8Array.from([...varints(0x1f * 7 + 0x21), 1, 2, 3]));
		const request = chromiumConnect(client);
		const response = await responseOf(request);
		assert.equal(response.get(":status"), "200");
		assert.equal(response.get("sec-webtransport-http3-draft"), "draft02");
		assert.equal(response.get("wt-protocol"), '"moq-lite-05"');
		assert.equal(request.receivedFin, false);
		assert.equal(sessions.length, 1);
		const [session] = sessions;
		assert.equal(session.kind, "webtransport");
		assert.equal(session.protocol, "moq-lite-05");
		assert.equal(session.path, "/room/abc");
		assert.equal(session.query.get("jwt"), "xyz");
		// The GREASE stream was refused with STOP_SENDING(H3_STREAM_CREATION_ERROR).
		await until(() => grease.receivedStop !== null, 10_000, "stop on GREASE stream");
		assert.equal(grease.receivedStop, H3.STREAM_CREATION_ERROR);
		assert.equal(client.closed, false);
	});

	it("omits wt-protocol when nothing offered is supported, and when nothing is offered", TIMEOUT, async () => {
		for (const offered of ['"moqt-15", "moqt-16"', null]) {
			const { client, sessions } = serve();
			const response = await responseOf(chromiumConnect(client, chromiumConnectSection("/", offered)));
			assert.equal(response.get(":status"), "200");
			assert.equal(response.has("wt-protocol"), false);
			assert.equal(sessions[0].protocol, "");
		}
	});

	it("answers a CONNECT that arrives before the client's SETTINGS once they arrive", TIMEOUT, async () => {
		const { client, sessions } = serve();
		const request = client.openBidi()!;
		request.write(frame(0x01, chromiumConnectSection()));
		const control = client.openUni()!;
		control.write(Uint8Array.of(0x00)); // type only: SETTINGS not yet
		await until(() => client.streams.has(3), 10_000, "server control stream");
		assert.equal(request.received.length, 0);
		control.write(settingsFrame());
		const response = await responseOf(request);
		assert.equal(response.get(":status"), "200");
		assert.equal(sessions.length, 1);
	});

	it("buffers a WebTransport stream that arrives before its CONNECT is answered", TIMEOUT, async () => {
		const { client, sessions } = serve();
		client.openUni()!.write(controlStreamBytes());
		// The uni stream for session 0 first, split mid-header, then the CONNECT on stream 0.
		const early = client.openUni()!;
		const request = client.openBidi()!;
		early.write(Uint8Array.of(0x40)); // first byte of a 2-byte varint 0x54
		early.write(Uint8Array.of(0x54, 0x00, 0x68)); // ...0x54, sid 0, "h"
		early.write(new TextEncoder().encode("ello"));
		early.finish();
		await until(() => client.streams.has(3));
		request.write(frame(0x01, chromiumConnectSection()));
		await until(() => sessions.length === 1, 10_000, "session");
		const got: string[] = [];
		let fin = false;
		sessions[0].onStream = (stream) => {
			assert.equal(stream.bidi, false);
			assert.equal(stream.local, false);
			assert.equal(stream.id, early.id);
			stream.onData = (chunk) => got.push(new TextDecoder().decode(chunk));
			stream.onFin = () => (fin = true);
		};
		await until(() => fin, 10_000, "fin");
		assert.equal(got.join(""), "hello");
	});

	it("rejects streams of a refused session and over the buffering limit", TIMEOUT, async () => {
		const { client } = serve({ limits: { maxBufferedStreams: 1 }, authorize: () => 404 });
		client.openUni()!.write(controlStreamBytes());
		const waiting = client.openUni()!;
		waiting.write(Uint8Array.of(0x40, 0x54, 0x04, 0x01)); // session 4: not established yet
		const overflow = client.openUni()!;
		overflow.write(Uint8Array.of(0x40, 0x54, 0x08, 0x01)); // session 8: over the limit
		await until(() => overflow.receivedStop !== null, 10_000, "stop on overflow");
		assert.equal(overflow.receivedStop, H3.WT_BUFFERED_STREAM_REJECTED);
		const request = client.openBidi()!; // stream 0
		request.write(frame(0x01, chromiumConnectSection()));
		assert.equal((await responseOf(request)).get(":status"), "404");
		const late = client.openBidi()!; // WebTransport bidi for the refused session 0
		late.write(Uint8Array.of(0x40, 0x41, 0x00, 0x01));
		await until(() => late.receivedReset !== null && late.receivedStop !== null, 10_000, "reset on late stream");
		assert.equal(late.receivedReset, H3.WT_SESSION_GONE);
		assert.equal(waiting.receivedStop, null);
	});
});

describe("webtransport server: rejections", () => {
	async function statusFor(section: Uint8Array, opts: Partial<WebTransportServerOptions> = {}) {
		const { client, sessions } = serve(opts);
		const request = chromiumConnect(client, section);
		const response = await responseOf(request);
		await until(() => request.receivedFin, 10_000, "FIN after rejection");
		assert.equal(sessions.length, 0);
		return Number(response.get(":status"));
	}

	it("uses the status authorize returns, with path, query and headers", TIMEOUT, async () => {
		const seen: string[] = [];
		const authorize = (path: string, query: URLSearchParams, headers: Map<string, string>) => {
			seen.push(`${path} ${query.get("jwt")} ${headers.get("origin")}`);
			return path === "/room/abc" ? 403 : null;
		};
		assert.equal(await statusFor(chromiumConnectSection(), { authorize }), 403);
		assert.deepEqual(seen, ["/room/abc xyz https://example.com"]);
		assert.equal(await statusFor(chromiumConnectSection("/nope"), { authorize: () => 404 }), 404);
		assert.equal(
			await statusFor(chromiumConnectSection(), {
				authorize: () => {
					throw new Error("boom");
				},
			}),
			500,
		);
	});

	it("404 for a non-CONNECT request, 400 for malformed ones", TIMEOUT, async () => {
		// GET / (indexed :method GET 17, :scheme https, :path /)
		assert.equal(await statusFor(Uint8Array.of(0, 0, 0xd1, 0xd7, 0xc1, 0x50, 0x01, 0x61)), 404);
		// CONNECT without :protocol (classic CONNECT)
		assert.equal(await statusFor(Uint8Array.of(0, 0, 0xcf, 0xd7, 0x50, 0x01, 0x61, 0x51, 0x01, 0x2f)), 400);
		// Malformed wt-available-protocols
		assert.equal(await statusFor(chromiumConnectSection("/", '"moq-lite-05",')), 400);
		// Undecodable path
		assert.equal(await statusFor(chromiumConnectSection("/%zz")), 400);
	});

	it("400 when the client's SETTINGS do not enable WebTransport or datagrams", TIMEOUT, async () => {
		for (const drop of [0x2b603742, 0x33]) {
			const { client } = serve();
			const settings = CHROMIUM_SETTINGS.filter(([id]) => id !== drop && id !== 0xffd277);
			client.openUni()!.write(controlStreamBytes(settings));
			const request = client.openBidi()!;
			request.write(frame(0x01, chromiumConnectSection()));
			assert.equal((await responseOf(request)).get(":status"), "400");
		}
	});

	it("429 past the session limit", TIMEOUT, async () => {
		const { client, sessions } = serve();
		const first = chromiumConnect(client);
		assert.equal((await responseOf(first)).get(":status"), "200");
		const second = client.openBidi()!;
		second.write(frame(0x01, chromiumConnectSection()));
		assert.equal((await responseOf(second)).get(":status"), "429");
		assert.equal(sessions.length, 1);
	});
});

describe("webtransport server: capsules", () => {
	async function established() {
		const { client, sessions } = serve();
		const request = chromiumConnect(client);
		await responseOf(request);
		const session = sessions[0];
		const closes: [number, string][] = [];
		session.onClose = (code, reason) => closes.push([code, reason]);
		return { client, request, session, closes };
	}

	it("client CLOSE capsule (after a GREASE capsule) closes the session; the server FINs", TIMEOUT, async () => {
		const { client, request, closes } = await established();
		const grease = [...varints(0x29 * 5 + 0x17, 2), 0xaa, 0xbb];
		const close = [...varints(0x2843, 7), 0, 0, 0, 7, ...new TextEncoder().encode("bye")];
		// Capsules split across DATA frames, as a stream may deliver them.
		request.write(concat(frame(0x00, grease), frame(0x00, close.slice(0, 3))));
		request.write(concat(frame(0x00, close.slice(3)), frame(0x00, [])));
		request.finish();
		await until(() => closes.length === 1, 10_000, "onClose");
		assert.deepEqual(closes, [[7, "bye"]]);
		await until(() => request.receivedFin, 10_000, "server FIN");
		assert.equal(await closedWith(client), H3.NO_ERROR);
	});

	it("DRAIN is accepted; FIN without a capsule closes with code 0", TIMEOUT, async () => {
		const { request, session, closes } = await established();
		request.write(frame(0x00, varints(0x78ae, 0)));
		await until(() => request.received.length > 0);
		assert.equal(session.closed, false);
		request.finish();
		await until(() => closes.length === 1);
		assert.deepEqual(closes, [[0, ""]]);
	});

	it("a reset CONNECT stream closes with code 0 and resets open streams with WT_SESSION_GONE", TIMEOUT, async () => {
		const { client, request, session, closes } = await established();
		const uni = session.openUni()!;
		uni.write(Uint8Array.of(1));
		const bidi = session.openBidi()!;
		bidi.write(Uint8Array.of(2));
		await until(() => client.streams.has(bidi.id) && client.streams.has(uni.id));
		request.reset(H3.REQUEST_CANCELLED);
		await until(() => closes.length === 1);
		assert.deepEqual(closes, [[0, ""]]);
		const rawUni = client.streams.get(uni.id)!;
		const rawBidi = client.streams.get(bidi.id)!;
		await until(() => rawBidi.receivedReset !== null && rawBidi.receivedStop !== null);
		assert.deepEqual([...rawUni.received], [0x40, 0x54, 0x00, 1]);
		assert.deepEqual([...rawBidi.received], [0x40, 0x41, 0x00, 2]);
		assert.equal(rawUni.receivedReset, H3.WT_SESSION_GONE);
		assert.equal(rawBidi.receivedReset, H3.WT_SESSION_GONE);
		assert.equal(rawBidi.receivedStop, H3.WT_SESSION_GONE);
	});

	it("server close sends the capsule then FIN", TIMEOUT, async () => {
		const { client, request, session, closes } = await established();
		session.close(9, "srv");
		assert.deepEqual(closes, [[9, "srv"]]);
		await until(() => request.receivedFin, 10_000, "FIN");
		const data = parseFrames(request.received).filter((f) => f.type === 0x00);
		assert.deepEqual([...data[0].payload], [...varints(0x2843, 7), 0, 0, 0, 9, ...new TextEncoder().encode("srv")]);
		request.finish(); // the peer answers with FIN: the server closes QUIC at once
		assert.equal(await closedWith(client), H3.NO_ERROR);
	});

	it("maps stream error codes both ways", TIMEOUT, async () => {
		const { client, session } = await established();
		const streams: TransportStream[] = [];
		session.onStream = (s) => streams.push(s);
		const raw = client.openBidi()!;
		raw.write(Uint8Array.of(0x40, 0x41, 0x00));
		const raw2 = client.openBidi()!;
		raw2.write(Uint8Array.of(0x40, 0x41, 0x00));
		await until(() => streams.length === 2);
		const resets: number[] = [];
		const stops: number[] = [];
		streams[0].onReset = (code) => resets.push(code);
		streams[0].onStop = (code) => stops.push(code);
		raw.reset(91141958510854); // Chromium's abort(42)
		raw.stop(toH3(300));
		await until(() => resets.length === 1 && stops.length === 1);
		assert.deepEqual(resets, [42]);
		assert.deepEqual(stops, [300]);
		// The other direction, on a stream both sides still have open.
		streams[1].reset(4294967295);
		streams[1].stop(77);
		await until(() => raw2.receivedReset !== null && raw2.receivedStop !== null);
		assert.equal(fromH3(raw2.receivedReset!), 4294967295);
		assert.equal(raw2.receivedStop, toH3(77));
		// A code outside the WebTransport range reaches the application as 0.
		const raw3 = client.openBidi()!;
		raw3.write(Uint8Array.of(0x40, 0x41, 0x00));
		await until(() => streams.length === 3);
		streams[2].onReset = (code) => resets.push(code);
		raw3.reset(H3.REQUEST_CANCELLED);
		await until(() => resets.length === 2);
		assert.equal(resets[1], 0);
	});
});

describe("webtransport server: garbage closes the connection with precise codes", () => {
	async function codeFor(send: (client: LoopbackSession) => void): Promise<number> {
		const { client } = serve();
		send(client);
		return closedWith(client);
	}
	const control = (client: LoopbackSession, bytes: ArrayLike<number>) =>
		client.openUni()!.write(Uint8Array.from(bytes));
	const request = (client: LoopbackSession, bytes: Uint8Array) => {
		control(client, controlStreamBytes());
		client.openBidi()!.write(bytes);
	};

	it("control stream problems", TIMEOUT, async () => {
		assert.equal(await codeFor((c) => control(c, [0x00, ...frame(0x07, [0])])), H3.MISSING_SETTINGS);
		assert.equal(await codeFor((c) => control(c, [0x00, ...frame(0x04, [0x01])])), H3.FRAME_ERROR);
		assert.equal(await codeFor((c) => control(c, [0x00, ...frame(0x04, [0x01, 0x00, 0x01, 0x00])])), H3.SETTINGS_ERROR);
		assert.equal(await codeFor((c) => control(c, [...controlStreamBytes(), ...settingsFrame()])), H3.FRAME_UNEXPECTED);
		assert.equal(await codeFor((c) => control(c, [...controlStreamBytes(), ...frame(0x00, [1])])), H3.FRAME_UNEXPECTED);
		assert.equal(await codeFor((c) => control(c, [0x00, ...frame(0x04, new Uint8Array(5000))])), H3.EXCESSIVE_LOAD);
		assert.equal(
			await codeFor((c) => {
				control(c, controlStreamBytes());
				control(c, controlStreamBytes());
			}),
			H3.STREAM_CREATION_ERROR,
		);
		assert.equal(
			await codeFor((c) => {
				const s = c.openUni()!;
				s.write(controlStreamBytes());
				s.finish();
			}),
			H3.CLOSED_CRITICAL_STREAM,
		);
	});

	it("QPACK streams are critical; push streams are refused", TIMEOUT, async () => {
		assert.equal(
			await codeFor((c) => {
				const s = c.openUni()!;
				s.write(Uint8Array.of(0x02));
				s.reset(0);
			}),
			H3.CLOSED_CRITICAL_STREAM,
		);
		assert.equal(await codeFor((c) => control(c, [0x01, 0x00])), H3.STREAM_CREATION_ERROR);
	});

	it("request stream problems", TIMEOUT, async () => {
		const dynamicRef = frame(0x01, [0x02, 0x00, 0x80]);
		assert.equal(await codeFor((c) => request(c, dynamicRef)), H3.QPACK_DECOMPRESSION_FAILED);
		const truncatedSection = frame(0x01, [0x00, 0x00, 0x51, 0x85, 0x61]);
		assert.equal(await codeFor((c) => request(c, truncatedSection)), H3.QPACK_DECOMPRESSION_FAILED);
		const badHuffman = frame(0x01, [0x00, 0x00, 0x51, 0x81, 0x00]);
		assert.equal(await codeFor((c) => request(c, badHuffman)), H3.QPACK_DECOMPRESSION_FAILED);
		assert.equal(await codeFor((c) => request(c, frame(0x00, [1, 2]))), H3.FRAME_UNEXPECTED);
		assert.equal(await codeFor((c) => request(c, frame(0x04, []))), H3.FRAME_UNEXPECTED);
		assert.equal(await codeFor((c) => request(c, frame(0x01, new Uint8Array(20000)))), H3.EXCESSIVE_LOAD);
		assert.equal(
			await codeFor((c) => {
				control(c, controlStreamBytes());
				const s = c.openBidi()!;
				s.write(frame(0x01, chromiumConnectSection()).subarray(0, 20)); // HEADERS frame cut short
				s.finish();
			}),
			H3.FRAME_ERROR,
		);
	});

	it("WebTransport stream with a session id that is not a client bidi stream", TIMEOUT, async () => {
		assert.equal(await codeFor((c) => control(c, [0x40, 0x54, 0x01])), H3.ID_ERROR);
	});
});
