/**
 * A relay worker thread: binds its own SO_REUSEPORT UDP and TCP sockets, runs the relay core for
 * its sessions, and links to the other workers (sharding by path hash, SAB rings, doorbells).
 */

import type dgram from "node:dgram";
import { CacheBudget } from "../cache/budget.ts";
import { Doorbell } from "../cache/doorbell.ts";
import type { RelayConfig } from "../config/types.ts";
import { createLogger } from "../log/logger.ts";
import { fanoutLatency } from "../metrics/latency.ts";
import { REFUSAL_FIELDS, renderMetrics, SESSION_CLOSE_FIELDS, sampleProcessInfo } from "../metrics/prometheus.ts";
import { SESSION_CLOSE_REASONS, sessionCloseCounts } from "../metrics/session-closes.ts";
import { FIELDS, Field, LATENCY_BUCKET_FIELDS } from "../pool/counters.ts";
import { connectToPool } from "../pool/worker-side.ts";
import { useQuicheInstance } from "../quic/native.ts";
import { Admission } from "../transport/admission.ts";
import { reportFault } from "../transport/guard.ts";
import { REFUSAL_REASONS, refusalCounts } from "../transport/refusals.ts";
import { drainUri, isRelayMessage, type PacketMessage } from "./messages.ts";
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
/** The node once it is up; packets and certificates that come earlier are dropped. */
let live: RelayNode | null = null;

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
	metrics: () => renderMetrics(ctx.figures(), sampleProcessInfo(init.version)),
	status: () => status!.collect(),
	// /health speaks for the relay, not for this thread: ready once every worker is, 503 meanwhile.
	readiness: () => {
		const s = ctx.poolState();
		const status = s.draining ? "draining" : s.ready < s.count ? "starting" : "ok";
		return { status, ready: s.ready, workers: s.count };
	},
});
live = node;
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
	slots[Field.cacheBytes] = node.relay.budget?.used ?? 0;
	const refusals = refusalCounts();
	for (const reason of REFUSAL_REASONS) count(Field[REFUSAL_FIELDS[reason]], refusals.byReason[reason]);
	count(Field.sessionFaults, refusals.faults);
	count(Field.quicRetries, quicStats.retries);
	slots[Field.quicHandshakes] = quicStats.handshakes;
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
