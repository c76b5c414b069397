/**
 * The fan-out batch (src/moq/fanout.ts) on real rings: viewers at the same frame share one staged
 * entry and one SharedWriter call; what a writer does not take falls back to the stream's own
 * write; a throwing write faults its owner alone; a frame too large to stage is left to the caller;
 * a ring overwritten under a viewer is reported as a lap.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Rec, RingReader, RingWriter } from "../src/cache/index.ts";
import { FANOUT_MAX_FRAME, FrameFanout } from "../src/moq/fanout.ts";
import type { SharedWriter, TransportStream } from "../src/transport/types.ts";

/** A stream that records its writes (only write() is used by the batch). */
class Sink {
	readonly writes: Uint8Array[] = [];
	throws = false;
	write(data: Uint8Array): void {
		if (this.throws) throw new Error("injected write failure");
		this.writes.push(data.slice());
	}
}
const asStream = (s: Sink) => s as unknown as TransportStream;

/** A SharedWriter that takes the streams `accept` says, recording each call. */
class FakeWriter implements SharedWriter {
	readonly calls: { count: number; data: Uint8Array; sinks: Sink[] }[] = [];
	accept: (sink: Sink) => boolean = () => true;
	writeAll(streams: readonly TransportStream[], count: number, data: Uint8Array, taken: Uint8Array): void {
		const sinks = streams.slice(0, count) as unknown as Sink[];
		this.calls.push({ count, data: data.slice(), sinks });
		for (let i = 0; i < count; i++) {
			if (this.accept(sinks[i])) {
				sinks[i].writes.push(data.slice());
				taken[i] = 1;
			}
		}
	}
}

class Owner {
	faults: unknown[] = [];
	fault(err: unknown): void {
		this.faults.push(err);
	}
}

/** A ring holding group 0 with one frame of `body` in `chunks` records, and `n` readers at its first FRAME_DATA. */
function ringWithFrame(
	body: Uint8Array,
	chunks: number[],
	n: number,
	bytes = 1 << 20,
): { w: RingWriter; readers: RingReader[] } {
	const w = RingWriter.create({ bytes, maxFrameBytes: Math.max(body.length, 1024) });
	w.openGroup(0, 0);
	assert.ok(w.frameBegin(0, body.length, 1000));
	let at = 0;
	for (const c of chunks) {
		assert.ok(w.frameData(0, body.subarray(at, at + c)));
		at += c;
	}
	const readers = Array.from({ length: n }, () => {
		const r = new RingReader(w.buffer);
		assert.equal(r.next(), Rec.GROUP_OPEN);
		assert.equal(r.next(), Rec.FRAME_BEGIN);
		assert.equal(r.next(), Rec.FRAME_DATA);
		return r;
	});
	return { w, readers };
}

const pattern = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + 7) & 0xff);

describe("fan-out batch", () => {
	test("viewers at one frame share one entry and one writer call; the frame is gathered once", () => {
		const body = pattern(5000);
		const { readers } = ringWithFrame(body, [1300, 1300, 1300, 1100], 4);
		const fanout = new FrameFanout();
		const writer = new FakeWriter();
		const sinks = readers.map(() => new Sink());
		const owner = new Owner();
		const from = readers[0].dataOffset - readers[0].frameHeaderBytes;
		const header = readers[0].bytes.slice(from, readers[0].dataOffset);
		for (const [i, r] of readers.entries()) {
			assert.equal(fanout.stage(r, asStream(sinks[i]), writer, from, owner), header.length + body.length);
		}
		// Every reader stepped over the frame's four records to the same place.
		const end = readers[0].recordPosition;
		for (const r of readers) assert.equal(r.recordPosition, end);
		assert.equal(writer.calls.length, 0, "nothing written before the round ends");
		fanout.flush();
		assert.equal(writer.calls.length, 1);
		assert.equal(writer.calls[0].count, 4);
		const expected = new Uint8Array([...header, ...body]);
		assert.deepEqual(writer.calls[0].data, expected);
		for (const s of sinks) assert.deepEqual(s.writes, [expected]);
		assert.equal(fanout.calls, 1);
		assert.equal(fanout.streams, 4);
		assert.equal(owner.faults.length, 0);
	});

	test("another wire header (02–04 against 05) is another entry", () => {
		const body = pattern(900);
		const { readers } = ringWithFrame(body, [900], 2);
		const fanout = new FrameFanout();
		const writer = new FakeWriter();
		const [a, b] = [new Sink(), new Sink()];
		const owner = new Owner();
		const r05 = readers[0];
		const r03 = readers[1];
		fanout.stage(r05, asStream(a), writer, r05.dataOffset - r05.frameHeaderBytes, owner);
		fanout.stage(r03, asStream(b), writer, r03.dataOffset - r03.sizeHeaderBytes, owner);
		fanout.flush();
		assert.equal(writer.calls.length, 2);
		assert.deepEqual(a.writes[0].subarray(a.writes[0].length - 900), body);
		assert.equal(a.writes[0].length - b.writes[0].length, r05.frameHeaderBytes - r05.sizeHeaderBytes);
	});

	test("a stream the writer does not take is written on its own; a throwing one faults its owner alone", () => {
		const body = pattern(700);
		const { readers } = ringWithFrame(body, [700], 3);
		const fanout = new FrameFanout();
		const writer = new FakeWriter();
		const sinks = [new Sink(), new Sink(), new Sink()];
		const owners = [new Owner(), new Owner(), new Owner()];
		writer.accept = (s) => s === sinks[0];
		sinks[2].throws = true;
		const from = readers[0].dataOffset - readers[0].frameHeaderBytes;
		for (const [i, r] of readers.entries()) fanout.stage(r, asStream(sinks[i]), writer, from, owners[i]);
		fanout.flush();
		assert.equal(sinks[0].writes.length, 1, "taken by the writer");
		assert.equal(sinks[1].writes.length, 1, "written on its own");
		assert.deepEqual(sinks[1].writes[0], sinks[0].writes[0]);
		assert.equal(sinks[2].writes.length, 0);
		assert.deepEqual(
			owners.map((o) => o.faults.length),
			[0, 0, 1],
		);
	});

	test("a frame too large to stage is left to the caller, the reader unmoved", () => {
		const size = FANOUT_MAX_FRAME + 1;
		const body = pattern(size);
		const { readers } = ringWithFrame(body, [60_000, size - 60_000], 1, 4 << 20);
		const fanout = new FrameFanout();
		const r = readers[0];
		const at = r.recordPosition;
		assert.equal(fanout.stage(r, asStream(new Sink()), new FakeWriter(), r.dataOffset, new Owner()), -2);
		assert.equal(r.recordPosition, at);
	});

	test("a viewer whose records the writer overwrote before it joined is told so (a lap)", () => {
		const body = pattern(3000);
		const { w, readers } = ringWithFrame(body, [1500, 1500], 2, 16 * 1024);
		const fanout = new FrameFanout();
		const writer = new FakeWriter();
		const from = readers[0].dataOffset - readers[0].frameHeaderBytes;
		assert.ok(fanout.stage(readers[0], asStream(new Sink()), writer, from, new Owner()) > 0);
		// The writer goes round the ring before the second viewer gets its turn.
		for (let g = 1; g < 12; g++) {
			w.openGroup(g, 0);
			w.frameBegin(g, 3000, 0);
			w.frameData(g, body);
		}
		assert.equal(fanout.stage(readers[1], asStream(new Sink()), writer, from, new Owner()), -1);
		fanout.flush();
		assert.equal(writer.calls.length, 1, "the first viewer's copy was taken before the writer came round");
	});
});
