/**
 * The live fuzzer: mutated valid moq-lite streams sent to a running relay process over raw QUIC,
 * HTTP/3 WebTransport and WebSocket (qmux), then a health check. Shared by test/fuzz-live.test.ts
 * (bounded, in `npm test`) and scripts/fuzz-live.ts (`npm run fuzz:live`, as long as you like).
 *
 * Every session is unauthenticated (the relay's anonymous "anon" prefix, or junk paths), because what
 * an anonymous peer can do to the relay is what matters most. Each session sends a SETUP (valid or
 * mutated) and then several streams, each a stream type plus a message (or a group stream), mutated
 * by the same engine as the decoder fuzzers, written in a few chunks and then finished, reset or left
 * open. Nothing is read back except to drain: the relay's answers are not the point; its survival is.
 */

import WebSocket from "ws";
import Qmux from "../../node_modules/@moq/net/node_modules/@moq/qmux/index.js";
import { MoqClient } from "../../src/client/index.ts";
import { Writer } from "../../src/coding/writer.ts";
import * as G from "../../src/moq/lite/wire/group.ts";
import * as S from "../../src/moq/lite/wire/setup.ts";
import { BIDI, UNI } from "../../src/moq/lite/wire/stream-type.ts";
import type { LiteVersion } from "../../src/moq/lite/wire/version.ts";
import { defaultParams, encodeTransportParameters } from "../../src/qmux/params.ts";
import { connectQuic } from "../../src/quic/client.ts";
import type { TransportSession } from "../../src/transport/types.ts";
import { connectWebTransport } from "../../src/webtransport/client.ts";
import { cases } from "../support/moq-wire-cases.ts";
import type { RelayProcess } from "../support/process-relay.ts";
import { sleep } from "../support/wait.ts";
import { caseSeed, mutate, Rng } from "./engine.ts";
import { targetNamed } from "./targets.ts";

export type LiveTransport = "quic" | "webtransport" | "websocket";

export interface LiveOptions {
	host: string;
	port: number;
	seed: number;
	/** Sessions per transport. */
	sessions: number;
	/** Streams per session (after SETUP). */
	streams: number;
	/** Sessions in flight at once, per transport. */
	concurrency: number;
	transports?: LiveTransport[];
	/** Called after each session (progress output). */
	onSession?: (transport: LiveTransport, done: number) => void;
}

export interface LiveReport {
	sessions: Record<LiveTransport, number>;
	/** Sessions whose transport handshake failed (the relay refusing or being down). */
	connectFailures: Record<LiveTransport, number>;
	streams: number;
	bytes: number;
	/**
	 * Sessions that mutated the transport's own framing instead of moq-lite: qmux frames on a raw
	 * WebSocket, HTTP/3 SETTINGS / HEADERS / capsules on raw QUIC (counted in `sessions` too).
	 */
	frameSessions: number;
}

/** A stream we only write to, over any of the three transports. */
interface Sink {
	write(b: Uint8Array): Promise<void> | void;
	finish(): Promise<void> | void;
	reset(code: number): void;
}

interface Conn {
	openBidi(): Promise<Sink | null>;
	openUni(): Promise<Sink | null>;
	close(): void;
	/** The ALPN / app protocol in use ("" = 0x20/0x21 negotiation). */
	protocol: string;
}

const PROTOCOLS = ["moq-lite-05", "moq-lite-04", "moq-lite-03", "moql"] as const;

/** Relay-chosen versions per app protocol (moql negotiates lite-02 via the 0x20 SETUP). */
function versionOf(protocol: string): LiteVersion {
	return protocol === "moq-lite-05" ? 5 : protocol === "moq-lite-04" ? 4 : protocol === "moq-lite-03" ? 3 : 2;
}

/** SETUP paths a raw-QUIC client may send: real ones, and the junk a URL parser must survive. */
const SETUP_PATHS = [
	"/anon",
	"/anon/fuzz?jwt=",
	"anon",
	"/%zz",
	"/anon/%E0%A4%A",
	"//[",
	"/a/../b",
	"/anon?jwt=e30.e30.x",
	"",
];

function transportSink(s: { write(b: Uint8Array): void; finish(): void; reset(c: number): void }): Sink {
	return { write: (b) => s.write(b), finish: () => s.finish(), reset: (c) => s.reset(c) };
}

/** Drains whatever the relay opens toward us, so its streams never wait on our flow control. */
function drainIncoming(t: TransportSession): void {
	t.onStream = (s) => {
		s.onData = () => {};
		s.onFin = () => {};
		s.onReset = () => {};
	};
	t.onClose = () => {};
}

function fromTransport(t: TransportSession): Conn {
	drainIncoming(t);
	return {
		protocol: t.protocol,
		openBidi: async () => {
			const s = t.openBidi();
			return s ? transportSink(s) : null;
		},
		openUni: async () => {
			const s = t.openUni();
			return s ? transportSink(s) : null;
		},
		close: () => t.close(0, ""),
	};
}

async function connectRawQuic(o: LiveOptions, fingerprint: string, protocol: string): Promise<Conn> {
	const quic = await connectQuic({
		host: o.host,
		port: o.port,
		alpns: [protocol],
		certificateHashes: [fingerprint],
		timeoutMs: 5000,
	});
	return fromTransport(quic);
}

async function connectWt(o: LiveOptions, fingerprint: string, protocol: string): Promise<Conn> {
	const quic = await connectQuic({
		host: o.host,
		port: o.port,
		alpns: ["h3"],
		certificateHashes: [fingerprint],
		timeoutMs: 5000,
	});
	try {
		const wt = await connectWebTransport(quic, new URL(`https://${o.host}:${o.port}/anon`), [protocol], {
			timeoutMs: 5000,
		});
		return fromTransport(wt);
	} catch (err) {
		quic.close(0, "");
		throw err;
	}
}

type QmuxClient = InstanceType<typeof Qmux>;

function qmuxSink(writable: WritableStream<Uint8Array>): Sink {
	const w = writable.getWriter();
	// Errors mean the relay reset or closed the stream: expected for junk, and nothing to act on.
	const quiet = (p: Promise<unknown>): Promise<void> =>
		p.then(
			() => {},
			() => {},
		);
	return {
		write: (b) => quiet(w.write(b)),
		finish: () => quiet(w.close()),
		reset: () => void quiet(w.abort()),
	};
}

async function connectWs(o: LiveOptions, protocol: string): Promise<Conn> {
	const sub = protocol === "moql" ? "qmux-01" : `qmux-01.${protocol}`;
	const client: QmuxClient = new Qmux(`http://${o.host}:${o.port}/anon`, { protocols: [sub], requireProtocol: true });
	client.closed.catch(() => {});
	await client.ready;
	// Drain the relay's streams (announces, group streams) so they never block on credit.
	void (async () => {
		try {
			for await (const s of client.incomingUnidirectionalStreams) void s.pipeTo(new WritableStream()).catch(() => {});
		} catch {}
	})();
	void (async () => {
		try {
			for await (const s of client.incomingBidirectionalStreams)
				void s.readable.pipeTo(new WritableStream()).catch(() => {});
		} catch {}
	})();
	return {
		protocol: protocol === "moql" ? "" : protocol,
		openBidi: async () => {
			try {
				const s = await client.createBidirectionalStream();
				void s.readable.pipeTo(new WritableStream()).catch(() => {});
				return qmuxSink(s.writable);
			} catch {
				return null;
			}
		},
		openUni: async () => {
			try {
				return qmuxSink(await client.createUnidirectionalStream());
			} catch {
				return null;
			}
		},
		close: () => {
			try {
				client.close();
			} catch {}
		},
	};
}

function bytes(build: (w: Writer) => void): Uint8Array {
	const w = new Writer(256);
	build(w);
	return w.finish();
}

/** The valid streams for a version: [bidi?, whole stream bytes (type + message, or a group stream)]. */
function streamCorpus(v: LiteVersion): [boolean, Uint8Array][] {
	const out: [boolean, Uint8Array][] = [];
	const typeOf: Record<string, number> = {
		ANNOUNCE_REQUEST: BIDI.ANNOUNCE,
		SUBSCRIBE: BIDI.SUBSCRIBE,
		FETCH: BIDI.FETCH,
		PROBE: BIDI.PROBE,
		TRACK: BIDI.TRACK,
	};
	for (const c of cases()) {
		if (c.v !== v) continue;
		const head = c.name.split(" ")[0];
		const body = bytes((w) => c.encode(w));
		if (head in typeOf) out.push([true, Uint8Array.from([typeOf[head], ...body])]);
		if (head === "GROUP") {
			const frames = bytes((w) => {
				for (const size of [5, 0, 40]) {
					const h = new Uint8Array(G.FRAME_HEADER_MAX);
					w.bytes(h.subarray(0, G.writeFrameHeader(h, 0, size, 1, v))).bytes(new Uint8Array(size).fill(0x62));
				}
			});
			out.push([false, Uint8Array.from([UNI.GROUP, ...body, ...frames])]);
		}
		// Announces and subscribe responses are what a publisher answers on streams the relay opens;
		// sent on our own streams they exercise the relay's "unexpected message" paths.
		if (head === "ANNOUNCE" || head === "SUBSCRIBE_OK") out.push([true, Uint8Array.from([BIDI.ANNOUNCE, ...body])]);
	}
	// The known-bad stream types: above 2^53 (8 bytes of 0xff) and unknown ones.
	out.push([true, Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)]);
	out.push([false, Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)]);
	out.push([true, Uint8Array.of(0x3f, 0x00)]);
	return out;
}

/** The SETUP a client of this protocol sends first: [bidi?, bytes], or null for 03/04 (no SETUP). */
function setupStream(protocol: string, transport: LiveTransport, rng: Rng): [boolean, Uint8Array] | null {
	if (protocol === "moq-lite-05") {
		const path = transport === "quic" ? rng.pick(SETUP_PATHS) : undefined;
		const setup = bytes((w) => {
			w.varint(UNI.SETUP);
			S.encodeLiteSetup(w, { path, role: rng.int(3), probe: rng.int(3), origin: 1 + rng.int(1000) }, 5);
		});
		return [false, setup];
	}
	if (protocol === "" || protocol === "moql") {
		return [true, bytes((w) => S.encodeClientSetup(w, { versions: [0xff0dad02], params: new Map([[2, 1]]) }))];
	}
	return null;
}

/** Writes `data` to a fresh stream in 1–3 chunks, then finishes, resets or leaves it open. */
async function sendStream(conn: Conn, bidi: boolean, data: Uint8Array, rng: Rng): Promise<boolean> {
	const sink = bidi ? await conn.openBidi() : await conn.openUni();
	if (sink === null) return false;
	const parts = 1 + rng.int(3);
	let p = 0;
	for (let i = 0; i < parts; i++) {
		const n = i === parts - 1 ? data.length - p : rng.int(data.length - p + 1);
		if (n > 0) await sink.write(data.subarray(p, p + n));
		p += n;
		if (parts > 1 && rng.chance(0.3)) await sleep(rng.int(5));
	}
	const end = rng.int(10);
	if (end < 6) await sink.finish();
	else if (end < 8) sink.reset(rng.int(32));
	return true;
}

/** Valid frames from the decoder fuzz corpora: qmux-01 frames (selector 2, stripped) and H3 streams. */
let frameCorpora: { qmux: Uint8Array[]; h3Control: Uint8Array[]; h3Request: Uint8Array[] } | null = null;
function corpora() {
	frameCorpora ??= {
		qmux: targetNamed("qmux frames")
			.corpus.filter((b) => b[0] === 2)
			.map((b) => b.subarray(1)),
		h3Control: targetNamed("h3 control stream").corpus,
		h3Request: targetNamed("h3 request stream").corpus,
	};
	return frameCorpora;
}

/** A raw WebSocket speaking qmux-01: valid transport parameters, then mutated qmux records. */
async function rawWsSession(o: LiveOptions, rng: Rng, report: LiveReport): Promise<void> {
	const ws = new WebSocket(`ws://${o.host}:${o.port}/anon`, ["qmux-01.moq-lite-05"]);
	ws.on("error", () => {});
	ws.on("message", () => {});
	await new Promise<void>((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error("WebSocket open timed out")), 5000);
		ws.once("open", () => {
			clearTimeout(timer);
			resolve();
		});
		ws.once("close", () => {
			clearTimeout(timer);
			reject(new Error("WebSocket closed before open"));
		});
	});
	try {
		const params = defaultParams();
		params.initialMaxData = 1 << 20;
		params.initialMaxStreamDataBidiLocal = 65536;
		params.initialMaxStreamDataBidiRemote = 65536;
		params.initialMaxStreamDataUni = 65536;
		params.initialMaxStreamsBidi = 16;
		params.initialMaxStreamsUni = 16;
		ws.send(bytes((w) => encodeTransportParameters(w, params, "qmux-01")));
		const frames = corpora().qmux;
		for (let i = 0; i < o.streams && ws.readyState === WebSocket.OPEN; i++) {
			const msg = mutate(rng.pick(frames), rng, frames, 2048);
			ws.send(msg);
			report.streams++;
			report.bytes += msg.length;
		}
		await sleep(20 + rng.int(50));
	} finally {
		ws.terminate();
	}
}

/** Raw QUIC with ALPN h3: a (sometimes mutated) control stream, then mutated request streams. */
async function rawH3Session(o: LiveOptions, fingerprint: string, rng: Rng, report: LiveReport): Promise<void> {
	const quic = await connectQuic({
		host: o.host,
		port: o.port,
		alpns: ["h3"],
		certificateHashes: [fingerprint],
		timeoutMs: 5000,
	});
	drainIncoming(quic);
	try {
		const { h3Control, h3Request } = corpora();
		const control = quic.openUni();
		const settings = rng.pick(h3Control);
		control?.write(Uint8Array.from([0x00, ...(rng.chance(0.3) ? mutate(settings, rng, h3Control) : settings)]));
		for (let i = 0; i < o.streams; i++) {
			const s = quic.openBidi();
			if (s === null) break;
			const data = mutate(rng.pick(h3Request), rng, h3Request, 2048);
			s.write(data);
			if (rng.chance(0.6)) s.finish();
			report.streams++;
			report.bytes += data.length;
		}
		await sleep(20 + rng.int(50));
	} finally {
		quic.close(0, "");
	}
}

async function oneSession(
	o: LiveOptions,
	fingerprint: string,
	transport: LiveTransport,
	index: number,
	report: LiveReport,
): Promise<void> {
	const rng = new Rng(caseSeed(o.seed, `live ${transport}`, index));
	if (transport !== "quic" && rng.chance(0.3)) {
		// Below moq-lite: the transport's own framing, mutated.
		try {
			if (transport === "websocket") await rawWsSession(o, rng, report);
			else await rawH3Session(o, fingerprint, rng, report);
		} catch {
			report.connectFailures[transport]++;
			return;
		}
		report.frameSessions++;
		report.sessions[transport]++;
		o.onSession?.(transport, report.sessions[transport]);
		return;
	}
	const protocol = transport === "quic" ? rng.pick(PROTOCOLS) : rng.pick(PROTOCOLS.slice(0, 3));
	let conn: Conn;
	try {
		conn =
			transport === "quic"
				? await connectRawQuic(o, fingerprint, protocol)
				: transport === "webtransport"
					? await connectWt(o, fingerprint, protocol)
					: await connectWs(o, protocol);
	} catch {
		report.connectFailures[transport]++;
		return;
	}
	try {
		const v = versionOf(conn.protocol === "" ? "moql" : conn.protocol);
		const setup = setupStream(conn.protocol, transport, rng);
		if (setup !== null) {
			// Usually valid (so the session gets past SETUP and the later streams reach their handlers).
			const data = rng.chance(0.25) ? mutate(setup[1], rng, [setup[1]]) : setup[1];
			if (await sendStream(conn, setup[0], data, rng)) report.streams++;
			report.bytes += data.length;
			await sleep(10);
		}
		const corpus = streamCorpus(v);
		const samples = corpus.map(([, b]) => b);
		for (let i = 0; i < o.streams; i++) {
			const [bidi, valid] = rng.pick(corpus);
			const data = rng.chance(0.15) ? valid : mutate(valid, rng, samples, 2048);
			if (!(await sendStream(conn, bidi, data, rng))) break;
			report.streams++;
			report.bytes += data.length;
		}
		// Let the relay chew on it before we go (some handlers only run once the session is ready).
		await sleep(20 + rng.int(80));
	} finally {
		conn.close();
	}
	report.sessions[transport]++;
	o.onSession?.(transport, report.sessions[transport]);
}

/** Runs the live fuzz against a relay at host:port (its certificate hash from /certificate.sha256). */
export async function runLiveFuzz(o: LiveOptions): Promise<LiveReport> {
	const fingerprint = (await (await fetch(`http://${o.host}:${o.port}/certificate.sha256`)).text()).trim();
	const transports = o.transports ?? ["quic", "webtransport", "websocket"];
	const report: LiveReport = {
		sessions: { quic: 0, webtransport: 0, websocket: 0 },
		connectFailures: { quic: 0, webtransport: 0, websocket: 0 },
		streams: 0,
		bytes: 0,
		frameSessions: 0,
	};
	await Promise.all(
		transports.map(async (transport) => {
			let next = 0;
			const lane = async () => {
				for (let i = next++; i < o.sessions; i = next++) await oneSession(o, fingerprint, transport, i, report);
			};
			await Promise.all(Array.from({ length: o.concurrency }, lane));
		}),
	);
	return report;
}

/**
 * A fresh, well-behaved pair after the fuzzing: a raw-QUIC publisher and a subscriber on another
 * session; resolves with the frame payloads the subscriber received (rejects on timeout).
 */
export async function wellBehavedRoundTrip(
	host: string,
	port: number,
	name: string,
	timeoutMs = 10_000,
): Promise<string[]> {
	const fingerprint = (await (await fetch(`http://${host}:${port}/certificate.sha256`)).text()).trim();
	const connect = async () =>
		MoqClient.connect(await connectQuic({ host, port, alpns: ["moq-lite-05"], certificateHashes: [fingerprint] }), {
			path: "/anon",
		});
	const pub = await connect();
	const sub = await connect();
	try {
		const track = pub.publish(name).track("video");
		const got: string[] = [];
		const text = new TextDecoder();
		let settled = false;
		await new Promise<void>((resolve, reject) => {
			const settle = (err: Error | null) => {
				settled = true;
				clearTimeout(timer);
				clearInterval(ticker);
				if (err) reject(err);
				else resolve();
			};
			const timer = setTimeout(
				() => settle(new Error(`no frames within ${timeoutMs} ms (got ${got.length})`)),
				timeoutMs,
			);
			const ticker = setInterval(() => {
				const g = track.openGroup();
				g.writeFrame(new TextEncoder().encode(`frame ${g.seq}`));
				g.close();
			}, 50);
			const subscribe = () =>
				!settled &&
				!sub.closed &&
				sub.subscribe(
					name,
					"video",
					{},
					{
						onFrame: (_seq, _i, payload) => {
							got.push(text.decode(payload));
							if (got.length >= 3 && !settled) settle(null);
						},
						// Not announced yet: ask again shortly.
						onEnd: () => setTimeout(subscribe, 100),
					},
				);
			subscribe();
		});
		return got;
	} finally {
		pub.close();
		sub.close();
	}
}

/** What the live fuzz must leave behind: a live process, no worker restarted, a relay that still serves. */
export interface Health {
	alive: boolean;
	/** moq_fanout_worker_restarts_total over every worker. */
	restarts: number;
	/** Frames a fresh subscriber received from a fresh publisher (≥ 3), or why none arrived. */
	frames: string[] | string;
}

export async function checkHealth(relay: RelayProcess, name: string): Promise<Health> {
	const alive = relay.child.exitCode === null && relay.child.signalCode === null;
	let restarts = Number.NaN;
	let frames: string[] | string = "relay is down";
	if (alive) {
		const metrics = await relay.metrics();
		restarts = 0;
		for (const [key, value] of metrics) {
			// Per-worker series only: the worker="" total would double count.
			if (key.startsWith("moq_fanout_worker_restarts_total{") && /worker="\d+"/.test(key)) restarts += value;
		}
		frames = await wellBehavedRoundTrip("127.0.0.1", relay.port, name).catch((err: Error) => err.message);
	}
	return { alive, restarts, frames };
}
