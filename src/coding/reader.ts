import { DecodeError, NEED_MORE } from "./errors.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A synchronous cursor over a byte view. Every read throws NEED_MORE when the view ends early, so a
 * decoder can be retried from its start once more bytes arrive; no await per field.
 */
export class Reader {
	buf: Uint8Array;
	pos: number;
	end: number;

	constructor(buf: Uint8Array, pos = 0, end = buf.length) {
		this.buf = buf;
		this.pos = pos;
		this.end = end;
	}

	/** Re-points the reader (lets one Reader be reused without allocating). */
	reset(buf: Uint8Array, pos = 0, end = buf.length): this {
		this.buf = buf;
		this.pos = pos;
		this.end = end;
		return this;
	}

	get remaining(): number {
		return this.end - this.pos;
	}

	u8(): number {
		if (this.pos >= this.end) throw NEED_MORE;
		return this.buf[this.pos++];
	}

	u16(): number {
		if (this.pos + 2 > this.end) throw NEED_MORE;
		const v = (this.buf[this.pos] << 8) | this.buf[this.pos + 1];
		this.pos += 2;
		return v;
	}

	u32(): number {
		if (this.pos + 4 > this.end) throw NEED_MORE;
		const b = this.buf;
		const p = this.pos;
		this.pos += 4;
		return ((b[p] << 24) >>> 0) + (b[p + 1] << 16) + (b[p + 2] << 8) + b[p + 3];
	}

	bool(): boolean {
		const v = this.u8();
		if (v > 1) throw new DecodeError(`invalid bool ${v}`);
		return v === 1;
	}

	/** A QUIC varint; values above 2^53-1 are a protocol violation (JS peers cannot represent them). */
	varint(): number {
		if (this.pos >= this.end) throw NEED_MORE;
		const b = this.buf;
		const p = this.pos;
		const first = b[p];
		const tag = first >> 6;
		if (tag === 0) {
			this.pos = p + 1;
			return first;
		}
		if (tag === 1) {
			if (p + 2 > this.end) throw NEED_MORE;
			this.pos = p + 2;
			return ((first & 0x3f) << 8) | b[p + 1];
		}
		if (tag === 2) {
			if (p + 4 > this.end) throw NEED_MORE;
			this.pos = p + 4;
			return (((first & 0x3f) << 24) >>> 0) + (b[p + 1] << 16) + (b[p + 2] << 8) + b[p + 3];
		}
		if (p + 8 > this.end) throw NEED_MORE;
		const hi = (((first & 0x3f) << 24) >>> 0) + (b[p + 1] << 16) + (b[p + 2] << 8) + b[p + 3];
		if (hi > 0x1fffff) throw new DecodeError("varint above 2^53-1");
		const lo = ((b[p + 4] << 24) >>> 0) + (b[p + 5] << 16) + (b[p + 6] << 8) + b[p + 7];
		this.pos = p + 8;
		return hi * 0x100000000 + lo;
	}

	/** A view (not a copy) of the next `n` bytes. */
	bytes(n: number): Uint8Array {
		if (this.pos + n > this.end) throw NEED_MORE;
		const v = this.buf.subarray(this.pos, this.pos + n);
		this.pos += n;
		return v;
	}

	/** A varint length then UTF-8; `max` bounds the length before anything is read. */
	string(max = 4096): string {
		const n = this.varint();
		if (n > max) throw new DecodeError(`string of ${n} bytes exceeds ${max}`);
		const v = this.bytes(n);
		try {
			return utf8.decode(v);
		} catch {
			throw new DecodeError("invalid UTF-8");
		}
	}

	skip(n: number): void {
		if (this.pos + n > this.end) throw NEED_MORE;
		this.pos += n;
	}
}
