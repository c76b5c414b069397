/**
 * moq-relay's plain-HTTP media routes (`rs/moq-relay/src/web.rs`: `serve_announced`, `serve_fetch`),
 * scoped by `?jwt=` exactly as a viewer session is:
 *
 * - `GET /announced[/prefix]`: the live broadcasts under the prefix, relative to it, one per line
 *   (`text/plain; charset=utf-8`, no trailing newline; an empty body when there are none).
 * - `GET /fetch/<broadcast>/<track>[?group=N|latest]`: the payloads of one group's frames back to
 *   back (`application/octet-stream`; no framing, as moq-relay), streamed while the group is being
 *   written. Default `latest`.
 *
 * The path (prefix, or broadcast) is the connection path of `Authenticator.authorize`, as it is for
 * moq-relay; the grant must allow subscribing there. Refusals answer `AuthError.httpStatus` (401,
 * 403, 400) with its fixed text, like the WebSocket upgrade (docs/auth.md).
 *
 * /fetch reads the relay's cache through the track's ring, from any worker (a track published on
 * another worker is read through its SharedArrayBuffer), with the FETCH reader of
 * moq/lite/fetch-serve.ts. A track nobody subscribes to yet is subscribed upstream on demand (as a
 * viewer would, and as moq-relay does) for as long as the request lasts: `latest` then waits for the
 * first group, within FETCH_TIMEOUT_MS (504 when none comes); a numbered group not in the cache is a
 * 404 at once (no upstream FETCH).
 * @module
 */
import type { ServerResponse } from "node:http";
import { AuthError, type Authenticator, type Grant } from "../auth/index.ts";
import { tokenFromQuery } from "../auth/params.ts";
import { FAULT, TIMEOUT } from "../errors/codes.ts";
import type { Logger } from "../log/logger.ts";
import { FetchServe, type FetchSink } from "../moq/lite/fetch-serve.ts";
import { ROOT, stripPrefix } from "../path/index.ts";
import type { Relay } from "../relay/relay.ts";
import type { MediaRoutes } from "./routes.ts";

/** At most this many paths in one /announced answer (sorted; `x-moq-truncated: true` when cut). */
export const MAX_ANNOUNCED = 1000;
/** A /fetch that has not finished by then is cut (504 if nothing was sent yet); moq-relay's deadline. */
export const FETCH_TIMEOUT_MS = 30_000;
/** Concurrent /fetch responses per worker; more get 503. Each holds at most one group (≤ the track's cache). */
export const MAX_FETCHES = 64;

const CORS = { "access-control-allow-origin": "*" };

export interface MediaRouteOptions {
	relay: Relay;
	auth: Authenticator;
	log: Logger;
	/** Test hook: the /fetch deadline (ms). */
	fetchTimeoutMs?: number;
}

function text(res: ServerResponse, status: number, body: string, head: boolean, extra: Record<string, string> = {}) {
	if (res.headersSent || res.destroyed) return;
	res.writeHead(status, {
		...CORS,
		...extra,
		"content-type": "text/plain; charset=utf-8",
		"content-length": Buffer.byteLength(body),
		"cache-control": "no-store",
	});
	res.end(head ? undefined : body);
}

/** An HTTP response as a FETCH sink: 200 on the first byte (or an empty finished group), else a status. */
class ResponseSink implements FetchSink {
	timedOut = false;
	#started = false;
	readonly #res: ServerResponse;
	readonly #head: boolean;

	constructor(res: ServerResponse, head: boolean) {
		this.#res = res;
		this.#head = head;
	}

	#start(): void {
		if (this.#started) return;
		this.#started = true;
		this.#res.writeHead(200, {
			...CORS,
			"content-type": "application/octet-stream",
			"cache-control": "no-store",
		});
	}

	/** The client went away (or the response is complete): nothing more is written. */
	get gone(): boolean {
		return this.#res.destroyed || this.#res.writableEnded;
	}

	write(data: Uint8Array): void {
		if (this.gone) return;
		this.#start();
		// A copy: `data` is a view of the shared ring, which the publisher overwrites.
		if (!this.#head && data.length > 0) this.#res.write(Buffer.from(data));
	}

	finish(): void {
		if (this.gone) return;
		this.#start();
		this.#res.end();
	}

	reset(_code: number): void {
		if (this.gone) return;
		// Once the body has begun, only cutting the connection tells the client it is incomplete.
		if (this.#started) this.#res.destroy();
		else if (this.timedOut) text(this.#res, 504, "timed out", this.#head);
		else text(this.#res, 404, "not found", this.#head);
	}
}

/** The relay's /announced and /fetch handlers (one set per worker). */
export function mediaRoutes(opts: MediaRouteOptions): MediaRoutes & { readonly fetches: number } {
	const { relay, auth, log } = opts;
	const timeoutMs = opts.fetchTimeoutMs ?? FETCH_TIMEOUT_MS;
	let fetches = 0;

	/** The grant for `path`, or null once a refusal has been answered. */
	const authorize = async (
		path: string,
		query: URLSearchParams,
		res: ServerResponse,
		head: boolean,
	): Promise<Grant | null> => {
		try {
			const grant = await auth.authorize(path, tokenFromQuery(query));
			if (grant.subscribe.length > 0) return grant;
			text(res, 403, "forbidden: token does not grant subscribing here", head);
		} catch (err) {
			if (!(err instanceof AuthError)) throw err;
			log.debug("http media request refused", { status: err.httpStatus, why: err.message });
			text(res, err.httpStatus, err.httpText, head);
		}
		return null;
	};

	const guard = (res: ServerResponse, head: boolean, work: Promise<void>): void => {
		work.catch((err: unknown) => {
			log.warn("http media request failed", { error: String(err) });
			if (!res.headersSent) text(res, 500, "internal error", head);
			else res.destroy();
		});
	};

	return {
		get fetches() {
			return fetches;
		},

		announced(prefix, query, res, head) {
			guard(
				res,
				head,
				(async () => {
					const grant = await authorize(prefix, query, res, head);
					if (grant === null) return;
					const paths: string[] = [];
					for (const entry of relay.announces.entries()) {
						const rel = stripPrefix(entry.path, grant.root);
						if (rel !== null && grant.canSubscribe(rel)) paths.push(rel);
					}
					paths.sort();
					const truncated = paths.length > MAX_ANNOUNCED;
					const extra: Record<string, string> = truncated ? { "x-moq-truncated": "true" } : {};
					text(res, 200, paths.slice(0, MAX_ANNOUNCED).join("\n"), head, extra);
				})(),
			);
		},

		fetch(path, query, res, head) {
			guard(
				res,
				head,
				(async () => {
					const slash = path.lastIndexOf("/");
					const broadcast = slash < 0 ? "" : path.slice(0, slash);
					const name = path.slice(slash + 1);
					if (broadcast.replace(/\//g, "") === "" || name === "") {
						return text(res, 400, "expected /fetch/<broadcast>/<track>", head);
					}
					const groupParam = query.get("group") ?? "latest";
					let group: number | "latest";
					if (groupParam === "latest") group = "latest";
					else if (/^\d{1,15}$/.test(groupParam)) group = Number(groupParam);
					else return text(res, 400, "invalid group: expected a number or latest", head);

					const grant = await authorize(broadcast, query, res, head);
					if (grant === null || res.destroyed) return;
					if (!grant.canSubscribe(ROOT))
						return text(res, 403, "forbidden: token does not grant subscribing here", head);
					const at = grant.root;
					if (!relay.broadcasts.has(at)) return text(res, 404, "not found", head);
					if (fetches >= MAX_FETCHES) return text(res, 503, "too many fetches", head);
					const track = relay.track(at, name);
					if (track === undefined) return text(res, 404, "not found", head);
					if (track === null) return text(res, 503, "cache full", head);

					const sink = new ResponseSink(res, head);
					const serve = new FetchServe(track, sink, group, "payload");
					fetches++;
					const timer = setTimeout(() => {
						sink.timedOut = true;
						serve.abort(TIMEOUT);
					}, timeoutMs);
					serve.onDone = () => {
						clearTimeout(timer);
						fetches--;
					};
					serve.onFault = (err) => {
						log.warn("http fetch failed", { broadcast: at, track: name, error: String(err) });
						serve.abort(FAULT);
					};
					// The client left: stop reading (CANCEL finishes the sink, which is a no-op by then).
					res.once("close", () => serve.close("session"));
					log.debug("http fetch", { broadcast: at, track: name, group });
					serve.start();
				})(),
			);
		},
	};
}
