/**
 * The ngtcp2 engine's addon for the tests that drive it (quic-engine, quic-packet-fuzz): built when
 * missing or older than its source (npm install builds it too), unless a test names a build of its
 * own with MOQ_NGTCP2_ADDON (the sanitizer runs).
 */
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { ngtcp2Path } from "../../src/quic/engine.ts";

const REPO = resolve(import.meta.dirname, "..", "..");

export function ensureNgtcp2Built(): void {
	if (process.env.MOQ_NGTCP2_ADDON !== undefined) return;
	const path = ngtcp2Path();
	const source = join(REPO, "native", "ngtcp2.c");
	if (existsSync(path) && statSync(path).mtimeMs >= statSync(source).mtimeMs) return;
	spawnSync(process.execPath, [join(REPO, "native", "build-ngtcp2.mjs")], { encoding: "utf8" });
}
