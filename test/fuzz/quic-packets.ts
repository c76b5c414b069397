/**
 * A QUIC packet fuzzer for the ngtcp2 engine (native/ngtcp2.c, issue 15): drives the addon's server
 * `Connection` in-process (accept / recv / send / timeout / onTimeout and the stream calls the relay
 * makes), no sockets, with crafted and mutated datagrams. scripts/fuzz-quic.ts runs it long (under
 * ASan + UBSan with --sanitize); test/quic-packet-fuzz.test.ts runs it short under the sanitizers.
 *
 * Case kinds (one case = one scenario, a pure function of (seed, case index) for its inputs):
 * - "initial": a fresh server connection fed valid-protected client Initials (RFC 9001 §5.2
 *   initial keys, written here with node:crypto) whose frames are fuzzed: CRYPTO frames carrying
 *   mutated ClientHellos (structure-aware: extensions, ALPN list, QUIC transport parameters; raw
 *   byte mutations; split / overlapping / out-of-order CRYPTO offsets) and random frame sequences
 *   (PADDING, PING, ACK with odd ranges, CONNECTION_CLOSE, unknown types, truncated varints, huge
 *   lengths, frames not allowed in Initial). Reaches ngtcp2's frame decoder, its transport
 *   parameter decoder, GnuTLS's ClientHello parser and the engine's own ALPN hook.
 * - "raw": fresh connections fed random and mutated long/short headers: bad versions, bad and
 *   over-long CID lengths, truncations, Retry / Handshake / 0-RTT types, Retry-token garbage
 *   (accept with an odcid), plus the stateless calls (negotiateVersion, retry, versionIsSupported).
 * - "session": a real in-memory handshake between our quiche client (src/quic/config.ts) and the
 *   ngtcp2 server, client datagrams recorded; the client's TLS secrets come from quiche's keylog,
 *   so the fuzzer then plays the client itself: valid-protected 1-RTT packets with fuzzed frames
 *   (STREAM, STOP_SENDING, RESET_STREAM, ACK of what the server really sent, flow control,
 *   NEW_CONNECTION_ID, …: mostly well formed so the connection lives, some hostile), bit flips /
 *   truncations / duplications / reorderings / coalescings of the recorded datagrams, Handshake
 *   and Initial packets at the wrong time; the server side plays the app (reads every readable
 *   stream, echoes, opens streams, shuts them down) as src/quic/connection.ts would.
 *   The fuzzed inputs follow from (seed, case); the TLS randomness of the handshake does not, so a
 *   replay of a session case repeats its mutations on a fresh session.
 *
 * Packets fed to the engine are counted exactly: one per `recv` call (a datagram, coalesced or not).
 */
import { createCipheriv, createDecipheriv, createHmac } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildClientConfig, resolveLimits } from "../../src/quic/config.ts";
import type { Ngtcp2Native } from "../../src/quic/engine.ts";
import { loadQuiche, type QuicheConnection } from "../../src/quic/native.ts";
import { prng } from "../support/prng.ts";
import { TEST_CERT, TEST_KEY } from "../support/quic.ts";

// ---- randomness --------------------------------------------------------------------------------

export type Rng = () => number;

/** The case's PRNG: a pure function of (seed, index). */
export function caseRng(seed: number, index: number): Rng {
	let h = Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35);
	h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
	h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
	return prng((h ^ (h >>> 16)) >>> 0);
}

const int = (r: Rng, n: number): number => Math.floor(r() * n);
const chance = (r: Rng, p: number): boolean => r() < p;
const pick = <T>(r: Rng, items: readonly T[]): T => items[int(r, items.length)];

function randomBytes(r: Rng, n: number): Buffer {
	const b = Buffer.allocUnsafe(n);
	for (let i = 0; i < n; i++) b[i] = int(r, 256);
	return b;
}

function weighted<T extends string>(r: Rng, table: readonly (readonly [T, number])[]): T {
	let total = 0;
	for (const [, w] of table) total += w;
	let x = r() * total;
	for (const [name, w] of table) {
		x -= w;
		if (x < 0) return name;
	}
	return table[table.length - 1][0];
}

// ---- varints -----------------------------------------------------------------------------------

export const VARINT_MAX = (1n << 62n) - 1n;

/** A QUIC varint (RFC 9000 §16) of `v`, in `size` bytes (1, 2, 4, 8) or the smallest that fits. */
export function varint(value: number | bigint, size?: 1 | 2 | 4 | 8): Buffer {
	let v = BigInt(value);
	if (v < 0n) v = 0n;
	if (v > VARINT_MAX) v = VARINT_MAX;
	let n = size ?? (v < 64n ? 1 : v < 16384n ? 2 : v < 1n << 30n ? 4 : 8);
	if (n === 1 && v >= 64n) n = 2;
	if (n === 2 && v >= 16384n) n = 4;
	if (n === 4 && v >= 1n << 30n) n = 8;
	const out = Buffer.alloc(n);
	for (let i = n - 1; i >= 0; i--) {
		out[i] = Number(v & 0xffn);
		v >>= 8n;
	}
	out[0] |= (n === 1 ? 0 : n === 2 ? 1 : n === 4 ? 2 : 3) << 6;
	return out;
}

function readVarint(b: Uint8Array, off: number): [number, number] | null {
	if (off >= b.length) return null;
	const n = 1 << (b[off] >> 6);
	if (off + n > b.length) return null;
	let v = b[off] & 0x3f;
	for (let i = 1; i < n; i++) v = v * 256 + b[off + i];
	return [v, off + n];
}

/** A value near the edges a decoder has to get right. */
function edgy(r: Rng, small = 64): bigint {
	switch (int(r, 12)) {
		case 0:
			return 0n;
		case 1:
			return 1n;
		case 2:
			return BigInt(pick(r, [63, 64, 16383, 16384, 1073741823, 1073741824]));
		case 3:
			return VARINT_MAX - BigInt(int(r, 3));
		case 4:
			return 1n << BigInt(int(r, 62));
		case 5:
			return BigInt(int(r, 0x100000000));
		case 6:
			return (1n << 60n) + BigInt(int(r, 3)) - 1n;
		default:
			return BigInt(int(r, small));
	}
}

/** A varint of an edgy value, sometimes in a longer (non-minimal) encoding. */
function edgyVarint(r: Rng, small = 64): Buffer {
	const v = edgy(r, small);
	return chance(r, 0.15) ? varint(v, pick(r, [2, 4, 8] as const)) : varint(v);
}

// ---- packet protection (RFC 9001) --------------------------------------------------------------

export const QUIC_V1 = 1;
const INITIAL_SALT_V1 = Buffer.from("38762cf7f55934b34d179ae6a4c80cadccbb7f0a", "hex");

function hkdfExtract(hash: string, salt: Buffer, ikm: Uint8Array): Buffer {
	return createHmac(hash, salt).update(ikm).digest();
}

function hkdfExpand(hash: string, prk: Buffer, info: Buffer, length: number): Buffer {
	const blocks: Buffer[] = [];
	let t = Buffer.alloc(0);
	let got = 0;
	for (let i = 1; got < length; i++) {
		t = createHmac(hash, prk)
			.update(Buffer.concat([t, info, Buffer.from([i])]))
			.digest();
		blocks.push(t);
		got += t.length;
	}
	return Buffer.concat(blocks).subarray(0, length);
}

/** HKDF-Expand-Label (RFC 8446 §7.1) with an empty context. */
export function expandLabel(hash: string, secret: Buffer, label: string, length: number): Buffer {
	const full = Buffer.from(`tls13 ${label}`);
	const info = Buffer.concat([Buffer.from([length >> 8, length & 0xff, full.length]), full, Buffer.from([0])]);
	return hkdfExpand(hash, secret, info, length);
}

export type Suite = "aes-128-gcm" | "aes-256-gcm" | "chacha20-poly1305";

export interface PacketKeys {
	suite: Suite;
	key: Buffer;
	iv: Buffer;
	hp: Buffer;
}

/** Packet keys from a TLS traffic secret (RFC 9001 §5.1). */
export function keysFromSecret(secret: Buffer, suite: Suite): PacketKeys {
	const hash = suite === "aes-256-gcm" ? "sha384" : "sha256";
	const keyLen = suite === "aes-128-gcm" ? 16 : 32;
	return {
		suite,
		key: expandLabel(hash, secret, "quic key", keyLen),
		iv: expandLabel(hash, secret, "quic iv", 12),
		hp: expandLabel(hash, secret, "quic hp", keyLen),
	};
}

/** The Initial keys of one side for a client's first Destination Connection ID (RFC 9001 §5.2). */
export function initialKeys(dcid: Uint8Array, side: "client" | "server"): PacketKeys {
	const initial = hkdfExtract("sha256", INITIAL_SALT_V1, dcid);
	const secret = expandLabel("sha256", initial, side === "client" ? "client in" : "server in", 32);
	return keysFromSecret(secret, "aes-128-gcm");
}

function nonceFor(keys: PacketKeys, pn: number): Buffer {
	const nonce = Buffer.from(keys.iv);
	for (let i = 0; i < 6; i++) nonce[11 - i] ^= Math.floor(pn / 2 ** (8 * i)) & 0xff;
	return nonce;
}

function seal(keys: PacketKeys, pn: number, aad: Buffer, plaintext: Buffer): Buffer {
	const cipher = createCipheriv(keys.suite, keys.key, nonceFor(keys, pn), { authTagLength: 16 } as never) as ReturnType<
		typeof createCipheriv
	> & { setAAD(b: Buffer, o?: object): void; getAuthTag(): Buffer };
	cipher.setAAD(aad, { plaintextLength: plaintext.length });
	return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

function open(keys: PacketKeys, pn: number, aad: Buffer, ciphertext: Buffer): Buffer | null {
	if (ciphertext.length < 16) return null;
	try {
		const decipher = createDecipheriv(keys.suite, keys.key, nonceFor(keys, pn), {
			authTagLength: 16,
		} as never) as ReturnType<typeof createDecipheriv> & {
			setAAD(b: Buffer, o?: object): void;
			setAuthTag(b: Buffer): void;
		};
		const body = ciphertext.subarray(0, ciphertext.length - 16);
		decipher.setAAD(aad, { plaintextLength: body.length });
		decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
		return Buffer.concat([decipher.update(body), decipher.final()]);
	} catch {
		return null;
	}
}

function hpMask(keys: PacketKeys, sample: Buffer): Buffer {
	if (keys.suite === "chacha20-poly1305") return createCipheriv("chacha20", keys.hp, sample).update(Buffer.alloc(5));
	const ecb = keys.suite === "aes-128-gcm" ? "aes-128-ecb" : "aes-256-ecb";
	const c = createCipheriv(ecb, keys.hp, null);
	c.setAutoPadding(false);
	return c.update(sample);
}

function pnBytes(pn: number, len: number): Buffer {
	const b = Buffer.alloc(len);
	for (let i = 0; i < len; i++) b[len - 1 - i] = Math.floor(pn / 2 ** (8 * i)) & 0xff;
	return b;
}

export const LONG_INITIAL = 0;
export const LONG_ZERO_RTT = 1;
export const LONG_HANDSHAKE = 2;

export interface LongPacket {
	type: number;
	version?: number;
	dcid: Uint8Array;
	scid: Uint8Array;
	token?: Uint8Array;
	pn: number;
	pnLen?: 1 | 2 | 3 | 4;
	payload: Buffer;
	/** Reserved bits (0x0c) set in the first byte, before protection. */
	reserved?: number;
}

/** A protected long-header packet (padding the payload to what header protection samples). */
export function protectLong(p: LongPacket, keys: PacketKeys): Buffer {
	const pnLen = p.pnLen ?? 4;
	const payload = p.payload.length + pnLen < 4 ? Buffer.concat([p.payload, Buffer.alloc(4)]) : p.payload;
	const head: Buffer[] = [
		Buffer.from([0xc0 | (p.type << 4) | ((p.reserved ?? 0) & 0x0c) | (pnLen - 1)]),
		Buffer.alloc(4),
		Buffer.from([p.dcid.length]),
		Buffer.from(p.dcid),
		Buffer.from([p.scid.length]),
		Buffer.from(p.scid),
	];
	head[1].writeUInt32BE((p.version ?? QUIC_V1) >>> 0);
	if (p.type === LONG_INITIAL) {
		const token = p.token ?? new Uint8Array(0);
		head.push(varint(token.length), Buffer.from(token));
	}
	head.push(varint(pnLen + payload.length + 16, 2), pnBytes(p.pn, pnLen));
	const header = Buffer.concat(head);
	return applyProtection(header, header.length - pnLen, pnLen, seal(keys, p.pn, header, payload), keys, 0x0f);
}

/** A protected short-header (1-RTT) packet. */
export function protectShort(
	dcid: Uint8Array,
	pn: number,
	payload: Buffer,
	keys: PacketKeys,
	opts: { pnLen?: 1 | 2 | 3 | 4; keyPhase?: boolean; reserved?: number } = {},
): Buffer {
	const pnLen = opts.pnLen ?? 4;
	const body = payload.length + pnLen < 4 ? Buffer.concat([payload, Buffer.alloc(4)]) : payload;
	const first = 0x40 | ((opts.reserved ?? 0) & 0x18) | (opts.keyPhase ? 0x04 : 0) | (pnLen - 1);
	const header = Buffer.concat([Buffer.from([first]), Buffer.from(dcid), pnBytes(pn, pnLen)]);
	return applyProtection(header, header.length - pnLen, pnLen, seal(keys, pn, header, body), keys, 0x1f);
}

function applyProtection(
	header: Buffer,
	pnOffset: number,
	pnLen: number,
	sealed: Buffer,
	keys: PacketKeys,
	firstMask: number,
): Buffer {
	const packet = Buffer.concat([header, sealed]);
	const mask = hpMask(keys, packet.subarray(pnOffset + 4, pnOffset + 20));
	packet[0] ^= mask[0] & firstMask;
	for (let i = 0; i < pnLen; i++) packet[pnOffset + i] ^= mask[1 + i];
	return packet;
}

/** Where the packets of a datagram start and end (long headers carry their length; a short one runs to the end). */
export function splitDatagram(d: Uint8Array): { start: number; end: number; long: boolean; pnOffset: number }[] {
	const out: { start: number; end: number; long: boolean; pnOffset: number }[] = [];
	let off = 0;
	while (off < d.length) {
		if ((d[off] & 0x80) === 0) {
			out.push({ start: off, end: d.length, long: false, pnOffset: -1 });
			break;
		}
		let p = off + 5;
		if (p >= d.length) break;
		p += 1 + d[p];
		if (p >= d.length) break;
		p += 1 + d[p];
		if (((d[off] >> 4) & 3) === LONG_INITIAL) {
			const t = readVarint(d, p);
			if (t === null) break;
			p = t[1] + t[0];
		}
		const l = readVarint(d, p);
		if (l === null || l[1] + l[0] > d.length) break;
		out.push({ start: off, end: l[1] + l[0], long: true, pnOffset: l[1] });
		off = l[1] + l[0];
	}
	return out;
}

/** Removes header protection and decrypts one packet; `largest`: the largest pn seen in its space. */
export function unprotect(
	d: Uint8Array,
	where: { start: number; end: number; long: boolean; pnOffset: number },
	keys: PacketKeys,
	shortDcidLen: number,
	largest: number,
	decrypt = true,
): { pn: number; payload: Buffer | null } | null {
	const pkt = Buffer.from(d.subarray(where.start, where.end));
	const pnOffset = where.long ? where.pnOffset - where.start : 1 + shortDcidLen;
	if (pnOffset + 20 > pkt.length) return null;
	const mask = hpMask(keys, pkt.subarray(pnOffset + 4, pnOffset + 20));
	pkt[0] ^= mask[0] & (where.long ? 0x0f : 0x1f);
	const pnLen = (pkt[0] & 3) + 1;
	let truncated = 0;
	for (let i = 0; i < pnLen; i++) {
		pkt[pnOffset + i] ^= mask[1 + i];
		truncated = truncated * 256 + pkt[pnOffset + i];
	}
	// RFC 9000 §A.3
	const expected = largest + 1;
	const win = 2 ** (pnLen * 8);
	let pn = expected - (expected % win) + truncated;
	if (pn <= expected - win / 2 && pn + win < 2 ** 62) pn += win;
	else if (pn > expected + win / 2 && pn >= win) pn -= win;
	if (!decrypt) return { pn, payload: null };
	const aad = pkt.subarray(0, pnOffset + pnLen);
	return { pn, payload: open(keys, pn, aad, pkt.subarray(pnOffset + pnLen)) };
}

/** The CRYPTO stream of decrypted payloads, reassembled by offset (what a ClientHello travels in). */
export function cryptoData(payloads: Buffer[]): Buffer {
	const parts: [number, Buffer][] = [];
	for (const p of payloads) {
		let off = 0;
		while (off < p.length) {
			const type = p[off++];
			if (type === 0x00 || type === 0x01) continue;
			if (type !== 0x06) break;
			const o = readVarint(p, off);
			if (o === null) break;
			const l = readVarint(p, o[1]);
			if (l === null || l[1] + l[0] > p.length) break;
			parts.push([o[0], p.subarray(l[1], l[1] + l[0])]);
			off = l[1] + l[0];
		}
	}
	parts.sort((a, b) => a[0] - b[0]);
	const end = parts.reduce((m, [o, b]) => Math.max(m, o + b.length), 0);
	const out = Buffer.alloc(end);
	for (const [o, b] of parts) b.copy(out, o);
	return out;
}

// ---- the ClientHello corpus --------------------------------------------------------------------

/**
 * ClientHellos our quiche client sent (captured once by decrypting its first Initial, so the
 * "initial" cases replay exactly from (seed, case)): ALPN moq-lite-05 and ALPN h3.
 */
const CLIENT_HELLOS_HEX = [
	"010000ec0303e48901528f6e384853f4b103a2ba2d4dce6b522e1f1dcffb20d199da8fff17bd00000613011302130301" +
		"0000bd000a00080006001d001700180010000e000c0b6d6f712d6c6974652d3035000d00160014040305030603080708" +
		"0408050806040105010601003300260024001d00209d08dbc3f08a893cc65cc35a8ef89abfa012a12016d1b25b7f14f0" +
		"09bbb53350002d00020101002b00030203040039004a0104800075300302454604048100000005048040000006048040" +
		"000007048040000008024400090244000a01030b01190c000f1011111111111111111111111111111111200480010000",
	"010000e3030377a256d9cce8e19d8ce45218bf98debb4c25845de96ebfeffde227965a67092500000613011302130301" +
		"0000b4000a00080006001d00170018001000050003026833000d00160014040305030603080708040805080604010501" +
		"0601003300260024001d0020964670a9b3c922062b5ad9f63eadfd49288837dce8bdf5e9b19b72851b06db41002d0002" +
		"0101002b00030203040039004a0104800075300302454604048100000005048040000006048040000007048040000008" +
		"024400090244000a01030b01190c000f1011111111111111111111111111111111200480010000",
];

let corpus: Buffer[] | null = null;

/** The ClientHello corpus (captures one live from quiche when the embedded list is empty). */
export function clientHellos(): Buffer[] {
	if (corpus !== null) return corpus;
	corpus = CLIENT_HELLOS_HEX.filter((h) => h.length > 0).map((h) => Buffer.from(h, "hex"));
	if (corpus.length === 0) corpus = [captureClientHello(["moq-lite-05"]), captureClientHello(["h3"])];
	return corpus;
}

const CLIENT_ADDR = { host: "127.0.0.1", port: 40000 };
const SERVER_ADDR = { host: "127.0.0.1", port: 4443 };

/** The ClientHello in the first Initial of our quiche client offering `alpns`. */
export function captureClientHello(alpns: string[]): Buffer {
	const quiche = loadQuiche();
	const config = buildClientConfig(alpns, false, null, resolveLimits({}));
	const client = quiche.Connection.connect(null, Buffer.alloc(16, 0x11), CLIENT_ADDR, SERVER_ADDR, config);
	const buf = Buffer.alloc(1500);
	const payloads: Buffer[] = [];
	for (let r = client.send(buf); r !== null; r = client.send(buf)) {
		const d = Buffer.from(buf.subarray(0, r[0]));
		const dcid = d.subarray(6, 6 + d[5]);
		const keys = initialKeys(dcid, "client");
		for (const where of splitDatagram(d)) {
			const got = unprotect(d, where, keys, 0, -1);
			if (got?.payload) payloads.push(got.payload);
		}
	}
	return cryptoData(payloads);
}

// ---- ClientHello mutations ---------------------------------------------------------------------

interface Hello {
	prefix: Buffer; // version .. compression methods
	exts: { type: number; body: Buffer }[];
}

function parseHello(ch: Buffer): Hello | null {
	if (ch.length < 4 + 2 + 32 + 1 || ch[0] !== 1) return null;
	let p = 4 + 2 + 32;
	p += 1 + ch[p];
	if (p + 2 > ch.length) return null;
	p += 2 + ch.readUInt16BE(p);
	if (p + 1 > ch.length) return null;
	p += 1 + ch[p];
	if (p + 2 > ch.length) return null;
	const prefix = ch.subarray(4, p);
	const end = p + 2 + ch.readUInt16BE(p);
	p += 2;
	const exts: Hello["exts"] = [];
	while (p + 4 <= end && p + 4 <= ch.length) {
		const type = ch.readUInt16BE(p);
		const len = ch.readUInt16BE(p + 2);
		exts.push({ type, body: ch.subarray(p + 4, p + 4 + len) });
		p += 4 + len;
	}
	return { prefix, exts };
}

function u16(n: number): Buffer {
	const b = Buffer.alloc(2);
	b.writeUInt16BE(n & 0xffff);
	return b;
}

function buildHello(h: Hello, lie?: { hs?: number; ext?: number }): Buffer {
	const exts = Buffer.concat(h.exts.map((e) => Buffer.concat([u16(e.type), u16(e.body.length), e.body])));
	const body = Buffer.concat([h.prefix, u16(lie?.ext ?? exts.length), exts]);
	const len = lie?.hs ?? body.length;
	return Buffer.concat([Buffer.from([1, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff]), body]);
}

const TP_IDS = [
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x20,
	0x2ab2, 0xff73db, 0x173e,
];

/** Fuzzed QUIC transport parameters (extension 0x39), from the client's own. */
function mutateTransportParams(r: Rng, body: Buffer): Buffer {
	const params: [number, Buffer][] = [];
	let p = 0;
	while (p < body.length) {
		const id = readVarint(body, p);
		if (id === null) break;
		const len = readVarint(body, id[1]);
		if (len === null || len[1] + len[0] > body.length) break;
		params.push([id[0], body.subarray(len[1], len[1] + len[0])]);
		p = len[1] + len[0];
	}
	const n = 1 + int(r, 3);
	for (let i = 0; i < n; i++) {
		const op = int(r, 7);
		const id = chance(r, 0.8) ? pick(r, TP_IDS) : int(r, 0x4000);
		let value: Buffer;
		switch (int(r, 5)) {
			case 0:
				value = edgyVarint(r, 20000);
				break;
			case 1:
				value = randomBytes(r, int(r, 24));
				break;
			case 2:
				value = Buffer.alloc(0);
				break;
			case 3: // preferred_address-shaped, version_information-shaped
				value = randomBytes(r, pick(r, [4, 8, 16, 41, 45, 49, 60]));
				break;
			default:
				value = varint(edgy(r, 2000));
		}
		if (op === 0 && params.length > 0) params.splice(int(r, params.length), 1);
		else if (op === 1 && params.length > 0) params.push(params[int(r, params.length)]);
		else if (op === 2 && params.length > 0) params[int(r, params.length)][1] = value;
		else params.push([id, value]);
	}
	const lieLen = chance(r, 0.1);
	return Buffer.concat(
		params.map(([id, v]) =>
			Buffer.concat([varint(id), lieLen && chance(r, 0.3) ? edgyVarint(r, 40) : varint(v.length), v]),
		),
	);
}

/** An ALPN extension body: names that may lie about their lengths. */
function fuzzAlpn(r: Rng): Buffer {
	const names = ["moq-lite-05", "h3", "moqt-15", "moqt-16", "", "x".repeat(255), "moq-lite-04"];
	const parts: Buffer[] = [];
	const n = int(r, 12);
	for (let i = 0; i < n; i++) {
		const name = chance(r, 0.7) ? Buffer.from(pick(r, names)) : randomBytes(r, int(r, 20));
		parts.push(Buffer.from([chance(r, 0.1) ? int(r, 256) : name.length]), name);
	}
	const list = Buffer.concat(parts);
	return Buffer.concat([u16(chance(r, 0.1) ? int(r, 0x10000) : list.length), list]);
}

/** A mutated ClientHello: structure-aware most of the time, raw byte mutations otherwise. */
export function mutateClientHello(r: Rng, base: Buffer): Buffer {
	if (chance(r, 0.08)) return base;
	const hello = parseHello(base);
	if (hello === null || chance(r, 0.25)) return mutateBytes(r, base, clientHellos());
	const exts = hello.exts.map((e) => ({ ...e }));
	const n = 1 + int(r, 3);
	let lie: { hs?: number; ext?: number } | undefined;
	for (let i = 0; i < n; i++) {
		const at = int(r, exts.length);
		switch (int(r, 10)) {
			case 0:
				exts.splice(at, 1);
				break;
			case 1:
				exts.push({ ...exts[at] });
				break;
			case 2: {
				const j = int(r, exts.length);
				[exts[at], exts[j]] = [exts[j], exts[at]];
				break;
			}
			case 3:
				if (exts[at]) exts[at].body = mutateBytes(r, exts[at].body, []);
				break;
			case 4: {
				const tp = exts.find((e) => e.type === 0x39);
				if (tp) tp.body = mutateTransportParams(r, tp.body);
				break;
			}
			case 5: {
				const alpn = exts.find((e) => e.type === 16);
				if (alpn) alpn.body = fuzzAlpn(r);
				else exts.push({ type: 16, body: fuzzAlpn(r) });
				break;
			}
			case 6:
				exts.splice(at, 0, { type: int(r, 0x10000), body: randomBytes(r, int(r, 40)) });
				break;
			case 7:
				lie = { hs: int(r, 4) === 0 ? 0xffffff : int(r, base.length + 64) };
				break;
			case 8:
				lie = { ext: int(r, 0x10000) };
				break;
			default: {
				const tp = exts.find((e) => e.type === 0x39);
				if (tp) tp.body = mutateTransportParams(r, tp.body);
			}
		}
	}
	const prefix = chance(r, 0.1) ? mutateBytes(r, hello.prefix, []) : hello.prefix;
	return buildHello({ prefix, exts }, lie);
}

// ---- byte mutations ----------------------------------------------------------------------------

const INTERESTING = [0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0xbf, 0xc0, 0xfe, 0xff];

/** 1–4 byte-level mutations (flips, interesting bytes, truncation, insertion, slices, crossover). */
export function mutateBytes(r: Rng, input: Uint8Array, others: readonly Uint8Array[]): Buffer {
	let b = Buffer.from(input);
	const n = 1 + int(r, 4);
	for (let i = 0; i < n; i++) {
		const at = b.length > 0 ? int(r, b.length) : 0;
		switch (int(r, 11)) {
			case 0:
			case 1:
				if (b.length > 0) b[at] ^= 1 << int(r, 8);
				break;
			case 2:
				if (b.length > 0) b[at] = pick(r, INTERESTING);
				break;
			case 3:
				if (b.length > 0) b[at] = int(r, 256);
				break;
			case 4:
				b = b.subarray(0, int(r, b.length + 1));
				break;
			case 5:
				b = Buffer.concat([b.subarray(0, at), randomBytes(r, 1 + int(r, 16)), b.subarray(at)]);
				break;
			case 6: {
				const len = int(r, Math.min(64, b.length - at) + 1);
				b = Buffer.concat([b.subarray(0, at), b.subarray(at + len)]);
				break;
			}
			case 7: {
				const len = int(r, Math.min(64, b.length - at) + 1);
				b = Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]);
				break;
			}
			case 8: {
				if (others.length === 0) break;
				const o = pick(r, others);
				const from = int(r, o.length + 1);
				const len = int(r, Math.min(64, o.length - from) + 1);
				b = Buffer.concat([b.subarray(0, at), Buffer.from(o.subarray(from, from + len)), b.subarray(at + len)]);
				break;
			}
			case 9:
				if (b.length > 0) b[at] = (b[at] & 0x3f) | (int(r, 4) << 6); // a varint's length prefix
				break;
			default:
				if (b.length > 2)
					b.writeUInt16BE(pick(r, [0, 1, 0x3fff, 0x4000, 0xffff, int(r, 0x10000)]), Math.min(at, b.length - 2));
		}
	}
	return b;
}

// ---- frames ------------------------------------------------------------------------------------

export type Level = "initial" | "handshake" | "app";

/** What the frame generator knows of the connection (session cases). */
export interface FrameContext {
	level: Level;
	/** The largest packet number the server sent in this space (-1: none). */
	serverLargest: number;
	/** Stream ids worth aiming at. */
	streams: number[];
	/** How far to keep well formed: 0 = anything, 1 = plausible only. */
	sane: number;
}

/**
 * A stream id. Well formed: "recv" one the client may send STREAM / RESET_STREAM on (its own, or
 * the server's bidi ones), "send" one with a server send side (STOP_SENDING, MAX_STREAM_DATA).
 */
function streamId(r: Rng, ctx: FrameContext, hostile: boolean, use: "recv" | "send"): bigint {
	if (hostile && chance(r, 0.5)) return edgy(r, 5000);
	if (hostile) return BigInt(int(r, 64) * 4 + pick(r, [0, 2, 0, 2, 1, 3]));
	const ok = (id: number) => (use === "recv" ? id % 2 === 0 || id % 4 === 1 : id % 4 !== 2);
	const known = ctx.streams.filter(ok);
	if (known.length > 0 && chance(r, 0.6)) return BigInt(pick(r, known));
	return BigInt(int(r, 24) * 4 + (use === "recv" ? pick(r, [0, 2]) : 0));
}

function ackFrame(r: Rng, ctx: FrameContext): Buffer {
	const ecn = chance(r, 0.2);
	const parts: Buffer[] = [Buffer.from([ecn ? 0x03 : 0x02])];
	if (ctx.sane > 0 && ctx.serverLargest >= 0 && chance(r, 0.99)) {
		// Well formed: ranges inside what the server sent.
		const largest = ctx.serverLargest - int(r, Math.min(3, ctx.serverLargest + 1));
		let left = largest;
		const first = int(r, left + 1);
		left -= first;
		const ranges: Buffer[] = [];
		while (left >= 3 && chance(r, 0.4) && ranges.length < 20) {
			const gap = int(r, Math.min(left - 2, 4));
			const len = int(r, Math.min(left - gap - 2, 4) + 1);
			ranges.push(varint(gap), varint(len));
			left -= gap + 2 + len;
		}
		parts.push(varint(largest), varint(int(r, 1000)), varint(ranges.length / 2), varint(first), ...ranges);
	} else {
		const count = chance(r, 0.1) ? edgy(r, 300) : BigInt(int(r, 5));
		parts.push(edgyVarint(r, 40), edgyVarint(r, 2000), varint(count), edgyVarint(r, 40));
		const n = Number(count > 30n ? BigInt(int(r, 30)) : count);
		for (let i = 0; i < n; i++) parts.push(edgyVarint(r, 10), edgyVarint(r, 10));
	}
	if (ecn) parts.push(edgyVarint(r), edgyVarint(r), edgyVarint(r));
	return Buffer.concat(parts);
}

/** One frame: well formed, odd, or hostile, as the context's `sane` asks. */
export function randomFrame(r: Rng, ctx: FrameContext): Buffer {
	const hostile = ctx.sane === 0 || chance(r, 0.012);
	const app = ctx.level === "app";
	const kind = weighted(r, [
		["padding", 3],
		["ping", 3],
		["ack", 8],
		["reset", app ? (hostile ? 3 : 0.5) : 1],
		["stop", app ? 6 : 1],
		["crypto", app && !hostile ? 0 : 3],
		["new_token", hostile ? 0.5 : 0],
		["stream", app ? 16 : 2],
		["max_data", 2],
		["max_stream_data", 3],
		["max_streams", 2],
		["blocked", 2],
		["new_cid", app && !hostile ? 0 : 1],
		["retire_cid", app && !hostile ? 0 : 1],
		["path", 2],
		["close", hostile ? 2 : 0.15],
		["handshake_done", hostile ? 1 : 0],
		["datagram", 2],
		["unknown", hostile ? 3 : 0],
		["garbage", hostile ? 2 : 0],
	] as const);
	let f: Buffer;
	switch (kind) {
		case "padding":
			f = Buffer.alloc(1 + int(r, 40));
			break;
		case "ping":
			f = Buffer.from([0x01]);
			break;
		case "ack":
			f = ackFrame(r, ctx);
			break;
		case "reset": {
			// Well formed: past any offset a well-formed STREAM frame reaches (21 KB).
			const size = hostile ? edgyVarint(r, 4000) : varint(25_000);
			f = Buffer.concat([Buffer.from([0x04]), varint(streamId(r, ctx, hostile, "recv")), edgyVarint(r, 1000), size]);
			break;
		}
		case "stop":
			f = Buffer.concat([
				Buffer.from([0x05]),
				varint(streamId(r, ctx, hostile, "send")),
				chance(r, 0.5) ? edgyVarint(r) : varint(int(r, 10000)),
			]);
			break;
		case "crypto": {
			const data = randomBytes(r, int(r, 60));
			const off = hostile ? edgyVarint(r, 5000) : varint(int(r, 3000));
			f = Buffer.concat([
				Buffer.from([0x06]),
				off,
				hostile && chance(r, 0.5) ? edgyVarint(r, 200) : varint(data.length),
				data,
			]);
			break;
		}
		case "new_token": {
			const t = randomBytes(r, int(r, 40));
			f = Buffer.concat([Buffer.from([0x07]), varint(t.length), t]);
			break;
		}
		case "stream": {
			const type = 0x08 | (int(r, 8) & (hostile || chance(r, 0.05) ? 7 : 6));
			const data = randomBytes(r, chance(r, 0.1) ? int(r, 900) : int(r, 100));
			const parts = [Buffer.from([type]), varint(streamId(r, ctx, hostile, "recv"))];
			if (type & 0x04) parts.push(hostile ? edgyVarint(r, 100000) : varint(int(r, 20000)));
			if (type & 0x02) parts.push(hostile && chance(r, 0.4) ? edgyVarint(r, 2000) : varint(data.length));
			parts.push(data);
			f = Buffer.concat(parts);
			break;
		}
		case "max_data":
			f = Buffer.concat([Buffer.from([0x10]), edgyVarint(r, 1 << 24)]);
			break;
		case "max_stream_data":
			f = Buffer.concat([
				Buffer.from([0x11]),
				varint(streamId(r, ctx, hostile, "send")),
				hostile ? edgyVarint(r, 1 << 24) : varint(int(r, 1 << 24)),
			]);
			break;
		case "max_streams":
			f = Buffer.concat([Buffer.from([pick(r, [0x12, 0x13])]), hostile ? edgyVarint(r) : varint(int(r, 5000))]);
			break;
		case "blocked": {
			const type = pick(r, [0x14, 0x15, 0x16, 0x17]);
			f = Buffer.concat([
				Buffer.from([type]),
				...(type === 0x15 ? [varint(streamId(r, ctx, hostile, "recv"))] : []),
				hostile ? edgyVarint(r, 5000) : varint(int(r, 100)),
			]);
			break;
		}
		case "new_cid": {
			const seq = hostile ? edgy(r, 20) : BigInt(1 + int(r, 8));
			const retire = hostile ? edgy(r, 20) : BigInt(int(r, Number(seq) + 1));
			const len = hostile && chance(r, 0.3) ? int(r, 256) : 1 + int(r, 20);
			f = Buffer.concat([
				Buffer.from([0x18]),
				varint(seq),
				varint(retire),
				Buffer.from([len]),
				randomBytes(r, Math.min(len, 40) + 16),
			]);
			break;
		}
		case "retire_cid":
			f = Buffer.concat([Buffer.from([0x19]), hostile ? edgyVarint(r) : varint(int(r, 10))]);
			break;
		case "path":
			f = Buffer.concat([Buffer.from([pick(r, [0x1a, 0x1b])]), randomBytes(r, 8)]);
			break;
		case "close": {
			const app = chance(r, 0.5);
			const reason = randomBytes(r, chance(r, 0.2) ? int(r, 1200) : int(r, 30));
			const len = hostile && chance(r, 0.3) ? edgyVarint(r, 2000) : varint(reason.length);
			f = Buffer.concat([
				Buffer.from([app ? 0x1d : 0x1c]),
				edgyVarint(r, 0x200),
				...(app ? [] : [edgyVarint(r, 0x40)]),
				len,
				reason,
			]);
			break;
		}
		case "handshake_done":
			f = Buffer.from([0x1e]);
			break;
		case "datagram": {
			const data = randomBytes(r, int(r, 200));
			f = chance(r, 0.5)
				? Buffer.concat([Buffer.from([0x31]), varint(data.length), data])
				: Buffer.concat([Buffer.from([0x30]), data]);
			break;
		}
		case "unknown":
			f = Buffer.concat([
				chance(r, 0.5) ? varint(0x1f + int(r, 0x4000)) : varint(int(r, 0x20), pick(r, [2, 4, 8] as const)),
				randomBytes(r, int(r, 20)),
			]);
			break;
		default:
			f = randomBytes(r, 1 + int(r, 30));
	}
	// A truncated frame (a varint or a length cut short).
	if (hostile && chance(r, 0.15) && f.length > 1) f = f.subarray(0, 1 + int(r, f.length - 1));
	return f;
}

function frames(r: Rng, ctx: FrameContext, max: number): Buffer {
	const n = 1 + int(r, max);
	const out: Buffer[] = [];
	for (let i = 0; i < n; i++) out.push(randomFrame(r, ctx));
	return Buffer.concat(out);
}

// ---- the harness -------------------------------------------------------------------------------

type ServerConnection = ReturnType<Ngtcp2Native["Connection"]["accept"]>;

/** The relay's ALPN list shape: 12 protocols (more than GnuTLS's 8 per session, so the hook runs). */
export const FUZZ_ALPNS = [
	"moq-lite-05",
	"moq-lite-04",
	"moq-lite-03",
	"moq-lite-02",
	"moq-00",
	"moqt-16",
	"moqt-15",
	"moqt-14",
	"moqt-13",
	"moqt-12",
	"moqt-11",
	"h3",
];

export interface FuzzStats {
	/** Datagrams fed to the engine (`recv` calls), total and by kind. */
	packets: number;
	byKind: Record<string, number>;
	cases: number;
	casesByKind: Record<string, number>;
	/** Milliseconds spent per case kind. */
	msByKind: Record<string, number>;
	/** Clean handshakes completed: session cases and the health checks. */
	handshakes: number;
	healthChecks: number;
	/** recv threw (the engine refused the packet or closed the connection): expected, counted. */
	recvErrors: number;
	/** Packets the server answered with (send / sendBatch). */
	serverPackets: number;
	/** Server connections that reached "established" under fuzzed input. */
	sessionsFuzzed: number;
	/** Stateless calls (negotiateVersion, retry, versionIsSupported). */
	statelessCalls: number;
	/** Violations of the Connection contract seen from JS (a length past the buffer, …). */
	violations: string[];
}

export function newStats(): FuzzStats {
	return {
		packets: 0,
		byKind: {},
		cases: 0,
		casesByKind: {},
		msByKind: {},
		handshakes: 0,
		healthChecks: 0,
		recvErrors: 0,
		serverPackets: 0,
		sessionsFuzzed: 0,
		statelessCalls: 0,
		violations: [],
	};
}

const SEND_BUF = Buffer.alloc(1500);
const BATCH_BUF = Buffer.alloc(1350 * 8);
const BATCH_SIZES = new Uint16Array(8);
const RECV_BUF = Buffer.alloc(4096);
const RECV_INFO = { from: CLIENT_ADDR, to: SERVER_ADDR };

export class PacketFuzzer {
	readonly stats = newStats();
	readonly config: object;
	private readonly clientConfig: ReturnType<typeof buildClientConfig>;
	private readonly keylogDir = tmpdir();
	private keylogCount = 0;

	readonly addon: Ngtcp2Native;
	/** Also call `retry` with what libngtcp2 asserts against (an empty token, equal IDs): aborts on 0.12. */
	readonly apiEdges: boolean;
	/** Each engine call as it is made (a reproducer's trace). */
	trace: ((event: string) => void) | null = null;

	constructor(addon: Ngtcp2Native, apiEdges = false) {
		this.addon = addon;
		this.apiEdges = apiEdges;
		const enc = new TextEncoder();
		this.config = new addon.Config(enc.encode(TEST_CERT), enc.encode(TEST_KEY), FUZZ_ALPNS, {
			idleTimeoutMs: 30_000,
			handshakeTimeoutMs: 10_000,
			maxStreamsBidi: 100,
			maxStreamsUni: 100,
			maxData: 1 << 20,
			maxStreamData: 256 * 1024,
		});
		this.clientConfig = buildClientConfig(["moq-lite-05"], false, null, resolveLimits({}));
		this.clientConfig.logKeys();
		clientHellos();
	}

	/** Runs case `index` of `seed`. */
	runCase(seed: number, index: number): string {
		const r = caseRng(seed, index);
		const kind = weighted(r, [
			["initial", 40],
			["raw", 25],
			["session", 35],
		] as const);
		this.stats.cases++;
		this.stats.casesByKind[kind] = (this.stats.casesByKind[kind] ?? 0) + 1;
		const t0 = performance.now();
		if (kind === "initial") this.initialCase(r);
		else if (kind === "raw") this.rawCase(r);
		else this.sessionCase(r);
		this.stats.msByKind[kind] = (this.stats.msByKind[kind] ?? 0) + performance.now() - t0;
		return kind;
	}

	// -- engine calls, counted and checked --

	private accept(scid: Uint8Array, odcid: Uint8Array | null = null): ServerConnection {
		return this.addon.Connection.accept(scid, odcid, SERVER_ADDR, CLIENT_ADDR, this.config);
	}

	/** Feeds one datagram; true when the engine took it without throwing. */
	private feed(conn: ServerConnection, d: Uint8Array, kind: string): boolean {
		this.trace?.(`recv ${kind} ${Buffer.from(d).toString("hex")}`);
		this.stats.packets++;
		this.stats.byKind[kind] = (this.stats.byKind[kind] ?? 0) + 1;
		try {
			const n = conn.recv(d, RECV_INFO);
			if (n !== d.length) this.violation(`recv returned ${n} for ${d.length} bytes`);
			return true;
		} catch (err) {
			this.trace?.(`recv threw ${(err as Error).message}`);
			this.stats.recvErrors++;
			return false;
		}
	}

	private violation(what: string): void {
		if (this.stats.violations.length < 20) this.stats.violations.push(what);
	}

	/** The server's answer, as connection.ts would take it; returns the datagrams. */
	private drain(conn: ServerConnection, r: Rng, keep: boolean): Buffer[] {
		const out: Buffer[] = [];
		for (let guard = 0; guard < 64; guard++) {
			this.trace?.("send");
			if (chance(r, 0.5)) {
				const n = (
					conn as unknown as { sendBatch(b: Uint8Array, s: Uint16Array, m: number, st: number): number }
				).sendBatch(BATCH_BUF, BATCH_SIZES, 8, 1350);
				if (n < 0 || n > 8) this.violation(`sendBatch returned ${n}`);
				for (let i = 0; i < n; i++) {
					if (BATCH_SIZES[i] === 0 || BATCH_SIZES[i] > 1350) this.violation(`sendBatch size ${BATCH_SIZES[i]}`);
					if (keep) out.push(Buffer.from(BATCH_BUF.subarray(i * 1350, i * 1350 + BATCH_SIZES[i])));
				}
				this.stats.serverPackets += n;
				if (n < 8) break;
			} else {
				const res = conn.send(SEND_BUF);
				if (res === null) break;
				if (!(res[0] > 0 && res[0] <= 1350)) this.violation(`send returned ${res[0]}`);
				if (keep) out.push(Buffer.from(SEND_BUF.subarray(0, res[0])));
				this.stats.serverPackets++;
			}
		}
		const t = conn.timeout();
		if (t !== null && !(t >= 0)) this.violation(`timeout() returned ${t}`);
		if (t === 0 || chance(r, 0.05)) {
			this.trace?.("onTimeout");
			conn.onTimeout();
		}
		return out;
	}

	/** The app side: read what is readable, answer some, as the relay's session code would. */
	private serveApp(conn: ServerConnection, r: Rng, streams: number[]): void {
		let ids: number[];
		try {
			ids = conn.readable() as unknown as number[];
		} catch {
			return;
		}
		for (const id of ids) {
			for (let i = 0; i < 16; i++) {
				let got: [number, boolean] | null;
				try {
					got = conn.streamRecv(id, RECV_BUF.subarray(0, chance(r, 0.3) ? 1 + int(r, 64) : 4096));
				} catch {
					break;
				}
				if (got === null) break;
				if (got[0] > 4096) this.violation(`streamRecv returned ${got[0]}`);
				if (!streams.includes(id) && streams.length < 32) streams.push(id);
				if (id % 4 === 0 && got[0] > 0 && chance(r, 0.5)) {
					try {
						conn.streamSend(id, RECV_BUF.subarray(0, got[0]), got[1] && chance(r, 0.5));
					} catch {
						// stopped, reset, finished: the relay would drop it too
					}
				}
				if (got[1]) break;
			}
		}
		if (chance(r, 0.15)) {
			// Open or write to a server stream (uni 3, 7, …; bidi 1, 5, …), or shut one down.
			const id = pick(r, [1, 3, 5, 7, 11, ...streams]);
			try {
				if (chance(r, 0.2)) conn.streamShutdown(id, int(r, 2), int(r, 100));
				else {
					const priority = chance(r, 0.2);
					if (priority) conn.streamPriority(id, int(r, 9), chance(r, 0.5));
					else conn.streamSend(id, randomBytes(r, chance(r, 0.2) ? 3000 : int(r, 200)), chance(r, 0.2));
				}
				if (!streams.includes(id) && streams.length < 32) streams.push(id);
			} catch {
				// StreamLimit, StreamStopped, InvalidStreamState, Done
			}
		}
	}

	// -- case kinds --

	/** Valid-protected Initials with fuzzed frames and ClientHellos, into a fresh connection. */
	private initialCase(r: Rng): void {
		const conn = this.accept(randomBytes(r, 16));
		const dcidLen = chance(r, 0.9) ? 8 + int(r, 13) : int(r, 21);
		const dcid = randomBytes(r, dcidLen);
		const scid = randomBytes(r, chance(r, 0.9) ? 16 : int(r, 21));
		const keys = initialKeys(dcid, "client");
		const ctx: FrameContext = { level: "initial", serverLargest: -1, streams: [], sane: chance(r, 0.5) ? 1 : 0 };
		const hello = mutateClientHello(r, pick(r, clientHellos()));
		// The CRYPTO stream, in 1–3 pieces (sometimes out of order or overlapping).
		const pieces: [number, Buffer][] = [];
		const cuts = int(r, 3);
		let at = 0;
		for (let i = 0; i <= cuts; i++) {
			const end = i === cuts ? hello.length : at + int(r, hello.length - at + 1);
			pieces.push([at, hello.subarray(at, end)]);
			at = end;
		}
		if (chance(r, 0.1) && pieces.length > 1) pieces.reverse();
		if (chance(r, 0.1)) pieces.push(pieces[int(r, pieces.length)]);
		const packets = 1 + int(r, 6);
		let pn = chance(r, 0.9) ? 0 : int(r, 1 << 20);
		for (let i = 0; i < packets; i++) {
			const parts: Buffer[] = [];
			const piece = pieces[i];
			if (chance(r, 0.3)) parts.push(frames(r, ctx, 3));
			if (piece !== undefined) {
				parts.push(Buffer.concat([Buffer.from([0x06]), varint(piece[0]), varint(piece[1].length), piece[1]]));
			}
			if (piece === undefined || chance(r, 0.3)) parts.push(frames(r, ctx, 4));
			let payload = Buffer.concat(parts);
			// Clients pad Initial datagrams to 1200 bytes (RFC 9000 §14.1); sometimes we do not.
			const target = chance(r, 0.92) ? 1200 - 60 : int(r, 1200);
			if (payload.length < target) payload = Buffer.concat([payload, Buffer.alloc(target - payload.length)]);
			let d = protectLong(
				{
					type: LONG_INITIAL,
					dcid,
					scid,
					token: chance(r, 0.1) ? randomBytes(r, int(r, 80)) : undefined,
					pn,
					pnLen: pick(r, [1, 2, 4, 4] as const),
					payload,
					reserved: chance(r, 0.03) ? 0x0c : 0,
				},
				keys,
			);
			if (d.length < 1200 && chance(r, 0.5)) d = Buffer.concat([d, Buffer.alloc(1200 - d.length)]);
			if (chance(r, 0.05)) d = Buffer.concat([d, mutateBytes(r, d, [])]);
			if (chance(r, 0.05)) d = mutateBytes(r, d, []);
			pn += chance(r, 0.9) ? 1 : int(r, 100) - 10;
			if (pn < 0) pn = 0;
			this.feed(conn, d, "initial-fuzzed");
			if (conn.isEstablished()) this.stats.sessionsFuzzed++;
			this.drain(conn, r, false);
			if (conn.isClosed()) break;
		}
	}

	/** Random and mutated headers into fresh connections; the stateless calls. */
	private rawCase(r: Rng): void {
		const n = 1 + int(r, 8);
		for (let i = 0; i < n; i++) {
			const odcid = chance(r, 0.15) ? randomBytes(r, int(r, 21)) : null;
			const conn = this.accept(randomBytes(r, 1 + int(r, 20)), odcid);
			const d = this.rawDatagram(r);
			this.feed(conn, d, "raw-header");
			this.drain(conn, r, false);
			if (chance(r, 0.3)) this.feed(conn, this.rawDatagram(r), "raw-header");
		}
		if (chance(r, 0.5)) {
			const out = Buffer.alloc(chance(r, 0.9) ? 1500 : int(r, 100));
			const dcid = randomBytes(r, int(r, 25));
			const scid = randomBytes(r, int(r, 25));
			this.stats.statelessCalls += 3;
			this.addon.versionIsSupported(int(r, 2) === 0 ? QUIC_V1 : int(r, 0x100000000));
			try {
				this.addon.negotiateVersion(scid, dcid, out);
			} catch {
				// BufferTooShort, bad lengths
			}
			let newScid = randomBytes(r, int(r, 25));
			let token = randomBytes(r, int(r, 300));
			// libngtcp2 asserts (aborts) on an empty token or a new SCID equal to the client's DCID:
			// found by this fuzzer, off unless `apiEdges` until native/ngtcp2.c checks them itself.
			if (!this.apiEdges && token.length === 0) token = Buffer.from([0]);
			if (!this.apiEdges && newScid.equals(dcid)) newScid = Buffer.concat([newScid, Buffer.from([0xee])]);
			try {
				this.addon.retry(scid, dcid, newScid, token, pick(r, [1, 0, 0xff00001d, int(r, 0x100000000)]), out);
			} catch {
				// bad lengths
			}
		}
	}

	private rawDatagram(r: Rng): Buffer {
		const style = int(r, 6);
		if (style === 0) return randomBytes(r, int(r, 1400));
		if (style === 1) {
			// A short header.
			return Buffer.concat([Buffer.from([0x40 | int(r, 64)]), randomBytes(r, int(r, 1300))]);
		}
		// A long header with fuzzed fields; protected with the Initial keys half of the time.
		const type = chance(r, 0.6) ? LONG_INITIAL : int(r, 4);
		const version = chance(r, 0.7) ? QUIC_V1 : pick(r, [0, 0xff00001d, 0x6b3343cf, 0x1a2a3a4a, int(r, 0x100000000)]);
		const dcid = randomBytes(r, chance(r, 0.7) ? 8 + int(r, 13) : int(r, 256));
		const scid = randomBytes(r, chance(r, 0.7) ? int(r, 21) : int(r, 256));
		if (chance(r, 0.5) && dcid.length <= 255 && type !== 3) {
			const keys = initialKeys(dcid, "client");
			const payload = Buffer.concat([
				frames(r, { level: "initial", serverLargest: -1, streams: [], sane: 0 }, 3),
				Buffer.alloc(int(r, 1200)),
			]);
			const d = protectLong(
				{ type, version, dcid, scid, token: randomBytes(r, int(r, 40)), pn: int(r, 5), payload },
				keys,
			);
			return chance(r, 0.5) ? mutateBytes(r, d, []) : d;
		}
		const head = [
			Buffer.from([0xc0 | (type << 4) | int(r, 16)]),
			Buffer.alloc(4),
			Buffer.from([dcid.length]),
			dcid,
			Buffer.from([scid.length]),
			scid,
		];
		head[1].writeUInt32BE(version >>> 0);
		if (type === LONG_INITIAL) head.push(edgyVarint(r, 100), randomBytes(r, int(r, 60)));
		head.push(chance(r, 0.5) ? edgyVarint(r, 1400) : varint(int(r, 1400)));
		const d = Buffer.concat([...head, randomBytes(r, int(r, 1300))]);
		return chance(r, 0.3) ? mutateBytes(r, d, []) : d;
	}

	// -- sessions --

	/**
	 * A real handshake in memory, quiche client ↔ ngtcp2 server; the client also opens a bidi and a
	 * uni stream. Returns what the fuzzer needs to play the client on, or null when it failed.
	 */
	handshake(r: Rng | null): Session | null {
		const quiche = loadQuiche();
		const clientScid = r ? randomBytes(r, 16) : Buffer.alloc(16, 0x42);
		const serverScid = r ? randomBytes(r, 16) : Buffer.alloc(16, 0x24);
		serverScid[0] = 0;
		const client = quiche.Connection.connect(null, clientScid, CLIENT_ADDR, SERVER_ADDR, this.clientConfig);
		const keylog = join(this.keylogDir, `moq-quic-fuzz-${process.pid}-${this.keylogCount++ % 4}.keylog`);
		rmSync(keylog, { force: true });
		client.setKeylog(keylog);
		const server = this.accept(serverScid);
		const sent: Buffer[] = [];
		const fromServer: Buffer[] = [];
		const buf = Buffer.alloc(1500);
		const streams: number[] = [];
		const rr = r ?? prng(1);
		let wrote = false;
		for (let round = 0; round < 12; round++) {
			let moved = false;
			for (let res = client.send(buf); res !== null; res = client.send(buf)) {
				const d = Buffer.from(buf.subarray(0, res[0]));
				sent.push(d);
				this.feed(server, d, "session-handshake");
				moved = true;
			}
			if (r) this.serveApp(server, rr, streams);
			else this.serveEcho(server);
			for (const d of this.drain(server, rr, true)) {
				fromServer.push(d);
				try {
					client.recv(d, { from: SERVER_ADDR, to: CLIENT_ADDR });
				} catch {
					// the client's business
				}
				moved = true;
			}
			if (client.isEstablished() && !wrote) {
				wrote = true;
				client.streamSend(0, Buffer.from("hello over ngtcp2"), false);
				client.streamSend(2, Buffer.alloc(300, 7), false);
				client.streamSend(4, Buffer.from("second"), false);
			}
			if (!moved && client.isEstablished() && server.isEstablished()) break;
		}
		if (!client.isEstablished() || !server.isEstablished()) return null;
		let secrets: Map<string, Buffer>;
		try {
			secrets = new Map(
				readFileSync(keylog, "utf8")
					.split("\n")
					.filter((l) => l.length > 0)
					.map((l) => l.split(" "))
					.map(([label, , secret]) => [label, Buffer.from(secret, "hex")] as [string, Buffer]),
			);
			rmSync(keylog, { force: true });
		} catch {
			return null;
		}
		const clientApp = secrets.get("CLIENT_TRAFFIC_SECRET_0");
		const serverApp = secrets.get("SERVER_TRAFFIC_SECRET_0");
		const clientHs = secrets.get("CLIENT_HANDSHAKE_TRAFFIC_SECRET");
		if (!clientApp || !serverApp || !clientHs) return null;
		// The cipher suite: the one whose keys open the client's 1-RTT packets.
		let suite: Suite | null = null;
		let clientLargest = -1;
		for (const candidate of ["aes-128-gcm", "chacha20-poly1305", "aes-256-gcm"] as const) {
			const keys = keysFromSecret(clientApp, candidate);
			let largest = -1;
			let ok = false;
			for (const d of sent) {
				for (const where of splitDatagram(d)) {
					if (where.long) continue;
					const got = unprotect(d, where, keys, 16, largest);
					if (got?.payload) {
						ok = true;
						largest = Math.max(largest, got.pn);
					}
				}
			}
			if (ok) {
				suite = candidate;
				clientLargest = largest;
				break;
			}
		}
		if (suite === null) return null;
		this.stats.handshakes++;
		const session: Session = {
			client,
			server,
			serverScid,
			clientScid,
			odcid: Buffer.from(sent[0].subarray(6, 6 + sent[0][5])),
			sent,
			app: keysFromSecret(clientApp, suite),
			serverAppKeys: keysFromSecret(serverApp, suite),
			hs: keysFromSecret(clientHs, suite),
			nextPn: clientLargest + 1,
			serverLargest: -1,
			streams: [0, 2, 4, ...streams],
		};
		for (const d of fromServer) this.trackServer(session, d);
		return session;
	}

	/** The largest 1-RTT packet number the server sent (what an ACK may name). */
	private trackServer(s: Session, d: Uint8Array): void {
		for (const where of splitDatagram(d)) {
			if (where.long) continue;
			const got = unprotect(d, where, s.serverAppKeys, 16, s.serverLargest, false);
			if (got !== null && got.pn > s.serverLargest && got.pn < s.serverLargest + 1000) s.serverLargest = got.pn;
		}
	}

	/** A clean handshake and a stream echo: the addon still works. Throws when it does not. */
	healthCheck(): void {
		const s = this.handshake(null);
		if (s === null) throw new Error("health check: the clean handshake did not complete");
		// The client's bidi data reached the server app and came back.
		const buf = Buffer.alloc(1500);
		let echoed = "";
		for (let round = 0; round < 8 && !echoed.includes("hello"); round++) {
			for (let res = s.client.send(buf); res !== null; res = s.client.send(buf)) {
				this.feed(s.server, Buffer.from(buf.subarray(0, res[0])), "health");
			}
			this.serveEcho(s.server);
			for (const d of this.drain(s.server, prng(round), true)) {
				try {
					s.client.recv(d, { from: SERVER_ADDR, to: CLIENT_ADDR });
				} catch {
					// ignored
				}
			}
			for (const id of s.client.readable()) {
				const got = s.client.streamRecv(id, RECV_BUF);
				if (got !== null) echoed += RECV_BUF.toString("latin1", 0, got[0]);
			}
		}
		if (!echoed.includes("hello over ngtcp2")) throw new Error(`health check: no echo (got "${echoed}")`);
		s.client.close(true, 0, Buffer.alloc(0));
		this.stats.healthChecks++;
	}

	private serveEcho(conn: ServerConnection): void {
		for (const id of conn.readable() as unknown as number[]) {
			for (let got = conn.streamRecv(id, RECV_BUF); got !== null; got = conn.streamRecv(id, RECV_BUF)) {
				if (id % 4 === 0 && got[0] > 0) conn.streamSend(id, RECV_BUF.subarray(0, got[0]), false);
				if (got[1]) break;
			}
		}
	}

	/** A session: play the client with fuzzed packets until the server closes or the budget ends. */
	private sessionCase(r: Rng): void {
		const s = this.handshake(r);
		if (s === null) {
			this.violation("a session handshake did not complete");
			return;
		}
		this.stats.sessionsFuzzed++;
		const budget = 20 + int(r, 200);
		const sane = chance(r, 0.85) ? 1 : 0;
		let afterClose = 0;
		const initialKeysC = initialKeys(s.odcid, "client");
		const dcids = [s.serverScid, ...(s.server.extraScids() as Uint8Array[])];
		for (let i = 0; i < budget; i++) {
			const action = weighted(r, [
				["app-frames", 70],
				["replay-mutated", 10],
				["replay", 3],
				["coalesced", 4],
				["handshake-level", 4],
				["initial-level", 3],
				["short-garbage", 3],
				["reordered-pn", 3],
			] as const);
			let d: Buffer;
			let kind = `session-${action}`;
			switch (action) {
				case "app-frames":
				case "reordered-pn": {
					const ctx: FrameContext = { level: "app", serverLargest: s.serverLargest, streams: s.streams, sane };
					const pn = action === "app-frames" ? s.nextPn++ : Math.max(0, s.nextPn - 1 - int(r, 20));
					const payload = frames(r, ctx, 4);
					this.trace?.(`frames pn ${pn} ${payload.toString("hex")}`);
					d = protectShort(pick(r, dcids), pn, payload, s.app, {
						pnLen: pick(r, [1, 2, 4, 4] as const),
						keyPhase: chance(r, 0.01),
						reserved: chance(r, 0.01) ? 0x18 : 0,
					});
					if (chance(r, 0.02)) d = mutateBytes(r, d, s.sent);
					break;
				}
				case "replay-mutated":
					d = mutateBytes(r, pick(r, s.sent), s.sent);
					break;
				case "replay":
					d = Buffer.from(pick(r, s.sent));
					break;
				case "coalesced": {
					const parts = [pick(r, s.sent), pick(r, s.sent)];
					if (chance(r, 0.5)) parts.reverse();
					d = Buffer.concat(parts).subarray(0, chance(r, 0.3) ? int(r, 2700) : 2700);
					break;
				}
				case "handshake-level": {
					const ctx: FrameContext = { level: "handshake", serverLargest: -1, streams: [], sane };
					d = protectLong(
						{
							type: LONG_HANDSHAKE,
							dcid: s.serverScid,
							scid: s.clientScid,
							pn: 1 + int(r, 50),
							payload: frames(r, ctx, 3),
						},
						s.hs,
					);
					if (chance(r, 0.5)) {
						const ctx2: FrameContext = { level: "app", serverLargest: s.serverLargest, streams: s.streams, sane };
						d = Buffer.concat([d, protectShort(s.serverScid, s.nextPn++, frames(r, ctx2, 2), s.app)]);
					}
					break;
				}
				case "initial-level": {
					const ctx: FrameContext = { level: "initial", serverLargest: -1, streams: [], sane: 0 };
					d = protectLong(
						{
							type: LONG_INITIAL,
							dcid: chance(r, 0.5) ? s.serverScid : s.odcid,
							scid: s.clientScid,
							pn: 2 + int(r, 50),
							payload: Buffer.concat([frames(r, ctx, 3), Buffer.alloc(1100)]),
						},
						initialKeysC,
					);
					break;
				}
				default:
					d = Buffer.concat([Buffer.from([0x40 | int(r, 64)]), pick(r, dcids), randomBytes(r, int(r, 200))]);
					kind = "session-short-garbage";
			}
			this.feed(s.server, d, kind);
			this.serveApp(s.server, r, s.streams);
			for (const out of this.drain(s.server, r, true)) this.trackServer(s, out);
			if (s.server.isClosed() || s.server.isDraining()) {
				if (++afterClose > 2) break;
			}
		}
		if (chance(r, 0.2)) {
			try {
				s.server.close(chance(r, 0.5), int(r, 1000), randomBytes(r, int(r, 50)));
			} catch {
				// already closed
			}
			this.drain(s.server, r, false);
		}
	}
}

export interface Session {
	client: QuicheConnection;
	server: ServerConnection;
	serverScid: Buffer;
	clientScid: Buffer;
	/** The client's first Destination Connection ID (its Initial keys). */
	odcid: Buffer;
	/** The client's datagrams of the handshake, as sent. */
	sent: Buffer[];
	app: PacketKeys;
	serverAppKeys: PacketKeys;
	hs: PacketKeys;
	nextPn: number;
	serverLargest: number;
	streams: number[];
}

/** Runs `packets` packets' worth of cases from `from`, a health check every `checkEvery` cases. */
export async function runFuzz(
	addon: Ngtcp2Native,
	options: {
		seed: number;
		packets: number;
		from?: number;
		/** Run only this one case (a reproducer). */
		only?: number;
		checkEvery?: number;
		apiEdges?: boolean;
		trace?: (event: string) => void;
		onCase?: (index: number) => void;
		onProgress?: (stats: FuzzStats, index: number) => void;
		progressMs?: number;
	},
): Promise<FuzzStats & { lastCase: number }> {
	const fuzzer = new PacketFuzzer(addon, options.apiEdges ?? false);
	fuzzer.healthCheck();
	if (options.trace) fuzzer.trace = options.trace;
	let index = options.only ?? options.from ?? 0;
	const checkEvery = options.checkEvery ?? 2000;
	let lastProgress = performance.now();
	let sinceCheck = 0;
	for (;;) {
		options.onCase?.(index);
		fuzzer.runCase(options.seed, index);
		index++;
		if (++sinceCheck >= checkEvery) {
			sinceCheck = 0;
			fuzzer.healthCheck();
			// Let the event loop turn: Node runs the finalizers of native objects (the engine's
			// connections, the quiche clients and their open keylog files) only then. A run that never
			// yields keeps every one of them: 20 k handshakes ran out of file descriptors.
			(globalThis as { gc?: () => void }).gc?.();
			await new Promise((resolve) => setImmediate(resolve));
		}
		if (options.only !== undefined || fuzzer.stats.packets >= options.packets) break;
		if (options.onProgress && performance.now() - lastProgress >= (options.progressMs ?? 5000)) {
			lastProgress = performance.now();
			options.onProgress(fuzzer.stats, index);
		}
	}
	fuzzer.healthCheck();
	return { ...fuzzer.stats, lastCase: index - 1 };
}

/**
 * The sequence that made libngtcp2 0.12 abort in its next write (ngtcp2_put_uvarintlen: Assertion
 * `n < 2^62`, native/ngtcp2.c "The ACK guard"): after a clean handshake the client skips packet
 * number P, sends P + 1 (the server ACKs it at once, naming P + 1 as its largest), then sends P late,
 * acknowledging every server packet (so the one whose ACK named P + 1); `benign` first sends P and
 * P + 1 the other way round with nothing acknowledged (a reordering ngtcp2 must take). Returns the
 * largest packet number and first range of the server's last ACK by then, and whether P + 3 was
 * acknowledged next (the connection still works).
 */
export function ackOfAckReorder(
	addon: Ngtcp2Native,
	benign = false,
): { largest: number; firstRange: number; p: number; alive: boolean; closed: boolean } {
	const fuzzer = new PacketFuzzer(addon);
	const s = fuzzer.handshake(null);
	if (s === null) throw new Error("ackOfAckReorder: the handshake did not complete");
	const buf = Buffer.alloc(1500);
	let serverLargest = -1;
	let last = { largest: -1, firstRange: -1 };
	const drain = (): void => {
		for (let i = 0; i < 64; i++) {
			const res = s.server.send(buf);
			if (res === null) break;
			const d = Buffer.from(buf.subarray(0, res[0]));
			for (const where of splitDatagram(d)) {
				if (where.long) continue;
				const got = unprotect(d, where, s.serverAppKeys, s.clientScid.length, serverLargest);
				if (got?.payload == null) continue;
				serverLargest = Math.max(serverLargest, got.pn);
				const p = got.payload;
				if (p[0] === 0x02 || p[0] === 0x03) {
					const fields: number[] = [];
					for (let off = 1; fields.length < 4; ) {
						const len = 1 << (p[off] >> 6);
						let v = p[off] & 0x3f;
						for (let k = 1; k < len; k++) v = v * 256 + p[off + k];
						fields.push(v);
						off += len;
					}
					last = { largest: fields[0], firstRange: fields[3] };
				}
			}
		}
	};
	const feed = (pn: number, payload: Buffer): void => {
		s.server.recv(protectShort(s.serverScid, pn, payload, s.app), RECV_INFO);
		drain();
	};
	drain();
	const p = s.nextPn;
	const ping = Buffer.from([0x01]);
	if (benign) {
		feed(p + 1, ping);
		feed(p, ping);
	} else {
		feed(p + 1, ping);
		const ack = Buffer.concat([
			Buffer.from([0x02]),
			varint(serverLargest),
			varint(0),
			varint(0),
			varint(serverLargest),
		]);
		feed(p, Buffer.concat([ack, ping]));
	}
	const before = last;
	feed(p + 3, ping); // out of order: ACKed at once
	const alive = last.largest === p + 3;
	return { ...before, p, alive, closed: s.server.isClosed() || s.server.isDraining() };
}
