/**
 * Cluster peer URLs as moq-relay reads them (rs/moq-relay/src/cluster.rs): a full URL such as
 * `https://relay.example/?jwt=TOKEN`, or a deprecated bare `host` / `host:port` that becomes
 * `https://host:port/`. `?jwt=` (the peer's token) and `?cost=` (the link's price) are read off
 * the URL and kept apart, so the URL left over is safe to log and to hand to clients. So is our own
 * `?version=moq-lite-0N`, which pins the link to one moq-lite version (for a peer that speaks only
 * an older one, such as a seed-era relay on lite-02).
 *
 * A peer's identity is its canonical URL (`canonicalClusterUrl`): lower-case scheme and host, no
 * default port, no query, no trailing slash on a path. `shouldDial` breaks the symmetry of a
 * list every relay shares (`[cluster] nodes`): only the side with the smaller canonical URL dials.
 * @module
 */

import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname, networkInterfaces } from "node:os";
import { describeValue } from "./errors.ts";
import type { ClusterPeer, PeerLiteVersion } from "./types.ts";

/** Schemes moq-fanout dials: WebTransport over TLS (`https:`), or `http:` (moq-relay's insecure development form). */
export const CLUSTER_URL_SCHEMES: readonly string[] = ["https:", "http:"];

/** moq-relay's other peer schemes, each refused with a reason. */
const OTHER_SCHEMES: Record<string, string> = {
	"tcp:": "tcp:// (qmux over plain TCP) is not supported by moq-fanout; use https://",
	"unix:": "unix:// (qmux over a Unix socket) is not supported by moq-fanout; use https://",
	"ws:": "ws:// is not a cluster URL in moq-fanout; use https:// (moq-fanout falls back to WebSocket itself)",
	"wss:": "wss:// is not a cluster URL in moq-fanout; use https:// (moq-fanout falls back to WebSocket itself)",
	"moqt:": "moqt:// (raw QUIC) is not supported by moq-fanout; use https://",
	"moql:": "moql:// (raw QUIC) is not supported by moq-fanout; use https://",
	"iroh:": "iroh:// is not supported by moq-fanout; use https://",
};

const EXAMPLE = '"https://relay.example:443/"';
const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * Parse a cluster URL as written, with moq-relay's bare `host[:port]` form (→ `https://host:port/`),
 * query kept; throws an Error saying what was expected.
 */
export function parseClusterUrl(value: unknown): URL {
	if (typeof value !== "string" || value.trim() === "") {
		throw new Error(`expected a URL like ${EXAMPLE}, got ${describeValue(value)}`);
	}
	const text = value.trim();
	let url: URL;
	try {
		url = new URL(SCHEME.test(text) ? text : `https://${text}/`);
	} catch {
		throw new Error(`expected a URL like ${EXAMPLE}, got ${describeValue(value)}`);
	}
	if (!CLUSTER_URL_SCHEMES.includes(url.protocol)) {
		const why = OTHER_SCHEMES[url.protocol];
		throw new Error(why ?? `expected an https:// or http:// URL, got ${describeValue(value)}`);
	}
	if (url.hostname === "") throw new Error(`expected a host in ${describeValue(value)}`);
	if (url.username !== "" || url.password !== "") {
		throw new Error(`a user name or password in the URL is not supported; use ?jwt= or [cluster] token`);
	}
	if (url.hash !== "") throw new Error(`a URL fragment (#...) has no meaning here, got ${describeValue(value)}`);
	return url;
}

/**
 * A cluster peer: the URL to dial with `?jwt=` and `?cost=` taken off, the token, the link cost
 * and the canonical identity. An empty `?jwt=` counts as none (as in moq-relay). Throws an Error
 * saying what was expected.
 */
export function parseClusterPeer(value: unknown): ClusterPeer {
	const url = parseClusterUrl(value);
	const params = url.searchParams;
	const jwts = params.getAll("jwt");
	if (jwts.length > 1) throw new Error(`?jwt= is given ${jwts.length} times in ${describeValue(value)}`);
	const costs = params.getAll("cost");
	if (costs.length > 1) throw new Error(`?cost= is given ${costs.length} times in ${describeValue(value)}`);
	let cost: number | null = null;
	if (costs.length === 1) {
		cost = /^\d+$/.test(costs[0]) ? Number(costs[0]) : Number.NaN;
		if (!Number.isSafeInteger(cost)) {
			throw new Error(`?cost= must be a non-negative integer, got ${describeValue(costs[0])}`);
		}
	}
	const versions = params.getAll("version");
	if (versions.length > 1) throw new Error(`?version= is given ${versions.length} times in ${describeValue(value)}`);
	let version: PeerLiteVersion | null = null;
	if (versions.length === 1) {
		const m = /^moq-lite-0([2-5])$/.exec(versions[0]);
		if (!m) {
			throw new Error(`?version= must be one of moq-lite-02 … moq-lite-05, got ${describeValue(versions[0])}`);
		}
		version = Number(m[1]) as PeerLiteVersion;
	}
	params.delete("jwt");
	params.delete("cost");
	params.delete("version");
	return { url: url.href, key: canonical(url), jwt: jwts[0] || null, cost, version };
}

/** The identity of a parsed URL: scheme, host, port unless default, path without a trailing slash. */
function canonical(url: URL): string {
	// WHATWG URL already lower-cases the scheme and host, drops the scheme's default port
	// (443 for https:, 80 for http:) and gives an empty path as "/".
	const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, "") : "/";
	return `${url.protocol}//${url.host}${path || "/"}`;
}

/**
 * The canonical form of a cluster URL, for comparing two spellings of the same relay:
 * `relay.example:443`, `HTTPS://Relay.Example/` and `https://relay.example/?jwt=x` are all
 * `https://relay.example/`. Throws an Error for a URL that is not a valid cluster URL.
 */
export function canonicalClusterUrl(value: string): string {
	return canonical(parseClusterUrl(value));
}

/**
 * Whether this relay (`self`) dials `peer` when both are members of one shared list: only the
 * relay with the smaller canonical URL dials, so each pair opens one session, and no relay dials
 * itself (moq-relay's `should_dial`, on canonical URLs). For any two different relays exactly one
 * of `shouldDial(a, b)` and `shouldDial(b, a)` is true.
 */
/**
 * The names this relay answers to, for finding its own entry in the guides' `nodes` list when
 * `node` is not set: the certificate's names (`generate`, and the DNS names and addresses of the
 * certificate files), the host name, and the machine's own addresses.
 */
export function ownNames(generate: readonly string[], certFiles: readonly string[]): Set<string> {
	const names = new Set<string>(["localhost", "127.0.0.1", "::1"]);
	for (const n of generate) names.add(n.toLowerCase());
	for (const file of certFiles) {
		try {
			const cert = new X509Certificate(readFileSync(file));
			for (const entry of (cert.subjectAltName ?? "").split(/,\s*/)) {
				const m = /^(?:DNS|IP Address):(.+)$/.exec(entry);
				if (m) names.add(m[1].toLowerCase());
			}
		} catch {
			// Unreadable or not a certificate: the TLS loader reports that with its own message.
		}
	}
	names.add(hostname().toLowerCase());
	for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) names.add(a.address.toLowerCase());
	return names;
}

/**
 * Which `nodes` entry is this relay, when `node` is not set: the one entry on our port whose host is
 * one of our names. Null when none or several match (then `node` must be set).
 */
export function inferOwnNode(
	entries: readonly ClusterPeer[],
	port: number,
	names: ReadonlySet<string>,
): ClusterPeer | null {
	const mine = entries.filter((peer) => {
		const url = new URL(peer.key);
		const p = url.port ? Number(url.port) : url.protocol === "http:" ? 80 : 443;
		return p === port && names.has(url.hostname.replace(/^\[|\]$/g, "").toLowerCase());
	});
	return mine.length === 1 ? mine[0] : null;
}

export function shouldDial(self: string, peer: string): boolean {
	return canonicalClusterUrl(self) < canonicalClusterUrl(peer);
}
