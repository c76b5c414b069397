/**
 * Authorising a session at the listener, before it is accepted: the WebSocket upgrade and the
 * HTTP/3 extended CONNECT are held until the verdict, then answered with a real HTTP status (401,
 * 403, ...) and a short text, or accepted. The listener knows nothing about tokens; the relay node
 * supplies the check (worker/relay-node.ts) and hands what it verified to the session via `bind`.
 * @module
 */
import type { TransportKind, TransportSession } from "./types.ts";

/** What a listener knows of a request it has not answered yet. */
export interface AuthorizeRequest {
	readonly transport: Exclude<TransportKind, "quic">;
	/** The percent-decoded URL path, leading "/" kept. */
	readonly path: string;
	readonly query: URLSearchParams;
	/** "ip:port" of the peer, for logs. */
	readonly remote: string;
}

/** Accept. `bind` sees the new session before the listener's `onSession` does. */
export interface ConnectAccepted {
	readonly status: null;
	bind?(session: TransportSession): void;
}

/** Refuse with an HTTP status (4xx/5xx) and a short plain-text reason (sent as the body; never a secret). */
export interface ConnectRefused {
	readonly status: number;
	readonly reason: string;
}

export type ConnectVerdict = ConnectAccepted | ConnectRefused;

/** The listener's check. A rejected promise or a throw answers 500. */
export type ConnectAuthorizer = (request: AuthorizeRequest) => ConnectVerdict | Promise<ConnectVerdict>;

/** A refusal status clamped to 4xx/5xx (anything else becomes 500). */
export function refusalStatus(status: number): number {
	return Number.isInteger(status) && status >= 400 && status <= 599 ? status : 500;
}
