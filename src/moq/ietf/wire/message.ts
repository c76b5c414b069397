/**
 * IETF moq-transport control messages, drafts 14–20: `type (varint), length (u16), body`, the body
 * consumed exactly. One decoder for every message a relay can receive (`decodeControl`) and one
 * encoder for every message (`encodeControl`), each switched on the draft where the layout differs.
 * On drafts 14–16 they travel on the control stream; from 17 on, each on its request's own stream
 * (SETUP on a unidirectional one), every varint in the leading-ones form (./varint.ts), replies
 * without a request ID, message parameters as typed values, and SETUP options and Track Properties
 * to the end of the message.
 *
 * Decoders are synchronous over a `Reader`, like the moq-lite ones (src/moq/lite/wire/message.ts):
 * - `NEED_MORE` while the message is not entirely buffered (a body is never started before all of
 *   it is there, so a truncated message only ever produces NEED_MORE);
 * - `IetfDecodeError` (a DecodeError whose code is an IETF session close code) for bytes that can
 *   never decode: an unknown type, a body shorter or longer than its fields, a varint above 2^53,
 *   a tuple of more than 32 fields, a full track name above 4096 bytes, a reason above 1024, more
 *   than 64 parameters, invalid UTF-8 in a namespace field or track name, a length above the limit.
 *   Caps are checked before anything is allocated.
 *
 * Byte layouts follow @moq/net 0.3.4's `ietf/*.js` (the official client) and the drafts; the codec
 * tests (test/ietf-wire.test.ts) compare our bytes with its encoder's.
 * @module
 */

import { DecodeError, NEED_MORE } from "../../../coding/errors.ts";
import { Reader } from "../../../coding/reader.ts";
import { Writer } from "../../../coding/writer.ts";
import { IetfClose } from "../../../errors/codes.ts";
import { MAX_PATH_SEGMENTS, normalizePath, type Path, PathError } from "../../../path/index.ts";
import {
	hasDeltaTypes,
	hasFieldFilters,
	hasGoawayRequestId,
	hasGoawayTimeout,
	hasInlineFetchFields,
	hasInlinePublishFields,
	hasInlineSubscribeFields,
	hasInlineSubscribeOkFields,
	hasLeadingOnesVarints,
	hasNamespaceStream,
	hasPerRequestReplies,
	hasPublishBlocked,
	hasRenumberedSubscribeNamespace,
	hasRequestFlowControl,
	hasRequestIdInReplies,
	hasRequestOk,
	hasRequestStreams,
	hasRequiredRequestIdDelta,
	hasRetryInterval,
	hasSetupVersions,
	hasSevenByteVarint,
	hasSubscribeOptions,
	hasTrackExtensions,
	hasTypedParams,
	hasUnifiedSetup,
	type IetfDraft,
	namespaceDoneById,
} from "../version.ts";
import { LoReader, LoWriter } from "./varint.ts";

/** Bytes that can never decode; `code` is an IETF session close code (IetfClose). */
export class IetfDecodeError extends DecodeError {
	constructor(message: string, code: number = IetfClose.PROTOCOL_VIOLATION) {
		super(message, code);
		this.name = "IetfDecodeError";
	}
}

/** Decoder bounds from [limits]; every field optional. */
export interface IetfLimits {
	/** Largest control message body accepted (the u16 length caps it at 65535 anyway). */
	maxMessageBytes?: number;
	/** A namespace tuple may have at most this many fields (and its path as many segments). */
	maxPathSegments?: number;
}

/** The drafts' own caps. */
export const MAX_TUPLE_FIELDS = 32;
export const MAX_FULL_TRACK_NAME = 4096;
export const MAX_REASON_BYTES = 1024;
export const MAX_URI_BYTES = 8192;
export const MAX_PARAMS = 64;
export const MAX_SETUP_VERSIONS = 128;
export const MAX_MESSAGE_BYTES = 0xffff;

/** Control message types. Several codes mean another message from draft-15 or 16 on (see each). */
export const Msg = {
	/** SUBSCRIBE_UPDATE (16: REQUEST_UPDATE). */
	SUBSCRIBE_UPDATE: 0x02,
	SUBSCRIBE: 0x03,
	SUBSCRIBE_OK: 0x04,
	/** 14: SUBSCRIBE_ERROR; 15+: REQUEST_ERROR. */
	REQUEST_ERROR: 0x05,
	PUBLISH_NAMESPACE: 0x06,
	/** 14: PUBLISH_NAMESPACE_OK; 15+: REQUEST_OK. */
	REQUEST_OK: 0x07,
	/** 14: PUBLISH_NAMESPACE_ERROR; 16: NAMESPACE (on a SUBSCRIBE_NAMESPACE stream). */
	PUBLISH_NAMESPACE_ERROR: 0x08,
	NAMESPACE: 0x08,
	PUBLISH_NAMESPACE_DONE: 0x09,
	UNSUBSCRIBE: 0x0a,
	PUBLISH_DONE: 0x0b,
	PUBLISH_NAMESPACE_CANCEL: 0x0c,
	TRACK_STATUS: 0x0d,
	/** 14: TRACK_STATUS_OK; 16: NAMESPACE_DONE (on a SUBSCRIBE_NAMESPACE stream). */
	TRACK_STATUS_OK: 0x0e,
	NAMESPACE_DONE: 0x0e,
	/** 14 only. */
	TRACK_STATUS_ERROR: 0x0f,
	GOAWAY: 0x10,
	SUBSCRIBE_NAMESPACE: 0x11,
	/** 14 only. */
	SUBSCRIBE_NAMESPACE_OK: 0x12,
	/** 14 only. */
	SUBSCRIBE_NAMESPACE_ERROR: 0x13,
	/** 14/15 only. */
	UNSUBSCRIBE_NAMESPACE: 0x14,
	MAX_REQUEST_ID: 0x15,
	FETCH: 0x16,
	FETCH_CANCEL: 0x17,
	FETCH_OK: 0x18,
	/** 14 only. */
	FETCH_ERROR: 0x19,
	REQUESTS_BLOCKED: 0x1a,
	PUBLISH: 0x1d,
	PUBLISH_OK: 0x1e,
	/** 14 only. */
	PUBLISH_ERROR: 0x1f,
	CLIENT_SETUP: 0x20,
	SERVER_SETUP: 0x21,
	/** 17 only: PUBLISH_BLOCKED (on a SUBSCRIBE_NAMESPACE stream; = 14's TRACK_STATUS_ERROR). */
	PUBLISH_BLOCKED: 0x0f,
	/** 18+: SUBSCRIBE_NAMESPACE (14–17: 0x11). */
	SUBSCRIBE_NAMESPACE_18: 0x50,
	/** 18+: SUBSCRIBE_TRACKS. */
	SUBSCRIBE_TRACKS: 0x51,
	/** 17+: SETUP, both ways, as the type of a unidirectional stream. */
	SETUP: 0x2f00,
} as const;

/** SETUP parameters. */
export const SetupParam = {
	PATH: 0x01,
	MAX_REQUEST_ID: 0x02,
	AUTHORIZATION_TOKEN: 0x03,
	MAX_AUTH_TOKEN_CACHE_SIZE: 0x04,
	AUTHORITY: 0x05,
	IMPLEMENTATION: 0x07,
} as const;

/** Message parameters this relay reads or writes. */
export const MsgParam = {
	DELIVERY_TIMEOUT: 0x02,
	AUTHORIZATION_TOKEN: 0x03,
	MAX_CACHE_DURATION: 0x04,
	SUBGROUP_DELIVERY_TIMEOUT: 0x06,
	EXPIRES: 0x08,
	LARGEST_OBJECT: 0x09,
	PUBLISHER_PRIORITY: 0x0e,
	FORWARD: 0x10,
	SUBSCRIBER_PRIORITY: 0x20,
	SUBSCRIPTION_FILTER: 0x21,
	GROUP_ORDER: 0x22,
	/** 20+: a backfill request beside the subscription. */
	FILL_PARAMETERS: 0x23,
	/** 20+: whether the subscriber wants Track Properties. */
	INCLUDE_PROPERTIES: 0x35,
	/** The MoQ Cluster extension's advertisement path and cost (accepted, never sent). */
	HOP_PATH: 0x40b57,
	ROUTE_COST: 0x40b58,
} as const;

/**
 * 17+: how each even message parameter's value is laid out (an odd type is always length-prefixed
 * bytes). An even type not here cannot be skipped: it refuses the message.
 */
const EVEN_PARAM_KIND = new Map<number, "varint" | "u8" | "bool">([
	[MsgParam.DELIVERY_TIMEOUT, "varint"],
	[MsgParam.MAX_CACHE_DURATION, "varint"],
	[MsgParam.SUBGROUP_DELIVERY_TIMEOUT, "varint"],
	[MsgParam.EXPIRES, "varint"],
	[MsgParam.PUBLISHER_PRIORITY, "u8"],
	[MsgParam.FORWARD, "bool"],
	[MsgParam.SUBSCRIBER_PRIORITY, "u8"],
	[MsgParam.GROUP_ORDER, "u8"],
	[MsgParam.ROUTE_COST, "varint"],
]);

/**
 * SUBSCRIBE filter types: the draft-14 inline field, the 15–19 SUBSCRIPTION_FILTER parameter's tag.
 * Draft 20's LOCATION_FILTER has no tag: its field count maps onto these, plus UNFILTERED (no field)
 * and RELATIVE (one field: `groups` back from the largest group), which have no tag before 20.
 */
export const FilterType = {
	NEXT_GROUP_START: 0x1,
	LARGEST_OBJECT: 0x2,
	ABSOLUTE_START: 0x3,
	ABSOLUTE_RANGE: 0x4,
	/** 20+ only: no filter (the empty LOCATION_FILTER). */
	UNFILTERED: 0x100,
	/** 20+ only: `groups` groups back from the largest (0: the next group). */
	RELATIVE: 0x101,
} as const;

/** Key-value parameters: an even type carries a varint, an odd one bytes. */
export type Params = Map<number, number | Uint8Array>;

export interface Location {
	group: number;
	object: number;
}

export interface Filter {
	type: number;
	/** ABSOLUTE_START / ABSOLUTE_RANGE. */
	start: Location | null;
	/** ABSOLUTE_RANGE: the end group (inclusive). */
	endGroup: number | null;
	/** 20+ RELATIVE: how many groups back. */
	groups?: number;
	/** 20+ ABSOLUTE_RANGE: the end object (inclusive), when the range ends inside its group. */
	endObject?: number;
}

/** Every control message, decoded. Namespaces are tuples of fields; see `tupleToPath`. */
export type IetfMessage =
	| { kind: "client_setup"; versions: number[]; params: Params }
	| { kind: "server_setup"; version: number; params: Params }
	/** 17+: SETUP (0x2F00), both ways, on a unidirectional stream. */
	| { kind: "setup"; params: Params }
	| {
			kind: "subscribe";
			requestId: number;
			namespace: string[];
			track: string;
			/** IETF priority: 0 is the most important. */
			priority: number;
			/** 0 publisher's choice, 1 ascending, 2 descending. */
			groupOrder: number;
			forward: boolean;
			filter: Filter;
			params: Params;
	  }
	| {
			kind: "subscribe_ok";
			requestId: number;
			alias: number;
			expires: number;
			groupOrder: number;
			largest: Location | null;
			params: Params;
			/** 16: Track Extensions after the parameters. */
			extensions: Params;
	  }
	| {
			kind: "subscribe_update";
			requestId: number;
			/** 14–16: the subscription it updates; 17+ (REQUEST_UPDATE on the request's stream): = requestId. */
			subscriptionId: number;
			params: Params;
	  }
	| { kind: "unsubscribe"; requestId: number }
	| { kind: "publish_done"; requestId: number; status: number; streamCount: number; reason: string }
	| {
			kind: "request_error";
			/** The wire type: 0x05 (SUBSCRIBE_ERROR / REQUEST_ERROR), or draft-14's 0x08, 0x0F, 0x13, 0x19, 0x1F. */
			type: number;
			requestId: number;
			code: number;
			retryInterval: number;
			reason: string;
	  }
	| {
			kind: "request_ok";
			/** 0x07 (PUBLISH_NAMESPACE_OK / REQUEST_OK) or draft-14's 0x12 SUBSCRIBE_NAMESPACE_OK. */
			type: number;
			requestId: number;
			params: Params;
	  }
	| { kind: "publish_namespace"; requestId: number; namespace: string[]; params: Params }
	| { kind: "publish_namespace_done"; requestId: number | null; namespace: string[] | null }
	| {
			kind: "publish_namespace_cancel";
			requestId: number | null;
			namespace: string[] | null;
			code: number;
			reason: string;
	  }
	| { kind: "track_status"; requestId: number; namespace: string[]; track: string; params: Params }
	| {
			kind: "goaway";
			uri: string;
			/** 17+: how long (ms) before the sender closes (0: unspecified). */
			timeout?: number;
	  }
	| { kind: "subscribe_namespace"; requestId: number; prefix: string[]; options: number; params: Params }
	| {
			kind: "unsubscribe_namespace";
			/** @moq/net and moq-relay send the request ID; the draft-14 text names the prefix. One of the two. */
			requestId: number | null;
			prefix: string[] | null;
	  }
	| { kind: "max_request_id"; requestId: number }
	| { kind: "requests_blocked"; maximum: number }
	| {
			kind: "fetch";
			requestId: number;
			/** 1 standalone, 2 relative joining, 3 absolute joining. */
			fetchType: number;
			/** 14: inline; 15+: 128 (the parameter is not read). */
			priority: number;
			groupOrder: number;
			/** Standalone: the track and range. */
			namespace: string[] | null;
			track: string | null;
			start: Location | null;
			end: Location | null;
			/** Joining: the subscription it joins, and the offset or group. */
			joiningRequestId: number | null;
			joiningStart: number;
			params: Params;
	  }
	| { kind: "fetch_cancel"; requestId: number }
	| {
			kind: "publish";
			requestId: number;
			namespace: string[];
			track: string;
			alias: number;
			groupOrder: number;
			largest: Location | null;
			forward: boolean;
			params: Params;
			extensions: Params;
	  }
	/** 18+: SUBSCRIBE_TRACKS (0x51). Only its request ID is read: the relay refuses it whole. */
	| { kind: "subscribe_tracks"; requestId: number }
	| { kind: "namespace"; suffix: string[] }
	| { kind: "namespace_done"; suffix: string[] }
	| {
			kind: "unexpected";
			/** A message of this draft a relay never receives (a reply to a request it never sends): body skipped. */
			type: number;
	  };

export type IetfMessageKind = IetfMessage["kind"];

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8enc = new TextEncoder();

// ---------------------------------------------------------------------------------------------
// Primitives

function fail(message: string, code: number = IetfClose.PROTOCOL_VIOLATION): never {
	throw new IetfDecodeError(message, code);
}

/** A length-prefixed UTF-8 field of at most `max` bytes (the cap checked before the bytes are read). */
function readText(r: Reader, max: number, what: string): string {
	const n = r.varint();
	if (n > max) fail(`${what} of ${n} bytes exceeds ${max}`);
	const view = r.bytes(n);
	try {
		return utf8.decode(view);
	} catch {
		fail(`${what} is not valid UTF-8`);
	}
}

/** The UTF-8 byte length of a string (what its field's length prefix said). */
function utf8Length(s: string): number {
	let n = 0;
	for (let i = 0; i < s.length; i++) {
		const c = s.charCodeAt(i);
		if (c < 0x80) n += 1;
		else if (c < 0x800) n += 2;
		else if (c >= 0xd800 && c <= 0xdbff) {
			n += 4;
			i++;
		} else n += 3;
	}
	return n;
}

function writeText(w: Writer, s: string): void {
	const b = utf8enc.encode(s);
	w.varint(b.length);
	w.bytes(b);
}

function readU8(r: Reader): number {
	return r.u8();
}

function writeU8(w: Writer, v: number): void {
	if (!(Number.isInteger(v) && v >= 0 && v <= 255)) throw new RangeError(`u8 out of range: ${v}`);
	w.u8(v);
}

/** A u8 that must be 0 or 1 (Forward, Content Exists). */
function readFlag(r: Reader, what: string): boolean {
	const v = r.u8();
	if (v > 1) fail(`${what} of ${v}`);
	return v === 1;
}

/** A namespace tuple: count (≤ 32 and the configured cap), then UTF-8 fields. */
export function readTuple(r: Reader, limits: IetfLimits | undefined): { fields: string[]; bytes: number } {
	const count = r.varint();
	const cap = Math.min(MAX_TUPLE_FIELDS, limits?.maxPathSegments ?? MAX_PATH_SEGMENTS);
	if (count > cap) fail(`namespace tuple of ${count} fields exceeds ${cap}`);
	const fields: string[] = [];
	let bytes = 0;
	for (let i = 0; i < count; i++) {
		const field = readText(r, MAX_FULL_TRACK_NAME, "namespace field");
		bytes += utf8Length(field);
		if (bytes > MAX_FULL_TRACK_NAME) fail(`namespace of more than ${MAX_FULL_TRACK_NAME} bytes`);
		fields.push(field);
	}
	return { fields, bytes };
}

export function writeTuple(w: Writer, fields: readonly string[]): void {
	if (fields.length > MAX_TUPLE_FIELDS) throw new RangeError(`namespace tuple of ${fields.length} fields`);
	w.varint(fields.length);
	for (const f of fields) writeText(w, f);
}

/** Namespace and track name: together at most 4096 bytes (the draft's Full Track Name cap). */
function readFullTrackName(r: Reader, limits: IetfLimits | undefined): { namespace: string[]; track: string } {
	const ns = readTuple(r, limits);
	const track = readText(r, MAX_FULL_TRACK_NAME, "track name");
	if (ns.bytes + utf8Length(track) > MAX_FULL_TRACK_NAME) fail(`full track name above ${MAX_FULL_TRACK_NAME} bytes`);
	return { namespace: ns.fields, track };
}

function readReason(r: Reader): string {
	return readText(r, MAX_REASON_BYTES, "reason phrase");
}

function writeReason(w: Writer, s: string): void {
	// A reason of ours never exceeds the cap a peer holds us to: cut it on a character boundary.
	let b = utf8enc.encode(s);
	if (b.length > MAX_REASON_BYTES) {
		let n = MAX_REASON_BYTES;
		while (n > 0 && (b[n] & 0xc0) === 0x80) n--;
		b = b.subarray(0, n);
	}
	w.varint(b.length);
	w.bytes(b);
}

/**
 * A namespace tuple as a relay path: the fields joined with "/" (moq-relay's mapping), then
 * validated once (src/path): a "." or ".." segment throws PathError. Empty fields vanish.
 */
export function tupleToPath(fields: readonly string[], maxSegments: number = MAX_PATH_SEGMENTS): Path {
	return normalizePath(fields.join("/"), maxSegments);
}

/** A relay path as a namespace tuple: one field per segment ("" is the empty tuple). */
export function pathToTuple(path: Path): string[] {
	return path.length === 0 ? [] : path.split("/");
}

/** Re-export for callers that refuse dot segments per request. */
export { PathError };

/**
 * Key-value parameters: a count (≤ 64), then per parameter its type (absolute on 14/15, a delta
 * from the previous type on 16) and an even type's varint or an odd type's length and bytes.
 * A repeated type is refused except where the draft allows repeats (AUTHORIZATION_TOKEN: the
 * first is kept) and, in SETUP, for types it does not define (ignored, as the draft requires).
 */
export function readParams(r: Reader, d: IetfDraft, setup: boolean): Params {
	// 17+ SETUP options: delta key-value pairs to the end of the message, no count.
	if (setup && hasUnifiedSetup(d)) return readKvpsToEnd(r, true);
	const count = r.varint();
	if (count > MAX_PARAMS) fail(`${count} parameters exceed ${MAX_PARAMS}`);
	if (!setup && hasTypedParams(d)) return readTypedParams(r, count);
	return readKvps(r, d, count, setup);
}

/** 17+ message parameters: delta types, each even type's value laid out as its definition says. */
function readTypedParams(r: Reader, count: number): Params {
	const params: Params = new Map();
	let type = 0;
	for (let i = 0; i < count; i++) {
		type += r.varint();
		if (!Number.isSafeInteger(type)) fail("parameter type above 2^53");
		let value: number | Uint8Array;
		if (type % 2 === 1) value = r.bytes(r.varint()).slice();
		else {
			const kind = EVEN_PARAM_KIND.get(type);
			if (kind === undefined) fail(`unknown message parameter 0x${type.toString(16)}`);
			value =
				kind === "varint"
					? r.varint()
					: kind === "u8"
						? r.u8()
						: readFlag(r, `parameter 0x${type.toString(16)}`)
							? 1
							: 0;
		}
		if (params.has(type)) {
			if (type === MsgParam.AUTHORIZATION_TOKEN) continue;
			fail(`duplicate parameter ${type}`);
		}
		params.set(type, value);
	}
	return params;
}

function writeTypedParams(w: Writer, params: Params): void {
	w.varint(params.size);
	let prev = 0;
	for (const [type, value] of [...params].sort((a, b) => a[0] - b[0])) {
		w.varint(type - prev);
		prev = type;
		if (type % 2 === 1) {
			if (typeof value === "number") throw new RangeError(`parameter ${type} is odd: its value is bytes`);
			w.varint(value.length);
			w.bytes(value);
			continue;
		}
		const kind = EVEN_PARAM_KIND.get(type);
		if (kind === undefined || typeof value !== "number") throw new RangeError(`parameter ${type} has no layout`);
		if (kind === "varint") w.varint(value);
		else if (kind === "u8") writeU8(w, value);
		else w.bool(value === 1);
	}
}

function readKvps(r: Reader, d: IetfDraft, count: number, setup: boolean): Params {
	const params: Params = new Map();
	const delta = hasDeltaTypes(d);
	let type = 0;
	for (let i = 0; i < count; i++) {
		const t = r.varint();
		type = delta ? type + t : t;
		if (!Number.isSafeInteger(type)) fail("parameter type above 2^53");
		const value = type % 2 === 0 ? r.varint() : r.bytes(r.varint()).slice();
		if (params.has(type)) {
			if (type === SetupParam.AUTHORIZATION_TOKEN) continue;
			if (setup && !KNOWN_SETUP.has(type)) continue;
			fail(`duplicate parameter ${type}`);
		}
		params.set(type, value);
	}
	return params;
}

const KNOWN_SETUP = new Set<number>(Object.values(SetupParam));

/** Key-value pairs up to the end of the message (16's Track Extensions): delta types, no count. */
function readExtensionsToEnd(r: Reader): Params {
	return readKvpsToEnd(r, false);
}

/**
 * Delta-typed key-value pairs up to the end of the message (16's Track Extensions, 17+'s Track
 * Properties and SETUP options). Extensions may repeat (the first is kept); a repeated SETUP option
 * is refused unless the draft leaves it undefined (ignored).
 */
function readKvpsToEnd(r: Reader, setup: boolean): Params {
	const params: Params = new Map();
	let type = 0;
	let n = 0;
	while (r.pos < r.end) {
		if (++n > MAX_PARAMS) fail(`more than ${MAX_PARAMS} ${setup ? "setup options" : "track extensions"}`);
		type += r.varint();
		if (!Number.isSafeInteger(type)) fail("extension type above 2^53");
		const value = type % 2 === 0 ? r.varint() : r.bytes(r.varint()).slice();
		if (params.has(type)) {
			if (setup && KNOWN_SETUP.has(type) && type !== SetupParam.AUTHORIZATION_TOKEN)
				fail(`duplicate setup option ${type}`);
			continue;
		}
		params.set(type, value);
	}
	return params;
}

/** Orders parameters as @moq/net writes them: 14/15 varints then bytes (insertion order), 16 sorted by type. */
function ordered(params: Params, d: IetfDraft): [number, number | Uint8Array][] {
	const entries = [...params];
	if (hasDeltaTypes(d)) return entries.sort((a, b) => a[0] - b[0]);
	return [...entries.filter(([t]) => t % 2 === 0), ...entries.filter(([t]) => t % 2 === 1)];
}

function writeKvps(w: Writer, entries: [number, number | Uint8Array][], d: IetfDraft): void {
	const delta = hasDeltaTypes(d);
	let prev = 0;
	for (const [type, value] of entries) {
		w.varint(delta ? type - prev : type);
		prev = type;
		if (type % 2 === 0) {
			if (typeof value !== "number") throw new RangeError(`parameter ${type} is even: its value is a varint`);
			w.varint(value);
		} else {
			if (typeof value === "number") throw new RangeError(`parameter ${type} is odd: its value is bytes`);
			w.varint(value.length);
			w.bytes(value);
		}
	}
}

export function writeParams(w: Writer, params: Params, d: IetfDraft): void {
	if (hasTypedParams(d)) return writeTypedParams(w, params);
	w.varint(params.size);
	writeKvps(w, ordered(params, d), d);
}

/** SETUP parameters (14–16: counted) or options (17+: to the end of the message). */
function writeSetupParams(w: Writer, params: Params, d: IetfDraft): void {
	if (hasUnifiedSetup(d)) writeKvps(w, ordered(params, d), d);
	else {
		w.varint(params.size);
		writeKvps(w, ordered(params, d), d);
	}
}

function readLocation(r: Reader): Location {
	const group = r.varint();
	return { group, object: r.varint() };
}

/**
 * The filter's tagged form: the draft-14 inline fields, or the 15–19 SUBSCRIPTION_FILTER value.
 * `endDelta`: ABSOLUTE_RANGE's end is a delta from the start group (17–19).
 */
function readFilter(r: Reader, endDelta = false): Filter {
	const type = r.varint();
	switch (type) {
		case FilterType.NEXT_GROUP_START:
		case FilterType.LARGEST_OBJECT:
			return { type, start: null, endGroup: null };
		case FilterType.ABSOLUTE_START:
			return { type, start: readLocation(r), endGroup: null };
		case FilterType.ABSOLUTE_RANGE: {
			const start = readLocation(r);
			const endGroup = endDelta ? start.group + r.varint() : r.varint();
			if (!Number.isSafeInteger(endGroup)) fail("subscribe range end above 2^53");
			if (endGroup < start.group) fail("subscribe range ends before it starts");
			return { type, start, endGroup };
		}
		default:
			fail(`unknown filter type ${type}`);
	}
}

function writeFilter(w: Writer, f: Filter): void {
	w.varint(f.type);
	if (f.type === FilterType.ABSOLUTE_START || f.type === FilterType.ABSOLUTE_RANGE) {
		const start = f.start ?? { group: 0, object: 0 };
		w.varint(start.group);
		w.varint(start.object);
		if (f.type === FilterType.ABSOLUTE_RANGE) w.varint(f.endGroup ?? start.group);
	}
}

/**
 * The SUBSCRIPTION_FILTER (LOCATION_FILTER) parameter value of a filter on draft `d`: its varints
 * in the draft's form. 15–19: the tag and its locations, where ABSOLUTE_RANGE's end is a delta from
 * the start group from 17 on (as @moq/net writes it) and the absolute end group before. 20: the
 * field list (`hasFieldFilters`); a tag-only filter maps onto it (NEXT_GROUP_START: relative 0,
 * LARGEST_OBJECT: next object).
 */
export function filterBytes(f: Filter, d: IetfDraft = 15): Uint8Array {
	const w = hasLeadingOnesVarints(d) ? new LoWriter(16) : new Writer(16);
	const start = f.start ?? { group: 0, object: 0 };
	if (hasFieldFilters(d)) {
		switch (f.type) {
			case FilterType.UNFILTERED:
				break;
			case FilterType.RELATIVE:
				w.varint(f.groups ?? 0);
				break;
			case FilterType.NEXT_GROUP_START:
				w.varint(0);
				break;
			case FilterType.LARGEST_OBJECT:
				w.varint(0).varint(0);
				break;
			case FilterType.ABSOLUTE_START:
				w.varint(start.group).varint(start.object);
				break;
			case FilterType.ABSOLUTE_RANGE:
				w.varint(start.group).varint(start.object);
				w.varint(Math.max(0, (f.endGroup ?? start.group) - start.group));
				if (f.endObject !== undefined) w.varint(f.endObject);
				break;
			default:
				throw new RangeError(`filter type ${f.type}`);
		}
		return w.finish();
	}
	// Tagged (14–19): the 20-only kinds have a tagged spelling where one means the same.
	if (f.type === FilterType.UNFILTERED)
		return filterBytes({ type: FilterType.ABSOLUTE_START, start: null, endGroup: null }, d);
	if (f.type === FilterType.RELATIVE) {
		if ((f.groups ?? 0) !== 0)
			throw new RangeError("a relative filter further back than the next group needs draft-20");
		return filterBytes({ type: FilterType.NEXT_GROUP_START, start: null, endGroup: null }, d);
	}
	w.varint(f.type);
	if (f.type === FilterType.ABSOLUTE_START || f.type === FilterType.ABSOLUTE_RANGE) {
		w.varint(start.group);
		w.varint(start.object);
		if (f.type === FilterType.ABSOLUTE_RANGE) {
			const end = f.endGroup ?? start.group;
			w.varint(hasLeadingOnesVarints(d) ? Math.max(0, end - start.group) : end);
		}
	}
	return w.finish();
}

/** Decodes a SUBSCRIPTION_FILTER parameter value, which must be exactly one filter (in draft `d`'s form). */
function parseFilterBytes(value: Uint8Array, d: IetfDraft): Filter {
	const r = hasLeadingOnesVarints(d) ? new LoReader(value, 0, value.length, hasSevenByteVarint(d)) : new Reader(value);
	let f: Filter;
	try {
		if (hasFieldFilters(d)) return readFieldFilter(r);
		f = readFilter(r, hasLeadingOnesVarints(d));
	} catch (e) {
		if (e === NEED_MORE) fail("SUBSCRIPTION_FILTER shorter than its fields");
		if (e instanceof DecodeError && !(e instanceof IetfDecodeError)) fail(e.message);
		throw e;
	}
	if (r.pos !== r.end) fail("trailing bytes in SUBSCRIPTION_FILTER");
	return f;
}

/** Draft 20's LOCATION_FILTER: up to four varints, their count selecting the meaning. */
function readFieldFilter(r: Reader): Filter {
	const fields: number[] = [];
	while (r.pos < r.end) {
		if (fields.length === 4) fail("more than four fields in LOCATION_FILTER");
		fields.push(r.varint());
	}
	switch (fields.length) {
		case 0:
			return { type: FilterType.UNFILTERED, start: null, endGroup: null };
		case 1:
			return { type: FilterType.RELATIVE, start: null, endGroup: null, groups: fields[0] };
		case 2:
			if (fields[0] === 0 && fields[1] === 0) return { type: FilterType.LARGEST_OBJECT, start: null, endGroup: null };
			return { type: FilterType.ABSOLUTE_START, start: { group: fields[0], object: fields[1] }, endGroup: null };
		default: {
			const endGroup = fields[0] + fields[2];
			if (!Number.isSafeInteger(endGroup)) fail("LOCATION_FILTER end group above 2^53");
			const f: Filter = {
				type: FilterType.ABSOLUTE_RANGE,
				start: { group: fields[0], object: fields[1] },
				endGroup,
			};
			if (fields.length === 4) f.endObject = fields[3];
			return f;
		}
	}
}

const DEFAULT_FILTER: Filter = { type: FilterType.LARGEST_OBJECT, start: null, endGroup: null };

/** No SUBSCRIPTION_FILTER: the largest object before 20; no filter at all on 20. */
function defaultFilter(d: IetfDraft): Filter {
	return hasFieldFilters(d) ? { type: FilterType.UNFILTERED, start: null, endGroup: null } : DEFAULT_FILTER;
}

function varParam(params: Params, type: number): number | undefined {
	const v = params.get(type);
	if (v === undefined) return undefined;
	if (typeof v !== "number") fail(`parameter ${type} is not a varint`);
	return v;
}

// ---------------------------------------------------------------------------------------------
// Framing

/**
 * One control message: type, u16 length, body. `ietfLimits.maxMessageBytes` caps the body before it
 * is buffered. Any refusal inside (including the Reader's own, and a body that ends early although
 * all of its length is there) becomes an IetfDecodeError with PROTOCOL_VIOLATION.
 */
export function decodeControl(r: Reader, d: IetfDraft, limits?: IetfLimits): IetfMessage {
	if (!hasLeadingOnesVarints(d)) return decodeFramed(r, d, limits);
	// 17+: the same framing and bodies, every varint in the leading-ones form.
	const lo = new LoReader(r.buf, r.pos, r.end, hasSevenByteVarint(d));
	const m = decodeFramed(lo, d, limits);
	r.pos = lo.pos;
	return m;
}

/**
 * `decode` reading varints in draft `d`'s form: on 17+ it runs over a LoReader on the same bytes,
 * and `r` moves as far as it read. For what is read outside control messages (stream types,
 * subgroup headers).
 */
export function inDraft<T>(d: IetfDraft, decode: (r: Reader) => T): (r: Reader) => T {
	if (!hasLeadingOnesVarints(d)) return decode;
	return (r) => {
		const lo = new LoReader(r.buf, r.pos, r.end, hasSevenByteVarint(d));
		const v = decode(lo);
		r.pos = lo.pos;
		return v;
	};
}

/** A varint in draft `d`'s form (a stream type, say) at `r`; refusals as IetfDecodeErrors. */
export function readVarint(r: Reader, d: IetfDraft): number {
	return inDraft(d, (x) => wrap(() => x.varint()))(r);
}

/**
 * The length and body of a message whose type was already read (17+'s SETUP, whose type is the
 * type of its unidirectional stream).
 */
export function decodeAfterType(r: Reader, type: number, d: IetfDraft, limits?: IetfLimits): IetfMessage {
	return inDraft(d, (x) => decodeSized(x, type, d, limits))(r);
}

function decodeFramed(r: Reader, d: IetfDraft, limits: IetfLimits | undefined): IetfMessage {
	const type = wrap(() => r.varint());
	return decodeSized(r, type, d, limits);
}

function decodeSized(r: Reader, type: number, d: IetfDraft, limits: IetfLimits | undefined): IetfMessage {
	if (r.end - r.pos < 2) throw NEED_MORE;
	const len = r.u16();
	const max = Math.min(MAX_MESSAGE_BYTES, limits?.maxMessageBytes ?? MAX_MESSAGE_BYTES);
	if (len > max) fail(`control message of ${len} bytes exceeds ${max}`);
	if (r.end - r.pos < len) throw NEED_MORE;
	const outerEnd = r.end;
	const bodyEnd = r.pos + len;
	r.end = bodyEnd;
	let m: IetfMessage;
	try {
		m = decodeBody(r, type, d, limits);
	} catch (e) {
		if (e === NEED_MORE) fail(`message 0x${type.toString(16)} shorter than its fields`);
		if (e instanceof IetfDecodeError) throw e;
		if (e instanceof DecodeError) fail(e.message);
		throw e;
	} finally {
		r.end = outerEnd;
	}
	if (r.pos !== bodyEnd) fail(`${bodyEnd - r.pos} trailing bytes in message 0x${type.toString(16)}`);
	return m;
}

/** `decode` with the Reader's own refusals (DecodeErrors in moq-lite's code space) made IetfDecodeErrors. */
export function asIetf<T>(decode: (r: Reader) => T): (r: Reader) => T {
	return (r) => {
		try {
			return decode(r);
		} catch (e) {
			if (e instanceof DecodeError && !(e instanceof IetfDecodeError)) fail(e.message);
			throw e;
		}
	};
}

function wrap<T>(fn: () => T): T {
	try {
		return fn();
	} catch (e) {
		if (e instanceof DecodeError && !(e instanceof IetfDecodeError)) fail(e.message);
		throw e;
	}
}

function decodeBody(r: Reader, type: number, d: IetfDraft, limits: IetfLimits | undefined): IetfMessage {
	const none = (): never => fail(`message type 0x${type.toString(16)} does not exist in draft-${d}`);
	/** The request ID, and on 17 the Required Request ID Delta after it (read, not acted on). */
	const requestId = (): number => {
		const id = r.varint();
		if (hasRequiredRequestIdDelta(d)) r.varint();
		return id;
	};
	/** A reply's request ID (14–16); 17+ replies have none (their stream says which request). */
	const replyId = (): number => (hasRequestIdInReplies(d) ? r.varint() : 0);
	switch (type) {
		case Msg.CLIENT_SETUP: {
			if (hasUnifiedSetup(d)) return none();
			const versions: number[] = [];
			if (hasSetupVersions(d)) {
				const n = r.varint();
				if (n > MAX_SETUP_VERSIONS) fail(`${n} setup versions`);
				for (let i = 0; i < n; i++) versions.push(r.varint());
			}
			return { kind: "client_setup", versions, params: readParams(r, d, true) };
		}
		case Msg.SERVER_SETUP: {
			if (hasUnifiedSetup(d)) return none();
			const version = hasSetupVersions(d) ? r.varint() : 0;
			return { kind: "server_setup", version, params: readParams(r, d, true) };
		}
		case Msg.SETUP:
			if (!hasUnifiedSetup(d)) return none();
			return { kind: "setup", params: readParams(r, d, true) };
		case Msg.SUBSCRIBE:
			return decodeSubscribe(r, d, limits, requestId());
		case Msg.SUBSCRIBE_OK:
			return decodeSubscribeOk(r, d, replyId());
		case Msg.SUBSCRIBE_UPDATE: {
			const id = requestId();
			const subscriptionId = hasRequestStreams(d) ? id : r.varint();
			if (hasInlineSubscribeFields(d)) {
				readLocation(r);
				r.varint(); // end group
				readU8(r); // priority
				readFlag(r, "forward");
			}
			return { kind: "subscribe_update", requestId: id, subscriptionId, params: readParams(r, d, false) };
		}
		case Msg.UNSUBSCRIBE:
			if (hasRequestStreams(d)) return none();
			return { kind: "unsubscribe", requestId: r.varint() };
		case Msg.PUBLISH_DONE: {
			const id = replyId();
			const status = r.varint();
			const streamCount = r.varint();
			return { kind: "publish_done", requestId: id, status, streamCount, reason: readReason(r) };
		}
		case Msg.REQUEST_ERROR:
			return decodeRequestError(r, d, type, replyId());
		case Msg.REQUEST_OK: {
			// 14: PUBLISH_NAMESPACE_OK (request ID only); 15+: REQUEST_OK (request ID, parameters); 17+:
			// parameters, then Track Properties (read, not acted on).
			const id = replyId();
			const params = hasRequestOk(d) ? readParams(r, d, false) : new Map();
			if (hasUnifiedSetup(d)) readExtensionsToEnd(r);
			return { kind: "request_ok", type, requestId: id, params };
		}
		case Msg.PUBLISH_NAMESPACE: {
			const id = requestId();
			const namespace = readTuple(r, limits).fields;
			return { kind: "publish_namespace", requestId: id, namespace, params: readParams(r, d, false) };
		}
		case Msg.PUBLISH_NAMESPACE_ERROR: // = NAMESPACE
			if (hasPerRequestReplies(d)) return decodeRequestError(r, d, type, r.varint());
			if (hasNamespaceStream(d)) return { kind: "namespace", suffix: readTuple(r, limits).fields };
			return none();
		case Msg.PUBLISH_NAMESPACE_DONE:
			if (hasRequestStreams(d)) return none();
			if (namespaceDoneById(d)) return { kind: "publish_namespace_done", requestId: r.varint(), namespace: null };
			return { kind: "publish_namespace_done", requestId: null, namespace: readTuple(r, limits).fields };
		case Msg.PUBLISH_NAMESPACE_CANCEL: {
			if (hasRequestStreams(d)) return none();
			const byId = namespaceDoneById(d);
			const id = byId ? r.varint() : null;
			const namespace = byId ? null : readTuple(r, limits).fields;
			const code = r.varint();
			return { kind: "publish_namespace_cancel", requestId: id, namespace, code, reason: readReason(r) };
		}
		case Msg.TRACK_STATUS: {
			// 14: the SUBSCRIBE layout; 15+: request ID, track, parameters.
			const id = requestId();
			const { namespace, track } = readFullTrackName(r, limits);
			if (hasInlineSubscribeFields(d)) {
				readU8(r);
				readGroupOrder(r);
				readFlag(r, "forward");
				readFilter(r);
			}
			return { kind: "track_status", requestId: id, namespace, track, params: readParams(r, d, false) };
		}
		case Msg.TRACK_STATUS_OK: // = NAMESPACE_DONE
			if (hasNamespaceStream(d)) return { kind: "namespace_done", suffix: readTuple(r, limits).fields };
			if (hasPerRequestReplies(d)) return skip(r, type);
			return none();
		case Msg.TRACK_STATUS_ERROR: // = 17's PUBLISH_BLOCKED
			if (hasPerRequestReplies(d)) return decodeRequestError(r, d, type, r.varint());
			// A reply to a SUBSCRIBE_NAMESPACE of ours: the relay never sends one.
			if (hasPublishBlocked(d)) return skip(r, type);
			return none();
		case Msg.GOAWAY: {
			const uri = readText(r, MAX_URI_BYTES, "GOAWAY URI");
			if (!hasGoawayTimeout(d)) return { kind: "goaway", uri };
			const timeout = r.varint();
			// 18: an optional trailing Request ID, read and dropped.
			if (hasGoawayRequestId(d) && r.pos < r.end) r.varint();
			return { kind: "goaway", uri, timeout };
		}
		case Msg.SUBSCRIBE_NAMESPACE: {
			if (hasRenumberedSubscribeNamespace(d)) return none();
			const id = requestId();
			const prefix = readTuple(r, limits).fields;
			const options = hasSubscribeOptions(d) ? r.varint() : 1;
			return { kind: "subscribe_namespace", requestId: id, prefix, options, params: readParams(r, d, false) };
		}
		case Msg.SUBSCRIBE_NAMESPACE_18: {
			if (!hasRenumberedSubscribeNamespace(d)) return none();
			const id = r.varint();
			const prefix = readTuple(r, limits).fields;
			return { kind: "subscribe_namespace", requestId: id, prefix, options: 1, params: readParams(r, d, false) };
		}
		case Msg.SUBSCRIBE_TRACKS: {
			if (!hasRenumberedSubscribeNamespace(d)) return none();
			// Refused whole (the relay has no PUBLISH to replicate): its request ID, the rest skipped.
			const id = r.varint();
			r.pos = r.end;
			return { kind: "subscribe_tracks", requestId: id };
		}
		case Msg.SUBSCRIBE_NAMESPACE_OK:
			if (hasPerRequestReplies(d)) return { kind: "request_ok", type, requestId: r.varint(), params: new Map() };
			return none();
		case Msg.SUBSCRIBE_NAMESPACE_ERROR:
			if (hasPerRequestReplies(d)) return decodeRequestError(r, d, type, r.varint());
			return none();
		case Msg.UNSUBSCRIBE_NAMESPACE:
			if (hasNamespaceStream(d)) return none();
			return decodeUnsubscribeNamespace(r, limits);
		case Msg.MAX_REQUEST_ID:
			if (!hasRequestFlowControl(d)) return none();
			return { kind: "max_request_id", requestId: r.varint() };
		case Msg.REQUESTS_BLOCKED:
			if (!hasRequestFlowControl(d)) return none();
			return { kind: "requests_blocked", maximum: r.varint() };
		case Msg.FETCH:
			return decodeFetch(r, d, limits, requestId());
		case Msg.FETCH_CANCEL:
			if (hasRequestStreams(d)) return none();
			return { kind: "fetch_cancel", requestId: r.varint() };
		case Msg.FETCH_OK:
		case Msg.PUBLISH_OK:
			return skip(r, type);
		case Msg.FETCH_ERROR:
		case Msg.PUBLISH_ERROR:
			if (hasPerRequestReplies(d)) return decodeRequestError(r, d, type, r.varint());
			return none();
		case Msg.PUBLISH:
			return decodePublish(r, d, limits, requestId());
		default:
			return fail(`unknown control message type 0x${type.toString(16)}`);
	}
}

/** A message this relay never receives in a valid session: its body is skipped whole. */
function skip(r: Reader, type: number): IetfMessage {
	r.pos = r.end;
	return { kind: "unexpected", type };
}

function readGroupOrder(r: Reader): number {
	const v = r.u8();
	if (v > 2) fail(`group order ${v}`);
	return v;
}

function decodeSubscribe(r: Reader, d: IetfDraft, limits: IetfLimits | undefined, requestId: number): IetfMessage {
	const { namespace, track } = readFullTrackName(r, limits);
	if (hasInlineSubscribeFields(d)) {
		const priority = readU8(r);
		const groupOrder = readGroupOrder(r);
		const forward = readFlag(r, "forward");
		const filter = readFilter(r);
		return {
			kind: "subscribe",
			requestId,
			namespace,
			track,
			priority,
			groupOrder,
			forward,
			filter,
			params: readParams(r, d, false),
		};
	}
	const params = readParams(r, d, false);
	const priority = varParam(params, MsgParam.SUBSCRIBER_PRIORITY) ?? 128;
	if (priority > 255) fail(`subscriber priority ${priority}`);
	const groupOrder = varParam(params, MsgParam.GROUP_ORDER) ?? 0;
	if (groupOrder > 2) fail(`group order ${groupOrder}`);
	const forward = varParam(params, MsgParam.FORWARD) ?? 1;
	if (forward > 1) fail(`forward ${forward}`);
	const raw = params.get(MsgParam.SUBSCRIPTION_FILTER);
	if (typeof raw === "number") fail("SUBSCRIPTION_FILTER is not bytes");
	const filter = raw === undefined ? defaultFilter(d) : parseFilterBytes(raw, d);
	const include = params.get(MsgParam.INCLUDE_PROPERTIES);
	if (include !== undefined) {
		if (!hasFieldFilters(d)) fail("INCLUDE_PROPERTIES needs draft-20");
		if (typeof include === "number" || include.length !== 1 || include[0] > 1) fail("INCLUDE_PROPERTIES is not 0 or 1");
	}
	if (params.has(MsgParam.FILL_PARAMETERS) && !hasFieldFilters(d)) fail("FILL_PARAMETERS needs draft-20");
	return {
		kind: "subscribe",
		requestId,
		namespace,
		track,
		priority,
		groupOrder,
		forward: forward === 1,
		filter,
		params,
	};
}

function decodeSubscribeOk(r: Reader, d: IetfDraft, requestId: number): IetfMessage {
	const alias = r.varint();
	let expires = 0;
	let groupOrder = 0;
	let largest: Location | null = null;
	if (hasInlineSubscribeOkFields(d)) {
		expires = r.varint();
		groupOrder = readGroupOrder(r);
		if (groupOrder === 0) fail("SUBSCRIBE_OK group order 0");
		if (readFlag(r, "content exists")) largest = readLocation(r);
	}
	const params = readParams(r, d, false);
	const extensions = hasTrackExtensions(d) ? readExtensionsToEnd(r) : new Map();
	return { kind: "subscribe_ok", requestId, alias, expires, groupOrder, largest, params, extensions };
}

function decodeRequestError(r: Reader, d: IetfDraft, type: number, requestId: number): IetfMessage {
	const code = r.varint();
	const retryInterval = hasRetryInterval(d) ? r.varint() : 0;
	return { kind: "request_error", type, requestId, code, retryInterval, reason: readReason(r) };
}

/**
 * UNSUBSCRIBE_NAMESPACE (14/15): @moq/net and moq-relay send the SUBSCRIBE_NAMESPACE's request ID,
 * the draft-14 text its prefix tuple. A body that is exactly one varint is the request ID; anything
 * else must be a tuple.
 */
function decodeUnsubscribeNamespace(r: Reader, limits: IetfLimits | undefined): IetfMessage {
	const start = r.pos;
	const id = r.varint();
	if (r.pos === r.end) return { kind: "unsubscribe_namespace", requestId: id, prefix: null };
	r.pos = start;
	return { kind: "unsubscribe_namespace", requestId: null, prefix: readTuple(r, limits).fields };
}

function decodeFetch(r: Reader, d: IetfDraft, limits: IetfLimits | undefined, requestId: number): IetfMessage {
	let priority = 128;
	let groupOrder = 0;
	if (hasInlineFetchFields(d)) {
		priority = readU8(r);
		groupOrder = readGroupOrder(r);
	}
	const fetchType = r.varint();
	let namespace: string[] | null = null;
	let track: string | null = null;
	let start: Location | null = null;
	let end: Location | null = null;
	let joiningRequestId: number | null = null;
	let joiningStart = 0;
	if (fetchType === 1) {
		const name = readFullTrackName(r, limits);
		namespace = name.namespace;
		track = name.track;
		start = readLocation(r);
		end = readLocation(r);
	} else if (fetchType === 2 || fetchType === 3) {
		joiningRequestId = r.varint();
		joiningStart = r.varint();
	} else fail(`unknown fetch type ${fetchType}`);
	const params = readParams(r, d, false);
	return {
		kind: "fetch",
		requestId,
		fetchType,
		priority,
		groupOrder,
		namespace,
		track,
		start,
		end,
		joiningRequestId,
		joiningStart,
		params,
	};
}

function decodePublish(r: Reader, d: IetfDraft, limits: IetfLimits | undefined, requestId: number): IetfMessage {
	const { namespace, track } = readFullTrackName(r, limits);
	const alias = r.varint();
	let groupOrder = 0;
	let largest: Location | null = null;
	let forward = true;
	if (hasInlinePublishFields(d)) {
		groupOrder = readGroupOrder(r);
		if (readFlag(r, "content exists")) largest = readLocation(r);
		forward = readFlag(r, "forward");
	}
	const params = readParams(r, d, false);
	const extensions = hasTrackExtensions(d) ? readExtensionsToEnd(r) : new Map();
	return { kind: "publish", requestId, namespace, track, alias, groupOrder, largest, forward, params, extensions };
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** The wire type a message is sent as on `d` (the draft-14 per-message replies keep their own type). */
export function messageType(m: IetfMessage, d: IetfDraft): number {
	switch (m.kind) {
		case "client_setup":
			return Msg.CLIENT_SETUP;
		case "server_setup":
			return Msg.SERVER_SETUP;
		case "setup":
			return Msg.SETUP;
		case "subscribe_tracks":
			return Msg.SUBSCRIBE_TRACKS;
		case "subscribe":
			return Msg.SUBSCRIBE;
		case "subscribe_ok":
			return Msg.SUBSCRIBE_OK;
		case "subscribe_update":
			return Msg.SUBSCRIBE_UPDATE;
		case "unsubscribe":
			return Msg.UNSUBSCRIBE;
		case "publish_done":
			return Msg.PUBLISH_DONE;
		case "request_error":
			return hasRequestOk(d) ? Msg.REQUEST_ERROR : m.type;
		case "request_ok":
			return hasRequestOk(d) ? Msg.REQUEST_OK : m.type;
		case "publish_namespace":
			return Msg.PUBLISH_NAMESPACE;
		case "publish_namespace_done":
			return Msg.PUBLISH_NAMESPACE_DONE;
		case "publish_namespace_cancel":
			return Msg.PUBLISH_NAMESPACE_CANCEL;
		case "track_status":
			return Msg.TRACK_STATUS;
		case "goaway":
			return Msg.GOAWAY;
		case "subscribe_namespace":
			return hasRenumberedSubscribeNamespace(d) ? Msg.SUBSCRIBE_NAMESPACE_18 : Msg.SUBSCRIBE_NAMESPACE;
		case "unsubscribe_namespace":
			return Msg.UNSUBSCRIBE_NAMESPACE;
		case "max_request_id":
			return Msg.MAX_REQUEST_ID;
		case "requests_blocked":
			return Msg.REQUESTS_BLOCKED;
		case "fetch":
			return Msg.FETCH;
		case "fetch_cancel":
			return Msg.FETCH_CANCEL;
		case "publish":
			return Msg.PUBLISH;
		case "namespace":
			return Msg.NAMESPACE;
		case "namespace_done":
			return Msg.NAMESPACE_DONE;
		case "unexpected":
			return m.type;
	}
}

/** Writes one control message: type, u16 length, body. Throws RangeError for a body above 65535 bytes. */
export function encodeControl(w: Writer, m: IetfMessage, d: IetfDraft): void {
	if (hasLeadingOnesVarints(d) && !(w instanceof LoWriter)) {
		// 17+: the same layouts, every varint leading-ones: written aside, then copied in.
		const lo = loScratch.clear();
		encodeControl(lo, m, d);
		w.bytes(lo.view());
		return;
	}
	w.varint(messageType(m, d));
	w.u16(0);
	const start = w.pos;
	encodeBody(w, m, d);
	const len = w.pos - start;
	if (len > MAX_MESSAGE_BYTES) throw new RangeError(`control message of ${len} bytes does not fit a u16 length`);
	w.buf[start - 2] = len >>> 8;
	w.buf[start - 1] = len & 0xff;
}

/** Where 17+ messages are written before being copied out (control messages are small). */
const loScratch = new LoWriter(256);

function encodeBody(w: Writer, m: IetfMessage, d: IetfDraft): void {
	/** A request's ID, and on 17 its Required Request ID Delta (0: it depends on no other request). */
	const requestId = (id: number) => {
		w.varint(id);
		if (hasRequiredRequestIdDelta(d)) w.varint(0);
	};
	/** A reply's request ID: 14–16 only. */
	const replyId = (id: number) => {
		if (hasRequestIdInReplies(d)) w.varint(id);
	};
	switch (m.kind) {
		case "client_setup":
			if (hasSetupVersions(d)) {
				w.varint(m.versions.length);
				for (const v of m.versions) w.varint(v);
			}
			writeSetupParams(w, m.params, d);
			return;
		case "server_setup":
			if (hasSetupVersions(d)) w.varint(m.version);
			writeSetupParams(w, m.params, d);
			return;
		case "setup":
			writeSetupParams(w, m.params, d);
			return;
		case "subscribe_tracks":
			w.varint(m.requestId);
			writeTuple(w, []);
			writeParams(w, new Map(), d);
			return;
		case "subscribe": {
			requestId(m.requestId);
			writeTuple(w, m.namespace);
			writeText(w, m.track);
			if (hasInlineSubscribeFields(d)) {
				writeU8(w, m.priority);
				writeU8(w, m.groupOrder);
				w.bool(m.forward);
				writeFilter(w, m.filter);
				writeParams(w, m.params, d);
				return;
			}
			const params: Params = new Map(m.params);
			params.set(MsgParam.SUBSCRIBER_PRIORITY, m.priority);
			params.set(MsgParam.GROUP_ORDER, m.groupOrder);
			params.set(MsgParam.FORWARD, m.forward ? 1 : 0);
			params.set(MsgParam.SUBSCRIPTION_FILTER, filterBytes(m.filter, d));
			writeParams(w, params, d);
			return;
		}
		case "subscribe_ok":
			replyId(m.requestId);
			w.varint(m.alias);
			if (hasInlineSubscribeOkFields(d)) {
				w.varint(m.expires);
				writeU8(w, m.groupOrder || 2);
				w.bool(m.largest !== null);
				if (m.largest) {
					w.varint(m.largest.group);
					w.varint(m.largest.object);
				}
			}
			writeParams(w, m.params, d);
			if (hasTrackExtensions(d)) writeKvps(w, ordered(m.extensions, d), d);
			return;
		case "subscribe_update":
			requestId(m.requestId);
			if (!hasRequestStreams(d)) w.varint(m.subscriptionId);
			if (hasInlineSubscribeFields(d)) {
				w.varint(0);
				w.varint(0);
				w.varint(0);
				w.u8(128);
				w.bool(true);
			}
			writeParams(w, m.params, d);
			return;
		case "unsubscribe":
			w.varint(m.requestId);
			return;
		case "publish_done":
			replyId(m.requestId);
			w.varint(m.status);
			w.varint(m.streamCount);
			writeReason(w, m.reason);
			return;
		case "request_error":
			replyId(m.requestId);
			w.varint(m.code);
			if (hasRetryInterval(d)) w.varint(m.retryInterval);
			writeReason(w, m.reason);
			return;
		case "request_ok":
			replyId(m.requestId);
			if (hasRequestOk(d)) writeParams(w, m.params, d);
			return;
		case "publish_namespace":
			requestId(m.requestId);
			writeTuple(w, m.namespace);
			writeParams(w, m.params, d);
			return;
		case "publish_namespace_done":
			if (namespaceDoneById(d)) w.varint(m.requestId ?? 0);
			else writeTuple(w, m.namespace ?? []);
			return;
		case "publish_namespace_cancel":
			if (namespaceDoneById(d)) w.varint(m.requestId ?? 0);
			else writeTuple(w, m.namespace ?? []);
			w.varint(m.code);
			writeReason(w, m.reason);
			return;
		case "track_status":
			requestId(m.requestId);
			writeTuple(w, m.namespace);
			writeText(w, m.track);
			if (hasInlineSubscribeFields(d)) {
				w.u8(0);
				w.u8(2);
				w.bool(false);
				w.varint(FilterType.LARGEST_OBJECT);
			}
			writeParams(w, m.params, d);
			return;
		case "goaway":
			writeText(w, m.uri);
			if (hasGoawayTimeout(d)) w.varint(m.timeout ?? 0);
			return;
		case "subscribe_namespace":
			if (hasRenumberedSubscribeNamespace(d)) w.varint(m.requestId);
			else requestId(m.requestId);
			writeTuple(w, m.prefix);
			if (hasSubscribeOptions(d)) w.varint(m.options);
			writeParams(w, m.params, d);
			return;
		case "unsubscribe_namespace":
			if (m.requestId !== null) w.varint(m.requestId);
			else writeTuple(w, m.prefix ?? []);
			return;
		case "max_request_id":
			w.varint(m.requestId);
			return;
		case "requests_blocked":
			w.varint(m.maximum);
			return;
		case "fetch":
			requestId(m.requestId);
			if (hasInlineFetchFields(d)) {
				writeU8(w, m.priority);
				writeU8(w, m.groupOrder);
			}
			w.varint(m.fetchType);
			if (m.fetchType === 1) {
				writeTuple(w, m.namespace ?? []);
				writeText(w, m.track ?? "");
				const start = m.start ?? { group: 0, object: 0 };
				const end = m.end ?? start;
				w.varint(start.group);
				w.varint(start.object);
				w.varint(end.group);
				w.varint(end.object);
			} else {
				w.varint(m.joiningRequestId ?? 0);
				w.varint(m.joiningStart);
			}
			writeParams(w, m.params, d);
			return;
		case "fetch_cancel":
			w.varint(m.requestId);
			return;
		case "publish":
			requestId(m.requestId);
			writeTuple(w, m.namespace);
			writeText(w, m.track);
			w.varint(m.alias);
			if (hasInlinePublishFields(d)) {
				writeU8(w, m.groupOrder || 2);
				w.bool(m.largest !== null);
				if (m.largest) {
					w.varint(m.largest.group);
					w.varint(m.largest.object);
				}
				w.bool(m.forward);
			}
			writeParams(w, m.params, d);
			if (hasTrackExtensions(d)) writeKvps(w, ordered(m.extensions, d), d);
			return;
		case "namespace":
			writeTuple(w, m.suffix);
			return;
		case "namespace_done":
			writeTuple(w, m.suffix);
			return;
		case "unexpected":
			return;
	}
}
