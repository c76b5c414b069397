/**
 * Server side of WebTransport over HTTP/3: wraps a QUIC TransportSession whose ALPN is "h3",
 * answers extended CONNECT requests, and hands each accepted WebTransport session to `onSession`
 * as a TransportSession of kind "webtransport".
 */

import { H3 } from "../errors/codes.ts";
import type { Logger } from "../log/logger.ts";
import { type ConnectVerdict, refusalStatus } from "../transport/authorize.ts";
import type { TransportSession } from "../transport/types.ts";
import type { ConnectStream } from "./connect.ts";
import { H3Connection, type WebTransportLimits } from "./connection.ts";
import { peerWebTransportSessions } from "./frames.ts";
import type { Field } from "./qpack.ts";
import { type ConnectRequest, parseConnectRequest, selectProtocol } from "./request.ts";
import { WtSession } from "./session.ts";
import { serializeSfString } from "./sfv.ts";

export interface WebTransportServerOptions {
	/** Our supported app protocols in preference order, e.g. ["moq-lite-05","moq-lite-04","moq-lite-03","moql"]. The first *client-offered* one we support wins. */
	protocols: string[];
	/**
	 * Decides on a CONNECT before it is answered: null (or `{ status: null }`) accepts, an HTTP status
	 * (404 unknown path, 401/403 auth, 429...) or `{ status, reason }` refuses, `reason` being sent as
	 * a text/plain body. May be async: the request is held until it settles (the QUIC idle timeout
	 * still applies). An accepting verdict's `bind` sees the session before `onSession`. A throw or a
	 * rejected promise answers 500.
	 */
	authorize?: (path: string, query: URLSearchParams, headers: Map<string, string>) => Verdict | PromiseLike<Verdict>;
	/** An accepted WebTransport session. Set its `onStream`/`onClose` synchronously. */
	onSession: (session: TransportSession) => void;
	limits?: WebTransportLimits;
	log?: Logger;
}

type Verdict = number | null | ConnectVerdict;

/** Requests that arrived before the client's SETTINGS wait for them (the draft forbids answering earlier). */
const MAX_EARLY_REQUESTS = 4;

/** Per HTTP/3 connection: CONNECTs whose `authorize` has not settled yet (they count as sessions). */
interface Pending {
	count: number;
}

/** Serves WebTransport on one HTTP/3 connection; the connection is returned so the relay can drain it. */
export function acceptHttp3(quic: TransportSession, opts: WebTransportServerOptions): H3Connection {
	const conn = new H3Connection(quic, true, opts.limits, opts.log);
	if (quic.protocol !== "h3") conn.log.warn("webtransport: QUIC ALPN is not h3", { alpn: quic.protocol });
	const early: [ConnectStream, Field[]][] = [];
	const pending: Pending = { count: 0 };

	conn.onRequest = (connect) => {
		connect.onEnded = () => conn.sessionRefused(connect.quic.id);
		connect.onHeaders = (fields) => {
			connect.final = true;
			if (conn.peerSettings !== null) {
				answer(conn, connect, fields, opts, pending);
			} else if (early.length < MAX_EARLY_REQUESTS) {
				early.push([connect, fields]);
			} else {
				refuse(conn, connect, 429);
			}
		};
	};
	conn.onPeerSettings = () => {
		for (const [connect, fields] of early.splice(0)) {
			if (!connect.peerEnded) answer(conn, connect, fields, opts, pending);
		}
	};
	conn.start();
	return conn;
}

function refuse(conn: H3Connection, connect: ConnectStream, status: number, reason?: string): void {
	connect.reject(status, reason);
	conn.sessionRefused(connect.quic.id);
}

function answer(
	conn: H3Connection,
	connect: ConnectStream,
	fields: Field[],
	opts: WebTransportServerOptions,
	pending: Pending,
): void {
	const request = parseConnectRequest(fields);
	if ("status" in request) {
		conn.log.debug("webtransport: request rejected", { status: request.status, reason: request.reason });
		refuse(conn, connect, request.status);
		return;
	}
	if (peerWebTransportSessions(conn.peerSettings!) === 0) {
		conn.log.debug("webtransport: client SETTINGS do not enable WebTransport and datagrams");
		refuse(conn, connect, 400);
		return;
	}
	if (conn.sessions.size + pending.count >= conn.limits.maxSessions) {
		refuse(conn, connect, 429);
		return;
	}
	if (opts.authorize === undefined) {
		accept(conn, connect, request, opts, null);
		return;
	}
	let verdict: Verdict | PromiseLike<Verdict>;
	try {
		verdict = opts.authorize(request.path, request.query, request.headers);
	} catch (err) {
		conn.log.error("webtransport: authorize threw", { err: String(err) });
		verdict = 500;
	}
	if (!isPromiseLike(verdict)) {
		decide(conn, connect, request, opts, verdict);
		return;
	}
	// Held until the check settles; the client's streams for this session wait (bounded) meanwhile.
	pending.count++;
	verdict.then(
		(v) => {
			pending.count--;
			if (stillWaiting(conn, connect)) decide(conn, connect, request, opts, v);
		},
		(err: unknown) => {
			pending.count--;
			conn.log.error("webtransport: authorize failed", { err: String(err) });
			if (stillWaiting(conn, connect)) refuse(conn, connect, 500, "internal error");
		},
	);
}

function isPromiseLike(v: unknown): v is PromiseLike<Verdict> {
	return typeof (v as { then?: unknown } | null)?.then === "function";
}

/** After an async check: is the request still there to answer? (A gone one was refused by onEnded.) */
function stillWaiting(conn: H3Connection, connect: ConnectStream): boolean {
	if (conn.closed || connect.sendDone) return false;
	if (connect.peerEnded) {
		// The client gave up on the request while we checked it (its end refused the session id).
		connect.sendDone = true;
		connect.quic.reset(H3.REQUEST_CANCELLED);
		return false;
	}
	return true;
}

function decide(
	conn: H3Connection,
	connect: ConnectStream,
	request: ConnectRequest,
	opts: WebTransportServerOptions,
	verdict: Verdict,
): void {
	if (verdict === null || (typeof verdict === "object" && verdict.status === null)) {
		accept(conn, connect, request, opts, typeof verdict === "object" ? verdict : null);
		return;
	}
	if (typeof verdict === "number") {
		refuse(conn, connect, refusalStatus(verdict));
		return;
	}
	conn.log.debug("webtransport: request refused", { status: verdict.status, reason: verdict.reason });
	refuse(conn, connect, refusalStatus(verdict.status), verdict.reason);
}

function accept(
	conn: H3Connection,
	connect: ConnectStream,
	request: ConnectRequest,
	opts: WebTransportServerOptions,
	verdict: ConnectVerdict | null,
): void {
	const protocol = selectProtocol(request.protocols, opts.protocols);
	const response: Field[] = [
		[":status", "200"],
		["sec-webtransport-http3-draft", "draft02"],
	];
	if (protocol !== null) response.push(["wt-protocol", serializeSfString(protocol)]);
	connect.sendHeaders(response, false);

	const session = new WtSession(conn, connect, protocol ?? "", request.path, request.query);
	connect.attach(session);
	conn.addSession(session);
	conn.log.debug("webtransport: session", { path: request.path, protocol: session.protocol });
	if (verdict !== null && verdict.status === null) verdict.bind?.(session);
	opts.onSession(session);
}
