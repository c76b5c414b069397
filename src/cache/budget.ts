import { CacheError } from "./layout.ts";

/**
 * Process-wide bound on the memory held by group caches. The counter lives in a tiny
 * SharedArrayBuffer so every worker thread reserves from the same total: create it once on the
 * main thread, post `buffer` to the workers, wrap it with `new CacheBudget(buffer)` there.
 * Reservations are rare (one per track), so the BigInt atomics here are off the hot path.
 */
export class CacheBudget {
	readonly buffer: SharedArrayBuffer;
	private readonly words: BigInt64Array;

	static create(limitBytes: number): CacheBudget {
		if (!Number.isSafeInteger(limitBytes) || limitBytes < 0) {
			throw new CacheError(`cache budget ${limitBytes} must be a non-negative integer of bytes`);
		}
		const buffer = new SharedArrayBuffer(16);
		const words = new BigInt64Array(buffer);
		words[1] = BigInt(limitBytes);
		return new CacheBudget(buffer);
	}

	constructor(buffer: SharedArrayBuffer) {
		if (buffer.byteLength !== 16) throw new CacheError("not a CacheBudget buffer");
		this.buffer = buffer;
		this.words = new BigInt64Array(buffer);
	}

	get limit(): number {
		return Number(Atomics.load(this.words, 1));
	}

	get used(): number {
		return Number(Atomics.load(this.words, 0));
	}

	/** Reserves `bytes` if the total stays within the limit; false (nothing reserved) otherwise. */
	tryReserve(bytes: number): boolean {
		if (!Number.isSafeInteger(bytes) || bytes < 0) throw new CacheError(`cannot reserve ${bytes} bytes`);
		const want = BigInt(bytes);
		const limit = Atomics.load(this.words, 1);
		let used = Atomics.load(this.words, 0);
		for (;;) {
			if (used + want > limit) return false;
			const seen = Atomics.compareExchange(this.words, 0, used, used + want);
			if (seen === used) return true;
			used = seen;
		}
	}

	release(bytes: number): void {
		if (!Number.isSafeInteger(bytes) || bytes < 0) throw new CacheError(`cannot release ${bytes} bytes`);
		const give = BigInt(bytes);
		let used = Atomics.load(this.words, 0);
		for (;;) {
			if (give > used) throw new CacheError(`cache budget: releasing ${bytes} bytes but only ${used} are reserved`);
			const seen = Atomics.compareExchange(this.words, 0, used, used - give);
			if (seen === used) return;
			used = seen;
		}
	}
}
