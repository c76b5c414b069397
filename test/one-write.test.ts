/**
 * One write per media frame: the ring stores each frame's wire header in front of its first chunk
 * (a headed FRAME_DATA record), and the relay sends a frame's header and payload, with the chunks of
 * it that arrived in separate packets, as one transport write. On a real loopback session that is
 * one quiche `streamSend` per frame over raw QUIC, and one qmux STREAM frame in one WebSocket
 * message per frame over WebSocket (frames ≤ 16352 bytes, qmux's STREAM payload ceiling).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as Net from "@moq/net";
import { WebSocket as WsSocket } from "ws";
import { Rec, RingReader, RingWriter } from "../src/cache/index.ts";
import { MoqClient } from "../src/client/index.ts";
import { Reader } from "../src/coding/reader.ts";
import { writeFrameChunks } from "../src/moq/frame-chunks.ts";
import { FRAME_HEADER_MAX, writeFrameHeader } from "../src/moq/lite/wire/group.ts";
import { decodeFrame, Frame, FrameType, usesRecords } from "../src/qmux/frames.ts";
import { parseSubprotocol } from "../src/qmux/subprotocol.ts";
import { connectQuic } from "../src/quic/client.ts";
import { loadNgtcp2, selectEngine } from "../src/quic/engine.ts";
import { loadQuiche } from "../src/quic/native.ts";
import { copyBytes } from "../src/transport/types.ts";
import { frameBytes } from "./support/frames.ts";
import { startTestRelay, type TestRelay } from "./support/relay.ts";
import { until } from "./support/wait.ts";

function header(size: number, delta: number, v: 4 | 5): number[] {
	const buf = new Uint8Array(FRAME_HEADER_MAX);
	return [...buf.subarray(0, writeFrameHeader(buf, 0, size, delta, v))];
}

/** Collects what a consumer writes, one entry per write call. */
class Sink {
	readonly writes: Uint8Array[] = [];
	write(data: Uint8Array): void {
		this.writes.push(data.slice());
	}
}

function concat(parts: Uint8Array[]): Uint8Array {
	const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
	let at = 0;
	for (const p of parts) {
		out.set(p, at);
		at += p.length;
	}
	return out;
}

describe("headed frames in the ring", () => {
	test("a frame's first chunk carries its 05 header (and the 02–04 header as its tail); later chunks none", () => {
		const w = RingWriter.create({ bytes: 1 << 16 });
		const r = new RingReader(w.buffer);
		w.openGroup(3, 0);
		// Absolute timestamps: the first frame's delta is from 0, then from the previous frame.
		const frames = [
			{ ts: 1_700_000_000_000, body: Uint8Array.of(1, 2, 3, 4, 5), chunks: [2, 3] },
			{ ts: 1_700_000_000_033, body: new Uint8Array(300).fill(9), chunks: [300] },
			{ ts: 1_700_000_000_020, body: new Uint8Array(0), chunks: [] },
			{ ts: 1_700_000_000_066, body: new Uint8Array(20_000).fill(7), chunks: [20_000] },
		];
		for (const f of frames) {
			assert.ok(w.frameBegin(3, f.body.length, f.ts));
			let at = 0;
			for (const n of f.chunks) {
				assert.ok(w.frameData(3, f.body.subarray(at, at + n)));
				at += n;
			}
		}
		assert.equal(r.next(), Rec.GROUP_OPEN);
		let prev = 0;
		for (const f of frames) {
			assert.equal(r.next(), Rec.FRAME_BEGIN);
			assert.equal(r.size, f.body.length);
			const delta = f.ts - prev;
			prev = f.ts;
			if (f.body.length === 0) continue;
			assert.equal(r.next(), Rec.FRAME_DATA);
			const v5 = [...r.bytes.subarray(r.dataOffset - r.frameHeaderBytes, r.dataOffset)];
			const v4 = [...r.bytes.subarray(r.dataOffset - r.sizeHeaderBytes, r.dataOffset)];
			assert.deepEqual(v5, header(f.body.length, delta, 5));
			assert.deepEqual(v4, header(f.body.length, delta, 4));
			const parts = [r.data.slice()];
			while (r.continues()) {
				assert.equal(r.frameHeaderBytes, 0, "only the first chunk is headed");
				parts.push(r.data.slice());
			}
			assert.deepEqual(concat(parts), f.body);
		}
		assert.equal(r.next(), Rec.NONE);
	});

	test("continues() stops at another group's record, a new frame, and the writer's head", () => {
		const w = RingWriter.create({ bytes: 1 << 16, maxGroups: 4 });
		const r = new RingReader(w.buffer);
		w.openGroup(1, 0);
		w.openGroup(2, 0);
		w.frameBegin(1, 6, 0);
		w.frameData(1, Uint8Array.of(1, 2));
		w.frameBegin(2, 1, 0);
		w.frameData(2, Uint8Array.of(9));
		w.frameData(1, Uint8Array.of(3, 4));
		assert.equal(r.next(), Rec.GROUP_OPEN);
		assert.equal(r.next(), Rec.GROUP_OPEN);
		assert.equal(r.next(), Rec.FRAME_BEGIN);
		assert.equal(r.next(), Rec.FRAME_DATA);
		assert.equal(r.continues(), false, "group 2's FRAME_BEGIN comes next");
		assert.equal(r.next(), Rec.FRAME_BEGIN);
		assert.equal(r.next(), Rec.FRAME_DATA);
		assert.equal(r.seq, 2);
		assert.equal(r.continues(), false, "group 1's chunk is not group 2's frame");
		assert.equal(r.next(), Rec.FRAME_DATA);
		assert.equal(r.seq, 1);
		assert.deepEqual([...r.data], [3, 4]);
		assert.equal(r.continues(), false, "nothing published after it yet");
		w.frameData(1, Uint8Array.of(5, 6));
		assert.equal(r.continues(), true, "published now");
		assert.deepEqual([...r.data], [5, 6]);
		w.frameBegin(1, 1, 0);
		w.frameData(1, Uint8Array.of(8));
		assert.equal(r.continues(), false, "a new frame starts with FRAME_BEGIN");
		assert.equal(r.next(), Rec.FRAME_BEGIN);
	});

	test("copyBytes copies any range of shared or plain memory, the whole source included", () => {
		const shared = new Uint8Array(new SharedArrayBuffer(64)).map((_, i) => i + 1);
		for (const source of [shared, shared.subarray(8, 40), new Uint8Array(32).map((_, i) => 100 + i)]) {
			for (const [start, end] of [
				[0, source.length],
				[0, 1],
				[3, 3],
				[5, 6],
				[2, source.length - 1],
			]) {
				const target = new Uint8Array(source.length + 4);
				copyBytes(source, start, end, target, 2);
				assert.deepEqual([...target.subarray(2, 2 + end - start)], [...source.subarray(start, end)]);
				assert.equal(target[0] + target[1], 0, "nothing before `at`");
			}
		}
	});

	test("a timestamp that the wire header cannot carry is refused", () => {
		const w = RingWriter.create({ bytes: 1 << 16 });
		w.openGroup(0, 0);
		assert.throws(() => w.frameBegin(0, 1, 0.5), /not an integer/);
		assert.throws(() => w.frameBegin(0, 1, 2 ** 53), /not an integer within 2\^52/);
		assert.ok(w.frameBegin(0, 1, 10));
	});

	test("writeFrameChunks: one write per frame, its chunks gathered; a single chunk is a view of the ring", () => {
		const w = RingWriter.create({ bytes: 1 << 20 });
		const r = new RingReader(w.buffer);
		w.openGroup(0, 0);
		const big = new Uint8Array(1_500_000).map((_, i) => i & 0xff);
		const small = Uint8Array.of(1, 2, 3);
		const chunked = new Uint8Array(5000).map((_, i) => (i * 7) & 0xff);
		w.frameBegin(0, small.length, 5);
		w.frameData(0, small);
		w.frameBegin(0, chunked.length, 10);
		for (let at = 0; at < chunked.length; at += 1200) w.frameData(0, chunked.subarray(at, at + 1200));
		const sink = new Sink();
		const expected: Uint8Array[] = [];
		for (let kind = r.next(); kind !== Rec.NONE; kind = r.next()) {
			if (kind !== Rec.FRAME_DATA) continue;
			const from = r.dataOffset - r.frameHeaderBytes;
			const head = r.bytes.slice(from, r.dataOffset);
			const n = writeFrameChunks(r, sink, from);
			assert.equal(n, sink.writes[sink.writes.length - 1].length);
			expected.push(head);
		}
		assert.equal(sink.writes.length, 2, "two frames, two writes");
		assert.deepEqual(sink.writes[0], concat([expected[0], small]));
		assert.deepEqual(sink.writes[1], concat([expected[1], chunked]));

		// A frame past the gather limit (1 MiB) goes out in pieces of at most that size, in order.
		const ring = RingWriter.create({ bytes: 8 << 20, maxFrameBytes: 2_000_000 });
		const reader = new RingReader(ring.buffer);
		ring.openGroup(0, 0);
		ring.frameBegin(0, big.length, 0);
		for (let at = 0; at < big.length; at += 60_000) ring.frameData(0, big.subarray(at, at + 60_000));
		const bigSink = new Sink();
		let total = 0;
		for (let kind = reader.next(); kind !== Rec.NONE; kind = reader.next()) {
			if (kind === Rec.FRAME_DATA) total += writeFrameChunks(reader, bigSink, reader.dataOffset);
		}
		assert.equal(total, big.length);
		assert.equal(bigSink.writes.length, 2);
		assert.ok(bigSink.writes.every((b) => b.length <= 1024 * 1024));
		assert.deepEqual(concat(bigSink.writes), big);
	});

	test("writeFrameChunks reports a run the writer overwrote while it was read, and writes nothing torn", () => {
		const w = RingWriter.create({ bytes: 8192 });
		const r = new RingReader(w.buffer);
		w.openGroup(0, 0);
		w.frameBegin(0, 2000, 0);
		w.frameData(0, new Uint8Array(1000).fill(1));
		w.frameData(0, new Uint8Array(1000).fill(2));
		assert.equal(r.next(), Rec.GROUP_OPEN);
		assert.equal(r.next(), Rec.FRAME_BEGIN);
		assert.equal(r.next(), Rec.FRAME_DATA);
		// The writer laps the reader before it gets to the copy (the group stays the latest and is truncated).
		for (let i = 0; i < 6; i++) {
			w.frameBegin(0, 2000, 0);
			w.frameData(0, new Uint8Array(2000).fill(3));
		}
		const sink = new Sink();
		assert.equal(writeFrameChunks(r, sink, r.dataOffset), -1);
		assert.equal(sink.writes.length, 0);
	});
});

/** Group frames: a small one, one spanning a few packets, an empty one, one of about a packet. */
function groupFrames(group: number): Uint8Array[] {
	return [frameBytes(group, 1), frameBytes(group, 0, 3500), new Uint8Array(0), frameBytes(group, 2, 1100)];
}
const GROUPS = 4;

describe("one write per frame on real loopback sessions", { timeout: 60_000 }, () => {
	let relay: TestRelay;
	let fingerprint: string;
	const closers: (() => void)[] = [];
	before(async () => {
		relay = await startTestRelay();
		fingerprint = await (await fetch(new URL("/certificate.sha256", relay.url()))).text();
	});
	after(async () => {
		for (const close of closers) close();
		await relay.close();
	});

	async function quicClient(): Promise<MoqClient> {
		const quic = await connectQuic({
			host: "127.0.0.1",
			port: relay.quicPort,
			alpns: ["moq-lite-05"],
			certificateHashes: [fingerprint],
		});
		const client = await MoqClient.connect(quic, { path: "/anon" });
		closers.push(() => client.close());
		return client;
	}

	/** Publishes GROUPS groups one at a time, each awaited to its end at the viewer; returns the frames sent. */
	async function publish(
		track: ReturnType<ReturnType<MoqClient["publish"]>["track"]>,
		ended: () => number,
	): Promise<number> {
		let frames = 0;
		for (let g = 0; g < GROUPS; g++) {
			const group = groupFrames(g);
			track.writeGroup(group);
			frames += group.length;
			await until(() => ended() === g + 1, 10_000, `group ${g} at the viewer`);
		}
		return frames;
	}

	test("raw QUIC: one streamSend per frame on each group stream (plus its GROUP header)", async () => {
		// The relay and the clients share this thread's quiche (and the relay may run on the ngtcp2
		// engine instead, MOQ_SERVER_QUIC_ENGINE): the relay's group streams are the server-initiated
		// unidirectional ones (id % 4 === 3) whose first bytes are the GROUP type (0).
		const writes = new Map<number, { calls: number; first: number }>();
		type Proto = { streamSend(id: number, data: Uint8Array, fin: boolean): number | null };
		const protos = [(loadQuiche().Connection as unknown as { prototype: Proto }).prototype];
		if (selectEngine(undefined).name === "ngtcp2")
			protos.push((loadNgtcp2()!.Connection as unknown as { prototype: Proto }).prototype);
		const originals = protos.map((proto) => proto.streamSend);
		protos.forEach((proto, i) => {
			const streamSend = originals[i];
			proto.streamSend = function (this: unknown, id: number, data: Uint8Array, fin: boolean) {
				if ((id & 3) === 3 && data.length > 0) {
					const w = writes.get(id) ?? { calls: 0, first: data[0] };
					w.calls++;
					writes.set(id, w);
				}
				return streamSend.call(this, id, data, fin);
			};
		});
		try {
			const pub = await quicClient();
			const track = pub.publish("onewrite-quic", { tracks: ["video"] }).track("video");
			await until(() => relay.node.relay.broadcasts.has("anon/onewrite-quic"), 10_000, "the broadcast");
			const viewer = await quicClient();
			const received: Uint8Array[] = [];
			let ended = 0;
			viewer.subscribe(
				"onewrite-quic",
				"video",
				{},
				{
					onFrame: (_seq, _i, payload) => received.push(payload.slice()),
					onGroupEnd: () => ended++,
				},
			);
			await until(() => track.subscribers === 1, 10_000, "the upstream subscription");
			const frames = await publish(track, () => ended);
			assert.equal(received.length, frames);
			const groupStreams = [...writes.values()].filter((w) => w.first === 0);
			assert.equal(groupStreams.length, GROUPS);
			for (const w of groupStreams) assert.equal(w.calls, 1 + frames / GROUPS, "GROUP header + one write per frame");
		} finally {
			protos.forEach((proto, i) => {
				proto.streamSend = originals[i];
			});
		}
	});

	test("WebSocket (qmux): one STREAM frame in one message per frame", async () => {
		// Every message the relay sends, per connection ('ws' is the relay's WebSocket; the official
		// client uses Node's own).
		const sent: { socket: WsSocket; data: Uint8Array }[] = [];
		const send = WsSocket.prototype.send;
		WsSocket.prototype.send = function (this: WsSocket, ...args: Parameters<typeof send>) {
			const data = args[0] as Uint8Array;
			sent.push({ socket: this, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice() });
			return send.apply(this, args);
		} as typeof send;
		try {
			const pub = await quicClient();
			const track = pub.publish("onewrite-ws", { tracks: ["video"] }).track("video");
			await until(() => relay.node.relay.broadcasts.has("anon/onewrite-ws"), 10_000, "the broadcast");
			const conn = await Net.Connection.connect(relay.url("anon"), { websocket: { delay: 0 } });
			closers.push(() => conn.close());
			assert.equal(conn.transport, "websocket");
			const sub = conn.consume(Net.Path.from("onewrite-ws")).subscribe("video", { priority: 1 });
			let ended = 0;
			let received = 0;
			(async () => {
				for (;;) {
					const g = await sub.recvGroup();
					if (!g) return;
					while (await g.readFrame()) received++;
					ended++;
				}
			})().catch(() => {});
			await until(() => track.subscribers === 1, 10_000, "the upstream subscription");
			const frames = await publish(track, () => ended);
			assert.equal(received, frames);

			// Decode what the relay sent on this connection: STREAM frames with data on its group streams.
			const socket = sent[sent.length - 1].socket;
			const framing = parseSubprotocol(socket.protocol).framing;
			const f = new Frame();
			const perStream = new Map<number, { messages: number; first: number }>();
			for (const m of sent) {
				if (m.socket !== socket) continue;
				const r = new Reader(m.data);
				let streamFrames = 0;
				do {
					decodeFrame(r, framing, f);
					if (f.type !== FrameType.STREAM || (f.streamId & 3) !== 3 || f.data.length === 0) continue;
					streamFrames++;
					const s = perStream.get(f.streamId) ?? { messages: 0, first: f.data[0] };
					s.messages++;
					perStream.set(f.streamId, s);
				} while (usesRecords(framing) && r.remaining > 0);
				assert.ok(streamFrames <= 1, "one STREAM frame per message");
			}
			const groupStreams = [...perStream.values()].filter((s) => s.first === 0);
			assert.equal(groupStreams.length, GROUPS);
			for (const s of groupStreams)
				assert.equal(s.messages, 1 + frames / GROUPS, "GROUP header + one message per frame");
		} finally {
			WsSocket.prototype.send = send;
		}
	});
});
