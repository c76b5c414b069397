import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as Net from "@moq/net";
import WebSocket from "ws";
import Qmux from "../node_modules/@moq/net/node_modules/@moq/qmux/index.js";
import { Writer } from "../src/coding/writer.ts";
import { encodeSubscribe } from "../src/moq/lite/wire/subscribe.ts";
import { rawUpgrade } from "./support/raw-upgrade.ts";
import { startTestRelay, type TestRelay } from "./support/relay.ts";
import { until } from "./support/wait.ts";

/**
 * Bad input against the real relay: each offence closes the offending stream or session with a
 * precise code, and the relay keeps serving everyone else.
 */

type Client = InstanceType<typeof Qmux>;

function connectRaw(relay: TestRelay, path = "anon"): Client {
	return new Qmux(`${relay.url(path).href}`, { protocols: ["qmux-01.moq-lite-05"], requireProtocol: true });
}

async function sendBidi(client: Client, bytes: Uint8Array): Promise<ReadableStreamDefaultReader<Uint8Array>> {
	const s = await client.createBidirectionalStream();
	const w = s.writable.getWriter();
	await w.write(bytes);
	w.releaseLock();
	return s.readable.getReader();
}

function subscribeBytes(broadcast: string, track = "video", id = 0): Uint8Array {
	const w = new Writer(128);
	w.varint(2);
	encodeSubscribe(
		w,
		{ id, broadcast, track, priority: 0, ordered: false, maxLatencyMs: 0, startGroup: null, endGroup: null },
		5,
	);
	return w.finish();
}

/** The code a stream was reset with, from the qmux client's rejection. */
async function resetCode(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<number> {
	for (;;) {
		try {
			const r = await reader.read();
			if (r.done) return -1;
		} catch (err) {
			return (err as { streamErrorCode: number }).streamErrorCode;
		}
	}
}

/** A publisher + viewer pair that proves the relay still works. */
async function stillServes(relay: TestRelay, name: string): Promise<void> {
	const pub = await Net.Connection.connect(relay.url("anon"), { websocket: { delay: 0 } });
	const bc = new Net.Broadcast.Producer();
	const track = bc.createTrack("t");
	pub.publish(Net.Path.from(name), bc);
	await until(() => relay.node.relay.broadcasts.has(`anon/${name}`), 5000, "publish");
	const view = await Net.Connection.connect(relay.url("anon"), { websocket: { delay: 0 } });
	const sub = view.consume(Net.Path.from(name)).subscribe("t");
	await until(() => relay.node.relay.figures.subscriptions > 0, 5000, "subscription");
	const g = track.appendGroup();
	g.writeFrame({ payload: new Uint8Array([1, 2, 3]), timestamp: Net.Time.Timestamp.now() });
	g.close();
	const got = await sub.recvGroup();
	const frame = await got!.readFrame();
	assert.deepEqual(frame!.payload, new Uint8Array([1, 2, 3]));
	view.close();
	pub.close();
	await until(() => relay.node.relay.figures.sessions === 0, 5000, "sessions closed");
}

describe("bad input", { timeout: 60_000 }, () => {
	let relay: TestRelay;
	before(async () => {
		relay = await startTestRelay(`
[limits]
max_frame_bytes = 4096
max_message_bytes = 1024
`);
	});
	after(async () => {
		await relay.close();
	});

	it("garbage and text on a WebSocket close only that session", async () => {
		for (const payload of [Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]), "hello"]) {
			const ws = new WebSocket(relay.url("anon").href.replace("http", "ws"), ["qmux-01.moq-lite-05"]);
			await new Promise((r) => ws.once("open", r));
			const closed = new Promise<number>((r) => ws.once("close", (code) => r(code)));
			ws.send(payload);
			assert.ok([1002, 1003].includes(await closed));
		}
		await stillServes(relay, "after-garbage");
	});

	it("an unknown bidi stream type resets that stream with 10; the session carries on", async () => {
		const client = connectRaw(relay);
		await client.ready;
		const reader = await sendBidi(client, new Uint8Array([0x3f, 1, 2, 3]));
		assert.equal(await resetCode(reader), 10);
		// The same session still answers: an unknown broadcast is refused promptly with 13.
		const sub = await sendBidi(client, subscribeBytes("nothing-here"));
		assert.equal(await resetCode(sub), 13);
		client.close();
	});

	it("an oversized control message closes the session with 15", async () => {
		const client = connectRaw(relay);
		await client.ready;
		// SUBSCRIBE declaring a 100 000 byte body: over max_message_bytes, refused before the body arrives.
		await sendBidi(client, new Uint8Array([0x02, 0x80, 0x01, 0x86, 0xa0, 0x00]));
		const info = (await client.closed) as { closeCode: number };
		assert.equal(info.closeCode, 15);
		await stillServes(relay, "after-oversized");
	});

	it("a truncated message followed by FIN, and more than 32 path segments, are refused", async () => {
		const client = connectRaw(relay);
		await client.ready;
		const deep = Array.from({ length: 33 }, (_, i) => `s${i}`).join("/");
		await sendBidi(client, subscribeBytes(deep));
		const info = (await client.closed) as { closeCode: number };
		assert.equal(info.closeCode, 15);
	});

	it("a path escaping the session root is refused per request; a session outside public is refused", async () => {
		const client = connectRaw(relay);
		await client.ready;
		const sub = await sendBidi(client, subscribeBytes("x/../../secret/bbb"));
		assert.equal(await resetCode(sub), 15);
		// The refusal is that request's alone: the same session still answers (an unknown broadcast: 13).
		const next = await sendBidi(client, subscribeBytes("nothing-here", "video", 1));
		assert.equal(await resetCode(next), 13);
		client.close();
		// Authentication before accept: the upgrade itself is refused, with no session behind it.
		const outside = await rawUpgrade(relay.node.httpPort!, "/private", "qmux-01.moq-lite-05");
		assert.equal(outside.status, 401);
		assert.equal(outside.body, "missing token");
	});

	it("a frame above max_frame_bytes aborts that group (27) and the track goes on", async () => {
		const pub = await Net.Connection.connect(relay.url("anon"), { websocket: { delay: 0 } });
		const bc = new Net.Broadcast.Producer();
		const track = bc.createTrack("t");
		pub.publish(Net.Path.from("big"), bc);
		await until(() => relay.node.relay.broadcasts.has("anon/big"), 5000, "publish");
		const view = await Net.Connection.connect(relay.url("anon"), { websocket: { delay: 0 } });
		const sub = view.consume(Net.Path.from("big")).subscribe("t");
		await until(() => relay.node.relay.figures.subscriptions > 0, 5000, "subscription");
		const big = track.appendGroup();
		big.writeFrame({ payload: new Uint8Array(10_000), timestamp: Net.Time.Timestamp.now() });
		big.close();
		const small = track.appendGroup();
		small.writeFrame({ payload: new Uint8Array([9]), timestamp: Net.Time.Timestamp.now() });
		small.close();
		// The viewer receives the next group intact; the oversized one never completes.
		for (;;) {
			const g = await sub.recvGroup();
			assert.ok(g);
			if (g.sequence === small.sequence) {
				assert.deepEqual((await g.readFrame())!.payload, new Uint8Array([9]));
				break;
			}
			const f = await g.readFrame().catch(() => undefined);
			assert.notEqual(f?.payload.length, 10_000, "the oversized frame must not be relayed");
		}
		view.close();
		pub.close();
	});
});
