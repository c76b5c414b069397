/**
 * Worker side of test/cache-xthread.test.ts: one writer thread streams groups through a ring,
 * reader threads verify every group they read completely against the writer's checksums.
 */
import { randomFillSync } from "node:crypto";
import { parentPort, workerData } from "node:worker_threads";
import { CacheBudget, Doorbell, Rec, RingReader, RingWriter } from "../src/cache/index.ts";

export type WriterResult = {
	role: "writer";
	/** [seq, checksum, bytes, frames] of every group the writer completed. */
	groups: [number, number, number, number][];
	frames: number;
	chunks: number;
	bytes: number;
	turns: number;
	flushes: number;
	wakesSent: number;
	evicted: number;
};
export type ReaderResult = {
	role: "reader";
	groups: [number, number, number, number][];
	/** next() returned LAPPED. */
	laps: number;
	/** stillValid() caught bytes overwritten while they were being hashed. */
	torn: number;
	wakes: number;
	records: number;
};

type Setup = { role: "writer" | "reader"; bells: SharedArrayBuffer; self: number; budget: SharedArrayBuffer };
const setup = workerData as Setup;
const port = parentPort!;

/** FNV-1a over bytes[from, to), continuing from h. */
function fnv(h: number, bytes: Uint8Array, from: number, to: number): number {
	for (let i = from; i < to; i++) h = Math.imul(h ^ bytes[i], 16777619);
	return h >>> 0;
}
const FNV_START = 2166136261;

if (setup.role === "writer") runWriter();
else runReader();

function runWriter(): void {
	const bell = new Doorbell(setup.bells, setup.self);
	const writer = RingWriter.create({ bytes: 1 << 20, maxGroups: 16, budget: new CacheBudget(setup.budget) });
	port.postMessage({ ring: writer.buffer });
	const TOTAL = 50 * 1024 * 1024;
	const PER_TURN = 128 * 1024;
	const pool = randomFillSync(new Uint8Array(1 << 16));
	let seed = 0x9e3779b9;
	const rand = (n: number): number => {
		seed ^= seed << 13;
		seed ^= seed >>> 17;
		seed ^= seed << 5;
		return (seed >>> 0) % n;
	};
	type Open = { seq: number; framesLeft: number; frameLeft: number; hash: number; bytes: number; frames: number };
	const open: Open[] = [];
	const done: [number, number, number, number][] = [];
	let nextSeq = 0;
	let written = 0;
	let frames = 0;
	let chunks = 0;
	let turns = 0;

	const turn = (): void => {
		turns++;
		const until = written + PER_TURN;
		while (written < until) {
			// Two groups in flight at once, like two concurrent QUIC streams of one track.
			while (open.length < 2 && written < TOTAL) {
				const g = { seq: nextSeq++, framesLeft: 8 + rand(9), frameLeft: 0, hash: FNV_START, bytes: 0, frames: 0 };
				if (writer.openGroup(g.seq, Date.now())) open.push(g);
			}
			if (open.length === 0) break;
			const gi = rand(open.length);
			const g = open[gi];
			let ok = true;
			if (g.frameLeft === 0) {
				if (g.framesLeft === 0) {
					writer.endGroup(g.seq);
					done.push([g.seq, g.hash, g.bytes, g.frames]);
					open.splice(gi, 1);
					continue;
				}
				g.frameLeft = 1 + rand(24 * 1024);
				g.framesLeft--;
				g.frames++;
				frames++;
				ok = writer.frameBegin(g.seq, g.frameLeft, Date.now());
			} else {
				const n = Math.min(g.frameLeft, 1 + rand(4096));
				const at = rand(pool.length - n);
				const chunk = pool.subarray(at, at + n);
				ok = writer.frameData(g.seq, chunk);
				g.hash = fnv(g.hash, pool, at, at + n);
				g.bytes += n;
				g.frameLeft -= n;
				written += n;
				chunks++;
			}
			if (!ok) open.splice(gi, 1); // evicted by the cache: not reported as complete
		}
		bell.ring(writer);
		if (written < TOTAL || open.length > 0) {
			setImmediate(turn);
			return;
		}
		writer.endTrack(nextSeq);
		bell.ring(writer);
		setImmediate(() => {
			const result: WriterResult = {
				role: "writer",
				groups: done,
				frames,
				chunks,
				bytes: written,
				turns,
				flushes: bell.flushes,
				wakesSent: bell.wakesSent,
				evicted: writer.groupsEvicted,
			};
			port.postMessage(result);
		});
	};
	port.once("message", () => setImmediate(turn));
}

function runReader(): void {
	const bell = new Doorbell(setup.bells, setup.self);
	port.once("message", (msg: { ring: SharedArrayBuffer }) => {
		const reader = new RingReader(msg.ring);
		reader.watch(setup.self);
		const inProgress = new Map<number, { hash: number; bytes: number; frames: number }>();
		const complete: [number, number, number, number][] = [];
		let laps = 0;
		let torn = 0;
		let records = 0;
		const recover = (): void => {
			inProgress.clear();
			reader.seekLatest();
		};
		bell.listen(() => {
			for (;;) {
				const kind = reader.next();
				if (kind === Rec.NONE) return;
				records++;
				switch (kind) {
					case Rec.LAPPED:
						laps++;
						recover();
						break;
					case Rec.GROUP_OPEN:
						inProgress.set(reader.seq, { hash: FNV_START, bytes: 0, frames: 0 });
						break;
					case Rec.FRAME_BEGIN:
						inProgress.get(reader.seq)!.frames++;
						break;
					case Rec.FRAME_DATA: {
						const g = inProgress.get(reader.seq)!;
						g.hash = fnv(g.hash, reader.bytes, reader.dataOffset, reader.dataOffset + reader.dataLength);
						g.bytes += reader.dataLength;
						// The bytes were hashed after next() returned: make sure they were not overwritten meanwhile.
						if (!reader.stillValid()) {
							torn++;
							recover();
						}
						break;
					}
					case Rec.GROUP_END: {
						const g = inProgress.get(reader.seq)!;
						complete.push([reader.seq, g.hash, g.bytes, g.frames]);
						inProgress.delete(reader.seq);
						break;
					}
					case Rec.GROUP_ABORT:
						inProgress.delete(reader.seq);
						break;
					case Rec.TRACK_END: {
						const result: ReaderResult = {
							role: "reader",
							groups: complete,
							laps,
							torn,
							wakes: bell.wakesReceived,
							records,
						};
						port.postMessage(result);
						bell.close();
						return;
					}
				}
			}
		});
		port.postMessage({ ready: true });
	});
}
