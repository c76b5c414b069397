/**
 * One qmux stream. Holds the per-stream send queue and flow-control counters; the session does the
 * framing and scheduling (it owns the socket), so every method here delegates to its owner.
 */
import type { TransportStream } from "../transport/types.ts";

/** The session side of a stream (implemented by WsSession; kept as an interface to avoid an import cycle). */
export interface StreamOwner {
	streamWrite(s: WsStream, data: Uint8Array): void;
	streamFinish(s: WsStream): void;
	streamReset(s: WsStream, code: number): void;
	streamStop(s: WsStream, code: number): void;
}

const NO_PIECES: Buffer[] = [];

export class WsStream implements TransportStream {
	readonly id: number;
	readonly bidi: boolean;
	readonly local: boolean;

	onData: ((chunk: Uint8Array) => void) | null = null;
	onFin: (() => void) | null = null;
	onReset: ((code: number) => void) | null = null;
	onStop: ((code: number) => void) | null = null;
	onDrain: (() => void) | null = null;

	// ---- send state (session-owned) ----
	/** Send priority: higher first. */
	priority = 0;
	/** Bytes handed to the socket (the next STREAM offset). */
	sendOffset = 0;
	/** The peer's MAX_STREAM_DATA for this stream (absolute offset). */
	sendMax = 0;
	/** Queued pieces, each with STREAM_HEADROOM bytes in front of its payload for the header. */
	pieces: Buffer[] = NO_PIECES;
	/** Index of the first unsent piece. */
	head = 0;
	/** Payload bytes of pieces[head] already sent (after a partial, credit-limited send). */
	headSkip = 0;
	/** Payload bytes accepted by write() and not yet handed to the socket. */
	queued = 0;
	/** finish() was called; the FIN goes out after the queued bytes. */
	finQueued = false;
	/** FIN sent or reset sent (or there is no send side): no more frames from us. */
	sendDone: boolean;
	/** Listed in the session's pending list. */
	pending = false;
	/** `queued` went above the drain mark; onDrain is owed once it falls back. */
	aboveMark = false;

	// ---- receive state (session-owned) ----
	/** Bytes received (the next expected offset). */
	recvOffset = 0;
	/** Our advertised MAX_STREAM_DATA. */
	recvMax = 0;
	/** FIN or reset received (or there is no receive side). */
	recvDone: boolean;
	/** The peer FIN'd (so more data would change the final size). */
	finReceived = false;
	/** We sent STOP_SENDING: further data is accounted and dropped. */
	stopSent = false;
	/** Removed from the session's table. */
	retired = false;

	#owner: StreamOwner;

	constructor(owner: StreamOwner, id: number, local: boolean) {
		this.#owner = owner;
		this.id = id;
		this.bidi = (id & 2) === 0;
		this.local = local;
		// A uni stream has only one half: ours when we opened it, the peer's otherwise.
		this.sendDone = !this.bidi && !local;
		this.recvDone = !this.bidi && local;
	}

	get buffered(): number {
		return this.queued;
	}

	/** True when the queue holds no unsent piece. */
	get queueEmpty(): boolean {
		return this.head === this.pieces.length;
	}

	write(data: Uint8Array): void {
		this.#owner.streamWrite(this, data);
	}

	finish(): void {
		this.#owner.streamFinish(this);
	}

	reset(code: number): void {
		this.#owner.streamReset(this, code);
	}

	stop(code: number): void {
		this.#owner.streamStop(this, code);
	}

	setPriority(order: number): void {
		this.priority = order;
	}

	/** Appends a queued piece (session use). */
	push(piece: Buffer): void {
		if (this.pieces === NO_PIECES) this.pieces = [];
		this.pieces.push(piece);
	}

	/** Drops the sent head piece, compacting the array now and then instead of shifting per piece. */
	popHead(): void {
		this.head++;
		this.headSkip = 0;
		if (this.head === this.pieces.length) {
			this.pieces.length = 0;
			this.head = 0;
		} else if (this.head >= 64 && this.head * 2 >= this.pieces.length) {
			this.pieces.splice(0, this.head);
			this.head = 0;
		}
	}

	/** Discards everything queued (reset or session close). */
	clearQueue(): void {
		this.pieces.length = 0;
		this.head = 0;
		this.headSkip = 0;
		this.queued = 0;
	}
}
