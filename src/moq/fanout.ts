/**
 * The fan-out batch: during a round of drainConsumers (relay/track.ts) every viewer of a track
 * stages the frame it is at here instead of writing it, and flush() writes each staged frame once
 * for all the viewers at it: one SharedWriter call (one native call on the ngtcp2 engine, with one
 * copy of the bytes) instead of a write per viewer.
 *
 * Staged bytes must stay as they were until flush(), which ends the round:
 * - a frame in one ring record is staged as a view of the ring. A ring written by this thread
 *   cannot change before flush (it runs in the same synchronous drain); one written by another
 *   worker can, so the viewer checks its reader's validity after the flush, before its next record
 *   (TrackServe.drainRound), exactly as a write checks after the copy today;
 * - a frame in several records (it arrived in several network packets) is gathered into the
 *   round's arena and checked before it is staged, so a torn copy is never staged.
 * Viewers at the same record of the same ring join its entry and only step their reader over the
 * frame's records: the first viewer's copy serves them all.
 * @module
 */
import type { RingReader } from "../cache/ring-reader.ts";
import type { FanoutRound } from "../relay/track.ts";
import { copyBytes, type SharedWriter, type TransportStream } from "../transport/types.ts";

/** What a staged stream's owner does when writing to it threw (TrackServe.fault closes its session). */
export interface FanoutOwner {
	fault(err: unknown): void;
}

/** A frame gathered from several records goes to the arena; above this it is written directly. */
export const FANOUT_MAX_FRAME = 1024 * 1024;

class Entry {
	ring: SharedArrayBuffer | null = null;
	writer: SharedWriter | null = null;
	/** bytes[from, ...) of the first record: the frame header the viewers' version sends starts there. */
	from = 0;
	/** Ring positions of the frame's first and last record in this entry. */
	first = 0;
	last = 0;
	bytes: Uint8Array = new Uint8Array(0);
	streams: TransportStream[] = [];
	owners: FanoutOwner[] = [];
	count = 0;
}

export class FrameFanout implements FanoutRound {
	#entries: Entry[] = [];
	#used = 0;
	#arena = new Uint8Array(256 * 1024);
	#arenaUsed = 0;
	#taken = new Uint8Array(256);
	/** Shared-writer calls made, and the stream writes they carried (tests and the bench read them). */
	calls = 0;
	streams = 0;

	/**
	 * Stages the frame whose first record `r` is on (FRAME_DATA, bytes[from, ...)) for `stream`,
	 * together with the records of the same frame that follow it, stepping `r` past them. Returns
	 * the bytes staged, -1 when the ring overwrote them (treat it as LAPPED), or -2 when the frame
	 * is too large to stage (the caller writes it itself: `r` has not moved).
	 */
	stage(r: RingReader, stream: TransportStream, writer: SharedWriter, from: number, owner: FanoutOwner): number {
		const ring = r.buffer;
		const first = r.recordPosition;
		for (let i = 0; i < this.#used; i++) {
			const e = this.#entries[i];
			if (e.first !== first || e.ring !== ring || e.from !== from || e.writer !== writer) continue;
			// Another viewer staged this frame: step over the same records (what arrived since it
			// did is left for the next round) and share its bytes.
			while (r.recordPosition !== e.last && r.continues()) {}
			if (r.recordPosition !== e.last || !r.validSince(first)) return -1;
			this.#add(e, stream, owner);
			return e.bytes.length;
		}
		const end = r.dataOffset + r.dataLength;
		let bytes: Uint8Array;
		if (r.size + 16 > FANOUT_MAX_FRAME) return -2;
		if (!r.continues()) {
			if (!r.validSince(first)) return -1;
			bytes = r.bytes.subarray(from, end);
		} else {
			// The first record, then each following one, gathered into the arena (a memcpy each).
			let start = this.#reserve(end - from + r.dataLength);
			copyBytes(r.bytes, from, end, this.#arena, start);
			let n = end - from;
			do {
				const len = r.dataLength;
				if (start + n + len > this.#arena.length) {
					if (n + len > FANOUT_MAX_FRAME) return -1;
					const moved = this.#reserveMoving(start, n, n + len);
					start = moved;
				}
				copyBytes(r.bytes, r.dataOffset, r.dataOffset + len, this.#arena, start + n);
				n += len;
			} while (r.continues());
			// Checked before it is staged: a torn copy never reaches a stream.
			if (!r.validSince(first)) return -1;
			this.#arenaUsed = start + n;
			bytes = this.#arena.subarray(start, start + n);
		}
		const e = this.#entry();
		e.ring = ring;
		e.writer = writer;
		e.from = from;
		e.first = first;
		e.last = r.recordPosition;
		e.bytes = bytes;
		this.#add(e, stream, owner);
		return bytes.length;
	}

	/** Writes every staged frame: one SharedWriter call per frame (and writer). Never throws. */
	flush(): void {
		for (let i = 0; i < this.#used; i++) {
			const e = this.#entries[i];
			const count = e.count;
			if (this.#taken.length < count) this.#taken = new Uint8Array(Math.max(count, this.#taken.length * 2));
			const taken = this.#taken;
			taken.fill(0, 0, count);
			try {
				e.writer!.writeAll(e.streams, count, e.bytes, taken);
				this.calls++;
				this.streams += count;
			} catch {
				taken.fill(0, 0, count);
			}
			for (let j = 0; j < count; j++) {
				if (taken[j] === 0) {
					try {
						e.streams[j].write(e.bytes);
					} catch (err) {
						e.owners[j].fault(err);
					}
				}
			}
			// Nothing of the round is kept (closed streams and their sessions can go), but the arrays
			// keep their capacity: no regrowth per frame.
			for (let j = 0; j < count; j++) {
				e.streams[j] = NO_STREAM;
				e.owners[j] = NO_OWNER;
			}
			e.count = 0;
			e.ring = null;
			e.writer = null;
			e.bytes = EMPTY;
		}
		this.#used = 0;
		this.#arenaUsed = 0;
	}

	#add(e: Entry, stream: TransportStream, owner: FanoutOwner): void {
		e.streams[e.count] = stream;
		e.owners[e.count] = owner;
		e.count++;
	}

	#entry(): Entry {
		if (this.#used === this.#entries.length) this.#entries.push(new Entry());
		return this.#entries[this.#used++];
	}

	/** Where `bytes` more fit in the arena: a larger arena when they do not (staged views keep the old one alive). */
	#reserve(bytes: number): number {
		if (this.#arenaUsed + bytes <= this.#arena.length) return this.#arenaUsed;
		this.#arena = new Uint8Array(Math.max(this.#arena.length * 2, bytes + FANOUT_MAX_FRAME));
		this.#arenaUsed = 0;
		return 0;
	}

	/** The gather at arena[start, start + n) needs `need` bytes: moves it to a fresh arena. */
	#reserveMoving(start: number, n: number, need: number): number {
		const old = this.#arena;
		this.#arena = new Uint8Array(Math.max(old.length * 2, need + FANOUT_MAX_FRAME));
		copyBytes(old, start, start + n, this.#arena, 0);
		this.#arenaUsed = 0;
		return 0;
	}
}

const EMPTY = new Uint8Array(0);
/** What an entry's used slots hold between rounds (never written to). */
const NO_STREAM = {} as TransportStream;
const NO_OWNER: FanoutOwner = { fault() {} };

/** This thread's batch (module state is per thread under worker_threads). */
export const frameFanout = new FrameFanout();
