/**
 * Sessions whose application protocol leaves the version to the 0x20 CLIENT_SETUP: `moql`, or none
 * (plain WebTransport, bare qmux). Both dialects open the same way (a bidi stream, `0x20`, a u16
 * length, a version list), so the choice can only be made on that list: this dispatcher holds the
 * session's streams and bytes until the CLIENT_SETUP's versions are in, then hands the session, with
 * everything seen so far replayed in order, to the dialect that answers:
 * - moq-lite (lite-02) whenever the client offers a moq-lite version, lite-02 or any other: today's
 *   choice, kept (a moq-lite session refuses versions it does not speak as it always did);
 * - IETF draft-14 when the client offers no moq-lite version but does offer 0xff00000e;
 * - moq-lite otherwise, which closes with its VERSION code as before.
 *
 * The dialects are made by the caller (src/worker/relay-node.ts): this module knows neither.
 * @module
 */

import { ownedCopy } from "../../coding/bytes.ts";
import { NEED_MORE } from "../../coding/errors.ts";
import { Reader } from "../../coding/reader.ts";
import { PROTOCOL_VIOLATION, TIMEOUT } from "../../errors/codes.ts";
import type { Logger } from "../../log/logger.ts";
import { countSessionClose } from "../../metrics/session-closes.ts";
import type { TransportSession, TransportStream } from "../../transport/types.ts";
import { DRAFT_14 } from "./version.ts";

/** What the relay node keeps of a session, whichever dialect runs it. */
export interface RelaySession {
	start(): void;
	close(code: number, reason: string): void;
	/** The relay is draining: tell the client (where its version can), true when told. */
	goaway(uri: string): boolean;
	readonly closed: boolean;
}

/** 0xff0dad0N: the moq-lite version codes of the 0x20 exchange. */
function isLiteCode(v: number): boolean {
	return v >= 0xff0dad00 && v <= 0xff0dadff;
}

/** Which dialect a CLIENT_SETUP version list is answered in. */
export function compatDialect(versions: readonly number[]): "lite" | "ietf" {
	if (versions.some(isLiteCode)) return "lite";
	return versions.includes(DRAFT_14) ? "ietf" : "lite";
}

/** Bytes held before the choice: a CLIENT_SETUP is at most 65535 + 3 bytes; a little more for slack. */
const MAX_HELD_BYTES = 128 * 1024;
const SETUP_TIMEOUT_MS = 10_000;

interface Held {
	readonly stream: TransportStream;
	readonly chunks: Uint8Array[];
	fin: boolean;
	reset: number | null;
	stop: number | null;
}

export interface CompatDialects {
	lite(): RelaySession;
	ietf(): RelaySession;
	log: Logger;
}

export class CompatDispatch implements RelaySession {
	readonly #t: TransportSession;
	readonly #dialects: CompatDialects;
	readonly #held: Held[] = [];
	#bytes = 0;
	#setup: Held | null = null;
	#inner: RelaySession | null = null;
	#innerClose: TransportSession["onClose"] = null;
	#closed = false;
	#timer: ReturnType<typeof setTimeout> | null = null;

	constructor(t: TransportSession, dialects: CompatDialects) {
		this.#t = t;
		this.#dialects = dialects;
	}

	get closed(): boolean {
		return this.#inner ? this.#inner.closed : this.#closed;
	}

	start(): void {
		const t = this.#t;
		t.onStream = (s) => this.#onStream(s);
		t.onClose = (code, reason, graceful) => this.#onClose(code, reason, graceful);
		t.onStreamCredit = null;
		this.#timer = setTimeout(() => this.close(TIMEOUT, "no SETUP"), SETUP_TIMEOUT_MS);
	}

	close(code: number, reason: string): void {
		if (this.#inner) {
			this.#inner.close(code, reason);
			return;
		}
		if (this.#closed) return;
		this.#t.close(code, reason);
		this.#onClose(code, reason);
	}

	goaway(uri: string): boolean {
		return this.#inner?.goaway(uri) ?? false;
	}

	#onClose(code: number, reason: string, graceful?: boolean): void {
		if (this.#inner) {
			this.#innerClose?.(code, reason, graceful);
			return;
		}
		if (this.#closed) return;
		this.#closed = true;
		if (this.#timer) clearTimeout(this.#timer);
		countSessionClose(code);
		this.#dialects.log.debug("session closed before its SETUP", { code, reason });
	}

	#onStream(s: TransportStream): void {
		if (this.#closed) {
			s.reset(PROTOCOL_VIOLATION);
			return;
		}
		const h: Held = { stream: s, chunks: [], fin: false, reset: null, stop: null };
		this.#held.push(h);
		const isSetup = s.bidi && this.#setup === null;
		if (isSetup) this.#setup = h;
		s.onData = (chunk) => {
			this.#bytes += chunk.length;
			if (this.#bytes > MAX_HELD_BYTES) {
				this.close(PROTOCOL_VIOLATION, "too much data before SETUP");
				return;
			}
			h.chunks.push(ownedCopy(chunk));
			if (isSetup) this.#decide();
		};
		s.onFin = () => {
			h.fin = true;
			if (isSetup) this.#decide(true);
		};
		s.onReset = (code) => {
			h.reset = code;
		};
		s.onStop = (code) => {
			h.stop = code;
		};
	}

	/** Reads the held CLIENT_SETUP's version list; hands off once it is whole (or can never be). */
	#decide(ended = false): void {
		if (this.#inner || this.#closed || !this.#setup) return;
		const bytes = concat(this.#setup.chunks);
		let versions: number[] | null = null;
		try {
			const r = new Reader(bytes);
			if (r.u8() !== 0x20) throw new Error("not a CLIENT_SETUP");
			const len = r.u16();
			if (r.remaining < len) {
				if (!ended) return;
				throw new Error("truncated");
			}
			r.end = r.pos + len;
			const n = r.varint();
			versions = [];
			for (let i = 0; i < n && i < 256; i++) versions.push(r.varint());
		} catch (err) {
			// Still arriving: wait. Anything else is for moq-lite's own decoder to refuse, as before.
			if (err === NEED_MORE && !ended) return;
			versions = null;
		}
		this.#handOff(versions !== null && compatDialect(versions) === "ietf" ? "ietf" : "lite");
	}

	#handOff(dialect: "lite" | "ietf"): void {
		if (this.#timer) clearTimeout(this.#timer);
		this.#timer = null;
		const t = this.#t;
		// Whoever wrapped our onClose (the relay node's session accounting) stays outermost.
		const outer = t.onClose;
		const inner = dialect === "ietf" ? this.#dialects.ietf() : this.#dialects.lite();
		this.#inner = inner;
		inner.start();
		this.#innerClose = t.onClose;
		t.onClose = outer;
		// Replay, in arrival order: each stream as if it opened now, then its bytes and its end.
		for (const h of this.#held) {
			const s = h.stream;
			detach(s);
			if (inner.closed) return;
			t.onStream?.(s);
			for (const c of h.chunks) s.onData?.(c);
			if (h.fin) s.onFin?.();
			if (h.reset !== null) s.onReset?.(h.reset);
			if (h.stop !== null) s.onStop?.(h.stop);
		}
		this.#held.length = 0;
	}
}

/** Drops our holding callbacks (the dialect's own are set when it sees the stream). */
function detach(s: TransportStream): void {
	s.onData = null;
	s.onFin = null;
	s.onReset = null;
	s.onStop = null;
}

function concat(chunks: Uint8Array[]): Uint8Array {
	if (chunks.length === 1) return chunks[0];
	let n = 0;
	for (const c of chunks) n += c.length;
	const out = new Uint8Array(n);
	let p = 0;
	for (const c of chunks) {
		out.set(c, p);
		p += c.length;
	}
	return out;
}
