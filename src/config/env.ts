/**
 * Configuration from the environment, as moq-relay reads it: `MOQ_<SECTION>_<KEY>` for every key of
 * relay.toml, plus the log level from `MOQ_LOG_LEVEL`, `MOQ_LOG` or `RUST_LOG`.
 *
 * Names are moq-relay's own where it has one (its clap `env = "…"` attributes: MOQ_SERVER_BIND,
 * MOQ_SERVER_TLS_CERT, MOQ_AUTH_KEY, MOQ_CACHE_CAPACITY, MOQ_CLUSTER_CONNECT …); every other key
 * is `MOQ_` + its dotted TOML path upper-cased with dots as underscores (`[limits] max_sessions` →
 * MOQ_LIMITS_MAX_SESSIONS). Values go through the file's parsers (units, ranges); lists are
 * comma-separated; relative paths resolve against the working directory, as flags do. An empty
 * value counts as unset (clap does the same). Precedence: flags > environment > file > defaults.
 *
 * Unknown MOQ_* variables are reported as warnings, never errors: other tools (moq-cli, hang, …)
 * share the prefix.
 * @module
 */

import { resolve } from "node:path";
import { parseListenAddress } from "./address.ts";
import { parseClusterPeer } from "./cluster-urls.ts";
import { MAX_CLUSTER_ID, MAX_COUNT, MAX_WORKERS, MIN_PEER_IDLE_TIMEOUT_MS, parseUdpBuffer } from "./defaults.ts";
import { ConfigError } from "./errors.ts";
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
import { integer, oneOf } from "./table.ts";
import type { ClusterPeer, LogLevel } from "./types.ts";
import { parseDuration, parseSize } from "./units.ts";

/** The `source` of settings (and errors) that come from environment variables. */
export const ENV_SOURCE = "environment";

/** A process environment (process.env, or a plain object in tests). */
export type Env = Readonly<Record<string, string | undefined>>;

/** Parses one variable's text; throws an Error saying what was expected. */
type TextParser<T> = (text: string) => T;

/** One configuration variable. */
export interface EnvVar {
	/** The variable. */
	name: string;
	/** The relay.toml key it stands for ("limits.max_sessions"). */
	key: string;
	/** The setting it fills. */
	setting: SettingName;
	/** Whether moq-relay reads the same name (otherwise the name is derived from `key`). */
	moqRelay: boolean;
	/** A valid value, for the docs and tests. */
	example: string;
	parse: TextParser<unknown>;
	/**
	 * Another variable for the same setting: "conflict" (setting both is an error, like the file's
	 * aliases) or "merge" (lists join, like [cluster] connect/root).
	 */
	group?: "conflict" | "merge";
}

// ── Text parsers: the file's parsers behind a string → value step ─────

const digitsToNumber = (text: string): unknown => (/^\d+$/.test(text) ? Number(text) : text);
const int =
	(min: number, max: number): TextParser<number> =>
	(text) =>
		integer(min, max)(digitsToNumber(text.trim()));
const size: TextParser<number> = (text) => parseSize(digitsToNumber(text.trim()));
const udpBuffer: TextParser<number> = (text) => parseUdpBuffer(digitsToNumber(text.trim()));
const duration: TextParser<number> = (text) => parseDuration(digitsToNumber(text.trim()));
const positiveDuration: TextParser<number> = (text) => {
	const ms = duration(text);
	if (ms <= 0) throw new Error(`expected a duration above zero, got ${JSON.stringify(text)}`);
	return ms;
};
const bool: TextParser<boolean> = (text) => {
	const lower = text.trim().toLowerCase();
	if (lower === "true" || lower === "1") return true;
	if (lower === "false" || lower === "0") return false;
	throw new Error(`expected true or false, got ${JSON.stringify(text)}`);
};
const path: TextParser<string> = (text) => resolve(text);
const address: TextParser<unknown> = (text) => parseListenAddress(text.trim());

/** Comma-separated items, each parsed; an empty item is an error (it would silently mean "everything" for prefixes). */
function list<T>(item: (text: string) => T): TextParser<T[]> {
	return (text) =>
		text.split(",").map((part, i) => {
			const trimmed = part.trim();
			if (trimmed === "") throw new Error(`item ${i + 1} of the comma-separated list is empty`);
			return item(trimmed);
		});
}

/** A comma-separated list of cluster peer URLs (one relay listed twice differently is an error). */
const peers: TextParser<unknown> = (text) => joinPeers([], list(parseClusterPeer)(text));

/** Every variable, in docs order. */
export const ENV_VARS: readonly EnvVar[] = [
	v("MOQ_SERVER_BIND", "server.bind", "bind", true, "[::]:443", address, "conflict"),
	v("MOQ_SERVER_LISTEN", "server.listen", "bind", false, "[::]:443", address, "conflict"),
	v("MOQ_SERVER_DRAIN_TIMEOUT", "server.drain_timeout", "drainTimeoutMs", false, "30s", duration),
	v("MOQ_SERVER_QUIC_RETRY", "server.quic.retry", "quicRetry", false, "auto", (t) => oneOf(QUIC_RETRY_MODES)(t.trim())),
	v(
		"MOQ_SERVER_QUIC_RETRY_THRESHOLD",
		"server.quic.retry_threshold",
		"quicRetryThreshold",
		false,
		"64",
		int(0, MAX_COUNT),
	),
	v(
		"MOQ_SERVER_QUIC_MAX_HANDSHAKES",
		"server.quic.max_handshakes",
		"quicMaxHandshakes",
		false,
		"1024",
		int(1, MAX_COUNT),
	),
	v(
		"MOQ_SERVER_QUIC_MAX_HANDSHAKES_PER_IP",
		"server.quic.max_handshakes_per_ip",
		"quicMaxHandshakesPerIp",
		false,
		"32",
		int(1, MAX_COUNT),
	),
	v(
		"MOQ_SERVER_QUIC_MAX_CONNECTIONS",
		"server.quic.max_connections",
		"quicMaxConnections",
		false,
		"10000",
		int(1, MAX_COUNT),
	),
	v("MOQ_SERVER_QUIC_GSO", "server.quic.gso", "quicGso", false, "true", bool),
	v("MOQ_SERVER_QUIC_RECV_BATCH", "server.quic.recv_batch", "quicRecvBatch", false, "true", bool),
	v("MOQ_SERVER_QUIC_UDP_RECV_BUFFER", "server.quic.udp_recv_buffer", "quicUdpRecvBuffer", false, "4MiB", udpBuffer),
	v("MOQ_SERVER_QUIC_UDP_SEND_BUFFER", "server.quic.udp_send_buffer", "quicUdpSendBuffer", false, "4MiB", udpBuffer),
	v("MOQ_SERVER_QUIC_FANOUT_WRITES", "server.quic.fanout_writes", "quicFanoutWrites", false, "true", bool),
	v("MOQ_SERVER_QUIC_ENGINE_READS", "server.quic.engine_reads", "quicEngineReads", false, "true", bool),
	v("MOQ_SERVER_QUIC_ENGINE", "server.quic.engine", "quicEngine", false, "auto", (t) => oneOf(QUIC_ENGINES)(t.trim())),
	v("MOQ_SERVER_TLS_CERT", "server.tls.cert", "tlsCert", true, "/etc/moq/cert.pem", list(path)),
	v("MOQ_SERVER_TLS_KEY", "server.tls.key", "tlsKey", true, "/etc/moq/key.pem", list(path)),
	v(
		"MOQ_SERVER_TLS_GENERATE",
		"server.tls.generate",
		"tlsGenerate",
		true,
		"localhost,127.0.0.1",
		list(certificateName),
	),
	v("MOQ_WEB_HTTP_LISTEN", "web.http.listen", "httpListen", true, "[::]:80", (text) =>
		["off", "false"].includes(text.trim().toLowerCase()) ? null : address(text),
	),
	v("MOQ_WEB_HTTPS_LISTEN", "web.https.listen", "httpsListen", true, "[::]:443", address),
	v("MOQ_INTERNAL_LISTEN", "internal.listen", "internalListen", true, "127.0.0.1:9101", address),
	v("MOQ_AUTH_KEY", "auth.key", "authKey", true, "/etc/moq/root.jwk", path),
	v("MOQ_AUTH_KEY_DIR", "auth.key_dir", "authKeyDir", true, "/etc/moq/keys", (text) => {
		if (/^https?:\/\//i.test(text.trim())) {
			throw new Error("fetching keys from a URL is not supported; use a local directory of {kid}.jwk files");
		}
		return path(text);
	}),
	v("MOQ_AUTH_PUBLIC", "auth.public", "authPublic", true, "anon,demo", list(normalizePrefix)),
	v("MOQ_LOG_LEVEL", "log.level", "logLevel", true, "debug", (t) => oneOf(LOG_LEVELS)(t.trim())),
	v("MOQ_LOG_FORMAT", "log.format", "logFormat", false, "json", (t) => oneOf(LOG_FORMATS)(t.trim())),
	v("MOQ_CACHE_TRACK_BYTES", "cache.track_bytes", "cacheTrackBytes", false, "8MiB", size),
	v("MOQ_CACHE_TOTAL_BYTES", "cache.total_bytes", "cacheTotalBytes", false, "1GiB", size, "conflict"),
	v("MOQ_CACHE_CAPACITY", "cache.capacity", "cacheTotalBytes", true, "1GiB", size, "conflict"),
	v("MOQ_CACHE_MAX_AGE", "cache.max_age", "cacheMaxAgeMs", false, "30s", duration, "conflict"),
	v("MOQ_CACHE_DURATION", "cache.duration", "cacheMaxAgeMs", true, "30s", duration, "conflict"),
	v("MOQ_LIMITS_MAX_FRAME_BYTES", "limits.max_frame_bytes", "maxFrameBytes", false, "4MiB", size),
	v("MOQ_LIMITS_MAX_MESSAGE_BYTES", "limits.max_message_bytes", "maxMessageBytes", false, "64KiB", size),
	v("MOQ_LIMITS_MAX_SESSIONS", "limits.max_sessions", "maxSessions", false, "10000", int(1, MAX_COUNT)),
	v("MOQ_LIMITS_MAX_SUBSCRIPTIONS", "limits.max_subscriptions", "maxSubscriptions", false, "1000", int(1, MAX_COUNT)),
	v(
		"MOQ_LIMITS_MAX_ANNOUNCE_REQUESTS",
		"limits.max_announce_requests",
		"maxAnnounceRequests",
		false,
		"64",
		int(1, MAX_COUNT),
	),
	v("MOQ_LIMITS_MAX_PATH_SEGMENTS", "limits.max_path_segments", "maxPathSegments", false, "16", int(1, 32)),
	v(
		"MOQ_LIMITS_MAX_TCP_CONNECTIONS",
		"limits.max_tcp_connections",
		"maxTcpConnections",
		false,
		"20000",
		int(1, MAX_COUNT),
	),
	v(
		"MOQ_LIMITS_MAX_CONNECTIONS_PER_IP",
		"limits.max_connections_per_ip",
		"maxConnectionsPerIp",
		false,
		"1000",
		int(1, MAX_COUNT),
	),
	v(
		"MOQ_LIMITS_HANDSHAKE_RATE_PER_IP",
		"limits.handshake_rate_per_ip",
		"handshakeRatePerIp",
		false,
		"100",
		int(1, MAX_COUNT),
	),
	v(
		"MOQ_LIMITS_MAX_BROADCASTS_PER_SESSION",
		"limits.max_broadcasts_per_session",
		"maxBroadcastsPerSession",
		false,
		"64",
		int(1, MAX_COUNT),
	),
	v(
		"MOQ_LIMITS_HTTP_HEADER_TIMEOUT",
		"limits.http_header_timeout",
		"httpHeaderTimeoutMs",
		false,
		"10s",
		positiveDuration,
	),
	v("MOQ_LIMITS_IDLE_TIMEOUT", "limits.idle_timeout", "idleTimeoutMs", false, "30s", positiveDuration),
	v("MOQ_WORKERS_COUNT", "workers.count", "workers", false, "4", int(0, MAX_WORKERS)),
	v("MOQ_WORKERS_REUSE_PORT", "workers.reuse_port", "reusePort", false, "true", bool),
	v("MOQ_WORKERS_MALLOC_TRIM", "workers.malloc_trim", "mallocTrimMs", false, "30s", duration),
	v(
		"MOQ_CLUSTER_CONNECT",
		"cluster.connect",
		"clusterConnect",
		true,
		"https://us.relay.example/?jwt=TOKEN",
		peers,
		"merge",
	),
	v("MOQ_CLUSTER_ROOT", "cluster.root", "clusterConnect", true, "root.relay.example:443", peers, "merge"),
	v(
		"MOQ_CLUSTER_NODES",
		"cluster.nodes",
		"clusterNodes",
		false,
		"https://a.relay.example,https://b.relay.example",
		peers,
	),
	v("MOQ_CLUSTER_NODE", "cluster.node", "clusterNode", true, "https://a.relay.example", (t) =>
		clusterNodeUrl(t.trim()),
	),
	v("MOQ_CLUSTER_TOKEN", "cluster.token", "clusterToken", true, "/etc/moq/cluster.jwt", path),
	v("MOQ_CLUSTER_ID", "cluster.id", "clusterId", true, "42", int(1, MAX_CLUSTER_ID)),
	v("MOQ_CLUSTER_MESH", "cluster.mesh", "clusterMesh", true, "true", (text) =>
		/^[01]$/.test(text.trim()) ? bool(text) : clusterMesh(text.trim()),
	),
	v("MOQ_CLUSTER_PREFIX", "cluster.prefix", "clusterPrefix", true, ".internal/origins", clusterPrefix),
	v("MOQ_CLUSTER_LINGER", "cluster.linger", "clusterLingerMs", true, "5s", duration),
	v("MOQ_CLUSTER_PEER_IDLE_TIMEOUT", "cluster.peer_idle_timeout", "clusterPeerIdleTimeoutMs", false, "5s", (text) => {
		const ms = duration(text);
		if (ms < MIN_PEER_IDLE_TIMEOUT_MS) {
			throw new Error(`expected a duration of at least 1s, got ${JSON.stringify(text)}`);
		}
		return ms;
	}),
	v("MOQ_CLUSTER_TIER", "cluster.tier", "clusterTier", true, "edge", (text) => clusterTier(text.trim())),
	v("MOQ_CLUSTER_PARENTS", "cluster.parents", "clusterParents", false, "https://mid.relay.example", peers),
	v("MOQ_CLIENT_TLS_ROOT", "client.tls.root", "clientTlsRoot", true, "/etc/moq/ca.pem", list(path)),
	v("MOQ_CLIENT_TLS_DISABLE_VERIFY", "client.tls.disable_verify", "clientTlsDisableVerify", true, "true", bool),
];

function v(
	name: string,
	key: string,
	setting: SettingName,
	moqRelay: boolean,
	example: string,
	parse: TextParser<unknown>,
	group?: "conflict" | "merge",
): EnvVar {
	return { name, key, setting, moqRelay, example, parse, group };
}

/** Variables read for the log level, most specific first (after MOQ_LOG_LEVEL, which is in ENV_VARS). */
export const LOG_FILTER_VARS = ["MOQ_LOG", "RUST_LOG"] as const;

/** Variables of this repository's tests and debug hooks: never warned about. */
const INTERNAL = new Set([
	"MOQ_FANOUT_DEBUG",
	"MOQ_FANOUT_GC_PROBE",
	"MOQ_FANOUT_YOUNG_GENERATION_MB",
	"MOQ_NGTCP2_ADDON",
	"MOQ_TEST_LOG",
	"MOQ_TEST_TRACE",
	"MOQ_FUZZ_SELFTEST",
]);

/** moq-relay variables that moq-fanout does not implement: a warning that says why beats "unknown". */
const UNSUPPORTED: Record<string, string> = {
	MOQ_SERVER_BACKEND: "moq-fanout always uses quiche",
	MOQ_SERVER_VERSION: "moq-fanout negotiates every moq-lite version it speaks",
	MOQ_SERVER_TCP_BIND: "TCP (WebSocket) clients use MOQ_WEB_HTTP_LISTEN",
	MOQ_SERVER_TLS_ROOT: "mTLS client certificates are not implemented",
	MOQ_AUTH_API: "use MOQ_AUTH_KEY or MOQ_AUTH_KEY_DIR with local JWK files",
	MOQ_AUTH_DOMAIN: "subdomain routing is not implemented",
	MOQ_AUTH_MTLS_TIER: "mTLS is not implemented",
	MOQ_AUTH_PUBLIC_SUBSCRIBE: "separate subscribe/publish prefixes are not supported; use MOQ_AUTH_PUBLIC",
	MOQ_AUTH_PUBLIC_PUBLISH: "separate subscribe/publish prefixes are not supported; use MOQ_AUTH_PUBLIC",
	MOQ_AUTH_PUBLIC_API: "use MOQ_AUTH_PUBLIC",
	MOQ_CACHE_HEADROOM: "size the cache with MOQ_CACHE_TOTAL_BYTES",
	MOQ_CLUSTER_CONNECT_API: "list peers in MOQ_CLUSTER_CONNECT or MOQ_CLUSTER_NODES",
	MOQ_CLIENT_TLS_SYSTEM_ROOTS: "MOQ_CLIENT_TLS_ROOT replaces the system roots; leave it unset to use them",
	MOQ_CLIENT_TLS_FINGERPRINT:
		"certificate pinning is not implemented; use MOQ_CLIENT_TLS_ROOT or MOQ_CLIENT_TLS_DISABLE_VERIFY",
	MOQ_CLIENT_TLS_CERT: "client certificates (mTLS) are not implemented; peers authenticate with a JWT",
	MOQ_CLIENT_TLS_KEY: "client certificates (mTLS) are not implemented; peers authenticate with a JWT",
	MOQ_WEB_WS: "the WebSocket endpoint is always on in moq-fanout",
	MOQ_WEB_HTTPS_CERT: "[web.https] serves the [server.tls] certificates (MOQ_SERVER_TLS_CERT)",
	MOQ_WEB_HTTPS_KEY: "[web.https] serves the [server.tls] certificates (MOQ_SERVER_TLS_KEY)",
	MOQ_WEB_HTTPS_ROOT: "mTLS client certificates are not implemented",
};
const UNSUPPORTED_PREFIXES: [string, string][] = [
	["MOQ_SERVER_QUIC_", "moq-fanout's QUIC stack has no such setting"],
	["MOQ_SERVER_UNIX_", "Unix-socket listeners are not implemented"],
	["MOQ_SERVER_PREFERRED_", "preferred addresses are not implemented"],
	["MOQ_AUTH_TLS_", "the auth HTTP client is not implemented"],
	["MOQ_STATS_", "use the Prometheus /metrics endpoint"],
	[
		"MOQ_CLIENT_",
		"of moq-relay's client settings moq-fanout reads only MOQ_CLIENT_TLS_ROOT and MOQ_CLIENT_TLS_DISABLE_VERIFY",
	],
];

/** What the environment contributes: settings (source "environment") and warnings to print once. */
export interface EnvSettings {
	settings: SourcedSettings;
	warnings: string[];
}

/**
 * Read configuration variables from `env`. Throws ConfigError (source "environment", key the
 * variable) on a bad value, so the message starts `environment: MOQ_LIMITS_MAX_SESSIONS: …`.
 */
export function readEnv(env: Env): EnvSettings {
	const out = emptySettings();
	const warnings: string[] = [];
	const value = (name: string): string | undefined => {
		const text = env[name];
		return text === undefined || text.trim() === "" ? undefined : text;
	};
	const parse = (name: string, parser: TextParser<unknown>, text: string): unknown => {
		try {
			return parser(text);
		} catch (err) {
			throw new ConfigError(ENV_SOURCE, name, (err as Error).message);
		}
	};

	const seen = new Map<SettingName, string>();
	for (const spec of ENV_VARS) {
		const text = value(spec.name);
		if (text === undefined) continue;
		let parsed = parse(spec.name, spec.parse, text);
		const previous = seen.get(spec.setting);
		if (previous !== undefined) {
			if (spec.group !== "merge") {
				throw new ConfigError(ENV_SOURCE, spec.name, `sets the same key as ${previous}; set only one of them`);
			}
			// The only merged lists are cluster peers (MOQ_CLUSTER_CONNECT + MOQ_CLUSTER_ROOT).
			const merged = [...(out.values[spec.setting] as ClusterPeer[])];
			parsed = parse(spec.name, () => joinPeers(merged, parsed as ClusterPeer[]), text);
		}
		seen.set(spec.setting, previous ?? spec.name);
		setSetting(out, spec.setting, parsed as Settings[SettingName], {
			source: ENV_SOURCE,
			key: previous ?? spec.name,
		});
	}

	// The log level: MOQ_LOG_LEVEL (above) wins; then MOQ_LOG, then RUST_LOG, in RUST_LOG's syntax.
	if (out.values.logLevel === undefined) {
		for (const name of LOG_FILTER_VARS) {
			const text = value(name);
			if (text === undefined) continue;
			const filter = levelFromLogFilter(text);
			if (name === "MOQ_LOG" && (filter.invalid.length > 0 || filter.level === null)) {
				const why =
					filter.invalid.length > 0
						? `cannot read ${filter.invalid.map((d) => JSON.stringify(d)).join(", ")}`
						: "no directive applies to the relay";
				throw new ConfigError(
					ENV_SOURCE,
					name,
					`expected a level (${LOG_LEVELS.join(", ")}) or RUST_LOG-style directives like "warn,moq_relay=debug"; ${why}`,
				);
			}
			if (filter.invalid.length > 0) {
				warnings.push(
					`${name}: ignoring ${filter.invalid.map((d) => JSON.stringify(d)).join(", ")} (not a level directive)`,
				);
			}
			if (filter.level === null) continue;
			setSetting(out, "logLevel", filter.level, { source: ENV_SOURCE, key: name });
			break;
		}
	}

	const known = new Set<string>([...ENV_VARS.map((spec) => spec.name), "MOQ_LOG"]);
	for (const name of Object.keys(env).sort()) {
		if (!name.startsWith("MOQ_") || known.has(name) || INTERNAL.has(name)) continue;
		const why = UNSUPPORTED[name] ?? UNSUPPORTED_PREFIXES.find(([prefix]) => name.startsWith(prefix))?.[1];
		warnings.push(
			why === undefined
				? `${name}: not a moq-fanout setting; ignored (docs/configuration.md lists the MOQ_* variables)`
				: `${name}: moq-relay option not supported by moq-fanout, ignored: ${why}`,
		);
	}
	return { settings: out, warnings };
}

/** Targets whose directives set the relay's level: `moq_relay=debug` is what moq-relay operators write. */
const RELAY_TARGETS = ["moq_relay", "moq_fanout", "moq_lite", "moq_native"];
const LEVEL_RANK: Record<string, number> = { off: 0, error: 1, warn: 2, info: 3, debug: 4, trace: 5 };
const RANKED: readonly LogLevel[] = ["error", "error", "warn", "info", "debug", "trace"];

/**
 * The relay's log level from a RUST_LOG-style filter (tracing's EnvFilter syntax): comma-separated
 * directives, each a bare level (`info`: every target), `target=level`, or a bare target (= trace).
 * The most verbose level among the directives that reach the relay wins: bare levels and targets that
 * are a prefix of, or inside, moq_relay / moq_fanout / moq_lite / moq_native (`moq=debug`,
 * `moq_relay::web=trace`). `off` maps to error (the relay's quietest). Directives for other crates
 * (`quinn=debug`) and span filters (`[span]=debug`) are skipped. `invalid` lists directives that are
 * not directives at all (a bad level, a malformed target).
 */
export function levelFromLogFilter(text: string): { level: LogLevel | null; invalid: string[] } {
	let best = -1;
	const invalid: string[] = [];
	for (const raw of text.split(",")) {
		const directive = raw.trim();
		if (directive === "") continue;
		const eq = directive.lastIndexOf("=");
		let target: string;
		let rank: number | undefined;
		if (eq < 0) {
			rank = levelRank(directive);
			target = rank === undefined ? directive : "";
			rank ??= LEVEL_RANK.trace;
		} else {
			target = directive.slice(0, eq);
			rank = levelRank(directive.slice(eq + 1));
			if (rank === undefined) {
				invalid.push(directive);
				continue;
			}
		}
		const bracket = target.indexOf("[");
		if (bracket === 0) continue; // a span filter: not about a target
		if (bracket > 0) target = target.slice(0, bracket);
		if (target !== "" && !/^[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z0-9_]+)*$/.test(target)) {
			invalid.push(directive);
			continue;
		}
		const applies =
			target === "" || RELAY_TARGETS.some((relay) => relay.startsWith(target) || target.startsWith(`${relay}::`));
		if (applies) best = Math.max(best, rank);
	}
	return { level: best < 0 ? null : RANKED[best], invalid };
}

function levelRank(text: string): number | undefined {
	const lower = text.trim().toLowerCase();
	if (/^[0-5]$/.test(lower)) return Number(lower);
	return Object.hasOwn(LEVEL_RANK, lower) ? LEVEL_RANK[lower] : undefined;
}
