/**
 * The contract between a transport (qmux over WebSocket, raw QUIC, WebTransport over HTTP/3) and
 * the moq-lite session logic. Callback based and synchronous: no streams, promises or closures
 * per chunk on the data plane.
 *
 * Ownership rules (they keep copies to at most one between network and cache):
 * - `onData(chunk)`: `chunk` is valid only during the call (it may be a view into a reused receive
 *   buffer). A consumer that needs it later copies it.
 * - `write(data)`: the transport must not keep a reference to `data` after returning; it either
 *   hands the bytes to the network stack (which copies) or copies them into its own send queue.
 *   So callers may pass views into shared ring buffers or reused scratch space.
 */

export type TransportKind = "websocket" | "quic" | "webtransport";

const bufferCopy = Buffer.prototype.copy;

/**
 * Copies `source[start, end)` into `target` at `at`: how a transport copies what write() hands it.
 * Buffer.prototype.copy is a memcpy, except that Node passes a copy of a *whole* source to
 * TypedArray.prototype.set, and that copies shared memory (the relay's track rings: write() is
 * given views of them) element by element: 2.7 µs for 4 KB against 0.25 µs (Node 24). A whole
 * source therefore goes in two parts, each a memcpy.
 */
export function copyBytes(source: Uint8Array, start: number, end: number, target: Uint8Array, at: number): void {
	if (end - start < 2) {
		if (end > start) target[at] = source[start];
		return;
	}
	if (start === 0 && end === source.length) {
		bufferCopy.call(source, target, at, 0, 1);
		bufferCopy.call(source, target, at + 1, 1, end);
		return;
	}
	bufferCopy.call(source, target, at, start, end);
}

export interface TransportStream {
	/** Transport-level stream id (QUIC numbering: bit 0 = server-initiated, bit 1 = unidirectional). */
	readonly id: number;
	readonly bidi: boolean;
	/** True when this side opened the stream. */
	readonly local: boolean;

	/** Bytes received from the peer. See the ownership rules above. */
	onData: ((chunk: Uint8Array) => void) | null;
	/** The peer finished its send side (FIN); no more onData. */
	onFin: (() => void) | null;
	/** The peer reset its send side with an application code (already unmapped from H3 codes). */
	onReset: ((code: number) => void) | null;
	/** The peer asked us to stop sending (STOP_SENDING) with an application code. */
	onStop: ((code: number) => void) | null;
	/** Our queued bytes dropped below the low-water mark after having been above it. */
	onDrain: (() => void) | null;

	/**
	 * Queues bytes on our send side. No-op after finish()/reset(). One call is one write underneath
	 * (one quiche streamSend; one qmux STREAM frame and WebSocket message up to 16352 bytes, qmux's
	 * payload ceiling), so a caller passes a media frame, header and payload, in one call.
	 */
	write(data: Uint8Array): void;
	/** FIN after the queued bytes. */
	finish(): void;
	/** Abort our send side (RESET_STREAM) with an application code; queued bytes are discarded. */
	reset(code: number): void;
	/** Ask the peer to stop sending (STOP_SENDING) with an application code. */
	stop(code: number): void;
	/** Bytes accepted by write() but not yet handed to the network (flow control / congestion). */
	readonly buffered: number;
	/**
	 * Send priority hint: higher is sent first. The relay passes `subscriberPriority * 2^32 + order
	 * within the track` (newest group first, or oldest first when ordered); transports with coarse
	 * levels (QUIC urgency 0–7) use the subscriber priority part. Transports without priorities may ignore it.
	 */
	setPriority(order: number): void;
	/**
	 * For a SharedWriter: the stream that write() passes data to unchanged right now (a WebTransport
	 * stream's QUIC stream), or null when it would not (finished). Absent: the stream itself.
	 */
	readonly sharedTarget?: TransportStream | null;
}

/**
 * One buffer for many streams in one call to the transport underneath: the relay's fan-out of a
 * frame to every viewer a worker serves it to (the raw-QUIC ngtcp2 engine copies the bytes once and
 * every stream refers to that copy).
 */
export interface SharedWriter {
	/**
	 * Appends `data` to each of streams[0, count) (streams of sessions whose `sharedWriter` is this
	 * one), as `write(data)` on each would. taken[i] = 1: stream i has all of it (to send, or queued
	 * behind flow control); 0: the caller writes it to that stream itself with write(), which then
	 * handles whatever kept the stream from taking it (stopped by the peer, closed). Never throws for
	 * one stream's reasons. The ownership rule of write() holds: no reference to `data` is kept.
	 */
	writeAll(streams: readonly TransportStream[], count: number, data: Uint8Array, taken: Uint8Array): void;
}

export interface TransportSession {
	readonly kind: TransportKind;
	/** Present when this session's streams can be written many at a time (see SharedWriter). */
	readonly sharedWriter?: SharedWriter | null;
	/**
	 * The negotiated application protocol: "moq-lite-05", "moq-lite-04", "moq-lite-03", "moql",
	 * or "" when none was negotiated (then the client runs the 0x20/0x21 SETUP exchange).
	 */
	readonly protocol: string;
	/** The request path (percent-decoded, leading "/" kept) and query. Raw QUIC: "" until SETUP says otherwise. */
	readonly path: string;
	readonly query: URLSearchParams;
	/** "ip:port" of the peer, for logs. */
	readonly remote: string;

	/** A stream opened by the peer. Set by the session owner synchronously when it receives the session. */
	onStream: ((stream: TransportStream) => void) | null;
	/**
	 * The session ended (by either side, or on transport error). Called once. `graceful`: the peer
	 * closed it on purpose with code 0 (a QUIC or qmux application close 0, a WebTransport CLOSE
	 * capsule 0 or FIN on the CONNECT stream, a WebSocket close 1000), not a loss (idle timeout, a
	 * dropped socket, an error). A publisher that closes gracefully ends its broadcasts cleanly.
	 */
	onClose: ((code: number, reason: string, graceful?: boolean) => void) | null;
	/** The peer raised our stream limit after openUni/openBidi returned null. */
	onStreamCredit: (() => void) | null;

	/** Opens a stream; null when the peer's stream limit is reached (callers drop or wait for onStreamCredit). */
	openBidi(): TransportStream | null;
	openUni(): TransportStream | null;
	/** Closes the session with an application code; idempotent. */
	close(code: number, reason: string): void;
	readonly closed: boolean;
}

/** What a listener calls for each new session (after the handshake and protocol selection). */
export type SessionAcceptor = (session: TransportSession) => void;
