// Builds native/build/ngtcp2.node (native/ngtcp2.c, the ngtcp2 + GnuTLS QUIC engine) with the system
// C compiler, when pkg-config finds the system's libngtcp2 (the 0.12 API of Debian bookworm, or 1.x),
// libngtcp2_crypto_gnutls and gnutls. Run by native/build.mjs at `npm install` (so by the package's
// `install` script):
//
//   node native/build-ngtcp2.mjs              optimized build: native/build/ngtcp2.node
//   node native/build-ngtcp2.mjs --sanitize   ASan + UBSan build for tests: native/build/ngtcp2-sanitized.node
//   node native/build-ngtcp2.mjs --out FILE   the engine alone, to FILE (say, against another libngtcp2
//                                             named by PKG_CONFIG_PATH; load it with MOQ_NGTCP2_ADDON=FILE)
//
// Nothing is downloaded. The engine is optional (the relay runs on quiche without it), so the default
// build never fails the install: without the libraries it prints nothing unless --verbose (the relay
// logs once which Debian packages enable it), and a failed compile prints one warning line; both exit 0.
// The sanitized build is asked for on purpose and exits 1 when it cannot be made.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { compileFlags, findCompiler, nodeApiInclude } from "./toolchain.mjs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const sanitize = process.argv.includes("--sanitize");
const verbose = process.argv.includes("--verbose");
const outIndex = process.argv.indexOf("--out");
const customOutput = outIndex > 0 ? process.argv[outIndex + 1] : undefined;
if (outIndex > 0 && !customOutput) {
	console.error("moq-fanout: --out needs a file name");
	process.exit(2);
}
const output = customOutput ?? join(here, "build", sanitize ? "ngtcp2-sanitized.node" : "ngtcp2.node");
const PACKAGES = "libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev pkg-config";

function giveUp(reason, quiet = false) {
	if (sanitize) {
		console.error(`moq-fanout: cannot build the sanitized ngtcp2 engine: ${reason}`);
		process.exit(1);
	}
	if (!quiet || verbose) console.warn(`moq-fanout: ngtcp2 QUIC engine not built (${reason}); the relay uses quiche`);
	process.exit(0);
}

if (process.platform !== "linux") giveUp(`Linux only, this is ${process.platform}`, true);
if (process.env.MOQ_FANOUT_NGTCP2 === "0" && !sanitize) giveUp("MOQ_FANOUT_NGTCP2=0", true);

let includeDir;
try {
	includeDir = nodeApiInclude();
} catch (err) {
	giveUp(`the node-api-headers package is missing: ${err.message}`);
}

const LIBS = ["libngtcp2", "libngtcp2_crypto_gnutls", "gnutls"];
const pkgConfig = process.env.PKG_CONFIG || "pkg-config";
const probe = spawnSync(pkgConfig, ["--cflags", "--libs", ...LIBS], { encoding: "utf8", timeout: 20_000 });
if (probe.status !== 0) giveUp(`pkg-config does not find ${LIBS.join(", ")} (Debian: apt-get install ${PACKAGES})`, true);
const version = spawnSync(pkgConfig, ["--modversion", "libngtcp2"], { encoding: "utf8", timeout: 20_000 });
const ngtcp2Version = (version.stdout || "").trim();
// The two APIs native/ngtcp2.c is written and tested for; 0.13–0.19 changed it step by step.
const apiOne = /^1\./.test(ngtcp2Version);
if (!apiOne && !/^0\.12\./.test(ngtcp2Version)) {
	giveUp(`libngtcp2 ${ngtcp2Version || "?"} found; the engine is written for the 0.12 API (Debian bookworm) and 1.x`, true);
}
const pkgFlags = probe.stdout.trim().split(/\s+/).filter(Boolean);

const compiler = findCompiler();
if (compiler === null) giveUp("no C compiler found (set CC, or install gcc)");

const flags = compileFlags(sanitize);
const scratch = `${output}.${process.pid}.tmp`;
mkdirSync(dirname(output), { recursive: true });

// 0.12: libngtcp2 is linked statically. 0.12 never frees a stream the peer opened for sending only:
// its close test wants our own FIN acknowledged, which a receive-only stream never has (upstream fixed
// it in 0.14.0, commit 1d591bde). The engine closes such streams itself with ngtcp2's internal
// ngtcp2_conn_find_stream / ngtcp2_conn_close_stream, which only the static archives export.
// Debian builds those archives as PIE objects, not PIC: their one reference to external data
// (`stderr`, in two debug printers) is renamed to a variable of the addon so a shared object can
// hold them. GnuTLS stays a shared library.
// 1.x needs no internals: the engine links the shared libraries pkg-config names (with their
// directory as the run path when it is not the system's, as for a build under /opt).
const pkg = (...args) => spawnSync(pkgConfig, args, { encoding: "utf8", timeout: 20_000 });
const words = (text) => (text || "").trim().split(/\s+/).filter(Boolean);
const libdir = (pkg("--variable=libdir", "libngtcp2").stdout || "").trim();
const cflags = words(pkg("--cflags", ...LIBS).stdout);
const systemDirs = ["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"];
const runPath = systemDirs.includes(libdir) ? [] : [`-Wl,-rpath,${libdir}`];
const localArchives = [];
let linkArgs;
if (apiOne) {
	linkArgs = [...pkgFlags.filter((flag) => !flag.startsWith("-I")), ...runPath];
} else {
	const archives = ["libngtcp2_crypto_gnutls.a", "libngtcp2.a"].map((name) => join(libdir, name));
	const missing = archives.find((path) => !existsSync(path));
	if (missing !== undefined) giveUp(`${missing} not found (Debian: apt-get install ${PACKAGES})`);
	const objcopy = process.env.OBJCOPY || "objcopy";
	for (const path of archives) localArchives.push(`${scratch}.${basename(path)}`);
	for (let i = 0; i < archives.length; i++) {
		const copied = spawnSync(objcopy, ["--redefine-sym", "stderr=moq_ngtcp2_stderr", archives[i], localArchives[i]], {
			encoding: "utf8",
			timeout: 60_000,
		});
		if (copied.status !== 0) {
			for (const path of localArchives) rmSync(path, { force: true });
			giveUp(`${objcopy} failed on ${archives[i]}: ${(copied.stderr || copied.error?.message || "").trim()}`);
		}
	}
	linkArgs = [
		...localArchives,
		...words(pkg("--libs", "gnutls").stdout),
		// The archives' symbols stay inside the addon (no clash with another libngtcp2 in the process).
		"-Wl,--exclude-libs,ALL",
	];
}
const args = [
	...flags,
	"-std=gnu11",
	"-Wall",
	"-shared",
	"-fPIC",
	"-fvisibility=hidden",
	"-I",
	includeDir,
	...cflags,
	join(here, "ngtcp2.c"),
	"-o",
	scratch,
	...linkArgs,
];
const result = spawnSync(compiler, args, { encoding: "utf8", timeout: 180_000 });
for (const path of localArchives) rmSync(path, { force: true });
if (result.status !== 0) {
	rmSync(scratch, { force: true });
	const detail = (result.stderr || result.error?.message || `exit status ${result.status}`).trim().split("\n");
	if (sanitize || verbose) console.error(detail.join("\n"));
	giveUp(`${compiler} failed: ${detail.find((line) => line.includes("error")) ?? detail[0]}`);
}
renameSync(scratch, output);
if (sanitize || verbose || customOutput) {
	console.log(`built ${output} (ngtcp2 ${ngtcp2Version}, linked ${apiOne ? "as a shared library" : "statically"})`);
}

// The bench's native load generator (native/loadgen.c, an executable on the same libraries). Optional
// like the engine: `npm run bench` falls back to the JS generator without it.
if (!sanitize && !customOutput) {
	const loadgen = join(here, "build", "moq-loadgen");
	const loadgenScratch = `${loadgen}.${process.pid}.tmp`;
	const built = spawnSync(
		compiler,
		["-O2", "-std=gnu11", "-Wall", join(here, "loadgen.c"), "-o", loadgenScratch, ...pkgFlags, ...runPath],
		{ encoding: "utf8", timeout: 180_000 },
	);
	if (built.status === 0) {
		renameSync(loadgenScratch, loadgen);
		if (verbose) console.log(`built ${loadgen}`);
	} else {
		rmSync(loadgenScratch, { force: true });
		const detail = (built.stderr || built.error?.message || `exit status ${built.status}`).trim().split("\n");
		console.warn(
			`moq-fanout: bench load generator not built (${compiler}: ${detail.find((line) => line.includes("error")) ?? detail[0]}); npm run bench uses the JS one`,
		);
	}
}
