/**
 * Goaway stream (bidi type 5, 04+; either side may open it): `uri`, "" = no redirect. Clients only log it.
 * @module
 */

import type { Reader } from "../../../coding/reader.ts";
import type { Writer } from "../../../coding/writer.ts";
import { UNSUPPORTED } from "../../../errors/codes.ts";
import {
	beginMessage,
	type DecodeLimits,
	decodeMessage,
	endMessage,
	MAX_URI_BYTES,
	notInVersion,
	unsupported,
} from "./message.ts";
import { hasGoaway, type LiteVersion } from "./version.ts";

export interface Goaway {
	uri: string;
}

export function encodeGoaway(w: Writer, m: Goaway, v: LiteVersion): void {
	if (!hasGoaway(v)) throw notInVersion("GOAWAY", v);
	const start = beginMessage(w);
	w.string(m.uri);
	endMessage(w, start);
}

export function decodeGoaway(r: Reader, v: LiteVersion, limits?: DecodeLimits): Goaway {
	if (!hasGoaway(v)) throw unsupported("GOAWAY", v, UNSUPPORTED);
	return decodeMessage(r, v, limits, goawayBody);
}

function goawayBody(r: Reader): Goaway {
	return { uri: r.string(MAX_URI_BYTES) };
}
