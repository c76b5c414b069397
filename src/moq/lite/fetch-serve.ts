import { Rec as RECORD } from "../../cache/layout.ts";
import { RingReader } from "../../cache/ring-reader.ts";
import { CANCEL, DROPPED, LAGGED, NOT_FOUND } from "../../errors/codes.ts";
import type { TrackConsumer, TrackHost } from "../../relay/track.ts";
import type { SubscriptionParams } from "../../relay/types.ts";
import type { TransportStream } from "../../transport/types.ts";
import { writeFrameHeader } from "./wire/group.ts";

const scratch = new Uint8Array(32);

/**
 * lite-05 FETCH: one cached group sent back as frames with no header, then FIN. Follows the group
 * live if it is still being written.
 */
export class FetchServe implements TrackConsumer {
	readonly params: SubscriptionParams;
	onDone: (() => void) | null = null;
	readonly #track: TrackHost;
	#reader: RingReader | null = null;
	readonly #stream: TransportStream;
	readonly #group: number;
	#found = false;
	#prevTs = 0;
	#done = false;

	constructor(track: TrackHost, stream: TransportStream, group: number) {
		this.#track = track;
		this.#stream = stream;
		this.#group = group;
		this.params = { priority: 0, ordered: true, maxLatencyMs: 0, startGroup: group, endGroup: group };
	}

	start(): void {
		this.#track.addConsumer(this);
		this.drain();
	}

	attach(buffer: SharedArrayBuffer): void {
		if (this.#reader || this.#done) return;
		const reader = new RingReader(buffer);
		this.#reader = reader;
		// Not in the cache (any more): refuse at once.
		if (!reader.seekGroup(this.#group)) queueMicrotask(() => this.#end(NOT_FOUND));
	}

	/** Set by the session: how a fault while serving closes the session (see drainConsumers). */
	onFault: ((err: unknown) => void) | null = null;

	fault(err: unknown): void {
		this.onFault?.(err);
	}

	abort(code: number): void {
		this.#end(code);
	}

	drain(): void {
		const r = this.#reader;
		if (!r) return;
		while (!this.#done) {
			const kind = r.next();
			if (kind === RECORD.NONE) return;
			if (kind === RECORD.LAPPED) return this.#end(LAGGED);
			if (kind === RECORD.TRACK_ABORT) return this.#end(DROPPED);
			if (kind === RECORD.TRACK_END) return this.#end(this.#found ? DROPPED : NOT_FOUND);
			if (r.seq !== this.#group) {
				if (kind === RECORD.GROUP_OPEN && !this.#found && r.seq > this.#group) return this.#end(NOT_FOUND);
				continue;
			}
			switch (kind) {
				case RECORD.GROUP_OPEN:
					this.#found = true;
					break;
				case RECORD.FRAME_BEGIN: {
					const end = writeFrameHeader(scratch, 0, r.size, r.timestamp - this.#prevTs, 5);
					this.#prevTs = r.timestamp;
					this.#stream.write(scratch.subarray(0, end));
					break;
				}
				case RECORD.FRAME_DATA:
					this.#stream.write(r.bytes.subarray(r.dataOffset, r.dataOffset + r.dataLength));
					if (!r.stillValid()) return this.#end(LAGGED);
					break;
				case RECORD.GROUP_END:
					return this.#end(0);
				case RECORD.GROUP_ABORT:
					return this.#end(r.code || CANCEL);
			}
		}
	}

	#end(code: number): void {
		if (this.#done) return;
		this.#done = true;
		if (code) this.#stream.reset(code);
		else this.#stream.finish();
		this.#track.removeConsumer(this);
		this.onDone?.();
	}

	close(_reason: "unsubscribe" | "session"): void {
		this.#end(CANCEL);
	}
}
