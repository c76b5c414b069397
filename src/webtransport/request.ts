/**
 * Validation of a WebTransport extended CONNECT request (RFC 9220 + WebTransport over HTTP/3),
 * and sub-protocol selection. Pure functions over decoded field lines.
 */

import type { Field } from "./qpack.ts";
import { parseProtocolList } from "./sfv.ts";

export interface ConnectRequest {
	/** Percent-decoded pathname, leading "/" kept. */
	path: string;
	query: URLSearchParams;
	authority: string;
	/** `wt-available-protocols` in the client's order; empty when absent. */
	protocols: string[];
	/** Regular (non-pseudo) header fields; repeated names joined with ", ". */
	headers: Map<string, string>;
}

export interface RequestRejection {
	status: number;
	reason: string;
}

const PSEUDO = new Set([":method", ":scheme", ":authority", ":path", ":protocol"]);
/** Lowercase token characters: uppercase names are malformed in HTTP/3 (RFC 9114 §4.2). */
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

function reject(status: number, reason: string): RequestRejection {
	return { status, reason };
}

/**
 * Validates a request. Malformed requests (bad pseudo-headers, uppercase names, a bad
 * `wt-available-protocols` list, an undecodable path) → 400; a method other than CONNECT → 404.
 */
export function parseConnectRequest(fields: readonly Field[]): ConnectRequest | RequestRejection {
	const pseudo = new Map<string, string>();
	const headers = new Map<string, string>();
	for (const [name, value] of fields) {
		if (name.startsWith(":")) {
			if (headers.size > 0) return reject(400, "pseudo-header after regular header");
			if (!PSEUDO.has(name)) return reject(400, `unknown pseudo-header ${name}`);
			if (pseudo.has(name)) return reject(400, `repeated ${name}`);
			pseudo.set(name, value);
			continue;
		}
		if (!FIELD_NAME.test(name)) return reject(400, `invalid field name ${JSON.stringify(name)}`);
		const previous = headers.get(name);
		headers.set(name, previous === undefined ? value : `${previous}, ${value}`);
	}
	const method = pseudo.get(":method");
	if (method === undefined) return reject(400, "missing :method");
	if (method !== "CONNECT") return reject(404, `method ${method}`);
	const protocol = pseudo.get(":protocol");
	if (protocol !== "webtransport") return reject(400, `:protocol ${protocol ?? "missing"}`);
	if (pseudo.get(":scheme") !== "https") return reject(400, ":scheme is not https");
	const authority = pseudo.get(":authority");
	if (!authority) return reject(400, "missing :authority");
	const target = pseudo.get(":path");
	if (!target?.startsWith("/")) return reject(400, "missing or relative :path");

	const q = target.indexOf("?");
	const rawPath = q < 0 ? target : target.slice(0, q);
	let path: string;
	try {
		path = decodeURIComponent(rawPath);
	} catch {
		return reject(400, "bad percent-encoding in :path");
	}
	const query = new URLSearchParams(q < 0 ? "" : target.slice(q + 1));

	const offered = headers.get("wt-available-protocols");
	let protocols: string[] = [];
	if (offered !== undefined) {
		const parsed = parseProtocolList(offered);
		if (parsed === null) return reject(400, "malformed wt-available-protocols");
		protocols = parsed;
	}
	return { path, query, authority, protocols, headers };
}

/** The first protocol the client offered that we support, or null. */
export function selectProtocol(offered: readonly string[], supported: readonly string[]): string | null {
	for (const protocol of offered) if (supported.includes(protocol)) return protocol;
	return null;
}
