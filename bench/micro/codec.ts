/**
 * Micro-benchmarks of the moq-lite wire codecs' hot paths: SUBSCRIBE encode/decode (control plane),
 * group/frame header writes (once per fan-out copy), and FrameParser throughput on 1 KB frames
 * (publisher ingest). Run directly (`node bench/micro/codec.ts`) or call `runCodecBench()`.
 */
import { fileURLToPath } from "node:url";
import b from "benny";
import { Reader } from "../../src/coding/reader.ts";
import { Writer } from "../../src/coding/writer.ts";
import {
	decodeGroupHeader,
	FRAME_HEADER_MAX,
	FrameParser,
	GROUP_STREAM_HEADER_MAX,
	writeFrameHeader,
	writeGroupStreamHeader,
} from "../../src/moq/lite/wire/group.ts";
import { decodeSubscribe, encodeSubscribe, type Subscribe } from "../../src/moq/lite/wire/subscribe.ts";

const FRAMES_PER_BATCH = 64;
const FRAME_BYTES = 1024;
const CHUNK_BYTES = 16 * 1024;

export interface CodecBenchOptions {
	/** Seconds per case (benny's maxTime). */
	maxTime?: number;
}

/** Runs the suite, prints benny's table plus derived frame throughput, and returns benny's summary. */
export async function runCodecBench(opts: CodecBenchOptions = {}) {
	const maxTime = opts.maxTime ?? 2;
	const sub: Subscribe<string> = {
		id: 12345,
		broadcast: "anon/some-broadcast",
		track: "video/hd",
		priority: 128,
		ordered: false,
		maxLatencyMs: 2000,
		startGroup: null,
		endGroup: null,
	};
	const w = new Writer(256);
	encodeSubscribe(w, sub, 5);
	const subBytes = w.finish();
	const r = new Reader(subBytes);

	const scratch = new Uint8Array(GROUP_STREAM_HEADER_MAX + FRAME_HEADER_MAX);
	const groupBytes = Uint8Array.of(0x05, 0x80, 0x00, 0x30, 0x39, 0x07);

	// 64 lite-05 frames of 1 KB, cut into 16 KB chunks like QUIC stream reads.
	const stream = new Writer(FRAMES_PER_BATCH * (FRAME_BYTES + 8));
	for (let i = 0; i < FRAMES_PER_BATCH; i++) {
		const end = writeFrameHeader(scratch, 0, FRAME_BYTES, 33, 5);
		stream.bytes(scratch.subarray(0, end));
		stream.bytes(new Uint8Array(FRAME_BYTES).fill(i));
	}
	const frames = stream.finish();
	const chunks: Uint8Array[] = [];
	for (let p = 0; p < frames.length; p += CHUNK_BYTES) chunks.push(frames.subarray(p, p + CHUNK_BYTES));
	const parser = new FrameParser(5, 1 << 20);
	let sink = 0;
	parser.onFrameBegin = (size) => {
		sink += size;
	};
	parser.onFrameData = (view) => {
		sink += view.length;
	};
	parser.onFrameEnd = () => {
		sink++;
	};

	let seq = 0;
	const summary = await b.suite(
		"moq-lite wire codecs",
		b.configure({ cases: { maxTime, minSamples: 5 } }),
		b.add("SUBSCRIBE encode (v5, reused Writer)", () => {
			w.clear();
			encodeSubscribe(w, sub, 5);
		}),
		b.add("SUBSCRIBE decode (v5)", () => {
			r.reset(subBytes);
			sink += decodeSubscribe(r, 5).id;
		}),
		b.add("GROUP stream header write (00 + GROUP)", () => {
			sink += writeGroupStreamHeader(scratch, 0, 12345, seq++);
		}),
		b.add("GROUP header decode", () => {
			r.reset(groupBytes);
			sink += decodeGroupHeader(r, 5).sequence;
		}),
		b.add("FRAME header write (v5: zigzag delta + size)", () => {
			sink += writeFrameHeader(scratch, 0, FRAME_BYTES, -7, 5);
		}),
		b.add(`FrameParser: ${FRAMES_PER_BATCH} x 1 KB v5 frames in 16 KB chunks`, () => {
			for (const c of chunks) parser.push(c);
		}),
		b.cycle(),
		b.complete(),
	);
	const parse = summary.results[summary.results.length - 1];
	const framesPerSec = parse.ops * FRAMES_PER_BATCH;
	console.log(
		`FrameParser: ${(framesPerSec / 1e6).toFixed(2)} M frames/s, ${((framesPerSec * FRAME_BYTES) / 1e9).toFixed(2)} GB/s of 1 KB frames`,
	);
	if (sink === -1) console.log("unreachable"); // keeps the work observable
	return summary;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
	const maxTime = Number(process.env.BENCH_MAX_TIME ?? 2);
	await runCodecBench({ maxTime });
}
