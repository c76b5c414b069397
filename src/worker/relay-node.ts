import { Authenticator } from "../auth/index.ts";
import { CacheBudget } from "../cache/budget.ts";
import type { RelayConfig } from "../config/types.ts";
import { type HttpServerHandle, startHttpServer } from "../http/server.ts";
import type { Logger } from "../log/logger.ts";
import { MoqSession } from "../moq/session.ts";
import { Relay } from "../relay/relay.ts";
import type { TransportSession } from "../transport/types.ts";

export interface RelayNodeOptions {
	config: RelayConfig;
	log: Logger;
	/** The certificate fingerprint served at /certificate.sha256 (hex), or null. */
	fingerprint: () => string | null;
	/** TLS material for the QUIC listener (PEM). */
	tls: { cert: string; key: string };
	/** Bind with SO_REUSEPORT (several workers on one port). */
	reusePort?: boolean;
	/** Override ports (tests use 0 for ephemeral). */
	httpPort?: number;
	budget?: CacheBudget | null;
}

export interface RelayNode {
	readonly relay: Relay;
	readonly httpPort: number | null;
	close(): Promise<void>;
}

/**
 * One relay worker's runtime: the relay core plus its listeners (HTTP + WebSocket on TCP). Each
 * accepted transport session gets a moq-lite session bound to this worker's relay.
 */
export async function startRelayNode(opts: RelayNodeOptions): Promise<RelayNode> {
	const { config, log } = opts;
	const auth = await Authenticator.create(config.auth, config.source, {
		maxPathSegments: config.limits.maxPathSegments,
	});
	const budget = opts.budget === undefined ? CacheBudget.create(config.cache.totalBytes) : opts.budget;
	const relay = new Relay(config, log, budget);
	const sessions = new Set<MoqSession>();

	const onSession = (t: TransportSession) => {
		if (relay.figures.sessions >= config.limits.maxSessions) {
			t.close(17, "relay at its session limit");
			return;
		}
		const session = new MoqSession(t, {
			relay,
			log,
			authorize: (path, jwt) => auth.authorize(path, jwt),
		});
		sessions.add(session);
		const onClose = t.onClose;
		session.start();
		const sessionClose = t.onClose;
		t.onClose = (code, reason) => {
			sessions.delete(session);
			sessionClose?.(code, reason);
			onClose?.(code, reason);
		};
	};

	let http: HttpServerHandle | null = null;
	if (config.web.http) {
		http = await startHttpServer({
			host: config.web.http.host,
			port: opts.httpPort ?? config.web.http.port,
			reusePort: opts.reusePort ?? false,
			fingerprint: opts.fingerprint,
			onSession,
			health: () => ({ status: "ok", sessions: relay.figures.sessions, broadcasts: relay.figures.broadcasts }),
			log: (level: string, msg: string, fields?: object) =>
				(log as unknown as Record<string, (m: string, f?: object) => void>)[level]?.(msg, fields),
		});
	}

	return {
		relay,
		httpPort: http?.port ?? null,
		async close() {
			for (const s of sessions) s.close(0, "relay shutting down");
			await http?.close();
		},
	};
}
