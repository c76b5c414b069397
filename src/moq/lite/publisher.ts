/**
 * The publisher side of a moq-lite session: toward a viewer the relay is the publisher. It answers
 * announce requests from the relay's announcements, serves subscriptions from the track rings
 * (track-serve.ts), and answers TRACK with TRACK_INFO and FETCH from the cache (fetch-serve.ts).
 * Every wire path is relative to the session root from the grant.
 * @module
 */

import type { Grant } from "../../auth/index.ts";
import type { Reader } from "../../coding/reader.ts";
import { Writer } from "../../coding/writer.ts";
import * as Code from "../../errors/codes.ts";
import { joinPath, type Path, PathError, ROOT, stripPrefix } from "../../path/index.ts";
import { hopsEqual as sameHops } from "../../relay/route-order.ts";
import { refuse as countRefusal } from "../../transport/refusals.ts";
import type { TransportStream } from "../../transport/types.ts";
import type { ControlReader } from "../control-reader.ts";
import { FetchServe } from "./fetch-serve.ts";
import type { SessionHost } from "./host.ts";
import { TrackServe } from "./track-serve.ts";
import {
	type Announce,
	decodeAnnounceRequest,
	encodeAnnounce,
	encodeAnnounceInit,
	encodeAnnounceOk,
} from "./wire/announce.ts";
import { decodeFetchRequest } from "./wire/fetch.ts";
import { decodeSubscribe, decodeSubscribeUpdate } from "./wire/subscribe.ts";
import { decodeTrackRequest, encodeTrackInfo } from "./wire/track.ts";
import {
	appendsHop,
	hasAnnounceInit,
	hasAnnounceOk,
	hasAnnounceRestart,
	hasFrameTimestamps,
	hasSubscribeUpdate,
	hasTrackInfo,
	type LiteVersion,
} from "./wire/version.ts";

export class LitePublisher {
	readonly #host: SessionHost;
	readonly #v: LiteVersion;
	readonly #grant: Grant;
	/** Subscriptions by id; fetches under negative keys. */
	readonly #serves = new Map<number, TrackServe | FetchServe>();
	readonly #announceCleanups = new Set<() => void>();
	#nextFetchKey = 0;

	constructor(host: SessionHost, version: LiteVersion, grant: Grant) {
		this.#host = host;
		this.#v = version;
		this.#grant = grant;
	}

	/** The peer granted stream credit: subscriptions waiting at a group for a stream slot can go on. */
	onStreamCredit(): void {
		for (const serve of this.#serves.values()) if (serve instanceof TrackServe && serve.blocked) serve.drain();
	}

	/** The session closed: every subscription, fetch and announce stream ends. */
	close(): void {
		const relay = this.#host.relay;
		for (const serve of this.#serves.values()) serve.close("session");
		relay.figures.subscriptions -= [...this.#serves.values()].filter((x) => x instanceof TrackServe).length;
		this.#serves.clear();
		for (const cleanup of [...this.#announceCleanups]) cleanup();
	}

	/**
	 * A request stream: waits for its first message, then calls `handle` once. A broadcast path with
	 * a "." or ".." segment refuses the request (see `refusingDotSegments`); any other message that
	 * can't decode closes the session with its code.
	 */
	#onRequest<T>(s: TransportStream, reader: ControlReader, decode: (r: Reader) => T, handle: (req: T) => void): void {
		let started = false;
		reader.follow(() => {
			if (started) return;
			const req = reader.next(refusingDotSegments(decode));
			if (req === undefined) return;
			started = true;
			if (req instanceof PathError) s.reset(Code.PROTOCOL_VIOLATION);
			else handle(req);
		});
	}

	/**
	 * A viewer's broadcast path (relative to the session root) made absolute, after checking the
	 * token's subscribe scope; null (and the stream reset with UNAUTHORIZED) if refused.
	 */
	#viewerPath(s: TransportStream, rel: Path): Path | null {
		const grant = this.#grant;
		if (!grant.canSubscribe(rel)) {
			s.reset(Code.UNAUTHORIZED);
			return null;
		}
		return joinPath(grant.root, rel);
	}

	// ---------------------------------------------------------------------------------------------
	// Announcements to viewers

	onAnnounceRequest(s: TransportStream, reader: ControlReader): void {
		const host = this.#host;
		const v = this.#v;
		const grant = this.#grant;
		const limits = host.relay.config.limits;
		if (this.#announceCleanups.size >= limits.maxAnnounceRequests) {
			countRefusal("announce_requests", host.log.warn, { session: host.id });
			s.reset(Code.UNSUPPORTED);
			return;
		}
		let started = false;
		reader.follow(() => {
			if (started) {
				if (reader.buf.length) reader.fail(Code.UNEXPECTED_MESSAGE, "unexpected data on announce stream");
				return;
			}
			const req = reader.next((r) => decodeAnnounceRequest(r, v, host.limits));
			if (req === undefined) return;
			started = true;
			const absPrefix = joinPath(grant.root, req.prefix);
			/** Paths announced on this stream, with the hop chain each was announced with. */
			const sent = new Map<Path, readonly number[]>();
			const peerOrigin = host.peerOrigin;
			const w = new Writer(128);
			const excludeHop = req.excludeHop;
			const hopsFor = (hops: readonly number[]): number[] => (appendsHop(v) ? [...hops, host.relay.hopId] : [...hops]);
			// An edge relay of a tree never carries traffic between other relays: what it learned from a
			// relay is for its own viewers, never offered to another relay.
			const edge = host.relay.config.cluster?.tier === "edge" && grant.peer;
			// Toward another relay, never offer a broadcast back over the link it came from: on lite-02/03
			// links hop chains carry no ids, so this is the only loop guard there is.
			const fromThisLink = (absPath: Path): boolean =>
				grant.peer && host.upstream !== null && host.relay.broadcasts.get(absPath)?.publisher === host.upstream;
			const visible = (absPath: Path, hops: readonly number[], fromPeer = false): Path | null => {
				const rel = stripPrefix(absPath, grant.root);
				if (rel === null || !grant.canSubscribe(rel)) return null;
				if (edge && fromPeer) return null;
				if (fromThisLink(absPath)) return null;
				// Split horizon: never offer a peer a route that already runs through it.
				if (excludeHop !== 0 && hops.includes(excludeHop)) return null;
				if (peerOrigin !== 0 && hops.includes(peerOrigin)) return null;
				return stripPrefix(absPath, absPrefix);
			};
			const watcher = {
				prefix: absPrefix,
				onAnnounce: (path: Path, entry: { hops: readonly number[]; peer?: boolean } | null) => {
					if (entry) {
						const suffix = visible(path, entry.hops, entry.peer);
						const before = sent.get(path);
						if (suffix === null) {
							// The route now runs through the requester (split horizon): it is gone for them.
							if (before === undefined) return;
							sent.delete(path);
							w.clear();
							encodeAnnounce(w, { active: false, suffix: stripPrefix(path, absPrefix) ?? ROOT, hops: [] }, v);
							s.write(w.view());
							return;
						}
						// A route change on a path already announced: lite-05 hears it as a restart (a
						// second Active); earlier versions have no way to say it and keep the first chain.
						if (before !== undefined && (!hasAnnounceRestart(v) || sameHops(before, entry.hops))) return;
						sent.set(path, entry.hops);
						w.clear();
						encodeAnnounce(w, { active: true, suffix, hops: hopsFor(entry.hops) }, v);
						s.write(w.view());
					} else {
						if (!sent.delete(path)) return;
						const suffix = stripPrefix(path, absPrefix) ?? ROOT;
						w.clear();
						encodeAnnounce(w, { active: false, suffix, hops: [] }, v);
						s.write(w.view());
					}
				},
			};
			const initial: Announce[] = [];
			for (const e of host.relay.announces.watch(watcher)) {
				const suffix = visible(e.path, e.hops, e.peer);
				if (suffix === null) continue;
				sent.set(e.path, e.hops);
				initial.push({ active: true, suffix, hops: hopsFor(e.hops) });
			}
			w.clear();
			if (hasAnnounceInit(v)) encodeAnnounceInit(w, { suffixes: initial.map((a) => a.suffix) }, v);
			else {
				if (hasAnnounceOk(v)) encodeAnnounceOk(w, { hopId: host.relay.hopId, activeCount: initial.length }, v);
				for (const a of initial) encodeAnnounce(w, a, v);
			}
			if (w.pos) s.write(w.view());
			const cleanup = () => {
				host.relay.announces.unwatch(watcher);
				this.#announceCleanups.delete(cleanup);
			};
			this.#announceCleanups.add(cleanup);
			s.onFin = () => {
				cleanup();
				s.finish();
			};
			s.onReset = () => cleanup();
			s.onStop = () => {
				cleanup();
				s.reset(Code.CANCEL);
			};
		});
	}

	// ---------------------------------------------------------------------------------------------
	// Subscriptions

	onSubscribe(s: TransportStream, reader: ControlReader): void {
		const host = this.#host;
		const relay = host.relay;
		const v = this.#v;
		const grant = this.#grant;
		let serve: TrackServe | null = null;
		let refused = false;
		reader.follow(() => {
			if (refused) return;
			if (serve) {
				if (!hasSubscribeUpdate(v)) {
					if (reader.buf.length) reader.fail(Code.UNEXPECTED_MESSAGE, "lite-02 has no SUBSCRIBE_UPDATE");
					return;
				}
				const current = serve;
				host.drain(
					reader,
					(r) => decodeSubscribeUpdate(r, v, host.limits),
					(u) => current.update(u),
				);
				return;
			}
			const sub = reader.next(refusingDotSegments((r) => decodeSubscribe(r, v, host.limits)));
			if (sub === undefined) return;
			if (sub instanceof PathError) {
				refused = true;
				host.log.debug("subscribe refused", { code: Code.PROTOCOL_VIOLATION, why: sub.message });
				s.reset(Code.PROTOCOL_VIOLATION);
				s.stop(Code.PROTOCOL_VIOLATION);
				return;
			}
			const refuse = (code: number, why: string) => {
				refused = true;
				host.log.debug("subscribe refused", { code, why, broadcast: sub!.broadcast, track: sub!.track });
				s.reset(code);
				s.stop(code);
			};
			if (this.#serves.has(sub.id)) return reader.fail(Code.DUPLICATE, `duplicate subscribe id ${sub.id}`);
			if (this.#serves.size >= relay.config.limits.maxSubscriptions) {
				countRefusal("subscriptions", host.log.warn, { session: host.id });
				return refuse(Code.UNSUPPORTED, "too many subscriptions");
			}
			if (!grant.canSubscribe(sub.broadcast)) return refuse(Code.UNAUTHORIZED, "outside the token's subscribe scope");
			const track = relay.track(joinPath(grant.root, sub.broadcast), sub.track);
			if (track === undefined) return refuse(Code.NOT_FOUND, "unknown broadcast");
			if (track === null) return refuse(Code.EVICTED, "cache budget exhausted");
			const params = {
				priority: sub.priority,
				ordered: sub.ordered,
				maxLatencyMs: sub.maxLatencyMs,
				startGroup: sub.startGroup,
				endGroup: sub.endGroup,
			};
			serve = new TrackServe(sub.id, track, host.transport, s, v, params, relay.figures);
			serve.onFault = host.onFault;
			this.#serves.set(sub.id, serve);
			relay.figures.subscriptions++;
			track.addConsumer(serve);
			serve.drain();
			const id = sub.id;
			const current = serve;
			const end = () => {
				if (this.#serves.get(id) === current) {
					this.#serves.delete(id);
					relay.figures.subscriptions--;
				}
			};
			s.onFin = () => {
				current.close("unsubscribe");
				end();
			};
			s.onReset = () => {
				current.close("session");
				end();
			};
			s.onStop = () => {
				current.close("session");
				end();
			};
		});
	}

	// ---------------------------------------------------------------------------------------------
	// TRACK_INFO and FETCH

	onTrackRequest(s: TransportStream, reader: ControlReader): void {
		const host = this.#host;
		const v = this.#v;
		if (!hasTrackInfo(v)) {
			s.reset(Code.UNSUPPORTED);
			return;
		}
		s.onFin = () => {};
		this.#onRequest(
			s,
			reader,
			(r) => decodeTrackRequest(r, v, host.limits),
			(req) => {
				const path = this.#viewerPath(s, req.broadcast);
				if (path === null) return;
				const info = host.relay.trackInfo(path, req.track);
				if (!info) {
					s.reset(Code.NOT_FOUND);
					return;
				}
				info.then(
					(info) => {
						const w = new Writer(32);
						encodeTrackInfo(w, info, v);
						s.write(w.view());
						s.finish();
					},
					() => s.reset(Code.NOT_FOUND),
				);
			},
		);
	}

	onFetch(s: TransportStream, reader: ControlReader): void {
		const host = this.#host;
		const v = this.#v;
		// FetchServe answers with timestamped (lite-05) frames.
		if (!hasFrameTimestamps(v)) {
			s.reset(Code.UNSUPPORTED);
			return;
		}
		s.onStop = () => s.reset(Code.CANCEL);
		this.#onRequest(
			s,
			reader,
			(r) => decodeFetchRequest(r, v, host.limits),
			(req) => {
				const path = this.#viewerPath(s, req.broadcast);
				if (path === null) return;
				const track = host.relay.broadcasts.get(path)?.tracks.get(req.track);
				if (!track || track.closed) {
					host.log.debug("fetch refused: track not cached", { broadcast: path, track: req.track, group: req.group });
					s.reset(Code.NOT_FOUND);
					return;
				}
				const fetch = new FetchServe(track, s, req.group);
				const key = -1 - this.#nextFetchKey++;
				this.#serves.set(key, fetch);
				fetch.onDone = () => this.#serves.delete(key);
				fetch.onFault = host.onFault;
				s.onStop = () => fetch.close("session");
				fetch.start();
			},
		);
	}
}

/**
 * `decode` for a viewer's request (SUBSCRIBE, TRACK, FETCH), where a broadcast path with a "." or
 * ".." segment refuses that request alone: the PathError comes back instead of the message, and the
 * caller resets the stream with PROTOCOL_VIOLATION while the session goes on. Every other decode
 * error, too many segments included, still closes the session.
 */
function refusingDotSegments<T>(decode: (r: Reader) => T): (r: Reader) => T | PathError {
	return (r) => {
		try {
			return decode(r);
		} catch (err) {
			if (err instanceof PathError && err.reason === "dot-segment") return err;
			throw err;
		}
	};
}
