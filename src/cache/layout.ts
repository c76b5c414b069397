/**
 * Shared memory layout of one track's group cache: a control header, a small group index and a
 * data region holding an append-only log of records. Everything here is read by the writer and by
 * readers in any thread, so both sides share these constants and nothing else.
 *
 *   [ control: CONTROL_BYTES ][ index: maxGroups × INDEX_ENTRY_BYTES ][ data: capacity bytes ]
 *
 * Positions are absolute byte offsets into the log (monotonic, exact up to 2^53); the byte of
 * position p lives at data offset p % capacity. Records are 8-byte aligned and never wrap: a SKIP
 * word pads the end of the region when the next record does not fit.
 *
 * Record header (16 bytes): u32 kind, u32 length-or-code, f64 group sequence. Then:
 *   GROUP_OPEN   +16 f64 timestamp                     (24 bytes)
 *   FRAME_BEGIN  +16 f64 frame size, +24 f64 timestamp  (32 bytes); the length word holds the
 *                time the relay received the frame: the low 32 bits of metrics/clock.ts
 *                `monotonicMicros()` (0 = not recorded), for the fan-out latency histogram
 *   FRAME_DATA   +16 payload (length bytes), padded to 8
 *   FRAME_DATA   a frame's first chunk is *headed*: the length word also holds, in bits 20–24, the
 *   (headed)     byte count of the frame's moq-lite-05 wire header (varint zigzag(tsDelta), then
 *                varint size; tsDelta from the group's previous frame, the first from 0) and in bits
 *                25–28 that of the size varint alone (the 02–04 header, its tail). The header lies
 *                right-aligned in +16..+32 and the payload follows at +32, so a reader sends header
 *                and payload as one contiguous view: one transport write per frame, with no copy
 *                beyond the one into the ring.
 *   GROUP_END    -                                      (16 bytes)
 *   GROUP_ABORT  code in the length word                (16 bytes)
 *   TRACK_END    sequence word = final group, exclusive (16 bytes)
 *   TRACK_ABORT  code in the length word                (16 bytes)
 */

import { CodedError } from "../errors/coded-error.ts";
import { FAULT } from "../errors/codes.ts";

/** Record kinds as stored in the log, and what `RingReader.next()` returns. */
export const Rec = {
	/** Caught up: nothing new yet. */
	NONE: 0,
	GROUP_OPEN: 1,
	FRAME_BEGIN: 2,
	FRAME_DATA: 3,
	GROUP_END: 4,
	GROUP_ABORT: 5,
	TRACK_END: 6,
	TRACK_ABORT: 7,
	/** The reader fell a ring behind (or its record was overwritten while read): call seekLatest(). */
	LAPPED: 8,
} as const;
export type RecKind = (typeof Rec)[keyof typeof Rec];

/** Padding marker at the end of the data region (internal, never returned to callers). */
export const SKIP = 0x5c;

/** Group-abort codes the cache itself writes (the caller maps them onto moq-lite reset codes). */
export const CacheAbort = {
	/** The cache dropped the group: ring pressure protecting the latest group, or max groups. */
	EVICTED: 0xca01,
	/** The track ended while the group was still open. */
	TRACK_ENDED: 0xca02,
} as const;

export const MAGIC = 0x4d6f5172; // "MoQr"
/** 2: headed FRAME_DATA records (a frame's wire header stored before its first chunk). */
export const VERSION = 2;

/** Int32 slots of the control header. */
export const Ctl = {
	MAGIC: 0,
	VERSION: 1,
	CAPACITY: 2,
	MAX_GROUPS: 3,
	/** Seqlock guarding the hi/lo pairs below when a high word changes (odd = update in progress). */
	POS_SEQ: 4,
	HEAD_HI: 5,
	HEAD_LO: 6,
	RESERVE_HI: 7,
	RESERVE_LO: 8,
	/** Seqlock guarding the group index and LATEST_SLOT. */
	INDEX_SEQ: 9,
	LATEST_SLOT: 10,
	/** 0 live, Rec.TRACK_END or Rec.TRACK_ABORT (stored after the record is published). */
	TRACK_STATE: 11,
	TRACK_CODE: 12,
	/** Bitmask words: which worker threads read this ring (doorbell targets). */
	INTEREST: 16,
} as const;
export const INTEREST_WORDS = 4;
/** Workers a ring can name as interested (INTEREST_WORDS × 32). */
export const MAX_WORKERS = INTEREST_WORDS * 32;

export const CONTROL_BYTES = 128;
export const INDEX_ENTRY_BYTES = 32;
/** Float64 slots of one index entry. */
export const Entry = { SEQ: 0, START: 1, TIMESTAMP: 2, STATE: 3 } as const;

/** Index entry states; START_LOST is or-ed in once the GROUP_OPEN record is overwritten. */
export const GroupState = {
	EMPTY: 0,
	OPEN: 1,
	COMPLETE: 2,
	ABORTED: 3,
	START_LOST: 8,
} as const;

export const HEADER_BYTES = 16;
export const GROUP_OPEN_BYTES = 24;
export const FRAME_BEGIN_BYTES = 32;
/** Room before a headed FRAME_DATA's payload for the frame's wire header (two varints of up to 8 bytes). */
export const FRAME_HEAD_BYTES = 16;
/** FRAME_DATA length word: payload bytes in the low bits, header byte counts above (see the format above). */
export const DATA_LENGTH_MASK = 0xfffff;
export const HEAD_SHIFT = 20;
export const SIZE_HEAD_SHIFT = 25;

export const MIN_RING_BYTES = 4096;
export const MAX_RING_BYTES = 1 << 30;
export const MAX_GROUPS_LIMIT = 1024;
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;

export const TWO32 = 4294967296;

export function align8(n: number): number {
	return (n + 7) & ~7;
}

export function totalBytes(capacity: number, maxGroups: number): number {
	return CONTROL_BYTES + maxGroups * INDEX_ENTRY_BYTES + capacity;
}

export function indexOffset(): number {
	return CONTROL_BYTES;
}

export function dataOffset(maxGroups: number): number {
	return CONTROL_BYTES + maxGroups * INDEX_ENTRY_BYTES;
}

/**
 * Writes a 53-bit value as a hi/lo pair, wrapped in the POS_SEQ seqlock (single writer). The
 * writer calls this only when the high word changes; otherwise it stores the low word alone
 * (one atomic store is itself a consistent snapshot). See RingReader for the reader side.
 */
export function storePair(ctl: Int32Array, hiSlot: number, value: number): void {
	Atomics.add(ctl, Ctl.POS_SEQ, 1);
	Atomics.store(ctl, hiSlot, Math.floor(value / TWO32));
	Atomics.store(ctl, hiSlot + 1, value >>> 0);
	Atomics.add(ctl, Ctl.POS_SEQ, 1);
}

export function highWord(value: number): number {
	return Math.floor(value / TWO32);
}

/** Combines a hi/lo pair read inside a POS_SEQ seqlock. */
export function pairValue(hi: number, lo: number): number {
	return hi * TWO32 + (lo >>> 0);
}

/**
 * The cache refused a call: bad arguments, or garbage from a publisher (an unknown group, a frame
 * overflowing its size). Its code is FAULT: where a caller has a better code (group ingest answers
 * a publisher's garbage with PROTOCOL_VIOLATION) it uses its own.
 */
export class CacheError extends CodedError {
	constructor(message: string) {
		super(message, FAULT);
		this.name = "CacheError";
	}
}

/** Validates a group sequence (an integer in 0..2^53-1) and returns it. */
export function checkSeq(seq: number, what: string): number {
	if (!Number.isSafeInteger(seq) || seq < 0) throw new CacheError(`${what}: group sequence ${seq} is not in 0..2^53-1`);
	return seq;
}
