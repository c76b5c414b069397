/**
 * The HPACK/QPACK Huffman code (RFC 7541 Appendix B). The code is canonical: codes of one length
 * are consecutive and assigned in symbol order, so the 257 code lengths below determine every code.
 * Decoding walks bits and compares against the first code of each length, which needs no tree.
 */

import { DecodeError } from "../coding/errors.ts";
import { H3 } from "../errors/codes.ts";

/** Bit length of the code for each symbol 0..255, then EOS (256). RFC 7541 Appendix B, "len" column. */
// biome-ignore format: a 16-per-row table mirrors the RFC's layout and is easier to audit
const CODE_LENGTHS = Uint8Array.of(
	13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
	28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
	6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
	5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
	13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
	7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
	15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
	6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
	20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
	24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
	22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
	21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
	26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
	19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
	20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
	26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
	30,
);

const EOS = 256;
const MAX_LEN = 30;

/** The code of each symbol (right-aligned in `CODE_LENGTHS[sym]` bits). */
export const HUFFMAN_CODES = new Uint32Array(257);
/** Per length: the first code of that length, how many codes have it, and where they start in SORTED. */
const FIRST_CODE = new Int32Array(MAX_LEN + 1);
const COUNT = new Int32Array(MAX_LEN + 1);
const OFFSET = new Int32Array(MAX_LEN + 1);
/** Symbols ordered by (length, symbol): canonical code order. */
const SORTED = new Uint16Array(257);

(function buildCanonicalCode() {
	const order = Array.from({ length: 257 }, (_, sym) => sym);
	order.sort((a, b) => CODE_LENGTHS[a] - CODE_LENGTHS[b] || a - b);
	let code = 0;
	let len = CODE_LENGTHS[order[0]];
	for (let i = 0; i < order.length; i++) {
		const sym = order[i];
		const symLen = CODE_LENGTHS[sym];
		if (symLen !== len) {
			code *= 2 ** (symLen - len);
			len = symLen;
		}
		if (COUNT[len] === 0) {
			FIRST_CODE[len] = code;
			OFFSET[len] = i;
		}
		COUNT[len]++;
		HUFFMAN_CODES[sym] = code;
		SORTED[i] = sym;
		code++;
	}
})();

function huffmanError(message: string): DecodeError {
	return new DecodeError(`huffman: ${message}`, H3.QPACK_DECOMPRESSION_FAILED);
}

/**
 * Decodes a Huffman-coded string literal. Throws DecodeError (QPACK_DECOMPRESSION_FAILED) for an
 * EOS symbol, padding longer than 7 bits, or padding that is not all ones (RFC 7541 §5.2).
 */
export function huffmanDecode(src: Uint8Array): Uint8Array {
	// The shortest code is 5 bits, so the output is at most 8/5 of the input.
	const out = new Uint8Array(Math.floor((src.length * 8) / 5) + 1);
	let n = 0;
	let code = 0;
	let len = 0;
	for (let i = 0; i < src.length; i++) {
		const byte = src[i];
		for (let bit = 7; bit >= 0; bit--) {
			code = code * 2 + ((byte >> bit) & 1);
			len++;
			const index = code - FIRST_CODE[len];
			if (index >= 0 && index < COUNT[len]) {
				const sym = SORTED[OFFSET[len] + index];
				if (sym === EOS) throw huffmanError("EOS symbol in string");
				out[n++] = sym;
				code = 0;
				len = 0;
			} else if (len >= MAX_LEN) {
				throw huffmanError("invalid code");
			}
		}
	}
	if (len > 7) throw huffmanError("padding longer than 7 bits");
	if (code !== 2 ** len - 1) throw huffmanError("padding is not a prefix of EOS");
	return out.subarray(0, n);
}

/** Bytes the Huffman encoding of `src` takes. */
export function huffmanEncodedLength(src: Uint8Array): number {
	let bits = 0;
	for (let i = 0; i < src.length; i++) bits += CODE_LENGTHS[src[i]];
	return Math.ceil(bits / 8);
}

/** Huffman-encodes `src` (padding with EOS's leading ones). Used by tests and optional encoders. */
export function huffmanEncode(src: Uint8Array): Uint8Array {
	const out = new Uint8Array(huffmanEncodedLength(src));
	let n = 0;
	let acc = 0; // pending bits, fewer than 8 between symbols
	let accLen = 0;
	for (let i = 0; i < src.length; i++) {
		const code = HUFFMAN_CODES[src[i]];
		for (let bit = CODE_LENGTHS[src[i]] - 1; bit >= 0; bit--) {
			acc = (acc << 1) | (Math.floor(code / 2 ** bit) & 1);
			if (++accLen === 8) {
				out[n++] = acc;
				acc = 0;
				accLen = 0;
			}
		}
	}
	if (accLen > 0) out[n] = (acc << (8 - accLen)) | (0xff >> accLen);
	return out;
}
