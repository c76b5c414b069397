/**
 * The configuration layer for clustering (issue 12): `[cluster]` and `[client.tls]` parse into
 * RelayConfig.cluster / .client, the deployment guides' `[cluster]` snippet gives one clear
 * error (and works once `node` is set), peer URLs keep `?jwt=` apart, `nodes` skips this relay's
 * own entry, and `shouldDial` makes exactly one side of every pair dial. Every bad value is a
 * ConfigError naming the key and the file, and exits the real binary with status 2.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import { canonicalClusterUrl, parseClusterPeer, shouldDial } from "../src/config/cluster-urls.ts";
import { DEFAULT_CLUSTER } from "../src/config/defaults.ts";
import { ConfigError, type Env, loadConfig, parseArgs } from "../src/config/load.ts";
import type { ClusterConfig, RelayConfig } from "../src/config/types.ts";

const exec = promisify(execFile);
const REPO = resolve(import.meta.dirname, "..");
const dir = mkdtempSync(join(tmpdir(), "moq-fanout-cluster-config-"));
after(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, "cluster.jwt"), "eyJhbGciOiJIUzI1NiJ9.e30.placeholder\n");
writeFileSync(join(dir, "not-a-cert.pem"), "hello\n");
const CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
writeFileSync(join(dir, "ca.pem"), CA_PEM);
writeFileSync(join(dir, "ca2.pem"), CA_PEM);

const BASE = '[server]\ntls.generate = ["localhost"]\n[auth]\npublic = ""\n';

/**
 * The deployment guide's clustering snippet (shared/guides/000_f7a482a2ed088e09.txt, "## Clustering"),
 * copied exactly.
 */
const GUIDE_CLUSTER = `# relay.toml
[cluster]
nodes = [
  "https://us-east.relay.example.com",
  "https://eu-west.relay.example.com",
  "https://ap-south.relay.example.com"
]
`;
const GUIDE_NODES = [
	"https://us-east.relay.example.com/",
	"https://eu-west.relay.example.com/",
	"https://ap-south.relay.example.com/",
];

let files = 0;

/** Write a config file and load it (with `env` as the environment and `args` as flags). */
function load(text: string, args: string[] = [], env: Env = {}): RelayConfig {
	const path = join(dir, `relay-${files++}.toml`);
	writeFileSync(path, text);
	return loadConfig(path, parseArgs(args).overrides, { env, warn: () => {} });
}

/** load(...).cluster, which must be set. */
function cluster(text: string, args: string[] = [], env: Env = {}): ClusterConfig {
	const config = load(text, args, env).cluster;
	assert.ok(config, "cluster is configured");
	return config;
}

/** Loading fails with a ConfigError naming `key` and the file (or the variable), matching `pattern`. */
function rejects(text: string, key: string, pattern: RegExp, env: Env = {}): ConfigError {
	const path = join(dir, "rejected.toml");
	writeFileSync(path, text);
	let caught: unknown;
	try {
		loadConfig(path, parseArgs([]).overrides, { env, warn: () => {} });
	} catch (err) {
		caught = err;
	}
	assert.ok(caught instanceof ConfigError, `expected a ConfigError for ${JSON.stringify(text)}, got ${caught}`);
	assert.equal(caught.key, key, caught.message);
	const source = Object.keys(env).length > 0 ? "environment" : path;
	assert.ok(caught.message.startsWith(`${source}: `), `message names ${source}: ${caught.message}`);
	assert.match(caught.message, pattern);
	return caught;
}

describe("cluster URLs", () => {
	test("peer URLs: full URLs, bare host[:port], ?jwt= and ?cost= kept apart", () => {
		assert.deepEqual(parseClusterPeer("relay.example"), {
			url: "https://relay.example/",
			key: "https://relay.example/",
			jwt: null,
			cost: null,
			version: null,
		});
		assert.deepEqual(parseClusterPeer("relay.example:4443"), {
			url: "https://relay.example:4443/",
			key: "https://relay.example:4443/",
			jwt: null,
			cost: null,
			version: null,
		});
		assert.deepEqual(parseClusterPeer("https://Relay.Example:443/?jwt=abc.def.ghi&cost=7&x=1"), {
			url: "https://relay.example/?x=1",
			key: "https://relay.example/",
			jwt: "abc.def.ghi",
			cost: 7,
			version: null,
		});
		// Our own ?version= pins a link to one moq-lite version, and is not part of the URL either.
		const pinned = parseClusterPeer("http://127.0.0.1:4443/?version=moq-lite-02");
		assert.equal(pinned.version, 2);
		assert.equal(pinned.url, "http://127.0.0.1:4443/");
		// An empty ?jwt= is no token (moq-relay: "an empty ?jwt= counts as absent").
		assert.equal(parseClusterPeer("https://relay.example/?jwt=").jwt, null);
		assert.equal(parseClusterPeer("https://relay.example/?jwt=").url, "https://relay.example/");
		// http:// is moq-relay's development form (certificate hash fetched over plain HTTP).
		assert.equal(parseClusterPeer("http://127.0.0.1:4443").url, "http://127.0.0.1:4443/");
		assert.equal(parseClusterPeer("https://[::1]:4443/").key, "https://[::1]:4443/");
	});

	test("bad peer URLs say why", () => {
		const cases: [unknown, RegExp][] = [
			["ftp://relay.example/", /expected an https:\/\/ or http:\/\/ URL/],
			["tcp://relay.example:4443", /tcp:\/\/ .* not supported by moq-fanout; use https:\/\//],
			["wss://relay.example/", /use https:\/\//],
			["moqt://relay.example/", /raw QUIC/],
			["", /expected a URL like/],
			[42, /expected a URL like/],
			["https://", /expected a URL like/],
			["not a host", /expected a URL like/],
			["https://user:pw@relay.example/", /user name or password/],
			["https://relay.example/#frag", /fragment/],
			["https://relay.example/?cost=cheap", /\?cost= must be a non-negative integer, got "cheap"/],
			["https://relay.example/?cost=-1", /\?cost= must be a non-negative integer/],
			["https://relay.example/?jwt=a&jwt=b", /\?jwt= is given 2 times/],
			[
				"https://relay.example/?version=moq-lite-06",
				/\?version= must be one of moq-lite-02 … moq-lite-05, got "moq-lite-06"/,
			],
			["https://relay.example/?version=3", /\?version= must be one of/],
			["https://relay.example/?version=moq-lite-03&version=moq-lite-02", /\?version= is given 2 times/],
		];
		for (const [value, pattern] of cases) {
			assert.throws(() => parseClusterPeer(value), pattern, String(value));
		}
	});

	test("canonical URLs: one spelling per relay", () => {
		const same = [
			"relay.example",
			"relay.example:443",
			"https://relay.example",
			"HTTPS://RELAY.EXAMPLE:443/",
			"https://relay.example/?jwt=token",
			"https://relay.example/?cost=3&jwt=x",
		];
		for (const spelling of same) assert.equal(canonicalClusterUrl(spelling), "https://relay.example/", spelling);
		assert.equal(canonicalClusterUrl("https://relay.example/edge/"), "https://relay.example/edge");
		assert.equal(canonicalClusterUrl("https://relay.example/edge"), "https://relay.example/edge");
		assert.equal(canonicalClusterUrl("http://relay.example:80/"), "http://relay.example/");
		const different = [
			"https://relay.example/",
			"https://relay.example:4443/",
			"http://relay.example/",
			"https://relay.example/edge",
			"https://other.example/",
		];
		assert.equal(new Set(different.map(canonicalClusterUrl)).size, different.length);
	});

	test("shouldDial: exactly one side of every pair dials; nobody dials itself", () => {
		const spellings = [
			[
				"https://us-east.relay.example.com",
				"US-EAST.relay.example.com:443",
				"https://us-east.relay.example.com/?jwt=t",
			],
			["https://eu-west.relay.example.com/"],
			["https://ap-south.relay.example.com"],
			["https://relay.example:4443/"],
			["relay.example:4444"],
			["http://relay.example:4443/"],
			["https://relay.example/edge/", "https://relay.example/edge"],
			["https://[::1]:4441/"],
			["https://127.0.0.1:4441/"],
			["https://127.0.0.1:4442/"],
		];
		// Random hosts too: the rule is a total order on canonical URLs.
		for (let i = 0; i < 40; i++) {
			const host = Math.random().toString(36).slice(2, 8);
			spellings.push([`https://${host}.example:${4000 + (i % 7)}/`]);
		}
		for (let a = 0; a < spellings.length; a++) {
			for (const x of spellings[a]) {
				for (const y of spellings[a]) assert.equal(shouldDial(x, y), false, `${x} never dials itself (${y})`);
			}
			for (let b = 0; b < spellings.length; b++) {
				if (a === b || canonicalClusterUrl(spellings[a][0]) === canonicalClusterUrl(spellings[b][0])) continue;
				for (const x of spellings[a]) {
					for (const y of spellings[b]) {
						assert.equal(shouldDial(x, y) !== shouldDial(y, x), true, `exactly one of ${x} and ${y} dials`);
						assert.equal(shouldDial(x, y), shouldDial(spellings[a][0], spellings[b][0]), "any spelling");
					}
				}
			}
		}
		// The smaller canonical URL dials (moq-relay: "only dial peers that sort after us").
		assert.equal(shouldDial("https://a.example/", "https://b.example/"), true);
		assert.equal(shouldDial("https://b.example/", "https://a.example/"), false);
	});
});

describe("[cluster]: the deployment guides", () => {
	test("the guide's nodes snippet as written, on a host it does not name: one error that says to set node", () => {
		const err = rejects(BASE + GUIDE_CLUSTER, "cluster.nodes", /none of its entries is this relay .* set node = /);
		assert.match(err.message, /\[cluster\] nodes: /);
		assert.doesNotMatch(err.message, /\n/, "one line");
	});

	test("the guide's nodes snippet as written, on the relay it names: its own entry is found by certificate name and port", () => {
		const mine = (name: string) =>
			`[server]\nlisten = "[::]:443"\ntls.generate = ["${name}"]\n[auth]\npublic = ""\n${GUIDE_CLUSTER}`;
		const east = cluster(mine("us-east.relay.example.com"));
		assert.equal(east.nodeKey, "https://us-east.relay.example.com/");
		assert.deepEqual(
			east.nodes.map((p) => p.key),
			["https://eu-west.relay.example.com/", "https://ap-south.relay.example.com/"],
		);
		// The smaller URL of each pair dials: us-east is the largest, so it dials nobody.
		assert.deepEqual(east.dial, []);
		const south = cluster(mine("ap-south.relay.example.com"));
		assert.deepEqual(
			south.dial.map((p) => p.key),
			["https://us-east.relay.example.com/", "https://eu-west.relay.example.com/"],
		);
		// Another port is another relay: not this one.
		rejects(
			`[server]\nlisten = "[::]:4443"\ntls.generate = ["us-east.relay.example.com"]\n[auth]\npublic = ""\n${GUIDE_CLUSTER}`,
			"cluster.nodes",
			/none of its entries is this relay/,
		);
	});

	test("the guide's snippet plus node: this relay's entry is skipped, and each pair dials once", () => {
		const configs = GUIDE_NODES.map((self, i) => {
			// Each relay may spell its own URL differently from the list.
			const spelled = [self, self.toUpperCase().replace("HTTPS://", "https://"), `${self.slice(0, -1)}:443`][i];
			return cluster(`${BASE}${GUIDE_CLUSTER}node = "${spelled}"\n`);
		});
		for (const [i, config] of configs.entries()) {
			assert.equal(config.nodeKey, GUIDE_NODES[i]);
			assert.deepEqual(
				config.nodes.map((peer) => peer.url),
				GUIDE_NODES.filter((_, j) => j !== i),
				"every other node, this one skipped",
			);
			assert.deepEqual(config.connect, []);
		}
		// Across the three relays, every pair is dialed by exactly one side.
		const edges = configs.flatMap((config) => config.dial.map((peer) => `${config.nodeKey} -> ${peer.key}`));
		assert.deepEqual(edges.sort(), [
			"https://ap-south.relay.example.com/ -> https://eu-west.relay.example.com/",
			"https://ap-south.relay.example.com/ -> https://us-east.relay.example.com/",
			"https://eu-west.relay.example.com/ -> https://us-east.relay.example.com/",
		]);
	});

	test("the guide's snippet with node from the command line or the environment", () => {
		const flagged = cluster(BASE + GUIDE_CLUSTER, ["--cluster-node", "https://eu-west.relay.example.com"]);
		assert.deepEqual(
			flagged.dial.map((peer) => peer.url),
			["https://us-east.relay.example.com/"],
		);
		const env = cluster(BASE + GUIDE_CLUSTER, [], { MOQ_CLUSTER_NODE: "us-east.relay.example.com" });
		assert.deepEqual(env.dial, []);
		assert.equal(env.nodes.length, 2);
	});

	test("the guide's cluster token (moq-token sign ... --cluster > secrets/cluster.jwt) is a path, not read", () => {
		const config = cluster(`${BASE}[cluster]\nconnect = "https://root.example/"\ntoken = "cluster.jwt"\n`);
		assert.equal(config.token, join(dir, "cluster.jwt"));
		// A peer URL may carry its own token (the guide's "?jwt=" on the URL).
		const inline = cluster(`${BASE}[cluster]\nconnect = "https://relay.example.com/?jwt=abc"\n`);
		assert.deepEqual(inline.dial, [
			{ url: "https://relay.example.com/", key: "https://relay.example.com/", jwt: "abc", cost: null, version: null },
		]);
	});
});

describe("[cluster]: every key", () => {
	test("no cluster key anywhere: cluster is null; [client.tls] has defaults", () => {
		const config = load(BASE);
		assert.equal(config.cluster, null);
		assert.deepEqual(config.client, { tls: { disableVerify: false, root: [] } });
		// An empty table sets nothing either.
		assert.equal(load(`${BASE}[cluster]\n[client.tls]\n`).cluster, null);
	});

	test("defaults once any cluster key is set", () => {
		assert.deepEqual(cluster(`${BASE}[cluster]\nlinger = "1s"\n`), {
			dial: [],
			connect: [],
			nodes: [],
			node: null,
			nodeKey: null,
			token: null,
			id: null,
			mesh: false,
			prefix: DEFAULT_CLUSTER.prefix,
			lingerMs: 1000,
			peerIdleTimeoutMs: DEFAULT_CLUSTER.peerIdleTimeoutMs,
			tier: null,
			parents: [],
		});
		assert.equal(DEFAULT_CLUSTER.lingerMs, 5000);
		assert.equal(DEFAULT_CLUSTER.peerIdleTimeoutMs, 5000);
		assert.equal(DEFAULT_CLUSTER.prefix, ".internal/origins");
	});

	test("moq-relay's keys: connect, node, token, id, mesh, linger", () => {
		const config = cluster(`${BASE}[cluster]
connect = ["https://root.example/?jwt=r00t", "leaf.example:4443", "https://self.example/"]
node = "https://self.example"
token = "cluster.jwt"
id = 9007199254740991
mesh = true
linger = "0"
`);
		assert.deepEqual(
			config.connect.map((peer) => [peer.url, peer.jwt]),
			[
				["https://root.example/", "r00t"],
				["https://leaf.example:4443/", null],
			],
			"this relay's own URL is dropped from connect",
		);
		assert.deepEqual(config.dial, config.connect);
		assert.equal(config.node, "https://self.example/");
		assert.equal(config.id, Number.MAX_SAFE_INTEGER);
		assert.equal(config.mesh, true);
		assert.equal(config.lingerMs, 0);
		assert.equal(config.id, 2 ** 53 - 1);
		assert.equal(cluster(`${BASE}[cluster]\nid = 1\n`).id, 1);
		// moq-relay's legacy mesh = "<url>": gossip on, that URL as node.
		const legacy = cluster(`${BASE}[cluster]\nmesh = "https://self.example/"\n`);
		assert.equal(legacy.mesh, true);
		assert.equal(legacy.node, "https://self.example/");
		assert.equal(cluster(`${BASE}[cluster]\nmesh = "self.example"\nnode = "https://self.example/"\n`).mesh, true);
		assert.equal(cluster(`${BASE}[cluster]\nmesh = false\n`).mesh, false);
		// moq-relay keeps mesh as a string: "true" and "false" are the booleans, not URLs.
		assert.equal(cluster(`${BASE}[cluster]\nmesh = "false"\n`).mesh, false);
		assert.equal(cluster(`${BASE}[cluster]\nmesh = "TRUE"\nnode = "me.example"\n`).mesh, true);
		assert.equal(cluster(`${BASE}[cluster]\nmesh = "true"\nnode = "me.example"\n`).node, "https://me.example/");
	});

	test("connect and the seed era's root join; the same relay twice is listed once", () => {
		const config = cluster(
			`${BASE}[cluster]\nroot = "root.example:443"\nconnect = ["https://root.example/", "b.example"]\n`,
		);
		assert.deepEqual(
			config.connect.map((peer) => peer.url),
			["https://root.example/", "https://b.example/"],
		);
	});

	test("prefix (moq-relay 0.10), peer_idle_timeout, tier and parents", () => {
		assert.equal(cluster(`${BASE}[cluster]\nprefix = "internal/origins"\n`).prefix, "internal/origins");
		assert.equal(cluster(`${BASE}[cluster]\nprefix = "/mesh/"\n`).prefix, "mesh");
		assert.equal(cluster(`${BASE}[cluster]\npeer_idle_timeout = "1s"\n`).peerIdleTimeoutMs, 1000);
		assert.equal(cluster(`${BASE}[cluster]\npeer_idle_timeout = "1m"\n`).peerIdleTimeoutMs, 60_000);
		assert.equal(cluster(`${BASE}[cluster]\ntier = "origin"\n`).tier, "origin");
		const edge = cluster(`${BASE}[cluster]
tier = "EDGE"
parents = ["https://mid-1.example/", "mid-2.example:4443"]
connect = "https://mid-1.example"
node = "https://edge-1.example/"
`);
		assert.equal(edge.tier, "edge");
		assert.deepEqual(
			edge.parents.map((peer) => peer.url),
			["https://mid-1.example/", "https://mid-2.example:4443/"],
		);
		assert.deepEqual(
			edge.dial.map((peer) => peer.url),
			["https://mid-1.example/", "https://mid-2.example:4443/"],
			"a parent also listed in connect is dialed once",
		);
		assert.equal(cluster(`${BASE}[cluster]\ntier = "mid"\nparents = "origin.example"\n`).tier, "mid");
		// moq-relay's empty tier is its default tier: here, no tier.
		assert.equal(cluster(`${BASE}[cluster]\ntier = ""\n`).tier, null);
	});

	test("[client.tls] root and disable_verify", () => {
		const config = load(`${BASE}[client.tls]\nroot = ["ca.pem", "ca2.pem"]\ndisable_verify = true\n`);
		assert.deepEqual(config.client.tls, { disableVerify: true, root: [join(dir, "ca.pem"), join(dir, "ca2.pem")] });
		assert.equal(config.cluster, null);
		assert.deepEqual(load(`${BASE}[client.tls]\nroot = "ca.pem"\n`).client.tls.root, [join(dir, "ca.pem")]);
		assert.deepEqual(load(`${BASE}[client]\ntls.disable_verify = false\n`).client.tls.disableVerify, false);
	});

	test("environment variables (moq-relay's names) and flags", () => {
		const config = load(BASE, ["--cluster-id", "77"], {
			MOQ_CLUSTER_CONNECT: "https://a.example/?jwt=x,b.example:4443",
			MOQ_CLUSTER_ROOT: "https://A.example:443/?jwt=x",
			MOQ_CLUSTER_NODES: "https://n1.example,https://n2.example",
			MOQ_CLUSTER_NODE: "https://n2.example/",
			MOQ_CLUSTER_TOKEN: join(dir, "cluster.jwt"),
			MOQ_CLUSTER_ID: "5",
			MOQ_CLUSTER_MESH: "true",
			MOQ_CLUSTER_PREFIX: "internal/origins",
			MOQ_CLUSTER_LINGER: "2s",
			MOQ_CLUSTER_PEER_IDLE_TIMEOUT: "3s",
			MOQ_CLUSTER_TIER: "mid",
			MOQ_CLUSTER_PARENTS: "https://origin.example",
			MOQ_CLIENT_TLS_ROOT: join(dir, "ca.pem"),
			MOQ_CLIENT_TLS_DISABLE_VERIFY: "1",
		});
		const c = config.cluster;
		assert.ok(c);
		assert.deepEqual(
			c.connect.map((peer) => [peer.url, peer.jwt]),
			[
				["https://a.example/", "x"],
				["https://b.example:4443/", null],
			],
		);
		assert.deepEqual(
			c.nodes.map((peer) => peer.url),
			["https://n1.example/"],
		);
		assert.equal(c.node, "https://n2.example/");
		assert.equal(c.token, join(dir, "cluster.jwt"));
		assert.equal(c.id, 77, "the flag wins over MOQ_CLUSTER_ID");
		assert.equal(c.mesh, true);
		assert.equal(c.prefix, "internal/origins");
		assert.equal(c.lingerMs, 2000);
		assert.equal(c.peerIdleTimeoutMs, 3000);
		assert.equal(c.tier, "mid");
		// n1 < n2, so n1 dials this relay; connect and parents are always dialed.
		assert.deepEqual(
			c.dial.map((peer) => peer.url),
			["https://a.example/", "https://b.example:4443/", "https://origin.example/"],
		);
		assert.deepEqual(config.client.tls, { disableVerify: true, root: [join(dir, "ca.pem")] });
		// The environment wins over the file.
		assert.equal(cluster(`${BASE}[cluster]\nlinger = "9s"\n`, [], { MOQ_CLUSTER_LINGER: "1s" }).lingerMs, 1000);
	});
});

/** Every invalid case: the TOML after BASE (or an environment), the key or variable named, and the message. */
const INVALID: { text: string; key: string; pattern: RegExp; env?: Env }[] = [
	{ text: GUIDE_CLUSTER, key: "cluster.nodes", pattern: /set node = / },
	{
		text: `${GUIDE_CLUSTER}node = "https://other.relay.example.com"\n`,
		key: "cluster.node",
		pattern: /is not one of the nodes entries/,
	},
	{ text: '[cluster]\nconnect = "ftp://x/"\n', key: "cluster.connect", pattern: /https:\/\/ or http:\/\// },
	{ text: '[cluster]\nconnect = "tcp://x:4443"\n', key: "cluster.connect", pattern: /tcp:\/\// },
	{
		text: '[cluster]\nconnect = ["https://a.example/?jwt=1", "a.example"]\n',
		key: "cluster.connect",
		pattern: /listed twice with a different/,
	},
	{ text: '[cluster]\nroot = "https://a.example/?cost=x"\n', key: "cluster.root", pattern: /\?cost=/ },
	{ text: "[cluster]\nnodes = 3\n", key: "cluster.nodes", pattern: /expected a string or an array of strings/ },
	{ text: '[cluster]\nnode = "https://me.example/?jwt=x"\n', key: "cluster.node", pattern: /must not carry \?jwt=/ },
	{ text: "[cluster]\nnode = 1\n", key: "cluster.node", pattern: /expected a URL/ },
	{ text: '[cluster]\ntoken = "gone.jwt"\n', key: "cluster.token", pattern: /file not found: .*gone\.jwt/ },
	{ text: "[cluster]\nid = 0\n", key: "cluster.id", pattern: /from 1 to 9007199254740991, got 0$/ },
	{ text: "[cluster]\nid = -5\n", key: "cluster.id", pattern: /got -5/ },
	{ text: "[cluster]\nid = 9007199254740992\n", key: "cluster.id", pattern: /got 9007199254740992/ },
	{ text: "[cluster]\nid = 4611686018427387904\n", key: "cluster.id", pattern: /got 4611686018427387904/ },
	{ text: '[cluster]\nid = "7"\n', key: "cluster.id", pattern: /got "7"/ },
	{ text: "[cluster]\nid = 1.5\n", key: "cluster.id", pattern: /got 1\.5/ },
	{ text: "[cluster]\nmesh = true\n", key: "cluster.mesh", pattern: /set node = / },
	{ text: "[cluster]\nmesh = 1\n", key: "cluster.mesh", pattern: /true or false/ },
	{
		text: '[cluster]\nmesh = "https://a.example/"\nnode = "https://b.example/"\n',
		key: "cluster.mesh",
		pattern: /conflicts with node/,
	},
	{ text: '[cluster]\nlinger = "soon"\n', key: "cluster.linger", pattern: /expected a duration/ },
	{ text: "[cluster]\nlinger = -1\n", key: "cluster.linger", pattern: /expected a duration/ },
	{ text: '[cluster]\npeer_idle_timeout = "500ms"\n', key: "cluster.peer_idle_timeout", pattern: /at least 1s/ },
	{ text: "[cluster]\npeer_idle_timeout = 0\n", key: "cluster.peer_idle_timeout", pattern: /at least 1s/ },
	{ text: '[cluster]\ntier = "internal"\n', key: "cluster.tier", pattern: /expected one of origin, mid, edge/ },
	{ text: '[cluster]\ntier = "edge"\n', key: "cluster.tier", pattern: /list them in parents/ },
	{
		text: '[cluster]\nparents = ["https://p.example/"]\n',
		key: "cluster.parents",
		pattern: /needs tier = "mid" or "edge"/,
	},
	{
		text: '[cluster]\ntier = "origin"\nparents = ["https://p.example/"]\n',
		key: "cluster.parents",
		pattern: /an origin has no parents/,
	},
	{
		text: '[cluster]\ntier = "edge"\nparents = "https://me.example"\nnode = "https://me.example/"\n',
		key: "cluster.parents",
		pattern: /own URL/,
	},
	{ text: '[cluster]\nprefix = ""\n', key: "cluster.prefix", pattern: /expected a path prefix/ },
	{ text: '[cluster]\nconnect_api = "https://api.example/"\n', key: "cluster.connect_api", pattern: /not supported/ },
	{ text: '[cluster]\nadvertise = "x"\n', key: "cluster.advertise", pattern: /unknown key/ },
	{ text: '[client.tls]\nroot = ["gone.pem"]\n', key: "client.tls.root", pattern: /file not found: .*gone\.pem/ },
	{ text: '[client.tls]\nroot = ["not-a-cert.pem"]\n', key: "client.tls.root", pattern: /no PEM certificate/ },
	{ text: '[client.tls]\ndisable_verify = "yes"\n', key: "client.tls.disable_verify", pattern: /true or false/ },
	{
		text: '[client.tls]\nfingerprint = ["ab"]\n',
		key: "client.tls.fingerprint",
		pattern: /pinning is not implemented/,
	},
	{ text: "[client.tls]\nsystem_roots = true\n", key: "client.tls.system_roots", pattern: /not supported/ },
	{ text: '[client]\nbind = "[::]:0"\n', key: "client.bind", pattern: /reads only \[client\.tls\]/ },
	{ text: '[client]\ntls = "x"\n', key: "client.tls", pattern: /expected a table/ },
	{ text: "", key: "MOQ_CLUSTER_ID", pattern: /positive integer/, env: { MOQ_CLUSTER_ID: "0" } },
	{ text: "", key: "MOQ_CLUSTER_NODES", pattern: /set node = /, env: { MOQ_CLUSTER_NODES: "a.example,b.example" } },
	{ text: "", key: "MOQ_CLUSTER_TIER", pattern: /expected one of/, env: { MOQ_CLUSTER_TIER: "internal" } },
	{ text: "", key: "MOQ_CLUSTER_MESH", pattern: /set node = /, env: { MOQ_CLUSTER_MESH: "true" } },
	{
		text: "",
		key: "MOQ_CLUSTER_PEER_IDLE_TIMEOUT",
		pattern: /at least 1s/,
		env: { MOQ_CLUSTER_PEER_IDLE_TIMEOUT: "10ms" },
	},
	{
		text: "",
		key: "MOQ_CLUSTER_ROOT",
		pattern: /listed twice/,
		env: { MOQ_CLUSTER_CONNECT: "https://a.example/?jwt=1", MOQ_CLUSTER_ROOT: "a.example" },
	},
	{
		text: "",
		key: "MOQ_CLIENT_TLS_ROOT",
		pattern: /no PEM certificate/,
		env: { MOQ_CLIENT_TLS_ROOT: "not-a-cert.pem" },
	},
];

describe("[cluster] and [client]: errors name the key and the file", () => {
	test("each invalid case is a ConfigError naming the key", () => {
		for (const { text, key, pattern, env } of INVALID) {
			const resolved = env && { ...env };
			// Relative paths in variables are relative to the working directory.
			if (resolved?.MOQ_CLIENT_TLS_ROOT) resolved.MOQ_CLIENT_TLS_ROOT = join(dir, resolved.MOQ_CLIENT_TLS_ROOT);
			rejects(BASE + text, key, pattern, resolved);
		}
	});

	test("flags are checked too", () => {
		assert.throws(() => parseArgs(["--cluster-id", "0"]), /command line: --cluster-id: expected a positive integer/);
		assert.throws(() => parseArgs(["--cluster-node", "ftp://x"]), /command line: --cluster-node: expected an https/);
		assert.throws(
			() => parseArgs(["--cluster-connect", "https://a.example/?jwt=1,a.example"]),
			/command line: --cluster-connect: .*listed twice/,
		);
	});

	test("the real binary exits 2 with one line naming the file and the key", { timeout: 120_000 }, async () => {
		const clean = Object.fromEntries(
			Object.entries(process.env).filter(([k]) => !k.startsWith("MOQ_") && k !== "RUST_LOG"),
		);
		// Three at a time: each is a Node start-up (~0.5 s).
		const queue = [...INVALID.entries()];
		const worker = async () => {
			for (let next = queue.shift(); next !== undefined; next = queue.shift()) await check(...next);
		};
		await Promise.all([worker(), worker(), worker()]);

		async function check(i: number, { text, key, pattern, env }: (typeof INVALID)[number]): Promise<void> {
			const path = join(dir, `bin-${i}.toml`);
			writeFileSync(path, BASE + text);
			let code = 0;
			let stderr = "";
			try {
				await exec(process.execPath, [join(REPO, "src/bin/moq-fanout.ts"), path], {
					cwd: env ? dir : REPO,
					env: { ...clean, ...env },
					encoding: "utf8",
					timeout: 20_000,
				});
			} catch (err) {
				({ code, stderr } = err as { code: number; stderr: string });
			}
			assert.equal(code, 2, `${key}: ${stderr}`);
			const lines = stderr.trim().split("\n");
			assert.equal(lines.length, 1, stderr);
			const where = env ? `environment: ${key}` : `${path}: `;
			assert.ok(lines[0].startsWith(`moq-fanout: ${where}`), lines[0]);
			if (!env) {
				const dot = key.lastIndexOf(".");
				assert.ok(lines[0].includes(`[${key.slice(0, dot)}] ${key.slice(dot + 1)}: `), lines[0]);
			}
			assert.match(lines[0], pattern);
		}
	});
});
