/**
 * Verify one moq-token JWT against one key (moq-token `Key::verify`): signature with the algorithm
 * pinned to the key's, `exp` (and `nbf` when present), claim shapes, a token granting nothing, and
 * the key's scope. Shared by the relay and the `moq-token verify` command.
 * @module
 */
import * as jose from "jose";
import type { Claims } from "./claims.ts";
import { parseClaims, scopeAllows } from "./claims.ts";
import { AuthError, quoteForLog } from "./errors.ts";
import type { TokenKey } from "./jwk.ts";

/** A verified token. */
export interface VerifiedToken {
	/** The payload as signed (for display). */
	payload: jose.JWTPayload;
	claims: Claims;
}

/**
 * Verify `jwt` with `key`. `header` is the already-decoded protected header (decoded again when
 * omitted). Throws `AuthError` with a fixed message: neither the token nor jose's text is echoed.
 */
export async function verifyToken(
	key: TokenKey,
	jwt: string,
	header?: jose.ProtectedHeaderParameters,
	nowMs: number = Date.now(),
): Promise<VerifiedToken> {
	if (!key.canVerify) throw new AuthError("token-invalid", "the key's key_ops do not allow verify");
	let payload: jose.JWTPayload;
	try {
		// Pinning the algorithm to the key's refuses alg "none" and HS/RS confusion.
		({ payload } = await jose.jwtVerify(jwt, await key.verificationKey(), {
			algorithms: [key.alg],
			currentDate: new Date(nowMs),
		}));
	} catch (err) {
		throw joseRefusal(err, header ?? safeHeader(jwt), key);
	}

	const claims = parseClaims(payload);
	if (typeof claims === "string") throw new AuthError("token-invalid", claims);
	if (key.scope !== null && !scopeAllows(key.scope, claims)) {
		throw new AuthError("token-invalid", "token grants more than its key's scope allows");
	}
	return { payload, claims };
}

function safeHeader(jwt: string): jose.ProtectedHeaderParameters {
	try {
		return jose.decodeProtectedHeader(jwt);
	} catch {
		return {};
	}
}

/** Map a jose failure to a fixed, loggable refusal. */
function joseRefusal(err: unknown, header: jose.ProtectedHeaderParameters, key: TokenKey): AuthError {
	const code = (err as { code?: unknown }).code;
	switch (code) {
		case "ERR_JWT_EXPIRED":
			return new AuthError("token-expired", "token has expired");
		case "ERR_JOSE_ALG_NOT_ALLOWED":
			return new AuthError(
				"token-invalid",
				`token alg ${quoteForLog(String(header.alg), 16)} does not match the key's ${key.alg}`,
			);
		case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
			return new AuthError("token-invalid", "token signature verification failed");
		case "ERR_JWT_CLAIM_VALIDATION_FAILED": {
			const claim = (err as { claim?: unknown }).claim;
			const name = claim === "nbf" || claim === "iat" || claim === "exp" ? claim : "a registered";
			return new AuthError("token-invalid", `token ${name} claim check failed`);
		}
		case "ERR_JOSE_NOT_SUPPORTED":
			return new AuthError("token-invalid", "token uses an unsupported JOSE feature");
		default:
			return new AuthError("token-invalid", "token is malformed");
	}
}
