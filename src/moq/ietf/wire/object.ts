/**
 * IETF moq-transport data streams, drafts 14–20: one unidirectional stream per subgroup, a
 * SUBGROUP_HEADER then objects, FIN. From draft 17 every varint here is leading-ones (./varint.ts);
 * from 18 the header type may carry the FIRST_OBJECT bit (0x40): the stream starts at the group's
 * first object.
 *
 * SUBGROUP_HEADER: `type, track alias, group ID, [subgroup ID], [publisher priority (u8)]`. The type
 * is 0x10–0x1D on every draft, plus 0x30–0x3D (no priority byte) from draft-15; its bits: 0x01
 * objects carry extension headers (properties), 0x02 the subgroup ID is the first object's ID,
 * 0x04 the subgroup ID is on the wire, 0x08 the subgroup holds the group's last object. Both 0x02
 * and 0x04 is not a type.
 *
 * Object: `object ID delta, [extensions length, extensions], payload length, payload` where a zero
 * payload length is followed by an object status instead (0 normal, 1 does not exist (14/15), 3 end
 * of group, 4 end of track). The first object's delta is its ID, each later one's ID is the previous
 * plus delta plus one.
 *
 * The relay writes subgroup 0 of every group with type 0x19 (priority byte, end of group in it,
 * extensions; 0x59 with FIRST_OBJECT on 18+), object IDs 0, 1, 2, … (every delta 0), and each
 * frame's timestamp as the Timestamp property (type 0x10, a varint: the same bytes whether types are
 * absolute (14/15) or delta (16+)).
 * @module
 */

import type { Reader } from "../../../coding/reader.ts";
import { varintSize, writeVarint } from "../../../coding/varint.ts";
import { IetfClose } from "../../../errors/codes.ts";
import {
	hasFirstObjectBit,
	hasLeadingOnesVarints,
	hasObjectDoesNotExist,
	hasPriorityFreeSubgroups,
	hasSevenByteVarint,
	type IetfDraft,
} from "../version.ts";
import { IetfDecodeError } from "./message.ts";
import { loSize, writeLo } from "./varint.ts";

/** 18+: the subgroup header type bit saying the stream starts at the group's first object. */
export const FIRST_OBJECT_BIT = 0x40;

/** The uni stream type of a FETCH reply (never accepted: the relay sends no FETCH). */
export const FETCH_HEADER = 0x05;

export const ObjectStatus = {
	NORMAL: 0x0,
	DOES_NOT_EXIST: 0x1,
	END_OF_GROUP: 0x3,
	END_OF_TRACK: 0x4,
} as const;

/** The Timestamp object property the relay writes. */
export const PROP_TIMESTAMP = 0x10;

export interface SubgroupHeader {
	type: number;
	alias: number;
	group: number;
	/** The subgroup ID: on the wire (bit 0x04), 0 (neither bit), or null when it is the first object's ID (bit 0x02). */
	subgroup: number | null;
	/** The publisher priority byte, or null for the 0x30–0x3D types. */
	priority: number | null;
	/** Objects carry extension headers. */
	extensions: boolean;
	/** The subgroup holds the group's last object. */
	endOfGroup: boolean;
	/** 18+: the FIRST_OBJECT bit; true on drafts without it (they make no such claim). */
	firstObject: boolean;
}

/** True for a SUBGROUP_HEADER type of draft `d`. */
export function isSubgroupType(type: number, d: IetfDraft): boolean {
	const raw = hasFirstObjectBit(d) ? type & ~FIRST_OBJECT_BIT : type;
	let base = raw;
	if (raw >= 0x30 && raw <= 0x3d) {
		if (!hasPriorityFreeSubgroups(d)) return false;
		base = raw - 0x20;
	}
	if (base < 0x10 || base > 0x1d) return false;
	return (base & 0x06) !== 0x06;
}

/**
 * The header after its type (which the stream dispatcher has read, in the draft's varint form, and
 * checked with `isSubgroupType`). `r` reads varints in the draft's form (a LoReader on 17+).
 */
export function decodeSubgroupHeader(r: Reader, type: number, d: IetfDraft = 14): SubgroupHeader {
	const flagged = hasFirstObjectBit(d);
	const raw = flagged ? type & ~FIRST_OBJECT_BIT : type;
	const base = raw >= 0x30 ? raw - 0x20 : raw;
	const alias = r.varint();
	const group = r.varint();
	const subgroup = base & 0x04 ? r.varint() : base & 0x02 ? null : 0;
	const priority = raw >= 0x30 ? null : r.u8();
	return {
		type,
		alias,
		group,
		subgroup,
		priority,
		extensions: (base & 0x01) !== 0,
		endOfGroup: (base & 0x08) !== 0,
		firstObject: !flagged || (type & FIRST_OBJECT_BIT) !== 0,
	};
}

/** The type the relay writes: priority byte, end of group, with or without extensions (18+: FIRST_OBJECT). */
export function subgroupType(extensions: boolean, d: IetfDraft = 14): number {
	return 0x18 | (extensions ? 0x01 : 0) | (hasFirstObjectBit(d) ? FIRST_OBJECT_BIT : 0);
}

/** Room `writeSubgroupHeader` may need (leading-ones varints run to 9 bytes). */
export const SUBGROUP_HEADER_MAX = 2 + 9 + 9 + 1;

/** A varint in the draft's form at `buf[pos]`; returns the end. */
function writeDraftVarint(buf: Uint8Array, pos: number, v: number, lo: boolean): number {
	return lo ? writeLo(buf, pos, v) : writeVarint(buf, pos, v);
}

/**
 * Writes a SUBGROUP_HEADER (type 0x19 / 0x18, subgroup 0; 0x59 / 0x58 on 18+, which always start
 * at object 0) at `buf[pos]`, in draft `d`'s varints; returns the end.
 */
export function writeSubgroupHeader(
	buf: Uint8Array,
	pos: number,
	alias: number,
	group: number,
	priority: number,
	extensions: boolean,
	d: IetfDraft = 14,
): number {
	const lo = hasLeadingOnesVarints(d);
	// The type is below 0x40 (one byte either way) or, with FIRST_OBJECT, below 0x80 (one leading-ones byte).
	buf[pos] = subgroupType(extensions, d);
	let p = writeDraftVarint(buf, pos + 1, alias, lo);
	p = writeDraftVarint(buf, p, group, lo);
	buf[p] = priority;
	return p + 1;
}

/** Room `writeObjectHeader` may need: delta, extensions length, property type and value, size, status. */
export const OBJECT_HEADER_MAX = 9 + 1 + 1 + 9 + 9 + 1;

/**
 * Writes one object header at `buf[pos]` and returns the end: ID delta, then (with `extensions`) the
 * Timestamp property (`timestamp` < 0 or not an integer: an empty extensions block), then the payload
 * length, then status 0 (normal) when the payload is empty. The payload follows, written separately.
 */
export function writeObjectHeader(
	buf: Uint8Array,
	pos: number,
	idDelta: number,
	extensions: boolean,
	timestamp: number,
	size: number,
	d: IetfDraft = 14,
): number {
	const lo = hasLeadingOnesVarints(d);
	let p = writeDraftVarint(buf, pos, idDelta, lo);
	if (extensions) {
		if (timestamp >= 0 && Number.isSafeInteger(timestamp)) {
			// The length (≤ 10) and the type (0x10) are one byte in both varint forms.
			buf[p] = 1 + (lo ? loSize(timestamp) : varintSize(timestamp));
			buf[p + 1] = PROP_TIMESTAMP;
			p = writeDraftVarint(buf, p + 2, timestamp, lo);
		} else {
			buf[p++] = 0;
		}
	}
	p = writeDraftVarint(buf, p, size, lo);
	if (size === 0) buf[p++] = ObjectStatus.NORMAL;
	return p;
}

// ---------------------------------------------------------------------------------------------
// Incremental object parser (the data plane: no allocation per object)

const ST_ID = 0;
const ST_EXT_LEN = 1;
const ST_EXT = 2;
const ST_SIZE = 3;
const ST_STATUS = 4;
const ST_PAYLOAD = 5;
/** An END_OF_GROUP / END_OF_TRACK object was read: nothing may follow. */
const ST_ENDED = 6;

/**
 * Parses the objects of a subgroup stream (after its header) from chunks as they arrive, calling
 * `onObject(id, size)`, `onData(view)` zero or more times (views into the pushed chunk, valid only
 * during the call), `onEnd()`, and `onStatus(id, status)` for an empty object whose status is not
 * Normal. Extension headers are skipped (the relay stamps arrival times on drafts 14–16, where the
 * track's timescale is not declared). Throws IetfDecodeError (PROTOCOL_VIOLATION) for bytes that
 * can never be objects; an object above `maxObjectBytes` throws with `tooLarge` set.
 */
export class ObjectParser {
	onObject: ((id: number, size: number) => void) | null = null;
	onData: ((view: Uint8Array) => void) | null = null;
	onEnd: (() => void) | null = null;
	onStatus: ((id: number, status: number) => void) | null = null;

	readonly #extensions: boolean;
	readonly #maxObjectBytes: number;
	readonly #doesNotExist: boolean;
	/** 17+: leading-ones varints (and whether their 7-byte form is valid). */
	readonly #lo: boolean;
	readonly #seven: boolean;
	#state = ST_ID;
	/** The ID of the current object; -1 before the first. */
	#id = -1;
	#remaining = 0;
	/** A varint split across chunks. */
	readonly #stash = new Uint8Array(9);
	#stashLen = 0;
	#stashNeed = 0;
	#value = 0;
	/** Set by the first error; every later call rethrows it. */
	#failed: IetfDecodeError | null = null;
	/** The last error was an object above the size limit. */
	tooLarge = false;

	constructor(d: IetfDraft, extensions: boolean, maxObjectBytes: number) {
		this.#extensions = extensions;
		this.#maxObjectBytes = maxObjectBytes;
		this.#doesNotExist = hasObjectDoesNotExist(d);
		this.#lo = hasLeadingOnesVarints(d);
		this.#seven = hasSevenByteVarint(d);
	}

	/** Between objects (or after an end-of-group object): a FIN here ends the stream cleanly. */
	get atBoundary(): boolean {
		return (this.#state === ST_ID && this.#stashLen === 0) || this.#state === ST_ENDED;
	}

	/** The ID of the last object begun, -1 before any. */
	get lastId(): number {
		return this.#id;
	}

	push(chunk: Uint8Array, start = 0): void {
		if (this.#failed !== null) throw this.#failed;
		const end = chunk.length;
		let p = start;
		while (p < end) {
			switch (this.#state) {
				case ST_PAYLOAD: {
					const n = Math.min(this.#remaining, end - p);
					this.onData?.(chunk.subarray(p, p + n));
					p += n;
					this.#remaining -= n;
					if (this.#remaining === 0) {
						this.#state = ST_ID;
						this.onEnd?.();
					}
					continue;
				}
				case ST_EXT: {
					const n = Math.min(this.#remaining, end - p);
					p += n;
					this.#remaining -= n;
					if (this.#remaining === 0) this.#state = ST_SIZE;
					continue;
				}
				case ST_ENDED:
					this.#fail("object after the end of its group or track");
			}
			const q = this.#varint(chunk, p, end);
			if (q < 0) return;
			p = q;
			const v = this.#value;
			switch (this.#state) {
				case ST_ID: {
					const id = this.#id < 0 ? v : this.#id + v + 1;
					if (!Number.isSafeInteger(id)) this.#fail("object ID above 2^53");
					this.#id = id;
					this.#state = this.#extensions ? ST_EXT_LEN : ST_SIZE;
					break;
				}
				case ST_EXT_LEN:
					if (v > this.#maxObjectBytes) this.#fail(`extension headers of ${v} bytes`);
					this.#remaining = v;
					this.#state = v > 0 ? ST_EXT : ST_SIZE;
					break;
				case ST_SIZE:
					if (v === 0) {
						this.#state = ST_STATUS;
						break;
					}
					if (v > this.#maxObjectBytes) {
						this.tooLarge = true;
						this.#fail(`object of ${v} bytes exceeds ${this.#maxObjectBytes}`);
					}
					this.#remaining = v;
					this.#state = ST_PAYLOAD;
					this.onObject?.(this.#id, v);
					break;
				case ST_STATUS:
					this.#status(v);
					break;
			}
		}
	}

	/** FIN: throws when the stream ended inside an object. */
	finish(): void {
		if (this.#failed !== null) throw this.#failed;
		if (!this.atBoundary) this.#fail("stream ended inside an object");
	}

	#status(status: number): void {
		switch (status) {
			case ObjectStatus.NORMAL:
				this.#state = ST_ID;
				this.onObject?.(this.#id, 0);
				this.onEnd?.();
				return;
			case ObjectStatus.END_OF_GROUP:
			case ObjectStatus.END_OF_TRACK:
				this.#state = ST_ENDED;
				this.onStatus?.(this.#id, status);
				return;
			case ObjectStatus.DOES_NOT_EXIST:
				if (this.#doesNotExist) {
					this.#state = ST_ID;
					this.onStatus?.(this.#id, status);
					return;
				}
		}
		this.#fail(`object status ${status}`);
	}

	/**
	 * One varint from `chunk[p]`, continuing one split across chunks: the position after it (value in
	 * #value), or -1 when the chunk ended first (its bytes are kept).
	 */
	#varint(chunk: Uint8Array, p: number, end: number): number {
		if (this.#stashLen === 0) {
			const need = this.#lo ? this.#loLength(chunk[p]) : 1 << (chunk[p] >> 6);
			if (end - p >= need) {
				this.#value = this.#decode(chunk, p, need);
				return p + need;
			}
			for (let i = p; i < end; i++) this.#stash[this.#stashLen++] = chunk[i];
			this.#stashNeed = need;
			return -1;
		}
		while (this.#stashLen < this.#stashNeed && p < end) this.#stash[this.#stashLen++] = chunk[p++];
		if (this.#stashLen < this.#stashNeed) return -1;
		this.#value = this.#decode(this.#stash, 0, this.#stashNeed);
		this.#stashLen = 0;
		return p;
	}

	/** The length of a leading-ones varint from its first byte. */
	#loLength(first: number): number {
		if (first < 0x80) return 1;
		if (first < 0xc0) return 2;
		if (first < 0xe0) return 3;
		if (first < 0xf0) return 4;
		if (first < 0xf8) return 5;
		if (first < 0xfc) return 6;
		if (first < 0xfe) {
			if (!this.#seven) this.#fail("the 7-byte varint form (1111110x) is reserved on draft-17");
			return 7;
		}
		return first === 0xfe ? 8 : 9;
	}

	#decode(b: Uint8Array, p: number, n: number): number {
		if (this.#lo) {
			let v = n >= 8 ? 0 : b[p] & (0xff >> n);
			for (let i = 1; i < n; i++) {
				v = v * 256 + b[p + i];
				if (v > Number.MAX_SAFE_INTEGER) this.#fail("varint above 2^53-1");
			}
			return v;
		}
		const first = b[p] & 0x3f;
		if (n === 1) return first;
		if (n === 2) return (first << 8) | b[p + 1];
		if (n === 4) return ((first << 24) >>> 0) + (b[p + 1] << 16) + (b[p + 2] << 8) + b[p + 3];
		const hi = ((first << 24) >>> 0) + (b[p + 1] << 16) + (b[p + 2] << 8) + b[p + 3];
		if (hi > 0x1fffff) this.#fail("varint above 2^53-1");
		return hi * 0x100000000 + ((b[p + 4] << 24) >>> 0) + (b[p + 5] << 16) + (b[p + 6] << 8) + b[p + 7];
	}

	#fail(message: string): never {
		this.#failed = new IetfDecodeError(message, IetfClose.PROTOCOL_VIOLATION);
		throw this.#failed;
	}
}
