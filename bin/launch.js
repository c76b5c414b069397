// Shared by bin/moq-fanout.js and bin/moq-token.js (the package's `bin` commands).
//
// Installed package (dist/ only, no src/):
// - Node new enough: imports dist/bin/<name>.js in this process. No child process, so signals
//   (SIGTERM drains, SIGHUP reloads certificates) reach the relay itself and the exit status is
//   the relay's own.
// - Node too old: one line on stderr naming the Node found and the one needed, exit status 2 (the
//   status that RestartPreventExitStatus=2 in deploy/moq-fanout.service does not restart). The
//   package carries no Node of its own (`node` is a development dependency only).
//
// Git checkout (src/ present):
// - Node new enough: imports src/bin/<name>.ts (type stripping), so edits take effect without a
//   build, as with `npm start`.
// - Node too old: re-runs the sources with the checkout's Node 24 (the `node` dev dependency) as a
//   child process, forwarding SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to it, and
//   exits with its status (or dies by the signal that ended it). Without that Node: the error above.
//
// Written for any Node that loads ES modules, so that an old one reaches the version check.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { constants } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/**
 * The oldest Node the relay runs on; keep in step with `engines` in package.json. 22.12 brought
 * `reusePort` for dgram and net sockets (every worker binds the port). On 22.12–22.18 (before
 * process.threadCpuUsage()) the per-worker CPU figures read 0.
 */
export const MINIMUM = ">= 22.12";

/** True when Node `version` ("22.12.0") can run the relay. */
export function supported(version) {
	const [major, minor] = version.split(".").map(Number);
	if (major === 22) return minor >= 12;
	return major > 22;
}

/** Signals passed on to a re-run child (SIGKILL and SIGSTOP cannot be caught). */
const FORWARDED = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"];

/** Runs `name` ("moq-fanout" or "moq-token") with this process's arguments. */
export async function launch(name) {
	const root = join(dirname(fileURLToPath(import.meta.url)), "..");
	const source = join(root, "src", "bin", `${name}.ts`);
	const built = join(root, "dist", "bin", `${name}.js`);
	const checkout = existsSync(source);
	if (!supported(process.versions.node)) {
		const devNode = checkout ? join(root, "node_modules", "node", "bin", "node") : null;
		if (devNode !== null && existsSync(devNode)) return rerun(name, devNode, source);
		fail(
			`${name}: needs Node.js ${MINIMUM}; this is Node.js ${process.version} (${process.execPath}). ` +
				"Install a newer Node.js or put it first on PATH.",
		);
	}
	const stripsTypes = Boolean(process.features?.typescript);
	// A git checkout on a Node that cannot strip types (22.12–22.17 without a flag): run the
	// sources on the checkout's own Node 24 rather than ask for a build.
	const devNode = checkout ? join(root, "node_modules", "node", "bin", "node") : null;
	if (checkout && !stripsTypes && devNode !== null && existsSync(devNode)) return rerun(name, devNode, source);
	let entry = null;
	if (checkout && stripsTypes) entry = source;
	else if (existsSync(built)) entry = built;
	if (entry === null) fail(`${name}: ${built} is missing: run \`npm run build\` in ${root}.`);
	await import(pathToFileURL(entry).href);
}

function fail(line) {
	process.stderr.write(`${line}\n`);
	process.exit(2);
}

/** Runs `entry` on `node` as a child that gets this process's signals; exits as it exits. */
function rerun(name, node, entry) {
	const child = spawn(node, [entry, ...process.argv.slice(2)], { stdio: "inherit" });
	const handlers = new Map();
	for (const signal of FORWARDED) {
		const forward = () => {
			if (child.exitCode === null && child.signalCode === null) child.kill(signal);
		};
		handlers.set(signal, forward);
		process.on(signal, forward);
	}
	child.once("error", (err) => fail(`${name}: cannot start ${node}: ${err.message}`));
	child.once("exit", (code, signal) => {
		for (const [s, h] of handlers) process.off(s, h);
		if (signal !== null) {
			// Die by the same signal, so whoever waits on this process sees how the relay ended.
			process.kill(process.pid, signal);
			setTimeout(() => process.exit(128 + (constants.signals[signal] || 0)), 1000).unref();
			return;
		}
		process.exit(code === null ? 1 : code);
	});
}
