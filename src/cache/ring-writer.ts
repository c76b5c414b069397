import { varintSize, writeVarint } from "../coding/varint.ts";
import { probe } from "../metrics/collection.ts";
import type { CacheBudget } from "./budget.ts";
import {
	align8,
	CacheAbort,
	CacheError,
	Ctl,
	checkSeq,
	dataOffset,
	Entry,
	FRAME_BEGIN_BYTES,
	FRAME_HEAD_BYTES,
	GROUP_OPEN_BYTES,
	GroupState,
	HEAD_SHIFT,
	HEADER_BYTES,
	highWord,
	INTEREST_WORDS,
	indexOffset,
	MAGIC,
	MAX_GROUPS_LIMIT,
	MAX_RING_BYTES,
	MIN_RING_BYTES,
	pairValue,
	Rec,
	SIZE_HEAD_SHIFT,
	SKIP,
	storePair,
	totalBytes,
	VERSION,
} from "./layout.ts";

export type RingWriterOptions = {
	/** Data region bytes for this track (rounded up to a multiple of 8; 4 KiB..1 GiB). */
	bytes: number;
	/** Group index entries: groups seekable at once and groups open at once (default 16). */
	maxGroups?: number;
	/** Largest frame accepted by frameBegin (default: the ring size). */
	maxFrameBytes?: number;
	/** Process-wide budget the whole SharedArrayBuffer is reserved from; refused past it. */
	budget?: CacheBudget;
	/** Absolute position the log starts at (a multiple of 8; default 0). Tests use it to cross 2^32. */
	startPosition?: number;
};

const DROPPED_MEMORY = 64;

/**
 * What a ring's writer knows beyond the ring itself, for another thread to go on writing it (a
 * cluster route moved to a session on another worker: the viewers keep reading the same ring).
 * Everything else (head, reserve, the group index, the latest group, the track state) is in the
 * buffer.
 */
export interface RingWriterHandover {
	maxFrameBytes: number;
	/** Group sequences the cache refused or evicted lately (a retry of one is quietly refused). */
	dropped: number[];
	records: number;
	groupsOpened: number;
	groupsEvicted: number;
	truncations: number;
}

/**
 * A ring's memory, zeroed, from the operating system's pages rather than malloc. A plain
 * `new SharedArrayBuffer(n)` is calloc'd; once glibc has freed one ring it raises its mmap threshold
 * above the ring size (its dynamic threshold), so every later ring comes from a thread's malloc
 * arena: calloc writes all of it (a ring costs its whole size at once, however little it holds) and
 * a freed ring stays in the arena instead of going back (measured with 2 workers and 8 MiB rings:
 * RSS +8 MiB for most broadcasts, 184 → 687 MB over 100 short ones, none of it returned after every
 * ring was collected). A growable SharedArrayBuffer (`maxByteLength`, never grown) is reserved and
 * committed by V8's page allocator instead: pages are backed as they are first written, and the
 * whole ring is unmapped when it is collected.
 */
function allocateRing(bytes: number): SharedArrayBuffer {
	return new GrowableSharedArrayBuffer(bytes, { maxByteLength: bytes });
}

// tsconfig's lib (es2023) predates growable SharedArrayBuffers (es2024); Node 22.12+ has them.
const GrowableSharedArrayBuffer = SharedArrayBuffer as unknown as new (
	bytes: number,
	options: { maxByteLength: number },
) => SharedArrayBuffer;

/**
 * The single writer of one track's ring (see layout.ts for the format). Every write publishes the
 * new head with one atomic store, so readers never see a record before it is complete.
 *
 * Before touching bytes the writer publishes a *reserve*: a position it promises not to write
 * past. A reader validates a record at position p by checking reserve <= p + capacity after
 * reading it. The reserve moves ahead in steps (so it is published rarely), capped at the
 * latest group's start + capacity so that the latest group is not lost to the step's slack.
 *
 * Ring pressure rule (the latest group is always kept): the latest group is the one with the
 * highest sequence. A record for any *other* group that would overwrite the latest group's
 * GROUP_OPEN is refused, and that group is aborted with CacheAbort.EVICTED (its GROUP_ABORT
 * record is small and always written). Only the latest group's own records may overwrite its
 * start; it is then marked START_LOST ("truncated") and new readers start at the next group.
 * Any other group whose GROUP_OPEN is overwritten just stops being seekable; readers already
 * inside it continue. When all maxGroups index entries are in use, opening a group reuses the
 * entry of the oldest finished group, else aborts the oldest open group older than it, else
 * (only for a new latest group) replaces the previous latest; otherwise the open is refused.
 *
 * Write methods return false when the cache dropped the group (the caller just stops
 * forwarding it); they throw CacheError for garbage: unknown groups, frames overflowing their
 * declared size, frames larger than maxFrameBytes, records after the track ended.
 */
export class RingWriter {
	readonly buffer: SharedArrayBuffer;
	readonly capacity: number;
	readonly maxGroups: number;
	readonly maxFrameBytes: number;
	/** Doorbell bookkeeping: true while this ring waits in a doorbell's flush queue. */
	doorbellQueued = false;

	private readonly ctl: Int32Array;
	private readonly index: Float64Array;
	private readonly i32: Int32Array;
	private readonly f64: Float64Array;
	private readonly bytes: Uint8Array;
	private readonly step: number;
	private readonly maxRecordPayload: number;
	private readonly slotOpen: Uint8Array;
	private readonly frameLeft: Float64Array;
	/** Per slot: the current frame's size and zigzag(tsDelta), for its headed first FRAME_DATA. */
	private readonly frameSize: Float64Array;
	private readonly frameDelta: Float64Array;
	/** Per slot: 1 until the current frame's first chunk (which carries the wire header) is written. */
	private readonly headPending: Uint8Array;
	/** Per slot: timestamp of the group's previous frame (0 before the first), the base of tsDelta. */
	private readonly prevTimestamp: Float64Array;
	private readonly dropped: Float64Array;
	private droppedNext = 0;
	private head = 0;
	private off = 0;
	private reserve = 0;
	private headHi = 0;
	private reserveHi = 0;
	private latestSlot = -1;
	private lastSlot = -1;
	private ended = false;
	/** Handed over to another thread (see handOver): every write is refused. */
	private retired = false;
	private budget: CacheBudget | undefined;
	private readonly reservedBytes: number;

	/** Records appended (including cache-written aborts, excluding padding). */
	records = 0;
	groupsOpened = 0;
	/** Groups the cache aborted or refused (ring pressure, max groups). */
	groupsEvicted = 0;
	/** Times the latest group lost its start because it alone outgrew the ring. */
	truncations = 0;

	static create(opts: RingWriterOptions): RingWriter {
		const capacity = align8(opts.bytes);
		if (!Number.isSafeInteger(opts.bytes) || capacity < MIN_RING_BYTES || capacity > MAX_RING_BYTES) {
			throw new CacheError(`ring bytes ${opts.bytes} must be an integer in ${MIN_RING_BYTES}..${MAX_RING_BYTES}`);
		}
		const maxGroups = opts.maxGroups ?? 16;
		if (!Number.isInteger(maxGroups) || maxGroups < 1 || maxGroups > MAX_GROUPS_LIMIT) {
			throw new CacheError(`maxGroups ${maxGroups} must be an integer in 1..${MAX_GROUPS_LIMIT}`);
		}
		const maxFrameBytes = opts.maxFrameBytes ?? capacity;
		if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 0) {
			throw new CacheError(`maxFrameBytes ${maxFrameBytes} must be a non-negative integer`);
		}
		const start = opts.startPosition ?? 0;
		if (!Number.isSafeInteger(start) || start < 0 || start % 8 !== 0 || start > 2 ** 52) {
			throw new CacheError(`startPosition ${start} must be a multiple of 8 in 0..2^52`);
		}
		const total = totalBytes(capacity, maxGroups);
		if (opts.budget && !opts.budget.tryReserve(total)) {
			throw new CacheError(
				`cache budget exhausted: a ${total} byte ring does not fit (${opts.budget.used} of ${opts.budget.limit} bytes used)`,
			);
		}
		const writer = new RingWriter(allocateRing(total), capacity, maxGroups, maxFrameBytes, opts.budget, total);
		probe("ring", writer.buffer);
		writer.initHeader();
		if (start > 0) writer.startAt(start);
		return writer;
	}

	/**
	 * Goes on writing a ring another thread wrote until `handOver` (no budget: the reservation is
	 * the caller's). The write position, reserve and latest group are read back from the buffer.
	 */
	static adopt(buffer: SharedArrayBuffer, h: RingWriterHandover): RingWriter {
		const ctl = new Int32Array(buffer, 0, Ctl.INTEREST + INTEREST_WORDS);
		if (Atomics.load(ctl, Ctl.MAGIC) !== MAGIC || ctl[Ctl.VERSION] !== VERSION) {
			throw new CacheError("adopt: not a ring of this version");
		}
		const capacity = ctl[Ctl.CAPACITY];
		const maxGroups = ctl[Ctl.MAX_GROUPS];
		const w = new RingWriter(buffer, capacity, maxGroups, h.maxFrameBytes, undefined, buffer.byteLength);
		w.head = pairValue(Atomics.load(ctl, Ctl.HEAD_HI), Atomics.load(ctl, Ctl.HEAD_LO));
		w.reserve = pairValue(Atomics.load(ctl, Ctl.RESERVE_HI), Atomics.load(ctl, Ctl.RESERVE_LO));
		w.off = w.head % capacity;
		w.headHi = highWord(w.head);
		w.reserveHi = highWord(w.reserve);
		w.latestSlot = Atomics.load(ctl, Ctl.LATEST_SLOT);
		w.ended = Atomics.load(ctl, Ctl.TRACK_STATE) !== 0;
		for (let i = 0; i < h.dropped.length && i < DROPPED_MEMORY; i++) w.remember(h.dropped[i]);
		w.records = h.records;
		w.groupsOpened = h.groupsOpened;
		w.groupsEvicted = h.groupsEvicted;
		w.truncations = h.truncations;
		return w;
	}

	/**
	 * Stops writing this ring so that another thread can adopt it: groups still open are aborted
	 * with `code` (their uploads died with the route), and every later write is refused (returns
	 * false), since the old route's sessions may still call in while they close.
	 */
	handOver(code: number): RingWriterHandover {
		checkCode(code, "handOver");
		if (!this.ended && !this.retired) {
			for (let s = 0; s < this.maxGroups; s++) if (this.slotOpen[s]) this.closeGroup(s, Rec.GROUP_ABORT, code);
		}
		this.retired = true;
		const dropped: number[] = [];
		for (let i = 0; i < DROPPED_MEMORY; i++) {
			const seq = this.dropped[(this.droppedNext + i) % DROPPED_MEMORY];
			if (seq >= 0) dropped.push(seq);
		}
		return {
			maxFrameBytes: this.maxFrameBytes,
			dropped,
			records: this.records,
			groupsOpened: this.groupsOpened,
			groupsEvicted: this.groupsEvicted,
			truncations: this.truncations,
		};
	}

	/** Handed over to another thread: this object writes nothing more. */
	get handedOver(): boolean {
		return this.retired;
	}

	private constructor(
		buffer: SharedArrayBuffer,
		capacity: number,
		maxGroups: number,
		maxFrameBytes: number,
		budget: CacheBudget | undefined,
		reservedBytes: number,
	) {
		this.buffer = buffer;
		this.capacity = capacity;
		this.maxGroups = maxGroups;
		this.maxFrameBytes = maxFrameBytes;
		this.budget = budget;
		this.reservedBytes = reservedBytes;
		this.ctl = new Int32Array(buffer, 0, Ctl.INTEREST + INTEREST_WORDS);
		this.index = new Float64Array(buffer, indexOffset(), maxGroups * 4);
		const base = dataOffset(maxGroups);
		this.i32 = new Int32Array(buffer, base, capacity >> 2);
		this.f64 = new Float64Array(buffer, base, capacity >> 3);
		this.bytes = new Uint8Array(buffer, base, capacity);
		// The reserve runs ahead of the head by up to 1/16 of the ring, so it is republished
		// about 16 times per lap instead of once per record.
		this.step = align8(Math.max(256, Math.min(65536, capacity >> 4)));
		this.maxRecordPayload = Math.max(256, Math.min(65536, capacity >> 3));
		this.slotOpen = new Uint8Array(maxGroups);
		this.frameLeft = new Float64Array(maxGroups);
		this.frameSize = new Float64Array(maxGroups);
		this.frameDelta = new Float64Array(maxGroups);
		this.headPending = new Uint8Array(maxGroups);
		this.prevTimestamp = new Float64Array(maxGroups);
		this.dropped = new Float64Array(DROPPED_MEMORY).fill(-1);
	}

	/** A new ring's control header (an adopted ring already has one). */
	private initHeader(): void {
		this.ctl[Ctl.CAPACITY] = this.capacity;
		this.ctl[Ctl.MAX_GROUPS] = this.maxGroups;
		this.ctl[Ctl.LATEST_SLOT] = -1;
		this.ctl[Ctl.VERSION] = VERSION;
		Atomics.store(this.ctl, Ctl.MAGIC, MAGIC);
	}

	/** Absolute log position after the last record (total bytes appended, padding included). */
	get bytesWritten(): number {
		return this.head;
	}

	/** Sequence of the latest (highest) group opened, or -1. */
	get latestSeq(): number {
		return this.latestSlot < 0 ? -1 : this.index[this.latestSlot * 4 + Entry.SEQ];
	}

	/** Doorbell support: one word of the bitmask of worker threads reading this ring. */
	interestWord(word: number): number {
		return Atomics.load(this.ctl, Ctl.INTEREST + word);
	}

	/** Opens group `seq`. False when the cache refuses it (older than what the ring can keep). */
	openGroup(seq: number, timestampMs: number): boolean {
		if (this.retired) return false;
		checkSeq(seq, "openGroup");
		checkTimestamp(timestampMs, "openGroup");
		this.checkLive("openGroup");
		if (this.findSlot(seq) >= 0) throw new CacheError(`openGroup: group ${seq} is already in the cache`);
		const becomesLatest = this.latestSlot < 0 || seq > this.latestSeq;
		if (!becomesLatest && this.threatensLatest(GROUP_OPEN_BYTES)) return this.refuse(seq);
		const slot = this.pickSlot(seq, becomesLatest);
		if (slot < 0) return this.refuse(seq);
		const off = this.prepare(slot, GROUP_OPEN_BYTES, becomesLatest);
		if (off < 0) return this.refuse(seq);
		const start = this.head;
		const w = off >> 2;
		const d = off >> 3;
		this.i32[w] = Rec.GROUP_OPEN;
		this.i32[w + 1] = 0;
		this.f64[d + 1] = seq;
		this.f64[d + 2] = timestampMs;
		this.commit(GROUP_OPEN_BYTES);

		const e = slot * 4;
		this.indexBegin();
		this.index[e + Entry.SEQ] = seq;
		this.index[e + Entry.START] = start;
		this.index[e + Entry.TIMESTAMP] = timestampMs;
		this.index[e + Entry.STATE] = GroupState.OPEN;
		if (becomesLatest) {
			this.latestSlot = slot;
			Atomics.store(this.ctl, Ctl.LATEST_SLOT, slot);
		}
		this.indexEnd();
		this.slotOpen[slot] = 1;
		this.frameLeft[slot] = 0;
		this.headPending[slot] = 0;
		this.prevTimestamp[slot] = 0;
		this.lastSlot = slot;
		this.groupsOpened++;
		return true;
	}

	/**
	 * Starts a frame of `size` bytes in an open group; its bytes follow via frameData. `receivedMicros`:
	 * when the relay received the frame, on metrics/clock.ts `monotonicMicros()` (stored mod 2^32).
	 */
	frameBegin(seq: number, size: number, timestampMs: number, receivedMicros = 0): boolean {
		const slot = this.openSlot(seq, "frameBegin");
		if (slot < 0) return false;
		if (this.frameLeft[slot] !== 0) {
			throw new CacheError(`frameBegin: group ${seq} still misses ${this.frameLeft[slot]} bytes of its previous frame`);
		}
		if (!Number.isSafeInteger(size) || size < 0) throw new CacheError(`frameBegin: frame size ${size} is not valid`);
		if (size > this.maxFrameBytes) {
			throw new CacheError(`frameBegin: a ${size} byte frame exceeds this ring's frame limit of ${this.maxFrameBytes}`);
		}
		checkTimestamp(timestampMs, "frameBegin");
		// The wire header's tsDelta is a varint: an integer, and zigzag-encoded below 2^53.
		const delta = zigzag(timestampMs - this.prevTimestamp[slot]);
		if (!Number.isSafeInteger(delta) || !Number.isInteger(timestampMs)) {
			throw new CacheError(
				`frameBegin: timestamp ${timestampMs} ms is not an integer within 2^52 ms of the group's previous frame`,
			);
		}
		const off = this.prepare(slot, FRAME_BEGIN_BYTES, false);
		if (off < 0) return this.evict(slot);
		const w = off >> 2;
		const d = off >> 3;
		this.i32[w] = Rec.FRAME_BEGIN;
		// Int32Array stores ToInt32(value): the low 32 bits (readers take them back with >>> 0).
		this.i32[w + 1] = receivedMicros;
		this.f64[d + 1] = seq;
		this.f64[d + 2] = size;
		this.f64[d + 3] = timestampMs;
		this.commit(FRAME_BEGIN_BYTES);
		this.frameLeft[slot] = size;
		this.frameSize[slot] = size;
		this.frameDelta[slot] = delta;
		this.prevTimestamp[slot] = timestampMs;
		this.headPending[slot] = size > 0 ? 1 : 0;
		return true;
	}

	/**
	 * Appends one network chunk of the current frame (copied once; split if very large). The frame's
	 * first record is headed: its wire header goes right before the payload (see layout.ts).
	 */
	frameData(seq: number, chunk: Uint8Array): boolean {
		const slot = this.openSlot(seq, "frameData");
		if (slot < 0) return false;
		const len = chunk.length;
		if (len > this.frameLeft[slot]) {
			throw new CacheError(
				`frameData: ${len} bytes for group ${seq} overflow its frame (${this.frameLeft[slot]} bytes left)`,
			);
		}
		let done = 0;
		while (done < len) {
			const n = Math.min(len - done, this.maxRecordPayload);
			const headed = this.headPending[slot] === 1;
			const payloadAt = headed ? HEADER_BYTES + FRAME_HEAD_BYTES : HEADER_BYTES;
			const recBytes = payloadAt + align8(n);
			const off = this.prepare(slot, recBytes, false);
			if (off < 0) return this.evict(slot);
			const w = off >> 2;
			this.i32[w] = Rec.FRAME_DATA;
			let lengthWord = n;
			if (headed) {
				const delta = this.frameDelta[slot];
				const size = this.frameSize[slot];
				const sizeBytes = varintSize(size);
				const headBytes = varintSize(delta) + sizeBytes;
				writeVarint(this.bytes, writeVarint(this.bytes, off + payloadAt - headBytes, delta), size);
				lengthWord |= (headBytes << HEAD_SHIFT) | (sizeBytes << SIZE_HEAD_SHIFT);
				this.headPending[slot] = 0;
			}
			this.i32[w + 1] = lengthWord;
			this.f64[(off >> 3) + 1] = seq;
			this.bytes.set(n === len ? chunk : chunk.subarray(done, done + n), off + payloadAt);
			this.commit(recBytes);
			done += n;
			this.frameLeft[slot] -= n;
		}
		return true;
	}

	/** FIN: the group is complete. */
	endGroup(seq: number): boolean {
		const slot = this.openSlot(seq, "endGroup");
		if (slot < 0) return false;
		if (this.frameLeft[slot] !== 0) {
			throw new CacheError(`endGroup: group ${seq} ended with ${this.frameLeft[slot]} bytes of its frame missing`);
		}
		this.closeGroup(slot, Rec.GROUP_END, 0);
		return true;
	}

	/** Reset: the group is incomplete; readers forward `code`. */
	abortGroup(seq: number, code: number): boolean {
		checkCode(code, "abortGroup");
		const slot = this.openSlot(seq, "abortGroup");
		if (slot < 0) return false;
		this.closeGroup(slot, Rec.GROUP_ABORT, code);
		return true;
	}

	/** The track ended cleanly before group `finalExclusive`; still-open groups are aborted. */
	endTrack(finalExclusive: number): void {
		if (this.retired) return;
		checkSeq(finalExclusive, "endTrack");
		this.checkLive("endTrack");
		for (let s = 0; s < this.maxGroups; s++) {
			if (this.slotOpen[s]) this.closeGroup(s, Rec.GROUP_ABORT, CacheAbort.TRACK_ENDED);
		}
		this.writeTrackRecord(Rec.TRACK_END, finalExclusive, 0);
	}

	/** The track failed; readers stop at this record and forward `code`. */
	abortTrack(code: number): void {
		if (this.retired) return;
		checkCode(code, "abortTrack");
		this.checkLive("abortTrack");
		this.indexBegin();
		for (let s = 0; s < this.maxGroups; s++) {
			if (!this.slotOpen[s]) continue;
			this.slotOpen[s] = 0;
			const e = s * 4 + Entry.STATE;
			this.index[e] = (this.index[e] & GroupState.START_LOST) | GroupState.ABORTED;
		}
		this.indexEnd();
		this.writeTrackRecord(Rec.TRACK_ABORT, 0, code);
	}

	/** Returns this ring's bytes to the budget (readers elsewhere may still hold the buffer). */
	dispose(): void {
		if (!this.budget) return;
		this.budget.release(this.reservedBytes);
		this.budget = undefined;
	}

	// ---- internals ----

	private startAt(position: number): void {
		this.head = this.reserve = position;
		this.off = position % this.capacity;
		this.headHi = highWord(position);
		this.reserveHi = this.headHi;
		storePair(this.ctl, Ctl.HEAD_HI, position);
		storePair(this.ctl, Ctl.RESERVE_HI, position);
	}

	private writeTrackRecord(kind: number, seq: number, code: number): void {
		const off = this.prepare(-1, HEADER_BYTES, true);
		const w = off >> 2;
		this.i32[w] = kind;
		this.i32[w + 1] = code;
		this.f64[(off >> 3) + 1] = seq;
		this.commit(HEADER_BYTES);
		// Stored after the record is published: a reader that sees the state also sees the record.
		Atomics.store(this.ctl, Ctl.TRACK_CODE, code);
		Atomics.store(this.ctl, Ctl.TRACK_STATE, kind);
		this.ended = true;
	}

	private closeGroup(slot: number, kind: number, code: number): void {
		const seq = this.index[slot * 4 + Entry.SEQ];
		const off = this.prepare(slot, HEADER_BYTES, true);
		const w = off >> 2;
		this.i32[w] = kind;
		this.i32[w + 1] = code;
		this.f64[(off >> 3) + 1] = seq;
		this.commit(HEADER_BYTES);
		this.slotOpen[slot] = 0;
		const e = slot * 4 + Entry.STATE;
		this.indexBegin();
		this.index[e] =
			(this.index[e] & GroupState.START_LOST) | (kind === Rec.GROUP_END ? GroupState.COMPLETE : GroupState.ABORTED);
		this.indexEnd();
	}

	/** The cache drops an open group: readers see GROUP_ABORT(EVICTED); later writes return false. */
	private evict(slot: number): false {
		const seq = this.index[slot * 4 + Entry.SEQ];
		this.closeGroup(slot, Rec.GROUP_ABORT, CacheAbort.EVICTED);
		this.remember(seq);
		this.groupsEvicted++;
		return false;
	}

	private refuse(seq: number): false {
		this.remember(seq);
		this.groupsEvicted++;
		return false;
	}

	private remember(seq: number): void {
		this.dropped[this.droppedNext] = seq;
		this.droppedNext = (this.droppedNext + 1) % DROPPED_MEMORY;
	}

	private wasDropped(seq: number): boolean {
		for (let i = 0; i < DROPPED_MEMORY; i++) if (this.dropped[i] === seq) return true;
		return false;
	}

	private findSlot(seq: number): number {
		for (let s = 0; s < this.maxGroups; s++) {
			const e = s * 4;
			if (this.index[e + Entry.STATE] !== GroupState.EMPTY && this.index[e + Entry.SEQ] === seq) return s;
		}
		return -1;
	}

	/** The slot of an open group, -1 if the cache dropped it; throws for garbage. */
	private openSlot(seq: number, what: string): number {
		const last = this.lastSlot;
		if (last >= 0 && this.slotOpen[last] === 1 && this.index[last * 4 + Entry.SEQ] === seq) return last;
		if (this.retired) return -1;
		checkSeq(seq, what);
		this.checkLive(what);
		const slot = this.findSlot(seq);
		if (slot >= 0 && this.slotOpen[slot] === 1) {
			this.lastSlot = slot;
			return slot;
		}
		if (this.wasDropped(seq)) return -1;
		if (slot >= 0) throw new CacheError(`${what}: group ${seq} is already finished`);
		throw new CacheError(`${what}: unknown group ${seq} (never opened)`);
	}

	private checkLive(what: string): void {
		if (this.ended) throw new CacheError(`${what}: the track already ended`);
	}

	/** An index slot for a new group (see the class comment for the order); -1 to refuse. */
	private pickSlot(seq: number, becomesLatest: boolean): number {
		let finished = -1;
		let open = -1;
		for (let s = 0; s < this.maxGroups; s++) {
			const e = s * 4;
			const state = this.index[e + Entry.STATE] & 7;
			if (state === GroupState.EMPTY) return s;
			if (s === this.latestSlot) continue;
			const sq = this.index[e + Entry.SEQ];
			if (state !== GroupState.OPEN) {
				if (finished < 0 || sq < this.index[finished * 4 + Entry.SEQ]) finished = s;
			} else if (sq < seq && (open < 0 || sq < this.index[open * 4 + Entry.SEQ])) {
				open = s;
			}
		}
		let slot = finished >= 0 ? finished : open;
		if (slot < 0 && becomesLatest) slot = this.latestSlot;
		if (slot < 0) return -1;
		if (this.slotOpen[slot]) this.evict(slot);
		if (slot === this.latestSlot) {
			this.latestSlot = -1;
		}
		this.indexBegin();
		this.index[slot * 4 + Entry.STATE] = GroupState.EMPTY;
		if (this.latestSlot < 0) Atomics.store(this.ctl, Ctl.LATEST_SLOT, -1);
		this.indexEnd();
		if (this.lastSlot === slot) this.lastSlot = -1;
		return slot;
	}

	/** End position of an n-byte record appended now (padding to the region's end included). */
	private endOf(n: number): number {
		const pad = this.off + n > this.capacity ? this.capacity - this.off : 0;
		return this.head + pad + n;
	}

	/** Would an n-byte record for a non-latest group overwrite the latest group's GROUP_OPEN? */
	private threatensLatest(n: number): boolean {
		const latest = this.latestSlot;
		if (latest < 0) return false;
		const e = latest * 4;
		if (this.index[e + Entry.STATE] & GroupState.START_LOST) return false;
		return this.endOf(n) - this.capacity > this.index[e + Entry.START];
	}

	/**
	 * Makes room for an n-byte record and returns its data offset, or -1 when the record must be
	 * refused to keep the latest group's start (never for `exempt` records: the latest group's
	 * own, group ends/aborts and track records).
	 */
	private prepare(slot: number, n: number, exempt: boolean): number {
		if (!exempt && slot !== this.latestSlot && this.threatensLatest(n)) return -1;
		const end = this.endOf(n);
		if (end > this.reserve) this.extendReserve(end);
		if (this.off + n > this.capacity) {
			this.i32[this.off >> 2] = SKIP;
			this.head += this.capacity - this.off;
			this.off = 0;
		}
		return this.off;
	}

	private commit(n: number): void {
		this.head += n;
		this.off += n;
		if (this.off === this.capacity) this.off = 0;
		this.records++;
		// One atomic store per record; the seqlock only when the high word changes (every 4 GiB).
		const hi = highWord(this.head);
		if (hi === this.headHi) Atomics.store(this.ctl, Ctl.HEAD_LO, this.head >>> 0);
		else {
			this.headHi = hi;
			storePair(this.ctl, Ctl.HEAD_HI, this.head);
		}
	}

	private extendReserve(end: number): void {
		const capacity = this.capacity;
		let reserve = end + this.step;
		const latest = this.latestSlot;
		if (latest >= 0 && !(this.index[latest * 4 + Entry.STATE] & GroupState.START_LOST)) {
			const keep = this.index[latest * 4 + Entry.START] + capacity;
			if (keep >= end && reserve > keep) reserve = keep;
		}
		// Groups whose GROUP_OPEN lies below reserve - capacity can no longer be read from their start.
		const lostBelow = reserve - capacity;
		let changed = false;
		for (let s = 0; s < this.maxGroups; s++) {
			const e = s * 4;
			const state = this.index[e + Entry.STATE];
			if (state === GroupState.EMPTY || state & GroupState.START_LOST) continue;
			if (this.index[e + Entry.START] >= lostBelow) continue;
			if (!changed) this.indexBegin();
			changed = true;
			this.index[e + Entry.STATE] = state | GroupState.START_LOST;
			if (s === latest) this.truncations++;
		}
		if (changed) this.indexEnd();
		this.reserve = reserve;
		const hi = highWord(reserve);
		if (hi === this.reserveHi) Atomics.store(this.ctl, Ctl.RESERVE_LO, reserve >>> 0);
		else {
			this.reserveHi = hi;
			storePair(this.ctl, Ctl.RESERVE_HI, reserve);
		}
	}

	private indexBegin(): void {
		Atomics.add(this.ctl, Ctl.INDEX_SEQ, 1);
	}

	private indexEnd(): void {
		Atomics.add(this.ctl, Ctl.INDEX_SEQ, 1);
	}
}

/** Signed → unsigned as moq-lite-05 encodes a timestamp delta: n ≥ 0 → 2n, n < 0 → −2n−1 (arithmetic: values exceed 32 bits). */
function zigzag(n: number): number {
	return n >= 0 ? n * 2 : -n * 2 - 1;
}

function checkTimestamp(ms: number, what: string): void {
	if (!Number.isFinite(ms)) throw new CacheError(`${what}: timestamp ${ms} is not a finite number of ms`);
}

function checkCode(code: number, what: string): void {
	if (!Number.isInteger(code) || code < 0 || code > 0x7fffffff) {
		throw new CacheError(`${what}: code ${code} must be an integer in 0..2^31-1`);
	}
}
