import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { dataOffset } from "../src/cache/layout.ts";
import { reclaimStats, reclaimTiming, residentBytes, ringReleased } from "../src/cache/reclaim.ts";
import { RingWriter } from "../src/cache/ring-writer.ts";
import { gcFunction } from "../src/metrics/collection.ts";
import { sleep, until } from "./support/wait.ts";

/**
 * src/cache/reclaim.ts: a thread that lets go of rings has V8 collect them soon, instead of waiting
 * for its JS allocation (small in a relay worker) to call for a full collection.
 */

const DEFAULT_TIMING = { ...reclaimTiming };

/** A ring with `written` bytes of frames in it, dropped by the caller once released. */
function ring(written: number): RingWriter {
	const w = RingWriter.create({ bytes: 1 << 20, maxGroups: 16 });
	const frame = new Uint8Array(1000).fill(1);
	w.openGroup(0, 0);
	for (let n = 0; n < written; n += 1000 + 32 + 16) {
		w.frameBegin(0, frame.length, 0);
		w.frameData(0, frame);
	}
	return w;
}

describe("ring reclaim", () => {
	afterEach(() => Object.assign(reclaimTiming, DEFAULT_TIMING));

	it("counts what a ring holds in memory: its header and index, and the data written", () => {
		const empty = RingWriter.create({ bytes: 1 << 20, maxGroups: 16 });
		assert.equal(residentBytes(empty.buffer), dataOffset(16));
		const w = ring(100_000);
		assert.equal(residentBytes(w.buffer), dataOffset(16) + w.bytesWritten);
		const full = ring(3 << 20);
		assert.equal(residentBytes(full.buffer), full.buffer.byteLength, "a ring that wrapped holds all of it");
	});

	it("a ring let go of is collected without anyone calling gc()", async () => {
		Object.assign(reclaimTiming, { thresholdBytes: 256 * 1024, soonMs: 20, minIntervalMs: 0 });
		let collected = false;
		const registry = new FinalizationRegistry(() => {
			collected = true;
		});
		const before = reclaimStats.collections;
		(() => {
			const w = ring(512 * 1024);
			registry.register(w.buffer, 0);
			// Old enough to be out of the young generation, as a ring of a broadcast watched for a while is.
			gcFunction()?.({ type: "major", execution: "sync" });
			ringReleased(w.buffer);
		})();
		await until(() => collected, 3000, "the ring's buffer to be collected");
		assert.equal(reclaimStats.collections, before + 1);
	});

	it("one collection for rings let go of together, and none sooner than the interval", async () => {
		Object.assign(reclaimTiming, { thresholdBytes: 256 * 1024, soonMs: 20, laterMs: 60_000, minIntervalMs: 400 });
		const before = reclaimStats.collections;
		for (let i = 0; i < 4; i++) ringReleased(ring(300_000).buffer);
		await until(() => reclaimStats.collections === before + 1, 2000, "one collection");
		const at = performance.now();
		ringReleased(ring(300_000).buffer);
		await until(() => reclaimStats.collections === before + 2, 2000, "the next collection");
		assert.ok(performance.now() - at >= 300, "the next one waited for the interval");
		// Below the threshold it waits `laterMs` (a minute here): nothing within the test.
		ringReleased(ring(10_000).buffer);
		await sleep(600);
		assert.equal(reclaimStats.collections, before + 2);
	});
});
