import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as Lite from "@moq/lite";
import * as Net from "@moq/net";
import { frameBytes } from "./support/frames.ts";
import { startTestRelay, type TestRelay } from "./support/relay.ts";
import { until } from "./support/wait.ts";
import { withOfferedProtocols } from "./support/websocket-filter.ts";

/**
 * End to end over WebSocket with the official clients: a @moq/net 0.3.4 publisher, viewers on
 * @moq/net (lite-05, and lite-04 / lite-03 forced through the offered subprotocols) and on
 * @moq/lite 0.2.2 (lite-02), all through the real relay on loopback.
 */

const FRAMES_PER_GROUP = 5;
const TRACKS = ["video", "audio"] as const;

interface ViewerLog {
	name: string;
	/** group seq -> frames received (as bytes), per track */
	groups: Map<string, Map<number, Uint8Array[]>>;
	firstGroup: Map<string, number>;
	ended: boolean;
	version: string;
	close(): void;
}

async function netViewer(relay: TestRelay, name: string, keep?: (p: string) => boolean): Promise<ViewerLog> {
	const connect = () => Net.Connection.connect(relay.url("anon"), { websocket: { delay: 0 } });
	const conn = keep ? await withOfferedProtocols(keep, connect) : await connect();
	const log: ViewerLog = {
		name,
		groups: new Map(),
		firstGroup: new Map(),
		ended: false,
		version: conn.version,
		close: () => conn.close(),
	};
	const announced = conn.announced(Net.Path.from(""));
	(async () => {
		for (;;) {
			const ev = await announced.next();
			if (!ev) return;
			if (ev.path !== "bbb") continue;
			if (!ev.active) {
				log.ended = true;
				continue;
			}
			const bc = conn.consume(Net.Path.from("bbb"));
			for (const t of TRACKS) {
				const sub = bc.subscribe(t, { priority: t === "audio" ? 2 : 1 });
				const groups = new Map<number, Uint8Array[]>();
				log.groups.set(t, groups);
				(async () => {
					for (;;) {
						const g = await sub.recvGroup().catch(() => undefined);
						if (!g) return;
						if (!log.firstGroup.has(t)) log.firstGroup.set(t, g.sequence);
						const frames: Uint8Array[] = [];
						groups.set(g.sequence, frames);
						for (;;) {
							const f = await g.readFrame().catch(() => undefined);
							if (!f) break;
							frames.push(f.payload.slice());
						}
					}
				})();
			}
		}
	})().catch(() => {});
	return log;
}

async function liteViewer(relay: TestRelay, name: string): Promise<ViewerLog> {
	const conn = await Lite.Connection.connect(relay.url("anon"), { websocket: { delay: 0 } } as never);
	const log: ViewerLog = {
		name,
		groups: new Map(),
		firstGroup: new Map(),
		ended: false,
		version: String(conn.version),
		close: () => conn.close(),
	};
	const announced = conn.announced(Lite.Path.from(""));
	(async () => {
		for (;;) {
			const ev = await announced.next();
			if (!ev) return;
			if (ev.path !== "bbb") continue;
			if (!ev.active) {
				log.ended = true;
				continue;
			}
			const bc = conn.consume(Lite.Path.from("bbb"));
			for (const t of TRACKS) {
				const track = bc.subscribe(t, t === "audio" ? 2 : 1);
				const groups = new Map<number, Uint8Array[]>();
				log.groups.set(t, groups);
				(async () => {
					for (;;) {
						const g = await track.nextGroup().catch(() => undefined);
						if (!g) return;
						if (!log.firstGroup.has(t)) log.firstGroup.set(t, g.sequence);
						const frames: Uint8Array[] = [];
						groups.set(g.sequence, frames);
						for (;;) {
							const f = await g.readFrame().catch(() => undefined);
							if (!f) break;
							frames.push(f.slice());
						}
					}
				})();
			}
		}
	})().catch(() => {});
	return log;
}

function complete(log: ViewerLog, track: string, group: number): boolean {
	return (log.groups.get(track)?.get(group)?.length ?? 0) === FRAMES_PER_GROUP;
}

describe("relay over WebSocket with the official clients", { timeout: 90_000 }, () => {
	let relay: TestRelay;
	before(async () => {
		relay = await startTestRelay();
	});
	after(async () => {
		await relay.close();
	});

	it("fans a two-track broadcast out to 20+ mixed viewers, byte-exact, with late join and ended", async () => {
		// Publisher: @moq/net, lite-05 over qmux.
		const pub = await Net.Connection.connect(relay.url("anon"), { websocket: { delay: 0 } });
		assert.equal(pub.version, "moq-lite-05");
		const broadcast = new Net.Broadcast.Producer();
		const producers = TRACKS.map((t) => broadcast.createTrack(t));
		pub.publish(Net.Path.from("bbb"), broadcast);
		let nextGroup = 0;
		const publishGroup = () => {
			const seq = nextGroup++;
			for (let ti = 0; ti < TRACKS.length; ti++) {
				const g = producers[ti].appendGroup();
				assert.equal(g.sequence, seq);
				for (let f = 0; f < FRAMES_PER_GROUP; f++)
					g.writeFrame({ payload: frameBytes(seq, f, 20_000, ti), timestamp: Net.Time.Timestamp.now() });
				g.close();
			}
		};
		publishGroup(); // group 0: the cache is warm before viewers arrive
		await until(() => relay.node.relay.broadcasts.has("anon/bbb"), 10_000, "the relay to learn the broadcast");

		// 20 viewers: 6 on lite-05, 4 forced to lite-04, 3 forced to lite-03 (@moq/net), 7 on lite-02 (@moq/lite).
		const viewers: ViewerLog[] = [];
		for (let i = 0; i < 6; i++) viewers.push(await netViewer(relay, `net05-${i}`));
		for (let i = 0; i < 4; i++) viewers.push(await netViewer(relay, `net04-${i}`, (p) => p.endsWith("moq-lite-04")));
		for (let i = 0; i < 3; i++) viewers.push(await netViewer(relay, `net03-${i}`, (p) => p.endsWith("moq-lite-03")));
		for (let i = 0; i < 7; i++) viewers.push(await liteViewer(relay, `lite02-${i}`));
		const versions = viewers.map((v) => v.version);
		assert.equal(versions.filter((v) => v === "moq-lite-05").length, 6, versions.join());
		assert.equal(versions.filter((v) => v === "moq-lite-04").length, 4, versions.join());
		assert.equal(versions.filter((v) => v === "moq-lite-03").length, 3, versions.join());
		assert.equal(versions.filter((v) => v.includes("02") || v === String(0xff0dad02)).length, 7, versions.join());

		// Every viewer discovered the broadcast and subscribed to both tracks (one upstream subscription per track).
		await until(
			() => relay.node.relay.figures.subscriptions === viewers.length * TRACKS.length,
			20_000,
			"all subscriptions",
		);
		const groupsBefore = nextGroup;
		const GROUPS = 12;
		for (let i = 0; i < GROUPS; i++) {
			publishGroup();
			await new Promise((r) => setTimeout(r, 20));
		}
		const last = nextGroup - 1;
		await until(
			() => viewers.every((v) => TRACKS.every((t) => complete(v, t, last))),
			30_000,
			"every viewer to get the last group",
		);

		for (const v of viewers) {
			for (const [ti, t] of TRACKS.entries()) {
				const groups = v.groups.get(t)!;
				const first = v.firstGroup.get(t)!;
				assert.ok(first <= groupsBefore, `${v.name} ${t} started at ${first}`);
				for (let seq = Math.max(first, groupsBefore); seq <= last; seq++) {
					const frames = groups.get(seq);
					assert.ok(frames, `${v.name} ${t} missing group ${seq}`);
					assert.equal(frames.length, FRAMES_PER_GROUP, `${v.name} ${t} group ${seq}`);
					for (let f = 0; f < FRAMES_PER_GROUP; f++)
						assert.deepEqual(frames[f], frameBytes(seq, f, 20_000, ti), `${v.name} ${t} g${seq} f${f}`);
				}
			}
		}

		// A late joiner starts at the latest group, from its first frame.
		const late = await netViewer(relay, "late");
		await until(() => TRACKS.every((t) => late.firstGroup.has(t)), 10_000, "late joiner's first group");
		await until(() => TRACKS.every((t) => complete(late, t, last)), 10_000, "late joiner's group");
		for (const [ti, t] of TRACKS.entries()) {
			assert.equal(late.firstGroup.get(t), last, `late joiner ${t} starts at the latest group`);
			const frames = late.groups.get(t)!.get(last)!;
			for (let f = 0; f < FRAMES_PER_GROUP; f++) assert.deepEqual(frames[f], frameBytes(last, f, 20_000, ti));
		}
		const lateLite = await liteViewer(relay, "late-lite");
		await until(() => TRACKS.every((t) => complete(lateLite, t, last)), 10_000, "late lite joiner");
		assert.equal(lateLite.firstGroup.get("video"), last);

		// The publisher leaves: every viewer sees `ended`.
		const all = [...viewers, late, lateLite];
		pub.close();
		await until(() => all.every((v) => v.ended), 15_000, "every viewer to see ended");
		await until(
			() => relay.node.relay.broadcasts.size === 0 && relay.node.relay.figures.tracks === 0,
			5_000,
			"relay cleanup",
		);
		for (const v of all) v.close();
		await until(() => relay.node.relay.figures.sessions === 0, 10_000, "sessions to close");
	});
});
