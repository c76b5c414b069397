/**
 * A ring handed from one writer to another (a cluster route moved to a session on another worker):
 * the reader keeps its position and reads on, the open group ends aborted, the new writer continues
 * at the same position, a group the old writer already had is refused, and the old writer writes
 * nothing more. Also across real threads: the adopting writer in a worker thread.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Worker } from "node:worker_threads";
import { Rec, RingReader, RingWriter } from "../src/cache/index.ts";

type Event = { kind: number; seq: number; code?: number; data?: number[] };

function drain(reader: RingReader): Event[] {
	const out: Event[] = [];
	for (;;) {
		const kind = reader.next();
		if (kind === Rec.NONE) return out;
		const e: Event = { kind, seq: reader.seq };
		if (kind === Rec.GROUP_ABORT || kind === Rec.TRACK_ABORT) e.code = reader.code;
		if (kind === Rec.FRAME_DATA) e.data = [...reader.data];
		out.push(e);
	}
}

function writeGroup(w: RingWriter, seq: number, frames: number[][], end = true): void {
	assert.equal(w.openGroup(seq, 1000 + seq), true, `open ${seq}`);
	for (const f of frames) {
		assert.equal(w.frameBegin(seq, f.length, 1000 + seq), true);
		assert.equal(w.frameData(seq, new Uint8Array(f)), true);
	}
	if (end) assert.equal(w.endGroup(seq), true);
}

describe("ring hand-over between writers", () => {
	test("the reader reads on across the hand-over; the open group ends aborted; duplicates are refused", () => {
		const a = RingWriter.create({ bytes: 64 * 1024, maxGroups: 8 });
		const reader = new RingReader(a.buffer);
		writeGroup(a, 1, [[1, 1]]);
		writeGroup(
			a,
			2,
			[
				[2, 2],
				[2, 3],
			],
			false,
		); // still open when the route moves
		const before = drain(reader);
		assert.deepEqual(
			before.map((e) => [e.kind, e.seq]),
			[
				[Rec.GROUP_OPEN, 1],
				[Rec.FRAME_BEGIN, 1],
				[Rec.FRAME_DATA, 1],
				[Rec.GROUP_END, 1],
				[Rec.GROUP_OPEN, 2],
				[Rec.FRAME_BEGIN, 2],
				[Rec.FRAME_DATA, 2],
				[Rec.FRAME_BEGIN, 2],
				[Rec.FRAME_DATA, 2],
			],
		);

		const h = a.handOver(24);
		assert.equal(a.handedOver, true);
		// The old writer (its route's sessions still closing) writes nothing more, and does not throw.
		assert.equal(a.frameBegin(2, 1, 0), false);
		assert.equal(a.openGroup(9, 0), false);
		a.endTrack(10);
		a.abortTrack(1);

		const b = RingWriter.adopt(a.buffer, h);
		assert.equal(b.latestSeq, 2, "the new writer knows the latest group from the ring");
		assert.equal(b.bytesWritten, a.bytesWritten, "and continues at the same position");
		// The new route's upstream may start with a group the ring already has: refused as garbage.
		assert.throws(() => b.openGroup(2, 0), /already in the cache/);
		writeGroup(b, 3, [[3, 3, 3]]);
		writeGroup(b, 4, [[4]]);
		b.endTrack(5);

		const after = drain(reader);
		assert.deepEqual(after[0], { kind: Rec.GROUP_ABORT, seq: 2, code: 24 }, "group 2 aborted by the hand-over");
		assert.deepEqual(
			after.slice(1).map((e) => [e.kind, e.seq]),
			[
				[Rec.GROUP_OPEN, 3],
				[Rec.FRAME_BEGIN, 3],
				[Rec.FRAME_DATA, 3],
				[Rec.GROUP_END, 3],
				[Rec.GROUP_OPEN, 4],
				[Rec.FRAME_BEGIN, 4],
				[Rec.FRAME_DATA, 4],
				[Rec.GROUP_END, 4],
				[Rec.TRACK_END, 5],
			],
		);
		assert.deepEqual(after.find((e) => e.kind === Rec.FRAME_DATA)?.data, [3, 3, 3]);
		// A new reader seeks to the latest group the new writer opened.
		const late = new RingReader(a.buffer);
		late.seekLatest();
		assert.equal(late.next(), Rec.GROUP_OPEN);
		assert.equal(late.seq, 4);
	});

	test("groups the old writer refused stay refused quietly after the hand-over", () => {
		const a = RingWriter.create({ bytes: 64 * 1024, maxGroups: 2 });
		writeGroup(a, 10, [[1]], false);
		writeGroup(a, 11, [[1]], false);
		// Both slots hold open groups newer than 5: group 5 is refused (remembered as dropped).
		assert.equal(a.openGroup(5, 0), false);
		const b = RingWriter.adopt(a.buffer, a.handOver(24));
		// A late frame of the refused group: dropped quietly (false), not garbage (a throw).
		assert.equal(b.frameBegin(5, 1, 0), false);
	});

	test("a ring of another version or garbage is refused", () => {
		const sab = new SharedArrayBuffer(4096);
		assert.throws(
			() =>
				RingWriter.adopt(sab, {
					maxFrameBytes: 1,
					dropped: [],
					records: 0,
					groupsOpened: 0,
					groupsEvicted: 0,
					truncations: 0,
				}),
			/not a ring/,
		);
	});

	test("across threads: a worker adopts the ring and writes on; this thread reads it all", async () => {
		const a = RingWriter.create({ bytes: 64 * 1024, maxGroups: 8 });
		const reader = new RingReader(a.buffer);
		writeGroup(a, 1, [[1, 2, 3]]);
		assert.equal(drain(reader).length, 4);
		const h = a.handOver(24);
		const src = `
			const { workerData, parentPort } = require("node:worker_threads");
			import(workerData.url).then(({ RingWriter }) => {
				const w = RingWriter.adopt(workerData.sab, workerData.h);
				for (let seq = 2; seq <= 50; seq++) {
					w.openGroup(seq, seq);
					w.frameBegin(seq, 2, seq);
					w.frameData(seq, new Uint8Array([seq & 255, 7]));
					w.endGroup(seq);
				}
				w.endTrack(51);
				parentPort.postMessage("done");
			});`;
		const url = new URL("../src/cache/ring-writer.ts", import.meta.url).href;
		const worker = new Worker(src, { eval: true, workerData: { url, sab: a.buffer, h } });
		await new Promise<void>((resolve, reject) => {
			worker.once("message", () => resolve());
			worker.once("error", reject);
		});
		await worker.terminate();
		const events = drain(reader);
		const groups = events.filter((e) => e.kind === Rec.GROUP_END).map((e) => e.seq);
		assert.deepEqual(
			groups,
			Array.from({ length: 49 }, (_, i) => i + 2),
		);
		const data = events.filter((e) => e.kind === Rec.FRAME_DATA).map((e) => e.data);
		assert.deepEqual(data[48], [50, 7]);
		assert.equal(events.at(-1)?.kind, Rec.TRACK_END);
	});
});
