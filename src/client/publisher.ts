/**
 * Publisher side of the client: the broadcasts we publish, and the relay's requests for them —
 * ANNOUNCE (bidi 1: ANNOUNCE_OK then the active broadcasts, then live changes), SUBSCRIBE (bidi 2:
 * lite-05 SUBSCRIBE_OK `{group}` once the first group is sent) and TRACK (bidi 6: TRACK_INFO).
 * Groups go out as uni streams, one per group per upstream subscription (the relay subscribes once
 * per track and fans out itself).
 * @module
 */

import { ownedCopy } from "../coding/bytes.ts";
import type { Reader } from "../coding/reader.ts";
import { Writer } from "../coding/writer.ts";
import { CANCEL, NOT_FOUND } from "../errors/codes.ts";
import { ControlReader } from "../moq/control-reader.ts";
import {
	type AnnounceRequest,
	decodeAnnounceRequest,
	encodeAnnounce,
	encodeAnnounceOk,
} from "../moq/lite/wire/announce.ts";
import { FRAME_HEADER_MAX, writeFrameHeader, writeGroupStreamHeader } from "../moq/lite/wire/group.ts";
import {
	decodeSubscribe,
	decodeSubscribeUpdate,
	encodeSubscribeEnd,
	encodeSubscribeOk,
	type Subscribe,
} from "../moq/lite/wire/subscribe.ts";
import { decodeTrackRequest, encodeTrackInfo, type TrackRequest } from "../moq/lite/wire/track.ts";
import { hasPrefix, normalizePath, type Path, ROOT, stripPrefix } from "../path/index.ts";
import type { TransportSession, TransportStream } from "../transport/types.ts";
import { CONTROL } from "./control.ts";

export interface PublishOptions {
	/** Track names offered (more can be added later with `track(name)`). */
	tracks?: string[];
	/** TRACK_INFO Publisher Max Latency (ms): how long the relay keeps non-latest groups. Default 5000. */
	maxLatencyMs?: number;
	/** TRACK_INFO publisher priority (u8). Default 0. */
	priority?: number;
}

/** Timestamps are in ms (TRACK_INFO timescale). */
export const TIMESCALE = 1000;

/** One upstream SUBSCRIBE from the relay for one of our tracks. */
interface Upstream {
	readonly id: number;
	readonly stream: TransportStream;
	/** Explicit first group asked for (null: from the latest). */
	readonly startGroup: number | null;
	okSent: boolean;
	/** The group stream currently open toward this subscription, if any. */
	group: TransportStream | null;
	groupSeq: number;
}

const control = new Writer(256);
/** Frame header + payload are written in one call (one copy beats a second native call). */
let frameScratch = new Uint8Array(64 * 1024);

/** A group being written. Frames are sent to every subscription as they come. */
export class GroupWriter {
	readonly seq: number;
	readonly #track: PublishedTrack;
	/** Copies of this group's frames so far, replayed to a subscription that arrives mid-group. */
	readonly frames: Uint8Array[] = [];
	readonly timestamps: number[] = [];
	#prevTs = 0;
	#closed = false;

	/** @internal */
	constructor(track: PublishedTrack, seq: number) {
		this.#track = track;
		this.seq = seq;
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** Sends one frame. `timestamp` is absolute, in ms (default: now, `Date.now()`). */
	writeFrame(payload: Uint8Array, timestamp = Date.now()): void {
		if (this.#closed) throw new Error(`group ${this.seq} is closed`);
		const ts = Math.max(0, Math.round(timestamp));
		const delta = ts - this.#prevTs;
		this.#prevTs = ts;
		this.frames.push(ownedCopy(payload));
		this.timestamps.push(ts);
		this.#track.sendFrame(this, payload, delta);
	}

	/** FIN on every subscription's stream: the group is complete. */
	close(): void {
		if (this.#closed) return;
		this.#closed = true;
		this.#track.groupClosed(this, 0);
	}

	/** Resets every subscription's stream: the group is truncated. */
	abort(code = CANCEL): void {
		if (this.#closed) return;
		this.#closed = true;
		this.#track.groupClosed(this, code || CANCEL);
	}
}

/** A track of a published broadcast. */
export class PublishedTrack {
	readonly name: string;
	readonly broadcast: PublishedBroadcast;
	/** Called when the relay subscribes (e.g. to start producing). */
	onSubscribe: (() => void) | null = null;
	/** Counters: groups opened on some subscription, and groups a subscription missed (no stream credit). */
	groupsSent = 0;
	groupsSkipped = 0;

	readonly #subs = new Set<Upstream>();
	readonly #transport: TransportSession;
	#nextSeq = 0;
	#current: GroupWriter | null = null;
	#ended = false;

	/** @internal */
	constructor(broadcast: PublishedBroadcast, name: string, transport: TransportSession) {
		this.broadcast = broadcast;
		this.name = name;
		this.#transport = transport;
	}

	/** Active upstream subscriptions (normally 0 or 1: the relay subscribes once). */
	get subscribers(): number {
		return this.#subs.size;
	}

	/** The next group sequence `openGroup()` will use. */
	get nextSequence(): number {
		return this.#nextSeq;
	}

	/**
	 * Starts a group (the previous one, if still open, is closed first). `seq` defaults to one past
	 * the last group. Write frames with `writeFrame`, then `close()`.
	 */
	openGroup(seq = this.#nextSeq): GroupWriter {
		if (this.#ended) throw new Error(`track ${this.name} has ended`);
		this.#current?.close();
		const g = new GroupWriter(this, seq);
		this.#nextSeq = seq + 1;
		this.#current = g;
		for (const sub of this.#subs) this.#openOn(sub, g);
		return g;
	}

	/** Writes a whole group: every frame, then FIN. Returns its sequence. */
	writeGroup(frames: Iterable<Uint8Array>, timestamp?: number): number;
	/** Streams a group from an async source (frames are sent as they come), then FIN. */
	writeGroup(frames: AsyncIterable<Uint8Array>, timestamp?: number): Promise<number>;
	writeGroup(frames: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, timestamp?: number): number | Promise<number> {
		const g = this.openGroup();
		if (Symbol.asyncIterator in frames) {
			return (async () => {
				try {
					for await (const f of frames) if (!g.closed) g.writeFrame(f, timestamp ?? Date.now());
					g.close();
				} catch (err) {
					g.abort();
					throw err;
				}
				return g.seq;
			})();
		}
		const ts = timestamp ?? Date.now();
		for (const f of frames) g.writeFrame(f, ts);
		g.close();
		return g.seq;
	}

	/** Ends the track: SUBSCRIBE_END (exclusive: the next sequence) and FIN toward every subscription. */
	close(): void {
		if (this.#ended) return;
		this.#current?.close();
		this.#ended = true;
		for (const sub of [...this.#subs]) this.#endSub(sub);
	}

	/** @internal A SUBSCRIBE from the relay. */
	addSubscription(m: Subscribe, stream: TransportStream): void {
		const sub: Upstream = {
			id: m.id,
			stream,
			startGroup: m.startGroup,
			okSent: false,
			group: null,
			groupSeq: -1,
		};
		if (this.#ended) {
			this.#subs.add(sub);
			this.#endSub(sub);
			return;
		}
		this.#subs.add(sub);
		const reader = new ControlReader(stream, CONTROL, () => this.#dropSub(sub, CANCEL));
		// SUBSCRIBE_UPDATE: priorities and latency do not change what a live publisher sends.
		stream.onData = (chunk) => reader.push(chunk, decodeUpdate, ignore);
		stream.onFin = () => {
			this.#dropSub(sub, CANCEL);
			stream.finish();
		};
		stream.onReset = () => this.#dropSub(sub, CANCEL);
		stream.onStop = () => {
			this.#dropSub(sub, CANCEL);
			stream.reset(CANCEL);
		};
		// Mid-group arrival: replay the current group so the viewer need not wait a whole group.
		const g = this.#current;
		if (g !== null && !g.closed) {
			this.#openOn(sub, g);
			if (sub.group !== null) {
				const target = sub.group;
				let prev = 0;
				for (let i = 0; i < g.frames.length; i++) {
					writeFrame(target, g.frames[i], g.timestamps[i] - prev);
					prev = g.timestamps[i];
				}
			}
		}
		this.onSubscribe?.();
	}

	/** @internal */
	sendFrame(g: GroupWriter, payload: Uint8Array, delta: number): void {
		for (const sub of this.#subs) {
			if (sub.group !== null && sub.groupSeq === g.seq) writeFrame(sub.group, payload, delta);
		}
	}

	/** @internal */
	groupClosed(g: GroupWriter, code: number): void {
		if (this.#current === g) this.#current = null;
		for (const sub of this.#subs) {
			if (sub.group === null || sub.groupSeq !== g.seq) continue;
			if (code === 0) sub.group.finish();
			else sub.group.reset(code);
			sub.group = null;
		}
	}

	#openOn(sub: Upstream, g: GroupWriter): void {
		if (sub.startGroup !== null && g.seq < sub.startGroup) return;
		// One group at a time per subscription: a newer group supersedes an unfinished one.
		if (sub.group !== null) {
			sub.group.finish();
			sub.group = null;
		}
		const s = this.#transport.openUni();
		if (s === null) {
			this.groupsSkipped++;
			return;
		}
		if (!sub.okSent) {
			sub.okSent = true;
			control.clear();
			encodeSubscribeOk(control, { group: g.seq }, 5);
			sub.stream.write(control.view());
		}
		const end = writeGroupStreamHeader(control.clear().buf, 0, sub.id, g.seq);
		s.write(control.buf.subarray(0, end));
		s.onStop = () => {
			if (sub.group === s) sub.group = null;
			s.reset(CANCEL);
		};
		sub.group = s;
		sub.groupSeq = g.seq;
		this.groupsSent++;
	}

	#endSub(sub: Upstream): void {
		if (!this.#subs.delete(sub)) return;
		if (sub.group !== null) sub.group.finish();
		sub.group = null;
		control.clear();
		encodeSubscribeEnd(control, { group: sub.okSent ? this.#nextSeq : 0 }, 5);
		sub.stream.write(control.view());
		sub.stream.finish();
	}

	#dropSub(sub: Upstream, code: number): void {
		if (!this.#subs.delete(sub)) return;
		if (sub.group !== null) sub.group.reset(code);
		sub.group = null;
	}

	/** @internal The session is gone: forget every subscription. */
	detach(): void {
		this.#subs.clear();
	}
}

function writeFrame(s: TransportStream, payload: Uint8Array, delta: number): void {
	const need = payload.length + FRAME_HEADER_MAX;
	if (frameScratch.length < need) {
		let cap = frameScratch.length * 2;
		while (cap < need) cap *= 2;
		frameScratch = new Uint8Array(cap);
	}
	const p = writeFrameHeader(frameScratch, 0, payload.length, delta, 5);
	frameScratch.set(payload, p);
	s.write(frameScratch.subarray(0, p + payload.length));
}

function decodeUpdate(r: Reader): unknown {
	return decodeSubscribeUpdate(r, 5);
}

function ignore(): void {}

/** A broadcast we publish: announced to the relay while open. */
export class PublishedBroadcast {
	readonly path: Path;
	readonly maxLatencyMs: number;
	readonly priority: number;
	readonly tracks = new Map<string, PublishedTrack>();
	#closed = false;
	readonly #publisher: Publisher;

	/** @internal */
	constructor(publisher: Publisher, path: Path, options: PublishOptions) {
		this.#publisher = publisher;
		this.path = path;
		this.maxLatencyMs = options.maxLatencyMs ?? 5000;
		this.priority = options.priority ?? 0;
		for (const name of options.tracks ?? []) this.track(name);
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** The named track (created on first use). */
	track(name: string): PublishedTrack {
		let t = this.tracks.get(name);
		if (t === undefined) {
			if (this.#closed) throw new Error(`broadcast ${this.path} is closed`);
			t = new PublishedTrack(this, name, this.#publisher.transport);
			this.tracks.set(name, t);
		}
		return t;
	}

	/** Ends every track and withdraws the announcement. */
	close(): void {
		if (this.#closed) return;
		this.#closed = true;
		for (const t of this.tracks.values()) t.close();
		this.#publisher.unpublish(this);
	}
}

interface AnnounceOut {
	readonly stream: TransportStream;
	readonly prefix: Path;
}

/** The publisher role of one client session: its broadcasts and the relay's requests for them. */
export class Publisher {
	readonly transport: TransportSession;
	readonly broadcasts = new Map<Path, PublishedBroadcast>();
	readonly #announces = new Set<AnnounceOut>();
	readonly #hopId: number;

	constructor(transport: TransportSession, hopId: number) {
		this.transport = transport;
		this.#hopId = hopId;
	}

	publish(path: string, options: PublishOptions): PublishedBroadcast {
		const norm = normalizePath(path);
		if (this.broadcasts.has(norm)) throw new Error(`broadcast ${norm} is already published`);
		const b = new PublishedBroadcast(this, norm, options);
		this.broadcasts.set(norm, b);
		for (const a of this.#announces) this.#announce(a, norm, true);
		return b;
	}

	/** @internal */
	unpublish(b: PublishedBroadcast): void {
		if (this.broadcasts.get(b.path) !== b) return;
		this.broadcasts.delete(b.path);
		for (const a of this.#announces) this.#announce(a, b.path, false);
	}

	#announce(a: AnnounceOut, path: Path, active: boolean): void {
		const suffix = stripPrefix(path, a.prefix);
		if (suffix === null) return;
		control.clear();
		encodeAnnounce(control, { active, suffix, hops: [] }, 5);
		a.stream.write(control.view());
	}

	/** ANNOUNCE request (bidi 1) from the relay: what do we publish under `prefix`? */
	onAnnounceRequest(s: TransportStream, reader: ControlReader): void {
		let started = false;
		const handle = (req: AnnounceRequest): void => {
			if (started) return reader.fail(CANCEL, "second ANNOUNCE request on one stream");
			started = true;
			const a: AnnounceOut = { stream: s, prefix: req.prefix };
			const matching = [...this.broadcasts.keys()].filter((p) => hasPrefix(p, req.prefix));
			control.clear();
			encodeAnnounceOk(control, { hopId: this.#hopId, activeCount: matching.length }, 5);
			for (const p of matching)
				encodeAnnounce(control, { active: true, suffix: stripPrefix(p, req.prefix) ?? ROOT, hops: [] }, 5);
			s.write(control.view());
			this.#announces.add(a);
			s.onFin = () => {
				this.#announces.delete(a);
				s.finish();
			};
			s.onReset = () => this.#announces.delete(a);
			s.onStop = () => {
				this.#announces.delete(a);
				s.reset(CANCEL);
			};
		};
		s.onData = (chunk) => reader.push(chunk, decodeAnnounceReq, handle);
		reader.push(null, decodeAnnounceReq, handle);
	}

	/** SUBSCRIBE (bidi 2) from the relay for one of our tracks. */
	onSubscribe(s: TransportStream, reader: ControlReader): void {
		let done = false;
		const handle = (m: Subscribe): void => {
			if (done) return;
			done = true;
			// The rest of the stream (SUBSCRIBE_UPDATEs) belongs to the subscription now.
			const rest = reader.release();
			const track = this.broadcasts.get(m.broadcast)?.tracks.get(m.track);
			if (track === undefined) {
				s.onData = null;
				s.reset(NOT_FOUND);
				s.stop(NOT_FOUND);
				return;
			}
			track.addSubscription(m, s);
			if (rest.length > 0) s.onData?.(rest);
		};
		s.onData = (chunk) => reader.push(chunk, decodeSub, handle);
		s.onFin = () => s.finish();
		reader.push(null, decodeSub, handle);
	}

	/** TRACK (bidi 6): answer TRACK_INFO and FIN. */
	onTrackRequest(s: TransportStream, reader: ControlReader): void {
		let done = false;
		const handle = (m: TrackRequest): void => {
			if (done) return;
			done = true;
			const b = this.broadcasts.get(m.broadcast);
			if (b === undefined || !b.tracks.has(m.track)) {
				s.reset(NOT_FOUND);
				return;
			}
			const w = new Writer(32);
			encodeTrackInfo(
				w,
				{ priority: b.priority, ordered: false, maxLatencyMs: b.maxLatencyMs, timescale: TIMESCALE },
				5,
			);
			s.write(w.view());
			s.finish();
		};
		s.onData = (chunk) => reader.push(chunk, decodeTrackReq, handle);
		s.onFin = () => {};
		reader.push(null, decodeTrackReq, handle);
	}

	/** The session ended. */
	detach(): void {
		this.#announces.clear();
		for (const b of this.broadcasts.values()) for (const t of b.tracks.values()) t.detach();
	}
}

function decodeAnnounceReq(r: Reader): AnnounceRequest {
	return decodeAnnounceRequest(r, 5);
}

function decodeSub(r: Reader): Subscribe {
	return decodeSubscribe(r, 5);
}

function decodeTrackReq(r: Reader): TrackRequest {
	return decodeTrackRequest(r, 5);
}
