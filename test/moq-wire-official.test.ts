/**
 * Cross-checks against the official clients' encoders and decoders (@moq/net 0.3.4 for 03–05 and the
 * 0x20/0x21 exchange, @moq/lite 0.2.2 for 02). Their codecs write through a Writer over a
 * WritableStream; we collect the chunks and compare bytes, then feed our bytes to their decoders.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as OldAnnounce from "../node_modules/@moq/lite/lite/announce.js";
import * as OldSub from "../node_modules/@moq/lite/lite/subscribe.js";
import * as OldStream from "../node_modules/@moq/lite/stream.js";
import * as NetParams from "../node_modules/@moq/net/ietf/parameters.js";
import * as NetSetup from "../node_modules/@moq/net/ietf/setup.js";
import * as NetVersionIetf from "../node_modules/@moq/net/ietf/version.js";
import * as NetAnnounce from "../node_modules/@moq/net/lite/announce.js";
import * as NetFetch from "../node_modules/@moq/net/lite/fetch.js";
import * as NetGoaway from "../node_modules/@moq/net/lite/goaway.js";
import * as NetGroup from "../node_modules/@moq/net/lite/group.js";
import * as NetProbe from "../node_modules/@moq/net/lite/probe.js";
import * as NetSession from "../node_modules/@moq/net/lite/session.js";
import * as NetLiteSetup from "../node_modules/@moq/net/lite/setup.js";
import * as NetSub from "../node_modules/@moq/net/lite/subscribe.js";
import * as NetTrack from "../node_modules/@moq/net/lite/track.js";
import * as NetStream from "../node_modules/@moq/net/stream.js";
import { Reader } from "../src/coding/reader.ts";
import { Writer } from "../src/coding/writer.ts";
import * as A from "../src/moq/lite/wire/announce.ts";
import * as F from "../src/moq/lite/wire/fetch.ts";
import * as Gw from "../src/moq/lite/wire/goaway.ts";
import * as G from "../src/moq/lite/wire/group.ts";
import * as P from "../src/moq/lite/wire/probe.ts";
import * as Se from "../src/moq/lite/wire/session.ts";
import * as S from "../src/moq/lite/wire/setup.ts";
import * as Sub from "../src/moq/lite/wire/subscribe.ts";
import * as T from "../src/moq/lite/wire/track.ts";
import type { LiteVersion } from "../src/moq/lite/wire/version.ts";

const CODE = { 2: 0xff0dad02, 3: 0xff0dad03, 4: 0xff0dad04, 5: 0xff0dad05 } as const;

type Sink = WritableStream<Uint8Array>;

function collect(): { sink: Sink; bytes: () => string } {
	const chunks: Uint8Array[] = [];
	const sink = new WritableStream<Uint8Array>({
		write(c) {
			chunks.push(Uint8Array.from(c));
		},
	});
	return { sink, bytes: () => Buffer.concat(chunks).toString("hex") };
}

/** Bytes written by the official @moq/net codec `f` (QUIC varints: no version on the Writer). */
async function net(f: (w: NetStream.Writer) => Promise<void>, ietf?: number): Promise<string> {
	const c = collect();
	const w = new NetStream.Writer(c.sink, ietf as never);
	await f(w);
	w.close();
	await w.closed;
	return c.bytes();
}

/** Bytes written by the official @moq/lite 0.2.2 codec `f`. */
async function old(f: (w: OldStream.Writer) => Promise<void>): Promise<string> {
	const c = collect();
	const w = new OldStream.Writer(c.sink);
	await f(w);
	w.close();
	return c.bytes();
}

function ours(f: (w: Writer) => void): string {
	const w = new Writer();
	f(w);
	return Buffer.from(w.view()).toString("hex");
}

function netReader(hex: string, ietf?: number): NetStream.Reader {
	return new NetStream.Reader(undefined, Uint8Array.from(Buffer.from(hex, "hex")), ietf as never);
}

function oldReader(hex: string): OldStream.Reader {
	return new OldStream.Reader(undefined, Uint8Array.from(Buffer.from(hex, "hex")));
}

function reader(hex: string, skip = 0): Reader {
	return new Reader(Uint8Array.from(Buffer.from(hex, "hex")), skip);
}

const utf8 = new TextEncoder();

describe("moq-wire vs @moq/net 0.3.4 encoders", () => {
	test("0x20 CLIENT_SETUP / 0x21 SERVER_SETUP", async () => {
		const d14 = NetVersionIetf.Version.DRAFT_14;
		const params = new NetParams.SetupOptions();
		params.setVarint(NetParams.SetupOption.MaxRequestId, 42069n);
		params.setBytes(NetParams.SetupOption.Implementation, utf8.encode("moq-lite-js"));
		params.setVarint(NetParams.SetupOption.Solicit, 1n);
		const versions = [0xff0dad02, 0xff0dad01, 0xff00000e];
		const theirs = await net(async (w) => {
			await w.u53(0x20);
			await new NetSetup.ClientSetup({ versions, parameters: params }).encode(w, d14);
		});
		const m: S.ClientSetup = {
			versions,
			params: new Map<number, number | Uint8Array>([
				[2, 42069],
				[0x40b5a, 1],
				[7, utf8.encode("moq-lite-js")],
			]),
		};
		assert.equal(
			ours((w) => S.encodeClientSetup(w, m)),
			theirs,
		);
		assert.deepEqual(S.decodeClientSetup(reader(theirs, 1)), {
			versions,
			params: new Map<number, number | Uint8Array>([
				[2, 42069],
				[0x40b5a, 1],
				[7, utf8.encode("moq-lite-js")],
			]),
		});

		const server: S.ServerSetup = { version: 0xff0dad02, params: new Map([[7, utf8.encode("moq-fanout")]]) };
		const sp = new NetParams.SetupOptions();
		sp.setBytes(7n, utf8.encode("moq-fanout"));
		const theirServer = await net(async (w) => {
			await w.u53(0x21);
			await new NetSetup.ServerSetup({ version: 0xff0dad02, parameters: sp }).encode(w, d14);
		});
		const mine = ours((w) => S.encodeServerSetup(w, server));
		assert.equal(mine, theirServer);
		// Their client-side decoder reads our reply.
		const r = netReader(mine.slice(2));
		const decoded = await NetSetup.ServerSetup.decode(r, d14);
		assert.equal(decoded.version, 0xff0dad02);
	});

	test("lite-05 SETUP", async () => {
		const theirs = await net((w) =>
			new NetLiteSetup.Setup({ probe: 1, role: 2, path: "anon", origin: 123456789n as never }).encode(w, CODE[5]),
		);
		const m: S.LiteSetup = { probe: 1, path: "anon", role: 2, origin: 123456789 };
		assert.equal(
			ours((w) => S.encodeLiteSetup(w, m, 5)),
			theirs,
		);
		assert.deepEqual(S.decodeLiteSetup(reader(theirs), 5), m);
		const empty = await net((w) => new NetLiteSetup.Setup().encode(w, CODE[5]));
		assert.equal(
			ours((w) => S.encodeLiteSetup(w, {}, 5)),
			empty,
		);
		const back = await NetLiteSetup.Setup.decode(
			netReader(ours((w) => S.encodeLiteSetup(w, { probe: 2 }, 5))),
			CODE[5],
		);
		assert.equal(back.probe, 2);
	});

	for (const v of [3, 4, 5] as const) {
		test(`v${v}: SUBSCRIBE, SUBSCRIBE_UPDATE`, async () => {
			const props = {
				id: 77n,
				broadcast: "anon/bbb" as never,
				track: "video",
				priority: 200,
				ordered: true,
				maxLatency: 1500,
				startGroup: 10,
				endGroup: undefined,
			};
			const theirs = await net((w) => new NetSub.Subscribe(props).encode(w, CODE[v]));
			const m: Sub.Subscribe<string> = {
				id: 77,
				broadcast: "anon/bbb",
				track: "video",
				priority: 200,
				ordered: true,
				maxLatencyMs: 1500,
				startGroup: 10,
				endGroup: null,
			};
			assert.equal(
				ours((w) => Sub.encodeSubscribe(w, m, v)),
				theirs,
			);
			assert.deepEqual(Sub.decodeSubscribe(reader(theirs), v), m);

			const u = { priority: 3, ordered: false, maxLatency: 0, startGroup: undefined, endGroup: 99 };
			const theirU = await net((w) => new NetSub.SubscribeUpdate(u).encode(w, CODE[v]));
			const mu: Sub.SubscribeUpdate = { priority: 3, ordered: false, maxLatencyMs: 0, startGroup: null, endGroup: 99 };
			assert.equal(
				ours((w) => Sub.encodeSubscribeUpdate(w, mu, v)),
				theirU,
			);
		});

		test(`v${v}: subscribe responses`, async () => {
			if (v < 5) {
				const theirs = await net((w) =>
					NetSub.encodeSubscribeResponse(w, { ok: new NetSub.SubscribeOk({ priority: 2 }) }, CODE[v]),
				);
				assert.equal(theirs, "00050200000000");
				assert.equal(
					ours((w) => Sub.encodeSubscribeOk(w, { priority: 2 }, v)),
					theirs,
				);
			} else {
				const start = await net((w) =>
					NetSub.encodeSubscribeResponse(w, { start: new NetSub.SubscribeStart(7) }, CODE[v]),
				);
				assert.equal(
					ours((w) => Sub.encodeSubscribeOk(w, { group: 7 }, v)),
					start,
				);
				const end = await net((w) => NetSub.encodeSubscribeResponse(w, { end: new NetSub.SubscribeEnd(12) }, CODE[v]));
				assert.equal(
					ours((w) => Sub.encodeSubscribeEnd(w, { group: 12 }, v)),
					end,
				);
				const back = await NetSub.decodeSubscribeResponse(
					netReader(ours((w) => Sub.encodeSubscribeEnd(w, { group: 0 }, v))),
					CODE[v],
				);
				assert.ok("end" in back && back.end.group === 0);
			}
			const drop = { start: 4, end: 6, error: 24 };
			const theirDrop = await net((w) =>
				NetSub.encodeSubscribeResponse(w, { drop: new NetSub.SubscribeDrop(drop) }, CODE[v]),
			);
			assert.equal(
				ours((w) => Sub.encodeSubscribeDrop(w, drop, v)),
				theirDrop,
			);
			assert.deepEqual(Sub.decodeSubscribeResponse(reader(theirDrop), v), { type: "drop", ...drop });
		});

		test(`v${v}: ANNOUNCE_REQUEST, ANNOUNCE`, async () => {
			const theirs = await net((w) => new NetAnnounce.AnnounceRequest("anon", 4242n).encode(w, CODE[v]));
			const m: A.AnnounceRequest<string> = { prefix: "anon", excludeHop: v >= 4 ? 4242 : 0 };
			assert.equal(
				ours((w) => A.encodeAnnounceRequest(w, m, v)),
				theirs,
			);
			assert.deepEqual(A.decodeAnnounceRequest(reader(theirs), v), m);

			const hops = [5n, 2n ** 53n - 1n];
			const theirActive = await net((w) =>
				NetAnnounce.encodeAnnounceBroadcast(w, { status: "active", suffix: "bbb/cam", hops: hops as never }, CODE[v]),
			);
			const active: A.Announce<string> = { active: true, suffix: "bbb/cam", hops: v === 3 ? [0, 0] : [5, 2 ** 53 - 1] };
			assert.equal(
				ours((w) => A.encodeAnnounce(w, active, v)),
				theirActive,
			);
			assert.deepEqual(A.decodeAnnounce(reader(theirActive), v), active);
			const theirEnded = await net((w) =>
				NetAnnounce.encodeAnnounceBroadcast(w, { status: "ended", suffix: "bbb" } as never, CODE[v]),
			);
			assert.equal(
				ours((w) => A.encodeAnnounce(w, { active: false, suffix: "bbb", hops: [] }, v)),
				theirEnded,
			);
			// Their decoder accepts ours.
			const back = await NetAnnounce.decodeAnnounceBroadcast(
				netReader(ours((w) => A.encodeAnnounce(w, active, v))),
				CODE[v],
			);
			assert.equal(back.status, "active");
		});

		test(`v${v}: FETCH, PROBE${v >= 4 ? ", GOAWAY" : ""}, GROUP`, async () => {
			const theirFetch = await net((w) => new NetFetch.Fetch("bbb", "video", 9, 1234).encode(w, CODE[v]));
			const f: F.FetchRequest<string> = { broadcast: "bbb", track: "video", priority: 9, group: 1234 };
			assert.equal(
				ours((w) => F.encodeFetchRequest(w, f, v)),
				theirFetch,
			);
			assert.deepEqual(F.decodeFetchRequest(reader(theirFetch), v), f);

			const theirProbe = await net((w) => new NetProbe.Probe({ bitrate: 2_000_000, rtt: 35 }).encode(w, CODE[v]));
			assert.equal(
				ours((w) => P.encodeProbe(w, { bitrate: 2_000_000, rtt: 35 }, v)),
				theirProbe,
			);

			if (v >= 4) {
				const theirGoaway = await net((w) => new NetGoaway.Goaway("https://other/").encode(w, CODE[v]));
				assert.equal(
					ours((w) => Gw.encodeGoaway(w, { uri: "https://other/" }, v)),
					theirGoaway,
				);
			}

			const theirGroup = await net(async (w) => {
				await w.u53(0);
				await new NetGroup.Group(3n, 70000).encode(w);
			});
			const scratch = new Uint8Array(G.GROUP_STREAM_HEADER_MAX);
			const end = G.writeGroupStreamHeader(scratch, 0, 3, 70000);
			assert.equal(Buffer.from(scratch.subarray(0, end)).toString("hex"), theirGroup);
			assert.equal(`00${ours((w) => G.encodeGroupHeader(w, { subscribeId: 3, sequence: 70000 }, v))}`, theirGroup);
		});
	}

	test("v5: TRACK, TRACK_INFO, ANNOUNCE_OK", async () => {
		const theirTrack = await net((w) => new NetTrack.Track("anon/bbb", "catalog.json").encode(w, CODE[5]));
		assert.equal(
			ours((w) => T.encodeTrackRequest(w, { broadcast: "anon/bbb", track: "catalog.json" }, 5)),
			theirTrack,
		);
		const theirInfo = await net((w) =>
			new NetTrack.TrackInfo({ priority: 1, ordered: false, latencyMax: 5000, timescale: 1000 }).encode(w, CODE[5]),
		);
		assert.equal(theirInfo, "0601005388" + "43e8");
		const info: T.TrackInfo = { priority: 1, ordered: false, maxLatencyMs: 5000, timescale: 1000 };
		assert.equal(
			ours((w) => T.encodeTrackInfo(w, info, 5)),
			theirInfo,
		);
		const back = await NetTrack.TrackInfo.decode(netReader(ours((w) => T.encodeTrackInfo(w, info, 5))), CODE[5]);
		assert.equal(back.timescale, 1000);
		const theirOk = await net((w) => new NetAnnounce.AnnounceOk(9n as never, 1).encode(w, CODE[5]));
		assert.equal(
			ours((w) => A.encodeAnnounceOk(w, { hopId: 9, activeCount: 1 }, 5)),
			theirOk,
		);
	});

	test("v5 frames: their subscriber's reading of our group stream matches", async () => {
		// Frames as their publisher writes them (`u62(zigzag(delta))`, `u53(size)`, payload).
		const frames = [
			{ ts: 0, payload: Uint8Array.of(1, 2, 3) },
			{ ts: 40, payload: new Uint8Array(0) },
			{ ts: 20, payload: new Uint8Array(200).fill(7) },
		];
		const zz = (d: bigint) => (d >= 0n ? d << 1n : (-d << 1n) - 1n);
		let prev = 0n;
		const theirs = await net(async (w) => {
			for (const f of frames) {
				await w.u62(zz(BigInt(f.ts) - prev));
				prev = BigInt(f.ts);
				await w.u53(f.payload.length);
				await w.write(f.payload);
			}
		});
		const w = new Writer();
		const scratch = new Uint8Array(G.FRAME_HEADER_MAX);
		let last = 0;
		for (const f of frames) {
			w.bytes(scratch.subarray(0, G.writeFrameHeader(scratch, 0, f.payload.length, f.ts - last, 5)));
			last = f.ts;
			w.bytes(f.payload);
		}
		assert.equal(Buffer.from(w.view()).toString("hex"), theirs);
	});
});

describe("moq-wire vs @moq/lite 0.2.2 (lite-02)", () => {
	const v: LiteVersion = 2;
	test("ANNOUNCE_REQUEST, ANNOUNCE_INIT, ANNOUNCE", async () => {
		const theirReq = await old((w) => new OldAnnounce.AnnounceInterest("anon" as never).encode(w, CODE[2]));
		assert.equal(
			ours((w) => A.encodeAnnounceRequest(w, { prefix: "anon", excludeHop: 0 }, v)),
			theirReq,
		);
		const theirInit = await old((w) => new OldAnnounce.AnnounceInit(["bbb", "ccc/d"] as never).encode(w, CODE[2]));
		assert.equal(
			ours((w) => A.encodeAnnounceInit(w, { suffixes: ["bbb", "ccc/d"] }, v)),
			theirInit,
		);
		const theirAnn = await old((w) =>
			new OldAnnounce.Announce({ suffix: "bbb" as never, active: true }).encode(w, CODE[2]),
		);
		assert.equal(
			ours((w) => A.encodeAnnounce(w, { active: true, suffix: "bbb", hops: [] }, v)),
			theirAnn,
		);
		const back = await OldAnnounce.AnnounceInit.decode(
			oldReader(ours((w) => A.encodeAnnounceInit(w, { suffixes: ["x"] }, v))),
			CODE[2],
		);
		assert.deepEqual(back.suffixes, ["x"]);
	});

	test("SUBSCRIBE, SUBSCRIBE_OK (untyped, empty), SESSION_INFO", async () => {
		const theirSub = await old((w) =>
			new OldSub.Subscribe({ id: 4n, broadcast: "bbb" as never, track: "video", priority: 1 }).encode(w, CODE[2]),
		);
		const m: Sub.Subscribe<string> = {
			id: 4,
			broadcast: "bbb",
			track: "video",
			priority: 1,
			ordered: false,
			maxLatencyMs: 0,
			startGroup: null,
			endGroup: null,
		};
		assert.equal(
			ours((w) => Sub.encodeSubscribe(w, m, v)),
			theirSub,
		);
		assert.deepEqual(Sub.decodeSubscribe(reader(theirSub), v), m);
		const theirOk = await old((w) => new OldSub.SubscribeOk({}).encode(w, CODE[2]));
		assert.equal(theirOk, "00");
		assert.equal(
			ours((w) => Sub.encodeSubscribeOk(w, {}, v)),
			theirOk,
		);
		const theirInfo = await net((w) => new NetSession.SessionInfo(1_000_000).encode(w, CODE[2]));
		assert.equal(
			ours((w) => Se.encodeSessionInfo(w, { bitrate: 1_000_000 }, v)),
			theirInfo,
		);
	});
});
