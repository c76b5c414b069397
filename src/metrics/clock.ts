/**
 * A monotonic microsecond clock that every thread of the process reads on the same scale, for
 * latencies measured across worker threads (a frame received on one worker, sent on another).
 *
 * `performance.now()` is monotonic and cheap but counts from each thread's own start, and
 * `performance.timeOrigin` is a wall-clock reading taken at that start, so `timeOrigin + now()`
 * can differ between threads by however far the wall clock moved between their starts (NTP). The
 * process's monotonic clock (`process.hrtime`, the clock `performance.now()` itself reads) is one
 * clock for all threads: each thread measures once how far its `performance.now()` is from it,
 * then every reading is `performance.now()` plus that constant (no allocation; `hrtime.bigint()`
 * allocates a BigInt per call).
 * @module
 */
import { performance } from "node:perf_hooks";

function offsetMicros(): number {
	// Bracket the hrtime read with two now() reads and use their midpoint: the error is half the
	// bracket (well under a microsecond).
	const a = performance.now();
	const mono = Number(process.hrtime.bigint() / 1000n);
	const b = performance.now();
	return mono - ((a + b) / 2) * 1000;
}

const OFFSET_US = offsetMicros();

/** Microseconds on the process's monotonic clock (since an arbitrary point shared by every thread). */
export function monotonicMicros(): number {
	return OFFSET_US + performance.now() * 1000;
}
