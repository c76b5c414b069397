/**
 * Admission and deadlines for the TCP connections of one HTTP/WebSocket listener.
 *
 * - Admission at accept, before any byte is read: the relay-wide TCP cap, the per-IP cap and the
 *   per-IP rate of new connections (transport/admission.ts, shared by every worker). A refused
 *   socket is destroyed at once; what an admitted one took is given back exactly once, on close.
 * - Deadlines, enforced by one coarse timer for the whole listener (a timer per socket costs far
 *   more, see quic/driver.ts): request headers must be complete within the header timeout of the
 *   accept (or of the previous response, on keep-alive); a connection that receives nothing for the
 *   idle timeout is closed; a connection we are closing (an error response, a WebSocket close
 *   handshake) gets a short linger, then is destroyed whatever the peer does.
 *
 * Node's own `headersTimeout` is not enough: it is checked every `connectionsCheckingInterval`
 * (30 s) and answers with a 408 and a half-close, so a peer that never closes its side (every
 * slowloris tool) keeps the socket forever. Activity is read from `socket.bytesRead` at each scan,
 * so the data path pays nothing (no listener per chunk); it counts every byte, WebSocket pongs and
 * TLS records included, so a client answering our pings is alive.
 * @module
 */
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Logger, LogLine } from "../log/logger.ts";
import type { Admission } from "../transport/admission.ts";
import { type RefusalReason, refuse } from "../transport/refusals.ts";

/** Waiting for a request's headers: the header deadline runs. */
const HEADERS = 0;
/** A request in progress or an upgraded WebSocket: only the idle timeout applies. */
const ACTIVE = 1;
/** We are closing it (error response, close handshake): destroyed at the linger deadline. */
const CLOSING = 2;

/** How long a connection we are closing may take to finish gracefully before it is destroyed. */
export const CLOSE_LINGER_MS = 500;

/** One admitted TCP connection. */
class TcpConnection {
	readonly socket: Socket;
	/** The address counted per IP ("" when it was not counted). */
	readonly address: string;
	/** The TLS socket over `socket`, once seen (destroyed along with it). */
	outer: Duplex | null = null;
	phase = HEADERS;
	/** performance.now() ms at which a HEADERS connection is cut off, or a CLOSING one destroyed. */
	deadline: number;
	/** `socket.bytesRead` at the last scan, and when it last changed. */
	bytesRead = 0;
	lastActive: number;
	/** Requests whose response has not finished yet (keep-alive may pipeline several). */
	requests = 0;

	constructor(socket: Socket, address: string, now: number, headerTimeoutMs: number) {
		this.socket = socket;
		this.address = address;
		this.lastActive = now;
		this.deadline = now + headerTimeoutMs;
	}
}

export interface ConnectionTrackerOptions {
	/** Relay-wide counts; null: unlimited (this listener alone). */
	admission: Admission | null;
	headerTimeoutMs: number;
	idleTimeoutMs: number;
	log: Logger;
}

export class ConnectionTracker {
	readonly headerTimeoutMs: number;
	readonly idleTimeoutMs: number;
	/** Period of the scan: bounds how late a deadline is enforced. */
	readonly tickMs: number;
	readonly #admission: Admission | null;
	readonly #log: Logger;
	readonly #refusalLog: LogLine;
	readonly #warnLog: LogLine;
	readonly #conns = new Map<Socket, TcpConnection>();
	#timer: ReturnType<typeof setInterval> | null = null;

	constructor(opts: ConnectionTrackerOptions) {
		if (!(opts.headerTimeoutMs > 0) || !(opts.idleTimeoutMs > 0)) throw new RangeError("timeouts must be > 0");
		this.headerTimeoutMs = opts.headerTimeoutMs;
		this.idleTimeoutMs = opts.idleTimeoutMs;
		// An eighth of the shorter timeout, within [50, 500] ms: a deadline is late by at most that
		// (and a close linger by at most 500 ms), for one pass over the connections per tick.
		this.tickMs = Math.min(500, Math.max(50, Math.min(opts.headerTimeoutMs, opts.idleTimeoutMs) / 8));
		this.#admission = opts.admission;
		this.#log = opts.log;
		this.#refusalLog = (message, fields) => this.#log.info(message, fields);
		this.#warnLog = (message, fields) => this.#log.warn(message, fields);
	}

	/** Admitted connections open now. */
	get size(): number {
		return this.#conns.size;
	}

	/**
	 * A new TCP connection (the server's "connection" event, nothing read yet). Refused: destroyed
	 * and counted, returns false. Admitted: tracked until it closes, which releases what it took.
	 */
	accept(socket: Socket): boolean {
		const admission = this.#admission;
		let address = "";
		if (admission !== null) {
			const ip = socket.remoteAddress;
			// Already gone (reset before we saw it): nothing to count.
			if (ip === undefined) {
				socket.destroy();
				return false;
			}
			let refused: RefusalReason | null = null;
			if (!admission.allowHandshake(ip)) refused = "handshake_rate";
			else if (!admission.tryOpenConnection(ip)) refused = "connections_per_ip";
			else if (!admission.tryOpenTcp()) {
				admission.closeConnection(ip);
				refused = "tcp_connections";
			}
			if (refused !== null) {
				socket.destroy();
				refuse(refused, this.#warnLog, { remote: ip, transport: "tcp" });
				return false;
			}
			address = ip;
		}
		const now = performance.now();
		const conn = new TcpConnection(socket, address, now, this.headerTimeoutMs);
		this.#conns.set(socket, conn);
		socket.once("close", () => this.#release(conn));
		if (this.#timer === null) {
			this.#timer = setInterval(this.#scan, this.tickMs);
			// The sockets keep the process alive, not the timer.
			this.#timer.unref();
		}
		return true;
	}

	/** Headers of a request are complete (`request` event): its deadline stops until the response ends. */
	request(socket: Duplex): void {
		const conn = this.#find(socket);
		if (conn === undefined || conn.phase === CLOSING) return;
		conn.requests++;
		conn.phase = ACTIVE;
		conn.deadline = Number.POSITIVE_INFINITY;
	}

	/** A response ended: with none left, the next request's headers must arrive within the header timeout. */
	responseDone(socket: Duplex): void {
		const conn = this.#find(socket);
		if (conn === undefined || conn.phase !== ACTIVE || --conn.requests > 0) return;
		conn.phase = HEADERS;
		conn.deadline = performance.now() + this.headerTimeoutMs;
	}

	/** Upgraded to a WebSocket: no header deadline any more, only the idle timeout. */
	upgraded(socket: Duplex): void {
		const conn = this.#find(socket);
		if (conn === undefined || conn.phase === CLOSING) return;
		conn.phase = ACTIVE;
		conn.deadline = Number.POSITIVE_INFINITY;
	}

	/**
	 * We are closing this connection gracefully (an error response, a WebSocket close handshake):
	 * destroy it if it is still open `CLOSE_LINGER_MS` from now, whatever the peer does.
	 */
	linger(socket: Duplex): void {
		const conn = this.#find(socket);
		if (conn === undefined || conn.phase === CLOSING) return;
		conn.phase = CLOSING;
		conn.deadline = performance.now() + CLOSE_LINGER_MS;
	}

	/**
	 * Node's own header/request timer fired first (clientError, then a 408): counted once, as ours
	 * would have been, and the socket is lingered rather than left half-open.
	 */
	timedOut(socket: Duplex): void {
		const conn = this.#find(socket);
		if (conn === undefined || conn.phase === CLOSING) return;
		if (conn.phase === HEADERS) {
			refuse("header_timeout", this.#refusalLog, { remote: conn.socket.remoteAddress, transport: "tcp" });
		}
		conn.phase = CLOSING;
		conn.deadline = performance.now() + CLOSE_LINGER_MS;
	}

	/** Stops the timer (listener closing); sockets still release their admission on close. */
	stop(): void {
		if (this.#timer !== null) clearInterval(this.#timer);
		this.#timer = null;
	}

	/** The connection of a socket: the TCP socket itself, or the TLS socket over it. */
	#find(socket: Duplex): TcpConnection | undefined {
		const conn = this.#conns.get(socket as Socket);
		if (conn !== undefined) return conn;
		// A TLSSocket keeps the TCP socket it wraps as `_parent` (Node has done so since 0.11).
		const parent = (socket as { _parent?: Socket | null })._parent;
		if (parent == null) return undefined;
		const outer = this.#conns.get(parent);
		if (outer !== undefined) outer.outer = socket;
		return outer;
	}

	#release(conn: TcpConnection): void {
		if (this.#conns.get(conn.socket) !== conn) return;
		this.#conns.delete(conn.socket);
		if (this.#admission !== null) {
			this.#admission.closeTcp();
			this.#admission.closeConnection(conn.address);
		}
		if (this.#conns.size === 0) this.stop();
	}

	#destroy(conn: TcpConnection): void {
		conn.outer?.destroy();
		conn.socket.destroy();
	}

	#scan = (): void => {
		const now = performance.now();
		for (const conn of this.#conns.values()) {
			const socket = conn.socket;
			if (socket.destroyed) continue; // its close event releases it
			const read = socket.bytesRead;
			if (read !== conn.bytesRead) {
				conn.bytesRead = read;
				conn.lastActive = now;
			}
			if (now >= conn.deadline) {
				if (conn.phase === HEADERS) {
					refuse("header_timeout", this.#refusalLog, { remote: socket.remoteAddress, transport: "tcp" });
				}
				this.#destroy(conn);
			} else if (conn.phase !== CLOSING && now - conn.lastActive >= this.idleTimeoutMs) {
				refuse("idle_timeout", this.#refusalLog, { remote: socket.remoteAddress, transport: "tcp" });
				this.#destroy(conn);
			}
		}
	};
}
