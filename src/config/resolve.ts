/**
 * Turns merged settings into the final RelayConfig: fills defaults, checks the rules that
 * span keys (cert/key pairing, some certificate, some way to authenticate), and checks that
 * every referenced file exists.
 * @module
 */

import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { parseListenAddress } from "./address.ts";
import { canonicalClusterUrl, inferOwnNode, ownNames, shouldDial } from "./cluster-urls.ts";
import {
	DEFAULT_BIND,
	DEFAULT_CACHE,
	DEFAULT_CLUSTER,
	DEFAULT_DRAIN_TIMEOUT_MS,
	DEFAULT_LIMITS,
	DEFAULT_MALLOC_TRIM_MS,
	DEFAULT_QUIC,
} from "./defaults.ts";
import { ENV_SOURCE } from "./env.ts";
import { ConfigError, describeKey } from "./errors.ts";
import { CLUSTER_SETTINGS, type Origin, type SettingName, type SourcedSettings } from "./settings.ts";
import type { ClusterConfig, ClusterPeer, RelayConfig } from "./types.ts";

/** Build the final config. `source` names the config file (or "<default>") in the result and in errors. */
export function resolveConfig(settings: SourcedSettings, source: string): RelayConfig {
	const { values, origins } = settings;
	const where = (name: SettingName, fallbackKey: string): Origin => origins[name] ?? { source, key: fallbackKey };
	const fail = (name: SettingName, fallbackKey: string, message: string, table = false) => {
		const origin = where(name, fallbackKey);
		// A variable (MOQ_SERVER_TLS_CERT) or a flag is named as it is, not as a TOML table.
		if (origin.source === ENV_SOURCE) return new ConfigError(origin.source, origin.key, message);
		return new ConfigError(origin.source, table ? tableOf(origin.key) : origin.key, message, { table });
	};

	const bind = values.bind ?? parseListenAddress(DEFAULT_BIND);

	// TLS: certificate files pair with key files by index; something must provide a certificate.
	const cert = values.tlsCert ?? [];
	const key = values.tlsKey ?? [];
	const generate = values.tlsGenerate ?? [];
	if (cert.length !== key.length) {
		const name = cert.length > key.length ? "tlsCert" : "tlsKey";
		throw fail(
			name,
			"server.tls.cert",
			`cert lists ${cert.length} file(s) but key lists ${key.length}; they pair up by index`,
			true,
		);
	}
	if (cert.length === 0 && generate.length === 0) {
		throw new ConfigError(
			source,
			"server.tls",
			'no certificate: set cert and key (PEM files), or generate = ["hostname", ...] for a self-signed one',
			{ table: true },
		);
	}
	for (const file of cert) requireFile(file, where("tlsCert", "server.tls.cert"));
	for (const file of key) requireFile(file, where("tlsKey", "server.tls.key"));

	// Auth, as moq-relay: without a key, a key directory or a public prefix nobody could connect.
	const authPublic = values.authPublic && values.authPublic.length > 0 ? [...new Set(values.authPublic)] : null;
	const authKey = values.authKey ?? null;
	const authKeyDir = values.authKeyDir ?? null;
	if (authKey === null && authKeyDir === null && authPublic === null) {
		throw new ConfigError(
			source,
			"auth",
			'no key, key_dir or public path configured; set key = "root.jwk" for JWT auth, or public = "" to allow anonymous access to everything',
			{ table: true },
		);
	}
	if (authKey !== null && authKeyDir !== null) {
		// One key source: a token's kid picks a file in key_dir, while key is the only key.
		const origin = where("authKeyDir", "auth.key_dir");
		throw new ConfigError(
			origin.source,
			origin.key,
			`cannot be combined with ${describeKey(where("authKey", "auth.key").key)}; set one of them`,
		);
	}
	if (authKey !== null) requireFile(authKey, where("authKey", "auth.key"));
	if (authKeyDir !== null) requireFile(authKeyDir, where("authKeyDir", "auth.key_dir"), true);

	const cache = {
		trackBytes: values.cacheTrackBytes ?? DEFAULT_CACHE.trackBytes,
		totalBytes: values.cacheTotalBytes ?? DEFAULT_CACHE.totalBytes,
		maxAgeMs: values.cacheMaxAgeMs ?? DEFAULT_CACHE.maxAgeMs,
	};
	if (cache.trackBytes > cache.totalBytes) {
		throw fail(
			"cacheTrackBytes",
			"cache.track_bytes",
			`${cache.trackBytes} bytes exceeds total_bytes (${cache.totalBytes})`,
		);
	}

	const limits = {
		maxFrameBytes: values.maxFrameBytes ?? DEFAULT_LIMITS.maxFrameBytes,
		maxMessageBytes: values.maxMessageBytes ?? DEFAULT_LIMITS.maxMessageBytes,
		maxSessions: values.maxSessions ?? DEFAULT_LIMITS.maxSessions,
		maxSubscriptions: values.maxSubscriptions ?? DEFAULT_LIMITS.maxSubscriptions,
		maxAnnounceRequests: values.maxAnnounceRequests ?? DEFAULT_LIMITS.maxAnnounceRequests,
		maxPathSegments: values.maxPathSegments ?? DEFAULT_LIMITS.maxPathSegments,
		maxTcpConnections: values.maxTcpConnections ?? DEFAULT_LIMITS.maxTcpConnections,
		maxConnectionsPerIp: values.maxConnectionsPerIp ?? DEFAULT_LIMITS.maxConnectionsPerIp,
		handshakeRatePerIp: values.handshakeRatePerIp ?? DEFAULT_LIMITS.handshakeRatePerIp,
		maxBroadcastsPerSession: values.maxBroadcastsPerSession ?? DEFAULT_LIMITS.maxBroadcastsPerSession,
		httpHeaderTimeoutMs: values.httpHeaderTimeoutMs ?? DEFAULT_LIMITS.httpHeaderTimeoutMs,
		idleTimeoutMs: values.idleTimeoutMs ?? DEFAULT_LIMITS.idleTimeoutMs,
	};
	const quic = {
		retry: values.quicRetry ?? DEFAULT_QUIC.retry,
		retryThreshold: values.quicRetryThreshold ?? DEFAULT_QUIC.retryThreshold,
		maxHandshakes: values.quicMaxHandshakes ?? DEFAULT_QUIC.maxHandshakes,
		maxHandshakesPerIp: values.quicMaxHandshakesPerIp ?? DEFAULT_QUIC.maxHandshakesPerIp,
		maxConnections: values.quicMaxConnections ?? DEFAULT_QUIC.maxConnections,
		gso: values.quicGso ?? DEFAULT_QUIC.gso,
		recvBatch: values.quicRecvBatch ?? DEFAULT_QUIC.recvBatch,
		udpRecvBuffer: values.quicUdpRecvBuffer ?? DEFAULT_QUIC.udpRecvBuffer,
		udpSendBuffer: values.quicUdpSendBuffer ?? DEFAULT_QUIC.udpSendBuffer,
		fanoutWrites: values.quicFanoutWrites ?? DEFAULT_QUIC.fanoutWrites,
		engineReads: values.quicEngineReads ?? DEFAULT_QUIC.engineReads,
		engine: values.quicEngine ?? DEFAULT_QUIC.engine,
	};
	// A frame has to fit in its track's ring buffer to be cached and fanned out at all.
	if (limits.maxFrameBytes > cache.trackBytes) {
		throw fail(
			"maxFrameBytes",
			"limits.max_frame_bytes",
			`${limits.maxFrameBytes} bytes exceeds cache.track_bytes (${cache.trackBytes}); a frame must fit in its track's cache`,
		);
	}

	const cluster = resolveCluster(settings, source, { port: bind.port, names: () => ownNames(generate, cert) });

	// Outbound TLS for relay-to-relay dials: each CA file must exist and hold a certificate now.
	const clientTlsRoot = values.clientTlsRoot ?? [];
	for (const file of clientTlsRoot) {
		const origin = where("clientTlsRoot", "client.tls.root");
		requireFile(file, origin);
		if (!readFileSync(file, "latin1").includes("-----BEGIN CERTIFICATE-----")) {
			throw new ConfigError(origin.source, origin.key, `no PEM certificate (-----BEGIN CERTIFICATE-----) in ${file}`);
		}
	}

	const workers = values.workers ?? 0;

	return {
		source,
		server: { bind, quic, drainTimeoutMs: values.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS },
		tls: { cert, key, generate },
		// HTTP + WebSocket share the QUIC port number on TCP unless told otherwise.
		web: {
			http: values.httpListen === undefined ? { ...bind } : values.httpListen,
			https: values.httpsListen ?? null,
		},
		internal: { listen: values.internalListen ?? null },
		auth: { key: authKey, keyDir: authKeyDir, public: authPublic },
		log: { level: values.logLevel ?? "info", format: values.logFormat ?? "text" },
		cache,
		limits,
		workers: {
			count: workers === 0 ? availableParallelism() : workers,
			reusePort: values.reusePort ?? reusePortSupported(),
			mallocTrimMs: values.mallocTrimMs ?? DEFAULT_MALLOC_TRIM_MS,
		},
		cluster,
		client: { tls: { disableVerify: values.clientTlsDisableVerify ?? false, root: clientTlsRoot } },
	};
}

/**
 * `[cluster]`, or null when no cluster setting is given anywhere. Cross-key rules: `nodes` needs
 * `node` (which entry is this relay?) and must contain it; `mesh` needs `node` (the URL to
 * advertise); `parents` needs tier mid or edge, and those tiers need parents.
 */
function resolveCluster(
	settings: SourcedSettings,
	source: string,
	self: { port: number; names: () => ReadonlySet<string> },
): ClusterConfig | null {
	const { values, origins } = settings;
	if (!CLUSTER_SETTINGS.some((name) => values[name] !== undefined)) return null;
	const fail = (name: SettingName, fallbackKey: string, message: string) => {
		const origin = origins[name] ?? { source, key: fallbackKey };
		return new ConfigError(origin.source, origin.key, message);
	};

	// moq-relay's legacy `mesh = "<url>"`: gossip on, advertising that URL.
	let node = values.clusterNode ?? null;
	let mesh = false;
	const meshSetting = values.clusterMesh;
	if (typeof meshSetting === "object") {
		if (node !== null && canonicalClusterUrl(node) !== canonicalClusterUrl(meshSetting.legacyNode)) {
			throw fail(
				"clusterMesh",
				"cluster.mesh",
				`is now true or false; the URL ${JSON.stringify(meshSetting.legacyNode)} conflicts with node ${JSON.stringify(node)}, so set the URL only in node`,
			);
		}
		node ??= meshSetting.legacyNode;
		mesh = true;
	} else {
		mesh = meshSetting ?? false;
	}
	let nodeKey = node === null ? null : canonicalClusterUrl(node);
	if (mesh && nodeKey === null) {
		throw fail(
			"clusterMesh",
			"cluster.mesh",
			'gossip needs this relay\'s own URL to advertise; set node = "https://this-relay.example/"',
		);
	}

	// nodes: the same list on every relay, this one included; only the smaller URL of a pair dials.
	let nodes: ClusterPeer[] = [];
	if (values.clusterNodes !== undefined && nodeKey === null) {
		// The guides' list, as written, has no node: this relay's entry is the one on our port whose
		// host is one of our names (certificate names, host name, addresses).
		const own = inferOwnNode(values.clusterNodes, self.port, self.names());
		if (own !== null) {
			node = own.url;
			nodeKey = own.key;
		}
	}
	if (values.clusterNodes !== undefined) {
		if (nodeKey === null) {
			throw fail(
				"clusterNodes",
				"cluster.nodes",
				"lists every relay of the cluster, this one included, and none of its entries is this relay (none, or several, on this relay's port name this host or its certificate): " +
					'set node = "<this relay\'s URL, as listed in nodes>" (or --cluster-node / MOQ_CLUSTER_NODE), ' +
					"or list only the other relays in connect",
			);
		}
		if (!values.clusterNodes.some((peer) => peer.key === nodeKey)) {
			throw fail(
				values.clusterNode !== undefined ? "clusterNode" : "clusterMesh",
				"cluster.node",
				`${JSON.stringify(node)} is not one of the nodes entries (${values.clusterNodes.map((p) => p.key).join(", ")}); nodes must list every relay, this one included`,
			);
		}
		nodes = values.clusterNodes.filter((peer) => peer.key !== nodeKey);
	}

	// Tree roles: an edge or mid dials its parents; an origin has none.
	const tier = values.clusterTier ?? null;
	const parents = values.clusterParents ?? [];
	if (values.clusterParents !== undefined && tier !== "mid" && tier !== "edge") {
		throw fail(
			"clusterParents",
			"cluster.parents",
			`needs tier = "mid" or "edge" (${tier === null ? "no tier is set" : `tier is "${tier}"`}); an origin has no parents`,
		);
	}
	if ((tier === "mid" || tier === "edge") && parents.length === 0) {
		throw fail("clusterTier", "cluster.tier", `"${tier}" dials its parents; list them in parents = ["https://..."]`);
	}
	if (nodeKey !== null && parents.some((peer) => peer.key === nodeKey)) {
		throw fail("clusterParents", "cluster.parents", `lists this relay's own URL (node = ${JSON.stringify(node)})`);
	}

	const connect = (values.clusterConnect ?? []).filter((peer) => peer.key !== nodeKey);
	const dial: ClusterPeer[] = [];
	for (const peer of [...connect, ...parents, ...nodes.filter((peer) => shouldDial(nodeKey!, peer.key))]) {
		if (!dial.some((p) => p.key === peer.key)) dial.push(peer);
	}

	const token = values.clusterToken ?? null;
	if (token !== null) requireFile(token, origins.clusterToken ?? { source, key: "cluster.token" });

	return {
		dial,
		connect,
		nodes,
		node,
		nodeKey,
		token,
		id: values.clusterId ?? null,
		mesh,
		prefix: values.clusterPrefix ?? DEFAULT_CLUSTER.prefix,
		lingerMs: values.clusterLingerMs ?? DEFAULT_CLUSTER.lingerMs,
		peerIdleTimeoutMs: values.clusterPeerIdleTimeoutMs ?? DEFAULT_CLUSTER.peerIdleTimeoutMs,
		tier,
		parents,
	};
}

/** "server.tls.cert" → "server.tls"; flags stay as they are. */
function tableOf(key: string): string {
	if (key.startsWith("-")) return key;
	const dot = key.lastIndexOf(".");
	return dot < 0 ? key : key.slice(0, dot);
}

/** A referenced file (or directory) must exist when the config loads, not at the first connection. */
function requireFile(path: string, origin: Origin, directory = false): void {
	let stats: ReturnType<typeof statSync>;
	try {
		stats = statSync(path);
	} catch (err) {
		const code = (err as NodeJS.ErrnoException).code;
		const why = code === "ENOENT" ? "not found" : `cannot be read (${code})`;
		throw new ConfigError(origin.source, origin.key, `${directory ? "directory" : "file"} ${why}: ${path}`);
	}
	if (directory && !stats.isDirectory()) {
		throw new ConfigError(origin.source, origin.key, `not a directory: ${path}`);
	}
	if (!directory && !stats.isFile()) {
		throw new ConfigError(origin.source, origin.key, `not a file: ${path}`);
	}
	try {
		accessSync(path, constants.R_OK);
	} catch {
		throw new ConfigError(origin.source, origin.key, `no permission to read ${path}`);
	}
}

/** SO_REUSEPORT for dgram/net needs Node >= 22.12 on Linux (or a BSD); elsewhere one socket feeds every worker. */
export function reusePortSupported(): boolean {
	const [major, minor] = process.versions.node.split(".").map(Number);
	const recent = major > 22 || (major === 22 && minor >= 12);
	return recent && (process.platform === "linux" || process.platform === "freebsd");
}
