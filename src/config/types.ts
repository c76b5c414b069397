/** The validated, fully-defaulted relay configuration (what `loadConfig` returns). */

/** QUIC address validation: always, never, or once handshakes in progress pass a threshold. */
export type QuicRetryMode = "auto" | "on" | "off";

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error";

export interface ListenAddress {
	/** Host as written, without brackets ("::", "0.0.0.0", "127.0.0.1"). */
	host: string;
	port: number;
}

export interface RelayConfig {
	/** Where it came from: a file path, or "<default>" for the embedded development config. */
	source: string;
	server: {
		/** UDP address for QUIC / WebTransport. [server] bind, default "[::]:4443". */
		bind: ListenAddress;
		/** [server.quic]: address validation and handshake caps, per worker. */
		quic: {
			/** Stateless Retry (RFC 9000 §8.1): "on" always, "off" never, "auto" once `retryThreshold` handshakes are in progress. */
			retry: QuicRetryMode;
			retryThreshold: number;
			/** QUIC handshakes in progress per worker; new Initials past it are dropped. */
			maxHandshakes: number;
			/** QUIC handshakes in progress per worker from one address (/64 for IPv6). */
			maxHandshakesPerIp: number;
			/** QUIC connections (handshaking or established) per worker. */
			maxConnections: number;
		};
		/**
		 * SIGTERM/SIGINT: how long existing sessions keep being served after new ones are refused
		 * (ms). 0 closes them at once. [server] drain_timeout, default 30 s.
		 */
		drainTimeoutMs: number;
	};
	tls: {
		/** PEM certificate chain files, paired with `key` by index. */
		cert: string[];
		key: string[];
		/** Hostnames for a generated ECDSA P-256 self-signed certificate valid 14 days. */
		generate: string[];
	};
	web: {
		/** TCP address for HTTP + WebSocket. Default: same host and port number as server.bind. null disables. */
		http: ListenAddress | null;
		/** TCP address for HTTPS + secure WebSocket (wss://) with the [server.tls] certificates. null = off. */
		https: ListenAddress | null;
	};
	internal: {
		/**
		 * `[internal] listen` (moq-relay's key): a plain HTTP listener for the unauthenticated ops
		 * routes (/metrics, /health, the status page), opened by worker 0. When set, /metrics is no
		 * longer served on [web.http] / [web.https]. null = off (metrics on the public listener).
		 */
		listen: ListenAddress | null;
	};
	auth: {
		/** A JWK file (JSON or base64url(JSON)). */
		key: string | null;
		/** A directory of `{kid}.jwk` files. */
		keyDir: string | null;
		/** Path prefixes usable without a token; "" means everything. null = none. */
		public: string[] | null;
	};
	log: { level: LogLevel; format: "text" | "json" };
	cache: {
		/** Ring buffer bytes per track. */
		trackBytes: number;
		/** Cap on all rings together; new tracks are refused past it. */
		totalBytes: number;
		/** Groups older than this (relative to the newest) are not served, even if still in the ring. */
		maxAgeMs: number;
	};
	limits: {
		/** Largest frame accepted from a publisher; larger resets the group with code 27. */
		maxFrameBytes: number;
		/** Largest control message accepted. */
		maxMessageBytes: number;
		/** Concurrent sessions, relay-wide (all workers together). */
		maxSessions: number;
		/** Concurrent TCP connections (HTTP + WebSocket), relay-wide. */
		maxTcpConnections: number;
		/** Concurrent connections (QUIC + TCP) from one address (/64 for IPv6), relay-wide. */
		maxConnectionsPerIp: number;
		/** New connections (QUIC handshakes + TCP accepts) per second from one address, relay-wide. */
		handshakeRatePerIp: number;
		/** Concurrent broadcasts one session may publish. */
		maxBroadcastsPerSession: number;
		/** An HTTP request (including a WebSocket upgrade) must finish its headers within this (ms). */
		httpHeaderTimeoutMs: number;
		/** A TCP connection that receives nothing for this long is closed (ms). */
		idleTimeoutMs: number;
		/** Concurrent subscriptions per session. */
		maxSubscriptions: number;
		/** Concurrent announce requests per session. */
		maxAnnounceRequests: number;
		/** Broadcast paths may have at most this many segments (moq-lite: 32). */
		maxPathSegments: number;
	};
	workers: {
		/** Relay worker threads; 0 = one per available core. */
		count: number;
		/**
		 * Each worker binds its own SO_REUSEPORT sockets (default where supported). false: worker 0 owns
		 * the one UDP socket and hands packets to the other workers by connection ID (the fallback).
		 */
		reusePort: boolean;
	};
	cluster: {
		/** Other relays to connect to (URLs). */
		nodes: string[];
		/** A JWK file used to mint tokens toward other nodes. */
		token: string | null;
	};
}
