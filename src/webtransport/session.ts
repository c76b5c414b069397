/**
 * A WebTransport session (one extended CONNECT) exposed as a TransportSession of kind
 * "webtransport". Streams it opens carry the 0x41/0x54 header; streams the peer opens arrive here
 * with the header already stripped by the connection.
 */

import { writeVarint } from "../coding/varint.ts";
import { H3, sessionCodeOn } from "../errors/codes.ts";
import type { SharedWriter, TransportSession, TransportStream } from "../transport/types.ts";
import { Frame, UniStream } from "./codes.ts";
import type { ConnectStream } from "./connect.ts";
import { type StreamOwner, WtStream } from "./stream.ts";

/**
 * The connection side of a session (implemented by H3Connection; kept as an interface so that
 * this file does not import the connection).
 */
export interface SessionOwner extends StreamOwner {
	/** The QUIC connection the session's streams are opened on. */
	readonly quic: TransportSession;
	/** The session ended (`local`: we closed it). */
	sessionEnded(session: WtSession, local: boolean): void;
}

const headerScratch = new Uint8Array(16);

export class WtSession implements TransportSession {
	readonly kind = "webtransport" as const;
	/** The session ID: the CONNECT stream's QUIC stream ID. */
	readonly id: number;
	readonly protocol: string;
	readonly path: string;
	readonly query: URLSearchParams;
	readonly remote: string;
	readonly connect: ConnectStream;
	private readonly conn: SessionOwner;

	onClose: ((code: number, reason: string, graceful?: boolean) => void) | null = null;
	onStreamCredit: (() => void) | null = null;

	private streamHandler: ((stream: TransportStream) => void) | null = null;
	/** Peer streams that arrived before the owner set onStream. */
	private queued: WtStream[] = [];
	/** Every stream of this session not yet finished both ways (reset with WT_SESSION_GONE on close). */
	readonly streams = new Set<WtStream>();
	closed = false;

	constructor(conn: SessionOwner, connect: ConnectStream, protocol: string, path: string, query: URLSearchParams) {
		this.conn = conn;
		this.connect = connect;
		this.id = connect.quic.id;
		this.protocol = protocol;
		this.path = path;
		this.query = query;
		this.remote = conn.quic.remote;
	}

	/** TransportSession.sharedWriter: the QUIC connection's (a stream's write() passes through, see WtStream). */
	get sharedWriter(): SharedWriter | null {
		return this.conn.quic.sharedWriter ?? null;
	}

	get onStream(): ((stream: TransportStream) => void) | null {
		return this.streamHandler;
	}

	/** Setting the handler delivers the streams that were waiting for it, in arrival order. */
	set onStream(handler: ((stream: TransportStream) => void) | null) {
		this.streamHandler = handler;
		while (handler !== null && this.streamHandler === handler && this.queued.length > 0 && !this.closed) {
			const stream = this.queued.shift()!;
			handler(stream);
			stream.release();
		}
	}

	/** A peer stream for this session (still held). */
	accept(stream: WtStream): void {
		this.streams.add(stream);
		const handler = this.streamHandler;
		if (handler === null) {
			this.queued.push(stream);
			return;
		}
		handler(stream);
		stream.release();
	}

	/** Drops a held stream the connection rejected (over the buffering limit). */
	forget(stream: WtStream): void {
		this.streams.delete(stream);
		const i = this.queued.indexOf(stream);
		if (i >= 0) this.queued.splice(i, 1);
	}

	openBidi(): TransportStream | null {
		return this.open(true);
	}

	openUni(): TransportStream | null {
		return this.open(false);
	}

	private open(bidi: boolean): WtStream | null {
		if (this.closed) return null;
		const quic = bidi ? this.conn.quic.openBidi() : this.conn.quic.openUni();
		if (quic === null) return null;
		let n = writeVarint(headerScratch, 0, bidi ? Frame.WT_BIDI_SIGNAL : UniStream.WEBTRANSPORT);
		n = writeVarint(headerScratch, n, this.id);
		quic.write(headerScratch.subarray(0, n));
		const stream = new WtStream(quic, this.id, this.conn);
		this.streams.add(stream);
		return stream;
	}

	/** Sends CLOSE_WEBTRANSPORT_SESSION (code as u32, reason cut to 1024 bytes) then FIN. Idempotent. */
	close(code: number, reason: string): void {
		if (this.closed) return;
		const u32 = sessionCodeOn("webtransport", code);
		this.connect.sendClose(u32, reason);
		this.end(u32, reason, true);
	}

	/** Asks the client to wind the session down (DRAIN_WEBTRANSPORT_SESSION); it stays open. */
	drain(): void {
		if (this.closed) return;
		this.connect.sendDrain();
	}

	/** The peer closed the session (capsule, or the CONNECT stream ended): answer with FIN and end. */
	peerClosed(code: number, reason: string): void {
		if (this.closed) return;
		this.connect.finish();
		this.end(code, reason, false, code === 0);
	}

	/** Ends the session without touching the CONNECT stream (connection gone or failed). */
	end(code: number, reason: string, local: boolean, graceful = false): void {
		if (this.closed) return;
		this.closed = true;
		for (const stream of this.streams) stream.abort(H3.WT_SESSION_GONE);
		this.streams.clear();
		this.queued.length = 0;
		this.conn.sessionEnded(this, local);
		const onClose = this.onClose;
		this.onClose = null;
		onClose?.(code, reason, graceful);
	}
}
