/**
 * One broadcast served to every dialect, whatever the publisher spoke: the real relay binary with 2
 * worker threads, and the official client @moq/net 0.3.4 over WebSocket (qmux) forced onto one
 * dialect per connection (test/support/ietf.ts): moq-lite-02 (over `moql`), moq-lite-05, and IETF
 * moq-transport drafts 14 (over `moql` offering draft-14 alone, and over `moq-00`), 15 and 16.
 *
 * Every publisher dialect × every viewer dialect: each viewer discovers the five broadcasts through
 * its own dialect's announcements (SUBSCRIBE_NAMESPACE on IETF), subscribes to each, and must
 * receive every frame of every group written after it joined, byte-exact: small frames, an empty
 * frame, a 70 KB one. The kernel spreads the connections over both workers, so announcements and
 * rings cross threads too. No session may be refused or faulted on the way.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
	connectDialect,
	type Dialect,
	type NetConnection,
	type NetTrackProducer,
	newBroadcast,
	now,
	path,
	VERSION_NAME,
} from "./support/ietf.ts";
import { metricSum, type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import "./support/quiet.ts";
import { sleep, until } from "./support/wait.ts";

const PUBLISHERS: Dialect[] = ["lite-02", "lite-05", "d14", "d15", "d16", "d17", "d18", "d19", "d20"];
const VIEWERS: Dialect[] = ["lite-02", "lite-05", "d14", "d14/moq-00", "d15", "d16", "d17", "d18", "d19", "d20"];
/** Groups written once every viewer is in, and their frames' sizes (0: an empty frame). */
const GROUPS = 4;
const SIZES = [900, 0, 70_000, 17];

/** Deterministic content per publisher, group and frame. */
function payload(pub: number, group: number, frame: number): Uint8Array {
	const size = SIZES[frame] === 0 ? 0 : SIZES[frame] + ((group * 13 + pub) % 50);
	const b = new Uint8Array(size);
	for (let i = 0; i < size; i++) b[i] = (i * 31 + group * 7 + frame * 3 + pub * 101) & 0xff;
	return b;
}

interface Received {
	/** group sequence → frames, and whether the group ended. */
	groups: Map<number, { frames: Uint8Array[]; done: boolean }>;
	error: string | null;
}

describe("IETF moq-transport beside moq-lite: every publisher dialect × every viewer dialect", () => {
	let relay: RelayProcess;
	const conns: NetConnection[] = [];
	const url = () => new URL(`${relay.base}/anon`);

	before(async () => {
		relay = await startRelayProcess(["--workers", "2", "--log-level", "warn"]);
	});
	after(async () => {
		for (const c of conns) c.close();
		await relay?.stop();
	});

	it("delivers every frame byte-exact, across dialects and workers", async () => {
		// Publishers: one broadcast each, one track.
		const tracks: NetTrackProducer[] = [];
		for (const dialect of PUBLISHERS) {
			const conn = await connectDialect(url(), dialect);
			conns.push(conn);
			assert.equal(conn.version, VERSION_NAME[dialect], `publisher ${dialect}`);
			const bc = newBroadcast();
			tracks.push(bc.createTrack("t"));
			conn.publish(path(`matrix/${dialect}`), bc);
		}

		// Viewers: each discovers the broadcasts in its own dialect, then subscribes to all of them.
		const received = new Map<string, Received>();
		for (const viewer of VIEWERS) {
			const conn = await connectDialect(url(), viewer);
			conns.push(conn);
			assert.equal(conn.version, VERSION_NAME[viewer], `viewer ${viewer}`);
			const announced = conn.announced(path("matrix"));
			const seen = new Set<string>();
			const deadline = Date.now() + 15_000;
			while (seen.size < PUBLISHERS.length) {
				const ev = await Promise.race([announced.next(), sleep(Math.max(1, deadline - Date.now())).then(() => null)]);
				assert.ok(ev, `viewer ${viewer} saw only ${[...seen].join(", ")} announced`);
				if (ev.active) seen.add(ev.path);
			}
			for (const pub of PUBLISHERS) {
				const r: Received = { groups: new Map(), error: null };
				received.set(`${pub}→${viewer}`, r);
				const sub = conn.consume(path(`matrix/${pub}`)).subscribe("t", { priority: 1 });
				void (async () => {
					for (;;) {
						const g = await sub.recvGroup();
						if (!g) return;
						const entry = { frames: [] as Uint8Array[], done: false };
						r.groups.set(g.sequence, entry);
						void (async () => {
							for (;;) {
								const f = await g.readFrame();
								if (!f) break;
								entry.frames.push(new Uint8Array(f.payload));
							}
							entry.done = true;
						})().catch((err) => {
							r.error = `group ${g.sequence}: ${err}`;
						});
					}
				})().catch((err) => {
					r.error = String(err);
				});
			}
		}

		// Warm-up groups until every subscription has received one: every viewer is in.
		const warm = () => {
			for (const t of tracks) {
				const g = t.appendGroup();
				g.writeFrame({ payload: new Uint8Array([0xee]), timestamp: now() });
				g.close();
			}
		};
		warm();
		await until(
			() => {
				if ([...received.values()].every((r) => r.groups.size > 0)) return true;
				warm();
				return false;
			},
			20_000,
			"every viewer to receive a warm-up group of every publisher",
		);
		await sleep(200);

		// The real groups, written by every publisher.
		const written: number[][] = PUBLISHERS.map(() => []);
		for (let g = 0; g < GROUPS; g++) {
			for (const [p, t] of tracks.entries()) {
				const group = t.appendGroup() as unknown as { sequence?: number } & ReturnType<NetTrackProducer["appendGroup"]>;
				for (let f = 0; f < SIZES.length; f++) group.writeFrame({ payload: payload(p, g, f), timestamp: now() });
				group.close();
				written[p].push(group.sequence as number);
			}
			await sleep(30);
		}

		const complete = (r: Received, p: number) =>
			written[p].every((seq) => r.groups.get(seq)?.done && r.groups.get(seq)!.frames.length === SIZES.length);
		await until(
			() => PUBLISHERS.every((pub, p) => VIEWERS.every((v) => complete(received.get(`${pub}→${v}`)!, p))),
			30_000,
			"every group at every viewer",
		).catch((err) => {
			const missing: string[] = [];
			for (const [p, pub] of PUBLISHERS.entries())
				for (const v of VIEWERS) {
					const r = received.get(`${pub}→${v}`)!;
					if (!complete(r, p))
						missing.push(
							`${pub}→${v}: has ${[...r.groups.keys()].join(",")} want ${written[p].join(",")} ${r.error ?? ""}`,
						);
				}
			throw new Error(`${(err as Error).message}\n${missing.join("\n")}`);
		});

		for (const [p, pub] of PUBLISHERS.entries()) {
			for (const v of VIEWERS) {
				const r = received.get(`${pub}→${v}`)!;
				assert.equal(r.error, null, `${pub}→${v}`);
				for (const [g, seq] of written[p].entries()) {
					const frames = r.groups.get(seq)!.frames;
					for (let f = 0; f < SIZES.length; f++) {
						assert.deepEqual(frames[f], payload(p, g, f), `${pub}→${v}: group ${seq} frame ${f}`);
					}
				}
			}
		}

		const m = await relay.metrics();
		assert.equal(metricSum(m, "moq_fanout_session_faults_total"), 0, "no session faulted");
		assert.equal(metricSum(m, "moq_fanout_refusals_total", 'reason="protocol"'), 0, "no protocol refusal");
	});
});
