/**
 * Reads one subgroup stream from an IETF publisher (after its header) straight into the track's
 * ring: each network chunk is copied once, into the ring. The relay's model has one stream per
 * group with objects 0, 1, 2, …: a stream whose objects skip an ID (or carry Object Does Not Exist)
 * is refused alone (the group is aborted in the cache and the stream stopped); bytes that are not
 * objects at all are the publisher's protocol violation, which closes its session. Frames are
 * stamped with their arrival time in ms (timescale 1000), as moq-relay does for publishers whose
 * timestamps it cannot read: drafts 14–16 declare no timescale for the Timestamp property.
 * @module
 */

import { CANCEL, FRAME_TOO_LARGE, IetfStreamReset, PROTOCOL_VIOLATION, UNSUPPORTED } from "../../errors/codes.ts";
import { monotonicMicros } from "../../metrics/clock.ts";
import type { RelayTrack } from "../../relay/track.ts";
import type { TransportStream } from "../../transport/types.ts";
import type { IetfDraft } from "./version.ts";
import { IetfDecodeError } from "./wire/message.ts";
import { ObjectParser, ObjectStatus } from "./wire/object.ts";

export interface IngestCounters {
	groupsIn: number;
	framesIn: number;
	bytesIn: number;
}

/** What a subgroup stream cannot be, told to the session (which logs it, or closes on a violation). */
export interface IngestHost {
	/** The publisher sent something the relay's model cannot express (the group alone is refused). */
	refused(why: string): void;
	/** Bytes that can never be objects: the session closes with the error's code. */
	violation(err: IetfDecodeError): void;
}

export class IetfGroupIngest {
	readonly #track: RelayTrack;
	readonly #seq: number;
	readonly #stream: TransportStream;
	readonly #parser: ObjectParser;
	readonly #counters: IngestCounters;
	readonly #host: IngestHost;
	/** The next object ID the relay's model allows. */
	#expected = 0;
	#rx = 0;
	#done = false;
	/** The cache dropped the group mid-way (ring pressure): keep parsing, stop writing. */
	#dropped = false;

	constructor(
		track: RelayTrack,
		seq: number,
		stream: TransportStream,
		draft: IetfDraft,
		extensions: boolean,
		maxFrameBytes: number,
		counters: IngestCounters,
		host: IngestHost,
	) {
		this.#track = track;
		this.#seq = seq;
		this.#stream = stream;
		this.#counters = counters;
		this.#host = host;
		const ring = track.ring;
		const parser = new ObjectParser(draft, extensions, maxFrameBytes);
		parser.onObject = (id: number, size: number) => {
			if (this.#done) return;
			if (id !== this.#expected) {
				this.#refuse(`object ID ${id} where ${this.#expected} was next (a gap)`, UNSUPPORTED);
				return;
			}
			this.#expected++;
			if (!this.#dropped && !ring.frameBegin(seq, size, Date.now(), this.#rx)) this.#dropped = true;
			counters.framesIn++;
		};
		parser.onData = (view: Uint8Array) => {
			if (!this.#done && !this.#dropped && !ring.frameData(seq, view)) this.#dropped = true;
		};
		parser.onStatus = (id: number, status: number) => {
			if (this.#done) return;
			if (status === ObjectStatus.DOES_NOT_EXIST) this.#refuse(`object ${id} does not exist (a gap)`, UNSUPPORTED);
		};
		this.#parser = parser;
		let opened = false;
		try {
			opened = ring.openGroup(seq, Date.now());
		} catch {
			// A group the track already had: refused quietly after a splice, as a duplicate otherwise.
			this.#done = true;
			stream.onData = null;
			stream.stop(IetfStreamReset.CANCELLED);
			if (track.splices === 0) host.refused(`group ${seq} sent twice`);
			return;
		}
		if (!opened) {
			this.#done = true;
			stream.onData = null;
			// The cache refused it (ring pressure keeps the latest group): stop the upload.
			stream.stop(IetfStreamReset.CANCELLED);
			return;
		}
		counters.groupsIn++;
		track.notify();
	}

	/** Called once when the group ends, however it ends (finish, abort, a refusal). */
	onDone: (() => void) | null = null;

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
			if (this.#done) return;
			if (this.#parser.tooLarge) {
				this.#refuse((err as Error).message, FRAME_TOO_LARGE);
				return;
			}
			this.abort(PROTOCOL_VIOLATION);
			if (err instanceof IetfDecodeError) this.#host.violation(err);
			else throw err;
			return;
		}
		this.#track.notify();
	}

	/** FIN: the group is complete, unless it stopped inside an object. */
	finish(): void {
		if (this.#done) return;
		if (!this.#parser.atBoundary) {
			this.abort(PROTOCOL_VIOLATION);
			this.#host.violation(new IetfDecodeError("subgroup stream ended inside an object"));
			return;
		}
		this.#done = true;
		try {
			if (!this.#dropped) this.#track.ring.endGroup(this.#seq);
		} catch {
			// The cache already dropped the group, or the track ended under it.
		}
		this.#track.notify();
		this.onDone?.();
	}

	/** Ends the group in the cache with a (moq-lite) code: what its lite viewers' streams are reset with. */
	abort(code: number): void {
		if (this.#done) return;
		this.#done = true;
		try {
			if (!this.#dropped) this.#track.ring.abortGroup(this.#seq, code >= 0 && code <= 0x7fffffff ? code : CANCEL);
		} catch {
			// As in finish().
		}
		this.#track.notify();
		this.onDone?.();
	}

	/** Something the model cannot express: this group alone is refused; the session goes on. */
	#refuse(why: string, code: number): void {
		if (this.#done) return;
		this.abort(code);
		this.#stream.onData = null;
		this.#stream.stop(IetfStreamReset.INTERNAL_ERROR);
		this.#host.refused(why);
	}
}
