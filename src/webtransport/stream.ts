/**
 * A WebTransport stream: a QUIC stream whose 0x54/0x41 header has been stripped (incoming) or
 * written (outgoing), with application error codes mapped to and from the HTTP/3 range.
 *
 * An incoming stream can arrive before its session is usable (the CONNECT is still being processed,
 * or the owner has not set `onStream` yet). Until it is handed out it is "held": its bytes are copied
 * and counted against the connection's buffering limit, then replayed right after `onStream`.
 */

import { ownedCopy } from "../coding/bytes.ts";
import { streamCodeFrom, streamCodeOn } from "../errors/codes.ts";
import type { TransportStream } from "../transport/types.ts";

/** What a stream needs from its connection: held-byte accounting and bookkeeping on completion. */
export interface StreamOwner {
	/** `n` more bytes are held for `stream`; the owner may reject the stream when over its limit. */
	held(stream: WtStream, n: number): void;
	/** Held bytes were released (delivered or dropped). */
	unheld(stream: WtStream, n: number): void;
	/** Both directions are done: forget the stream. */
	done(stream: WtStream): void;
}

const END_NONE = -1;
const END_FIN = -2;

export class WtStream implements TransportStream {
	readonly id: number;
	readonly bidi: boolean;
	readonly local: boolean;
	/** The WebTransport session ID (the CONNECT stream's ID) this stream belongs to. */
	readonly sessionId: number;
	readonly quic: TransportStream;
	private readonly owner: StreamOwner;

	onData: ((chunk: Uint8Array) => void) | null = null;
	onFin: (() => void) | null = null;
	onReset: ((code: number) => void) | null = null;
	onStop: ((code: number) => void) | null = null;
	onDrain: (() => void) | null = null;

	/** Copies of bytes received while held; null once handed out (or for local streams). */
	private heldChunks: Uint8Array[] | null;
	private heldBytes = 0;
	/** How the peer's send side ended while held: END_NONE, END_FIN, or a mapped reset code. */
	private heldEnd = END_NONE;
	private heldStop = END_NONE;
	/** We called stop() (or aborted): drop whatever still arrives. */
	private readStopped = false;
	/** Our send side is finished or reset (true from the start for a peer's uni stream). */
	sendDone: boolean;
	/** The peer's send side ended, or we asked it to stop (true from the start for our uni stream). */
	recvDone: boolean;

	constructor(quic: TransportStream, sessionId: number, owner: StreamOwner) {
		this.quic = quic;
		this.id = quic.id;
		this.bidi = quic.bidi;
		this.local = quic.local;
		this.sessionId = sessionId;
		this.owner = owner;
		this.heldChunks = quic.local ? null : [];
		this.sendDone = !quic.bidi && !quic.local;
		this.recvDone = !quic.bidi && quic.local;
		quic.onData = (chunk) => this.receive(chunk);
		quic.onFin = () => this.receiveFin();
		quic.onReset = (code) => this.receiveReset(code);
		quic.onStop = (code) => this.receiveStop(code);
		quic.onDrain = () => this.onDrain?.();
	}

	get held(): boolean {
		return this.heldChunks !== null;
	}

	/** Bytes from the peer (after the stream header). */
	receive(chunk: Uint8Array): void {
		if (this.recvDone || chunk.length === 0) return;
		const held = this.heldChunks;
		if (held === null) {
			this.onData?.(chunk);
			return;
		}
		held.push(ownedCopy(chunk));
		this.heldBytes += chunk.length;
		this.owner.held(this, chunk.length);
	}

	private receiveFin(): void {
		if (this.recvDone) return;
		this.recvDone = true;
		if (this.heldChunks !== null) this.heldEnd = END_FIN;
		else this.onFin?.();
		if (this.sendDone) this.owner.done(this);
	}

	private receiveReset(h3Code: number): void {
		if (this.recvDone) return;
		this.recvDone = true;
		// Codes outside the WebTransport range (e.g. H3_REQUEST_CANCELLED) carry no application meaning.
		const code = streamCodeFrom("webtransport", h3Code) ?? 0;
		if (this.heldChunks !== null) this.heldEnd = code;
		else this.onReset?.(code);
		if (this.sendDone) this.owner.done(this);
	}

	private receiveStop(h3Code: number): void {
		if (this.sendDone) return;
		const code = streamCodeFrom("webtransport", h3Code) ?? 0;
		if (this.heldChunks !== null) this.heldStop = code;
		else this.onStop?.(code);
	}

	/** Hands the stream out: replays what arrived while held. Call right after the owner's onStream. */
	release(): void {
		const held = this.heldChunks;
		if (held === null) return;
		this.heldChunks = null;
		if (this.heldBytes > 0) this.owner.unheld(this, this.heldBytes);
		this.heldBytes = 0;
		// The consumer may stop() or abort from inside a callback; replay nothing after that.
		for (let i = 0; i < held.length && !this.readStopped; i++) this.onData?.(held[i]);
		if (this.heldStop >= 0 && !this.sendDone) this.onStop?.(this.heldStop);
		if (this.readStopped) return;
		if (this.heldEnd === END_FIN) this.onFin?.();
		else if (this.heldEnd >= 0) this.onReset?.(this.heldEnd);
	}

	write(data: Uint8Array): void {
		if (this.sendDone) return;
		this.quic.write(data);
	}

	/** TransportStream.sharedTarget: write() hands data to the QUIC stream as it is. */
	get sharedTarget(): TransportStream | null {
		return this.sendDone ? null : this.quic;
	}

	finish(): void {
		if (this.sendDone) return;
		this.sendDone = true;
		this.quic.finish();
		if (this.recvDone) this.owner.done(this);
	}

	reset(code: number): void {
		if (this.sendDone) return;
		this.sendDone = true;
		this.quic.reset(streamCodeOn("webtransport", code));
		if (this.recvDone) this.owner.done(this);
	}

	stop(code: number): void {
		this.readStopped = true;
		if (this.recvDone) return;
		this.recvDone = true;
		this.quic.stop(streamCodeOn("webtransport", code));
		if (this.sendDone) this.owner.done(this);
	}

	get buffered(): number {
		return this.quic.buffered;
	}

	setPriority(order: number): void {
		this.quic.setPriority(order);
	}

	/**
	 * Ends both directions with a raw HTTP/3 code (WT_SESSION_GONE, WT_BUFFERED_STREAM_REJECTED) and
	 * detaches from the consumer: nothing more is delivered. Does not notify the owner.
	 */
	abort(h3Code: number): void {
		const quic = this.quic;
		quic.onData = null;
		quic.onFin = null;
		quic.onReset = null;
		quic.onStop = null;
		quic.onDrain = null;
		this.readStopped = true;
		if (!this.sendDone) quic.reset(h3Code);
		if (!this.recvDone) quic.stop(h3Code);
		this.sendDone = true;
		this.recvDone = true;
		if (this.heldChunks !== null) {
			if (this.heldBytes > 0) this.owner.unheld(this, this.heldBytes);
			this.heldChunks = null;
			this.heldBytes = 0;
		}
	}
}
