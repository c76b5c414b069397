/**
 * The subscriber side of a moq-lite session: toward a publishing client the relay is a subscriber.
 * It asks for the client's announcements (within the token's publish scope) and publishes them in
 * the relay; it is the relay's `UpstreamPublisher` for those broadcasts: one upstream subscription
 * per track, whose group streams are written into the track's ring (group-ingest.ts), and TRACK
 * requests for TRACK_INFO. Every wire path is relative to the session root from the grant.
 * @module
 */

import type { Grant } from "../../auth/index.ts";
import { Writer } from "../../coding/writer.ts";
import * as Code from "../../errors/codes.ts";
import { isInternalPath, joinPath, type Path, pathSegments, stripPrefix } from "../../path/index.ts";
import type { RelayTrack } from "../../relay/track.ts";
import type { TrackHandle, TrackInfo, UpstreamPublisher } from "../../relay/types.ts";
import { DEFAULT_TRACK_INFO } from "../../relay/types.ts";
import { refuse as countRefusal } from "../../transport/refusals.ts";
import type { TransportStream } from "../../transport/types.ts";
import type { ControlReader } from "../control-reader.ts";
import { GroupIngest } from "./group-ingest.ts";
import type { SessionHost } from "./host.ts";
import {
	type Announce,
	decodeAnnounce,
	decodeAnnounceInit,
	decodeAnnounceOk,
	encodeAnnounceRequest,
} from "./wire/announce.ts";
import { decodeGroupHeader } from "./wire/group.ts";
import { MAX_HOPS } from "./wire/message.ts";
import { BIDI } from "./wire/stream-type.ts";
import { decodeSubscribeResponse, encodeSubscribe, encodeSubscribeUpdate } from "./wire/subscribe.ts";
import { decodeTrackInfo, encodeTrackRequest } from "./wire/track.ts";
import {
	hasAnnounceInit,
	hasAnnounceOk,
	hasAnnounceRestart,
	hasSubscribeUpdate,
	hasTrackInfo,
	type LiteVersion,
} from "./wire/version.ts";

interface UpstreamSub {
	readonly id: number;
	readonly track: RelayTrack;
	readonly stream: TransportStream;
	/** lite-05 SUBSCRIBE_END: the first group that will never come. */
	endGroup: number | null;
	latestGroup: number;
	closed: boolean;
	/** Group streams of this subscription still being ingested. */
	inFlight: number;
	/** The publisher is done with the track: its grace timer while the last groups come in. */
	ending: ReturnType<typeof setTimeout> | null;
	/** Before lite-05: the moment for group streams opened right behind the FIN has passed. */
	settled: boolean;
}

/** How long a finished subscription waits for its in-flight group streams before ending the track. */
const TRACK_END_GRACE_MS = 2000;

/** Before lite-05: how long after the FIN a group stream opened right behind it may take to arrive. */
const TRACK_END_SETTLE_MS = 100;

/** How long a TRACK request upstream waits for its TRACK_INFO. */
const TRACK_INFO_TIMEOUT_MS = 10_000;

export class LiteSubscriber implements UpstreamPublisher {
	/** The session's id (the relay's owner of what this side publishes). */
	readonly id: number;
	readonly #host: SessionHost;
	readonly #v: LiteVersion;
	readonly #grant: Grant;
	readonly #published = new Set<Path>();
	readonly #upstream = new Map<number, UpstreamSub>();
	readonly #upstreamByTrack = new Map<TrackHandle, UpstreamSub>();
	readonly #ingests = new Set<GroupIngest>();
	#nextUpstreamId = 0;
	#sessionClosed = false;

	constructor(host: SessionHost, version: LiteVersion, grant: Grant) {
		this.id = host.id;
		this.#host = host;
		this.#v = version;
		this.#grant = grant;
	}

	/** The session is ready: ask for the client's announcements under each publish prefix of the token. */
	start(): void {
		for (const prefix of this.#grant.publish) this.#requestAnnounces(prefix);
	}

	/**
	 * The session closed. Group streams still arriving are reset (CLOSED): nothing more can come. A
	 * track the publisher had already finished (its subscription FIN'd, or its broadcast
	 * unannounced) ends cleanly after the groups that made it. What is still announced ends cleanly
	 * too when the publisher closed on purpose (`graceful`: an app that closes its tracks, broadcast
	 * and connection at once gets its connection close out first); otherwise it was lost: its tracks
	 * reset (DROPPED).
	 */
	close(graceful = false): void {
		const relay = this.#host.relay;
		this.#sessionClosed = true;
		for (const g of this.#ingests) g.abort(Code.CLOSED);
		this.#ingests.clear();
		for (const sub of [...this.#upstream.values()]) {
			sub.inFlight = 0;
			if (sub.ending) this.#endUpstream(sub);
		}
		for (const abs of this.#published) {
			if (graceful) this.#finishBroadcast(abs);
			else relay.unpublish(abs, this);
		}
		this.#published.clear();
		this.#upstream.clear();
		this.#upstreamByTrack.clear();
	}

	/**
	 * The publisher unannounced `abs` cleanly: each of its tracks ends once its in-flight groups are
	 * in (or after the grace period), as if the publisher had finished it; the relay withdraws the
	 * broadcast after that. The subscription streams stay open: finishing our side would be an
	 * unsubscribe, and the publisher would cancel the groups still on their way.
	 */
	#finishBroadcast(abs: Path): void {
		for (const sub of [...this.#upstream.values()]) {
			if (sub.closed || sub.ending || sub.track.broadcastPath !== abs) continue;
			this.#finishUpstream(sub);
		}
		this.#host.relay.unpublish(abs, this, true);
	}

	/**
	 * The publisher is done with the track: end it once every group it will send is in. Those are
	 * the group streams in flight and, on lite-05, any group below SUBSCRIBE_END's number not seen
	 * yet: a publisher may FIN the subscription before it opens its last groups' streams. Before
	 * lite-05 there is no number, so group streams opened right behind the FIN get a moment to show
	 * up. The grace period bounds the wait.
	 */
	#finishUpstream(sub: UpstreamSub): void {
		if (sub.closed || sub.ending) return;
		sub.ending = setTimeout(() => this.#host.guarded(() => this.#endUpstream(sub)), TRACK_END_GRACE_MS);
		if (sub.endGroup !== null) this.#maybeEndUpstream(sub);
		else
			setTimeout(
				() =>
					this.#host.guarded(() => {
						sub.settled = true;
						this.#maybeEndUpstream(sub);
					}),
				TRACK_END_SETTLE_MS,
			);
	}

	/** Ends a finishing track when nothing it will still send is missing. */
	#maybeEndUpstream(sub: UpstreamSub): void {
		if (sub.closed || !sub.ending || sub.inFlight > 0) return;
		// Once the session is closed nothing more can arrive.
		const complete = sub.endGroup !== null ? sub.latestGroup + 1 >= sub.endGroup : sub.settled;
		if (complete || this.#sessionClosed) this.#endUpstream(sub);
	}

	// ---------------------------------------------------------------------------------------------
	// Learning a publishing client's broadcasts

	#requestAnnounces(prefix: Path): void {
		this.#host.withStream(true, (s) => this.#runAnnounceRequest(s, prefix));
	}

	#runAnnounceRequest(s: TransportStream, prefix: Path): void {
		const host = this.#host;
		const relay = host.relay;
		const v = this.#v;
		const grant = this.#grant;
		const w = new Writer(64);
		w.varint(BIDI.ANNOUNCE);
		encodeAnnounceRequest(w, { prefix, excludeHop: relay.hopId }, v);
		s.write(w.view());
		const reader = host.reader(s);
		const mine = new Set<Path>();
		let okHop: number | null = null;
		let initDone = !hasAnnounceInit(v) && !hasAnnounceOk(v);
		const onAnnounce = (a: Announce) => {
			// Prefix and suffix were each validated when decoded; together they must fit the cap too.
			const rel = joinPath(prefix, a.suffix);
			const maxSegments = relay.config.limits.maxPathSegments;
			if (pathSegments(rel) > maxSegments) {
				reader.fail(Code.PROTOCOL_VIOLATION, `announced path has more than ${maxSegments} segments`);
				return;
			}
			const abs = joinPath(grant.root, rel);
			if (a.active) {
				if (!grant.canPublish(rel)) {
					host.log.info("announce refused: outside the token's publish scope", { path: rel });
					return;
				}
				// `.internal/` carries the cluster's own broadcasts (gossip): only another relay may publish there.
				if (!grant.peer && isInternalPath(abs)) {
					countRefusal("announce_route", host.log.info, { session: host.id, path: rel, why: "internal" });
					return;
				}
				if (mine.has(abs) && !hasAnnounceRestart(v)) {
					reader.fail(Code.DUPLICATE, `duplicate announce of ${rel}`);
					return;
				}
				const hops = okHop !== null ? [...a.hops, okHop] : a.hops;
				if (hops.includes(relay.hopId) || hops.length > MAX_HOPS) {
					// Our own broadcast coming back (a loop), or a chain past moq-relay's 32: dropped, counted.
					countRefusal("announce_route", undefined, { session: host.id, path: rel });
					// A restart (lite-05's duplicate Active, or a re-announce) of a path this peer offered
					// before: its route now runs through us, so the route it offered is gone. Kept, it would
					// be a ghost: after the source ends, two relays that each fail over onto the other's
					// old route keep the broadcast alive between them.
					if (mine.delete(abs)) {
						this.#published.delete(abs);
						this.#finishBroadcast(abs);
						host.log.info("broadcast route withdrawn: the peer's route runs through us", { path: abs });
					}
					return;
				}
				if (!this.#published.has(abs) && this.#published.size >= relay.config.limits.maxBroadcastsPerSession) {
					// Each broadcast costs relay state and shard traffic: one session may not create them
					// without bound. The broadcast is not relayed; the session and its others go on.
					countRefusal("broadcasts", host.log.warn, { session: host.id, path: rel });
					return;
				}
				mine.add(abs);
				this.#published.add(abs);
				relay.publish(abs, hops, this, grant.peer);
				host.log.info("broadcast announced", { path: abs });
			} else {
				if (!mine.delete(abs)) return;
				this.#published.delete(abs);
				this.#finishBroadcast(abs);
				host.log.info("broadcast ended", { path: abs });
			}
		};
		reader.follow(() => {
			if (!initDone) {
				if (hasAnnounceOk(v)) {
					const ok = reader.next((r) => decodeAnnounceOk(r, v, host.limits));
					if (ok === undefined) return;
					okHop = ok.hopId;
				} else {
					const init = reader.next((r) => decodeAnnounceInit(r, v, host.limits));
					if (init === undefined) return;
					for (const suffix of init.suffixes) onAnnounce({ active: true, suffix, hops: [] });
				}
				initDone = true;
			}
			host.drain(reader, (r) => decodeAnnounce(r, v, host.limits), onAnnounce);
		});
		// The announce stream FIN'd: every broadcast on it ended cleanly. Reset: they were lost.
		const gone = (clean: boolean) => {
			for (const abs of mine) {
				this.#published.delete(abs);
				if (clean) this.#finishBroadcast(abs);
				else relay.unpublish(abs, this);
			}
			mine.clear();
		};
		s.onFin = () => {
			gone(true);
			s.finish();
		};
		s.onReset = () => gone(false);
	}

	// ---------------------------------------------------------------------------------------------
	// UpstreamPublisher

	#relative(absPath: Path): Path {
		return stripPrefix(absPath, this.#grant.root) ?? absPath;
	}

	subscribeUpstream(track: TrackHandle): void {
		const host = this.#host;
		const v = this.#v;
		const relayTrack = track as UpstreamSub["track"];
		const s = host.closed ? null : host.transport.openBidi();
		if (!s) {
			relayTrack.abortTrack(Code.DROPPED);
			return;
		}
		const id = this.#nextUpstreamId++;
		const a = track.aggregate;
		const w = new Writer(128);
		w.varint(BIDI.SUBSCRIBE);
		encodeSubscribe(
			w,
			{
				id,
				broadcast: this.#relative(track.broadcastPath),
				track: track.name,
				priority: a.priority,
				ordered: a.ordered,
				maxLatencyMs: a.maxLatencyMs,
				startGroup: null,
				endGroup: null,
			},
			v,
		);
		s.write(w.view());
		const sub: UpstreamSub = {
			id,
			track: relayTrack,
			stream: s,
			endGroup: null,
			latestGroup: -1,
			closed: false,
			inFlight: 0,
			ending: null,
			settled: false,
		};
		this.#upstream.set(id, sub);
		this.#upstreamByTrack.set(track, sub);
		const reader = host.reader(s);
		reader.follow(() => {
			host.drain(
				reader,
				(r) => decodeSubscribeResponse(r, v, host.limits),
				(resp) => {
					if (resp.type === "end") sub.endGroup = resp.group;
				},
			);
		});
		s.onFin = () => {
			// The publisher ended the track. Its last groups travel on other streams and may still be
			// arriving: end the track in the cache once they are in (or after a grace period).
			s.finish();
			this.#finishUpstream(sub);
		};
		s.onReset = (code) => {
			if (sub.ending) clearTimeout(sub.ending);
			sub.ending = null;
			if (!sub.closed) {
				sub.closed = true;
				// After a splice, the route moved to may not have the broadcast any more: it ended there
				// cleanly while the end propagated (a clean end reaches each relay over every route).
				// That is the broadcast's end, not a failure: the viewers see a clean end, not NOT_FOUND.
				if (code === Code.NOT_FOUND && relayTrack.splices > 0) relayTrack.endAfterLatest();
				else relayTrack.abortTrack(code || Code.DROPPED);
			}
			// Our half too: the publisher counts the subscription until both directions are closed.
			s.finish();
			this.#forgetUpstream(sub);
		};
	}

	/** The upstream subscription finished normally: TRACK_END into the cache (viewers get SUBSCRIBE_END). */
	#endUpstream(sub: UpstreamSub): void {
		if (sub.ending) clearTimeout(sub.ending);
		sub.ending = null;
		if (!sub.closed) {
			sub.closed = true;
			sub.track.endTrack(sub.endGroup ?? sub.latestGroup + 1);
		}
		this.#forgetUpstream(sub);
	}

	/** One of the subscription's group streams finished (or was reset). */
	#groupDone(sub: UpstreamSub): void {
		if (sub.inFlight > 0) sub.inFlight--;
		if (sub.ending) this.#maybeEndUpstream(sub);
	}

	#forgetUpstream(sub: UpstreamSub): void {
		if (this.#upstream.get(sub.id) === sub) this.#upstream.delete(sub.id);
		if (this.#upstreamByTrack.get(sub.track) === sub) this.#upstreamByTrack.delete(sub.track);
	}

	updateUpstream(track: TrackHandle): void {
		const v = this.#v;
		const sub = this.#upstreamByTrack.get(track);
		if (!sub || sub.closed || !hasSubscribeUpdate(v)) return;
		const a = track.aggregate;
		const w = new Writer(32);
		encodeSubscribeUpdate(
			w,
			{ priority: a.priority, ordered: a.ordered, maxLatencyMs: a.maxLatencyMs, startGroup: null, endGroup: null },
			v,
		);
		sub.stream.write(w.view());
	}

	unsubscribeUpstream(track: TrackHandle): void {
		const sub = this.#upstreamByTrack.get(track);
		if (!sub) return;
		sub.closed = true;
		this.#forgetUpstream(sub);
		sub.stream.finish();
		sub.stream.stop(Code.CANCEL);
	}

	fetchTrackInfo(broadcastPath: Path, track: string): Promise<TrackInfo> {
		const host = this.#host;
		const v = this.#v;
		if (!hasTrackInfo(v)) return Promise.resolve({ ...DEFAULT_TRACK_INFO });
		return new Promise((resolve, reject) => {
			const s = host.closed ? null : host.transport.openBidi();
			if (!s) return reject(new Error("no stream credit"));
			const w = new Writer(64);
			w.varint(BIDI.TRACK);
			encodeTrackRequest(w, { broadcast: this.#relative(broadcastPath), track }, v);
			s.write(w.view());
			s.finish();
			const reader = host.reader(s);
			let done = false;
			const timer = setTimeout(() => {
				if (!done) {
					done = true;
					s.reset(Code.TIMEOUT);
					reject(new Error("TRACK_INFO timeout"));
				}
			}, TRACK_INFO_TIMEOUT_MS);
			reader.follow(() => {
				if (done) return;
				let info: TrackInfo | undefined;
				try {
					// Not reader.next: a bad TRACK_INFO fails this request, not the session.
					info = reader.buf.tryDecode((r) => decodeTrackInfo(r, v, host.limits));
				} catch (err) {
					done = true;
					clearTimeout(timer);
					reject(err);
					return;
				}
				if (!info) return;
				done = true;
				clearTimeout(timer);
				resolve(info);
			});
			s.onReset = (code) => {
				if (done) return;
				done = true;
				clearTimeout(timer);
				reject(new Error(`TRACK reset ${code}`));
			};
			s.onFin = () => {};
		});
	}

	// ---------------------------------------------------------------------------------------------
	// Group streams from the publishing client

	onGroup(s: TransportStream, reader: ControlReader): void {
		const host = this.#host;
		const v = this.#v;
		let ingest: GroupIngest | null = null;
		const onHeader = () => {
			const hdr = reader.next((r) => decodeGroupHeader(r, v, host.limits));
			if (hdr === undefined) return;
			const sub = this.#upstream.get(hdr.subscribeId);
			if (!sub || sub.closed) {
				// Unsubscribed (or never asked): a normal race; tell it to stop.
				s.onData = null;
				s.stop(Code.CANCEL);
				return;
			}
			if (hdr.sequence > sub.latestGroup) sub.latestGroup = hdr.sequence;
			const relay = host.relay;
			const g = new GroupIngest(sub.track, hdr.sequence, s, v, relay.config.limits.maxFrameBytes, relay.figures);
			ingest = g;
			// Refused at once (a group repeated after a splice, or the cache's pressure): the ingest
			// stopped the stream, and a stopped stream hears nothing more from its transport.
			if (g.done) return;
			this.#ingests.add(g);
			sub.inFlight++;
			let settled = false;
			const settle = () => {
				if (settled) return;
				settled = true;
				this.#ingests.delete(g);
				this.#groupDone(sub);
			};
			// Also when the ingest ends the group itself (a bad frame: it stops the stream, so no FIN or
			// reset follows). Without this a long-lived session (a cluster link) kept every such group,
			// its track and the track's ring.
			g.onDone = settle;
			s.onData = (chunk) => g.push(chunk);
			s.onFin = () => {
				g.finish();
				settle();
			};
			s.onReset = (code) => {
				g.abort(code || Code.CANCEL);
				settle();
			};
			const rest = reader.buf.rest();
			if (rest.length) g.push(rest);
		};
		// Set before follow: a header in the first chunk installs the ingest's own onFin synchronously.
		s.onFin = () => {
			if (!ingest) s.stop(Code.PROTOCOL_VIOLATION);
		};
		reader.follow(() => {
			if (!ingest) onHeader();
		});
	}
}
