/**
 * Announce stream (bidi type 1, opened by the subscriber).
 * - 02: request `prefix`; reply ANNOUNCE_INIT then `status, suffix` (no hops).
 * - 03: request `prefix`; each announce `status, suffix, hopCount`.
 * - 04: request `prefix, excludeHop`; each announce `status, suffix, hopCount, hopId×n`
 *   (the sender appends its own id last).
 * - 05: as 04, plus ANNOUNCE_OK `hopId, activeCount` first (the sender omits its own id from the
 *   chain and the receiver appends ANNOUNCE_OK's hopId).
 * @module
 */

import { DecodeError } from "../../../coding/errors.ts";
import type { Reader } from "../../../coding/reader.ts";
import type { Writer } from "../../../coding/writer.ts";
import { PROTOCOL_VIOLATION, UNSUPPORTED } from "../../../errors/codes.ts";
import type { Path } from "../../../path/index.ts";
import {
	beginMessage,
	type DecodeLimits,
	decodeMessage,
	endMessage,
	MAX_HOPS,
	notInVersion,
	readPath,
	unsupported,
} from "./message.ts";
import {
	hasAnnounceInit,
	hasAnnounceOk,
	hasAnnounceRestart,
	hasHopCount,
	hasHops,
	type LiteVersion,
} from "./version.ts";

/** ANNOUNCE_REQUEST (a.k.a. ANNOUNCE_PLEASE / ANNOUNCE_SUBSCRIBE). */
export interface AnnounceRequest<P extends string = Path> {
	prefix: P;
	/** 04/05: the requester's own hop id; 0 = none. Not on the wire for 02/03 (decodes as 0). */
	excludeHop: number;
}

/** ANNOUNCE_OK (05 only): the responder's hop id and how many active announces follow at once. */
export interface AnnounceOk {
	hopId: number;
	activeCount: number;
}

/** ANNOUNCE_INIT (02 only): the suffixes active when the request arrived. */
export interface AnnounceInit<P extends string = Path> {
	suffixes: P[];
}

/** ANNOUNCE: one path became active or ended. */
export interface Announce<P extends string = Path> {
	active: boolean;
	suffix: P;
	/**
	 * The hop chain. 02: not on the wire (empty). 03: only its length travels, so it decodes as that
	 * many zeros ("unknown" ids). 04/05: hop ids. Ended announces always carry an empty chain.
	 */
	hops: number[];
}

const STATUS_ENDED = 0;
const STATUS_ACTIVE = 1;
/** 05 accepts an explicit restart status and treats it as a (replacing) active. */
const STATUS_RESTART = 2;

export function encodeAnnounceRequest(w: Writer, m: AnnounceRequest<string>, v: LiteVersion): void {
	const start = beginMessage(w);
	w.string(m.prefix);
	if (hasHops(v)) w.varint(m.excludeHop);
	endMessage(w, start);
}

export function decodeAnnounceRequest(r: Reader, v: LiteVersion, limits?: DecodeLimits): AnnounceRequest {
	return decodeMessage(r, v, limits, announceRequestBody);
}

function announceRequestBody(r: Reader, v: LiteVersion, limits: DecodeLimits | undefined): AnnounceRequest {
	const prefix = readPath(r, limits);
	const excludeHop = hasHops(v) ? r.varint() : 0;
	return { prefix, excludeHop };
}

export function encodeAnnounceOk(w: Writer, m: AnnounceOk, v: LiteVersion): void {
	if (!hasAnnounceOk(v)) throw notInVersion("ANNOUNCE_OK", v);
	const start = beginMessage(w);
	w.varint(m.hopId);
	w.varint(m.activeCount);
	endMessage(w, start);
}

export function decodeAnnounceOk(r: Reader, v: LiteVersion, limits?: DecodeLimits): AnnounceOk {
	if (!hasAnnounceOk(v)) throw unsupported("ANNOUNCE_OK", v, UNSUPPORTED);
	return decodeMessage(r, v, limits, announceOkBody);
}

function announceOkBody(r: Reader): AnnounceOk {
	const hopId = r.varint();
	return { hopId, activeCount: r.varint() };
}

export function encodeAnnounceInit(w: Writer, m: AnnounceInit<string>, v: LiteVersion): void {
	if (!hasAnnounceInit(v)) throw notInVersion("ANNOUNCE_INIT", v);
	const start = beginMessage(w);
	w.varint(m.suffixes.length);
	for (const suffix of m.suffixes) w.string(suffix);
	endMessage(w, start);
}

export function decodeAnnounceInit(r: Reader, v: LiteVersion, limits?: DecodeLimits): AnnounceInit {
	if (!hasAnnounceInit(v)) throw unsupported("ANNOUNCE_INIT", v, UNSUPPORTED);
	return decodeMessage(r, v, limits, announceInitBody);
}

function announceInitBody(r: Reader, _v: LiteVersion, limits: DecodeLimits | undefined): AnnounceInit {
	// No count cap needed: every suffix takes at least one byte of a bounded body.
	const count = r.varint();
	const suffixes: Path[] = [];
	for (let i = 0; i < count; i++) suffixes.push(readPath(r, limits));
	return { suffixes };
}

export function encodeAnnounce(w: Writer, m: Announce<string>, v: LiteVersion): void {
	// An ended announce still carries a hop count, 0: "bbb" ended on 03+ is `06 00 03 "bbb" 00`.
	const hops = m.active ? m.hops : EMPTY;
	if (hops.length > MAX_HOPS) throw new RangeError(`${hops.length} hops exceeds ${MAX_HOPS}`);
	const start = beginMessage(w);
	w.u8(m.active ? STATUS_ACTIVE : STATUS_ENDED);
	w.string(m.suffix);
	if (hasHopCount(v)) {
		w.varint(hops.length);
		if (hasHops(v)) for (const hop of hops) w.varint(hop);
	}
	endMessage(w, start);
}

const EMPTY: number[] = [];

export function decodeAnnounce(r: Reader, v: LiteVersion, limits?: DecodeLimits): Announce {
	return decodeMessage(r, v, limits, announceBody);
}

function announceBody(r: Reader, v: LiteVersion, limits: DecodeLimits | undefined): Announce {
	const status = r.u8();
	const active = status === STATUS_ACTIVE || (status === STATUS_RESTART && hasAnnounceRestart(v));
	if (!active && status !== STATUS_ENDED)
		throw new DecodeError(`invalid announce status ${status}`, PROTOCOL_VIOLATION);
	const suffix = readPath(r, limits);
	if (!hasHopCount(v)) return { active, suffix, hops: [] };
	const count = r.varint();
	if (count > MAX_HOPS) throw new DecodeError(`${count} hops exceeds ${MAX_HOPS}`, PROTOCOL_VIOLATION);
	const hops: number[] = new Array(count).fill(0);
	if (hasHops(v)) for (let i = 0; i < count; i++) hops[i] = r.varint();
	// An ended announce has no route (the encoder writes 0 hops): a peer's stray hops are read and dropped,
	// so what we decode is what we would send (found by the fuzzer's round-trip check).
	return { active, suffix, hops: active ? hops : [] };
}
