/**
 * One QUIC stream of a raw-QUIC session (TransportStream). Writes go straight into quiche (which
 * copies) as far as flow control allows; the rest is copied into a per-stream queue and pushed by
 * the connection when capacity returns (after ACKs / MAX_STREAM_DATA arrive).
 */
import { copyBytes, type TransportStream } from "../transport/types.ts";

/**
 * The connection side of a stream (implemented by QuicConnection; kept as an interface so that
 * this file does not import the connection).
 */
export interface StreamOwner {
	readonly isServer: boolean;
	/** streamSend; returns bytes taken, or -1 when the peer stopped the stream (onStop fired). */
	streamWrite(stream: QuicStream, data: Uint8Array, fin: boolean): number;
	/** The connection's index for the engine's writeShared (native/ngtcp2.c), or -1 without one. */
	readonly sharedSlot: number;
	/** The engine took `sent` bytes for the stream through writeShared (shared-writer.ts). */
	sharedWritten(stream: QuicStream, sent: number): void;
	finishStream(stream: QuicStream): void;
	shutdownStream(stream: QuicStream, read: boolean, code: number): void;
	prioritize(stream: QuicStream, order: number): void;
	markBlocked(stream: QuicStream): void;
	sendSideDone(stream: QuicStream): void;
	recvSideDone(stream: QuicStream): void;
}

/** `onDrain` fires when the queue falls to this after having been above DRAIN_HIGH. */
export const DRAIN_LOW = 16 * 1024;
export const DRAIN_HIGH = 64 * 1024;

export const SendState = {
	Open: 0,
	/** finish() called while bytes were queued: FIN goes out with the last of them. */
	FinQueued: 1,
	/** FIN handed to quiche, or reset, or stopped by the peer: nothing more to send. */
	Done: 2,
} as const;
export type SendState = (typeof SendState)[keyof typeof SendState];

const EMPTY = new Uint8Array(0);

export class QuicStream implements TransportStream {
	readonly id: number;
	readonly bidi: boolean;
	readonly local: boolean;

	onData: ((chunk: Uint8Array) => void) | null = null;
	onFin: (() => void) | null = null;
	onReset: ((code: number) => void) | null = null;
	onStop: ((code: number) => void) | null = null;
	onDrain: (() => void) | null = null;

	/** @internal */ sendState: SendState;
	/** @internal true while the receive side is open (the connection polls it). */
	recvOpen: boolean;
	/** @internal The connection's flushEpoch at the last write quiche took bytes from. */
	lastWriteEpoch = -1;
	/** @internal When finish() handed the FIN to the connection to write later (performance.now()). */
	finQueuedAt = 0;
	private readonly conn: StreamOwner;
	private readonly queue: Uint8Array[] = [];
	private queueHead = 0;
	/** Bytes of queue[queueHead] already handed to quiche. */
	private headOffset = 0;
	private queued = 0;
	private aboveHigh = false;

	constructor(conn: StreamOwner, id: number) {
		this.conn = conn;
		this.id = id;
		this.bidi = (id & 2) === 0;
		this.local = (id & 1) === (conn.isServer ? 1 : 0);
		const canSend = this.bidi || this.local;
		const canRecv = this.bidi || !this.local;
		this.sendState = canSend ? SendState.Open : SendState.Done;
		this.recvOpen = canRecv;
	}

	get buffered(): number {
		return this.queued;
	}

	write(data: Uint8Array): void {
		if (this.sendState !== SendState.Open || data.length === 0) return;
		let offset = 0;
		if (this.queued === 0) {
			const sent = this.conn.streamWrite(this, data, false);
			if (sent < 0) return; // stopped by the peer or gone: onStop already fired
			if (sent === data.length) return;
			offset = sent;
		}
		this.queueFrom(data, offset);
	}

	/** @internal The connection's writeShared index (-1: none); see shared-writer.ts. */
	get sharedSlot(): number {
		return this.conn.sharedSlot;
	}

	/** @internal A write now would go straight to the engine: the stream is open and nothing is queued. */
	get sharedReady(): boolean {
		return this.sendState === SendState.Open && this.queued === 0;
	}

	/** @internal The engine took `sent` bytes of `data` through writeShared: the rest is queued, as write() does. */
	sharedWritten(data: Uint8Array, sent: number): void {
		this.conn.sharedWritten(this, sent);
		if (sent < data.length) this.queueFrom(data, sent);
	}

	private queueFrom(data: Uint8Array, offset: number): void {
		// The caller may reuse `data` after we return: keep a copy of what quiche did not take.
		const copy = Buffer.allocUnsafe(data.length - offset);
		copyBytes(data, offset, data.length, copy, 0);
		this.queue.push(copy);
		this.queued += data.length - offset;
		if (this.queued > DRAIN_HIGH) this.aboveHigh = true;
		this.conn.markBlocked(this);
	}

	finish(): void {
		if (this.sendState !== SendState.Open) return;
		if (this.queued > 0) {
			this.sendState = SendState.FinQueued;
			return;
		}
		this.sendState = SendState.Done;
		// Not always written now: QuicConnection.finishStream explains the quiche 0.18 bug it avoids.
		this.conn.finishStream(this);
		this.conn.sendSideDone(this);
	}

	reset(code: number): void {
		if (this.sendState === SendState.Done) return;
		this.sendState = SendState.Done;
		this.clearQueue();
		this.conn.shutdownStream(this, false, code);
		this.conn.sendSideDone(this);
	}

	stop(code: number): void {
		if (!this.recvOpen) return;
		this.recvOpen = false;
		this.conn.shutdownStream(this, true, code);
		this.conn.recvSideDone(this);
	}

	setPriority(order: number): void {
		this.conn.prioritize(this, order);
	}

	/**
	 * @internal Pushes queued bytes into quiche. Returns true when the queue is empty afterwards
	 * (then the connection stops tracking the stream as blocked).
	 */
	pump(): boolean {
		while (this.queueHead < this.queue.length) {
			const chunk = this.queue[this.queueHead];
			const rest = this.headOffset === 0 ? chunk : chunk.subarray(this.headOffset);
			const last = this.queueHead === this.queue.length - 1;
			const fin = last && this.sendState === SendState.FinQueued;
			const sent = this.conn.streamWrite(this, rest, fin);
			if (sent < 0) return true; // stopped: the queue was cleared
			this.queued -= sent;
			if (sent < rest.length) {
				this.headOffset += sent;
				this.checkDrain();
				return false;
			}
			this.queue[this.queueHead++] = EMPTY;
			this.headOffset = 0;
		}
		this.queue.length = 0;
		this.queueHead = 0;
		if (this.sendState === SendState.FinQueued) {
			this.sendState = SendState.Done;
			this.conn.sendSideDone(this);
		}
		// onDrain may write again (and queue): only an empty queue leaves the blocked set.
		this.checkDrain();
		return this.queued === 0;
	}

	/** @internal The peer sent STOP_SENDING (quiche answers with RESET_STREAM itself). */
	peerStopped(code: number): void {
		this.sendState = SendState.Done;
		this.clearQueue();
		this.conn.sendSideDone(this);
		this.onStop?.(code);
	}

	/** @internal */
	clearQueue(): void {
		this.queue.length = 0;
		this.queueHead = 0;
		this.headOffset = 0;
		this.queued = 0;
		this.aboveHigh = false;
	}

	private checkDrain(): void {
		if (this.aboveHigh && this.queued <= DRAIN_LOW) {
			this.aboveHigh = false;
			this.onDrain?.();
		}
	}
}
