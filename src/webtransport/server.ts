/**
 * Server side of WebTransport over HTTP/3: wraps a QUIC TransportSession whose ALPN is "h3",
 * answers extended CONNECT requests, and hands each accepted WebTransport session to `onSession`
 * as a TransportSession of kind "webtransport".
 */

import type { TransportSession } from "../transport/types.ts";
import type { ConnectStream } from "./connect.ts";
import { H3Connection, type LogFn, type WebTransportLimits } from "./connection.ts";
import { peerWebTransportSessions } from "./frames.ts";
import type { Field } from "./qpack.ts";
import { parseConnectRequest, selectProtocol } from "./request.ts";
import { WtSession } from "./session.ts";
import { serializeSfString } from "./sfv.ts";

export interface WebTransportServerOptions {
	/** Our supported app protocols in preference order, e.g. ["moq-lite-05","moq-lite-04","moq-lite-03","moql"]. The first *client-offered* one we support wins. */
	protocols: string[];
	/** Decides on a CONNECT: null accepts, an HTTP status (404 unknown path, 401/403 auth, 429...) rejects. */
	authorize?: (path: string, query: URLSearchParams, headers: Map<string, string>) => number | null;
	/** An accepted WebTransport session. Set its `onStream`/`onClose` synchronously. */
	onSession: (session: TransportSession) => void;
	limits?: WebTransportLimits;
	log?: LogFn;
}

/** Requests that arrived before the client's SETTINGS wait for them (the draft forbids answering earlier). */
const MAX_EARLY_REQUESTS = 4;

export function acceptHttp3(quic: TransportSession, opts: WebTransportServerOptions): void {
	const conn = new H3Connection(quic, true, opts.limits, opts.log);
	if (quic.protocol !== "h3") conn.log("warn", "webtransport: QUIC ALPN is not h3", { alpn: quic.protocol });
	const early: [ConnectStream, Field[]][] = [];

	conn.onRequest = (connect) => {
		connect.onEnded = () => conn.sessionRefused(connect.quic.id);
		connect.onHeaders = (fields) => {
			connect.final = true;
			if (conn.peerSettings !== null) {
				answer(conn, connect, fields, opts);
			} else if (early.length < MAX_EARLY_REQUESTS) {
				early.push([connect, fields]);
			} else {
				refuse(conn, connect, 429);
			}
		};
	};
	conn.onPeerSettings = () => {
		for (const [connect, fields] of early.splice(0)) {
			if (!connect.peerEnded) answer(conn, connect, fields, opts);
		}
	};
	conn.start();
}

function refuse(conn: H3Connection, connect: ConnectStream, status: number): void {
	connect.reject(status);
	conn.sessionRefused(connect.quic.id);
}

function answer(conn: H3Connection, connect: ConnectStream, fields: Field[], opts: WebTransportServerOptions): void {
	const request = parseConnectRequest(fields);
	if ("status" in request) {
		conn.log("debug", "webtransport: request rejected", { status: request.status, reason: request.reason });
		refuse(conn, connect, request.status);
		return;
	}
	if (peerWebTransportSessions(conn.peerSettings!) === 0) {
		conn.log("debug", "webtransport: client SETTINGS do not enable WebTransport and datagrams");
		refuse(conn, connect, 400);
		return;
	}
	if (conn.sessions.size >= conn.limits.maxSessions) {
		refuse(conn, connect, 429);
		return;
	}
	let status: number | null = null;
	if (opts.authorize !== undefined) {
		try {
			status = opts.authorize(request.path, request.query, request.headers);
		} catch (err) {
			conn.log("error", "webtransport: authorize threw", { err: String(err) });
			status = 500;
		}
	}
	if (status !== null) {
		refuse(conn, connect, Number.isInteger(status) && status >= 400 && status <= 599 ? status : 500);
		return;
	}

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
	conn.log("debug", "webtransport: session", { path: request.path, protocol: session.protocol });
	opts.onSession(session);
}
