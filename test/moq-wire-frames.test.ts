import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DecodeError } from "../src/coding/errors.ts";
import { Writer } from "../src/coding/writer.ts";
import { FRAME_TOO_LARGE, PROTOCOL_VIOLATION } from "../src/errors/codes.ts";
import {
	FRAME_HEADER_MAX,
	FrameParser,
	GROUP_STREAM_HEADER_MAX,
	GroupStreamDecoder,
	unzigzag,
	writeFrameHeader,
	writeGroupStreamHeader,
	zigzag,
} from "../src/moq/lite/wire/group.ts";
import type { LiteVersion } from "../src/moq/lite/wire/version.ts";
import { prng } from "./support/prng.ts";

interface Frame {
	ts: number;
	payload: Uint8Array;
}

function payload(n: number, seed: number): Uint8Array {
	const b = new Uint8Array(n);
	for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
	return b;
}

/** Encodes frames (timestamps as deltas on 05) with the relay's own header writers. */
function encodeFrames(frames: Frame[], v: LiteVersion, w = new Writer()): Writer {
	const scratch = new Uint8Array(FRAME_HEADER_MAX);
	let prev = 0;
	for (const f of frames) {
		const end = writeFrameHeader(scratch, 0, f.payload.length, f.ts - prev, v);
		prev = f.ts;
		w.bytes(scratch.subarray(0, end));
		w.bytes(f.payload);
	}
	return w;
}

/** A group stream without its leading `00` type byte (the dispatcher consumes it; the decoder starts after). */
function groupStream(subscribeId: number, sequence: number, frames: Frame[], v: LiteVersion): Uint8Array {
	const scratch = new Uint8Array(GROUP_STREAM_HEADER_MAX);
	const w = new Writer();
	w.bytes(scratch.subarray(0, writeGroupStreamHeader(scratch, 0, subscribeId, sequence)));
	return encodeFrames(frames, v, w).finish().subarray(1);
}

/** Collects parser callbacks into frames (timestamps rebuilt from deltas), checking call order. */
function collector(p: FrameParser) {
	const got: Frame[] = [];
	let open = false;
	let ts = 0;
	let size = 0;
	let parts: Uint8Array[] = [];
	p.onFrameBegin = (n, delta) => {
		assert.ok(!open, "begin inside a frame");
		open = true;
		size = n;
		ts += delta;
		parts = [];
	};
	p.onFrameData = (view) => {
		assert.ok(open, "data outside a frame");
		assert.ok(view.length > 0, "no empty data callbacks");
		parts.push(view.slice());
	};
	p.onFrameEnd = () => {
		assert.ok(open, "end outside a frame");
		open = false;
		const payload = Buffer.concat(parts);
		assert.equal(payload.length, size);
		got.push({ ts, payload: new Uint8Array(payload) });
	};
	return got;
}

const FRAMES_SMALL: Frame[] = [
	{ ts: 0, payload: payload(0, 1) },
	{ ts: 33, payload: payload(1, 2) },
	{ ts: 28, payload: payload(63, 3) },
	{ ts: 2 ** 40, payload: payload(64, 4) },
	{ ts: 5, payload: payload(0, 5) },
	{ ts: 1000, payload: payload(300, 6) },
	{ ts: 2000, payload: payload(1024, 7) },
];

function expected(frames: Frame[], v: LiteVersion): Frame[] {
	// Before lite-05 no timestamps travel: every delta reads as 0.
	return v >= 5 ? frames : frames.map((f) => ({ ts: 0, payload: f.payload }));
}

describe("moq-wire group and frame headers", () => {
	test("writeGroupStreamHeader writes type 0, then GROUP (length 2, subscribe 0, sequence 7: 00 02 00 07), and handles 8-byte ids", () => {
		const buf = new Uint8Array(GROUP_STREAM_HEADER_MAX + 3);
		const end = writeGroupStreamHeader(buf, 3, 0, 7);
		assert.equal(Buffer.from(buf.subarray(3, end)).toString("hex"), "00020007");
		const end2 = writeGroupStreamHeader(buf, 0, 2 ** 53 - 1, 2 ** 53 - 1);
		assert.equal(end2, GROUP_STREAM_HEADER_MAX);
		assert.equal(buf[1], 16);
	});

	test("writeFrameHeader: size only before 05, zigzag delta then size on 05", () => {
		const buf = new Uint8Array(FRAME_HEADER_MAX);
		assert.equal(Buffer.from(buf.subarray(0, writeFrameHeader(buf, 0, 300, -3, 4))).toString("hex"), "412c");
		assert.equal(Buffer.from(buf.subarray(0, writeFrameHeader(buf, 0, 300, -3, 5))).toString("hex"), "05412c");
		assert.equal(writeFrameHeader(buf, 0, 2 ** 53 - 1, -(2 ** 52), 5), 16);
	});

	test("zigzag", () => {
		assert.deepEqual([0, -1, 1, -2, 2].map(zigzag), [0, 1, 2, 3, 4]);
		for (const n of [0, 1, -1, 1000, -1000, 2 ** 31, -(2 ** 31), 2 ** 40 + 3, -(2 ** 52), 2 ** 52 - 1]) {
			assert.equal(unzigzag(zigzag(n)), n);
			assert.ok(zigzag(n) >= 0 && zigzag(n) <= Number.MAX_SAFE_INTEGER);
		}
	});
});

describe("moq-wire FrameParser", () => {
	for (const v of [2, 3, 4, 5] as const) {
		test(`v${v}: a group split at every byte boundary parses the same`, () => {
			const b = groupStream(5, 300, FRAMES_SMALL, v);
			const want = expected(FRAMES_SMALL, v);
			for (let i = 0; i <= b.length; i++) {
				const d = new GroupStreamDecoder(v, 4096);
				const got = collector(d);
				const headers: number[][] = [];
				d.onHeader = (id, seq) => headers.push([id, seq]);
				d.push(b.subarray(0, i));
				d.push(b.subarray(i));
				d.finish();
				assert.deepEqual(headers, [[5, 300]], `split at ${i}`);
				assert.deepEqual(got, want, `split at ${i}`);
			}
		});

		test(`v${v}: byte-by-byte and random chunkings, with offsets`, () => {
			const b = groupStream(2 ** 40, 2 ** 33, FRAMES_SMALL, v);
			const want = expected(FRAMES_SMALL, v);
			const d = new GroupStreamDecoder(v, 4096);
			const got = collector(d);
			for (let i = 0; i < b.length; i++) d.push(b.subarray(i, i + 1));
			d.finish();
			assert.deepEqual(got, want);
			const rnd = prng(v);
			for (let iter = 0; iter < 200; iter++) {
				d.reset();
				const again = collector(d);
				let p = 0;
				while (p < b.length) {
					const n = 1 + Math.floor(rnd() * 40);
					// Pass a bigger chunk with a start offset, like a dispatcher that consumed the type byte.
					const pad = Math.floor(rnd() * 3);
					const chunk = new Uint8Array(pad + Math.min(n, b.length - p));
					chunk.set(b.subarray(p, p + n), pad);
					d.push(chunk, pad);
					p += n;
				}
				d.finish();
				assert.deepEqual(again, want, `iteration ${iter}`);
			}
		});
	}

	test("a FETCH reply (05 frames, no header) through FrameParser, split everywhere", () => {
		const b = encodeFrames(FRAMES_SMALL, 5).finish();
		for (let i = 0; i <= b.length; i++) {
			const p = new FrameParser(5, 4096);
			const got = collector(p);
			p.push(b.subarray(0, i));
			p.push(b.subarray(i));
			p.finish();
			assert.deepEqual(got, FRAMES_SMALL, `split at ${i}`);
		}
	});

	test("large frames arrive as several views, no copies", () => {
		const big: Frame[] = [{ ts: 7, payload: payload(70000, 9) }];
		const b = encodeFrames(big, 5).finish();
		const p = new FrameParser(5, 1 << 20);
		const got = collector(p);
		const views: Uint8Array[] = [];
		const inner = p.onFrameData;
		p.onFrameData = (view) => {
			views.push(view);
			inner?.(view);
		};
		for (let i = 0; i < b.length; i += 16384) p.push(b.subarray(i, i + 16384));
		p.finish();
		assert.deepEqual(got, big);
		assert.equal(views.length, 5);
		assert.equal(views[1].buffer, b.buffer, "views share the pushed chunk's memory");
	});

	test("a frame above maxFrameBytes fails with 27 at its header, before any data", () => {
		const frames: Frame[] = [
			{ ts: 0, payload: payload(1000, 1) },
			{ ts: 1, payload: payload(1001, 2) },
		];
		for (const v of [4, 5] as const) {
			const b = encodeFrames(frames, v).finish();
			const p = new FrameParser(v, 1000);
			const got = collector(p);
			let data = 0;
			const inner = p.onFrameData;
			p.onFrameData = (view) => {
				data += view.length;
				inner?.(view);
			};
			// Just the first frame and the second header.
			const cut = 1002 + (v === 5 ? 2 : 0) + (v === 5 ? 1 : 0) + 2;
			assert.throws(
				() => p.push(b.subarray(0, cut)),
				(e) => e instanceof DecodeError && e.code === FRAME_TOO_LARGE,
			);
			assert.equal(got.length, 1);
			assert.equal(data, 1000);
			// It stays failed.
			assert.throws(
				() => p.push(b.subarray(cut)),
				(e) => e instanceof DecodeError && e.code === FRAME_TOO_LARGE,
			);
			assert.throws(
				() => p.finish(),
				(e) => e instanceof DecodeError && e.code === FRAME_TOO_LARGE,
			);
		}
	});

	test("a FIN inside a frame or header is a violation; at a boundary it is clean", () => {
		const b = groupStream(1, 2, FRAMES_SMALL.slice(0, 3), 5);
		for (let i = 0; i <= b.length; i++) {
			const d = new GroupStreamDecoder(5, 4096);
			collector(d);
			d.push(b.subarray(0, i));
			// Frame boundaries after the 3-byte GROUP message: 3, 5 (after the empty frame), 9 (delta 33
			// zigzags to 66, a 2-byte varint), end.
			const boundary = i === 3 || i === 5 || i === 9 || i === b.length;
			if (boundary) {
				assert.ok(d.atBoundary && d.hasHeader, `boundary at ${i}`);
				d.finish();
			} else {
				assert.throws(
					() => d.finish(),
					(e) => e instanceof DecodeError && e.code === PROTOCOL_VIOLATION,
					`cut at ${i}`,
				);
			}
		}
	});

	test("bad group headers and oversized varints are violations", () => {
		const bad = (hex: string, v: LiteVersion = 5) => {
			const d = new GroupStreamDecoder(v, 4096);
			collector(d);
			const b = Uint8Array.from(Buffer.from(hex, "hex"));
			assert.throws(
				() => {
					d.push(b);
					d.finish();
				},
				(e) => e instanceof DecodeError && e.code === PROTOCOL_VIOLATION,
				hex,
			);
		};
		bad("11"); // declared header length 17 > 16
		bad("030007" + "00"); // trailing byte inside the header
		bad("0100"); // header shorter than its two fields
		bad("09c0200000000000000001"); // subscribe id 2^53
		bad("0200010020"); // frame of 0 bytes ok, then a size of 32 that never arrives
		bad("020001" + "c020000000000000"); // v5 delta 2^53
		bad("020001" + "00c020000000000000", 5); // v5 size 2^53
	});

	test("reset() makes a parser reusable", () => {
		const p = new FrameParser(4, 10);
		collector(p);
		assert.throws(() => p.push(Uint8Array.of(11)));
		p.reset();
		const got = collector(p);
		p.push(Uint8Array.of(2, 0xaa, 0xbb));
		p.finish();
		assert.deepEqual(got, [{ ts: 0, payload: Uint8Array.of(0xaa, 0xbb) }]);
	});
});
