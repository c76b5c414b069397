/**
 * A small, fast moq-lite-05 client over any `TransportSession` (raw QUIC in practice: the bench's
 * load generator and publishers). Both roles on one session: publish broadcasts (answering the
 * relay's ANNOUNCE / SUBSCRIBE / TRACK requests) and subscribe to tracks (group streams routed to
 * their subscription by subscribe id).
 * @module
 */

import { ownedCopy } from "../coding/bytes.ts";
import { NeedMoreError } from "../coding/errors.ts";
import { Reader } from "../coding/reader.ts";
import { Writer } from "../coding/writer.ts";
import { CANCEL, PROTOCOL_VIOLATION, TIMEOUT, UNEXPECTED_STREAM } from "../errors/codes.ts";
import { ControlReader } from "../moq/control-reader.ts";
import { decodeGoaway, type Goaway } from "../moq/lite/wire/goaway.ts";
import { decodeLiteSetup, encodeLiteSetup, type LiteSetup } from "../moq/lite/wire/setup.ts";
import { BIDI, UNI } from "../moq/lite/wire/stream-type.ts";
import { decodeTrackInfo, encodeTrackRequest, type TrackInfo } from "../moq/lite/wire/track.ts";
import { ALPN_LITE_05 } from "../moq/lite/wire/version.ts";
import type { TransportSession, TransportStream } from "../transport/types.ts";
import { Announced } from "./announced.ts";
import { CONTROL } from "./control.ts";
import { type PublishedBroadcast, Publisher, type PublishOptions } from "./publisher.ts";
import { type SubscribeOptions, Subscription, type SubscriptionHandlers } from "./subscription.ts";

export interface ClientOptions {
	/**
	 * Sent in the lite-05 SETUP Path param: the session root and token on raw QUIC, e.g. "/anon" or
	 * "/room?jwt=...". Leave unset on transports that carry a URL (WebTransport, WebSocket).
	 */
	path?: string;
	/** Our hop id (≤ 53 bits, non-zero). Default: random. */
	origin?: number;
	/** Give up when the relay's SETUP has not arrived by then (ms). Default 10 s. */
	setupTimeoutMs?: number;
}

const DEFAULT_SETUP_TIMEOUT_MS = 10_000;
/** A group stream whose first chunk is shorter than its header waits for this many bytes at most. */
const GROUP_PREFIX_MAX = 24;

/** Reads `type`, GROUP `len`, `subscribeId` off the front of a group stream without allocating. */
const prefixReader = new Reader(new Uint8Array(0));

export class MoqClient {
	readonly transport: TransportSession;
	readonly origin: number;
	/** The relay's SETUP (capabilities), once received. */
	peerSetup: LiteSetup | null = null;
	/** The session ended (either side). Called once. */
	onClose: ((code: number, reason: string) => void) | null = null;
	/** The relay's GOAWAY (it is draining): the URL it suggests ("" for none), once received. */
	goaway: string | null = null;
	/** Called when the relay sends GOAWAY; the session stays open until either side closes it. */
	onGoaway: ((uri: string) => void) | null = null;
	closed = false;
	/**
	 * Why the session ended, once it has: for a caller that looks after the close happened (a relay
	 * that refuses right after SETUP can close the session before `connect()`'s caller runs again).
	 */
	closeCode: number | null = null;
	closeReason = "";

	readonly #publisher: Publisher;
	readonly #subs = new Map<number, Subscription>();
	readonly #announced = new Set<Announced>();
	#nextSubscribeId = 0;
	#setupWaiter: ((ok: boolean, reason: string) => void) | null = null;

	private constructor(transport: TransportSession, origin: number) {
		this.transport = transport;
		this.origin = origin;
		this.#publisher = new Publisher(transport, origin);
	}

	/**
	 * Starts a lite-05 session on an established transport: sends our SETUP (uni type 1, with `path`),
	 * and resolves once the relay's SETUP has arrived.
	 */
	static async connect(transport: TransportSession, options: ClientOptions = {}): Promise<MoqClient> {
		if (transport.protocol !== ALPN_LITE_05) {
			throw new Error(`the client speaks ${ALPN_LITE_05}; the transport negotiated "${transport.protocol}"`);
		}
		const origin = options.origin ?? 1 + Math.floor(Math.random() * 0xffffffff);
		const client = new MoqClient(transport, origin);
		const ready = new Promise<void>((resolve, reject) => {
			const timer = setTimeout(() => {
				client.close(TIMEOUT, "no SETUP from the relay");
			}, options.setupTimeoutMs ?? DEFAULT_SETUP_TIMEOUT_MS);
			client.#setupWaiter = (ok, reason) => {
				clearTimeout(timer);
				client.#setupWaiter = null;
				if (ok) resolve();
				else reject(new Error(reason));
			};
		});
		// Only now: a WebTransport session delivers streams that arrived before onStream was set
		// synchronously, and the relay's SETUP may be among them (a fast server answers before the
		// CONNECT promise resolved here); it must find the waiter in place.
		transport.onStream = (s) => client.#onStream(s);
		transport.onClose = (code, reason) => client.#closed(code, reason);
		// The transport may have closed before this ran (the relay's refusal can arrive in the same
		// receive batch as the end of the handshake): fail now, leaving no SETUP timer behind.
		const s = transport.closed ? null : transport.openUni();
		if (s === null) {
			client.#setupWaiter?.(false, transport.closed ? "session closed before SETUP" : "no stream credit for SETUP");
			await ready; // rejects with that reason
			throw new Error("unreachable: the SETUP waiter was settled");
		}
		const w = new Writer(64);
		w.varint(UNI.SETUP);
		const setup: LiteSetup = { origin };
		if (options.path !== undefined) setup.path = options.path;
		encodeLiteSetup(w, setup, 5);
		s.write(w.view());
		s.finish();
		await ready;
		return client;
	}

	/** Publishes a broadcast (announced to the relay while open). */
	publish(path: string, options: PublishOptions = {}): PublishedBroadcast {
		return this.#publisher.publish(path, options);
	}

	/**
	 * Subscribes to `track` of `broadcast` (relative to the session root). Callbacks may be passed in
	 * `handlers` or set on the returned Subscription before the first group arrives.
	 */
	subscribe(
		broadcast: string,
		track: string,
		options: SubscribeOptions = {},
		handlers: SubscriptionHandlers = {},
	): Subscription {
		if (this.closed) throw new Error("session closed");
		const s = this.transport.openBidi();
		if (s === null) throw new Error("no stream credit for SUBSCRIBE");
		const id = this.#nextSubscribeId++;
		const sub = new Subscription(id, broadcast, track, s, options, (x) => {
			if (this.#subs.get(x.id) === x) this.#subs.delete(x.id);
		});
		Object.assign(sub, handlers);
		this.#subs.set(id, sub);
		return sub;
	}

	/** Watches the broadcasts announced under `prefix` ("" = everything in our scope). */
	announced(prefix = ""): Announced {
		if (this.closed) throw new Error("session closed");
		const s = this.transport.openBidi();
		if (s === null) throw new Error("no stream credit for ANNOUNCE");
		const a = new Announced(s, prefix, this.origin);
		this.#announced.add(a);
		const onEnd = a.onEnd;
		a.onEnd = (code) => {
			this.#announced.delete(a);
			onEnd?.(code);
		};
		return a;
	}

	/** Asks the relay for a track's TRACK_INFO (bidi type 6). */
	trackInfo(broadcast: string, track: string, timeoutMs = 10_000): Promise<TrackInfo> {
		return new Promise((resolve, reject) => {
			const s = this.closed ? null : this.transport.openBidi();
			if (s === null) return reject(new Error("session closed or no stream credit"));
			const w = new Writer(64);
			w.varint(BIDI.TRACK);
			encodeTrackRequest(w, { broadcast, track }, 5);
			s.write(w.view());
			s.finish();
			let done = false;
			const settle = (err: Error | null, info?: TrackInfo) => {
				if (done) return;
				done = true;
				clearTimeout(timer);
				if (err) reject(err);
				else resolve(info as TrackInfo);
			};
			const timer = setTimeout(() => {
				s.reset(TIMEOUT);
				settle(new Error("TRACK_INFO timed out"));
			}, timeoutMs);
			const reader = new ControlReader(s, CONTROL, (code, message) =>
				settle(new Error(`TRACK_INFO: ${message} (${code})`)),
			);
			s.onData = (chunk) =>
				reader.push(
					chunk,
					(r) => decodeTrackInfo(r, 5),
					(info) => settle(null, info),
				);
			s.onFin = () => settle(new Error("TRACK stream ended without TRACK_INFO"));
			s.onReset = (code) => settle(new Error(`TRACK refused (${code})`));
		});
	}

	close(code = 0, reason = ""): void {
		if (this.closed) return;
		this.transport.close(code, reason);
		this.#closed(code, reason);
	}

	// ---------------------------------------------------------------------------------------------

	#onStream(s: TransportStream): void {
		if (this.closed) {
			s.reset(CANCEL);
			return;
		}
		if (s.bidi) this.#onBidi(s);
		else this.#onUni(s);
	}

	#onUni(s: TransportStream): void {
		// Group streams are the data plane: read `00`, GROUP len, subscribeId straight from the chunk.
		let stash: Uint8Array | null = null;
		s.onData = (chunk) => {
			let data = chunk;
			if (stash !== null) {
				const joined = new Uint8Array(stash.length + chunk.length);
				joined.set(stash);
				joined.set(chunk, stash.length);
				data = joined;
			}
			const type = data[0];
			if (type === UNI.SETUP) {
				stash = null;
				this.#onSetupStream(s, data);
				return;
			}
			if (type !== UNI.GROUP) {
				s.onData = null;
				s.stop(UNEXPECTED_STREAM);
				return;
			}
			const r = prefixReader.reset(data, 1);
			let id: number;
			try {
				r.varint();
				id = r.varint();
			} catch (err) {
				if (!(err instanceof NeedMoreError) || data.length >= GROUP_PREFIX_MAX) {
					s.onData = null;
					s.stop(PROTOCOL_VIOLATION);
					return;
				}
				stash = ownedCopy(data);
				return;
			}
			stash = null;
			const sub = this.#subs.get(id);
			if (sub === undefined) {
				// Unsubscribed meanwhile (or never asked): a normal race.
				s.onData = null;
				s.stop(CANCEL);
				return;
			}
			sub.attach(s, data, 1);
		};
		s.onFin = () => {};
		s.onReset = () => {};
	}

	#onSetupStream(s: TransportStream, first: Uint8Array): void {
		const reader = new ControlReader(s, CONTROL, (code, message) => this.close(code, `bad SETUP: ${message}`));
		let seen = false;
		const handle = (m: LiteSetup) => {
			if (seen) return;
			seen = true;
			this.peerSetup = m;
			this.#setupWaiter?.(true, "");
		};
		s.onData = (chunk) => reader.push(chunk, decodeSetup, handle);
		s.onFin = () => {
			if (!seen) this.close(PROTOCOL_VIOLATION, "SETUP stream ended early");
		};
		reader.push(first.subarray(1), decodeSetup, handle);
	}

	#onBidi(s: TransportStream): void {
		const reader = new ControlReader(s, CONTROL, () => {});
		let routed = false;
		const route = (type: number) => {
			if (routed) return;
			routed = true;
			const rest = reader.release();
			const next = new ControlReader(s, CONTROL, () => {});
			if (rest.length > 0) next.buf.push(rest);
			switch (type) {
				case BIDI.ANNOUNCE:
					return this.#publisher.onAnnounceRequest(s, next);
				case BIDI.SUBSCRIBE:
					return this.#publisher.onSubscribe(s, next);
				case BIDI.TRACK:
					return this.#publisher.onTrackRequest(s, next);
				case BIDI.GOAWAY: {
					// The relay is draining: remember where it sends us; the session goes on until it closes.
					let seen = false;
					const handle = (m: Goaway) => {
						if (seen) return;
						seen = true;
						this.goaway = m.uri;
						this.onGoaway?.(m.uri);
					};
					s.onData = (chunk) => next.push(chunk, decodeGoaway5, handle);
					s.onFin = () => s.finish();
					next.push(null, decodeGoaway5, handle);
					return;
				}
				case BIDI.PROBE:
					// Keep it open and ignore it (a reset probe is fatal for some peers).
					s.onData = null;
					s.onFin = () => s.finish();
					return;
				default:
					s.onData = null;
					s.reset(UNEXPECTED_STREAM);
					s.stop(UNEXPECTED_STREAM);
			}
		};
		s.onData = (chunk) => reader.push(chunk, readType, route);
		s.onFin = () => s.finish();
		s.onReset = () => {};
	}

	#closed(code: number, reason: string): void {
		if (this.closed) return;
		this.closed = true;
		this.closeCode = code;
		this.closeReason = reason;
		this.#setupWaiter?.(false, `session closed before SETUP (${code}: ${reason})`);
		for (const sub of [...this.#subs.values()]) sub.sessionClosed(code);
		this.#subs.clear();
		for (const a of [...this.#announced]) a.close();
		this.#publisher.detach();
		this.onClose?.(code, reason);
	}
}

function readType(r: Reader): number {
	return r.varint();
}

function decodeGoaway5(r: Reader): Goaway {
	return decodeGoaway(r, 5);
}

function decodeSetup(r: Reader): LiteSetup {
	return decodeLiteSetup(r, 5);
}
