/**
 * The subscriber side of an IETF session: toward a publishing client the relay is a subscriber. A
 * PUBLISH_NAMESPACE within the token's publish scope publishes that broadcast in the relay; the
 * session is then the relay's `UpstreamPublisher` for it: one SUBSCRIBE per track with viewers
 * (request ID ours, odd; "latest" filter), whose subgroup streams are written into the track's ring
 * (group-ingest.ts), one group per stream, subgroup 0. PUBLISH_DONE ends the track once the groups
 * it counted are in; PUBLISH_NAMESPACE_DONE ends the broadcast cleanly.
 *
 * One logic for both framings (host.ts): on 14–16 requests and replies share the control stream; on
 * 17+ a PUBLISH_NAMESPACE is answered on its own stream, whose end is its PUBLISH_NAMESPACE_DONE,
 * and each upstream SUBSCRIBE opens a stream of ours that carries its SUBSCRIBE_OK / REQUEST_ERROR
 * and PUBLISH_DONE; ending it is the UNSUBSCRIBE.
 * @module
 */

import { ownedCopy } from "../../coding/bytes.ts";
import { CANCEL, DROPPED, IetfClose, IetfRequestError, IetfStreamReset, NOT_FOUND } from "../../errors/codes.ts";
import { isInternalPath, joinPath, type Path, PathError, pathSegments, stripPrefix } from "../../path/index.ts";
import type { RelayTrack } from "../../relay/track.ts";
import type { TrackHandle, TrackInfo, UpstreamPublisher } from "../../relay/types.ts";
import { DEFAULT_TRACK_INFO } from "../../relay/types.ts";
import { refuse as countRefusal } from "../../transport/refusals.ts";
import type { TransportStream } from "../../transport/types.ts";
import type { ControlReader } from "../control-reader.ts";
import { IetfGroupIngest, type IngestHost } from "./group-ingest.ts";
import type { IetfHost, Reply } from "./host.ts";
import { hasFieldFilters, namespaceDoneById } from "./version.ts";
import {
	asIetf,
	type Filter,
	FilterType,
	type IetfDecodeError,
	type IetfMessage,
	inDraft,
	Msg,
	pathToTuple,
	tupleToPath,
} from "./wire/message.ts";
import { decodeSubgroupHeader, type SubgroupHeader } from "./wire/object.ts";

type PublishNamespace = Extract<IetfMessage, { kind: "publish_namespace" }>;

interface UpstreamSub {
	readonly id: number;
	readonly track: RelayTrack;
	/** From SUBSCRIBE_OK; null until then. */
	alias: number | null;
	closed: boolean;
	/** Subgroup streams of this subscription being ingested. */
	inFlight: number;
	/** Subgroup streams seen (PUBLISH_DONE says how many the publisher opened). */
	streams: number;
	/** PUBLISH_DONE's stream count; null before it, or when it says 0 (@moq/net sends 0 always). */
	streamCount: number | null;
	latestGroup: number;
	/** The publisher is done: its grace timer while the last groups come in. */
	ending: ReturnType<typeof setTimeout> | null;
	settled: boolean;
	/** 17+: the request's own stream (null on 14–16, where it shares the control stream). */
	stream: TransportStream | null;
}

/** A subgroup stream that arrived before the SUBSCRIBE_OK naming its alias. */
interface Parked {
	readonly stream: TransportStream;
	readonly header: SubgroupHeader;
	readonly chunks: Uint8Array[];
	bytes: number;
}

/** How long a finished subscription waits for its in-flight subgroup streams. */
const TRACK_END_GRACE_MS = 2000;
/** Without a stream count, how long after PUBLISH_DONE a subgroup stream may still show up. */
const TRACK_END_SETTLE_MS = 100;
/** Subgroup streams held while their alias is unknown, and bytes each may buffer. */
const MAX_PARKED = 32;
const MAX_PARKED_BYTES = 256 * 1024;

export class IetfSubscriber implements UpstreamPublisher {
	readonly id: number;
	readonly #host: IetfHost;
	/** Absolute broadcast path → the PUBLISH_NAMESPACE request that published it. */
	readonly #published = new Map<Path, number>();
	readonly #publishedIds = new Map<number, Path>();
	readonly #upstream = new Map<number, UpstreamSub>();
	readonly #byAlias = new Map<number, UpstreamSub>();
	readonly #byTrack = new Map<TrackHandle, UpstreamSub>();
	readonly #ingests = new Set<IetfGroupIngest>();
	#parked: Parked[] = [];
	#sessionClosed = false;

	constructor(host: IetfHost) {
		this.id = host.id;
		this.#host = host;
	}

	/** The session closed: as the lite subscriber (graceful: what is announced ends cleanly, else it was lost). */
	close(graceful = false): void {
		const relay = this.#host.relay;
		this.#sessionClosed = true;
		for (const g of this.#ingests) g.abort(DROPPED);
		this.#ingests.clear();
		for (const p of this.#parked) p.stream.onData = null;
		this.#parked = [];
		for (const sub of [...this.#upstream.values()]) {
			sub.inFlight = 0;
			if (sub.ending) this.#endUpstream(sub);
		}
		for (const abs of this.#published.keys()) {
			if (graceful) this.#finishBroadcast(abs);
			else relay.unpublish(abs, this);
		}
		this.#published.clear();
		this.#publishedIds.clear();
		this.#upstream.clear();
		this.#byAlias.clear();
		this.#byTrack.clear();
	}

	// ---------------------------------------------------------------------------------------------
	// PUBLISH_NAMESPACE from the client

	/** `reply`: the request's own stream (17+; its end is the PUBLISH_NAMESPACE_DONE), or null (the control stream). */
	onPublishNamespace(m: PublishNamespace, reply: Reply = null): void {
		const host = this.#host;
		const relay = host.relay;
		const grant = host.grant;
		const refuse = (code: number, reason: string) => {
			host.log.info("publish_namespace refused", { requestId: m.requestId, code, reason });
			host.refuse(Msg.PUBLISH_NAMESPACE_ERROR, m.requestId, code, reason, reply);
		};
		let rel: Path;
		try {
			rel = tupleToPath(m.namespace, host.limits.maxPathSegments);
		} catch (err) {
			if (!(err instanceof PathError)) throw err;
			if (err.reason === "dot-segment")
				return refuse(IetfRequestError.NOT_SUPPORTED, "a namespace field of '.' or '..'");
			return host.violation(IetfClose.PROTOCOL_VIOLATION, err.message);
		}
		if (!grant.canPublish(rel)) return refuse(IetfRequestError.UNAUTHORIZED, "outside the token's publish scope");
		const abs = joinPath(grant.root, rel);
		if (pathSegments(abs) > relay.config.limits.maxPathSegments)
			return refuse(IetfRequestError.NOT_SUPPORTED, "too many path segments under the session root");
		// `.internal/` carries the cluster's own broadcasts: only another relay may publish there.
		if (!grant.peer && isInternalPath(abs)) {
			countRefusal("announce_route", host.log.info, { session: host.id, path: rel, why: "internal" });
			return refuse(IetfRequestError.UNAUTHORIZED, ".internal/ is reserved for the relay's cluster");
		}
		if (this.#published.has(abs))
			return refuse(IetfRequestError.INTERNAL_ERROR, "namespace already published on this session");
		if (this.#published.size >= relay.config.limits.maxBroadcastsPerSession) {
			countRefusal("broadcasts", host.log.warn, { session: host.id, path: rel });
			return refuse(IetfRequestError.INTERNAL_ERROR, "too many broadcasts on this session");
		}
		this.#published.set(abs, m.requestId);
		this.#publishedIds.set(m.requestId, abs);
		// PUBLISH_NAMESPACE_OK (14) / REQUEST_OK (15+) before anything can subscribe upstream.
		host.reply(reply, { kind: "request_ok", type: Msg.REQUEST_OK, requestId: m.requestId, params: new Map() });
		relay.publish(abs, [], this, grant.peer);
		host.log.info("broadcast announced", { path: abs });
	}

	/** PUBLISH_NAMESPACE_DONE: by request ID (16; 17+: its stream ended) or namespace (14/15). The broadcast ends cleanly. */
	onPublishNamespaceDone(requestId: number | null, namespace: string[] | null): void {
		const host = this.#host;
		let abs: Path | undefined;
		if (namespaceDoneById(host.draft)) {
			if (requestId !== null) abs = this.#publishedIds.get(requestId);
		} else if (namespace !== null) {
			try {
				abs = joinPath(host.grant.root, tupleToPath(namespace, host.limits.maxPathSegments));
			} catch {
				return;
			}
		}
		if (abs === undefined) return;
		const id = this.#published.get(abs);
		if (id === undefined) return;
		this.#published.delete(abs);
		this.#publishedIds.delete(id);
		this.#finishBroadcast(abs);
		host.log.info("broadcast ended", { path: abs });
	}

	#finishBroadcast(abs: Path): void {
		for (const sub of [...this.#upstream.values()]) {
			if (sub.closed || sub.ending || sub.track.broadcastPath !== abs) continue;
			this.#finishUpstream(sub);
		}
		this.#host.relay.unpublish(abs, this, true);
	}

	// ---------------------------------------------------------------------------------------------
	// UpstreamPublisher

	subscribeUpstream(track: TrackHandle): void {
		const host = this.#host;
		const relayTrack = track as RelayTrack;
		const id = host.closed ? null : host.allocRequestId();
		if (id === null) {
			relayTrack.abortTrack(DROPPED);
			return;
		}
		const rel = stripPrefix(track.broadcastPath, host.grant.root) ?? track.broadcastPath;
		const priority = Math.max(0, Math.min(255, Math.round(track.aggregate.priority)));
		// The join point is the start of the latest group (moq-lite's): before 20 the LargestObject
		// filter (served from the latest group by @moq/net and moq-relay), on 20 "one group back".
		const filter: Filter = hasFieldFilters(host.draft)
			? { type: FilterType.RELATIVE, start: null, endGroup: null, groups: 1 }
			: { type: FilterType.LARGEST_OBJECT, start: null, endGroup: null };
		const m: IetfMessage = {
			kind: "subscribe",
			requestId: id,
			namespace: pathToTuple(rel),
			track: track.name,
			priority: 255 - priority,
			groupOrder: 2,
			forward: true,
			filter,
			params: new Map(),
		};
		const sub: UpstreamSub = {
			id,
			track: relayTrack,
			alias: null,
			closed: false,
			inFlight: 0,
			streams: 0,
			streamCount: null,
			latestGroup: -1,
			ending: null,
			settled: false,
			stream: null,
		};
		if (host.requestStreams) {
			const stream = host.openRequest(m, {
				onReply: (reply) => this.#onUpstreamReply(sub, reply),
				onEnd: (how) => this.#onUpstreamEnd(sub, how),
			});
			if (!stream) {
				host.log.info("upstream subscribe not sent: no stream credit", { track: track.name });
				relayTrack.abortTrack(DROPPED);
				return;
			}
			sub.stream = stream;
		} else host.send(m);
		this.#upstream.set(id, sub);
		this.#byTrack.set(track, sub);
	}

	/** 17+: a reply on one of our SUBSCRIBE streams. */
	#onUpstreamReply(sub: UpstreamSub, m: IetfMessage): void {
		switch (m.kind) {
			case "subscribe_ok":
				return this.onSubscribeOk(sub.id, m.alias);
			case "request_error":
				return this.onSubscribeError(sub.id, m.code, m.reason);
			case "publish_done":
				return this.onPublishDone(sub.id, m.status, m.streamCount, m.reason);
			case "subscribe_update":
				return;
			default:
				this.#host.violation(
					IetfClose.PROTOCOL_VIOLATION,
					`${m.kind === "unexpected" ? `message 0x${m.type.toString(16)}` : m.kind} on a SUBSCRIBE stream`,
				);
		}
	}

	/** 17+: the publisher ended one of our SUBSCRIBE streams (after PUBLISH_DONE, or instead of it). */
	#onUpstreamEnd(sub: UpstreamSub, how: "fin" | "reset"): void {
		sub.stream?.finish();
		if (sub.closed || this.#upstream.get(sub.id) !== sub) return;
		if (sub.alias === null) return this.onSubscribeError(sub.id, 0, `the SUBSCRIBE stream ended (${how})`);
		this.#finishUpstream(sub);
	}

	updateUpstream(_track: TrackHandle): void {
		// No SUBSCRIBE_UPDATE upstream: the aggregate's priority stays what the first viewer asked.
	}

	unsubscribeUpstream(track: TrackHandle): void {
		const sub = this.#byTrack.get(track);
		if (!sub) return;
		sub.closed = true;
		this.#forget(sub);
		// 17+: ending our side of the request's stream is the UNSUBSCRIBE.
		if (sub.stream) sub.stream.finish();
		else if (!this.#host.closed) this.#host.send({ kind: "unsubscribe", requestId: sub.id });
		if (sub.alias !== null) this.#dropParked(sub.alias);
		else if (!this.#awaitingAlias()) this.#dropParked(null);
	}

	fetchTrackInfo(_broadcastPath: Path, _track: string): Promise<TrackInfo> {
		// Drafts 14–16 declare no track properties the relay reads: moq-relay's defaults, as for lite-02..04.
		return Promise.resolve({ ...DEFAULT_TRACK_INFO });
	}

	// ---------------------------------------------------------------------------------------------
	// Replies to our SUBSCRIBEs (odd request IDs)

	/** True when `requestId` is one of our upstream SUBSCRIBEs (handled here). */
	owns(requestId: number): boolean {
		return this.#upstream.has(requestId);
	}

	onSubscribeOk(requestId: number, alias: number): void {
		const sub = this.#upstream.get(requestId);
		if (!sub || sub.closed) return;
		if (sub.alias !== null) return this.#host.violation(IetfClose.PROTOCOL_VIOLATION, "a second SUBSCRIBE_OK");
		const other = this.#byAlias.get(alias);
		if (other && other !== sub)
			return this.#host.violation(IetfClose.DUPLICATE_TRACK_ALIAS, `track alias ${alias} in use`);
		sub.alias = alias;
		this.#byAlias.set(alias, sub);
		const waiting = this.#parked.filter((p) => p.header.alias === alias);
		if (waiting.length === 0) return;
		this.#parked = this.#parked.filter((p) => p.header.alias !== alias);
		for (const p of waiting) this.#startIngest(sub, p.stream, p.header, p.chunks);
	}

	onSubscribeError(requestId: number, code: number, reason: string): void {
		const sub = this.#upstream.get(requestId);
		if (!sub) return;
		this.#host.log.info("upstream subscribe refused", { track: sub.track.name, code, reason });
		if (!sub.closed) {
			sub.closed = true;
			sub.track.abortTrack(NOT_FOUND);
		}
		this.#forget(sub);
		if (!this.#awaitingAlias()) this.#dropParked(null);
	}

	onPublishDone(requestId: number, status: number, streamCount: number, reason: string): void {
		const sub = this.#upstream.get(requestId);
		if (!sub) return;
		this.#host.log.debug("upstream publish done", { track: sub.track.name, status, streamCount, reason });
		if (streamCount > 0) sub.streamCount = streamCount;
		this.#finishUpstream(sub);
	}

	#finishUpstream(sub: UpstreamSub): void {
		if (sub.closed || sub.ending) return;
		const host = this.#host;
		sub.ending = setTimeout(() => host.guarded(() => this.#endUpstream(sub)), TRACK_END_GRACE_MS);
		if (sub.streamCount !== null) this.#maybeEndUpstream(sub);
		else
			setTimeout(
				() =>
					host.guarded(() => {
						sub.settled = true;
						this.#maybeEndUpstream(sub);
					}),
				TRACK_END_SETTLE_MS,
			);
	}

	#maybeEndUpstream(sub: UpstreamSub): void {
		if (sub.closed || !sub.ending || sub.inFlight > 0) return;
		const complete = sub.streamCount !== null ? sub.streams >= sub.streamCount : sub.settled;
		if (complete || this.#sessionClosed) this.#endUpstream(sub);
	}

	#endUpstream(sub: UpstreamSub): void {
		if (sub.ending) clearTimeout(sub.ending);
		sub.ending = null;
		if (!sub.closed) {
			sub.closed = true;
			sub.track.endTrack(sub.latestGroup + 1);
		}
		this.#forget(sub);
	}

	#forget(sub: UpstreamSub): void {
		if (this.#upstream.get(sub.id) === sub) this.#upstream.delete(sub.id);
		if (this.#byTrack.get(sub.track) === sub) this.#byTrack.delete(sub.track);
		if (sub.alias !== null && this.#byAlias.get(sub.alias) === sub) this.#byAlias.delete(sub.alias);
	}

	#groupDone(sub: UpstreamSub): void {
		if (sub.inFlight > 0) sub.inFlight--;
		if (sub.ending) this.#maybeEndUpstream(sub);
	}

	// ---------------------------------------------------------------------------------------------
	// Subgroup streams from the publishing client

	/** A uni stream whose type (a SUBGROUP_HEADER type) the session has read. */
	onSubgroupStream(s: TransportStream, reader: ControlReader, type: number): void {
		const host = this.#host;
		let started = false;
		s.onFin = () => {
			if (!started) host.violation(IetfClose.PROTOCOL_VIOLATION, "subgroup stream ended inside its header");
		};
		reader.follow(() => {
			if (started) return;
			const header = reader.next(asIetf(inDraft(host.draft, (r) => decodeSubgroupHeader(r, type, host.draft))));
			if (header === undefined) return;
			started = true;
			const rest = reader.buf.rest();
			const first = rest.length ? [ownedCopy(rest)] : [];
			this.#onHeader(s, header, first);
		});
	}

	#onHeader(s: TransportStream, header: SubgroupHeader, chunks: Uint8Array[]): void {
		const host = this.#host;
		if (header.subgroup !== null && header.subgroup !== 0) {
			host.log.debug("subgroup refused", { alias: header.alias, group: header.group, subgroup: header.subgroup });
			return this.#stopStream(s);
		}
		// 18+: a stream without FIRST_OBJECT starts partway through its group, which the model cannot hold.
		if (!header.firstObject) {
			host.log.debug("subgroup refused: no FIRST_OBJECT", { alias: header.alias, group: header.group });
			return this.#stopStream(s);
		}
		const sub = this.#byAlias.get(header.alias);
		if (sub && !sub.closed) return this.#startIngest(sub, s, header, chunks);
		if (sub || !this.#awaitingAlias() || this.#parked.length >= MAX_PARKED) {
			// Unsubscribed (a normal race), never asked for, or too many waiting: tell it to stop.
			s.onData = null;
			s.onFin = () => {};
			s.onReset = () => {};
			s.stop(IetfStreamReset.CANCELLED);
			return;
		}
		// The SUBSCRIBE_OK naming this alias may still be on its way: hold the stream (bounded).
		const p: Parked = { stream: s, header, chunks, bytes: chunks.reduce((n, c) => n + c.length, 0) };
		this.#parked.push(p);
		s.onData = (chunk) => {
			p.bytes += chunk.length;
			if (p.bytes > MAX_PARKED_BYTES) {
				this.#parked = this.#parked.filter((x) => x !== p);
				this.#stopStream(s);
				return;
			}
			p.chunks.push(ownedCopy(chunk));
		};
		s.onFin = () => p.chunks.push(FIN);
		s.onReset = () => {
			this.#parked = this.#parked.filter((x) => x !== p);
		};
	}

	#startIngest(sub: UpstreamSub, s: TransportStream, header: SubgroupHeader, chunks: Uint8Array[]): void {
		const host = this.#host;
		const relay = host.relay;
		sub.streams++;
		if (header.group > sub.latestGroup) sub.latestGroup = header.group;
		const g = new IetfGroupIngest(
			sub.track,
			header.group,
			s,
			host.draft,
			header.extensions,
			relay.config.limits.maxFrameBytes,
			relay.figures,
			this.#ingestHost,
		);
		if (g.done) {
			if (sub.ending) this.#maybeEndUpstream(sub);
			return;
		}
		this.#ingests.add(g);
		sub.inFlight++;
		let settled = false;
		const settle = () => {
			if (settled) return;
			settled = true;
			this.#ingests.delete(g);
			this.#groupDone(sub);
		};
		// Also when the ingest refuses the group itself mid-way: it stops the stream, and a stopped
		// stream hears no FIN or reset from its transport (on a long-lived session the group, its
		// track and the track's ring would stay reachable).
		g.onDone = settle;
		const finish = () => {
			g.finish();
			settle();
		};
		s.onData = (chunk) => g.push(chunk);
		s.onFin = finish;
		s.onReset = () => {
			g.abort(CANCEL);
			settle();
		};
		for (const c of chunks) {
			if (c === FIN) return finish();
			g.push(c);
		}
	}

	readonly #ingestHost: IngestHost = {
		refused: (why: string) => this.#host.log.debug("subgroup stream refused", { why }),
		violation: (err: IetfDecodeError) => this.#host.violation(err.code, err.message),
	};

	#stopStream(s: TransportStream): void {
		s.onData = null;
		s.onFin = () => {};
		s.onReset = () => {};
		s.stop(IetfStreamReset.INTERNAL_ERROR);
	}

	/** Some SUBSCRIBE of ours has no SUBSCRIBE_OK yet. */
	#awaitingAlias(): boolean {
		for (const sub of this.#upstream.values()) if (sub.alias === null && !sub.closed) return true;
		return false;
	}

	/** Stops parked streams for `alias` (null: every one). */
	#dropParked(alias: number | null): void {
		const keep: Parked[] = [];
		for (const p of this.#parked) {
			if (alias === null || p.header.alias === alias) {
				p.stream.onData = null;
				p.stream.stop(IetfStreamReset.CANCELLED);
			} else keep.push(p);
		}
		this.#parked = keep;
	}
}

/** Marks a parked stream's FIN in its chunk list. */
const FIN = new Uint8Array(0);
