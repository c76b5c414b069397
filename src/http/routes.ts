/**
 * The plain HTTP routes of the relay's TCP listener: the certificate fingerprint that browsers pin
 * for WebTransport on `http://` URLs, health and metrics. Everything else is a 404.
 */
import type { IncomingMessage, ServerResponse } from "node:http";

export interface RouteOptions {
	/** Lowercase hex SHA-256 of the leaf certificate's DER, or null when there is none. */
	fingerprint: () => string | null;
	/** The /health body; a `status` other than "ok" (e.g. "starting", "draining") answers 503. */
	health?: () => unknown;
	metrics?: () => string;
}

const CORS: Record<string, string> = { "access-control-allow-origin": "*" };

function send(res: ServerResponse, status: number, type: string, body: string, head: boolean): void {
	res.writeHead(status, {
		...CORS,
		"content-type": type,
		"content-length": Buffer.byteLength(body),
		"cache-control": "no-store",
	});
	res.end(head ? undefined : body);
}

/** Handles one request. Never throws: a failing callback becomes a 500. */
export function handleRequest(req: IncomingMessage, res: ServerResponse, opts: RouteOptions): void {
	try {
		route(req, res, opts);
	} catch {
		if (!res.headersSent) send(res, 500, "text/plain", "internal error", req.method === "HEAD");
		else res.destroy();
	}
}

function route(req: IncomingMessage, res: ServerResponse, opts: RouteOptions): void {
	const method = req.method ?? "GET";
	if (method === "OPTIONS") {
		res.writeHead(204, {
			...CORS,
			"access-control-allow-methods": "GET, HEAD, OPTIONS",
			"access-control-allow-headers": req.headers["access-control-request-headers"] ?? "*",
			"access-control-max-age": "86400",
			"content-length": 0,
		});
		res.end();
		return;
	}
	const head = method === "HEAD";
	if (method !== "GET" && !head) {
		send(res, 404, "text/plain", "not found", false);
		return;
	}
	const url = req.url ?? "/";
	const q = url.indexOf("?");
	const path = q < 0 ? url : url.slice(0, q);
	switch (path) {
		case "/certificate.sha256": {
			const fp = opts.fingerprint();
			// No trailing newline: the client hex-decodes the body and throws on an odd length.
			if (fp === null) send(res, 404, "text/plain", "no certificate", head);
			else send(res, 200, "text/plain", fp, head);
			return;
		}
		case "/health": {
			// Load balancers take a node out on anything but 2xx: 503 while starting or draining.
			const body = opts.health?.() ?? { status: "ok" };
			const status = (body as { status?: unknown }).status;
			send(res, status === undefined || status === "ok" ? 200 : 503, "application/json", JSON.stringify(body), head);
			return;
		}
		case "/metrics":
			if (opts.metrics) send(res, 200, "text/plain; version=0.0.4; charset=utf-8", opts.metrics(), head);
			else send(res, 404, "text/plain", "not found", head);
			return;
		default:
			send(res, 404, "text/plain", "not found", head);
	}
}
