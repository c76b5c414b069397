// Builds native/build/udp.node (native/udp.c, the batched UDP egress addon) with the system C
// compiler. It is the package's `install` script, so it runs at `npm install`, in this checkout and
// for every consumer of the published package:
//
//   node native/build.mjs              optimized build: native/build/udp.node
//   node native/build.mjs --sanitize   ASan + UBSan build for tests: native/build/udp-sanitized.node
//
// Plain JavaScript on purpose: npm runs it with whatever `node` is on PATH (Node 20 on some hosts,
// which cannot strip TypeScript types). The headers come from the `node-api-headers` package
// (a dependency): nothing is downloaded, no node-gyp, no Python.
//
// The addon is optional (the relay sends with dgram without it), so the default build never fails
// the install: with no compiler, on another OS, or when the compile fails, it prints one warning
// line and exits 0. The sanitized build is asked for on purpose and exits 1 when it cannot be made.
import { spawnSync } from "node:child_process";
import { mkdirSync, renameSync, rmSync } from "node:fs";
import { compileFlags, findCompiler, nodeApiInclude } from "./toolchain.mjs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const sanitize = process.argv.includes("--sanitize");

// The install also builds the ngtcp2 QUIC engine (native/build-ngtcp2.mjs) when the system has its
// libraries; it runs whatever became of the UDP addon (every exit path below) and never fails the
// install. `--udp-only` skips it (the sanitized builds are asked for one at a time).
if (!sanitize && !process.argv.includes("--udp-only")) {
	process.once("exit", () => {
		const extra = process.argv.includes("--verbose") ? ["--verbose"] : [];
		spawnSync(process.execPath, [join(here, "build-ngtcp2.mjs"), ...extra], { stdio: "inherit", timeout: 240_000 });
	});
}
const output = join(here, "build", sanitize ? "udp-sanitized.node" : "udp.node");

function giveUp(reason) {
	if (sanitize) {
		console.error(`moq-fanout: cannot build the sanitized UDP addon: ${reason}`);
		process.exit(1);
	}
	console.warn(`moq-fanout: native UDP addon not built (${reason}); QUIC packets will be sent with dgram.send`);
	process.exit(0);
}

if (process.platform !== "linux") giveUp(`GSO and sendmmsg are Linux-only, this is ${process.platform}`);
if (process.env.MOQ_FANOUT_NATIVE_UDP === "0" && !sanitize) giveUp("MOQ_FANOUT_NATIVE_UDP=0");

let includeDir;
try {
	includeDir = nodeApiInclude();
} catch (err) {
	giveUp(`the node-api-headers package is missing: ${err.message}`);
}

const compiler = findCompiler();
if (compiler === null) giveUp("no C compiler found (set CC, or install gcc)");

const flags = compileFlags(sanitize);
// Written beside the target and renamed over it: a process loading the addon meanwhile sees the
// old file or the new one, never half of one.
const scratch = `${output}.${process.pid}.tmp`;
mkdirSync(dirname(output), { recursive: true });
const args = [
	...flags,
	"-std=gnu11",
	"-Wall",
	"-shared",
	"-fPIC",
	"-fvisibility=hidden",
	"-I",
	includeDir,
	join(here, "udp.c"),
	"-o",
	scratch,
];
const result = spawnSync(compiler, args, { encoding: "utf8", timeout: 120_000 });
if (result.status !== 0) {
	rmSync(scratch, { force: true });
	const detail = (result.stderr || result.error?.message || `exit status ${result.status}`).trim().split("\n");
	// The install prints one line: the compiler's first error. Asked for on purpose, all of it.
	if (sanitize) console.error(detail.join("\n"));
	giveUp(`${compiler} failed: ${detail.find((line) => line.includes("error")) ?? detail[0]}`);
}
renameSync(scratch, output);
if (sanitize || process.argv.includes("--verbose")) console.log(`built ${output}`);
