/**
 * lite-02 SESSION_INFO: the only message on the 0x20 session stream after SETUP.
 * Clients never write it; the relay may. Never reset that stream: a reset kills @moq/lite 0.2.2.
 * @module
 */

import type { Reader } from "../../../coding/reader.ts";
import type { Writer } from "../../../coding/writer.ts";
import { UNSUPPORTED } from "../../../errors/codes.ts";
import { beginMessage, type DecodeLimits, decodeMessage, endMessage, notInVersion, unsupported } from "./message.ts";
import { hasSessionInfo, type LiteVersion } from "./version.ts";

export interface SessionInfo {
	/** Estimated bitrate in bits per second. */
	bitrate: number;
}

export function encodeSessionInfo(w: Writer, m: SessionInfo, v: LiteVersion): void {
	if (!hasSessionInfo(v)) throw notInVersion("SESSION_INFO", v);
	const start = beginMessage(w);
	w.varint(m.bitrate);
	endMessage(w, start);
}

export function decodeSessionInfo(r: Reader, v: LiteVersion, limits?: DecodeLimits): SessionInfo {
	if (!hasSessionInfo(v)) throw unsupported("SESSION_INFO", v, UNSUPPORTED);
	return decodeMessage(r, v, limits, sessionInfoBody);
}

function sessionInfoBody(r: Reader): SessionInfo {
	return { bitrate: r.varint() };
}
