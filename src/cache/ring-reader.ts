import { probe } from "../metrics/collection.ts";
import {
	align8,
	CacheError,
	Ctl,
	DATA_LENGTH_MASK,
	dataOffset,
	Entry,
	FRAME_BEGIN_BYTES,
	FRAME_HEAD_BYTES,
	GROUP_OPEN_BYTES,
	GroupState,
	HEAD_SHIFT,
	HEADER_BYTES,
	INTEREST_WORDS,
	indexOffset,
	MAGIC,
	MAX_WORKERS,
	pairValue,
	Rec,
	SIZE_HEAD_SHIFT,
	SKIP,
	TWO32,
	VERSION,
} from "./layout.ts";

const SPIN_LIMIT = 1 << 20;

/**
 * One reader of a track's ring; any number of them, in any thread (construct it from the posted
 * SharedArrayBuffer). `next()` is a non-allocating poll: it returns a Rec kind and leaves the
 * record's fields on the reader (`seq`, `size`, `timestamp`, `code`, `dataOffset`/`dataLength`
 * into `bytes`), valid until the next call.
 *
 * The reader delivers a group's records only after delivering its GROUP_OPEN, so every group a
 * caller sees starts at its first frame; records of groups opened before the reader's start (or
 * whose start was overwritten) are skipped, as are GROUP_OPENs below the start group.
 *
 * Memory ordering (why a reader never returns torn data):
 * - JS Atomics are sequentially consistent. The writer fills a record with plain stores, then
 *   publishes head with Atomics.store; a reader that Atomics.loads a head covering the record is
 *   ordered after those plain stores (synchronizes-with), so everything below head is complete.
 * - The ring reuses memory, so a record can be overwritten while (or after) a slow reader reads
 *   it. Before the writer touches any byte it publishes a reserve R (Atomics.store) and only then
 *   writes positions below R; the byte of position p is only rewritten when the writer writes
 *   position p + capacity. The reader reads the record with plain loads, then Atomics.loads the
 *   reserve again (the seqlock re-check): if R <= start + capacity the writer had not yet been
 *   allowed to touch the record's bytes when the reader finished reading them, so they were
 *   intact; otherwise it reports LAPPED and discards what it read. The re-check is an atomic load
 *   after the plain loads in program order; V8 does not move plain loads across Atomics
 *   operations, and x86 (TSO) keeps loads in order. A torn value read before a failed re-check
 *   is only used to compute sizes that are then thrown away, and every offset derived from it is
 *   bounds-checked first.
 * - 53-bit positions are hi/lo Int32 pairs. A change of a high word is wrapped in the POS_SEQ
 *   seqlock (odd while updating); low-word-only updates are single atomic stores. A full read
 *   retries until it reads all words under the same even POS_SEQ. The per-record fast path loads
 *   the low word first and POS_SEQ second: if POS_SEQ still equals the value of the last full
 *   read, no high word had started changing before the low word was read, so the cached high
 *   word and that low word form a value the writer really published (2 atomic loads instead of
 *   6; an Atomics.load costs ~20 ns here, it dominated the read path).
 * - The group index is read the same way under INDEX_SEQ, and a seek is additionally validated
 *   when next() re-reads the GROUP_OPEN record it points at.
 * - `data` (the FRAME_DATA payload) was intact when next() returned. A reader in another thread
 *   than the writer that copies it later must call `stillValid()` after copying and treat false
 *   as LAPPED (the copy may be torn; reset the affected stream and seekLatest()).
 */
export class RingReader {
	readonly buffer: SharedArrayBuffer;
	readonly capacity: number;
	readonly maxGroups: number;
	/** The data region; FRAME_DATA payloads are bytes[dataOffset, dataOffset + dataLength). */
	readonly bytes: Uint8Array;

	/** Kind of the current record (the last value next() returned). */
	kind = 0;
	/** Group sequence of the current record (TRACK_END: the final group, exclusive). */
	seq = 0;
	/** FRAME_BEGIN: the frame's size in bytes. */
	size = 0;
	/** GROUP_OPEN / FRAME_BEGIN: timestamp in ms. */
	timestamp = 0;
	/** FRAME_BEGIN: when the relay received the frame, low 32 bits of `monotonicMicros()` (0: unknown). */
	received = 0;
	/** GROUP_ABORT / TRACK_ABORT: the code. */
	code = 0;
	dataOffset = 0;
	dataLength = 0;
	/**
	 * FRAME_DATA that starts a frame: the byte count of the frame's moq-lite-05 wire header, varint
	 * zigzag(tsDelta) then varint size, stored right before the payload: bytes[dataOffset -
	 * frameHeaderBytes, dataOffset + dataLength) is the whole frame as 05 puts it on a stream (its
	 * first chunk). 0 for a frame's later chunks.
	 */
	frameHeaderBytes = 0;
	/** The same for the 02–04 header (the size varint alone: the tail of the 05 header). */
	sizeHeaderBytes = 0;
	/** Times this reader was lapped. */
	laps = 0;
	/**
	 * After a seek: the lowest group sequence the reader can still deliver from there. Groups below
	 * it that the caller had not received yet were skipped (a consumer counts them as dropped).
	 */
	startSeq = 0;

	private readonly ctl: Int32Array;
	private readonly index: Float64Array;
	private readonly i32: Int32Array;
	private readonly f64: Float64Array;
	private readonly active: Float64Array;
	private activeCount = 0;
	private pos = 0;
	private off = 0;
	private recordStart = 0;
	private head = 0;
	private reserve = 0;
	private posSeq = -1;
	private headHi = 0;
	private reserveHi = 0;
	private floor = 0;
	private lapped = false;
	private latestSeqSeen = -1;
	private latestStart = -1;

	constructor(buffer: SharedArrayBuffer) {
		const ctl = new Int32Array(buffer, 0, Ctl.INTEREST + INTEREST_WORDS);
		if (Atomics.load(ctl, Ctl.MAGIC) !== MAGIC || ctl[Ctl.VERSION] !== VERSION) {
			throw new CacheError("not a group cache ring buffer");
		}
		this.buffer = buffer;
		this.ctl = ctl;
		this.capacity = ctl[Ctl.CAPACITY];
		this.maxGroups = ctl[Ctl.MAX_GROUPS];
		this.index = new Float64Array(buffer, indexOffset(), this.maxGroups * 4);
		const base = dataOffset(this.maxGroups);
		this.i32 = new Int32Array(buffer, base, this.capacity >> 2);
		this.f64 = new Float64Array(buffer, base, this.capacity >> 3);
		this.bytes = new Uint8Array(buffer, base, this.capacity);
		this.active = new Float64Array(this.maxGroups);
		probe("reader", this);
		probe("ring", buffer);
		this.seekLatest();
	}

	/** The current FRAME_DATA payload as a view (allocates a view; hot paths use dataOffset). */
	get data(): Uint8Array {
		return this.bytes.subarray(this.dataOffset, this.dataOffset + this.dataLength);
	}

	/** Absolute position of the next record this reader will look at. */
	get position(): number {
		return this.pos;
	}

	/** Absolute position of the current record (the one the last next() or continues() returned). */
	get recordPosition(): number {
		return this.recordStart;
	}

	/** Absolute position the writer has published (bytes appended so far). */
	get writerPosition(): number {
		this.refresh();
		return this.head;
	}

	/**
	 * Position of the latest group's GROUP_OPEN (where a new viewer starts), or -1 when there is
	 * no group or the latest group lost its start (then new viewers start at the next group).
	 */
	latestGroup(): number {
		this.readLatest();
		return this.latestStart;
	}

	/** Sequence of the latest group, or -1. */
	latestSeq(): number {
		this.readLatest();
		return this.latestSeqSeen;
	}

	/** Reads the latest group's sequence and start as one snapshot (INDEX_SEQ seqlock). */
	private readLatest(): void {
		for (let tries = 0; tries < SPIN_LIMIT; tries++) {
			const s1 = Atomics.load(this.ctl, Ctl.INDEX_SEQ);
			if (s1 & 1) continue;
			const slot = Atomics.load(this.ctl, Ctl.LATEST_SLOT);
			let seq = -1;
			let start = -1;
			if (slot >= 0 && slot < this.maxGroups) {
				const e = slot * 4;
				seq = this.index[e + Entry.SEQ];
				if (!(this.index[e + Entry.STATE] & GroupState.START_LOST)) start = this.index[e + Entry.START];
			}
			if (Atomics.load(this.ctl, Ctl.INDEX_SEQ) === s1) {
				this.latestSeqSeen = seq;
				this.latestStart = start;
				return;
			}
		}
		this.latestSeqSeen = -1;
		this.latestStart = -1;
	}

	/**
	 * Starts at the latest group's first frame (its GROUP_OPEN). If the latest group lost its
	 * start, or there is none yet, starts at the writer's head and waits for the next group.
	 * Older groups that open later are skipped. Clears LAPPED.
	 */
	seekLatest(): void {
		this.readLatest();
		const seq = this.latestSeqSeen;
		const start = this.latestStart;
		this.refresh();
		if (start >= 0 && this.reserve <= start + this.capacity) {
			this.moveTo(start, seq);
			this.startSeq = seq;
		} else {
			this.moveTo(this.tailPosition(), Math.max(seq, 0));
			// The latest group's start is gone (or there is none): the next group to open is the first.
			this.startSeq = seq + 1;
		}
	}

	/**
	 * Starts at group `seq` (or the first group above it still in the cache): at the earliest
	 * GROUP_OPEN among the seekable groups >= seq. Returns false when none is cached yet; the
	 * reader then waits at the head for groups >= seq. Clears LAPPED.
	 */
	seekGroup(seq: number): boolean {
		let start = -1;
		for (let tries = 0; tries < SPIN_LIMIT; tries++) {
			const s1 = Atomics.load(this.ctl, Ctl.INDEX_SEQ);
			if (s1 & 1) continue;
			start = -1;
			for (let s = 0; s < this.maxGroups; s++) {
				const e = s * 4;
				const state = this.index[e + Entry.STATE];
				if (state === GroupState.EMPTY || state & GroupState.START_LOST || this.index[e + Entry.SEQ] < seq) continue;
				const at = this.index[e + Entry.START];
				if (start < 0 || at < start) start = at;
			}
			if (Atomics.load(this.ctl, Ctl.INDEX_SEQ) === s1) break;
		}
		this.refresh();
		this.startSeq = seq;
		if (start >= 0 && this.reserve <= start + this.capacity) {
			this.moveTo(start, seq);
			return true;
		}
		this.moveTo(this.tailPosition(), seq);
		return false;
	}

	/**
	 * Steps back over the GROUP_OPEN that next() just returned, so the next call returns it again.
	 * For a consumer that can't start the group yet (no stream credit) and will retry later.
	 */
	rewindGroupOpen(): void {
		if (this.kind !== Rec.GROUP_OPEN) throw new CacheError("rewindGroupOpen: the last record was not a GROUP_OPEN");
		this.removeActive(this.seq);
		this.pos = this.recordStart;
		this.off = this.pos % this.capacity;
		this.kind = Rec.NONE;
	}

	/** Stops delivering group `seq` (e.g. older than the caller's max age); its records are skipped. */
	skipGroup(seq: number): void {
		this.removeActive(seq);
	}

	/** Timestamp (ms) of group `seq` from the index, NaN when not cached. */
	groupTimestamp(seq: number): number {
		for (let tries = 0; tries < SPIN_LIMIT; tries++) {
			const s1 = Atomics.load(this.ctl, Ctl.INDEX_SEQ);
			if (s1 & 1) continue;
			let ts = Number.NaN;
			for (let s = 0; s < this.maxGroups; s++) {
				const e = s * 4;
				if (this.index[e + Entry.STATE] !== GroupState.EMPTY && this.index[e + Entry.SEQ] === seq) {
					ts = this.index[e + Entry.TIMESTAMP];
				}
			}
			if (Atomics.load(this.ctl, Ctl.INDEX_SEQ) === s1) return ts;
		}
		return Number.NaN;
	}

	/** Timestamp (ms) of the latest group, NaN when none (for max-age checks against the newest). */
	newestTimestamp(): number {
		const seq = this.latestSeq();
		return seq < 0 ? Number.NaN : this.groupTimestamp(seq);
	}

	/** Marks worker `worker` as reading this ring so the writer's doorbell wakes it (once per worker). */
	watch(worker: number): void {
		checkWorker(worker);
		Atomics.or(this.ctl, Ctl.INTEREST + (worker >> 5), 1 << (worker & 31));
	}

	unwatch(worker: number): void {
		checkWorker(worker);
		Atomics.and(this.ctl, Ctl.INTEREST + (worker >> 5), ~(1 << (worker & 31)));
	}

	/**
	 * After copying the current record's bytes: true if the writer had not started overwriting
	 * them by now (so the copy is intact). False means the copy may be torn: treat as LAPPED.
	 */
	stillValid(): boolean {
		return this.reserveNow() <= this.recordStart + this.capacity;
	}

	/** As stillValid(), for every record from absolute position `position` (a recordPosition) on. */
	validSince(position: number): boolean {
		return this.reserveNow() <= position + this.capacity;
	}

	/**
	 * After a FRAME_DATA: when the record right after it is already published and is the next chunk
	 * of the same frame (a FRAME_DATA of the same group that is not headed: no FRAME_BEGIN came in
	 * between), steps onto it, with its fields set as next() sets them, and returns true. Otherwise
	 * returns false and leaves the reader where it is (past a SKIP pad at most), for next(), which
	 * also reports a lap this finds. Lets a consumer send the chunks of a frame that arrived in
	 * several network packets as one write.
	 */
	continues(): boolean {
		if (this.kind !== Rec.FRAME_DATA || this.lapped) return false;
		const capacity = this.capacity;
		for (;;) {
			if (this.pos >= this.head) {
				this.head = this.headNow();
				if (this.pos >= this.head) return false;
			}
			const off = this.off;
			const w = off >> 2;
			const kind = this.i32[w];
			if (kind === SKIP) {
				if (this.reserveNow() > this.pos + capacity) return false;
				this.pos += capacity - off;
				this.off = 0;
				continue;
			}
			if (kind !== Rec.FRAME_DATA || off + HEADER_BYTES > capacity) return false;
			const word = this.i32[w + 1];
			const seq = this.f64[(off >> 3) + 1];
			// Seqlock re-check before anything read is used (see the class comment).
			if (this.reserveNow() > this.pos + capacity) return false;
			if (seq !== this.seq || word >>> HEAD_SHIFT !== 0) return false;
			const recBytes = HEADER_BYTES + align8(word);
			if (off + recBytes > capacity) throw new CacheError(`corrupt ring: record kind ${kind} at position ${this.pos}`);
			this.recordStart = this.pos;
			this.pos += recBytes;
			this.off = off + recBytes === capacity ? 0 : off + recBytes;
			this.dataOffset = off + HEADER_BYTES;
			this.dataLength = word;
			this.frameHeaderBytes = 0;
			this.sizeHeaderBytes = 0;
			return true;
		}
	}

	/** The next record for this reader: a Rec kind, Rec.NONE when caught up, Rec.LAPPED when lapped. */
	next(): number {
		if (this.lapped) return Rec.LAPPED;
		const capacity = this.capacity;
		for (;;) {
			if (this.pos >= this.head) {
				this.head = this.headNow();
				if (this.pos >= this.head) return Rec.NONE;
			}
			const off = this.off;
			const w = off >> 2;
			const d = off >> 3;
			const kind = this.i32[w];
			let recBytes = 0;
			let seq = 0;
			if (kind === SKIP) {
				recBytes = capacity - off;
			} else if (off + HEADER_BYTES <= capacity) {
				seq = this.f64[d + 1];
				switch (kind) {
					case Rec.GROUP_OPEN:
						if (off + GROUP_OPEN_BYTES <= capacity) {
							this.timestamp = this.f64[d + 2];
							recBytes = GROUP_OPEN_BYTES;
						}
						break;
					case Rec.FRAME_BEGIN:
						if (off + FRAME_BEGIN_BYTES <= capacity) {
							this.size = this.f64[d + 2];
							this.timestamp = this.f64[d + 3];
							this.received = this.i32[w + 1] >>> 0;
							recBytes = FRAME_BEGIN_BYTES;
						}
						break;
					case Rec.FRAME_DATA: {
						const word = this.i32[w + 1];
						const len = word & DATA_LENGTH_MASK;
						const head = (word >>> HEAD_SHIFT) & 0x1f;
						const payloadAt = head > 0 ? HEADER_BYTES + FRAME_HEAD_BYTES : HEADER_BYTES;
						this.dataOffset = off + payloadAt;
						this.dataLength = len;
						this.frameHeaderBytes = head;
						this.sizeHeaderBytes = (word >>> SIZE_HEAD_SHIFT) & 0xf;
						recBytes = word >= 0 && head <= FRAME_HEAD_BYTES ? payloadAt + align8(len) : 0;
						break;
					}
					case Rec.GROUP_END:
					case Rec.TRACK_END:
						recBytes = HEADER_BYTES;
						break;
					case Rec.GROUP_ABORT:
					case Rec.TRACK_ABORT:
						this.code = this.i32[w + 1];
						recBytes = HEADER_BYTES;
						break;
				}
			}
			// Seqlock re-check: were the bytes just read still this lap's? (see the class comment)
			if (this.reserveNow() > this.pos + capacity) return this.lap();
			if (recBytes === 0 || off + recBytes > capacity) {
				throw new CacheError(`corrupt ring: record kind ${kind} at position ${this.pos}`);
			}
			this.recordStart = this.pos;
			this.pos += recBytes;
			this.off = off + recBytes === capacity ? 0 : off + recBytes;
			switch (kind) {
				case SKIP:
					continue;
				case Rec.GROUP_OPEN:
					if (seq < this.floor || !this.addActive(seq)) continue;
					break;
				case Rec.FRAME_BEGIN:
				case Rec.FRAME_DATA:
					if (!this.isActive(seq)) continue;
					break;
				case Rec.GROUP_END:
				case Rec.GROUP_ABORT:
					if (!this.removeActive(seq)) continue;
					break;
			}
			this.seq = seq;
			this.kind = kind;
			return kind;
		}
	}

	// ---- internals ----

	private moveTo(position: number, floor: number): void {
		this.pos = position;
		this.off = position % this.capacity;
		this.recordStart = position;
		this.floor = floor;
		this.activeCount = 0;
		this.lapped = false;
		this.kind = Rec.NONE;
	}

	private lap(): number {
		this.lapped = true;
		this.laps++;
		this.activeCount = 0;
		this.kind = Rec.LAPPED;
		return Rec.LAPPED;
	}

	/**
	 * Where a reader waiting for new groups starts: the head, or, once the track has ended, its
	 * final TRACK_END/TRACK_ABORT record (always the last 16 bytes), so late readers still see it.
	 * Head is read before the track state: the state is stored after the record is published, so
	 * if the state still reads 0 the record (if any) lies at or after the head we read.
	 */
	private tailPosition(): number {
		this.refresh();
		if (Atomics.load(this.ctl, Ctl.TRACK_STATE) === 0) return this.head;
		this.refresh();
		return this.head - HEADER_BYTES;
	}

	/** Reads head and reserve as one consistent snapshot (POS_SEQ seqlock). */
	private refresh(): void {
		const ctl = this.ctl;
		for (let spins = 0; spins < SPIN_LIMIT; spins++) {
			const s1 = Atomics.load(ctl, Ctl.POS_SEQ);
			if (s1 & 1) continue;
			const hh = Atomics.load(ctl, Ctl.HEAD_HI);
			const hl = Atomics.load(ctl, Ctl.HEAD_LO);
			const rh = Atomics.load(ctl, Ctl.RESERVE_HI);
			const rl = Atomics.load(ctl, Ctl.RESERVE_LO);
			if (Atomics.load(ctl, Ctl.POS_SEQ) === s1) {
				this.posSeq = s1;
				this.headHi = hh;
				this.reserveHi = rh;
				this.head = pairValue(hh, hl);
				this.reserve = pairValue(rh, rl);
				return;
			}
		}
		// A writer stuck mid-update (it died): fail safe, everything counts as overwritten.
		this.posSeq = -1;
		this.reserve = Number.POSITIVE_INFINITY;
	}

	/** The writer's head: low word, then POS_SEQ unchanged since refresh() => cached high word holds. */
	private headNow(): number {
		const lo = Atomics.load(this.ctl, Ctl.HEAD_LO);
		if (Atomics.load(this.ctl, Ctl.POS_SEQ) === this.posSeq) return this.headHi * TWO32 + (lo >>> 0);
		this.refresh();
		return this.head;
	}

	/** The writer's reserve, same fast path as headNow(). */
	private reserveNow(): number {
		const lo = Atomics.load(this.ctl, Ctl.RESERVE_LO);
		if (Atomics.load(this.ctl, Ctl.POS_SEQ) === this.posSeq) return this.reserveHi * TWO32 + (lo >>> 0);
		this.refresh();
		return this.reserve;
	}

	private isActive(seq: number): boolean {
		for (let i = 0; i < this.activeCount; i++) if (this.active[i] === seq) return true;
		return false;
	}

	private addActive(seq: number): boolean {
		if (this.activeCount === this.active.length) return false;
		this.active[this.activeCount++] = seq;
		return true;
	}

	private removeActive(seq: number): boolean {
		for (let i = 0; i < this.activeCount; i++) {
			if (this.active[i] !== seq) continue;
			this.active[i] = this.active[--this.activeCount];
			return true;
		}
		return false;
	}
}

function checkWorker(worker: number): void {
	if (!Number.isInteger(worker) || worker < 0 || worker >= MAX_WORKERS) {
		throw new CacheError(`worker index ${worker} must be an integer in 0..${MAX_WORKERS - 1}`);
	}
}
