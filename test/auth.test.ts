/**
 * Authenticator against real moq-token artefacts: keys and tokens minted by the official `@moq/token`
 * CLI (node_modules/.bin/moq-token) and by ours (src/bin/moq-token.ts), both run as child processes.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHmac, createPublicKey } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import * as jose from "jose";
import { runTokenCli } from "../src/auth/cli.ts";
import type { AuthReason } from "../src/auth/index.ts";
import { AuthError, Authenticator } from "../src/auth/index.ts";
import { normalizePath } from "../src/path/index.ts";

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, "..");
const NODE = join(REPO, "node_modules", ".bin", "node");
const CLIS = {
	"@moq/token": join(REPO, "node_modules", ".bin", "moq-token"),
	ours: "in-process", // runTokenCli, see cli()
} as const;
type Minter = keyof typeof CLIS;

const dir = mkdtempSync(join(tmpdir(), "moq-auth-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;

async function cli(minter: Minter, args: string[]): Promise<string> {
	if (minter === "ours") {
		// In-process: the same code as src/bin/moq-token.ts without a Node start-up per call
		// (test/token-cli.test.ts spawns it through bin/moq-token.js).
		let stdout = "";
		let stderr = "";
		const code = await runTokenCli(args, {
			stdout: (text) => {
				stdout += text;
			},
			stderr: (text) => {
				stderr += text;
			},
			stdin: () => "",
		});
		assert.equal(code, 0, stderr);
		return stdout.trim();
	}
	const { stdout } = await run(NODE, [CLIS[minter], ...args], { encoding: "utf8" });
	return stdout.trim();
}

interface KeyFiles {
	/** What signs. */
	private: string;
	/** What the relay verifies with: the public half for asymmetric keys. */
	verify: string;
}

async function generate(minter: Minter, alg: string, id: string): Promise<KeyFiles> {
	const base = join(dir, `${minter.replace(/\W/g, "")}-${alg}-${id}-${seq++}`);
	const asymmetric = !alg.startsWith("HS");
	const args = ["generate", "--key", `${base}.jwk`, "--algorithm", alg, "--id", id];
	if (asymmetric) args.push("--public", `${base}.pub.jwk`);
	await cli(minter, args);
	return { private: `${base}.jwk`, verify: asymmetric ? `${base}.pub.jwk` : `${base}.jwk` };
}

interface SignOptions {
	root?: string;
	publish?: string[];
	subscribe?: string[];
	expires?: number;
}

function sign(minter: Minter, key: string, o: SignOptions): Promise<string> {
	const args = ["sign", "--key", key, "--root", o.root ?? ""];
	for (const p of o.publish ?? []) args.push("--publish", p);
	for (const s of o.subscribe ?? []) args.push("--subscribe", s);
	if (o.expires !== undefined) args.push("--expires", String(o.expires));
	return cli(minter, args);
}

/** Every refusal message seen, to check none of them leaks a token. */
const refusals: { message: string; token: string | null }[] = [];

async function refused(auth: Authenticator, path: string, token: string | null, reason: AuthReason, nowMs?: number) {
	const err = await auth.authorize(path, token, nowMs).then(
		() => null,
		(e: unknown) => e,
	);
	assert.ok(err instanceof AuthError, `expected AuthError(${reason}) for ${path}, got ${String(err)}`);
	assert.equal(err.reason, reason, err.message);
	assert.equal(err.code, 6);
	// What an HTTP front end answers: 401 unauthenticated, 403 a valid token not covering the path.
	const status = reason === "root-mismatch" || reason === "no-access" ? 403 : reason === "path-invalid" ? 400 : 401;
	assert.equal(err.httpStatus, status, reason);
	assert.ok(err.httpText.length > 0 && err.httpText.length <= 64, err.httpText);
	refusals.push({ message: `${err.message}\n${err.httpText}`, token });
	return err;
}

function b64json(value: unknown): string {
	return Buffer.from(JSON.stringify(value)).toString("base64url");
}
function decodePart(part: string): Record<string, unknown> {
	return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
}

const ALGS = ["HS256", "ES256", "EdDSA", "RS256"] as const;
const nowSec = () => Math.floor(Date.now() / 1000);

for (const minter of Object.keys(CLIS) as Minter[]) {
	for (const alg of ALGS) {
		test(`${minter} ${alg}: the full token matrix`, { timeout: 60_000 }, async (t) => {
			const [key, other] = await Promise.all([generate(minter, alg, "main"), generate(minter, alg, "main")]);
			const auth = await Authenticator.create({ key: key.verify, keyDir: null, public: null }, "test.toml");
			const exp = nowSec() + 3600;
			const [pubOnly, subOnly, room1, anchored, expired, wrongKey, midSession] = await Promise.all([
				sign(minter, key.private, { root: "rooms/1", publish: [""], expires: exp }),
				sign(minter, key.private, { root: "rooms/1", subscribe: [""] }),
				sign(minter, key.private, { root: "rooms/1", publish: ["alice"], subscribe: [""] }),
				sign(minter, key.private, { root: "", publish: ["rooms/1"], subscribe: ["rooms/1", "lobby"] }),
				sign(minter, key.private, { root: "rooms/1", subscribe: [""], expires: nowSec() - 10 }),
				sign(minter, other.private, { root: "rooms/1", subscribe: [""] }),
				sign(minter, key.private, { root: "rooms/1", subscribe: [""], expires: nowSec() + 120 }),
			]);

			await t.test("a publish-only token can publish and not subscribe", async () => {
				const grant = await auth.authorize("/rooms/1", pubOnly);
				assert.equal(grant.root, "rooms/1");
				assert.deepEqual(grant.publish, [""]);
				assert.deepEqual(grant.subscribe, []);
				assert.equal(grant.canPublish(normalizePath("cam")), true);
				assert.equal(grant.canSubscribe(normalizePath("cam")), false);
				assert.equal(grant.expiresAt, exp * 1000);
				assert.equal(grant.allowsRole(2), false);
			});

			await t.test("a subscribe-only token can subscribe and not publish", async () => {
				const grant = await auth.authorize("rooms/1/", subOnly);
				assert.equal(grant.canSubscribe(normalizePath("cam")), true);
				assert.equal(grant.canPublish(normalizePath("cam")), false);
				assert.equal(grant.expiresAt, null);
			});

			await t.test("a token for rooms/1 cannot touch rooms/10", async () => {
				await refused(auth, "/rooms/10", room1, "root-mismatch");
				// Connecting above the root re-anchors: rooms/1/... only.
				const parent = await auth.authorize("/rooms", room1);
				assert.deepEqual(parent.publish, ["1/alice"]);
				assert.equal(parent.canSubscribe(normalizePath("1/cam")), true);
				assert.equal(parent.canSubscribe(normalizePath("10/cam")), false);
				assert.equal(parent.canPublish(normalizePath("1/alicex")), false);
				// Connecting below the root narrows.
				const below = await auth.authorize("/rooms/1/alice", room1);
				assert.deepEqual(below.publish, [""]);
				const root = await auth.authorize("/", anchored);
				assert.equal(root.canPublish(normalizePath("rooms/1/cam")), true);
				assert.equal(root.canPublish(normalizePath("rooms/10/cam")), false);
				assert.equal(root.canSubscribe(normalizePath("lobby")), true);
				assert.equal(root.canSubscribe(normalizePath("lobbyist")), false);
				await refused(auth, "/rooms/10", anchored, "no-access");
			});

			await t.test("expired, wrong key, alg none and a tampered payload are refused", async () => {
				await refused(auth, "/rooms/1", expired, "token-expired");
				await refused(auth, "/rooms/1", wrongKey, "token-invalid");

				const [header, payload, signature] = subOnly.split(".");
				const claims = decodePart(payload);
				const tampered = `${header}.${b64json({ ...claims, put: [""], get: [""], root: "" })}.${signature}`;
				await refused(auth, "/", tampered, "token-invalid");

				const none = `${b64json({ ...decodePart(header), alg: "none" })}.${payload}.`;
				await refused(auth, "/rooms/1", none, "token-invalid");

				await refused(auth, "/rooms/1", "not.a.jwt", "token-invalid");
				await refused(auth, "/rooms/1", "x".repeat(9000), "token-invalid");
			});

			await t.test("a token expiring mid-session sets the session deadline", async () => {
				const grant = await auth.authorize("/rooms/1", midSession);
				assert.ok(grant.expiresAt !== null);
				assert.equal(grant.isExpired(Date.now()), false);
				assert.equal(grant.isExpired(grant.expiresAt), true);
				// A reconnect after the deadline is refused.
				await refused(auth, "/rooms/1", midSession, "token-expired", grant.expiresAt);
			});

			await t.test("paths with dot segments are refused", async () => {
				await refused(auth, "/rooms/1/../2", room1, "path-invalid");
			});
		});
	}
}

test("HS/RS confusion: an HS256 token keyed with the RSA public key is refused", { timeout: 60_000 }, async () => {
	const key = await generate("@moq/token", "RS256", "rsa");
	const auth = await Authenticator.create({ key: key.verify, keyDir: null, public: null }, "test.toml");
	const jwk = JSON.parse(readFileSync(key.verify, "utf8"));
	const pem = createPublicKey({ key: { kty: jwk.kty, n: jwk.n, e: jwk.e }, format: "jwk" }).export({
		type: "spki",
		format: "pem",
	});
	for (const secret of [readFileSync(key.verify), Buffer.from(pem)]) {
		const signingInput = `${b64json({ alg: "HS256", typ: "JWT", kid: "rsa" })}.${b64json({ root: "", put: [""], get: [""] })}`;
		const mac = createHmac("sha256", secret).update(signingInput).digest("base64url");
		const err = await refused(auth, "/", `${signingInput}.${mac}`, "token-invalid");
		assert.match(err.message, /alg "HS256" does not match the key's RS256/);
	}
});

test("key_dir: kid lookup, unknown kid, missing kid, malicious kid, rotation", { timeout: 60_000 }, async () => {
	const keys = join(dir, "keys");
	mkdirSync(keys);
	const [k1, k2] = await Promise.all([generate("@moq/token", "ES256", "k1"), generate("@moq/token", "ES256", "k2")]);
	writeFileSync(join(keys, "k1.jwk"), readFileSync(k1.verify));
	// A key one level up, which a "../x" kid would reach if it were used as a file name.
	writeFileSync(join(dir, "x.jwk"), readFileSync(k1.verify));

	const auth = await Authenticator.create({ key: null, keyDir: keys, public: null }, "test.toml");
	const good = await sign("@moq/token", k1.private, { root: "demo", publish: [""] });
	assert.equal((await auth.authorize("/demo", good)).canPublish(normalizePath("x")), true);

	await refused(auth, "/demo", await sign("@moq/token", k2.private, { root: "demo", publish: [""] }), "key-not-found");

	const privateJwk = JSON.parse(readFileSync(k1.private, "utf8"));
	const signingKey = await jose.importJWK(
		{ kty: "EC", crv: privateJwk.crv, x: privateJwk.x, y: privateJwk.y, d: privateJwk.d },
		"ES256",
	);
	const forge = (header: jose.JWTHeaderParameters) =>
		new jose.SignJWT({ root: "demo", put: [""] }).setProtectedHeader(header).sign(signingKey);
	await refused(auth, "/demo", await forge({ alg: "ES256" }), "key-id-missing");
	await refused(auth, "/demo", await forge({ alg: "ES256", kid: "../x" }), "key-id-invalid");
	await refused(auth, "/demo", await forge({ alg: "ES256", kid: "k1/../../x" }), "key-id-invalid");
	await refused(auth, "/demo", await forge({ alg: "ES256", kid: "a".repeat(129) }), "key-id-invalid");

	// Rotation: k1.jwk now holds k2's public key; tokens of the old key stop verifying.
	writeFileSync(join(keys, "k1.jwk"), `${readFileSync(k2.verify, "utf8")}\n\n`);
	await refused(auth, "/demo", good, "token-invalid");
});

test("nbf in the future is refused (not yet valid)", async () => {
	const secret = Buffer.alloc(32, 7);
	const file = join(dir, "nbf.jwk");
	writeFileSync(
		file,
		JSON.stringify({ kty: "oct", alg: "HS256", k: secret.toString("base64url"), key_ops: ["verify"] }),
	);
	const auth = await Authenticator.create({ key: file, keyDir: null, public: null }, "test.toml");
	const token = await new jose.SignJWT({ root: "", get: "" })
		.setProtectedHeader({ alg: "HS256" })
		.setNotBefore(nowSec() + 600)
		.sign(secret);
	const err = await refused(auth, "/", token, "token-invalid");
	assert.match(err.message, /nbf/);
	// The same token once nbf has passed.
	assert.ok(await auth.authorize("/", token, (nowSec() + 601) * 1000));
});

test("claims: string put/get, empty grants, bad shapes", async () => {
	const secret = Buffer.alloc(32, 9);
	const file = join(dir, "claims.jwk");
	// base64url(JSON) and no kty: the legacy form moq-token still reads as oct.
	writeFileSync(file, b64json({ alg: "HS256", k: secret.toString("base64url") }));
	const auth = await Authenticator.create({ key: file, keyDir: null, public: null }, "test.toml");
	const mint = (claims: jose.JWTPayload) => new jose.SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(secret);

	const grant = await auth.authorize("/a", await mint({ root: "a", put: "cam", get: "" }));
	assert.deepEqual(grant.publish, ["cam"]);
	assert.deepEqual(grant.subscribe, [""]);
	assert.equal((await auth.authorize("/", await mint({ get: "x" }))).canSubscribe(normalizePath("x")), true);
	await refused(auth, "/a", await mint({ root: "a" }), "token-invalid");
	await refused(auth, "/a", await mint({ root: "a", put: [], get: [] }), "token-invalid");
	await refused(auth, "/a", await mint({ root: "a", put: 7 }), "token-invalid");
	await refused(auth, "/a", await mint({ root: "a/..", put: "" }), "token-invalid");
	await refused(auth, "/b", await mint({ root: "a", put: "" }), "root-mismatch");
});

test("public access: moq-relay's anonymous rules", async () => {
	const auth = await Authenticator.create({ key: null, keyDir: null, public: ["anon"] }, "test.toml");
	const at = await auth.authorize("/anon", null);
	assert.equal(at.root, "anon");
	assert.deepEqual(at.publish, [""]);
	assert.deepEqual(at.subscribe, [""]);
	const top = await auth.authorize("/", null);
	assert.equal(top.root, "");
	assert.deepEqual(top.publish, ["anon"]);
	assert.deepEqual(top.subscribe, ["anon"]);
	assert.equal(top.canSubscribe(normalizePath("anonymous")), false);
	const below = await auth.authorize("/anon/room", "");
	assert.equal(below.root, "anon/room");
	assert.deepEqual(below.publish, [""]);
	await refused(auth, "/other", null, "token-expected");
	await refused(auth, "/anonymous", null, "token-expected");
	await refused(auth, "/anon", "a.b.c", "token-unexpected");

	const open = await Authenticator.create({ key: null, keyDir: null, public: [""] }, "test.toml");
	const anywhere = await open.authorize("/x/y", null);
	assert.equal(anywhere.root, "x/y");
	assert.deepEqual(anywhere.subscribe, [""]);
	assert.ok(await open.authorizeTarget("/z?jwt="));
});

test("public + key: a token uses its claims, no token uses the public prefixes", async () => {
	const key = await generate("ours", "HS256", "mixed");
	const auth = await Authenticator.create({ key: key.verify, keyDir: null, public: ["anon"] }, "test.toml");
	const token = await sign("ours", key.private, { root: "private", subscribe: [""] });
	const withToken = await auth.authorizeTarget(`/private?jwt=${token}`);
	assert.equal(withToken.root, "private");
	assert.equal(withToken.canSubscribe(normalizePath("x")), true);
	await refused(auth, "/private", null, "token-expected");
	// A token for elsewhere does not fall back to public access.
	await refused(auth, "/anon", token, "root-mismatch");
	assert.equal((await auth.authorize("/anon", null)).canPublish(normalizePath("x")), true);
});

test("config errors name the setting, the file and the config source", async () => {
	await assert.rejects(
		Authenticator.create({ key: null, keyDir: null, public: null }, "relay.toml"),
		/\[auth\] needs key, key_dir or public.*relay\.toml/,
	);
	await assert.rejects(
		Authenticator.create({ key: null, keyDir: null, public: [] }, "relay.toml"),
		/needs key, key_dir or public/,
	);
	await assert.rejects(
		Authenticator.create({ key: "a.jwk", keyDir: dir, public: null }, "relay.toml"),
		/key and key_dir cannot both be set/,
	);
	const missing = join(dir, "missing.jwk");
	await assert.rejects(
		Authenticator.create({ key: missing, keyDir: null, public: null }, "relay.toml"),
		(err: Error) => err.message.includes(missing) && err.message.includes("relay.toml") && /ENOENT/.test(err.message),
	);
	const bad = join(dir, "bad.jwk");
	writeFileSync(bad, JSON.stringify({ kty: "oct", alg: "HS256", k: "c2hvcnQ" }));
	await assert.rejects(
		Authenticator.create({ key: bad, keyDir: null, public: null }, "relay.toml"),
		(err: Error) =>
			err.message.includes(bad) && /at least 32 bytes/.test(err.message) && !err.message.includes("c2hvcnQ"),
	);
	const mismatch = join(dir, "mismatch.jwk");
	writeFileSync(mismatch, JSON.stringify({ kty: "oct", alg: "RS256", k: Buffer.alloc(32).toString("base64url") }));
	await assert.rejects(
		Authenticator.create({ key: mismatch, keyDir: null, public: null }, "relay.toml"),
		/RS256 is incompatible with oct/,
	);
	await assert.rejects(
		Authenticator.create({ key: null, keyDir: join(dir, "nope"), public: null }, "relay.toml"),
		/key_dir .* is not a directory/,
	);
	await assert.rejects(
		Authenticator.create({ key: null, keyDir: null, public: ["a/../b"] }, "relay.toml"),
		/public entry "a\/..\/b" is invalid/,
	);
});

test("refusal messages never contain the token", () => {
	assert.ok(refusals.length > 40, `only ${refusals.length} refusals recorded`);
	for (const { message, token } of refusals) {
		if (token === null || token.length < 8) continue;
		assert.ok(!message.includes(token), message);
		for (const part of token.split(".")) {
			if (part.length >= 8) assert.ok(!message.includes(part), `${message} contains a token segment`);
		}
	}
});
