/**
 * The flat, partially specified settings that a config file and the command line each
 * contribute. Files and flags are read into this shape, merged (flags win), then resolved
 * into a RelayConfig with defaults and cross-key checks (see resolve.ts).
 * @module
 */

import { isIP } from "node:net";
import type { ListenAddress, LogLevel, QuicRetryMode } from "./types.ts";

export const LOG_LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warn", "error"];
export const QUIC_RETRY_MODES: readonly QuicRetryMode[] = ["auto", "on", "off"];
export const LOG_FORMATS: readonly ("text" | "json")[] = ["text", "json"];

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
	drainTimeoutMs?: number;
	/** 0 = one per available core. */
	workers?: number;
	/** false: one receiving socket that hands packets to workers (the fallback where SO_REUSEPORT is missing). */
	reusePort?: boolean;
	clusterNodes?: string[];
	/** Absolute path. */
	clusterToken?: string;
}

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

/**
 * A cluster peer: a full http(s) URL, or (like moq-relay, deprecated there) a bare "host" or
 * "host:port", which becomes "https://host:port/".
 */
export function clusterNode(value: unknown): string {
	if (typeof value !== "string" || value === "") {
		throw new Error(`expected a URL like "https://relay.example:443/", got ${JSON.stringify(value)}`);
	}
	const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `https://${value}/`;
	let url: URL;
	try {
		url = new URL(text);
	} catch {
		throw new Error(`expected a URL like "https://relay.example:443/", got ${JSON.stringify(value)}`);
	}
	if (url.protocol !== "https:" && url.protocol !== "http:") {
		throw new Error(`expected an https:// or http:// URL, got ${JSON.stringify(value)}`);
	}
	return url.href;
}
