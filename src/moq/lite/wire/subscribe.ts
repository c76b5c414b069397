/**
 * Subscribe stream (bidi type 2, opened by the subscriber).
 * Subscriber → publisher: SUBSCRIBE, then any number of SUBSCRIBE_UPDATE.
 * Publisher → subscriber: responses, typed (`type, length, body`) on 03+:
 *
 * | type | 03/04 | 05 |
 * |---|---|---|
 * | 0 | SUBSCRIBE_OK `priority, ordered, maxLatency, start+1, end+1` | SUBSCRIBE_OK (a.k.a. START) `group` |
 * | 1 | SUBSCRIBE_DROP `start, end, error` | SUBSCRIBE_END `group` (exclusive) |
 * | 2 | — | SUBSCRIBE_DROP |
 *
 * On 02 the only response is an untyped, empty SUBSCRIBE_OK: the single byte `00`.
 * @module
 */

import { DecodeError } from "../../../coding/errors.ts";
import type { Reader } from "../../../coding/reader.ts";
import type { Writer } from "../../../coding/writer.ts";
import { UNEXPECTED_MESSAGE } from "../../../errors/codes.ts";
import type { Path } from "../../../path/index.ts";
import {
	beginMessage,
	type DecodeLimits,
	decodeMessage,
	endMessage,
	notInVersion,
	readOptionalGroup,
	readPath,
	readTrack,
	writeOptionalGroup,
	writeU8,
} from "./message.ts";
import {
	hasResponseType,
	hasSubscribeDrop,
	hasSubscribeEnd,
	hasSubscribeOkGroup,
	hasSubscribeParams,
	type LiteVersion,
} from "./version.ts";

export interface Subscribe<P extends string = Path> {
	/** Picked by the subscriber, unique within the session; it stamps every group stream. */
	id: number;
	broadcast: P;
	track: string;
	/** Subscriber priority, u8, higher first. */
	priority: number;
	/** 03+: deliver groups oldest first. 02 decodes as false. */
	ordered: boolean;
	/** 03+: how long a non-latest group stays worth sending (ms); 0 = no limit. */
	maxLatencyMs: number;
	/** 03+: first group wanted; null = start at the latest. */
	startGroup: number | null;
	/** 03+: last group wanted (inclusive); null = unbounded. */
	endGroup: number | null;
}

/** SUBSCRIBE_UPDATE: replaces the subscription's parameters (02: priority only). */
export interface SubscribeUpdate {
	priority: number;
	ordered: boolean;
	maxLatencyMs: number;
	startGroup: number | null;
	endGroup: number | null;
}

/**
 * SUBSCRIBE_OK. Which fields travel depends on the version:
 * - 02: none (the message is empty);
 * - 03/04: `priority, ordered, maxLatencyMs, startGroup, endGroup` (clients ignore them; missing
 *   fields encode as 0 / false / null);
 * - 05: `group`, the absolute first group that will be delivered (required).
 * Decoding fills exactly the fields of its version.
 */
export interface SubscribeOk {
	priority?: number;
	ordered?: boolean;
	maxLatencyMs?: number;
	startGroup?: number | null;
	endGroup?: number | null;
	group?: number;
}

/** SUBSCRIBE_END (05): the first group sequence that will never come (exclusive); 0 = no groups at all. */
export interface SubscribeEnd {
	group: number;
}

/** SUBSCRIBE_DROP (03+): groups `start..=end` will not be delivered, with an error code. */
export interface SubscribeDrop {
	start: number;
	end: number;
	error: number;
}

export type SubscribeResponse =
	| ({ type: "ok" } & SubscribeOk)
	| ({ type: "end" } & SubscribeEnd)
	| ({ type: "drop" } & SubscribeDrop);

const TYPE_OK = 0;
/** 03/04 type 1 is DROP; 05 type 1 is END and DROP moves to 2. */
const TYPE_DROP_04 = 1;
const TYPE_END = 1;
const TYPE_DROP_05 = 2;

// ---- SUBSCRIBE ----

export function encodeSubscribe(w: Writer, m: Subscribe<string>, v: LiteVersion): void {
	const start = beginMessage(w);
	w.varint(m.id);
	w.string(m.broadcast);
	w.string(m.track);
	writeU8(w, m.priority);
	if (hasSubscribeParams(v)) writeParams(w, m);
	endMessage(w, start);
}

export function decodeSubscribe(r: Reader, v: LiteVersion, limits?: DecodeLimits): Subscribe {
	return decodeMessage(r, v, limits, subscribeBody);
}

function subscribeBody(r: Reader, v: LiteVersion, limits: DecodeLimits | undefined): Subscribe {
	const id = r.varint();
	const broadcast = readPath(r, limits);
	const track = readTrack(r);
	const priority = r.u8();
	if (!hasSubscribeParams(v))
		return { id, broadcast, track, priority, ordered: false, maxLatencyMs: 0, startGroup: null, endGroup: null };
	const ordered = r.bool();
	const maxLatencyMs = r.varint();
	const startGroup = readOptionalGroup(r);
	const endGroup = readOptionalGroup(r);
	return { id, broadcast, track, priority, ordered, maxLatencyMs, startGroup, endGroup };
}

/** `ordered, maxLatency, start+1, end+1`: the tail shared by SUBSCRIBE, SUBSCRIBE_UPDATE and 03/04 SUBSCRIBE_OK. */
function writeParams(w: Writer, m: SubscribeUpdate): void {
	w.bool(m.ordered);
	w.varint(m.maxLatencyMs);
	writeOptionalGroup(w, m.startGroup);
	writeOptionalGroup(w, m.endGroup);
}

// ---- SUBSCRIBE_UPDATE ----

export function encodeSubscribeUpdate(w: Writer, m: SubscribeUpdate, v: LiteVersion): void {
	const start = beginMessage(w);
	writeU8(w, m.priority);
	if (hasSubscribeParams(v)) writeParams(w, m);
	endMessage(w, start);
}

export function decodeSubscribeUpdate(r: Reader, v: LiteVersion, limits?: DecodeLimits): SubscribeUpdate {
	return decodeMessage(r, v, limits, subscribeUpdateBody);
}

function subscribeUpdateBody(r: Reader, v: LiteVersion): SubscribeUpdate {
	const priority = r.u8();
	if (!hasSubscribeParams(v)) return { priority, ordered: false, maxLatencyMs: 0, startGroup: null, endGroup: null };
	const ordered = r.bool();
	const maxLatencyMs = r.varint();
	const startGroup = readOptionalGroup(r);
	const endGroup = readOptionalGroup(r);
	return { priority, ordered, maxLatencyMs, startGroup, endGroup };
}

// ---- responses ----

/** 02: `00`; 03/04: `00 len priority ordered maxLatency start+1 end+1`; 05: `00 len group`. */
export function encodeSubscribeOk(w: Writer, m: SubscribeOk, v: LiteVersion): void {
	if (hasResponseType(v)) w.varint(TYPE_OK);
	const start = beginMessage(w);
	if (hasSubscribeOkGroup(v)) {
		if (m.group === undefined) throw new RangeError("lite-05 SUBSCRIBE_OK needs the first group");
		w.varint(m.group);
	} else if (hasSubscribeParams(v)) {
		writeU8(w, m.priority ?? 0);
		w.bool(m.ordered ?? false);
		w.varint(m.maxLatencyMs ?? 0);
		writeOptionalGroup(w, m.startGroup ?? null);
		writeOptionalGroup(w, m.endGroup ?? null);
	}
	endMessage(w, start);
}

export function encodeSubscribeEnd(w: Writer, m: SubscribeEnd, v: LiteVersion): void {
	if (!hasSubscribeEnd(v)) throw notInVersion("SUBSCRIBE_END", v);
	w.varint(TYPE_END);
	const start = beginMessage(w);
	w.varint(m.group);
	endMessage(w, start);
}

export function encodeSubscribeDrop(w: Writer, m: SubscribeDrop, v: LiteVersion): void {
	if (!hasSubscribeDrop(v)) throw notInVersion("SUBSCRIBE_DROP", v);
	w.varint(hasSubscribeEnd(v) ? TYPE_DROP_05 : TYPE_DROP_04);
	const start = beginMessage(w);
	w.varint(m.start);
	w.varint(m.end);
	w.varint(m.error);
	endMessage(w, start);
}

/** Reads one response (type included on 03+). An unknown type is DecodeError code 16. */
export function decodeSubscribeResponse(r: Reader, v: LiteVersion, limits?: DecodeLimits): SubscribeResponse {
	if (!hasResponseType(v)) return decodeMessage(r, v, limits, okBody);
	const type = r.varint();
	if (type === TYPE_OK) return decodeMessage(r, v, limits, okBody);
	if (hasSubscribeEnd(v)) {
		if (type === TYPE_END) return decodeMessage(r, v, limits, endBody);
		if (type === TYPE_DROP_05) return decodeMessage(r, v, limits, dropBody);
	} else if (type === TYPE_DROP_04) {
		return decodeMessage(r, v, limits, dropBody);
	}
	throw new DecodeError(`unknown subscribe response type ${type}`, UNEXPECTED_MESSAGE);
}

function okBody(r: Reader, v: LiteVersion): SubscribeResponse {
	if (!hasResponseType(v)) return { type: "ok" };
	if (hasSubscribeOkGroup(v)) return { type: "ok", group: r.varint() };
	const priority = r.u8();
	const ordered = r.bool();
	const maxLatencyMs = r.varint();
	const startGroup = readOptionalGroup(r);
	const endGroup = readOptionalGroup(r);
	return { type: "ok", priority, ordered, maxLatencyMs, startGroup, endGroup };
}

function endBody(r: Reader): SubscribeResponse {
	return { type: "end", group: r.varint() };
}

function dropBody(r: Reader): SubscribeResponse {
	const start = r.varint();
	const end = r.varint();
	return { type: "drop", start, end, error: r.varint() };
}
