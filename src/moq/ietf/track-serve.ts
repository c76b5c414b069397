/**
 * One IETF viewer's subscription to one relay track: reads the track's ring from the viewer's own
 * position (the start of the latest group) and writes each group as one subgroup stream: subgroup 0,
 * object IDs 0, 1, 2, … (every ID delta 0), each frame's timestamp as the Timestamp property. The
 * same ring feeds moq-lite viewers (src/moq/lite/track-serve.ts); only the framing differs.
 *
 * The fan-out hot path: no allocation or closure per frame (per group only: its stream and a small
 * record). A frame goes out as two writes: its object header (from a scratch buffer), then its
 * payload straight from the ring (the chunks of a frame that are all in already gathered into one).
 * @module
 */

import { Rec as RECORD } from "../../cache/layout.ts";
import { RingReader } from "../../cache/ring-reader.ts";
import { IetfPublishDone, IetfStreamReset } from "../../errors/codes.ts";
import { probe } from "../../metrics/collection.ts";
import { recordFanout } from "../../metrics/latency.ts";
import type { TrackConsumer, TrackHost } from "../../relay/track.ts";
import type { SubscriptionParams } from "../../relay/types.ts";
import type { TransportSession, TransportStream } from "../../transport/types.ts";
import { writeFrameChunks } from "../frame-chunks.ts";
import type { IetfDraft } from "./version.ts";
import { OBJECT_HEADER_MAX, SUBGROUP_HEADER_MAX, writeObjectHeader, writeSubgroupHeader } from "./wire/object.ts";

/** How long after the last group streams a cleanly ended subscription gets its PUBLISH_DONE. */
const PUBLISH_DONE_DELAY_MS = 200;

/** Scratch for stream and object headers: transports copy what they are given (transport/types.ts). */
const scratch = new Uint8Array(Math.max(OBJECT_HEADER_MAX, SUBGROUP_HEADER_MAX) + 8);

interface GroupOut {
	readonly seq: number;
	readonly stream: TransportStream;
	/** Wall-clock ms the group opened upstream (expiry). */
	readonly openedAt: number;
}

export interface ServeCounters {
	groupsOut: number;
	groupsDropped: number;
	bytesOut: number;
}

/** How a subscription tells its session that it is over (PUBLISH_DONE, then forget it). */
export type ServeDone = (serve: IetfTrackServe, status: number, streamCount: number, reason: string) => void;

export class IetfTrackServe implements TrackConsumer {
	/** The SUBSCRIBE's request ID; also the track alias. */
	readonly requestId: number;
	params: SubscriptionParams;
	readonly #track: TrackHost;
	readonly #transport: TransportSession;
	readonly #counters: ServeCounters;
	readonly #onDone: ServeDone;
	/** The session's draft: the varint form of headers and objects, and 18+'s FIRST_OBJECT bit. */
	readonly #draft: IetfDraft;
	#reader: RingReader | null = null;
	readonly #groups = new Map<number, GroupOut>();
	/** Subgroup streams opened (PUBLISH_DONE's stream count). */
	#streams = 0;
	#blocked = false;
	#done = false;
	/** The lowest group sequence not yet accounted for (served, dropped, or outside the subscription). */
	#nextSeq = 0;
	/** Set by the session: how a fault while serving closes the session. */
	onFault: ((err: unknown) => void) | null = null;

	constructor(
		requestId: number,
		track: TrackHost,
		transport: TransportSession,
		params: SubscriptionParams,
		counters: ServeCounters,
		onDone: ServeDone,
		draft: IetfDraft = 16,
	) {
		this.#draft = draft;
		this.requestId = requestId;
		this.#track = track;
		this.#transport = transport;
		this.params = params;
		this.#counters = counters;
		this.#onDone = onDone;
		probe("serve", this);
	}

	get done(): boolean {
		return this.#done;
	}

	get blocked(): boolean {
		return this.#blocked;
	}

	get viewer(): object {
		return this.#transport;
	}

	/** The ring is readable: start at the latest group (every IETF filter is served as "latest"). */
	attach(buffer: SharedArrayBuffer): void {
		if (this.#reader || this.#done) return;
		const reader = new RingReader(buffer);
		reader.seekLatest();
		this.#nextSeq = reader.startSeq;
		this.#reader = reader;
	}

	fault(err: unknown): void {
		this.onFault?.(err);
	}

	abort(_code: number): void {
		this.#resetAll(IetfStreamReset.INTERNAL_ERROR);
		this.#finish(IetfPublishDone.INTERNAL_ERROR, "the track's publisher went away");
	}

	end(): void {
		if (this.#done) return;
		this.#endTrack();
	}

	drain(): void {
		const r = this.#reader;
		if (this.#done || !r) return;
		for (;;) {
			switch (r.next()) {
				case RECORD.NONE:
					return;
				case RECORD.LAPPED:
					this.#lapped();
					continue;
				case RECORD.GROUP_OPEN:
					if (!this.#openGroup(r.seq, r.timestamp)) {
						r.rewindGroupOpen();
						this.#blocked = true;
						return;
					}
					if (r.seq >= this.#nextSeq) this.#nextSeq = r.seq + 1;
					continue;
				case RECORD.FRAME_BEGIN: {
					const g = this.#groups.get(r.seq);
					if (!g) continue;
					// Every object of a served group follows the previous one: ID delta 0 (the first is 0).
					const end = writeObjectHeader(scratch, 0, 0, true, r.timestamp, r.size, this.#draft);
					g.stream.write(scratch.subarray(0, end));
					this.#counters.bytesOut += end;
					recordFanout(r.received);
					continue;
				}
				case RECORD.FRAME_DATA: {
					const g = this.#groups.get(r.seq);
					if (!g) continue;
					if (r.writerPosition - r.position > r.capacity >>> 1) {
						this.#lapped();
						continue;
					}
					const written = writeFrameChunks(r, g.stream, r.dataOffset);
					if (written < 0) {
						this.#lapped();
						continue;
					}
					this.#counters.bytesOut += written;
					continue;
				}
				case RECORD.GROUP_END: {
					const g = this.#groups.get(r.seq);
					if (!g) continue;
					this.#groups.delete(r.seq);
					g.stream.finish();
					continue;
				}
				case RECORD.GROUP_ABORT: {
					const g = this.#groups.get(r.seq);
					if (!g) continue;
					this.#groups.delete(r.seq);
					g.stream.reset(IetfStreamReset.INTERNAL_ERROR);
					continue;
				}
				case RECORD.TRACK_END:
					this.#endTrack();
					return;
				case RECORD.TRACK_ABORT:
					this.#resetAll(IetfStreamReset.INTERNAL_ERROR);
					this.#finish(IetfPublishDone.INTERNAL_ERROR, "the track's publisher went away");
					return;
				default:
					continue;
			}
		}
	}

	/** Fell a ring behind: what was open cannot be completed; skip to the newest group. */
	#lapped(): void {
		const open = this.#groups.size;
		this.#resetAll(IetfStreamReset.DELIVERY_TIMEOUT);
		const r = this.#reader;
		if (!r) return;
		r.seekLatest();
		const resume = r.startSeq;
		const skipped = resume > this.#nextSeq ? resume - this.#nextSeq : 0;
		if (resume > this.#nextSeq) this.#nextSeq = resume;
		this.#counters.groupsDropped += open + skipped;
	}

	#order(seq: number): number {
		const within = this.params.ordered ? 0xffffffff - (seq % 0xffffffff) : seq % 0xffffffff;
		return this.params.priority * 0x100000000 + within;
	}

	/** Starts serving group `seq`; false when it must wait for stream credit. */
	#openGroup(seq: number, openedAt: number): boolean {
		this.#blocked = false;
		const maxLatency = this.params.maxLatencyMs;
		if (maxLatency > 0) {
			for (const g of this.#groups.values()) {
				if (g.seq < seq && g.openedAt < openedAt - maxLatency) {
					this.#groups.delete(g.seq);
					g.stream.reset(IetfStreamReset.DELIVERY_TIMEOUT);
					this.#counters.groupsDropped++;
				}
			}
		}
		const stream = this.#transport.openUni();
		if (!stream) {
			const r = this.#reader!;
			const stale = maxLatency > 0 && seq < r.latestSeq() && openedAt < r.newestTimestamp() - maxLatency;
			if (!stale) return false;
			r.skipGroup(seq);
			this.#counters.groupsDropped++;
			return true;
		}
		stream.setPriority(this.#order(seq));
		const end = writeSubgroupHeader(scratch, 0, this.requestId, seq, 0, true, this.#draft);
		stream.write(scratch.subarray(0, end));
		this.#streams++;
		this.#counters.bytesOut += end;
		this.#counters.groupsOut++;
		this.#groups.set(seq, { seq, stream, openedAt });
		return true;
	}

	/** The track ended cleanly: the open groups are complete in the ring; PUBLISH_DONE a moment after their FINs. */
	#endTrack(): void {
		for (const g of this.#groups.values()) g.stream.finish();
		this.#groups.clear();
		if (this.#done) return;
		this.#done = true;
		this.#track.removeConsumer(this);
		if (this.#transport.closed) return;
		// Per subscription, not per frame: lets the last group streams reach the viewer's library
		// before the subscription's end does (as for moq-lite viewers).
		setTimeout(() => {
			try {
				if (!this.#transport.closed) this.#onDone(this, IetfPublishDone.TRACK_ENDED, this.#streams, "track ended");
			} catch (err) {
				this.onFault?.(err);
			}
		}, PUBLISH_DONE_DELAY_MS);
	}

	#resetAll(code: number): void {
		for (const g of this.#groups.values()) g.stream.reset(code);
		this.#groups.clear();
	}

	#finish(status: number, reason: string): void {
		if (this.#done) return;
		this.#done = true;
		this.#track.removeConsumer(this);
		this.#onDone(this, status, this.#streams, reason);
	}

	/** UNSUBSCRIBE, or the session went away: cancel the groups in flight; nothing more is said. */
	close(): void {
		if (this.#done) return;
		this.#done = true;
		this.#resetAll(IetfStreamReset.CANCELLED);
		this.#track.removeConsumer(this);
	}
}
