/**
 * The QUIC server endpoint of one worker: a UDP socket (SO_REUSEPORT so every worker binds the same
 * port), connection lookup by destination connection ID, stateless handling of everything else.
 *
 * Connection IDs we choose start with the worker index (cid.ts), so a packet the kernel hashed to
 * the wrong worker (NAT rebinding, migration) goes to `onForeignPacket` for forwarding instead of
 * being dropped.
 */
import dgram from "node:dgram";
import type { RelayConfig } from "../config/types.ts";
import type { Logger, LogLine } from "../log/logger.ts";
import { type Admission, addressKey } from "../transport/admission.ts";
import { reportFault } from "../transport/guard.ts";
import { type RefusalReason, refuse } from "../transport/refusals.ts";
import type { SharedWriter } from "../transport/types.ts";
import {
	CID_LEN,
	cidKey,
	LongType,
	MIN_INITIAL_DATAGRAM,
	MIN_INITIAL_DCID_LEN,
	newCid,
	newParsedHeader,
	PacketForm,
	parseHeader,
} from "./cid.ts";
import { type QuicLimits, resolveLimits } from "./config.ts";
import { type ConnectionOwner, type EndpointStats, newEndpointStats, QuicConnection } from "./connection.ts";
import { type Driver, driver } from "./driver.ts";
import { type ServerEngine, selectEngine } from "./engine.ts";
import type { QuicheHostPort } from "./native.ts";
import { ReceiveQueueMeter } from "./receive-queue.ts";
import { BatchReceiver, RECV_SLOT_SIZE } from "./receiver.ts";
import { handshakeDropped } from "./reclaim.ts";
import { RetryTokens } from "./retry.ts";
import { dgramState, PacketSender } from "./sender.ts";
import { QuicSharedWriter } from "./shared-writer.ts";
import { loadUdpNative, RECV_META, type UdpNative, udpNativeUnavailable } from "./udp-native.ts";

export interface QuicServerOptions {
	/** Bind address; "::" is dual-stack. Default "::". */
	host?: string;
	/** 0 picks a free port. */
	port: number;
	/** SO_REUSEPORT (Node ≥ 22.12, Linux): every worker binds the same port. */
	reusePort?: boolean;
	/** PEM certificate chain and private key. */
	cert: string | Uint8Array;
	key: string | Uint8Array;
	/** ALPNs offered, in preference order (e.g. the moq-lite ALPNs, then "h3"). */
	alpns: string[];
	/** This worker's index (0–255): the first byte of every connection ID we issue. */
	workerIndex?: number;
	/** A connection finished its handshake. Set the session's handlers synchronously. */
	onSession: (session: QuicConnection) => void;
	/** A packet for a connection ID another worker issued; the multi-worker code forwards it. */
	onForeignPacket?: (packet: Buffer, rinfo: dgram.RemoteInfo, owner: number) => void;
	/**
	 * Single-socket fallback (no SO_REUSEPORT), on the worker that owns the socket: spread new
	 * connections over this many workers by the client's address; their Initials go to onForeignPacket.
	 */
	spreadInitials?: number;
	/**
	 * Single-socket fallback, on the other workers: no socket is bound; packets arrive through
	 * `receive()` and leave through `egress` (which must copy `buf` before calling `done`).
	 */
	egress?: (buf: Buffer, length: number, port: number, host: string) => void;
	limits?: Partial<QuicLimits>;
	/** Relay-wide per-IP connection counts and handshake rates; default: this endpoint alone, unlimited. */
	admission?: Admission;
	/**
	 * [server.quic]: Retry mode and handshake caps, per worker. Absent: Retry per `limits.retry`, no
	 * handshake caps, `limits.maxConnections`.
	 */
	quic?: Partial<RelayConfig["server"]["quic"]>;
	/**
	 * The Retry token key, the same for every worker of the relay (retry.ts); default: a random
	 * key of this endpoint's own.
	 */
	retryKey?: Uint8Array;
	log?: Logger;
}

export class QuicServer implements ConnectionOwner {
	readonly stats: EndpointStats = newEndpointStats();
	readonly sender: PacketSender;
	readonly driver: Driver;
	/** recvmmsg ingress (receiver.ts); null while dgram's 'message' events deliver the datagrams. */
	private receiver: BatchReceiver | null = null;
	/**
	 * ConnectionOwner.engineReads: the engine reads established connections' short-header packets
	 * of each receive batch itself (ngtcp2 recvMany, with recv_batch), and `bySlot` finds the
	 * connections it read for (their engine slot).
	 */
	engineReads = false;
	private readonly bySlot: (QuicConnection | undefined)[] = [];
	private readonly engineTouched: QuicConnection[] = [];
	readonly workerIndex: number;
	readonly limits: QuicLimits;

	private readonly socket: dgram.Socket;
	/**
	 * The QUIC socket's SO_RCVBUF / SO_SNDBUF as the kernel reports them (Linux reports twice what it
	 * granted: the other half is its bookkeeping); 0 before the socket is bound or without one.
	 */
	readonly udpBuffers = { recv: 0, send: 0 };
	/** The QUIC socket's kernel receive queue: bytes waiting, datagrams dropped (read by `readReceiveQueue`). */
	private readonly receiveQueue: ReceiveQueueMeter;
	/** The QUIC engine ([server.quic] engine, engine.ts): quiche or ngtcp2. */
	readonly engine: ServerEngine;
	/** ConnectionOwner.sharedWriter: [server.quic] fanout_writes on an engine that has writeShared. */
	readonly sharedWriter: SharedWriter | null;
	private readonly options: QuicServerOptions;
	private config: unknown;
	private readonly connections = new Map<string, QuicConnection>();
	private readonly header = newParsedHeader();
	private readonly retryTokens: RetryTokens;
	/**
	 * Auto: Retry new Initials while `stats.handshakes >= retryAt` (handshakes in progress here), or
	 * once `retryAt` handshakes were started in the current second. The second trigger matters for
	 * undecryptable Initials: each costs a full quiche accept (TLS state, a decryption attempt) but is
	 * dropped at once, so it never shows as "in progress"; a Retry costs one HMAC and one small packet.
	 */
	private readonly retryMode: RetryMode;
	private readonly retryAt: number;
	private acceptSecond = 0;
	private acceptsThisSecond = 0;
	private readonly maxConnections: number;
	private readonly maxHandshakes: number;
	private readonly maxHandshakesPerIp: number;
	/** Handshakes in progress by client address (/64 for IPv6); at most maxHandshakes entries. */
	private readonly handshakesByIp = new Map<string, number>();
	private readonly refusalLog: LogLine | undefined;
	/** Where the session guard logs a fault (rate limited by the caller). */
	readonly faultLog: LogLine | undefined;
	private localHost: QuicheHostPort = { host: "::", port: 0 };
	private closing = false;
	/** Set by `drain()`: new handshakes are refused; existing connections go on. */
	private draining = false;

	private constructor(
		socket: dgram.Socket,
		options: QuicServerOptions,
		config: unknown,
		limits: QuicLimits,
		udp: UdpNative | null,
		engine: ServerEngine,
	) {
		this.socket = socket;
		this.options = options;
		this.config = config;
		this.limits = limits;
		this.engine = engine;
		const fanoutWrites = options.quic?.fanoutWrites ?? true;
		this.sharedWriter =
			fanoutWrites && engine.writeShared !== null ? new QuicSharedWriter(engine.writeShared, this.stats) : null;
		this.workerIndex = options.workerIndex ?? 0;
		this.sender = new PacketSender(socket, this.stats, udp);
		this.receiveQueue = new ReceiveQueueMeter(loadUdpNative(), (socket as { type?: string }).type === "udp6");
		this.driver = driver();
		this.retryTokens = new RetryTokens(options.retryKey);
		const quic = options.quic ?? {};
		const mode = quic.retry ?? (limits.retry ? "on" : "off");
		this.retryMode = mode === "on" ? RetryMode.Always : mode === "off" ? RetryMode.Never : RetryMode.Auto;
		this.retryAt = quic.retryThreshold ?? 0;
		this.maxConnections = quic.maxConnections ?? limits.maxConnections;
		this.maxHandshakes = quic.maxHandshakes ?? Number.POSITIVE_INFINITY;
		this.maxHandshakesPerIp = quic.maxHandshakesPerIp ?? Number.POSITIVE_INFINITY;
		const log = options.log;
		this.refusalLog = log && ((message, fields) => log.warn(`quic ${message}`, fields));
		this.faultLog = log && ((message, fields) => log.warn(message, fields));
	}

	static async listen(options: QuicServerOptions): Promise<QuicServer> {
		const limits = resolveLimits(options.limits);
		const workerIndex = options.workerIndex ?? 0;
		if (!Number.isInteger(workerIndex) || workerIndex < 0 || workerIndex > 255) {
			throw new RangeError(`workerIndex must be 0–255, got ${workerIndex}`);
		}
		const engine = selectEngine(options.quic?.engine, options.log, workerIndex);
		const config = engine.buildConfig(options.cert, options.key, options.alpns, limits);
		const host = options.host ?? "::";
		if (options.egress) {
			const egress = options.egress;
			// A socket stand-in: sends go to the worker that owns the real socket; the copy is made
			// there synchronously, so the buffer returns to our pool at once.
			const virtual = {
				send(buf: Buffer, _offset: number, length: number, port: number, address: string, cb: () => void) {
					egress(buf, length, port, address);
					cb();
				},
				close(cb?: () => void) {
					cb?.();
				},
			} as unknown as dgram.Socket;
			// No socket here: the owning worker sends (its own sender batches).
			const server = new QuicServer(virtual, options, config, limits, null, engine);
			server.localHost = { host, port: options.port };
			options.log?.info(`quic attached to the shared socket (worker ${server.workerIndex})`);
			return server;
		}
		const ipv6 = host.includes(":");
		const socket = dgram.createSocket({
			type: ipv6 ? "udp6" : "udp4",
			reuseAddr: false,
			reusePort: options.reusePort ?? false,
			// Dual-stack on "::" so browsers dialing ::1 for "localhost" reach us too.
			ipv6Only: false,
		});
		// [server.quic] gso: batched GSO/sendmmsg egress through the native addon, else dgram.send.
		const gso = options.quic?.gso ?? true;
		const udp = gso ? loadUdpNative() : null;
		if (gso && udp === null && workerIndex === 0) {
			// Once per relay (worker 0): every worker loads the same file.
			options.log?.warn("quic: native UDP egress unavailable, sending with dgram", { reason: udpNativeUnavailable() });
		}
		const server = new QuicServer(socket, options, config, limits, udp, engine);
		await new Promise<void>((resolve, reject) => {
			socket.once("error", reject);
			socket.bind(options.port, host, () => {
				socket.off("error", reject);
				resolve();
			});
		});
		const address = socket.address();
		server.localHost = { host: address.address, port: address.port };
		// [server.quic] recv_batch: recvmmsg ingress through the addon (receiver.ts), else dgram's events.
		if (options.quic?.recvBatch ?? true) {
			try {
				server.receiver = BatchReceiver.start(socket, loadUdpNative(), server.stats, server.onBatchedPacket);
				// [server.quic] engine_reads: the engine reads established connections' packets itself.
				if (server.receiver !== null && engine.recvMany !== null && (options.quic?.engineReads ?? true)) {
					server.receiver.intake = server.engineIntake;
					server.engineReads = true;
				}
			} catch (err) {
				options.log?.warn("quic: batched receive unavailable, receiving with dgram", {
					reason: (err as Error).message,
				});
			}
		}
		if (server.receiver === null) socket.on("message", server.onMessage);
		socket.on("error", (err) => options.log?.warn(`quic socket error: ${err.message}`));
		// Large bursts of ACKs (a keyframe to every viewer) and Initials: a bigger kernel buffer drops less.
		server.applyUdpBuffers(
			options.quic?.udpRecvBuffer ?? 4 * 1024 * 1024,
			options.quic?.udpSendBuffer ?? 4 * 1024 * 1024,
		);
		options.log?.info(`quic listening on ${address.address}:${address.port} (worker ${server.workerIndex})`, {
			egress: server.sender.batching ? "gso" : "dgram",
			ingress: server.receiver !== null ? "recvmmsg" : "dgram",
		});
		return server;
	}

	get port(): number {
		return this.localHost.port;
	}

	get address(): string {
		return this.localHost.host;
	}

	/** Live connections (handshaking included). */
	get connectionCount(): number {
		return this.stats.connections;
	}

	/** New certificate (SIGHUP): new connections use it; existing ones keep their TLS context. */
	setCertificate(cert: string | Uint8Array, key: string | Uint8Array): void {
		this.config = this.engine.buildConfig(cert, key, this.options.alpns, this.limits);
	}

	/** A packet another worker received for one of our connection IDs. */
	injectPacket(packet: Buffer, rinfo: dgram.RemoteInfo): void {
		this.guarded(packet, rinfo, false);
	}

	/** Single-socket fallback: send a packet another worker built, from our socket. */
	sendRaw(data: Uint8Array, port: number, host: string): void {
		this.sender.socket.send(data, port, host);
	}

	/**
	 * Stops accepting: each new handshake is answered with CONNECTION_CLOSE (CONNECTION_REFUSED,
	 * RFC 9000 §20.1) so the client fails at once instead of timing out. Established connections and
	 * handshakes already under way are untouched.
	 */
	drain(): void {
		this.draining = true;
	}

	/** Closes every connection with `code` and the socket once they are told (no drain wait). */
	async close(code = 0, reason = "server shutting down"): Promise<void> {
		if (this.closing) return;
		this.closing = true;
		const all = new Set(this.connections.values());
		for (const conn of all) conn.close(code, reason);
		// Let the CONNECTION_CLOSE packets go out before the socket goes away.
		await new Promise<void>((resolve) => setImmediate(resolve));
		await new Promise<void>((resolve) => setImmediate(resolve));
		for (const conn of all) {
			this.driver.remove(conn);
			this.release(conn);
		}
		this.connections.clear();
		this.sender.flushBatch();
		this.receiver?.stop();
		await new Promise<void>((resolve) => this.socket.close(() => resolve()));
	}

	// ---- ConnectionOwner -----------------------------------------------------------------------

	established(conn: QuicConnection): boolean {
		this.stats.connectionsAccepted++;
		this.endHandshake(conn);
		try {
			this.options.onSession(conn);
		} catch (err) {
			this.options.log?.error(`onSession threw: ${(err as Error).message}`);
			conn.close(1, "internal error");
			return false;
		}
		return !conn.closed;
	}

	forget(conn: QuicConnection): void {
		const slot = conn.engineSlot;
		if (slot >= 0 && this.bySlot[slot] === conn) this.bySlot[slot] = undefined;
		for (const key of conn.cidKeys) {
			if (this.connections.get(key) === conn) this.connections.delete(key);
		}
		// Nothing may keep a finished connection reachable: its native quiche state (TLS, buffers)
		// is only freed when the JS wrapper is collected.
		conn.cidKeys.length = 0;
		if (!conn.established) handshakeDropped();
		this.release(conn);
	}

	/** Gives back what `accept` counted for `conn` (idempotent: every path may call it). */
	private release(conn: QuicConnection): void {
		this.endHandshake(conn);
		const address = conn.admittedAddress;
		if (address !== null) {
			conn.admittedAddress = null;
			this.options.admission?.closeConnection(address);
		}
	}

	/** The handshake of `conn` is over (established or finished): it stops counting against the caps. */
	private endHandshake(conn: QuicConnection): void {
		if (!conn.handshaking) return;
		conn.handshaking = false;
		this.stats.handshakes--;
		const key = conn.handshakeKey;
		if (key !== null) {
			conn.handshakeKey = null;
			const n = (this.handshakesByIp.get(key) ?? 1) - 1;
			if (n <= 0) this.handshakesByIp.delete(key);
			else this.handshakesByIp.set(key, n);
		}
	}

	private refuse(reason: RefusalReason, rinfo: dgram.RemoteInfo): void {
		this.stats.refused++;
		refuse(reason, this.refusalLog, { remote: rinfo.address, worker: this.workerIndex });
	}

	/**
	 * [server.quic] udp_recv_buffer / udp_send_buffer. Linux caps what a process may ask at
	 * net.core.rmem_max / wmem_max (212992 bytes unless raised) without an error, so the sizes are
	 * read back: a socket that got less than asked is said once, by worker 0, with the sysctl that
	 * lifts it, and the metrics carry what every worker got.
	 */
	/**
	 * Reads the QUIC socket's kernel receive queue now: the bytes waiting in it and the datagrams the
	 * kernel dropped since the socket was created (receive-queue.ts). Null without a socket of our
	 * own (a worker attached to another's socket) or where neither SO_MEMINFO nor /proc can say.
	 */
	readReceiveQueue(): { readonly bytes: number; readonly drops: number } | null {
		const fd = dgramState(this.socket)?.handle?.fd;
		if (fd === undefined || fd < 0) return null;
		return this.receiveQueue.read(fd) ? this.receiveQueue : null;
	}

	private applyUdpBuffers(recv: number, send: number): void {
		const socket = this.socket;
		for (const [which, asked] of [
			["recv", recv],
			["send", send],
		] as const) {
			try {
				if (which === "recv") socket.setRecvBufferSize(asked);
				else socket.setSendBufferSize(asked);
			} catch {
				// Refused outright (not a Linux cap): the kernel's default stays, read back below.
			}
			let got = 0;
			try {
				got = which === "recv" ? socket.getRecvBufferSize() : socket.getSendBufferSize();
			} catch {
				continue;
			}
			this.udpBuffers[which] = got;
			// Linux reports twice what it granted (socket(7), SO_RCVBUF: the other half is its bookkeeping).
			const granted = process.platform === "linux" ? got / 2 : got;
			if (granted < asked && this.workerIndex === 0) {
				const sysctl = which === "recv" ? "net.core.rmem_max" : "net.core.wmem_max";
				const key = which === "recv" ? "udp_recv_buffer" : "udp_send_buffer";
				this.options.log?.warn(
					`quic: the kernel gave the UDP ${which} buffer ${granted} bytes of the ${asked} that [server.quic] ${key} asks; raise ${sysctl} (sysctl -w ${sysctl}=${asked})`,
				);
			}
		}
	}

	// ---- packet intake -------------------------------------------------------------------------

	/**
	 * BatchReceiver's intake with the ngtcp2 engine: it reads the batch's packets for established
	 * connections from their known peer (ACKs, mostly) in one call; each connection it read for
	 * then runs the rest of receive() once per batch. The other datagrams go through handle().
	 */
	private readonly engineIntake = (buffer: Buffer, meta: Int32Array, count: number, out: Int32Array): number => {
		if (this.closing) return 0;
		let n: number;
		try {
			n = this.engine.recvMany!(buffer, RECV_SLOT_SIZE, meta, count, out);
		} catch {
			return 0;
		}
		if (n === 0) return 0;
		const stats = this.stats;
		const touched = this.engineTouched;
		for (let i = 0; i < count; i++) {
			const v = out[i];
			if (v < 0) continue;
			stats.packetsIn++;
			stats.bytesIn += meta[i * RECV_META];
			stats.engineReads++;
			if ((v & 1) !== 0) stats.recvErrors++;
			const conn = this.bySlot[v >> 1];
			if (conn !== undefined && !conn.engineRead) {
				conn.engineRead = true;
				touched.push(conn);
			}
		}
		for (let i = 0; i < touched.length; i++) {
			const conn = touched[i];
			conn.engineRead = false;
			// The session guard, as in handle(): a throw closes this connection only.
			try {
				conn.afterEngineRecv();
			} catch (err) {
				conn.fault(err);
			}
		}
		touched.length = 0;
		return n;
	};

	private readonly onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
		this.stats.recvSyscalls++;
		this.guarded(msg, rinfo, true);
	};

	/** A datagram of a recvmmsg batch (receiver.ts counted the syscall); `msg` is valid during the call only. */
	private readonly onBatchedPacket = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
		this.guarded(msg, rinfo, true);
	};

	private guarded(msg: Buffer, rinfo: dgram.RemoteInfo, mayForward: boolean): void {
		try {
			this.handle(msg, rinfo, mayForward);
		} catch (err) {
			// Connection handlers are guarded per connection; this catches the stateless paths (header
			// parsing, version negotiation, Retry) so a hostile datagram never reaches the event loop.
			this.stats.garbage++;
			reportFault(err, this.faultLog, { remote: `${rinfo.address}:${rinfo.port}`, transport: "quic" });
		}
	}

	private handle(msg: Buffer, rinfo: dgram.RemoteInfo, mayForward: boolean): void {
		const stats = this.stats;
		stats.packetsIn++;
		stats.bytesIn += msg.length;
		if (this.closing) return;
		const h = this.header;
		const form = parseHeader(msg, CID_LEN, h);
		if (form === PacketForm.Invalid) {
			stats.garbage++;
			return;
		}
		const conn = this.connections.get(cidKey(msg, h.dcidStart, h.dcidEnd));
		if (conn !== undefined) {
			// The session guard: the packet runs stream and session handlers; a throw closes this
			// connection only, never the worker.
			try {
				conn.receive(msg, rinfo.address, rinfo.port);
			} catch (err) {
				conn.fault(err);
			}
			return;
		}
		if (form === PacketForm.Short) {
			this.unknownConnection(msg, rinfo, mayForward);
			return;
		}
		if (h.version === 0) {
			// A version negotiation packet sent to a server: never valid.
			stats.garbage++;
			return;
		}
		if (!this.engine.versionIsSupported(h.version)) {
			this.negotiateVersion(msg, rinfo);
			return;
		}
		if (h.longType !== LongType.Initial) {
			// Handshake / 0-RTT for a connection we do not have: maybe another worker's.
			if (h.dcidEnd - h.dcidStart === CID_LEN) this.unknownConnection(msg, rinfo, mayForward);
			else stats.unknownConnection++;
			return;
		}
		const spread = this.options.spreadInitials;
		if (mayForward && spread !== undefined && spread > 1 && this.options.onForeignPacket !== undefined) {
			// One socket for every worker: place the new connection by the client's address (stable, so
			// its retransmitted Initials land on the same worker).
			const target = addressHash(rinfo.address, rinfo.port) % spread;
			if (target !== this.workerIndex) {
				this.stats.foreign++;
				this.options.onForeignPacket(msg, rinfo, target);
				return;
			}
		}
		this.accept(msg, rinfo, mayForward);
	}

	private unknownConnection(msg: Buffer, rinfo: dgram.RemoteInfo, mayForward: boolean): void {
		const owner = msg[this.header.dcidStart];
		if (mayForward && owner !== this.workerIndex && this.options.onForeignPacket !== undefined) {
			this.stats.foreign++;
			this.options.onForeignPacket(msg, rinfo, owner);
			return;
		}
		this.stats.unknownConnection++;
	}

	private negotiateVersion(msg: Buffer, rinfo: dgram.RemoteInfo): void {
		const h = this.header;
		// RFC 9000 §6.1 / §14.1: only answer datagrams that could be a client's first flight.
		if (msg.length < MIN_INITIAL_DATAGRAM) {
			this.stats.garbage++;
			return;
		}
		const out = this.sender.acquire();
		let length: number;
		try {
			length = this.engine.negotiateVersion(
				msg.subarray(h.scidStart, h.scidEnd),
				msg.subarray(h.dcidStart, h.dcidEnd),
				out,
			);
		} catch {
			this.sender.release(out);
			this.stats.garbage++;
			return;
		}
		this.stats.versionNegotiations++;
		this.sender.send(out, length, rinfo.port, rinfo.address);
	}

	private accept(msg: Buffer, rinfo: dgram.RemoteInfo, mayForward: boolean): void {
		const h = this.header;
		const stats = this.stats;
		if (msg.length < MIN_INITIAL_DATAGRAM) {
			stats.truncatedInitials++;
			return;
		}
		const dcidLen = h.dcidEnd - h.dcidStart;
		if (dcidLen < MIN_INITIAL_DCID_LEN || dcidLen > 20 || h.scidEnd - h.scidStart > 20 || h.tokenEnd < 0) {
			stats.garbage++;
			return;
		}
		const admission = this.options.admission;
		let odcid: Buffer | null = null;
		let scid: Buffer;
		if (this.retryMode !== RetryMode.Never && h.tokenEnd > h.tokenStart) {
			// The Initial that answers our Retry (RFC 9000 §8.1.2): its DCID is the one our Retry chose.
			odcid = this.retryTokens.validate(msg.subarray(h.tokenStart, h.tokenEnd), rinfo.address, rinfo.port);
			if (odcid === null || dcidLen !== CID_LEN) {
				// Forged, expired, or minted for another address. The RFC lets the server discard it
				// (the client times out); closing with INVALID_TOKEN would need connection state.
				this.refuse("retry_token", rinfo);
				return;
			}
			if (msg[h.dcidStart] !== this.workerIndex) {
				// Hashed to another worker (NAT rebinding): the DCID names the worker that sent the
				// Retry. Every worker shares the token key, so the check above holds there too.
				this.unknownConnection(msg, rinfo, mayForward);
				return;
			}
			scid = Buffer.from(msg.subarray(h.dcidStart, h.dcidEnd));
		} else {
			// Per-address limits on unvalidated Initials. Their source address may be spoofed, so an
			// address over its limits is asked to prove itself (Retry) rather than refused: refusing
			// would let anyone spoofing a victim's address lock the victim out. Without Retry there is
			// no proof to ask for, so they are refused.
			const overRate = admission !== undefined && !admission.allowHandshake(rinfo.address);
			const overPerIp =
				this.maxHandshakesPerIp !== Number.POSITIVE_INFINITY &&
				(this.handshakesByIp.get(addressKey(rinfo.address)) ?? 0) >= this.maxHandshakesPerIp;
			if (this.retryMode === RetryMode.Never) {
				if (overRate) return this.refuse("handshake_rate", rinfo);
				if (overPerIp) return this.refuse("handshakes_per_ip", rinfo);
			} else if (
				this.retryMode === RetryMode.Always ||
				stats.handshakes >= this.retryAt ||
				this.startedThisSecond() >= this.retryAt ||
				overRate ||
				overPerIp
			) {
				// Stateless: nothing is kept until the client proves it receives at its address.
				this.sendRetry(msg, rinfo);
				return;
			}
			scid = newCid(this.workerIndex);
		}
		// Caps, checked before quiche allocates anything (~60 KB of TLS and recovery state per handshake).
		if (stats.connections >= this.maxConnections) return this.refuse("quic_connections", rinfo);
		if (stats.handshakes >= this.maxHandshakes) return this.refuse("handshakes", rinfo);
		// An address proven by a Retry token is past the per-address handshake rate and cap (checked
		// above for unvalidated Initials); its concurrent connections stay bounded relay-wide.
		const handshakeKey = this.maxHandshakesPerIp !== Number.POSITIVE_INFINITY ? addressKey(rinfo.address) : null;
		if (admission !== undefined && !admission.tryOpenConnection(rinfo.address)) {
			return this.refuse("connections_per_ip", rinfo);
		}
		let native: QuicConnection["native"];
		try {
			native = this.engine.accept(scid, odcid, this.localHost, { host: rinfo.address, port: rinfo.port }, this.config);
		} catch (err) {
			admission?.closeConnection(rinfo.address);
			stats.garbage++;
			this.options.log?.debug(`quic accept failed: ${(err as Error).message}`);
			return;
		}
		const conn = new QuicConnection(
			native,
			this,
			true,
			this.localHost,
			rinfo.address,
			rinfo.port,
			{
				keepAliveMs: this.limits.keepAliveMs,
				handshakeTimeoutMs: this.limits.handshakeTimeoutMs,
				handshakeIdleMs: this.limits.handshakeIdleTimeoutMs,
			},
			this.config,
		);
		if (admission !== undefined) conn.admittedAddress = rinfo.address;
		if (conn.engineSlot >= 0) this.bySlot[conn.engineSlot] = conn;
		conn.handshaking = true;
		stats.handshakes++;
		this.acceptsThisSecond++;
		if (handshakeKey !== null) {
			conn.handshakeKey = handshakeKey;
			this.handshakesByIp.set(handshakeKey, (this.handshakesByIp.get(handshakeKey) ?? 0) + 1);
		}
		const scidKey = cidKey(scid);
		const dcidKey = cidKey(msg, h.dcidStart, h.dcidEnd);
		conn.cidKeys.push(scidKey);
		this.connections.set(scidKey, conn);
		if (dcidKey !== scidKey) {
			conn.cidKeys.push(dcidKey);
			this.connections.set(dcidKey, conn);
		}
		// ngtcp2 issues more connection IDs (NEW_CONNECTION_ID) once established: drawn at accept, routed here too.
		for (const extra of this.engine.extraScids(native)) {
			const key = cidKey(extra);
			conn.cidKeys.push(key);
			this.connections.set(key, conn);
		}
		try {
			conn.receive(msg, rinfo.address, rinfo.port);
			if (this.draining && !conn.closed) {
				// quiche needs the client's Initial to have keys for the CONNECTION_CLOSE it sends.
				this.stats.refused++;
				conn.abortTransport(CONNECTION_REFUSED, "relay draining");
			}
		} catch (err) {
			conn.fault(err);
		}
	}

	/** Handshakes started on this worker in the current wall-clock second. */
	private startedThisSecond(): number {
		const second = Math.floor(performance.now() / 1000);
		if (second !== this.acceptSecond) {
			this.acceptSecond = second;
			this.acceptsThisSecond = 0;
		}
		return this.acceptsThisSecond;
	}

	private sendRetry(msg: Buffer, rinfo: dgram.RemoteInfo): void {
		const h = this.header;
		const odcid = msg.subarray(h.dcidStart, h.dcidEnd);
		const token = this.retryTokens.mint(odcid, rinfo.address, rinfo.port);
		// The client's next Initial carries this as its DCID: our worker index routes it back here.
		const newScid = newCid(this.workerIndex);
		const out = this.sender.acquire();
		let length: number;
		try {
			// A Retry is smaller than the Initial that caused it: no amplification (RFC 9000 §8.1).
			length = this.engine.retry(msg.subarray(h.scidStart, h.scidEnd), odcid, newScid, token, h.version, out);
		} catch {
			this.sender.release(out);
			this.stats.garbage++;
			return;
		}
		this.stats.retries++;
		this.sender.send(out, length, rinfo.port, rinfo.address);
	}
}

/** QUIC transport error CONNECTION_REFUSED (RFC 9000 §20.1). */
const CONNECTION_REFUSED = 0x2;

const RetryMode = { Never: 0, Always: 1, Auto: 2 } as const;
type RetryMode = (typeof RetryMode)[keyof typeof RetryMode];

/** FNV-1a over the client's address and port. */
function addressHash(address: string, port: number): number {
	let h = 0x811c9dc5;
	for (let i = 0; i < address.length; i++) h = Math.imul(h ^ address.charCodeAt(i), 0x01000193);
	h = Math.imul(h ^ (port & 0xff), 0x01000193);
	h = Math.imul(h ^ (port >>> 8), 0x01000193);
	return h >>> 0;
}
