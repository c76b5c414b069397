import { Rec as RECORD } from "../../cache/layout.ts";
import { RingReader } from "../../cache/ring-reader.ts";
import { CANCEL, DROPPED, LAGGED, NOT_FOUND } from "../../errors/codes.ts";
import { probe } from "../../metrics/collection.ts";
import type { TrackConsumer, TrackHost } from "../../relay/track.ts";
import type { SubscriptionParams } from "../../relay/types.ts";
import type { TransportStream } from "../../transport/types.ts";
import { writeFrameChunks } from "../frame-chunks.ts";
import { writeFrameHeader } from "./wire/group.ts";

const scratch = new Uint8Array(32);

/**
 * Where a fetched group goes: a lite-05 FETCH stream, or an HTTP response (http/media.ts). `write`
 * must not keep a reference to its argument (it is a view of the shared ring) after returning.
 */
export type FetchSink = Pick<TransportStream, "write" | "finish" | "reset">;

/**
 * "lite": each frame as a lite-05 frame header (size, timestamp delta) then its payload (FETCH).
 * "payload": the payloads back to back, nothing else (moq-relay's HTTP `GET /fetch/...`).
 */
export type FetchFraming = "lite" | "payload";

/**
 * lite-05 FETCH: one cached group sent back as frames with no header, then FIN. Follows the group
 * live if it is still being written. `group` "latest" is the newest group in the ring, or the next
 * one to open when the ring has none yet (the caller bounds the wait).
 */
export class FetchServe implements TrackConsumer {
	readonly params: SubscriptionParams;
	onDone: (() => void) | null = null;
	readonly #track: TrackHost;
	#reader: RingReader | null = null;
	readonly #stream: FetchSink;
	/** -1 until "latest" is resolved to a sequence. */
	#group: number;
	readonly #framing: FetchFraming;
	#found = false;
	#prevTs = 0;
	#done = false;

	constructor(track: TrackHost, stream: FetchSink, group: number | "latest", framing: FetchFraming = "lite") {
		this.#track = track;
		this.#stream = stream;
		this.#group = group === "latest" ? -1 : group;
		this.#framing = framing;
		const start = group === "latest" ? null : group;
		this.params = { priority: 0, ordered: true, maxLatencyMs: 0, startGroup: start, endGroup: start };
		probe("serve", this);
	}

	start(): void {
		this.#track.addConsumer(this);
		this.drain();
	}

	attach(buffer: SharedArrayBuffer): void {
		if (this.#reader || this.#done) return;
		const reader = new RingReader(buffer);
		this.#reader = reader;
		if (this.#group < 0) {
			// "latest": the newest group whose start is still cached, else wait for the next to open.
			const seq = reader.latestSeq();
			if (seq >= 0 && reader.seekGroup(seq)) this.#group = seq;
			else reader.seekLatest();
			return;
		}
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

	/** The track ended before its ring reached us: the group asked for will never be served. */
	end(): void {
		this.#end(NOT_FOUND);
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
			if (this.#group < 0 && kind === RECORD.GROUP_OPEN) this.#group = r.seq;
			if (r.seq !== this.#group) {
				if (kind === RECORD.GROUP_OPEN && !this.#found && r.seq > this.#group) return this.#end(NOT_FOUND);
				continue;
			}
			switch (kind) {
				case RECORD.GROUP_OPEN:
					this.#found = true;
					break;
				case RECORD.FRAME_BEGIN: {
					// A frame's header goes out with its first chunk (stored there in the ring, see
					// cache/layout.ts); an empty frame has no chunk, so its header goes alone.
					const delta = r.timestamp - this.#prevTs;
					this.#prevTs = r.timestamp;
					if (this.#framing === "payload" || r.size > 0) break;
					const end = writeFrameHeader(scratch, 0, 0, delta, 5);
					this.#stream.write(scratch.subarray(0, end));
					break;
				}
				case RECORD.FRAME_DATA: {
					const from = this.#framing === "lite" ? r.dataOffset - r.frameHeaderBytes : r.dataOffset;
					if (writeFrameChunks(r, this.#stream, from) < 0) return this.#end(LAGGED);
					break;
				}
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
