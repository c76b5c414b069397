import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CacheAbort, CacheBudget, CacheError, Doorbell, Rec, RingReader, RingWriter } from "../src/cache/index.ts";
import { Ctl, pairValue, storePair } from "../src/cache/layout.ts";

type Event = { kind: number; seq: number; size?: number; ts?: number; code?: number; data?: Uint8Array };

/** Reads everything available into plain objects (tests only; the reader itself allocates nothing). */
function drain(reader: RingReader, limit = 1_000_000): Event[] {
	const out: Event[] = [];
	for (let i = 0; i < limit; i++) {
		const kind = reader.next();
		if (kind === Rec.NONE) return out;
		const e: Event = { kind, seq: reader.seq };
		if (kind === Rec.GROUP_OPEN) e.ts = reader.timestamp;
		if (kind === Rec.FRAME_BEGIN) {
			e.size = reader.size;
			e.ts = reader.timestamp;
		}
		if (kind === Rec.FRAME_DATA) e.data = reader.data.slice();
		if (kind === Rec.GROUP_ABORT || kind === Rec.TRACK_ABORT) e.code = reader.code;
		out.push(e);
		if (kind === Rec.LAPPED) return out;
	}
	throw new Error("reader never caught up");
}

/** Reassembles complete frames per group from events. */
function frames(events: Event[]): Map<number, Uint8Array[]> {
	const groups = new Map<number, Uint8Array[]>();
	const pending = new Map<number, { size: number; parts: Uint8Array[] }>();
	for (const e of events) {
		if (e.kind === Rec.GROUP_OPEN) groups.set(e.seq, []);
		else if (e.kind === Rec.FRAME_BEGIN) pending.set(e.seq, { size: e.size!, parts: [] });
		else if (e.kind === Rec.FRAME_DATA) pending.get(e.seq)!.parts.push(e.data!);
		if (e.kind === Rec.FRAME_DATA || e.kind === Rec.FRAME_BEGIN) {
			const p = pending.get(e.seq)!;
			const got = p.parts.reduce((n, b) => n + b.length, 0);
			if (got === p.size) {
				groups.get(e.seq)!.push(new Uint8Array(Buffer.concat(p.parts)));
				pending.delete(e.seq);
			}
		}
	}
	return groups;
}

function rng(seed: number): () => number {
	let x = seed >>> 0 || 1;
	return () => {
		x ^= x << 13;
		x ^= x >>> 17;
		x ^= x << 5;
		return (x >>> 0) / 4294967296;
	};
}

function payload(size: number, seed: number): Uint8Array {
	const r = rng(seed);
	const b = new Uint8Array(size);
	for (let i = 0; i < size; i++) b[i] = (r() * 256) | 0;
	return b;
}

/** Writes `frame` as FRAME_BEGIN + FRAME_DATA records of random chunk sizes. */
function writeFrame(w: RingWriter, seq: number, frame: Uint8Array, rand: () => number, maxChunk: number): boolean {
	if (!w.frameBegin(seq, frame.length, 0)) return false;
	let at = 0;
	while (at < frame.length) {
		const n = Math.min(frame.length - at, 1 + Math.floor(rand() * maxChunk));
		if (!w.frameData(seq, frame.subarray(at, at + n))) return false;
		at += n;
	}
	return true;
}

describe("ring records", () => {
	test("round trip of every record kind", () => {
		const w = RingWriter.create({ bytes: 8192, maxGroups: 4 });
		const r = new RingReader(w.buffer);
		assert.equal(r.next(), Rec.NONE);
		const seqMax = Number.MAX_SAFE_INTEGER - 1;
		assert.ok(w.openGroup(7, 1000.5));
		assert.ok(w.frameBegin(7, 5, 1001));
		assert.ok(w.frameData(7, Uint8Array.of(1, 2, 3)));
		assert.ok(w.frameData(7, Uint8Array.of(4, 5)));
		assert.ok(w.frameBegin(7, 0, 1002));
		assert.ok(w.endGroup(7));
		assert.ok(w.openGroup(seqMax, 2000));
		assert.ok(w.abortGroup(seqMax, 42));
		w.endTrack(seqMax + 1);
		assert.deepEqual(drain(r), [
			{ kind: Rec.GROUP_OPEN, seq: 7, ts: 1000.5 },
			{ kind: Rec.FRAME_BEGIN, seq: 7, size: 5, ts: 1001 },
			{ kind: Rec.FRAME_DATA, seq: 7, data: Uint8Array.of(1, 2, 3) },
			{ kind: Rec.FRAME_DATA, seq: 7, data: Uint8Array.of(4, 5) },
			{ kind: Rec.FRAME_BEGIN, seq: 7, size: 0, ts: 1002 },
			{ kind: Rec.GROUP_END, seq: 7 },
			{ kind: Rec.GROUP_OPEN, seq: seqMax, ts: 2000 },
			{ kind: Rec.GROUP_ABORT, seq: seqMax, code: 42 },
			{ kind: Rec.TRACK_END, seq: seqMax + 1 },
		]);
		assert.equal(r.next(), Rec.NONE);
		assert.equal(w.latestSeq, seqMax);
		assert.equal(w.groupsOpened, 2);
		assert.ok(w.bytesWritten > 0 && w.records === 9);
		assert.throws(() => w.openGroup(1, 0), /track already ended/);
	});

	test("track abort, and a reader joining after the track ended still sees the end", () => {
		const w = RingWriter.create({ bytes: 4096 });
		w.openGroup(1, 0);
		w.frameBegin(1, 10, 0);
		w.abortTrack(9);
		const r = new RingReader(w.buffer);
		// The aborted group 1 is still the latest: the new reader starts at it.
		assert.deepEqual(
			drain(r).map((e) => [e.kind, e.seq, e.code]),
			[
				[Rec.GROUP_OPEN, 1, undefined],
				[Rec.FRAME_BEGIN, 1, undefined],
				[Rec.TRACK_ABORT, 0, 9],
			],
		);
		const w2 = RingWriter.create({ bytes: 4096 });
		w2.endTrack(0);
		const r2 = new RingReader(w2.buffer);
		assert.equal(r2.next(), Rec.TRACK_END);
		assert.equal(r2.next(), Rec.NONE);
	});

	test("interleaved groups with chunked frames reassemble byte-exact", () => {
		const w = RingWriter.create({ bytes: 1 << 20, maxGroups: 8 });
		const r = new RingReader(w.buffer);
		const rand = rng(7);
		const sent = new Map<number, Uint8Array[]>();
		const cursors = [0, 0, 0];
		for (const seq of [10, 11, 12]) {
			w.openGroup(seq, seq);
			sent.set(seq, []);
		}
		// Round-robin chunks of three groups' frames, like three concurrent QUIC streams.
		for (let frame = 0; frame < 6; frame++) {
			const bodies = [10, 11, 12].map((seq) => payload(1 + Math.floor(rand() * 20000), seq * 100 + frame));
			[10, 11, 12].forEach((seq, i) => {
				w.frameBegin(seq, bodies[i].length, 0);
				sent.get(seq)!.push(bodies[i]);
				cursors[i] = 0;
			});
			let left = true;
			while (left) {
				left = false;
				[10, 11, 12].forEach((seq, i) => {
					const body = bodies[i];
					if (cursors[i] >= body.length) return;
					const n = Math.min(body.length - cursors[i], 1 + Math.floor(rand() * 1500));
					w.frameData(seq, body.subarray(cursors[i], cursors[i] + n));
					cursors[i] += n;
					left = true;
				});
			}
		}
		// One chunk larger than a record payload is split by the writer, transparently.
		const big = payload(200_000, 99);
		w.frameBegin(12, big.length, 0);
		w.frameData(12, big);
		sent.get(12)!.push(big);
		for (const seq of [11, 10, 12]) w.endGroup(seq);
		const events = drain(r);
		assert.deepEqual(frames(events), sent);
		assert.deepEqual(
			events.filter((e) => e.kind === Rec.GROUP_END).map((e) => e.seq),
			[11, 10, 12],
		);
	});

	test("wrap-around: many times the ring size, random chunks, byte-exact", () => {
		const w = RingWriter.create({ bytes: 16384, maxGroups: 4 });
		const r = new RingReader(w.buffer);
		const rand = rng(3);
		const sent = new Map<number, Uint8Array[]>();
		const got: Event[] = [];
		for (let seq = 0; seq < 200; seq++) {
			assert.ok(w.openGroup(seq, seq));
			sent.set(seq, []);
			for (let f = 0; f < 4; f++) {
				const body = payload(Math.floor(rand() * 3000), seq * 10 + f);
				assert.ok(writeFrame(w, seq, body, rand, 700));
				sent.get(seq)!.push(body);
				got.push(...drain(r)); // the reader keeps up: never lapped
			}
			w.endGroup(seq);
		}
		got.push(...drain(r));
		assert.ok(w.bytesWritten > 50 * w.capacity, `only ${w.bytesWritten} bytes written`);
		assert.equal(r.laps, 0);
		assert.deepEqual(frames(got), sent);
	});

	test("positions past 2^32 keep their high word (seqlock pair)", () => {
		const ctl = new Int32Array(new SharedArrayBuffer(128));
		for (const v of [0, 2 ** 32 - 8, 2 ** 32, 2 ** 32 + 8, 2 ** 40 + 123456, Number.MAX_SAFE_INTEGER]) {
			storePair(ctl, Ctl.HEAD_HI, v);
			assert.equal(pairValue(ctl[Ctl.HEAD_HI], ctl[Ctl.HEAD_LO]), v);
		}
		assert.equal(ctl[Ctl.POS_SEQ] % 2, 0);
	});

	test("a log crossing 2^32 and 2^40: readers follow the high word, laps still detected", () => {
		for (const base of [2 ** 32, 2 ** 40]) {
			const w = RingWriter.create({ bytes: 8192, maxGroups: 4, startPosition: base - 3 * 8192 - 40 });
			const r = new RingReader(w.buffer);
			const sleeper = new RingReader(w.buffer);
			const rand = rng(base % 1000);
			const sent = new Map<number, Uint8Array[]>();
			const got: Event[] = [];
			for (let seq = 0; w.bytesWritten < base + 6 * 8192; seq++) {
				w.openGroup(seq, 0);
				const body = payload(900, seq);
				writeFrame(w, seq, body, rand, 200);
				w.endGroup(seq);
				sent.set(seq, [body]);
				got.push(...drain(r));
			}
			assert.equal(r.laps, 0);
			assert.deepEqual(frames(got), sent);
			assert.equal(sleeper.next(), Rec.LAPPED);
			sleeper.seekLatest();
			assert.equal(sleeper.next(), Rec.GROUP_OPEN);
			assert.equal(sleeper.seq, sent.size - 1);
			assert.ok(sleeper.position > base);
		}
	});
});

describe("readers: start points and laps", () => {
	test("a lapped reader is detected and recovers via seekLatest", () => {
		const w = RingWriter.create({ bytes: 8192, maxGroups: 4 });
		const r = new RingReader(w.buffer);
		const rand = rng(11);
		w.openGroup(0, 0);
		writeFrame(w, 0, payload(1000, 1), rand, 300);
		assert.equal(r.next(), Rec.GROUP_OPEN);
		// The writer runs several rings ahead while the reader sleeps.
		let seq = 1;
		w.endGroup(0);
		for (; w.bytesWritten < 5 * w.capacity; seq++) {
			w.openGroup(seq, seq);
			writeFrame(w, seq, payload(1500, seq), rand, 400);
			w.endGroup(seq);
		}
		const last = seq;
		const lastBody = payload(2000, 4242);
		w.openGroup(last, last);
		writeFrame(w, last, lastBody, rand, 333);
		assert.equal(r.next(), Rec.LAPPED);
		assert.equal(r.next(), Rec.LAPPED, "stays lapped until the caller seeks");
		assert.equal(r.laps, 1);
		r.seekLatest();
		const events = drain(r);
		assert.equal(events[0].kind, Rec.GROUP_OPEN);
		assert.equal(events[0].seq, last);
		assert.deepEqual(frames(events).get(last), [lastBody]);
	});

	test("a record overwritten after next() returned fails stillValid()", () => {
		const w = RingWriter.create({ bytes: 4096, maxGroups: 2 });
		w.openGroup(0, 0);
		w.frameBegin(0, 100, 0);
		w.frameData(0, payload(100, 1));
		const r = new RingReader(w.buffer);
		assert.equal(r.next(), Rec.GROUP_OPEN);
		assert.equal(r.next(), Rec.FRAME_BEGIN);
		assert.equal(r.next(), Rec.FRAME_DATA);
		assert.ok(r.stillValid());
		w.endGroup(0);
		for (let seq = 1; w.bytesWritten < 2 * w.capacity; seq++) {
			w.openGroup(seq, 0);
			writeFrame(w, seq, payload(500, seq), rng(seq), 500);
			w.endGroup(seq);
		}
		assert.equal(r.stillValid(), false);
	});

	test("a new reader starts at the latest group's first frame, skipping older groups' records", () => {
		const w = RingWriter.create({ bytes: 65536, maxGroups: 8 });
		const rand = rng(5);
		for (let seq = 1; seq <= 3; seq++) {
			w.openGroup(seq, seq * 1000);
			writeFrame(w, seq, payload(3000, seq), rand, 500);
			if (seq < 3) w.endGroup(seq);
		}
		// Group 4 opens while group 3 is still being written (concurrent streams).
		w.openGroup(4, 4000);
		const first = payload(2500, 40);
		writeFrame(w, 4, first, rand, 600);
		writeFrame(w, 3, payload(1000, 31), rand, 600);
		w.endGroup(3);
		const r = new RingReader(w.buffer);
		assert.equal(r.latestGroup() >= 0, true);
		const second = payload(800, 41);
		writeFrame(w, 4, second, rand, 100);
		const events = drain(r);
		assert.deepEqual(events[0], { kind: Rec.GROUP_OPEN, seq: 4, ts: 4000 });
		assert.ok(events.every((e) => e.seq === 4));
		assert.deepEqual(frames(events).get(4), [first, second]);
		// A group older than the start that opens late is not delivered.
		w.openGroup(5, 0); // newer than the start group: delivered
		assert.equal(r.next(), Rec.GROUP_OPEN);
		assert.equal(r.seq, 5);
	});

	test("late older groups are skipped; explicit start group", () => {
		const w = RingWriter.create({ bytes: 65536, maxGroups: 8 });
		const rand = rng(9);
		for (let seq = 1; seq <= 5; seq++) {
			w.openGroup(seq, seq);
			writeFrame(w, seq, payload(500, seq), rand, 100);
			w.endGroup(seq);
		}
		const r = new RingReader(w.buffer);
		assert.ok(r.seekGroup(3));
		const events = drain(r);
		assert.deepEqual(
			events.filter((e) => e.kind === Rec.GROUP_OPEN).map((e) => e.seq),
			[3, 4, 5],
		);
		assert.equal(frames(events).get(3)![0].length, 500);
		// A group not cached yet: wait at the head for it.
		assert.equal(r.seekGroup(10), false);
		w.openGroup(9, 9);
		w.openGroup(10, 10);
		assert.deepEqual(
			drain(r).map((e) => e.seq),
			[10],
		);
		// seekLatest skips a late group older than the latest.
		r.seekLatest();
		w.openGroup(8, 8);
		assert.deepEqual(
			drain(r).map((e) => [e.kind, e.seq]),
			[[Rec.GROUP_OPEN, 10]],
		);
	});

	test("group age: timestamps from the index let a caller skip old groups", () => {
		const w = RingWriter.create({ bytes: 65536, maxGroups: 8 });
		const r = new RingReader(w.buffer);
		w.openGroup(1, 1_000);
		w.openGroup(2, 9_000);
		assert.equal(r.groupTimestamp(1), 1_000);
		assert.equal(r.newestTimestamp(), 9_000);
		assert.ok(Number.isNaN(r.groupTimestamp(77)));
		assert.equal(r.next(), Rec.GROUP_OPEN);
		const maxAge = 5_000;
		if (r.newestTimestamp() - r.timestamp > maxAge) r.skipGroup(r.seq);
		w.frameBegin(1, 0, 0);
		w.frameBegin(2, 0, 0);
		assert.deepEqual(
			drain(r).map((e) => [e.kind, e.seq]),
			[
				[Rec.GROUP_OPEN, 2],
				[Rec.FRAME_BEGIN, 2],
			],
		);
	});
});

describe("bounds and the latest group", () => {
	test("ring size, max frame size and max groups are enforced", () => {
		assert.throws(() => RingWriter.create({ bytes: 100 }), CacheError);
		assert.throws(() => RingWriter.create({ bytes: 2 ** 31 }), /ring bytes/);
		assert.throws(() => RingWriter.create({ bytes: 4096, maxGroups: 0 }), /maxGroups/);
		const w = RingWriter.create({ bytes: 4096, maxGroups: 2 });
		w.openGroup(1, 0);
		assert.throws(() => w.frameBegin(1, 4097, 0), /exceeds this ring's frame limit of 4096/);
		const r = new RingReader(w.buffer);
		w.openGroup(2, 0);
		// A third open group evicts the oldest open one (lowest sequence), which readers see aborted.
		assert.ok(w.openGroup(3, 0));
		assert.equal(w.frameBegin(1, 10, 0), false, "writes to the evicted group are dropped");
		assert.equal(w.groupsEvicted, 1);
		const events = drain(r);
		assert.deepEqual(
			events.map((e) => [e.kind, e.seq, e.code]),
			[
				[Rec.GROUP_OPEN, 1, undefined],
				[Rec.GROUP_OPEN, 2, undefined],
				[Rec.GROUP_ABORT, 1, CacheAbort.EVICTED],
				[Rec.GROUP_OPEN, 3, undefined],
			],
		);
		// A group older than every open one cannot displace them.
		assert.equal(w.openGroup(0, 0), false);
	});

	test("the cache budget bounds total ring memory across tracks", () => {
		const budget = CacheBudget.create(3 * 70_000);
		const shared = new CacheBudget(budget.buffer); // as another thread would see it
		const a = RingWriter.create({ bytes: 65536, budget });
		const b = RingWriter.create({ bytes: 65536, budget: shared });
		const c = RingWriter.create({ bytes: 65536, budget });
		assert.equal(shared.used, budget.used);
		assert.throws(() => RingWriter.create({ bytes: 65536, budget: shared }), /cache budget exhausted/);
		a.dispose();
		a.dispose(); // idempotent
		const d = RingWriter.create({ bytes: 65536, budget: shared });
		for (const x of [b, c, d]) x.dispose();
		assert.equal(budget.used, 0);
		assert.equal(budget.tryReserve(budget.limit + 1), false);
		assert.throws(() => budget.release(1), /only 0 are reserved/);
	});

	test("the latest group is kept: an older straggler group is aborted instead", () => {
		const w = RingWriter.create({ bytes: 8192, maxGroups: 4 });
		const rand = rng(21);
		w.openGroup(1, 0);
		writeFrame(w, 1, payload(1000, 1), rand, 400);
		w.openGroup(2, 0); // latest
		const body2 = payload(1500, 2);
		writeFrame(w, 2, body2, rand, 400);
		// Group 1 keeps streaming; its bytes would overwrite group 2's start.
		let refused = false;
		for (let i = 0; i < 20 && !refused; i++) refused = !writeFrame(w, 1, payload(1000, 10 + i), rand, 400);
		assert.ok(refused, "the straggler's write is refused");
		assert.equal(w.frameBegin(1, 1, 0), false);
		assert.equal(w.groupsEvicted, 1);
		assert.equal(w.truncations, 0);
		const r = new RingReader(w.buffer);
		const events = drain(r);
		assert.deepEqual(events[0], { kind: Rec.GROUP_OPEN, seq: 2, ts: 0 });
		assert.deepEqual(frames(events).get(2), [body2]);
	});

	test("a latest group larger than the ring is truncated: new readers start at the next group", () => {
		const w = RingWriter.create({ bytes: 8192, maxGroups: 4 });
		const rand = rng(33);
		const early = new RingReader(w.buffer);
		w.openGroup(1, 0);
		const bodies: Uint8Array[] = [];
		for (let i = 0; i < 12; i++) {
			bodies.push(payload(1000, i));
			assert.ok(writeFrame(w, 1, bodies[i], rand, 300), "the latest group's own writes are never refused");
			// A reader that keeps up reads the whole (truncated) group.
			assert.notEqual(early.next(), Rec.LAPPED);
			drain(early);
		}
		assert.equal(w.truncations, 1);
		const late = new RingReader(w.buffer);
		assert.equal(late.latestGroup(), -1);
		writeFrame(w, 1, payload(500, 99), rand, 300);
		w.endGroup(1);
		w.openGroup(2, 0);
		const body = payload(700, 2);
		writeFrame(w, 2, body, rand, 300);
		const events = drain(late);
		assert.deepEqual(events[0], { kind: Rec.GROUP_OPEN, seq: 2, ts: 0 });
		assert.deepEqual(frames(events).get(2), [body]);
		assert.equal(early.laps, 0);
	});

	test("garbage writes are rejected with clear errors", () => {
		const w = RingWriter.create({ bytes: 4096 });
		assert.throws(() => w.frameData(5, Uint8Array.of(1)), /frameData: unknown group 5 \(never opened\)/);
		assert.throws(() => w.frameBegin(5, 1, 0), /unknown group 5/);
		assert.throws(() => w.openGroup(-1, 0), /not in 0\.\.2\^53-1/);
		assert.throws(() => w.openGroup(1.5, 0), /not in 0\.\.2\^53-1/);
		assert.throws(() => w.openGroup(2 ** 53, 0), /not in 0\.\.2\^53-1/);
		assert.throws(() => w.openGroup(1, Number.NaN), /timestamp/);
		w.openGroup(1, 0);
		assert.throws(() => w.openGroup(1, 0), /already in the cache/);
		assert.throws(() => w.frameBegin(1, -1, 0), /frame size -1 is not valid/);
		assert.throws(() => w.frameData(1, Uint8Array.of(1)), /overflow its frame \(0 bytes left\)/);
		w.frameBegin(1, 3, 0);
		assert.throws(() => w.frameBegin(1, 3, 0), /still misses 3 bytes/);
		assert.throws(() => w.frameData(1, new Uint8Array(4)), /4 bytes for group 1 overflow its frame \(3 bytes left\)/);
		assert.throws(() => w.endGroup(1), /ended with 3 bytes of its frame missing/);
		w.frameData(1, new Uint8Array(3));
		w.endGroup(1);
		assert.throws(() => w.frameBegin(1, 1, 0), /group 1 is already finished/);
		assert.throws(() => w.abortGroup(1, -3), /code/);
		assert.throws(() => new RingReader(new SharedArrayBuffer(4096)), /not a group cache/);
	});
});

describe("doorbell, same thread", () => {
	test("many writes in one turn cause one direct callback", async () => {
		const w = RingWriter.create({ bytes: 65536 });
		const r = new RingReader(w.buffer);
		r.watch(0);
		const bell = new Doorbell(Doorbell.createBuffer(1), 0);
		let wakes = 0;
		let records = 0;
		let done: () => void = () => {};
		const finished = new Promise<void>((resolve) => {
			done = resolve;
		});
		bell.listen(() => {
			wakes++;
			while (r.next() !== Rec.NONE) records++;
			if (records > 0) done();
		});
		w.openGroup(1, 0);
		for (let i = 0; i < 100; i++) {
			w.frameBegin(1, 4, 0);
			w.frameData(1, Uint8Array.of(1, 2, 3, 4));
			bell.ring(w);
		}
		await finished;
		bell.close();
		assert.equal(records, 201);
		assert.equal(wakes, 1);
		assert.equal(bell.flushes, 1);
		assert.equal(bell.wakesSent, 0);
	});
});
