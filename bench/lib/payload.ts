/**
 * The synthetic live track: frame sizes shaped like video (a large keyframe opening each group, then
 * smaller deltas) and a header in every frame that makes latency and loss measurable:
 *
 * | offset | field |
 * |---|---|
 * | 0 | f64 send time, ms on the monotonic clock (`process.hrtime`, shared by every process on one machine) |
 * | 8 | u32 group sequence |
 * | 12 | u32 frame index in the group |
 * | 16 | u32 frames in the group |
 *
 * Little-endian, read with a DataView over the receive view (no copy).
 * @module
 */

export const HEADER_BYTES = 20;

/** Monotonic ms, comparable across processes on the same machine. */
export function nowMs(): number {
	return Number(process.hrtime.bigint()) / 1e6;
}

export interface TrackShape {
	/** Mbit/s of payload. */
	bitrate: number;
	fps: number;
	groupMs: number;
	/** Keyframe size as a multiple of a delta frame (video-like: ~10). */
	keyframeWeight?: number;
}

/** Frame sizes of one group: the keyframe is `keyframeWeight` (default 10) × a delta frame; they total the group's byte budget. */
export function frameSizes(shape: TrackShape): number[] {
	const frames = Math.max(1, Math.round((shape.fps * shape.groupMs) / 1000));
	const groupBytes = (shape.bitrate * 1e6 * shape.groupMs) / 1000 / 8;
	const weight = shape.keyframeWeight ?? 10;
	const delta = Math.max(HEADER_BYTES, Math.floor(groupBytes / (frames - 1 + weight)));
	const sizes = new Array<number>(frames).fill(delta);
	sizes[0] = Math.max(HEADER_BYTES, Math.floor(groupBytes - delta * (frames - 1)));
	return sizes;
}

export function writeHeader(buf: Uint8Array, sentMs: number, group: number, index: number, frames: number): void {
	const view = new DataView(buf.buffer, buf.byteOffset, HEADER_BYTES);
	view.setFloat64(0, sentMs, true);
	view.setUint32(8, group, true);
	view.setUint32(12, index, true);
	view.setUint32(16, frames, true);
}

const f64Bytes = new Uint8Array(8);
const f64 = new Float64Array(f64Bytes.buffer);

function u32le(b: Uint8Array, p: number): number {
	return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
}

/** Reads the header fields of a received frame without allocating. */
export class HeaderReader {
	sentMs = 0;
	group = 0;
	index = 0;
	frames = 0;

	read(b: Uint8Array): boolean {
		if (b.length < HEADER_BYTES) return false;
		// Byte copy into an aligned scratch: receive views are not 8-byte aligned.
		for (let i = 0; i < 8; i++) f64Bytes[i] = b[i];
		this.sentMs = f64[0];
		this.group = u32le(b, 8);
		this.index = u32le(b, 12);
		this.frames = u32le(b, 16);
		return true;
	}
}
