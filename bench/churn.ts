/**
 * Broadcast churn: memory that must come back (issue 16). Starts the real relay process
 * (`--workers`, 2 by default) and runs rounds of: a publisher starts a broadcast under a new name
 * (one track, a group of 3 frames every `--group-ms`), `--viewers` viewers watch it for `--view-ms`,
 * everyone leaves. Every `--abrupt-every`th round (raw QUIC only) the clients vanish instead of
 * closing: no CONNECTION_CLOSE, the relay gives them up at their 3 s idle timeout. Prints the
 * relay's RSS after each round, then a summary: first, last, max, least-squares slope over the
 * second half (MB per round), and RSS 3 s after the last round.
 *
 * `--probe` runs the relay with the GC probe (MOQ_FANOUT_GC_PROBE=1) and prints, every
 * `--probe-every` rounds and at the end, each worker's live sessions, connections, tracks, rings,
 * readers and subscriptions after forced collections, with its heap and ArrayBuffer bytes;
 * `--snapshot` also has every worker write a heap snapshot then (paths printed). The forced
 * collections change what RSS shows: measure RSS without `--probe`.
 *
 *   node bench/churn.ts --rounds 100 --view-ms 800 [--client quic|ws] [--total-bytes 64MiB]
 *   node bench/churn.ts --rounds 60 --view-ms 4000
 *   node bench/churn.ts --rounds 30 --probe --probe-every 10 --snapshot
 * @module
 */
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import * as Net from "@moq/net";
import { MoqClient } from "../src/client/index.ts";
import { connectQuic } from "../src/quic/client.ts";
import type { QuicConnection } from "../src/quic/connection.ts";
import type { WorkerProbeReport } from "../src/worker/gc-probe.ts";
import { frameBytes } from "../test/support/frames.ts";
import { startRelayProcess } from "../test/support/process-relay.ts";

const { values: opt } = parseArgs({
	options: {
		workers: { type: "string", default: "2" },
		rounds: { type: "string", default: "60" },
		"view-ms": { type: "string", default: "800" },
		"group-ms": { type: "string", default: "40" },
		viewers: { type: "string", default: "3" },
		client: { type: "string", default: "quic" },
		"total-bytes": { type: "string" },
		"abrupt-every": { type: "string", default: "4" },
		probe: { type: "boolean", default: false },
		"probe-every": { type: "string", default: "10" },
		snapshot: { type: "boolean", default: false },
	},
});
const ROUNDS = Number(opt.rounds);
const VIEW_MS = Number(opt["view-ms"]);
const GROUP_MS = Number(opt["group-ms"]);
const VIEWERS = Number(opt.viewers);
const ABRUPT_EVERY = opt.client === "ws" ? 0 : Number(opt["abrupt-every"]);
const PROBE_EVERY = Number(opt["probe-every"]);

const env: Record<string, string> = {};
if (opt["total-bytes"]) env.MOQ_CACHE_TOTAL_BYTES = opt["total-bytes"];
if (opt.probe) env.MOQ_FANOUT_GC_PROBE = "1";
const relay = await startRelayProcess(["--workers", opt.workers, "--log-level", "error"], env);
const fingerprint = (await (await fetch(`${relay.base}/certificate.sha256`)).text()).trim();

function rssMb(): number {
	const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${relay.child.pid}/status`, "utf8"));
	return m ? Number(m[1]) / 1024 : Number.NaN;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface QuicPeer {
	client: MoqClient;
	socket: dgram.Socket;
	/** The worker holding the session (the first byte of the relay's connection IDs). */
	worker: number;
}

/** Our raw-QUIC client, each on a UDP socket of its own (SO_REUSEPORT spreads them over the workers). */
async function quicPeer(): Promise<QuicPeer> {
	const socket = dgram.createSocket("udp4");
	await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
	const quic = await connectQuic({
		host: "127.0.0.1",
		port: relay.port,
		alpns: ["moq-lite-05"],
		certificateHashes: [fingerprint],
		socket,
		// A client that vanishes (abrupt rounds) is given up by the relay after this much silence.
		limits: { idleTimeoutMs: 3000 },
	});
	const client = await MoqClient.connect(quic, { path: "/anon" });
	return { client, socket, worker: (quic as QuicConnection).native.destinationId()[0] };
}

function leave(p: QuicPeer, abrupt: boolean): void {
	if (!abrupt) p.client.close(0, "bye");
	// Abrupt: the socket goes without a CONNECTION_CLOSE. Clean: after the close has been sent.
	setTimeout(() => p.socket.close(), abrupt ? 0 : 200);
}

async function roundQuic(name: string, abrupt: boolean): Promise<number[]> {
	const pub = await quicPeer();
	const track = pub.client.publish(name, { tracks: ["video"] }).track("video");
	const ticker = setInterval(() => {
		const g = track.openGroup();
		for (let f = 0; f < 3; f++) g.writeFrame(frameBytes(g.seq, f));
		g.close();
	}, GROUP_MS);
	const viewers = await Promise.all(Array.from({ length: VIEWERS }, () => quicPeer()));
	let groups = 0;
	for (const v of viewers) v.client.subscribe(name, "video", {}, { onGroup: () => groups++ });
	await sleep(VIEW_MS);
	clearInterval(ticker);
	if (groups === 0) console.error(`round ${name}: no group received`);
	for (const v of viewers) leave(v, abrupt);
	leave(pub, abrupt);
	return [pub.worker, ...viewers.map((v) => v.worker)];
}

/** The official client over WebSocket (its sessions' workers are not known here). */
async function roundWs(name: string): Promise<number[]> {
	const url = new URL(`${relay.base}/anon`);
	const opts = { websocket: { delay: 0 } };
	const pub = await Net.Connection.connect(url, opts);
	const bc = new Net.Broadcast.Producer();
	const track = bc.createTrack("video");
	pub.publish(Net.Path.from(name), bc);
	const ticker = setInterval(() => {
		const g = track.appendGroup();
		for (let f = 0; f < 3; f++)
			g.writeFrame({ payload: frameBytes(g.sequence, f), timestamp: Net.Time.Timestamp.now() });
		g.close();
	}, GROUP_MS);
	await sleep(100);
	const viewers = await Promise.all(Array.from({ length: VIEWERS }, () => Net.Connection.connect(url, opts)));
	let groups = 0;
	for (const v of viewers) {
		const sub = v.consume(Net.Path.from(name)).subscribe("video");
		void (async () => {
			while (await sub.recvGroup().catch(() => undefined)) groups++;
		})();
	}
	await sleep(VIEW_MS);
	clearInterval(ticker);
	if (groups === 0) console.error(`round ${name}: no group received`);
	for (const v of viewers) v.close();
	pub.close();
	return [];
}

async function probe(): Promise<WorkerProbeReport[] | null> {
	if (!opt.probe) return null;
	const r = await fetch(`${relay.base}/debug/gc-probe?gc=1${opt.snapshot ? "&snapshot=1" : ""}`);
	return r.ok ? ((await r.json()) as { workers: WorkerProbeReport[] }).workers : null;
}

const mb = (n: number) => (n / 2 ** 20).toFixed(1);
function show(p: WorkerProbeReport[] | null): string {
	if (!p) return "";
	const worker = (w: WorkerProbeReport) => {
		const live = Object.entries(w.live).map(([k, v]) => `${k}=${v}`);
		const memory = `heap=${mb(w.memory.heapUsed)} arrayBuffers=${mb(w.memory.arrayBuffers)}`;
		return `w${w.index}[${live.join(" ")} ${memory}${w.snapshot ? ` ${w.snapshot}` : ""}]`;
	};
	return p.map(worker).join(" ");
}

const rss: number[] = [];
const t0 = Date.now();
console.log(`start rss=${rssMb().toFixed(1)} MB ${show(await probe())}`);
try {
	for (let round = 0; round < ROUNDS; round++) {
		const name = `churn-${round}-${Math.random().toString(36).slice(2, 8)}`;
		const abrupt = ABRUPT_EVERY > 0 && round % ABRUPT_EVERY === ABRUPT_EVERY - 1;
		const placed = opt.client === "ws" ? await roundWs(name) : await roundQuic(name, abrupt);
		await sleep(200);
		rss.push(rssMb());
		const p = (round + 1) % PROBE_EVERY === 0 ? await probe() : null;
		const secs = ((Date.now() - t0) / 1000).toFixed(0);
		const how = abrupt ? "abrupt" : "clean ";
		console.log(
			`round ${round} ${how} workers=${placed.join("")} rss=${rss.at(-1)!.toFixed(1)} MB t=${secs}s ${show(p)}`,
		);
	}
	await sleep(3000);
	const settled = rssMb();
	console.log(`settled rss=${settled.toFixed(1)} MB ${show(await probe())}`);
	const half = rss.slice(Math.floor(rss.length / 2));
	const xm = (half.length - 1) / 2;
	const ym = half.reduce((a, b) => a + b, 0) / half.length;
	let num = 0;
	let den = 0;
	half.forEach((y, x) => {
		num += (x - xm) * (y - ym);
		den += (x - xm) ** 2;
	});
	const summary = {
		first: rss[0],
		last: rss.at(-1)!,
		max: Math.max(...rss),
		slopeSecondHalfMbPerRound: den > 0 ? num / den : 0,
		settled,
	};
	console.log(JSON.stringify(summary, (_k, v) => (typeof v === "number" ? Number(v.toFixed(3)) : v)));
} finally {
	await relay.stop();
	process.exit(0);
}
