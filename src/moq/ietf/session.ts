/**
 * One IETF moq-transport session (drafts 14–20) with one client: its lifecycle (draft, SETUP,
 * authorisation, expiry, close), the session guard, and the two framings of requests:
 * - drafts 14–16: the control stream (one bidirectional stream, every message type+u16-length
 *   framed), demultiplexed by message and request ID, with request ID flow control (MAX_REQUEST_ID
 *   both ways); draft 16 adds SUBSCRIBE_NAMESPACE streams;
 * - drafts 17+: SETUP (0x2F00) on a unidirectional stream each side opens (ours then carries only
 *   GOAWAY), and every request a bidirectional stream of its own, answered on it and ended by it
 *   (the relay's own upstream SUBSCRIBEs too); every varint leading-ones.
 * Subgroup streams from a publishing client are dispatched the same way on both. Once ready it hands
 * the work to its two sides, as the moq-lite session does: toward viewers the relay is the
 * publisher (publisher.ts), toward a publishing client the subscriber (subscriber.ts); they hold the
 * request logic once, whichever framing carried the request. Both meet every other dialect in the
 * same relay core and track rings.
 *
 * Nothing but SETUP is read before the session is authorised: `?jwt=` in the URL (WebTransport,
 * WebSocket; checked by the listener before the session exists) or the SETUP PATH parameter (raw
 * QUIC), exactly as for moq-lite sessions. SERVER_SETUP is only sent once the token is good.
 * @module
 */

import type { Grant } from "../../auth/index.ts";
import { parseConnectTarget, redactPath, tokenFromQuery } from "../../auth/params.ts";
import { DecodeError } from "../../coding/errors.ts";
import { Writer } from "../../coding/writer.ts";
import * as Code from "../../errors/codes.ts";
import { IetfClose, IetfRequestError, IetfStreamReset } from "../../errors/codes.ts";
import type { Logger } from "../../log/logger.ts";
import { probe } from "../../metrics/collection.ts";
import { countSessionClose } from "../../metrics/session-closes.ts";
import type { Relay } from "../../relay/relay.ts";
import { reportFault } from "../../transport/guard.ts";
import { refuse as countRefusal } from "../../transport/refusals.ts";
import type { TransportSession, TransportStream } from "../../transport/types.ts";
import { type ControlLimits, ControlReader } from "../control-reader.ts";
import type { IetfHost, Reply, RequestEvents } from "./host.ts";
import { IetfPublisher } from "./publisher.ts";
import { IetfSubscriber } from "./subscriber.ts";
import {
	DRAFT_14,
	doesNotExistCode,
	draftFromAlpn,
	draftName,
	hasNamespaceStream,
	hasRequestFlowControl,
	hasRequestStreams,
	hasSetupVersions,
	hasUnifiedSetup,
	type IetfDraft,
	versionCode,
} from "./version.ts";
import {
	asIetf,
	decodeAfterType,
	decodeControl,
	encodeControl,
	IetfDecodeError,
	type IetfLimits,
	type IetfMessage,
	Msg,
	type Params,
	readVarint,
	SetupParam,
} from "./wire/message.ts";
import { isSubgroupType } from "./wire/object.ts";

export interface IetfSessionContext {
	relay: Relay;
	/** Resolves the session's rights from its path and token; rejects to refuse. */
	authorize(path: string, jwt: string | null): Promise<Grant>;
	log: Logger;
}

const SETUP_TIMEOUT_MS = 10_000;
/**
 * Request IDs granted ahead of the highest the client has used (its IDs are even: half as many
 * requests). Live state is bounded by the [limits] on subscriptions and announcements, not by this.
 */
const REQUEST_WINDOW = 1024;
const IMPLEMENTATION = new TextEncoder().encode("moq-fanout");
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The session-close reason an IETF code is counted under (metrics/session-closes.ts speaks moq-lite codes). */
function liteEquivalent(code: number): number {
	switch (code) {
		case IetfClose.NO_ERROR:
			return Code.CANCEL;
		case IetfClose.INTERNAL_ERROR:
			return Code.FAULT;
		case IetfClose.UNAUTHORIZED:
			return Code.UNAUTHORIZED;
		case IetfClose.CONTROL_MESSAGE_TIMEOUT:
		case IetfClose.DATA_STREAM_TIMEOUT:
		case IetfClose.GOAWAY_TIMEOUT:
			return Code.TIMEOUT;
		case IetfClose.PROTOCOL_VIOLATION:
		case IetfClose.INVALID_REQUEST_ID:
		case IetfClose.DUPLICATE_TRACK_ALIAS:
		case IetfClose.KEY_VALUE_FORMATTING_ERROR:
		case IetfClose.TOO_MANY_REQUESTS:
		case IetfClose.INVALID_PATH:
		case IetfClose.MALFORMED_PATH:
		case IetfClose.VERSION_NEGOTIATION_FAILED:
			return Code.PROTOCOL_VIOLATION;
		default:
			return Code.APPLICATION_BASE;
	}
}

/** The close code for a caught error: an IETF decode error's own, a moq-lite decode error's as a violation, else INTERNAL_ERROR. */
function ietfFaultCode(err: unknown): number {
	if (err instanceof IetfDecodeError) return err.code;
	if (err instanceof DecodeError) return IetfClose.PROTOCOL_VIOLATION;
	return IetfClose.INTERNAL_ERROR;
}

export class IetfSession implements IetfHost {
	readonly id: number;
	readonly transport: TransportSession;
	readonly relay: Relay;
	readonly log: Logger;
	readonly limits: Required<IetfLimits>;
	readonly #ctx: IetfSessionContext;
	readonly #controlLimits: ControlLimits;
	/** Fixed by the application protocol (15, 16), or by CLIENT_SETUP (`moq-00`, `moql`, none): 14. */
	#draft: IetfDraft | null;
	#grant: Grant | null = null;
	#setupSeen = false;
	#ready = false;
	#closed = false;
	#setupTimer: ReturnType<typeof setTimeout> | null = null;
	#expiryTimer: ReturnType<typeof setTimeout> | null = null;
	#control: TransportStream | null = null;
	#controlReader: ControlReader | null = null;
	/** Streams that arrived before the session was ready. */
	#pending: (() => void)[] = [];
	#publisher: IetfPublisher | null = null;
	#subscriber: IetfSubscriber | null = null;
	/** 17+: the client's SETUP stream (unidirectional; after SETUP only GOAWAY may follow). */
	#setupStream: TransportStream | null = null;
	/** 17+: client request IDs whose streams are open (an ID may not be reused while its request lives). */
	readonly #liveRequests = new Set<number>();
	/** Client request IDs must stay below this (our MAX_REQUEST_ID). */
	#maxClientRequest = REQUEST_WINDOW;
	/** The highest client request ID seen on the control stream (14–16). */
	#lastControlRequest = -1;
	/**
	 * Even IDs below #lastControlRequest that have not come yet (14–16). The official client takes
	 * an ID, then awaits before writing its request, so concurrent requests can reach us out of
	 * order (0, 2, 6, 8, then 4): an ID that fills such a gap is accepted, one used before is not.
	 * Only gaps within REQUEST_WINDOW of the highest ID are kept: a bounded set.
	 */
	readonly #requestGaps = new Set<number>();
	/** Our request IDs must stay below this (the client's MAX_REQUEST_ID). */
	#peerMaxRequest = 0;
	#nextRequest = 1;
	#blockedAt = -1;
	readonly #w = new Writer(256);

	constructor(transport: TransportSession, ctx: IetfSessionContext) {
		this.transport = transport;
		this.#ctx = ctx;
		this.relay = ctx.relay;
		this.id = ctx.relay.nextSessionId();
		const limits = ctx.relay.config.limits;
		this.limits = { maxMessageBytes: limits.maxMessageBytes, maxPathSegments: limits.maxPathSegments };
		this.#controlLimits = {
			maxBytes: Math.max(limits.maxMessageBytes, 0xffff) + 16,
			violation: IetfClose.PROTOCOL_VIOLATION,
		};
		const fixed = draftFromAlpn(transport.protocol);
		// moq-00 (and moql / none) leave the draft to CLIENT_SETUP's version list.
		this.#draft = fixed !== null && !hasSetupVersions(fixed) ? fixed : null;
		this.log = ctx.log.child({
			session: this.id,
			remote: transport.remote,
			transport: transport.kind,
			dialect: "ietf",
		});
		probe("session", this);
	}

	/** The negotiated draft (14 until CLIENT_SETUP says otherwise on `moq-00` / `moql`). */
	get draft(): IetfDraft {
		return this.#draft ?? 14;
	}

	/** "moq-transport-16"; "" before SETUP on a negotiated session. */
	get version(): string {
		return this.#draft === null ? "" : draftName(this.#draft);
	}

	get grant(): Grant {
		if (!this.#grant) throw new Error("the session is not authorised yet");
		return this.#grant;
	}

	get root(): string | null {
		return this.#grant?.root ?? null;
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** This session's side toward a publishing client: the relay's UpstreamPublisher for what it announces. */
	get upstream(): IetfSubscriber | null {
		return this.#subscriber;
	}

	get doesNotExist(): number {
		return doesNotExistCode(this.draft);
	}

	/** 17+: every request is a stream of its own. */
	get requestStreams(): boolean {
		return hasRequestStreams(this.draft);
	}

	start(): void {
		const t = this.transport;
		this.relay.figures.sessions++;
		t.onStream = (s) => this.#onStream(s);
		t.onClose = (code, reason, graceful) => this.#teardown(code, reason, graceful === true);
		t.onStreamCredit = () => this.#publisher?.onStreamCredit();
		this.#setupTimer = setTimeout(
			() => this.guarded(() => this.close(IetfClose.CONTROL_MESSAGE_TIMEOUT, "no SETUP")),
			SETUP_TIMEOUT_MS,
		);
		// Raw QUIC carries the path in SETUP's PATH parameter: authorised once it arrives.
		if (t.kind !== "quic") this.#authorize(t.path, tokenFromQuery(t.query));
	}

	/** The relay is draining: GOAWAY on the control stream (17+: our SETUP stream), with `uri` ("" for none). */
	goaway(uri: string): boolean {
		if (this.#closed || !this.#ready) return false;
		this.send({ kind: "goaway", uri, timeout: 0 });
		return true;
	}

	close(code: number, reason: string): void {
		if (this.#closed) return;
		this.log.debug("closing session", { code, reason });
		this.transport.close(code, reason);
		this.#teardown(code, reason);
	}

	readonly onFault = (err: unknown): void => {
		reportFault(err, this.log.warn, {
			session: this.id,
			remote: this.transport.remote,
			transport: this.transport.kind,
		});
		try {
			this.close(ietfFaultCode(err), "internal error");
		} catch {
			// The transport is gone too: nothing else to do for it.
		}
	};

	guarded(fn: () => void): void {
		try {
			fn();
		} catch (err) {
			this.onFault(err);
		}
	}

	violation(code: number, reason: string): void {
		if (this.#closed) return;
		countRefusal("protocol", this.log.warn, { session: this.id, remote: this.transport.remote, code, reason });
		this.close(code, reason);
	}

	reader(s: TransportStream): ControlReader {
		return new ControlReader(s, this.#controlLimits, this.#onReadError);
	}

	readonly #onReadError = (code: number, reason: string): void => this.violation(code, reason);

	// ---------------------------------------------------------------------------------------------
	// Sending

	send(m: IetfMessage): void {
		if (this.#closed || !this.#control) return;
		this.sendOn(this.#control, m);
	}

	sendOn(s: TransportStream, m: IetfMessage): void {
		if (this.#closed) return;
		const w = this.#w.clear();
		encodeControl(w, m, this.draft);
		s.write(w.view());
	}

	reply(to: Reply, m: IetfMessage): void {
		if (to) this.sendOn(to, m);
		else this.send(m);
	}

	refuse(type14: number, requestId: number, code: number, reason: string, to: Reply = null): void {
		const m: IetfMessage = { kind: "request_error", type: type14, requestId, code, retryInterval: 0, reason };
		if (!to) return this.send(m);
		this.sendOn(to, m);
		to.finish();
	}

	openRequest(m: IetfMessage, events: RequestEvents): TransportStream | null {
		if (this.#closed) return null;
		const s = this.transport.openBidi();
		if (!s) return null;
		this.sendOn(s, m);
		const reader = this.reader(s);
		reader.follow(() => {
			while (!this.#closed) {
				const reply = reader.next((r) => decodeControl(r, this.draft, this.limits));
				if (reply === undefined) return;
				events.onReply(reply);
			}
		});
		s.onFin = () => events.onEnd("fin");
		s.onReset = () => events.onEnd("reset");
		s.onStop = () => {};
		return s;
	}

	// ---------------------------------------------------------------------------------------------
	// Request IDs

	acceptRequestId(id: number, onControlStream: boolean): boolean {
		if (id % 2 !== 0) {
			this.violation(IetfClose.INVALID_REQUEST_ID, `request ID ${id} is odd: a client's are even`);
			return false;
		}
		if (!hasRequestFlowControl(this.draft)) {
			// 17+: no MAX_REQUEST_ID; an ID names one live request (its stream) at a time.
			if (this.#liveRequests.has(id)) {
				this.violation(IetfClose.INVALID_REQUEST_ID, `request ID ${id} is already in use`);
				return false;
			}
			this.#liveRequests.add(id);
			return true;
		}
		if (id >= this.#maxClientRequest) {
			this.violation(
				IetfClose.TOO_MANY_REQUESTS,
				`request ID ${id} is not below MAX_REQUEST_ID ${this.#maxClientRequest}`,
			);
			return false;
		}
		if (onControlStream && !this.#takeControlRequestId(id)) return false;
		// Keep the window open ahead of the client (it blocks at the limit, it never asks twice).
		if (this.#maxClientRequest - id <= REQUEST_WINDOW / 2) this.#grantMore(id);
		return true;
	}

	/** 14–16: `id` is new (past the highest, or one of the gaps below it); false after closing. */
	#takeControlRequestId(id: number): boolean {
		const last = this.#lastControlRequest;
		if (id > last) {
			const floor = id - REQUEST_WINDOW;
			for (let gap = Math.max(last + 2, floor); gap < id; gap += 2) this.#requestGaps.add(gap);
			if (this.#requestGaps.size > 0 && last + 2 < floor) {
				for (const gap of this.#requestGaps) if (gap < floor) this.#requestGaps.delete(gap);
			}
			this.#lastControlRequest = id;
			return true;
		}
		if (this.#requestGaps.delete(id)) return true;
		this.violation(IetfClose.INVALID_REQUEST_ID, `request ID ${id} was used before (highest so far ${last})`);
		return false;
	}

	#grantMore(highest: number): void {
		const next = Math.max(this.#maxClientRequest, highest + 2 + REQUEST_WINDOW);
		if (next === this.#maxClientRequest) return;
		this.#maxClientRequest = next;
		this.send({ kind: "max_request_id", requestId: next });
	}

	allocRequestId(): number | null {
		const id = this.#nextRequest;
		if (!hasRequestFlowControl(this.draft)) {
			this.#nextRequest += 2;
			return id;
		}
		if (id >= this.#peerMaxRequest) {
			if (this.#blockedAt !== this.#peerMaxRequest) {
				this.#blockedAt = this.#peerMaxRequest;
				this.send({ kind: "requests_blocked", maximum: this.#peerMaxRequest });
			}
			return null;
		}
		this.#nextRequest += 2;
		return id;
	}

	// ---------------------------------------------------------------------------------------------
	// Authorisation and SETUP

	#authorize(path: string, jwt: string | null): void {
		this.#ctx.authorize(path, jwt).then(
			(grant) => this.guarded(() => this.#authorized(grant)),
			(err: Error) =>
				this.guarded(() => {
					countRefusal("auth");
					this.log.info("session refused", { reason: err.message, path: redactPath(path) });
					this.close(IetfClose.UNAUTHORIZED, err.message);
				}),
		);
	}

	#authorized(grant: Grant): void {
		if (this.#closed) return;
		this.#grant = grant;
		if (grant.expiresAt !== null) {
			const ms = Math.max(0, grant.expiresAt - Date.now());
			this.#expiryTimer = setTimeout(
				() => this.guarded(() => this.close(IetfClose.UNAUTHORIZED, "token expired")),
				Math.min(ms, 0x7fffffff),
			);
			this.#expiryTimer.unref?.();
		}
		this.#maybeReady();
	}

	#onClientSetup(m: IetfMessage): void {
		if (m.kind === "setup" && hasUnifiedSetup(this.draft)) return this.#onSetupParams(m.params);
		if (m.kind !== "client_setup") {
			this.violation(IetfClose.PROTOCOL_VIOLATION, "the control stream must begin with CLIENT_SETUP");
			return;
		}
		if (this.#draft === null) {
			if (!m.versions.includes(DRAFT_14)) {
				countRefusal("protocol", this.log.info, { session: this.id, why: "no supported version" });
				this.close(
					IetfClose.VERSION_NEGOTIATION_FAILED,
					"no supported version offered (this relay speaks draft-14 here)",
				);
				return;
			}
			this.#draft = 14;
		}
		this.#onSetupParams(m.params);
	}

	/** The client's SETUP parameters (14–16) or options (17+): request IDs granted, and on raw QUIC the path. */
	#onSetupParams(params: Params): void {
		this.#setupSeen = true;
		const peerMax = params.get(SetupParam.MAX_REQUEST_ID);
		if (typeof peerMax === "number" && hasRequestFlowControl(this.draft)) this.#peerMaxRequest = peerMax;
		const path = params.get(SetupParam.PATH);
		if (path instanceof Uint8Array) {
			if (this.transport.kind !== "quic") {
				this.violation(IetfClose.INVALID_PATH, "SETUP PATH over a transport with a URL");
				return;
			}
			let text: string;
			try {
				text = utf8.decode(path);
			} catch {
				this.violation(IetfClose.MALFORMED_PATH, "SETUP PATH is not UTF-8");
				return;
			}
			const target = parseConnectTarget(text || "/");
			if (target === null) {
				this.violation(IetfClose.MALFORMED_PATH, "SETUP PATH has malformed percent-encoding");
				return;
			}
			(this.transport as { setPath?: (p: string) => void }).setPath?.(text);
			this.#authorize(target.path, target.jwt);
		} else if (this.transport.kind === "quic") this.#authorize("/", null);
		this.log.debug("client setup", { draft: this.#draft, peerMaxRequest: this.#peerMaxRequest });
		this.#maybeReady();
	}

	#maybeReady(): void {
		if (this.#ready || this.#closed || !this.#grant || !this.#setupSeen) return;
		const streams = hasRequestStreams(this.draft);
		if (!streams && this.#control === null) return;
		if (!this.#grant.allowsRole(0)) {
			this.close(IetfClose.UNAUTHORIZED, "the token grants neither publishing nor subscribing");
			return;
		}
		if (streams) {
			// 17+: our SETUP on a unidirectional stream of ours, which then carries only GOAWAY.
			const s = this.transport.openUni();
			if (!s) {
				this.close(IetfClose.INTERNAL_ERROR, "no stream credit for SETUP");
				return;
			}
			this.#control = s;
			s.onStop = () => {};
		}
		this.#ready = true;
		if (this.#setupTimer) clearTimeout(this.#setupTimer);
		this.#setupTimer = null;
		if (streams) {
			// No MAX_REQUEST_ID (gone in 17) and no SOLICIT: a publishing client announces unasked.
			this.send({ kind: "setup", params: new Map([[SetupParam.IMPLEMENTATION, IMPLEMENTATION]]) });
		} else {
			const params: Params = new Map<number, number | Uint8Array>([
				[SetupParam.MAX_REQUEST_ID, this.#maxClientRequest],
				[SetupParam.IMPLEMENTATION, IMPLEMENTATION],
			]);
			this.send({ kind: "server_setup", version: versionCode(this.draft), params });
		}
		this.#publisher = new IetfPublisher(this);
		this.#subscriber = new IetfSubscriber(this);
		this.log.debug("session ready", { draft: this.draft, root: this.#grant.root });
		const pending = this.#pending;
		this.#pending = [];
		for (const route of pending) route();
		this.#pumpControl();
	}

	// ---------------------------------------------------------------------------------------------
	// Streams

	#onStream(s: TransportStream): void {
		if (this.#closed) {
			if (s.bidi) s.reset(IetfStreamReset.SESSION_CLOSED);
			s.stop(IetfStreamReset.SESSION_CLOSED);
			return;
		}
		if (hasRequestStreams(this.draft)) {
			this.#onStream17(s);
			return;
		}
		if (s.bidi && this.#control === null) {
			this.#onControlStream(s);
			return;
		}
		const reader = this.reader(s);
		if (s.bidi) {
			// Draft 16: a SUBSCRIBE_NAMESPACE on its own stream. Earlier: no other bidi stream exists.
			this.#whenReady(reader, () => this.#onNamespaceStream(s, reader));
			return;
		}
		let type: number | undefined;
		reader.follow(() => {
			if (type !== undefined) return;
			type = reader.next(asIetf((r) => r.varint()));
			if (type === undefined) return;
			const t = type;
			this.#whenReady(reader, () => this.#routeUni(s, reader, t));
		});
		s.onFin = () => {
			if (type === undefined)
				this.violation(IetfClose.PROTOCOL_VIOLATION, "a unidirectional stream ended before its type");
		};
		s.onReset = () => {};
	}

	/** Runs `route` now when the session is ready, else once SETUP is done (the stream's bytes wait in its reader). */
	#whenReady(reader: ControlReader, route: () => void): void {
		if (this.#ready) {
			route();
			return;
		}
		reader.follow(() => {});
		this.#pending.push(route);
	}

	#routeUni(s: TransportStream, reader: ControlReader, type: number): void {
		if (this.#closed) return;
		if (!isSubgroupType(type, this.draft)) {
			this.violation(IetfClose.PROTOCOL_VIOLATION, `unknown data stream type 0x${type.toString(16)}`);
			return;
		}
		this.#subscriber!.onSubgroupStream(s, reader, type);
	}

	#onNamespaceStream(s: TransportStream, reader: ControlReader): void {
		if (this.#closed) return;
		if (!hasNamespaceStream(this.draft)) {
			this.violation(IetfClose.PROTOCOL_VIOLATION, `a second bidirectional stream (draft-${this.draft} has one)`);
			return;
		}
		let started = false;
		s.onFin = () => {
			if (!started) s.finish();
		};
		s.onReset = () => {};
		reader.follow(() => {
			if (started) {
				if (reader.buf.length)
					reader.fail(IetfClose.PROTOCOL_VIOLATION, "data after SUBSCRIBE_NAMESPACE on its stream");
				return;
			}
			const m = reader.next((r) => decodeControl(r, this.draft, this.limits));
			if (m === undefined) return;
			started = true;
			if (m.kind !== "subscribe_namespace") {
				this.violation(IetfClose.PROTOCOL_VIOLATION, `a bidirectional stream opened with ${m.kind}`);
				return;
			}
			if (!this.acceptRequestId(m.requestId, false)) return;
			this.#publisher!.onSubscribeNamespace(m, s);
			if (reader.buf.length) reader.fail(IetfClose.PROTOCOL_VIOLATION, "data after SUBSCRIBE_NAMESPACE on its stream");
		});
	}

	// ---------------------------------------------------------------------------------------------
	// Drafts 17+: SETUP streams and a stream per request

	#onStream17(s: TransportStream): void {
		const reader = this.reader(s);
		if (s.bidi) {
			this.#whenReady(reader, () => this.#onRequestStream(s, reader));
			return;
		}
		let type: number | undefined;
		reader.follow(() => {
			if (type !== undefined) return;
			type = reader.next((r) => readVarint(r, this.draft));
			if (type === undefined) return;
			const t = type;
			// The client's SETUP is read at once: the session is not ready without it.
			if (t === Msg.SETUP) return this.#onSetupStream(s, reader);
			this.#whenReady(reader, () => this.#routeUni(s, reader, t));
		});
		s.onFin = () => {
			if (type === undefined)
				this.violation(IetfClose.PROTOCOL_VIOLATION, "a unidirectional stream ended before its type");
		};
		s.onReset = () => {};
	}

	/** The client's SETUP stream: SETUP, then nothing but GOAWAY; its end is the session's. */
	#onSetupStream(s: TransportStream, reader: ControlReader): void {
		if (this.#setupStream !== null) {
			this.violation(IetfClose.PROTOCOL_VIOLATION, "a second SETUP stream");
			return;
		}
		this.#setupStream = s;
		s.onFin = () => this.violation(IetfClose.PROTOCOL_VIOLATION, "SETUP stream closed");
		s.onReset = () => this.violation(IetfClose.PROTOCOL_VIOLATION, "SETUP stream reset");
		reader.follow(() => {
			while (!this.#closed) {
				if (!this.#setupSeen) {
					const m = reader.next((r) => decodeAfterType(r, Msg.SETUP, this.draft, this.limits));
					if (m === undefined) return;
					this.#onClientSetup(m);
					continue;
				}
				const m = reader.next((r) => decodeControl(r, this.draft, this.limits));
				if (m === undefined) return;
				if (m.kind === "goaway") this.log.info("peer sent GOAWAY", { uri: m.uri });
				else this.violation(IetfClose.PROTOCOL_VIOLATION, `${describe(m)} on the SETUP stream`);
			}
		});
	}

	/** A request stream: its first message is the request; what may follow depends on it. */
	#onRequestStream(s: TransportStream, reader: ControlReader): void {
		if (this.#closed) return;
		let first: IetfMessage | null = null;
		s.onFin = () => {
			if (first === null) this.violation(IetfClose.PROTOCOL_VIOLATION, "a request stream ended before its request");
		};
		s.onReset = () => {};
		reader.follow(() => {
			while (!this.#closed && !reader.failed) {
				const m = reader.next((r) => decodeControl(r, this.draft, this.limits));
				if (m === undefined) return;
				if (first === null) {
					first = m;
					this.#onFirstRequest(m, s);
				} else this.#onFollowUp(first, m);
			}
		});
	}

	#onFirstRequest(m: IetfMessage, s: TransportStream): void {
		switch (m.kind) {
			case "subscribe":
			case "subscribe_namespace":
			case "publish_namespace":
			case "track_status":
			case "fetch":
			case "publish":
			case "subscribe_tracks":
				break;
			default:
				this.violation(IetfClose.PROTOCOL_VIOLATION, `a request stream opened with ${describe(m)}`);
				return;
		}
		const id = m.requestId;
		if (!this.acceptRequestId(id, false)) return;
		const pub = this.#publisher!;
		const sub = this.#subscriber!;
		// The stream's end is the request's: UNSUBSCRIBE, PUBLISH_NAMESPACE_DONE and the like are gone.
		if (m.kind === "subscribe") {
			s.onFin = () => {
				pub.onUnsubscribe(id);
				s.finish();
			};
			s.onReset = () => {
				pub.onUnsubscribe(id);
				s.reset(IetfStreamReset.CANCELLED);
			};
			s.onStop = () => {
				pub.onUnsubscribe(id);
				s.reset(IetfStreamReset.CANCELLED);
			};
		} else if (m.kind === "publish_namespace") {
			s.onFin = () => {
				sub.onPublishNamespaceDone(id, null);
				s.finish();
			};
			s.onReset = () => sub.onPublishNamespaceDone(id, null);
			s.onStop = () => {};
		} else {
			s.onFin = () => {};
			s.onReset = () => {};
			s.onStop = () => {};
		}
		this.#onRequest(m, s);
		// However the request handled them, the stream's end frees its ID.
		const fin = s.onFin;
		const reset = s.onReset;
		s.onFin = () => {
			this.#liveRequests.delete(id);
			fin?.();
		};
		s.onReset = (code) => {
			this.#liveRequests.delete(id);
			reset?.(code);
		};
	}

	/** A message after the request on its stream. */
	#onFollowUp(first: IetfMessage, m: IetfMessage): void {
		if (first.kind === "subscribe" && m.kind === "subscribe_update") {
			this.#publisher!.onSubscribeUpdate(first.requestId);
			return;
		}
		// An advertisement is updated by repeating it on its stream: nothing here to update.
		if (first.kind === "publish_namespace" && m.kind === "publish_namespace" && m.requestId === first.requestId) return;
		this.violation(IetfClose.PROTOCOL_VIOLATION, `${describe(m)} after ${first.kind} on its request stream`);
	}

	/** A request, whichever framing carried it (`reply`: its own stream, or null: the control stream). */
	#onRequest(m: IetfMessage, reply: Reply): void {
		const pub = this.#publisher!;
		const sub = this.#subscriber!;
		switch (m.kind) {
			case "subscribe":
				pub.onSubscribe(m, reply);
				return;
			case "subscribe_namespace":
				pub.onSubscribeNamespace(m, reply);
				return;
			case "publish_namespace":
				sub.onPublishNamespace(m, reply);
				return;
			case "track_status":
				this.refuse(
					Msg.TRACK_STATUS_ERROR,
					m.requestId,
					IetfRequestError.NOT_SUPPORTED,
					"TRACK_STATUS is not supported by this relay",
					reply,
				);
				return;
			case "fetch":
				this.refuse(
					Msg.FETCH_ERROR,
					m.requestId,
					IetfRequestError.NOT_SUPPORTED,
					"FETCH is not supported by this relay",
					reply,
				);
				return;
			case "publish":
				this.refuse(
					Msg.PUBLISH_ERROR,
					m.requestId,
					IetfRequestError.NOT_SUPPORTED,
					"PUBLISH is not supported by this relay: announce the namespace with PUBLISH_NAMESPACE",
					reply,
				);
				return;
			case "subscribe_tracks":
				this.refuse(
					Msg.REQUEST_ERROR,
					m.requestId,
					IetfRequestError.NOT_SUPPORTED,
					"SUBSCRIBE_TRACKS is not supported by this relay: it has no PUBLISH to forward; use SUBSCRIBE_NAMESPACE",
					reply,
				);
				return;
			default:
				this.violation(IetfClose.PROTOCOL_VIOLATION, `${describe(m)} is not a request`);
		}
	}

	// ---------------------------------------------------------------------------------------------
	// The control stream

	#onControlStream(s: TransportStream): void {
		this.#control = s;
		this.#controlReader = this.reader(s);
		this.#controlReader.follow(() => this.#pumpControl());
		// Closing the control stream ends the session (the drafts make it a protocol violation).
		s.onFin = () => this.violation(IetfClose.PROTOCOL_VIOLATION, "control stream closed");
		s.onReset = () => this.violation(IetfClose.PROTOCOL_VIOLATION, "control stream reset");
		s.onStop = () => this.violation(IetfClose.PROTOCOL_VIOLATION, "control stream stopped");
	}

	/** Decodes what the control stream holds: SETUP always; everything else once the session is ready. */
	#pumpControl(): void {
		const reader = this.#controlReader;
		if (!reader) return;
		while (!this.#closed) {
			if (this.#setupSeen && !this.#ready) return;
			const m = reader.next((r) => decodeControl(r, this.draft, this.limits));
			if (m === undefined) return;
			if (!this.#setupSeen) this.#onClientSetup(m);
			else this.#onControlMessage(m);
		}
	}

	#onControlMessage(m: IetfMessage): void {
		const pub = this.#publisher!;
		const sub = this.#subscriber!;
		switch (m.kind) {
			case "subscribe":
			case "publish_namespace":
			case "track_status":
			case "fetch":
			case "publish":
				if (this.acceptRequestId(m.requestId, true)) this.#onRequest(m, null);
				return;
			case "unsubscribe":
				pub.onUnsubscribe(m.requestId);
				return;
			case "subscribe_update":
				if (this.acceptRequestId(m.requestId, true)) pub.onSubscribeUpdate(m.subscriptionId);
				return;
			case "subscribe_namespace":
				if (hasNamespaceStream(this.draft)) {
					this.violation(
						IetfClose.PROTOCOL_VIOLATION,
						"SUBSCRIBE_NAMESPACE on the control stream (draft-16 opens a stream)",
					);
					return;
				}
				if (this.acceptRequestId(m.requestId, true)) this.#onRequest(m, null);
				return;
			case "unsubscribe_namespace":
				pub.onUnsubscribeNamespace(m.requestId, m.prefix);
				return;
			case "publish_namespace_done":
				sub.onPublishNamespaceDone(m.requestId, m.namespace);
				return;
			case "publish_namespace_cancel":
				pub.onAdvertCancel(m.requestId, m.namespace);
				return;
			case "fetch_cancel":
				return;
			case "subscribe_ok":
				sub.onSubscribeOk(m.requestId, m.alias);
				return;
			case "request_error":
				if (sub.owns(m.requestId)) sub.onSubscribeError(m.requestId, m.code, m.reason);
				else pub.onAdvertReply(m.requestId, false, m.reason);
				return;
			case "request_ok":
				pub.onAdvertReply(m.requestId, true, "");
				return;
			case "publish_done":
				sub.onPublishDone(m.requestId, m.status, m.streamCount, m.reason);
				return;
			case "max_request_id":
				if (m.requestId < this.#peerMaxRequest) {
					this.violation(IetfClose.PROTOCOL_VIOLATION, "MAX_REQUEST_ID went down");
					return;
				}
				this.#peerMaxRequest = m.requestId;
				return;
			case "requests_blocked":
				// The client waits on our MAX_REQUEST_ID: open the window past what it asked for.
				this.#grantMore(Math.max(m.maximum, this.#lastControlRequest));
				return;
			case "goaway":
				this.log.info("peer sent GOAWAY", { uri: m.uri });
				return;
			default:
				this.violation(IetfClose.PROTOCOL_VIOLATION, `unexpected ${describe(m)} on the control stream`);
		}
	}

	// ---------------------------------------------------------------------------------------------

	#teardown(code: number, reason: string, graceful = false): void {
		if (this.#closed) return;
		this.#closed = true;
		this.relay.figures.sessions--;
		countSessionClose(liteEquivalent(code));
		if (this.#setupTimer) clearTimeout(this.#setupTimer);
		if (this.#expiryTimer) clearTimeout(this.#expiryTimer);
		this.#publisher?.close();
		this.#subscriber?.close(graceful);
		this.log.info("session closed", { code, reason, version: this.version });
	}
}

/** A message for a log line: its kind, or an unexpected one's type. */
function describe(m: IetfMessage): string {
	return m.kind === "unexpected" ? `message 0x${m.type.toString(16)}` : m.kind;
}
