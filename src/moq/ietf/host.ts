/**
 * What an IETF session lends its two sides (publisher.ts toward viewers, subscriber.ts toward a
 * publishing client): the transport, the relay, the draft and grant, where replies go, request IDs,
 * and the session's guard.
 *
 * The two sides hold the request logic once for every draft; the session supplies the framing:
 * on drafts 14–16 one control stream carries every request and reply (the session demultiplexes it
 * by message and request ID), on 17+ each request is a bidirectional stream of its own that
 * carries its replies and ends with the stream. A `Reply` says which: the request's own stream, or
 * null for the control stream.
 * @module
 */

import type { Grant } from "../../auth/index.ts";
import type { Logger } from "../../log/logger.ts";
import type { Relay } from "../../relay/relay.ts";
import type { TransportSession, TransportStream } from "../../transport/types.ts";
import type { ControlReader } from "../control-reader.ts";
import type { IetfDraft } from "./version.ts";
import type { IetfLimits, IetfMessage } from "./wire/message.ts";

/** Where a request's replies go: its own stream (16's SUBSCRIBE_NAMESPACE, every request on 17+), or null: the control stream. */
export type Reply = TransportStream | null;

/** What a request of ours (on 17+ a stream of its own) hears back. */
export interface RequestEvents {
	/** A reply on the request's stream (SUBSCRIBE_OK, REQUEST_ERROR, PUBLISH_DONE, REQUEST_UPDATE…). */
	onReply(m: IetfMessage): void;
	/** The peer ended its side: "fin" cleanly, or "reset". */
	onEnd(how: "fin" | "reset"): void;
}

export interface IetfHost {
	readonly id: number;
	readonly transport: TransportSession;
	readonly relay: Relay;
	readonly log: Logger;
	readonly limits: Required<IetfLimits>;
	readonly draft: IetfDraft;
	readonly grant: Grant;
	readonly closed: boolean;
	/** 17+: each request is a stream of its own (`hasRequestStreams`). */
	readonly requestStreams: boolean;
	/** Sends a message on the control stream (17+: our SETUP stream, which carries only GOAWAY). */
	send(m: IetfMessage): void;
	/** Sends a message on another stream (a request's own). */
	sendOn(s: TransportStream, m: IetfMessage): void;
	/** Sends a reply to a request: on its own stream, or (null) on the control stream. */
	reply(to: Reply, m: IetfMessage): void;
	/**
	 * Refuses request `requestId` with `code` and `reason`: draft-14's own error message for the
	 * request (`type14`: SUBSCRIBE_ERROR 0x05, PUBLISH_NAMESPACE_ERROR 0x08, …), REQUEST_ERROR on 15+.
	 * On the request's own stream when it has one (then ended with FIN), else on the control stream.
	 */
	refuse(type14: number, requestId: number, code: number, reason: string, to?: Reply): void;
	/**
	 * 17+: opens a request of ours on a stream of its own and sends `m` on it; what comes back is
	 * told to `events`. Null when the peer's stream limit leaves no room.
	 */
	openRequest(m: IetfMessage, events: RequestEvents): TransportStream | null;
	/** The code "no such track / namespace" has in this draft's registry. */
	readonly doesNotExist: number;
	/** The peer broke the protocol: counted, and the session closes with `code`. */
	violation(code: number, reason: string): void;
	/** A new request ID from the client: false (and the session closing) when the draft forbids it. */
	acceptRequestId(id: number, onControlStream: boolean): boolean;
	/** The next request ID of ours (odd), or null while the client's MAX_REQUEST_ID blocks it (14–16). */
	allocRequestId(): number | null;
	/** A reader for a stream's first bytes (a header, a request): a decode error closes the session. */
	reader(s: TransportStream): ControlReader;
	readonly onFault: (err: unknown) => void;
	guarded(fn: () => void): void;
}
