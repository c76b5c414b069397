/**
 * IETF moq-transport codecs (src/moq/ietf/wire), drafts 14–20, against the official client's
 * encoder: every byte vector here is written by @moq/net 0.3.4 (`ietf/*.js`), then decoded by ours
 * (fields checked) and re-encoded by ours (identical bytes). Data streams the same way, both
 * directions, the object stream split into chunks of every size. Then the refusals: every prefix of
 * a valid message is only ever "need more", and bad bytes are IetfDecodeErrors with the draft's code.
 * Drafts 17–20 add the leading-ones varint (against @moq/net's `varint.js`), SETUP, replies without
 * request IDs, typed message parameters, SUBSCRIBE_NAMESPACE 0x50, the FIRST_OBJECT bit and draft
 * 20's LOCATION_FILTER.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as Net from "@moq/net";
import * as NetVarint from "../node_modules/@moq/net/varint.js";
import { NEED_MORE } from "../src/coding/errors.ts";
import { Reader } from "../src/coding/reader.ts";
import { Writer } from "../src/coding/writer.ts";
import { IetfClose } from "../src/errors/codes.ts";
import { compatDialect } from "../src/moq/ietf/compat.ts";
import {
	draftFromAlpn,
	hasFieldFilters,
	hasFirstObjectBit,
	hasRenumberedSubscribeNamespace,
	hasRequiredRequestIdDelta,
	IETF_ALPNS,
	type IetfDraft,
	versionCode,
} from "../src/moq/ietf/version.ts";
import {
	decodeAfterType,
	decodeControl,
	encodeControl,
	FilterType,
	filterBytes,
	IetfDecodeError,
	type IetfMessage,
	inDraft,
	Msg,
	MsgParam,
	pathToTuple,
	SetupParam,
	tupleToPath,
} from "../src/moq/ietf/wire/message.ts";
import {
	decodeSubgroupHeader,
	isSubgroupType,
	ObjectParser,
	writeObjectHeader,
	writeSubgroupHeader,
} from "../src/moq/ietf/wire/object.ts";
import { LoReader, LoWriter, loSize, readLo, writeLo } from "../src/moq/ietf/wire/varint.ts";
import { NetIetf as I, netBytes, netRead } from "./support/ietf.ts";

const DRAFTS: IetfDraft[] = [14, 15, 16];
const MODERN: IetfDraft[] = [17, 18, 19, 20];
const utf8 = new TextEncoder();

/** @moq/net writes a message's type then its u16-framed body. */
function netMessage(d: IetfDraft, msg: { encode(w: unknown, v: number): Promise<void> }, type: number) {
	return netBytes(versionCode(d), async (w) => {
		await (w as { u53(v: number): Promise<void> }).u53(type);
		await msg.encode(w, versionCode(d));
	});
}

function decode(bytes: Uint8Array, d: IetfDraft): IetfMessage {
	const r = new Reader(bytes);
	const m = decodeControl(r, d);
	assert.equal(r.pos, bytes.length, "the message is consumed exactly");
	return m;
}

function encode(m: IetfMessage, d: IetfDraft): Uint8Array {
	const w = new Writer(64);
	encodeControl(w, m, d);
	return w.finish();
}

/** Decodes @moq/net's bytes, checks `expect` against the decoded message, re-encodes identically. */
function roundTrip(bytes: Uint8Array, d: IetfDraft, expect: (m: IetfMessage) => void): IetfMessage {
	const m = decode(bytes, d);
	expect(m);
	assert.deepEqual(encode(m, d), bytes, `draft-${d} ${m.kind}: our encoding differs from @moq/net's`);
	// Every prefix is "need more", never a refusal: a truncated message only ever waits.
	for (let n = 0; n < bytes.length; n++) {
		assert.throws(
			() => decodeControl(new Reader(bytes.subarray(0, n)), d),
			(e) => e === NEED_MORE,
			`prefix ${n}`,
		);
	}
	return m;
}

function refused(bytes: Uint8Array | number[], d: IetfDraft, code: number = IetfClose.PROTOCOL_VIOLATION): void {
	const b = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
	assert.throws(
		() => decodeControl(new Reader(b), d),
		(e) => e instanceof IetfDecodeError && e.code === code,
		`draft-${d} refuses ${Buffer.from(b).toString("hex")} with ${code}`,
	);
}

/** A message of `type` with `body` (the u16 length computed). */
function framed(type: number, body: number[]): number[] {
	return [type, body.length >> 8, body.length & 0xff, ...body];
}

describe("IETF versions and dispatch names", () => {
	it("maps ALPNs and version codes", () => {
		assert.deepEqual(IETF_ALPNS, ["moqt-20", "moqt-19", "moqt-18", "moqt-17", "moqt-16", "moqt-15", "moq-00"]);
		assert.equal(draftFromAlpn("moq-00"), 14);
		assert.equal(draftFromAlpn("moqt-15"), 15);
		assert.equal(draftFromAlpn("moqt-16"), 16);
		for (const d of MODERN) assert.equal(draftFromAlpn(`moqt-${d}`), d);
		assert.equal(draftFromAlpn("moqt-21"), null);
		assert.equal(draftFromAlpn("moql"), null);
		assert.equal(versionCode(14), 0xff00000e);
		assert.equal(versionCode(16), 0xff000010);
		assert.equal(versionCode(17), I.Version.DRAFT_17);
		assert.equal(versionCode(20), I.Version.DRAFT_20);
	});

	it("answers a CLIENT_SETUP in draft-14 only when no moq-lite version is offered", () => {
		// @moq/net's own offer over moql: lite-02 stays the choice.
		assert.equal(compatDialect([0xff0dad02, 0xff0dad01, 0xff00000e]), "lite");
		assert.equal(compatDialect([0xff0dad01, 0xff00000e]), "lite");
		assert.equal(compatDialect([0xff00000e]), "ietf");
		assert.equal(compatDialect([0xff00000f, 0xff00000e]), "ietf");
		assert.equal(compatDialect([0xff00000f]), "lite");
		assert.equal(compatDialect([]), "lite");
	});

	it("maps namespace tuples onto paths", () => {
		assert.equal(tupleToPath(["a", "b"]), "a/b");
		assert.equal(tupleToPath([]), "");
		assert.equal(tupleToPath(["", "x", ""]), "x");
		assert.deepEqual(pathToTuple(tupleToPath(["conference", "room", "123"])), ["conference", "room", "123"]);
		assert.deepEqual(pathToTuple(tupleToPath([])), []);
		assert.throws(() => tupleToPath(["a", ".."]), /not allowed/);
	});
});

for (const d of DRAFTS) {
	const v = versionCode(d);
	describe(`draft-${d} control messages, byte-exact with @moq/net`, () => {
		it("CLIENT_SETUP and SERVER_SETUP", async () => {
			const params = new I.SetupOptions();
			params.setVarint(I.SetupOption.MaxRequestId, 42069n);
			params.setBytes(I.SetupOption.Implementation, utf8.encode("moq-lite-js"));
			I.solicitIntoSetup(params);
			const versions = d === 14 ? [0xff0dad02, 0xff0dad01, v] : [v];
			const client = await netMessage(d, new I.ClientSetup({ versions, parameters: params }), 0x20);
			roundTrip(client, d, (m) => {
				assert.equal(m.kind, "client_setup");
				if (m.kind !== "client_setup") return;
				assert.deepEqual(m.versions, d === 14 ? versions : []);
				assert.equal(m.params.get(SetupParam.MAX_REQUEST_ID), 42069);
				assert.deepEqual(m.params.get(SetupParam.IMPLEMENTATION), utf8.encode("moq-lite-js"));
				assert.equal(m.params.get(0x40b5a), 1);
			});
			const server = await netMessage(d, new I.ServerSetup({ version: v, parameters: params }), 0x21);
			const ours = encode(
				{
					kind: "server_setup",
					version: v,
					params: new Map<number, number | Uint8Array>([
						[SetupParam.MAX_REQUEST_ID, 42069],
						[0x40b5a, 1],
						[SetupParam.IMPLEMENTATION, utf8.encode("moq-lite-js")],
					]),
				},
				d,
			);
			assert.deepEqual(ours, server);
			const back = await netRead(v, ours.subarray(1), (r) => I.ServerSetup.decode(r, v));
			assert.equal(back.parameters.getVarint(I.SetupOption.MaxRequestId), 42069n);
			if (d === 14) assert.equal(back.version, v);
		});

		it("SUBSCRIBE (the filter @moq/net joins with) and SUBSCRIBE_OK", async () => {
			const sub = await netMessage(
				d,
				new I.Subscribe({
					requestId: 6n,
					trackNamespace: "live/room",
					trackName: "video",
					subscriberPriority: 0x7f,
					filter: { kind: "nextObject" },
				}),
				Msg.SUBSCRIBE,
			);
			roundTrip(sub, d, (m) => {
				assert.equal(m.kind, "subscribe");
				if (m.kind !== "subscribe") return;
				assert.equal(m.requestId, 6);
				assert.deepEqual(m.namespace, ["live", "room"]);
				assert.equal(m.track, "video");
				assert.equal(m.priority, 0x7f);
				assert.equal(m.groupOrder, 2);
				assert.equal(m.forward, true);
				assert.equal(m.filter.type, FilterType.LARGEST_OBJECT);
			});
			// Our upstream SUBSCRIBE is what @moq/net reads back.
			const ours = encode(
				{
					kind: "subscribe",
					requestId: 1,
					namespace: ["a"],
					track: "t",
					priority: 3,
					groupOrder: 2,
					forward: true,
					filter: { type: FilterType.LARGEST_OBJECT, start: null, endGroup: null },
					params: new Map(),
				},
				d,
			);
			const back = await netRead(v, ours.subarray(1), (r) => I.Subscribe.decode(r, v));
			assert.equal(back.requestId, 1n);
			assert.equal(back.trackNamespace, "a");
			assert.equal(back.trackName, "t");
			assert.equal(back.subscriberPriority, 3);
			assert.equal(back.filter.kind, "nextObject");

			const ok = await netMessage(d, new I.SubscribeOk({ requestId: 6n, trackAlias: 6n }), Msg.SUBSCRIBE_OK);
			roundTrip(ok, d, (m) => {
				assert.equal(m.kind, "subscribe_ok");
				if (m.kind !== "subscribe_ok") return;
				assert.equal(m.requestId, 6);
				assert.equal(m.alias, 6);
				assert.equal(m.largest, null);
			});
		});

		it("the request refusals: SUBSCRIBE_ERROR (14) / REQUEST_ERROR (15+)", async () => {
			const err =
				d === 14
					? new I.SubscribeError({ requestId: 4n, errorCode: 4, reasonPhrase: "no such broadcast" })
					: new I.RequestError({ requestId: 4n, errorCode: 0x10, reasonPhrase: "no such broadcast" });
			roundTrip(await netMessage(d, err, 0x05), d, (m) => {
				assert.equal(m.kind, "request_error");
				if (m.kind !== "request_error") return;
				assert.equal(m.requestId, 4);
				assert.equal(m.code, d === 14 ? 4 : 0x10);
				assert.equal(m.retryInterval, 0);
				assert.equal(m.reason, "no such broadcast");
			});
			if (d === 14) {
				// Draft-14's own error messages keep their own type and the same layout.
				for (const type of [
					Msg.PUBLISH_NAMESPACE_ERROR,
					Msg.SUBSCRIBE_NAMESPACE_ERROR,
					Msg.FETCH_ERROR,
					Msg.PUBLISH_ERROR,
				]) {
					const bytes = encode(
						{ kind: "request_error", type, requestId: 2, code: 3, retryInterval: 0, reason: "x" },
						d,
					);
					assert.equal(bytes[0], type);
					const back = await netRead(v, bytes.subarray(1), (r) => I.PublishNamespaceError.decode(r, v));
					assert.equal(back.errorCode, 3);
				}
			}
		});

		it("PUBLISH_NAMESPACE, its OK, DONE and CANCEL", async () => {
			const pn = await netMessage(
				d,
				new I.PublishNamespace({ requestId: 2n, trackNamespace: "demo" }),
				Msg.PUBLISH_NAMESPACE,
			);
			roundTrip(pn, d, (m) => {
				assert.equal(m.kind, "publish_namespace");
				if (m.kind !== "publish_namespace") return;
				assert.equal(m.requestId, 2);
				assert.deepEqual(m.namespace, ["demo"]);
			});
			const ok =
				d === 14
					? await netMessage(d, new I.PublishNamespaceOk({ requestId: 2n }), 0x07)
					: await netMessage(d, new I.RequestOk({ requestId: 2n }), 0x07);
			roundTrip(ok, d, (m) => {
				assert.equal(m.kind, "request_ok");
				if (m.kind === "request_ok") assert.equal(m.requestId, 2);
			});
			const done = await netMessage(
				d,
				new I.PublishNamespaceDone({ trackNamespace: "demo", requestId: 2n }),
				Msg.PUBLISH_NAMESPACE_DONE,
			);
			roundTrip(done, d, (m) => {
				assert.equal(m.kind, "publish_namespace_done");
				if (m.kind !== "publish_namespace_done") return;
				if (d === 16) assert.equal(m.requestId, 2);
				else assert.deepEqual(m.namespace, ["demo"]);
			});
			const cancel = await netMessage(
				d,
				new I.PublishNamespaceCancel({ trackNamespace: "demo", requestId: 3n, errorCode: 4, reasonPhrase: "no" }),
				Msg.PUBLISH_NAMESPACE_CANCEL,
			);
			roundTrip(cancel, d, (m) => {
				assert.equal(m.kind, "publish_namespace_cancel");
				if (m.kind !== "publish_namespace_cancel") return;
				assert.equal(m.code, 4);
				if (d === 16) assert.equal(m.requestId, 3);
				else assert.deepEqual(m.namespace, ["demo"]);
			});
		});

		it("SUBSCRIBE_NAMESPACE, its OK, and (16) NAMESPACE / NAMESPACE_DONE", async () => {
			const sn = await netMessage(
				d,
				new I.SubscribeNamespaceLegacy({ namespace: "rooms", requestId: 0n }),
				Msg.SUBSCRIBE_NAMESPACE,
			);
			roundTrip(sn, d, (m) => {
				assert.equal(m.kind, "subscribe_namespace");
				if (m.kind !== "subscribe_namespace") return;
				assert.deepEqual(m.prefix, ["rooms"]);
				assert.equal(m.options, 1);
			});
			if (d === 14) {
				roundTrip(await netMessage(d, new I.SubscribeNamespaceOk({ requestId: 0n }), 0x12), d, (m) => {
					assert.equal(m.kind, "request_ok");
					if (m.kind === "request_ok") assert.equal(m.type, 0x12);
				});
			}
			if (d === 16) {
				const entry = await netMessage(d, new I.SubscribeNamespaceEntry({ suffix: "a/b" }), Msg.NAMESPACE);
				roundTrip(entry, d, (m) => assert.deepEqual(m, { kind: "namespace", suffix: ["a", "b"] }));
				const gone = await netMessage(d, new I.SubscribeNamespaceEntryDone({ suffix: "a/b" }), Msg.NAMESPACE_DONE);
				roundTrip(gone, d, (m) => assert.deepEqual(m, { kind: "namespace_done", suffix: ["a", "b"] }));
			} else {
				const unsub = await netMessage(d, new I.UnsubscribeNamespace({ requestId: 0n }), Msg.UNSUBSCRIBE_NAMESPACE);
				roundTrip(unsub, d, (m) => assert.deepEqual(m, { kind: "unsubscribe_namespace", requestId: 0, prefix: null }));
				// The draft-14 text's form: the prefix tuple.
				const byPrefix = framed(Msg.UNSUBSCRIBE_NAMESPACE, [1, 5, ...utf8.encode("rooms")]);
				assert.deepEqual(decode(Uint8Array.from(byPrefix), d), {
					kind: "unsubscribe_namespace",
					requestId: null,
					prefix: ["rooms"],
				});
			}
		});

		it("UNSUBSCRIBE, PUBLISH_DONE, GOAWAY, MAX_REQUEST_ID, REQUESTS_BLOCKED, SUBSCRIBE_UPDATE, TRACK_STATUS, PUBLISH", async () => {
			roundTrip(await netMessage(d, new I.Unsubscribe({ requestId: 8n }), Msg.UNSUBSCRIBE), d, (m) =>
				assert.deepEqual(m, { kind: "unsubscribe", requestId: 8 }),
			);
			const done = await netMessage(
				d,
				new I.PublishDone({ requestId: 8n, statusCode: 2, reasonPhrase: "track ended" }),
				Msg.PUBLISH_DONE,
			);
			roundTrip(done, d, (m) =>
				assert.deepEqual(m, { kind: "publish_done", requestId: 8, status: 2, streamCount: 0, reason: "track ended" }),
			);
			roundTrip(await netMessage(d, new I.GoAway({ newSessionUri: "https://x/" }), Msg.GOAWAY), d, (m) =>
				assert.deepEqual(m, { kind: "goaway", uri: "https://x/" }),
			);
			roundTrip(await netMessage(d, new I.MaxRequestId({ requestId: 1024n }), Msg.MAX_REQUEST_ID), d, (m) =>
				assert.deepEqual(m, { kind: "max_request_id", requestId: 1024 }),
			);
			roundTrip(await netMessage(d, new I.RequestsBlocked({ requestId: 64n }), Msg.REQUESTS_BLOCKED), d, (m) =>
				assert.deepEqual(m, { kind: "requests_blocked", maximum: 64 }),
			);
			const update = await netMessage(d, new I.SubscribeUpdate({ requestId: 10n }), Msg.SUBSCRIBE_UPDATE);
			const u = decode(update, d);
			assert.equal(u.kind, "subscribe_update");
			const ts = await netMessage(
				d,
				new I.TrackStatusRequest({ requestId: 12n, trackNamespace: "demo", trackName: "t" }),
				Msg.TRACK_STATUS,
			);
			const t = decode(ts, d);
			assert.equal(t.kind, "track_status");
			if (t.kind === "track_status") assert.deepEqual([t.requestId, t.namespace, t.track], [12, ["demo"], "t"]);
			const publish = await netMessage(
				d,
				new I.Publish({
					requestId: 14n,
					trackNamespace: "demo",
					trackName: "t",
					trackAlias: 9n,
					groupOrder: 2,
					contentExists: false,
					forward: true,
				}),
				Msg.PUBLISH,
			);
			roundTrip(publish, d, (m) => {
				assert.equal(m.kind, "publish");
				if (m.kind === "publish")
					assert.deepEqual([m.requestId, m.namespace, m.track, m.alias], [14, ["demo"], "t", 9]);
			});
		});

		it("refuses what can never decode, with PROTOCOL_VIOLATION", () => {
			refused(framed(0x3f, []), d); // unknown type
			refused(framed(Msg.UNSUBSCRIBE, [1, 2]), d); // a trailing byte
			refused(framed(Msg.PUBLISH_DONE, [1]), d); // shorter than its fields
			refused(framed(Msg.GOAWAY, [0xc0, 0xff, 0xff, 0xff, 0, 0, 0, 0]), d); // a varint above 2^53
			// A tuple of 33 fields, refused before the fields are read.
			refused(framed(Msg.PUBLISH_NAMESPACE, [2, 33]), d);
			// A track name above 4096 bytes, refused from its length.
			refused(framed(Msg.SUBSCRIBE, [2, 1, 1, 0x61, 0x50, 0x01]), d);
			// A reason above 1024 bytes.
			refused(framed(Msg.PUBLISH_DONE, [0, 0, 0, 0x44, 0x01]), d);
			// Invalid UTF-8 in a namespace field.
			refused(framed(Msg.PUBLISH_NAMESPACE, [2, 1, 1, 0xff, 0]), d);
			// More than 64 parameters, refused from the count.
			refused(framed(Msg.PUBLISH_NAMESPACE, [2, 0, 0x40, 65]), d);
			// A parameter given twice.
			refused(framed(Msg.PUBLISH_NAMESPACE, [2, 0, 2, 0x10, 1, d >= 16 ? 0 : 0x10, 1]), d);
			// A message longer than the limit is refused from its length, before its body arrives.
			assert.throws(
				() => decodeControl(new Reader(Uint8Array.from([Msg.SUBSCRIBE, 0x10, 0x00])), d, { maxMessageBytes: 1024 }),
				(e) => e instanceof IetfDecodeError && e.code === IetfClose.PROTOCOL_VIOLATION,
			);
			if (d !== 14) {
				refused(framed(Msg.SUBSCRIBE_NAMESPACE_OK, [0]), d); // draft-14 only
				refused(framed(Msg.TRACK_STATUS_ERROR, [0, 0, 0]), d);
			}
			if (d === 16) refused(framed(Msg.UNSUBSCRIBE_NAMESPACE, [0]), d); // gone in 16
			if (d === 14) {
				// SUBSCRIBE's inline forward must be 0 or 1, and the filter type known.
				refused(framed(Msg.SUBSCRIBE, [0, 0, 1, 0x74, 0, 2, 2, 2, 0]), d);
				refused(framed(Msg.SUBSCRIBE, [0, 0, 1, 0x74, 0, 2, 1, 9, 0]), d);
			} else {
				// FORWARD above 1, and a SUBSCRIPTION_FILTER with a trailing byte.
				refused(framed(Msg.SUBSCRIBE, [0, 0, 1, 0x74, 1, MsgParam.FORWARD, 2]), d);
				refused(framed(Msg.SUBSCRIBE, [0, 0, 1, 0x74, 1, MsgParam.SUBSCRIPTION_FILTER, 2, 2, 0]), d);
			}
		});
	});

	describe(`draft-${d} data streams, byte-exact with @moq/net`, () => {
		const flags = {
			hasExtensions: true,
			hasSubgroup: false,
			hasSubgroupObject: false,
			hasEnd: true,
			hasPriority: true,
			firstObject: true,
		};
		const frames = [utf8.encode("hello"), new Uint8Array(0), new Uint8Array(300).fill(7), utf8.encode("ietf")];

		it("writes the subgroup header and objects @moq/net writes, and @moq/net reads ours", async () => {
			const theirs = await netBytes(v, async (w) => {
				await new I.Group({ trackAlias: 5n, groupId: 70, subGroupId: 0, publisherPriority: 0, flags }).encode(w, v);
				for (const [i, payload] of frames.entries()) {
					const ts = new Net.Time.Timestamp(1000 + i, 1000);
					await new I.Frame({ payload, timestamp: ts }).encode(w, flags, 1000, v, 0);
				}
			});
			const buf = new Uint8Array(64);
			const parts: Uint8Array[] = [buf.slice(0, writeSubgroupHeader(buf, 0, 5, 70, 0, true))];
			for (const [i, payload] of frames.entries()) {
				parts.push(buf.slice(0, writeObjectHeader(buf, 0, 0, true, 1000 + i, payload.length)), payload);
			}
			const ours = Buffer.concat(parts);
			assert.deepEqual(new Uint8Array(ours), theirs);
			// And @moq/net's decoder takes ours: header, then every frame.
			const got = await netRead(v, new Uint8Array(ours), async (r) => {
				const header = await I.Group.decode(r, v);
				assert.equal(header.trackAlias, 5n);
				assert.equal(header.groupId, 70);
				const out: Uint8Array[] = [];
				for (let i = 0; i < frames.length; i++) out.push((await I.Frame.decode(r, header.flags, undefined, v)).payload);
				return out;
			});
			assert.deepEqual(got, frames);
		});

		it("parses @moq/net's objects in chunks of any size", async () => {
			const stream = await netBytes(v, async (w) => {
				await new I.Group({ trackAlias: 1n, groupId: 3, subGroupId: 0, publisherPriority: 0, flags }).encode(w, v);
				for (const payload of frames) {
					await new I.Frame({ payload, timestamp: new Net.Time.Timestamp(9, 1000) }).encode(w, flags, 1000, v, 0);
				}
			});
			const type = stream[0];
			assert.ok(isSubgroupType(type, d));
			const r = new Reader(stream, 1);
			const header = decodeSubgroupHeader(r, type);
			assert.deepEqual(header, {
				type: 0x19,
				alias: 1,
				group: 3,
				subgroup: 0,
				priority: 0,
				extensions: true,
				endOfGroup: true,
				firstObject: true,
			});
			const body = stream.subarray(r.pos);
			for (const size of [1, 2, 3, 7, 64, body.length]) {
				const p = new ObjectParser(d, true, 1 << 20);
				const got: { id: number; bytes: number[] }[] = [];
				p.onObject = (id) => got.push({ id, bytes: [] });
				p.onData = (view) => got.at(-1)!.bytes.push(...view);
				for (let i = 0; i < body.length; i += size) p.push(body.subarray(i, i + size));
				p.finish();
				assert.deepEqual(
					got.map((g) => g.id),
					[0, 1, 2, 3],
				);
				assert.deepEqual(
					got.map((g) => Uint8Array.from(g.bytes)),
					frames,
					`chunks of ${size}`,
				);
			}
		});

		it("knows the subgroup header types of the draft", () => {
			for (const t of [0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d])
				assert.ok(isSubgroupType(t, d));
			for (const t of [0x16, 0x17, 0x1e, 0x1f, 0x05, 0x00, 0x2f, 0x40])
				assert.ok(!isSubgroupType(t, d), `0x${t.toString(16)}`);
			assert.equal(isSubgroupType(0x30, d), d >= 15);
			assert.equal(isSubgroupType(0x3d, d), d >= 15);
			const r = new Reader(Uint8Array.from([7, 2, 9]));
			assert.deepEqual(decodeSubgroupHeader(r, 0x34), {
				type: 0x34,
				alias: 7,
				group: 2,
				subgroup: 9,
				priority: null,
				extensions: false,
				endOfGroup: false,
				firstObject: true,
			});
		});

		it("refuses bad objects, reports statuses, catches a stream ending inside an object", () => {
			const parse = (bytes: number[], ext = false) => {
				const p = new ObjectParser(d, ext, 100);
				const statuses: number[] = [];
				p.onStatus = (_id, s) => statuses.push(s);
				p.push(Uint8Array.from(bytes));
				p.finish();
				return statuses;
			};
			assert.deepEqual(parse([0, 0, 3]), [3]); // end of group
			assert.throws(() => parse([0, 0, 3, 0, 1, 9]), IetfDecodeError); // an object after it
			assert.throws(() => parse([0, 0, 7]), IetfDecodeError); // unknown status
			if (d <= 15) assert.deepEqual(parse([0, 0, 1]), [1]);
			else assert.throws(() => parse([0, 0, 1]), IetfDecodeError);
			assert.throws(() => parse([0, 5, 1, 2]), /inside an object/); // FIN inside a payload
			const big = new ObjectParser(d, false, 100);
			assert.throws(() => big.push(Uint8Array.from([0, 0x40, 200])), /exceeds 100/);
			assert.ok(big.tooLarge);
			// Object IDs: the first is absolute, each later one the previous plus delta plus one.
			const ids: number[] = [];
			const p = new ObjectParser(d, false, 100);
			p.onObject = (id) => ids.push(id);
			p.push(Uint8Array.from([2, 1, 9, 0, 1, 9, 3, 1, 9]));
			assert.deepEqual(ids, [2, 3, 7]);
		});
	});
}

describe("the leading-ones varint of drafts 17+, against @moq/net's varint.js", () => {
	const values = [0, 1, 63, 64, 127, 128, 16383, 16384, 2 ** 21 - 1, 2 ** 21, 2 ** 28 - 1, 2 ** 28, 2 ** 35, 2 ** 42];
	values.push(2 ** 49 + 5, Number.MAX_SAFE_INTEGER);
	it("writes the bytes @moq/net writes, and reads them back", () => {
		for (const v of values) {
			const theirs = NetVarint.encodeLeadingOnes(v);
			const buf = new Uint8Array(9);
			const end = writeLo(buf, 0, v);
			assert.deepEqual(buf.subarray(0, end), theirs, `${v}`);
			assert.equal(loSize(v), end);
			assert.equal(readLo(buf, 0, end, false), v);
			assert.equal(new LoWriter(9).varint(v).finish().length, end);
			// Every prefix is "need more".
			for (let n = 0; n < end; n++)
				assert.throws(
					() => readLo(buf, 0, n, true),
					(e) => e === NEED_MORE,
				);
		}
	});

	it("reads the 7-byte form on 18+ only, and refuses values above 2^53", () => {
		const seven = Uint8Array.from([0xfd, 0, 0, 0, 0, 0, 7]); // 1111110x: 2^48 + 7
		assert.equal(readLo(seven, 0, 7, true), 2 ** 48 + 7);
		assert.equal(Number(NetVarint.decodeLeadingOnes(seven)[0]), 2 ** 48 + 7);
		assert.throws(() => readLo(seven, 0, 7, false), /reserved on draft-17/);
		assert.throws(() => readLo(Uint8Array.from([0xff, 0, 0x20, 0, 0, 0, 0, 0, 0]), 0, 9, true), /above 2\^53/);
		assert.equal(new LoReader(Uint8Array.from([0x80, 0x80])).varint(), 128);
	});
});

for (const d of MODERN) {
	const v = versionCode(d);
	const lo = (n: number) => [...NetVarint.encodeLeadingOnes(n)];
	/** A message of `type` with `body`, the type in leading-ones form. */
	const framedLo = (type: number, body: number[]) => [...lo(type), body.length >> 8, body.length & 0xff, ...body];
	const reqId = (id: number) => (hasRequiredRequestIdDelta(d) ? [...lo(id), 0] : lo(id));

	describe(`draft-${d} control messages, byte-exact with @moq/net`, () => {
		it("SETUP (0x2F00), both ways", async () => {
			const params = new I.SetupOptions();
			params.setBytes(I.SetupOption.Implementation, utf8.encode("moq-lite-js"));
			I.solicitIntoSetup(params);
			params.setBytes(I.SetupOption.RelayHops, NetVarint.encodeLeadingOnes(123456789n));
			const theirs = await netMessage(d, new I.Setup({ parameters: params }), Msg.SETUP);
			assert.deepEqual([...theirs.subarray(0, 2)], [0xaf, 0x00], "0x2F00 in leading-ones form");
			const m = roundTrip(theirs, d, (m) => {
				assert.equal(m.kind, "setup");
				if (m.kind !== "setup") return;
				assert.deepEqual(m.params.get(SetupParam.IMPLEMENTATION), utf8.encode("moq-lite-js"));
				assert.equal(m.params.get(0x40b5a), 1, "SOLICIT");
			});
			// As the relay reads it: the stream type first, then the rest.
			const r = new Reader(theirs);
			assert.equal(inDraft(d, (x) => x.varint())(r), Msg.SETUP);
			assert.deepEqual(decodeAfterType(r, Msg.SETUP, d), m);
			// Ours, read by @moq/net.
			const ours = encode(
				{ kind: "setup", params: new Map([[SetupParam.IMPLEMENTATION, utf8.encode("moq-fanout")]]) },
				d,
			);
			const back = await netRead(v, ours.subarray(2), (x) => I.Setup.decode(x, v));
			assert.deepEqual(back.parameters.getBytes(I.SetupOption.Implementation), utf8.encode("moq-fanout"));
			assert.equal(back.parameters.getVarint(I.SetupOption.MaxRequestId), undefined);
		});

		it("SUBSCRIBE (typed parameters; 20's LOCATION_FILTER) and SUBSCRIBE_OK (no request ID, Track Properties)", async () => {
			const filter = hasFieldFilters(d) ? { kind: "relative", groups: 1n } : { kind: "nextObject" };
			const sub = await netMessage(
				d,
				new I.Subscribe({
					requestId: 300n,
					trackNamespace: "live/room",
					trackName: "video",
					subscriberPriority: 0xc8,
					filter,
				}),
				Msg.SUBSCRIBE,
			);
			roundTrip(sub, d, (m) => {
				assert.equal(m.kind, "subscribe");
				if (m.kind !== "subscribe") return;
				assert.equal(m.requestId, 300);
				assert.deepEqual(m.namespace, ["live", "room"]);
				assert.equal(m.priority, 0xc8, "a u8 parameter, not a varint");
				assert.equal(m.groupOrder, 2);
				assert.equal(m.forward, true);
				if (hasFieldFilters(d)) assert.deepEqual([m.filter.type, m.filter.groups], [FilterType.RELATIVE, 1]);
				else assert.equal(m.filter.type, FilterType.LARGEST_OBJECT);
			});
			// Our upstream SUBSCRIBE, read by @moq/net.
			const ours = encode(
				{
					kind: "subscribe",
					requestId: 1001,
					namespace: ["a"],
					track: "t",
					priority: 3,
					groupOrder: 2,
					forward: true,
					filter: hasFieldFilters(d)
						? { type: FilterType.RELATIVE, start: null, endGroup: null, groups: 1 }
						: { type: FilterType.LARGEST_OBJECT, start: null, endGroup: null },
					params: new Map([[MsgParam.DELIVERY_TIMEOUT, 5000]]),
				},
				d,
			);
			const back = await netRead(v, ours.subarray(1), (r) => I.Subscribe.decode(r, v));
			assert.equal(back.requestId, 1001n);
			assert.equal(back.subscriberPriority, 3);
			assert.deepEqual(back.filter, hasFieldFilters(d) ? { kind: "relative", groups: 1n } : { kind: "nextObject" });
			// An absolute range: 17–19 end it with a delta from the start group, 20 with up to 4 fields.
			const range = { type: FilterType.ABSOLUTE_RANGE, start: { group: 200, object: 3 }, endGroup: 210 };
			const wire = filterBytes(range, d);
			const netFilter = await import("../node_modules/@moq/net/ietf/filter.js");
			assert.deepEqual(netFilter.decode(wire, v), {
				kind: "absolute",
				startGroup: 200n,
				startObject: 3n,
				endGroup: 210n,
				...(hasFieldFilters(d) ? { endObject: undefined } : {}),
			});

			const ok = await netMessage(
				d,
				new I.SubscribeOk({
					requestId: 300n,
					trackAlias: 300n,
					largest: { groupId: 70000n, objectId: 2n },
					properties: { timescale: 1000, groupOrder: 2 },
				}),
				Msg.SUBSCRIBE_OK,
			);
			roundTrip(ok, d, (m) => {
				assert.equal(m.kind, "subscribe_ok");
				if (m.kind !== "subscribe_ok") return;
				assert.equal(m.requestId, 0, "no request ID on 17+");
				assert.equal(m.alias, 300);
				assert.equal(m.extensions.get(0x08), 1000, "TIMESCALE");
				assert.equal(m.params.has(MsgParam.LARGEST_OBJECT), hasFieldFilters(d));
			});
			const ourOk = encode(
				{
					kind: "subscribe_ok",
					requestId: 300,
					alias: 300,
					expires: 0,
					groupOrder: 2,
					largest: null,
					params: new Map(),
					extensions: new Map(),
				},
				d,
			);
			const okBack = await netRead(v, ourOk.subarray(1), (r) => I.SubscribeOk.decode(r, v));
			assert.equal(okBack.trackAlias, 300n);
		});

		it("REQUEST_OK, REQUEST_ERROR, PUBLISH_DONE: no request ID", async () => {
			roundTrip(await netMessage(d, new I.RequestOk({}), Msg.REQUEST_OK), d, (m) =>
				assert.deepEqual(m, { kind: "request_ok", type: Msg.REQUEST_OK, requestId: 0, params: new Map() }),
			);
			const err = new I.RequestError({ errorCode: 0x10, reasonPhrase: "no such broadcast", retryInterval: 0n });
			roundTrip(await netMessage(d, err, Msg.REQUEST_ERROR), d, (m) =>
				assert.deepEqual(m, {
					kind: "request_error",
					type: Msg.REQUEST_ERROR,
					requestId: 0,
					code: 0x10,
					retryInterval: 0,
					reason: "no such broadcast",
				}),
			);
			const done = new I.PublishDone({ statusCode: 2, reasonPhrase: "track ended" });
			roundTrip(await netMessage(d, done, Msg.PUBLISH_DONE), d, (m) =>
				assert.deepEqual(m, { kind: "publish_done", requestId: 0, status: 2, streamCount: 0, reason: "track ended" }),
			);
		});

		it("PUBLISH_NAMESPACE, SUBSCRIBE_NAMESPACE (0x11 on 17, 0x50 on 18+), NAMESPACE, NAMESPACE_DONE", async () => {
			const pn = await netMessage(
				d,
				new I.PublishNamespace({ requestId: 130n, trackNamespace: "demo/x" }),
				Msg.PUBLISH_NAMESPACE,
			);
			roundTrip(pn, d, (m) =>
				assert.deepEqual(m, { kind: "publish_namespace", requestId: 130, namespace: ["demo", "x"], params: new Map() }),
			);
			const sn = hasRenumberedSubscribeNamespace(d)
				? await netMessage(d, new I.SubscribeNamespace({ namespace: "rooms", requestId: 2n }), 0x50)
				: await netMessage(d, new I.SubscribeNamespaceLegacy({ namespace: "rooms", requestId: 2n }), 0x11);
			roundTrip(sn, d, (m) =>
				assert.deepEqual(m, {
					kind: "subscribe_namespace",
					requestId: 2,
					prefix: ["rooms"],
					options: 1,
					params: new Map(),
				}),
			);
			const entry = await netMessage(d, new I.SubscribeNamespaceEntry({ suffix: "a/b" }), Msg.NAMESPACE);
			roundTrip(entry, d, (m) => assert.deepEqual(m, { kind: "namespace", suffix: ["a", "b"] }));
			const gone = await netMessage(d, new I.SubscribeNamespaceEntryDone({ suffix: "a/b" }), Msg.NAMESPACE_DONE);
			roundTrip(gone, d, (m) => assert.deepEqual(m, { kind: "namespace_done", suffix: ["a", "b"] }));
		});

		it("GOAWAY (with its timeout), REQUEST_UPDATE, TRACK_STATUS, PUBLISH; SUBSCRIBE_TRACKS (18+)", async () => {
			roundTrip(await netMessage(d, new I.GoAway({ newSessionUri: "https://x/", timeout: 500n }), Msg.GOAWAY), d, (m) =>
				assert.deepEqual(m, { kind: "goaway", uri: "https://x/", timeout: 500 }),
			);
			roundTrip(await netMessage(d, new I.SubscribeUpdate({ requestId: 10n }), Msg.SUBSCRIBE_UPDATE), d, (m) =>
				assert.deepEqual(m, { kind: "subscribe_update", requestId: 10, subscriptionId: 10, params: new Map() }),
			);
			const ts = await netMessage(
				d,
				new I.TrackStatusRequest({ requestId: 12n, trackNamespace: "demo", trackName: "t" }),
				Msg.TRACK_STATUS,
			);
			roundTrip(ts, d, (m) =>
				assert.deepEqual(m, {
					kind: "track_status",
					requestId: 12,
					namespace: ["demo"],
					track: "t",
					params: new Map(),
				}),
			);
			const publish = await netMessage(
				d,
				new I.Publish({
					requestId: 14n,
					trackNamespace: "demo",
					trackName: "t",
					trackAlias: 9n,
					groupOrder: 2,
					contentExists: false,
					forward: true,
				}),
				Msg.PUBLISH,
			);
			roundTrip(publish, d, (m) => {
				assert.equal(m.kind, "publish");
				if (m.kind === "publish")
					assert.deepEqual([m.requestId, m.namespace, m.track, m.alias], [14, ["demo"], "t", 9]);
			});
			if (hasRenumberedSubscribeNamespace(d)) {
				// Only its request ID is read; the rest (whatever its layout) is skipped with its length.
				const m = decode(Uint8Array.from(framedLo(Msg.SUBSCRIBE_TRACKS, [...lo(300), 1, 1, 0x61, 3, 0, 9, 9])), d);
				assert.deepEqual(m, { kind: "subscribe_tracks", requestId: 300 });
			}
		});

		it("refuses what the draft does not have, and what can never decode", () => {
			const refusedLo = (body: number[]) => refused(body, d);
			// Removed from 17 on: UNSUBSCRIBE, PUBLISH_NAMESPACE_DONE / _CANCEL, MAX_REQUEST_ID,
			// REQUESTS_BLOCKED, FETCH_CANCEL, UNSUBSCRIBE_NAMESPACE, CLIENT_SETUP / SERVER_SETUP.
			for (const type of [0x0a, 0x09, 0x0c, 0x15, 0x1a, 0x17, 0x14, 0x20, 0x21]) refusedLo(framedLo(type, [0]));
			// SUBSCRIBE_NAMESPACE is 0x11 through 17 and 0x50 from 18.
			refusedLo(framedLo(hasRenumberedSubscribeNamespace(d) ? 0x11 : 0x50, [0, 0, 0]));
			if (!hasRenumberedSubscribeNamespace(d)) refusedLo(framedLo(Msg.SUBSCRIBE_TRACKS, [0]));
			// An even message parameter with no known layout cannot be skipped.
			refusedLo(framedLo(Msg.PUBLISH_NAMESPACE, [...reqId(0), 0, 1, 0x0c, 1]));
			// FORWARD is a bool: 2 is not one.
			refusedLo(framedLo(Msg.SUBSCRIBE, [...reqId(0), 0, 1, 0x74, 1, MsgParam.FORWARD, 2]));
			// INCLUDE_PROPERTIES and FILL_PARAMETERS are draft-20's.
			const include = framedLo(Msg.SUBSCRIBE, [...reqId(0), 0, 1, 0x74, 1, MsgParam.INCLUDE_PROPERTIES, 1, 0]);
			if (hasFieldFilters(d)) assert.equal(decode(Uint8Array.from(include), d).kind, "subscribe");
			else refusedLo(include);
			// A LOCATION_FILTER of five fields (20), or a tag with a trailing byte (17–19).
			refusedLo(
				framedLo(Msg.SUBSCRIBE, [
					...reqId(0),
					0,
					1,
					0x74,
					1,
					MsgParam.SUBSCRIPTION_FILTER,
					...(hasFieldFilters(d) ? [5, 1, 1, 1, 1, 1] : [2, 2, 0]),
				]),
			);
			// The 7-byte varint: reserved on 17.
			const seven = framedLo(Msg.GOAWAY, [0, 0xfd, 0, 0, 0, 0, 0, 1]);
			if (d === 17) refusedLo(seven);
			else assert.deepEqual(decode(Uint8Array.from(seven), d), { kind: "goaway", uri: "", timeout: 2 ** 48 + 1 });
			// The caps of every draft.
			refusedLo(framedLo(Msg.PUBLISH_NAMESPACE, [...reqId(2), 33]));
			refusedLo(framedLo(Msg.PUBLISH_DONE, [0, 0, ...lo(1025)]));
			refusedLo(framedLo(Msg.PUBLISH_NAMESPACE, [...reqId(2), 0, 65]));
		});
	});

	describe(`draft-${d} data streams, byte-exact with @moq/net`, () => {
		const flags = {
			hasExtensions: true,
			hasSubgroup: false,
			hasSubgroupObject: false,
			hasEnd: true,
			hasPriority: true,
			firstObject: true,
		};
		const frames = [utf8.encode("hello"), new Uint8Array(0), new Uint8Array(300).fill(7), utf8.encode("ietf")];

		it("writes the subgroup header (18+: FIRST_OBJECT) and objects @moq/net writes; each reads the other's", async () => {
			const theirs = await netBytes(v, async (w) => {
				await new I.Group({ trackAlias: 300n, groupId: 70000, subGroupId: 0, publisherPriority: 0, flags }).encode(
					w,
					v,
				);
				for (const [i, payload] of frames.entries()) {
					const ts = new Net.Time.Timestamp(100000 + i, 1000);
					await new I.Frame({ payload, timestamp: ts }).encode(w, flags, 1000, v, 0);
				}
			});
			assert.equal(theirs[0], hasFirstObjectBit(d) ? 0x59 : 0x19);
			const buf = new Uint8Array(64);
			const parts: Uint8Array[] = [buf.slice(0, writeSubgroupHeader(buf, 0, 300, 70000, 0, true, d))];
			for (const [i, payload] of frames.entries()) {
				parts.push(buf.slice(0, writeObjectHeader(buf, 0, 0, true, 100000 + i, payload.length, d)), payload);
			}
			const ours = new Uint8Array(Buffer.concat(parts));
			assert.deepEqual(ours, theirs);
			// Our parser, in chunks of every size.
			const r = new Reader(theirs);
			const type = inDraft(d, (x) => x.varint())(r);
			assert.ok(isSubgroupType(type, d));
			const header = inDraft(d, (x) => decodeSubgroupHeader(x, type, d))(r);
			assert.deepEqual([header.alias, header.group, header.subgroup, header.firstObject], [300, 70000, 0, true]);
			const body = theirs.subarray(r.pos);
			for (const size of [1, 2, 3, 64, body.length]) {
				const p = new ObjectParser(d, true, 1 << 20);
				const got: number[][] = [];
				p.onObject = () => got.push([]);
				p.onData = (view) => got.at(-1)!.push(...view);
				for (let i = 0; i < body.length; i += size) p.push(body.subarray(i, i + size));
				p.finish();
				assert.deepEqual(
					got.map((g) => Uint8Array.from(g)),
					frames,
					`chunks of ${size}`,
				);
			}
			// @moq/net reads ours.
			const got = await netRead(v, ours, async (x) => {
				const h = await I.Group.decode(x, v);
				assert.equal(h.flags.firstObject, true);
				const out: Uint8Array[] = [];
				for (let i = 0; i < frames.length; i++) out.push((await I.Frame.decode(x, h.flags, undefined, v)).payload);
				return out;
			});
			assert.deepEqual(got, frames);
		});

		it("knows the draft's subgroup header types", () => {
			assert.ok(isSubgroupType(0x19, d));
			assert.equal(isSubgroupType(0x59, d), hasFirstObjectBit(d));
			assert.equal(isSubgroupType(0x7d, d), hasFirstObjectBit(d));
			assert.ok(!isSubgroupType(0x16, d));
			const h = decodeSubgroupHeader(new Reader(Uint8Array.from([1, 2, 0])), 0x19, d);
			assert.equal(h.firstObject, !hasFirstObjectBit(d), "without the bit, 18+ says it starts mid-group");
		});
	});
}
