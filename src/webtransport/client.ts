/**
 * Client side of WebTransport over HTTP/3 (for tests, benchmarks and relay-to-relay links): sends
 * SETTINGS, waits for the server's, then an extended CONNECT; resolves with the session once the
 * server answers 2xx.
 */

import { H3 } from "../errors/codes.ts";
import type { Logger } from "../log/logger.ts";
import type { TransportSession } from "../transport/types.ts";
import { ConnectStream } from "./connect.ts";
import { H3Connection, type WebTransportLimits } from "./connection.ts";
import { peerWebTransportSessions } from "./frames.ts";
import type { Field } from "./qpack.ts";
import { WtSession } from "./session.ts";
import { parseProtocolItem, serializeSfStringList } from "./sfv.ts";

export interface WebTransportClientOptions {
	limits?: WebTransportLimits;
	log?: Logger;
	/** Sent as the `origin` header when set (browsers always send one). */
	origin?: string;
	/** Deadline for SETTINGS + CONNECT + response (ms); the connection is closed when it passes. Default 10 s. */
	timeoutMs?: number;
}

/** The server answered the CONNECT with a non-2xx status. */
export class WebTransportRejectedError extends Error {
	readonly status: number;
	constructor(status: number) {
		super(`WebTransport CONNECT rejected with status ${status}`);
		this.status = status;
	}
}

export function connectWebTransport(
	quic: TransportSession,
	url: URL,
	protocols: string[],
	opts: WebTransportClientOptions = {},
): Promise<TransportSession> {
	return new Promise((resolve, reject) => {
		const conn = new H3Connection(quic, false, opts.limits, opts.log);
		let settled = false;
		const timer = setTimeout(
			() => fail(new Error("WebTransport handshake timed out"), H3.REQUEST_CANCELLED),
			opts.timeoutMs ?? 10_000,
		);
		const fail = (err: Error, closeCode: number | null) => {
			if (settled) return;
			settled = true;
			clearTimeout(timer);
			reject(err);
			if (closeCode !== null) conn.close(closeCode, err.message);
		};
		conn.onClosed = (code, reason) => fail(new Error(`connection closed (0x${code.toString(16)}) ${reason}`), null);

		conn.onPeerSettings = () => {
			if (settled) return;
			if (peerWebTransportSessions(conn.peerSettings!) === 0) {
				fail(new Error("server SETTINGS do not enable WebTransport"), H3.NO_ERROR);
				return;
			}
			const stream = quic.openBidi();
			if (stream === null) {
				fail(new Error("no bidirectional stream credit for CONNECT"), H3.NO_ERROR);
				return;
			}
			const connect = new ConnectStream(stream, conn);
			connect.onEnded = () => fail(new Error("CONNECT stream ended without a response"), H3.NO_ERROR);
			connect.onHeaders = (fields) => {
				const status = Number(fields.find(([name]) => name === ":status")?.[1]);
				if (!Number.isInteger(status) || status < 100 || status > 599) {
					fail(new Error("response without a valid :status"), H3.MESSAGE_ERROR);
					return;
				}
				if (status < 200) return; // interim response; the final one follows
				connect.final = true;
				if (status > 299) {
					fail(new WebTransportRejectedError(status), H3.NO_ERROR);
					return;
				}
				// An unparsable or unoffered wt-protocol means none was negotiated (what Chromium does).
				const value = fields.find(([name]) => name === "wt-protocol")?.[1];
				const chosen = value === undefined ? null : parseProtocolItem(value);
				const protocol = chosen !== null && protocols.includes(chosen) ? chosen : "";
				const session = new WtSession(conn, connect, protocol, decodePath(url.pathname), url.searchParams);
				connect.attach(session);
				conn.addSession(session);
				settled = true;
				clearTimeout(timer);
				resolve(session);
			};
			connect.sendHeaders(requestFields(url, protocols, opts.origin), false);
		};
		conn.start();
	});
}

function requestFields(url: URL, protocols: string[], origin: string | undefined): Field[] {
	const fields: Field[] = [
		[":method", "CONNECT"],
		[":scheme", "https"],
		[":authority", url.host],
		[":path", `${url.pathname}${url.search}`],
		[":protocol", "webtransport"],
		["sec-webtransport-http3-draft02", "1"],
	];
	if (protocols.length > 0) fields.push(["wt-available-protocols", serializeSfStringList(protocols)]);
	if (origin !== undefined) fields.push(["origin", origin]);
	return fields;
}

function decodePath(pathname: string): string {
	try {
		return decodeURIComponent(pathname);
	} catch {
		return pathname;
	}
}
