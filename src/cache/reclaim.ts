/**
 * Returns the memory of ended tracks' rings promptly.
 *
 * A ring is one SharedArrayBuffer, megabytes of memory behind a JS object of a few dozen bytes, and
 * every worker that reads it holds an object of its own for it (a SharedArrayBuffer posted to a
 * worker is a new object there). The memory is freed once every one of those objects has been
 * collected. V8 schedules full collections by what a thread allocates, and a relay worker allocates
 * little on its JS heap, while a ring it only reads was not allocated by it at all: measured with 2
 * workers and 80 broadcasts of 0.8 s each, RSS rose 29 MB (0.3 MB per broadcast, still rising) with
 * the ended rings waiting for V8, and 6 MB (flat after the first rounds) with this. So each thread
 * counts the ring bytes it let go of (a track it wrote closed, a remote track it read closed) and
 * asks V8 for a full collection once enough is waiting, or after a while once anything is, at most
 * once a second (see also src/quic/reclaim.ts, the same for dropped QUIC handshakes).
 */
import { gcFunction } from "../metrics/collection.ts";
import { Ctl, dataOffset, INTEREST_WORDS, pairValue } from "./layout.ts";

/**
 * When collections come. `thresholdBytes` of ring memory waiting make one come `soonMs` later (the
 * delay lets the track's last viewers read its final records first: they hold the ring until then);
 * less makes one come `laterMs` after the first ring let go of; never more often than every
 * `minIntervalMs` (a full collection pauses the worker for a few ms to tens of ms). Tests shorten them.
 */
export const reclaimTiming = {
	thresholdBytes: 32 * 2 ** 20,
	soonMs: 1000,
	laterMs: 10_000,
	minIntervalMs: 1000,
};

let waiting = 0;
let lastAt = Number.NEGATIVE_INFINITY;
let timer: ReturnType<typeof setTimeout> | null = null;
let timerDue = Number.POSITIVE_INFINITY;
/** Collections this module asked for, and the ring bytes they were for (tests and the GC probe read it). */
export const reclaimStats = { collections: 0, bytes: 0 };

const run = (): void => {
	timer = null;
	timerDue = Number.POSITIVE_INFINITY;
	const gc = gcFunction();
	if (gc === null || waiting === 0) return;
	reclaimStats.collections++;
	reclaimStats.bytes += waiting;
	waiting = 0;
	lastAt = performance.now();
	// "async": V8 runs it as a task of its own rather than inside this call.
	gc({ type: "major", execution: "async" });
};

/**
 * This thread let go of a ring (the track that wrote it, or read it from another worker, closed).
 * What counts is the part of the ring in memory: a ring's pages are backed only once written
 * (ring-writer.ts allocates it outside malloc), so a short broadcast costs, and waits on, little.
 */
export function ringReleased(buffer: SharedArrayBuffer): void {
	const bytes = residentBytes(buffer);
	if (!(bytes > 0)) return;
	waiting += bytes;
	const t = reclaimTiming;
	const now = performance.now();
	const due = Math.max(now + (waiting >= t.thresholdBytes ? t.soonMs : t.laterMs), lastAt + t.minIntervalMs);
	if (timer !== null && timerDue <= due) return;
	if (timer !== null) clearTimeout(timer);
	timerDue = due;
	timer = setTimeout(run, due - now);
	timer.unref();
}

/** The bytes of a ring that were ever written: its header and index, and its data region up to the head. */
export function residentBytes(buffer: SharedArrayBuffer): number {
	const ctl = new Int32Array(buffer, 0, Ctl.INTEREST + INTEREST_WORDS);
	// An estimate: a torn read of the two words only misjudges when the next collection comes.
	const written = pairValue(Atomics.load(ctl, Ctl.HEAD_HI), Atomics.load(ctl, Ctl.HEAD_LO));
	return Math.min(buffer.byteLength, dataOffset(ctl[Ctl.MAX_GROUPS]) + written);
}
