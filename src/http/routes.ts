/**
 * The plain HTTP routes of the relay's TCP listeners: the certificate fingerprint that browsers pin
 * for WebTransport on `http://` URLs, health, moq-relay's media routes (/announced, /fetch: see
 * media.ts), and the ops routes (metrics, the status page). Everything else is a 404.
 *
 * Two listeners use these routes with different options. The public one ([web.http], [web.https])
 * gets the fingerprint, health and the media routes, and the ops routes only while `[internal]
 * listen` is unset. The internal one ([internal] listen, server.ts `startInternalServer`) gets
 * health and the ops routes only. An ops route answers 404 where its option is absent, so leaving
 * it out of a listener's options is what keeps it off that listener.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { sendStatus, sendStatusPage } from "./status-page.ts";

/** moq-relay's /announced and /fetch (media.ts). Each answers on its own and never throws. */
export interface MediaRoutes {
	/** `prefix`: the percent-decoded path after "/announced" (may be empty). */
	announced(prefix: string, query: URLSearchParams, res: ServerResponse, head: boolean): void;
	/** `path`: the percent-decoded "<broadcast>/<track>" after "/fetch/". */
	fetch(path: string, query: URLSearchParams, res: ServerResponse, head: boolean): void;
}

export interface RouteOptions {
	/** Lowercase hex SHA-256 of the leaf certificate's DER, or null when there is none. Absent: 404. */
	fingerprint?: () => string | null;
	/** The /health body; a `status` other than "ok" (e.g. "starting", "draining") answers 503. */
	health?: () => unknown;
	/** Public listener only: GET /announced[/prefix] and /fetch/<broadcast>/<track>. Absent: 404. */
	media?: MediaRoutes;
	// ── Ops routes: unauthenticated, internal-only when [internal] listen is set (see above) ──
	metrics?: () => string;
	/** The status page's data (`/status` JSON; the page at `/`); both 404 without it. Same visibility as metrics. */
	status?: () => Promise<unknown>;
	/**
	 * `/debug/gc-probe`: the GC probe's counts in every worker (src/worker/gc-probe.ts). Only given
	 * when the relay runs with MOQ_FANOUT_GC_PROBE=1 (tests); 404 otherwise. Same visibility as metrics.
	 */
	gcProbe?: (query: URLSearchParams) => Promise<unknown>;
	/** `/cluster`: the cluster's links (peers, state, RTT, backoff) and the routes per broadcast. Same visibility as metrics. */
	cluster?: () => unknown;
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
			const fp = opts.fingerprint?.() ?? null;
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
		// ── Ops routes (internal-only when [internal] listen is set; add new ones below, each behind
		// an option the relay node passes to the same listener as `metrics`) ──
		case "/metrics":
			if (opts.metrics) send(res, 200, "text/plain; version=0.0.4; charset=utf-8", opts.metrics(), head);
			else send(res, 404, "text/plain", "not found", head);
			return;
		// --- status page (src/http/status-page.ts): served wherever /metrics is ---
		case "/":
			if (opts.status) sendStatusPage(res, head);
			else send(res, 404, "text/plain", "not found", head);
			return;
		case "/status":
			if (opts.status) sendStatus(res, head, opts.status);
			else send(res, 404, "text/plain", "not found", head);
			return;
		// --- end status page ---
		case "/cluster":
			if (opts.cluster) sendStatus(res, head, async () => opts.cluster!());
			else send(res, 404, "text/plain", "not found", head);
			return;
		case "/debug/gc-probe":
			if (opts.gcProbe) {
				const query = new URLSearchParams(q < 0 ? "" : url.slice(q + 1));
				sendStatus(res, head, () => opts.gcProbe!(query));
			} else send(res, 404, "text/plain", "not found", head);
			return;
		default:
			if (opts.media && media(path, url.slice(path.length), res, head, opts.media)) return;
			send(res, 404, "text/plain", "not found", head);
	}
}

/** moq-relay's `/announced`, `/announced/{*prefix}` and `/fetch/{*path}`; false for any other path. */
function media(path: string, search: string, res: ServerResponse, head: boolean, routes: MediaRoutes): boolean {
	const announced = path === "/announced" || path.startsWith("/announced/");
	if (!announced && !path.startsWith("/fetch/")) return false;
	let rest: string;
	try {
		rest = decodeURIComponent(path.slice(announced ? "/announced".length : "/fetch/".length));
	} catch {
		send(res, 400, "text/plain", "invalid path", head);
		return true;
	}
	const query = new URLSearchParams(search.startsWith("?") ? search.slice(1) : search);
	if (announced) routes.announced(rest, query, res, head);
	else routes.fetch(rest, query, res, head);
	return true;
}
