/**
 * One moq-lite session with one client: its lifecycle (version, SETUP, authorisation, expiry,
 * close), the session guard, and the dispatch of incoming streams by type. Once the session is
 * ready it hands the work to its two sides: toward viewers the relay is the publisher
 * (publisher.ts); toward a publishing client it is the subscriber (subscriber.ts).
 * @module
 */

import type { Grant } from "../../auth/index.ts";
import { parseConnectTarget, redactPath, tokenFromQuery } from "../../auth/params.ts";
import type { Reader } from "../../coding/reader.ts";
import { Writer } from "../../coding/writer.ts";
import * as Code from "../../errors/codes.ts";
import type { Logger } from "../../log/logger.ts";
import { probe } from "../../metrics/collection.ts";
import { countSessionClose } from "../../metrics/session-closes.ts";
import type { Relay } from "../../relay/relay.ts";
import { faultCode, reportFault } from "../../transport/guard.ts";
import { refuse as countRefusal } from "../../transport/refusals.ts";
import type { TransportSession, TransportStream } from "../../transport/types.ts";
import { type ControlLimits, ControlReader } from "../control-reader.ts";
import type { SessionHost } from "./host.ts";
import { LitePublisher } from "./publisher.ts";
import { LiteSubscriber } from "./subscriber.ts";
import { encodeGoaway } from "./wire/goaway.ts";
import type { DecodeLimits } from "./wire/message.ts";
import { decodeProbe } from "./wire/probe.ts";
import { decodeSessionInfo } from "./wire/session.ts";
import {
	decodeClientSetup,
	decodeLiteSetup,
	decodeServerSetupMessage,
	encodeClientSetup,
	encodeLiteSetup,
	encodeServerSetup,
} from "./wire/setup.ts";
import { BIDI, UNI } from "./wire/stream-type.ts";
import { hasGoaway, hasLiteSetup, LITE_02, type LiteVersion, versionFromAlpn } from "./wire/version.ts";

/**
 * A session this relay opened toward another relay of its cluster (relay-to-relay link). The dialler
 * needs no authorisation of the peer's side: the peer is configured, and its token is ours to send.
 */
export interface DialTarget {
	/** The request target sent in the lite-05 SETUP Path over raw QUIC ("/" plus `?jwt=` when there is a token). */
	target: string;
	/** What this session may do: everything, as a cluster peer. */
	grant: Grant;
}

export interface SessionContext {
	relay: Relay;
	/** Set when this relay dialled the session (a cluster link). */
	dial?: DialTarget;
	/** Resolves the session's rights from its path and token; throws an error with a `code` to refuse. */
	authorize(path: string, jwt: string | null): Promise<Grant>;
	log: Logger;
}

const SETUP_TIMEOUT_MS = 10_000;

/** Reads a varint stream type from the first bytes of a stream (a few bytes at most). */
function readStreamType(r: Reader): number {
	return r.varint();
}

/**
 * One moq-lite session with one client, in both roles (see the module doc). The sides exist from
 * the moment the session is ready: every stream but a setup stream waits for that.
 */
export class MoqSession implements SessionHost {
	readonly id: number;
	readonly transport: TransportSession;
	readonly relay: Relay;
	readonly log: Logger;
	/** Decoder bounds from [limits]. */
	readonly limits: DecodeLimits;
	readonly #ctx: SessionContext;
	/** Control-stream bounds from [limits]. */
	readonly #control: ControlLimits;
	/** Null until negotiated (by the app protocol, or the 0x20/0x21 exchange). */
	#version: LiteVersion | null = null;
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
	#waitingOpens: { bidi: boolean; use: (s: TransportStream) => void }[] = [];
	/** The peer's hop id from its lite-05 SETUP Origin; 0 when it sent none. */
	peerOrigin = 0;

	/** Toward viewers; made when the session is ready. */
	#publisher: LitePublisher | null = null;
	/** Toward a publishing client; made when the session is ready. */
	#subscriber: LiteSubscriber | null = null;

	constructor(transport: TransportSession, ctx: SessionContext) {
		this.transport = transport;
		this.#ctx = ctx;
		this.relay = ctx.relay;
		this.id = ctx.relay.nextSessionId();
		const limits = ctx.relay.config.limits;
		this.limits = { maxMessageBytes: limits.maxMessageBytes, maxPathSegments: limits.maxPathSegments };
		this.#control = { maxBytes: limits.maxMessageBytes, violation: Code.PROTOCOL_VIOLATION };
		this.log = ctx.log.child({ session: this.id, remote: transport.remote, transport: transport.kind });
		probe("session", this);
	}

	/** This session's side toward a publishing peer: the relay core's UpstreamPublisher for what it announces. */
	get upstream(): LiteSubscriber | null {
		return this.#subscriber;
	}

	/** 0 until negotiated. */
	get version(): LiteVersion | 0 {
		return this.#version ?? 0;
	}

	get root(): string | null {
		return this.#grant?.root ?? null;
	}

	get closed(): boolean {
		return this.#closed;
	}

	start(): void {
		const t = this.transport;
		this.relay.figures.sessions++;
		t.onStream = (s) => this.#onStream(s);
		t.onClose = (code, reason, graceful) => this.#teardown(code, reason, graceful === true);
		t.onStreamCredit = () => this.#onStreamCredit();
		const v = versionFromAlpn(t.protocol);
		const dial = this.#ctx.dial;
		if (dial) {
			// We are the client of this link: the version came from ALPN or wt-protocol (lite-03 and
			// later), or, over WebTransport with no protocol, from the lite-02 SETUP exchange.
			if (v === null && t.kind === "webtransport" && (t.protocol === "" || t.protocol === "moql")) {
				this.#dialLegacySetup(dial);
				return;
			}
			if (v === null) {
				this.close(Code.VERSION, `the peer chose ${JSON.stringify(t.protocol)}, not a moq-lite version`);
				return;
			}
			this.#version = v;
			if (hasLiteSetup(v)) this.#sendLiteSetup(t.kind === "quic" ? dial.target : undefined);
			this.#authorized(dial.grant);
			return;
		}
		if (v !== null) {
			this.#version = v;
			if (hasLiteSetup(v)) this.#sendLiteSetup();
			if (hasLiteSetup(v) && t.kind === "quic") {
				// Raw QUIC carries the path in the client's SETUP; wait for it before authorising.
				this.#awaitingSetupPath = true;
				this.#setupTimer = setTimeout(() => this.guarded(() => this.close(Code.TIMEOUT, "no SETUP")), SETUP_TIMEOUT_MS);
				return;
			}
		} else {
			// "moql" or nothing: the client sends the 0x20 SETUP on a bidi stream first.
			this.#setupTimer = setTimeout(() => this.guarded(() => this.close(Code.TIMEOUT, "no SETUP")), SETUP_TIMEOUT_MS);
		}
		this.#authorize(t.path, tokenFromQuery(t.query));
	}

	/**
	 * Opens a control stream now, or as soon as the peer grants stream credit (a qmux client grants
	 * none until its transport parameters arrive). Data streams never wait: they drop instead.
	 */
	withStream(bidi: boolean, use: (s: TransportStream) => void): void {
		if (this.#closed) return;
		const s = bidi ? this.transport.openBidi() : this.transport.openUni();
		if (s) {
			use(s);
			return;
		}
		this.#waitingOpens.push({ bidi, use });
	}

	#onStreamCredit(): void {
		const waiting = this.#waitingOpens;
		this.#waitingOpens = [];
		for (const w of waiting) this.withStream(w.bidi, w.use);
		this.#publisher?.onStreamCredit();
	}

	/**
	 * The session guard for work done outside a transport callback (timers, promise callbacks,
	 * fan-out wake-ups): closes this session alone with the error's code and counts the fault.
	 */
	readonly onFault = (err: unknown): void => {
		reportFault(err, this.log.warn, {
			session: this.id,
			remote: this.transport.remote,
			transport: this.transport.kind,
		});
		try {
			this.close(faultCode(err), "internal error");
		} catch {
			// teardown threw as well: the transport is closed; nothing else can be done for it
		}
	};

	/** Runs `fn` behind the session guard (for timers and promise callbacks). */
	guarded(fn: () => void): void {
		try {
			fn();
		} catch (err) {
			this.onFault(err);
		}
	}

	/**
	 * The relay is draining: where the version has it (04+), a GOAWAY stream carrying `uri` (another
	 * relay to reconnect to, or "" for none). The session itself stays open: the client moves when
	 * it likes, and the relay closes what is left at its drain deadline. Returns whether it was sent.
	 */
	goaway(uri: string): boolean {
		if (this.#closed || this.#version === null || !hasGoaway(this.#version)) return false;
		const v = this.#version;
		this.withStream(true, (s) => {
			const w = new Writer(16 + uri.length * 3);
			w.varint(BIDI.GOAWAY);
			encodeGoaway(w, { uri }, v);
			s.write(w.view());
			s.finish();
			// Nothing is expected back; a peer that answers or resets it changes nothing.
			s.onData = null;
			s.onFin = () => {};
			s.onReset = () => {};
		});
		return true;
	}

	close(code: number, reason: string): void {
		if (this.#closed) return;
		this.log.debug("closing session", { code, reason });
		this.transport.close(code, reason);
		this.#teardown(code, reason);
	}

	#authorize(path: string, jwt: string | null): void {
		this.#ctx.authorize(path, jwt).then(
			(grant) => this.guarded(() => this.#authorized(grant)),
			(err: Error & { code?: number }) =>
				this.guarded(() => {
					countRefusal("auth");
					// The path may carry a token (lite-05 SETUP path, ?jwt=): log it redacted.
					this.log.info("session refused", { reason: err.message, path: redactPath(path) });
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
				() => this.guarded(() => this.close(Code.UNAUTHORIZED, "token expired")),
				Math.min(ms, 0x7fffffff),
			);
			this.#expiryTimer.unref?.();
		}
		this.log.debug("session authorised", {
			root: grant.root,
			publish: grant.publish,
			subscribe: grant.subscribe,
			version: this.#version ?? 0,
		});
		this.#maybeReady();
	}

	#maybeReady(): void {
		if (this.#ready || this.#closed || !this.#grant || this.#version === null) return;
		if (!this.#grant.allowsRole(this.#role)) {
			this.close(Code.UNAUTHORIZED, "the token grants nothing for the role in SETUP");
			return;
		}
		this.#ready = true;
		this.#publisher = new LitePublisher(this, this.#version, this.#grant);
		this.#subscriber = new LiteSubscriber(this, this.#version, this.#grant);
		if (this.#setupTimer) clearTimeout(this.#setupTimer);
		this.#setupTimer = null;
		const pending = this.#pending;
		this.#pending = [];
		for (const route of pending) route();
		this.#subscriber.start();
	}

	// ---------------------------------------------------------------------------------------------
	// Control streams

	/** A reader for a control stream: a message that can never decode closes the session with its code. */
	reader(s: TransportStream): ControlReader {
		return new ControlReader(s, this.#control, this.#onControlError);
	}

	/** A control stream failed (already reset and stopped): the peer's protocol violation. */
	readonly #onControlError = (code: number, reason: string): void => {
		this.#violation(code, reason);
	};

	/** The peer broke the protocol: counted, and the session closes with `code`. */
	#violation(code: number, reason: string): void {
		countRefusal("protocol", this.log.warn, { session: this.id, remote: this.transport.remote, code, reason });
		this.close(code, reason);
	}

	/** Runs `fn` for each whole message in the reader while the session is open; decode errors close it. */
	drain<T>(reader: ControlReader, decode: (r: Reader) => T, fn: (m: T) => void): void {
		while (!this.#closed) {
			const m = reader.next(decode);
			if (m === undefined) return;
			fn(m);
		}
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
		const reader = this.reader(s);
		let type: number | undefined;
		const onType = () => {
			if (type !== undefined) return;
			// A type that is not a varint this side can hold (e.g. 8 bytes of 0xff, above 2^53) is the
			// peer's protocol violation: close with the decoder's code, like any other bad message.
			type = reader.next(readStreamType);
			if (type === undefined) return;
			// Setup streams are handled before the session is ready; everything else waits for it.
			const isSetup =
				(s.bidi && type === BIDI.SETUP_CLIENT && this.#version === null) || (!s.bidi && type === UNI.SETUP);
			if (!isSetup && !this.#ready) {
				// Keep buffering (bounded) until the session is ready.
				reader.follow(() => {});
				const t = type;
				this.#pending.push(() => this.#route(s, reader, t));
				return;
			}
			this.#route(s, reader, type);
		};
		reader.follow(onType);
		s.onFin = () => {
			if (type === undefined) s.finish();
		};
		s.onReset = () => {};
	}

	#route(s: TransportStream, reader: ControlReader, type: number): void {
		if (s.bidi) {
			switch (type) {
				case BIDI.SETUP_CLIENT:
					return this.#onLegacySetup(s, reader);
				case BIDI.ANNOUNCE:
					return this.#publisher!.onAnnounceRequest(s, reader);
				case BIDI.SUBSCRIBE:
					return this.#publisher!.onSubscribe(s, reader);
				case BIDI.TRACK:
					return this.#publisher!.onTrackRequest(s, reader);
				case BIDI.FETCH:
					return this.#publisher!.onFetch(s, reader);
				case BIDI.PROBE:
					return this.#onProbe(s, reader);
				case BIDI.GOAWAY:
					s.onData = null;
					s.onFin = () => s.finish();
					this.log.info("peer sent GOAWAY");
					return;
				default:
					// lite-03+: an unknown stream type resets that stream only.
					s.onData = null;
					s.reset(Code.UNEXPECTED_STREAM);
					s.stop(Code.UNEXPECTED_STREAM);
					this.log.debug("unknown bidi stream type", { type });
					return;
			}
		}
		switch (type) {
			case UNI.GROUP:
				return this.#subscriber!.onGroup(s, reader);
			case UNI.SETUP:
				return this.#onLiteSetup(s, reader);
			default:
				s.onData = null;
				s.stop(Code.UNEXPECTED_STREAM);
				this.log.debug("unknown uni stream type", { type });
		}
	}

	#onProbe(s: TransportStream, reader: ControlReader): void {
		const v = this.#version!;
		// Keep it open and silent: @moq/lite treats a reset PROBE as fatal on 03/04.
		reader.follow(() => {
			this.drain(
				reader,
				(r) => decodeProbe(r, v, this.limits),
				() => {},
			);
		});
		s.onFin = () => s.finish();
	}

	// ---------------------------------------------------------------------------------------------
	// Setup

	#onLegacySetup(s: TransportStream, reader: ControlReader): void {
		let done = false;
		reader.follow(() => {
			if (done) {
				// lite-02 session stream: only SESSION_INFO after setup; ignore its content.
				this.drain(
					reader,
					(r) => decodeSessionInfo(r, 2, this.limits),
					() => {},
				);
				return;
			}
			const setup = reader.next((r) => decodeClientSetup(r, this.limits));
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
			if (reader.buf.length)
				this.drain(
					reader,
					(r) => decodeSessionInfo(r, 2, this.limits),
					() => {},
				);
		});
		// A FIN on the lite-02 session stream ends the session; never reset it (that kills @moq/lite).
		s.onFin = () => this.close(0, "session stream closed");
		s.onReset = (code) => this.close(code, "session stream reset");
	}

	/**
	 * The client side of the lite-02 handshake (a link to a relay that speaks only moq-lite-02):
	 * CLIENT_SETUP offering lite-02 on a bidi stream, then the server's SERVER_SETUP. That stream
	 * stays open as the session stream: its FIN ends the session.
	 */
	#dialLegacySetup(dial: DialTarget): void {
		this.#setupTimer = setTimeout(() => this.guarded(() => this.close(Code.TIMEOUT, "no SETUP")), SETUP_TIMEOUT_MS);
		this.withStream(true, (s) => {
			const w = new Writer(32);
			encodeClientSetup(w, { versions: [LITE_02], params: new Map() });
			s.write(w.view());
			const reader = this.reader(s);
			let done = false;
			reader.follow(() => {
				if (done) {
					this.drain(
						reader,
						(r) => decodeSessionInfo(r, 2, this.limits),
						() => {},
					);
					return;
				}
				const setup = reader.next(decodeServerSetupMessage);
				if (setup === undefined) return;
				done = true;
				if (setup.version !== LITE_02) {
					this.close(Code.VERSION, `the peer chose version 0x${setup.version.toString(16)}, not moq-lite-02`);
					return;
				}
				this.#version = 2;
				this.#authorized(dial.grant);
				if (reader.buf.length)
					this.drain(
						reader,
						(r) => decodeSessionInfo(r, 2, this.limits),
						() => {},
					);
			});
			s.onFin = () => this.close(0, "session stream closed");
			s.onReset = (code) => this.close(code, "session stream reset");
		});
	}

	/** Our lite-05 SETUP: our hop id (a peer relay uses it for split horizon), and the path when we dial over raw QUIC. */
	#sendLiteSetup(path?: string): void {
		this.withStream(false, (s) => {
			const w = new Writer(64 + (path?.length ?? 0) * 3);
			w.varint(UNI.SETUP);
			encodeLiteSetup(w, path === undefined ? { origin: this.relay.hopId } : { path, origin: this.relay.hopId }, 5);
			s.write(w.view());
			s.finish();
		});
	}

	#onLiteSetup(s: TransportStream, reader: ControlReader): void {
		if (this.#version === null || !hasLiteSetup(this.#version)) {
			s.stop(Code.UNEXPECTED_STREAM);
			return;
		}
		let seen = false;
		const onSetup = () => {
			if (seen) return;
			const setup = reader.next((r) => decodeLiteSetup(r, 5, this.limits));
			if (setup === undefined) return;
			seen = true;
			this.#role = setup.role ?? 0;
			this.peerOrigin = setup.origin ?? 0;
			if (this.#ctx.dial) return; // the peer's SETUP to us carries nothing else we need
			if (this.#grant && !this.#grant.allowsRole(this.#role)) {
				this.close(Code.UNAUTHORIZED, "the token grants nothing for the role in SETUP");
				return;
			}
			if (setup.path !== undefined && this.transport.kind !== "quic") {
				this.#violation(Code.PROTOCOL_VIOLATION, "SETUP path over a transport with a URL");
				return;
			}
			if (this.#awaitingSetupPath) {
				this.#awaitingSetupPath = false;
				this.#setupPath = setup.path ?? "";
				// One parser for every transport's request target: the last non-empty jwt wins, and
				// malformed percent-encoding is the peer's protocol violation, not an exception.
				const target = parseConnectTarget(this.#setupPath || "/");
				if (target === null) {
					this.#violation(Code.PROTOCOL_VIOLATION, "SETUP path has malformed percent-encoding");
					return;
				}
				(this.transport as { setPath?: (p: string) => void }).setPath?.(this.#setupPath);
				this.#authorize(target.path, target.jwt);
			}
		};
		reader.follow(onSetup);
		s.onFin = () => {
			if (!seen) this.#violation(Code.PROTOCOL_VIOLATION, "SETUP stream ended early");
			else if (this.#awaitingSetupPath) this.#authorize("", null);
		};
	}

	// ---------------------------------------------------------------------------------------------

	/** `graceful`: the peer closed on purpose (TransportSession.onClose): what it published ends cleanly. */
	#teardown(code: number, reason: string, graceful = false): void {
		if (this.#closed) return;
		this.#closed = true;
		this.relay.figures.sessions--;
		countSessionClose(code);
		if (this.#setupTimer) clearTimeout(this.#setupTimer);
		if (this.#expiryTimer) clearTimeout(this.#expiryTimer);
		this.#publisher?.close();
		this.#subscriber?.close(graceful);
		this.log.info("session closed", { code, reason });
	}
}
