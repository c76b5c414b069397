/**
 * The relay's HTTP/1.1 listener on TCP (plain, or TLS when given a cert/key), by default on the
 * same port number as the QUIC UDP socket. It serves /certificate.sha256, /health and /metrics,
 * and upgrades WebSocket requests on any path to qmux sessions handed to `onSession`. When given an
 * `authorize` check (the relay's token check), an upgrade is held until it settles and a refusal is
 * answered with its HTTP status (401/403...) and a short text body instead of 101.
 *
 * Request limits are Node's defaults except the timeouts: 16 KiB of headers (maxHeaderSize),
 * 2000 headers, headers within `[limits] http_header_timeout` (10 s), a whole request within 30 s,
 * keep-alive 5 s, nothing received for `[limits] idle_timeout` (60 s). Those deadlines, and the
 * relay-wide TCP and per-IP admission at accept, are enforced by connections.ts (one timer for the
 * listener). Malformed requests get a 400 (431 for oversized headers) and the socket is closed
 * (destroyed after a short linger if the peer does not close its side); nothing throws.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, STATUS_CODES } from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocketServer } from "ws";
import { DEFAULT_LIMITS } from "../config/defaults.ts";
import type { RelayConfig } from "../config/types.ts";
import { type Logger, type LogLine, silentLogger } from "../log/logger.ts";
import type { Framing } from "../qmux/frames.ts";
import { KeepAlive } from "../qmux/keepalive.ts";
import { type WsLimits, WsSession } from "../qmux/session.ts";
import { parseOffer, parseSubprotocol, preferenceList, selectSubprotocol } from "../qmux/subprotocol.ts";
import type { Admission } from "../transport/admission.ts";
import { type ConnectAuthorizer, type ConnectVerdict, refusalStatus } from "../transport/authorize.ts";
import { refuse } from "../transport/refusals.ts";
import type { SessionAcceptor } from "../transport/types.ts";
import { ConnectionTracker } from "./connections.ts";
import { handleRequest, type MediaRoutes, type RouteOptions } from "./routes.ts";

export interface TlsFiles {
	cert: string | Buffer;
	key: string | Buffer;
}

export interface WsListenerOptions {
	/** Flow-control and size limits for each session (see WsLimits). */
	limits?: Partial<WsLimits>;
	/** Largest WebSocket message `ws` will assemble; above it ws closes with 1009. Default 64 KiB (or 2× maxRecordSize). */
	maxPayload?: number;
	/** WS Ping period (default 5000 ms, at most a third of the idle timeout). */
	pingIntervalMs?: number;
	/** Close a peer silent this long (default 30000 ms, at most `[limits] idle_timeout`). */
	idleTimeoutMs?: number;
	/** Concurrent WebSocket sessions; further upgrades get 503. Default unlimited. */
	maxSessions?: number;
	/** App protocols in preference order (default moq-lite-05, -04, -03, moql). */
	appProtocols?: string[];
	/** qmux drafts in preference order (default qmux-01, qmux-02, qmux-00). */
	qmuxPreference?: Framing[];
}

export interface HttpServerOptions {
	host: string;
	/** TCP port; normally the QUIC UDP port number. 0 picks a free one. */
	port: number;
	/** SO_REUSEPORT (Node ≥ 22.12) so each worker thread can bind its own listener. */
	reusePort?: boolean;
	tls?: TlsFiles | null;
	fingerprint: () => string | null;
	onSession: SessionAcceptor;
	health?: () => unknown;
	metrics?: () => string;
	/** The status page's data (`/status`, and the page at `/`; see status-page.ts). */
	status?: () => Promise<unknown>;
	/** `/debug/gc-probe` (MOQ_FANOUT_GC_PROBE=1 only; see routes.ts). */
	gcProbe?: (query: URLSearchParams) => Promise<unknown>;
	/** `/cluster` (see routes.ts). */
	cluster?: () => unknown;
	/** moq-relay's GET /announced and /fetch (media.ts); absent: 404. */
	media?: MediaRoutes;
	log?: Logger;
	ws?: WsListenerOptions;
	/** Relay-wide TCP and per-IP connection counts and rates; default: this listener alone, unlimited. */
	admission?: Admission;
	/** Timeouts from [limits] (header and idle); defaults from config/defaults.ts. */
	limits?: Partial<Pick<RelayConfig["limits"], "httpHeaderTimeoutMs" | "idleTimeoutMs">>;
	/**
	 * Checks a WebSocket upgrade before it is answered (the token, in the relay). The upgrade is held
	 * until it settles, still under the header deadline; a refusal is answered with its HTTP status
	 * and reason instead of 101. Default: every upgrade is accepted.
	 */
	authorize?: ConnectAuthorizer;
}

export interface HttpServerHandle {
	/** The bound port. */
	readonly port: number;
	/** Open WebSocket sessions. */
	readonly sessions: number;
	/** Open TCP connections (any state; refused ones are never counted). */
	readonly connections: number;
	/** Closes every session (APPLICATION_CLOSE 0), stops listening, waits for sockets (≤ 2 s). */
	close(): Promise<void>;
	/** Stops taking WebSocket sessions (upgrades get 503); open sessions and plain routes go on. */
	drain(): void;
	/** Swaps the certificate of a TLS listener (new connections use it). */
	setTls(tls: TlsFiles): void;
}

const ignore = (): void => {};

function formatRemote(socket: Duplex): string {
	const s = socket as Socket;
	const ip = s.remoteAddress ?? "?";
	return ip.includes(":") ? `[${ip}]:${s.remotePort}` : `${ip}:${s.remotePort}`;
}

/**
 * Answers a refused upgrade with a real HTTP status, then closes the socket: once the answer is
 * flushed, or at the tracker's linger deadline if the peer does not read it.
 */
function reject(socket: Duplex, status: number, message: string, tracker: ConnectionTracker): void {
	if (!socket.writable) {
		socket.destroy();
		return;
	}
	socket.once("finish", () => socket.destroy());
	tracker.linger(socket);
	socket.end(
		`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: text/plain\r\n` +
			`Access-Control-Allow-Origin: *\r\nContent-Length: ${Buffer.byteLength(message)}\r\n\r\n${message}`,
	);
}

export function startHttpServer(opts: HttpServerOptions): Promise<HttpServerHandle> {
	const log = opts.log ?? silentLogger;
	const wsOpts = opts.ws ?? {};
	const preference = preferenceList(wsOpts.appProtocols, wsOpts.qmuxPreference);
	const maxSessions = wsOpts.maxSessions ?? Number.POSITIVE_INFINITY;
	const headerTimeoutMs = opts.limits?.httpHeaderTimeoutMs ?? DEFAULT_LIMITS.httpHeaderTimeoutMs;
	const idleTimeoutMs = opts.limits?.idleTimeoutMs ?? DEFAULT_LIMITS.idleTimeoutMs;
	const tracker = new ConnectionTracker({ admission: opts.admission ?? null, headerTimeoutMs, idleTimeoutMs, log });
	// The WebSocket keep-alive must fit inside the TCP idle timeout: a session is closed politely
	// (CONNECTION_CLOSE) by its own idle check no later than the TCP scan would cut it, and a client
	// that answers our pings always has sent something within the idle timeout.
	const wsIdleMs = wsOpts.idleTimeoutMs ?? Math.min(30_000, idleTimeoutMs);
	const keepAlive = new KeepAlive(wsOpts.pingIntervalMs ?? Math.min(5000, wsIdleMs / 3), wsIdleMs);
	// One per listener, not per session: the session reports its close, the tracker bounds it.
	const closing = (socket: Duplex): void => tracker.linger(socket);
	const sessions = new Set<WsSession>();
	const upgraded = new Set<Duplex>();
	/** Upgrades held while `authorize` runs (they count against maxSessions). */
	const authorizing = new Set<Duplex>();
	let shuttingDown = false;
	let draining = false;
	const refusalLog: LogLine = (message, fields) => log.info(message, fields);

	const wss = new WebSocketServer({
		noServer: true,
		clientTracking: false,
		perMessageDeflate: false,
		// Above our own caps (record size / 16 KiB frames), so oversize messages reach the session and
		// get a precise CONNECTION_CLOSE; far above them, ws refuses to assemble the message at all (1009).
		maxPayload: wsOpts.maxPayload ?? Math.max(64 * 1024, 2 * (wsOpts.limits?.maxRecordSize ?? 0)),
		handleProtocols: (offered) => selectSubprotocol(offered, preference) ?? false,
	});

	const routes: RouteOptions = {
		fingerprint: opts.fingerprint,
		health: opts.health,
		metrics: opts.metrics,
		status: opts.status,
		gcProbe: opts.gcProbe,
		cluster: opts.cluster,
		media: opts.media,
	};
	const onRequest = (req: IncomingMessage, res: import("node:http").ServerResponse): void => {
		const socket = req.socket;
		tracker.request(socket);
		res.once("close", () => tracker.responseDone(socket));
		handleRequest(req, res, routes);
	};
	// Node's own header timer stays as a backstop (it only runs every 30 s); ours closes on time.
	const serverOptions = {
		headersTimeout: headerTimeoutMs,
		requestTimeout: Math.max(30_000, headerTimeoutMs),
		keepAliveTimeout: 5_000,
	};
	const server: Server | HttpsServer = opts.tls
		? createHttpsServer({ ...serverOptions, cert: opts.tls.cert, key: opts.tls.key }, onRequest)
		: createHttpServer(serverOptions, onRequest);

	// Admission before anything is read: a refused socket is destroyed here (tracker.accept).
	server.on("connection", (socket: Socket) => {
		tracker.accept(socket);
	});

	server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
		const timeout = err.code === "ERR_HTTP_REQUEST_TIMEOUT";
		if (timeout) tracker.timedOut(socket);
		// Reset, or the peer hung up mid-request: nobody to answer.
		if (err.code === "ECONNRESET" || err.code === "HPE_INVALID_EOF_STATE" || !socket.writable) {
			socket.destroy();
			return;
		}
		const status = err.code === "HPE_HEADER_OVERFLOW" ? 431 : timeout ? 408 : 400;
		if (!timeout) refuse("protocol", refusalLog, { remote: (socket as Socket).remoteAddress, transport: "http" });
		socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
		// A half-closed socket whose peer never closes its side would otherwise stay forever.
		tracker.linger(socket);
	});

	/** Completes an accepted upgrade: 101, then the session goes to `onSession`. */
	const upgrade = (
		req: IncomingMessage,
		socket: Duplex,
		head: Buffer,
		path: string,
		query: URLSearchParams,
		verdict: ConnectVerdict | null,
	): void => {
		tracker.upgraded(socket);
		wss.handleUpgrade(req, socket, head, (ws) => {
			const { framing, protocol } = parseSubprotocol(ws.protocol);
			const session = new WsSession(ws, socket, {
				framing,
				protocol,
				path,
				query,
				remote: formatRemote(socket),
				limits: wsOpts.limits,
				keepAlive,
				closing,
				log,
			});
			sessions.add(session);
			upgraded.add(socket);
			socket.once("close", () => {
				sessions.delete(session);
				upgraded.delete(socket);
			});
			log.debug("websocket session", { remote: session.remote, framing, protocol, path });
			try {
				if (verdict !== null && verdict.status === null) verdict.bind?.(session);
				opts.onSession(session);
			} catch (e) {
				log.error("onSession threw", { error: String(e) });
				session.close(0, "internal error");
			}
		});
	};

	/** After `authorize` settled: answer its refusal, or upgrade if the socket is still there to take it. */
	const settle = (
		req: IncomingMessage,
		socket: Duplex,
		head: Buffer,
		path: string,
		query: URLSearchParams,
		verdict: ConnectVerdict,
	): void => {
		// Closed meanwhile (the peer left, the header deadline or listener shutdown cut it): nothing to answer.
		if (socket.destroyed || !socket.writable) return;
		if (shuttingDown || draining) return reject(socket, 503, draining ? "draining" : "unavailable", tracker);
		if (verdict.status !== null) return reject(socket, refusalStatus(verdict.status), verdict.reason, tracker);
		upgrade(req, socket, head, path, query, verdict);
	};

	server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
		socket.on("error", ignore); // ws adds its own handler once upgraded; before that, errors must not crash us
		try {
			if (shuttingDown || draining) return reject(socket, 503, draining ? "draining" : "unavailable", tracker);
			if (sessions.size + authorizing.size >= maxSessions) {
				refuse("sessions", refusalLog, { remote: (socket as Socket).remoteAddress, transport: "websocket" });
				return reject(socket, 503, "unavailable", tracker);
			}
			if ((req.headers.upgrade ?? "").toLowerCase() !== "websocket") {
				refuse("protocol", refusalLog, { remote: (socket as Socket).remoteAddress, transport: "http" });
				return reject(socket, 400, "bad upgrade", tracker);
			}
			let path: string;
			let query: URLSearchParams;
			try {
				const url = new URL(req.url ?? "/", "http://relay");
				path = decodeURIComponent(url.pathname);
				query = url.searchParams;
			} catch {
				refuse("protocol", refusalLog, { remote: (socket as Socket).remoteAddress, transport: "http" });
				return reject(socket, 400, "bad path", tracker);
			}
			const offered = parseOffer(req.headers["sec-websocket-protocol"]);
			if (offered.length > 0 && selectSubprotocol(offered, preference) === null) {
				refuse("protocol", refusalLog, {
					remote: (socket as Socket).remoteAddress,
					transport: "websocket",
					why: "no supported subprotocol",
					offered: offered.join(","),
				});
				return reject(socket, 400, "no supported subprotocol", tracker);
			}
			const authorize = opts.authorize;
			if (authorize === undefined) return upgrade(req, socket, head, path, query, null);

			// Held until the check settles. The tracker keeps the header deadline of this request
			// running (it only switches to the idle timeout at the upgrade), so a check cannot pin
			// the socket past it.
			authorizing.add(socket);
			const done = (): boolean => authorizing.delete(socket);
			new Promise<ConnectVerdict>((resolve) =>
				resolve(authorize({ transport: "websocket", path, query, remote: formatRemote(socket) })),
			).then(
				(verdict) => {
					done();
					settle(req, socket, head, path, query, verdict);
				},
				(err: unknown) => {
					done();
					log.error("websocket authorize failed", { error: String(err) });
					if (!socket.destroyed && socket.writable) reject(socket, 500, "internal error", tracker);
				},
			);
		} catch (e) {
			log.warn("websocket upgrade failed", { error: String(e) });
			socket.destroy();
		}
	});

	return new Promise((resolve, reject) => {
		const onError = (e: Error): void => reject(e);
		server.once("error", onError);
		server.listen({ host: opts.host, port: opts.port, reusePort: opts.reusePort ?? false }, () => {
			server.off("error", onError);
			server.on("error", (e) => log.error("http server error", { error: e.message }));
			const address = server.address();
			const port = typeof address === "object" && address !== null ? address.port : opts.port;
			resolve({
				port,
				get sessions() {
					return sessions.size;
				},
				get connections() {
					return tracker.size;
				},
				drain(): void {
					draining = true;
				},
				setTls(tls: TlsFiles): void {
					if (!opts.tls) throw new Error("this listener was started without TLS");
					(server as HttpsServer).setSecureContext({ cert: tls.cert, key: tls.key });
				},
				async close(): Promise<void> {
					if (shuttingDown) return;
					shuttingDown = true;
					for (const s of sessions) s.close(0, "server shutting down");
					for (const s of authorizing) s.destroy();
					keepAlive.stop();
					const stopped = new Promise<void>((done) => server.close(() => done()));
					server.closeAllConnections();
					// Give the closing handshakes up to 2 s, then cut whatever is left.
					const sockets = [...upgraded].map((s) => new Promise<void>((done) => s.once("close", () => done())));
					let timer: ReturnType<typeof setTimeout> | undefined;
					const timeout = new Promise<void>((done) => {
						timer = setTimeout(done, 2000);
					});
					await Promise.race([Promise.all(sockets), timeout]);
					clearTimeout(timer);
					for (const s of upgraded) s.destroy();
					await stopped;
					tracker.stop();
				},
			});
		});
	});
}

/** Connections the internal listener holds at once; more are closed at accept (a scraper needs one or two). */
export const INTERNAL_MAX_CONNECTIONS = 64;

export interface InternalServerOptions {
	host: string;
	/** 0 picks a free one. */
	port: number;
	/**
	 * The routes it serves: health and the ops routes (metrics, the status page). Never the media
	 * routes, the fingerprint or WebSocket upgrades (an upgrade request is answered 404 and closed).
	 */
	routes: Pick<RouteOptions, "health" | "metrics" | "status" | "gcProbe" | "cluster">;
	log?: Logger;
	limits?: Partial<Pick<RelayConfig["limits"], "httpHeaderTimeoutMs" | "idleTimeoutMs">>;
}

export interface InternalServerHandle {
	readonly port: number;
	readonly connections: number;
	close(): Promise<void>;
}

/**
 * `[internal] listen` (moq-relay's ops listener, `rs/moq-relay/src/internal.rs`): plain HTTP/1.1 on
 * a trusted address for the unauthenticated ops routes. Same header and idle deadlines as the public
 * listener (connections.ts), at most INTERNAL_MAX_CONNECTIONS connections, and outside the relay's
 * TCP admission, so a flood on the public port cannot lock the operator out.
 */
export function startInternalServer(opts: InternalServerOptions): Promise<InternalServerHandle> {
	const log = opts.log ?? silentLogger;
	const headerTimeoutMs = opts.limits?.httpHeaderTimeoutMs ?? DEFAULT_LIMITS.httpHeaderTimeoutMs;
	const idleTimeoutMs = opts.limits?.idleTimeoutMs ?? DEFAULT_LIMITS.idleTimeoutMs;
	const tracker = new ConnectionTracker({ admission: null, headerTimeoutMs, idleTimeoutMs, log });
	const routes: RouteOptions = { ...opts.routes };
	const server = createHttpServer(
		{ headersTimeout: headerTimeoutMs, requestTimeout: Math.max(30_000, headerTimeoutMs), keepAliveTimeout: 5_000 },
		(req, res) => {
			const socket = req.socket;
			tracker.request(socket);
			res.once("close", () => tracker.responseDone(socket));
			handleRequest(req, res, routes);
		},
	);
	server.maxConnections = INTERNAL_MAX_CONNECTIONS;
	server.on("connection", (socket: Socket) => tracker.accept(socket));
	server.on("upgrade", (_req: IncomingMessage, socket: Duplex) => {
		socket.on("error", ignore);
		reject(socket, 404, "not found", tracker);
	});
	server.on("clientError", (_err: Error, socket: Duplex) => {
		if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
		tracker.linger(socket);
	});
	return new Promise((resolve, fail) => {
		const onError = (e: Error): void => fail(e);
		server.once("error", onError);
		server.listen({ host: opts.host, port: opts.port }, () => {
			server.off("error", onError);
			server.on("error", (e) => log.error("internal http server error", { error: e.message }));
			const address = server.address();
			const port = typeof address === "object" && address !== null ? address.port : opts.port;
			let closing: Promise<void> | null = null;
			resolve({
				port,
				get connections() {
					return tracker.size;
				},
				close(): Promise<void> {
					closing ??= new Promise<void>((done) => {
						server.close(() => done());
						server.closeAllConnections();
					}).then(() => tracker.stop());
					return closing;
				},
			});
		});
	});
}
