/**
 * Why a connection was refused. Messages are safe to log: they never contain the token, only fixed
 * text plus (truncated) paths and key ids.
 * @module
 */

import { CodedError } from "../errors/coded-error.ts";
import { UNAUTHORIZED } from "../errors/codes.ts";

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

/**
 * What an HTTP front end (WebSocket upgrade, WebTransport CONNECT) answers for each reason: the
 * status and a short fixed text for the response body. 401 when the client did not prove who it is
 * (no token, or a token that does not verify), 403 when a valid token does not cover the path, 400
 * for a path that cannot be a broadcast path. The text never contains the token, the path or a kid.
 */
const HTTP_REFUSALS: Record<AuthReason, { status: number; text: string }> = {
	"token-expected": { status: 401, text: "missing token" },
	"token-unexpected": { status: 401, text: "token not accepted: no key configured" },
	"token-invalid": { status: 401, text: "invalid token" },
	"token-expired": { status: 401, text: "token expired" },
	"key-id-missing": { status: 401, text: "invalid token: no kid" },
	"key-id-invalid": { status: 401, text: "invalid token: bad kid" },
	"key-not-found": { status: 401, text: "invalid token: unknown kid" },
	"root-mismatch": { status: 403, text: "forbidden: token does not cover this path" },
	"no-access": { status: 403, text: "forbidden: token grants nothing at this path" },
	"path-invalid": { status: 400, text: "invalid path" },
};

/**
 * A refused connection: close the session with `code` (moq-lite UNAUTHORIZED), or answer HTTP
 * `httpStatus` with `httpText`.
 */
export class AuthError extends CodedError {
	readonly reason: AuthReason;
	/** What an HTTP front end (WebTransport CONNECT, WebSocket upgrade) answers: 401, 403 or 400. */
	readonly httpStatus: number;
	/** The response body that goes with `httpStatus`: short fixed text, safe to send and log. */
	readonly httpText: string;

	constructor(reason: AuthReason, message: string) {
		super(message, UNAUTHORIZED);
		this.name = "AuthError";
		this.reason = reason;
		this.httpStatus = HTTP_REFUSALS[reason].status;
		this.httpText = HTTP_REFUSALS[reason].text;
	}
}

/** Quote an untrusted string for a log message, bounded so a hostile path cannot flood logs. */
export function quoteForLog(value: string, max = 128): string {
	const cut = value.length > max ? `${value.slice(0, max)}…` : value;
	return JSON.stringify(cut);
}
