/**
 * The published package: `npm pack` (which builds dist/ through `prepack`), then the tarball
 * installed into an empty folder and into a `-g` prefix, offline, from the npm cache that the
 * repo's own install filled. From each: `moq-fanout` serves /health with two workers (worker entry
 * and quiche addon found from dist/) and drains on SIGTERM as the process it started (no launcher
 * child, no orphan), and `moq-token` generates, signs and verifies. A Node too old for the relay
 * (the system Node, when it is one) gets one clear error and exit status 2. In the git checkout,
 * an old Node re-runs the relay on the checkout's Node 24 and passes SIGTERM on. The systemd unit
 * is checked by `systemd-analyze verify` where that is installed.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
	existsSync,
	mkdirSync,
	mkdtempSync,
	readdirSync,
	readFileSync,
	rmSync,
	symlinkSync,
	writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { freePort } from "./support/process-relay.ts";

const REPO = resolve(import.meta.dirname, "..");
const PKG = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as {
	version: string;
	dependencies: Record<string, string>;
};

interface Run {
	code: number | null;
	signal: NodeJS.Signals | null;
	stdout: string;
	stderr: string;
}

/** The environment a user's shell would give: no npm_* variables from the `npm test` around us. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
	const env: NodeJS.ProcessEnv = {};
	for (const [k, v] of Object.entries(process.env)) {
		if (!/^npm_/i.test(k) && k !== "NODE_OPTIONS" && k !== "INIT_CWD") env[k] = v;
	}
	return { ...env, npm_config_update_notifier: "false", npm_config_fund: "false", npm_config_audit: "false", ...extra };
}

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}) {
	return new Promise<Run>((done, fail) => {
		const child = spawn(cmd, args, { cwd: opts.cwd ?? REPO, env: opts.env ?? cleanEnv(), stdio: "pipe" });
		let stdout = "";
		let stderr = "";
		child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
		child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
		child.once("error", fail);
		child.once("close", (code, signal) => done({ code, signal, stdout, stderr }));
		child.stdin.end(opts.input ?? "");
	});
}

function npmAvailable(): string | null {
	try {
		execFileSync("npm", ["--version"], { stdio: "pipe", env: cleanEnv(), timeout: 20_000 });
		return null;
	} catch (err) {
		return `npm is not available (${(err as Error).message.split("\n")[0]})`;
	}
}

/** Processes whose command line mentions `needle` (other than this test process). */
function processesMentioning(needle: string): number[] {
	const found: number[] = [];
	for (const name of readdirSync("/proc")) {
		if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
		try {
			if (readFileSync(`/proc/${name}/cmdline`, "utf8").includes(needle)) found.push(Number(name));
		} catch {
			// gone meanwhile
		}
	}
	return found;
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
	if (child.exitCode !== null || child.signalCode !== null) {
		return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
	}
	return new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));
}

/** Starts `cmd args` (a relay), waits for /health, returns the child and the health body. */
async function startRelay(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd: string) {
	const port = await freePort();
	const child = spawn(cmd, [...args, "--bind", `127.0.0.1:${port}`, "--workers", "2"], {
		cwd,
		env,
		stdio: ["ignore", "pipe", "pipe"],
	});
	let stderr = "";
	child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-8000)));
	child.stdout!.resume();
	const deadline = Date.now() + 20_000;
	for (;;) {
		if (child.exitCode !== null || child.signalCode !== null) {
			throw new Error(`${cmd} exited (${child.exitCode ?? child.signalCode}): ${stderr}`);
		}
		const health = await fetch(`http://127.0.0.1:${port}/health`).then(
			async (r) => (r.ok ? ((await r.json()) as Record<string, unknown>) : null),
			() => null,
		);
		// Signals are handled once the main thread has started the pool and logged where it listens
		// (a worker may answer /health a moment before).
		if (health !== null && /moq-fanout listening/.test(stderr)) {
			const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
			return { child, port, health, metrics, stderr: () => stderr };
		}
		if (Date.now() > deadline) {
			child.kill("SIGKILL");
			throw new Error(`${cmd} did not serve /health within 20 s: ${stderr}`);
		}
		await new Promise((r) => setTimeout(r, 100));
	}
}

const skip = npmAvailable();
const NODE24 = process.execPath;
const SYSTEM_NODE = "/usr/bin/node";
const work = mkdtempSync(join(tmpdir(), "moq-fanout-pkg-"));
/** PATH with the project's Node 24 first: the installed bins' `#!/usr/bin/env node` finds it. */
const node24Dir = join(work, "node24");
const env24 = cleanEnv({ PATH: `${node24Dir}:${process.env.PATH ?? "/usr/bin:/bin"}` });
const local = join(work, "local");
const global = join(work, "global");
let tarball = "";
/** How each install went: offline, or with registry documents fetched (see install()). */
const installModes: string[] = [];
let packed: { size: number; unpackedSize: number; files: { path: string; size: number }[] };

after(() => rmSync(work, { recursive: true, force: true }));

describe("npm package", { skip: skip ?? false, timeout: 90_000 }, () => {
	before(async () => {
		mkdirSync(node24Dir);
		symlinkSync(NODE24, join(node24Dir, "node"));
		mkdirSync(local);
		mkdirSync(global);
		const pack = await run("npm", ["pack", "--json", "--pack-destination", work], { env: env24 });
		assert.equal(pack.code, 0, `npm pack failed:\n${pack.stdout}\n${pack.stderr}`);
		// prepack's build prints a line before npm's JSON.
		const json = pack.stdout.slice(pack.stdout.search(/^\[/m));
		[packed] = JSON.parse(json);
		tarball = join(work, `moq-fanout-${PKG.version}.tgz`);
		assert.ok(existsSync(tarball), `no ${tarball}`);
		const [inFolder, inGlobal] = await Promise.all([
			install(["--prefix", local, tarball]),
			install(["-g", "--prefix", global, tarball]),
		]);
		assert.equal(inFolder.code, 0, `npm install --prefix failed:\n${inFolder.stderr}`);
		assert.equal(inGlobal.code, 0, `npm install -g failed:\n${inGlobal.stderr}`);
	});

	/**
	 * `npm install --offline`, from the npm cache. npm 11 resolves a tarball's dependencies from
	 * full registry documents, while installing from a lockfile (the repo's own `npm install`)
	 * caches only the abbreviated ones; when those are all the cache has (ENOTCACHED), the install
	 * runs again with --prefer-offline: the documents come from the registry, the tarballs still
	 * from the cache, and later runs are offline.
	 */
	async function install(args: string[]): Promise<Run> {
		const flags = ["--no-audit", "--no-fund", "--no-update-notifier"];
		const offline = await run("npm", ["install", "--offline", ...flags, ...args], { cwd: work, env: env24 });
		if (offline.code === 0 || !/ENOTCACHED/.test(offline.stderr)) {
			installModes.push("offline");
			return offline;
		}
		installModes.push("prefer-offline (ENOTCACHED offline)");
		const online = await run("npm", ["install", "--prefer-offline", ...flags, ...args], { cwd: work, env: env24 });
		if (online.code !== 0 && /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ENETUNREACH/.test(online.stderr)) {
			online.stderr = `the npm cache lacks registry documents for the dependencies (npm install --offline: ENOTCACHED) and the registry is unreachable:\n${online.stderr}`;
		}
		return online;
	}

	it("packs dist/, bin/ and deploy/, not sources, tests or tooling", (t) => {
		t.diagnostic(
			`tarball ${packed.size} bytes (${packed.unpackedSize} unpacked, ${packed.files.length} files); installs: ${installModes.join(", ")}`,
		);
		const paths = packed.files.map((f) => f.path);
		for (const want of [
			"package.json",
			"README.md",
			"bin/moq-fanout.js",
			"bin/moq-token.js",
			"bin/launch.js",
			"dist/bin/moq-fanout.js",
			"dist/bin/moq-token.js",
			"dist/main/run.js",
			"dist/worker/entry.js",
			"dist/quic/native.js",
			"deploy/moq-fanout.service",
			"relay.toml.example",
		]) {
			assert.ok(paths.includes(want), `${want} missing from the tarball`);
		}
		const unwanted = paths.filter(
			(p) => /^(src|test|bench|scripts|\.ci|node_modules|\.tmp)\//.test(p) || p.endsWith(".ts"),
		);
		assert.deepEqual(unwanted, [], "sources, tests or tooling in the tarball");
		assert.ok(packed.size < 1024 * 1024, `tarball is ${packed.size} bytes`);
		assert.ok(!("node" in PKG.dependencies), "the node binary package is a runtime dependency");
	});

	it("installs without a Node binary of its own", () => {
		for (const modules of [
			join(local, "node_modules"),
			join(global, "lib", "node_modules", "moq-fanout", "node_modules"),
		]) {
			assert.ok(!existsSync(join(modules, ".bin", "node")), `${modules}/.bin/node installed`);
			assert.ok(!existsSync(join(modules, "node")), `${modules}/node installed`);
		}
		assert.ok(!existsSync(join(global, "bin", "node")), "a global `node` command installed");
		assert.ok(existsSync(join(global, "bin", "moq-fanout")) && existsSync(join(global, "bin", "moq-token")));
		const installed = JSON.parse(readFileSync(join(local, "node_modules", "moq-fanout", "package.json"), "utf8"));
		assert.ok(!("node" in (installed.dependencies ?? {})));
		assert.ok(!existsSync(join(local, "node_modules", "moq-fanout", "src")));
	});

	for (const where of ["folder", "global"] as const) {
		const bin = (name: string) =>
			where === "folder" ? join(local, "node_modules", ".bin", name) : join(global, "bin", name);

		it(`${where} install: moq-fanout serves /health, drains on SIGTERM, leaves no process`, async () => {
			const version = await run(bin("moq-fanout"), ["--version"], { cwd: work, env: env24 });
			assert.equal(version.code, 0, version.stderr);
			assert.equal(version.stdout.trim(), `moq-fanout ${PKG.version}`);
			const relay = await startRelay(bin("moq-fanout"), [], env24, work);
			assert.equal(relay.health.status, "ok");
			assert.match(relay.metrics, /^moq_fanout_workers 2$/m);
			// The started process is the relay itself: nothing else runs from this install.
			const root = where === "folder" ? local : global;
			assert.deepEqual(processesMentioning(root), [relay.child.pid]);
			relay.child.kill("SIGTERM");
			const end = await exited(relay.child);
			assert.deepEqual(end, { code: 0, signal: null }, relay.stderr());
			assert.deepEqual(processesMentioning(root), []);
		});

		it(`${where} install: moq-token generates, signs and verifies`, async () => {
			const keyFile = join(work, `${where}.jwk`);
			const gen = await run(bin("moq-token"), ["generate", "--key", keyFile], { cwd: work, env: env24 });
			assert.equal(gen.code, 0, gen.stderr);
			const sign = await run(bin("moq-token"), ["sign", "--key", keyFile, "--root", "demo", "--subscribe", ""], {
				cwd: work,
				env: env24,
			});
			assert.equal(sign.code, 0, sign.stderr);
			const token = sign.stdout.trim();
			assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
			const verify = await run(bin("moq-token"), ["verify", "--key", keyFile, "--root", "demo"], {
				cwd: work,
				env: env24,
				input: token,
			});
			assert.equal(verify.code, 0, verify.stderr);
			assert.equal(JSON.parse(verify.stdout).root, "demo");
			const bad = await run(bin("moq-token"), ["verify", "--key", join(work, "missing.jwk")], {
				cwd: work,
				env: env24,
				input: token,
			});
			assert.equal(bad.code, 1, "the CLI's own exit status comes through");
		});
	}

	it("an installed bin on a Node too old for the relay: one clear error, exit status 2", async (t) => {
		if (!existsSync(SYSTEM_NODE)) return t.skip(`no ${SYSTEM_NODE}`);
		const version = execFileSync(SYSTEM_NODE, ["-p", "process.versions.node"], { encoding: "utf8" }).trim();
		const { supported } = (await import(join(REPO, "bin", "launch.js"))) as { supported(v: string): boolean };
		if (supported(version)) return t.skip(`${SYSTEM_NODE} is ${version}, new enough`);
		// Through the shebang (`env node` finding the old Node first on PATH) and named explicitly.
		const oldPath = cleanEnv({ PATH: `/usr/bin:/bin` });
		for (const [cmd, args] of [
			[join(global, "bin", "moq-fanout"), ["--version"]],
			[join(local, "node_modules", ".bin", "moq-token"), ["generate"]],
			[SYSTEM_NODE, [join(local, "node_modules", "moq-fanout", "bin", "moq-fanout.js"), "relay.toml"]],
		] as const) {
			const r = await run(cmd, [...args], { cwd: work, env: oldPath });
			assert.equal(r.code, 2, `${cmd}: ${r.stderr}`);
			assert.equal(r.stdout, "");
			const lines = r.stderr.trimEnd().split("\n");
			assert.equal(lines.length, 1, r.stderr);
			assert.match(
				lines[0],
				new RegExp(`^moq-(fanout|token): needs Node\\.js >= 22\\.12; this is Node\\.js v${version}`),
			);
		}
	});

	it("git checkout on an old Node: re-runs on Node 24, passes SIGTERM on, exits with the relay's status", async (t) => {
		if (!existsSync(SYSTEM_NODE)) return t.skip(`no ${SYSTEM_NODE}`);
		const version = execFileSync(SYSTEM_NODE, ["-p", "process.versions.node"], { encoding: "utf8" }).trim();
		const { supported } = (await import(join(REPO, "bin", "launch.js"))) as { supported(v: string): boolean };
		if (supported(version)) return t.skip(`${SYSTEM_NODE} is ${version}, new enough`);
		const relay = await startRelay(SYSTEM_NODE, [join(REPO, "bin", "moq-fanout.js")], cleanEnv(), work);
		const pids = () => processesMentioning(`127.0.0.1:${relay.port}`);
		assert.equal(pids().length, 2, "launcher and relay");
		relay.child.kill("SIGTERM");
		const end = await exited(relay.child);
		assert.deepEqual(end, { code: 0, signal: null }, relay.stderr());
		for (let i = 0; i < 20 && pids().length > 0; i++) await new Promise((r) => setTimeout(r, 100));
		assert.deepEqual(pids(), [], "relay left running");
	});

	it("deploy/moq-fanout.service: restart policy, hardening, systemd-analyze verify", async (t) => {
		const unit = readFileSync(join(REPO, "deploy", "moq-fanout.service"), "utf8");
		const values = (key: string) => [...unit.matchAll(new RegExp(`^${key}=(.*)$`, "gm"))].map((m) => m[1]);
		assert.match(values("Type")[0], /^(simple|notify)$/);
		assert.deepEqual(values("RestartPreventExitStatus"), ["2"]);
		assert.deepEqual(values("Restart"), ["on-failure"]);
		for (const key of ["NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices"]) {
			assert.equal(values(key).length, 1, `${key} missing`);
		}
		assert.deepEqual(values("MemoryDenyWriteExecute"), [], "V8's JIT needs W+X memory");
		assert.match(values("ExecStart")[0], /^\/usr\/local\/bin\/moq-fanout /);
		let analyze: string | null = null;
		for (const dir of ["/usr/bin", "/bin", "/usr/local/bin"]) {
			if (existsSync(join(dir, "systemd-analyze"))) analyze = join(dir, "systemd-analyze");
		}
		if (analyze === null) return t.skip("systemd-analyze is not installed");
		// The unit as installed from this -g prefix (verify checks that ExecStart is executable).
		const copy = join(work, "moq-fanout.service");
		writeFileSync(copy, unit.replace("/usr/local/bin/moq-fanout", join(global, "bin", "moq-fanout")));
		const r = await run(analyze, ["verify", "--man=no", copy], { cwd: work });
		assert.equal(r.code, 0, r.stderr);
		assert.equal(r.stderr.trim(), "", "systemd-analyze warnings");
	});
});
