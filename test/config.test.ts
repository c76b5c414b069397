import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { ConfigError, loadConfig, parseArgs, parseConfig } from "../src/config/load.ts";
import type { RelayConfig } from "../src/config/types.ts";
import { parseDuration, parseSize } from "../src/config/units.ts";

const dir = mkdtempSync(join(tmpdir(), "moq-fanout-config-"));
after(() => rmSync(dir, { recursive: true, force: true }));
for (const file of ["cert.pem", "key.pem", "cert2.pem", "key2.pem", "root.jwk", "cluster.jwk"]) {
	writeFileSync(join(dir, file), "placeholder\n");
}
mkdirSync(join(dir, "keys"));

/** Write a config file into the temp dir and load it. */
function load(name: string, text: string, args: string[] = []): RelayConfig {
	const path = join(dir, name);
	writeFileSync(path, text);
	return loadConfig(path, parseArgs(args).overrides);
}

/** Assert that loading fails with a ConfigError naming `key` and the file, and matching `pattern`. */
function rejects(text: string, key: string, pattern: RegExp): ConfigError {
	const name = "relay.toml";
	const path = join(dir, name);
	writeFileSync(path, text);
	let caught: unknown;
	try {
		loadConfig(path);
	} catch (err) {
		caught = err;
	}
	assert.ok(caught instanceof ConfigError, `expected a ConfigError for ${JSON.stringify(text)}, got ${caught}`);
	assert.equal(caught.key, key, caught.message);
	assert.ok(caught.message.startsWith(path), `message names the file: ${caught.message}`);
	assert.match(caught.message, pattern);
	return caught;
}

const PUBLIC = '[auth]\npublic = ""\n';
const GENERATE = '[server]\ntls.generate = ["localhost"]\n';

describe("config: defaults", () => {
	test("no file gives the embedded development config", () => {
		const config = loadConfig(null);
		assert.deepEqual(config, {
			source: "<default>",
			server: {
				bind: { host: "::", port: 4443 },
				quic: {
					retry: "auto",
					retryThreshold: 64,
					maxHandshakes: 1024,
					maxHandshakesPerIp: 32,
					maxConnections: 10_000,
					gso: true,
					recvBatch: true,
					udpRecvBuffer: 4 * 2 ** 20,
					udpSendBuffer: 4 * 2 ** 20,
					fanoutWrites: true,
					engineReads: true,
					engine: "auto",
				},
				drainTimeoutMs: 30_000,
			},
			tls: { cert: [], key: [], generate: ["localhost", "127.0.0.1"] },
			web: { http: { host: "::", port: 4443 }, https: null },
			internal: { listen: null },
			auth: { key: null, keyDir: null, public: ["anon"] },
			log: { level: "info", format: "text" },
			cache: { trackBytes: 8 * 2 ** 20, totalBytes: 2 ** 30, maxAgeMs: 30_000 },
			limits: {
				maxFrameBytes: 4 * 2 ** 20,
				maxMessageBytes: 64 * 2 ** 10,
				maxSessions: 10_000,
				maxSubscriptions: 1024,
				maxAnnounceRequests: 64,
				maxPathSegments: 32,
				maxTcpConnections: 20_000,
				maxConnectionsPerIp: 1000,
				handshakeRatePerIp: 200,
				maxBroadcastsPerSession: 1024,
				httpHeaderTimeoutMs: 10_000,
				idleTimeoutMs: 60_000,
			},
			workers: { count: availableParallelism(), reusePort: true, mallocTrimMs: 30_000 },
			cluster: null,
			client: { tls: { disableVerify: false, root: [] } },
		});
	});

	test("a minimal file gets production defaults: port 443, HTTP on the same port", () => {
		const config = parseConfig(GENERATE + PUBLIC, "min.toml");
		assert.deepEqual(config.server.bind, { host: "::", port: 443 });
		assert.deepEqual(config.web.http, { host: "::", port: 443 });
		assert.deepEqual(config.auth.public, [""]);
		assert.equal(config.source, "min.toml");
	});
});

describe("config: valid files", () => {
	test("moq-relay style (demo/relay/*.toml keys) parses to the expected RelayConfig", () => {
		const config = load(
			"moq-relay.toml",
			`
[log]
level = "DEBUG"

[server]
listen = "127.0.0.1:4443"
tls.cert = ["cert.pem", "cert2.pem"]
tls.key = ["key.pem", "key2.pem"]

[web.http]
listen = "[::1]:8080"
[web]
ws = true

[auth]
key = "root.jwk"
public = ["anon", "/demo/"]

[cluster]
connect = ["https://root.example:4443/", "leaf.example:4443"]
node = "https://leaf0.example/"
token = "cluster.jwk"

[cache]
capacity = "2GiB"
duration = "10s"
`,
		);
		const root = {
			url: "https://root.example:4443/",
			key: "https://root.example:4443/",
			jwt: null,
			cost: null,
			version: null,
		};
		const leaf = {
			url: "https://leaf.example:4443/",
			key: "https://leaf.example:4443/",
			jwt: null,
			cost: null,
			version: null,
		};
		assert.deepEqual(config, {
			source: join(dir, "moq-relay.toml"),
			server: {
				bind: { host: "127.0.0.1", port: 4443 },
				quic: {
					retry: "auto",
					retryThreshold: 64,
					maxHandshakes: 1024,
					maxHandshakesPerIp: 32,
					maxConnections: 10_000,
					gso: true,
					recvBatch: true,
					udpRecvBuffer: 4 * 2 ** 20,
					udpSendBuffer: 4 * 2 ** 20,
					fanoutWrites: true,
					engineReads: true,
					engine: "auto",
				},
				drainTimeoutMs: 30_000,
			},
			tls: {
				cert: [join(dir, "cert.pem"), join(dir, "cert2.pem")],
				key: [join(dir, "key.pem"), join(dir, "key2.pem")],
				generate: [],
			},
			web: { http: { host: "::1", port: 8080 }, https: null },
			internal: { listen: null },
			auth: { key: join(dir, "root.jwk"), keyDir: null, public: ["anon", "demo"] },
			log: { level: "debug", format: "text" },
			cache: { trackBytes: 8 * 2 ** 20, totalBytes: 2 * 2 ** 30, maxAgeMs: 10_000 },
			limits: {
				maxFrameBytes: 4 * 2 ** 20,
				maxMessageBytes: 64 * 2 ** 10,
				maxSessions: 10_000,
				maxSubscriptions: 1024,
				maxAnnounceRequests: 64,
				maxPathSegments: 32,
				maxTcpConnections: 20_000,
				maxConnectionsPerIp: 1000,
				handshakeRatePerIp: 200,
				maxBroadcastsPerSession: 1024,
				httpHeaderTimeoutMs: 10_000,
				idleTimeoutMs: 60_000,
			},
			workers: { count: availableParallelism(), reusePort: true, mallocTrimMs: 30_000 },
			cluster: {
				dial: [root, leaf],
				connect: [root, leaf],
				nodes: [],
				node: "https://leaf0.example/",
				nodeKey: "https://leaf0.example/",
				token: join(dir, "cluster.jwk"),
				id: null,
				mesh: false,
				prefix: ".internal/origins",
				lingerMs: 5000,
				peerIdleTimeoutMs: 5000,
				tier: null,
				parents: [],
			},
			client: { tls: { disableVerify: false, root: [] } },
		});
	});

	test("alias style (top-level [tls], [server] bind, [cluster] nodes) and every moq-fanout key", () => {
		const config = load(
			"alias.toml",
			`
[server]
bind = "0.0.0.0:443"

[tls]
cert = "cert.pem"
key = "key.pem"
generate = "relay.local"

[web.http]
listen = false

[auth]
key_dir = "keys"

[log]
level = "warn"
format = "json"

[cache]
track_bytes = "16MiB"
total_bytes = 500000000
max_age = "1m30s"

[limits]
max_frame_bytes = "1MB"
max_message_bytes = 4096
max_sessions = 500
max_subscriptions = 64
max_announce_requests = 8
max_path_segments = 16

[workers]
count = 3

[cluster]
nodes = ["https://a.example/", "https://b.example:8443/", "https://c.example/"]
node = "https://b.example:8443/"
root = "a.example"
`,
		);
		assert.deepEqual(config.server.bind, { host: "0.0.0.0", port: 443 });
		assert.deepEqual(config.tls, {
			cert: [join(dir, "cert.pem")],
			key: [join(dir, "key.pem")],
			generate: ["relay.local"],
		});
		assert.equal(config.web.http, null);
		assert.deepEqual(config.auth, { key: null, keyDir: join(dir, "keys"), public: null });
		assert.deepEqual(config.log, { level: "warn", format: "json" });
		assert.deepEqual(config.cache, { trackBytes: 16 * 2 ** 20, totalBytes: 500_000_000, maxAgeMs: 90_000 });
		assert.deepEqual(config.limits, {
			maxFrameBytes: 1_000_000,
			maxMessageBytes: 4096,
			maxSessions: 500,
			maxSubscriptions: 64,
			maxAnnounceRequests: 8,
			maxPathSegments: 16,
			maxTcpConnections: 20_000,
			maxConnectionsPerIp: 1000,
			handshakeRatePerIp: 200,
			maxBroadcastsPerSession: 1024,
			httpHeaderTimeoutMs: 10_000,
			idleTimeoutMs: 60_000,
		});
		assert.equal(config.workers.count, 3);
		// nodes skips this relay's own entry; of the others it dials only the larger URL (c), while
		// a dials in. root is always dialed, and a.example is the same relay as the first node.
		assert.deepEqual(
			config.cluster?.nodes.map((peer) => peer.url),
			["https://a.example/", "https://c.example/"],
		);
		assert.deepEqual(
			config.cluster?.dial.map((peer) => peer.url),
			["https://a.example/", "https://c.example/"],
		);
		assert.deepEqual(
			config.cluster?.connect.map((peer) => peer.url),
			["https://a.example/"],
		);
	});

	test("workers.count = 0 means one per available core", () => {
		const config = parseConfig(`${GENERATE}${PUBLIC}[workers]\ncount = 0\n`, "w.toml");
		assert.equal(config.workers.count, availableParallelism());
	});

	test("relative paths resolve against the config file's directory, not the working directory", () => {
		const nested = join(dir, "etc");
		mkdirSync(nested, { recursive: true });
		writeFileSync(join(nested, "local.pem"), "x");
		writeFileSync(join(nested, "local.key"), "x");
		const config = load("etc/relay.toml", '[tls]\ncert = "local.pem"\nkey = "local.key"\n[auth]\npublic = "anon"\n');
		assert.deepEqual(config.tls.cert, [join(nested, "local.pem")]);
		assert.deepEqual(config.tls.key, [join(nested, "local.key")]);
	});
});

describe("config: [internal] listen", () => {
	test("a listen address, from the file, the flag and the environment's name", () => {
		const config = load("internal.toml", `${GENERATE}${PUBLIC}[internal]\nlisten = "127.0.0.1:9101"\n`);
		assert.deepEqual(config.internal, { listen: { host: "127.0.0.1", port: 9101 } });
		const flagged = load("internal-flag.toml", `${GENERATE}${PUBLIC}`, ["--internal-listen", "[::1]:9102"]);
		assert.deepEqual(flagged.internal, { listen: { host: "::1", port: 9102 } });
		assert.deepEqual(load("internal-none.toml", `${GENERATE}${PUBLIC}`).internal, { listen: null });
	});

	test("a bad address or an unknown key is refused with its name", () => {
		rejects(`${GENERATE}${PUBLIC}[internal]\nlisten = "nope"\n`, "internal.listen", /internal/);
		rejects(`${GENERATE}${PUBLIC}[internal]\nbind = "127.0.0.1:1"\n`, "internal.bind", /unknown key/);
	});
});

describe("config: errors name the key and the file", () => {
	test("unknown top-level table", () => {
		const err = rejects(
			`${GENERATE}${PUBLIC}[relay]\nport = 1\n`,
			"relay",
			/\[relay\]: unknown table; expected one of: server, tls/,
		);
		assert.doesNotMatch(err.message, /stats|iroh/, "unsupported moq-relay tables are not offered as choices");
	});

	test("unknown nested key", () => {
		rejects(
			`${GENERATE}${PUBLIC}[cache]\ntrack_size = 5\n`,
			"cache.track_size",
			/\[cache\] track_size: unknown key; expected one of: total_bytes/,
		);
		rejects(
			`${PUBLIC}[server.tls]\ngenerate = ["x"]\ncerts = []\n`,
			"server.tls.certs",
			/\[server\.tls\] certs: unknown key/,
		);
		rejects(`${PUBLIC}${GENERATE}[web.http]\nport = 80\n`, "web.http.port", /\[web\.http\] port: unknown key/);
	});

	test("unknown top-level key", () => {
		rejects(`bind = "[::]:443"\n${GENERATE}${PUBLIC}`, "bind", /bind: unknown key/);
	});

	test("moq-relay options moq-fanout does not implement say so", () => {
		rejects(`${GENERATE}${PUBLIC}[stats]\nenabled = true\n`, "stats", /moq-relay option not supported/);
		rejects(`${GENERATE}${PUBLIC}[web.https]\nlisten = "[::]:443"\ncert = "x.pem"\n`, "web.https.cert", /unknown/i);
		rejects(`${PUBLIC}[server]\ntls.generate = ["x"]\ntls.root = ["ca.pem"]\n`, "server.tls.root", /mTLS/);
		rejects(
			`${GENERATE}[auth.public]\nsubscribe = ["anon"]\npublish = ["anon"]\n`,
			"auth.public",
			/subscribe\/publish/,
		);
	});

	test("wrong types", () => {
		rejects(
			`${GENERATE}${PUBLIC}[log]\nlevel = 3\n`,
			"log.level",
			/expected one of trace, debug, info, warn, error, got 3/,
		);
		rejects(`${GENERATE}${PUBLIC}[log]\nlevel = "verbose"\n`, "log.level", /got "verbose"/);
		rejects(`${PUBLIC}[server]\nbind = 4443\ntls.generate = ["x"]\n`, "server.bind", /expected "host:port"/);
		rejects(`${PUBLIC}[server]\ntls = "yes"\n`, "server.tls", /expected a table, got "yes"/);
		rejects(`${GENERATE}[auth]\npublic = 1\n`, "auth.public", /expected a string or an array of strings, got 1/);
		rejects(`${GENERATE}${PUBLIC}[workers]\ncount = "four"\n`, "workers.count", /expected a non-negative integer/);
		rejects(`${GENERATE}${PUBLIC}[limits]\nmax_sessions = 1.5\n`, "limits.max_sessions", /positive integer.*got 1\.5/);
		rejects(`${GENERATE}${PUBLIC}[cluster]\nconnect = "ftp://x/"\n`, "cluster.connect", /https:\/\/ or http:\/\//);
		// The socket buffers: a size, from a page to 1 GiB (setsockopt takes a C int).
		const buffers = load(
			"buffers.toml",
			`${GENERATE}${PUBLIC}[server.quic]\nudp_recv_buffer = "16MiB"\nudp_send_buffer = 65536\n`,
		);
		assert.equal(buffers.server.quic.udpRecvBuffer, 16 * 2 ** 20);
		assert.equal(buffers.server.quic.udpSendBuffer, 65536);
		rejects(
			`${GENERATE}${PUBLIC}[server.quic]\nudp_recv_buffer = "2GiB"\n`,
			"server.quic.udp_recv_buffer",
			/from 4096 to 1073741824 bytes/,
		);
		rejects(
			`${GENERATE}${PUBLIC}[server.quic]\nudp_send_buffer = 100\n`,
			"server.quic.udp_send_buffer",
			/from 4096 to/,
		);
		rejects(
			`${GENERATE}${PUBLIC}[server.quic]\nudp_recv_buffer = "lots"\n`,
			"server.quic.udp_recv_buffer",
			/expected a size/,
		);
		rejects(`${PUBLIC}[server]\ntls.generate = ["not a host"]\n`, "server.tls.generate", /host names or IP addresses/);
	});

	test("bad sizes and durations", () => {
		const err = rejects(
			`${GENERATE}${PUBLIC}[cache]\ntrack_bytes = -3\n`,
			"cache.track_bytes",
			/\[cache\] track_bytes: expected a size like "8MiB" or a positive integer, got -3$/,
		);
		assert.equal(
			err.message,
			`${join(dir, "relay.toml")}: [cache] track_bytes: expected a size like "8MiB" or a positive integer, got -3`,
		);
		rejects(`${GENERATE}${PUBLIC}[cache]\ntotal_bytes = "8 parsecs"\n`, "cache.total_bytes", /got "8 parsecs"/);
		rejects(`${GENERATE}${PUBLIC}[cache]\ncapacity = "75%"\n`, "cache.capacity", /percentages/);
		rejects(
			`${GENERATE}${PUBLIC}[cache]\nmax_age = "30 fortnights"\n`,
			"cache.max_age",
			/expected a duration like "30s"/,
		);
		rejects(`${GENERATE}${PUBLIC}[cache]\nmax_age = 30\nduration = "30s"\n`, "cache.duration", /alias of max_age/);
	});

	test("negative and zero counts", () => {
		rejects(
			`${GENERATE}${PUBLIC}[cache]\nmax_age = -1\n`,
			"cache.max_age",
			/non-negative integer of milliseconds, got -1/,
		);
		rejects(`${GENERATE}${PUBLIC}[workers]\ncount = -2\n`, "workers.count", /got -2/);
		rejects(`${GENERATE}${PUBLIC}[limits]\nmax_subscriptions = 0\n`, "limits.max_subscriptions", /positive integer/);
		rejects(
			`${GENERATE}${PUBLIC}[limits]\nmax_path_segments = 33\n`,
			"limits.max_path_segments",
			/from 1 to 32, got 33/,
		);
	});

	test("cross-key limits", () => {
		rejects(`${GENERATE}${PUBLIC}[cache]\ntrack_bytes = "2GiB"\n`, "cache.track_bytes", /exceeds total_bytes/);
		rejects(`${GENERATE}${PUBLIC}[limits]\nmax_frame_bytes = "16MiB"\n`, "limits.max_frame_bytes", /must fit/);
	});

	test("missing files", () => {
		rejects(
			`${PUBLIC}[server.tls]\ncert = "nope.pem"\nkey = "key.pem"\n`,
			"server.tls.cert",
			/file not found: .*nope\.pem/,
		);
		rejects(`${PUBLIC}[tls]\ncert = "cert.pem"\nkey = "nope.key"\n`, "tls.key", /file not found: .*nope\.key/);
		rejects(`${GENERATE}[auth]\nkey = "missing.jwk"\n`, "auth.key", /file not found: .*missing\.jwk/);
		rejects(`${GENERATE}[auth]\nkey_dir = "no-such-dir"\n`, "auth.key_dir", /directory not found/);
		rejects(`${GENERATE}[auth]\nkey_dir = "root.jwk"\n`, "auth.key_dir", /not a directory/);
		rejects(`${GENERATE}${PUBLIC}[cluster]\ntoken = "gone.jwk"\n`, "cluster.token", /file not found/);
	});

	test("cert and key lists must pair up", () => {
		rejects(
			`${PUBLIC}[server.tls]\ncert = ["cert.pem", "cert2.pem"]\nkey = ["key.pem"]\n`,
			"server.tls",
			/\[server\.tls\]: cert lists 2 file\(s\) but key lists 1/,
		);
		rejects(`${PUBLIC}[tls]\nkey = ["key.pem"]\n`, "tls", /\[tls\]: cert lists 0 file\(s\) but key lists 1/);
	});

	test("no certificate source", () => {
		rejects(PUBLIC, "server.tls", /no certificate: set cert and key/);
	});

	test("[tls] and [server.tls] may not both set the same key", () => {
		rejects(
			`${PUBLIC}[server.tls]\ngenerate = ["a"]\n[tls]\ngenerate = ["b"]\n`,
			"tls.generate",
			/already set by server\.tls\.generate/,
		);
	});

	test("[auth] key and key_dir are one or the other", () => {
		rejects(
			`${GENERATE}[auth]\nkey = "root.jwk"\nkey_dir = "keys"\n`,
			"auth.key_dir",
			/\[auth\] key_dir: cannot be combined with \[auth\] key/,
		);
	});

	test("[server] drain_timeout is a duration (0 = close at once)", () => {
		assert.equal(parseConfig(`${GENERATE}${PUBLIC}`, "t.toml").server.drainTimeoutMs, 30_000);
		const five = parseConfig(`[server]\ndrain_timeout = "5s"\ntls.generate = ["localhost"]\n${PUBLIC}`, "t.toml");
		assert.equal(five.server.drainTimeoutMs, 5000);
		const zero = parseConfig(`[server]\ndrain_timeout = 0\ntls.generate = ["localhost"]\n${PUBLIC}`, "t.toml");
		assert.equal(zero.server.drainTimeoutMs, 0);
		rejects(`[server]\ndrain_timeout = "soon"\ntls.generate = ["localhost"]\n${PUBLIC}`, "server.drain_timeout", /./);
	});

	test("no way to authenticate (moq-relay refuses to start too)", () => {
		rejects(GENERATE, "auth", /\[auth\]: no key, key_dir or public path configured/);
		rejects(`${GENERATE}[auth]\npublic = []\n`, "auth", /no key, key_dir or public/);
	});

	test("TOML syntax errors name the file and line", () => {
		const path = join(dir, "broken.toml");
		writeFileSync(path, `${GENERATE}${PUBLIC}\n[cache\ntrack_bytes = 1\n`);
		assert.throws(
			() => loadConfig(path),
			(err: unknown) =>
				err instanceof ConfigError && err.message.startsWith(`${path}:6:`) && /TOML syntax error/.test(err.message),
		);
	});

	test("a missing config file", () => {
		assert.throws(() => loadConfig(join(dir, "absent.toml")), /absent\.toml: config file not found/);
	});
});

describe("config: command line", () => {
	test("positional and --config forms both name the file", () => {
		assert.equal(parseArgs(["relay.toml"]).configPath, "relay.toml");
		assert.equal(parseArgs(["--config", "relay.toml"]).configPath, "relay.toml");
		assert.equal(parseArgs(["--config=relay.toml"]).configPath, "relay.toml");
		assert.equal(parseArgs(["-c", "relay.toml"]).configPath, "relay.toml");
		assert.equal(parseArgs([]).configPath, null);
		assert.throws(() => parseArgs(["a.toml", "b.toml"]), /only one config file/);
	});

	test("--help and --version", () => {
		assert.equal(parseArgs(["--help"]).help, true);
		assert.equal(parseArgs(["-h"]).help, true);
		assert.equal(parseArgs(["--version"]).version, true);
		assert.equal(parseArgs(["-V"]).version, true);
		assert.equal(parseArgs(["relay.toml"]).help, false);
	});

	test("flags override the file; the rest of the file stays", () => {
		const config = load(
			"override.toml",
			`[server]\nbind = "[::]:443"\ntls.generate = ["file.example"]\n[auth]\nkey = "root.jwk"\n[log]\nlevel = "error"\n[workers]\ncount = 8\n`,
			[
				"--bind",
				"127.0.0.1:7443",
				"--workers=2",
				"--log-level",
				"debug",
				"--auth-public",
				"anon",
				"--auth-public=/demo/",
				"--tls-generate",
				"localhost,127.0.0.1",
			],
		);
		assert.deepEqual(config.server.bind, { host: "127.0.0.1", port: 7443 });
		assert.deepEqual(config.web.http, { host: "127.0.0.1", port: 7443 }, "HTTP follows the overridden bind");
		assert.equal(config.workers.count, 2);
		assert.equal(config.log.level, "debug");
		assert.deepEqual(config.auth.public, ["anon", "demo"]);
		assert.equal(config.auth.key, join(dir, "root.jwk"));
		assert.deepEqual(config.tls.generate, ["localhost", "127.0.0.1"]);
	});

	test("flags can satisfy a rule the file alone breaks", () => {
		const config = load("incomplete.toml", '[server]\nbind = "[::]:443"\n', [
			"--tls-generate=localhost",
			"--auth-public=",
		]);
		assert.deepEqual(config.tls.generate, ["localhost"]);
		assert.deepEqual(config.auth.public, [""]);
	});

	test("flags apply over the development default too", () => {
		const config = loadConfig(null, parseArgs(["--listen", "[::1]:9000", "--web-http-listen", "off"]).overrides);
		assert.deepEqual(config.server.bind, { host: "::1", port: 9000 });
		assert.equal(config.web.http, null);
		assert.deepEqual(config.tls.generate, ["localhost", "127.0.0.1"]);
	});

	test("errors name the flag", () => {
		const check = (argv: string[], flag: string, pattern: RegExp) =>
			assert.throws(
				() => parseArgs(argv),
				(err: unknown) =>
					err instanceof ConfigError &&
					err.source === "command line" &&
					err.key === flag &&
					err.message.startsWith(`command line: ${flag}: `) &&
					pattern.test(err.message),
			);
		check(["--frobnicate"], "--frobnicate", /unknown option/);
		check(["--bind"], "--bind", /needs a value/);
		check(["--bind", "--workers", "2"], "--bind", /needs a value/);
		check(["--bind", "localhost"], "--bind", /port is missing/);
		check(["--workers", "many"], "--workers", /non-negative integer/);
		check(["--log-level=loud"], "--log-level", /expected one of/);
		check(["--tls-generate", "ok,not valid"], "--tls-generate", /host names or IP addresses/);
		check(["--server-bind=x"], "--server-bind", /expected "host:port"/);
	});

	test("a missing file given by flag is named by the flag", () => {
		assert.throws(
			() => loadConfig(null, parseArgs(["--auth-key", join(dir, "nope.jwk")]).overrides),
			(err: unknown) =>
				err instanceof ConfigError && err.message.startsWith("command line: --auth-key: file not found"),
		);
	});
});

describe("config: units", () => {
	test("sizes", () => {
		assert.equal(parseSize(1500), 1500);
		assert.equal(parseSize("8MiB"), 8 * 2 ** 20);
		assert.equal(parseSize("8 mib"), 8 * 2 ** 20);
		assert.equal(parseSize("64MB"), 64_000_000);
		assert.equal(parseSize("1.5GiB"), 1.5 * 2 ** 30);
		assert.equal(parseSize("512KiB"), 512 * 1024);
		assert.equal(parseSize("10kB"), 10_000);
		assert.equal(parseSize("100B"), 100);
		assert.equal(parseSize("100"), 100);
		for (const bad of [0, -1, 1.5, "", "MiB", "8 XB", "-8MiB", "75%", true, [1]]) {
			assert.throws(() => parseSize(bad), /expected a size/, String(bad));
		}
	});

	test("durations", () => {
		assert.equal(parseDuration(250), 250);
		assert.equal(parseDuration(0), 0);
		assert.equal(parseDuration("0"), 0);
		assert.equal(parseDuration("30s"), 30_000);
		assert.equal(parseDuration("500ms"), 500);
		assert.equal(parseDuration("1m30s"), 90_000);
		assert.equal(parseDuration("2h"), 7_200_000);
		assert.equal(parseDuration("1.5s"), 1500);
		assert.equal(parseDuration("1 min"), 60_000);
		for (const bad of [-1, 1.5, "30", "s", "30 parsecs", "30s junk", "", false]) {
			assert.throws(() => parseDuration(bad), /expected a duration/, String(bad));
		}
	});
});

describe("config: relay.toml.example", () => {
	test("loads as shipped and documents every key", () => {
		const example = new URL("../relay.toml.example", import.meta.url).pathname;
		const config = loadConfig(example);
		assert.deepEqual(config.server.bind, { host: "::", port: 4443 });
		assert.deepEqual(config.tls.generate, ["localhost", "127.0.0.1"]);
		assert.deepEqual(config.auth.public, ["anon"]);
		const text = readFileSync(example, "utf8");
		for (const key of [
			"bind",
			"drain_timeout",
			"cert",
			"key",
			"generate",
			"listen",
			"key_dir",
			"public",
			"level",
			"format",
			"track_bytes",
			"total_bytes",
			"max_age",
			"max_frame_bytes",
			"max_message_bytes",
			"max_sessions",
			"max_subscriptions",
			"max_announce_requests",
			"max_path_segments",
			"udp_recv_buffer",
			"udp_send_buffer",
			"count",
			"connect",
			"token",
			"nodes",
			"node",
			"id",
			"mesh",
			"prefix",
			"linger",
			"peer_idle_timeout",
			"tier",
			"parents",
			"root",
			"disable_verify",
		]) {
			assert.match(text, new RegExp(`^#? ?${key} = `, "m"), key);
		}
	});
});
