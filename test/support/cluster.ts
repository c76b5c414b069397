/**
 * Clusters of real relay processes on loopback for test/cluster.test.ts: the shared key and
 * cluster token (made with the repo's moq-token CLI), relays on ports chosen up front (so that a
 * `nodes` list can name them and a killed relay can come back on its own port), and official
 * @moq/net publishers and viewers over WebSocket that record every group they see.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import dgram from "node:dgram";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as Net from "@moq/net";
import type { PeerStatus } from "../../src/cluster/links.ts";
import { frameBytes, sameBytes } from "./frames.ts";
import { sleep, until } from "./wait.ts";

/**
 * A port free on UDP and TCP, below the kernel's ephemeral range (32768+ on Linux): a cluster's
 * ports are chosen before its relays start (they name each other), and a port from the ephemeral
 * range could meanwhile become the local port of some outgoing connection (EADDRINUSE at bind).
 */
export async function clusterPort(taken: readonly number[] = []): Promise<number> {
	for (;;) {
		const port = 20_000 + Math.floor(Math.random() * 12_000);
		if (taken.includes(port)) continue;
		const udp = dgram.createSocket("udp4");
		const udpOk = await new Promise<boolean>((r) => {
			udp.once("error", () => r(false));
			udp.bind(port, "127.0.0.1", () => r(true));
		});
		udp.close();
		if (!udpOk) continue;
		const tcpOk = await new Promise<boolean>((r) => {
			const srv = net.createServer();
			srv.once("error", () => r(false));
			srv.listen(port, "127.0.0.1", () => srv.close(() => r(true)));
		});
		if (tcpOk) return port;
	}
}

/** Every relay process this module started and has not seen exit: killed if the test process exits. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
	for (const child of running) child.kill("SIGKILL");
});

/** A scratch directory with the cluster's key (`root.jwk`) and its token (`cluster.jwt`). */
export interface ClusterSecrets {
	dir: string;
	key: string;
	token: string;
	remove(): void;
}

export function makeSecrets(): ClusterSecrets {
	const dir = mkdtempSync(join(tmpdir(), "moq-cluster-"));
	const key = join(dir, "root.jwk");
	const token = join(dir, "cluster.jwt");
	const cli = (args: string[]) => {
		const r = spawnSync(process.execPath, ["src/bin/moq-token.ts", ...args], { encoding: "utf8" });
		if (r.status !== 0) throw new Error(`moq-token ${args.join(" ")}: ${r.stderr}`);
		return r.stdout;
	};
	cli(["--key", key, "generate"]);
	writeFileSync(token, cli(["--key", key, "sign", "--root", "", "--publish", "", "--subscribe", ""]).trim());
	return { dir, key, token, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface ClusterSection {
	id?: number;
	connect?: string[];
	nodes?: string[];
	linger?: string;
	peerIdleTimeout?: string;
	/** Gossip (`mesh = true`) with this relay's own URL as `node`. */
	mesh?: { node: string };
}

/** A relay.toml: generated self-signed TLS, the shared key with `/anon` public, and `[cluster]`. */
export function relayToml(secrets: ClusterSecrets, cluster: ClusterSection): string {
	const q = (s: string) => JSON.stringify(s);
	const lines = [
		"[server.tls]",
		'generate = ["localhost", "127.0.0.1"]',
		"[auth]",
		`key = ${q(secrets.key)}`,
		'public = "anon"',
		"[log]",
		'level = "warn"',
		"[cluster]",
		`token = ${q(secrets.token)}`,
	];
	if (cluster.id !== undefined) lines.push(`id = ${cluster.id}`);
	if (cluster.connect) lines.push(`connect = [${cluster.connect.map(q).join(", ")}]`);
	if (cluster.nodes) lines.push(`nodes = [${cluster.nodes.map(q).join(", ")}]`);
	if (cluster.mesh) lines.push("mesh = true", `node = ${q(cluster.mesh.node)}`);
	lines.push(`linger = ${q(cluster.linger ?? "1s")}`);
	lines.push(`peer_idle_timeout = ${q(cluster.peerIdleTimeout ?? "2s")}`);
	return `${lines.join("\n")}\n`;
}

/** The dev URL other relays dial this one by (its certificate hash fetched over plain HTTP). */
export function peerUrl(port: number): string {
	return `http://127.0.0.1:${port}/`;
}

/** A dialled peer as `/cluster` shows it: the relay's own type. */
export type PeerInfo = PeerStatus;

export interface RouteInfo {
	publisher: number;
	hops: number[];
	peer: boolean;
}

export interface BroadcastInfo {
	path: string;
	worker: number;
	hops: number[];
	splices: number;
	lingering: boolean;
	routes: RouteInfo[];
}

export interface ClusterPage {
	id: number;
	node: string | null;
	tier: string | null;
	peers: PeerInfo[];
	broadcasts: BroadcastInfo[];
}

/**
 * One GET, by default on a fresh TCP connection (no keep-alive): the relay's workers share the
 * port, so each request may reach another worker, and a series of them is not pinned to one
 * worker's view. With a keep-alive `agent`, successive requests share a connection (one worker).
 */
export function httpGet(
	url: string,
	timeoutMs = 5000,
	agent: http.Agent | false = false,
): Promise<{ status: number; body: string }> {
	return new Promise((resolve, reject) => {
		const req = http.get(url, { agent, timeout: timeoutMs }, (res) => {
			let body = "";
			res.setEncoding("utf8");
			res.on("data", (d: string) => (body += d));
			res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
			res.on("error", reject);
		});
		req.on("timeout", () => req.destroy(new Error(`GET ${url}: timed out`)));
		req.on("error", reject);
	});
}

/** Prometheus text to a map of `name{labels}` → value. */
export function parseMetrics(text: string): Map<string, number> {
	const out = new Map<string, number>();
	for (const line of text.split("\n")) {
		if (!line || line.startsWith("#")) continue;
		const sp = line.lastIndexOf(" ");
		out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
	}
	return out;
}

/** A relay process of the cluster, on a port fixed at construction (it can be killed and restarted there). */
export class ClusterNode {
	readonly name: string;
	readonly port: number;
	readonly config: string;
	readonly base: string;
	readonly url: string;
	child: ChildProcess | null = null;
	stderr: string[] = [];
	#exitCode: number | string | null = null;

	constructor(name: string, port: number, config: string) {
		this.name = name;
		this.port = port;
		this.config = config;
		this.base = `http://127.0.0.1:${port}`;
		this.url = peerUrl(port);
	}

	/** Spawns the relay (`--workers 2`) and waits for /health. */
	async start(workers = 2): Promise<void> {
		if (this.child) this.stderr.push(`--- ${this.name} restarted ---\n`);
		this.#exitCode = null;
		const child = spawn(
			process.execPath,
			["src/bin/moq-fanout.ts", "--bind", `127.0.0.1:${this.port}`, this.config, "--workers", String(workers)],
			{ stdio: ["pipe", "pipe", "pipe"] },
		);
		this.child = child;
		running.add(child);
		child.once("exit", (code, signal) => {
			running.delete(child);
			this.#exitCode = code ?? signal;
		});
		child.stderr!.setEncoding("utf8").on("data", (d: string) => this.stderr.push(d));
		child.stdout!.resume();
		const deadline = Date.now() + 30_000;
		for (;;) {
			if (this.#exitCode !== null) throw new Error(`${this.name}: relay exited (${this.#exitCode}): ${this.log()}`);
			const ok = await httpGet(`${this.base}/health`, 2000).then(
				(r) => r.status === 200,
				() => false,
			);
			if (ok) return;
			if (Date.now() > deadline) throw new Error(`${this.name}: relay did not start: ${this.log()}`);
			await sleep(100);
		}
	}

	get alive(): boolean {
		return this.child !== null && this.#exitCode === null;
	}

	/** The tail of the relay's stderr, for failure messages. */
	log(chars = 3000): string {
		return this.stderr.join("").slice(-chars);
	}

	/** SIGKILL, and waits for the exit. */
	async kill(): Promise<void> {
		const child = this.child;
		if (!child || this.#exitCode !== null) return;
		const exited = new Promise<void>((r) => child.once("exit", () => r()));
		child.kill("SIGKILL");
		await exited;
	}

	/**
	 * SIGTERM, a second one 500 ms later (a relay with cluster links would drain until they close:
	 * the second signal exits at once), SIGKILL after 5 s.
	 */
	async stop(): Promise<void> {
		const child = this.child;
		if (!child || this.#exitCode !== null) return;
		const exited = new Promise<void>((r) => child.once("exit", () => r()));
		child.kill("SIGTERM");
		const t1 = setTimeout(() => child.kill("SIGTERM"), 500);
		const t2 = setTimeout(() => child.kill("SIGKILL"), 5000);
		await exited;
		clearTimeout(t1);
		clearTimeout(t2);
	}

	async cluster(): Promise<ClusterPage> {
		const r = await httpGet(`${this.base}/cluster`);
		if (r.status !== 200) throw new Error(`${this.name}: GET /cluster: ${r.status} ${r.body}`);
		return JSON.parse(r.body) as ClusterPage;
	}

	/**
	 * Each worker's own /cluster page (its replica of the broadcasts, its local routes), keyed by
	 * worker index: /status (which names the worker that answered) and /cluster asked on one
	 * keep-alive connection, which one worker serves; new connections until every worker answered.
	 */
	async workerViews(workers = 2, tries = 40): Promise<Map<number, ClusterPage>> {
		const out = new Map<number, ClusterPage>();
		for (let i = 0; i < tries && out.size < workers; i++) {
			const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
			try {
				const status = await httpGet(`${this.base}/status`, 5000, agent);
				const page = await httpGet(`${this.base}/cluster`, 5000, agent);
				const again = await httpGet(`${this.base}/status`, 5000, agent);
				const w = (JSON.parse(status.body) as { worker: number }).worker;
				if ((JSON.parse(again.body) as { worker: number }).worker !== w) continue;
				if (!out.has(w)) out.set(w, JSON.parse(page.body) as ClusterPage);
			} finally {
				agent.destroy();
			}
		}
		if (out.size < workers) throw new Error(`${this.name}: only workers ${[...out.keys()]} answered /cluster`);
		return out;
	}

	async metrics(): Promise<Map<string, number>> {
		const r = await httpGet(`${this.base}/metrics`);
		if (r.status !== 200) throw new Error(`${this.name}: GET /metrics: ${r.status}`);
		return parseMetrics(r.body);
	}

	/** `GET /announced/<prefix>`: the broadcasts under prefix, relative to it. */
	async announced(prefix = "anon"): Promise<string[]> {
		const r = await httpGet(`${this.base}/announced/${prefix}`);
		if (r.status !== 200) throw new Error(`${this.name}: GET /announced/${prefix}: ${r.status} ${r.body}`);
		return r.body === "" ? [] : r.body.split("\n");
	}

	/** The WebSocket URL for clients under /anon. */
	clientUrl(): URL {
		return new URL(`${this.base}/anon`);
	}
}

/** The sum of a per-worker metric (series with a `worker` label) in a parsed scrape. */
export function workerSum(m: Map<string, number>, name: string): number {
	let sum = 0;
	for (const [k, v] of m) {
		if (k.startsWith(`${name}{`) && k.includes("worker=")) sum += v;
	}
	return sum;
}

/** A per-peer series (`peer="<url>"`, relay-wide) of the cluster metrics. */
export function peerSeries(m: Map<string, number>, name: string, url: string, extra = ""): number | undefined {
	return m.get(`${name}{peer="${url}"${extra ? `,${extra}` : ""}}`);
}

const CONNECT = { websocket: { delay: 0 } };

/** Frame shape of the test media: FRAMES frames per group, the first BIG bytes or a little more. */
export interface MediaShape {
	framesPerGroup: number;
	big: number;
}

/**
 * A @moq/net publisher over WebSocket: one broadcast with the given tracks, one group per track
 * every `intervalMs` (frames from frameBytes, the track's index in the frame header). Counts
 * the payload bytes written.
 */
export class Publisher {
	readonly conn: Net.Connection.Established;
	readonly broadcast: Net.Broadcast.Producer;
	readonly tracks: Net.Track.Producer[];
	readonly shape: MediaShape;
	/** The next group sequence (the same for every track: they advance together). */
	next = 0;
	/** Payload bytes written, per track. */
	bytes: number[];
	#timer: ReturnType<typeof setInterval> | null = null;

	private constructor(
		conn: Net.Connection.Established,
		broadcast: Net.Broadcast.Producer,
		tracks: Net.Track.Producer[],
		shape: MediaShape,
	) {
		this.conn = conn;
		this.broadcast = broadcast;
		this.tracks = tracks;
		this.shape = shape;
		this.bytes = tracks.map(() => 0);
	}

	static async open(node: ClusterNode, path: string, trackNames: string[], shape: MediaShape): Promise<Publisher> {
		const conn = await Net.Connection.connect(node.clientUrl(), CONNECT);
		const broadcast = new Net.Broadcast.Producer();
		const tracks = trackNames.map((t) => broadcast.createTrack(t));
		conn.publish(Net.Path.from(path), broadcast);
		return new Publisher(conn, broadcast, tracks, shape);
	}

	/** Writes one group on every track. */
	writeGroup(): void {
		const seq = this.next++;
		this.tracks.forEach((track, t) => {
			const g = track.appendGroup();
			if (g.sequence !== seq) throw new Error(`track ${track.name}: group ${g.sequence}, expected ${seq}`);
			for (let f = 0; f < this.shape.framesPerGroup; f++) {
				const payload = frameBytes(seq, f, this.shape.big, t);
				this.bytes[t] += payload.length;
				g.writeFrame({ payload, timestamp: Net.Time.Timestamp.now() });
			}
			g.close();
		});
	}

	start(intervalMs: number): void {
		if (this.#timer) return;
		this.#timer = setInterval(() => this.writeGroup(), intervalMs);
	}

	pause(): void {
		if (this.#timer) clearInterval(this.#timer);
		this.#timer = null;
	}

	/** A clean unpublish: the tracks and the broadcast end (the session stays up). */
	unpublish(): void {
		this.pause();
		for (const t of this.tracks) t.close();
		this.broadcast.close();
	}

	close(): void {
		this.pause();
		this.conn.close();
	}
}

/** One group as a viewer saw it. */
export interface SeenGroup {
	seq: number;
	/** performance.now() when the group's stream arrived. */
	at: number;
	frames: number;
	/** Frames that differ from what the publisher wrote (wrong bytes, or past framesPerGroup). */
	bad: number;
	/** The group stream ended with all its frames. */
	complete: boolean;
	/** The group stream failed (reset) or ended short. */
	error: string | null;
}

/**
 * A @moq/net viewer over WebSocket: waits for the broadcast's announcement on its own session,
 * subscribes to one track ONCE, and records every group (arrival time, frames checked byte-exact,
 * duplicates). It never re-subscribes: `subscribes` stays 1, and `ended` says when and how the
 * one subscription ended.
 */
export class Viewer {
	readonly name: string;
	readonly conn: Net.Connection.Established;
	readonly sub: Net.Track.Subscriber;
	readonly trackIndex: number;
	readonly shape: MediaShape;
	readonly groups = new Map<number, SeenGroup>();
	/** Group sequences received more than once. */
	readonly duplicates: number[] = [];
	readonly subscribes = 1;
	ended: { at: number; how: string } | null = null;

	private constructor(
		name: string,
		conn: Net.Connection.Established,
		sub: Net.Track.Subscriber,
		trackIndex: number,
		shape: MediaShape,
	) {
		this.name = name;
		this.conn = conn;
		this.sub = sub;
		this.trackIndex = trackIndex;
		this.shape = shape;
		void this.#run();
	}

	static async open(
		name: string,
		node: ClusterNode,
		path: string,
		track: string,
		trackIndex: number,
		shape: MediaShape,
		timeoutMs = 10_000,
	): Promise<Viewer> {
		const conn = await Net.Connection.connect(node.clientUrl(), CONNECT);
		const announced = conn.announced(Net.Path.from(""));
		const deadline = performance.now() + timeoutMs;
		try {
			for (;;) {
				const left = deadline - performance.now();
				const ev = await Promise.race([announced.next(), sleep(Math.max(0, left)).then(() => "timeout" as const)]);
				if (ev === "timeout") throw new Error(`${name}: ${path} not announced on ${node.name} within ${timeoutMs} ms`);
				if (!ev) throw new Error(`${name}: announcements on ${node.name} ended before ${path}`);
				if (ev.active && ev.path === path) break;
			}
		} catch (err) {
			conn.close();
			throw err;
		} finally {
			announced.close();
		}
		const sub = conn.consume(Net.Path.from(path)).subscribe(track);
		return new Viewer(name, conn, sub, trackIndex, shape);
	}

	async #run(): Promise<void> {
		for (;;) {
			let g: Awaited<ReturnType<Net.Track.Subscriber["recvGroup"]>>;
			try {
				g = await this.sub.recvGroup();
			} catch (err) {
				this.ended = { at: performance.now(), how: `error: ${String(err)}` };
				return;
			}
			if (!g) {
				this.ended = { at: performance.now(), how: "ended" };
				return;
			}
			const seen: SeenGroup = {
				seq: g.sequence,
				at: performance.now(),
				frames: 0,
				bad: 0,
				complete: false,
				error: null,
			};
			if (this.groups.has(g.sequence)) this.duplicates.push(g.sequence);
			else this.groups.set(g.sequence, seen);
			void this.#readGroup(g, seen);
		}
	}

	async #readGroup(g: NonNullable<Awaited<ReturnType<Net.Track.Subscriber["recvGroup"]>>>, seen: SeenGroup) {
		for (;;) {
			let f: Net.Group.Frame | undefined;
			try {
				f = await g.readFrame();
			} catch (err) {
				seen.error = String(err);
				return;
			}
			if (!f) break;
			const want =
				seen.frames < this.shape.framesPerGroup
					? frameBytes(seen.seq, seen.frames, this.shape.big, this.trackIndex)
					: null;
			if (!want || !sameBytes(f.payload, want)) seen.bad++;
			seen.frames++;
		}
		if (seen.frames === this.shape.framesPerGroup && seen.bad === 0) seen.complete = true;
		else if (seen.error === null) seen.error = `ended after ${seen.frames} frames`;
	}

	/** The newest group sequence received, or -1. */
	get newest(): number {
		let max = -1;
		for (const s of this.groups.keys()) if (s > max) max = s;
		return max;
	}

	/** Whether every group in [from, to] arrived complete and byte-exact. */
	completeRange(from: number, to: number): boolean {
		for (let s = from; s <= to; s++) if (!this.groups.get(s)?.complete) return false;
		return true;
	}

	/**
	 * What is wrong in [from, to]: missing groups, incomplete or corrupt ones, duplicates, an ended
	 * subscription. Empty when all is well.
	 */
	problems(from: number, to: number): string[] {
		const out: string[] = [];
		const missing: number[] = [];
		for (let s = from; s <= to; s++) {
			const g = this.groups.get(s);
			if (!g) missing.push(s);
			else if (!g.complete) out.push(`group ${s}: ${g.frames} frames, ${g.bad} bad, ${g.error ?? "still open"}`);
		}
		if (missing.length) out.push(`missing groups ${ranges(missing)}`);
		const dups = this.duplicates.filter((s) => s >= from && s <= to);
		if (dups.length) out.push(`duplicate groups ${ranges(dups)}`);
		const bad = [...this.groups.values()].filter((g) => g.bad > 0);
		if (bad.length) out.push(`corrupt frames in groups ${ranges(bad.map((g) => g.seq))}`);
		return out.map((p) => `${this.name}: ${p}`);
	}

	close(): void {
		this.sub.close();
		this.conn.close();
	}
}

/** [1,2,3,7,9,10] → "1-3,7,9-10". */
export function ranges(list: number[]): string {
	const s = [...new Set(list)].sort((a, b) => a - b);
	const out: string[] = [];
	for (let i = 0; i < s.length; ) {
		let j = i;
		while (j + 1 < s.length && s[j + 1] === s[j] + 1) j++;
		out.push(j === i ? String(s[i]) : `${s[i]}-${s[j]}`);
		i = j + 1;
	}
	return out.join(",");
}

/**
 * A condition for until() that asks a relay over HTTP: re-checked every `ms`, not every 5 ms (each
 * check opens connections, and a relay refuses more than [limits] handshake_rate_per_ip, 200/s
 * by default, from one address: the test's own clients and the relays' links included).
 */
export function paced(cond: () => Promise<boolean>, ms = 150): () => Promise<boolean> {
	return async () => {
		if (await cond()) return true;
		await sleep(ms);
		return false;
	};
}

/** Waits until every listed peer link of `node` is connected (as its /cluster says). */
export async function linksUp(node: ClusterNode, urls: string[], ms = 15_000): Promise<void> {
	let last: ClusterPage | null = null;
	await until(
		paced(async () => {
			last = await node.cluster().catch(() => null);
			if (!last) return false;
			return urls.every((u) => last!.peers.some((p) => p.url === u && p.state === "connected"));
		}),
		ms,
		`${node.name}: links to ${urls.join(" ")} connected`,
	).catch((err: Error) => {
		throw new Error(`${err.message}; /cluster: ${JSON.stringify(last?.peers)}; log: ${node.log(1500)}`);
	});
}

/** Stops every node at once (SIGTERM, then SIGKILL). */
export async function stopAll(nodes: ClusterNode[]): Promise<void> {
	await Promise.all(nodes.map((n) => n.stop()));
}
