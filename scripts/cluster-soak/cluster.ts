/**
 * The cluster a churn soak runs against: N real relay processes (`--workers 2` each) on loopback,
 * a full mesh built from ONE shared `nodes` list (one config file, no `node` key: each relay finds
 * its own entry by its port, and of each pair the relay with the smaller URL dials), linger 1 s,
 * peer idle timeout 2 s. And what the soak reads of each relay: its RSS (/proc), every worker's
 * /cluster view (broadcasts, routes offered, lingering ones) and its /metrics counts.
 * @module
 */

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { processRss } from "../../bench/lib/procstat.ts";
import {
	type ClusterNode,
	type ClusterPage,
	type ClusterSecrets,
	clusterPort,
	httpGet,
	linksUp,
	makeSecrets,
	ClusterNode as Node,
	peerUrl,
	relayToml,
	stopAll,
	workerSum,
} from "../../test/support/cluster.ts";

export interface SoakClusterOptions {
	/** Relays in the mesh (3..5). */
	relays: number;
	/** Worker threads per relay (default 2). */
	workers?: number;
	/** `[cluster] linger` in ms (default 1000). */
	lingerMs?: number;
	/** `[cluster] peer_idle_timeout` in ms (default 2000). */
	peerIdleMs?: number;
}

/** One reading of one relay. */
export interface RelayReading {
	/** VmRSS of the relay process (its workers are threads of it), bytes. */
	rss: number;
	/** Broadcasts on the relay: the most any worker's /cluster lists (each worker holds a replica of each). */
	broadcasts: number;
	/** Routes offered: every worker's local routes of every broadcast, summed. */
	routes: number;
	/** Broadcasts marked lingering (their route vanished), the most on any worker. */
	lingering: number;
	/** Every broadcast path any worker listed. */
	paths: string[];
	/** Per worker: [broadcasts, routes, lingering], for excerpts. */
	perWorker: Record<number, [number, number, number]>;
	/** moq_fanout_broadcasts summed over workers (replicas: a broadcast counts once per worker). */
	replicas: number;
	/** moq_fanout_relay_broadcasts (each broadcast once). */
	relayBroadcasts: number;
	/** moq_fanout_upstream_subscriptions summed over workers. */
	upstreams: number;
	/** moq_fanout_subscriptions summed over workers. */
	subscriptions: number;
	/** moq_fanout_tracks summed over workers. */
	tracks: number;
	/** moq_fanout_sessions summed over workers (the cluster links included). */
	sessions: number;
	/**
	 * moq_fanout_cache_bytes: ring bytes taken from the relay's cache budget (one counter shared by
	 * the workers, each series reports all of it: the largest series).
	 */
	cacheBytes: number;
	/** moq_fanout_route_changes_total summed over workers. */
	routeChanges: number;
	/** moq_fanout_cluster_peer_up: links this relay dials that are up / that it dials. */
	peersUp: number;
	peersDialled: number;
	/** moq_fanout_session_faults_total and moq_fanout_worker_restarts_total (summed). */
	sessionFaults: number;
	workerRestarts: number;
}

/** The counts that must return to what they were before the churn. */
export const REST_COUNTS = [
	"broadcasts",
	"routes",
	"lingering",
	"replicas",
	"relayBroadcasts",
	"upstreams",
	"subscriptions",
	"tracks",
	"sessions",
	"cacheBytes",
	"peersUp",
] as const satisfies readonly (keyof RelayReading)[];
export type RestCount = (typeof REST_COUNTS)[number];

export class SoakCluster {
	readonly secrets: ClusterSecrets;
	readonly nodes: ClusterNode[];
	readonly workers: number;
	readonly lingerMs: number;
	readonly peerIdleMs: number;
	/** Each relay's hop id (from its /cluster), by index. */
	ids: number[] = [];
	/** Relay exits seen while it was meant to run: name, code or signal, when (performance.now()). */
	readonly exits: { relay: string; code: number | string | null; at: number }[] = [];
	#stopping = false;

	private constructor(
		secrets: ClusterSecrets,
		nodes: ClusterNode[],
		workers: number,
		lingerMs: number,
		peerIdleMs: number,
	) {
		this.secrets = secrets;
		this.nodes = nodes;
		this.workers = workers;
		this.lingerMs = lingerMs;
		this.peerIdleMs = peerIdleMs;
	}

	/** Starts the relays and waits until every link of the mesh is up. */
	static async start(opts: SoakClusterOptions): Promise<SoakCluster> {
		const workers = opts.workers ?? 2;
		const lingerMs = opts.lingerMs ?? 1000;
		const peerIdleMs = opts.peerIdleMs ?? 2000;
		const secrets = makeSecrets();
		const ports: number[] = [];
		while (ports.length < opts.relays) ports.push(await clusterPort(ports));
		// One file for every relay, as the guide has it: the same `nodes` list, no `node`.
		const config = join(secrets.dir, "cluster-soak.toml");
		writeFileSync(
			config,
			relayToml(secrets, { nodes: ports.map(peerUrl), linger: `${lingerMs}ms`, peerIdleTimeout: `${peerIdleMs}ms` }),
		);
		const nodes = ports.map((p, i) => new Node(`r${i}`, p, config));
		const cluster = new SoakCluster(secrets, nodes, workers, lingerMs, peerIdleMs);
		try {
			await Promise.all(nodes.map((n) => n.start(workers)));
			for (const n of nodes) {
				n.child!.once("exit", (code, signal) => {
					if (!cluster.#stopping) cluster.exits.push({ relay: n.name, code: code ?? signal, at: performance.now() });
				});
			}
			for (const n of nodes) await linksUp(n, cluster.dials(n), 20_000);
			cluster.ids = await Promise.all(nodes.map(async (n) => (await n.cluster()).id));
		} catch (err) {
			await cluster.stop();
			throw err;
		}
		return cluster;
	}

	/** The URLs `n` dials: the larger ones of the list. */
	dials(n: ClusterNode): string[] {
		return this.nodes.filter((o) => o !== n && n.url < o.url).map((o) => o.url);
	}

	get allAlive(): boolean {
		return this.nodes.every((n) => n.alive);
	}

	/** Reads one relay: RSS, every worker's /cluster, /metrics. Throws if the relay does not answer. */
	async read(n: ClusterNode): Promise<RelayReading> {
		const pid = n.child?.pid;
		const rss = pid === undefined ? null : processRss(pid);
		if (rss === null || !n.alive) throw new Error(`${n.name}: the relay process is gone`);
		const [views, m] = await Promise.all([n.workerViews(this.workers), n.metrics()]);
		let broadcasts = 0;
		let routes = 0;
		let lingering = 0;
		const paths = new Set<string>();
		const perWorker: Record<number, [number, number, number]> = {};
		for (const [w, page] of views) {
			const r = page.broadcasts.reduce((a, b) => a + b.routes.length, 0);
			const l = page.broadcasts.filter((b) => b.lingering).length;
			perWorker[w] = [page.broadcasts.length, r, l];
			broadcasts = Math.max(broadcasts, page.broadcasts.length);
			lingering = Math.max(lingering, l);
			routes += r;
			for (const b of page.broadcasts) paths.add(b.path);
		}
		const dialled = this.dials(n);
		let peersUp = 0;
		for (const url of dialled) if (m.get(`moq_fanout_cluster_peer_up{peer="${url}"}`) === 1) peersUp++;
		return {
			rss,
			broadcasts,
			routes,
			lingering,
			paths: [...paths].sort(),
			perWorker,
			replicas: workerSum(m, "moq_fanout_broadcasts"),
			relayBroadcasts: m.get("moq_fanout_relay_broadcasts") ?? workerSum(m, "moq_fanout_published_broadcasts"),
			upstreams: workerSum(m, "moq_fanout_upstream_subscriptions"),
			subscriptions: workerSum(m, "moq_fanout_subscriptions"),
			tracks: workerSum(m, "moq_fanout_tracks"),
			sessions: workerSum(m, "moq_fanout_sessions"),
			cacheBytes: Math.max(0, ...[...m].filter(([k]) => k.startsWith("moq_fanout_cache_bytes{")).map(([, v]) => v)),
			routeChanges: workerSum(m, "moq_fanout_route_changes_total"),
			peersUp,
			peersDialled: dialled.length,
			sessionFaults: workerSum(m, "moq_fanout_session_faults_total"),
			workerRestarts: m.get("moq_fanout_worker_restarts_total") ?? workerSum(m, "moq_fanout_worker_restarts_total"),
		};
	}

	/** One relay's /cluster pages, per worker, as compact JSON (for reports of what was left behind). */
	async excerpt(n: ClusterNode, chars = 1500): Promise<string> {
		try {
			const views: Map<number, ClusterPage> = await n.workerViews(this.workers);
			const text = [...views]
				.sort(([a], [b]) => a - b)
				.map(
					([w, p]) =>
						`w${w}: ${JSON.stringify({
							peers: p.peers.map((x) => `${x.url} ${x.state}`),
							broadcasts: p.broadcasts.map((b) => ({
								path: b.path,
								worker: b.worker,
								hops: this.hopNames(b.hops),
								splices: b.splices,
								lingering: b.lingering,
								routes: b.routes.map((r) => `${r.peer ? "peer" : "local"} ${this.hopNames(r.hops)}`),
							})),
						})}`,
				)
				.join("\n");
			return text.length > chars ? `${text.slice(0, chars)}…` : text;
		} catch (err) {
			return `(/cluster unavailable: ${(err as Error).message})`;
		}
	}

	/** The non-zero per-worker series of the relay's session, subscription, track and broadcast gauges. */
	async metricsExcerpt(n: ClusterNode): Promise<string> {
		try {
			const r = await httpGet(`${n.base}/metrics`);
			return r.body
				.split("\n")
				.filter((l) =>
					/^moq_fanout_(sessions|subscriptions|upstream_subscriptions|tracks|broadcasts|relay_broadcasts)[{ ]/.test(l),
				)
				.filter((l) => !l.endsWith(" 0"))
				.join(" ");
		} catch (err) {
			return `(/metrics unavailable: ${(err as Error).message})`;
		}
	}

	/** Hops as "pub>r1>r2": relay ids by relay name, a publishing client's id as pub. */
	hopNames(hops: readonly number[]): string {
		return hops
			.map((h, i) => {
				const k = this.ids.indexOf(h);
				return k >= 0 ? this.nodes[k].name : i === 0 ? "pub" : `?${h}`;
			})
			.join(">");
	}

	/** The tail of every relay's stderr that has something in it. */
	logs(chars = 1500): string {
		return this.nodes
			.map((n) => [n.name, n.log(chars).replace(/^.*second signal while draining.*\n?/gm, "")] as const)
			.filter(([, log]) => log.trim() !== "")
			.map(([name, log]) => `--- ${name} stderr (tail):\n${log}`)
			.join("\n");
	}

	/** Stops every relay (SIGTERM, SIGKILL after 5 s), removes the scratch directory; exit codes. */
	async stop(): Promise<(number | string | null)[]> {
		this.#stopping = true;
		const codes = this.nodes.map((n) => {
			const child = n.child;
			return child
				? new Promise<number | string | null>((r) => {
						if (child.exitCode !== null || child.signalCode !== null) r(child.exitCode ?? child.signalCode);
						else child.once("exit", (code, signal) => r(code ?? signal));
					})
				: Promise.resolve(null);
		});
		await stopAll(this.nodes);
		this.secrets.remove();
		return Promise.all(codes);
	}
}
