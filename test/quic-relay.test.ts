/**
 * Fan-out over raw QUIC through the in-process relay on loopback: our own moq-lite-05 client
 * publishes, 50 QUIC viewers receive every frame byte-exact; then QUIC viewers and official
 * @moq/net viewers on WebSocket (Node has no WebTransport, so it uses qmux over WebSocket) share one
 * fan-out of the same track.
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { after, before, describe, test } from "node:test";
import * as Net from "@moq/net";
import { MoqClient } from "../src/client/index.ts";
import { connectQuic } from "../src/quic/client.ts";
import { frameBytes } from "./support/frames.ts";
import { startTestRelay, type TestRelay } from "./support/relay.ts";
import { until } from "./support/wait.ts";

const FRAMES = 4;

function groupFrames(group: number): Uint8Array[] {
	return Array.from({ length: FRAMES }, (_, f) => frameBytes(group, f, 12_000));
}

interface Viewer {
	name: string;
	/** group seq → frame payloads (copies) */
	groups: Map<number, Uint8Array[]>;
	/** Groups that ended with FIN after their last frame. */
	ended: Set<number>;
	close(): void;
}

async function fingerprintOf(relay: TestRelay): Promise<string> {
	return (await fetch(new URL("/certificate.sha256", relay.url()))).text();
}

async function quicClient(relay: TestRelay, fingerprint: string, socket?: dgram.Socket): Promise<MoqClient> {
	const quic = await connectQuic({
		host: "127.0.0.1",
		port: relay.quicPort,
		alpns: ["moq-lite-05"],
		certificateHashes: [fingerprint],
		socket,
	});
	assert.equal(quic.protocol, "moq-lite-05");
	return MoqClient.connect(quic, { path: "/anon" });
}

async function quicViewer(
	relay: TestRelay,
	fingerprint: string,
	name: string,
	broadcast: string,
	socket?: dgram.Socket,
): Promise<Viewer> {
	const client = await quicClient(relay, fingerprint, socket);
	const groups = new Map<number, Uint8Array[]>();
	const ended = new Set<number>();
	client.subscribe(
		broadcast,
		"video",
		{},
		{
			onGroup: (seq) => groups.set(seq, []),
			// The payload is a view into the receive buffer: keep a copy.
			onFrame: (seq, _index, payload) => groups.get(seq)?.push(new Uint8Array(payload)),
			onGroupEnd: (seq, complete) => {
				if (complete) ended.add(seq);
			},
		},
	);
	return { name, groups, ended, close: () => client.close() };
}

async function webSocketViewer(relay: TestRelay, name: string, broadcast: string): Promise<Viewer> {
	const conn = await Net.Connection.connect(relay.url("anon"), { websocket: { delay: 0 } });
	assert.equal(conn.transport, "websocket");
	assert.equal(conn.version, "moq-lite-05");
	const groups = new Map<number, Uint8Array[]>();
	const ended = new Set<number>();
	const sub = conn.consume(Net.Path.from(broadcast)).subscribe("video", { priority: 1 });
	(async () => {
		for (;;) {
			const g = await sub.recvGroup();
			if (!g) return;
			const frames: Uint8Array[] = [];
			groups.set(g.sequence, frames);
			for (;;) {
				const f = await g.readFrame();
				if (!f) break;
				frames.push(f.payload.slice());
			}
			ended.add(g.sequence); // read sequentially: the next group is read only once this one ended
		}
	})().catch(() => {});
	return { name, groups, ended, close: () => conn.close() };
}

/**
 * Publishes groups one at a time, each awaited (to its FIN) at every viewer, then checks every frame
 * byte for byte.
 */
async function publishAndVerify(
	track: ReturnType<ReturnType<MoqClient["publish"]>["track"]>,
	viewers: Viewer[],
	groups: number,
): Promise<void> {
	const seqs: number[] = [];
	for (let g = 0; g < groups; g++) {
		const seq = track.writeGroup(groupFrames(g));
		seqs.push(seq);
		await until(
			() => viewers.every((v) => v.ended.has(seq)),
			15_000,
			`group ${seq} to end (FIN) at all ${viewers.length} viewers`,
		);
	}
	for (const v of viewers) {
		for (const [g, seq] of seqs.entries())
			assert.deepEqual(v.groups.get(seq), groupFrames(g), `${v.name} group ${seq}`);
	}
}

describe("relay fan-out over raw QUIC", { timeout: 90_000 }, () => {
	let relay: TestRelay;
	let fingerprint: string;
	const closers: (() => void)[] = [];
	before(async () => {
		relay = await startTestRelay();
		fingerprint = await fingerprintOf(relay);
	});
	after(async () => {
		for (const close of closers) close();
		await relay.close();
	});

	test("our QUIC client publishes; 50 QUIC viewers receive every frame byte-exact", { timeout: 60_000 }, async () => {
		const pub = await quicClient(relay, fingerprint);
		closers.push(() => pub.close());
		const track = pub.publish("fan50", { tracks: ["video"] }).track("video");
		await until(() => relay.node.relay.broadcasts.has("anon/fan50"), 10_000, "the relay to learn the broadcast");

		// Half the viewers multiplex one UDP socket (like the bench's load generator), half have their own.
		const shared = dgram.createSocket("udp4");
		await new Promise<void>((r) => shared.bind(0, "127.0.0.1", () => r()));
		const viewers = await Promise.all(
			Array.from({ length: 50 }, (_, i) =>
				quicViewer(relay, fingerprint, `quic-${i}`, "fan50", i % 2 === 0 ? shared : undefined),
			),
		);
		for (const v of viewers) closers.push(v.close);
		assert.equal(relay.node.sessionsByKind.quic, 51);
		await until(() => relay.node.relay.figures.subscriptions === 50, 15_000, "50 downstream subscriptions");
		await until(() => track.subscribers === 1, 10_000, "one upstream subscription");

		await publishAndVerify(track, viewers, 6);
		assert.equal(track.subscribers, 1, "the relay still holds a single upstream subscription");
	});

	test("QUIC viewers and official @moq/net WebSocket viewers share one fan-out", { timeout: 60_000 }, async () => {
		const pub = await quicClient(relay, fingerprint);
		closers.push(() => pub.close());
		const track = pub.publish("mixed", { tracks: ["video"] }).track("video");
		await until(() => relay.node.relay.broadcasts.has("anon/mixed"), 10_000, "the relay to learn the broadcast");
		const before = relay.node.relay.figures.subscriptions;

		const viewers: Viewer[] = [];
		for (let i = 0; i < 8; i++) {
			viewers.push(await quicViewer(relay, fingerprint, `quic-${i}`, "mixed"));
			viewers.push(await webSocketViewer(relay, `ws-${i}`, "mixed"));
		}
		for (const v of viewers) closers.push(v.close);
		assert.equal(relay.node.sessionsByKind.websocket, 8);
		await until(() => relay.node.relay.figures.subscriptions === before + 16, 15_000, "16 downstream subscriptions");
		await until(() => track.subscribers === 1, 10_000, "one upstream subscription");

		await publishAndVerify(track, viewers, 6);
		assert.equal(track.subscribers, 1, "QUIC and WebSocket viewers share one upstream subscription");
	});
});
