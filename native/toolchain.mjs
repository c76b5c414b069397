// What both native builds (build.mjs: the UDP addon; build-ngtcp2.mjs: the QUIC engine and the
// bench's load generator) need from the machine: a C compiler, the Node-API headers and the flags.
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";

/** The first compiler that answers `--version`: $CC, then cc, then gcc; null when none does. */
export function findCompiler() {
	for (const candidate of [process.env.CC, "cc", "gcc"]) {
		if (!candidate) continue;
		const probe = spawnSync(candidate, ["--version"], { stdio: "ignore", timeout: 20_000 });
		if (probe.status === 0) return candidate;
	}
	return null;
}

/** The node-api-headers package's include directory (throws when the package is missing). */
export function nodeApiInclude() {
	return createRequire(import.meta.url)("node-api-headers").include_dir;
}

/** Optimized, or ASan + UBSan (every UBSan finding fatal) for the tests' sanitizer builds. */
export function compileFlags(sanitize) {
	return sanitize
		? ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
		: ["-O2"];
}
