/**
 * Connection authentication, moq-relay compatible: moq-token JWTs (`?jwt=`), keys from `[auth] key`
 * or `[auth] key_dir`, anonymous access under `[auth] public`, and the path scoping of
 * `moq_token::Claims::authorize`. The session code calls `authorize` once per connection, then
 * `grant.canPublish` / `grant.canSubscribe` per request, and closes the session at `grant.expiresAt`.
 * @module
 */
import { readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import * as jose from "jose";
import {
	MAX_PATH_SEGMENTS,
	normalizePath,
	type Path,
	PathError,
	pathsOverlap,
	ROOT,
	tryNormalizePath,
} from "../path/index.ts";
import type { Claims } from "./claims.ts";
import { authorizeClaims } from "./claims.ts";
import { AuthError, quoteForLog } from "./errors.ts";
import { Grant } from "./grant.ts";
import type { TokenKey } from "./jwk.ts";
import { isValidKeyId, parseKey } from "./jwk.ts";
import { parseConnectTarget } from "./params.ts";
import { verifyToken } from "./verify.ts";

export type { AuthReason } from "./errors.ts";
export { AuthError } from "./errors.ts";
export { Grant } from "./grant.ts";
export type { ConnectTarget } from "./params.ts";
export { parseConnectTarget } from "./params.ts";

/** `[auth]` of the relay config (= `RelayConfig["auth"]`). */
export interface AuthConfig {
	key: string | null;
	keyDir: string | null;
	public: string[] | null;
}

/** Tuning that does not come from `[auth]`. */
export interface AuthenticatorOptions {
	/** `[limits] max_path_segments`; default 32. */
	maxPathSegments?: number;
}

/** Tokens longer than this are refused before any parsing (a JWT moq-token mints is ~300 bytes). */
export const MAX_TOKEN_BYTES = 8192;
/** Bound on cached `key_dir` keys; the cache is dropped whole when full (keys are cheap to reload). */
const KEY_CACHE_LIMIT = 1024;

interface CachedKey {
	key: TokenKey;
	mtimeMs: number;
	size: number;
}

type KeySource = { kind: "file"; key: TokenKey } | { kind: "dir"; dir: string; cache: Map<string, CachedKey> };

type GrantingClaims = Pick<Claims, "root" | "publish" | "subscribe" | "expires"> & { cluster?: boolean };

/** Checks the credentials of incoming connections. One per worker; `authorize` is safe to call concurrently. */
export class Authenticator {
	readonly #source: KeySource | null;
	readonly #public: readonly Path[];
	readonly #maxSegments: number;

	private constructor(source: KeySource | null, publicPrefixes: readonly Path[], maxSegments: number) {
		this.#source = source;
		this.#public = publicPrefixes;
		this.#maxSegments = maxSegments;
	}

	/**
	 * Load keys and validate `[auth]`. Errors name the setting, the key file and `configSource`, and
	 * never contain key material.
	 */
	static async create(
		cfg: AuthConfig,
		configSource: string,
		options: AuthenticatorOptions = {},
	): Promise<Authenticator> {
		const where = `(in ${configSource})`;
		const maxSegments = options.maxPathSegments ?? MAX_PATH_SEGMENTS;
		if (cfg.key !== null && cfg.keyDir !== null) {
			throw new Error(`[auth] key and key_dir cannot both be set ${where}`);
		}

		const publicPrefixes: Path[] = [];
		for (const entry of cfg.public ?? []) {
			try {
				publicPrefixes.push(normalizePath(entry, maxSegments));
			} catch (err) {
				if (!(err instanceof PathError)) throw err;
				throw new Error(`[auth] public entry ${JSON.stringify(entry)} is invalid: ${err.message} ${where}`);
			}
		}
		if (cfg.key === null && cfg.keyDir === null && publicPrefixes.length === 0) {
			throw new Error(`[auth] needs key, key_dir or public (use public = "" for an open development relay) ${where}`);
		}

		let source: KeySource | null = null;
		if (cfg.key !== null) {
			source = { kind: "file", key: await loadKeyFile(cfg.key, `[auth] key ${JSON.stringify(cfg.key)} ${where}`) };
		} else if (cfg.keyDir !== null) {
			const dir = resolve(cfg.keyDir);
			const info = await stat(dir).catch(() => null);
			if (info === null || !info.isDirectory()) {
				throw new Error(`[auth] key_dir ${JSON.stringify(cfg.keyDir)} is not a directory ${where}`);
			}
			source = { kind: "dir", dir, cache: new Map() };
		}
		return new Authenticator(source, Object.freeze(publicPrefixes), maxSegments);
	}

	/**
	 * Authenticate one connection. `path` is the percent-decoded URL path (a leading "/" is fine),
	 * `jwt` the `?jwt=` value or null. Throws `AuthError` (code 6) with a message safe to log.
	 */
	async authorize(path: string, jwt: string | null, nowMs: number = Date.now()): Promise<Grant> {
		const root = tryNormalizePath(path, this.#maxSegments);
		if (root === null) throw new AuthError("path-invalid", `connection path ${quoteForLog(path)} is invalid`);

		const claims = jwt !== null && jwt.length > 0 ? await this.#verify(jwt, nowMs) : this.#publicClaims(root);
		const permissions = authorizeClaims(claims, root);
		if (permissions === "root-mismatch") {
			throw new AuthError(
				"root-mismatch",
				`token root ${quoteForLog(claims.root)} and connection path ${quoteForLog(root)} do not overlap`,
			);
		}
		if (permissions === "no-access") {
			throw new AuthError("no-access", `token grants nothing at connection path ${quoteForLog(root)}`);
		}
		const expiresAt = claims.expires === null ? null : claims.expires * 1000;
		const verified = jwt !== null && jwt.length > 0;
		const everything =
			root === "" && permissions.publish.includes("" as Path) && permissions.subscribe.includes("" as Path);
		const peer = verified && (claims.cluster === true || everything);
		return new Grant(root, permissions.publish, permissions.subscribe, expiresAt, peer);
	}

	/** `authorize` for a raw request target ("/path?jwt=…"): a WebTransport `:path` or a lite-05 SETUP Path. */
	authorizeTarget(target: string, nowMs: number = Date.now()): Promise<Grant> {
		const parsed = parseConnectTarget(target);
		if (parsed === null) {
			return Promise.reject(new AuthError("path-invalid", "connection path has malformed percent-encoding"));
		}
		return this.authorize(parsed.path, parsed.jwt, nowMs);
	}

	#publicClaims(root: Path): GrantingClaims {
		// moq-relay: anonymous access applies when a public prefix and the path overlap either way
		// (the path is under a public prefix, or is a parent of one); grants are anchored at "".
		for (const prefix of this.#public) {
			if (pathsOverlap(prefix, root))
				return { root: ROOT, publish: this.#public, subscribe: this.#public, expires: null };
		}
		throw new AuthError("token-expected", `a token (?jwt=) is required for path ${quoteForLog(root)}`);
	}

	async #verify(jwt: string, nowMs: number): Promise<GrantingClaims> {
		if (this.#source === null) {
			throw new AuthError("token-unexpected", "a token was given but no [auth] key or key_dir is configured");
		}
		if (jwt.length > MAX_TOKEN_BYTES) {
			throw new AuthError("token-invalid", `token is longer than ${MAX_TOKEN_BYTES} bytes`);
		}
		let header: jose.ProtectedHeaderParameters;
		try {
			header = jose.decodeProtectedHeader(jwt);
		} catch {
			throw new AuthError("token-invalid", "token is not a well-formed JWT");
		}

		const key = await this.#resolveKey(this.#source, header.kid);

		return (await verifyToken(key, jwt, header, nowMs)).claims;
	}

	async #resolveKey(source: KeySource, kid: unknown): Promise<TokenKey> {
		// A single key file needs no kid (moq-relay `KeySource::File`).
		if (source.kind === "file") return source.key;

		if (kid === undefined) throw new AuthError("key-id-missing", "token has no kid, which key_dir requires");
		if (typeof kid !== "string" || !isValidKeyId(kid)) {
			throw new AuthError("key-id-invalid", `token kid ${quoteForLog(String(kid))} is not [A-Za-z0-9_-]{1,128}`);
		}
		const file = join(source.dir, `${kid}.jwk`);
		const info = await stat(file).catch(() => null);
		if (info === null || !info.isFile()) {
			source.cache.delete(kid);
			throw new AuthError("key-not-found", `no key file for kid "${kid}" in key_dir`);
		}
		// Reload when the file changes, so keys can be rotated without a restart.
		const cached = source.cache.get(kid);
		if (cached !== undefined && cached.mtimeMs === info.mtimeMs && cached.size === info.size) return cached.key;
		let key: TokenKey;
		try {
			key = parseKey(await readFile(file, "utf8"));
		} catch {
			source.cache.delete(kid);
			throw new AuthError("key-not-found", `key file for kid "${kid}" is unreadable or not a valid JWK`);
		}
		if (source.cache.size >= KEY_CACHE_LIMIT) source.cache.clear();
		source.cache.set(kid, { key, mtimeMs: info.mtimeMs, size: info.size });
		return key;
	}
}

/** Load and check one key file at startup; `label` names the setting and file in errors. */
async function loadKeyFile(file: string, label: string): Promise<TokenKey> {
	let text: string;
	try {
		text = await readFile(resolve(file), "utf8");
	} catch (err) {
		throw new Error(`${label}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? "error"})`);
	}
	let key: TokenKey;
	try {
		key = parseKey(text);
	} catch (err) {
		throw new Error(`${label}: not a valid moq-token JWK: ${(err as Error).message}`);
	}
	if (!key.canVerify) throw new Error(`${label}: the key's key_ops do not include verify`);
	try {
		await key.verificationKey();
	} catch (err) {
		throw new Error(`${label}: the key material cannot be imported: ${(err as Error).message}`);
	}
	return key;
}
