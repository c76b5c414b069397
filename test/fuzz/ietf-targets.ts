/**
 * Fuzz targets for the IETF moq-transport decoders (src/moq/ietf/wire), registered with the others
 * in targets.ts: one control-message target per draft (14–20; 17+ with leading-ones varints, SETUP
 * 0x2F00, typed parameters, 20's LOCATION_FILTER) (every message kind the relay encodes is in
 * its corpus; a decoded message must re-encode to bytes that decode and re-encode to the same
 * bytes), one for subgroup streams (type, header and objects pushed in arbitrary chunks, as the
 * data plane receives them), and the 0x20 CLIENT_SETUP dispatcher of `moql` sessions.
 */
import { DecodeError } from "../../src/coding/errors.ts";
import { Reader } from "../../src/coding/reader.ts";
import { Writer } from "../../src/coding/writer.ts";
import { silentLogger } from "../../src/log/logger.ts";
import { CompatDispatch, compatDialect, type RelaySession } from "../../src/moq/ietf/compat.ts";
import {
	hasFieldFilters,
	hasRenumberedSubscribeNamespace,
	hasRequestStreams,
	IETF_DRAFTS,
	type IetfDraft,
	versionCode,
} from "../../src/moq/ietf/version.ts";
import {
	decodeControl,
	encodeControl,
	FilterType,
	type IetfMessage,
	inDraft,
	Msg,
	SetupParam,
} from "../../src/moq/ietf/wire/message.ts";
import {
	decodeSubgroupHeader,
	isSubgroupType,
	ObjectParser,
	writeObjectHeader,
	writeSubgroupHeader,
} from "../../src/moq/ietf/wire/object.ts";
import type { TransportSession, TransportStream } from "../../src/transport/types.ts";
import { invariant, Rng, type Target } from "./engine.ts";

const DRAFTS: readonly IetfDraft[] = IETF_DRAFTS;

/** Message kinds drafts 17+ removed (a request ends with its stream; SETUP is one message). */
const GONE_IN_17 = new Set([
	"client_setup",
	"server_setup",
	"unsubscribe",
	"publish_namespace_done",
	"publish_namespace_cancel",
	"max_request_id",
	"requests_blocked",
	"fetch_cancel",
	"unsubscribe_namespace",
]);

function isDecodeError(err: unknown): boolean {
	return err instanceof DecodeError && Number.isInteger(err.code);
}

function encode(m: IetfMessage, d: IetfDraft): Uint8Array {
	const w = new Writer(64);
	encodeControl(w, m, d);
	return w.finish();
}

/** One of every message, as the relay or a client would send it on draft `d`. */
function corpusMessages(d: IetfDraft): IetfMessage[] {
	const utf8 = new TextEncoder();
	const params = new Map<number, number | Uint8Array>([
		[SetupParam.MAX_REQUEST_ID, 1000],
		[SetupParam.PATH, utf8.encode("/anon?jwt=x")],
	]);
	const filter = { type: FilterType.ABSOLUTE_RANGE, start: { group: 3, object: 1 }, endGroup: 9 };
	const ms: IetfMessage[] = [
		{ kind: "client_setup", versions: d === 14 ? [0xff0dad02, versionCode(d)] : [], params },
		{ kind: "server_setup", version: versionCode(d), params: new Map([[SetupParam.MAX_REQUEST_ID, 1024]]) },
		{
			kind: "subscribe",
			requestId: 2,
			namespace: ["live", "room"],
			track: "video",
			priority: 7,
			groupOrder: 1,
			forward: true,
			filter,
			params: new Map([[0x02, 500]]),
		},
		{
			kind: "subscribe_ok",
			requestId: 2,
			alias: 2,
			expires: 0,
			groupOrder: 2,
			largest: d === 14 ? { group: 5, object: 0 } : null,
			params: new Map(),
			extensions: d >= 16 ? new Map([[0x08, 1000]]) : new Map(),
		},
		{ kind: "subscribe_update", requestId: 4, subscriptionId: 2, params: new Map() },
		{ kind: "unsubscribe", requestId: 2 },
		{ kind: "publish_done", requestId: 2, status: 2, streamCount: 3, reason: "track ended" },
		{ kind: "request_error", type: Msg.REQUEST_ERROR, requestId: 6, code: 0x10, retryInterval: 0, reason: "no" },
		{ kind: "request_ok", type: Msg.REQUEST_OK, requestId: 6, params: new Map() },
		{ kind: "publish_namespace", requestId: 8, namespace: ["demo"], params: new Map() },
		{
			kind: "publish_namespace_done",
			requestId: d >= 16 ? 8 : null,
			namespace: d >= 16 ? null : ["demo"],
		},
		{
			kind: "publish_namespace_cancel",
			requestId: d >= 16 ? 8 : null,
			namespace: d >= 16 ? null : ["demo"],
			code: 4,
			reason: "gone",
		},
		{ kind: "track_status", requestId: 10, namespace: ["a"], track: "b", params: new Map() },
		{ kind: "goaway", uri: "https://relay.example/next" },
		{ kind: "subscribe_namespace", requestId: 12, prefix: ["live"], options: 1, params: new Map() },
		{ kind: "max_request_id", requestId: 2048 },
		{ kind: "requests_blocked", maximum: 64 },
		{
			kind: "fetch",
			requestId: 14,
			fetchType: 1,
			priority: 128,
			groupOrder: 0,
			namespace: ["a"],
			track: "t",
			start: { group: 1, object: 0 },
			end: { group: 2, object: 5 },
			joiningRequestId: null,
			joiningStart: 0,
			params: new Map(),
		},
		{ kind: "fetch_cancel", requestId: 14 },
		{
			kind: "publish",
			requestId: 16,
			namespace: ["a"],
			track: "t",
			alias: 3,
			groupOrder: 2,
			largest: null,
			forward: true,
			params: new Map(),
			extensions: new Map(),
		},
	];
	if (d === 14) ms.push({ kind: "unsubscribe_namespace", requestId: 12, prefix: null });
	if (d === 15) ms.push({ kind: "unsubscribe_namespace", requestId: null, prefix: ["live", "x"] });
	if (d === 16) ms.push({ kind: "namespace", suffix: ["a", "b"] }, { kind: "namespace_done", suffix: ["a"] });
	if (d === 14)
		ms.push({
			kind: "request_error",
			type: Msg.SUBSCRIBE_NAMESPACE_ERROR,
			requestId: 3,
			code: 1,
			retryInterval: 0,
			reason: "",
		});
	if (!hasRequestStreams(d)) return ms;
	// 17+: SETUP instead of CLIENT_SETUP / SERVER_SETUP; replies without request IDs; GOAWAY's timeout.
	const modern = ms.filter((m) => !GONE_IN_17.has(m.kind));
	modern.push(
		{ kind: "setup", params: new Map([[SetupParam.IMPLEMENTATION, new TextEncoder().encode("moq-fanout")]]) },
		{ kind: "namespace", suffix: ["a", "b"] },
		{ kind: "namespace_done", suffix: ["a"] },
		{ kind: "goaway", uri: "https://relay.example/next", timeout: 500 },
	);
	if (hasRenumberedSubscribeNamespace(d)) modern.push({ kind: "subscribe_tracks", requestId: 18 });
	if (hasFieldFilters(d))
		modern.push({
			kind: "subscribe",
			requestId: 20,
			namespace: ["a"],
			track: "t",
			priority: 1,
			groupOrder: 0,
			forward: true,
			filter: { type: FilterType.RELATIVE, start: null, endGroup: null, groups: 1 },
			params: new Map(),
		});
	return modern;
}

function controlTarget(d: IetfDraft): Target {
	const corpus = corpusMessages(d).map((m) => encode(m, d));
	return {
		name: `moq-transport-${d} control`,
		corpus,
		maxInput: 2048,
		expected: isDecodeError,
		run(input) {
			const r = new Reader(input);
			const m = decodeControl(r, d, { maxMessageBytes: 4096, maxPathSegments: 32 });
			invariant(r.pos <= input.length, "read past the end");
			invariant(r.end === input.length, "the reader's end was not restored");
			if (m.kind === "unexpected") return "ok";
			// What was accepted re-encodes to a message that decodes and re-encodes identically.
			const once = encode(m, d);
			const again = decodeControl(new Reader(once), d);
			const twice = encode(again, d);
			invariant(Buffer.compare(Buffer.from(once), Buffer.from(twice)) === 0, `${m.kind} does not round-trip`);
			return "ok";
		},
	};
}

/** Splits `input` into chunks whose sizes depend only on it (a crash replays from its hex). */
function chunks(input: Uint8Array, salt: number): Uint8Array[] {
	const rng = new Rng(input.length * 0x9e3779b1 + salt);
	const out: Uint8Array[] = [];
	const whole = rng.chance(0.3);
	for (let p = 0; p < input.length; ) {
		const n = whole ? input.length : 1 + rng.int(rng.chance(0.5) ? 4 : 64);
		out.push(input.subarray(p, p + n));
		p += n;
	}
	return out;
}

/** Subgroup streams: a selector byte (draft), then the stream's type, header and objects. */
function subgroupTarget(): Target {
	const corpus: Uint8Array[] = [];
	const buf = new Uint8Array(64);
	for (const [i, d] of DRAFTS.entries()) {
		const parts: number[] = [i];
		parts.push(...buf.subarray(0, writeSubgroupHeader(buf, 0, 700, 70000, 0, true, d)));
		for (const [size, ts] of [
			[3, 1000],
			[0, 100001],
			[70, 1002],
		]) {
			parts.push(...buf.subarray(0, writeObjectHeader(buf, 0, 0, true, ts, size, d)));
			parts.push(...new Uint8Array(size).fill(0x61));
		}
		corpus.push(Uint8Array.from(parts));
		// The priority-free types of 15+, an explicit subgroup, no extensions, an end-of-group object.
		corpus.push(
			Uint8Array.from([i, d >= 15 ? 0x34 : 0x14, 1, 2, 0, ...(d >= 15 ? [] : [9]), 0, 2, 0x62, 0x63, 0, 0, 3]),
		);
	}
	return {
		name: "moq-transport subgroup stream",
		corpus,
		maxInput: 4096,
		expected: isDecodeError,
		run(input) {
			if (input.length < 2) return "more";
			const d = DRAFTS[input[0] % DRAFTS.length];
			const r = new Reader(input, 1);
			const type = inDraft(d, (x) => x.varint())(r);
			if (!isSubgroupType(type, d)) return "rejected";
			const header = inDraft(d, (x) => decodeSubgroupHeader(x, type, d))(r);
			const p = new ObjectParser(d, header.extensions, 1024);
			let open = -1;
			let got = 0;
			let last = -1;
			p.onObject = (id, size) => {
				invariant(open === -1, "an object began inside an object");
				invariant(size <= 1024, `an object of ${size} bytes above the limit`);
				invariant(id > last, `object ID ${id} after ${last}`);
				last = id;
				open = size;
				got = 0;
				if (size === 0) open = -1;
			};
			p.onData = (view) => {
				got += view.length;
				invariant(got <= open, "object data beyond its size");
			};
			p.onEnd = () => {
				invariant(open === -1 || got === open, `object ended after ${got} of ${open} bytes`);
				open = -1;
			};
			for (const c of chunks(input.subarray(r.pos), 7)) p.push(c);
			p.finish();
			return "ok";
		},
	};
}

/** A stream of a fake transport: what the dispatcher sets, and nothing on the wire. */
function fakeStream(): TransportStream {
	return {
		id: 0,
		bidi: true,
		local: false,
		onData: null,
		onFin: null,
		onReset: null,
		onStop: null,
		onDrain: null,
		write() {},
		finish() {},
		reset() {},
		stop() {},
		buffered: 0,
		setPriority() {},
	};
}

/**
 * The `moql` / no-protocol dispatcher (src/moq/ietf/compat.ts) fed a session's first bidi stream in
 * arbitrary chunks, then its FIN: it must hand the session to exactly one dialect, and draft-14
 * only when the CLIENT_SETUP offers draft-14 and no moq-lite version.
 */
function compatTarget(): Target {
	const setup = (versions: number[]) => {
		const w = new Writer(64);
		w.u8(0x20).u16(0);
		const start = w.pos;
		w.varint(versions.length);
		for (const v of versions) w.varint(v);
		w.varint(0);
		const len = w.pos - start;
		w.buf[start - 2] = len >> 8;
		w.buf[start - 1] = len & 0xff;
		return w.finish();
	};
	// Valid draft-14 offers; mutations reach the moq-lite ones (a version byte flipped, a list cut).
	const corpus = [setup([0xff00000e]), setup([0xff00000f, 0xff00000e])];
	return {
		name: "moql CLIENT_SETUP dispatch",
		corpus,
		maxInput: 512,
		expected: isDecodeError,
		run(input) {
			let chosen: string | null = null;
			const t: TransportSession = {
				kind: "websocket",
				protocol: "moql",
				path: "/",
				query: new URLSearchParams(),
				remote: "fuzz",
				onStream: null,
				onClose: null,
				onStreamCredit: null,
				openBidi: () => null,
				openUni: () => null,
				close() {},
				closed: false,
			};
			const dialect = (name: string) => (): RelaySession => {
				chosen = name;
				return {
					start() {
						t.onStream = () => {};
					},
					close() {},
					goaway: () => false,
					closed: false,
				};
			};
			const dispatch = new CompatDispatch(t, { lite: dialect("lite"), ietf: dialect("ietf"), log: silentLogger });
			dispatch.start();
			const s = fakeStream();
			t.onStream?.(s);
			for (const c of chunks(input, 3)) s.onData?.(c);
			s.onFin?.();
			dispatch.close(0, "done");
			invariant(chosen !== null, "no dialect chosen at the setup stream's FIN");
			if (chosen === "ietf") {
				const r = new Reader(input, 3);
				const n = r.varint();
				const versions: number[] = [];
				for (let i = 0; i < n && i < 256; i++) versions.push(r.varint());
				invariant(versions.includes(0xff00000e), "draft-14 chosen but not offered");
				invariant(compatDialect(versions) === "ietf", "draft-14 chosen beside a moq-lite offer");
			}
			// "rejected": not answered in draft-14 (moq-lite's own decoder takes it from there).
			return chosen === "ietf" ? "ok" : "rejected";
		},
	};
}

export function ietfTargets(): Target[] {
	return [...DRAFTS.map(controlTarget), subgroupTarget(), compatTarget()];
}
