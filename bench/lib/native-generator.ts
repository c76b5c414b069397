/**
 * Where the native load generator lives (built by native/build-ngtcp2.mjs next to the ngtcp2 engine,
 * from native/loadgen.c, when the system's ngtcp2 and GnuTLS are present).
 * @module
 */

import { existsSync } from "node:fs";
import { join } from "node:path";

export function nativeGeneratorPath(): string {
	return process.env.MOQ_FANOUT_LOADGEN ?? join(import.meta.dirname, "..", "..", "native", "build", "moq-loadgen");
}

export function nativeGeneratorAvailable(): boolean {
	return existsSync(nativeGeneratorPath());
}
