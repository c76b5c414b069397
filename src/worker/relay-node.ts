import type dgram from "node:dgram";
import { AuthError, Authenticator, type Grant } from "../auth/index.ts";
import { tokenFromQuery } from "../auth/params.ts";
import { CacheBudget } from "../cache/budget.ts";
import type { RelayConfig } from "../config/types.ts";
import { CANCEL, UNSUPPORTED } from "../errors/codes.ts";
import { mediaRoutes } from "../http/media.ts";
import {
	type HttpServerHandle,
	type InternalServerHandle,
	startHttpServer,
	startInternalServer,
} from "../http/server.ts";
import type { Logger } from "../log/logger.ts";
import { CompatDispatch, type RelaySession } from "../moq/ietf/compat.ts";
import { IetfSession } from "../moq/ietf/session.ts";
import { IETF_ALPNS, isIetfProtocol } from "../moq/ietf/version.ts";
import { type DialTarget, MoqSession } from "../moq/lite/session.ts";
import { SUPPORTED_ALPNS } from "../moq/lite/wire/version.ts";
import { QuicServer } from "../quic/server.ts";
import { Relay } from "../relay/relay.ts";
import { Admission, type AdmissionLimits } from "../transport/admission.ts";
import type { AuthorizeRequest, ConnectVerdict } from "../transport/authorize.ts";
import { refuse } from "../transport/refusals.ts";
import type { TransportSession } from "../transport/types.ts";
import type { H3Connection } from "../webtransport/connection.ts";
import { acceptHttp3 } from "../webtransport/server.ts";

export interface RelayNodeOptions {
	config: RelayConfig;
	log: Logger;
	/** The certificate fingerprint served at /certificate.sha256 (hex), or null. */
	fingerprint: () => string | null;
	/** TLS material for the QUIC listener (PEM). */
	tls: { cert: string; key: string };
	/** Bind with SO_REUSEPORT (several workers on one port). */
	reusePort?: boolean;
	/** Port override for QUIC (tests use 0); HTTP then follows on the same port number unless web.http says otherwise. */
	port?: number;
	budget?: CacheBudget | null;
	/** Relay-wide admission counts shared by the workers; default: this node alone. */
	admission?: Admission;
	/** QUIC Retry token key shared by every worker (quic/retry.ts); default: a key of this node's own. */
	retryKey?: Uint8Array;
	/** This worker's index (encoded in QUIC connection IDs) and the relay-wide hop id. */
	worker?: number;
	hopId?: number;
	/** Called with the relay core before any listener opens (the multi-worker link attaches here). */
	setup?: (relay: Relay) => void;
	/** A QUIC packet for a connection another worker owns. */
	onForeignPacket?: (packet: Buffer, rinfo: dgram.RemoteInfo, owner: number) => void;
	/** Prometheus text for GET /metrics. */
	metrics?: () => string;
	/** The /cluster page's data (links and routes). */
	cluster?: () => unknown;
	/** The status page's data for GET /status (and the page at /), served wherever /metrics is. */
	status?: () => Promise<unknown>;
	/** `/debug/gc-probe` (only with MOQ_FANOUT_GC_PROBE=1; src/worker/gc-probe.ts), served wherever /metrics is. */
	gcProbe?: (query: URLSearchParams) => Promise<unknown>;
	/** Single-socket fallback: this worker owns the socket and spreads new connections over `spread` workers. */
	spreadInitials?: number;
	/** Single-socket fallback: this worker has no socket; its packets leave through the owner. */
	egress?: (buf: Buffer, length: number, port: number, host: string) => void;
	/** Skip the TCP listener (single-socket fallback: only the socket owner listens). */
	noHttp?: boolean;
	/**
	 * The relay-wide readiness for /health (the worker pool's: "starting" until every worker is up,
	 * "draining" once the relay drains). Default: this node alone ("ok", or "draining" after `drain`).
	 */
	readiness?: () => { status: "ok" | "starting" | "draining"; ready: number; workers: number };
}

export interface SessionCounts {
	quic: number;
	webtransport: number;
	websocket: number;
}

export interface RelayNode {
	readonly relay: Relay;
	/** Runs a moq-lite session over a transport this relay dialled (a cluster link). */
	dialSession(t: TransportSession, dial: DialTarget): MoqSession;
	readonly httpPort: number | null;
	readonly httpsPort: number | null;
	/** The `[internal] listen` port (worker 0 only), or null. */
	readonly internalPort: number | null;
	readonly quicPort: number;
	readonly quic: QuicServer;
	readonly sessionsByKind: SessionCounts;
	readonly admission: Admission;
	/** Open TCP connections of this node (HTTP, HTTPS, WebSocket). */
	tcpConnections(): number;
	setCertificate(cert: string, key: string): void;
	/**
	 * Graceful drain: new sessions are refused (QUIC handshakes get CONNECTION_REFUSED, WebSocket
	 * upgrades 503, WebTransport CONNECTs after our GOAWAY H3_REQUEST_REJECTED); every open session
	 * is told to go (moq-lite GOAWAY with `uri` where its version has it; HTTP/3 GOAWAY and the
	 * WebTransport DRAIN capsule) and keeps being served until `close`. Returns what was sent.
	 */
	drain(uri: string): { sessions: number; goaway: number; h3: number };
	readonly draining: boolean;
	close(): Promise<void>;
}

/** moq-lite first (preferred), then IETF moq-transport (src/moq/ietf). */
const WT_PROTOCOLS = [...SUPPORTED_ALPNS, ...IETF_ALPNS];

/** The relay-wide limits of a config, as Admission enforces them. */
export function admissionLimits(config: RelayConfig): AdmissionLimits {
	const l = config.limits;
	return {
		maxSessions: l.maxSessions,
		maxTcpConnections: l.maxTcpConnections,
		maxConnectionsPerIp: l.maxConnectionsPerIp,
		handshakeRatePerIp: l.handshakeRatePerIp,
	};
}

/**
 * One relay worker's runtime: the relay core plus its listeners. QUIC on UDP carries raw moq-lite
 * (ALPN moq-lite-0X / moql) and HTTP/3 WebTransport (ALPN h3); HTTP + WebSocket (qmux) listen on
 * TCP. Every accepted transport session gets a moq-lite session bound to this worker's relay.
 */
export async function startRelayNode(opts: RelayNodeOptions): Promise<RelayNode> {
	const { config, log } = opts;
	const auth = await Authenticator.create(config.auth, config.source, {
		maxPathSegments: config.limits.maxPathSegments,
	});
	const budget = opts.budget === undefined ? CacheBudget.create(config.cache.totalBytes) : opts.budget;
	const relay = new Relay(config, log, budget, opts.worker ?? 0, opts.hopId);
	opts.setup?.(relay);
	const admission = opts.admission ?? new Admission(admissionLimits(config));
	const sessions = new Set<RelaySession>();
	const byKind: SessionCounts = { quic: 0, webtransport: 0, websocket: 0 };
	/** HTTP/3 connections (WebTransport), to send them GOAWAY when draining. */
	const h3 = new Set<H3Connection>();
	let draining = false;

	/**
	 * Tokens are checked by the listener, before the WebSocket upgrade or the WebTransport CONNECT is
	 * answered: a refusal gets HTTP 401/403 (AuthError.httpStatus) with a short text instead of
	 * 101/200 and a moq-lite close. The grant it verified is kept per transport session, so the moq
	 * session (which authorises its path and token when it starts) does not verify the token again.
	 * Raw QUIC has no request to refuse: its path and token arrive in the lite-05 SETUP and the
	 * session checks them (close code 6).
	 */
	const verified = new WeakMap<TransportSession, { path: string; jwt: string | null; grant: Grant }>();
	const authorizeConnect = async (request: AuthorizeRequest): Promise<ConnectVerdict> => {
		const jwt = tokenFromQuery(request.query);
		try {
			const grant = await auth.authorize(request.path, jwt);
			return { status: null, bind: (t) => verified.set(t, { path: request.path, jwt, grant }) };
		} catch (err) {
			if (!(err instanceof AuthError)) throw err;
			// err.message is safe to log (no token: quoted paths and kids only).
			refuse("auth", log.info, {
				remote: request.remote,
				transport: request.transport,
				status: err.httpStatus,
				why: err.message,
			});
			return { status: err.httpStatus, reason: err.httpText };
		}
	};

	/** A cluster link this relay dialled: a session like any other, but the peer is not asked to authenticate. */
	const dialSession = (t: TransportSession, dial: DialTarget): MoqSession => {
		const session = new MoqSession(t, {
			relay,
			log,
			authorize: () => Promise.reject(new Error("a dialled link is not authorised by its peer")),
			dial,
		});
		sessions.add(session);
		byKind[t.kind]++;
		session.start();
		const sessionClose = t.onClose;
		t.onClose = (code, reason, graceful) => {
			sessions.delete(session);
			byKind[t.kind]--;
			sessionClose?.(code, reason, graceful);
		};
		return session;
	};

	const onSession = (t: TransportSession) => {
		if (draining) {
			// A WebTransport CONNECT answered just before the drain, or a handshake already under way.
			t.close(UNSUPPORTED, "relay draining");
			return;
		}
		// Relay-wide, not per worker: the count is shared by every worker (transport/admission.ts).
		if (!admission.tryOpenSession()) {
			refuse("sessions", log.warn, { remote: t.remote, transport: t.kind });
			t.close(UNSUPPORTED, "relay at its session limit");
			return;
		}
		const pre = verified.get(t);
		const authorize = (path: string, jwt: string | null): Promise<Grant> =>
			pre !== undefined && pre.path === path && pre.jwt === jwt
				? Promise.resolve(pre.grant)
				: auth.authorize(path, jwt);
		// The dialect: IETF moq-transport by its protocol name, moq-lite by its own, and for "moql" or
		// none the 0x20 CLIENT_SETUP's version list decides (src/moq/ietf/compat.ts).
		const lite = () => new MoqSession(t, { relay, log, authorize });
		const ietf = () => new IetfSession(t, { relay, log, authorize });
		const session: RelaySession = isIetfProtocol(t.protocol)
			? ietf()
			: t.protocol === "moql" || t.protocol === ""
				? new CompatDispatch(t, { lite, ietf, log })
				: lite();
		sessions.add(session);
		byKind[t.kind]++;
		session.start();
		const sessionClose = t.onClose;
		t.onClose = (code, reason, graceful) => {
			admission.closeSession();
			sessions.delete(session);
			byKind[t.kind]--;
			sessionClose?.(code, reason, graceful);
		};
	};

	/** moq-relay's GET /announced and /fetch on the public listeners, scoped by ?jwt= like a viewer. */
	const media = mediaRoutes({ relay, auth, log });
	/**
	 * The ops routes (unauthenticated: metrics, the status page). With `[internal] listen` set they
	 * are served by the internal listener alone (404 on the public ones); without it, publicly as before.
	 */
	const ops = { metrics: opts.metrics, status: opts.status, gcProbe: opts.gcProbe, cluster: opts.cluster };
	const publicOps = config.internal.listen === null ? ops : {};
	/**
	 * The internal listener is opened by worker 0 alone: one socket on one well-defined address (port
	 * 0 means one port, not one per worker), no dependence on SO_REUSEPORT, and nothing lost, since
	 * metrics, /health and the status page are relay-wide (shared memory / asked of every worker).
	 * While worker 0 restarts the address is briefly closed; the public /health still answers.
	 */
	const internalHere = config.internal.listen !== null && (opts.worker ?? 0) === 0;

	const quicLog = log.child({ layer: "quic" });
	const health = () => ({
		...(opts.readiness?.() ?? { status: draining ? "draining" : "ok" }),
		worker: relay.worker,
		sessions: relay.figures.sessions,
		broadcasts: relay.figures.broadcasts,
	});

	/** Opens QUIC, then HTTP (and HTTPS) on TCP; if a TCP bind fails, closes what it opened (no leaked sockets). */
	const listen = async (quicPort: number) => {
		const quic = await QuicServer.listen({
			host: config.server.bind.host,
			port: quicPort,
			reusePort: opts.reusePort ?? false,
			cert: opts.tls.cert,
			key: opts.tls.key,
			alpns: [...SUPPORTED_ALPNS, ...IETF_ALPNS, "h3"],
			workerIndex: opts.worker ?? 0,
			onForeignPacket: opts.onForeignPacket,
			spreadInitials: opts.spreadInitials,
			egress: opts.egress,
			admission,
			quic: config.server.quic,
			retryKey: opts.retryKey,
			log: quicLog,
			onSession: (conn) => {
				if (conn.protocol === "h3") {
					const h3conn = acceptHttp3(conn, {
						protocols: WT_PROTOCOLS,
						onSession,
						log,
						authorize: (path, query) =>
							authorizeConnect({ transport: "webtransport", path, query, remote: conn.remote }),
					});
					if (h3conn.closed) return;
					h3.add(h3conn);
					const closed = h3conn.onClosed;
					h3conn.onClosed = (code, reason) => {
						h3.delete(h3conn);
						closed?.(code, reason);
					};
					if (draining) h3conn.drain();
				} else onSession(conn);
			},
		});
		let http: HttpServerHandle | null = null;
		let https: HttpServerHandle | null = null;
		let internal: InternalServerHandle | null = null;
		try {
			if (config.web.http && !opts.noHttp) {
				// Browsers fetch the fingerprint from the same host:port they then dial over UDP, so an
				// ephemeral QUIC port is mirrored on TCP.
				const sameAsQuic = config.web.http.port === config.server.bind.port;
				http = await startHttpServer({
					host: config.web.http.host,
					port: opts.port === 0 ? (sameAsQuic ? quic.port : 0) : config.web.http.port,
					reusePort: opts.reusePort ?? false,
					fingerprint: opts.fingerprint,
					onSession,
					authorize: authorizeConnect,
					...publicOps,
					media,
					health,
					log,
					admission,
					limits: config.limits,
				});
			}
			// The same routes and WebSocket endpoint over TLS (wss://), with the QUIC certificate.
			if (config.web.https && !opts.noHttp) {
				https = await startHttpServer({
					host: config.web.https.host,
					port: opts.port === 0 ? 0 : config.web.https.port,
					reusePort: opts.reusePort ?? false,
					tls: { cert: opts.tls.cert, key: opts.tls.key },
					fingerprint: opts.fingerprint,
					onSession,
					authorize: authorizeConnect,
					...publicOps,
					media,
					health,
					log,
					admission,
					limits: config.limits,
				});
			}
			if (internalHere && config.internal.listen) {
				internal = await startInternalServer({
					host: config.internal.listen.host,
					port: config.internal.listen.port,
					routes: { health, ...ops },
					log,
					limits: config.limits,
				});
				log.info("internal listener (metrics, health, status; unauthenticated)", {
					address: `${config.internal.listen.host}:${internal.port}`,
				});
			}
		} catch (err) {
			await http?.close();
			await https?.close();
			await quic.close();
			throw err;
		}
		return { quic, http, https, internal };
	};

	// An ephemeral UDP port may be taken on TCP by someone else: pick another (tests and benches).
	let listeners: Awaited<ReturnType<typeof listen>> | undefined;
	for (let attempt = 0; listeners === undefined; attempt++) {
		try {
			listeners = await listen(opts.port ?? config.server.bind.port);
		} catch (err) {
			if (opts.port !== 0 || (err as NodeJS.ErrnoException).code !== "EADDRINUSE" || attempt >= 9) throw err;
		}
	}
	const { quic, http, https, internal } = listeners;

	return {
		relay,
		dialSession,
		httpPort: http?.port ?? null,
		httpsPort: https?.port ?? null,
		internalPort: internal?.port ?? null,
		quicPort: quic.port,
		quic,
		sessionsByKind: byKind,
		admission,
		tcpConnections: () => (http?.connections ?? 0) + (https?.connections ?? 0),
		setCertificate(cert: string, key: string) {
			quic.setCertificate(cert, key);
			https?.setTls({ cert, key });
		},
		get draining() {
			return draining;
		},
		drain(uri: string) {
			const sent = { sessions: sessions.size, goaway: 0, h3: h3.size };
			if (draining) return sent;
			draining = true;
			quic.drain();
			http?.drain();
			https?.drain();
			for (const c of h3) c.drain();
			for (const s of sessions) if (s.goaway(uri)) sent.goaway++;
			return sent;
		},
		async close() {
			for (const s of sessions) s.close(CANCEL, "relay shutting down");
			await http?.close();
			await https?.close();
			await internal?.close();
			await quic.close();
		},
	};
}
