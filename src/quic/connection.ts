/**
 * One QUIC connection driven on quiche's native binding, exposed as a raw-QUIC TransportSession.
 *
 * Hot-path rules, as measured on the binding: no `readable()`/`writable()`/`stats()` per packet (15–22 µs each):
 * known streams are polled with `streamReadable()` (~0.3 µs); new peer streams are found by probing
 * the next expected peer stream id of each type (and the one after, since a higher id implicitly
 * opens the lower ones). Only when many receive streams are open at once is one `readable()` call
 * cheaper than polling them all. Packets go out in the driver's single per-turn flush, timers in
 * its single scan.
 */

import type { LogLine } from "../log/logger.ts";
import { probe } from "../metrics/collection.ts";
import { faultCode, reportFault } from "../transport/guard.ts";
import type { SharedWriter, TransportSession } from "../transport/types.ts";
import type { Driver } from "./driver.ts";
import { streamResetCode, streamStoppedCode } from "./errors.ts";
import type { QuicheConnection, QuicheHostPort, QuicheRecvInfo } from "./native.ts";
import { BATCH_PACKETS, PACKET_BUFFER_SIZE, type PacketSender, UdpDestination } from "./sender.ts";
import { QuicStream, SendState, type StreamOwner } from "./stream.ts";

/** Counters an endpoint keeps for all its connections (plain numbers, read by metrics). */
export interface EndpointStats {
	connections: number;
	connectionsAccepted: number;
	packetsIn: number;
	bytesIn: number;
	packetsOut: number;
	bytesOut: number;
	sendErrors: number;
	/** Egress by path (sender.ts SenderStats): GSO super-packets, the addon's single packets, dgram. */
	packetsOutGso: number;
	packetsOutBatched: number;
	packetsOutDgram: number;
	/** Send syscalls (sendmmsg calls and dgram sends). */
	sendSyscalls: number;
	/** Sockets on which GSO was turned off or the native addon given up. */
	gsoFallbacks: number;
	/** Batches cut short by a full socket send buffer. */
	sendStalls: number;
	/** Receive syscalls: recvmmsg calls that returned datagrams (receiver.ts), or one per dgram datagram. */
	recvSyscalls: number;
	/** Datagrams the engine read itself for established connections (server.ts engineIntake). */
	engineReads: number;
	/** Engine calls that wrote one frame to many streams (shared-writer.ts), and the stream writes they carried. */
	sharedWrites: number;
	sharedWriteStreams: number;
	/** Datagrams that were not QUIC, or malformed beyond routing (or larger than a receive slot). */
	garbage: number;
	/** Initials shorter than 1200 bytes. */
	truncatedInitials: number;
	/** Version negotiation packets sent. */
	versionNegotiations: number;
	/** Packets for connection IDs we do not know (and that are ours to own). */
	unknownConnection: number;
	/** Packets handed to onForeignPacket. */
	foreign: number;
	/** Initials refused (connection or handshake caps, per-IP limits, bad Retry tokens). */
	refused: number;
	/** Server side: handshakes in progress (accepted, neither established nor finished yet). */
	handshakes: number;
	/** Retry packets sent. */
	retries: number;
	/** conn.recv() errors (undecryptable, protocol violations). */
	recvErrors: number;
}

export function newEndpointStats(): EndpointStats {
	return {
		connections: 0,
		connectionsAccepted: 0,
		packetsIn: 0,
		bytesIn: 0,
		packetsOut: 0,
		bytesOut: 0,
		sendErrors: 0,
		packetsOutGso: 0,
		packetsOutBatched: 0,
		packetsOutDgram: 0,
		sendSyscalls: 0,
		gsoFallbacks: 0,
		sendStalls: 0,
		recvSyscalls: 0,
		engineReads: 0,
		sharedWrites: 0,
		sharedWriteStreams: 0,
		garbage: 0,
		truncatedInitials: 0,
		versionNegotiations: 0,
		unknownConnection: 0,
		foreign: 0,
		refused: 0,
		handshakes: 0,
		retries: 0,
		recvErrors: 0,
	};
}

/** What a connection needs from the endpoint (server or client socket) that owns it. */
export interface ConnectionOwner {
	readonly sender: PacketSender;
	readonly stats: EndpointStats;
	readonly driver: Driver;
	/** The handshake completed. Returns false when the owner closed the connection instead. */
	established(conn: QuicConnection): boolean;
	/** quiche is done with the connection (closed, drained or timed out): forget its IDs. */
	forget(conn: QuicConnection): void;
	/** Where the session guard logs a fault (rate limited by the caller). */
	readonly faultLog?: LogLine;
	/** Writes many of its connections' streams in one engine call (server.ts; null: none). */
	readonly sharedWriter?: SharedWriter | null;
	/** The engine reads established connections' packets itself (server.ts engineIntake). */
	readonly engineReads?: boolean;
}

export interface ConnectionTiming {
	/** Send a PING when nothing was sent for this long (quiche 0.18 has no keep-alive). 0 = off. */
	keepAliveMs: number;
	/**
	 * Drop a connection whose handshake has not completed by then (ms). quiche keeps retransmitting
	 * a half-open handshake well past its idle timeout, which would leak state per spoofed Initial.
	 */
	handshakeTimeoutMs: number;
	/** Drop a handshake whose peer sent nothing for this long (ms); 0 or absent = off (see QuicLimits). */
	handshakeIdleMs?: number;
}

/** Above this many open receive streams, one readable() iteration beats polling each. */
const READABLE_ITER_THRESHOLD = 64;
/** Streams checked for a peer STOP_SENDING per received datagram (round robin). */
const STOP_POLL_BUDGET = 8;
/** Packets per connection per flush before yielding to the event loop (fairness, ACK intake). */
const MAX_PACKETS_PER_FLUSH = 64;
/**
 * A FIN-only frame is written only when the congestion window has room for a packet carrying it
 * (a STREAM frame needs more than quiche's MAX_STREAM_OVERHEAD of 12 bytes).
 */
const FIN_SEND_ROOM = 64;
/**
 * quiche's timeout() is the nearer of the idle timer (seconds) and the loss-detection timer, which
 * runs only while ack-eliciting packets are in flight (one PTO: tens to hundreds of ms). Above this,
 * nothing we sent is unacknowledged.
 */
const QUIET_TIMEOUT_MS = 1000;
/** A FIN-only frame waits at most this long for the connection to be quiet (see finishStream). */
const FIN_MAX_WAIT_MS = 1000;

/** An engine that builds several packets per call (the ngtcp2 engine, native/ngtcp2.c sendBatch). */
interface BatchingConnection {
	/** Up to `max` packets into `buf`, packet k at k × `stride`; their lengths into `sizes`; returns the count. */
	sendBatch(buf: Uint8Array, sizes: Uint16Array, max: number, stride: number): number;
}

/**
 * An engine that publishes its state in a Float64Array the native code writes at the end of
 * recv, send, sendBatch, onTimeout and close (ngtcp2): per packet, connection.ts then reads memory
 * instead of making one call each for the timer, the draining/closed flags and the stream poll.
 * Its recv takes the peer's address only when it changed.
 */
interface StatefulConnection {
	readonly state: Float64Array;
	recv(data: Buffer, info?: QuicheRecvInfo): number;
}
/** The ngtcp2 engine's Connection: its short-header packets may be read by the engine's recvMany. */
interface EngineReading {
	enableFastRecv(): boolean;
}
/** Slots of StatefulConnection.state (native/ngtcp2.c STATE_*). */
const STATE_TIMEOUT = 0;
const STATE_FLAGS = 1;
const STATE_EVENTS = 2;
const STATE_SLOT = 3;
/** STATE_TIMEOUT when no timer is due (quiche's timeout() null). */
const NO_TIMEOUT = -1;
const FLAG_DRAINING = 2;
const FLAG_CLOSED = 4;
/** Packet lengths of one sendBatch call (used synchronously: one per thread). */
const RUN_SIZES = new Uint16Array(BATCH_PACKETS);

/** One receive buffer per thread: onData chunks are views into it, valid during the call only. */
const RECV_BUFFER = Buffer.allocUnsafe(64 * 1024);
const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class QuicConnection implements TransportSession, StreamOwner {
	readonly kind = "quic" as const;
	protocol = "";
	path = "";
	query = new URLSearchParams();

	onStream: ((stream: import("../transport/types.ts").TransportStream) => void) | null = null;
	onClose: ((code: number, reason: string, graceful?: boolean) => void) | null = null;
	onStreamCredit: (() => void) | null = null;

	/** True once closed by either side (onClose has fired or is firing). */
	closed = false;

	readonly native: QuicheConnection;
	/** The same object when its engine builds several packets per call (ngtcp2), else null (quiche). */
	private readonly batchNative: BatchingConnection | null;
	/** The native state array when the engine has one (ngtcp2), else null (quiche: ask by call). */
	private readonly engineState: Float64Array | null;
	/** STATE_EVENTS when processStreams last looked at the streams. */
	private seenEvents = -1;
	/** The peer's address changed since the engine last heard it (StatefulConnection.recv). */
	private pathChanged = false;
	readonly isServer: boolean;
	/** Map keys (latin1) of the connection IDs the owner routes to us. */
	readonly cidKeys: string[] = [];
	/** Keeps the quiche Config (TLS context) alive as long as the connection. */
	readonly config: unknown;
	/**
	 * The server's admission bookkeeping (owned by QuicServer): the address this connection was
	 * counted under (released exactly once when it finishes, whatever the path), and whether it is
	 * counted as a handshake in progress.
	 */
	admittedAddress: string | null = null;
	handshakeKey: string | null = null;
	handshaking = false;

	// Driver state (see Driven).
	dirty = false;
	deadline = Number.POSITIVE_INFINITY;

	private readonly owner: ConnectionOwner;
	private readonly keepAliveMs: number;
	private quicheDeadline = Number.POSITIVE_INFINITY;
	private keepAliveAt = Number.POSITIVE_INFINITY;
	private handshakeDeadline: number;
	private readonly handshakeIdleMs: number;
	private handshakeIdleAt: number;
	private remoteHost: string;
	private remotePort: number;
	/** Where sendPackets sends: the peer's current address, with its sockaddr cached by the sender. */
	private destination: UdpDestination | null = null;
	private readonly recvInfo: QuicheRecvInfo;
	private isEstablished = false;
	/** quiche is done with it; the owner forgot it. */
	private finished = false;
	private sentAny = false;

	private readonly streams = new Map<number, QuicStream>();
	private readonly recvPoll = new Set<QuicStream>();
	private readonly sendPoll = new Set<QuicStream>();
	private stopIterator: Iterator<QuicStream> | null = null;
	private readonly blocked = new Set<QuicStream>();
	/** Streams whose FIN has no unsent data left to ride on (finishStream), oldest first. */
	private pendingFins: QuicStream[] = [];
	private spareFins: QuicStream[] = [];
	/** Counts flushes: a stream written to since the last one still has unsent bytes in quiche. */
	private flushEpoch = 0;
	private nextPeerBidi: number;
	private nextPeerUni: number;
	private nextLocalBidi: number;
	private nextLocalUni: number;
	private wantUniCredit = false;
	private wantBidiCredit = false;
	/**
	 * Client side: stream events wait until the caller of connectQuic has the session (it gets it
	 * a promise tick after the handshake completes) and has installed onStream.
	 */
	holdStreams = false;

	constructor(
		native: QuicheConnection,
		owner: ConnectionOwner,
		isServer: boolean,
		local: QuicheHostPort,
		remoteHost: string,
		remotePort: number,
		timing: ConnectionTiming,
		config: unknown,
	) {
		this.native = native;
		const batching = native as unknown as Partial<BatchingConnection>;
		this.batchNative = typeof batching.sendBatch === "function" ? (batching as BatchingConnection) : null;
		const stateful = native as unknown as Partial<StatefulConnection>;
		this.engineState = stateful.state instanceof Float64Array ? stateful.state : null;
		this.owner = owner;
		this.isServer = isServer;
		this.keepAliveMs = timing.keepAliveMs;
		const now = performance.now();
		this.handshakeDeadline = now + timing.handshakeTimeoutMs;
		this.handshakeIdleMs = timing.handshakeIdleMs ?? 0;
		this.handshakeIdleAt = this.handshakeIdleMs > 0 ? now + this.handshakeIdleMs : Number.POSITIVE_INFINITY;
		this.config = config;
		this.remoteHost = remoteHost;
		this.remotePort = remotePort;
		this.recvInfo = { from: { host: remoteHost, port: remotePort }, to: local };
		this.nextPeerBidi = isServer ? 0 : 1;
		this.nextPeerUni = isServer ? 2 : 3;
		this.nextLocalBidi = isServer ? 1 : 0;
		this.nextLocalUni = isServer ? 3 : 2;
		owner.driver.add(this);
		owner.stats.connections++;
		probe("connection", this);
	}

	/**
	 * Round-trip time and bytes of the connection (a cluster link's /cluster entry and metrics).
	 * Costs native calls: for pages and metrics scrapes, never per packet.
	 */
	linkStats(): { rttMs: number; bytesIn: number; bytesOut: number; openStreams: number } | null {
		if (this.closed) return null;
		const stats = this.native.stats();
		const paths = this.native.pathStats();
		const path = paths.find((p) => p.active) ?? paths[0];
		return {
			rttMs: path ? path.rtt : Number.NaN,
			bytesIn: stats.recvBytes,
			bytesOut: stats.sentBytes,
			// Streams not yet finished in both directions: on a long-lived link, a count that grows with
			// the broadcasts relayed is a stream some side never closes (each holds state in quiche).
			openStreams: this.streams.size,
		};
	}

	get remote(): string {
		const host = this.remoteHost.startsWith("::ffff:") ? this.remoteHost.slice(7) : this.remoteHost;
		return host.includes(":") ? `[${host}]:${this.remotePort}` : `${host}:${this.remotePort}`;
	}

	get established(): boolean {
		return this.isEstablished;
	}

	/** Raw QUIC has no request URL: the moq layer sets it from SETUP's PATH parameter. */
	setPath(pathAndQuery: string): void {
		const q = pathAndQuery.indexOf("?");
		const rawPath = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
		let path: string;
		try {
			path = decodeURIComponent(rawPath);
		} catch {
			path = rawPath;
		}
		this.path = path;
		this.query = new URLSearchParams(q < 0 ? "" : pathAndQuery.slice(q + 1));
	}

	openBidi(): QuicStream | null {
		if (this.closed || !this.isEstablished) return null;
		if (this.native.peerStreamsLeftBidi() === 0) {
			this.wantBidiCredit = true;
			return null;
		}
		const id = this.nextLocalBidi;
		if (!this.createLocal(id)) return null;
		this.nextLocalBidi += 4;
		return this.track(new QuicStream(this, id));
	}

	openUni(): QuicStream | null {
		if (this.closed || !this.isEstablished) return null;
		if (this.native.peerStreamsLeftUni() === 0) {
			this.wantUniCredit = true;
			return null;
		}
		const id = this.nextLocalUni;
		if (!this.createLocal(id)) return null;
		this.nextLocalUni += 4;
		return this.track(new QuicStream(this, id));
	}

	close(code: number, reason: string): void {
		if (this.closed) return;
		// quiche 0.18 sends nothing after close() if our last handshake flight (the client's
		// Finished) is still unsent: push it out first.
		if (this.dirty) this.flush(performance.now());
		try {
			this.native.close(true, code, encoder.encode(reason));
		} catch {
			// already closing
		}
		this.owner.driver.markDirty(this);
		this.notifyClosed(code, reason);
	}

	// ---- called by the owner -------------------------------------------------------------------

	/**
	 * The session guard of this connection (transport/guard.ts): whatever threw while handling its
	 * packets, streams or timers closes this connection alone (with a decoder's own code, else
	 * FAULT) and is counted; the worker and its other connections carry on.
	 */
	fault(err: unknown): void {
		reportFault(err, this.owner.faultLog, {
			remote: `${this.remoteHost}:${this.remotePort}`,
			transport: "quic",
			protocol: this.protocol,
		});
		try {
			if (!this.closed) this.close(faultCode(err), "internal error");
			else this.finish();
		} catch {
			// The session's own teardown threw as well: drop the connection state regardless.
			this.closed = true;
			this.onClose = null;
			try {
				this.finish();
			} catch {
				// nothing left to release
			}
		}
	}

	/** A datagram for this connection arrived. */
	receive(data: Buffer, host: string, port: number): void {
		if (this.finished) return;
		if (port !== this.remotePort || host !== this.remoteHost) {
			// NAT rebinding or migration: quiche validates the new path; we follow the latest address.
			this.remoteHost = host;
			this.remotePort = port;
			this.recvInfo.from = { host, port };
			this.pathChanged = true;
		}
		const state = this.engineState;
		try {
			if (state === null) this.native.recv(data, this.recvInfo);
			else if (this.pathChanged) {
				this.pathChanged = false;
				this.native.recv(data, this.recvInfo);
			} else (this.native as unknown as StatefulConnection).recv(data);
		} catch {
			this.owner.stats.recvErrors++;
		}
		this.owner.driver.markDirty(this);
		if (!this.isEstablished) {
			if (this.handshakeIdleMs > 0) this.handshakeIdleAt = performance.now() + this.handshakeIdleMs;
			if (!this.native.isEstablished()) {
				// A handshake the peer refused (e.g. no common ALPN): fail now, not after draining.
				if (this.native.isDraining()) this.finish();
				return;
			}
			this.isEstablished = true;
			this.protocol = decoder.decode(this.native.applicationProto());
			if (this.keepAliveMs > 0) this.keepAliveAt = performance.now() + this.keepAliveMs;
			if (!this.owner.established(this)) return;
		}
		if (this.closed) return;
		if (!this.engineReadsOn && this.owner.engineReads === true && !this.holdStreams) {
			// From now on the owner's engine reads our short-header packets from this peer itself.
			this.engineReadsOn = true;
			(this.native as unknown as EngineReading).enableFastRecv();
		}
		if (!this.holdStreams) this.processStreams();
		if (!this.closed && (state === null ? this.native.isDraining() : (state[STATE_FLAGS] & FLAG_DRAINING) !== 0))
			this.notifyPeerClose();
	}

	/** Ends holdStreams and delivers what arrived meanwhile. */
	releaseStreams(): void {
		if (!this.holdStreams) return;
		this.holdStreams = false;
		if (this.closed || this.finished) return;
		this.processStreams();
		this.owner.driver.markDirty(this);
	}

	/** Closes with a transport error code (e.g. a TLS alert), without calling onClose. */
	abortTransport(code: number, reason: string): void {
		if (this.closed) return;
		if (this.dirty) this.flush(performance.now());
		try {
			this.native.close(false, code, encoder.encode(reason));
		} catch {
			// already closing
		}
		this.onClose = null;
		this.owner.driver.markDirty(this);
		this.notifyClosed(code, reason);
	}

	/** Driven.flush: sends what quiche has, re-arms the deadline, detects the end. */
	flush(now: number): void {
		if (this.finished) return;
		this.flushEpoch++;
		const native = this.native;
		let count = this.sendPackets(MAX_PACKETS_PER_FLUSH);
		// After the packets: retransmissions quiche had queued are in flight now, so timeout() tells
		// whether anything is unacknowledged. FINs written here leave in the same flush.
		if (this.pendingFins.length > 0 && count < MAX_PACKETS_PER_FLUSH && !this.closed && this.writePendingFins(now)) {
			count += this.sendPackets(MAX_PACKETS_PER_FLUSH - count);
		}
		if (count === 0 && this.isServer && !this.sentAny) {
			// A server connection answers a real Initial at once: silence means the Initial was
			// undecryptable garbage. Drop the state instead of holding it until the handshake timeout.
			this.owner.stats.garbage++;
			this.finish();
			return;
		}
		if (count > 0) this.sentAny = true;
		if (count === MAX_PACKETS_PER_FLUSH) this.owner.driver.markDirty(this);
		if (count > 0 && this.keepAliveMs > 0 && this.isEstablished) this.keepAliveAt = now + this.keepAliveMs;
		const state = this.engineState;
		let timeout: number | null;
		if (state === null) timeout = native.timeout();
		else timeout = state[STATE_TIMEOUT] === NO_TIMEOUT ? null : state[STATE_TIMEOUT];
		this.quicheDeadline = timeout === null ? Number.POSITIVE_INFINITY : now + timeout;
		this.deadline = Math.min(this.quicheDeadline, this.keepAliveAt);
		if (this.pendingFins.length > 0) {
			const due = this.pendingFins[0].finQueuedAt + FIN_MAX_WAIT_MS;
			if (due < this.deadline) this.deadline = due;
		}
		if (!this.isEstablished) {
			const end = Math.min(this.handshakeDeadline, this.handshakeIdleAt);
			if (end < this.deadline) this.deadline = end;
		}
		const flags = state === null ? 0 : state[STATE_FLAGS];
		if (state === null ? native.isClosed() : (flags & FLAG_CLOSED) !== 0) this.finish();
		else if (
			!this.closed &&
			this.isEstablished &&
			(state === null ? native.isDraining() : (flags & FLAG_DRAINING) !== 0)
		)
			this.notifyPeerClose();
	}

	/** Hands quiche's packets to the socket, at most `max`; returns how many. */
	private sendPackets(max: number): number {
		const sender = this.owner.sender;
		const native = this.native;
		let destination = this.destination;
		if (destination === null || destination.port !== this.remotePort || destination.host !== this.remoteHost) {
			// First send, or the peer's address changed (receive() follows NAT rebinding).
			destination = this.destination = new UdpDestination(this.remoteHost, this.remotePort);
		}
		let count = 0;
		if (this.batchNative !== null) {
			// The ngtcp2 engine: one native call builds a run of packets straight into the sender's
			// batch slots (no copy), which leave with the rest of the turn's batch (GSO).
			const batch = this.batchNative;
			while (count < max && sender.batching) {
				const want = Math.min(sender.runRoom(), max - count);
				let n: number;
				try {
					n = batch.sendBatch(sender.runBuffer(), RUN_SIZES, want, PACKET_BUFFER_SIZE);
				} catch {
					return count;
				}
				sender.commitRun(RUN_SIZES, n, destination);
				count += n;
				if (n < want) return count;
			}
		}
		while (count < max) {
			const buf = sender.acquire();
			let result: [number, unknown] | null;
			try {
				result = native.send(buf);
			} catch {
				sender.release(buf);
				break;
			}
			if (result === null) {
				sender.release(buf);
				break;
			}
			sender.sendTo(buf, result[0], destination);
			count++;
		}
		return count;
	}

	/** Driven.onTimer. */
	onTimer(now: number): void {
		if (this.finished) return;
		if (!this.isEstablished && (this.handshakeDeadline <= now || this.handshakeIdleAt <= now)) {
			// Dropped without a word (no CONNECTION_CLOSE): the peer may be a spoofed address.
			this.finish();
			return;
		}
		if (this.quicheDeadline <= now) {
			this.quicheDeadline = Number.POSITIVE_INFINITY;
			this.native.onTimeout();
		}
		if (this.keepAliveAt <= now) {
			this.keepAliveAt = now + this.keepAliveMs;
			try {
				this.native.sendAckEliciting();
			} catch {
				// closing
			}
		}
		// The driver flushes us next, which recomputes the deadline.
		this.deadline = Number.POSITIVE_INFINITY;
	}

	// ---- called by QuicStream ------------------------------------------------------------------

	/** TransportSession.sharedWriter: the owner's, when the engine gave this connection a slot. */
	get sharedWriter(): SharedWriter | null {
		return this.sharedSlot >= 0 ? (this.owner.sharedWriter ?? null) : null;
	}

	get sharedSlot(): number {
		const state = this.engineState;
		return state === null || this.closed ? -1 : state[STATE_SLOT];
	}

	/** The engine's index for this connection (writeShared, recvMany), or -1 without one. */
	get engineSlot(): number {
		const state = this.engineState;
		return state === null ? -1 : state[STATE_SLOT];
	}

	/** Set by the owner while this connection is in its list of those the engine read for. */
	engineRead = false;
	/** The engine may read our short-header packets itself (enableFastRecv done). */
	private engineReadsOn = false;

	/**
	 * Datagrams for this connection were read by the engine itself (server.ts engineIntake, only
	 * once established and from the current peer address): the rest of what receive() does.
	 */
	afterEngineRecv(): void {
		if (this.finished) return;
		this.owner.driver.markDirty(this);
		if (this.closed) return;
		this.processStreams();
		if (!this.closed && (this.engineState![STATE_FLAGS] & FLAG_DRAINING) !== 0) this.notifyPeerClose();
	}

	sharedWritten(stream: QuicStream, sent: number): void {
		if (sent > 0) stream.lastWriteEpoch = this.flushEpoch;
		this.owner.driver.markDirty(this);
	}

	/** streamSend; returns bytes taken, or -1 when the peer stopped the stream (onStop fired). */
	streamWrite(stream: QuicStream, data: Uint8Array, fin: boolean): number {
		if (this.closed) return -1;
		let sent: number | null;
		try {
			sent = this.native.streamSend(stream.id, data, fin);
		} catch (err) {
			const code = streamStoppedCode(err);
			stream.peerStopped(Math.max(code, 0));
			return -1;
		}
		if (sent !== null && sent > 0) stream.lastWriteEpoch = this.flushEpoch;
		this.owner.driver.markDirty(this);
		return sent === null ? 0 : sent;
	}

	/**
	 * QuicStream.finish with nothing queued.
	 *
	 * quiche 0.18 (cloudflare/quiche#2525; the upstream fix is an open PR) counts a stream's send
	 * side complete, and forgets the stream, once its *data* is acknowledged, whether or not a frame
	 * carrying the FIN was: a FIN-only frame has no bytes to acknowledge. So a FIN written after all
	 * the data left is lost for good when (a) the ACK of that data is processed before the next
	 * flush sends the FIN, or (b) the FIN's packet is lost and the data's ACK arrives before the loss
	 * is detected (the retransmission finds no stream). The peer then has every byte and never the
	 * end of the stream, and a stream slot leaks on its side. That is routine for the relay: a
	 * group's frames are flushed in one turn and its end comes in a later one.
	 *
	 * A FIN is safe when it rides on unsent data (written since the last flush: quiche puts it on the
	 * last data frame), or when it is written once all the data is acknowledged and nothing awaits
	 * retransmission (then only the FIN's own ACK completes the stream, and its loss is repaired).
	 * Otherwise it waits for the connection to be quiet (quiche shows no per-stream ACK state), at
	 * most FIN_MAX_WAIT_MS (past that, the old risk remains only if the data is still unacknowledged
	 * then). It is written inside a flush, between two rounds of packet building, ahead of every
	 * other stream, so no ACK can be processed between the write and the packet that carries it.
	 */
	finishStream(stream: QuicStream): void {
		if (this.closed) return;
		if (stream.lastWriteEpoch === this.flushEpoch) {
			this.writeFin(stream);
			return;
		}
		stream.finQueuedAt = performance.now();
		this.pendingFins.push(stream);
		this.owner.driver.markDirty(this);
	}

	shutdownStream(stream: QuicStream, read: boolean, code: number): void {
		if (this.closed) return;
		try {
			this.native.streamShutdown(stream.id, read ? 0 : 1, code);
		} catch {
			// already finished or collected
		}
		this.owner.driver.markDirty(this);
	}

	/** TransportStream.setPriority: higher order → more urgent (quiche urgency 0 = most urgent). */
	prioritize(stream: QuicStream, order: number): void {
		if (this.closed) return;
		// quiche has 8 urgency levels: the subscriber priority (the part above 2^32, see
		// TransportStream.setPriority) picks one, 7 for 0 and 0 for 7 and up; within a level, streams
		// share the connection incrementally.
		const level = order >= 0x100000000 ? Math.floor(order / 0x100000000) : order;
		const clamped = level < 0 ? 0 : level > 7 ? 7 : level | 0;
		try {
			this.native.streamPriority(stream.id, 7 - clamped, true);
		} catch {
			// stream finished
		}
	}

	markBlocked(stream: QuicStream): void {
		this.blocked.add(stream);
	}

	sendSideDone(stream: QuicStream): void {
		this.sendPoll.delete(stream);
		this.blocked.delete(stream);
		if (!stream.recvOpen) this.streams.delete(stream.id);
	}

	recvSideDone(stream: QuicStream): void {
		this.recvPoll.delete(stream);
		if (stream.sendState === SendState.Done) this.streams.delete(stream.id);
	}

	// ---- internals -----------------------------------------------------------------------------

	/**
	 * See finishStream. Runs inside a flush, after its packets and before more are built, so no ACK
	 * can be processed between a FIN's write and its packet. Returns whether it wrote any.
	 */
	private writePendingFins(now: number): boolean {
		const native = this.native;
		const timeout = native.timeout();
		const quiet = timeout === null || timeout > QUIET_TIMEOUT_MS;
		const fins = this.pendingFins;
		this.pendingFins = this.spareFins;
		let wrote = false;
		for (let i = 0; i < fins.length; i++) {
			const stream = fins[i];
			if (this.closed) break;
			const overdue = now - stream.finQueuedAt >= FIN_MAX_WAIT_MS;
			if (!quiet && !overdue) {
				this.pendingFins.push(stream);
				continue;
			}
			let room: number;
			try {
				room = native.streamCapacity(stream.id);
			} catch (err) {
				// Stopped by the peer meanwhile (quiche answered with RESET_STREAM itself).
				const code = streamStoppedCode(err);
				if (code >= 0) stream.onStop?.(code);
				continue;
			}
			// A full congestion window: the FIN could not leave before the next ACK is processed.
			// ACKs free the window and bring another flush. (Past twice the wait, write it anyway:
			// a stream window filled to the last byte also reads as no room.)
			if (room < FIN_SEND_ROOM && now - stream.finQueuedAt < 2 * FIN_MAX_WAIT_MS) {
				this.pendingFins.push(stream);
				continue;
			}
			// First in line for the next packet: urgency 0, non-incremental sorts before every stream
			// prioritize() sets (those are incremental). The stream has nothing else left to send.
			try {
				native.streamPriority(stream.id, 0, false);
			} catch {
				// collected meanwhile: writeFin finds out
			}
			this.writeFin(stream);
			wrote = true;
		}
		fins.length = 0;
		this.spareFins = fins;
		return wrote;
	}

	private writeFin(stream: QuicStream): void {
		try {
			this.native.streamSend(stream.id, EMPTY, true);
		} catch (err) {
			const code = streamStoppedCode(err);
			if (code >= 0) stream.onStop?.(code);
		}
		this.owner.driver.markDirty(this);
	}

	/** Makes quiche create a local stream now (so peerStreamsLeft counts it). */
	private createLocal(id: number): boolean {
		try {
			this.native.streamSend(id, EMPTY, false);
			return true;
		} catch {
			// StreamLimit: the peer's limit, seen before peerStreamsLeft caught up.
			if ((id & 2) === 0) this.wantBidiCredit = true;
			else this.wantUniCredit = true;
			return false;
		}
	}

	private track(stream: QuicStream): QuicStream {
		this.streams.set(stream.id, stream);
		if (stream.recvOpen) this.recvPoll.add(stream);
		if (stream.sendState !== SendState.Done) this.sendPoll.add(stream);
		return stream;
	}

	private acceptPeer(id: number): void {
		const stream = this.track(new QuicStream(this, id));
		this.onStream?.(stream);
	}

	private processStreams(): void {
		const native = this.native;
		// With an engine that counts stream events (ngtcp2), a packet that touched no stream (an ACK,
		// most of a relay's ingress) skips the readable scan and the STOP_SENDING poll: nothing new
		// can be readable or stopped. Blocked writers still get their chance (an ACK opens the window).
		const state = this.engineState;
		const streamsChanged = state === null || state[STATE_EVENTS] !== this.seenEvents;
		if (state !== null) this.seenEvents = state[STATE_EVENTS];
		if (!streamsChanged) {
			// nothing to read
		} else if (this.recvPoll.size > READABLE_ITER_THRESHOLD) {
			for (const id of native.readable()) {
				let stream = this.streams.get(id);
				if (stream === undefined) {
					this.acceptPeerUpTo(id);
					stream = this.streams.get(id);
				}
				if (stream?.recvOpen) this.readFrom(stream);
				if (this.closed) return;
			}
		} else {
			this.discoverPeerStreams();
			for (const stream of this.recvPoll) {
				if (native.streamReadable(stream.id)) this.readFrom(stream);
				if (this.closed) return;
			}
		}
		for (const stream of this.blocked) {
			if (stream.pump()) this.blocked.delete(stream);
			if (this.closed) return;
		}
		if (streamsChanged) this.pollStops();
		if (this.closed) return;
		let credit = false;
		if (this.wantUniCredit && native.peerStreamsLeftUni() > 0) {
			this.wantUniCredit = false;
			credit = true;
		}
		if (this.wantBidiCredit && native.peerStreamsLeftBidi() > 0) {
			this.wantBidiCredit = false;
			credit = true;
		}
		if (credit) this.onStreamCredit?.();
	}

	/**
	 * New peer streams, without readable(): a peer stream with data, a FIN or a reset is
	 * streamReadable. Probing the next expected id and the one after covers a lost first packet of
	 * a stream (the later stream implicitly opens it: RFC 9000 §3.2).
	 */
	private discoverPeerStreams(): void {
		const native = this.native;
		while (!this.closed && (native.streamReadable(this.nextPeerBidi) || native.streamReadable(this.nextPeerBidi + 4))) {
			const id = this.nextPeerBidi;
			this.nextPeerBidi += 4;
			this.acceptPeer(id);
		}
		while (!this.closed && (native.streamReadable(this.nextPeerUni) || native.streamReadable(this.nextPeerUni + 4))) {
			const id = this.nextPeerUni;
			this.nextPeerUni += 4;
			this.acceptPeer(id);
		}
	}

	private acceptPeerUpTo(id: number): void {
		const peerBit = this.isServer ? 0 : 1;
		if ((id & 1) !== peerBit) return;
		if ((id & 2) === 0) {
			while (this.nextPeerBidi <= id && !this.closed) {
				const next = this.nextPeerBidi;
				this.nextPeerBidi += 4;
				this.acceptPeer(next);
			}
		} else {
			while (this.nextPeerUni <= id && !this.closed) {
				const next = this.nextPeerUni;
				this.nextPeerUni += 4;
				this.acceptPeer(next);
			}
		}
	}

	private readFrom(stream: QuicStream): void {
		const native = this.native;
		while (stream.recvOpen && !this.closed) {
			let result: [number, boolean] | null;
			try {
				result = native.streamRecv(stream.id, RECV_BUFFER);
			} catch (err) {
				const code = streamResetCode(err);
				stream.recvOpen = false;
				this.recvSideDone(stream);
				stream.onReset?.(Math.max(code, 0));
				return;
			}
			if (result === null) return;
			const length = result[0];
			const fin = result[1];
			if (length > 0) stream.onData?.(RECV_BUFFER.subarray(0, length));
			if (fin) {
				if (!stream.recvOpen) return; // stopped from inside onData
				stream.recvOpen = false;
				this.recvSideDone(stream);
				stream.onFin?.();
				return;
			}
			// quiche fills the buffer with all contiguous data: a short read means it is drained.
			if (length < RECV_BUFFER.length) return;
		}
	}

	/** A peer STOP_SENDING only shows when we touch the stream: check a few idle ones per packet. */
	private pollStops(): void {
		if (this.sendPoll.size === 0) return;
		const native = this.native;
		let budget = Math.min(this.sendPoll.size, STOP_POLL_BUDGET);
		let iterator = this.stopIterator ?? this.sendPoll.values();
		while (budget-- > 0 && !this.closed) {
			let next = iterator.next();
			if (next.done) {
				iterator = this.sendPoll.values();
				next = iterator.next();
				if (next.done) break;
			}
			const stream = next.value;
			try {
				native.streamCapacity(stream.id);
			} catch (err) {
				// StreamStopped(code), or InvalidStreamState once quiche collected the stopped stream.
				const code = streamStoppedCode(err);
				stream.peerStopped(Math.max(code, 0));
			}
		}
		this.stopIterator = iterator;
	}

	private notifyPeerClose(): void {
		const [code, reason, graceful] = this.closeInfo();
		this.notifyClosed(code, reason, graceful);
	}

	/** The close's code and reason, and whether the peer closed on purpose with code 0 (TransportSession.onClose). */
	private closeInfo(): [number, string, boolean] {
		const peer = this.native.peerError();
		if (peer !== null) {
			const reason = decoder.decode(peer.reason);
			return peer.isApp
				? [peer.errorCode, reason, peer.errorCode === 0]
				: [peer.errorCode, `transport error ${peer.errorCode}: ${reason}`, peer.errorCode === 0];
		}
		if (this.native.isTimedOut()) return [0, "idle timeout", false];
		const local = this.native.localError();
		if (local !== null) {
			const reason = decoder.decode(local.reason);
			return local.isApp
				? [local.errorCode, reason, false]
				: [local.errorCode, `transport error ${local.errorCode}: ${reason}`, false];
		}
		return [0, "closed", false];
	}

	private notifyClosed(code: number, reason: string, graceful = false): void {
		if (this.closed) return;
		this.closed = true;
		for (const stream of this.blocked) stream.clearQueue();
		this.blocked.clear();
		this.pendingFins.length = 0;
		this.recvPoll.clear();
		this.sendPoll.clear();
		this.streams.clear();
		this.stopIterator = null;
		this.onClose?.(code, reason, graceful);
	}

	/** quiche has closed the connection for good. */
	private finish(): void {
		if (this.finished) return;
		if (!this.closed) {
			const [code, reason, graceful] = this.closeInfo();
			this.notifyClosed(code, reason, graceful);
		}
		this.finished = true;
		this.deadline = Number.POSITIVE_INFINITY;
		this.owner.driver.remove(this);
		this.owner.stats.connections--;
		this.owner.forget(this);
	}
}
