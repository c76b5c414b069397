/** The validated, fully-defaulted relay configuration (what `loadConfig` returns). */

/** QUIC address validation: always, never, or once handshakes in progress pass a threshold. */
export type QuicRetryMode = "auto" | "on" | "off";
/** [server.quic] engine: which QUIC implementation serves the relay (src/quic/engine.ts). */
export type QuicEngineChoice = "auto" | "ngtcp2" | "quiche";

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
			/**
			 * Batched UDP egress (GSO super-packets, sendmmsg) through the native addon, when it was
			 * built at install; false sends each packet with dgram.send. [server.quic] gso, default true.
			 */
			gso: boolean;
			/**
			 * Batched UDP ingress (recvmmsg, one JS call per batch) through the same addon; false
			 * receives each datagram with dgram. [server.quic] recv_batch, default true.
			 */
			recvBatch: boolean;
			/**
			 * SO_RCVBUF and SO_SNDBUF asked for the QUIC socket, bytes; the kernel caps them at
			 * net.core.rmem_max / wmem_max (a warning says so at start-up, and the metrics report what
			 * the kernel gave). [server.quic] udp_recv_buffer / udp_send_buffer, default 4 MiB each.
			 */
			udpRecvBuffer: number;
			udpSendBuffer: number;
			/**
			 * The fan-out writes each frame to all of a worker's QUIC viewers at it (raw QUIC and
			 * WebTransport) in one call to the ngtcp2 engine, which copies it once (the quiche engine
			 * writes per viewer).
			 * [server.quic] fanout_writes, default true.
			 */
			fanoutWrites: boolean;
			/**
			 * The ngtcp2 engine reads the short-header packets of established connections itself, out of
			 * each recvmmsg batch (needs recv_batch); false: every datagram goes through the JS intake.
			 * [server.quic] engine_reads, default true.
			 */
			engineReads: boolean;
			/**
			 * The server-side QUIC engine: "ngtcp2" (the C engine on the system's ngtcp2 + GnuTLS, built
			 * at install when they are present), "quiche", or "auto" (src/quic/engine.ts decides).
			 * [server.quic] engine, default "auto".
			 */
			engine: QuicEngineChoice;
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
		/**
		 * How often (ms) the relay hands the C allocator's free pages back to the kernel (malloc_trim);
		 * 0 = never. Needs the native addon and glibc. [workers] malloc_trim, default 30 s.
		 */
		mallocTrimMs: number;
	};
	/**
	 * `[cluster]`: relay-to-relay links. null when no cluster key is set anywhere (file, environment,
	 * flags): a standalone relay, which still accepts peers that authenticate. Consumers then use
	 * DEFAULT_CLUSTER (src/config/defaults.ts) for the hop id policy and linger.
	 */
	cluster: ClusterConfig | null;
	/** `[client]` (moq-relay's name): how this relay dials other relays. */
	client: {
		tls: ClientTlsConfig;
	};
}

/** `[cluster] tier`: moq-fanout's tree roles. An edge never carries traffic between two other relays. */
export type ClusterTier = "origin" | "mid" | "edge";

/** One relay to dial, from a URL such as `https://relay.example/?jwt=TOKEN&cost=5`. */
export interface ClusterPeer {
	/**
	 * The URL to dial, without `jwt` and `cost` (safe to log and to send to clients in a GOAWAY).
	 * Other query parameters stay. A bare `host:port` became `https://host:port/`.
	 */
	url: string;
	/**
	 * The peer's identity (canonicalClusterUrl): lower-case scheme and host, no default port, no
	 * query, no trailing slash on a path. Two entries with the same key are the same relay.
	 */
	key: string;
	/** The URL's own `?jwt=` token, sent instead of [cluster] token; null = use the token file. */
	jwt: string | null;
	/** `?cost=N`, the link's routing price (moq-lite-06+; ignored by older versions). null = unpriced. */
	cost: number | null;
	/**
	 * `?version=moq-lite-0N`: the one moq-lite version the link speaks; null = moq-lite-05 over raw
	 * QUIC, as moq-relay dials. 02–04 go over WebTransport, where the CONNECT URL carries the token.
	 */
	version: PeerLiteVersion | null;
}

/** The moq-lite versions a cluster link can be pinned to (`?version=`). */
export type PeerLiteVersion = 2 | 3 | 4 | 5;

/** The validated `[cluster]` table. */
export interface ClusterConfig {
	/**
	 * Every relay this one dials, each once (by key), in this order: `connect` (and `root`),
	 * `parents`, then the `nodes` entries that `shouldDial(node, entry)` picks. This relay's own
	 * URL (`node`) is never in it.
	 */
	dial: ClusterPeer[];
	/** `connect` plus the seed era's `root`: always dialed (own entry skipped). */
	connect: ClusterPeer[];
	/**
	 * `nodes` (the seed guides' shared list) without this relay's own entry: every other member,
	 * whether this relay dials it or waits for it to dial in (see `dial`).
	 */
	nodes: ClusterPeer[];
	/** `node`: this relay's own URL as written (bare host:port becomes https://host:port/); null = unset. */
	node: string | null;
	/** canonicalClusterUrl(node), for comparisons; null = unset. */
	nodeKey: string | null;
	/** `token`: absolute path of the JWT file presented to peers without their own ?jwt=. Not read here. */
	token: string | null;
	/** `id`: this relay's hop id, 1..2^53-1; null = one random id per process, shared by every worker. */
	id: number | null;
	/** `mesh`: gossip discovery (advertise `node` under `prefix`, dial the peers found there). */
	mesh: boolean;
	/** `prefix`: where gossip entries live. Default ".internal/origins" (moq-relay's); no leading/trailing slash. */
	prefix: string;
	/** `linger` (ms): how long a broadcast whose publisher vanished (no clean unannounce) stays announced. 0 = not at all. */
	lingerMs: number;
	/** `peer_idle_timeout` (ms): a relay-to-relay link that hears nothing for this long is dead (≥ 1000). */
	peerIdleTimeoutMs: number;
	/** `tier`: this relay's role in a tree; null = a flat mesh (no roles). */
	tier: ClusterTier | null;
	/** `parents`: the relays an edge or mid dials upstream (also in `dial`). Empty unless tier is mid or edge. */
	parents: ClusterPeer[];
}

/** `[client.tls]`: TLS for this relay's outbound (relay-to-relay) dials. */
export interface ClientTlsConfig {
	/**
	 * `disable_verify`: accept any server certificate (self-signed relays on a trusted network).
	 * Wins over `root`. Default false.
	 */
	disableVerify: boolean;
	/**
	 * `root`: absolute paths of PEM files with CA certificates to trust instead of the system roots
	 * (checked to exist and hold a certificate at load; re-read by the dialer). [] = system roots.
	 */
	root: string[];
}
