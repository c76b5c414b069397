/**
 * The `moq-token` command line (generate, sign, verify), flag-compatible with moq-token (Rust) and
 * `@moq/token` (JS). Keys are written as base64url(JSON) unless `--json`; tokens always carry `kid`
 * (when the key has one) and `root`, never `aud`, so both official verifiers accept them.
 *
 * Both syntaxes work: `--key` after the subcommand (@moq/token, moq-token-cli today) and the global
 * `--key` before it (moq-token of the moq-relay 0.10 era, which the deployment guides use:
 * `moq-token --key root.jwk generate`, `moq-token --key root.jwk sign --publish "" > pub.jwt`).
 * `sign --cluster` writes that era's `cluster: true` claim. Errors are one line on stderr: exit 2 for
 * a bad command line, 1 when the command itself fails. Tokens and keys are never written to stderr.
 * @module
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as jose from "jose";
import { normalizePath } from "../path/index.ts";
import { scopeAllows } from "./claims.ts";
import { AuthError } from "./errors.ts";
import type { Algorithm, TokenKey } from "./jwk.ts";
import { ALGORITHMS, generateKey, isValidKeyId, parseKey, randomKeyId, withScope } from "./jwk.ts";
import { verifyToken } from "./verify.ts";

/** Package version printed by `--version`. */
const VERSION = "0.1.0";

const USAGE = `moq-token: generate, sign, and verify tokens for moq-relay

Usage:
  moq-token [--key <path|->] <generate|sign|verify> [options]   (--key may come before or after the command)
  moq-token generate [--key <path|->] [--public <path|->] [--algorithm HS256] [--id <kid>] [--json]
                     [--out-dir <dir>] [--public-dir <dir>] [--root <path> --publish <p>... --subscribe <p>...]
  moq-token sign --key <path|-> [--root <path>] [--publish <p>...] [--subscribe <p>...]
                 [--expires <unix>] [--issued <unix>] [--cluster]
  moq-token verify --key <path|-> [--in <path|->] [--root <path>]

generate  Writes a new key (to stdout when no --key/--out/--out-dir). base64url(JSON) by default;
          --json writes indented JSON. --public writes the verify-only half (asymmetric only).
          --publish/--subscribe (with --root) embed a scope capping what the key may grant.
          Algorithms: ${ALGORITHMS.join(", ")}.
sign      Prints a token. --publish/--subscribe may repeat; "" grants everything under --root.
          iat defaults to now. --cluster adds the claim cluster: true (moq-relay 0.10 cluster tokens).
          Redirect stdout to save it: moq-token --key root.jwk sign --publish "" > pub.jwt
verify    Reads a token (stdin by default), verifies it and prints its payload as JSON.
          With --root, the token's root must equal it.
`;

/** A bad command line: print usage, exit 2. */
class UsageError extends Error {}

interface FlagSpec {
	/** Flags that take one value. */
	single: readonly string[];
	/** Flags that take values and may repeat (also `--publish a b`, as @moq/token's CLI accepts). */
	multi: readonly string[];
	/** Flags without a value. */
	bool: readonly string[];
}

interface ParsedFlags {
	single: Map<string, string>;
	multi: Map<string, string[]>;
	bool: Set<string>;
}

function parseFlags(args: readonly string[], spec: FlagSpec): ParsedFlags {
	const out: ParsedFlags = { single: new Map(), multi: new Map(), bool: new Set() };
	let lastMulti: string | null = null;
	for (let i = 0; i < args.length; i++) {
		const arg = args[i];
		if (!arg.startsWith("--")) {
			// A bare word continues the previous repeatable flag's values.
			if (lastMulti === null) throw new UsageError(`unexpected argument ${JSON.stringify(arg)}`);
			out.multi.get(lastMulti)!.push(arg);
			continue;
		}
		const eq = arg.indexOf("=");
		const name = arg.slice(2, eq < 0 ? undefined : eq);
		const inline = eq < 0 ? null : arg.slice(eq + 1);
		lastMulti = null;
		if (spec.bool.includes(name)) {
			if (inline !== null) throw new UsageError(`--${name} takes no value`);
			out.bool.add(name);
			continue;
		}
		const isMulti = spec.multi.includes(name);
		if (!isMulti && !spec.single.includes(name)) throw new UsageError(`unknown option --${name}`);
		let value = inline;
		if (value === null) {
			// Values may legitimately be "" or start with "-" ("-" means stdin/stdout), but not "--".
			if (i + 1 >= args.length || args[i + 1].startsWith("--")) throw new UsageError(`--${name} needs a value`);
			value = args[++i];
		}
		if (isMulti) {
			const list = out.multi.get(name) ?? [];
			list.push(value);
			out.multi.set(name, list);
			lastMulti = name;
		} else {
			if (out.single.has(name)) throw new UsageError(`--${name} given twice`);
			out.single.set(name, value);
		}
	}
	return out;
}

/** Where the CLI reads and writes; replaceable for tests. */
export interface CliIo {
	stdout(text: string): void;
	stderr(text: string): void;
	/** All of stdin, as text. */
	stdin(): string;
}

const processIo: CliIo = {
	stdout: (text) => process.stdout.write(text),
	stderr: (text) => process.stderr.write(text),
	stdin: () => readFileSync(0, "utf8"),
};

/** Run `moq-token` with `args` (argv without node and the script); resolves to the exit status. */
export async function runTokenCli(args: readonly string[], io: CliIo = processIo): Promise<number> {
	try {
		const { globalKey, command, rest } = splitGlobal(args);
		switch (command) {
			case "generate":
				generateCommand(rest, globalKey, io);
				return 0;
			case "sign":
				await signCommand(rest, globalKey, io);
				return 0;
			case "verify":
				await verifyCommand(rest, globalKey, io);
				return 0;
			case "--version":
			case "-V":
				io.stdout(`moq-token ${VERSION}\n`);
				return 0;
			case "--help":
			case "-h":
			case "help":
				io.stdout(USAGE);
				return 0;
			default:
				throw new UsageError(command === undefined ? "missing command" : `unknown command ${JSON.stringify(command)}`);
		}
	} catch (err) {
		if (err instanceof UsageError) {
			// One line, like every other error; the usage text is one --help away.
			io.stderr(`error: ${err.message} (see moq-token --help)\n`);
			return 2;
		}
		// Messages here never include the token or key material (AuthError / KeyError are built that way).
		io.stderr(`error: ${(err as Error).message}\n`);
		return 1;
	}
}

/**
 * Options before the command. The only global option is `--key` (moq-token of the moq-relay 0.10 era
 * declared it on the top-level command); `--help`/`--version` may also come first.
 */
function splitGlobal(args: readonly string[]): {
	globalKey: string | null;
	command: string | undefined;
	rest: string[];
} {
	let globalKey: string | null = null;
	let i = 0;
	for (; i < args.length; i++) {
		const arg = args[i];
		if (arg === "--key" || arg.startsWith("--key=")) {
			let value: string;
			if (arg === "--key") {
				if (i + 1 >= args.length || args[i + 1].startsWith("--")) throw new UsageError("--key needs a value");
				value = args[++i];
			} else {
				value = arg.slice("--key=".length);
			}
			if (globalKey !== null) throw new UsageError("--key given twice");
			globalKey = value;
			continue;
		}
		if (arg.startsWith("-") && !["--help", "-h", "--version", "-V"].includes(arg)) {
			throw new UsageError(`unknown option ${arg.split("=")[0]} before the command (only --key may come first)`);
		}
		break;
	}
	return { globalKey, command: args[i], rest: args.slice(i + 1) };
}

/** `--key` from the subcommand's flags or from before the command; both only when they agree. */
function keyOption(flags: ParsedFlags, globalKey: string | null): string | undefined {
	const local = flags.single.get("key");
	if (local !== undefined && globalKey !== null && local !== globalKey) {
		throw new UsageError("--key given twice (before and after the command) with different paths");
	}
	return local ?? globalKey ?? undefined;
}

function generateCommand(args: readonly string[], globalKey: string | null, io: CliIo): void {
	const flags = parseFlags(args, {
		single: ["key", "out", "out-dir", "public", "public-dir", "algorithm", "id", "root"],
		multi: ["publish", "subscribe"],
		bool: ["json", "base64", "help"],
	});
	if (flags.bool.has("help")) {
		io.stdout(USAGE);
		return;
	}
	if (flags.bool.has("json") && flags.bool.has("base64")) throw new UsageError("--json and --base64 conflict");
	const json = flags.bool.has("json");

	const algorithm = flags.single.get("algorithm") ?? "HS256";
	if (!(ALGORITHMS as readonly string[]).includes(algorithm)) {
		throw new UsageError(`unsupported algorithm ${JSON.stringify(algorithm)} (one of ${ALGORITHMS.join(", ")})`);
	}
	const id = flags.single.get("id")?.trim() || randomKeyId();
	if (!isValidKeyId(id)) throw new UsageError("--id must be 1-128 characters of [A-Za-z0-9_-]");
	const keyPath = keyOption(flags, globalKey);
	if (keyPath !== undefined && flags.single.has("out")) throw new UsageError("--key and --out are the same option");
	const out = keyPath ?? flags.single.get("out") ?? null;
	const outDir = flags.single.get("out-dir") ?? null;
	const pub = flags.single.get("public") ?? null;
	const pubDir = flags.single.get("public-dir") ?? null;
	if (out !== null && outDir !== null) throw new UsageError("--key/--out and --out-dir conflict");
	if (pub !== null && pubDir !== null) throw new UsageError("--public and --public-dir conflict");
	const privateToStdout = outDir === null && (out === null || out === "-");
	if (privateToStdout && pub === "-") throw new UsageError("cannot write both keys to stdout");

	let key = generateKey(algorithm as Algorithm, id);
	const publish = flags.multi.get("publish") ?? [];
	const subscribe = flags.multi.get("subscribe") ?? [];
	if (publish.length > 0 || subscribe.length > 0) {
		key = withScope(key, { root: flags.single.get("root") ?? "", publish, subscribe });
	} else if (flags.single.has("root")) {
		throw new UsageError("--root on generate needs --publish or --subscribe (it scopes the key)");
	}

	if ((pub !== null || pubDir !== null) && key.jwk.kty === "oct") {
		// @moq/token warns and goes on: a symmetric key has no public half to write.
		io.stderr("warning: a symmetric (HS*) key has no public half; --public ignored\n");
	} else if (pub !== null || pubDir !== null) {
		writeKey(key.toPublic(), pubDir !== null ? join(pubDir, `${id}.jwk`) : pub!, json, io);
	}
	writeKey(key, outDir !== null ? join(outDir, `${id}.jwk`) : (out ?? "-"), json, io);
}

function writeKey(key: TokenKey, target: string, json: boolean, io: CliIo): void {
	const text = key.encode(json);
	if (target === "-") {
		io.stdout(`${text}\n`);
		return;
	}
	// Private keys are secrets: owner-only, like moq-token's `to_file`.
	writeFileSync(target, text, { encoding: "utf8", mode: key.isPrivate ? 0o600 : 0o644 });
}

function readKey(target: string, io: CliIo): TokenKey {
	let text: string;
	try {
		text = target === "-" ? io.stdin() : readFileSync(target, "utf8");
	} catch (err) {
		throw new Error(
			`cannot read key ${target === "-" ? "from stdin" : JSON.stringify(target)}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
		);
	}
	try {
		return parseKey(text);
	} catch (err) {
		throw new Error(`invalid key ${target === "-" ? "from stdin" : JSON.stringify(target)}: ${(err as Error).message}`);
	}
}

function parseTimestamp(name: string, value: string | undefined): number | undefined {
	if (value === undefined) return undefined;
	if (!/^-?\d{1,15}$/.test(value.trim())) throw new UsageError(`--${name} expects a unix timestamp in seconds`);
	return Number(value.trim());
}

async function signCommand(args: readonly string[], globalKey: string | null, io: CliIo): Promise<void> {
	const flags = parseFlags(args, {
		single: ["key", "root", "expires", "issued"],
		multi: ["publish", "subscribe"],
		bool: ["help", "cluster"],
	});
	if (flags.bool.has("help")) {
		io.stdout(USAGE);
		return;
	}
	const keyPath = keyOption(flags, globalKey);
	if (keyPath === undefined) throw new UsageError("sign needs --key");
	const expires = parseTimestamp("expires", flags.single.get("expires"));
	const issued = parseTimestamp("issued", flags.single.get("issued")) ?? Math.floor(Date.now() / 1000);

	const root = flags.single.get("root") ?? "";
	const publish = flags.multi.get("publish") ?? [];
	const subscribe = flags.multi.get("subscribe") ?? [];
	// Refuse paths the relay would refuse, rather than mint a token nobody can use.
	const normalized = {
		root: normalizePath(root),
		publish: publish.map((p) => normalizePath(p)),
		subscribe: subscribe.map((p) => normalizePath(p)),
	};
	if (publish.length === 0 && subscribe.length === 0) {
		throw new UsageError("the token must grant --publish or --subscribe (or both)");
	}

	const key = readKey(keyPath, io);
	if (!key.canSign) throw new Error("the key cannot sign (a public key, or key_ops without sign)");
	if (key.scope !== null && !scopeAllows(key.scope, normalized)) {
		throw new Error("the token would grant more than the key's scope allows");
	}

	// root is always written: @moq/token's verifier requires it. put/get only when granted.
	const payload: jose.JWTPayload = { root };
	if (publish.length > 0) payload.put = publish;
	if (subscribe.length > 0) payload.get = subscribe;
	// moq-token's `Claims::cluster` (serialized only when true; removed from moq-token in 2026).
	if (flags.bool.has("cluster")) payload.cluster = true;
	if (expires !== undefined) payload.exp = expires;
	payload.iat = issued;

	const header: jose.JWTHeaderParameters = { alg: key.alg, typ: "JWT" };
	if (key.kid !== null) header.kid = key.kid;
	const token = await new jose.SignJWT(payload).setProtectedHeader(header).sign(await key.signingKey());
	io.stdout(`${token}\n`);
}

async function verifyCommand(args: readonly string[], globalKey: string | null, io: CliIo): Promise<void> {
	const flags = parseFlags(args, { single: ["key", "in", "root"], multi: [], bool: ["help"] });
	if (flags.bool.has("help")) {
		io.stdout(USAGE);
		return;
	}
	const keyPath = keyOption(flags, globalKey);
	if (keyPath === undefined) throw new UsageError("verify needs --key");
	const input = flags.single.get("in") ?? "-";
	if (keyPath === "-" && input === "-") throw new UsageError("--key and --in cannot both read from stdin");

	const key = readKey(keyPath, io);
	let token: string;
	try {
		token = (input === "-" ? io.stdin() : readFileSync(input, "utf8")).trim();
	} catch (err) {
		throw new Error(`cannot read the token: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
	}
	const { payload, claims } = await verifyToken(key, token);
	const root = flags.single.get("root");
	if (root !== undefined && normalizePath(root) !== claims.root) {
		throw new AuthError("root-mismatch", "token root does not match --root");
	}
	io.stdout(`${JSON.stringify(payload, null, 2)}\n`);
}
