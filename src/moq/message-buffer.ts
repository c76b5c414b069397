import { NeedMoreError } from "../coding/errors.ts";
import { Reader } from "../coding/reader.ts";

/**
 * Accumulates a control stream's bytes and decodes whole messages synchronously. A decoder that
 * throws NEED_MORE is retried from the same position when more bytes arrive; nothing is awaited per
 * field. Control streams are low volume, so the one copy into this buffer is fine; the data plane
 * (group streams) never goes through here.
 */
export class MessageBuffer {
	#buf: Uint8Array;
	#start = 0;
	#end = 0;
	readonly #reader = new Reader(new Uint8Array(0));
	readonly #limit: number;

	constructor(limit: number, initial = 256) {
		this.#buf = new Uint8Array(initial);
		this.#limit = limit;
	}

	get length(): number {
		return this.#end - this.#start;
	}

	push(chunk: Uint8Array): void {
		if (this.#end + chunk.length > this.#buf.length) {
			const live = this.#end - this.#start;
			if (live + chunk.length > this.#limit) throw new RangeError(`control stream buffered over ${this.#limit} bytes`);
			if (this.#start > 0 && live + chunk.length <= this.#buf.length) {
				this.#buf.copyWithin(0, this.#start, this.#end);
			} else {
				let cap = this.#buf.length * 2;
				while (cap < live + chunk.length) cap *= 2;
				const next = new Uint8Array(cap);
				next.set(this.#buf.subarray(this.#start, this.#end));
				this.#buf = next;
			}
			this.#start = 0;
			this.#end = live;
		}
		this.#buf.set(chunk, this.#end);
		this.#end += chunk.length;
	}

	/** Decodes one message, or returns undefined when the buffered bytes are not yet a whole one. */
	tryDecode<T>(decode: (r: Reader) => T): T | undefined {
		if (this.#start === this.#end) return undefined;
		const r = this.#reader.reset(this.#buf, this.#start, this.#end);
		try {
			const value = decode(r);
			this.#start = r.pos;
			if (this.#start === this.#end) this.#start = this.#end = 0;
			return value;
		} catch (err) {
			if (err instanceof NeedMoreError) return undefined;
			throw err;
		}
	}

	/** The unread bytes (a view; valid until the next push). */
	rest(): Uint8Array {
		return this.#buf.subarray(this.#start, this.#end);
	}

	consume(n: number): void {
		this.#start += n;
		if (this.#start >= this.#end) this.#start = this.#end = 0;
	}
}
