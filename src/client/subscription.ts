/**
 * Subscriber side: one SUBSCRIBE (bidi type 2) and the group streams the relay opens for it.
 *
 * Hot path: a group stream is parsed by a pooled `GroupStreamDecoder`; frames reach the callbacks as
 * views into the transport's receive buffer (valid during the call only). Only a frame split across
 * network chunks is assembled, into one scratch buffer per subscription. No promise, closure or
 * allocation per frame.
 * @module
 */

import type { Reader } from "../coding/reader.ts";
import { Writer } from "../coding/writer.ts";
import { CANCEL } from "../errors/codes.ts";
import { ControlReader } from "../moq/control-reader.ts";
import { GroupStreamDecoder } from "../moq/lite/wire/group.ts";
import { BIDI } from "../moq/lite/wire/stream-type.ts";
import { decodeSubscribeResponse, encodeSubscribe, type SubscribeResponse } from "../moq/lite/wire/subscribe.ts";
import type { TransportStream } from "../transport/types.ts";
import { CONTROL } from "./control.ts";

export interface SubscribeOptions {
	/** Subscriber priority (u8, higher first). Default 0. */
	priority?: number;
	/** Groups older than this (relative to the newest) are not worth sending (ms); 0 = no limit. */
	maxLatencyMs?: number;
	/** Deliver groups oldest first. Default false (newest first). */
	ordered?: boolean;
	/** First group wanted; default: the latest. */
	startGroup?: number;
	/** Largest frame accepted (bytes); a bigger one resets that group. Default 16 MiB. */
	maxFrameBytes?: number;
}

/** What a subscription reports. Every callback is optional; set them before data arrives. */
export interface SubscriptionHandlers {
	/** A group stream started. */
	onGroup?: (seq: number) => void;
	/**
	 * One whole frame. `payload` is a view valid only during the call (copy it to keep it);
	 * `timestamp` is the publisher's absolute frame time in its timescale (ms for our publisher).
	 */
	onFrame?: (seq: number, index: number, payload: Uint8Array, timestamp: number) => void;
	/** The group ended: `complete` is true on FIN at a frame boundary, false on reset or garbage. */
	onGroupEnd?: (seq: number, complete: boolean) => void;
	/** lite-05 SUBSCRIBE_OK: the first group the relay will deliver. */
	onStart?: (group: number) => void;
	/** The subscription is over: `code` 0 = ended normally (SUBSCRIBE_END / FIN), else the reset code. */
	onEnd?: (code: number, endGroup: number | null) => void;
}

const DEFAULT_MAX_FRAME = 16 * 1024 * 1024;
const EMPTY = new Uint8Array(0);

/** One in-flight group stream of a subscription. Pooled: reused for later groups. */
class GroupStream {
	readonly decoder: GroupStreamDecoder;
	readonly sub: Subscription;
	stream: TransportStream | null = null;
	seq = -1;
	index = 0;
	timestamp = 0;
	/** Size of the frame being read, and how much of it arrived so far (only when split). */
	frameSize = 0;
	assembled = 0;
	/** The current frame arrived whole in one view (the common case): delivered without copying. */
	delivered = false;
	/** Reassembly space for frames split across network chunks (per group: groups interleave). */
	scratch = new Uint8Array(16 * 1024);

	constructor(sub: Subscription, maxFrameBytes: number) {
		this.sub = sub;
		const d = new GroupStreamDecoder(5, maxFrameBytes);
		d.onHeader = (_id, seq) => {
			this.seq = seq;
			this.index = 0;
			this.timestamp = 0;
			sub.groupStarted(this);
		};
		d.onFrameBegin = (size, tsDelta) => {
			this.timestamp += tsDelta;
			this.frameSize = size;
			this.assembled = 0;
			this.delivered = false;
		};
		d.onFrameData = (view) => {
			if (this.assembled === 0 && view.length === this.frameSize) {
				this.delivered = true;
				sub.frame(this, view);
				return;
			}
			sub.assemble(this, view);
		};
		d.onFrameEnd = () => {
			if (!this.delivered) sub.frame(this, this.frameSize === 0 ? EMPTY : this.scratch.subarray(0, this.frameSize));
			this.index++;
		};
		this.decoder = d;
	}
}

/**
 * A subscription to one track of a broadcast. Created by `MoqClient.subscribe`; the client routes
 * group streams here by subscribe id.
 */
export class Subscription implements SubscriptionHandlers {
	readonly id: number;
	readonly broadcast: string;
	readonly track: string;

	onGroup?: (seq: number) => void;
	onFrame?: (seq: number, index: number, payload: Uint8Array, timestamp: number) => void;
	onGroupEnd?: (seq: number, complete: boolean) => void;
	onStart?: (group: number) => void;
	onEnd?: (code: number, endGroup: number | null) => void;

	/** Counters (plain numbers, read by benches). */
	groupsStarted = 0;
	groupsComplete = 0;
	groupsIncomplete = 0;
	frames = 0;
	bytes = 0;
	/** First group per SUBSCRIBE_OK, and SUBSCRIBE_END's exclusive end, when received. */
	startGroup: number | null = null;
	endGroup: number | null = null;
	ended = false;

	readonly #control: TransportStream;
	readonly #reader: ControlReader;
	readonly #maxFrameBytes: number;
	readonly #pool: GroupStream[] = [];
	readonly #open = new Set<GroupStream>();
	readonly #onClosed: (sub: Subscription) => void;

	/** @internal */
	constructor(
		id: number,
		broadcast: string,
		track: string,
		control: TransportStream,
		options: SubscribeOptions,
		onClosed: (sub: Subscription) => void,
	) {
		this.id = id;
		this.broadcast = broadcast;
		this.track = track;
		this.#control = control;
		this.#maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME;
		this.#onClosed = onClosed;
		this.#reader = new ControlReader(control, CONTROL, (code) => this.#finish(code));

		const w = new Writer(64 + broadcast.length + track.length);
		w.varint(BIDI.SUBSCRIBE);
		encodeSubscribe(
			w,
			{
				id,
				broadcast,
				track,
				priority: options.priority ?? 0,
				ordered: options.ordered ?? false,
				maxLatencyMs: options.maxLatencyMs ?? 0,
				startGroup: options.startGroup ?? null,
				endGroup: null,
			},
			5,
		);
		control.write(w.view());
		control.onData = (chunk) => this.#reader.push(chunk, decodeResponse, this.#onResponse);
		control.onFin = () => {
			control.finish();
			this.#finish(0);
		};
		control.onReset = (code) => this.#finish(code || CANCEL);
		control.onStop = () => this.close();
	}

	readonly #onResponse = (m: SubscribeResponse): void => {
		if (m.type === "ok") {
			this.startGroup = m.group ?? 0;
			this.onStart?.(this.startGroup);
		} else if (m.type === "end") {
			this.endGroup = m.group;
		}
		// DROP: those groups will not come; nothing to do for a live viewer.
	};

	/** Unsubscribes: FIN + STOP_SENDING on the subscribe stream, cancels in-flight groups. */
	close(): void {
		if (this.ended) return;
		this.#control.finish();
		this.#control.stop(CANCEL);
		this.#finish(0);
	}

	/** @internal The session ended: end the subscription without touching its (dead) streams. */
	sessionClosed(code: number): void {
		this.#finish(code || CANCEL);
	}

	/** @internal A group stream for this subscription; `chunk[start..]` follows the `00` type byte. */
	attach(stream: TransportStream, chunk: Uint8Array, start: number): void {
		if (this.ended) {
			stream.onData = null;
			stream.stop(CANCEL);
			return;
		}
		const g = this.#pool.pop() ?? new GroupStream(this, this.#maxFrameBytes);
		g.stream = stream;
		g.seq = -1;
		this.#open.add(g);
		stream.onData = (c) => this.#push(g, c, 0);
		stream.onFin = () => this.#groupFin(g);
		stream.onReset = () => this.#groupDone(g, false);
		this.#push(g, chunk, start);
	}

	#push(g: GroupStream, chunk: Uint8Array, start: number): void {
		if (g.stream === null) return;
		try {
			g.decoder.push(chunk, start);
		} catch {
			// Garbage or a frame over the cap: drop this group only.
			const s = g.stream;
			this.#groupDone(g, false);
			s.stop(CANCEL);
		}
	}

	#groupFin(g: GroupStream): void {
		if (g.stream === null) return;
		let ok = true;
		try {
			g.decoder.finish();
		} catch {
			ok = false;
		}
		this.#groupDone(g, ok);
	}

	#groupDone(g: GroupStream, complete: boolean): void {
		const stream = g.stream;
		if (stream === null) return;
		stream.onData = null;
		stream.onFin = null;
		stream.onReset = null;
		g.stream = null;
		this.#open.delete(g);
		if (g.seq >= 0) {
			if (complete) this.groupsComplete++;
			else this.groupsIncomplete++;
			this.onGroupEnd?.(g.seq, complete);
		}
		g.decoder.reset();
		this.#pool.push(g);
	}

	/** @internal */
	groupStarted(g: GroupStream): void {
		this.groupsStarted++;
		this.onGroup?.(g.seq);
	}

	/** @internal */
	frame(g: GroupStream, payload: Uint8Array): void {
		this.frames++;
		this.bytes += payload.length;
		this.onFrame?.(g.seq, g.index, payload, g.timestamp);
	}

	/** @internal Copies part of a split frame into the group's scratch buffer. */
	assemble(g: GroupStream, view: Uint8Array): void {
		if (g.scratch.length < g.frameSize) {
			let cap = g.scratch.length * 2;
			while (cap < g.frameSize) cap *= 2;
			const next = new Uint8Array(cap);
			next.set(g.scratch.subarray(0, g.assembled));
			g.scratch = next;
		}
		g.scratch.set(view, g.assembled);
		g.assembled += view.length;
	}

	#finish(code: number): void {
		if (this.ended) return;
		this.ended = true;
		for (const g of [...this.#open]) {
			const s = g.stream;
			this.#groupDone(g, false);
			s?.stop(CANCEL);
		}
		this.#onClosed(this);
		this.onEnd?.(code, this.endGroup);
	}
}

function decodeResponse(r: Reader): SubscribeResponse {
	return decodeSubscribeResponse(r, 5);
}
