/**
 * A server-side qmux session over a `ws` WebSocket, in any of the four framings (legacy
 * `webtransport`, qmux-00, -01, -02), exposed as a TransportSession.
 *
 * Data path: a received STREAM payload is handed to `onData` as a view into the WebSocket message
 * (no copy). A write() is copied once, into the buffer that becomes the frame: directly when the
 * socket has room and credit allows, otherwise into a per-stream queue with header room in front,
 * so the header is written in place when the piece finally goes out. While the socket is backed up,
 * queued streams drain highest `setPriority` first (FIFO among equals).
 */

import type { Duplex } from "node:stream";
import type { WebSocket } from "ws";
import { DecodeError, NEED_MORE } from "../coding/errors.ts";
import { Reader } from "../coding/reader.ts";
import { Writer } from "../coding/writer.ts";
import { QuicError, type QuicErrorCode } from "../errors/codes.ts";
import { type Logger, type LogLine, silentLogger } from "../log/logger.ts";
import { reportFault } from "../transport/guard.ts";
import { refuse } from "../transport/refusals.ts";
import { copyBytes, type TransportSession, type TransportStream } from "../transport/types.ts";
import { QmuxError } from "./error.ts";
import {
	DEFAULT_MAX_RECORD_SIZE,
	decodeFrame,
	encodeApplicationClose,
	encodeConnectionClose,
	encodeMaxData,
	encodeMaxStreamData,
	encodeMaxStreams,
	encodePing,
	encodeResetStream,
	encodeStopSending,
	Frame,
	FrameType,
	type Framing,
	isQmux,
	MAX_FRAME_SIZE,
	MAX_STREAM_PAYLOAD,
	STREAM_HEADROOM,
	streamHeaderSize,
	usesRecords,
	writeStreamHeader,
} from "./frames.ts";
import type { KeepAlive, KeepAliveTarget } from "./keepalive.ts";
import { decodeTransportParameters, defaultParams, encodeTransportParameters, type TransportParams } from "./params.ts";
import { type StreamOwner, WsStream } from "./stream.ts";

/** Limits we advertise to the client and enforce. Generous by default: the client may be a publisher. */
export interface WsLimits {
	/** Connection receive window in bytes (MAX_DATA), replenished as data is consumed. */
	maxData: number;
	/** Receive window on bidi streams we open. */
	maxStreamDataBidiLocal: number;
	/** Receive window on bidi streams the client opens. */
	maxStreamDataBidiRemote: number;
	/** Receive window on uni streams (the client's group streams). */
	maxStreamDataUni: number;
	/** Concurrent client bidi streams (MAX_STREAMS window; on the legacy framing, a hard cap). */
	maxStreamsBidi: number;
	/** Concurrent client uni streams. */
	maxStreamsUni: number;
	/** Largest record we accept on qmux-01/02 (advertised as max_record_size; ≥ 16382). */
	maxRecordSize: number;
	/** Idle timeout advertised on qmux-01/02 (ms); the client sends QX_PING at a third of it. */
	maxIdleTimeoutMs: number;
	/** Socket bytes buffered above which writes queue per stream (≥ the socket's 16 KiB high-water mark). */
	sendHighWater: number;
	/** A stream whose queue went above this fires onDrain when it falls back to it or below. */
	streamDrainMark: number;
}

export const DEFAULT_WS_LIMITS: Readonly<WsLimits> = {
	maxData: 16 * 1024 * 1024,
	maxStreamDataBidiLocal: 1024 * 1024,
	maxStreamDataBidiRemote: 1024 * 1024,
	maxStreamDataUni: 4 * 1024 * 1024,
	maxStreamsBidi: 256,
	maxStreamsUni: 1024,
	maxRecordSize: DEFAULT_MAX_RECORD_SIZE,
	maxIdleTimeoutMs: 30_000,
	sendHighWater: 256 * 1024,
	streamDrainMark: 64 * 1024,
};

export interface WsSessionOptions {
	framing: Framing;
	/** The app protocol ("" when none). */
	protocol: string;
	path: string;
	query: URLSearchParams;
	remote: string;
	limits?: Partial<WsLimits>;
	/** The listener's keep-alive scanner; null disables WS pings and the idle close. */
	keepAlive?: KeepAlive | null;
	/**
	 * Called once when we start a WebSocket closing handshake on `socket`. The listener bounds it
	 * (destroys the socket shortly after): `ws` itself would wait 30 s for a peer that never
	 * answers the close frame.
	 */
	closing?: ((socket: Duplex) => void) | null;
	log?: Logger;
}

/** Application codes are varints; anything that is not a non-negative safe integer is sent as 0. */
function appCode(code: number): number {
	return Number.isSafeInteger(code) && code >= 0 ? code : 0;
}
const utf8 = new TextDecoder("utf-8", { fatal: false });

/** WebSocket close codes (RFC 6455 §7.4.1) used after the qmux close frame. */
const WS_NORMAL = 1000;
const WS_PROTOCOL_ERROR = 1002;
const WS_UNSUPPORTED_DATA = 1003;

export class WsSession implements TransportSession, StreamOwner, KeepAliveTarget {
	readonly kind = "websocket" as const;
	readonly protocol: string;
	readonly path: string;
	readonly query: URLSearchParams;
	readonly remote: string;
	readonly framing: Framing;

	onStream: ((stream: TransportStream) => void) | null = null;
	onClose: ((code: number, reason: string, graceful?: boolean) => void) | null = null;
	onStreamCredit: (() => void) | null = null;

	#ws: WebSocket;
	#socket: Duplex;
	#limits: WsLimits;
	#keepAlive: KeepAlive | null;
	#closing: ((socket: Duplex) => void) | null;
	#log: Logger;
	#qmux: boolean;
	#records: boolean;
	#closed = false;

	#streams = new Map<number, WsStream>();
	/** Streams with queued data or a queued FIN, in arrival order. */
	#pending: WsStream[] = [];
	#flushing = false;

	// Our streams: next index per direction, and the peer's stream limits.
	#nextBidi = 0;
	#nextUni = 0;
	#peerMaxStreamsBidi: number;
	#peerMaxStreamsUni: number;
	#wantCredit = false;

	// Peer streams: next unseen index, how many have closed, what we advertised, how many are open.
	#peerNextBidi = 0;
	#peerNextUni = 0;
	#peerClosedBidi = 0;
	#peerClosedUni = 0;
	#maxStreamsBidi: number;
	#maxStreamsUni: number;
	#peerOpen = 0;

	// Connection flow control.
	#peer: TransportParams = defaultParams();
	#peerParamsReceived = false;
	#peerMaxData: number;
	#sent = 0;
	#recvMax: number;
	#received = 0;

	// Keep-alive clocks.
	#lastRecv = Date.now();
	#lastPing = Date.now();

	#frame = new Frame();
	#reader = new Reader(new Uint8Array(0));
	#ctl = new Writer(64);

	constructor(ws: WebSocket, socket: Duplex, opts: WsSessionOptions) {
		this.#ws = ws;
		this.#socket = socket;
		this.framing = opts.framing;
		this.protocol = opts.protocol;
		this.path = opts.path;
		this.query = opts.query;
		this.remote = opts.remote;
		this.#limits = { ...DEFAULT_WS_LIMITS, ...opts.limits };
		this.#limits.maxRecordSize = Math.max(this.#limits.maxRecordSize, DEFAULT_MAX_RECORD_SIZE);
		// 'drain' only fires after a write that filled the socket's own buffer, so queueing must not
		// start below that mark or a queued stream could wait for a drain that never comes.
		this.#limits.sendHighWater = Math.max(this.#limits.sendHighWater, socket.writableHighWaterMark);
		this.#keepAlive = opts.keepAlive ?? null;
		this.#closing = opts.closing ?? null;
		this.#log = opts.log ?? silentLogger;
		this.#qmux = isQmux(opts.framing);
		this.#records = usesRecords(opts.framing);

		// The legacy binding has no flow control or stream limits: the peer's credit is unbounded.
		const unbounded = this.#qmux ? 0 : Number.MAX_SAFE_INTEGER;
		this.#peerMaxData = unbounded;
		this.#peerMaxStreamsBidi = unbounded;
		this.#peerMaxStreamsUni = unbounded;
		this.#maxStreamsBidi = this.#limits.maxStreamsBidi;
		this.#maxStreamsUni = this.#limits.maxStreamsUni;
		this.#recvMax = this.#limits.maxData;

		ws.on("message", this.#onMessage);
		ws.on("close", this.#onWsClose);
		ws.on("error", this.#onWsError);
		ws.on("pong", this.#onHeard);
		ws.on("ping", this.#onHeard);
		socket.on("drain", this.#onDrain);

		// The client has zero send credit until it sees our parameters, so they go out first.
		if (this.#qmux) this.#sendParams();
		this.#keepAlive?.add(this);
	}

	get closed(): boolean {
		return this.#closed;
	}

	// ---- TransportSession ------------------------------------------------------------------

	openBidi(): TransportStream | null {
		return this.#open(true);
	}

	openUni(): TransportStream | null {
		return this.#open(false);
	}

	close(code: number, reason: string): void {
		if (this.#closed) return;
		code = appCode(code);
		this.#sendControl(encodeApplicationClose(this.#ctl.clear(), this.#qmux, code, reason));
		this.#finish(code, reason, WS_NORMAL);
	}

	// ---- StreamOwner (called through WsStream) ---------------------------------------------

	streamWrite(s: WsStream, data: Uint8Array): void {
		if (this.#closed || s.sendDone || s.finQueued) return;
		const n = data.length;
		let off = 0;
		// Fast path: nothing queued ahead on this stream and room in the socket; send straight away.
		if (s.queueEmpty) {
			while (off < n && this.#ws.bufferedAmount < this.#limits.sendHighWater) {
				const len = Math.min(n - off, MAX_STREAM_PAYLOAD, this.#credit(s));
				if (len <= 0) break;
				const hs = streamHeaderSize(this.#qmux, s.id, s.sendOffset, len);
				const buf = Buffer.allocUnsafe(hs + len);
				writeStreamHeader(buf, 0, this.#qmux, s.id, s.sendOffset, len, false);
				copyBytes(data, off, off + len, buf, hs);
				this.#ws.send(buf);
				s.sendOffset += len;
				this.#sent += len;
				off += len;
			}
		}
		if (off === n) return;
		// Queue the rest, copied once into pieces that keep room for the header in front.
		while (off < n) {
			const len = Math.min(n - off, MAX_STREAM_PAYLOAD);
			const piece = Buffer.allocUnsafe(STREAM_HEADROOM + len);
			copyBytes(data, off, off + len, piece, STREAM_HEADROOM);
			s.push(piece);
			s.queued += len;
			off += len;
		}
		if (s.queued > this.#limits.streamDrainMark) s.aboveMark = true;
		this.#markPending(s);
	}

	streamFinish(s: WsStream): void {
		if (this.#closed || s.sendDone || s.finQueued) return;
		s.finQueued = true;
		if (s.queueEmpty) {
			this.#sendFin(s);
			return;
		}
		this.#markPending(s); // the FIN rides on the last queued piece
	}

	streamReset(s: WsStream, code: number): void {
		if (this.#closed || s.sendDone) return;
		s.clearQueue();
		s.sendDone = true;
		this.#sendControl(encodeResetStream(this.#ctl.clear(), this.#qmux, s.id, appCode(code), s.sendOffset));
		this.#retire(s);
	}

	streamStop(s: WsStream, code: number): void {
		if (this.#closed || s.recvDone || s.stopSent) return;
		s.stopSent = true;
		this.#sendControl(encodeStopSending(this.#ctl.clear(), s.id, appCode(code)));
	}

	// ---- KeepAliveTarget --------------------------------------------------------------------

	keepAliveTick(now: number, pingIntervalMs: number, idleTimeoutMs: number): void {
		if (this.#closed) return;
		if (now - this.#lastRecv > idleTimeoutMs) {
			// The peer is gone: no closing handshake to wait for.
			this.#log.debug("websocket session idle, closing", { remote: this.remote, idleMs: now - this.#lastRecv });
			refuse("idle_timeout", this.#refusalLog, { remote: this.remote, transport: "websocket" });
			this.#sendControl(encodeConnectionClose(this.#ctl.clear(), this.#qmux, QuicError.NO_ERROR, 0, "idle timeout"));
			this.#finish(QuicError.NO_ERROR, "idle timeout", 0);
			return;
		}
		if (now - this.#lastPing >= pingIntervalMs) {
			this.#lastPing = now;
			try {
				this.#ws.ping();
			} catch {
				// Socket not open; its close event ends the session.
			}
		}
	}

	// ---- opening streams ---------------------------------------------------------------------

	#open(bidi: boolean): WsStream | null {
		if (this.#closed) return null;
		const index = bidi ? this.#nextBidi : this.#nextUni;
		const limit = bidi ? this.#peerMaxStreamsBidi : this.#peerMaxStreamsUni;
		if (index >= limit) {
			this.#wantCredit = true;
			return null;
		}
		if (bidi) this.#nextBidi++;
		else this.#nextUni++;
		const id = index * 4 + (bidi ? 0 : 2) + 1;
		const s = new WsStream(this, id, true);
		if (this.#qmux) {
			s.sendMax = bidi ? this.#peer.initialMaxStreamDataBidiRemote : this.#peer.initialMaxStreamDataUni;
			if (bidi) s.recvMax = this.#limits.maxStreamDataBidiLocal;
		} else {
			s.sendMax = Number.MAX_SAFE_INTEGER;
		}
		this.#streams.set(id, s);
		return s;
	}

	/** Opens peer streams up to `index` (QUIC opens lower ids implicitly) and reports each. */
	#openPeer(bidi: boolean, index: number): void {
		const next = bidi ? this.#peerNextBidi : this.#peerNextUni;
		const count = index - next + 1;
		if (this.#qmux) {
			const limit = bidi ? this.#maxStreamsBidi : this.#maxStreamsUni;
			if (index >= limit) throw new QmuxError(QuicError.STREAM_LIMIT_ERROR, `stream index ${index} ≥ limit ${limit}`);
		} else if (this.#peerOpen + count > (bidi ? this.#limits.maxStreamsBidi : this.#limits.maxStreamsUni)) {
			throw new QmuxError(QuicError.STREAM_LIMIT_ERROR, "too many concurrent streams");
		}
		if (bidi) this.#peerNextBidi = index + 1;
		else this.#peerNextUni = index + 1;
		for (let i = next; i <= index && !this.#closed; i++) {
			const id = i * 4 + (bidi ? 0 : 2);
			const s = new WsStream(this, id, false);
			if (this.#qmux) {
				s.recvMax = bidi ? this.#limits.maxStreamDataBidiRemote : this.#limits.maxStreamDataUni;
				if (bidi) s.sendMax = this.#peer.initialMaxStreamDataBidiLocal;
			} else {
				s.sendMax = Number.MAX_SAFE_INTEGER;
			}
			this.#streams.set(id, s);
			this.#peerOpen++;
			this.onStream?.(s);
		}
	}

	/**
	 * The stream a received frame refers to, opening peer streams as needed; null when it already
	 * closed (stale frame, ignored). `half` is the half of *our* stream the frame acts on.
	 */
	#lookup(id: number, half: "recv" | "send", frameType: number): WsStream | null {
		const server = (id & 1) === 1;
		const uni = (id & 2) === 2;
		if (uni && half === "recv" && server) {
			throw new QmuxError(QuicError.STREAM_STATE_ERROR, `stream ${id} is send-only for us`, frameType);
		}
		if (uni && half === "send" && !server) {
			throw new QmuxError(QuicError.STREAM_STATE_ERROR, `stream ${id} is receive-only for us`, frameType);
		}
		const s = this.#streams.get(id);
		if (s !== undefined) return s;
		const index = Math.floor(id / 4);
		if (server) {
			if (index >= (uni ? this.#nextUni : this.#nextBidi)) {
				throw new QmuxError(QuicError.STREAM_STATE_ERROR, `stream ${id} was never opened`, frameType);
			}
			return null;
		}
		if (index < (uni ? this.#peerNextUni : this.#peerNextBidi)) return null;
		this.#openPeer(!uni, index);
		return this.#streams.get(id) ?? null;
	}

	/** Forgets a stream once both halves are done; a closed peer stream frees a stream slot. */
	#retire(s: WsStream): void {
		if (s.retired || !s.sendDone || !s.recvDone) return;
		s.retired = true;
		this.#streams.delete(s.id);
		if (s.local) return;
		this.#peerOpen--;
		if (!this.#qmux) return;
		// Keep the window at `limit` concurrent streams; update once an eighth of it has freed up.
		if (s.bidi) {
			this.#peerClosedBidi++;
			const target = this.#peerClosedBidi + this.#limits.maxStreamsBidi;
			if (target - this.#maxStreamsBidi >= Math.max(1, this.#limits.maxStreamsBidi >> 3)) {
				this.#maxStreamsBidi = target;
				this.#sendControl(encodeMaxStreams(this.#ctl.clear(), true, target));
			}
		} else {
			this.#peerClosedUni++;
			const target = this.#peerClosedUni + this.#limits.maxStreamsUni;
			if (target - this.#maxStreamsUni >= Math.max(1, this.#limits.maxStreamsUni >> 3)) {
				this.#maxStreamsUni = target;
				this.#sendControl(encodeMaxStreams(this.#ctl.clear(), false, target));
			}
		}
	}

	// ---- sending -----------------------------------------------------------------------------

	#credit(s: WsStream): number {
		return Math.min(this.#peerMaxData - this.#sent, s.sendMax - s.sendOffset);
	}

	#sendParams(): void {
		const p = defaultParams();
		const l = this.#limits;
		p.maxIdleTimeout = this.#records ? l.maxIdleTimeoutMs : 0;
		p.initialMaxData = l.maxData;
		p.initialMaxStreamDataBidiLocal = l.maxStreamDataBidiLocal;
		p.initialMaxStreamDataBidiRemote = l.maxStreamDataBidiRemote;
		p.initialMaxStreamDataUni = l.maxStreamDataUni;
		p.initialMaxStreamsBidi = l.maxStreamsBidi;
		p.initialMaxStreamsUni = l.maxStreamsUni;
		p.maxRecordSize = l.maxRecordSize;
		p.resetStreamAt = this.framing === "qmux-02";
		this.#sendControl(encodeTransportParameters(this.#ctl.clear(), p, this.framing));
	}

	/** Sends a control frame now, ahead of any queued stream data (ws keeps the buffer, so copy it out). */
	#sendControl(w: Writer): void {
		try {
			this.#ws.send(w.finish());
		} catch (e) {
			this.#log.debug("websocket send failed", { remote: this.remote, error: String(e) });
		}
	}

	#sendFin(s: WsStream): void {
		const hs = streamHeaderSize(this.#qmux, s.id, s.sendOffset, 0);
		const buf = Buffer.allocUnsafe(hs);
		writeStreamHeader(buf, 0, this.#qmux, s.id, s.sendOffset, 0, true);
		this.#ws.send(buf);
		s.sendDone = true;
		this.#retire(s);
	}

	#markPending(s: WsStream): void {
		if (!s.pending) {
			s.pending = true;
			this.#pending.push(s);
		}
		this.#flush();
	}

	#sendable(s: WsStream): boolean {
		if (s.sendDone) return false;
		if (s.queueEmpty) return s.finQueued;
		return this.#credit(s) > 0;
	}

	/** Sends queued pieces, highest priority first, while the socket is below its high-water mark. */
	#flush(): void {
		if (this.#flushing) return;
		this.#flushing = true;
		try {
			const pending = this.#pending;
			while (!this.#closed && pending.length > 0 && this.#ws.bufferedAmount < this.#limits.sendHighWater) {
				let best = -1;
				let bestPriority = Number.NEGATIVE_INFINITY;
				for (let i = 0; i < pending.length; i++) {
					const s = pending[i];
					if (s.sendDone) {
						s.pending = false;
						pending.splice(i--, 1);
						continue;
					}
					if (s.priority > bestPriority && this.#sendable(s)) {
						best = i;
						bestPriority = s.priority;
					}
				}
				if (best < 0) break; // everything left waits for credit
				const s = pending[best];
				this.#sendPiece(s);
				if (s.sendDone || (s.queueEmpty && !s.finQueued)) {
					s.pending = false;
					const at = pending.indexOf(s);
					if (at >= 0) pending.splice(at, 1);
				}
				if (s.aboveMark && s.queued <= this.#limits.streamDrainMark) {
					s.aboveMark = false;
					s.onDrain?.();
				}
			}
		} finally {
			this.#flushing = false;
		}
	}

	#sendPiece(s: WsStream): void {
		if (s.queueEmpty) {
			this.#sendFin(s);
			return;
		}
		const piece = s.pieces[s.head];
		const start = STREAM_HEADROOM + s.headSkip;
		const avail = piece.length - start;
		const len = Math.min(avail, this.#credit(s));
		const fin = len === avail && s.finQueued && s.head === s.pieces.length - 1;
		const hs = streamHeaderSize(this.#qmux, s.id, s.sendOffset, len);
		if (len === avail) {
			// Header goes in the room in front of the payload: no second copy.
			writeStreamHeader(piece, start - hs, this.#qmux, s.id, s.sendOffset, len, fin);
			this.#ws.send(start - hs === 0 ? piece : piece.subarray(start - hs));
			s.popHead();
		} else {
			// Credit covers part of the piece: copy that part out, since the rest's header will later
			// be written over these bytes.
			const buf = Buffer.allocUnsafe(hs + len);
			writeStreamHeader(buf, 0, this.#qmux, s.id, s.sendOffset, len, false);
			buf.set(piece.subarray(start, start + len), hs);
			this.#ws.send(buf);
			s.headSkip += len;
		}
		s.sendOffset += len;
		s.queued -= len;
		this.#sent += len;
		if (fin) {
			s.sendDone = true;
			this.#retire(s);
		}
	}

	// ---- receiving ---------------------------------------------------------------------------

	#onHeard = (): void => {
		this.#lastRecv = Date.now();
	};

	#onDrain = (): void => {
		if (this.#pending.length === 0) return;
		try {
			this.#flush();
		} catch (e) {
			// Flushing wakes stream writers (onDrain callbacks): guarded like incoming messages.
			this.#onError(e, 0);
		}
	};

	#onMessage = (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void => {
		if (this.#closed) return;
		this.#lastRecv = Date.now();
		if (!isBinary) {
			this.#fail(QuicError.PROTOCOL_VIOLATION, "text messages are not valid qmux", 0, WS_UNSUPPORTED_DATA);
			return;
		}
		const buf =
			data instanceof ArrayBuffer
				? new Uint8Array(data)
				: Array.isArray(data)
					? Buffer.concat(data)
					: (data as Uint8Array);
		const cap = this.#records ? this.#limits.maxRecordSize : MAX_FRAME_SIZE;
		if (buf.length > cap) {
			this.#fail(QuicError.PROTOCOL_VIOLATION, `message of ${buf.length} bytes exceeds ${cap}`);
			return;
		}
		if (buf.length === 0) {
			this.#fail(QuicError.FRAME_ENCODING_ERROR, "empty message");
			return;
		}
		const r = this.#reader.reset(buf);
		const f = this.#frame;
		try {
			do {
				decodeFrame(r, this.framing, f);
				this.#onFrame(f);
				if (this.#closed) return;
			} while (this.#records && r.remaining > 0);
			if (r.remaining > 0) throw new QmuxError(QuicError.FRAME_ENCODING_ERROR, "trailing bytes after frame");
		} catch (e) {
			this.#onError(e, f.type);
		}
	};

	#onError(e: unknown, frameType: number): void {
		if (this.#closed) return;
		if (e instanceof QmuxError) {
			this.#fail(e.code, e.message, e.frameType || Math.max(0, frameType));
		} else if (e === NEED_MORE) {
			this.#fail(QuicError.FRAME_ENCODING_ERROR, "truncated frame", Math.max(0, frameType));
		} else if (e instanceof DecodeError) {
			this.#fail(QuicError.FRAME_ENCODING_ERROR, e.message, Math.max(0, frameType));
		} else {
			// The session guard (transport/guard.ts): a consumer callback threw. Not the peer's fault,
			// but this session's state is unknown now: close it alone and count the fault.
			reportFault(e, (m, f) => this.#log.warn(m, f), { remote: this.remote, transport: "websocket" });
			this.#fail(QuicError.INTERNAL_ERROR, "internal error");
		}
	}

	#onFrame(f: Frame): void {
		if (this.framing === "qmux-02" && !this.#peerParamsReceived && f.type !== FrameType.TRANSPORT_PARAMETERS) {
			if (f.type === FrameType.PADDING) return;
			throw new QmuxError(QuicError.PROTOCOL_VIOLATION, "QX_TRANSPORT_PARAMETERS must be the first frame");
		}
		switch (f.type) {
			case FrameType.PADDING:
				return;
			case FrameType.STREAM:
				this.#onStreamFrame(f);
				return;
			case FrameType.RESET_STREAM:
			case FrameType.RESET_STREAM_AT:
				this.#onResetFrame(f);
				return;
			case FrameType.STOP_SENDING: {
				const s = this.#lookup(f.streamId, "send", f.type);
				if (s === null || s.sendDone) return;
				s.onStop?.(f.code);
				// QUIC answers STOP_SENDING with RESET_STREAM; do it if the consumer did not.
				if (!this.#closed && !s.sendDone) this.streamReset(s, f.code);
				return;
			}
			case FrameType.MAX_DATA:
				if (f.value > this.#peerMaxData) {
					this.#peerMaxData = f.value;
					this.#flush();
				}
				return;
			case FrameType.MAX_STREAM_DATA: {
				const s = this.#lookup(f.streamId, "send", f.type);
				if (s !== null && f.value > s.sendMax) {
					s.sendMax = f.value;
					if (s.pending) this.#flush();
				}
				return;
			}
			case FrameType.MAX_STREAMS_BIDI:
			case FrameType.MAX_STREAMS_UNI:
				this.#raiseStreamLimit(f.type === FrameType.MAX_STREAMS_BIDI, f.value);
				return;
			case FrameType.DATA_BLOCKED:
			case FrameType.STREAM_DATA_BLOCKED:
			case FrameType.STREAMS_BLOCKED_BIDI:
			case FrameType.STREAMS_BLOCKED_UNI:
				return; // informational: we replenish as data is consumed anyway
			case FrameType.CONNECTION_CLOSE:
			case FrameType.APPLICATION_CLOSE:
				this.#finish(f.code, utf8.decode(f.reason), WS_NORMAL, f.code === 0);
				return;
			case FrameType.TRANSPORT_PARAMETERS:
				this.#onParams(f.params);
				return;
			case FrameType.PING_REQUEST:
				this.#sendControl(encodePing(this.#ctl.clear(), true, f.seq));
				return;
			case FrameType.PING_RESPONSE:
				return;
			case FrameType.DATAGRAM:
				throw new QmuxError(QuicError.PROTOCOL_VIOLATION, "DATAGRAM received but never advertised", 0x30);
		}
	}

	#onStreamFrame(f: Frame): void {
		const s = this.#lookup(f.streamId, "recv", FrameType.STREAM);
		const len = f.data.length;
		if (s === null) {
			// A stale frame for a closed stream still consumes connection credit.
			this.#account(len);
			this.#replenishConnection();
			return;
		}
		if (s.recvDone) {
			if (s.finReceived && (len > 0 || (f.offset >= 0 && f.offset !== s.recvOffset))) {
				throw new QmuxError(QuicError.FINAL_SIZE_ERROR, `data beyond the final size of stream ${s.id}`, 0x08);
			}
			this.#account(len); // after a reset: discard
			this.#replenishConnection();
			return;
		}
		// One ordered byte stream underneath: an explicit offset must continue where the last frame ended.
		if (f.offset >= 0 && f.offset !== s.recvOffset) {
			throw new QmuxError(QuicError.PROTOCOL_VIOLATION, `stream ${s.id} offset ${f.offset} ≠ ${s.recvOffset}`, 0x08);
		}
		const end = s.recvOffset + len;
		if (this.#qmux && end > s.recvMax) {
			throw new QmuxError(QuicError.FLOW_CONTROL_ERROR, `stream ${s.id} exceeded its credit ${s.recvMax}`, 0x08);
		}
		this.#account(len);
		s.recvOffset = end;
		if (len > 0 && !s.stopSent) s.onData?.(f.data);
		if (this.#closed) return;
		if (f.fin) {
			s.recvDone = true;
			s.finReceived = true;
			if (!s.stopSent) s.onFin?.();
			if (this.#closed) return;
			this.#retire(s);
		} else if (this.#qmux) {
			// The consumer took the bytes synchronously, so they count as consumed now.
			const window = s.local
				? this.#limits.maxStreamDataBidiLocal
				: s.bidi
					? this.#limits.maxStreamDataBidiRemote
					: this.#limits.maxStreamDataUni;
			if (s.recvMax - s.recvOffset <= window >> 1) {
				s.recvMax = s.recvOffset + window;
				this.#sendControl(encodeMaxStreamData(this.#ctl.clear(), s.id, s.recvMax));
			}
		}
		this.#replenishConnection();
	}

	#onResetFrame(f: Frame): void {
		if (f.type === FrameType.RESET_STREAM_AT && this.framing !== "qmux-02") {
			throw new QmuxError(QuicError.PROTOCOL_VIOLATION, "RESET_STREAM_AT was not negotiated", f.type);
		}
		const s = this.#lookup(f.streamId, "recv", f.type);
		if (s === null || s.recvDone) return;
		if (this.#qmux) {
			// qmux drafts ≤ 02 had clients that sent a zero final size; never let it undo accounting.
			const final = Math.max(f.finalSize, s.recvOffset);
			if (final > s.recvMax) throw new QmuxError(QuicError.FLOW_CONTROL_ERROR, "final size beyond credit", f.type);
			this.#account(final - s.recvOffset);
			s.recvOffset = final;
		}
		s.recvDone = true;
		s.onReset?.(f.code);
		if (this.#closed) return;
		this.#retire(s);
		this.#replenishConnection();
	}

	#onParams(body: Uint8Array): void {
		if (this.#peerParamsReceived) {
			throw new QmuxError(QuicError.PROTOCOL_VIOLATION, "duplicate QX_TRANSPORT_PARAMETERS");
		}
		const p = decodeTransportParameters(body, this.framing);
		this.#peerParamsReceived = true;
		this.#peer = p;
		this.#peerMaxData = Math.max(this.#peerMaxData, p.initialMaxData);
		for (const s of this.#streams.values()) {
			const initial = !s.bidi
				? p.initialMaxStreamDataUni
				: s.local
					? p.initialMaxStreamDataBidiRemote
					: p.initialMaxStreamDataBidiLocal;
			if (initial > s.sendMax) s.sendMax = initial;
		}
		this.#raiseStreamLimit(true, p.initialMaxStreamsBidi);
		this.#raiseStreamLimit(false, p.initialMaxStreamsUni);
		this.#flush();
	}

	#raiseStreamLimit(bidi: boolean, max: number): void {
		if (bidi) {
			if (max <= this.#peerMaxStreamsBidi) return;
			this.#peerMaxStreamsBidi = max;
		} else {
			if (max <= this.#peerMaxStreamsUni) return;
			this.#peerMaxStreamsUni = max;
		}
		if (this.#wantCredit) {
			this.#wantCredit = false;
			this.onStreamCredit?.();
		}
	}

	/** Counts received bytes against the connection window. */
	#account(len: number): void {
		this.#received += len;
		if (this.#qmux && this.#received > this.#recvMax) {
			throw new QmuxError(QuicError.FLOW_CONTROL_ERROR, `connection exceeded its credit ${this.#recvMax}`);
		}
	}

	#replenishConnection(): void {
		if (!this.#qmux || this.#closed) return;
		const window = this.#limits.maxData;
		if (this.#recvMax - this.#received <= window >> 1) {
			this.#recvMax = this.#received + window;
			this.#sendControl(encodeMaxData(this.#ctl.clear(), this.#recvMax));
		}
	}

	// ---- closing -----------------------------------------------------------------------------

	/** Refusal logs (rate limited in refusals.ts). */
	#refusalLog: LogLine = (message, fields) => this.#log.info(message, fields);

	/** A connection error: CONNECTION_CLOSE with the QUIC code, then close the socket. */
	#fail(code: QuicErrorCode, reason: string, frameType = 0, wsCode = WS_PROTOCOL_ERROR): void {
		if (this.#closed) return;
		this.#log.debug("websocket session error", { remote: this.remote, code, reason });
		// The peer's fault (INTERNAL_ERROR is ours, counted as a fault by the guard).
		if (code !== QuicError.INTERNAL_ERROR) {
			refuse("protocol", this.#refusalLog, { remote: this.remote, transport: "websocket", code, reason });
		}
		this.#sendControl(encodeConnectionClose(this.#ctl.clear(), this.#qmux, code, frameType, reason));
		this.#finish(code, reason, wsCode);
	}

	/** Ends the session once: closes the socket (0 = terminate), drops queues, reports onClose. */
	#finish(code: number, reason: string, wsCode: number, graceful = false): void {
		if (this.#closed) return;
		this.#closed = true;
		this.#keepAlive?.delete(this);
		this.#socket.off("drain", this.#onDrain);
		for (const s of this.#pending) s.clearQueue();
		this.#pending.length = 0;
		try {
			if (wsCode === 0) this.#ws.terminate();
			else {
				this.#ws.close(wsCode);
				this.#closing?.(this.#socket);
			}
		} catch {
			this.#ws.terminate();
		}
		const cb = this.onClose;
		this.onClose = null;
		try {
			cb?.(code, reason, graceful);
		} catch (e) {
			this.#log.error("websocket onClose handler threw", { remote: this.remote, error: String(e) });
		}
	}

	#onWsClose = (code: number, reason: Buffer): void => {
		// 1000: the peer closed the WebSocket on purpose; 1006 (no close frame) is a dropped socket.
		const text = `websocket closed (${code}${reason.length > 0 ? ` ${reason.toString()}` : ""})`;
		this.#finish(0, text, WS_NORMAL, code === WS_NORMAL);
	};

	#onWsError = (e: Error): void => {
		this.#log.debug("websocket error", { remote: this.remote, error: e.message });
	};
}
