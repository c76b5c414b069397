/**
 * An in-memory pair of QUIC-like TransportSessions (kind "quic") for unit tests of layers above the
 * QUIC driver. Streams use QUIC numbering; every event (data, FIN, RESET_STREAM, STOP_SENDING,
 * close) crosses to the peer on a later macrotask, in order, like packets would, and written bytes
 * are copied at write() as the transport contract requires. Not a QUIC simulation: no loss, no
 * byte flow control; a test may cap the uni streams a side can open (`uniCredit`) and raise it
 * later (`grantUni`), as the peer's MAX_STREAMS would.
 */

import type { TransportSession, TransportStream } from "../../src/transport/types.ts";

class Link {
	private queue: (() => void)[] = [];
	private scheduled = false;

	post(event: () => void): void {
		this.queue.push(event);
		if (this.scheduled) return;
		this.scheduled = true;
		setImmediate(() => this.drain());
	}

	private drain(): void {
		this.scheduled = false;
		const events = this.queue;
		this.queue = [];
		for (const event of events) event();
	}
}

export class LoopbackStream implements TransportStream {
	readonly id: number;
	readonly bidi: boolean;
	readonly local: boolean;
	private readonly session: LoopbackSession;

	onData: ((chunk: Uint8Array) => void) | null = null;
	onFin: (() => void) | null = null;
	onReset: ((code: number) => void) | null = null;
	onStop: ((code: number) => void) | null = null;
	onDrain: (() => void) | null = null;

	sendClosed: boolean;
	/** What the peer did to this stream, for assertions. */
	receivedFin = false;
	receivedReset: number | null = null;
	receivedStop: number | null = null;
	/** Everything received, concatenated (tests inspect it). */
	received: number[] = [];

	constructor(session: LoopbackSession, id: number, local: boolean) {
		this.session = session;
		this.id = id;
		this.bidi = (id & 2) === 0;
		this.local = local;
		// A uni stream can only be written by the side that opened it.
		this.sendClosed = !this.bidi && !local;
	}

	private toPeer(event: (peer: LoopbackStream) => void): void {
		const session = this.session;
		// Bytes written before close() are "in flight" and still arrive, as in QUIC.
		if (session.closed) return;
		session.link.post(() => {
			const peer = session.peer;
			if (peer.closed) return;
			event(peer.streamFor(this.id));
		});
	}

	write(data: Uint8Array): void {
		if (this.sendClosed || data.length === 0) return;
		const copy = data.slice();
		this.toPeer((peer) => {
			if (peer.receivedReset !== null) return;
			for (const b of copy) peer.received.push(b);
			peer.onData?.(copy);
		});
	}

	finish(): void {
		if (this.sendClosed) return;
		this.sendClosed = true;
		this.toPeer((peer) => {
			if (peer.receivedReset !== null) return;
			peer.receivedFin = true;
			peer.onFin?.();
		});
	}

	reset(code: number): void {
		if (this.sendClosed) return;
		this.sendClosed = true;
		this.toPeer((peer) => {
			if (peer.receivedFin || peer.receivedReset !== null) return;
			peer.receivedReset = code;
			peer.onReset?.(code);
		});
	}

	stop(code: number): void {
		this.toPeer((peer) => {
			if (peer.receivedStop !== null) return;
			peer.receivedStop = code;
			peer.onStop?.(code);
		});
	}

	get buffered(): number {
		return 0;
	}

	setPriority(): void {}
}

export class LoopbackSession implements TransportSession {
	readonly kind = "quic" as const;
	readonly protocol: string;
	readonly path = "";
	readonly query = new URLSearchParams();
	readonly remote: string;
	readonly isServer: boolean;
	readonly link: Link;
	peer!: LoopbackSession;

	onStream: ((stream: TransportStream) => void) | null = null;
	onClose: ((code: number, reason: string) => void) | null = null;
	onStreamCredit: (() => void) | null = null;

	closed = false;
	/** Uni streams this side may still open (the peer's stream limit); unlimited unless a test sets it. */
	uniCredit = Number.POSITIVE_INFINITY;
	/** openUni() found no credit since the last grant (so onStreamCredit follows the next grant). */
	wantsCredit = false;
	/** How the session ended: who closed it, with what. */
	closedWith: { code: number; reason: string; byPeer: boolean } | null = null;
	readonly streams = new Map<number, LoopbackStream>();
	private nextBidi: number;
	private nextUni: number;
	private readonly closeWaiters: ((info: { code: number; reason: string; byPeer: boolean }) => void)[] = [];

	constructor(link: Link, isServer: boolean, protocol: string) {
		this.link = link;
		this.isServer = isServer;
		this.protocol = protocol;
		this.remote = isServer ? "127.0.0.1:50001" : "127.0.0.1:4443";
		this.nextBidi = isServer ? 1 : 0;
		this.nextUni = isServer ? 3 : 2;
	}

	/** The local view of stream `id`, created (and announced via onStream) on the peer's first event. */
	streamFor(id: number): LoopbackStream {
		let stream = this.streams.get(id);
		if (stream === undefined) {
			stream = new LoopbackStream(this, id, false);
			this.streams.set(id, stream);
			this.onStream?.(stream);
		}
		return stream;
	}

	openBidi(): LoopbackStream | null {
		return this.open(this.nextBidi, () => (this.nextBidi += 4));
	}

	openUni(): LoopbackStream | null {
		if (this.uniCredit <= 0) {
			this.wantsCredit = true;
			return null;
		}
		const stream = this.open(this.nextUni, () => (this.nextUni += 4));
		if (stream) this.uniCredit--;
		return stream;
	}

	/** The peer raises our uni-stream limit by `n`; onStreamCredit follows (a macrotask later) if an open failed. */
	grantUni(n: number): void {
		this.uniCredit += n;
		if (!this.wantsCredit) return;
		this.wantsCredit = false;
		this.link.post(() => {
			if (!this.closed) this.onStreamCredit?.();
		});
	}

	private open(id: number, advance: () => void): LoopbackStream | null {
		if (this.closed) return null;
		advance();
		const stream = new LoopbackStream(this, id, true);
		this.streams.set(id, stream);
		return stream;
	}

	close(code: number, reason: string): void {
		if (this.closed) return;
		this.ended(code, reason, false);
		const peer = this.peer;
		this.link.post(() => peer.ended(code, reason, true));
	}

	private ended(code: number, reason: string, byPeer: boolean): void {
		if (this.closed) return;
		this.closed = true;
		const info = { code, reason, byPeer };
		this.closedWith = info;
		for (const waiter of this.closeWaiters.splice(0)) waiter(info);
		// Like a QUIC driver, report the end asynchronously even when we closed it ourselves.
		this.link.post(() => this.onClose?.(code, reason));
	}

	/** Resolves when the session ends (either side). */
	whenClosed(): Promise<{ code: number; reason: string; byPeer: boolean }> {
		if (this.closedWith !== null) return Promise.resolve(this.closedWith);
		return new Promise((resolve) => this.closeWaiters.push(resolve));
	}
}

/** A connected client/server pair; `protocol` is the "negotiated ALPN" both report (default h3). */
export function loopbackPair(protocol = "h3"): { client: LoopbackSession; server: LoopbackSession } {
	const link = new Link();
	const client = new LoopbackSession(link, false, protocol);
	const server = new LoopbackSession(link, true, protocol);
	client.peer = server;
	server.peer = client;
	return { client, server };
}
