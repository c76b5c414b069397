import type { Grant } from "../auth/index.ts";
import { parseConnectTarget, redactPath, tokenFromQuery } from "../auth/params.ts";
import { normalizePath } from "../auth/path.ts";
import { DecodeError } from "../coding/errors.ts";
import type { Reader } from "../coding/reader.ts";
import { Writer } from "../coding/writer.ts";
import type { Logger } from "../log/logger.ts";
import type { Relay } from "../relay/relay.ts";
import type { RelayTrack } from "../relay/track.ts";
import type { TrackHandle, TrackInfo, UpstreamPublisher } from "../relay/types.ts";
import { DEFAULT_TRACK_INFO } from "../relay/types.ts";
import { faultCode, reportFault } from "../transport/guard.ts";
import { refuse as countRefusal } from "../transport/refusals.ts";
import type { TransportSession, TransportStream } from "../transport/types.ts";
import { FetchServe } from "./fetch-serve.ts";
import { GroupIngest } from "./group-ingest.ts";
import { MessageBuffer } from "./message-buffer.ts";
import { TrackServe } from "./track-serve.ts";
import {
	type Announce,
	decodeAnnounce,
	decodeAnnounceInit,
	decodeAnnounceOk,
	decodeAnnounceRequest,
	encodeAnnounce,
	encodeAnnounceInit,
	encodeAnnounceOk,
	encodeAnnounceRequest,
} from "./wire/announce.ts";
import * as Code from "./wire/codes.ts";
import { decodeFetchRequest } from "./wire/fetch.ts";
import { decodeGroupHeader } from "./wire/group.ts";
import { joinPath, stripPrefix } from "./wire/path.ts";
import { decodeProbe } from "./wire/probe.ts";
import { decodeSessionInfo } from "./wire/session.ts";
import { decodeClientSetup, decodeLiteSetup, encodeLiteSetup, encodeServerSetup } from "./wire/setup.ts";
import { BIDI, UNI } from "./wire/stream-type.ts";
import {
	decodeSubscribe,
	decodeSubscribeResponse,
	decodeSubscribeUpdate,
	encodeSubscribe,
	encodeSubscribeUpdate,
} from "./wire/subscribe.ts";
import { decodeTrackInfo, decodeTrackRequest, encodeTrackInfo, encodeTrackRequest } from "./wire/track.ts";
import { LITE_02, type LiteVersion, versionFromAlpn } from "./wire/version.ts";

export interface SessionContext {
	relay: Relay;
	/** Resolves the session's rights from its path and token; throws an error with a `code` to refuse. */
	authorize(path: string, jwt: string | null): Promise<Grant>;
	log: Logger;
}

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
	/** The publisher FIN'd the subscription while groups were in flight: end the track when they finish. */
	ending: ReturnType<typeof setTimeout> | null;
}

/** How long a finished subscription waits for its in-flight group streams before ending the track. */
const TRACK_END_GRACE_MS = 2000;

const SETUP_TIMEOUT_MS = 10_000;

/** The close/reset code for a decoding failure. */
function codeOf(err: unknown): number {
	return err instanceof DecodeError ? err.code : Code.PROTOCOL_VIOLATION;
}

/** Reads a varint stream type from the first bytes of a stream (a few bytes at most). */
function readStreamType(r: Reader): number {
	return r.varint();
}

/**
 * One moq-lite session with one client, in both roles: toward a publishing client the relay is a
 * subscriber (it asks for its announcements and subscribes upstream, once per track); toward viewers
 * it is the publisher (announcements, subscriptions served from the track rings, TRACK_INFO, FETCH).
 * Every wire path is relative to the session root from the grant.
 */
export class MoqSession implements UpstreamPublisher {
	readonly id: number;
	readonly #t: TransportSession;
	readonly #ctx: SessionContext;
	readonly #relay: Relay;
	readonly #log: Logger;
	/** Decoder bounds from [limits]. */
	readonly #limits: { maxMessageBytes: number; maxPathSegments: number };
	#version: LiteVersion | 0 = 0;
	#grant: Grant | null = null;
	#ready = false;
	#closed = false;
	/** Typed streams that arrived before the session was ready (setup + authorisation). */
	#pending: (() => void)[] = [];
	#setupTimer: ReturnType<typeof setTimeout> | null = null;
	#expiryTimer: ReturnType<typeof setTimeout> | null = null;
	/** lite-05: the path from the client's SETUP (raw QUIC only). */
	#setupPath: string | null = null;
	#awaitingSetupPath = false;
	/** lite-05 SETUP Role: 0 both, 1 publish only, 2 subscribe only. */
	#role = 0;

	// Publisher role (toward viewers).
	readonly #serves = new Map<number, TrackServe | FetchServe>();
	readonly #announceCleanups = new Set<() => void>();

	// Subscriber role (toward a publishing client).
	readonly #published = new Set<string>();
	readonly #upstream = new Map<number, UpstreamSub>();
	readonly #upstreamByTrack = new Map<TrackHandle, UpstreamSub>();
	readonly #ingests = new Set<GroupIngest>();
	#nextUpstreamId = 0;

	constructor(transport: TransportSession, ctx: SessionContext) {
		this.#t = transport;
		this.#ctx = ctx;
		this.#relay = ctx.relay;
		this.id = ctx.relay.nextSessionId();
		const limits = ctx.relay.config.limits;
		this.#limits = { maxMessageBytes: limits.maxMessageBytes, maxPathSegments: limits.maxPathSegments };
		this.#log = ctx.log.child({ session: this.id, remote: transport.remote, transport: transport.kind });
	}

	get version(): LiteVersion | 0 {
		return this.#version;
	}

	get root(): string | null {
		return this.#grant?.root ?? null;
	}

	start(): void {
		const t = this.#t;
		this.#relay.figures.sessions++;
		t.onStream = (s) => this.#onStream(s);
		t.onClose = (code, reason) => this.#teardown(code, reason);
		t.onStreamCredit = () => this.#onStreamCredit();
		const v = versionFromAlpn(t.protocol);
		if (v !== null) {
			this.#version = v;
			if (v >= 5) this.#sendLiteSetup();
			if (v >= 5 && t.kind === "quic") {
				// Raw QUIC carries the path in the client's SETUP; wait for it before authorising.
				this.#awaitingSetupPath = true;
				this.#setupTimer = setTimeout(
					() => this.#guarded(() => this.close(Code.TIMEOUT, "no SETUP")),
					SETUP_TIMEOUT_MS,
				);
				return;
			}
		} else {
			// "moql" or nothing: the client sends the 0x20 SETUP on a bidi stream first.
			this.#setupTimer = setTimeout(() => this.#guarded(() => this.close(Code.TIMEOUT, "no SETUP")), SETUP_TIMEOUT_MS);
		}
		this.#authorize(t.path, tokenFromQuery(t.query));
	}

	/**
	 * Opens a control stream now, or as soon as the peer grants stream credit (a qmux client grants
	 * none until its transport parameters arrive). Data streams never wait: they drop instead.
	 */
	#withStream(bidi: boolean, use: (s: TransportStream) => void): void {
		if (this.#closed) return;
		const s = bidi ? this.#t.openBidi() : this.#t.openUni();
		if (s) {
			use(s);
			return;
		}
		this.#waitingOpens.push({ bidi, use });
	}
	#waitingOpens: { bidi: boolean; use: (s: TransportStream) => void }[] = [];

	#onStreamCredit(): void {
		const waiting = this.#waitingOpens;
		this.#waitingOpens = [];
		for (const w of waiting) this.#withStream(w.bidi, w.use);
		// Subscriptions waiting at a group for a stream slot can go on.
		for (const serve of this.#serves.values()) if (serve instanceof TrackServe && serve.blocked) serve.drain();
	}

	/**
	 * The session guard for work done outside a transport callback (timers, promise callbacks,
	 * fan-out wake-ups): closes this session alone with the error's code and counts the fault.
	 */
	readonly #onFault = (err: unknown): void => {
		reportFault(err, this.#log.warn, { session: this.id, remote: this.#t.remote, transport: this.#t.kind });
		try {
			this.close(faultCode(err), "internal error");
		} catch {
			// teardown threw as well: the transport is closed; nothing else can be done for it
		}
	};

	/** Runs `fn` behind the session guard (for timers and promise callbacks). */
	#guarded(fn: () => void): void {
		try {
			fn();
		} catch (err) {
			this.#onFault(err);
		}
	}

	close(code: number, reason: string): void {
		if (this.#closed) return;
		this.#log.debug("closing session", { code, reason });
		this.#t.close(code, reason);
		this.#teardown(code, reason);
	}

	#authorize(path: string, jwt: string | null): void {
		this.#ctx.authorize(path, jwt).then(
			(grant) => this.#guarded(() => this.#authorized(grant)),
			(err: Error & { code?: number }) =>
				this.#guarded(() => {
					countRefusal("auth");
					// The path may carry a token (lite-05 SETUP path, ?jwt=): log it redacted.
					this.#log.info("session refused", { reason: err.message, path: redactPath(path) });
					this.close(err.code ?? Code.UNAUTHORIZED, err.message);
				}),
		);
	}

	#authorized(grant: Grant): void {
		if (this.#closed) return;
		this.#grant = grant;
		if (grant.expiresAt !== null) {
			const ms = Math.max(0, grant.expiresAt - Date.now());
			this.#expiryTimer = setTimeout(
				() => this.#guarded(() => this.close(Code.UNAUTHORIZED, "token expired")),
				Math.min(ms, 0x7fffffff),
			);
			this.#expiryTimer.unref?.();
		}
		this.#log.debug("session authorised", {
			root: grant.root,
			publish: grant.publish,
			subscribe: grant.subscribe,
			version: this.#version,
		});
		this.#maybeReady();
	}

	#maybeReady(): void {
		if (this.#ready || this.#closed || !this.#grant || this.#version === 0) return;
		if (!this.#grant.allowsRole(this.#role)) {
			this.close(Code.UNAUTHORIZED, "the token grants nothing for the role in SETUP");
			return;
		}
		this.#ready = true;
		if (this.#setupTimer) clearTimeout(this.#setupTimer);
		this.#setupTimer = null;
		const pending = this.#pending;
		this.#pending = [];
		for (const route of pending) route();
		for (const prefix of this.#grant.publish) this.#requestAnnounces(prefix);
	}

	// ---------------------------------------------------------------------------------------------
	// Incoming streams

	#onStream(s: TransportStream): void {
		if (this.#closed) {
			s.reset(Code.CLOSED);
			return;
		}
		this.#dispatch(s);
	}

	/** Reads the stream type, then hands the stream to its handler. Streams wait until the session is ready. */
	#dispatch(s: TransportStream): void {
		const buf = new MessageBuffer(this.#relay.config.limits.maxMessageBytes);
		let type: number | undefined;
		const onType = () => {
			if (type !== undefined) return;
			// A type that is not a varint this side can hold (e.g. 8 bytes of 0xff, above 2^53) is the
			// peer's protocol violation: close with the decoder's code, like any other bad message.
			type = this.#decode(s, buf, readStreamType);
			if (type === undefined) return;
			// Setup streams are handled before the session is ready; everything else waits for it.
			const isSetup = (s.bidi && type === BIDI.SETUP_CLIENT && this.#version === 0) || (!s.bidi && type === UNI.SETUP);
			if (!isSetup && !this.#ready) {
				// Keep buffering (bounded) until the session is ready.
				this.#follow(s, buf, () => {});
				const t = type;
				this.#pending.push(() => this.#route(s, buf, t));
				return;
			}
			this.#route(s, buf, type);
		};
		this.#follow(s, buf, onType);
		s.onFin = () => {
			if (type === undefined) s.finish();
		};
		s.onReset = () => {};
	}

	#route(s: TransportStream, buf: MessageBuffer, type: number): void {
		if (s.bidi) {
			switch (type) {
				case BIDI.SETUP_CLIENT:
					return this.#onLegacySetup(s, buf);
				case BIDI.ANNOUNCE:
					return this.#onAnnounceRequest(s, buf);
				case BIDI.SUBSCRIBE:
					return this.#onSubscribe(s, buf);
				case BIDI.TRACK:
					return this.#onTrackRequest(s, buf);
				case BIDI.FETCH:
					return this.#onFetch(s, buf);
				case BIDI.PROBE:
					return this.#onProbe(s, buf);
				case BIDI.GOAWAY:
					s.onData = null;
					s.onFin = () => s.finish();
					this.#log.info("peer sent GOAWAY");
					return;
				default:
					// lite-03+: an unknown stream type resets that stream only.
					s.onData = null;
					s.reset(Code.UNEXPECTED_STREAM);
					s.stop(Code.UNEXPECTED_STREAM);
					this.#log.debug("unknown bidi stream type", { type });
					return;
			}
		}
		switch (type) {
			case UNI.GROUP:
				return this.#onGroup(s, buf);
			case UNI.SETUP:
				return this.#onLiteSetup(s, buf);
			default:
				s.onData = null;
				s.stop(Code.UNEXPECTED_STREAM);
				this.#log.debug("unknown uni stream type", { type });
		}
	}

	#violation(s: TransportStream | null, code: number, reason: string): void {
		countRefusal("protocol", this.#log.warn, { session: this.id, remote: this.#t.remote, code, reason });
		if (s) {
			s.onData = null;
			s.reset(code);
			s.stop(code);
		}
		this.close(code, reason);
	}

	/** Runs `fn` for each whole message in `buf`; decode errors close the session with their code. */
	#drainMessages<T>(s: TransportStream, buf: MessageBuffer, decode: (r: Reader) => T, fn: (m: T) => void): void {
		while (!this.#closed) {
			const m = this.#decode(s, buf, decode);
			if (m === undefined) return;
			fn(m);
		}
	}

	/** Feeds the stream's later chunks to `onChunk`, guarding the buffer limit. */
	#follow(s: TransportStream, buf: MessageBuffer, onChunk: () => void): void {
		s.onData = (chunk) => {
			try {
				buf.push(chunk);
			} catch {
				this.#violation(s, Code.PROTOCOL_VIOLATION, "control stream over limit");
				return;
			}
			onChunk();
		};
		onChunk();
	}

	/**
	 * Decodes one whole message from a control stream: undefined while it is incomplete. A message
	 * that can never decode closes the session with its code (and also yields undefined).
	 */
	#decode<T>(s: TransportStream, buf: MessageBuffer, decode: (r: Reader) => T): T | undefined {
		try {
			return buf.tryDecode(decode);
		} catch (err) {
			this.#violation(s, codeOf(err), (err as Error).message);
			return undefined;
		}
	}

	/**
	 * A request stream: waits for its first message, then calls `handle` once. A message that can't
	 * decode closes the session with its code.
	 */
	#onRequest<T>(s: TransportStream, buf: MessageBuffer, decode: (r: Reader) => T, handle: (req: T) => void): void {
		let started = false;
		this.#follow(s, buf, () => {
			if (started) return;
			const req = this.#decode(s, buf, decode);
			if (req === undefined) return;
			started = true;
			handle(req);
		});
	}

	/**
	 * A viewer's broadcast path (relative to the session root) made absolute, after normalising it and
	 * checking the token's subscribe scope; null (and the stream reset with the reason's code) if refused.
	 */
	#viewerPath(s: TransportStream, raw: string): string | null {
		const grant = this.#grant!;
		let rel: string;
		try {
			rel = normalizePath(raw, this.#relay.config.limits.maxPathSegments);
		} catch {
			s.reset(Code.PROTOCOL_VIOLATION);
			return null;
		}
		if (!grant.canSubscribe(rel)) {
			s.reset(Code.UNAUTHORIZED);
			return null;
		}
		return joinPath(grant.root, rel);
	}

	// ---------------------------------------------------------------------------------------------
	// Setup

	#onLegacySetup(s: TransportStream, buf: MessageBuffer): void {
		let done = false;
		this.#follow(s, buf, () => {
			if (done) {
				// lite-02 session stream: only SESSION_INFO after setup; ignore its content.
				this.#drainMessages(
					s,
					buf,
					(r) => decodeSessionInfo(r, 2, this.#limits),
					() => {},
				);
				return;
			}
			const setup = this.#decode(s, buf, (r) => decodeClientSetup(r, this.#limits));
			if (setup === undefined) return;
			done = true;
			if (!setup.versions.includes(LITE_02)) {
				this.close(Code.VERSION, "no supported version offered (relay speaks moq-lite-02 here)");
				return;
			}
			const w = new Writer(32);
			encodeServerSetup(w, { version: LITE_02, params: new Map() });
			s.write(w.view());
			this.#version = 2;
			this.#maybeReady();
			if (buf.length)
				this.#drainMessages(
					s,
					buf,
					(r) => decodeSessionInfo(r, 2, this.#limits),
					() => {},
				);
		});
		// A FIN on the lite-02 session stream ends the session; never reset it (that kills @moq/lite).
		s.onFin = () => this.close(0, "session stream closed");
		s.onReset = (code) => this.close(code, "session stream reset");
	}

	#sendLiteSetup(): void {
		this.#withStream(false, (s) => {
			const w = new Writer(16);
			w.varint(UNI.SETUP);
			encodeLiteSetup(w, {}, 5);
			s.write(w.view());
			s.finish();
		});
	}

	#onLiteSetup(s: TransportStream, buf: MessageBuffer): void {
		if (this.#version !== 5) {
			s.stop(Code.UNEXPECTED_STREAM);
			return;
		}
		let seen = false;
		const onSetup = () => {
			if (seen) return;
			const setup = this.#decode(s, buf, (r) => decodeLiteSetup(r, 5, this.#limits));
			if (setup === undefined) return;
			seen = true;
			this.#role = setup.role ?? 0;
			if (this.#grant && !this.#grant.allowsRole(this.#role)) {
				this.close(Code.UNAUTHORIZED, "the token grants nothing for the role in SETUP");
				return;
			}
			if (setup.path !== undefined && this.#t.kind !== "quic") {
				this.#violation(null, Code.PROTOCOL_VIOLATION, "SETUP path over a transport with a URL");
				return;
			}
			if (this.#awaitingSetupPath) {
				this.#awaitingSetupPath = false;
				this.#setupPath = setup.path ?? "";
				// One parser for every transport's request target: the last non-empty jwt wins, and
				// malformed percent-encoding is the peer's protocol violation, not an exception.
				const target = parseConnectTarget(this.#setupPath || "/");
				if (target === null) {
					this.#violation(null, Code.PROTOCOL_VIOLATION, "SETUP path has malformed percent-encoding");
					return;
				}
				(this.#t as { setPath?: (p: string) => void }).setPath?.(this.#setupPath);
				this.#authorize(target.path, target.jwt);
			}
		};
		this.#follow(s, buf, onSetup);
		s.onFin = () => {
			if (!seen) this.#violation(null, Code.PROTOCOL_VIOLATION, "SETUP stream ended early");
			else if (this.#awaitingSetupPath) this.#authorize("", null);
		};
	}

	// ---------------------------------------------------------------------------------------------
	// Publisher role: announcements to viewers

	#onAnnounceRequest(s: TransportStream, buf: MessageBuffer): void {
		const v = this.#version as LiteVersion;
		const grant = this.#grant!;
		const limits = this.#relay.config.limits;
		if (this.#announceCleanups.size >= limits.maxAnnounceRequests) {
			countRefusal("announce_requests", this.#log.warn, { session: this.id });
			s.reset(Code.UNSUPPORTED);
			return;
		}
		let started = false;
		this.#follow(s, buf, () => {
			if (started) {
				if (buf.length) this.#violation(s, Code.UNEXPECTED_MESSAGE, "unexpected data on announce stream");
				return;
			}
			const req = this.#decode(s, buf, (r) => decodeAnnounceRequest(r, v, this.#limits));
			if (req === undefined) return;
			started = true;
			let prefix: string;
			try {
				prefix = normalizePath(req.prefix, limits.maxPathSegments);
			} catch (err) {
				this.#violation(s, Code.PROTOCOL_VIOLATION, (err as Error).message);
				return;
			}
			const absPrefix = joinPath(grant.root, prefix);
			const sent = new Set<string>();
			const w = new Writer(128);
			const excludeHop = req.excludeHop;
			const hopsFor = (hops: readonly number[]): number[] =>
				v === 4 || v === 3 ? [...hops, this.#relay.hopId] : [...hops];
			const visible = (absPath: string, hops: readonly number[]): string | null => {
				const rel = stripPrefix(absPath, grant.root);
				if (rel === null || !grant.canSubscribe(rel)) return null;
				if (excludeHop !== 0 && hops.includes(excludeHop)) return null;
				return stripPrefix(absPath, absPrefix);
			};
			const watcher = {
				prefix: absPrefix,
				onAnnounce: (path: string, entry: { hops: readonly number[] } | null) => {
					if (entry) {
						const suffix = visible(path, entry.hops);
						if (suffix === null || sent.has(path)) return;
						sent.add(path);
						w.clear();
						encodeAnnounce(w, { active: true, suffix, hops: hopsFor(entry.hops) }, v);
						s.write(w.view());
					} else {
						if (!sent.delete(path)) return;
						const suffix = stripPrefix(path, absPrefix) ?? "";
						w.clear();
						encodeAnnounce(w, { active: false, suffix, hops: [] }, v);
						s.write(w.view());
					}
				},
			};
			const initial: Announce[] = [];
			for (const e of this.#relay.announces.watch(watcher)) {
				const suffix = visible(e.path, e.hops);
				if (suffix === null) continue;
				sent.add(e.path);
				initial.push({ active: true, suffix, hops: hopsFor(e.hops) });
			}
			w.clear();
			if (v === 2) encodeAnnounceInit(w, { suffixes: initial.map((a) => a.suffix) }, v);
			else {
				if (v >= 5) encodeAnnounceOk(w, { hopId: this.#relay.hopId, activeCount: initial.length }, v);
				for (const a of initial) encodeAnnounce(w, a, v);
			}
			if (w.pos) s.write(w.view());
			const cleanup = () => {
				this.#relay.announces.unwatch(watcher);
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
	// Publisher role: subscriptions

	#onSubscribe(s: TransportStream, buf: MessageBuffer): void {
		const v = this.#version as LiteVersion;
		const grant = this.#grant!;
		let serve: TrackServe | null = null;
		let refused = false;
		this.#follow(s, buf, () => {
			if (refused) return;
			if (serve) {
				if (v === 2) {
					if (buf.length) this.#violation(s, Code.UNEXPECTED_MESSAGE, "lite-02 has no SUBSCRIBE_UPDATE");
					return;
				}
				const current = serve;
				this.#drainMessages(
					s,
					buf,
					(r) => decodeSubscribeUpdate(r, v, this.#limits),
					(u) => current.update(u),
				);
				return;
			}
			const sub = this.#decode(s, buf, (r) => decodeSubscribe(r, v, this.#limits));
			if (sub === undefined) return;
			const refuse = (code: number, why: string) => {
				refused = true;
				this.#log.debug("subscribe refused", { code, why, broadcast: sub!.broadcast, track: sub!.track });
				s.reset(code);
				s.stop(code);
			};
			if (this.#serves.has(sub.id)) return this.#violation(s, Code.DUPLICATE, `duplicate subscribe id ${sub.id}`);
			if (this.#serves.size >= this.#relay.config.limits.maxSubscriptions) {
				countRefusal("subscriptions", this.#log.warn, { session: this.id });
				return refuse(Code.UNSUPPORTED, "too many subscriptions");
			}
			let rel: string;
			try {
				rel = normalizePath(sub.broadcast, this.#relay.config.limits.maxPathSegments);
			} catch (err) {
				return refuse(Code.PROTOCOL_VIOLATION, (err as Error).message);
			}
			if (!grant.canSubscribe(rel)) return refuse(Code.UNAUTHORIZED, "outside the token's subscribe scope");
			const track = this.#relay.track(joinPath(grant.root, rel), sub.track);
			if (track === undefined) return refuse(Code.NOT_FOUND, "unknown broadcast");
			if (track === null) return refuse(Code.EVICTED, "cache budget exhausted");
			const params = {
				priority: sub.priority,
				ordered: sub.ordered,
				maxLatencyMs: sub.maxLatencyMs,
				startGroup: sub.startGroup,
				endGroup: sub.endGroup,
			};
			serve = new TrackServe(sub.id, track, this.#t, s, v, params, this.#relay.figures);
			serve.onFault = this.#onFault;
			this.#serves.set(sub.id, serve);
			this.#relay.figures.subscriptions++;
			track.addConsumer(serve);
			serve.drain();
			const id = sub.id;
			const current = serve;
			const end = () => {
				if (this.#serves.get(id) === current) {
					this.#serves.delete(id);
					this.#relay.figures.subscriptions--;
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

	#onTrackRequest(s: TransportStream, buf: MessageBuffer): void {
		const v = this.#version as LiteVersion;
		if (v < 5) {
			s.reset(Code.UNSUPPORTED);
			return;
		}
		s.onFin = () => {};
		this.#onRequest(
			s,
			buf,
			(r) => decodeTrackRequest(r, v, this.#limits),
			(req) => {
				const path = this.#viewerPath(s, req.broadcast);
				if (path === null) return;
				const info = this.#relay.trackInfo(path, req.track);
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

	#onFetch(s: TransportStream, buf: MessageBuffer): void {
		const v = this.#version as LiteVersion;
		if (v < 5) {
			s.reset(Code.UNSUPPORTED);
			return;
		}
		s.onStop = () => s.reset(Code.CANCEL);
		this.#onRequest(
			s,
			buf,
			(r) => decodeFetchRequest(r, v, this.#limits),
			(req) => {
				const path = this.#viewerPath(s, req.broadcast);
				if (path === null) return;
				const track = this.#relay.broadcasts.get(path)?.tracks.get(req.track);
				if (!track || track.closed) {
					this.#log.debug("fetch refused: track not cached", { broadcast: path, track: req.track, group: req.group });
					s.reset(Code.NOT_FOUND);
					return;
				}
				const fetch = new FetchServe(track, s, req.group);
				const key = -1 - this.#nextFetchKey++;
				this.#serves.set(key, fetch);
				fetch.onDone = () => this.#serves.delete(key);
				fetch.onFault = this.#onFault;
				s.onStop = () => fetch.close("session");
				fetch.start();
			},
		);
	}
	#nextFetchKey = 0;

	#onProbe(s: TransportStream, buf: MessageBuffer): void {
		const v = this.#version as LiteVersion;
		// Keep it open and silent: @moq/lite treats a reset PROBE as fatal on 03/04.
		this.#follow(s, buf, () => {
			this.#drainMessages(
				s,
				buf,
				(r) => decodeProbe(r, v, this.#limits),
				() => {},
			);
		});
		s.onFin = () => s.finish();
	}

	// ---------------------------------------------------------------------------------------------
	// Subscriber role: learning a publishing client's broadcasts

	#requestAnnounces(prefix: string): void {
		this.#withStream(true, (s) => this.#runAnnounceRequest(s, prefix));
	}

	#runAnnounceRequest(s: TransportStream, prefix: string): void {
		const v = this.#version as LiteVersion;
		const grant = this.#grant!;
		const w = new Writer(64);
		w.varint(BIDI.ANNOUNCE);
		encodeAnnounceRequest(w, { prefix, excludeHop: this.#relay.hopId }, v);
		s.write(w.view());
		const buf = new MessageBuffer(this.#relay.config.limits.maxMessageBytes);
		const mine = new Set<string>();
		let okHop: number | null = null;
		let initDone = v !== 2 && v !== 5;
		const onAnnounce = (a: Announce) => {
			let rel: string;
			try {
				rel = normalizePath(joinPath(prefix, a.suffix), this.#relay.config.limits.maxPathSegments);
			} catch (err) {
				this.#violation(s, Code.PROTOCOL_VIOLATION, (err as Error).message);
				return;
			}
			const abs = joinPath(grant.root, rel);
			if (a.active) {
				if (!grant.canPublish(rel)) {
					this.#log.info("announce refused: outside the token's publish scope", { path: rel });
					return;
				}
				if (mine.has(abs) && v < 5) {
					this.#violation(s, Code.DUPLICATE, `duplicate announce of ${rel}`);
					return;
				}
				const hops = okHop !== null ? [...a.hops, okHop] : a.hops;
				if (hops.includes(this.#relay.hopId)) return; // our own broadcast coming back: a loop
				if (!this.#published.has(abs) && this.#published.size >= this.#relay.config.limits.maxBroadcastsPerSession) {
					// Each broadcast costs relay state and shard traffic: one session may not create them
					// without bound. The broadcast is not relayed; the session and its others go on.
					countRefusal("broadcasts", this.#log.warn, { session: this.id, path: rel });
					return;
				}
				mine.add(abs);
				this.#published.add(abs);
				this.#relay.publish(abs, hops, this);
				this.#log.info("broadcast announced", { path: abs });
			} else {
				if (!mine.delete(abs)) return;
				this.#published.delete(abs);
				this.#relay.unpublish(abs, this);
				this.#log.info("broadcast ended", { path: abs });
			}
		};
		this.#follow(s, buf, () => {
			if (!initDone) {
				if (v === 5) {
					const ok = this.#decode(s, buf, (r) => decodeAnnounceOk(r, v, this.#limits));
					if (ok === undefined) return;
					okHop = ok.hopId;
				} else {
					const init = this.#decode(s, buf, (r) => decodeAnnounceInit(r, v, this.#limits));
					if (init === undefined) return;
					for (const suffix of init.suffixes) onAnnounce({ active: true, suffix, hops: [] });
				}
				initDone = true;
			}
			this.#drainMessages(s, buf, (r) => decodeAnnounce(r, v, this.#limits), onAnnounce);
		});
		const gone = () => {
			for (const abs of mine) {
				this.#published.delete(abs);
				this.#relay.unpublish(abs, this);
			}
			mine.clear();
		};
		s.onFin = () => {
			gone();
			s.finish();
		};
		s.onReset = gone;
	}

	// UpstreamPublisher -------------------------------------------------------------------------

	#relative(absPath: string): string {
		return stripPrefix(absPath, this.#grant?.root ?? "") ?? absPath;
	}

	subscribeUpstream(track: TrackHandle): void {
		const v = this.#version as LiteVersion;
		const relayTrack = track as UpstreamSub["track"];
		const s = this.#closed ? null : this.#t.openBidi();
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
		};
		this.#upstream.set(id, sub);
		this.#upstreamByTrack.set(track, sub);
		const buf = new MessageBuffer(this.#relay.config.limits.maxMessageBytes);
		this.#follow(s, buf, () => {
			this.#drainMessages(
				s,
				buf,
				(r) => decodeSubscribeResponse(r, v, this.#limits),
				(resp) => {
					if (resp.type === "end") sub.endGroup = resp.group;
				},
			);
		});
		s.onFin = () => {
			// The publisher ended the track. Its last groups travel on other streams and may still be
			// arriving: end the track in the cache once they are in (or after a grace period).
			s.finish();
			if (sub.closed || sub.ending) return;
			if (sub.inFlight === 0) this.#endUpstream(sub);
			else sub.ending = setTimeout(() => this.#guarded(() => this.#endUpstream(sub)), TRACK_END_GRACE_MS);
		};
		s.onReset = (code) => {
			if (sub.ending) clearTimeout(sub.ending);
			sub.ending = null;
			if (!sub.closed) {
				sub.closed = true;
				relayTrack.abortTrack(code || Code.DROPPED);
			}
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
		sub.inFlight--;
		if (sub.ending && sub.inFlight === 0) this.#endUpstream(sub);
	}

	#forgetUpstream(sub: UpstreamSub): void {
		if (this.#upstream.get(sub.id) === sub) this.#upstream.delete(sub.id);
		if (this.#upstreamByTrack.get(sub.track) === sub) this.#upstreamByTrack.delete(sub.track);
	}

	updateUpstream(track: TrackHandle): void {
		const v = this.#version as LiteVersion;
		const sub = this.#upstreamByTrack.get(track);
		if (!sub || sub.closed || v < 3) return;
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

	fetchTrackInfo(broadcastPath: string, track: string): Promise<TrackInfo> {
		const v = this.#version as LiteVersion;
		if (v < 5) return Promise.resolve({ ...DEFAULT_TRACK_INFO });
		return new Promise((resolve, reject) => {
			const s = this.#closed ? null : this.#t.openBidi();
			if (!s) return reject(new Error("no stream credit"));
			const w = new Writer(64);
			w.varint(BIDI.TRACK);
			encodeTrackRequest(w, { broadcast: this.#relative(broadcastPath), track }, v);
			s.write(w.view());
			s.finish();
			const buf = new MessageBuffer(this.#relay.config.limits.maxMessageBytes);
			let done = false;
			const timer = setTimeout(() => {
				if (!done) {
					done = true;
					s.reset(Code.TIMEOUT);
					reject(new Error("TRACK_INFO timeout"));
				}
			}, SETUP_TIMEOUT_MS);
			this.#follow(s, buf, () => {
				if (done) return;
				let info: TrackInfo | undefined;
				try {
					info = buf.tryDecode((r) => decodeTrackInfo(r, v, this.#limits));
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
	// Subscriber role: group streams from a publishing client

	#onGroup(s: TransportStream, buf: MessageBuffer): void {
		const v = this.#version as LiteVersion;
		let ingest: GroupIngest | null = null;
		const onHeader = () => {
			const hdr = this.#decode(s, buf, (r) => decodeGroupHeader(r, v, this.#limits));
			if (hdr === undefined) return;
			const sub = this.#upstream.get(hdr.subscribeId);
			if (!sub || sub.closed) {
				// Unsubscribed (or never asked): a normal race; tell it to stop.
				s.onData = null;
				s.stop(Code.CANCEL);
				return;
			}
			if (hdr.sequence > sub.latestGroup) sub.latestGroup = hdr.sequence;
			const g = new GroupIngest(
				sub.track,
				hdr.sequence,
				s,
				v,
				this.#relay.config.limits.maxFrameBytes,
				this.#relay.figures,
			);
			ingest = g;
			this.#ingests.add(g);
			sub.inFlight++;
			s.onData = (chunk) => g.push(chunk);
			s.onFin = () => {
				g.finish();
				this.#ingests.delete(g);
				this.#groupDone(sub);
			};
			s.onReset = (code) => {
				g.abort(code || Code.CANCEL);
				this.#ingests.delete(g);
				this.#groupDone(sub);
			};
			const rest = buf.rest();
			if (rest.length) g.push(rest);
		};
		// Set before #follow: a header in the first chunk installs the ingest's own onFin synchronously.
		s.onFin = () => {
			if (!ingest) s.stop(Code.PROTOCOL_VIOLATION);
		};
		this.#follow(s, buf, () => {
			if (!ingest) onHeader();
		});
	}

	// ---------------------------------------------------------------------------------------------

	#teardown(code: number, reason: string): void {
		if (this.#closed) return;
		this.#closed = true;
		this.#relay.figures.sessions--;
		if (this.#setupTimer) clearTimeout(this.#setupTimer);
		if (this.#expiryTimer) clearTimeout(this.#expiryTimer);
		for (const serve of this.#serves.values()) serve.close("session");
		this.#relay.figures.subscriptions -= [...this.#serves.values()].filter((x) => x instanceof TrackServe).length;
		this.#serves.clear();
		for (const cleanup of [...this.#announceCleanups]) cleanup();
		for (const g of this.#ingests) g.abort(Code.CLOSED);
		this.#ingests.clear();
		for (const sub of this.#upstream.values()) if (sub.ending) clearTimeout(sub.ending);
		for (const abs of this.#published) this.#relay.unpublish(abs, this);
		this.#published.clear();
		this.#upstream.clear();
		this.#upstreamByTrack.clear();
		this.#log.info("session closed", { code, reason });
	}
}
