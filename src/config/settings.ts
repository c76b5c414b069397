/**
 * The flat, partially specified settings that a config file and the command line each
 * contribute. Files and flags are read into this shape, merged (flags win), then resolved
 * into a RelayConfig with defaults and cross-key checks (see resolve.ts).
 * @module
 */

import { isIP } from "node:net";
import { parseClusterUrl } from "./cluster-urls.ts";
import { describeValue } from "./errors.ts";
import type { ClusterPeer, ClusterTier, ListenAddress, LogLevel, QuicEngineChoice, QuicRetryMode } from "./types.ts";

export const LOG_LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warn", "error"];
export const QUIC_RETRY_MODES: readonly QuicRetryMode[] = ["auto", "on", "off"];
export const QUIC_ENGINES: readonly QuicEngineChoice[] = ["auto", "ngtcp2", "quiche"];
export const LOG_FORMATS: readonly ("text" | "json")[] = ["text", "json"];
export const CLUSTER_TIERS: readonly ClusterTier[] = ["origin", "mid", "edge"];

/** Every setting a file or a flag can provide. Absent means "not given here". */
export interface Settings {
	bind?: ListenAddress;
	/** Absolute paths. */
	tlsCert?: string[];
	/** Absolute paths. */
	tlsKey?: string[];
	tlsGenerate?: string[];
	/** null: explicitly disabled. */
	httpListen?: ListenAddress | null;
	/** HTTPS + WSS listener (the [server.tls] certificates); absent = off. */
	httpsListen?: ListenAddress;
	/** `[internal] listen`: plain HTTP for /metrics and /health on a trusted address; absent = off. */
	internalListen?: ListenAddress;
	/** Absolute path. */
	authKey?: string;
	/** Absolute path. */
	authKeyDir?: string;
	/** Normalised prefixes; "" means everything. */
	authPublic?: string[];
	logLevel?: LogLevel;
	logFormat?: "text" | "json";
	cacheTrackBytes?: number;
	cacheTotalBytes?: number;
	cacheMaxAgeMs?: number;
	maxFrameBytes?: number;
	maxMessageBytes?: number;
	maxSessions?: number;
	maxSubscriptions?: number;
	maxAnnounceRequests?: number;
	maxPathSegments?: number;
	maxTcpConnections?: number;
	maxConnectionsPerIp?: number;
	handshakeRatePerIp?: number;
	maxBroadcastsPerSession?: number;
	httpHeaderTimeoutMs?: number;
	idleTimeoutMs?: number;
	quicRetry?: QuicRetryMode;
	quicRetryThreshold?: number;
	quicMaxHandshakes?: number;
	quicMaxHandshakesPerIp?: number;
	quicMaxConnections?: number;
	quicGso?: boolean;
	quicRecvBatch?: boolean;
	quicUdpRecvBuffer?: number;
	quicUdpSendBuffer?: number;
	quicFanoutWrites?: boolean;
	quicEngineReads?: boolean;
	quicEngine?: QuicEngineChoice;
	drainTimeoutMs?: number;
	/** 0 = one per available core. */
	workers?: number;
	/** false: one receiving socket that hands packets to workers (the fallback where SO_REUSEPORT is missing). */
	reusePort?: boolean;
	/** `[workers] malloc_trim`, ms; 0 = never. */
	mallocTrimMs?: number;
	/** `[cluster] connect` and the seed era's `root`, joined (duplicates removed). */
	clusterConnect?: ClusterPeer[];
	/** `[cluster] nodes`: every member of the cluster, this relay included. */
	clusterNodes?: ClusterPeer[];
	/** `[cluster] node`: this relay's own URL (normalised href). */
	clusterNode?: string;
	/** Absolute path. */
	clusterToken?: string;
	clusterId?: number;
	/** A string is moq-relay's legacy `mesh = "<url>"`: gossip on, with that URL as `node`. */
	clusterMesh?: boolean | { legacyNode: string };
	/** Normalised (no leading or trailing slash), not empty. */
	clusterPrefix?: string;
	clusterLingerMs?: number;
	clusterPeerIdleTimeoutMs?: number;
	/** null: `tier = ""` (moq-relay's "default tier"), the same as no tier. */
	clusterTier?: ClusterTier | null;
	clusterParents?: ClusterPeer[];
	clientTlsDisableVerify?: boolean;
	/** Absolute paths. */
	clientTlsRoot?: string[];
}

/** Every setting that, once given, makes RelayConfig.cluster non-null. */
export const CLUSTER_SETTINGS: readonly SettingName[] = [
	"clusterConnect",
	"clusterNodes",
	"clusterNode",
	"clusterToken",
	"clusterId",
	"clusterMesh",
	"clusterPrefix",
	"clusterLingerMs",
	"clusterPeerIdleTimeoutMs",
	"clusterTier",
	"clusterParents",
];

export type SettingName = keyof Settings;

/** Where a setting came from, so later errors (missing file, cert/key mismatch) can name it. */
export interface Origin {
	/** The config file, "<default>", or "command line". */
	source: string;
	/** Dotted TOML key ("server.tls.cert") or flag ("--tls-cert"). */
	key: string;
}

/** Settings plus the origin of each one that is set. */
export interface SourcedSettings {
	values: Settings;
	origins: Partial<Record<SettingName, Origin>>;
}

/** An empty set of settings. */
export function emptySettings(): SourcedSettings {
	return { values: {}, origins: {} };
}

/** Set one setting and remember where it came from. */
export function setSetting<K extends SettingName>(
	into: SourcedSettings,
	name: K,
	value: Settings[K] | undefined,
	origin: Origin,
): void {
	if (value === undefined) return;
	into.values[name] = value;
	into.origins[name] = origin;
}

/** Layer `top` over `base`: each setting `top` gives replaces the one in `base`. */
export function mergeSettings(base: SourcedSettings, top: SourcedSettings): SourcedSettings {
	return {
		values: { ...base.values, ...top.values },
		origins: { ...base.origins, ...top.origins },
	};
}

/**
 * Normalise an auth path prefix: no leading or trailing slashes ("/anon/" → "anon"),
 * so "" (or "/") means every path.
 */
export function normalizePrefix(prefix: string): string {
	return prefix.replace(/^\/+|\/+$/g, "");
}

const HOSTNAME = /^(\*\.)?[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*$/i;

/** A certificate subject: an IP literal or a DNS name (a leading "*." wildcard is allowed). */
export function certificateName(value: unknown): string {
	if (typeof value === "string" && (HOSTNAME.test(value) || isIP(value) !== 0)) return value.toLowerCase();
	throw new Error(`expected host names or IP addresses, got ${JSON.stringify(value)}`);
}

/** A cluster node's own URL (`[cluster] node`) as its normalised href; a token in it is refused (gossip advertises it). */
export function clusterNodeUrl(value: unknown): string {
	const url = parseClusterUrl(value);
	if (url.searchParams.has("jwt")) {
		throw new Error("this relay's own URL must not carry ?jwt= (gossip advertises it); use [cluster] token");
	}
	return url.href;
}

/**
 * Join peer lists, dropping repeats of a relay (same canonical key). The same relay listed twice
 * with a different token, cost or URL is an error: which one to dial would be a guess.
 */
export function joinPeers(into: ClusterPeer[], more: readonly ClusterPeer[]): ClusterPeer[] {
	for (const peer of more) {
		const same = into.find((p) => p.key === peer.key);
		if (same === undefined) {
			into.push(peer);
		} else if (same.url !== peer.url || same.jwt !== peer.jwt || same.cost !== peer.cost) {
			throw new Error(`${peer.key} is listed twice with a different URL, ?jwt= or ?cost=; list each relay once`);
		}
	}
	return into;
}

/**
 * `[cluster] mesh`: true or false. moq-relay keeps it as a string, so "true"/"false" work too, and
 * any other string is its legacy form `mesh = "<this relay's URL>"` (gossip on, that URL as node).
 */
export function clusterMesh(value: unknown): boolean | { legacyNode: string } {
	if (typeof value === "boolean") return value;
	if (typeof value !== "string") throw new Error(`expected true or false, got ${describeValue(value)}`);
	const lower = value.trim().toLowerCase();
	if (lower === "true" || lower === "false") return lower === "true";
	return { legacyNode: clusterNodeUrl(value) };
}

/**
 * `[cluster] tier`: origin, mid or edge (moq-fanout's tree roles). "" is no tier, as moq-relay's
 * empty tier is its default. Other words are moq-relay's stats labels, which are refused.
 */
export function clusterTier(value: unknown): ClusterTier | null {
	if (value === "") return null;
	const lower = typeof value === "string" ? value.toLowerCase() : undefined;
	const tier = CLUSTER_TIERS.find((choice) => choice === lower);
	if (tier !== undefined) return tier;
	const hint =
		typeof value === "string"
			? "; moq-relay's tier (a stats billing label) is not implemented, and moq-fanout's tier is a tree role"
			: "";
	throw new Error(`expected one of ${CLUSTER_TIERS.join(", ")}, got ${describeValue(value)}${hint}`);
}

/** `[cluster] prefix`: a broadcast path prefix for gossip entries, normalised; "" is refused (it would be every path). */
export function clusterPrefix(value: unknown): string {
	if (typeof value !== "string") {
		throw new Error(`expected a path prefix like ".internal/origins", got ${describeValue(value)}`);
	}
	const prefix = normalizePrefix(value);
	const control = [...prefix].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
	if (prefix === "" || control || prefix.split("/").some((part) => part === "")) {
		throw new Error(`expected a path prefix like ".internal/origins", got ${describeValue(value)}`);
	}
	return prefix;
}
