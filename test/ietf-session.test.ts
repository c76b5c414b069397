/**
 * IETF moq-transport sessions, drafts 14–20, against the relay in process, with a raw client (our
 * codec on the wire, so every message and close code is visible): over raw QUIC (ALPN `moq-00`,
 * `moqt-15` … `moqt-20`, the path in SETUP's PATH parameter) and over WebTransport. On 17+ the
 * client opens a SETUP stream and a stream per request (test/support/ietf.ts `RawIetf.request`).
 *
 * - The six cases of the moq interop runner (docs/tests/TEST-CASES.md there): setup only; announce
 *   only; publish-namespace done; subscribe error; announce then subscribe (objects delivered
 *   byte-exact, PUBLISH_DONE passed on); subscribe before announce.
 * - What the relay's model cannot express is refused alone, with the draft's error: PUBLISH, FETCH,
 *   TRACK_STATUS, a subgroup other than 0, a gap in object IDs. The session goes on.
 * - Bad input closes that session alone, with the draft's code, counted as a protocol refusal:
 *   unknown message and stream types, short messages, request IDs of the wrong parity, repeated or
 *   past MAX_REQUEST_ID, oversized tuples and fields, a second SETUP, the control stream closing, a
 *   draft-14 SETUP without draft-14, SETUP PATH over WebTransport; and a token that does not cover
 *   the path closes it with UNAUTHORIZED before anything is served. On 17+: a request ID in use, a
 *   message the draft removed, a request stream opened with a reply, a second SETUP stream, the
 *   SETUP stream's FIN, a subgroup stream without FIRST_OBJECT (18+, refused alone), the 7-byte
 *   varint on 17, SUBSCRIBE_TRACKS (18+, refused alone).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Writer } from "../src/coding/writer.ts";
import { IetfClose, IetfPublishDone, IetfRequestError } from "../src/errors/codes.ts";
import {
	hasFirstObjectBit,
	hasRenumberedSubscribeNamespace,
	hasRequestStreams,
	hasRequiredRequestIdDelta,
	IETF_DRAFTS,
	type IetfDraft,
	versionCode,
} from "../src/moq/ietf/version.ts";
import { decodeControl, FilterType, type IetfMessage, Msg, SetupParam } from "../src/moq/ietf/wire/message.ts";
import { writeObjectHeader, writeSubgroupHeader } from "../src/moq/ietf/wire/object.ts";
import { LoWriter } from "../src/moq/ietf/wire/varint.ts";
import { MessageBuffer } from "../src/moq/message-buffer.ts";
import { connectQuic } from "../src/quic/client.ts";
import { refusalCounts } from "../src/transport/refusals.ts";
import type { TransportStream } from "../src/transport/types.ts";
import { connectWebTransport } from "../src/webtransport/client.ts";
import { IETF_DRAFT_ALPN, RawIetf } from "./support/ietf.ts";
import { startTestRelay, type TestRelay } from "./support/relay.ts";
import { until } from "./support/wait.ts";

const ALPN = IETF_DRAFT_ALPN as Record<IetfDraft, string>;
const DRAFTS: readonly IetfDraft[] = IETF_DRAFTS;
const utf8 = new TextEncoder();

let relay: TestRelay;
let fingerprint: string;

before(async () => {
	relay = await startTestRelay();
	fingerprint = await (await fetch(new URL("/certificate.sha256", relay.url()))).text();
});
after(async () => {
	await relay?.close();
});

interface DialOptions {
	/** SETUP's PATH (raw QUIC); null: none. Default "/anon". */
	path?: string | null;
	webtransport?: boolean;
	/** Draft-14: the versions CLIENT_SETUP offers. */
	versions?: number[];
	/** Wait for SERVER_SETUP (default true). */
	ready?: boolean;
}

async function dial(d: IetfDraft, opts: DialOptions = {}): Promise<RawIetf> {
	const quic = await connectQuic({
		host: "127.0.0.1",
		port: relay.quicPort,
		alpns: opts.webtransport ? ["h3"] : [ALPN[d]],
		certificateHashes: [fingerprint],
	});
	const t = opts.webtransport ? await connectWebTransport(quic, relay.url("anon"), [ALPN[d]]) : quic;
	assert.equal(t.protocol, ALPN[d]);
	const raw = new RawIetf(t, d);
	const params = new Map<number, number | Uint8Array>([[SetupParam.MAX_REQUEST_ID, 1000]]);
	const path = opts.path === undefined ? (opts.webtransport ? null : "/anon") : opts.path;
	if (path !== null) params.set(SetupParam.PATH, utf8.encode(path));
	raw.setup(params, opts.versions ?? [versionCode(d)]);
	if (opts.ready !== false) {
		if (hasRequestStreams(d)) {
			// 17+: the relay's SETUP on its own stream: no MAX_REQUEST_ID (the draft removed it).
			const setup = await raw.expect("setup");
			assert.equal(setup.params.has(SetupParam.MAX_REQUEST_ID), false);
			assert.ok(setup.params.get(SetupParam.IMPLEMENTATION) instanceof Uint8Array);
		} else {
			const setup = await raw.expect("server_setup");
			if (d === 14) assert.equal(setup.version, 0xff00000e);
			assert.equal(typeof setup.params.get(SetupParam.MAX_REQUEST_ID), "number");
		}
	}
	return raw;
}

/** Raw bytes of one control message: type, u16 length, body (the type in draft `d`'s varint form). */
function framed(type: number, body: number[], d: IetfDraft = 14): number[] {
	const w = hasRequestStreams(d) ? new LoWriter(8) : new Writer(8);
	w.varint(type);
	return [...w.finish(), body.length >> 8, body.length & 0xff, ...body];
}

/** A varint's bytes in draft `d`'s form. */
function vint(v: number, d: IetfDraft): number[] {
	const w = hasRequestStreams(d) ? new LoWriter(9) : new Writer(9);
	return [...w.varint(v).finish()];
}

/** A request ID in a request's body (17 adds the Required Request ID Delta). */
function reqId(id: number, d: IetfDraft): number[] {
	return hasRequiredRequestIdDelta(d) ? [...vint(id, d), 0] : vint(id, d);
}

/** Sends a bad message: on 14–16 on the control stream, on 17+ as a request stream of its own. */
function sendBad(c: RawIetf, bytes: number[]): TransportStream {
	if (!hasRequestStreams(c.d)) {
		c.sendRaw(bytes);
		return c.control;
	}
	return c.rawRequest(bytes);
}

function tuple(...fields: string[]): number[] {
	const out = [fields.length];
	for (const f of fields) out.push(f.length, ...utf8.encode(f));
	return out;
}

/** Announces `ns` from a raw publisher and waits for its OK; returns the request's stream (17+) or the control stream. */
async function announce(p: RawIetf, requestId: number, ns: string[]): Promise<TransportStream> {
	const st = p.request({ kind: "publish_namespace", requestId, namespace: ns, params: new Map() });
	const ok = await p.expect("request_ok");
	if (!hasRequestStreams(p.d)) assert.equal(ok.requestId, requestId);
	else assert.equal(p.streamOf(ok), st, "REQUEST_OK on the request's own stream");
	assert.equal(ok.type, Msg.REQUEST_OK);
	return st;
}

/** Withdraws a namespace: PUBLISH_NAMESPACE_DONE (14–16), or the end of its stream (17+). */
function withdraw(p: RawIetf, requestId: number, ns: string[], st: TransportStream): void {
	if (hasRequestStreams(p.d)) return st.finish();
	p.send({
		kind: "publish_namespace_done",
		requestId: p.d >= 16 ? requestId : null,
		namespace: p.d >= 16 ? null : ns,
	});
}

function subscribe(s: RawIetf, requestId: number, ns: string[], track: string): TransportStream {
	return s.request({
		kind: "subscribe",
		requestId,
		namespace: ns,
		track,
		priority: 1,
		groupOrder: 0,
		forward: true,
		filter: { type: FilterType.LARGEST_OBJECT, start: null, endGroup: null },
		params: new Map(),
	});
}

/** Writes a subgroup stream: header (subgroup 0 unless `type` says otherwise), then the objects. */
function sendGroup(
	p: RawIetf,
	alias: number,
	group: number,
	payloads: Uint8Array[],
	opts: { type?: number; subgroup?: number; deltas?: number[]; fin?: boolean } = {},
): TransportStream {
	const s = p.t.openUni();
	if (!s) throw new Error("no uni credit");
	const buf = new Uint8Array(64);
	const d = p.d;
	if (opts.type === undefined) s.write(buf.slice(0, writeSubgroupHeader(buf, 0, alias, group, 0, true, d)));
	else s.write(Uint8Array.from([opts.type, alias, group, opts.subgroup ?? 0, 0]));
	const ext = opts.type === undefined || (opts.type & 1) === 1;
	for (const [i, payload] of payloads.entries()) {
		s.write(buf.slice(0, writeObjectHeader(buf, 0, opts.deltas?.[i] ?? 0, ext, 1000 + i, payload.length, d)));
		if (payload.length) s.write(payload);
	}
	// Left open, a refused stream still sees the relay's STOP_SENDING (a finished one may not).
	if (opts.fin !== false) s.finish();
	return s;
}

/** The relay's session count once it has stopped changing (sessions of earlier tests may still be closing). */
async function settledSessions(): Promise<number> {
	for (;;) {
		const n = relay.node.relay.figures.sessions;
		await new Promise((r) => setTimeout(r, 100));
		if (relay.node.relay.figures.sessions === n) return n;
	}
}

function protocolRefusals(): number {
	return refusalCounts().byReason.protocol;
}

for (const d of DRAFTS) {
	const streams = hasRequestStreams(d);
	/** A relay reply's request ID as the draft carries it (17+: none on the wire, decoded as 0). */
	const replyId = (id: number) => (streams ? 0 : id);

	describe(`draft-${d}: the interop runner's six cases (raw QUIC, ${ALPN[d]})`, () => {
		it("setup-only", async () => {
			const before = await settledSessions();
			const c = await dial(d);
			await until(() => relay.node.relay.figures.sessions === before + 1, 5000, "session counted");
			c.close(0);
			await c.closed;
			await until(() => relay.node.relay.figures.sessions === before, 5000, "session gone");
		});

		it("announce-only, then publish-namespace-done", async () => {
			const p = await dial(d);
			const ns = ["moq-test", `interop${d}`];
			const st = await announce(p, 0, ns);
			const abs = `anon/moq-test/interop${d}`;
			await until(() => relay.node.relay.announces.get(abs as never) !== undefined, 5000, "announced");
			withdraw(p, 0, ns, st);
			await until(() => relay.node.relay.announces.get(abs as never) === undefined, 5000, "withdrawn");
			if (streams) await until(() => p.ends.get(st) === "fin", 5000, "the relay ends its side too");
			p.close();
		});

		it("subscribe-error", async () => {
			const s = await dial(d);
			const st = subscribe(s, 0, ["nonexistent", "namespace"], "test-track");
			const err = await s.expect("request_error");
			assert.equal(err.requestId, replyId(0));
			assert.equal(err.type, Msg.REQUEST_ERROR);
			assert.equal(err.code, d === 14 ? IetfRequestError.TRACK_DOES_NOT_EXIST_14 : IetfRequestError.DOES_NOT_EXIST);
			assert.match(err.reason, /no such broadcast/);
			if (streams) {
				assert.equal(s.streamOf(err), st, "on the request's own stream");
				await until(() => s.ends.get(st) === "fin", 5000, "which the relay then ends");
			}
			s.close();
		});

		it("requests whose IDs arrive out of order are each answered (the official client's concurrent requests)", async () => {
			const s = await dial(d);
			// @moq/net takes an ID, then awaits before it writes: 0, 2, 6, 8, then 4 was seen.
			const order = [0, 2, 6, 8, 4];
			for (const id of order) subscribe(s, id, ["nonexistent", `gap${id}`], "t");
			const answered = new Set<number>();
			for (let i = 0; i < order.length; i++) {
				const err = await s.expect("request_error");
				assert.match(err.reason, /no such broadcast/);
				answered.add(streams ? s.streamOf(err).id : err.requestId);
			}
			assert.equal(answered.size, order.length, "one answer per request");
			s.close();
		});

		it("announce-subscribe: objects byte-exact, PUBLISH_DONE passed on", async () => {
			const ns = ["moq-test", `deliver${d}`];
			const p = await dial(d);
			await announce(p, 0, ns);
			const s = await dial(d);
			const st = subscribe(s, 0, ns, "test-track");
			const ok = await s.expect("subscribe_ok");
			assert.equal(ok.requestId, replyId(0));
			assert.equal(ok.alias, 0, "the track alias is the request ID");
			// The relay subscribes upstream, with its own (odd) request ID and the "latest" filter
			// (20: one group back, the start of the latest group).
			const up = await p.expect("subscribe");
			assert.equal(up.requestId % 2, 1);
			assert.deepEqual(up.namespace, ns);
			assert.equal(up.track, "test-track");
			if (d >= 20) assert.deepEqual([up.filter.type, up.filter.groups], [FilterType.RELATIVE, 1]);
			else assert.equal(up.filter.type, FilterType.LARGEST_OBJECT);
			const upStream = p.streamOf(up);
			if (streams) assert.notEqual(upStream, p.control, "on a stream of its own");
			p.send(
				{
					kind: "subscribe_ok",
					requestId: up.requestId,
					alias: 77,
					expires: 0,
					groupOrder: 2,
					largest: null,
					params: new Map(),
					extensions: new Map(),
				},
				upStream,
			);
			const payloads = [utf8.encode("moq"), new Uint8Array(0), new Uint8Array(3000).map((_, i) => i * 7)];
			sendGroup(p, 77, 0, payloads);
			await until(() => s.groups.length === 1 && s.groups[0].end === "fin", 5000, "group delivered");
			const g = s.groups[0];
			assert.equal(g.header?.alias, 0);
			assert.equal(g.header?.group, 0);
			assert.equal(g.header?.subgroup, 0);
			assert.equal(g.header?.firstObject, true);
			if (hasFirstObjectBit(d)) assert.equal(g.header?.type, 0x59, "FIRST_OBJECT set");
			assert.deepEqual(
				g.objects.map((o) => o.id),
				[0, 1, 2],
			);
			assert.deepEqual(
				g.objects.map((o) => o.payload),
				payloads,
			);
			// The publisher ends the track: the viewer gets PUBLISH_DONE, TRACK_ENDED, one stream.
			p.send({ kind: "publish_done", requestId: up.requestId, status: 2, streamCount: 1, reason: "done" }, upStream);
			if (streams) upStream.finish();
			const done = await s.expect("publish_done");
			assert.equal(done.requestId, replyId(0));
			assert.equal(done.status, IetfPublishDone.TRACK_ENDED);
			assert.equal(done.streamCount, 1);
			if (streams) {
				assert.equal(s.streamOf(done), st);
				await until(() => s.ends.get(st) === "fin", 5000, "PUBLISH_DONE ends the subscription's stream");
			}
			p.close();
			s.close();
		});

		it("subscribe-before-announce: refused, then served once announced", async () => {
			const ns = ["moq-test", `early${d}`];
			const s = await dial(d);
			subscribe(s, 0, ns, "test-track");
			await s.expect("request_error");
			const p = await dial(d);
			await announce(p, 0, ns);
			const st = subscribe(s, 2, ns, "test-track");
			assert.equal((await s.expect("subscribe_ok")).requestId, replyId(2));
			// The last viewer leaving ends the upstream subscription.
			const up = await p.expect("subscribe");
			if (streams) {
				// 17+: UNSUBSCRIBE is the end of the request's stream, both ways.
				st.finish();
				await until(() => p.ends.get(p.streamOf(up)) === "fin", 5000, "upstream SUBSCRIBE stream ended");
				await until(() => s.ends.get(st) === "fin", 5000, "the viewer's stream ended by the relay too");
			} else {
				s.send({ kind: "unsubscribe", requestId: 2 });
				assert.equal((await p.expect("unsubscribe")).requestId, up.requestId);
			}
			p.close();
			s.close();
		});

		it("SUBSCRIBE_NAMESPACE: told of a namespace, then of its end", async () => {
			const v = await dial(d);
			const prefix = ["watch", `d${d}`];
			let ns: TransportStream | null = null;
			const nsBuf = new MessageBuffer(1 << 16);
			const nsMessages: IetfMessage[] = [];
			const request: IetfMessage = { kind: "subscribe_namespace", requestId: 0, prefix, options: 1, params: new Map() };
			if (streams) {
				// 17+: a request stream like any other; its replies come on it.
				ns = v.request(request);
				const ok = await v.expect("request_ok");
				assert.equal(v.streamOf(ok), ns);
			} else if (d >= 16) {
				// Draft 16: the request opens its own stream, and is answered there.
				ns = v.t.openBidi()!;
				ns.onData = (chunk) => {
					nsBuf.push(chunk);
					for (let m = nsBuf.tryDecode((r) => decodeControl(r, d)); m; m = nsBuf.tryDecode((r) => decodeControl(r, d)))
						nsMessages.push(m);
				};
				v.send(request, ns);
				await until(() => nsMessages.length >= 1, 5000, "REQUEST_OK on the namespace stream");
				assert.equal(nsMessages[0].kind, "request_ok");
			} else {
				v.send(request);
				const ok = await v.expect("request_ok");
				assert.equal(ok.type, d === 14 ? Msg.SUBSCRIBE_NAMESPACE_OK : Msg.REQUEST_OK);
			}
			const p = await dial(d);
			const st = await announce(p, 0, [...prefix, "cam"]);
			let advertId = -1;
			if (streams) {
				assert.deepEqual(await v.expect("namespace"), { kind: "namespace", suffix: ["cam"] });
			} else if (ns) {
				await until(() => nsMessages.length >= 2, 5000, "NAMESPACE");
				assert.deepEqual(nsMessages[1], { kind: "namespace", suffix: ["cam"] });
			} else {
				const pn = await v.expect("publish_namespace");
				assert.deepEqual(pn.namespace, [...prefix, "cam"]);
				assert.equal(pn.requestId % 2, 1, "the relay's own request ID");
				advertId = pn.requestId;
				v.send({ kind: "request_ok", type: Msg.REQUEST_OK, requestId: pn.requestId, params: new Map() });
			}
			withdraw(p, 0, [...prefix, "cam"], st);
			if (streams) {
				assert.deepEqual(await v.expect("namespace_done"), { kind: "namespace_done", suffix: ["cam"] });
			} else if (ns) {
				await until(() => nsMessages.length >= 3, 5000, "NAMESPACE_DONE");
				assert.deepEqual(nsMessages[2], { kind: "namespace_done", suffix: ["cam"] });
			} else {
				const done = await v.expect("publish_namespace_done");
				assert.deepEqual(done.namespace, [...prefix, "cam"]);
				assert.ok(advertId > 0);
			}
			p.close();
			v.close();
		});
	});

	describe(`draft-${d}: what the model cannot express is refused alone`, () => {
		it("PUBLISH, FETCH and TRACK_STATUS get the draft's refusal; the session goes on", async () => {
			const c = await dial(d);
			const refused = async (id: number, type14: number, st: TransportStream) => {
				const err = await c.expect("request_error");
				assert.deepEqual(
					[err.requestId, err.type, err.code],
					[replyId(id), d === 14 ? type14 : Msg.REQUEST_ERROR, IetfRequestError.NOT_SUPPORTED],
				);
				if (streams) {
					assert.equal(c.streamOf(err), st);
					await until(() => c.ends.get(st) === "fin", 5000, "the refused request's stream ended");
				}
				return err;
			};
			let st = c.request({
				kind: "publish",
				requestId: 0,
				namespace: ["x"],
				track: "t",
				alias: 1,
				groupOrder: 2,
				largest: null,
				forward: true,
				params: new Map(),
				extensions: new Map(),
			});
			await refused(0, Msg.PUBLISH_ERROR, st);
			st = c.request({
				kind: "fetch",
				requestId: 2,
				fetchType: 1,
				priority: 1,
				groupOrder: 0,
				namespace: ["x"],
				track: "t",
				start: { group: 0, object: 0 },
				end: { group: 1, object: 0 },
				joiningRequestId: null,
				joiningStart: 0,
				params: new Map(),
			});
			await refused(2, Msg.FETCH_ERROR, st);
			st = c.request({ kind: "track_status", requestId: 4, namespace: ["x"], track: "t", params: new Map() });
			await refused(4, Msg.TRACK_STATUS_ERROR, st);
			if (hasRenumberedSubscribeNamespace(d)) {
				st = c.request({ kind: "subscribe_tracks", requestId: 8 });
				const err = await refused(8, Msg.REQUEST_ERROR, st);
				assert.match(err.reason, /SUBSCRIBE_TRACKS is not supported/);
			}
			// Still open: the next request is answered.
			subscribe(c, 6, ["none"], "t");
			assert.equal((await c.expect("request_error")).requestId, replyId(6));
			assert.equal(c.isClosed, false);
			c.close();
		});

		it("a subgroup other than 0 and a gap in object IDs are stopped; the next group goes through", async () => {
			const ns = ["shape", `d${d}`];
			const p = await dial(d);
			await announce(p, 0, ns);
			const s = await dial(d);
			subscribe(s, 0, ns, "v");
			await s.expect("subscribe_ok");
			const up = await p.expect("subscribe");
			p.send(
				{
					kind: "subscribe_ok",
					requestId: up.requestId,
					alias: 5,
					expires: 0,
					groupOrder: 2,
					largest: null,
					params: new Map(),
					extensions: new Map(),
				},
				p.streamOf(up),
			);
			const stopped: number[] = [];
			const first = hasFirstObjectBit(d) ? 0x40 : 0;
			const sub1 = sendGroup(p, 5, 0, [utf8.encode("a")], { type: 0x1d | first, subgroup: 1, fin: false });
			sub1.onStop = (code) => stopped.push(code);
			const gap = sendGroup(p, 5, 1, [utf8.encode("a"), utf8.encode("b")], { deltas: [0, 1], fin: false });
			gap.onStop = (code) => stopped.push(code);
			let want = 2;
			if (hasFirstObjectBit(d)) {
				// 18+: a stream that does not start at the group's first object.
				const head = sendGroup(p, 5, 3, [utf8.encode("a")], { type: 0x19, fin: false });
				head.onStop = (code) => stopped.push(code);
				want = 3;
			}
			await until(() => stopped.length === want, 5000, "every such stream stopped");
			sendGroup(p, 5, 2, [utf8.encode("ok")]);
			await until(() => s.groups.some((g) => g.header?.group === 2 && g.end === "fin"), 5000, "group 2 delivered");
			const g2 = s.groups.find((g) => g.header?.group === 2)!;
			assert.deepEqual(
				g2.objects.map((o) => o.payload),
				[utf8.encode("ok")],
			);
			assert.equal(p.isClosed, false);
			p.close();
			s.close();
		});
	});

	describe(`draft-${d}: bad input closes that session alone, with the draft's code`, () => {
		let bystander: RawIetf;
		before(async () => {
			bystander = await dial(d);
		});
		after(() => bystander.close());

		const ns33 = tuple(...Array.from({ length: 33 }, () => "x"));
		const cases: [string, number, (c: RawIetf) => void][] = [
			["an unknown message type", IetfClose.PROTOCOL_VIOLATION, (c) => sendBad(c, framed(0x3e, [], d))],
			[
				"a message shorter than its fields",
				IetfClose.PROTOCOL_VIOLATION,
				(c) => sendBad(c, framed(Msg.SUBSCRIBE, [0, 1, 1], d)),
			],
			[
				"a message longer than its fields",
				IetfClose.PROTOCOL_VIOLATION,
				(c) =>
					sendBad(
						c,
						streams
							? framed(Msg.PUBLISH_NAMESPACE, [...reqId(0, d), ...tuple("a"), 0, 0], d)
							: framed(Msg.UNSUBSCRIBE, [0, 0]),
					),
			],
			[
				streams ? "a truncated request, then its stream's FIN" : "a truncated message, then the control stream's FIN",
				IetfClose.PROTOCOL_VIOLATION,
				(c) => {
					const st = sendBad(c, framed(Msg.SUBSCRIBE, [0, 1, 1], d).slice(0, 4));
					st.finish();
				},
			],
			["an odd (server's) request ID", IetfClose.INVALID_REQUEST_ID, (c) => subscribe(c, 1, ["a"], "t")],
			streams
				? [
						"a request ID already in use by an open request",
						IetfClose.INVALID_REQUEST_ID,
						(c) => {
							subscribe(c, 4, ["a"], "t");
							subscribe(c, 4, ["a"], "t");
						},
					]
				: [
						"a request ID used before",
						IetfClose.INVALID_REQUEST_ID,
						(c) => {
							subscribe(c, 4, ["a"], "t");
							subscribe(c, 2, ["a"], "t");
							subscribe(c, 4, ["a"], "t");
						},
					],
			streams
				? [
						"MAX_REQUEST_ID, which the draft removed",
						IetfClose.PROTOCOL_VIOLATION,
						(c) => sendBad(c, framed(Msg.MAX_REQUEST_ID, [10], d)),
					]
				: ["a request ID past MAX_REQUEST_ID", IetfClose.TOO_MANY_REQUESTS, (c) => subscribe(c, 1 << 20, ["a"], "t")],
			[
				"a namespace tuple of 33 fields",
				IetfClose.PROTOCOL_VIOLATION,
				(c) => sendBad(c, framed(Msg.PUBLISH_NAMESPACE, [...reqId(0, d), ...ns33, 0], d)),
			],
			[
				"a track name of 5000 bytes",
				IetfClose.PROTOCOL_VIOLATION,
				(c) =>
					sendBad(
						c,
						framed(
							Msg.SUBSCRIBE,
							[...reqId(0, d), ...tuple("a"), ...vint(5000, d), ...new Uint8Array(5000).fill(0x61)],
							d,
						),
					),
			],
			[
				"a data stream of an unknown type",
				IetfClose.PROTOCOL_VIOLATION,
				(c) => {
					const s = c.t.openUni()!;
					s.write(Uint8Array.from([0x05, 0, 0]));
					s.finish();
				},
			],
			streams
				? [
						"a second SETUP stream",
						IetfClose.PROTOCOL_VIOLATION,
						(c) => {
							const u = c.t.openUni()!;
							c.send({ kind: "setup", params: new Map() }, u);
						},
					]
				: [
						"a second CLIENT_SETUP",
						IetfClose.PROTOCOL_VIOLATION,
						(c) => c.send({ kind: "client_setup", versions: [versionCode(d)], params: new Map() }),
					],
			[
				streams ? "the SETUP stream's FIN" : "the control stream's FIN",
				IetfClose.PROTOCOL_VIOLATION,
				(c) => c.control.finish(),
			],
		];
		if (streams) {
			cases.push(
				[
					"a request stream that opens with a reply",
					IetfClose.PROTOCOL_VIOLATION,
					(c) => c.request({ kind: "request_ok", type: Msg.REQUEST_OK, requestId: 0, params: new Map() }),
				],
				[
					"a message of the draft before (CLIENT_SETUP, 0x20) on a request stream",
					IetfClose.PROTOCOL_VIOLATION,
					(c) => sendBad(c, framed(Msg.CLIENT_SETUP, [0], d)),
				],
			);
		}
		if (d === 17) {
			cases.push([
				"the 7-byte varint form (1111110x), which draft-17 reserves",
				IetfClose.PROTOCOL_VIOLATION,
				(c) => sendBad(c, framed(Msg.SUBSCRIBE, [0xfc, 0, 0, 0, 0, 0, 2, 0, ...tuple("a"), 1, 0x74, 0], d)),
			]);
		}
		for (const [what, code, act] of cases) {
			it(what, async () => {
				const refusals = protocolRefusals();
				const c = await dial(d);
				act(c);
				const closed = await c.closed;
				assert.equal(closed.code, code, `closed with ${closed.code} (${closed.reason})`);
				assert.ok(protocolRefusals() > refusals, "counted as a protocol refusal");
				assert.equal(bystander.isClosed, false, "the other session is untouched");
			});
		}

		if (d === 14) {
			it("a draft-14 CLIENT_SETUP that does not offer draft-14", async () => {
				const c = await dial(d, { versions: [0xff00000f], ready: false });
				assert.equal((await c.closed).code, IetfClose.VERSION_NEGOTIATION_FAILED);
			});
		}

		it("SETUP's PATH over WebTransport (which has a URL)", async () => {
			const c = await dial(d, { webtransport: true, path: "/anon", ready: false });
			assert.equal((await c.closed).code, IetfClose.INVALID_PATH);
		});

		it("a token that does not cover the path: UNAUTHORIZED before anything is served", async () => {
			const c = await dial(d, { path: "/private", ready: false });
			subscribe(c, 0, ["a"], "t");
			const closed = await c.closed;
			assert.equal(closed.code, IetfClose.UNAUTHORIZED);
		});

		it("over WebTransport, the same session works end to end", async () => {
			const c = await dial(d, { webtransport: true });
			subscribe(c, 0, ["nothing"], "t");
			assert.equal((await c.expect("request_error")).requestId, replyId(0));
			c.close();
		});
	});
}

describe("GOAWAY when the relay drains", () => {
	it("tells every IETF session, with the URI, on its control stream", async () => {
		const own = await startTestRelay();
		const fp = await (await fetch(new URL("/certificate.sha256", own.url()))).text();
		try {
			const clients: RawIetf[] = [];
			for (const d of DRAFTS) {
				const quic = await connectQuic({
					host: "127.0.0.1",
					port: own.quicPort,
					alpns: [ALPN[d]],
					certificateHashes: [fp],
				});
				const c = new RawIetf(quic, d);
				c.setup(new Map<number, number | Uint8Array>([[SetupParam.PATH, utf8.encode("/anon")]]));
				await c.expect(hasRequestStreams(d) ? "setup" : "server_setup");
				clients.push(c);
			}
			const sent = own.node.drain("https://next.example/");
			assert.equal(sent.goaway, DRAFTS.length);
			for (const c of clients)
				assert.deepEqual(
					await c.expect("goaway"),
					hasRequestStreams(c.d)
						? { kind: "goaway", uri: "https://next.example/", timeout: 0 }
						: { kind: "goaway", uri: "https://next.example/" },
				);
			for (const c of clients) c.close();
		} finally {
			await own.close();
		}
	});
});
