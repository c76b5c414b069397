/**
 * Returns the native memory of dropped handshakes promptly.
 *
 * The binding (napi-rs) frees a quiche Connection (TLS state, crypto and recovery buffers: ~60 KB
 * after the server's first flight) only when V8 collects its JS wrapper, and it does not report
 * that memory to V8 (no napi_adjust_external_memory). The wrapper is small, and a half-open
 * handshake lives seconds, long enough to reach the old generation: V8 sees a few MB of JS garbage
 * and has no reason to run a full collection, while hundreds of MB of native memory wait behind
 * it. Measured: a worker that dropped ~20 k handshakes in a flood kept their memory for minutes
 * (RSS +350 MB per flood, none returned). So once enough native memory is waiting (DROPS_PER_GC
 * handshakes, ~16 MB), we ask V8 for a full collection, at most once per MIN_INTERVAL_MS.
 *
 * Established connections are not counted: they are few, long-lived, and their JS side (streams,
 * sessions) is large enough for V8's own heuristics.
 */
import { gcFunction } from "../metrics/collection.ts";

/** Dropped handshakes (×~60 KB of native state) that trigger a collection. */
const DROPS_PER_GC = 256;
/** A full collection of a relay worker's heap pauses it for a few ms to tens of ms: not more often. */
const MIN_INTERVAL_MS = 1000;

let drops = 0;
let lastAt = 0;
let scheduled = false;

const run = (): void => {
	scheduled = false;
	const gc = gcFunction();
	if (gc === null) return;
	drops = 0;
	lastAt = performance.now();
	// "async": V8 runs it as a task of its own rather than inside this call.
	gc({ type: "major", execution: "async" });
};

/** A handshake ended without a connection (timed out, refused by the peer, undecryptable). */
export function handshakeDropped(): void {
	if (++drops < DROPS_PER_GC || scheduled) return;
	scheduled = true;
	const wait = lastAt + MIN_INTERVAL_MS - performance.now();
	if (wait <= 0) setImmediate(run);
	else setTimeout(run, wait).unref();
}
