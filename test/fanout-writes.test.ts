/**
 * [server.quic] fanout_writes: the relay drains a track's viewers in rounds and writes each frame to
 * all the QUIC viewers at it in one engine call (native/ngtcp2.c writeShared, one copy of the bytes
 * shared by every viewer's stream). Against the real relay over loopback with our clients: raw-QUIC
 * viewers, WebTransport viewers (their streams pass writes through to QUIC streams, so they share
 * the calls), and a WebSocket viewer (@moq/net) of the same track, which is drained on its own.
 * Every viewer gets every frame byte-exact and in order, with the path on and off, on whichever
 * engine the suite runs (the second CI pass runs quiche, which has no shared writes); on ngtcp2 the
 * counters show one call per frame, carrying every raw-QUIC and WebTransport viewer, the frame
 * copied into the engine once, and the viewers' ACKs read by the engine itself (recvMany).
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import * as Net from "@moq/net";
import { MoqClient } from "../src/client/index.ts";
import { connectQuic } from "../src/quic/client.ts";
import { selectEngine } from "../src/quic/engine.ts";
import { connectWebTransport } from "../src/webtransport/client.ts";
import { frameBytes } from "./support/frames.ts";
import { collectGroups, type GroupViewer } from "./support/group-viewer.ts";
import { connectQuicSession, startTestRelay, type TestRelay } from "./support/relay.ts";
import { sleep, until } from "./support/wait.ts";

const IN_CI = process.env.CI === "true";
const VIEWERS = 8;
const WT_VIEWERS = 2;
const GROUPS = 6;

/** Group frames: one spanning a few packets, small ones, an empty one, one of about a packet. */
function groupFrames(g: number): Uint8Array[] {
	return [frameBytes(g, 0, 3500), frameBytes(g, 1), new Uint8Array(0), frameBytes(g, 2, 1100), frameBytes(g, 3)];
}

/** A viewer over raw QUIC, or over WebTransport (HTTP/3) on a QUIC connection of its own. */
async function viewer(relay: TestRelay, fingerprint: string, broadcast: string, wt = false): Promise<GroupViewer> {
	const quic = await connectQuic({
		host: "127.0.0.1",
		port: relay.quicPort,
		alpns: [wt ? "h3" : "moq-lite-05"],
		certificateHashes: [fingerprint],
	});
	const client = wt
		? await MoqClient.connect(
				await connectWebTransport(quic, new URL(`https://127.0.0.1:${relay.quicPort}/anon`), ["moq-lite-05"]),
			)
		: await MoqClient.connect(quic, { path: "/anon" });
	return collectGroups(client, broadcast);
}

describe("fan-out writes: one engine call per frame for all of a worker's QUIC and WebTransport viewers", {
	timeout: 120_000,
}, () => {
	const closers: (() => unknown)[] = [];
	after(async () => {
		for (const c of closers.reverse()) await c();
	});
	const ngtcp2 = selectEngine(undefined).name === "ngtcp2";

	for (const on of [true, false]) {
		test(`fanout_writes = ${on}: ${VIEWERS} raw-QUIC, ${WT_VIEWERS} WebTransport and a WebSocket viewer get every frame byte-exact, in order`, async (t) => {
			if (!ngtcp2) {
				assert.ok(!IN_CI || process.env.MOQ_SERVER_QUIC_ENGINE === "quiche", "CI builds the ngtcp2 engine");
				t.diagnostic("quiche engine: no shared writes, the viewers are written one by one");
			}
			const relay = await startTestRelay(`[server.quic]\nfanout_writes = ${on}\n`);
			closers.push(() => relay.close());
			const { session: publisher, fingerprint } = await connectQuicSession(relay);
			closers.push(() => publisher.close());
			const broadcast = `fanout-${on}`;
			const track = publisher.publish(broadcast, { tracks: ["video"] }).track("video");
			const viewers: GroupViewer[] = [];
			for (let i = 0; i < VIEWERS; i++) viewers.push(await viewer(relay, fingerprint, broadcast));
			for (let i = 0; i < WT_VIEWERS; i++) viewers.push(await viewer(relay, fingerprint, broadcast, true));
			for (const v of viewers) closers.push(() => v.client.close());
			// A WebSocket viewer of the same track: not in the rounds (its transport has no shared writer).
			const ws = await Net.Connection.connect(relay.url("anon"), { websocket: { delay: 0 } });
			closers.push(() => ws.close());
			assert.equal(ws.transport, "websocket");
			const wsGroups = new Map<number, Uint8Array[]>();
			const wsSub = ws.consume(Net.Path.from(broadcast)).subscribe("video", { priority: 1 });
			(async () => {
				for (;;) {
					const g = await wsSub.recvGroup();
					if (!g) return;
					const frames: Uint8Array[] = [];
					for (let f = await g.readFrame(); f; f = await g.readFrame()) frames.push(f.payload.slice());
					wsGroups.set(g.sequence, frames);
				}
			})().catch(() => {});
			let warm = 0;
			await until(
				async () => {
					if (track.subscribers > 0) track.writeGroup([frameBytes(1000 + warm++, 0, 200)]);
					await sleep(50);
					return viewers.every((v) => v.ended.size > 0) && wsGroups.size > 0;
				},
				30_000,
				"every viewer to receive a warm-up group",
			);
			const stats = relay.node.quic.stats;
			const sendBuffers = relay.node.quic.engine.sendBufferStats;
			const copied0 = sendBuffers?.().copiedBytes ?? 0;
			const calls0 = stats.sharedWrites;
			const streams0 = stats.sharedWriteStreams;
			const packetsIn0 = stats.packetsIn;
			const engineReads0 = stats.engineReads;
			const seqs: number[] = [];
			let frames = 0;
			let payload = 0;
			for (let g = 0; g < GROUPS; g++) {
				const group = groupFrames(g);
				frames += group.filter((f) => f.length > 0).length;
				payload += group.reduce((n, f) => n + f.length, 0);
				const seq = track.writeGroup(group);
				seqs.push(seq);
				await until(
					() => viewers.every((v) => v.ended.has(seq)) && wsGroups.has(seq),
					20_000,
					`group ${seq} at every viewer`,
				);
			}
			for (const [i, v] of viewers.entries()) {
				for (const [g, seq] of seqs.entries()) {
					assert.deepEqual(v.groups.get(seq), groupFrames(g), `viewer ${i} group ${seq}: byte-exact, in order`);
				}
				assert.deepEqual(
					v.order.filter((s) => seqs.includes(s)),
					seqs,
					`viewer ${i}: groups in order`,
				);
			}
			for (const [g, seq] of seqs.entries()) {
				assert.deepEqual(wsGroups.get(seq), groupFrames(g), `WebSocket viewer group ${seq}: byte-exact, in order`);
			}
			const calls = stats.sharedWrites - calls0;
			const streams = stats.sharedWriteStreams - streams0;
			const copied = (sendBuffers?.().copiedBytes ?? 0) - copied0;
			t.diagnostic(
				`${frames} frames (${payload} B): ${calls} shared write calls carrying ${streams} viewer writes; ${copied} B copied into the engine`,
			);
			const packetsIn = stats.packetsIn - packetsIn0;
			const engineReads = stats.engineReads - engineReads0;
			t.diagnostic(`relay ingress while measuring: ${packetsIn} datagrams, ${engineReads} read by the engine itself`);
			if (ngtcp2) {
				// Once every viewer is established, its datagrams (ACKs, from a known peer) are read
				// without a JS call each, greased fixed bit (RFC 9287) or not: about half have it clear.
				assert.ok(engineReads >= packetsIn * 0.9, `${engineReads} of ${packetsIn}`);
			}
			if (on && ngtcp2) {
				// Each frame once, the call carrying every raw-QUIC viewer: nothing was queued behind
				// flow control, so no viewer fell back to its own write.
				assert.equal(calls, frames, "one call per frame");
				assert.equal(streams, frames * (VIEWERS + WT_VIEWERS), "every viewer's every frame went through them");
				// Copied once per frame (plus each viewer's small group and control headers).
				assert.ok(copied < payload * 1.5, `${copied} B copied for ${payload} B of frames`);
			} else {
				assert.equal(calls, 0, "no shared writes");
				assert.equal(streams, 0);
				// On ngtcp2 without them: a copy per viewer.
				if (ngtcp2) assert.ok(copied >= payload * (VIEWERS + WT_VIEWERS), `${copied} B copied for ${payload} B`);
			}
		});
	}
});
