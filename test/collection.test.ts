import assert from "node:assert/strict";
import dgram from "node:dgram";
import { after, before, describe, it } from "node:test";
import * as Net from "@moq/net";
import { MoqClient, type Subscription } from "../src/client/index.ts";
import { PROBE_KINDS } from "../src/metrics/collection.ts";
import { connectQuic } from "../src/quic/client.ts";
import type { QuicConnection } from "../src/quic/connection.ts";
import type { WorkerProbeReport } from "../src/worker/gc-probe.ts";
import { frameBytes } from "./support/frames.ts";
import { type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import "./support/quiet.ts";
import { sleep, until } from "./support/wait.ts";

/**
 * Memory that returns (issue 16): after broadcasts start, are watched on both workers and end,
 * cleanly or abruptly, everything they and their sessions allocated can be collected, in every
 * worker. Proven like undici proves it: the relay runs with the GC probe (MOQ_FANOUT_GC_PROBE=1,
 * src/metrics/collection.ts), whose FinalizationRegistry counts sessions, QUIC connections, tracks,
 * rings (each worker's SharedArrayBuffer object of a ring: the writer's, and every reading worker's),
 * ring readers and served subscriptions as they are created and collected; `/debug/gc-probe` forces
 * full collections in every worker and reports what is still alive.
 */

const WORKERS = 2;
/** The relay gives up on a client that vanished after this much silence (the client's QUIC idle timeout). */
const CLIENT_IDLE_MS = 1500;

interface Peer {
	client: MoqClient;
	socket: dgram.Socket;
	/** The worker holding the session (the first byte of the relay's connection IDs). */
	worker: number;
}

interface Probe {
	workers: WorkerProbeReport[];
}

describe("every broadcast's and session's memory is collectable when it ends", { timeout: 120_000 }, () => {
	let relay: RelayProcess;
	let fingerprint: string;
	const sockets: dgram.Socket[] = [];
	/** What a failing test would leave running (publishers' timers, sessions): ended in `after`. */
	const tickers = new Set<ReturnType<typeof setInterval>>();
	const clients = new Set<{ close(): void }>();

	before(async () => {
		relay = await startRelayProcess(["--workers", String(WORKERS), "--log-level", "warn"], {
			MOQ_FANOUT_GC_PROBE: "1",
		});
		fingerprint = (await (await fetch(`${relay.base}/certificate.sha256`)).text()).trim();
	});
	after(async () => {
		for (const t of tickers) clearInterval(t);
		for (const c of clients) c.close();
		await relay?.stop();
		for (const s of sockets) {
			try {
				s.close();
			} catch {
				// already closed (a client that vanished)
			}
		}
	});

	/** Our raw-QUIC client on a socket of its own (SO_REUSEPORT picks a worker by the 4-tuple). */
	async function connect(): Promise<Peer> {
		const socket = dgram.createSocket("udp4");
		await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
		sockets.push(socket);
		const quic = await connectQuic({
			host: "127.0.0.1",
			port: relay.port,
			alpns: ["moq-lite-05"],
			certificateHashes: [fingerprint],
			socket,
			limits: { idleTimeoutMs: CLIENT_IDLE_MS },
		});
		const client = await MoqClient.connect(quic, { path: "/anon" });
		clients.add(client);
		return { client, socket, worker: (quic as QuicConnection).native.destinationId()[0] };
	}

	/** Gone without a word: no CONNECTION_CLOSE; the relay notices at the idle timeout. */
	function vanish(p: Peer): void {
		p.socket.close();
	}

	/** A client whose session is on `worker` (clients that land elsewhere leave again). */
	async function connectOn(worker: number): Promise<Peer> {
		for (let i = 0; i < 24; i++) {
			const p = await connect();
			if (p.worker === worker) return p;
			p.client.close();
		}
		throw new Error(`no session landed on worker ${worker}`);
	}

	/** At least `n` viewers, some on the publisher's worker and some on the other one. */
	async function viewersOnBothWorkers(pubWorker: number, n: number): Promise<Peer[]> {
		const viewers: Peer[] = [];
		const spread = () => viewers.some((v) => v.worker === pubWorker) && viewers.some((v) => v.worker !== pubWorker);
		for (let i = 0; i < 24 && (viewers.length < n || !spread()); i++) viewers.push(await connect());
		assert.ok(spread(), `viewers on both workers: ${viewers.map((v) => v.worker)}`);
		return viewers;
	}

	async function probe(gc: boolean): Promise<Probe> {
		const res = await fetch(`${relay.base}/debug/gc-probe?gc=${gc ? 1 : 0}`);
		assert.equal(res.status, 200, "the GC probe route is on");
		const p = (await res.json()) as Probe;
		assert.equal(p.workers.length, WORKERS);
		for (const w of p.workers) assert.ok(w.answered, `worker ${w.index} answered the probe`);
		return p;
	}

	/** Publishes `name` (one track, a group of 3 frames every 40 ms) from `pub`. */
	function produce(pub: Peer, name: string) {
		const broadcast = pub.client.publish(name, { tracks: ["video"] });
		const track = broadcast.track("video");
		const ticker = setInterval(() => {
			if (pub.client.closed || broadcast.closed) return;
			const g = track.openGroup();
			for (let f = 0; f < 3; f++) g.writeFrame(frameBytes(g.seq, f, 3000));
			g.close();
		}, 40);
		tickers.add(ticker);
		return { broadcast, stop: () => clearInterval(ticker) };
	}

	/** Subscribes (again, while the announcement is still on its way to the viewer's worker). */
	function watch(v: Peer, name: string) {
		const state = { groups: 0, ended: false, sub: null as Subscription | null };
		const subscribe = () => {
			if (v.client.closed) return;
			state.sub = v.client.subscribe(
				name,
				"video",
				{},
				{
					onGroup: () => state.groups++,
					onEnd: () => {
						if (state.groups === 0) setTimeout(subscribe, 50);
						else state.ended = true;
					},
				},
			);
		};
		subscribe();
		return state;
	}

	it("after publish / view on both workers / leave, cleanly and abruptly, nothing is left alive", async () => {
		const baseline = await probe(true);
		const modes = ["clean", "publisher vanishes", "viewers vanish", "all close at once"] as const;
		for (let round = 0; round < 2 * modes.length; round++) {
			const mode = modes[round % modes.length];
			const name = `gc/${round}`;
			// Each worker writes rings (publishers alternate) and reads the other's.
			const pub = await connectOn(round % WORKERS);
			const { broadcast, stop } = produce(pub, name);
			const viewers = await viewersOnBothWorkers(pub.worker, 3);
			const watching = viewers.map((v) => watch(v, name));
			await until(() => watching.every((w) => w.groups >= 3), 10_000, `round ${round}: every viewer receiving`);
			// An official client over WebSocket, TRACK_INFO from every viewer (across workers: the
			// shard link asks the publisher's worker) and moq-relay's HTTP fetch of the latest group.
			const ws = await Net.Connection.connect(new URL(`${relay.base}/anon`), { websocket: { delay: 0 } });
			clients.add(ws);
			const wsSub = ws.consume(Net.Path.from(name)).subscribe("video");
			assert.ok(await wsSub.recvGroup(), `round ${round}: the WebSocket viewer receives a group`);
			for (const v of viewers) assert.equal((await v.client.trackInfo(name, "video")).timescale, 1000);
			const fetched = await fetch(`${relay.base}/fetch/anon/${name}/video`);
			assert.equal(fetched.status, 200);
			assert.ok((await fetched.arrayBuffer()).byteLength > 0);
			// Collections while the broadcast is live move its objects to V8's old generation, as hours of
			// running would: from there only a full collection frees them, never a young-generation one.
			await probe(true);

			switch (mode) {
				case "clean":
					// The publisher ends its broadcast, the viewers see their subscriptions end, all leave.
					stop();
					broadcast.close();
					await until(() => watching.every((w) => w.ended), 10_000, `round ${round}: subscriptions ended`);
					for (const v of viewers) v.client.close();
					ws.close();
					pub.client.close();
					break;
				case "publisher vanishes":
					stop();
					vanish(pub);
					await until(() => watching.every((w) => w.ended), 10_000, `round ${round}: subscriptions reset`);
					for (const v of viewers) v.client.close();
					ws.close();
					break;
				case "viewers vanish":
					for (const v of viewers) vanish(v);
					ws.close();
					await sleep(100);
					stop();
					pub.client.close();
					break;
				case "all close at once":
					stop();
					for (const v of viewers) v.client.close();
					ws.close();
					pub.client.close();
					break;
			}
		}

		// Every session is gone (the vanished ones at their idle timeout), then nothing may stay alive.
		await until(
			async () => (await probe(false)).workers.every((w) => w.relay.sessions === 0),
			20_000,
			"every session closed in every worker",
		);
		const leftovers = (p: Probe) =>
			p.workers.flatMap((w) =>
				PROBE_KINDS.filter((k) => w.live[k] !== baseline.workers[w.index].live[k]).map(
					(k) => `worker ${w.index}: ${w.live[k]} ${k} alive (baseline ${baseline.workers[w.index].live[k]})`,
				),
			);
		let last = await probe(true);
		// Finalization callbacks run after the collection that found their objects; an object held
		// only by a pending timer or callback becomes garbage a turn later: collect a few times.
		for (let attempt = 0; attempt < 10 && leftovers(last).length > 0; attempt++) {
			await sleep(300);
			last = await probe(true);
		}
		assert.deepEqual(leftovers(last), [], "nothing of an ended broadcast or session is still alive");
		for (const w of last.workers) {
			assert.ok(w.collected, `worker ${w.index} could force a collection`);
			// The probe saw each kind in each worker: the test exercised what it claims to.
			for (const k of PROBE_KINDS) assert.ok(w.created[k] > 0, `worker ${w.index} created some ${k}`);
			assert.deepEqual(
				{ broadcasts: w.relay.broadcasts, tracks: w.relay.tracks, remoteTracks: w.relay.remoteTracks },
				{ broadcasts: 0, tracks: 0, remoteTracks: 0 },
				`worker ${w.index} holds no broadcast state`,
			);
		}
	});

	it("a broadcast published again under the same path reaches viewers on the other worker", async () => {
		// The publisher's worker must forget which workers read the first broadcast's rings, or the
		// second one finds their entries and never subscribes upstream for them.
		const name = "gc/again";
		const first = await connect();
		const p1 = produce(first, name);
		const viewer = (await viewersOnBothWorkers(first.worker, 1)).find((v) => v.worker !== first.worker)!;
		const w1 = watch(viewer, name);
		await until(() => w1.groups >= 3, 10_000, "the remote viewer receives the first broadcast");
		p1.stop();
		first.client.close();
		await until(() => w1.ended, 10_000, "the first broadcast ends for the remote viewer");

		const second = await connectOn(first.worker);
		const p2 = produce(second, name);
		const w2 = watch(viewer, name);
		await until(() => w2.groups >= 3, 10_000, "the remote viewer receives the second broadcast");
		p2.stop();
		second.client.close();
		viewer.client.close();
	});
});
