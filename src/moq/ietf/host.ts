/**
 * What an IETF session lends its two sides (publisher.ts toward viewers, subscriber.ts toward a
 * publishing client): the transport, the relay, the draft and grant, the control stream, request
 * IDs, and the session's guard.
 * @module
 */

import type { Grant } from "../../auth/index.ts";
import type { Logger } from "../../log/logger.ts";
import type { Relay } from "../../relay/relay.ts";
import type { TransportSession, TransportStream } from "../../transport/types.ts";
import type { ControlReader } from "../control-reader.ts";
import type { IetfDraft } from "./version.ts";
import type { IetfLimits, IetfMessage } from "./wire/message.ts";

export interface IetfHost {
	readonly id: number;
	readonly transport: TransportSession;
	readonly relay: Relay;
	readonly log: Logger;
	readonly limits: Required<IetfLimits>;
	readonly draft: IetfDraft;
	readonly grant: Grant;
	readonly closed: boolean;
	/** Sends a message on the control stream. */
	send(m: IetfMessage): void;
	/** Sends a message on another stream (a draft-16 SUBSCRIBE_NAMESPACE stream). */
	sendOn(s: TransportStream, m: IetfMessage): void;
	/**
	 * Refuses request `requestId` with `code` and `reason`: draft-14's own error message for the
	 * request (`type14`: SUBSCRIBE_ERROR 0x05, PUBLISH_NAMESPACE_ERROR 0x08, …), REQUEST_ERROR on 15+.
	 * On `stream` when given (a draft-16 SUBSCRIBE_NAMESPACE stream), else on the control stream.
	 */
	refuse(type14: number, requestId: number, code: number, reason: string, stream?: TransportStream): void;
	/** The code "no such track / namespace" has in this draft's registry. */
	readonly doesNotExist: number;
	/** The peer broke the protocol: counted, and the session closes with `code`. */
	violation(code: number, reason: string): void;
	/** A new request ID from the client: false (and the session closing) when the draft forbids it. */
	acceptRequestId(id: number, onControlStream: boolean): boolean;
	/** The next request ID of ours (odd), or null while the client's MAX_REQUEST_ID blocks it. */
	allocRequestId(): number | null;
	/** A reader for a stream's first bytes (a header, a request): a decode error closes the session. */
	reader(s: TransportStream): ControlReader;
	readonly onFault: (err: unknown) => void;
	guarded(fn: () => void): void;
}
