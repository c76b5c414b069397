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
 *   Once established, the server connection mostly enables the engine's own reads (enableFastRecv,
 *   as connection.ts does) and about 40 % of the datagrams arrive through the engine's second
 *   network entry point, recvMany (server.ts engineIntake): batches of 1..64 datagrams laid out as
 *   native/udp.c fills them, from the real peer's address, mixed with hostile entries (lengths 0,
 *   1..16, 17, the slot size and past it, negative, huge; another port / family / address; long
 *   headers; a connection ID one byte off; the fixed bit flipped). Each call's contract is checked
 *   (what it must leave, what it must read, out[] and its return value, the state array), what it
 *   left goes to recv as server.ts does, and the session goes on. Some "initial" cases enable it
 *   mid-handshake. recvManyEdges calls it with bad and odd arguments (each must throw, never crash).
 *
 * Packets fed to the engine are counted exactly: one per `recv` call (a datagram, coalesced or not)
 * and one per recvMany batch entry (`recvManyPackets` of them).
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
	opts: { pnLen?: 1 | 2 | 3 | 4; keyPhase?: boolean; reserved?: number; fixedBit?: boolean } = {},
): Buffer {
	const pnLen = opts.pnLen ?? 4;
	const body = payload.length + pnLen < 4 ? Buffer.concat([payload, Buffer.alloc(4)]) : payload;
	// fixedBit false: the fixed bit (0x40) clear, as a peer that agreed grease_quic_bit sends (RFC 9287).
	const fixed = opts.fixedBit === false ? 0 : 0x40;
	const first = fixed | ((opts.reserved ?? 0) & 0x18) | (opts.keyPhase ? 0x04 : 0) | (pnLen - 1);
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
	/** Datagrams fed to the engine (one per `recv` call, one per recvMany batch entry), total and by kind. */
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
	/** Datagrams handed to recvMany (counted in `packets` too), its calls, the datagrams it read. */
	recvManyPackets: number;
	recvManyCalls: number;
	recvManyRead: number;
	/** Of those read, the ones ngtcp2 refused (out[i] odd; counted in recvErrors too). */
	recvManyRefused: number;
	/** Session datagrams recvMany left that then went to recv, as server.ts hands them on (counted in `packets` again). */
	recvManyLeft: number;
	/** recvMany calls with bad or odd arguments (recvManyEdges). */
	recvManyEdgeCalls: number;
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
		recvManyPackets: 0,
		recvManyCalls: 0,
		recvManyRead: 0,
		recvManyRefused: 0,
		recvManyLeft: 0,
		recvManyEdgeCalls: 0,
		violations: [],
	};
}

/** recvMany's meta: int32s per datagram (native/udp.c RECV_META: length, port, family 4|6, 16 address bytes). */
const MANY_META = 7;
/** What out[] holds before recvMany: each entry below `count` must be overwritten, the rest kept. */
const OUT_UNWRITTEN = 0x5a5a5a5a;
/** The connection's state array (native/ngtcp2.c STATE_*, FLAG_*; connection.ts reads them). */
const STATE_FLAGS = 1;
const STATE_SLOT = 3;
const FLAG_DRAINING = 2;
const FLAG_CLOSED = 4;

/** The client's address (CLIENT_ADDR) as recvMany's meta holds it: 4 bytes, then 12 zeros. */
function peerAddr(): Uint8Array {
	const a = new Uint8Array(16);
	a.set(CLIENT_ADDR.host.split(".").map(Number));
	return a;
}

function sameV4(addr: Uint8Array): boolean {
	const mine = peerAddr();
	return addr[0] === mine[0] && addr[1] === mine[1] && addr[2] === mine[2] && addr[3] === mine[3];
}

/** Whether the engine's connection is open (ST_OPEN: recvMany reads only for those). */
function isOpen(conn: ServerConnection): boolean {
	return !conn.isDraining() && !conn.isClosed() && conn.localError() === null;
}

/** One datagram of a recvMany batch. */
interface ManyEntry {
	/** The slot's bytes (cut at the slot size). */
	bytes: Uint8Array;
	/** meta's length: the datagram's, or a hostile one. */
	length: number;
	port: number;
	family: number;
	addr: Uint8Array;
	kind: string;
	/** The source is exactly the peer's as udp.c writes it (recvMany must read it, when the rest agrees). */
	exactPeer: boolean;
	/** A session datagram from the peer, whole: what recvMany leaves, the app takes (recv). */
	fallback: boolean;
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
		const serverScid = randomBytes(r, 16);
		const conn = this.accept(serverScid);
		// Sometimes recvMany reads for it mid-handshake (the API allows it; the relay waits for
		// "established"): 1-RTT-shaped datagrams before the keys exist, the Initials left to recv.
		const early = chance(r, 0.12);
		const cids = early ? [serverScid, ...(conn.extraScids() as Uint8Array[])] : [];
		let earlyOn = false;
		let initial: Buffer = Buffer.alloc(0);
		const earlyGen = (): { d: Buffer; kind: string } =>
			chance(r, 0.2)
				? { d: initial, kind: "initial-fuzzed" }
				: {
						d: Buffer.concat([
							Buffer.from([0x40 | int(r, 64)]),
							Buffer.from(pick(r, cids)),
							randomBytes(r, int(r, 300)),
						]),
						kind: "initial-early-short",
					};
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
			initial = d;
			if (early && i === 0) {
				earlyOn = conn.enableFastRecv();
				if (!earlyOn) this.violation("enableFastRecv returned false for a connection with a slot and a 16-byte ID");
			}
			if (early && chance(r, 0.6)) this.recvManyBatch(r, conn, cids, earlyOn, 1 + int(r, 6), earlyGen);
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

	/**
	 * A session: play the client with fuzzed packets until the server closes or the budget ends.
	 * Once the handshake is done the server connection enables recvMany's reads (enableFastRecv, as
	 * connection.ts does once established; sometimes later, sometimes never), and about 40 % of the
	 * datagrams then arrive in recvMany batches (recvManyBatch) instead of one recv call each.
	 */
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
		const gen = () => this.sessionDatagram(r, s, dcids, sane, initialKeysC);
		// When recvMany may read for this connection: at once (as the relay), later, or never.
		const enableAt = chance(r, 0.8) ? 0 : chance(r, 0.5) ? int(r, budget) : Number.POSITIVE_INFINITY;
		let fastOn = false;
		// recvManyEdges at one point of a few sessions (every session with apiEdges).
		const edgesAt = this.apiEdges || chance(r, 0.03) ? int(r, budget) : Number.POSITIVE_INFINITY;
		let edgesDone = false;
		for (let i = 0; i < budget; ) {
			if (i >= enableAt && !fastOn) {
				this.trace?.("enableFastRecv");
				fastOn = s.server.enableFastRecv();
				if (chance(r, 0.05)) fastOn = s.server.enableFastRecv();
				if (!fastOn) this.violation("enableFastRecv returned false for a connection with a slot and a 16-byte ID");
			}
			if (!edgesDone && i >= edgesAt) {
				edgesDone = true;
				this.recvManyEdges(r, s.server, dcids);
			}
			if (chance(r, 0.055)) {
				// A receive batch: 1..64 datagrams, some of them hostile entries.
				const n = chance(r, 0.4) ? 1 + int(r, 4) : chance(r, 0.67) ? 5 + int(r, 12) : 17 + int(r, 48);
				this.recvManyBatch(r, s.server, dcids, fastOn, n, gen);
				i += n;
			} else {
				const { d, kind } = gen();
				this.feed(s.server, d, kind);
				i++;
			}
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
			// A batch for the closing connection: recvMany must leave every datagram to the app.
			if (fastOn && chance(r, 0.3)) this.recvManyBatch(r, s.server, dcids, fastOn, 1 + int(r, 8), gen);
		}
	}

	/** One fuzzed client datagram of a session (and its kind, for the stats). */
	private sessionDatagram(
		r: Rng,
		s: Session,
		dcids: Uint8Array[],
		sane: number,
		initialKeysC: PacketKeys,
	): { d: Buffer; kind: string } {
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
					// Both sides advertise grease_quic_bit: peers clear the fixed bit in some packets.
					fixedBit: !chance(r, 0.2),
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
				return { d, kind: "session-short-garbage" };
		}
		return { d, kind: `session-${action}` };
	}

	// -- recvMany: the engine's batch intake (server.ts engineIntake) --

	/**
	 * `n` datagrams in one recvMany call, as native/udp.c lays out a recvmmsg batch (datagram i at
	 * buffer[i * slotSize], meta[i * 7 ..]: length, port, family, address), for the established
	 * connection `conn` (IDs `cids`, recvMany enabled when `fastOn`): mostly the session's fuzzed
	 * datagrams from the real peer (so they reach ngtcp2's read path), mixed with hostile entries.
	 * Checks recvMany's contract, then lets the app handle what recvMany left, as server.ts does.
	 */
	private recvManyBatch(
		r: Rng,
		conn: ServerConnection,
		cids: Uint8Array[],
		fastOn: boolean,
		n: number,
		gen: () => { d: Buffer; kind: string },
	): void {
		const slotSize = pick(r, [2048, 4096, 4096, 1500]);
		const entries: ManyEntry[] = [];
		for (let i = 0; i < n; i++) entries.push(this.manyEntry(r, cids, slotSize, gen, entries[i - 1] ?? null));
		// The arrays: exactly as long as the batch (a read past them hits ASan's redzone), or views
		// into longer ones (an offset buffer, a SharedArrayBuffer, out with a tail that must stay).
		const bytes = n * slotSize;
		let buffer: Uint8Array;
		const layout = int(r, 10);
		if (layout < 7) buffer = Buffer.allocUnsafeSlow(bytes);
		else if (layout < 9) {
			const off = 1 + int(r, 64);
			buffer = Buffer.allocUnsafeSlow(bytes + off + int(r, 64)).subarray(off, off + bytes);
		} else buffer = new Uint8Array(new SharedArrayBuffer(bytes));
		buffer.fill(pick(r, [0, 0xff, 0xa5, 0x40]));
		const meta = new Int32Array(n * MANY_META + (chance(r, 0.2) ? int(r, 16) : 0));
		const tail = chance(r, 0.3) ? 1 + int(r, 8) : 0;
		const out = new Int32Array(n + tail).fill(OUT_UNWRITTEN);
		const metaBytes = new Uint8Array(meta.buffer, meta.byteOffset, meta.byteLength);
		for (let i = 0; i < n; i++) {
			const e = entries[i];
			buffer.set(e.bytes.subarray(0, slotSize), i * slotSize);
			meta[i * MANY_META] = e.length;
			meta[i * MANY_META + 1] = e.port;
			meta[i * MANY_META + 2] = e.family;
			metaBytes.set(e.addr, (i * MANY_META + 3) * 4);
		}
		const known = new Set(cids.map((c) => Buffer.from(c).toString("latin1")));
		// What recvMany must do with each entry, from what the slot and meta say.
		const must: ("leave" | "read" | "either")[] = [];
		const why: string[] = [];
		for (let i = 0; i < n; i++) {
			const e = entries[i];
			const len = e.length;
			const at = i * slotSize;
			let leave = "";
			if (len < 17 || len > slotSize) leave = `length ${len} (slot ${slotSize})`;
			else if ((buffer[at] & 0x80) !== 0) leave = "a long header";
			else if (e.port !== CLIENT_ADDR.port || e.family !== 4 || !sameV4(e.addr)) leave = "another source";
			else if (!known.has(Buffer.from(buffer.subarray(at + 1, at + 17)).toString("latin1")))
				leave = "an unknown connection ID";
			why.push(leave);
			must.push(leave !== "" || !fastOn ? "leave" : e.exactPeer ? "read" : "either");
		}
		const openBefore = isOpen(conn);
		const slot = (conn as unknown as { state: Float64Array }).state[STATE_SLOT];
		this.trace?.(
			`recvMany slot ${slotSize} count ${n} ` +
				entries
					.map((e) => `${e.kind}:${e.length}:${e.port}:${e.family}:${Buffer.from(e.bytes).toString("hex")}`)
					.join(" "),
		);
		this.stats.packets += n;
		this.stats.recvManyPackets += n;
		this.stats.recvManyCalls++;
		for (const e of entries) this.stats.byKind[e.kind] = (this.stats.byKind[e.kind] ?? 0) + 1;
		let got: number;
		try {
			got = this.addon.recvMany(buffer, slotSize, meta, n, out);
		} catch (err) {
			this.violation(`recvMany threw on a well-formed batch: ${(err as Error).message}`);
			return;
		}
		this.trace?.(`recvMany returned ${got} [${Array.from(out.subarray(0, n)).join(",")}]`);
		let read = 0;
		let left = -1;
		for (let i = 0; i < n; i++) {
			const v = out[i];
			if (v !== -1 && v !== slot * 2 && v !== slot * 2 + 1) {
				this.violation(`recvMany out[${i}] = ${v}, not -1 or slot ${slot} * 2 + 0|1`);
				continue;
			}
			if (v >= 0) read++;
			if (v >= 0 && (v & 1) !== 0) {
				this.stats.recvManyRefused++;
				this.stats.recvErrors++;
			}
			if (must[i] === "leave" && v !== -1)
				this.violation(`recvMany read a datagram it must leave (${why[i] || "reads not enabled"})`);
			if (v >= 0 && !openBefore) this.violation("recvMany read for a connection that was not open");
			if (must[i] === "read" && openBefore) {
				// It reads every such datagram until a read ends the connection's open state.
				if (v === -1 && left < 0) left = i;
				else if (v >= 0 && left >= 0)
					this.violation(`recvMany read entry ${i} after leaving entry ${left} of the same open connection`);
			}
		}
		for (let i = n; i < out.length; i++)
			if (out[i] !== OUT_UNWRITTEN) this.violation(`recvMany wrote out[${i}] past count ${n}`);
		if (got !== read) this.violation(`recvMany returned ${got}, ${read} entries of out say read`);
		if (left >= 0 && isOpen(conn)) this.violation(`recvMany left entry ${left}, a datagram of an open connection`);
		this.stats.recvManyRead += read;
		if (read > 0) {
			// recvMany refreshed the state array (connection.ts afterEngineRecv reads its flags).
			const st = (conn as unknown as { state: Float64Array }).state;
			const flags = st[STATE_FLAGS];
			if (((flags & FLAG_DRAINING) !== 0) !== conn.isDraining() || ((flags & FLAG_CLOSED) !== 0) !== conn.isClosed())
				this.violation(`state flags ${flags} after recvMany disagree with isDraining/isClosed`);
			if (st[STATE_SLOT] !== slot) this.violation(`the connection's slot changed from ${slot} to ${st[STATE_SLOT]}`);
		}
		// What recvMany left goes through the app (server.ts handle → connection.ts receive → recv),
		// as the relay does: the session's own datagrams from the peer's address, whole.
		for (let i = 0; i < n; i++) {
			const e = entries[i];
			if (out[i] === -1 && e.fallback && e.length > 0 && e.length <= slotSize) {
				this.stats.recvManyLeft++;
				this.feed(conn, e.bytes, e.kind);
			}
		}
	}

	/** One batch entry: a session datagram from the real peer, or a hostile one. */
	private manyEntry(
		r: Rng,
		cids: Uint8Array[],
		slotSize: number,
		gen: () => { d: Buffer; kind: string },
		prev: ManyEntry | null,
	): ManyEntry {
		const { d, kind } = gen();
		const e: ManyEntry = {
			bytes: d,
			length: d.length,
			port: CLIENT_ADDR.port,
			family: 4,
			addr: peerAddr(),
			kind,
			exactPeer: true,
			fallback: true,
		};
		if (chance(r, 0.7)) return e;
		e.fallback = false;
		const variant = weighted(r, [
			["length", 5],
			["long-header", 2],
			["wrong-peer", 3],
			["peer-padding", 1],
			["cid-off", 3],
			["cid-unknown", 1],
			["fixed-bit", 2],
			["slot-edge", 2],
			["dup", 1],
		] as const);
		e.kind = `recvMany-${variant}`;
		// A short header for one of the connection's IDs, `len` bytes (at least 17).
		const ours = (len: number): Buffer => {
			const rest = Math.max(0, len - 17);
			const random = Math.min(rest, 64);
			return Buffer.concat([
				Buffer.from([0x40 | int(r, 64)]),
				Buffer.from(pick(r, cids)),
				randomBytes(r, random),
				Buffer.alloc(rest - random),
			]);
		};
		switch (variant) {
			case "length":
				e.length = pick(r, [
					0,
					1 + int(r, 16),
					17,
					slotSize,
					slotSize + 1,
					-1,
					-(2 ** 31),
					-int(r, 2 ** 31),
					2 ** 31 - 1,
					d.length - 1,
					d.length + 1 + int(r, 16),
					slotSize * (2 + int(r, 4)),
				]);
				break;
			case "long-header":
				e.bytes = d.length >= 17 && chance(r, 0.5) ? Buffer.from(d) : ours(17 + int(r, 100));
				e.bytes[0] |= 0x80;
				e.length = e.bytes.length;
				break;
			case "wrong-peer":
				e.bytes = chance(r, 0.5) ? d : ours(17 + int(r, 100));
				e.length = e.bytes.length;
				switch (int(r, 6)) {
					case 0:
						e.port = pick(r, [CLIENT_ADDR.port + 1, CLIENT_ADDR.port - 1, CLIENT_ADDR.port ^ 0x8000, 0, 65535]);
						break;
					case 1:
						// Values only an int32 holds: the port compared as ntohs(sin_port) must not wrap onto ours.
						e.port = pick(r, [CLIENT_ADDR.port + 65536, CLIENT_ADDR.port - 65536, -1, 2 ** 31 - 1, -(2 ** 31)]);
						break;
					case 2:
						// The same host as IPv6: v4-mapped, or ::1.
						e.family = 6;
						e.addr = chance(r, 0.7)
							? Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1)
							: Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
						break;
					case 3:
						e.family = pick(r, [0, 5, 1, -1, 46, 2 ** 31 - 1, -(2 ** 31), 2, 10]);
						break;
					case 4:
						e.addr = peerAddr();
						e.addr[int(r, 4)] ^= 1 << int(r, 8);
						break;
					default:
						e.addr = pick(r, [Uint8Array.of(1, 0, 0, 127), Uint8Array.of(0, 0, 0, 0), Uint8Array.of(127, 0, 0, 2)]);
						e.addr = Uint8Array.from([...e.addr, ...new Uint8Array(12)]);
				}
				break;
			case "peer-padding":
				// IPv4 is 4 bytes: what lies in the other 12 (udp.c writes zeros) names no other source.
				e.addr = peerAddr();
				for (let k = 4; k < 16; k++) e.addr[k] = int(r, 256);
				e.exactPeer = false;
				break;
			case "cid-off": {
				// One of the connection's IDs, one byte off: no connection's.
				const b = d.length >= 17 && (d[0] & 0x80) === 0 && chance(r, 0.7) ? Buffer.from(d) : ours(17 + int(r, 200));
				const k = 1 + int(r, 16);
				b[k] = chance(r, 0.5) ? b[k] ^ (1 << int(r, 8)) : (b[k] + pick(r, [1, 255])) & 0xff;
				e.bytes = b;
				e.length = b.length;
				break;
			}
			case "cid-unknown": {
				const cid = randomBytes(r, 16);
				if (chance(r, 0.7)) cid[0] = 0; // the worker index of every session's IDs
				e.bytes = Buffer.concat([Buffer.from([0x40 | int(r, 64)]), cid, randomBytes(r, int(r, 100))]);
				e.length = e.bytes.length;
				break;
			}
			case "fixed-bit":
				// A protected short header with its fixed bit flipped: recvMany does not look at it (ngtcp2 does).
				e.bytes = (d[0] & 0x80) === 0 && d.length >= 17 ? Buffer.from(d) : ours(17 + int(r, 100));
				e.bytes[0] ^= 0x40;
				e.length = e.bytes.length;
				break;
			case "slot-edge":
				// Exactly 17 bytes (header, no packet number) or exactly the slot.
				e.bytes = ours(chance(r, 0.5) ? 17 : slotSize);
				e.length = chance(r, 0.8) ? e.bytes.length : e.bytes.length + 1;
				break;
			default:
				// The previous entry again.
				if (prev !== null) {
					e.bytes = prev.bytes;
					e.length = prev.length;
					e.port = prev.port;
					e.family = prev.family;
					e.addr = prev.addr;
					e.exactPeer = prev.exactPeer;
				}
		}
		return e;
	}

	/**
	 * recvManyEdges once per run, against a fresh session that enabled recvMany (the session cases
	 * call it too, in a few of them), so every run covers it.
	 */
	recvManyEdgeSweep(seed: number): void {
		const s = this.handshake(caseRng(seed, -1));
		if (s === null) {
			this.violation("the recvMany edge sweep's handshake did not complete");
			return;
		}
		if (!s.server.enableFastRecv())
			this.violation("enableFastRecv returned false for a connection with a slot and a 16-byte ID");
		this.recvManyEdges(caseRng(seed, -2), s.server, [s.serverScid, ...(s.server.extraScids() as Uint8Array[])]);
		try {
			s.server.close(true, 0, Buffer.alloc(0));
			s.client.close(true, 0, Buffer.alloc(0));
		} catch {
			// already closed
		}
	}

	/**
	 * recvMany's argument checks: each bad call must throw a JS error, never crash or read past an
	 * array; the odd but valid ones (count 0, views, shared memory, one array as meta and out, a
	 * 1 MiB slot) must not throw. The batches name `conn`'s IDs from its peer's address, so a
	 * missing bounds check would read them.
	 */
	recvManyEdges(r: Rng, conn: ServerConnection, cids: Uint8Array[]): void {
		const recvMany = this.addon.recvMany as unknown as (...args: unknown[]) => number;
		const slot = 2048;
		const count = 2 + int(r, 7);
		const packet = (len: number): Buffer =>
			Buffer.concat([Buffer.from([0x40]), Buffer.from(pick(r, cids)), Buffer.alloc(Math.max(0, len - 17), 0x5a)]);
		const fill = (buf: Uint8Array, meta: Int32Array, n: number, slotSize: number): void => {
			const mb = new Uint8Array(meta.buffer, meta.byteOffset, meta.byteLength);
			for (let i = 0; i < n; i++) {
				const p = packet(Math.min(slotSize, 40 + int(r, 60)));
				buf.set(p, i * slotSize);
				meta[i * MANY_META] = p.length;
				meta[i * MANY_META + 1] = CLIENT_ADDR.port;
				meta[i * MANY_META + 2] = 4;
				mb.set(peerAddr(), (i * MANY_META + 3) * 4);
			}
		};
		const buffer = new Uint8Array(count * slot);
		const meta = new Int32Array(count * MANY_META);
		fill(buffer, meta, count, slot);
		const out = new Int32Array(count);
		const detached = new Uint8Array(64);
		structuredClone(detached.buffer, { transfer: [detached.buffer] });
		const detachedOut = new Int32Array(8);
		structuredClone(detachedOut.buffer, { transfer: [detachedOut.buffer] });
		const ab = new ArrayBuffer(count * slot);
		new Uint8Array(ab).set(buffer);
		const must: [string, unknown[]][] = [
			["no arguments", []],
			["4 arguments", [buffer, slot, meta, count]],
			["buffer null", [null, slot, meta, count, out]],
			["buffer undefined", [undefined, slot, meta, count, out]],
			["buffer a string", ["x".repeat(count * slot), slot, meta, count, out]],
			["buffer an ArrayBuffer", [ab, slot, meta, count, out]],
			["buffer a DataView", [new DataView(ab), slot, meta, count, out]],
			["buffer an Int8Array", [new Int8Array(ab), slot, meta, count, out]],
			["buffer a Uint8ClampedArray", [new Uint8ClampedArray(ab), slot, meta, count, out]],
			["buffer a Uint16Array", [new Uint16Array(ab), slot, meta, count, out]],
			["buffer a plain array", [Array.from(buffer.subarray(0, 64)), slot, meta, count, out]],
			["buffer detached", [detached, slot, meta, count, out]],
			["slotSize 0", [buffer, 0, meta, count, out]],
			["slotSize 0, count 0", [buffer, 0, meta, 0, out]],
			["slotSize -1", [buffer, -1, meta, count, out]],
			["slotSize NaN", [buffer, Number.NaN, meta, count, out]],
			["slotSize 1.5", [buffer, 1.5, meta, count, out]],
			["slotSize 2^20 + 1", [buffer, 2 ** 20 + 1, meta, count, out]],
			["slotSize Infinity", [buffer, Number.POSITIVE_INFINITY, meta, count, out]],
			["slotSize 2^64", [buffer, 2 ** 64, meta, count, out]],
			["slotSize a string", [buffer, String(slot), meta, count, out]],
			["slotSize a bigint", [buffer, BigInt(slot), meta, count, out]],
			["slotSize an object", [buffer, { valueOf: () => slot }, meta, count, out]],
			["meta a Uint32Array", [buffer, slot, new Uint32Array(meta.buffer), count, out]],
			["meta a Float64Array", [buffer, slot, new Float64Array(count * MANY_META), count, out]],
			["meta a plain array", [buffer, slot, Array.from(meta), count, out]],
			["meta null", [buffer, slot, null, count, out]],
			["meta a Uint8Array", [buffer, slot, new Uint8Array(meta.buffer), count, out]],
			["meta a DataView", [buffer, slot, new DataView(meta.buffer), count, out]],
			["meta an ArrayBuffer", [buffer, slot, meta.buffer, count, out]],
			["count -1", [buffer, slot, meta, -1, out]],
			["count NaN", [buffer, slot, meta, Number.NaN, out]],
			["count 1.5", [buffer, slot, meta, 1.5, out]],
			["count 2^32", [buffer, slot, meta, 2 ** 32, out]],
			["count a string", [buffer, slot, meta, String(count), out]],
			["count undefined", [buffer, slot, meta, undefined, out]],
			["out a Uint32Array", [buffer, slot, meta, count, new Uint32Array(count)]],
			["out a plain array", [buffer, slot, meta, count, new Array(count).fill(0)]],
			["out null", [buffer, slot, meta, count, null]],
			["out a BigInt64Array", [buffer, slot, meta, count, new BigInt64Array(count)]],
			["out a Float32Array", [buffer, slot, meta, count, new Float32Array(count)]],
			["out detached", [buffer, slot, meta, count, detachedOut]],
			["count past out", [buffer, slot, meta, count, out.subarray(0, count - 1)]],
			["count past meta", [buffer, slot, meta.subarray(0, count * MANY_META - 1), count, out]],
			["count past the buffer", [buffer.subarray(0, count * slot - 1), slot, meta, count, out]],
			["count one past all", [buffer, slot, meta, count + 1, out]],
			["count 2^32 - 1", [buffer, slot, meta, 2 ** 32 - 1, out]],
			["slotSize past the buffer", [buffer, slot * 2, meta, count, out]],
			["slotSize 2^20, count past the buffer", [buffer, 2 ** 20, meta, count, out]],
			["the buffer as meta", [buffer, slot, buffer, count, out]],
		];
		for (const [name, args] of must) {
			this.stats.recvManyEdgeCalls++;
			this.trace?.(`recvMany edge: ${name}`);
			try {
				const got = recvMany(...args);
				this.violation(`recvMany (${name}) returned ${got} instead of throwing`);
			} catch (err) {
				if (!(err instanceof Error)) this.violation(`recvMany (${name}) threw a non-Error: ${String(err)}`);
			}
		}
		// Valid, if odd: must not throw. Each returns how many it read; out must say the same.
		const slotNo = (conn as unknown as { state: Float64Array }).state[STATE_SLOT];
		const valid = (
			name: string,
			buf: Uint8Array,
			slotSize: number,
			m: Int32Array,
			n: number,
			o: Int32Array,
			opts: { check?: boolean; extra?: unknown[] } = {},
		): void => {
			this.stats.recvManyEdgeCalls++;
			this.trace?.(`recvMany edge: ${name}`);
			let got: number;
			try {
				got = recvMany(buf, slotSize, m, n, o, ...(opts.extra ?? []));
			} catch (err) {
				this.violation(`recvMany (${name}) threw: ${(err as Error).message}`);
				return;
			}
			this.stats.packets += n;
			this.stats.recvManyPackets += n;
			this.stats.recvManyCalls++;
			this.stats.byKind["recvMany-api-edge"] = (this.stats.byKind["recvMany-api-edge"] ?? 0) + n;
			if (opts.check === false) return;
			let read = 0;
			for (let i = 0; i < n; i++) {
				if (o[i] >= 0) read++;
				if (o[i] !== -1 && o[i] !== slotNo * 2 && o[i] !== slotNo * 2 + 1)
					this.violation(`recvMany (${name}) out[${i}] = ${o[i]}`);
			}
			if (got !== read) this.violation(`recvMany (${name}) returned ${got}, out says ${read}`);
			this.stats.recvManyRead += read;
		};
		valid("count 0, empty arrays", new Uint8Array(0), 1, new Int32Array(0), 0, new Int32Array(0));
		valid("count 0, detached arrays", detached, 1, new Int32Array(0), 0, detachedOut);
		valid("count 0, slotSize 2^20", new Uint8Array(0), 2 ** 20, new Int32Array(0), 0, new Int32Array(0));
		valid("extra arguments", buffer, slot, meta, count, new Int32Array(count), { extra: ["extra", 1, null] });
		valid("fewer than the arrays hold", buffer, slot, meta, count - 1, new Int32Array(count));
		// One array as meta and out: out[i] lands in meta as it is read. Any result, no crash.
		const alias = new Int32Array(count * MANY_META);
		alias.set(meta);
		valid("meta and out one array", buffer, slot, alias, count, alias, { check: false });
		// Views with offsets, shared memory, a resizable buffer.
		const big = new Uint8Array(count * slot + 100);
		big.set(buffer, 37);
		const metaBig = new Int32Array(count * MANY_META + 5);
		metaBig.set(meta, 3);
		valid(
			"views at offsets",
			big.subarray(37, 37 + count * slot),
			slot,
			metaBig.subarray(3, 3 + count * MANY_META),
			count,
			new Int32Array(count + 2).subarray(1, 1 + count),
		);
		const shared = new Uint8Array(new SharedArrayBuffer(count * slot));
		shared.set(buffer);
		valid("a SharedArrayBuffer", shared, slot, meta, count, new Int32Array(new SharedArrayBuffer(count * 4)));
		const Resizable = ArrayBuffer as unknown as new (
			n: number,
			o: { maxByteLength: number },
		) => ArrayBuffer & { resize(n: number): void };
		const resizable = new Resizable(count * slot, { maxByteLength: count * slot * 2 });
		new Uint8Array(resizable).set(buffer);
		const tracking = new Uint8Array(resizable);
		resizable.resize(count * slot + 1);
		valid("a length-tracking view of a resizable buffer", tracking, slot, meta, count, new Int32Array(count));
		// One datagram of 2^20 bytes (the largest slot), and one of exactly its slot's length.
		const huge = new Uint8Array(2 ** 20);
		huge.set(packet(2 ** 20));
		const hugeMeta = new Int32Array(MANY_META);
		hugeMeta.set([2 ** 20, CLIENT_ADDR.port, 4]);
		new Uint8Array(hugeMeta.buffer).set(peerAddr(), 12);
		valid("one 1 MiB datagram", huge, 2 ** 20, hugeMeta, 1, new Int32Array(1));
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
	if (options.only === undefined) fuzzer.recvManyEdgeSweep(options.seed);
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
