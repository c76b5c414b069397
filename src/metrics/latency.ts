/**
 * The fan-out latency histogram: per frame handed to a viewer's transport, the time since the relay
 * received that frame from its publisher (on whichever worker). One histogram per thread (module
 * state is per worker thread); the worker publishes it into its counters region once a second
 * (src/worker/entry.ts) and /metrics renders the workers' regions as `moq_fanout_fanout_latency_seconds`.
 *
 * Hot path: `record()` is a short linear scan over a fixed Float64Array of bounds and two stores:
 * no allocation. Latencies are measured on `monotonicMicros()` (src/metrics/clock.ts); the ring
 * carries the receive time as its low 32 bits (µs mod 2^32, see cache/layout.ts), so a latency
 * is a 32-bit difference: exact up to 35 minutes, far beyond the last bucket.
 * @module
 */
import { monotonicMicros } from "./clock.ts";

/** Upper bounds of the finite buckets, in seconds (Prometheus `le`); a final +Inf bucket follows. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5] as const;

const BOUNDS_US = Float64Array.from(LATENCY_BUCKETS, (s) => s * 1e6);
const FINITE = BOUNDS_US.length;

/** Counts per bucket (not cumulative; the last is +Inf) and the sum, in microseconds. */
export class LatencyHistogram {
	/** `counts[i]` = samples with BOUNDS[i-1] < v <= BOUNDS[i]; `counts[FINITE]` = above the last bound. */
	readonly counts = new Float64Array(FINITE + 1);
	sumMicros = 0;

	/** Records one latency in microseconds (negative values, from clock skew, count as 0). */
	record(micros: number): void {
		const v = Math.max(micros, 0);
		let i = 0;
		while (i < FINITE && v > BOUNDS_US[i]) i++;
		this.counts[i]++;
		this.sumMicros += v;
	}

	/** Samples recorded so far. */
	get count(): number {
		let n = 0;
		for (let i = 0; i <= FINITE; i++) n += this.counts[i];
		return n;
	}
}

/** This thread's fan-out latency histogram (TrackServe records into it). */
export const fanoutLatency = new LatencyHistogram();

/**
 * Samples that may share one clock reading. Reading the clock costs ~60 ns, several times the
 * rest of a sample, and one wake-up hands frames to many viewers back to back: the reading is
 * reused for up to this many samples within one synchronous pass (it is dropped at the next
 * microtask checkpoint), so a sample is early by at most the time of that many hand-offs
 * (microseconds, far below the first bucket) and each viewer's wait behind the others still shows.
 */
const CLOCK_REUSE = 16;
let clockNow = 0;
let clockUses = CLOCK_REUSE;
let clockDropQueued = false;
function dropClock(): void {
	clockUses = CLOCK_REUSE;
	clockDropQueued = false;
}
function readClock(): number {
	clockNow = monotonicMicros();
	clockUses = 0;
	if (!clockDropQueued) {
		clockDropQueued = true;
		queueMicrotask(dropClock);
	}
	return clockNow;
}

/**
 * Records the fan-out latency of one frame handed to a viewer's transport now, given its receive
 * time as stored in the ring (the low 32 bits of `monotonicMicros()`; 0 = unknown, not recorded).
 */
export function recordFanout(receivedLow32: number): void {
	if (receivedLow32 === 0) return;
	let now = clockUses < CLOCK_REUSE ? clockNow : readClock();
	clockUses++;
	// A frame received after the reused reading (another thread wrote it since): read the clock.
	if ((((now >>> 0) - receivedLow32) | 0) < 0) now = readClock();
	fanoutLatency.record(elapsedMicros(now, receivedLow32));
}

/**
 * The latency of a frame whose receive time was stored as `receivedLow32` (the low 32 bits of
 * `monotonicMicros()`, as an unsigned integer), at `nowMicros`. A receive time later than now
 * (read from a ring another thread wrote after we read the clock) gives 0.
 */
export function elapsedMicros(nowMicros: number, receivedLow32: number): number {
	const d = ((nowMicros >>> 0) - receivedLow32) | 0;
	return Math.max(d, 0);
}
