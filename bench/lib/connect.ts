/**
 * How bench processes reach the relay: the certificate fingerprint from `/certificate.sha256` on
 * the relay's TCP port, then raw QUIC (ALPN moq-lite-05) pinned to that hash, then a moq-lite
 * session whose SETUP carries the URL path (the session root).
 * @module
 */

import type dgram from "node:dgram";
import { MoqClient } from "../../src/client/index.ts";
import { connectQuic } from "../../src/quic/client.ts";

export interface RelayTarget {
	host: string;
	port: number;
	/** Session path, e.g. "/bench". */
	path: string;
	/** Hex SHA-256 of the relay's certificate. */
	fingerprint: string;
}

/** Parses `https://host:port/path` (or http://) into a target whose fingerprint is fetched. */
export async function resolveTarget(url: string): Promise<RelayTarget> {
	const u = new URL(url);
	const port = Number(u.port || 443);
	const host = u.hostname.replace(/^\[|\]$/g, "");
	const fingerprint = await fetchFingerprint(host, port);
	return { host, port, path: u.pathname + u.search, fingerprint };
}

export async function fetchFingerprint(host: string, port: number, timeoutMs = 5000): Promise<string> {
	const h = host.includes(":") ? `[${host}]` : host;
	const res = await fetch(`http://${h}:${port}/certificate.sha256`, { signal: AbortSignal.timeout(timeoutMs) });
	if (!res.ok) throw new Error(`GET /certificate.sha256: HTTP ${res.status}`);
	return (await res.text()).trim();
}

export async function connectClient(target: RelayTarget, socket?: dgram.Socket): Promise<MoqClient> {
	const quic = await connectQuic({
		host: target.host,
		port: target.port,
		alpns: ["moq-lite-05"],
		certificateHashes: [target.fingerprint],
		socket,
	});
	return MoqClient.connect(quic, { path: target.path });
}
