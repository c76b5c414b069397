import { DecodeError } from "../../coding/errors.ts";
import { CANCEL, EVICTED, FRAME_TOO_LARGE, PROTOCOL_VIOLATION } from "../../errors/codes.ts";
import { monotonicMicros } from "../../metrics/clock.ts";
import type { RelayTrack } from "../../relay/track.ts";
import type { TransportStream } from "../../transport/types.ts";
import { FrameParser } from "./wire/group.ts";
import { hasFrameTimestamps, type LiteVersion } from "./wire/version.ts";

export interface IngestCounters {
	groupsIn: number;
	framesIn: number;
	bytesIn: number;
}

/**
 * Reads one group stream from a publisher (after its header) straight into the track's ring: each
 * network chunk is copied once, into the ring. Lite-05 frame timestamps are accumulated to absolute
 * values; older versions are stamped with their arrival time in ms (timescale 1000), as moq-relay does.
 */
export class GroupIngest {
	readonly #track: RelayTrack;
	readonly #seq: number;
	readonly #stream: TransportStream;
	readonly #parser: FrameParser;
	readonly #counters: IngestCounters;
	#ts = 0;
	/** When the chunk being parsed arrived (metrics/clock.ts): every frame starting in it carries it. */
	#rx = 0;
	#done = false;
	/** The cache dropped the group mid-way (ring pressure): keep parsing, stop writing. */
	#dropped = false;
	/** Called once when the group ends, however it ends (finish, abort, a bad frame). */
	onDone: (() => void) | null = null;

	constructor(
		track: RelayTrack,
		seq: number,
		stream: TransportStream,
		version: LiteVersion,
		maxFrameBytes: number,
		counters: IngestCounters,
	) {
		this.#track = track;
		this.#seq = seq;
		this.#stream = stream;
		this.#counters = counters;
		const ring = track.ring;
		const parser = new FrameParser(version, maxFrameBytes);
		const stamped = hasFrameTimestamps(version);
		parser.onFrameBegin = (size: number, tsDelta: number) => {
			this.#ts = stamped ? this.#ts + tsDelta : Date.now();
			if (!this.#dropped && !ring.frameBegin(seq, size, this.#ts, this.#rx)) this.#dropped = true;
			counters.framesIn++;
		};
		parser.onFrameData = (view: Uint8Array) => {
			if (!this.#dropped && !ring.frameData(seq, view)) this.#dropped = true;
		};
		parser.onFrameEnd = () => {};
		this.#parser = parser;
		let opened = false;
		try {
			opened = ring.openGroup(seq, Date.now());
		} catch {
			// A group sequence the track already had: the publisher is misbehaving, refuse this stream.
			// After a splice the new route may repeat the group in flight: that is expected, not a fault.
			this.#done = true;
			stream.onData = null;
			stream.stop(track.splices > 0 ? CANCEL : PROTOCOL_VIOLATION);
			return;
		}
		if (!opened) {
			// The cache refused it (ring pressure keeps the latest group): stop the upload.
			this.#done = true;
			stream.onData = null;
			stream.stop(EVICTED);
			return;
		}
		counters.groupsIn++;
		track.notify();
	}

	get done(): boolean {
		return this.#done;
	}

	push(chunk: Uint8Array): void {
		if (this.#done) return;
		this.#counters.bytesIn += chunk.length;
		this.#rx = monotonicMicros();
		try {
			this.#parser.push(chunk);
		} catch (err) {
			const code = err instanceof DecodeError ? err.code : PROTOCOL_VIOLATION;
			this.abort(code === FRAME_TOO_LARGE ? FRAME_TOO_LARGE : code);
			this.#stream.stop(code);
			return;
		}
		this.#track.notify();
	}

	/** FIN: the group is complete, unless it stopped inside a frame. */
	finish(): void {
		if (this.#done) return;
		if (!this.#parser.atBoundary) {
			this.abort(PROTOCOL_VIOLATION);
			return;
		}
		this.#done = true;
		try {
			if (!this.#dropped) this.#track.ring.endGroup(this.#seq);
		} catch {
			// The cache already dropped the group, or the track ended under it: nothing to close.
		}
		this.#track.notify();
		this.onDone?.();
	}

	abort(code: number): void {
		if (this.#done) return;
		this.#done = true;
		// Ring records hold 31-bit codes; anything larger from a peer is reported as a violation.
		try {
			if (!this.#dropped)
				this.#track.ring.abortGroup(this.#seq, code >= 0 && code <= 0x7fffffff ? code : PROTOCOL_VIOLATION);
		} catch {
			// As in finish(): the group or track is already gone from the cache.
		}
		this.#track.notify();
		this.onDone?.();
	}
}
