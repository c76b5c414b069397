/**
 * moq-token keys: JWK files as JSON or base64url(JSON), validated the way `moq-token` (Rust) and
 * `@moq/token` (JS) validate them, and imported into `jose` once per key.
 * @module
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import * as jose from "jose";
import { normalizePath, type Path, ROOT } from "../path/index.ts";

/** The algorithms moq-token signs and verifies with. */
export const ALGORITHMS = [
	"HS256",
	"HS384",
	"HS512",
	"ES256",
	"ES384",
	"RS256",
	"RS384",
	"RS512",
	"PS256",
	"PS384",
	"PS512",
	"EdDSA",
] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

export type KeyType = "oct" | "RSA" | "EC" | "OKP";
export type KeyOperation = "sign" | "verify" | "encrypt" | "decrypt";
const OPERATIONS: readonly string[] = ["sign", "verify", "encrypt", "decrypt"];

/** HMAC secrets shorter than this are refused (both moq-token implementations agree). */
export const MIN_SECRET_BYTES = 32;
/** `kid`: safe in a file name and a URL. */
const KEY_ID = /^[A-Za-z0-9_-]{1,128}$/;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

const RSA_PRIVATE = ["d", "p", "q", "dp", "dq", "qi"] as const;
const MATERIAL: Record<KeyType, readonly string[]> = {
	oct: ["k"],
	RSA: ["n", "e", ...RSA_PRIVATE],
	EC: ["crv", "x", "y", "d"],
	OKP: ["crv", "x", "d"],
};

/** The ceiling a key puts on the tokens it signs or verifies (moq-token `Scope`); paths normalised. */
export interface KeyScope {
	readonly root: Path;
	readonly publish: readonly Path[];
	readonly subscribe: readonly Path[];
}

/** A validated moq-token JWK, as written to disk. */
export interface Jwk {
	kty: KeyType;
	alg: Algorithm;
	kid?: string;
	key_ops: KeyOperation[];
	crv?: string;
	k?: string;
	n?: string;
	e?: string;
	d?: string;
	p?: string;
	q?: string;
	dp?: string;
	dq?: string;
	qi?: string;
	x?: string;
	y?: string;
	scope?: { root?: string; put?: string[]; get?: string[] };
}

/** A key file that failed validation. The message names the problem, never the key material. */
export class KeyError extends Error {
	constructor(message: string) {
		super(message);
		this.name = "KeyError";
	}
}

/** True for a `kid` moq-token accepts (and that is safe as `{kid}.jwk` inside a directory). */
export function isValidKeyId(kid: string): boolean {
	return KEY_ID.test(kid);
}

/** Which key type an algorithm needs. */
export function keyTypeFor(alg: Algorithm): KeyType {
	if (alg.startsWith("HS")) return "oct";
	if (alg.startsWith("RS") || alg.startsWith("PS")) return "RSA";
	if (alg.startsWith("ES")) return "EC";
	return "OKP";
}

const CURVES: Partial<Record<Algorithm, string>> = { ES256: "P-256", ES384: "P-384", EdDSA: "Ed25519" };

/** A loaded, validated key; imports its `jose` form lazily, once. */
export class TokenKey {
	readonly jwk: Readonly<Jwk>;
	readonly scope: KeyScope | null;
	#verifyKey: Promise<CryptoKey | Uint8Array> | null = null;
	#signKey: Promise<CryptoKey | Uint8Array> | null = null;

	constructor(jwk: Jwk, scope: KeyScope | null) {
		this.jwk = Object.freeze(jwk);
		this.scope = scope;
	}

	get alg(): Algorithm {
		return this.jwk.alg;
	}
	get kid(): string | null {
		return this.jwk.kid ?? null;
	}
	/** Holds the secret (oct) or private half, so it can sign. */
	get isPrivate(): boolean {
		return this.jwk.kty === "oct" || this.jwk.d !== undefined;
	}
	get canSign(): boolean {
		return this.isPrivate && this.jwk.key_ops.includes("sign");
	}
	get canVerify(): boolean {
		return this.jwk.key_ops.includes("verify");
	}

	/** The key `jose.jwtVerify` needs: the public half only, so a private key file verifies too. */
	verificationKey(): Promise<CryptoKey | Uint8Array> {
		this.#verifyKey ??= importKey(this.jwk, "verify");
		return this.#verifyKey;
	}

	/** The key `SignJWT.sign` needs. */
	signingKey(): Promise<CryptoKey | Uint8Array> {
		if (!this.canSign) return Promise.reject(new KeyError("key cannot sign (no private material or no sign op)"));
		this.#signKey ??= importKey(this.jwk, "sign");
		return this.#signKey;
	}

	/** The verify-only public half of an asymmetric key (moq-token `to_public`). */
	toPublic(): TokenKey {
		if (this.jwk.kty === "oct") throw new KeyError("a symmetric (oct) key has no public half");
		if (!this.canVerify) throw new KeyError("key does not allow the verify operation");
		const pub: Jwk = { kty: this.jwk.kty, alg: this.jwk.alg, key_ops: ["verify"] };
		for (const field of MATERIAL[this.jwk.kty]) {
			if (field !== "d" && !(RSA_PRIVATE as readonly string[]).includes(field)) copyField(this.jwk, pub, field);
		}
		if (this.jwk.kid !== undefined) pub.kid = this.jwk.kid;
		if (this.jwk.scope !== undefined) pub.scope = this.jwk.scope;
		return new TokenKey(pub, this.scope);
	}

	/** The file form: base64url(JSON) by default (moq-token's), or indented JSON. */
	encode(json = false): string {
		const text = JSON.stringify(this.jwk, null, json ? 2 : undefined);
		return json ? text : Buffer.from(text, "utf8").toString("base64url");
	}
}

function copyField(from: Readonly<Jwk>, to: Jwk, field: string): void {
	const value = (from as unknown as Record<string, unknown>)[field];
	if (value !== undefined) (to as unknown as Record<string, unknown>)[field] = value;
}

/**
 * Import once per key. HMAC secrets become a non-extractable CryptoKey: handing jose the raw bytes
 * makes it import them again on every verification.
 */
function importKey(jwk: Readonly<Jwk>, usage: "sign" | "verify"): Promise<CryptoKey | Uint8Array> {
	if (jwk.kty === "oct") {
		const hash = `SHA-${jwk.alg.slice(2)}`;
		return crypto.subtle.importKey("raw", Buffer.from(jwk.k!, "base64url"), { name: "HMAC", hash }, false, [usage]);
	}
	return jose.importJWK(joseJwk(jwk, usage === "sign"), jwk.alg);
}

/** Just the key material, as `jose.importJWK` expects it (no key_ops/kid/scope to trip WebCrypto checks). */
function joseJwk(jwk: Readonly<Jwk>, withPrivate: boolean): jose.JWK {
	const out: Record<string, unknown> = { kty: jwk.kty };
	for (const field of MATERIAL[jwk.kty]) {
		const isPrivateField = jwk.kty !== "oct" && (field === "d" || (RSA_PRIVATE as readonly string[]).includes(field));
		if (isPrivateField && !withPrivate) continue;
		copyField(jwk, out as unknown as Jwk, field);
	}
	return out as jose.JWK;
}

/** Parse and validate a JWK file's contents: JSON, or base64url (or base64) of the JSON. */
export function parseKey(text: string): TokenKey {
	const trimmed = text.trim();
	let json = trimmed;
	if (!trimmed.startsWith("{")) {
		if (!BASE64.test(trimmed)) throw new KeyError("not JSON and not base64url-encoded JSON");
		json = Buffer.from(trimmed, "base64url").toString("utf8");
	}
	let value: unknown;
	try {
		value = JSON.parse(json);
	} catch {
		throw new KeyError("invalid JSON");
	}
	return validateJwk(value);
}

function validateJwk(value: unknown): TokenKey {
	if (typeof value !== "object" || value === null || Array.isArray(value)) {
		throw new KeyError("a JWK must be a JSON object");
	}
	const raw = value as Record<string, unknown>;

	// Rust moq-token treats a missing kty as "oct" (keys from before kty was written).
	const kty = raw.kty ?? "oct";
	if (kty !== "oct" && kty !== "RSA" && kty !== "EC" && kty !== "OKP") {
		throw new KeyError(`unsupported kty ${JSON.stringify(kty)}`);
	}
	const alg = raw.alg;
	if (typeof alg !== "string" || !(ALGORITHMS as readonly string[]).includes(alg)) {
		throw new KeyError(`missing or unsupported alg (one of ${ALGORITHMS.join(", ")})`);
	}
	const algorithm = alg as Algorithm;
	if (keyTypeFor(algorithm) !== kty) throw new KeyError(`algorithm ${alg} is incompatible with ${kty} keys`);

	const jwk: Jwk = { kty, alg: algorithm, key_ops: ["sign", "verify"] };
	if (raw.key_ops !== undefined) {
		if (!Array.isArray(raw.key_ops) || !raw.key_ops.every((op) => typeof op === "string" && OPERATIONS.includes(op))) {
			throw new KeyError(`key_ops must be a list of ${OPERATIONS.join(", ")}`);
		}
		jwk.key_ops = [...new Set(raw.key_ops as KeyOperation[])];
	}
	if (raw.kid !== undefined) {
		if (typeof raw.kid !== "string" || !isValidKeyId(raw.kid)) {
			throw new KeyError("kid must be 1-128 characters of [A-Za-z0-9_-]");
		}
		jwk.kid = raw.kid;
	}

	for (const field of MATERIAL[kty]) {
		const v = raw[field];
		if (v === undefined) continue;
		if (typeof v !== "string" || (field !== "crv" && !BASE64.test(v))) {
			throw new KeyError(`field ${field} must be ${field === "crv" ? "a string" : "base64url"}`);
		}
		(jwk as unknown as Record<string, unknown>)[field] = v;
	}

	switch (kty) {
		case "oct":
			if (jwk.k === undefined) throw new KeyError("oct key is missing k");
			if (Buffer.from(jwk.k, "base64url").byteLength < MIN_SECRET_BYTES) {
				throw new KeyError(`secret must be at least ${MIN_SECRET_BYTES} bytes`);
			}
			break;
		case "RSA": {
			if (jwk.n === undefined || jwk.e === undefined) throw new KeyError("RSA key is missing n or e");
			const present = RSA_PRIVATE.filter((f) => jwk[f] !== undefined).length;
			if (present !== 0 && present !== RSA_PRIVATE.length) {
				throw new KeyError("an RSA private key needs all of d, p, q, dp, dq, qi");
			}
			break;
		}
		case "EC":
		case "OKP":
			if (jwk.crv !== CURVES[algorithm]) throw new KeyError(`algorithm ${alg} requires curve ${CURVES[algorithm]}`);
			if (jwk.x === undefined || (kty === "EC" && jwk.y === undefined)) throw new KeyError(`${kty} key is missing x/y`);
			break;
	}

	let scope: KeyScope | null = null;
	if (raw.scope !== undefined && raw.scope !== null) {
		scope = parseScope(raw.scope);
		jwk.scope = { root: scope.root, put: [...scope.publish], get: [...scope.subscribe] };
	}
	return new TokenKey(jwk, scope);
}

function parseScope(value: unknown): KeyScope {
	if (typeof value !== "object" || value === null || Array.isArray(value))
		throw new KeyError("scope must be an object");
	const raw = value as Record<string, unknown>;
	try {
		const root = raw.root === undefined ? ROOT : typeof raw.root === "string" ? normalizePath(raw.root) : null;
		const publish = pathList(raw.put);
		const subscribe = pathList(raw.get);
		if (root === null || publish === null || subscribe === null)
			throw new KeyError("scope root/put/get must be strings");
		if (publish.length === 0 && subscribe.length === 0) throw new KeyError("scope grants neither put nor get");
		return { root, publish, subscribe };
	} catch (err) {
		if (err instanceof KeyError) throw err;
		throw new KeyError(`invalid scope path: ${(err as Error).message}`);
	}
}

/** A string-or-list claim (serde `OneOrMany`), normalised; null when the shape is wrong. Throws on bad paths. */
export function pathList(value: unknown): Path[] | null {
	if (value === undefined || value === null) return [];
	if (typeof value === "string") return [normalizePath(value)];
	if (!Array.isArray(value)) return null;
	const out: Path[] = [];
	for (const item of value) {
		if (typeof item !== "string") return null;
		out.push(normalizePath(item));
	}
	return out;
}

/** Mint a fresh key (moq-token `generate`): 2048-bit RSA, P-256/P-384, Ed25519, or a random HMAC secret. */
export function generateKey(alg: Algorithm, kid: string): TokenKey {
	if (!isValidKeyId(kid)) throw new KeyError("kid must be 1-128 characters of [A-Za-z0-9_-]");
	const jwk: Jwk = { kty: keyTypeFor(alg), alg, key_ops: ["sign", "verify"] };
	let material: Record<string, unknown>;
	switch (jwk.kty) {
		case "oct":
			// The secret is as long as the hash, as both moq-token implementations do.
			material = { k: randomBytes(Number(alg.slice(2)) / 8).toString("base64url") };
			break;
		case "RSA":
			material = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" });
			break;
		case "EC":
			material = generateKeyPairSync("ec", { namedCurve: CURVES[alg]! }).privateKey.export({ format: "jwk" });
			break;
		case "OKP":
			material = generateKeyPairSync("ed25519").privateKey.export({ format: "jwk" });
			break;
	}
	for (const field of MATERIAL[jwk.kty]) copyField(material as unknown as Jwk, jwk, field);
	jwk.kid = kid;
	return validateJwk(jwk);
}

/** A random 16-hex-digit key id, like moq-token's. */
export function randomKeyId(): string {
	return randomBytes(8).toString("hex");
}

/** The same key with a scope embedded (moq-token `Key::with_scope`); paths are normalised. */
export function withScope(key: TokenKey, scope: { root: string; publish: string[]; subscribe: string[] }): TokenKey {
	const jwk: Jwk = { ...key.jwk, key_ops: [...key.jwk.key_ops] };
	jwk.scope = { root: scope.root, put: scope.publish, get: scope.subscribe };
	return validateJwk(jwk);
}
