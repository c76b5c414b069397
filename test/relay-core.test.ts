/**
 * The relay core without a network: the real Relay and MoqSession, with a publisher and viewers (our
 * own moq-lite-05 client) on in-memory transport pairs (support/loopback.ts). Covers what the
 * socket tests cannot steer: a viewer that waits for stream credit, a viewer lapped by the track's
 * ring (mid-group, and while blocked), and max-latency expiry of a group still in flight.
 */
import assert from "node:assert/strict";
import { afterEach, describe, mock, test } from "node:test";
import { Authenticator } from "../src/auth/index.ts";
import { type GroupWriter, MoqClient, type PublishedTrack } from "../src/client/index.ts";
import { parseConfig } from "../src/config/load.ts";
import { LAGGED, OLD } from "../src/errors/codes.ts";
import { silentLogger } from "../src/log/logger.ts";
import { MoqSession } from "../src/moq/lite/session.ts";
import { Relay } from "../src/relay/relay.ts";
import { frameBytes, sameBytes } from "./support/frames.ts";
import { type LoopbackSession, type LoopbackStream, loopbackPair } from "./support/loopback.ts";
import { until } from "./support/wait.ts";

const T = { timeout: 20_000 };
/** A small ring (64 KiB per track), so a few 12 KB frames lap a reader that does not keep up. */
const RING = 64 * 1024;

interface Core {
	relay: Relay;
	/** A client session to the relay core: its loopback client side, and the relay's side. */
	connect(): Promise<{ client: MoqClient; local: LoopbackSession; relaySide: LoopbackSession }>;
	close(): void;
}

async function startCore(): Promise<Core> {
	const toml = `
[server]
bind = "127.0.0.1:0"
[server.tls]
generate = ["localhost"]
[auth]
public = "anon"
[cache]
track_bytes = ${RING}
[limits]
max_frame_bytes = ${16 * 1024}
`;
	const config = parseConfig(toml, "test.toml", { baseDir: process.cwd() });
	const relay = new Relay(config, silentLogger, null);
	const auth = await Authenticator.create(config.auth, config.source, {
		maxPathSegments: config.limits.maxPathSegments,
	});
	const clients: MoqClient[] = [];
	return {
		relay,
		async connect() {
			const { client: local, server: relaySide } = loopbackPair("moq-lite-05");
			new MoqSession(relaySide, {
				relay,
				log: silentLogger,
				authorize: (path, jwt) => auth.authorize(path, jwt),
			}).start();
			const client = await MoqClient.connect(local, { path: "/anon" });
			clients.push(client);
			return { client, local, relaySide };
		},
		close() {
			for (const c of clients) c.close();
		},
	};
}

interface GroupLog {
	frames: Uint8Array[];
	/** undefined while open; true on FIN at a frame boundary, false on reset. */
	complete?: boolean;
}

/** Subscribes and records every group (frames copied) by sequence. */
function watch(client: MoqClient, broadcast: string, track: string, options = {}) {
	const groups = new Map<number, GroupLog>();
	const sub = client.subscribe(broadcast, track, options, {
		onGroup: (seq) => groups.set(seq, { frames: [] }),
		onFrame: (seq, _i, payload) => groups.get(seq)?.frames.push(payload.slice()),
		onGroupEnd: (seq, complete) => {
			const g = groups.get(seq);
			if (g) g.complete = complete;
		},
	});
	return { sub, groups };
}

/** The relay's group stream toward a viewer for group `seq` (its first bytes name the group). */
function groupStream(viewer: LoopbackSession, seq: number): LoopbackStream | undefined {
	// Uni type 0, GROUP length, subscribe id, sequence (small varints in these tests).
	return [...viewer.streams.values()].find((s) => !s.bidi && !s.local && s.received[0] === 0 && s.received[3] === seq);
}

describe("relay core over loopback transports", () => {
	let core: Core;
	afterEach(() => {
		mock.restoreAll();
		core?.close();
	});

	/** A publisher of `live/video`, and the relay subscribed upstream once `viewer` subscribes. */
	async function live(): Promise<{ track: PublishedTrack; upstream: LoopbackSession }> {
		core = await startCore();
		const pub = await core.connect();
		const track = pub.client.publish("live", { tracks: ["video"] }).track("video");
		await until(() => core.relay.broadcasts.has("anon/live"), 5000, "the relay to learn the broadcast");
		return { track, upstream: pub.local };
	}

	test("frames reach two viewers byte-exact through one upstream subscription", T, async () => {
		const { track } = await live();
		const a = await core.connect();
		const b = await core.connect();
		const va = watch(a.client, "live", "video");
		const vb = watch(b.client, "live", "video");
		await until(() => track.subscribers === 1, 5000, "the relay to subscribe upstream");
		for (let g = 0; g < 3; g++) track.writeGroup([frameBytes(g, 0, 9000), frameBytes(g, 1), frameBytes(g, 2)]);
		await until(
			() => [va, vb].every((v) => [0, 1, 2].every((g) => v.groups.get(g)?.complete === true)),
			5000,
			"three complete groups at both viewers",
		);
		for (const v of [va, vb])
			for (let g = 0; g < 3; g++) {
				const frames = v.groups.get(g)!.frames;
				assert.equal(frames.length, 3, `group ${g}: frames`);
				for (const [i, f] of frames.entries())
					assert.ok(sameBytes(f, frameBytes(g, i, 9000)), `group ${g} frame ${i} bytes`);
			}
		assert.equal(track.subscribers, 1, "one upstream subscription for both viewers");
		assert.equal(core.relay.figures.groupsDropped, 0);
		va.sub.close();
		vb.sub.close();
		await until(() => track.subscribers === 0, 5000, "the upstream subscription to end with the last viewer");
	});

	test("without stream credit a group waits at its start, whole, and is served when credit comes", T, async () => {
		const { track } = await live();
		const viewer = await core.connect();
		const v = watch(viewer.client, "live", "video");
		await until(() => track.subscribers === 1, 5000, "the relay to subscribe upstream");
		viewer.relaySide.uniCredit = 0;
		track.writeGroup([frameBytes(0, 0), frameBytes(0, 1)]);
		await until(() => core.relay.figures.framesIn >= 2, 5000, "the relay to ingest the group");
		await until(() => viewer.relaySide.wantsCredit, 5000, "the relay to ask for a stream");
		assert.equal(v.groups.size, 0, "no group stream without credit");

		viewer.relaySide.grantUni(1);
		await until(() => v.groups.get(0)?.complete === true, 5000, "group 0 after the credit");
		assert.equal(v.groups.get(0)!.frames.length, 2);
		assert.ok(sameBytes(v.groups.get(0)!.frames[1], frameBytes(0, 1)));
		assert.equal(core.relay.figures.groupsDropped, 0, "a fresh group waits; it is not dropped");
	});

	test("a viewer lapped mid-group: the open group is reset LAGGED, it resumes at the newest group", T, async () => {
		const { track } = await live();
		const viewer = await core.connect();
		const v = watch(viewer.client, "live", "video");
		await until(() => track.subscribers === 1, 5000, "the relay to subscribe upstream");
		const g0 = track.openGroup();
		g0.writeFrame(frameBytes(0, 0, 1000));
		await until(() => v.groups.get(0)?.frames.length === 1, 5000, "group 0's first frame");

		// One burst, ingested in one turn before the viewer drains: twice the ring, then group 1.
		for (let f = 1; f <= 11; f++) g0.writeFrame(new Uint8Array(12_000).fill(f));
		track.writeGroup([frameBytes(1, 0, 1000), frameBytes(1, 1)]);

		await until(() => v.groups.get(1)?.complete === true, 5000, "group 1 after the lapse");
		assert.equal(v.groups.get(0)?.complete, false, "group 0 ends incomplete");
		assert.equal(groupStream(viewer.local, 0)?.receivedReset, LAGGED, "group 0 is reset with LAGGED");
		assert.ok(sameBytes(v.groups.get(1)!.frames[1], frameBytes(1, 1)));
		assert.equal(core.relay.figures.groupsDropped, 1, "the reset group counts as dropped");
	});

	test(
		"a viewer blocked on credit and lapped by whole groups: each skipped group counts, it resumes at the newest",
		T,
		async () => {
			const { track } = await live();
			const viewer = await core.connect();
			const v = watch(viewer.client, "live", "video");
			await until(() => track.subscribers === 1, 5000, "the relay to subscribe upstream");
			viewer.relaySide.uniCredit = 0;
			const GROUPS = 12; // 12 × ~12 KB: about twice the 64 KiB ring
			for (let g = 0; g < GROUPS; g++) track.writeGroup([frameBytes(g, 0, 12_000)]);
			await until(() => core.relay.figures.framesIn >= GROUPS, 5000, "the relay to ingest every group");
			assert.equal(v.groups.size, 0);

			viewer.relaySide.grantUni(100);
			await until(() => v.groups.get(GROUPS - 1)?.complete === true, 5000, "the newest group after the credit");
			assert.deepEqual([...v.groups.keys()], [GROUPS - 1], "only the newest group is served");
			assert.equal(core.relay.figures.groupsDropped, GROUPS - 1, "every group the viewer skipped is counted");
			assert.ok(sameBytes(v.groups.get(GROUPS - 1)!.frames[0], frameBytes(GROUPS - 1, 0, 12_000)));
		},
	);

	test(
		"max latency: a group still in flight is reset OLD when a group newer by more than the limit opens",
		T,
		async () => {
			let now = 1_000_000;
			mock.method(Date, "now", () => now);
			const { track, upstream } = await live();
			// Hold back the publisher's FIN of group 0, so the relay still has it open when group 1 starts.
			const openUni = upstream.openUni.bind(upstream);
			const opened: LoopbackStream[] = [];
			upstream.openUni = () => {
				const s = openUni();
				if (s) opened.push(s);
				return s;
			};
			const viewer = await core.connect();
			const v = watch(viewer.client, "live", "video", { maxLatencyMs: 100 });
			await until(() => track.subscribers === 1, 5000, "the relay to subscribe upstream");
			const g0: GroupWriter = track.openGroup();
			g0.writeFrame(frameBytes(0, 0, 1000));
			await until(() => v.groups.get(0)?.frames.length === 1, 5000, "group 0's first frame");
			for (const s of opened) s.finish = () => {};

			now += 500;
			track.writeGroup([frameBytes(1, 0, 1000)]);
			await until(() => v.groups.get(1)?.complete === true, 5000, "group 1");
			await until(() => v.groups.get(0)?.complete === false, 5000, "group 0 to end");
			assert.equal(groupStream(viewer.local, 0)?.receivedReset, OLD, "group 0 is reset with OLD");
			assert.equal(core.relay.figures.groupsDropped, 1);

			// Within the limit nothing expires: group 2, held open, is 50 ms older than group 3.
			now += 50;
			const g2 = track.openGroup();
			g2.writeFrame(frameBytes(2, 0, 1000));
			await until(() => v.groups.get(2)?.frames.length === 1, 5000, "group 2's first frame");
			for (const s of opened) s.finish = () => {};
			now += 50;
			track.writeGroup([frameBytes(3, 0, 1000)]);
			await until(() => v.groups.get(3)?.complete === true, 5000, "group 3");
			assert.equal(groupStream(viewer.local, 2)?.receivedReset, null, "group 2 stays open");
			assert.equal(v.groups.get(2)?.complete, undefined);
			assert.equal(core.relay.figures.groupsDropped, 1);
		},
	);
});
