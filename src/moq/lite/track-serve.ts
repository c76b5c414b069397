import { Rec as RECORD } from "../../cache/layout.ts";
import { RingReader } from "../../cache/ring-reader.ts";
import { Writer } from "../../coding/writer.ts";
import { CANCEL, DROPPED, LAGGED, OLD } from "../../errors/codes.ts";
import { probe } from "../../metrics/collection.ts";
import { recordFanout } from "../../metrics/latency.ts";
import type { FanoutRound, TrackConsumer, TrackHost } from "../../relay/track.ts";
import type { SubscriptionParams } from "../../relay/types.ts";
import type { SharedWriter, TransportSession, TransportStream } from "../../transport/types.ts";
import { frameFanout } from "../fanout.ts";
import { writeFrameChunks } from "../frame-chunks.ts";
import { writeFrameHeader, writeGroupStreamHeader } from "./wire/group.ts";
import { encodeSubscribeEnd, encodeSubscribeOk } from "./wire/subscribe.ts";
import { hasFrameTimestamps, hasSubscribeEnd, hasSubscribeOkGroup, type LiteVersion } from "./wire/version.ts";

/** How long after the last group streams a cleanly ended subscription is ended (see #endTrack). */
const SUBSCRIPTION_END_DELAY_MS = 200;

/** Scratch space for stream and frame headers: transports copy what they are given (see transport/types.ts). */
const scratch = new Uint8Array(32);
const control = new Writer(64);

interface GroupOut {
	readonly seq: number;
	readonly stream: TransportStream;
	/** Wall-clock ms the group opened upstream (expiry). */
	readonly openedAt: number;
	/** Timestamp of the previous frame in this group (lite-05 deltas). */
	prevTs: number;
}

export interface ServeCounters {
	groupsOut: number;
	groupsDropped: number;
	bytesOut: number;
}

/**
 * One viewer's subscription to one relay track: reads the track's ring from this viewer's own
 * position and writes group streams to the viewer. This is the fan-out hot path: no allocation per
 * frame (per group only: its stream and a small state record).
 */
export class TrackServe implements TrackConsumer {
	readonly id: number;
	params: SubscriptionParams;
	readonly #track: TrackHost;
	#reader: RingReader | null = null;
	readonly #transport: TransportSession;
	readonly #control: TransportStream;
	readonly #version: LiteVersion;
	/** lite-05 frame headers carry a timestamp delta: which of the ring's stored headers to send. */
	readonly #timestamps: boolean;
	readonly #groups = new Map<number, GroupOut>();
	readonly #counters: ServeCounters;
	#okSent = false;
	/** Waiting at a GROUP_OPEN for stream credit. */
	#blocked = false;
	#done = false;
	/** Groups below this are not served (explicit start, or past a lapse). */
	#minGroup = 0;
	/**
	 * The lowest group sequence not yet accounted for: every group below it was served, counted as
	 * dropped, or outside the subscription. A skip ahead counts the groups it jumps over from here.
	 */
	#nextSeq = 0;
	/** The viewer's transport writes many streams at once: this serve drains in rounds (drainRound). */
	readonly #shared: SharedWriter | null;
	/**
	 * The ring position of the frame staged in the last round, while its bytes may still be a view of
	 * a ring another worker writes: checked before the next record (-1: none).
	 */
	#stagedAt = -1;

	constructor(
		id: number,
		track: TrackHost,
		transport: TransportSession,
		controlStream: TransportStream,
		version: LiteVersion,
		params: SubscriptionParams,
		counters: ServeCounters,
	) {
		this.id = id;
		this.#track = track;
		this.#transport = transport;
		this.#control = controlStream;
		this.#version = version;
		this.#timestamps = hasFrameTimestamps(version);
		this.params = params;
		this.#counters = counters;
		this.#shared = transport.sharedWriter ?? null;
		probe("serve", this);
		if (params.startGroup !== null) this.#minGroup = params.startGroup;
		// Before lite-05 the acceptance comes first and carries no group.
		if (!hasSubscribeOkGroup(version)) {
			control.clear();
			encodeSubscribeOk(
				control,
				{
					priority: params.priority,
					ordered: params.ordered,
					maxLatencyMs: params.maxLatencyMs,
					startGroup: params.startGroup,
					endGroup: params.endGroup,
					group: 0,
				},
				version,
			);
			controlStream.write(control.view());
			this.#okSent = true;
		}
	}

	get done(): boolean {
		return this.#done;
	}

	/** The viewer's transport session (TrackConsumer.viewer: distinct viewers on the status page). */
	get viewer(): object {
		return this.#transport;
	}

	/** The track's ring is readable: start at the latest group (or the requested one). */
	attach(buffer: SharedArrayBuffer): void {
		if (this.#reader || this.#done) return;
		const reader = new RingReader(buffer);
		if (this.params.startGroup !== null) reader.seekGroup(this.params.startGroup);
		else reader.seekLatest();
		this.#nextSeq = reader.startSeq;
		this.#reader = reader;
	}

	/** The track can't be served any more (its publisher's worker went away). */
	/** Set by the session: how a fault while serving closes the session (see drainConsumers). */
	onFault: ((err: unknown) => void) | null = null;

	fault(err: unknown): void {
		this.onFault?.(err);
	}

	abort(code: number): void {
		this.#resetAll(code);
		this.#finishControl(code);
	}

	end(): void {
		if (this.#done) return;
		this.#endTrack(this.#nextSeq);
	}

	update(params: SubscriptionParams): void {
		this.params = params;
		for (const g of this.#groups.values()) g.stream.setPriority(this.#order(g.seq));
		this.#track.consumerUpdated();
	}

	/** TrackConsumer.fanout: present when the viewer's transport takes shared writes. */
	get fanout(): FanoutRound | null {
		return this.#shared === null ? null : frameFanout;
	}

	drain(): void {
		this.#read(false);
	}

	drainRound(): boolean {
		return this.#read(true);
	}

	/**
	 * Reads records to the end of what the ring holds (false), or, in a round (`round`), up to and
	 * including the next frame, which it stages in the fan-out batch (true).
	 */
	#read(round: boolean): boolean {
		const r = this.#reader;
		if (this.#done || !r) return false;
		if (this.#stagedAt >= 0) {
			// The frame staged last round was written from a view of the ring: if the writer has
			// overwritten it meanwhile the copy may be torn (see fanout.ts).
			const at = this.#stagedAt;
			this.#stagedAt = -1;
			if (!r.validSince(at)) this.#lapped();
		}
		for (;;) {
			const kind = r.next();
			switch (kind) {
				case RECORD.NONE:
					return false;
				case RECORD.LAPPED:
					this.#lapped();
					continue;
				case RECORD.GROUP_OPEN:
					if (!this.#openGroup(r.seq, r.timestamp)) {
						// No stream credit and the group is still fresh: wait at this record for credit
						// (the session calls drain() again on credit, the track on new data).
						r.rewindGroupOpen();
						this.#blocked = true;
						return false;
					}
					if (r.seq >= this.#nextSeq) this.#nextSeq = r.seq + 1;
					continue;
				case RECORD.FRAME_BEGIN: {
					const g = this.#groups.get(r.seq);
					if (!g) continue;
					const delta = r.timestamp - g.prevTs;
					g.prevTs = r.timestamp;
					// A frame's header goes out with its first chunk (the ring stores it there, see
					// cache/layout.ts): one write per frame. An empty frame has no chunk: its header alone.
					if (r.size === 0) {
						const end = writeFrameHeader(scratch, 0, 0, delta, this.#version);
						g.stream.write(scratch.subarray(0, end));
						this.#counters.bytesOut += end;
					}
					// Fan-out latency: received from the publisher → handed to this viewer's transport.
					recordFanout(r.received);
					continue;
				}
				case RECORD.FRAME_DATA: {
					const g = this.#groups.get(r.seq);
					if (!g) continue;
					// A reader on another thread that is far behind could see these bytes overwritten while the
					// transport copies them. Skip ahead well before that can happen, and verify after the copy.
					if (r.writerPosition - r.position > r.capacity >>> 1) {
						this.#lapped();
						continue;
					}
					const from = r.dataOffset - (this.#timestamps ? r.frameHeaderBytes : r.sizeHeaderBytes);
					if (round) {
						const at = r.recordPosition;
						const staged = frameFanout.stage(r, g.stream, this.#shared!, from, this);
						if (staged === -1) {
							this.#lapped();
							continue;
						}
						if (staged >= 0) {
							this.#counters.bytesOut += staged;
							this.#stagedAt = at;
							return true;
						}
						// Too large to stage: written on its own below.
					}
					const written = writeFrameChunks(r, g.stream, from);
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
					g.stream.reset(r.code);
					continue;
				}
				case RECORD.TRACK_END:
					this.#endTrack(r.seq);
					return false;
				case RECORD.TRACK_ABORT:
					this.#resetAll(DROPPED);
					this.#finishControl(r.code || DROPPED);
					return false;
				default:
					continue;
			}
		}
	}

	/**
	 * We fell a ring behind: what we had open can't be completed. Skip to the newest group. Every
	 * group this viewer loses counts as dropped: the ones reset mid-way, and every one the skip
	 * jumps over (often many: a reader blocked on stream credit is lapped by a whole ring).
	 */
	#lapped(): void {
		const open = this.#groups.size;
		this.#resetAll(LAGGED);
		const r = this.#reader;
		if (!r) return;
		r.seekLatest();
		const resume = r.startSeq;
		const skipped = resume > this.#nextSeq ? resume - this.#nextSeq : 0;
		if (resume > this.#nextSeq) this.#nextSeq = resume;
		this.#counters.groupsDropped += open + skipped;
	}

	#order(seq: number): number {
		// Subscriber priority first, then newest group first (or oldest first when ordered).
		const within = this.params.ordered ? 0xffffffff - (seq % 0xffffffff) : seq % 0xffffffff;
		return this.params.priority * 0x100000000 + within;
	}

	get blocked(): boolean {
		return this.#blocked;
	}

	/** Starts serving group `seq`; false when it must wait for stream credit (the caller retries). */
	#openGroup(seq: number, openedAt: number): boolean {
		this.#blocked = false;
		if (seq < this.#minGroup) return true;
		const end = this.params.endGroup;
		if (end !== null && seq > end) return true;
		// Expire older groups still in flight: never the newest.
		const maxLatency = this.params.maxLatencyMs;
		if (maxLatency > 0) {
			for (const g of this.#groups.values()) {
				if (g.seq < seq && g.openedAt < openedAt - maxLatency) {
					this.#groups.delete(g.seq);
					g.stream.reset(OLD);
					this.#counters.groupsDropped++;
				}
			}
		}
		const stream = this.#transport.openUni();
		if (!stream) {
			// No stream credit. A group that is already stale (a newer one exists and this one is past
			// the subscriber's max latency) is dropped; a fresh one waits for credit.
			const r = this.#reader!;
			const stale = maxLatency > 0 && seq < r.latestSeq() && openedAt < r.newestTimestamp() - maxLatency;
			if (!stale) return false;
			r.skipGroup(seq);
			this.#counters.groupsDropped++;
			return true;
		}
		if (!this.#okSent) {
			control.clear();
			encodeSubscribeOk(
				control,
				{ priority: 0, ordered: false, maxLatencyMs: 0, startGroup: null, endGroup: null, group: seq },
				this.#version,
			);
			this.#control.write(control.view());
			this.#okSent = true;
		}
		stream.setPriority(this.#order(seq));
		const hdr = writeGroupStreamHeader(scratch, 0, this.id, seq);
		stream.write(scratch.subarray(0, hdr));
		this.#counters.bytesOut += hdr;
		this.#counters.groupsOut++;
		this.#groups.set(seq, { seq, stream, openedAt, prevTs: 0 });
		return true;
	}

	/**
	 * The track ended cleanly: the last groups' streams are finished now, and the subscription
	 * (SUBSCRIBE_END on lite-05, then FIN) a moment later. The official JS clients drop group data
	 * they have received but not yet read once the subscription ends, so ending both in the same
	 * burst loses the last groups; the delay is per subscription, not per frame.
	 */
	#endTrack(finalExclusive: number): void {
		// The writer has ended: groups still open were closed in the ring (aborted, or complete).
		for (const g of this.#groups.values()) g.stream.finish();
		this.#groups.clear();
		if (this.#done) return;
		this.#done = true;
		this.#track.removeConsumer(this);
		const ctl = this.#control;
		const version = this.#version;
		const end = () => {
			if (hasSubscribeEnd(version)) {
				control.clear();
				encodeSubscribeEnd(control, { group: finalExclusive }, version);
				ctl.write(control.view());
			}
			ctl.finish();
		};
		if (this.#transport.closed) return;
		setTimeout(end, SUBSCRIPTION_END_DELAY_MS);
	}

	#resetAll(code: number): void {
		for (const g of this.#groups.values()) g.stream.reset(code);
		this.#groups.clear();
	}

	#finishControl(resetCode: number): void {
		if (this.#done) return;
		this.#done = true;
		if (resetCode) this.#control.reset(resetCode);
		else this.#control.finish();
		this.#track.removeConsumer(this);
	}

	/** The viewer unsubscribed (FIN) or its session went away: cancel in-flight groups, FIN back. */
	close(reason: "unsubscribe" | "session"): void {
		if (this.#done) return;
		this.#done = true;
		this.#resetAll(CANCEL);
		if (reason === "unsubscribe") this.#control.finish();
		this.#track.removeConsumer(this);
	}
}
