/**
 * Reads a parsed relay.toml into Settings: one function per table, every key typed and
 * checked, unknown keys rejected. Accepts moq-relay's keys and the seed documents' aliases
 * (a top-level [tls], [cluster] nodes).
 * @module
 */

import { resolve } from "node:path";
import { parseListenAddress } from "./address.ts";
import { parseClusterPeer } from "./cluster-urls.ts";
import { MAX_CLUSTER_ID, MAX_COUNT, MAX_WORKERS, MIN_PEER_IDLE_TIMEOUT_MS, parseUdpBuffer } from "./defaults.ts";
import { describeValue } from "./errors.ts";
import {
	certificateName,
	clusterMesh,
	clusterNodeUrl,
	clusterPrefix,
	clusterTier,
	emptySettings,
	joinPeers,
	LOG_FORMATS,
	LOG_LEVELS,
	normalizePrefix,
	QUIC_ENGINES,
	QUIC_RETRY_MODES,
	type SettingName,
	type Settings,
	type SourcedSettings,
	setSetting,
} from "./settings.ts";
import {
	boolean,
	integer,
	isTable,
	nonEmptyString,
	oneOf,
	stringList,
	TableReader,
	type ValueParser,
} from "./table.ts";
import type { ClusterPeer } from "./types.ts";
import { parseDuration, parseSize } from "./units.ts";

/** Read a parsed TOML document. Relative file paths are resolved against `baseDir`. */
export function readDocument(root: Record<string, unknown>, source: string, baseDir: string): SourcedSettings {
	const out = emptySettings();
	const doc = new TableReader(source, "", root);
	const put = <K extends SettingName>(table: TableReader, key: string, name: K, value: Settings[K] | undefined) =>
		setSetting(out, name, value, { source, key: table.keyPath(key) });
	const paths: ValueParser<string[]> = (value) => stringList(value).map((p) => filePath(p, baseDir));
	const path: ValueParser<string> = (value) => filePath(nonEmptyString(value), baseDir);

	const server = doc.table("server");
	if (server) {
		if (server.has("bind") && server.has("listen")) {
			throw server.error("listen", "is an alias of bind; set only one of them");
		}
		put(server, "bind", "bind", server.read("bind", parseListenAddress));
		put(server, "listen", "bind", server.read("listen", parseListenAddress));
		put(server, "drain_timeout", "drainTimeoutMs", server.read("drain_timeout", parseDuration));
		const tls = server.table("tls");
		if (tls) readTls(tls);
		const quic = server.table("quic");
		if (quic) {
			put(quic, "retry", "quicRetry", quic.read("retry", oneOf(QUIC_RETRY_MODES)));
			put(quic, "retry_threshold", "quicRetryThreshold", quic.read("retry_threshold", integer(0, MAX_COUNT)));
			put(quic, "max_handshakes", "quicMaxHandshakes", quic.read("max_handshakes", integer(1, MAX_COUNT)));
			put(
				quic,
				"max_handshakes_per_ip",
				"quicMaxHandshakesPerIp",
				quic.read("max_handshakes_per_ip", integer(1, MAX_COUNT)),
			);
			put(quic, "max_connections", "quicMaxConnections", quic.read("max_connections", integer(1, MAX_COUNT)));
			put(quic, "gso", "quicGso", quic.read("gso", boolean));
			put(quic, "recv_batch", "quicRecvBatch", quic.read("recv_batch", boolean));
			put(quic, "udp_recv_buffer", "quicUdpRecvBuffer", quic.read("udp_recv_buffer", parseUdpBuffer));
			put(quic, "udp_send_buffer", "quicUdpSendBuffer", quic.read("udp_send_buffer", parseUdpBuffer));
			put(quic, "fanout_writes", "quicFanoutWrites", quic.read("fanout_writes", boolean));
			put(quic, "engine_reads", "quicEngineReads", quic.read("engine_reads", boolean));
			put(quic, "engine", "quicEngine", quic.read("engine", oneOf(QUIC_ENGINES)));
			quic.finish();
		}
		server.unsupported("backend", "moq-fanout always uses quiche");
		server.unsupported("version", "moq-fanout negotiates every moq-lite version it speaks");
		server.unsupported("tcp", "use [web.http] for TCP (WebSocket) clients");
		server.unsupported("unix", "Unix-socket listeners are not implemented");
		server.finish();
	}

	// The seed documents' top-level [tls] is the same table as [server.tls].
	const tlsAlias = doc.table("tls");
	if (tlsAlias) readTls(tlsAlias);

	function readTls(tls: TableReader): void {
		for (const [key, name, parse] of [
			["cert", "tlsCert", paths],
			["key", "tlsKey", paths],
			["generate", "tlsGenerate", (value: unknown) => stringList(value).map(certificateName)],
		] as const) {
			const value = tls.read(key, parse);
			if (value === undefined) continue;
			const previous = out.origins[name];
			if (previous) throw tls.error(key, `already set by ${previous.key}; [tls] and [server.tls] are the same table`);
			put(tls, key, name, value);
		}
		tls.unsupported("root", "mTLS client certificates are not implemented");
		tls.finish();
	}

	const web = doc.table("web");
	if (web) {
		const http = web.table("http");
		if (http) {
			put(
				http,
				"listen",
				"httpListen",
				http.read("listen", (value) => (value === false ? null : parseListenAddress(value))),
			);
			http.finish();
		}
		web.read("ws", (value) => {
			if (!boolean(value)) throw new Error("the WebSocket endpoint cannot be turned off in moq-fanout");
			return value;
		});
		const https = web.table("https");
		if (https) {
			put(
				https,
				"listen",
				"httpsListen",
				https.read("listen", (value) => parseListenAddress(value)),
			);
			https.finish();
		}
		web.finish();
	}

	const auth = doc.table("auth");
	if (auth) {
		put(auth, "key", "authKey", auth.read("key", path));
		put(
			auth,
			"key_dir",
			"authKeyDir",
			auth.read("key_dir", (value) => {
				if (typeof value === "string" && /^https?:\/\//i.test(value)) {
					throw new Error("fetching keys from a URL is not supported; use a local directory of {kid}.jwk files");
				}
				return path(value);
			}),
		);
		put(
			auth,
			"public",
			"authPublic",
			auth.read("public", (value) => {
				if (isTable(value)) {
					throw new Error(
						"separate subscribe/publish prefixes are not supported yet; use a string or an array of prefixes allowed for both",
					);
				}
				return stringList(value).map(normalizePrefix);
			}),
		);
		auth.unsupported("auth_api", "use key or key_dir with local JWK files");
		auth.unsupported("api", "use key or key_dir with local JWK files");
		auth.unsupported("domains", "subdomain routing is not implemented");
		auth.unsupported("tls", "the auth HTTP client is not implemented");
		auth.unsupported("mtls_tier", "mTLS is not implemented");
		auth.finish();
	}

	const log = doc.table("log");
	if (log) {
		put(log, "level", "logLevel", log.read("level", oneOf(LOG_LEVELS)));
		put(log, "format", "logFormat", log.read("format", oneOf(LOG_FORMATS)));
		log.finish();
	}

	const cache = doc.table("cache");
	if (cache) {
		// moq-relay names: capacity (total budget) and duration (age ceiling).
		aliased(cache, "total_bytes", "capacity", "cacheTotalBytes", parseSize);
		aliased(cache, "max_age", "duration", "cacheMaxAgeMs", parseDuration);
		put(cache, "track_bytes", "cacheTrackBytes", cache.read("track_bytes", parseSize));
		cache.unsupported("headroom", "size the cache with total_bytes");
		cache.finish();
	}

	const limits = doc.table("limits");
	if (limits) {
		put(limits, "max_frame_bytes", "maxFrameBytes", limits.read("max_frame_bytes", parseSize));
		put(limits, "max_message_bytes", "maxMessageBytes", limits.read("max_message_bytes", parseSize));
		put(limits, "max_sessions", "maxSessions", limits.read("max_sessions", integer(1, MAX_COUNT)));
		put(limits, "max_subscriptions", "maxSubscriptions", limits.read("max_subscriptions", integer(1, MAX_COUNT)));
		put(
			limits,
			"max_announce_requests",
			"maxAnnounceRequests",
			limits.read("max_announce_requests", integer(1, MAX_COUNT)),
		);
		put(limits, "max_path_segments", "maxPathSegments", limits.read("max_path_segments", integer(1, 32)));
		put(limits, "max_tcp_connections", "maxTcpConnections", limits.read("max_tcp_connections", integer(1, MAX_COUNT)));
		put(
			limits,
			"max_connections_per_ip",
			"maxConnectionsPerIp",
			limits.read("max_connections_per_ip", integer(1, MAX_COUNT)),
		);
		put(
			limits,
			"handshake_rate_per_ip",
			"handshakeRatePerIp",
			limits.read("handshake_rate_per_ip", integer(1, MAX_COUNT)),
		);
		put(
			limits,
			"max_broadcasts_per_session",
			"maxBroadcastsPerSession",
			limits.read("max_broadcasts_per_session", integer(1, MAX_COUNT)),
		);
		put(limits, "http_header_timeout", "httpHeaderTimeoutMs", limits.read("http_header_timeout", positiveDuration));
		put(limits, "idle_timeout", "idleTimeoutMs", limits.read("idle_timeout", positiveDuration));
		limits.finish();
	}

	const workers = doc.table("workers");
	if (workers) {
		put(workers, "count", "workers", workers.read("count", integer(0, MAX_WORKERS)));
		put(workers, "reuse_port", "reusePort", workers.read("reuse_port", boolean));
		put(workers, "malloc_trim", "mallocTrimMs", workers.read("malloc_trim", parseDuration));
		workers.finish();
	}

	const cluster = doc.table("cluster");
	if (cluster) {
		// connect (moq-relay) and root (moq-relay 0.10, one host) list peers that are always dialed.
		const peers: ValueParser<ClusterPeer[]> = (value) => joinPeers([], stringList(value).map(parseClusterPeer));
		const connect: ClusterPeer[] = [];
		let connectKey: string | undefined;
		for (const key of ["connect", "root"]) {
			const list = cluster.read(key, peers);
			if (list === undefined) continue;
			connectKey ??= key;
			try {
				joinPeers(connect, list);
			} catch (err) {
				throw cluster.error(key, (err as Error).message);
			}
		}
		if (connectKey) put(cluster, connectKey, "clusterConnect", connect);
		put(cluster, "nodes", "clusterNodes", cluster.read("nodes", peers));
		put(cluster, "node", "clusterNode", cluster.read("node", clusterNodeUrl));
		put(cluster, "token", "clusterToken", cluster.read("token", path));
		put(cluster, "id", "clusterId", cluster.read("id", integer(1, MAX_CLUSTER_ID)));
		put(cluster, "mesh", "clusterMesh", cluster.read("mesh", clusterMesh));
		put(cluster, "prefix", "clusterPrefix", cluster.read("prefix", clusterPrefix));
		put(cluster, "linger", "clusterLingerMs", cluster.read("linger", parseDuration));
		put(cluster, "peer_idle_timeout", "clusterPeerIdleTimeoutMs", cluster.read("peer_idle_timeout", peerIdleTimeout));
		put(cluster, "tier", "clusterTier", cluster.read("tier", clusterTier));
		put(cluster, "parents", "clusterParents", cluster.read("parents", peers));
		cluster.unsupported(
			"connect_api",
			"list peers in connect or nodes (a peer list fetched at run time is not implemented)",
		);
		cluster.finish();
	}

	const client = doc.table("client");
	if (client) {
		const tls = client.table("tls");
		if (tls) {
			put(tls, "disable_verify", "clientTlsDisableVerify", tls.read("disable_verify", boolean));
			put(tls, "root", "clientTlsRoot", tls.read("root", paths));
			tls.unsupported("system_roots", "root replaces the system roots; leave root unset to use them");
			tls.unsupported("fingerprint", "certificate pinning is not implemented; use root or disable_verify");
			tls.unsupported("cert", "client certificates (mTLS) are not implemented; peers authenticate with a JWT");
			tls.unsupported("key", "client certificates (mTLS) are not implemented; peers authenticate with a JWT");
			tls.finish();
		}
		const why = "moq-fanout reads only [client.tls] root and disable_verify";
		for (const key of [
			"connect",
			"bind",
			"backend",
			"failover_delay",
			"resolution_delay",
			"timeout",
			"quic",
			"version",
			"backoff",
			"websocket",
		]) {
			client.unsupported(key, why);
		}
		client.finish();
	}

	doc.unsupported("stats", "use the Prometheus /metrics endpoint");
	const internal = doc.table("internal");
	if (internal) {
		put(
			internal,
			"listen",
			"internalListen",
			internal.read("listen", (value) => parseListenAddress(value)),
		);
		internal.finish();
	}
	doc.unsupported("iroh", "iroh is not implemented");
	doc.unsupported("file", "pass the config file on the command line");
	doc.finish();
	return out;

	function aliased<K extends SettingName>(
		table: TableReader,
		key: string,
		alias: string,
		name: K,
		parse: ValueParser<Settings[K]>,
	): void {
		if (table.has(key) && table.has(alias)) throw table.error(alias, `is an alias of ${key}; set only one of them`);
		put(table, key, name, table.read(key, parse));
		put(table, alias, name, table.read(alias, parse));
	}
}

/** `[cluster] peer_idle_timeout`: a duration of at least a second. */
function peerIdleTimeout(value: unknown): number {
	const ms = parseDuration(value);
	if (ms < MIN_PEER_IDLE_TIMEOUT_MS) throw new Error(`expected a duration of at least 1s, got ${describeValue(value)}`);
	return ms;
}

/** A duration that must be above zero (a zero timeout would close every connection at once). */
function positiveDuration(value: unknown): number {
	const ms = parseDuration(value);
	if (ms <= 0) throw new Error(`expected a duration above zero, got ${describeValue(value)}`);
	return ms;
}

/** Resolve a configured path against the config file's directory. */
function filePath(value: string, baseDir: string): string {
	if (value === "") throw new Error(`expected a file path, got ${describeValue(value)}`);
	return resolve(baseDir, value);
}
