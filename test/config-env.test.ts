/**
 * Configuration from the environment (src/config/env.ts): every documented variable parses,
 * precedence is flags > environment > file, RUST_LOG/MOQ_LOG map to one level, unknown MOQ_*
 * variables warn once, and bad values exit the real binary with status 2 naming the variable.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import {
	ConfigError,
	ENV_VARS,
	type Env,
	levelFromLogFilter,
	loadConfig,
	parseArgs,
	readEnv,
} from "../src/config/load.ts";
import type { RelayConfig } from "../src/config/types.ts";
import { startRelayProcess } from "./support/process-relay.ts";

const exec = promisify(execFile);
const REPO = resolve(import.meta.dirname, "..");
const dir = mkdtempSync(join(tmpdir(), "moq-fanout-env-"));
after(() => rmSync(dir, { recursive: true, force: true }));
for (const file of ["cert.pem", "key.pem", "root.jwk", "env.jwk", "flag.jwk", "cluster.jwt"]) {
	writeFileSync(join(dir, file), "placeholder\n");
}
mkdirSync(join(dir, "keys"));

const FILE = `[server]
bind = "127.0.0.1:1111"
tls.generate = ["localhost"]

[auth]
key = "root.jwk"

[log]
level = "error"

[cache]
track_bytes = "4MiB"
max_age = "10s"

[limits]
max_sessions = 10
idle_timeout = "20s"

[workers]
count = 1
`;

function load(env: Env, args: string[] = [], text = FILE, warn: (line: string) => void = () => {}): RelayConfig {
	const path = join(dir, "relay.toml");
	writeFileSync(path, text);
	return loadConfig(path, parseArgs(args).overrides, { env, warn });
}

function envError(env: Env, args: string[] = []): ConfigError {
	try {
		load(env, args);
	} catch (err) {
		assert.ok(err instanceof ConfigError, String(err));
		return err;
	}
	assert.fail(`expected a ConfigError for ${JSON.stringify(env)}`);
}

describe("config: environment", () => {
	test("precedence: flags > environment > file, key by key", () => {
		const fileOnly = load({});
		assert.equal(fileOnly.limits.maxSessions, 10);
		assert.equal(fileOnly.log.level, "error");
		assert.deepEqual(fileOnly.server.bind, { host: "127.0.0.1", port: 1111 });
		assert.equal(fileOnly.cache.trackBytes, 4 * 2 ** 20);

		const env = {
			MOQ_LIMITS_MAX_SESSIONS: "20",
			MOQ_LOG_LEVEL: "warn",
			MOQ_SERVER_BIND: "127.0.0.1:2222",
			MOQ_CACHE_TRACK_BYTES: "6MiB",
			MOQ_CACHE_DURATION: "5s",
			MOQ_LIMITS_IDLE_TIMEOUT: "1m30s",
			MOQ_WORKERS_COUNT: "2",
			MOQ_AUTH_KEY: join(dir, "env.jwk"),
		};
		const fromEnv = load(env);
		assert.equal(fromEnv.limits.maxSessions, 20);
		assert.equal(fromEnv.log.level, "warn");
		assert.deepEqual(fromEnv.server.bind, { host: "127.0.0.1", port: 2222 });
		assert.equal(fromEnv.cache.trackBytes, 6 * 2 ** 20);
		assert.equal(fromEnv.cache.maxAgeMs, 5000);
		assert.equal(fromEnv.limits.idleTimeoutMs, 90_000);
		assert.equal(fromEnv.workers.count, 2);
		assert.equal(fromEnv.auth.key, join(dir, "env.jwk"));
		// Keys the environment leaves alone keep the file's value.
		assert.deepEqual(fromEnv.tls.generate, ["localhost"]);

		const flags = load(env, [
			"--log-level",
			"debug",
			"--bind",
			"127.0.0.1:3333",
			"--workers",
			"3",
			"--auth-key",
			join(dir, "flag.jwk"),
		]);
		assert.equal(flags.log.level, "debug");
		assert.deepEqual(flags.server.bind, { host: "127.0.0.1", port: 3333 });
		assert.equal(flags.workers.count, 3);
		assert.equal(flags.auth.key, join(dir, "flag.jwk"));
		// No flag for these: the environment still wins over the file.
		assert.equal(flags.limits.maxSessions, 20);
		assert.equal(flags.cache.trackBytes, 6 * 2 ** 20);
	});

	test("lists are comma-separated; list flags replace the environment's list", () => {
		const config = load({
			MOQ_AUTH_PUBLIC: "anon, /demo/",
			MOQ_SERVER_TLS_GENERATE: "localhost,127.0.0.1",
			MOQ_CLUSTER_CONNECT: "us.relay.example,https://eu.relay.example/",
			MOQ_CLUSTER_ROOT: "us.relay.example:443",
		});
		assert.deepEqual(config.auth.public, ["anon", "demo"]);
		assert.deepEqual(config.tls.generate, ["localhost", "127.0.0.1"]);
		assert.deepEqual(
			config.cluster?.connect.map((peer) => peer.url),
			["https://us.relay.example/", "https://eu.relay.example/"],
		);
		const flagged = load({ MOQ_AUTH_PUBLIC: "anon,demo" }, ["--auth-public", "other"]);
		assert.deepEqual(flagged.auth.public, ["other"]);
		// "/" is every path; an empty variable is unset (it does not open everything).
		assert.deepEqual(load({ MOQ_AUTH_PUBLIC: "/" }).auth.public, [""]);
		assert.equal(load({ MOQ_AUTH_PUBLIC: "" }).auth.public, null);
		assert.match(envError({ MOQ_AUTH_PUBLIC: "anon," }).message, /MOQ_AUTH_PUBLIC: item 2 .* is empty/);
		assert.equal(load({ MOQ_WEB_HTTP_LISTEN: "off" }).web.http, null);
	});

	test("every documented variable is read, and every variable is documented", () => {
		const docs = readFileSync(join(REPO, "docs", "configuration.md"), "utf8");
		const documented = new Set([...docs.matchAll(/^\| `(MOQ_[A-Z_]+)` \|/gm)].map((m) => m[1]));
		const names = ENV_VARS.map((spec) => spec.name);
		assert.deepEqual([...documented].sort(), [...names].sort());
		for (const spec of ENV_VARS) {
			assert.ok(docs.includes(`| \`${spec.name}\` | `), spec.name);
			// The example parses, sets that setting and nothing else, and is credited to the variable.
			const { settings, warnings } = readEnv({ [spec.name]: spec.example });
			assert.deepEqual(Object.keys(settings.values), [spec.setting], spec.name);
			assert.deepEqual(settings.origins[spec.setting], { source: "environment", key: spec.name });
			assert.deepEqual(warnings, []);
			// A value that is wrong for every parser is an error naming the variable (paths and
			// prefixes take any text; missing files are checked after merging, below).
			const anyText = ["authKey", "authKeyDir", "tlsCert", "tlsKey", "clusterToken", "clientTlsRoot", "authPublic"];
			if (anyText.includes(spec.setting)) continue;
			assert.throws(
				() => readEnv({ [spec.name]: "\u0001bad" }),
				(err: unknown) =>
					err instanceof ConfigError && err.key === spec.name && err.message.startsWith(`environment: ${spec.name}: `),
				spec.name,
			);
		}
		// The derived names follow MOQ_<TABLE>_<KEY>; moq-relay's own names are kept where they exist.
		for (const spec of ENV_VARS.filter((s) => !s.moqRelay)) {
			assert.equal(spec.name, `MOQ_${spec.key.toUpperCase().replaceAll(".", "_")}`);
		}
		for (const name of [
			"MOQ_SERVER_BIND",
			"MOQ_SERVER_TLS_CERT",
			"MOQ_AUTH_KEY",
			"MOQ_CACHE_CAPACITY",
			"MOQ_LOG_LEVEL",
		]) {
			assert.ok(ENV_VARS.find((s) => s.name === name)?.moqRelay, name);
		}
	});

	test("bad values name the variable", () => {
		const cases: [Env, string, RegExp][] = [
			[{ MOQ_LIMITS_MAX_SESSIONS: "lots" }, "MOQ_LIMITS_MAX_SESSIONS", /expected a positive integer/],
			[{ MOQ_LIMITS_MAX_SESSIONS: "0" }, "MOQ_LIMITS_MAX_SESSIONS", /expected a positive integer/],
			[{ MOQ_CACHE_TRACK_BYTES: "75%" }, "MOQ_CACHE_TRACK_BYTES", /percentages/],
			[{ MOQ_LIMITS_IDLE_TIMEOUT: "0" }, "MOQ_LIMITS_IDLE_TIMEOUT", /above zero/],
			[{ MOQ_SERVER_BIND: "localhost" }, "MOQ_SERVER_BIND", /port is missing/],
			[{ MOQ_WORKERS_REUSE_PORT: "maybe" }, "MOQ_WORKERS_REUSE_PORT", /true or false/],
			[{ MOQ_LOG_LEVEL: "loud" }, "MOQ_LOG_LEVEL", /expected one of trace/],
			[{ MOQ_LOG: "moq_relay=loud" }, "MOQ_LOG", /cannot read "moq_relay=loud"/],
			[{ MOQ_LOG: "quinn=debug" }, "MOQ_LOG", /no directive applies/],
			[{ MOQ_CACHE_CAPACITY: "1GiB", MOQ_CACHE_TOTAL_BYTES: "2GiB" }, "MOQ_CACHE_CAPACITY", /same key as/],
			[{ MOQ_AUTH_KEY_DIR: "https://keys.example" }, "MOQ_AUTH_KEY_DIR", /URL is not supported/],
			// Checked after merging, and still credited to the variable.
			[{ MOQ_AUTH_KEY: join(dir, "absent.jwk") }, "MOQ_AUTH_KEY", /file not found/],
			[{ MOQ_LIMITS_MAX_FRAME_BYTES: "16MiB" }, "MOQ_LIMITS_MAX_FRAME_BYTES", /exceeds cache.track_bytes/],
			[{ MOQ_SERVER_TLS_CERT: join(dir, "cert.pem") }, "MOQ_SERVER_TLS_CERT", /pair up by index/],
		];
		for (const [env, name, pattern] of cases) {
			const err = envError(env);
			assert.equal(err.key, name, err.message);
			assert.ok(err.message.startsWith(`environment: ${name}: `), err.message);
			assert.match(err.message, pattern);
		}
		// Like a bad key in the file, a bad variable is reported even when a flag replaces it.
		assert.equal(envError({ MOQ_LOG_LEVEL: "loud" }, ["--log-level", "info"]).key, "MOQ_LOG_LEVEL");
	});

	test("RUST_LOG and MOQ_LOG: the most verbose level that reaches the relay", () => {
		const table: [string, string | null][] = [
			["info", "info"],
			["debug", "debug"],
			["moq_relay=debug", "debug"],
			["warn,moq_relay=debug", "debug"],
			["WARN,moq_relay=DEBUG", "debug"],
			["info,quinn=trace", "info"],
			["moq=trace", "trace"],
			["moq_relay::web=trace,info", "trace"],
			["moq_fanout=warn", "warn"],
			["off", "error"],
			["4", "debug"],
			["quinn=debug", null],
			["[span]=debug", null],
		];
		for (const [text, level] of table) assert.equal(levelFromLogFilter(text).level, level, text);

		assert.equal(load({ RUST_LOG: "warn,moq_relay=debug" }).log.level, "debug");
		assert.equal(load({ RUST_LOG: "debug" }).log.level, "debug");
		// Nothing for the relay in RUST_LOG: the file's level stands.
		assert.equal(load({ RUST_LOG: "h2=trace" }).log.level, "error");
		// An unreadable RUST_LOG directive is skipped with a warning, not an error.
		const warnings: string[] = [];
		assert.equal(load({ RUST_LOG: "moq_relay=loud,info" }, [], FILE, (line) => warnings.push(line)).log.level, "info");
		assert.match(warnings.join("\n"), /RUST_LOG: ignoring "moq_relay=loud"/);
		// MOQ_LOG_LEVEL > MOQ_LOG > RUST_LOG > file; the flag over all of them.
		assert.equal(load({ MOQ_LOG: "trace", RUST_LOG: "debug" }).log.level, "trace");
		assert.equal(load({ MOQ_LOG_LEVEL: "warn", MOQ_LOG: "trace", RUST_LOG: "debug" }).log.level, "warn");
		assert.equal(load({ MOQ_LOG: "trace", RUST_LOG: "debug" }, ["--log-level", "info"]).log.level, "info");
	});

	test("unknown MOQ_* variables warn (once per process), never fail", () => {
		const warnings: string[] = [];
		const env = {
			MOQ_CLIENT_BIND: "[::]:0",
			MOQ_AUTH_API: "https://auth.example",
			MOQ_STATS_ENABLED: "true",
			MOQ_LIMITS_MAX_SESIONS: "5",
			MOQ_FANOUT_DEBUG: "0",
			MOQ_CLUSTER_NODE: "https://me.relay.example",
		};
		const config = load(env, [], FILE, (line) => warnings.push(line));
		assert.equal(config.limits.maxSessions, 10);
		assert.equal(warnings.length, 4, warnings.join("\n"));
		assert.match(
			warnings.join("\n"),
			/MOQ_AUTH_API: moq-relay option not supported by moq-fanout, ignored: use MOQ_AUTH_KEY/,
		);
		assert.match(warnings.join("\n"), /MOQ_LIMITS_MAX_SESIONS: not a moq-fanout setting; ignored/);
		assert.match(warnings.join("\n"), /MOQ_STATS_ENABLED: .*Prometheus/);
		// MOQ_CLUSTER_NODE is accepted and checked, as [cluster] node is.
		assert.match(envError({ MOQ_CLUSTER_NODE: "ftp://x" }).message, /MOQ_CLUSTER_NODE: expected an https/);
	});
});

describe("config: environment through the real binary", () => {
	const node = process.execPath;
	const run = async (env: Record<string, string>, args: string[] = []) => {
		const clean = Object.fromEntries(
			Object.entries(process.env).filter(([k]) => !k.startsWith("MOQ_") && k !== "RUST_LOG"),
		);
		try {
			const { stdout, stderr } = await exec(node, ["src/bin/moq-fanout.ts", ...args], {
				cwd: REPO,
				env: { ...clean, ...env },
				encoding: "utf8",
				timeout: 20_000,
			});
			return { code: 0, stdout, stderr };
		} catch (err) {
			const e = err as { code: number; stdout: string; stderr: string };
			return { code: e.code, stdout: e.stdout, stderr: e.stderr };
		}
	};

	test("bad values exit 2 with one line naming the variable", { timeout: 60_000 }, async () => {
		const cases: [Record<string, string>, RegExp][] = [
			[
				{ MOQ_LIMITS_MAX_SESSIONS: "lots" },
				/^moq-fanout: environment: MOQ_LIMITS_MAX_SESSIONS: expected a positive integer from 1 to 10000000, got "lots"$/,
			],
			[{ MOQ_CACHE_TRACK_BYTES: "huge" }, /^moq-fanout: environment: MOQ_CACHE_TRACK_BYTES: expected a size/],
			[{ MOQ_SERVER_BIND: "nowhere" }, /^moq-fanout: environment: MOQ_SERVER_BIND: expected "host:port"/],
			[{ MOQ_LOG: "moq_relay=loud" }, /^moq-fanout: environment: MOQ_LOG: expected a level/],
			[{ MOQ_AUTH_KEY: "absent.jwk" }, /^moq-fanout: environment: MOQ_AUTH_KEY: file not found/],
		];
		for (const [env, pattern] of cases) {
			const result = await run(env);
			assert.equal(result.code, 2, `${JSON.stringify(env)}: ${result.stderr}`);
			const lines = result.stderr.trim().split("\n");
			assert.equal(lines.length, 1, result.stderr);
			assert.match(lines[0], pattern);
		}
		// --help does not load the config.
		const help = await run({ MOQ_LIMITS_MAX_SESSIONS: "lots" }, ["--help"]);
		assert.equal(help.code, 0);
	});

	test("a running relay: flag > environment > file, unknown MOQ_* warned once", { timeout: 60_000 }, async () => {
		// The file has no [auth]: MOQ_AUTH_KEY supplies it (without it the relay refuses to start).
		const config = join(dir, "running.toml");
		writeFileSync(config, '[server]\nbind = "127.0.0.1:1"\ntls.generate = ["localhost"]\n');
		const key = join(dir, "running.jwk");
		await exec(process.execPath, ["src/bin/moq-token.ts", "generate", "--key", key], { cwd: REPO });
		const relay = await startRelayProcess([config], {
			MOQ_AUTH_KEY: key,
			// Loses to startRelayProcess's --bind flag; the file's 127.0.0.1:1 loses to both.
			MOQ_SERVER_BIND: "127.0.0.1:2",
			MOQ_SOMETHING_ELSE: "1",
		});
		try {
			assert.equal((await fetch(`${relay.base}/health`)).ok, true);
			await new Promise((r) => setTimeout(r, 200));
			const stderr = relay.stderr.join("");
			assert.equal(stderr.split("MOQ_SOMETHING_ELSE: not a moq-fanout setting").length - 1, 1, stderr);
		} finally {
			await relay.stop();
		}
	});
});
