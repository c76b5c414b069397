/**
 * Wire-level behaviour of WsSession over real sockets, driven by a raw `ws` client that writes
 * hand-built frames: keep-alive, error codes for bad input, backpressure and priorities.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { WebSocket as RawWs } from "ws";
import { Reader } from "../src/coding/reader.ts";
import { Writer } from "../src/coding/writer.ts";
import { QuicError } from "../src/errors/codes.ts";
import { startHttpServer } from "../src/http/server.ts";
import {
	decodeFrame,
	encodePadding,
	encodePing,
	encodeResetStreamAt,
	encodeStream,
	Frame,
	FrameType,
	type Framing,
	TRANSPORT_PARAMETERS_TYPE,
} from "../src/qmux/frames.ts";
import { defaultParams, encodeTransportParameters } from "../src/qmux/params.ts";
import type { TransportSession } from "../src/transport/types.ts";
import { type EchoServer, pattern, startEcho } from "./support/websocket.ts";

const TIMEOUT = { timeout: 15_000 };

/** A raw client: collects binary messages and the close event, hands them out in order. */
class RawClient {
	ws: RawWs;
	framing: Framing;
	#messages: Buffer[] = [];
	#waiter: (() => void) | null = null;
	closeCode = -1;
	closed: Promise<number>;

	constructor(url: string, protocol: string | null, opts: { autoPong?: boolean } = {}) {
		this.ws = new RawWs(url, protocol === null ? [] : [protocol], { autoPong: opts.autoPong ?? true });
		this.framing = (protocol?.startsWith("qmux-") ? protocol.slice(0, 7) : "webtransport") as Framing;
		this.ws.on("message", (data: Buffer) => {
			this.#messages.push(data);
			this.#waiter?.();
		});
		this.closed = new Promise((r) =>
			this.ws.on("close", (code) => {
				this.closeCode = code;
				r(code);
				this.#waiter?.();
			}),
		);
		this.ws.on("error", () => {});
	}

	open(): Promise<void> {
		return new Promise((resolve, reject) => {
			this.ws.once("open", () => resolve());
			this.ws.once("error", reject);
		});
	}

	/** The next message, or null once the socket closed with nothing left. */
	async next(): Promise<Buffer | null> {
		while (this.#messages.length === 0) {
			if (this.closeCode >= 0) return null;
			await new Promise<void>((r) => {
				this.#waiter = r;
			});
			this.#waiter = null;
		}
		return this.#messages.shift() ?? null;
	}

	/** Decodes every frame of the next message. */
	async frames(): Promise<Frame[] | null> {
		const m = await this.next();
		if (m === null) return null;
		const r = new Reader(m);
		const out: Frame[] = [];
		do {
			const f = new Frame();
			decodeFrame(r, this.framing, f);
			out.push(f);
		} while (r.remaining > 0);
		return out;
	}

	/** Skips frames until a CONNECTION_CLOSE / APPLICATION_CLOSE; returns it. */
	async closeFrame(): Promise<Frame> {
		for (;;) {
			const fs = await this.frames();
			assert.ok(fs, "socket closed without a close frame");
			const c = fs.find((f) => f.type === FrameType.CONNECTION_CLOSE || f.type === FrameType.APPLICATION_CLOSE);
			if (c) return c;
		}
	}

	send(bytes: Uint8Array | string): void {
		this.ws.send(bytes);
	}

	params(over?: Partial<ReturnType<typeof defaultParams>>): Uint8Array {
		const p = {
			...defaultParams(),
			initialMaxData: 1 << 24,
			initialMaxStreamDataBidiLocal: 1 << 20,
			initialMaxStreamDataBidiRemote: 1 << 20,
			initialMaxStreamDataUni: 1 << 20,
			initialMaxStreamsBidi: 100,
			initialMaxStreamsUni: 100,
			...over,
		};
		return encodeTransportParameters(new Writer(), p, this.framing).finish();
	}
}

const w = (): Writer => new Writer();

async function connect(server: EchoServer, protocol: string | null, opts?: { autoPong?: boolean }): Promise<RawClient> {
	const c = new RawClient(server.url.replace("http", "ws"), protocol, opts);
	await c.open();
	if (protocol?.startsWith("qmux-")) {
		const first = await c.next();
		assert.ok(first);
		// Our parameters are the very first bytes on every qmux draft.
		assert.deepEqual(first.subarray(0, 8), Buffer.from(TRANSPORT_PARAMETERS_TYPE));
	}
	return c;
}

async function expectClose(c: RawClient, code: number): Promise<Frame> {
	const f = await c.closeFrame();
	assert.equal(f.type, FrameType.CONNECTION_CLOSE);
	assert.equal(f.code, code, new TextDecoder().decode(f.reason));
	await c.closed;
	return f;
}

describe("WsSession wire behaviour", () => {
	let server: EchoServer;
	before(async () => {
		server = await startEcho({
			limits: { maxStreamsUni: 4, maxStreamDataUni: 1000, maxData: 1 << 20 },
			pingIntervalMs: 50,
			idleTimeoutMs: 400,
		});
	});
	after(() => server.handle.close());

	test("QX_PING requests are echoed with the same sequence, also inside padded records", TIMEOUT, async () => {
		const c = await connect(server, "qmux-01.moq-lite-05");
		c.send(c.params());
		const seq = Uint8Array.of(0xc0, 0, 0, 0, 0, 0, 0, 9); // 8-byte form: echoed byte-exact
		c.send(encodePadding(encodePing(encodePadding(w(), 3), false, seq), 2).finish());
		const fs = await c.frames();
		assert.ok(fs);
		assert.equal(fs[0].type, FrameType.PING_RESPONSE);
		assert.deepEqual(Uint8Array.from(fs[0].seq), seq);
		c.ws.close();
	});

	test("a text message closes only that session (PROTOCOL_VIOLATION, WS 1003)", TIMEOUT, async () => {
		const bad = await connect(server, "qmux-01.moq-lite-05");
		const good = await connect(server, "qmux-01.moq-lite-05");
		good.send(good.params());
		bad.send("hello");
		await expectClose(bad, QuicError.PROTOCOL_VIOLATION);
		assert.equal(bad.closeCode, 1003);
		// The other session still echoes.
		good.send(encodeStream(w(), true, 0, 0, pattern(10), true).finish());
		const fs = await good.frames();
		assert.ok(fs);
		assert.equal(fs[0].type, FrameType.STREAM);
		assert.deepEqual(Uint8Array.from(fs[0].data), pattern(10));
		good.ws.close();
	});

	const cases: { name: string; protocol: string; bytes: (c: RawClient) => Uint8Array[]; code: number }[] = [
		{
			name: "unknown frame type",
			protocol: "qmux-01.moq-lite-05",
			bytes: (c) => [c.params(), Uint8Array.of(0x40, 0x99)],
			code: QuicError.FRAME_ENCODING_ERROR,
		},
		{
			name: "garbage on the legacy framing",
			protocol: "webtransport",
			bytes: () => [Uint8Array.of(0xde, 0xad, 0xbe, 0xef)],
			code: QuicError.FRAME_ENCODING_ERROR,
		},
		{
			name: "truncated STREAM frame",
			protocol: "qmux-00.moq-lite-05",
			bytes: (c) => [c.params(), Uint8Array.of(0x0a, 0x00, 0x20, 1, 2, 3)],
			code: QuicError.FRAME_ENCODING_ERROR,
		},
		{
			name: "trailing bytes on qmux-00 (one frame per message)",
			protocol: "qmux-00.moq-lite-05",
			bytes: (c) => [c.params(), Uint8Array.of(0x10, 0x05, 0x10, 0x05)],
			code: QuicError.FRAME_ENCODING_ERROR,
		},
		{
			name: "message above the record size",
			protocol: "qmux-01.moq-lite-05",
			bytes: (c) => [c.params(), encodeStream(w(), true, 2, 0, new Uint8Array(17_000), false).finish()],
			code: QuicError.PROTOCOL_VIOLATION,
		},
		{
			name: "STREAM on our send-only uni stream",
			protocol: "qmux-01.moq-lite-05",
			bytes: (c) => [c.params(), encodeStream(w(), true, 3, 0, pattern(4), false).finish()],
			code: QuicError.STREAM_STATE_ERROR,
		},
		{
			name: "STOP_SENDING on the client's own uni stream",
			protocol: "qmux-01.moq-lite-05",
			bytes: (c) => [c.params(), Uint8Array.of(0x05, 0x02, 0x00)],
			code: QuicError.STREAM_STATE_ERROR,
		},
		{
			name: "STREAM on a server bidi stream never opened",
			protocol: "webtransport",
			bytes: () => [encodeStream(w(), false, 5, 0, pattern(4), false).finish()],
			code: QuicError.STREAM_STATE_ERROR,
		},
		{
			name: "uni stream beyond our MAX_STREAMS (4)",
			protocol: "qmux-01.moq-lite-05",
			bytes: (c) => [c.params(), encodeStream(w(), true, 4 * 4 + 2, 0, pattern(4), false).finish()],
			code: QuicError.STREAM_LIMIT_ERROR,
		},
		{
			name: "stream data beyond our MAX_STREAM_DATA (1000)",
			protocol: "qmux-02.moq-lite-05",
			bytes: (c) => [c.params(), encodeStream(w(), true, 2, 0, new Uint8Array(1001), false).finish()],
			code: QuicError.FLOW_CONTROL_ERROR,
		},
		{
			name: "qmux-02 frame before the transport parameters",
			protocol: "qmux-02.moq-lite-05",
			bytes: () => [Uint8Array.of(0x10, 0x05)],
			code: QuicError.PROTOCOL_VIOLATION,
		},
		{
			name: "duplicate transport parameters",
			protocol: "qmux-01.moq-lite-05",
			bytes: (c) => [c.params(), c.params()],
			code: QuicError.PROTOCOL_VIOLATION,
		},
		{
			name: "a forbidden transport parameter",
			protocol: "qmux-01.moq-lite-05",
			bytes: () => [Uint8Array.of(...TRANSPORT_PARAMETERS_TYPE, 0x03, 0x00, 0x01, 0x00)],
			code: QuicError.TRANSPORT_PARAMETER_ERROR,
		},
		{
			name: "a DATAGRAM (never advertised)",
			protocol: "qmux-01.moq-lite-05",
			bytes: (c) => [c.params(), Uint8Array.of(0x30, 1, 2, 3)],
			code: QuicError.PROTOCOL_VIOLATION,
		},
		{
			name: "RESET_STREAM_AT on qmux-01",
			protocol: "qmux-01.moq-lite-05",
			bytes: (c) => [c.params(), encodeResetStreamAt(w(), 2, 0, 0, 0).finish()],
			code: QuicError.PROTOCOL_VIOLATION,
		},
	];
	for (const k of cases) {
		test(`${k.name} → CONNECTION_CLOSE 0x${k.code.toString(16)}`, TIMEOUT, async () => {
			const c = await connect(server, k.protocol);
			for (const b of k.bytes(c)) c.send(b);
			await expectClose(c, k.code);
		});
	}

	test("RESET_STREAM_AT on qmux-02 is a reset", TIMEOUT, async () => {
		const c = await connect(server, "qmux-02.moq-lite-05");
		c.send(c.params());
		c.send(encodeStream(w(), true, 0, 0, pattern(3), false).finish());
		c.send(encodeResetStreamAt(w(), 0, 12, 3, 3).finish());
		// The echo answers a reset of 12 with RESET_STREAM 13 after echoing the 3 bytes.
		for (;;) {
			const fs = await c.frames();
			assert.ok(fs);
			const reset = fs.find((f) => f.type === FrameType.RESET_STREAM);
			if (reset) {
				assert.equal(reset.code, 13);
				assert.equal(reset.finalSize, 3);
				break;
			}
		}
		c.ws.close();
	});

	test("WS pings keep a responsive peer; a silent one is closed after the idle timeout", TIMEOUT, async () => {
		const silent = await connect(server, "qmux-01.moq-lite-05", { autoPong: false });
		const alive = await connect(server, "qmux-01.moq-lite-05");
		let pings = 0;
		alive.ws.on("ping", () => pings++);
		await silent.closed;
		assert.ok(pings >= 2, `the live peer saw ${pings} pings`);
		assert.equal(alive.ws.readyState, RawWs.OPEN);
		alive.ws.close();
	});
});

describe("WsSession final size", () => {
	test("data after FIN on a stream still open on our side → FINAL_SIZE_ERROR", TIMEOUT, async () => {
		// A consumer that never answers keeps the bidi stream's send half (and the stream) open.
		const handle = await startHttpServer({
			host: "127.0.0.1",
			port: 0,
			fingerprint: () => null,
			onSession: (s) => {
				s.onStream = () => {};
			},
		});
		try {
			const c = new RawClient(`ws://127.0.0.1:${handle.port}/`, "qmux-00.moq-lite-05");
			await c.open();
			await c.next(); // our parameters
			c.send(c.params());
			c.send(encodeStream(w(), true, 0, 0, pattern(3), true).finish());
			c.send(encodeStream(w(), true, 0, 3, pattern(3), false).finish());
			await expectClose(c, QuicError.FINAL_SIZE_ERROR);
		} finally {
			await handle.close();
		}
	});
});

describe("WsSession backpressure", () => {
	test("a backed-up socket queues per stream, drains higher priority first, fires onDrain", TIMEOUT, async () => {
		let session: TransportSession | null = null;
		let ready: () => void = () => {};
		const got = new Promise<void>((r) => {
			ready = r;
		});
		const handle = await startHttpServer({
			host: "127.0.0.1",
			port: 0,
			fingerprint: () => null,
			onSession: (s) => {
				session = s;
				ready();
			},
			ws: { limits: { sendHighWater: 64 * 1024, streamDrainMark: 32 * 1024 } },
		});
		try {
			const c = new RawClient(`ws://127.0.0.1:${handle.port}/`, "webtransport");
			await c.open();
			await got;
			const s = session as unknown as TransportSession;
			// Stop reading on the client so the server's socket backs up.
			const raw = (c.ws as unknown as { _socket: import("node:net").Socket })._socket;
			raw.pause();
			const low = s.openUni();
			const high = s.openUni();
			assert.ok(low && high);
			low.setPriority(0);
			high.setPriority(10);
			let drained = false;
			low.onDrain = () => {
				drained = true;
			};
			const big = pattern(4 * 1024 * 1024, 9);
			low.write(big);
			low.finish();
			assert.ok(low.buffered > 0, "the low-priority stream queued");
			const small = pattern(100_000, 4);
			high.write(small);
			high.finish();
			assert.ok(high.buffered > 0, "the high-priority stream queued behind the full socket");
			raw.resume();
			// Reassemble both streams and note when each one's FIN arrived.
			const bufs = new Map<number, Uint8Array[]>();
			const finAt = new Map<number, number>();
			let n = 0;
			while (finAt.size < 2) {
				const fs = await c.frames();
				assert.ok(fs);
				for (const f of fs) {
					n++;
					const list = bufs.get(f.streamId) ?? [];
					list.push(Uint8Array.from(f.data));
					bufs.set(f.streamId, list);
					if (f.fin) finAt.set(f.streamId, n);
				}
			}
			const join = (l: Uint8Array[]): Uint8Array => Uint8Array.from(Buffer.concat(l));
			assert.deepEqual(join(bufs.get(low.id) ?? []), big);
			assert.deepEqual(join(bufs.get(high.id) ?? []), small);
			assert.ok((finAt.get(high.id) ?? 0) < (finAt.get(low.id) ?? 0), "high priority finished first");
			assert.ok(drained, "onDrain fired for the low-priority stream");
			assert.equal(low.buffered, 0);
			c.ws.close();
		} finally {
			await handle.close();
		}
	});
});
