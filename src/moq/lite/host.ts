/**
 * What a moq-lite session lends its two sides (publisher.ts, subscriber.ts): the transport, the
 * relay, and the session's own control-stream reading, stream opening and guard. The sides are made
 * once the session is ready, with its version and grant.
 * @module
 */

import type { Reader } from "../../coding/reader.ts";
import type { Logger } from "../../log/logger.ts";
import type { Relay } from "../../relay/relay.ts";
import type { UpstreamPublisher } from "../../relay/types.ts";
import type { TransportSession, TransportStream } from "../../transport/types.ts";
import type { ControlReader } from "../control-reader.ts";
import type { DecodeLimits } from "./wire/message.ts";

export interface SessionHost {
	readonly id: number;
	readonly transport: TransportSession;
	readonly relay: Relay;
	readonly log: Logger;
	/** Decoder bounds from [limits]. */
	readonly limits: DecodeLimits;
	readonly closed: boolean;
	/** The peer's hop id from its lite-05 SETUP (another relay's origin), 0 when unknown. */
	readonly peerOrigin: number;
	/** This session's publishing side in the relay core (what the peer announced to us), once ready. */
	readonly upstream: UpstreamPublisher | null;
	/**
	 * The session guard for work done outside a transport callback (timers, promise callbacks,
	 * fan-out wake-ups): closes this session alone with the error's code and counts the fault.
	 */
	readonly onFault: (err: unknown) => void;
	/** Runs `fn` behind the session guard. */
	guarded(fn: () => void): void;
	/** A reader for a control stream: a message that can never decode is a protocol violation that closes the session. */
	reader(s: TransportStream): ControlReader;
	/** Runs `fn` for each whole message in the reader while the session is open. */
	drain<T>(reader: ControlReader, decode: (r: Reader) => T, fn: (m: T) => void): void;
	/**
	 * Opens a control stream now, or as soon as the peer grants stream credit (a qmux client grants
	 * none until its transport parameters arrive).
	 */
	withStream(bidi: boolean, use: (s: TransportStream) => void): void;
}
