/**
 * Our moq-lite-05 client against the real relay (in process) over raw QUIC on loopback: publish,
 * subscribe, discovery, TRACK_INFO, timestamps, late join, unsubscribe; and interop with the
 * official @moq/net viewer over WebSocket.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as Net from "@moq/net";
import { MoqClient } from "../src/client/index.ts";
import { connectQuic } from "../src/quic/client.ts";
import { startTestRelay, type TestRelay } from "./support/relay.ts";
import { until } from "./support/wait.ts";

const T = { timeout: 20_000 };

async function connect(relay: TestRelay, path = "/anon"): Promise<MoqClient> {
	const fingerprint = await (await fetch(new URL("/certificate.sha256", relay.url()))).text();
	const quic = await connectQuic({
		host: "127.0.0.1",
		port: relay.quicPort,
		alpns: ["moq-lite-05"],
		certificateHashes: [fingerprint],
	});
	return MoqClient.connect(quic, { path });
}

function bytes(n: number, fill: number): Uint8Array {
	return new Uint8Array(n).fill(fill);
}

describe("client over raw QUIC against the relay", () => {
	let relay: TestRelay;
	const clients: MoqClient[] = [];
	before(async () => {
		relay = await startTestRelay();
	});
	after(async () => {
		for (const c of clients) c.close();
		await relay.close();
	});
	const open = async (path?: string) => {
		const c = await connect(relay, path);
		clients.push(c);
		return c;
	};

	test("SETUP exchanged; publish is discovered; groups and frames arrive with timestamps", T, async () => {
		const pub = await open();
		assert.ok(pub.peerSetup, "relay SETUP received");
		const b = pub.publish("room/alice", { tracks: ["video"] });
		const viewer = await open();
		const watch = viewer.announced("room");
		await until(() => watch.active.has("room/alice"), 5000, "announce");
		assert.equal(watch.ready, true);

		const info = await viewer.trackInfo("room/alice", "video");
		assert.equal(info.timescale, 1000);
		assert.equal(info.maxLatencyMs, 5000);

		const frames: { seq: number; index: number; len: number; first: number; ts: number }[] = [];
		const ends: [number, boolean][] = [];
		const groups: number[] = [];
		let start = -1;
		const sub = viewer.subscribe(
			"room/alice",
			"video",
			{ priority: 1 },
			{
				onGroup: (seq) => groups.push(seq),
				onFrame: (seq, index, payload, ts) => frames.push({ seq, index, len: payload.length, first: payload[0], ts }),
				onGroupEnd: (seq, complete) => ends.push([seq, complete]),
				onStart: (g) => {
					start = g;
				},
			},
		);
		const track = b.track("video");
		await until(() => track.subscribers === 1, 5000, "relay subscribed upstream");
		// A keyframe bigger than a QUIC packet (split across chunks) and small deltas.
		const g = track.openGroup();
		g.writeFrame(bytes(40_000, 7), 1000);
		g.writeFrame(bytes(500, 8), 1033);
		g.writeFrame(bytes(0, 0), 1066);
		g.close();
		track.writeGroup([bytes(3000, 9), bytes(10, 10)], 2000);
		await until(() => frames.length === 5, 5000, "five frames");
		assert.deepEqual(groups, [0, 1]);
		assert.equal(start, 0);
		assert.deepEqual(
			frames.map((f) => [f.seq, f.index, f.len, f.first, f.ts]),
			[
				[0, 0, 40_000, 7, 1000],
				[0, 1, 500, 8, 1033],
				[0, 2, 0, undefined, 1066],
				[1, 0, 3000, 9, 2000],
				[1, 1, 10, 10, 2000],
			],
		);
		assert.equal(sub.frames, 5);

		// Unsubscribe: the relay drops its upstream subscription once the last viewer leaves.
		sub.close();
		await until(() => track.subscribers === 0, 5000, "upstream unsubscribed");

		// (Broadcasts with subscribed tracks are not closed here: see the note in the FIN test.)
		const other = pub.publish("room/bob", { tracks: ["video"] });
		await until(() => watch.active.has("room/bob"), 5000, "second announce");
		other.close();
		await until(() => !watch.active.has("room/bob"), 5000, "ended announce");
		watch.close();
	});

	test("many viewers share one upstream subscription; a late viewer gets the current group", T, async () => {
		const pub = await open();
		const b = pub.publish("fan", { tracks: ["v"] });
		const track = b.track("v");
		const viewers = await Promise.all([open(), open(), open()]);
		const got = viewers.map(() => [] as number[]);
		viewers.forEach((v, i) => {
			v.subscribe("fan", "v", {}, { onFrame: (_s, _i, p) => got[i].push(p[0]) });
		});
		await until(() => track.subscribers === 1, 5000, "upstream subscription");
		const g = track.openGroup();
		g.writeFrame(bytes(100, 1));
		await until(() => got.every((x) => x.length === 1), 5000, "first frame everywhere");
		assert.equal(track.subscribers, 1);
		// Late viewer, mid-group: served from the relay's cache, from the group's first frame.
		const late = await open();
		const lateFrames: number[] = [];
		late.subscribe("fan", "v", {}, { onFrame: (_s, _i, p) => lateFrames.push(p[0]) });
		await until(() => lateFrames.length === 1, 5000, "late viewer gets the cached frame");
		g.writeFrame(bytes(100, 2));
		g.close();
		await until(() => lateFrames.length === 2 && got.every((x) => x.length === 2), 5000, "second frame");
		assert.deepEqual(lateFrames, [1, 2]);
	});

	test("group streams end with FIN: onGroupEnd(seq, true)", T, async () => {
		const pub = await open();
		const b = pub.publish("fin", { tracks: ["v"] });
		const viewer = await open();
		const watch = viewer.announced("fin");
		await until(() => watch.active.has("fin"), 5000, "announce");
		const ends: [number, boolean][] = [];
		const sub = viewer.subscribe("fin", "v", {}, { onGroupEnd: (seq, complete) => ends.push([seq, complete]) });
		const track = b.track("v");
		await until(() => track.subscribers === 1, 5000, "upstream subscription");
		track.writeGroup([bytes(10, 1)]);
		track.writeGroup([bytes(10, 2)]);
		await until(() => ends.length === 2, 5000, "two group ends");
		// Groups are independent streams: their FINs may arrive in either order.
		assert.deepEqual(
			ends.sort((a, b) => a[0] - b[0]),
			[
				[0, true],
				[1, true],
			],
		);
		assert.equal(sub.groupsComplete, 2);
		// Ending the track (SUBSCRIBE_END + FIN) and then the broadcast ends the subscription cleanly,
		// and the relay keeps serving (it once threw from a second abort of the ended track).
		const ended = new Promise<number>((resolve) => {
			sub.onEnd = (code) => resolve(code);
		});
		track.close();
		assert.equal(await ended, 0);
		b.close();
		await until(() => !relay.node.relay.broadcasts.has("anon/fin"), 5000, "unannounce");
		const again = await open();
		again.close();
	});

	test("subscribing to an unknown broadcast ends with a reset code", T, async () => {
		const viewer = await open();
		const ended = new Promise<number>((resolve) => {
			viewer.subscribe("nobody/here", "video", {}, { onEnd: (code) => resolve(code) });
		});
		assert.equal(await ended, 13);
	});

	test("a publisher that joins after the relay asked for announcements is announced", T, async () => {
		const pub = await open();
		const viewer = await open();
		const watch = viewer.announced("");
		await watch.whenReady();
		const b = pub.publish("later/one", { tracks: ["a"] });
		await until(() => watch.active.has("later/one"), 5000, "live announce");
		b.close();
		await until(() => !watch.active.has("later/one"), 5000, "ended");
	});

	test("interop: an official @moq/net viewer (WebSocket) receives what our client publishes", T, async () => {
		const pub = await open();
		const b = pub.publish("interop", { tracks: ["t"] });
		const track = b.track("t");
		const url = relay.url("anon");
		const conn = await Net.Connection.connect(url, { websocket: { delay: 0 } });
		try {
			const broadcast = conn.consume(Net.Path.from("interop"));
			const sub = broadcast.subscribe("t", { priority: 1 });
			await until(() => track.subscribers === 1, 5000, "upstream subscription");
			track.writeGroup([new TextEncoder().encode("hello"), new TextEncoder().encode("world")]);
			const group = await sub.recvGroup();
			assert.ok(group);
			const f1 = await group.readFrame();
			const f2 = await group.readFrame();
			assert.equal(new TextDecoder().decode(f1?.payload), "hello");
			assert.equal(new TextDecoder().decode(f2?.payload), "world");
		} finally {
			conn.close();
		}
	});
});
