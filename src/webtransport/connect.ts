/**
 * The extended CONNECT request stream, for both roles: HEADERS (request or response) first, then
 * DATA frames carrying capsules for the session's lifetime. The role (server.ts / client.ts) sets
 * `onHeaders` and `onEnded`; once a session is attached, CLOSE capsules and the stream's end close it.
 */

import { DecodeError } from "../coding/errors.ts";
import { Writer } from "../coding/writer.ts";
import { H3 } from "../errors/codes.ts";
import type { Logger } from "../log/logger.ts";
import type { TransportStream } from "../transport/types.ts";
import { Capsule, Frame, isHttp2ReservedFrame, MAX_CLOSE_REASON_BYTES } from "./codes.ts";
import {
	Body,
	type BodyMode,
	decodeCloseCapsule,
	type TlvHandler,
	TlvParser,
	writeCloseCapsuleFrame,
	writeDrainCapsuleFrame,
	writeTlvHeader,
} from "./frames.ts";
import { decodeFieldSection, encodeFieldSection, type Field } from "./qpack.ts";

/**
 * The connection side of a CONNECT stream (implemented by H3Connection; kept as an interface so
 * that this file does not import the connection).
 */
export interface ConnectOwner {
	readonly limits: { readonly maxHeaderBytes: number };
	readonly log: Logger;
	/** Closes the connection because of `err` (a DecodeError carries the HTTP/3 code). */
	fail(err: unknown): void;
	/** The CONNECT stream of an attached session ended. */
	connectStreamEnded(connect: ConnectStream): void;
}

/** The session a CONNECT stream carries once attached (implemented by WtSession). */
export interface ConnectSession {
	readonly closed: boolean;
	/** The peer closed the session (capsule, or the CONNECT stream ended). */
	peerClosed(code: number, reason: string): void;
}

const scratch = new Writer(512);
const sectionScratch = new Writer(512);

/** Reads the capsules inside the DATA frames of an established session's CONNECT stream. */
class CapsuleReader implements TlvHandler {
	private readonly connect: ConnectStream;
	constructor(connect: ConnectStream) {
		this.connect = connect;
	}
	tlvHeader(type: number, length: number): BodyMode {
		if (type === Capsule.CLOSE_WEBTRANSPORT_SESSION) {
			if (length < 4 || length > 4 + MAX_CLOSE_REASON_BYTES) {
				throw new DecodeError(`CLOSE_WEBTRANSPORT_SESSION of ${length} bytes`, H3.MESSAGE_ERROR);
			}
			return Body.BUFFER;
		}
		if (type === Capsule.DRAIN_WEBTRANSPORT_SESSION) this.connect.conn.log.debug("webtransport: DRAIN capsule");
		return Body.SKIP; // DRAIN has no effect here; unknown, GREASE and flow-control capsules are skipped
	}
	tlvBody(type: number, payload: Uint8Array): void {
		if (type !== Capsule.CLOSE_WEBTRANSPORT_SESSION) return;
		const { code, reason } = decodeCloseCapsule(payload);
		this.connect.peerClosed(code, reason);
	}
	tlvChunk(): void {}
}

export class ConnectStream implements TlvHandler {
	readonly quic: TransportStream;
	readonly conn: ConnectOwner;
	private readonly frames: TlvParser;
	private capsules: TlvParser | null = null;
	session: ConnectSession | null = null;

	/** A HEADERS frame arrived (before `final`); set by the role. */
	onHeaders: ((fields: Field[]) => void) | null = null;
	/** The stream ended (FIN, reset or STOP_SENDING) before a session was attached. */
	onEnded: (() => void) | null = null;
	/** The final request/response HEADERS has been seen: later HEADERS are trailers (ignored). */
	final = false;
	/** The peer's send side is over (FIN or reset). */
	peerEnded = false;
	/** Our send side is over. */
	sendDone = false;

	constructor(quic: TransportStream, conn: ConnectOwner) {
		this.quic = quic;
		this.conn = conn;
		this.frames = new TlvParser(this);
		quic.onData = (chunk) => this.receive(chunk);
		quic.onFin = () => this.receiveEnd(true);
		quic.onReset = () => this.receiveEnd(false);
		quic.onStop = () => this.receiveStop();
	}

	receive(chunk: Uint8Array): void {
		if (this.peerEnded) return;
		try {
			this.frames.push(chunk);
		} catch (err) {
			this.conn.fail(err);
		}
	}

	tlvHeader(type: number, length: number): BodyMode {
		if (type === Frame.HEADERS) {
			if (this.final) return Body.SKIP;
			if (length > this.conn.limits.maxHeaderBytes) {
				throw new DecodeError(`HEADERS frame of ${length} bytes`, H3.EXCESSIVE_LOAD);
			}
			return Body.BUFFER;
		}
		if (type === Frame.DATA) {
			if (!this.final) throw new DecodeError("DATA before HEADERS", H3.FRAME_UNEXPECTED);
			return this.capsules === null ? Body.SKIP : Body.STREAM;
		}
		if (
			type === Frame.SETTINGS ||
			type === Frame.GOAWAY ||
			type === Frame.CANCEL_PUSH ||
			type === Frame.MAX_PUSH_ID ||
			type === Frame.PUSH_PROMISE ||
			type === Frame.WT_BIDI_SIGNAL ||
			isHttp2ReservedFrame(type)
		) {
			throw new DecodeError(`frame type ${type} on a request stream`, H3.FRAME_UNEXPECTED);
		}
		return Body.SKIP;
	}

	tlvBody(type: number, payload: Uint8Array): void {
		if (type !== Frame.HEADERS) return;
		const fields = decodeFieldSection(payload, this.conn.limits.maxHeaderBytes);
		this.onHeaders?.(fields);
	}

	tlvChunk(type: number, bytes: Uint8Array): void {
		if (type === Frame.DATA) this.capsules?.push(bytes);
	}

	private receiveEnd(fin: boolean): void {
		if (this.peerEnded) return;
		this.peerEnded = true;
		if (fin && !this.frames.atBoundary) {
			this.conn.fail(new DecodeError("request stream ended inside a frame", H3.FRAME_ERROR));
			return;
		}
		this.frames.stop();
		const session = this.session;
		if (session === null) {
			this.onEnded?.();
			return;
		}
		if (!session.closed) session.peerClosed(0, "");
		this.conn.connectStreamEnded(this);
	}

	private receiveStop(): void {
		// The peer will read nothing more from us: without a way to send a capsule the session is over.
		this.sendDone = true;
		this.quic.reset(H3.REQUEST_CANCELLED);
		if (this.session === null) this.onEnded?.();
		else this.session.peerClosed(0, "");
	}

	/** Attaches the established session: from now on DATA frames carry capsules. */
	attach(session: ConnectSession): void {
		this.session = session;
		this.capsules = new TlvParser(new CapsuleReader(this));
	}

	peerClosed(code: number, reason: string): void {
		this.capsules?.stop();
		this.session?.peerClosed(code, reason);
	}

	/** Writes one HEADERS frame (QPACK, static table + literals), optionally followed by FIN. */
	sendHeaders(fields: readonly Field[], fin: boolean): void {
		if (this.sendDone) return;
		encodeFieldSection(sectionScratch.clear(), fields);
		const section = sectionScratch.view();
		writeTlvHeader(scratch.clear(), Frame.HEADERS, section.length);
		scratch.bytes(section);
		this.quic.write(scratch.view());
		if (fin) this.finish();
	}

	/** One DRAIN_WEBTRANSPORT_SESSION capsule (the session goes on). */
	sendDrain(): void {
		if (this.sendDone) return;
		writeDrainCapsuleFrame(scratch.clear());
		this.quic.write(scratch.view());
	}

	sendClose(code: number, reason: string): void {
		if (this.sendDone) return;
		writeCloseCapsuleFrame(scratch.clear(), code, reason);
		this.quic.write(scratch.view());
		this.finish();
	}

	finish(): void {
		if (this.sendDone) return;
		this.sendDone = true;
		this.quic.finish();
	}

	/**
	 * Refuses a request: the status (and, when given, a short text/plain body in one DATA frame),
	 * then FIN, and we stop reading the request.
	 */
	reject(status: number, body?: string): void {
		this.final = true;
		if (body === undefined || body.length === 0 || this.sendDone) {
			this.sendHeaders([[":status", String(status)]], true);
		} else {
			const bytes = new TextEncoder().encode(body);
			this.sendHeaders(
				[
					[":status", String(status)],
					["content-type", "text/plain"],
					["content-length", String(bytes.length)],
				],
				false,
			);
			writeTlvHeader(scratch.clear(), Frame.DATA, bytes.length);
			scratch.bytes(bytes);
			this.quic.write(scratch.view());
			this.finish();
		}
		this.frames.stop();
		if (!this.peerEnded) this.quic.stop(H3.NO_ERROR);
		this.peerEnded = true;
	}
}
