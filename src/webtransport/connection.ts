/**
 * The HTTP/3 connection layer over one QUIC TransportSession (ALPN h3), shared by the server and
 * client roles: our control stream and SETTINGS, classification of every peer stream by its first
 * varint (in whatever order they arrive), the peer's control and QPACK streams, and routing of
 * WebTransport streams to their session. Protocol errors close the QUIC connection with the precise
 * HTTP/3 / QPACK code.
 */

import { ownedCopy } from "../coding/bytes.ts";
import { DecodeError } from "../coding/errors.ts";
import { varintSize } from "../coding/varint.ts";
import { Writer } from "../coding/writer.ts";
import { H3 } from "../errors/codes.ts";
import { type Logger, silentLogger } from "../log/logger.ts";
import type { TransportSession, TransportStream } from "../transport/types.ts";
import { Frame, isHttp2ReservedFrame, Setting, UniStream } from "./codes.ts";
import { type ConnectOwner, ConnectStream } from "./connect.ts";
import {
	Body,
	type BodyMode,
	decodeSettings,
	looseVarint,
	type SettingsList,
	type TlvHandler,
	TlvParser,
	writeSettingsFrame,
	writeTlvHeader,
} from "./frames.ts";
import type { SessionOwner, WtSession } from "./session.ts";
import { type StreamOwner, WtStream } from "./stream.ts";

export interface WebTransportLimits {
	/** Largest HEADERS frame and decoded field section accepted; also our MAX_FIELD_SECTION_SIZE. Default 16384. */
	maxHeaderBytes?: number;
	/** Concurrent WebTransport sessions per connection (the server advertises this). Default 1. */
	maxSessions?: number;
	/** Peer streams held while their session is not established yet. Default 16. */
	maxBufferedStreams?: number;
	/** Bytes held across those streams (and streams queued before `onStream` is set). Default 256 KiB. */
	maxBufferedBytes?: number;
	/** Largest control-stream frame we buffer (SETTINGS). Default 4096. */
	maxControlFrameBytes?: number;
	/** After a session closes, how long to wait for the peer before closing the QUIC connection. Default 100 ms. */
	closeGraceMs?: number;
}

export type ResolvedLimits = Required<WebTransportLimits>;

export const DEFAULT_LIMITS: ResolvedLimits = {
	maxHeaderBytes: 16384,
	maxSessions: 1,
	maxBufferedStreams: 16,
	maxBufferedBytes: 256 * 1024,
	maxControlFrameBytes: 4096,
	closeGraceMs: 100,
};

/**
 * What we send on our control stream: the settings of every WebTransport draft a browser may speak,
 * in one SETTINGS frame (a peer ignores ids it does not know); a server adds ENABLE_CONNECT_PROTOCOL
 * and WT_MAX_SESSIONS.
 */
export function ourSettings(isServer: boolean, limits: ResolvedLimits): SettingsList {
	const settings: [number, number][] = [
		[Setting.QPACK_MAX_TABLE_CAPACITY, 0],
		[Setting.QPACK_BLOCKED_STREAMS, 0],
		[Setting.MAX_FIELD_SECTION_SIZE, limits.maxHeaderBytes],
		[Setting.H3_DATAGRAM, 1],
		[Setting.H3_DATAGRAM_DRAFT04, 1],
		[Setting.ENABLE_WEBTRANSPORT, 1],
		[Setting.WEBTRANSPORT_MAX_SESSIONS_DRAFT, limits.maxSessions],
	];
	if (isServer) {
		settings.push([Setting.ENABLE_CONNECT_PROTOCOL, 1], [Setting.WT_MAX_SESSIONS, limits.maxSessions]);
	}
	return settings;
}

const scratch = new Writer(256);

export class H3Connection implements StreamOwner, ConnectOwner, SessionOwner {
	readonly quic: TransportSession;
	readonly isServer: boolean;
	readonly limits: ResolvedLimits;
	readonly log: Logger;

	/** The peer's SETTINGS, once its control stream delivered them. */
	peerSettings: Map<number, number> | null = null;
	onPeerSettings: (() => void) | null = null;
	/** Server role: a new request stream (a client bidi stream that is not a WebTransport stream). */
	onRequest: ((connect: ConnectStream) => void) | null = null;
	/** The QUIC connection is gone (after every session was ended). */
	onClosed: ((code: number, reason: string) => void) | null = null;

	readonly sessions = new Map<number, WtSession>();
	/** Peer streams for a session ID that is not established (yet), by session ID. */
	private readonly waiting = new Map<number, WtStream[]>();
	private waitingCount = 0;
	private heldTotal = 0;
	/** Session IDs that were rejected or closed: their late streams are refused at once. */
	private readonly deadSessions = new Set<number>();

	private peerControl = false;
	private peerEncoder = false;
	private peerDecoder = false;
	closed = false;
	/** Our control stream (SETTINGS, then GOAWAY when draining). */
	private control: TransportStream | null = null;
	/** The highest request stream ID the peer opened so far (-4: none). */
	private lastRequestId = -4;
	/** Set by `drain()`: the first request stream ID we no longer serve. */
	private goawayId: number | null = null;
	private closeTimer: ReturnType<typeof setTimeout> | null = null;
	private lastEndWasLocal = false;

	constructor(
		quic: TransportSession,
		isServer: boolean,
		limits: WebTransportLimits | undefined,
		log: Logger | undefined,
	) {
		this.quic = quic;
		this.isServer = isServer;
		this.limits = { ...DEFAULT_LIMITS, ...limits };
		this.log = log ?? silentLogger;
		quic.onStream = (stream) => this.peerStream(stream);
		quic.onClose = (code, reason) => this.quicClosed(code, reason);
		quic.onStreamCredit = () => {
			for (const session of this.sessions.values()) session.onStreamCredit?.();
		};
	}

	/** Opens our control stream and sends SETTINGS. */
	start(): void {
		const control = this.quic.openUni();
		if (control === null) {
			this.close(H3.STREAM_CREATION_ERROR, "cannot open the control stream");
			return;
		}
		control.onStop = () => this.close(H3.CLOSED_CRITICAL_STREAM, "peer stopped our control stream");
		this.control = control;
		scratch.clear().varint(UniStream.CONTROL);
		writeSettingsFrame(scratch, ourSettings(this.isServer, this.limits));
		control.write(scratch.view());
	}

	/**
	 * The server is going away (RFC 9114 §5.2, WebTransport §4.6): GOAWAY on the control stream with
	 * the first request ID we will not serve (later CONNECTs are rejected with H3_REQUEST_REJECTED),
	 * and DRAIN_WEBTRANSPORT_SESSION on every session. Sessions stay open. Idempotent.
	 */
	drain(): void {
		if (this.closed || this.goawayId !== null || !this.isServer) return;
		this.goawayId = this.lastRequestId + 4;
		if (this.control !== null) {
			scratch.clear();
			writeTlvHeader(scratch, Frame.GOAWAY, varintSize(this.goawayId));
			scratch.varint(this.goawayId);
			this.control.write(scratch.view());
		}
		for (const session of this.sessions.values()) session.drain();
	}

	/** Closes the connection because of `err` (a DecodeError carries the HTTP/3 code). */
	fail(err: unknown): void {
		const code = err instanceof DecodeError ? err.code : H3.INTERNAL_ERROR;
		const message = err instanceof Error ? err.message : String(err);
		if (!(err instanceof DecodeError)) this.log.error("webtransport: internal error", { err: message });
		else this.log.debug("webtransport: protocol error", { code, message });
		this.close(code, message);
	}

	/** Ends every session with (code, reason), then closes QUIC with the same code. */
	close(code: number, reason: string): void {
		if (this.closed) return;
		this.closed = true;
		this.clearTimer();
		this.endAll(code, reason);
		this.quic.close(code, reason);
	}

	private quicClosed(code: number, reason: string): void {
		this.closed = true;
		this.clearTimer();
		this.endAll(code, reason);
		const onClosed = this.onClosed;
		this.onClosed = null;
		onClosed?.(code, reason);
	}

	private endAll(code: number, reason: string): void {
		for (const session of [...this.sessions.values()]) session.end(code, reason, false);
		for (const list of this.waiting.values()) for (const stream of list) stream.abort(H3.WT_BUFFERED_STREAM_REJECTED);
		this.waiting.clear();
		this.waitingCount = 0;
	}

	private clearTimer(): void {
		if (this.closeTimer !== null) clearTimeout(this.closeTimer);
		this.closeTimer = null;
	}

	// ---- sessions -------------------------------------------------------------------------------

	/** A session was established: it receives the streams that were waiting for it. */
	addSession(session: WtSession): void {
		this.sessions.set(session.id, session);
		const waiting = this.waiting.get(session.id);
		if (waiting === undefined) return;
		this.waiting.delete(session.id);
		this.waitingCount -= waiting.length;
		for (const stream of waiting) session.accept(stream);
	}

	/** A session ID will never be established (rejected request): refuse its streams. */
	sessionRefused(id: number): void {
		this.deadSessions.add(id);
		const waiting = this.waiting.get(id);
		if (waiting === undefined) return;
		this.waiting.delete(id);
		this.waitingCount -= waiting.length;
		for (const stream of waiting) stream.abort(H3.WT_BUFFERED_STREAM_REJECTED);
	}

	/**
	 * Called by a session when it ends. With no session left the QUIC connection goes too: at once
	 * when the peer confirms (its FIN on the CONNECT stream, see connectStreamEnded), else after
	 * closeGraceMs so our capsule and FIN have a chance to leave before CONNECTION_CLOSE.
	 */
	sessionEnded(session: WtSession, local: boolean): void {
		this.sessions.delete(session.id);
		this.deadSessions.add(session.id);
		if (this.closed || this.sessions.size > 0) return;
		this.lastEndWasLocal = local;
		if (local && session.connect.peerEnded) {
			this.close(H3.NO_ERROR, "");
			return;
		}
		this.clearTimer();
		this.closeTimer = setTimeout(() => {
			// A timer acts for this connection outside any datagram: guarded like one (transport/guard.ts).
			try {
				this.close(H3.NO_ERROR, "");
			} catch (err) {
				(this.quic as Partial<{ fault(err: unknown): void }>).fault?.(err);
			}
		}, this.limits.closeGraceMs);
		this.closeTimer.unref?.();
	}

	/** The peer ended a CONNECT stream whose session is over. */
	connectStreamEnded(connect: ConnectStream): void {
		if (this.closed || this.sessions.size > 0) return;
		if (connect.session?.closed && this.lastEndWasLocal) this.close(H3.NO_ERROR, "");
	}

	// ---- StreamOwner: held-byte accounting --------------------------------------------------------

	held(stream: WtStream, n: number): void {
		this.heldTotal += n;
		if (this.heldTotal <= this.limits.maxBufferedBytes) return;
		this.log.debug("webtransport: buffered stream over the limit", { id: stream.id });
		const waiting = this.waiting.get(stream.sessionId);
		const i = waiting?.indexOf(stream) ?? -1;
		if (waiting !== undefined && i >= 0) {
			waiting.splice(i, 1);
			this.waitingCount--;
		}
		this.sessions.get(stream.sessionId)?.forget(stream);
		stream.abort(H3.WT_BUFFERED_STREAM_REJECTED);
	}

	unheld(_stream: WtStream, n: number): void {
		this.heldTotal -= n;
	}

	done(stream: WtStream): void {
		this.sessions.get(stream.sessionId)?.streams.delete(stream);
	}

	// ---- peer streams -----------------------------------------------------------------------------

	private peerStream(stream: TransportStream): void {
		if (this.closed) {
			stream.stop(H3.REQUEST_REJECTED);
			return;
		}
		new StreamSniffer(stream, this);
	}

	/**
	 * Classifies a peer stream from its first bytes and hands it on. Returns false when more bytes
	 * are needed (the caller keeps them). Throws DecodeError for connection errors.
	 */
	classify(stream: TransportStream, bytes: Uint8Array): boolean {
		if (bytes.length === 0) return false;
		const typeSize = 1 << (bytes[0] >> 6);
		if (bytes.length < typeSize) return false;
		const type = looseVarint(bytes, 0);
		if (stream.bidi) {
			if (type === Frame.WT_BIDI_SIGNAL) return this.webTransportStream(stream, bytes, typeSize);
			if (!this.isServer) throw new DecodeError("server-initiated bidi stream", H3.STREAM_CREATION_ERROR);
			if (this.goawayId !== null && stream.id >= this.goawayId) {
				// After our GOAWAY (RFC 9114 §5.2): not processed, the client may retry it elsewhere.
				stream.reset(H3.REQUEST_REJECTED);
				stream.stop(H3.REQUEST_REJECTED);
				return true;
			}
			this.lastRequestId = Math.max(this.lastRequestId, stream.id);
			const connect = new ConnectStream(stream, this);
			this.onRequest?.(connect);
			connect.receive(bytes); // the type byte was a frame type: feed everything
			return true;
		}
		const rest = bytes.subarray(typeSize);
		switch (type) {
			case UniStream.CONTROL:
				if (this.peerControl) throw new DecodeError("second control stream", H3.STREAM_CREATION_ERROR);
				this.peerControl = true;
				new ControlStream(stream, this).receive(rest);
				return true;
			case UniStream.QPACK_ENCODER:
			case UniStream.QPACK_DECODER: {
				const encoder = type === UniStream.QPACK_ENCODER;
				if (encoder ? this.peerEncoder : this.peerDecoder) {
					throw new DecodeError("second QPACK stream", H3.STREAM_CREATION_ERROR);
				}
				if (encoder) this.peerEncoder = true;
				else this.peerDecoder = true;
				// With a zero-capacity table there is nothing to learn from these: discard, but they are critical.
				stream.onData = null;
				stream.onFin = () => this.close(H3.CLOSED_CRITICAL_STREAM, "QPACK stream closed");
				stream.onReset = () => this.close(H3.CLOSED_CRITICAL_STREAM, "QPACK stream reset");
				return true;
			}
			case UniStream.PUSH:
				// Clients never push; we never send MAX_PUSH_ID, so a server may not either.
				throw new DecodeError("push stream", this.isServer ? H3.STREAM_CREATION_ERROR : H3.ID_ERROR);
			case UniStream.WEBTRANSPORT:
				return this.webTransportStream(stream, bytes, typeSize);
			default:
				// Unknown and GREASE stream types: abort reading (RFC 9114 §6.2).
				stream.onData = null;
				stream.onFin = null;
				stream.onReset = null;
				stream.stop(H3.STREAM_CREATION_ERROR);
				return true;
		}
	}

	private webTransportStream(quic: TransportStream, bytes: Uint8Array, typeSize: number): boolean {
		if (bytes.length <= typeSize) return false;
		const sidSize = 1 << (bytes[typeSize] >> 6);
		if (bytes.length < typeSize + sidSize) return false;
		const sessionId = looseVarint(bytes, typeSize);
		// Session IDs are client-initiated bidirectional stream IDs.
		if (sessionId % 4 !== 0 || sessionId > Number.MAX_SAFE_INTEGER) {
			throw new DecodeError(`invalid WebTransport session id ${sessionId}`, H3.ID_ERROR);
		}
		const rest = bytes.subarray(typeSize + sidSize);
		const stream = new WtStream(quic, sessionId, this);
		const session = this.sessions.get(sessionId);
		if (session !== undefined && !session.closed) {
			session.accept(stream);
		} else if (this.deadSessions.has(sessionId)) {
			stream.abort(H3.WT_SESSION_GONE);
			return true;
		} else if (this.waitingCount >= this.limits.maxBufferedStreams) {
			stream.abort(H3.WT_BUFFERED_STREAM_REJECTED);
			return true;
		} else {
			let list = this.waiting.get(sessionId);
			if (list === undefined) {
				list = [];
				this.waiting.set(sessionId, list);
			}
			list.push(stream);
			this.waitingCount++;
		}
		if (rest.length > 0) stream.receive(rest);
		return true;
	}

	receivedSettings(settings: Map<number, number>): void {
		this.peerSettings = settings;
		this.log.debug("webtransport: peer settings", { settings: Object.fromEntries(settings) });
		this.onPeerSettings?.();
	}
}

/** Holds a peer stream's first bytes until its type (and session ID) can be read. */
class StreamSniffer {
	private readonly stream: TransportStream;
	private readonly conn: H3Connection;
	private pending: Uint8Array | null = null;

	constructor(stream: TransportStream, conn: H3Connection) {
		this.stream = stream;
		this.conn = conn;
		stream.onData = (chunk) => this.receive(chunk);
		stream.onFin = () => this.ended();
		stream.onReset = () => this.ended();
	}

	private receive(chunk: Uint8Array): void {
		let bytes = chunk;
		if (this.pending !== null) {
			bytes = new Uint8Array(this.pending.length + chunk.length);
			bytes.set(this.pending);
			bytes.set(chunk, this.pending.length);
		}
		try {
			// The handler that takes the stream re-points its callbacks; until then they stay ours.
			this.pending = this.conn.classify(this.stream, bytes) ? null : ownedCopy(bytes);
		} catch (err) {
			this.conn.fail(err);
		}
	}

	private ended(): void {
		// Ended before its type was known: nothing to hand on. A request stream this short is incomplete.
		this.stream.onData = null;
		if (this.stream.bidi) this.stream.reset(H3.REQUEST_INCOMPLETE);
	}
}

/** The peer's control stream: SETTINGS first, then GOAWAY and unknown frames. Closing it is fatal. */
class ControlStream implements TlvHandler {
	private readonly conn: H3Connection;
	private readonly frames: TlvParser;
	private gotSettings = false;

	constructor(stream: TransportStream, conn: H3Connection) {
		this.conn = conn;
		this.frames = new TlvParser(this);
		stream.onData = (chunk) => this.receive(chunk);
		stream.onFin = () => conn.close(H3.CLOSED_CRITICAL_STREAM, "control stream closed");
		stream.onReset = () => conn.close(H3.CLOSED_CRITICAL_STREAM, "control stream reset");
	}

	receive(chunk: Uint8Array): void {
		if (chunk.length === 0) return;
		try {
			this.frames.push(chunk);
		} catch (err) {
			this.conn.fail(err);
		}
	}

	tlvHeader(type: number, length: number): BodyMode {
		if (!this.gotSettings && type !== Frame.SETTINGS) {
			throw new DecodeError(`frame ${type} before SETTINGS`, H3.MISSING_SETTINGS);
		}
		switch (type) {
			case Frame.SETTINGS:
				if (this.gotSettings) throw new DecodeError("second SETTINGS", H3.FRAME_UNEXPECTED);
				if (length > this.conn.limits.maxControlFrameBytes) {
					throw new DecodeError(`SETTINGS of ${length} bytes`, H3.EXCESSIVE_LOAD);
				}
				return Body.BUFFER;
			case Frame.GOAWAY:
				if (length > 8) throw new DecodeError("GOAWAY too long", H3.FRAME_ERROR);
				return Body.BUFFER;
			case Frame.MAX_PUSH_ID:
				if (!this.conn.isServer) throw new DecodeError("MAX_PUSH_ID from a server", H3.FRAME_UNEXPECTED);
				return Body.SKIP;
			case Frame.CANCEL_PUSH:
				return Body.SKIP;
			case Frame.DATA:
			case Frame.HEADERS:
			case Frame.PUSH_PROMISE:
			case Frame.WT_BIDI_SIGNAL:
				throw new DecodeError(`frame ${type} on the control stream`, H3.FRAME_UNEXPECTED);
			default:
				if (isHttp2ReservedFrame(type)) throw new DecodeError(`HTTP/2 frame ${type}`, H3.FRAME_UNEXPECTED);
				return Body.SKIP; // unknown and GREASE frames
		}
	}

	tlvBody(type: number, payload: Uint8Array): void {
		if (type === Frame.SETTINGS) {
			this.gotSettings = true;
			this.conn.receivedSettings(decodeSettings(payload));
		} else if (type === Frame.GOAWAY) {
			if (payload.length === 0 || 1 << (payload[0] >> 6) !== payload.length) {
				throw new DecodeError("malformed GOAWAY", H3.FRAME_ERROR);
			}
			this.conn.log.debug("webtransport: GOAWAY", { id: looseVarint(payload, 0) });
		}
	}

	tlvChunk(): void {}
}
