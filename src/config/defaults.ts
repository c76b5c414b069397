/**
 * Default values for every optional key, and the embedded development config used when no
 * file is given. docs/configuration.md and relay.toml.example document the same numbers.
 * @module
 */

/** The UDP (and TCP, for HTTP/WebSocket) address when `[server] bind` is absent: WebTransport's port. */
import type { QuicEngineChoice, QuicRetryMode } from "./types.ts";
import { boundedSize } from "./units.ts";

export const DEFAULT_BIND = "[::]:443";

export const DEFAULT_CACHE = {
	/** Ring buffer per track: about 25 s of a 2.5 Mbit/s stream, several groups of 1080p. */
	trackBytes: 8 * 2 ** 20,
	/** All rings together; new tracks are refused past this. */
	totalBytes: 2 ** 30,
	/** Groups older than this relative to the newest are not served (late joiners start near live). */
	maxAgeMs: 30_000,
} as const;

export const DEFAULT_LIMITS = {
	/** Largest frame from a publisher: a 4K keyframe fits; anything bigger is abuse. */
	maxFrameBytes: 4 * 2 ** 20,
	/** Control messages are small; 64 KiB leaves room for long paths and extensions. */
	maxMessageBytes: 64 * 2 ** 10,
	/** Relay-wide, all workers together. */
	maxSessions: 10_000,
	maxTcpConnections: 20_000,
	/** Generous for NAT'd offices and load generators; one attacker host is held to this. */
	maxConnectionsPerIp: 1000,
	/** New connections per second from one address: a page reload is a handful, a flood is thousands. */
	handshakeRatePerIp: 200,
	maxBroadcastsPerSession: 1024,
	/** Slowloris: headers trickled a byte at a time are cut off after this. */
	httpHeaderTimeoutMs: 10_000,
	/** A WebSocket client pings (qmux keep-alive) well within this. */
	idleTimeoutMs: 60_000,
	maxSubscriptions: 1024,
	maxAnnounceRequests: 64,
	/** moq-lite's own cap on path segments. */
	maxPathSegments: 32,
} as const;

export const DEFAULT_QUIC = {
	retry: "auto" as QuicRetryMode,
	/** Handshakes in progress on one worker before "auto" starts answering Initials with a Retry. */
	retryThreshold: 64,
	/** Half-open state is ~100 KB of native memory each: 1024 caps a flood near 100 MB per worker. */
	maxHandshakes: 1024,
	maxHandshakesPerIp: 32,
	maxConnections: 10_000,
	/** Batched egress (GSO + sendmmsg) through the native addon when it is built; false: dgram.send. */
	gso: true,
	/** Batched ingress (recvmmsg, one JS call per batch) through the native addon when it is built. */
	recvBatch: true,
	/** One engine call per frame for all of a worker's QUIC viewers at it (ngtcp2 only). */
	fanoutWrites: true,
	/** The ngtcp2 engine reads established connections' packets out of each recvmmsg batch itself. */
	engineReads: true,
	/** The QUIC engine: "auto" picks ngtcp2 when its addon was built, else quiche (src/quic/engine.ts). */
	engine: "auto" as QuicEngineChoice,
	/**
	 * SO_RCVBUF / SO_SNDBUF asked for the QUIC socket (the kernel caps them at net.core.rmem_max /
	 * wmem_max). A keyframe to 600 viewers brings some 20,000 ACKs while the worker sends; at 4 MiB
	 * the socket starts dropping about there (docs/benchmarks.md, 2026-12-05).
	 */
	udpRecvBuffer: 4 * 1024 * 1024,
	udpSendBuffer: 4 * 1024 * 1024,
} as const;

/** [server.quic] udp_recv_buffer / udp_send_buffer bounds: a page, and 1 GiB (setsockopt takes an int). */
export const MIN_UDP_BUFFER = 4096;
export const MAX_UDP_BUFFER = 1024 * 1024 * 1024;
/** The parser of both keys (and their environment variables). */
export const parseUdpBuffer = boundedSize(MIN_UDP_BUFFER, MAX_UDP_BUFFER);

/** SIGTERM/SIGINT: existing sessions are served this long (ms) after new ones are refused. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;

/**
 * `[workers] malloc_trim`: free pages of the C allocator's arenas go back to the kernel this often.
 * Measured in the cluster churn soak (docs/soak.md): without it RSS climbed about 1.6 MB a minute
 * per relay on long-lived links while the bytes in use stayed flat.
 */
export const DEFAULT_MALLOC_TRIM_MS = 30_000;

/** `[cluster]` defaults; with no cluster key at all, RelayConfig.cluster is null and these apply. */
export const DEFAULT_CLUSTER = {
	/** An abruptly lost broadcast stays announced this long so a reconnecting publisher resumes it (moq-relay's 5 s). */
	lingerMs: 5000,
	/** A relay-to-relay link that hears nothing this long is dead (moq-relay leaves it to QUIC's 30 s). */
	peerIdleTimeoutMs: 5000,
	/** moq-relay's gossip prefix (`MESH_PREFIX`); moq-relay 0.10's `prefix` default was "internal/origins". */
	prefix: ".internal/origins",
} as const;

/** `[cluster] peer_idle_timeout` below this would declare healthy links dead between keep-alives. */
export const MIN_PEER_IDLE_TIMEOUT_MS = 1000;

/** `[cluster] id`: hop ids are varints below 2^62 on the wire, but @moq/lite JS decodes them as u53. */
export const MAX_CLUSTER_ID = Number.MAX_SAFE_INTEGER;

/** Upper bounds that catch typos (a count of 1e9 sessions is a mistake, not a plan). */
export const MAX_WORKERS = 1024;
export const MAX_COUNT = 10_000_000;

/**
 * `moq-fanout` with no config file: a local development relay on UDP and TCP port 4443 with a
 * generated certificate (fetch its hash from http://localhost:4443/certificate.sha256) and
 * anonymous access under `anon/`.
 */
export const DEVELOPMENT_CONFIG = `
[server]
bind = "[::]:4443"
tls.generate = ["localhost", "127.0.0.1"]

[auth]
public = ["anon"]

[log]
level = "info"
`;

/** The `source` of the embedded development config. */
export const DEFAULT_SOURCE = "<default>";
