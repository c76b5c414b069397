/**
 * Probe stream (bidi type 4, 03+, opened by the subscriber): `bitrate` (bps), plus `rtt` (ms) on 04+;
 * 0 = unknown.
 * On 03/04 never reset a PROBE stream: @moq/lite 0.2.2 treats that as fatal.
 * @module
 */

import type { Reader } from "../../../coding/reader.ts";
import type { Writer } from "../../../coding/writer.ts";
import { UNSUPPORTED } from "../../../errors/codes.ts";
import { beginMessage, type DecodeLimits, decodeMessage, endMessage, notInVersion, unsupported } from "./message.ts";
import { hasProbe, hasProbeRtt, type LiteVersion } from "./version.ts";

export interface Probe {
	/** Bits per second; 0 = unknown. */
	bitrate: number;
	/** Smoothed RTT in ms, 04+ (0 = unknown; encodes as 0 when absent). Decodes as undefined on 03. */
	rtt?: number;
}

export function encodeProbe(w: Writer, m: Probe, v: LiteVersion): void {
	if (!hasProbe(v)) throw notInVersion("PROBE", v);
	const start = beginMessage(w);
	w.varint(m.bitrate);
	if (hasProbeRtt(v)) w.varint(m.rtt ?? 0);
	endMessage(w, start);
}

export function decodeProbe(r: Reader, v: LiteVersion, limits?: DecodeLimits): Probe {
	if (!hasProbe(v)) throw unsupported("PROBE", v, UNSUPPORTED);
	return decodeMessage(r, v, limits, probeBody);
}

function probeBody(r: Reader, v: LiteVersion): Probe {
	const bitrate = r.varint();
	return hasProbeRtt(v) ? { bitrate, rtt: r.varint() } : { bitrate };
}
