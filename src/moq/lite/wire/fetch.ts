/**
 * Fetch stream (bidi type 3, opened by the subscriber): request `broadcast, track, priority, group`. The reply has
 * no header: lite-05 frames back to back (decode them with `FrameParser(5, …)`), then FIN.
 * The relay serves it on 05 only (reset on 03/04), but the request has the same layout on 03+, as
 * in @moq/net, so it decodes there too.
 * @module
 */

import type { Reader } from "../../../coding/reader.ts";
import type { Writer } from "../../../coding/writer.ts";
import { UNSUPPORTED } from "../../../errors/codes.ts";
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
import { hasFetch, type LiteVersion } from "./version.ts";

export interface FetchRequest<P extends string = Path> {
	broadcast: P;
	track: string;
	priority: number;
	/** The one group to fetch. */
	group: number;
}

export function encodeFetchRequest(w: Writer, m: FetchRequest<string>, v: LiteVersion): void {
	if (!hasFetch(v)) throw notInVersion("FETCH", v);
	const start = beginMessage(w);
	w.string(m.broadcast);
	w.string(m.track);
	writeU8(w, m.priority);
	w.varint(m.group);
	endMessage(w, start);
}

export function decodeFetchRequest(r: Reader, v: LiteVersion, limits?: DecodeLimits): FetchRequest {
	if (!hasFetch(v)) throw unsupported("FETCH", v, UNSUPPORTED);
	return decodeMessage(r, v, limits, fetchBody);
}

function fetchBody(r: Reader, _v: LiteVersion, limits: DecodeLimits | undefined): FetchRequest {
	const broadcast = readPath(r, limits);
	const track = readTrack(r);
	const priority = r.u8();
	return { broadcast, track, priority, group: r.varint() };
}
