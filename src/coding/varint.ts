/** QUIC (RFC 9000 §16) variable-length integers, kept as `number` up to 2^53 - 1. */

export const MAX_VARINT = Number.MAX_SAFE_INTEGER;

/** Encoded size in bytes of `v` (minimal encoding). */
export function varintSize(v: number): 1 | 2 | 4 | 8 {
	if (v < 0x40) return 1;
	if (v < 0x4000) return 2;
	if (v < 0x40000000) return 4;
	return 8;
}

/**
 * Writes `v` at `buf[pos]` and returns the new position. The caller guarantees room (varintSize).
 * Throws RangeError for negative, fractional or > 2^53-1 values: a relay must never emit what JS peers can't read.
 */
export function writeVarint(buf: Uint8Array, pos: number, v: number): number {
	if (v < 0x40 && v >= 0) {
		buf[pos] = v;
		return pos + 1;
	}
	if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`varint out of range: ${v}`);
	if (v < 0x4000) {
		buf[pos] = 0x40 | (v >>> 8);
		buf[pos + 1] = v & 0xff;
		return pos + 2;
	}
	if (v < 0x40000000) {
		buf[pos] = 0x80 | (v >>> 24);
		buf[pos + 1] = (v >>> 16) & 0xff;
		buf[pos + 2] = (v >>> 8) & 0xff;
		buf[pos + 3] = v & 0xff;
		return pos + 4;
	}
	const hi = Math.floor(v / 0x100000000);
	const lo = v >>> 0;
	buf[pos] = 0xc0 | (hi >>> 24);
	buf[pos + 1] = (hi >>> 16) & 0xff;
	buf[pos + 2] = (hi >>> 8) & 0xff;
	buf[pos + 3] = hi & 0xff;
	buf[pos + 4] = lo >>> 24;
	buf[pos + 5] = (lo >>> 16) & 0xff;
	buf[pos + 6] = (lo >>> 8) & 0xff;
	buf[pos + 7] = lo & 0xff;
	return pos + 8;
}
