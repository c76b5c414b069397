import { varintSize, writeVarint } from "./varint.ts";

const utf8 = new TextEncoder();

/**
 * A growable byte builder for control messages. Data-plane code should encode headers into a reused
 * Writer (`clear()` then `view()`), never allocate one per frame.
 */
export class Writer {
	buf: Uint8Array;
	pos = 0;

	constructor(capacity = 256) {
		this.buf = new Uint8Array(capacity);
	}

	clear(): this {
		this.pos = 0;
		return this;
	}

	ensure(n: number): void {
		if (this.pos + n <= this.buf.length) return;
		let cap = this.buf.length * 2;
		while (cap < this.pos + n) cap *= 2;
		const next = new Uint8Array(cap);
		next.set(this.buf.subarray(0, this.pos));
		this.buf = next;
	}

	u8(v: number): this {
		this.ensure(1);
		this.buf[this.pos++] = v;
		return this;
	}

	u16(v: number): this {
		this.ensure(2);
		this.buf[this.pos++] = (v >>> 8) & 0xff;
		this.buf[this.pos++] = v & 0xff;
		return this;
	}

	u32(v: number): this {
		this.ensure(4);
		this.buf[this.pos++] = v >>> 24;
		this.buf[this.pos++] = (v >>> 16) & 0xff;
		this.buf[this.pos++] = (v >>> 8) & 0xff;
		this.buf[this.pos++] = v & 0xff;
		return this;
	}

	bool(v: boolean): this {
		return this.u8(v ? 1 : 0);
	}

	varint(v: number): this {
		this.ensure(8);
		this.pos = writeVarint(this.buf, this.pos, v);
		return this;
	}

	/** Always the 8-byte form (the 0x20/0x21 setup encodes versions this way). */
	varint8(v: number): this {
		this.ensure(8);
		const hi = Math.floor(v / 0x100000000);
		this.u32((0xc0000000 | hi) >>> 0);
		this.u32(v >>> 0);
		return this;
	}

	bytes(v: Uint8Array): this {
		this.ensure(v.length);
		this.buf.set(v, this.pos);
		this.pos += v.length;
		return this;
	}

	string(s: string): this {
		const b = utf8.encode(s);
		this.varint(b.length);
		return this.bytes(b);
	}

	/**
	 * Runs `body` and prefixes what it wrote with its varint length (moq-lite's message framing).
	 * The body is written once then moved by at most 7 bytes; no second buffer.
	 */
	framed(body: (w: this) => void): this {
		const start = this.pos;
		this.ensure(8);
		this.pos += 8; // reserve the largest prefix, then close the gap
		body(this);
		const len = this.pos - start - 8;
		const size = varintSize(len);
		this.buf.copyWithin(start + size, start + 8, this.pos);
		writeVarint(this.buf, start, len);
		this.pos = start + size + len;
		return this;
	}

	/** A view of what was written (valid until the next write). */
	view(): Uint8Array {
		return this.buf.subarray(0, this.pos);
	}

	/** A copy of what was written. */
	finish(): Uint8Array {
		return this.buf.slice(0, this.pos);
	}
}
