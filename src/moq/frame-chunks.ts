/**
 * Writing one frame's bytes from a ring to a stream in one write (shared by the moq-lite and IETF
 * serve paths): a frame that arrived in several network chunks is gathered first.
 * @module
 */
import type { RingReader } from "../cache/ring-reader.ts";
import { copyBytes, type TransportStream } from "../transport/types.ts";

/**
 * Where a frame that arrived in several network chunks is gathered (one per thread: a run is copied
 * and written within one call). It starts above the largest ring record (64 KiB of payload and the
 * frame header) and grows to GATHER_MAX; a longer run goes out in pieces of that size.
 */
let gather = new Uint8Array(128 * 1024);
const GATHER_MAX = 1024 * 1024;

/**
 * Writes the FRAME_DATA record `r` is on, bytes[from, dataOffset + dataLength) (a `from` below
 * dataOffset takes along the frame's wire header the ring stores there), together with the chunks
 * of the same frame that follow it in the ring already: one write per frame whose packets all
 * arrived before this drain, instead of one per packet. A single chunk goes out as a view of the
 * ring (the transport copies it; the ring is checked before and after). Several are copied into
 * `gather`, checked, then written: a memcpy costs far less than another native call or WebSocket
 * message.
 * Returns the bytes written, or -1 when the ring overwrote them meanwhile (treat it as LAPPED).
 */
export function writeFrameChunks(r: RingReader, stream: Pick<TransportStream, "write">, from: number): number {
	let start = r.recordPosition;
	const end = r.dataOffset + r.dataLength;
	if (!r.continues()) {
		if (!r.validSince(start)) return -1;
		stream.write(r.bytes.subarray(from, end));
		return r.validSince(start) ? end - from : -1;
	}
	let n = end - from;
	// Buffer.copy over the whole ring view with a range: a memcpy (TypedArray.set copies shared
	// memory element by element, see transport/types.ts copyBytes).
	copyBytes(r.bytes, from, end, gather, 0);
	let written = 0;
	do {
		const len = r.dataLength;
		if (n + len > gather.length) {
			if (n + len <= GATHER_MAX) {
				const grown = new Uint8Array(Math.min(GATHER_MAX, Math.max(gather.length * 2, n + len)));
				copyBytes(gather, 0, n, grown, 0);
				gather = grown;
			} else {
				if (!r.validSince(start)) return -1;
				stream.write(gather.subarray(0, n));
				written += n;
				n = 0;
				start = r.recordPosition;
			}
		}
		copyBytes(r.bytes, r.dataOffset, r.dataOffset + len, gather, n);
		n += len;
	} while (r.continues());
	// Checked before the write: a torn copy never reaches the transport.
	if (!r.validSince(start)) return -1;
	stream.write(gather.subarray(0, n));
	return written + n;
}
