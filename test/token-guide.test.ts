/**
 * The deployment guides' `moq-token` commands, run verbatim through `sh -c` (redirections included)
 * with our `moq-token` first on PATH, then the real relay process (`[auth] key = "root.jwk"`)
 * checked to accept what they produce: a publisher with demo-pub.jwt and a viewer with cluster.jwt.
 *
 * Commands from the moq-relay "Deployment" guide operators follow: lines ~176-186 (written there as
 * `cargo run --bin moq-token -- …`; the arguments are the same, only the program differs) and
 * lines ~267-275.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";
import * as Net from "@moq/net";
import { type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import "./support/quiet.ts";
import { rawUpgrade } from "./support/raw-upgrade.ts";

const exec = promisify(execFile);
const REPO = resolve(import.meta.dirname, "..");

const GUIDE_SECRETS = `mkdir -p secrets

# Generate root key
moq-token --key secrets/root.jwk generate

# Generate cluster token (for relay-to-relay auth)
moq-token --key secrets/root.jwk sign \\
  --publish "" --subscribe "" --cluster > secrets/cluster.jwt

# Generate demo publisher token
moq-token --key secrets/root.jwk sign \\
  --root "demo" --publish "" > secrets/demo-pub.jwt
`;

const GUIDE_QUICK = `# Generate key
moq-token --key root.jwk generate

# Sign a token
moq-token --key root.jwk sign \\
  --root "rooms/meeting-123" \\
  --publish "alice" \\
  --subscribe "" \\
  --expires 1735689600 > alice.jwt
`;

const dir = mkdtempSync(join(tmpdir(), "moq-token-guide-"));
after(() => rmSync(dir, { recursive: true, force: true }));

// Our moq-token first on PATH (node_modules/.bin/moq-token is @moq/token's CLI), then node_modules/.bin for Node 24.
const shimDir = join(dir, "bin");
mkdirSync(shimDir);
symlinkSync(join(REPO, "bin", "moq-token.js"), join(shimDir, "moq-token"));
const PATH = `${shimDir}:${join(REPO, "node_modules", ".bin")}:${process.env.PATH}`;

async function sh(script: string, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
	try {
		const { stdout, stderr } = await exec("sh", ["-ec", script], {
			cwd,
			env: { ...process.env, PATH },
			encoding: "utf8",
		});
		return { code: 0, stdout, stderr };
	} catch (err) {
		const e = err as { code: number; stdout: string; stderr: string };
		return { code: e.code, stdout: e.stdout, stderr: e.stderr };
	}
}

const payloadOf = (token: string) => JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));

describe("the deployment guides' moq-token commands", { timeout: 90_000 }, () => {
	it("run verbatim, write the key and non-empty tokens, and the relay accepts them", async () => {
		const which = await sh("command -v moq-token", dir);
		assert.equal(which.stdout.trim(), join(shimDir, "moq-token"));

		const secrets = await sh(GUIDE_SECRETS, dir);
		assert.equal(secrets.code, 0, secrets.stderr);
		assert.equal(secrets.stderr, "");
		const cluster = readFileSync(join(dir, "secrets", "cluster.jwt"), "utf8");
		const demo = readFileSync(join(dir, "secrets", "demo-pub.jwt"), "utf8");
		assert.match(cluster, /^[\w-]+\.[\w-]+\.[\w-]+\n$/);
		assert.match(demo, /^[\w-]+\.[\w-]+\.[\w-]+\n$/);
		const clusterClaims = payloadOf(cluster);
		assert.deepEqual(
			{ root: clusterClaims.root, put: clusterClaims.put, get: clusterClaims.get, cluster: clusterClaims.cluster },
			{ root: "", put: [""], get: [""], cluster: true },
		);
		assert.deepEqual([payloadOf(demo).root, payloadOf(demo).put, payloadOf(demo).get], ["demo", [""], undefined]);

		const quick = await sh(GUIDE_QUICK, dir);
		assert.equal(quick.code, 0, quick.stderr);
		const alice = payloadOf(readFileSync(join(dir, "alice.jwt"), "utf8"));
		assert.deepEqual([alice.root, alice.put, alice.get, alice.exp], ["rooms/meeting-123", ["alice"], [""], 1735689600]);

		// verify, both syntaxes, reading the token from stdin.
		const verified = await sh("moq-token --key secrets/root.jwk verify < secrets/cluster.jwt", dir);
		assert.equal(verified.code, 0, verified.stderr);
		assert.equal(JSON.parse(verified.stdout).cluster, true);
		const after = await sh("moq-token verify --key secrets/root.jwk < secrets/demo-pub.jwt", dir);
		assert.equal(JSON.parse(after.stdout).root, "demo");

		// The real relay, configured as the guide says.
		const config = join(dir, "relay.toml");
		writeFileSync(config, '[server.tls]\ngenerate = ["localhost"]\n\n[auth]\nkey = "secrets/root.jwk"\n');
		let relay: RelayProcess | undefined;
		const open: { close(): void }[] = [];
		try {
			relay = await startRelayProcess([config]);
			const base = relay.base;
			const connect = async (path: string, token: string) => {
				const conn = await Net.Connection.connect(new URL(`${base}/${path}?jwt=${token.trim()}`), {
					websocket: { delay: 0 },
				});
				open.push(conn);
				return conn;
			};
			const publisher = await connect("demo", demo);
			const broadcast = new Net.Broadcast.Producer();
			const video = broadcast.createTrack("video");
			publisher.publish(Net.Path.from("cam"), broadcast);

			// The cluster token (everything, publish and subscribe) watches it from the root.
			const viewer = await connect("", cluster);
			const sub = viewer.consume(Net.Path.from("demo/cam")).subscribe("video", { priority: 1 });
			const received = sub.recvGroup();
			let got: unknown;
			for (let i = 0; i < 100 && got === undefined; i++) {
				const g = video.appendGroup();
				g.writeFrame({ payload: new Uint8Array([1, 2, 3]), timestamp: Net.Time.Timestamp.now() });
				g.close();
				got = await Promise.race([received, new Promise((r) => setTimeout(r, 100))]);
			}
			assert.ok(got, "the viewer with cluster.jwt received the demo-pub.jwt publisher's group");

			// demo-pub.jwt is for demo/ only; the guide's alice.jwt expired on 2025-01-01 and is refused.
			assert.equal((await rawUpgrade(relay.port, `/demo?jwt=${demo.trim()}`, "qmux-01.moq-lite-05")).status, 101);
			assert.equal((await rawUpgrade(relay.port, `/other?jwt=${demo.trim()}`, "qmux-01.moq-lite-05")).status, 403);
			const aliceToken = readFileSync(join(dir, "alice.jwt"), "utf8").trim();
			assert.equal(
				(await rawUpgrade(relay.port, `/rooms/meeting-123?jwt=${aliceToken}`, "qmux-01.moq-lite-05")).status,
				401,
			);
			// The relay never logs a token.
			assert.ok(!relay.stderr.join("").includes(demo.trim().split(".")[2]), "the relay logged a token");
		} finally {
			for (const c of open) c.close();
			await relay?.stop();
		}
	});

	it("bad command lines exit 2 with one line and leave no token; runtime failures exit 1", async () => {
		const cases: [string, number, RegExp][] = [
			[
				'moq-token --key secrets/root.jwk sign --root "demo" --publish "" --bogus > bad.jwt',
				2,
				/unknown option --bogus/,
			],
			["moq-token --bogus secrets/root.jwk generate", 2, /unknown option --bogus before the command/],
			["moq-token --key a.jwk sign --key b.jwk --publish x > bad.jwt", 2, /--key given twice/],
			['moq-token --key secrets/missing.jwk sign --publish "" > bad.jwt', 1, /cannot read key/],
			["moq-token --key secrets/root.jwk frobnicate", 2, /unknown command "frobnicate"/],
		];
		for (const [script, code, pattern] of cases) {
			const result = await sh(script, dir);
			assert.equal(result.code, code, `${script}: ${result.stderr}`);
			assert.match(result.stderr, pattern, script);
			assert.equal(result.stderr.trim().split("\n").length, 1, `one line: ${result.stderr}`);
			assert.equal(result.stdout, "");
		}
	});
});
