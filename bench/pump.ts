/**
 * The bare baseline of `npm run bench`: a minimal QUIC server on the relay's own quiche binding
 * (src/quic/native.ts) and transport configuration (src/quic/config.ts), pushing stream data as fast
 * as flow and congestion control allow to every client that connects, and nothing else: no relay,
 * no moq-lite, no driver, no per-stream queues. Its CPU per egress packet is what quiche plus the UDP
 * send path cost on this machine; the relay's CPU per packet is reported as a multiple of it.
 *
 * Egress: `dgram` sends each packet with `dgram.send` (as the relay does without the native addon);
 * `gso` hands each round's packets to native/build/udp.node's `sendBatch` (sendmmsg, with same-size
 * runs to one destination as GSO super-packets), as the relay's sender does with the addon.
 * `ngtcp2` is the same loop and the same GSO egress on the relay's other engine (native/ngtcp2.c):
 * its `sendBatch` builds a peer's packets straight into the batch slots in one call, as the relay's
 * connection.ts has it do. Its CPU per packet is the floor that engine and this kernel set for a
 * server of this loop, with no relay above it: the relay on ngtcp2 is reported against it.
 *
 * Two audiences: bulk (each connection takes all that flow and congestion control let through) and
 * media (`PumpMedia`: the bench's track, paced by its frame rate, to as many connections as the
 * relay runs serve), so the relay's CPU per packet can be set against its engine's under the same
 * audience, with only the relay missing.
 *
 * Ingress: `dgram` reads with dgram's 'message' events; `gso` and `ngtcp2` read as the relay does
 * with the addon (src/quic/receiver.ts: recvmmsg batches), and on ngtcp2 the engine reads the
 * established connections' packets of each batch itself (`recvMany`, as the relay's engine reads).
 *
 * A child process of the bench (bench/lib/pump-trial.ts), driven over IPC: "start" → "ready" with
 * its port and certificate fingerprint; "mark" → its counters so far; "stop" exits. Same loop as
 * our prototype of it (/work/shared/spikes/quiche/quiche_push.mjs), on the relay's configuration.
 */

import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { DEFAULT_QUIC_LIMITS } from "../src/quic/config.ts";
import { type Ngtcp2ConnectionExtras, selectEngine } from "../src/quic/engine.ts";
import { loadQuiche, type QuicheConnection } from "../src/quic/native.ts";
import { BatchReceiver, RECV_SLOT_SIZE } from "../src/quic/receiver.ts";
import { loadUdpNative, OutSlot, StopReason, type UdpNative, udpNativeUnavailable } from "../src/quic/udp-native.ts";
import { generateCertificate } from "../src/tls/generate.ts";
import { frameSizes, type TrackShape } from "./lib/payload.ts";

/** quiche with dgram egress, quiche with the GSO addon, the ngtcp2 engine with the GSO addon. */
export type PumpEgress = "dgram" | "gso" | "ngtcp2";

/**
 * What the pump sends: `null` pushes as fast as flow and congestion control take it (bulk); a track
 * shape sends the bench's track to every connection instead (the relay's audience, with no relay):
 * at each frame tick the frame's bytes go to every connection at once (a new stream per group, the
 * keyframe `keyframeWeight` × a delta frame, all connections' keyframes in the same tick), as a
 * relay forwards one track to its viewers.
 */
export type PumpMedia = TrackShape | null;

export type ToPump =
	| { type: "start"; egress: PumpEgress; connections: number; media?: PumpMedia }
	| { type: "mark" }
	| { type: "stop" };

export interface PumpCounters {
	/** Packets handed to the kernel (or to dgram) since start. */
	packetsOut: number;
	packetsIn: number;
	/** Send system calls: one per dgram.send, the addon's sendmmsg calls. */
	sendSyscalls: number;
	/** Packets that left inside GSO super-packets. */
	gsoPackets: number;
	/** Connections established so far. */
	established: number;
	/** quiche's view, summed / averaged over the connections when marked: packets lost, cwnd (bytes), RTT (ms). */
	lost: number;
	cwnd: number;
	rttMs: number;
	/**
	 * This process's CPU (user + system, every thread: getrusage) in µs, and the monotonic time in ms,
	 * when marked: taken at the same instant as the packet count, so a mark answered late by a busy
	 * pump still pairs its CPU with its packets.
	 */
	cpuMicros: number;
	atMs: number;
}

export type FromPump =
	| { type: "ready"; port: number; fingerprint: string }
	| ({ type: "mark" } & PumpCounters)
	| { type: "error"; message: string };

/** The relay's largest UDP payload (src/quic/config.ts) and per-packet buffer (src/quic/sender.ts). */
const MAX_UDP_PAYLOAD = 1350;
const PACKET_BUFFER = 1500;
/** Packets per connection per round: the relay's per-flush cap (src/quic/connection.ts). */
const BURST = 64;
/** Stream writes per connection per round (64 KiB each) while quiche takes them. */
const WRITES = 8;
/** Packets per sendBatch call (the relay's BATCH_PACKETS). */
const BATCH = 256;
const ADDRESS_STRIDE = 32;
const FLAG_GSO = 1;
const CID_LEN = 20;
/** The ngtcp2 engine reads packets itself only for connection IDs of this length (server.ts issues them). */
const ENGINE_READ_CID_LEN = 16;
/** The first server-initiated unidirectional stream. */
const STREAM = 3;
const DATA = Buffer.alloc(64 * 1024, 0x6d);
/** Media: the bytes of any frame (the raw readers only count them); a keyframe is well under 1 MiB. */
const FRAME = Buffer.alloc(1024 * 1024, 0x66);
const EMPTY = Buffer.alloc(0);

const send = (m: FromPump) => process.send?.(m);

interface Peer {
	readonly conn: QuicheConnection;
	/** The ngtcp2 engine's batch builder (null on quiche). */
	readonly batch: Ngtcp2ConnectionExtras["sendBatch"] | null;
	readonly host: string;
	readonly port: number;
	/** This peer's entry in the address table (GSO egress). */
	readonly entry: number;
	/** Built once, as the relay does: quiche's recv takes the path per packet. */
	readonly recvInfo: { from: { host: string; port: number }; to: { host: string; port: number } };
	established: boolean;
	/** The ngtcp2 engine: enableFastRecv, called once the handshake is done (as connection.ts does). */
	readonly enableEngineReads: (() => boolean) | null;
	/** Media: the current group's stream (-1 until the peer's first group), the next one's id. */
	stream: number;
	nextStream: number;
	/** Media: bytes of the current frame that the engine has not taken yet. */
	pending: number;
}

/** Node keeps a dgram socket's libuv handle (with its fd) under a symbol; see src/quic/sender.ts. */
function socketFd(socket: dgram.Socket): number {
	for (const symbol of Object.getOwnPropertySymbols(socket)) {
		if (symbol.description !== "state symbol") continue;
		const state = (socket as unknown as Record<symbol, { handle?: { fd?: number } } | undefined>)[symbol];
		const fd = state?.handle?.fd;
		if (typeof fd === "number" && fd >= 0) return fd;
	}
	return -1;
}

async function start(egress: PumpEgress, connections: number, media: PumpMedia): Promise<void> {
	let udp: UdpNative | null = null;
	if (egress !== "dgram") {
		udp = loadUdpNative();
		if (udp === null) throw new Error(`GSO egress needs the native addon: ${udpNativeUnavailable()}`);
	}
	// The relay's engine selection, accept and transport configuration (src/quic/engine.ts); "ngtcp2"
	// throws when its addon is not built.
	const engine = selectEngine(egress === "ngtcp2" ? "ngtcp2" : "quiche");
	const ngtcp2 = engine.name === "ngtcp2";
	const cert = generateCertificate(["localhost", "127.0.0.1"]);
	const quiche = loadQuiche();
	const config = engine.buildConfig(cert.certPem, cert.keyPem, ["moq-lite-05"], DEFAULT_QUIC_LIMITS);
	const socket = dgram.createSocket("udp4");
	await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
	// The relay's socket buffers (src/quic/server.ts).
	socket.setRecvBufferSize(4 * 1024 * 1024);
	socket.setSendBufferSize(4 * 1024 * 1024);
	const port = socket.address().port;
	const local = { host: "127.0.0.1", port };
	const fd = socketFd(socket);
	if (udp !== null && fd < 0) throw new Error("GSO egress: no file descriptor on the dgram socket");

	const counters: PumpCounters = {
		packetsOut: 0,
		packetsIn: 0,
		sendSyscalls: 0,
		gsoPackets: 0,
		established: 0,
		lost: 0,
		cwnd: 0,
		rttMs: 0,
		cpuMicros: 0,
		atMs: 0,
	};
	/** Fills the quiche-side figures (stats() costs tens of µs per call: on request only, never per packet). */
	const pathFigures = (): void => {
		let lost = 0;
		let cwnd = 0;
		let rtt = 0;
		let paths = 0;
		for (const peer of peers.values()) {
			lost += peer.conn.stats().lost;
			for (const path of peer.conn.pathStats()) {
				if (!path.active) continue;
				cwnd += path.cwnd;
				rtt += path.rtt;
				paths++;
			}
		}
		counters.lost = lost;
		counters.cwnd = paths > 0 ? Math.round(cwnd / paths) : 0;
		// The binding reports whole milliseconds.
		counters.rttMs = paths > 0 ? Math.round((rtt / paths) * 100) / 100 : 0;
	};
	// Keyed by port alone: every client is on 127.0.0.1 (a string key per packet would charge the baseline).
	const peers = new Map<number, Peer>();
	const addresses = new Uint8Array(Math.max(1, connections) * ADDRESS_STRIDE);
	const slots = Buffer.allocUnsafeSlow(BATCH * PACKET_BUFFER);
	const slotViews = Array.from({ length: BATCH }, (_, i) => slots.subarray(i * PACKET_BUFFER, (i + 1) * PACKET_BUFFER));
	/** The batch from slot i to its end: where a run of the ngtcp2 engine's packets is built (no view per call). */
	const runViews = Array.from({ length: BATCH }, (_, i) => slots.subarray(i * PACKET_BUFFER));
	const meta = new Int32Array(2 * BATCH);
	const runSizes = new Uint16Array(BATCH);
	const slotPeers: Peer[] = new Array(BATCH);
	const out = new Float64Array(OutSlot.count);
	let batched = 0;

	const onDatagram = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
		counters.packetsIn++;
		let peer = peers.get(rinfo.port);
		if (peer === undefined) {
			if (peers.size >= connections) return;
			try {
				quiche.Header.fromSlice(msg, CID_LEN);
			} catch {
				return;
			}
			const scid = randomBytes(ngtcp2 ? ENGINE_READ_CID_LEN : CID_LEN);
			const remote = { host: rinfo.address, port: rinfo.port };
			const conn = engine.accept(scid, null, local, remote, config);
			const extras = conn as Partial<Ngtcp2ConnectionExtras>;
			const batch = extras.sendBatch;
			const enable = extras.enableFastRecv;
			peer = {
				conn,
				batch: ngtcp2 && batch !== undefined ? batch.bind(conn) : null,
				host: rinfo.address,
				port: rinfo.port,
				entry: peers.size,
				recvInfo: { from: { host: rinfo.address, port: rinfo.port }, to: local },
				established: false,
				enableEngineReads: ngtcp2 && enable !== undefined ? enable.bind(conn) : null,
				stream: -1,
				nextStream: STREAM,
				pending: 0,
			};
			if (udp !== null) udp.writeSockaddr(addresses, peer.entry * ADDRESS_STRIDE, rinfo.address, rinfo.port, false);
			peers.set(rinfo.port, peer);
		}
		try {
			// The ngtcp2 engine takes the peer's address only when it changed (it never does here), as
			// the relay passes it; quiche wants it with every packet.
			if (peer.batch !== null) (peer.conn as unknown as { recv(data: Buffer): number }).recv(msg);
			else peer.conn.recv(msg, peer.recvInfo);
		} catch {
			// undecryptable or late: quiche has dealt with it
		}
		schedule();
	};
	// The relay's ingress with the addon (recvmmsg), and on ngtcp2 its engine reads; dgram otherwise.
	const receiver = udp !== null ? BatchReceiver.start(socket, udp, { recvSyscalls: 0, garbage: 0 }, onDatagram) : null;
	if (receiver === null) socket.on("message", onDatagram);
	else if (engine.recvMany !== null) {
		const recvMany = engine.recvMany;
		receiver.intake = (buffer, recvMeta, count, taken) => {
			let n = 0;
			try {
				n = recvMany(buffer, RECV_SLOT_SIZE, recvMeta, count, taken);
			} catch {
				return 0;
			}
			if (n > 0) {
				counters.packetsIn += n;
				schedule();
			}
			return n;
		};
	}

	/** Sends the batch; what the addon does not take goes through dgram (copied: dgram reads it later). */
	const flushBatch = (): void => {
		if (batched === 0) return;
		let done = 0;
		try {
			done = udp!.sendBatch(fd, slots, PACKET_BUFFER, meta, batched, addresses, FLAG_GSO, out);
		} catch {
			done = 0;
		}
		counters.sendSyscalls += out[OutSlot.syscalls];
		counters.gsoPackets += out[OutSlot.gsoPackets];
		if (done < batched && out[OutSlot.stop] === StopReason.socketError) throw new Error("sendBatch: socket error");
		for (let i = done; i < batched; i++) {
			const p = slotPeers[i];
			socket.send(Buffer.from(slotViews[i].subarray(0, meta[2 * i])), p.port, p.host);
			counters.sendSyscalls++;
		}
		counters.packetsOut += batched;
		batched = 0;
	};

	/** Up to BURST of `peer`'s packets: to dgram one by one, or into the batch. */
	const drainPeer = (peer: Peer): number => {
		if (peer.batch !== null) return drainBatched(peer, peer.batch);
		let n = 0;
		for (; n < BURST; n++) {
			let result: [number, unknown] | null;
			if (udp === null) {
				const buf = Buffer.allocUnsafe(PACKET_BUFFER);
				try {
					result = peer.conn.send(buf);
				} catch {
					result = null;
				}
				if (result === null) break;
				socket.send(buf.subarray(0, result[0]), peer.port, peer.host);
				counters.sendSyscalls++;
				counters.packetsOut++;
				continue;
			}
			try {
				result = peer.conn.send(slotViews[batched].subarray(0, MAX_UDP_PAYLOAD));
			} catch {
				result = null;
			}
			if (result === null) break;
			meta[2 * batched] = result[0];
			meta[2 * batched + 1] = peer.entry;
			slotPeers[batched] = peer;
			if (++batched === BATCH) flushBatch();
		}
		return n;
	};

	/** The ngtcp2 engine: runs of the peer's packets built straight into the free batch slots. */
	const drainBatched = (peer: Peer, build: Ngtcp2ConnectionExtras["sendBatch"]): number => {
		let n = 0;
		while (n < BURST) {
			const want = Math.min(BURST - n, BATCH - batched);
			let built: number;
			try {
				built = build(runViews[batched], runSizes, want, PACKET_BUFFER);
			} catch {
				built = 0;
			}
			for (let i = 0; i < built; i++) {
				meta[2 * batched] = runSizes[i];
				meta[2 * batched + 1] = peer.entry;
				slotPeers[batched] = peer;
				batched++;
			}
			n += built;
			if (batched === BATCH) flushBatch();
			if (built < want) break;
		}
		return n;
	};

	let scheduled = false;
	let timer: NodeJS.Timeout | null = null;
	const schedule = (): void => {
		if (scheduled) return;
		scheduled = true;
		setImmediate(pump);
	};
	const onTimer = (): void => {
		timer = null;
		for (const peer of peers.values()) {
			const t = peer.conn.timeout();
			if (t !== null && t <= 0) peer.conn.onTimeout();
		}
		schedule();
	};
	const pump = (): void => {
		scheduled = false;
		let wrote = 0;
		let nearest = Number.POSITIVE_INFINITY;
		for (const peer of peers.values()) {
			const conn = peer.conn;
			if (!peer.established && conn.isEstablished()) {
				peer.established = true;
				counters.established++;
				peer.enableEngineReads?.();
			}
			if (media !== null) {
				if (peer.pending > 0) offer(peer);
			} else if (peer.established) {
				for (let k = 0; k < WRITES; k++) {
					let taken: number | null;
					try {
						taken = conn.streamSend(STREAM, DATA, false);
					} catch {
						taken = null;
					}
					if (!taken) break;
				}
			}
			wrote += drainPeer(peer);
			const t = conn.timeout();
			if (t !== null && t < nearest) nearest = t;
		}
		flushBatch();
		if (wrote > 0) schedule();
		else {
			if (timer !== null) clearTimeout(timer);
			if (nearest !== Number.POSITIVE_INFINITY) timer = setTimeout(onTimer, Math.max(0, nearest));
		}
	};

	/** Media: as much of the current frame as the engine takes now (the rest on the next rounds). */
	const offer = (peer: Peer, whole?: Buffer): void => {
		let taken: number | null;
		try {
			taken = peer.conn.streamSend(peer.stream, whole ?? FRAME.subarray(0, peer.pending), false);
		} catch {
			taken = null;
		}
		if (taken === null) peer.pending = 0;
		else peer.pending -= taken;
	};
	if (media !== null) {
		const sizes = frameSizes(media).map((n) => Math.min(n, FRAME.length));
		/** Each frame of the group whole, made once (a frame's rest after a partial take gets its own view). */
		const frames = sizes.map((n) => FRAME.subarray(0, n));
		let index = 0;
		setInterval(() => {
			const first = index === 0;
			for (const peer of peers.values()) {
				if (!peer.established) continue;
				if (first) {
					// The group ends (what the engine has not taken of it is dropped), the next one opens.
					if (peer.stream >= 0) {
						try {
							peer.conn.streamSend(peer.stream, EMPTY, true);
						} catch {
							// the stream failed: nothing to finish
						}
					}
					peer.stream = peer.nextStream;
					peer.nextStream += 4;
				} else if (peer.stream < 0) continue; // joined mid-group: from the next group on
				peer.pending = sizes[index];
				offer(peer, frames[index]);
			}
			index = (index + 1) % sizes.length;
			schedule();
		}, 1000 / media.fps);
	}

	process.on("message", (m: ToPump) => {
		if (m.type === "mark") {
			pathFigures();
			const cpu = process.cpuUsage();
			counters.cpuMicros = cpu.user + cpu.system;
			counters.atMs = performance.now();
			send({ type: "mark", ...counters });
		} else if (m.type === "stop") process.exit(0);
	});
	send({ type: "ready", port, fingerprint: cert.fingerprint });
}

process.on("message", (m: ToPump) => {
	if (m.type !== "start") return;
	start(m.egress, m.connections, m.media ?? null).catch((err: Error) => {
		send({ type: "error", message: err.message });
		process.exit(1);
	});
});
process.on("disconnect", () => process.exit(0));
if (!process.send) {
	console.error("bench/pump.ts is a child process of `npm run bench` (bench/lib/pump-trial.ts); run that instead.");
	process.exit(2);
}
