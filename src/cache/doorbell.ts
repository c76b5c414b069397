import { CacheError, INTEREST_WORDS, MAX_WORKERS } from "./layout.ts";
import type { RingWriter } from "./ring-writer.ts";

/**
 * Batched cross-thread wake-ups for ring readers. Waking an idle thread costs 40–70 µs, so a
 * writer never wakes anyone per frame: `ring(writer)` only queues the ring, and one flush per
 * event-loop turn (setImmediate) rings each interested worker's doorbell once, however many
 * records and rings changed in that turn. A ring names its interested workers in its header
 * (RingReader.watch). The worker's own doorbell is answered with a direct callback.
 *
 * The doorbells are one Int32 per worker thread in a SharedArrayBuffer made once on the main
 * thread (`Doorbell.createBuffer`) and posted to every worker, which wraps it with its own index.
 * A listening worker waits with Atomics.waitAsync and, on wake, drains all its rings. The counter
 * is re-read before each drain and the wait is armed with the value seen, so a ring that happens
 * during a drain makes the next wait return at once: no lost wake-ups.
 */
export class Doorbell {
	readonly buffer: SharedArrayBuffer;
	readonly self: number;
	/** Flushes run (at most one per event-loop turn with writes). */
	flushes = 0;
	/** Doorbells rung on other workers (Atomics.notify calls). */
	wakesSent = 0;
	/** Wake-ups this worker handled (each drains every ring once). */
	wakesReceived = 0;

	private readonly bells: Int32Array;
	private readonly queue: RingWriter[] = [];
	private readonly targets: Uint8Array;
	private flushScheduled = false;
	private onWake: (() => void) | undefined;
	private seen = 0;
	private listening = false;
	private keepAlive: ReturnType<typeof setInterval> | undefined;

	static createBuffer(workers: number): SharedArrayBuffer {
		if (!Number.isInteger(workers) || workers < 1 || workers > MAX_WORKERS) {
			throw new CacheError(`doorbell workers ${workers} must be an integer in 1..${MAX_WORKERS}`);
		}
		return new SharedArrayBuffer(workers * 4);
	}

	constructor(buffer: SharedArrayBuffer, self: number) {
		this.buffer = buffer;
		this.bells = new Int32Array(buffer);
		if (!Number.isInteger(self) || self < 0 || self >= this.bells.length) {
			throw new CacheError(`doorbell index ${self} is not one of ${this.bells.length} workers`);
		}
		this.self = self;
		this.targets = new Uint8Array(this.bells.length);
	}

	/** Writer side: `writer` has new records; its readers get one wake-up this turn. */
	ring(writer: RingWriter): void {
		if (!writer.doorbellQueued) {
			writer.doorbellQueued = true;
			this.queue.push(writer);
		}
		if (!this.flushScheduled) {
			this.flushScheduled = true;
			setImmediate(this.flush);
		}
	}

	/** Rings every worker interested in a queued ring, once each. Runs from setImmediate. */
	readonly flush = (): void => {
		this.flushScheduled = false;
		if (this.queue.length === 0) return;
		this.flushes++;
		const workers = this.bells.length;
		for (let i = 0; i < this.queue.length; i++) {
			const writer = this.queue[i];
			writer.doorbellQueued = false;
			for (let word = 0; word < INTEREST_WORDS && word * 32 < workers; word++) {
				let mask = writer.interestWord(word);
				while (mask !== 0) {
					const bit = 31 - Math.clz32(mask);
					mask &= ~(1 << bit);
					const worker = word * 32 + bit;
					if (worker < workers) this.targets[worker] = 1;
				}
			}
		}
		this.queue.length = 0;
		let local = false;
		for (let worker = 0; worker < workers; worker++) {
			if (this.targets[worker] === 0) continue;
			this.targets[worker] = 0;
			if (worker === this.self) {
				local = true;
				continue;
			}
			Atomics.add(this.bells, worker, 1);
			Atomics.notify(this.bells, worker, 1);
			this.wakesSent++;
		}
		if (local && this.onWake) this.wake();
	};

	/**
	 * Reader side: calls `onWake` (drain all rings of this worker) whenever this worker's doorbell
	 * rings. Holds a ref'd handle so the thread stays alive while waiting (a pending waitAsync
	 * does not). Call once per worker.
	 */
	listen(onWake: () => void): void {
		if (this.listening) throw new CacheError("doorbell already has a listener");
		this.listening = true;
		this.onWake = onWake;
		this.keepAlive = setInterval(noop, 1 << 30);
		this.seen = Atomics.load(this.bells, this.self);
		this.arm();
	}

	/** Stops listening and lets the thread exit. */
	close(): void {
		if (!this.listening) return;
		this.listening = false;
		this.onWake = undefined;
		clearInterval(this.keepAlive);
		this.keepAlive = undefined;
		// Settle our own pending waitAsync so it does not linger.
		Atomics.add(this.bells, this.self, 1);
		Atomics.notify(this.bells, this.self);
	}

	private arm(): void {
		while (this.listening) {
			const result = waitAsync(this.bells, this.self, this.seen);
			if (result.async) {
				result.value.then(this.woken);
				return;
			}
			// Rung between the last drain and this wait: drain again without waiting.
			this.wake();
		}
	}

	private readonly woken = (): void => {
		if (!this.listening) return;
		this.wake();
		this.arm();
	};

	private wake(): void {
		this.seen = Atomics.load(this.bells, this.self);
		this.wakesReceived++;
		this.onWake?.();
	}
}

function noop(): void {}

// tsconfig's lib (es2023) predates Atomics.waitAsync (es2024); Node 24 has it.
type WaitAsyncResult =
	| { async: false; value: "not-equal" | "timed-out" }
	| { async: true; value: Promise<"ok" | "timed-out"> };
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): WaitAsyncResult }).waitAsync;
