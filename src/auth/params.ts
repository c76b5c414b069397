/**
 * Where the connection path and token come from: the URL of a WebTransport CONNECT / WebSocket
 * upgrade, or the lite-05 SETUP Path parameter on raw QUIC (which carries the same "path?query").
 * @module
 */

/** The inputs of `Authenticator.authorize`. */
export interface ConnectTarget {
	/** Percent-decoded URL path ("/" when empty). */
	path: string;
	/** The last non-empty `jwt` query value, or null. */
	jwt: string | null;
}

/**
 * Split a request target such as `/room/1?jwt=eyJ…` (an HTTP `:path`, or a lite-05 SETUP Path).
 * Like moq-relay, an empty `jwt=` counts as absent and the last `jwt` wins. Returns null when the
 * path's percent-encoding is malformed.
 */
export function parseConnectTarget(target: string): ConnectTarget | null {
	const mark = target.indexOf("?");
	const rawPath = mark < 0 ? target : target.slice(0, mark);
	let path: string;
	try {
		path = decodeURIComponent(rawPath);
	} catch {
		return null;
	}
	let jwt: string | null = null;
	if (mark >= 0) {
		for (const [name, value] of new URLSearchParams(target.slice(mark + 1))) {
			if (name === "jwt" && value.length > 0) jwt = value;
		}
	}
	return { path: path.length === 0 ? "/" : path, jwt };
}

/**
 * The token a query carries. Like moq-relay (and `parseConnectTarget`): an empty `jwt=` counts as
 * absent and, when several are given, the last one wins.
 */
export function tokenFromQuery(query: URLSearchParams): string | null {
	let jwt: string | null = null;
	for (const value of query.getAll("jwt")) if (value.length > 0) jwt = value;
	return jwt;
}

/**
 * A request target safe to log: every `jwt` query value (under any spelling the query parser
 * accepts, e.g. `j%77t`) replaced by `[redacted]`. The path part is kept as sent.
 */
export function redactPath(target: string): string {
	const mark = target.indexOf("?");
	if (mark < 0) return target;
	const query = new URLSearchParams(target.slice(mark + 1));
	if (!query.has("jwt")) return target;
	const parts: string[] = [];
	for (const [name, value] of query) {
		parts.push(`${encodeURIComponent(name)}=${name === "jwt" ? "[redacted]" : encodeURIComponent(value)}`);
	}
	return `${target.slice(0, mark)}?${parts.join("&")}`;
}
