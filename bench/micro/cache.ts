/**
 * Micro-benchmark of the group cache ring: 1 KB frames written (FRAME_BEGIN + one FRAME_DATA
 * record) and read back by a reader in the same thread. Run directly:
 *   node bench/micro/cache.ts
 * or import runCacheBench() from a suite runner.
 */
import { fileURLToPath } from "node:url";
import b from "benny";
import { Rec, RingReader, RingWriter } from "../../src/cache/index.ts";

const FRAMES_PER_GROUP = 60;

type Track = { writer: RingWriter; seq: number; frames: number };

function track(readers: number): { t: Track; readers: RingReader[] } {
	const writer = RingWriter.create({ bytes: 1 << 20, maxGroups: 16 });
	const t = { writer, seq: 0, frames: 0 };
	writer.openGroup(0, 0);
	const rs: RingReader[] = [];
	for (let i = 0; i < readers; i++) rs.push(new RingReader(writer.buffer));
	return { t, readers: rs };
}

/** One 1 KB frame: FRAME_BEGIN + FRAME_DATA, a new group every FRAMES_PER_GROUP frames. */
function writeFrame(t: Track, frame: Uint8Array): void {
	if (++t.frames === FRAMES_PER_GROUP) {
		t.writer.endGroup(t.seq);
		t.writer.openGroup(++t.seq, 0);
		t.frames = 0;
	}
	t.writer.frameBegin(t.seq, frame.length, 0);
	t.writer.frameData(t.seq, frame);
}

/** Drains a reader, summing payload bytes (a stand-in for copying them to a stream). */
function readAll(reader: RingReader): number {
	let bytes = 0;
	for (;;) {
		const kind = reader.next();
		if (kind === Rec.NONE) return bytes;
		if (kind === Rec.FRAME_DATA) bytes += reader.dataLength;
		else if (kind === Rec.LAPPED) reader.seekLatest();
	}
}

export async function runCacheBench(): Promise<{ name: string; ops: number }[]> {
	const frame = new Uint8Array(1024).fill(7);
	const one = track(1);
	const four = track(4);
	const writeOnly = track(0);
	const batch = track(1);
	const summary = await b.suite(
		"cache ring, 1 KB frames",
		b.add("write 1 frame", () => {
			writeFrame(writeOnly.t, frame);
		}),
		b.add("write 1 frame + 1 reader reads it", () => {
			writeFrame(one.t, frame);
			readAll(one.readers[0]);
		}),
		b.add("write 1 frame + 4 readers read it", () => {
			writeFrame(four.t, frame);
			for (const r of four.readers) readAll(r);
		}),
		b.add("write 64 frames, then 1 reader drains them (ops = frames/64)", () => {
			for (let i = 0; i < 64; i++) writeFrame(batch.t, frame);
			readAll(batch.readers[0]);
		}),
		b.cycle(),
		b.complete(),
	);
	return summary.results.map((r) => ({ name: r.name, ops: Math.round(r.ops) }));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
	const results = await runCacheBench();
	for (const r of results) console.log(`${r.name}: ${r.ops.toLocaleString("en-US")} ops/s`);
}
