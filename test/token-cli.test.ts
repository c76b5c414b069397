/**
 * Our `moq-token` CLI, cross-checked against the official `@moq/token` CLI in both directions.
 * Every command runs as a child process, the way operators run it.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { runTokenCli } from "../src/auth/cli.ts";

const exec = promisify(execFile);
const REPO = resolve(import.meta.dirname, "..");
const NODE = join(REPO, "node_modules", ".bin", "node");
/** Our CLI runs in-process (same code as src/bin/moq-token.ts, minus Node start-up); the launcher test spawns it. */
const OURS = "ours";
const LAUNCHER = join(REPO, "bin", "moq-token.js");
const OFFICIAL = join(REPO, "node_modules", ".bin", "moq-token");

const dir = mkdtempSync(join(tmpdir(), "moq-token-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;
const file = (name: string) => join(dir, `${seq++}-${name}`);
const nowSec = () => Math.floor(Date.now() / 1000);

interface Result {
	code: number;
	stdout: string;
	stderr: string;
}

/** Run a CLI script with Node 24 (ours in-process); never throws on a non-zero exit. */
async function run(script: string, args: string[], input?: string, node = NODE): Promise<Result> {
	if (script === OURS) {
		const out = { code: 0, stdout: "", stderr: "" };
		out.code = await runTokenCli(args, {
			stdout: (text) => {
				out.stdout += text;
			},
			stderr: (text) => {
				out.stderr += text;
			},
			stdin: () => {
				if (input === undefined) throw new Error("stdin is empty");
				return input;
			},
		});
		return out;
	}
	const child = exec(node, [script, ...args], { encoding: "utf8" });
	if (input !== undefined) child.child.stdin?.end(input);
	else child.child.stdin?.end();
	try {
		const { stdout, stderr } = await child;
		return { code: 0, stdout, stderr };
	} catch (err) {
		const e = err as { code: number; stdout: string; stderr: string };
		return { code: e.code, stdout: e.stdout, stderr: e.stderr };
	}
}

async function ok(script: string, args: string[], input?: string): Promise<string> {
	const result = await run(script, args, input);
	assert.equal(result.code, 0, `${args.join(" ")}: ${result.stderr}`);
	return result.stdout.trim();
}

function decodePart(part: string): Record<string, unknown> {
	return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
}

interface Keys {
	private: string;
	verify: string;
}

async function generateOurs(alg: string, extra: string[] = []): Promise<Keys> {
	const priv = file(`${alg}.jwk`);
	const asymmetric = !alg.startsWith("HS");
	const pub = asymmetric ? file(`${alg}.pub.jwk`) : priv;
	await ok(OURS, ["generate", "--algorithm", alg, "--key", priv, ...(asymmetric ? ["--public", pub] : []), ...extra]);
	return { private: priv, verify: pub };
}

for (const alg of ["HS256", "ES256", "EdDSA", "RS256", "PS256", "ES384", "HS384"]) {
	test(`${alg}: tokens from our CLI verify with @moq/token's verify`, { timeout: 60_000 }, async () => {
		const [key, other] = await Promise.all([generateOurs(alg, ["--id", "relay-1"]), generateOurs(alg)]);
		// base64url(JSON) by default, readable by both implementations.
		assert.doesNotMatch(readFileSync(key.private, "utf8"), /^\s*\{/);
		assert.equal(statSync(key.private).mode & 0o777, 0o600);

		const exp = nowSec() + 3600;
		const [token, expired, wrong, rootless] = await Promise.all([
			ok(OURS, [
				"sign",
				"--key",
				key.private,
				"--root",
				"rooms/1",
				"--publish",
				"alice",
				"--subscribe",
				"",
				"--expires",
				String(exp),
			]),
			ok(OURS, [
				"sign",
				"--key",
				key.private,
				"--root",
				"rooms/1",
				"--subscribe",
				"",
				"--expires",
				String(nowSec() - 5),
			]),
			ok(OURS, ["sign", "--key", other.private, "--root", "rooms/1", "--subscribe", ""]),
			ok(OURS, ["sign", "--key", key.private, "--publish", "a", "b", "--issued", "1700000000"]),
		]);

		const [h, p] = token.split(".");
		assert.deepEqual(decodePart(h), { alg, typ: "JWT", kid: "relay-1" });
		const payload = decodePart(p);
		assert.deepEqual(payload.put, ["alice"]);
		assert.deepEqual(payload.get, [""]);
		assert.equal(payload.exp, exp);
		assert.equal(typeof payload.iat, "number");
		assert.equal("aud" in payload, false);
		const rootlessPayload = decodePart(rootless.split(".")[1]);
		assert.equal(rootlessPayload.root, "");
		assert.deepEqual(rootlessPayload.put, ["a", "b"]);
		assert.equal(rootlessPayload.iat, 1700000000);

		const verified = JSON.parse(await ok(OFFICIAL, ["verify", "--key", key.verify, "--root", "rooms/1"], token));
		assert.deepEqual(verified.put, ["alice"]);
		assert.equal((await run(OFFICIAL, ["verify", "--key", key.verify, "--root", "rooms/1"], expired)).code, 1);
		assert.equal((await run(OFFICIAL, ["verify", "--key", key.verify, "--root", "rooms/1"], wrong)).code, 1);
		const tampered = `${h}.${Buffer.from(JSON.stringify({ ...payload, put: [""] })).toString("base64url")}.${token.split(".")[2]}`;
		assert.equal((await run(OFFICIAL, ["verify", "--key", key.verify, "--root", "rooms/1"], tampered)).code, 1);

		// And our own verify agrees.
		assert.deepEqual(JSON.parse(await ok(OURS, ["verify", "--key", key.verify], token)).put, ["alice"]);
		for (const bad of [expired, wrong, tampered]) {
			const result = await run(OURS, ["verify", "--key", key.verify], bad);
			assert.equal(result.code, 1);
			assert.ok(!result.stderr.includes(bad.split(".")[2]), "stderr leaks the token");
		}
	});
}

test("tokens and keys from @moq/token verify with our CLI", { timeout: 60_000 }, async () => {
	for (const [alg, extra] of [
		["ES256", []],
		["HS256", ["--base64"]],
	] as const) {
		const priv = file(`js-${alg}.jwk`);
		const pub = file(`js-${alg}.pub.jwk`);
		await ok(OFFICIAL, ["generate", "--key", priv, "--algorithm", alg, "--id", "js", "--public", pub, ...extra]);
		const verifyKey = alg === "HS256" ? priv : pub;
		const token = await ok(OFFICIAL, [
			"sign",
			"--key",
			priv,
			"--root",
			"demo",
			"--subscribe",
			"room",
			"--expires",
			String(nowSec() + 60),
		]);
		const payload = JSON.parse(await ok(OURS, ["verify", "--key", verifyKey, "--root", "/demo/"], token));
		assert.deepEqual(payload.get, ["room"]);
		const mismatch = await run(OURS, ["verify", "--key", verifyKey, "--root", "other"], token);
		assert.equal(mismatch.code, 1);
		assert.match(mismatch.stderr, /root does not match/);
		const expired = await ok(OFFICIAL, [
			"sign",
			"--key",
			priv,
			"--root",
			"demo",
			"--subscribe",
			"",
			"--expires",
			String(nowSec() - 5),
		]);
		const result = await run(OURS, ["verify", "--key", verifyKey], expired);
		assert.equal(result.code, 1);
		assert.match(result.stderr, /expired/);
		// Our sign with the official CLI's key.
		const ours = await ok(OURS, ["sign", "--key", priv, "--root", "demo", "--publish", ""]);
		assert.ok(await ok(OFFICIAL, ["verify", "--key", verifyKey, "--root", "demo"], ours));
	}
});

test("generate: stdout by default, --json, --out-dir/--public-dir, scopes", { timeout: 60_000 }, async () => {
	const b64 = await ok(OURS, ["generate"]);
	const jwk = JSON.parse(Buffer.from(b64, "base64url").toString("utf8"));
	assert.equal(jwk.kty, "oct");
	assert.equal(jwk.alg, "HS256");
	assert.match(jwk.kid, /^[0-9a-f]{16}$/);
	assert.deepEqual(jwk.key_ops, ["sign", "verify"]);
	assert.equal(Buffer.from(jwk.k, "base64url").length, 32);

	const json = JSON.parse(await ok(OURS, ["generate", "--json", "--algorithm", "EdDSA", "--id", "ed", "--key", "-"]));
	assert.equal(json.crv, "Ed25519");
	assert.equal(json.kid, "ed");

	await ok(OURS, ["generate", "--algorithm", "ES256", "--id", "k9", "--out-dir", dir, "--public-dir", join(dir)]);
	// --public-dir and --out-dir are the same folder here: the private key, written last, wins.
	assert.equal(JSON.parse(Buffer.from(readFileSync(join(dir, "k9.jwk"), "utf8"), "base64url").toString()).kid, "k9");

	const scoped = await generateOurs("HS256", ["--root", "project", "--publish", "live"]);
	assert.ok(await ok(OURS, ["sign", "--key", scoped.private, "--root", "project/live/room", "--publish", ""]));
	const denied = await run(OURS, ["sign", "--key", scoped.private, "--root", "project", "--publish", "other"]);
	assert.equal(denied.code, 1);
	assert.match(denied.stderr, /scope/);
	const escalate = await run(OURS, ["sign", "--key", scoped.private, "--root", "project/live", "--subscribe", ""]);
	assert.equal(escalate.code, 1);
	// The official verifier ignores the scope field but accepts the key and token.
	const token = await ok(OURS, ["sign", "--key", scoped.private, "--root", "project", "--publish", "live/x"]);
	assert.ok(await ok(OFFICIAL, ["verify", "--key", scoped.private, "--root", "project"], token));
});

test("usage errors exit 2; key errors exit 1", { timeout: 60_000 }, async () => {
	const key = await generateOurs("HS256");
	const cases: [string[], number, RegExp][] = [
		[[], 2, /missing command/],
		[["frobnicate"], 2, /unknown command/],
		[["generate", "--algorithm", "HS128"], 2, /unsupported algorithm/],
		[["generate", "--id", "../x"], 2, /--id must be/],
		[["generate", "--key", "-", "--public", "-", "--algorithm", "ES256"], 2, /both keys to stdout/],
		[["sign", "--key", key.private], 2, /must grant --publish or --subscribe/],
		[["sign", "--key", key.private, "--publish", "", "--expires", "soon"], 2, /unix timestamp/],
		[["sign", "--key", key.private, "--publish", "", "--bogus"], 2, /unknown option --bogus/],
		[["sign", "--key", key.private, "--publish", "a/../b"], 1, /not allowed/],
		[["sign", "--key", join(dir, "missing.jwk"), "--publish", ""], 1, /cannot read key/],
		[["verify"], 2, /needs --key/],
		[["verify", "--key", "-", "--in", "-"], 2, /cannot both read from stdin/],
	];
	for (const [args, code, message] of cases) {
		const result = await run(OURS, args);
		assert.equal(result.code, code, `${args.join(" ")}: ${result.stderr}`);
		assert.match(result.stderr, message, args.join(" "));
	}
	const pub = await generateOurs("ES256");
	const noSign = await run(OURS, ["sign", "--key", pub.verify, "--publish", ""]);
	assert.equal(noSign.code, 1);
	assert.match(noSign.stderr, /cannot sign/);
	// --key - reads the key from stdin.
	const token = await ok(OURS, ["sign", "--key", "-", "--subscribe", "x"], readFileSync(key.private, "utf8"));
	assert.equal(decodePart(token.split(".")[1]).root, "");
});

test("bin/moq-token.js runs the CLI on Node 24, and re-executes from an old Node", { timeout: 60_000 }, async () => {
	const direct = await run(LAUNCHER, ["--version"]);
	assert.equal(direct.code, 0, direct.stderr);
	assert.match(direct.stdout, /^moq-token \d+\.\d+\.\d+/);

	let systemNode: string | null = null;
	try {
		systemNode = execFileSync("sh", ["-c", "command -v node"], {
			encoding: "utf8",
			env: { PATH: "/usr/local/bin:/usr/bin:/bin" },
		}).trim();
	} catch {
		systemNode = null;
	}
	if (systemNode === null || systemNode === "") return;
	const version = execFileSync(systemNode, ["-p", "process.versions.node"], { encoding: "utf8" }).trim();
	const [major, minor] = version.split(".").map(Number);
	if (major > 22 || (major === 22 && minor >= 12)) return; // nothing old to test with
	const key = await generateOurs("HS256");
	const token = await ok(OURS, ["sign", "--key", key.private, "--subscribe", ""]);
	const viaOld = await run(LAUNCHER, ["verify", "--key", key.private], token, systemNode);
	assert.equal(viaOld.code, 0, viaOld.stderr);
	assert.deepEqual(JSON.parse(viaOld.stdout).get, [""]);
	const failing = await run(LAUNCHER, ["verify", "--key", join(dir, "nope.jwk")], token, systemNode);
	assert.equal(failing.code, 1);
});
