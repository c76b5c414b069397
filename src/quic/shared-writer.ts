/**
 * SharedWriter for raw-QUIC sessions on the ngtcp2 engine: the relay's fan-out hands one frame and
 * the streams of every viewer at it, and the engine appends it to all of them in one native call
 * (native/ngtcp2.c writeShared), copying the bytes once into a buffer the streams share until each
 * has it acknowledged. A stream that has bytes queued in JS (behind flow control) or is no longer
 * open is left to its own write(), so its order and its error handling are those of write().
 * WebTransport sessions on the same connections use it too: their streams pass writes through to
 * a QUIC stream unchanged (TransportStream.sharedTarget).
 * @module
 */
import type { SharedWriter, TransportStream } from "../transport/types.ts";
import type { EndpointStats } from "./connection.ts";
import { QuicStream } from "./stream.ts";

/** native/ngtcp2.c writeShared: out[i] = bytes stream i took, or -1 (none: streamSend says why). */
export type WriteSharedNative = (
	slots: Int32Array,
	ids: Float64Array,
	count: number,
	data: Uint8Array,
	out: Float64Array,
) => number;

export class QuicSharedWriter implements SharedWriter {
	readonly #native: WriteSharedNative;
	readonly #stats: EndpointStats;
	#slots = new Int32Array(256);
	#ids = new Float64Array(256);
	#out = new Float64Array(256);
	/** Index into the caller's streams of each entry passed to the engine. */
	#index = new Int32Array(256);

	constructor(native: WriteSharedNative, stats: EndpointStats) {
		this.#native = native;
		this.#stats = stats;
	}

	writeAll(streams: readonly TransportStream[], count: number, data: Uint8Array, taken: Uint8Array): void {
		if (this.#slots.length < count) this.#grow(count);
		const slots = this.#slots;
		const ids = this.#ids;
		const index = this.#index;
		let n = 0;
		for (let i = 0; i < count; i++) {
			const given = streams[i];
			// A WebTransport stream's write() passes its data to its QUIC stream as it is.
			const s = given instanceof QuicStream ? given : given.sharedTarget;
			if (!(s instanceof QuicStream)) continue;
			const slot = s.sharedSlot;
			if (slot < 0 || !s.sharedReady) continue;
			slots[n] = slot;
			ids[n] = s.id;
			index[n] = i;
			n++;
		}
		if (n === 0) return;
		const out = this.#out;
		this.#native(slots, ids, n, data, out);
		this.#stats.sharedWrites++;
		this.#stats.sharedWriteStreams += n;
		for (let j = 0; j < n; j++) {
			const sent = out[j];
			if (sent < 0) continue;
			const i = index[j];
			const given = streams[i];
			(given instanceof QuicStream ? given : (given.sharedTarget as QuicStream)).sharedWritten(data, sent);
			taken[i] = 1;
		}
	}

	#grow(count: number): void {
		const size = Math.max(count, this.#slots.length * 2);
		this.#slots = new Int32Array(size);
		this.#ids = new Float64Array(size);
		this.#out = new Float64Array(size);
		this.#index = new Int32Array(size);
	}
}
