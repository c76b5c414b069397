/**
 * Hand-built HTTP/3 bytes for driving the WebTransport layer the way Chromium 156 does:
 * its SETTINGS, GREASE, and its Huffman-coded extended CONNECT.
 */

import { writeVarint } from "../../src/coding/varint.ts";
import { Body, TlvParser } from "../../src/webtransport/frames.ts";
import { huffmanEncode } from "../../src/webtransport/huffman.ts";
import { decodeFieldSection, type Field } from "../../src/webtransport/qpack.ts";

export function varints(...values: number[]): number[] {
	const buf = new Uint8Array(8);
	const out: number[] = [];
	for (const v of values) {
		const n = writeVarint(buf, 0, v);
		out.push(...buf.subarray(0, n));
	}
	return out;
}

export function frame(type: number, payload: ArrayLike<number>): Uint8Array {
	return Uint8Array.from([...varints(type, payload.length), ...Array.from(payload)]);
}

export function concat(...parts: ArrayLike<number>[]): Uint8Array {
	return Uint8Array.from(parts.flatMap((p) => Array.from(p)));
}

/** The SETTINGS Chromium 156 sends, with its GREASE id. */
export const CHROMIUM_SETTINGS: [number, number][] = [
	[0x01, 65536],
	[0x06, 16384],
	[0x07, 100],
	[0x33, 1],
	[0xffd277, 1],
	[0x2b603742, 1],
	[0x1f * 0x1234567 + 0x21, 0x55],
];

export function settingsFrame(settings: [number, number][] = CHROMIUM_SETTINGS): Uint8Array {
	return frame(
		0x04,
		settings.flatMap(([id, value]) => varints(id, value)),
	);
}

/** A control stream's opening bytes: type 0x00, SETTINGS, then a GREASE frame as Chromium sends. */
export function controlStreamBytes(settings: [number, number][] = CHROMIUM_SETTINGS): Uint8Array {
	return concat([0x00], settingsFrame(settings), frame(0x1f * 3 + 0x21, [1, 2, 3, 4]));
}

const ascii = (s: string) => new TextEncoder().encode(s);

/** A QPACK string literal, Huffman-coded, whose length has a `prefixBits` prefix under `flags`. */
export function huffmanString(flags: number, prefixBits: number, s: string): number[] {
	const h = huffmanEncode(ascii(s));
	const max = (1 << prefixBits) - 1;
	const out: number[] = [];
	if (h.length < max) out.push(flags | h.length);
	else {
		out.push(flags | max);
		let rest = h.length - max;
		while (rest >= 128) {
			out.push((rest & 0x7f) | 0x80);
			rest >>= 7;
		}
		out.push(rest);
	}
	return out.concat(Array.from(h));
}

/** Chromium's extended CONNECT field section, field for field in its wire order. */
export function chromiumConnectSection(
	path = "/room/abc?jwt=xyz",
	protocols: string | null = '"moq-lite-05", "moq-lite-04", "moql"',
): Uint8Array {
	const bytes = [
		0x00,
		0x00, // Required Insert Count 0, Delta Base 0
		0xd7, // indexed static 23 :scheme https
		0xcf, // indexed static 15 :method CONNECT
		0x50, // literal, static name 0 (:authority)
		...huffmanString(0x80, 7, "127.0.0.1:4443"),
		0x51, // literal, static name 1 (:path)
		...huffmanString(0x80, 7, path),
		...huffmanString(0x28, 3, ":protocol"), // literal name (H=1)
		...huffmanString(0x80, 7, "webtransport"),
		...huffmanString(0x28, 3, "sec-webtransport-http3-draft02"),
		...huffmanString(0x80, 7, "1"),
		0x5f,
		0x4b, // literal, static name 90 (origin): multi-byte 4-bit prefix integer
		...huffmanString(0x80, 7, "https://example.com"),
	];
	if (protocols !== null) {
		bytes.push(...huffmanString(0x28, 3, "wt-available-protocols"), ...huffmanString(0x80, 7, protocols));
	}
	return Uint8Array.from(bytes);
}

export interface ParsedFrame {
	type: number;
	payload: Uint8Array;
}

/** Splits complete bytes into frames. */
export function parseFrames(bytes: ArrayLike<number>): ParsedFrame[] {
	const frames: ParsedFrame[] = [];
	const parser = new TlvParser({
		tlvHeader: () => Body.BUFFER,
		tlvBody: (type, payload) => frames.push({ type, payload: payload.slice() }),
		tlvChunk: () => {},
	});
	parser.push(Uint8Array.from(bytes));
	return frames;
}

/** The fields of every HEADERS frame in `bytes`. */
export function headersIn(bytes: ArrayLike<number>): Field[][] {
	return parseFrames(bytes)
		.filter((f) => f.type === 0x01)
		.map((f) => decodeFieldSection(f.payload, 1 << 20));
}
