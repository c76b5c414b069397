/**
 * Our own QUIC client (the bench's load generator and relay-to-relay links): the same driver as
 * the server, and many connections may share one UDP socket (and the per-thread timer and flush
 * loop), so hundreds of subscriber sessions from one process stay cheap.
 */
import { createHash } from "node:crypto";
import dgram from "node:dgram";
import { lookup } from "node:dns/promises";
import net from "node:net";
import { CID_LEN, cidKey, newCid, newParsedHeader, PacketForm, parseHeader } from "./cid.ts";
import { buildClientConfig, type QuicLimits, resolveLimits } from "./config.ts";
import { type ConnectionOwner, type EndpointStats, newEndpointStats, QuicConnection } from "./connection.ts";
import { type Driver, driver } from "./driver.ts";
import { CRYPTO_BAD_CERTIFICATE } from "./errors.ts";
import { loadQuiche, type QuicheConfig, type QuicheHostPort } from "./native.ts";
import { BatchReceiver } from "./receiver.ts";
import { PacketSender } from "./sender.ts";
import { loadUdpNative } from "./udp-native.ts";

export interface ConnectQuicOptions {
	host: string;
	port: number;
	/** ALPNs offered, most preferred first. */
	alpns: string[];
	/** SNI; default: `host` unless it is an IP literal. */
	serverName?: string;
	/** Hex SHA-256 fingerprints of acceptable server leaf certificates (DER). Disables CA checks. */
	certificateHashes?: string[];
	/** Skip certificate verification entirely (tests, benches). */
	insecure?: boolean;
	/** PEM CA bundle to verify the server against (when neither hashes nor insecure). */
	ca?: string | Uint8Array;
	/** Share one UDP socket among many connections; it must not be used for anything else. */
	socket?: dgram.Socket;
	/** Handshake deadline (ms). Default 10 s. */
	timeoutMs?: number;
	limits?: Partial<QuicLimits>;
}

/** One UDP socket and the client connections multiplexed on it (keyed by our connection IDs). */
export class QuicClientEndpoint implements ConnectionOwner {
	readonly stats: EndpointStats = newEndpointStats();
	readonly sender: PacketSender;
	readonly driver: Driver;
	readonly socket: dgram.Socket;
	/** Close the socket when the last connection ends (a socket we created ourselves). */
	readonly ownsSocket: boolean;
	localHost: QuicheHostPort = { host: "0.0.0.0", port: 0 };

	private readonly connections = new Map<string, QuicConnection>();
	/** recvmmsg ingress (receiver.ts); null while dgram's 'message' events deliver the datagrams. */
	private readonly receiver: BatchReceiver | null;
	private readonly header = newParsedHeader();
	/** Set for connections still handshaking: resolves connectQuic. */
	readonly pending = new Map<QuicConnection, (ok: boolean, reason: string) => void>();

	constructor(socket: dgram.Socket, ownsSocket: boolean) {
		this.socket = socket;
		this.ownsSocket = ownsSocket;
		// Batched GSO/sendmmsg egress when the native addon loads (MOQ_FANOUT_NATIVE_UDP=0 turns it off).
		this.sender = new PacketSender(socket, this.stats, loadUdpNative());
		this.driver = driver();
		// recvmmsg ingress through the same addon (receiver.ts): a cluster link receives a whole
		// upstream's media on this socket. Without the addon, dgram's 'message' events.
		this.receiver = BatchReceiver.start(socket, loadUdpNative(), this.stats, this.onPacket);
		if (this.receiver === null) socket.on("message", this.onMessage);
		socket.on("error", () => {
			this.stats.sendErrors++;
		});
	}

	get connectionCount(): number {
		return this.connections.size;
	}

	register(key: string, conn: QuicConnection): void {
		conn.cidKeys.push(key);
		this.connections.set(key, conn);
		if (this.connections.size === 1) {
			this.socket.ref();
			this.receiver?.setRef(true);
		}
	}

	established(conn: QuicConnection): boolean {
		const settle = this.pending.get(conn);
		if (settle !== undefined) settle(true, "");
		return !conn.closed;
	}

	forget(conn: QuicConnection): void {
		for (const key of conn.cidKeys) {
			if (this.connections.get(key) === conn) this.connections.delete(key);
		}
		const settle = this.pending.get(conn);
		if (settle !== undefined) settle(false, "connection closed during the handshake");
		if (this.connections.size === 0) {
			if (this.ownsSocket) {
				// The last packets (a CONNECTION_CLOSE) may still sit in the batch.
				this.sender.flushBatch();
				try {
					this.socket.close();
				} catch {
					// already closed
				}
			} else {
				// An idle shared socket must not keep the process alive.
				this.socket.unref();
				this.receiver?.setRef(false);
			}
		}
	}

	private readonly onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
		this.stats.recvSyscalls++;
		this.onPacket(msg, rinfo);
	};

	/** One datagram (from dgram, or a view into a recvmmsg batch valid during the call). */
	private readonly onPacket = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
		const stats = this.stats;
		stats.packetsIn++;
		stats.bytesIn += msg.length;
		const h = this.header;
		if (parseHeader(msg, CID_LEN, h) === PacketForm.Invalid) {
			stats.garbage++;
			return;
		}
		const conn = this.connections.get(cidKey(msg, h.dcidStart, h.dcidEnd));
		if (conn === undefined) {
			stats.unknownConnection++;
			return;
		}
		try {
			conn.receive(msg, rinfo.address, rinfo.port);
		} catch (err) {
			conn.fault(err);
		}
	};
}

const endpoints = new WeakMap<dgram.Socket, QuicClientEndpoint>();

/**
 * The counters of the client endpoint on a shared `socket` (null before its first connection):
 * datagrams in, among others, which a 'message' listener can no longer count once the endpoint
 * reads the socket with recvmmsg.
 */
export function clientEndpointStats(socket: dgram.Socket): EndpointStats | null {
	return endpoints.get(socket)?.stats ?? null;
}

const configCache = new Map<string, QuicheConfig>();

function clientConfig(
	alpns: string[],
	verifyPeer: boolean,
	ca: string | Uint8Array | null,
	limits: QuicLimits,
): QuicheConfig {
	const key = JSON.stringify([alpns, verifyPeer, ca === null ? null : Buffer.from(ca).toString("base64"), limits]);
	let config = configCache.get(key);
	if (config === undefined) {
		config = buildClientConfig(alpns, verifyPeer, ca, limits);
		configCache.set(key, config);
	}
	return config;
}

async function bindSocket(socket: dgram.Socket, ipv6: boolean): Promise<void> {
	await new Promise<void>((resolve, reject) => {
		socket.once("error", reject);
		socket.bind(0, ipv6 ? "::" : "0.0.0.0", () => {
			socket.off("error", reject);
			resolve();
		});
	});
	try {
		socket.setRecvBufferSize(4 * 1024 * 1024);
		socket.setSendBufferSize(4 * 1024 * 1024);
	} catch {
		// capped by the kernel
	}
}

/** "udp4" | "udp6": set by dgram at runtime, absent from @types/node. */
function socketType(socket: dgram.Socket): string {
	return (socket as unknown as { type: string }).type;
}

function isBound(socket: dgram.Socket): boolean {
	try {
		socket.address();
		return true;
	} catch {
		return false;
	}
}

const pendingEndpoints = new WeakMap<dgram.Socket, Promise<QuicClientEndpoint>>();

/** The endpoint for a shared socket (binding it if needed, once), or a private one. */
async function endpointFor(socket: dgram.Socket | undefined, ipv6: boolean): Promise<QuicClientEndpoint> {
	if (socket === undefined) {
		const own = dgram.createSocket(ipv6 ? "udp6" : "udp4");
		await bindSocket(own, ipv6);
		const endpoint = new QuicClientEndpoint(own, true);
		endpoint.localHost = hostPortOf(own);
		return endpoint;
	}
	const existing = endpoints.get(socket);
	if (existing !== undefined) return existing;
	let pending = pendingEndpoints.get(socket);
	if (pending === undefined) {
		pending = (async () => {
			if (!isBound(socket)) await bindSocket(socket, socketType(socket) === "udp6");
			const endpoint = new QuicClientEndpoint(socket, false);
			endpoint.localHost = hostPortOf(socket);
			endpoints.set(socket, endpoint);
			return endpoint;
		})();
		pendingEndpoints.set(socket, pending);
	}
	return await pending;
}

function hostPortOf(socket: dgram.Socket): QuicheHostPort {
	const address = socket.address();
	return { host: address.address, port: address.port };
}

function normalizeHash(hex: string): string {
	return hex.replace(/[^0-9a-fA-F]/g, "").toLowerCase();
}

/** Opens a raw-QUIC session; resolves once the handshake (and the pinned-hash check) succeeded. */
export async function connectQuic(options: ConnectQuicOptions): Promise<QuicConnection> {
	const quiche = loadQuiche();
	const limits = resolveLimits(options.limits);
	let address = options.host === "localhost" ? "127.0.0.1" : options.host;
	if (net.isIP(address) === 0) address = (await lookup(address)).address;
	const sharedIpv6 = options.socket !== undefined && socketType(options.socket) === "udp6";
	const ipv6 = net.isIP(address) === 6 || sharedIpv6;
	if (sharedIpv6 && net.isIP(address) === 4) address = `::ffff:${address}`;
	const endpoint = await endpointFor(options.socket, ipv6);

	const hashes = options.certificateHashes?.map(normalizeHash) ?? null;
	const verifyPeer = hashes === null && options.insecure !== true;
	const config = clientConfig(options.alpns, verifyPeer, options.ca ?? null, limits);
	const serverName = options.serverName ?? (net.isIP(options.host) === 0 ? options.host : null);

	const scid = newCid(Math.floor(Math.random() * 256));
	const native = quiche.Connection.connect(
		serverName,
		scid,
		endpoint.localHost,
		{ host: address, port: options.port },
		config,
	);
	const conn = new QuicConnection(
		native,
		endpoint,
		false,
		endpoint.localHost,
		address,
		options.port,
		{ keepAliveMs: limits.keepAliveMs, handshakeTimeoutMs: limits.handshakeTimeoutMs },
		config,
	);
	conn.holdStreams = true;
	endpoint.register(cidKey(scid), conn);
	endpoint.stats.connectionsAccepted++;

	return await new Promise<QuicConnection>((resolve, reject) => {
		const timer = setTimeout(() => {
			settle(false, `QUIC handshake with ${address}:${options.port} timed out`);
			conn.close(0, "handshake timeout");
		}, options.timeoutMs ?? 10_000);
		const settle = (ok: boolean, reason: string): void => {
			if (!endpoint.pending.has(conn)) return;
			endpoint.pending.delete(conn);
			clearTimeout(timer);
			if (!ok) {
				reject(new Error(reason));
				return;
			}
			if (hashes !== null) {
				const chain = native.peerCertChain();
				const leaf = chain !== null && chain.length > 0 ? chain[0] : null;
				const fingerprint = leaf === null ? "" : createHash("sha256").update(leaf).digest("hex");
				if (!hashes.includes(fingerprint)) {
					conn.abortTransport(CRYPTO_BAD_CERTIFICATE, "certificate hash mismatch");
					reject(new Error(`server certificate ${fingerprint || "(none)"} matches none of the pinned hashes`));
					return;
				}
			}
			resolve(conn);
		};
		endpoint.pending.set(conn, settle);
		conn.onClose = (code, reason) => settle(false, `connection closed during the handshake (${code}: ${reason})`);
		endpoint.driver.markDirty(conn);
	}).then((session) => {
		// The caller installs its own handlers; ours only watched the handshake.
		session.onClose = null;
		// Runs after the caller's continuation has installed onStream (microtasks come first).
		setImmediate(() => session.releaseStreams());
		return session;
	});
}
