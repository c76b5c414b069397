/**
 * Shared fixtures for the moq-wire tests: one valid encoding of every message in every version it
 * exists in, with the exact bytes where the reference implementations (@moq/net, moq-net) fix them.
 */
import type { Reader } from "../../src/coding/reader.ts";
import type { Writer } from "../../src/coding/writer.ts";
import * as A from "../../src/moq/lite/wire/announce.ts";
import * as F from "../../src/moq/lite/wire/fetch.ts";
import * as Gw from "../../src/moq/lite/wire/goaway.ts";
import * as G from "../../src/moq/lite/wire/group.ts";
import * as P from "../../src/moq/lite/wire/probe.ts";
import * as Se from "../../src/moq/lite/wire/session.ts";
import * as S from "../../src/moq/lite/wire/setup.ts";
import * as Sub from "../../src/moq/lite/wire/subscribe.ts";
import * as T from "../../src/moq/lite/wire/track.ts";
import type { LiteVersion } from "../../src/moq/lite/wire/version.ts";

/** How the message is framed, so tests can forge bad lengths. */
export type Framing = "varint" | "typed" | "u16";

export interface Case {
	name: string;
	v: LiteVersion;
	framing: Framing;
	/** Bytes the caller consumes before calling the decoder (the 0x20/0x21 type byte). */
	skip: number;
	encode: (w: Writer) => void;
	decode: (r: Reader) => unknown;
	/** What decoding the encoding must give back. */
	value: unknown;
	/** Exact expected bytes, where known. */
	hex?: string;
}

export const ALL: LiteVersion[] = [2, 3, 4, 5];

/** Hex of the parts: a number is one byte, a string its UTF-8 ("bbb" → 626262). */
export function hex(...parts: (string | number)[]): string {
	return parts
		.map((p) => (typeof p === "number" ? p.toString(16).padStart(2, "0") : Buffer.from(p, "utf8").toString("hex")))
		.join("");
}

const utf8 = new TextEncoder();

function c(
	name: string,
	v: LiteVersion,
	encode: (w: Writer) => void,
	decode: (r: Reader) => unknown,
	value: unknown,
	opts: { hex?: string; framing?: Framing; skip?: number } = {},
): Case {
	return { name, v, encode, decode, value, framing: opts.framing ?? "varint", skip: opts.skip ?? 0, hex: opts.hex };
}

export function cases(): Case[] {
	const out: Case[] = [];

	// 0x20/0x21 compat setup (version-independent; run once under v2).
	const clientSetup: S.ClientSetup = {
		versions: [0xff0dad02, 0xff0dad01, 0xff00000e],
		params: new Map<number, number | Uint8Array>([
			[2, 42069],
			[7, utf8.encode("moq-lite-js")],
		]),
	};
	out.push(
		c("CLIENT_SETUP", 2, (w) => S.encodeClientSetup(w, clientSetup), S.decodeClientSetup, clientSetup, {
			framing: "u16",
			skip: 1,
			hex:
				"20002c03c0000000ff0dad02c0000000ff0dad01c0000000ff00000e" + "0202" + "8000a455" + "070b" + hex("moq-lite-js"),
		}),
	);
	const serverSetup: S.ServerSetup = { version: 0xff0dad02, params: new Map() };
	out.push(
		c("SERVER_SETUP", 2, (w) => S.encodeServerSetup(w, serverSetup), S.decodeServerSetup, serverSetup, {
			framing: "u16",
			skip: 1,
			hex: "210009c0000000ff0dad0200",
		}),
	);
	const serverSetup2: S.ServerSetup = {
		version: 0xff0dad02,
		params: new Map<number, number | Uint8Array>([
			[7, utf8.encode("moq-fanout")],
			[0x40b5a, 1],
		]),
	};
	out.push(
		c("SERVER_SETUP params", 2, (w) => S.encodeServerSetup(w, serverSetup2), S.decodeServerSetup, serverSetup2, {
			framing: "u16",
			skip: 1,
		}),
	);

	// lite-05 uni SETUP
	out.push(
		c(
			"SETUP empty",
			5,
			(w) => S.encodeLiteSetup(w, {}, 5),
			(r) => S.decodeLiteSetup(r, 5),
			{},
			{ hex: "0100" },
		),
	);
	const full: S.LiteSetup = { probe: 1, path: "anon/bbb?jwt=x", role: 2, origin: 2 ** 53 - 1 };
	out.push(
		c(
			"SETUP full",
			5,
			(w) => S.encodeLiteSetup(w, full, 5),
			(r) => S.decodeLiteSetup(r, 5),
			full,
		),
	);

	// lite-02 session
	out.push(
		c(
			"SESSION_INFO",
			2,
			(w) => Se.encodeSessionInfo(w, { bitrate: 2_500_000 }, 2),
			(r) => Se.decodeSessionInfo(r, 2),
			{ bitrate: 2_500_000 },
		),
	);

	for (const v of ALL) {
		// Announce
		const req: A.AnnounceRequest<string> = { prefix: "anon/live", excludeHop: v >= 4 ? 123456789 : 0 };
		out.push(
			c(
				`ANNOUNCE_REQUEST v${v}`,
				v,
				(w) => A.encodeAnnounceRequest(w, req, v),
				(r) => A.decodeAnnounceRequest(r, v),
				req,
			),
		);
		const active: A.Announce<string> = { active: true, suffix: "bbb", hops: v === 2 ? [] : v === 3 ? [0, 0] : [7] };
		out.push(
			c(
				`ANNOUNCE active v${v}`,
				v,
				(w) => A.encodeAnnounce(w, active, v),
				(r) => A.decodeAnnounce(r, v),
				active,
				{
					hex: v >= 4 ? hex(7, 1, 3, "bbb", 1, 7) : v === 3 ? hex(6, 1, 3, "bbb", 2) : hex(5, 1, 3, "bbb"),
				},
			),
		);
		const ended: A.Announce<string> = { active: false, suffix: "bbb", hops: [] };
		out.push(
			c(
				`ANNOUNCE ended v${v}`,
				v,
				(w) => A.encodeAnnounce(w, ended, v),
				(r) => A.decodeAnnounce(r, v),
				ended,
				{
					hex: v >= 3 ? hex(6, 0, 3, "bbb", 0) : hex(5, 0, 3, "bbb"),
				},
			),
		);

		// Subscribe
		const sub: Sub.Subscribe<string> = {
			id: 0,
			broadcast: "bbb",
			track: "video",
			priority: 2,
			ordered: false,
			maxLatencyMs: 0,
			startGroup: null,
			endGroup: null,
		};
		out.push(
			c(
				`SUBSCRIBE v${v}`,
				v,
				(w) => Sub.encodeSubscribe(w, sub, v),
				(r) => Sub.decodeSubscribe(r, v),
				sub,
				{
					hex: v >= 3 ? hex(0x10, 0, 3, "bbb", 5, "video", 2, 0, 0, 0, 0) : hex(0x0c, 0, 3, "bbb", 5, "video", 2),
				},
			),
		);
		if (v >= 3) {
			const sub2: Sub.Subscribe<string> = {
				id: 70000,
				broadcast: "anon/bbb",
				track: "audio.opus",
				priority: 255,
				ordered: true,
				maxLatencyMs: 30000,
				startGroup: 0,
				endGroup: 2 ** 40,
			};
			out.push(
				c(
					`SUBSCRIBE ranged v${v}`,
					v,
					(w) => Sub.encodeSubscribe(w, sub2, v),
					(r) => Sub.decodeSubscribe(r, v),
					sub2,
				),
			);
		}
		const upd: Sub.SubscribeUpdate =
			v === 2
				? { priority: 9, ordered: false, maxLatencyMs: 0, startGroup: null, endGroup: null }
				: { priority: 9, ordered: true, maxLatencyMs: 500, startGroup: 41, endGroup: null };
		out.push(
			c(
				`SUBSCRIBE_UPDATE v${v}`,
				v,
				(w) => Sub.encodeSubscribeUpdate(w, upd, v),
				(r) => Sub.decodeSubscribeUpdate(r, v),
				upd,
			),
		);

		// Subscribe responses
		const dec = (r: Reader) => Sub.decodeSubscribeResponse(r, v);
		if (v === 2) {
			out.push(c("SUBSCRIBE_OK v2", v, (w) => Sub.encodeSubscribeOk(w, {}, v), dec, { type: "ok" }, { hex: "00" }));
		} else if (v < 5) {
			const ok = { priority: 2, ordered: false, maxLatencyMs: 0, startGroup: null, endGroup: null };
			out.push(
				c(
					`SUBSCRIBE_OK v${v}`,
					v,
					(w) => Sub.encodeSubscribeOk(w, ok, v),
					dec,
					{ type: "ok", ...ok },
					{
						framing: "typed",
						hex: "00050200000000",
					},
				),
			);
			const ok2 = { priority: 7, ordered: true, maxLatencyMs: 900, startGroup: 3, endGroup: 4 };
			out.push(
				c(
					`SUBSCRIBE_OK full v${v}`,
					v,
					(w) => Sub.encodeSubscribeOk(w, ok2, v),
					dec,
					{ type: "ok", ...ok2 },
					{ framing: "typed" },
				),
			);
		} else {
			out.push(
				c(
					"SUBSCRIBE_OK v5",
					v,
					(w) => Sub.encodeSubscribeOk(w, { group: 7 }, v),
					dec,
					{ type: "ok", group: 7 },
					{
						framing: "typed",
						hex: "000107",
					},
				),
			);
			out.push(
				c(
					"SUBSCRIBE_END v5",
					v,
					(w) => Sub.encodeSubscribeEnd(w, { group: 12 }, v),
					dec,
					{ type: "end", group: 12 },
					{
						framing: "typed",
						hex: "01010c",
					},
				),
			);
		}
		if (v >= 3) {
			const drop = { start: 3, end: 5, error: 24 };
			out.push(
				c(
					`SUBSCRIBE_DROP v${v}`,
					v,
					(w) => Sub.encodeSubscribeDrop(w, drop, v),
					dec,
					{ type: "drop", ...drop },
					{
						framing: "typed",
						hex: hex(v === 5 ? 2 : 1, 3, 3, 5, 24),
					},
				),
			);
		}

		// Group header (the stream type byte is not part of it)
		const gh: G.GroupHeader = { subscribeId: 0, sequence: 7 };
		out.push(
			c(
				`GROUP v${v}`,
				v,
				(w) => G.encodeGroupHeader(w, gh, v),
				(r) => G.decodeGroupHeader(r, v),
				gh,
				{ hex: "020007" },
			),
		);
		const gh2: G.GroupHeader = { subscribeId: 2 ** 53 - 1, sequence: 2 ** 31 };
		out.push(
			c(
				`GROUP big v${v}`,
				v,
				(w) => G.encodeGroupHeader(w, gh2, v),
				(r) => G.decodeGroupHeader(r, v),
				gh2,
			),
		);

		if (v === 2) {
			const init: A.AnnounceInit<string> = { suffixes: ["bbb"] };
			out.push(
				c(
					"ANNOUNCE_INIT v2",
					v,
					(w) => A.encodeAnnounceInit(w, init, v),
					(r) => A.decodeAnnounceInit(r, v),
					init,
					{
						hex: hex(5, 1, 3, "bbb"),
					},
				),
			);
			const init2: A.AnnounceInit<string> = { suffixes: [] };
			out.push(
				c(
					"ANNOUNCE_INIT empty v2",
					v,
					(w) => A.encodeAnnounceInit(w, init2, v),
					(r) => A.decodeAnnounceInit(r, v),
					init2,
				),
			);
		}
		if (v >= 3) {
			const probe: P.Probe = v >= 4 ? { bitrate: 3_000_000, rtt: 42 } : { bitrate: 3_000_000 };
			out.push(
				c(
					`PROBE v${v}`,
					v,
					(w) => P.encodeProbe(w, probe, v),
					(r) => P.decodeProbe(r, v),
					probe,
				),
			);
			const fetch: F.FetchRequest<string> = { broadcast: "bbb", track: "video", priority: 3, group: 99 };
			out.push(
				c(
					`FETCH v${v}`,
					v,
					(w) => F.encodeFetchRequest(w, fetch, v),
					(r) => F.decodeFetchRequest(r, v),
					fetch,
				),
			);
		}
		if (v >= 4) {
			const ga: Gw.Goaway = { uri: "https://relay.example/anon" };
			out.push(
				c(
					`GOAWAY v${v}`,
					v,
					(w) => Gw.encodeGoaway(w, ga, v),
					(r) => Gw.decodeGoaway(r, v),
					ga,
				),
			);
			out.push(
				c(
					`GOAWAY empty v${v}`,
					v,
					(w) => Gw.encodeGoaway(w, { uri: "" }, v),
					(r) => Gw.decodeGoaway(r, v),
					{ uri: "" },
					{
						hex: "0100",
					},
				),
			);
		}
		if (v === 5) {
			const ok: A.AnnounceOk = { hopId: 9, activeCount: 1 };
			out.push(
				c(
					"ANNOUNCE_OK v5",
					v,
					(w) => A.encodeAnnounceOk(w, ok, v),
					(r) => A.decodeAnnounceOk(r, v),
					ok,
					{ hex: "020901" },
				),
			);
			const tr: T.TrackRequest<string> = { broadcast: "bbb", track: "catalog.json" };
			out.push(
				c(
					"TRACK v5",
					v,
					(w) => T.encodeTrackRequest(w, tr, v),
					(r) => T.decodeTrackRequest(r, v),
					tr,
				),
			);
			const ti: T.TrackInfo = { priority: 1, ordered: false, maxLatencyMs: 5000, timescale: 1000 };
			out.push(
				c(
					"TRACK_INFO v5",
					v,
					(w) => T.encodeTrackInfo(w, ti, v),
					(r) => T.decodeTrackInfo(r, v),
					ti,
					{
						hex: "0601005388" + "43e8",
					},
				),
			);
		}
	}
	return out;
}
