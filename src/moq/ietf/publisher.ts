/**
 * The publisher side of an IETF session: toward a viewer the relay is the publisher. It answers
 * SUBSCRIBE from the track rings (track-serve.ts), UNSUBSCRIBE, and SUBSCRIBE_NAMESPACE from the
 * relay's announcements: on draft 16+ with NAMESPACE / NAMESPACE_DONE on the request's own stream,
 * on 14/15 (which predate those) with PUBLISH_NAMESPACE requests of its own, withdrawn with
 * PUBLISH_NAMESPACE_DONE. Every namespace is relative to the session root from the grant.
 *
 * One logic for both framings (host.ts): replies go where the request came from (`Reply`): the
 * control stream on 14–16, the request's own stream on 17+, where PUBLISH_DONE also ends the
 * stream and the viewer ending it is the UNSUBSCRIBE.
 * @module
 */

import { IetfClose, IetfRequestError, IetfStreamReset } from "../../errors/codes.ts";
import { joinPath, type Path, PathError, stripPrefix } from "../../path/index.ts";
import type { AnnounceEntry, AnnounceWatcher } from "../../relay/announcements.ts";
import { refuse as countRefusal } from "../../transport/refusals.ts";
import type { TransportStream } from "../../transport/types.ts";
import type { IetfHost, Reply } from "./host.ts";
import { IetfTrackServe } from "./track-serve.ts";
import { FilterType, type IetfMessage, Msg, MsgParam, pathToTuple, tupleToPath } from "./wire/message.ts";

type Subscribe = Extract<IetfMessage, { kind: "subscribe" }>;
type SubscribeNamespace = Extract<IetfMessage, { kind: "subscribe_namespace" }>;

/** One SUBSCRIBE_NAMESPACE: its prefix, the paths it has been told of, and where it is told. */
interface NamespaceWatch {
	readonly requestId: number;
	/** Viewer-relative prefix. */
	readonly prefix: Path;
	/** Draft 16+: the request's own stream; 14/15: null (the control stream and PUBLISH_NAMESPACE). */
	readonly stream: TransportStream | null;
	/** Viewer-relative paths announced through this watch. */
	readonly sent: Set<Path>;
	readonly watcher: AnnounceWatcher;
}

/** Draft 14/15: one PUBLISH_NAMESPACE of ours, shared by every watch that covers its path. */
interface Advert {
	/** Our request ID; -1 while the client's MAX_REQUEST_ID kept it from being sent. */
	readonly requestId: number;
	refs: number;
	/** The client refused or cancelled it: it is not withdrawn with PUBLISH_NAMESPACE_DONE. */
	refused: boolean;
}

export class IetfPublisher {
	readonly #host: IetfHost;
	readonly #serves = new Map<number, IetfTrackServe>();
	/** 17+: each subscription's own stream (its SUBSCRIBE_OK and PUBLISH_DONE go there). */
	readonly #replies = new Map<number, TransportStream>();
	readonly #watches = new Map<number, NamespaceWatch>();
	readonly #adverts = new Map<Path, Advert>();
	readonly #advertIds = new Map<number, Path>();

	constructor(host: IetfHost) {
		this.#host = host;
	}

	/** The peer granted stream credit: subscriptions waiting at a group go on. */
	onStreamCredit(): void {
		for (const serve of this.#serves.values()) if (serve.blocked) serve.drain();
	}

	/** The session closed: every subscription and namespace watch ends. */
	close(): void {
		const relay = this.#host.relay;
		for (const serve of this.#serves.values()) serve.close();
		relay.figures.subscriptions -= this.#serves.size;
		this.#serves.clear();
		this.#replies.clear();
		for (const w of this.#watches.values()) relay.announces.unwatch(w.watcher);
		this.#watches.clear();
	}

	// ---------------------------------------------------------------------------------------------
	// SUBSCRIBE

	/** `reply`: the request's own stream (17+), or null (the control stream). */
	onSubscribe(m: Subscribe, reply: Reply = null): void {
		const host = this.#host;
		const relay = host.relay;
		const grant = host.grant;
		const refuse = (code: number, reason: string) => {
			host.log.debug("subscribe refused", { requestId: m.requestId, code, reason });
			host.refuse(Msg.REQUEST_ERROR, m.requestId, code, reason, reply);
		};
		const rel = this.#path(m.namespace, (reason) => refuse(host.doesNotExist, reason));
		if (rel === null) return;
		if (!m.forward) return refuse(IetfRequestError.NOT_SUPPORTED, "forward=0 (a paused subscription) is not supported");
		if (m.params.has(MsgParam.FILL_PARAMETERS))
			return refuse(IetfRequestError.NOT_SUPPORTED, "FILL_PARAMETERS (a backfill) is not supported by this relay");
		if (this.#serves.size >= relay.config.limits.maxSubscriptions) {
			countRefusal("subscriptions", host.log.warn, { session: host.id });
			return refuse(IetfRequestError.INTERNAL_ERROR, "too many subscriptions on this session");
		}
		if (!grant.canSubscribe(rel)) return refuse(IetfRequestError.UNAUTHORIZED, "outside the token's subscribe scope");
		const track = relay.track(joinPath(grant.root, rel), m.track);
		if (track === undefined) return refuse(host.doesNotExist, "no such broadcast");
		if (track === null) return refuse(IetfRequestError.INTERNAL_ERROR, "cache budget exhausted");
		if (m.filter.type !== FilterType.LARGEST_OBJECT)
			host.log.debug("subscribe filter served as the latest group", { requestId: m.requestId, filter: m.filter.type });
		const timeout = m.params.get(MsgParam.DELIVERY_TIMEOUT);
		const params = {
			// IETF priorities put 0 first; the relay's (moq-lite's) put 255 first.
			priority: 255 - m.priority,
			ordered: m.groupOrder === 1,
			maxLatencyMs: typeof timeout === "number" && timeout <= 0x7fffffff ? timeout : 0,
			startGroup: null,
			endGroup: null,
		};
		const serve = new IetfTrackServe(
			m.requestId,
			track,
			host.transport,
			params,
			relay.figures,
			this.#onServeDone,
			host.draft,
		);
		serve.onFault = host.onFault;
		host.reply(reply, {
			kind: "subscribe_ok",
			requestId: m.requestId,
			// The track alias is the request ID (moq-relay's choice): unique on the session by construction.
			alias: m.requestId,
			expires: 0,
			groupOrder: params.ordered ? 1 : 2,
			largest: null,
			params: new Map(),
			extensions: new Map(),
		});
		this.#serves.set(m.requestId, serve);
		if (reply) this.#replies.set(m.requestId, reply);
		relay.figures.subscriptions++;
		track.addConsumer(serve);
		serve.drain();
	}

	/** The subscription ended on our side: PUBLISH_DONE, and it is forgotten. */
	readonly #onServeDone = (serve: IetfTrackServe, status: number, streamCount: number, reason: string): void => {
		if (this.#serves.get(serve.requestId) !== serve) return;
		this.#serves.delete(serve.requestId);
		const reply = this.#replies.get(serve.requestId) ?? null;
		this.#replies.delete(serve.requestId);
		this.#host.relay.figures.subscriptions--;
		if (this.#host.closed) return;
		this.#host.reply(reply, { kind: "publish_done", requestId: serve.requestId, status, streamCount, reason });
		// 17+: PUBLISH_DONE is the subscription's last word on its stream.
		reply?.finish();
	};

	onUnsubscribe(requestId: number): void {
		const serve = this.#serves.get(requestId);
		// Unknown: already ended on our side (PUBLISH_DONE crossed the UNSUBSCRIBE), or refused.
		if (!serve) return;
		this.#serves.delete(requestId);
		this.#replies.delete(requestId);
		this.#host.relay.figures.subscriptions--;
		serve.close();
	}

	/** REQUEST_UPDATE / SUBSCRIBE_UPDATE: accepted and ignored (the relay serves every subscription live). */
	onSubscribeUpdate(subscriptionId: number): void {
		this.#host.log.debug("subscribe update ignored", { subscription: subscriptionId });
	}

	// ---------------------------------------------------------------------------------------------
	// SUBSCRIBE_NAMESPACE

	/** `stream`: the request's own stream (draft 16+), or null on the control stream (14/15). */
	onSubscribeNamespace(m: SubscribeNamespace, stream: Reply): void {
		const host = this.#host;
		const relay = host.relay;
		const grant = host.grant;
		const refuse = (code: number, reason: string) => {
			host.log.debug("subscribe_namespace refused", { requestId: m.requestId, code, reason });
			host.refuse(Msg.SUBSCRIBE_NAMESPACE_ERROR, m.requestId, code, reason, stream);
		};
		const prefix = this.#path(m.prefix, (reason) => refuse(host.doesNotExist, reason));
		if (prefix === null) return;
		if (this.#watches.size >= relay.config.limits.maxAnnounceRequests) {
			countRefusal("announce_requests", host.log.warn, { session: host.id });
			return refuse(IetfRequestError.INTERNAL_ERROR, "too many namespace subscriptions on this session");
		}
		const ok: IetfMessage = {
			kind: "request_ok",
			type: Msg.SUBSCRIBE_NAMESPACE_OK,
			requestId: m.requestId,
			params: new Map(),
		};
		host.reply(stream, ok);
		// A prefix outside the token's scope is answered with nothing to announce (as moq-relay and
		// the lite sessions do), not an error that would look fatal to the client.
		const absPrefix = joinPath(grant.root, prefix);
		const watch: NamespaceWatch = {
			requestId: m.requestId,
			prefix,
			stream,
			sent: new Set(),
			watcher: {
				prefix: absPrefix,
				onAnnounce: (path: Path, entry: AnnounceEntry | null) =>
					host.guarded(() => this.#onAnnounce(watch, path, entry)),
			},
		};
		this.#watches.set(m.requestId, watch);
		for (const e of relay.announces.watch(watch.watcher)) this.#onAnnounce(watch, e.path, e);
		if (stream) {
			const end = () => this.#unwatch(watch, false);
			stream.onFin = () => {
				end();
				stream.finish();
			};
			stream.onReset = end;
			stream.onStop = () => {
				end();
				stream.reset(IetfStreamReset.CANCELLED);
			};
		}
	}

	/** UNSUBSCRIBE_NAMESPACE (14/15): by request ID, or (the draft-14 text) by prefix. */
	onUnsubscribeNamespace(requestId: number | null, prefix: string[] | null): void {
		let watch: NamespaceWatch | undefined;
		if (requestId !== null) watch = this.#watches.get(requestId);
		else if (prefix !== null) {
			let rel: Path;
			try {
				rel = tupleToPath(prefix, this.#host.limits.maxPathSegments);
			} catch {
				return;
			}
			for (const w of this.#watches.values()) if (w.stream === null && w.prefix === rel) watch = w;
		}
		if (watch) this.#unwatch(watch, true);
	}

	#unwatch(watch: NamespaceWatch, withdraw: boolean): void {
		if (this.#watches.get(watch.requestId) !== watch) return;
		this.#watches.delete(watch.requestId);
		this.#host.relay.announces.unwatch(watch.watcher);
		// 14/15: the PUBLISH_NAMESPACE requests this watch alone held are withdrawn.
		if (watch.stream === null) for (const rel of watch.sent) this.#release(rel, withdraw);
		watch.sent.clear();
	}

	#onAnnounce(watch: NamespaceWatch, absPath: Path, entry: AnnounceEntry | null): void {
		if (this.#watches.get(watch.requestId) !== watch || this.#host.closed) return;
		const grant = this.#host.grant;
		const rel = stripPrefix(absPath, grant.root);
		const visible = entry !== null && rel !== null && grant.canSubscribe(rel);
		if (rel === null) return;
		if (visible) {
			if (watch.sent.has(rel)) return;
			watch.sent.add(rel);
			if (watch.stream) {
				const suffix = stripPrefix(rel, watch.prefix) ?? rel;
				this.#host.sendOn(watch.stream, { kind: "namespace", suffix: pathToTuple(suffix) });
			} else this.#advertise(rel);
			return;
		}
		if (!watch.sent.delete(rel)) return;
		if (watch.stream) {
			const suffix = stripPrefix(rel, watch.prefix) ?? rel;
			this.#host.sendOn(watch.stream, { kind: "namespace_done", suffix: pathToTuple(suffix) });
		} else this.#release(rel, true);
	}

	/** 14/15: PUBLISH_NAMESPACE for `rel`, once per session however many watches cover it. */
	#advertise(rel: Path): void {
		const existing = this.#adverts.get(rel);
		if (existing) {
			existing.refs++;
			return;
		}
		const id = this.#host.allocRequestId();
		this.#adverts.set(rel, { requestId: id ?? -1, refs: 1, refused: false });
		if (id === null) {
			this.#host.log.info("namespace not advertised: the client's MAX_REQUEST_ID is reached", { path: rel });
			return;
		}
		this.#advertIds.set(id, rel);
		this.#host.send({ kind: "publish_namespace", requestId: id, namespace: pathToTuple(rel), params: new Map() });
	}

	#release(rel: Path, withdraw: boolean): void {
		const a = this.#adverts.get(rel);
		if (!a || --a.refs > 0) return;
		this.#adverts.delete(rel);
		this.#advertIds.delete(a.requestId);
		if (!withdraw || a.refused || a.requestId < 0 || this.#host.closed) return;
		this.#host.send({ kind: "publish_namespace_done", requestId: a.requestId, namespace: pathToTuple(rel) });
	}

	/** A reply to one of our PUBLISH_NAMESPACE requests; false when `requestId` is not one. */
	onAdvertReply(requestId: number, ok: boolean, reason: string): boolean {
		const rel = this.#advertIds.get(requestId);
		if (rel === undefined) return false;
		if (!ok) {
			const a = this.#adverts.get(rel);
			if (a) a.refused = true;
			this.#host.log.debug("client refused a namespace", { path: rel, reason });
		}
		return true;
	}

	/** PUBLISH_NAMESPACE_CANCEL: the client no longer wants one of our namespaces (by ID on 16, by name before). */
	onAdvertCancel(requestId: number | null, namespace: string[] | null): void {
		let rel: Path | undefined;
		if (requestId !== null) rel = this.#advertIds.get(requestId);
		else if (namespace !== null) {
			try {
				rel = tupleToPath(namespace, this.#host.limits.maxPathSegments);
			} catch {
				return;
			}
		}
		const a = rel === undefined ? undefined : this.#adverts.get(rel);
		if (a) a.refused = true;
	}

	/**
	 * A namespace tuple as a viewer-relative path. A "." or ".." segment refuses the request alone
	 * (`refuse`); too many segments is the peer's protocol violation (the session closes). Null when
	 * it was refused either way.
	 */
	#path(fields: string[], refuse: (reason: string) => void): Path | null {
		try {
			return tupleToPath(fields, this.#host.limits.maxPathSegments);
		} catch (err) {
			if (!(err instanceof PathError)) throw err;
			if (err.reason === "dot-segment") refuse("a namespace field of '.' or '..' is not allowed");
			else this.#host.violation(IetfClose.PROTOCOL_VIOLATION, err.message);
			return null;
		}
	}
}
