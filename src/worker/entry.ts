/**
 * A relay worker thread: binds its own SO_REUSEPORT UDP and TCP sockets, runs the relay core for
 * its sessions, and links to the other workers (sharding by path hash, SAB rings, doorbells).
 */

import type dgram from "node:dgram";
import { CacheBudget } from "../cache/budget.ts";
import { Doorbell } from "../cache/doorbell.ts";
import { ClusterLinks, type PeerStatus } from "../cluster/links.ts";
import type { RelayConfig } from "../config/types.ts";
import { createLogger } from "../log/logger.ts";
import { GC_PROBE } from "../metrics/collection.ts";
import { fanoutLatency } from "../metrics/latency.ts";
import { REFUSAL_FIELDS, renderMetrics, SESSION_CLOSE_FIELDS, sampleProcessInfo } from "../metrics/prometheus.ts";
import { SESSION_CLOSE_REASONS, sessionCloseCounts } from "../metrics/session-closes.ts";
import { FIELDS, Field, LATENCY_BUCKET_FIELDS } from "../pool/counters.ts";
import { connectToPool } from "../pool/worker-side.ts";
import { useQuicheInstance } from "../quic/native.ts";
import { Admission } from "../transport/admission.ts";
import { reportFault } from "../transport/guard.ts";
import { REFUSAL_REASONS, refusalCounts } from "../transport/refusals.ts";
import { GcProbeCollector } from "./gc-probe.ts";
import { drainUri, isRelayMessage, type PacketMessage } from "./messages.ts";
import { nativeHeapFigures, startNativeHeapTrim } from "./native-heap.ts";
import { admissionLimits, type RelayNode, startRelayNode } from "./relay-node.ts";
import { ShardLink } from "./shard-link.ts";
import { StatusCollector } from "./status.ts";

export interface WorkerInit {
	config: RelayConfig;
	tls: { cert: string; key: string; fingerprint: string };
	budget: SharedArrayBuffer;
	doorbell: SharedArrayBuffer;
	/** Relay-wide admission counts (transport/admission.ts). */
	admission: SharedArrayBuffer;
	/** QUIC Retry token key, the same in every worker (quic/retry.ts). */
	retryKey: Uint8Array;
	hopId: number;
	version: string;
}

const ctx = connectToPool();
// One quiche instance per slot, reused by each replacement thread (see quic/native.ts): restarts
// must not add mapped addon copies or native runtime threads.
useQuicheInstance(`w${ctx.index}`);
const init = ctx.data as WorkerInit;
const log = createLogger(init.config.log.level, init.config.log.format, { worker: ctx.index });
// Promise callbacks acting for one session are guarded where they are created (moq/lite/session.ts);
// a rejection nobody handled is a bug too, but not one that should take every session on this
// worker down with it (Node's default turns it into an uncaught exception): count and log it.
process.on("unhandledRejection", (reason) => reportFault(reason, log.warn, { where: "unhandled promise rejection" }));
let fingerprint = init.tls.fingerprint;
let link: ShardLink | null = null;
/** The status page's data (/status): set up with the relay core, before any listener opens. */
let status: StatusCollector | null = null;
/** `/debug/gc-probe` (MOQ_FANOUT_GC_PROBE=1 only): every worker's live object counts after collections. */
let gcProbe: GcProbeCollector | null = null;
/** The node once it is up; packets and certificates that come earlier are dropped. */
let live: RelayNode | null = null;
/** Worker 0: the cluster links it dials. The others: their last state, as worker 0 shared it. */
let links: ClusterLinks | null = null;
let clusterPeers: PeerStatus[] = [];

// Without SO_REUSEPORT, worker 0 owns the one UDP (and TCP) socket: it places new connections on
// workers by client address and relays the other workers' packets both ways (the "one receive
// thread" baseline the reuse-port mode is measured against).
const shared = !init.config.workers.reusePort && ctx.count > 1;
const socketOwner = !shared || ctx.index === 0;
const node = await startRelayNode({
	config: init.config,
	log,
	fingerprint: () => fingerprint,
	tls: init.tls,
	reusePort: init.config.workers.reusePort,
	spreadInitials: shared && socketOwner ? ctx.count : undefined,
	egress: socketOwner
		? undefined
		: (buf, length, port, host) => {
				// Copy now: the driver reuses `buf` as soon as this returns, and the message is cloned later.
				ctx.send(0, { type: "out", data: Buffer.from(buf.subarray(0, length)), port, host } satisfies PacketMessage);
			},
	noHttp: !socketOwner,
	budget: new CacheBudget(init.budget),
	admission: new Admission(admissionLimits(init.config), init.admission, ctx.index),
	worker: ctx.index,
	retryKey: init.retryKey,
	hopId: init.hopId,
	setup: (relay) => {
		link = new ShardLink(relay, ctx, new Doorbell(init.doorbell, ctx.index), log);
		status = new StatusCollector(relay, ctx, init.version);
		if (GC_PROBE) gcProbe = new GcProbeCollector(relay, ctx);
		ctx.onMessage(receive);
	},
	// SO_REUSEPORT hashes by 4-tuple, so after NAT rebinding a packet can land here for a
	// connection another worker owns: hand it over rather than drop it.
	onForeignPacket: (packet: Buffer, rinfo: dgram.RemoteInfo, owner: number) => {
		if (owner >= ctx.count) return;
		ctx.send(owner, {
			type: "pkt",
			data: packet,
			address: rinfo.address,
			port: rinfo.port,
			family: rinfo.family,
		} satisfies PacketMessage);
	},
	metrics: () =>
		renderMetrics(ctx.figures(), { ...sampleProcessInfo(init.version), nativeHeap: nativeHeapFigures() }) +
		clusterMetrics(),
	cluster: () => clusterPage(),
	status: () => status!.collect(),
	gcProbe: GC_PROBE
		? (query) => gcProbe!.collect({ gc: query.get("gc") !== "0", snapshot: query.get("snapshot") === "1" })
		: undefined,
	// /health speaks for the relay, not for this thread: ready once every worker is, 503 meanwhile.
	readiness: () => {
		const s = ctx.poolState();
		const status = s.draining ? "draining" : s.ready < s.count ? "starting" : "ok";
		return { status, ready: s.ready, workers: s.count };
	},
});
live = node;

// The allocator's arenas are process-wide: one worker trims them for the process.
if (ctx.index === 0) startNativeHeapTrim(init.config.workers.mallocTrimMs, ctx.counters);

// The cluster links are dialled by worker 0 alone: one session per peer per relay, whatever the
// worker count (docs/architecture.md). Their state reaches the other workers once a second for /cluster.
if (
	ctx.index === 0 &&
	init.config.cluster !== null &&
	(init.config.cluster.dial.length > 0 || init.config.cluster.mesh)
) {
	const cluster = new ClusterLinks({ config: init.config, log, relay: node.relay, startSession: node.dialSession });
	links = cluster;
	cluster.start();
	const share = setInterval(() => {
		clusterPeers = cluster.status();
		for (let to = 1; to < ctx.count; to++) ctx.send(to, { type: "cluster", peers: clusterPeers });
	}, 1000);
	share.unref();
}

/** Per-peer series for /metrics (worker 0's links; at most a second stale elsewhere). */
function clusterMetrics(): string {
	const peers = links ? links.status() : clusterPeers;
	if (peers.length === 0) return "";
	const label = (url: string) => `peer="${url.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
	const lines: string[] = [
		"# HELP moq_fanout_cluster_peer_up Whether the link to the peer relay is up.",
		"# TYPE moq_fanout_cluster_peer_up gauge",
		...peers.map((p) => `moq_fanout_cluster_peer_up{${label(p.url)}} ${p.state === "connected" ? 1 : 0}`),
		"# HELP moq_fanout_cluster_peer_bytes_total Bytes on the link to the peer relay (QUIC payload and overhead).",
		"# TYPE moq_fanout_cluster_peer_bytes_total counter",
		...peers.flatMap((p) => [
			`moq_fanout_cluster_peer_bytes_total{${label(p.url)},direction="in"} ${p.bytesIn}`,
			`moq_fanout_cluster_peer_bytes_total{${label(p.url)},direction="out"} ${p.bytesOut}`,
		]),
		"# HELP moq_fanout_cluster_peer_dials_total Dials made to the peer relay (the first, and every redial).",
		"# TYPE moq_fanout_cluster_peer_dials_total counter",
		...peers.map((p) => `moq_fanout_cluster_peer_dials_total{${label(p.url)}} ${p.dials}`),
	];
	return `${lines.join("\n")}\n`;
}

/** GET /cluster: our id, the links, and the route in use per broadcast (every worker holds a replica). */
function clusterPage(): unknown {
	const relay = live?.relay;
	if (!relay) return { starting: true };
	const c = init.config.cluster;
	return {
		id: relay.hopId,
		node: c?.node ?? null,
		tier: c?.tier ?? null,
		peers: links ? links.status() : clusterPeers,
		broadcasts: [...relay.broadcasts.values()].map((b) => ({
			path: b.path,
			worker: b.worker,
			hops: b.hops,
			splices: b.splices,
			lingering: b.lingering !== null,
			routes: relay.localRoutes(b.path),
		})),
	};
}
// SIGTERM while this worker was starting: the drain message found no node yet.
if (ctx.poolState().draining) node.drain(drainUri(init.config));

/** Every message to this worker, from the main thread (`from` = MAIN) or a peer, arrives here. */
function receive(from: number, msg: unknown): void {
	if (!isRelayMessage(msg)) return;
	switch (msg.type) {
		case "out":
			live?.quic.sendRaw(msg.data, msg.port, msg.host);
			return;
		case "pkt":
			live?.quic.injectPacket(Buffer.from(msg.data), {
				address: msg.address,
				port: msg.port,
				family: msg.family as "IPv4",
				size: msg.data.length,
			});
			return;
		case "drain": {
			if (live === null) return;
			const sent = live.drain(msg.uri);
			log.info("draining", { ...sent, redirect: msg.uri || null });
			// The main thread ends the drain early once no session is left: show it the counts now.
			publish();
			return;
		}
		case "crash":
			if (process.env.MOQ_FANOUT_DEBUG === "1") {
				setImmediate(() => {
					throw new Error("crash requested through the debug hook");
				});
			}
			return;
		case "tls":
			if (live === null) return;
			live.setCertificate(msg.cert, msg.key);
			fingerprint = msg.fingerprint;
			log.info("certificate replaced", { fingerprint });
			return;
		case "status?":
		case "status":
			status?.receive(from, msg);
			return;
		case "gc?":
		case "gc":
			gcProbe?.receive(from, msg);
			return;
		case "cluster":
			clusterPeers = msg.peers;
			return;
		default:
			// The shard link takes its messages from the start: it is attached before the listeners open.
			link?.receive(from, msg);
	}
}

// Per-worker figures for the main thread and /metrics: copied into shared memory once a second,
// so the hot path only bumps plain fields.
const slots = ctx.counters.slots;
const figures = node.relay.figures;
const quicStats = node.quic.stats;
// Counters continue from the previous thread of this slot (a replacement starts its own at zero):
// published as that base plus this thread's count, so they never go backwards across restarts.
const counterBase = new Float64Array(FIELDS.length);
for (let i = 0; i < FIELDS.length; i++) if (FIELDS[i].kind === "counter") counterBase[i] = slots[i];
const count = (field: number, value: number) => {
	slots[field] = counterBase[field] + value;
};
const publish = () => {
	slots[Field.sessionsQuic] = node.sessionsByKind.quic;
	slots[Field.sessionsWebTransport] = node.sessionsByKind.webtransport;
	slots[Field.sessionsWebSocket] = node.sessionsByKind.websocket;
	slots[Field.subscriptions] = figures.subscriptions;
	slots[Field.broadcasts] = figures.broadcasts;
	slots[Field.tracks] = figures.tracks;
	count(Field.bytesIn, figures.bytesIn);
	count(Field.bytesOut, figures.bytesOut);
	count(Field.groupsIn, figures.groupsIn);
	count(Field.groupsOut, figures.groupsOut);
	count(Field.groupsDropped, figures.groupsDropped);
	count(Field.framesIn, figures.framesIn);
	count(Field.packetsIn, quicStats.packetsIn);
	count(Field.packetsOut, quicStats.packetsOut);
	slots[Field.cacheBytes] = node.relay.localCacheBytes();
	slots[Field.upstreamSubscriptions] = node.relay.upstreamSubscriptions();
	count(Field.routeChanges, node.relay.routeChanges);
	const refusals = refusalCounts();
	for (const reason of REFUSAL_REASONS) count(Field[REFUSAL_FIELDS[reason]], refusals.byReason[reason]);
	count(Field.sessionFaults, refusals.faults);
	count(Field.quicRetries, quicStats.retries);
	count(Field.quicPacketsGso, quicStats.packetsOutGso);
	count(Field.quicPacketsBatched, quicStats.packetsOutBatched);
	count(Field.quicPacketsDgram, quicStats.packetsOutDgram);
	count(Field.quicSendSyscalls, quicStats.sendSyscalls);
	count(Field.quicGsoFallbacks, quicStats.gsoFallbacks);
	count(Field.quicSendStalls, quicStats.sendStalls);
	count(Field.quicRecvSyscalls, quicStats.recvSyscalls);
	count(Field.quicEngineReads, quicStats.engineReads);
	count(Field.quicSharedWrites, quicStats.sharedWrites);
	count(Field.quicSharedWriteStreams, quicStats.sharedWriteStreams);
	slots[Field.quicHandshakes] = quicStats.handshakes;
	slots[Field.quicUdpRecvBufferBytes] = node.quic.udpBuffers.recv;
	slots[Field.quicUdpSendBufferBytes] = node.quic.udpBuffers.send;
	const receiveQueue = node.quic.readReceiveQueue();
	if (receiveQueue !== null) {
		slots[Field.quicUdpRecvQueueBytes] = receiveQueue.bytes;
		count(Field.quicUdpRecvDrops, receiveQueue.drops);
	}
	const sendBuffers = node.quic.engine.sendBufferStats?.();
	if (sendBuffers) {
		count(Field.quicSendCopiedBytes, sendBuffers.copiedBytes);
		slots[Field.quicSendBufferBytes] = sendBuffers.heldBytes;
	}
	slots[Field.tcpConnections] = node.tcpConnections();
	// Every worker holds a replica of every broadcast; the one holding its publisher counts it here.
	let published = 0;
	for (const b of node.relay.broadcasts.values()) if (b.publisher !== null) published++;
	slots[Field.broadcastsPublished] = published;
	const closes = sessionCloseCounts();
	for (const reason of SESSION_CLOSE_REASONS) count(Field[SESSION_CLOSE_FIELDS[reason]], closes[reason]);
	for (let i = 0; i < LATENCY_BUCKET_FIELDS.length; i++) {
		count(Field[LATENCY_BUCKET_FIELDS[i]], fanoutLatency.counts[i]);
	}
	count(Field.latencySumMicros, fanoutLatency.sumMicros);
};
const timer = setInterval(publish, 1000);
timer.unref();

ctx.onShutdown(async () => {
	clearInterval(timer);
	await node.close();
});
publish();
ctx.ready({ httpPort: node.httpPort, quicPort: node.quicPort });
