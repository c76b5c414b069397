/**
 * Why a connection was refused. Messages are safe to log: they never contain the token, only fixed
 * text plus (truncated) paths and key ids.
 * @module
 */

/** moq-lite close code for an unauthorised session or request. */
export const UNAUTHORIZED = 6;

/** The stable reason behind an `AuthError` (moq-relay's `AuthError` variants, plus a few of ours). */
export type AuthReason =
	/** No token, and no public prefix covers the path. */
	| "token-expected"
	/** A token was given but no key is configured. */
	| "token-unexpected"
	/** Malformed, bad signature, wrong algorithm, bad claims, not yet valid, or outside the key's scope. */
	| "token-invalid"
	/** `exp` has passed. */
	| "token-expired"
	/** `key_dir` is configured and the token has no `kid`. */
	| "key-id-missing"
	/** The `kid` is not `[A-Za-z0-9_-]{1,128}`. */
	| "key-id-invalid"
	/** No key (file) for that `kid`, or it could not be loaded. */
	| "key-not-found"
	/** The connection path and the token root do not overlap. */
	| "root-mismatch"
	/** They overlap, but every grant falls outside the connection path. */
	| "no-access"
	/** The connection path has "." / ".." segments or too many segments. */
	| "path-invalid";

/** A refused connection: close the session (or answer HTTP `httpStatus`) with `code`. */
export class AuthError extends Error {
	/** moq-lite close code: 6 unauthorized. */
	readonly code: number;
	readonly reason: AuthReason;
	/** What an HTTP front end (WebTransport CONNECT, WebSocket upgrade) answers: 401, like moq-relay. */
	readonly httpStatus: number;

	constructor(reason: AuthReason, message: string) {
		super(message);
		this.name = "AuthError";
		this.reason = reason;
		this.code = UNAUTHORIZED;
		this.httpStatus = 401;
	}
}

/** Quote an untrusted string for a log message, bounded so a hostile path cannot flood logs. */
export function quoteForLog(value: string, max = 128): string {
	const cut = value.length > max ? `${value.slice(0, max)}…` : value;
	return JSON.stringify(cut);
}
