/**
 * Track stream (bidi type 6, lite-05 only, opened by the subscriber): request `broadcast, track`, reply TRACK_INFO,
 * then FIN. @moq/net waits for TRACK_INFO before it sends SUBSCRIBE.
 * @module
 */

import { DecodeError } from "../../../coding/errors.ts";
import type { Reader } from "../../../coding/reader.ts";
import type { Writer } from "../../../coding/writer.ts";
import { PROTOCOL_VIOLATION, UNSUPPORTED } from "../../../errors/codes.ts";
import type { Path } from "../../../path/index.ts";
import {
	beginMessage,
	type DecodeLimits,
	decodeMessage,
	endMessage,
	notInVersion,
	readPath,
	readTrack,
	unsupported,
	writeU8,
} from "./message.ts";
import { hasTrackInfo, type LiteVersion } from "./version.ts";

export interface TrackRequest<P extends string = Path> {
	broadcast: P;
	track: string;
}

/** The track's immutable publisher properties. */
export interface TrackInfo {
	/** Publisher priority (u8), a tie-break only. */
	priority: number;
	ordered: boolean;
	/** Publisher Max Latency: how long non-latest groups stay cached (ms). */
	maxLatencyMs: number;
	/** Frame timestamp units per second; never 0. */
	timescale: number;
}

export function encodeTrackRequest(w: Writer, m: TrackRequest<string>, v: LiteVersion): void {
	if (!hasTrackInfo(v)) throw notInVersion("TRACK", v);
	const start = beginMessage(w);
	w.string(m.broadcast);
	w.string(m.track);
	endMessage(w, start);
}

export function decodeTrackRequest(r: Reader, v: LiteVersion, limits?: DecodeLimits): TrackRequest {
	if (!hasTrackInfo(v)) throw unsupported("TRACK", v, UNSUPPORTED);
	return decodeMessage(r, v, limits, trackRequestBody);
}

function trackRequestBody(r: Reader, _v: LiteVersion, limits: DecodeLimits | undefined): TrackRequest {
	const broadcast = readPath(r, limits);
	return { broadcast, track: readTrack(r) };
}

export function encodeTrackInfo(w: Writer, m: TrackInfo, v: LiteVersion): void {
	if (!hasTrackInfo(v)) throw notInVersion("TRACK_INFO", v);
	if (m.timescale === 0) throw new RangeError("TRACK_INFO timescale must not be 0");
	const start = beginMessage(w);
	writeU8(w, m.priority);
	w.bool(m.ordered);
	w.varint(m.maxLatencyMs);
	w.varint(m.timescale);
	endMessage(w, start);
}

export function decodeTrackInfo(r: Reader, v: LiteVersion, limits?: DecodeLimits): TrackInfo {
	if (!hasTrackInfo(v)) throw unsupported("TRACK_INFO", v, UNSUPPORTED);
	return decodeMessage(r, v, limits, trackInfoBody);
}

function trackInfoBody(r: Reader): TrackInfo {
	const priority = r.u8();
	const ordered = r.bool();
	const maxLatencyMs = r.varint();
	const timescale = r.varint();
	if (timescale === 0) throw new DecodeError("TRACK_INFO timescale 0", PROTOCOL_VIOLATION);
	return { priority, ordered, maxLatencyMs, timescale };
}
