/**
 * Frame codecs for the four WebSocket framings: the legacy `webtransport` binding and qmux drafts
 * 00, 01 and 02 (QUIC frames, RFC 9000 §19, plus qmux's QX_ extension frames).
 *
 * Decoding fills one reused `Frame` and hands out views into the message, so the receive path
 * allocates nothing per frame. Truncation surfaces as the reader's NEED_MORE; since a WebSocket
 * message is always complete, the session treats that as FRAME_ENCODING_ERROR.
 */
import { NEED_MORE } from "../coding/errors.ts";
import type { Reader } from "../coding/reader.ts";
import { varintSize, writeVarint } from "../coding/varint.ts";
import type { Writer } from "../coding/writer.ts";
import { QuicError } from "../errors/codes.ts";
import { QmuxError } from "./error.ts";

/** The wire format selected by the WebSocket subprotocol. */
export type Framing = "webtransport" | "qmux-00" | "qmux-01" | "qmux-02";

/** True for the qmux drafts (flow control, transport parameters, QUIC frame encoding). */
export function isQmux(framing: Framing): boolean {
	return framing !== "webtransport";
}

/** True for the record-framed drafts: a message may hold several frames; PADDING and QX_PING exist. */
export function usesRecords(framing: Framing): boolean {
	return framing === "qmux-01" || framing === "qmux-02";
}

/**
 * Normalised frame types. STREAM covers 0x08–0x0f (bits in `Frame.offset/fin`), DATAGRAM covers
 * 0x30/0x31. The qmux extension types do not fit in 53 bits, so they get negative tags.
 */
export const FrameType = {
	PADDING: 0x00,
	RESET_STREAM: 0x04,
	STOP_SENDING: 0x05,
	STREAM: 0x08,
	MAX_DATA: 0x10,
	MAX_STREAM_DATA: 0x11,
	MAX_STREAMS_BIDI: 0x12,
	MAX_STREAMS_UNI: 0x13,
	DATA_BLOCKED: 0x14,
	STREAM_DATA_BLOCKED: 0x15,
	STREAMS_BLOCKED_BIDI: 0x16,
	STREAMS_BLOCKED_UNI: 0x17,
	CONNECTION_CLOSE: 0x1c,
	APPLICATION_CLOSE: 0x1d,
	RESET_STREAM_AT: 0x24,
	DATAGRAM: 0x30,
	TRANSPORT_PARAMETERS: -1,
	PING_REQUEST: -2,
	PING_RESPONSE: -3,
} as const;

/** Tags for wide (> 2^53) varints that are transport parameter ids. */
export const WideKey = {
	MAX_RECORD_SIZE: -4,
	APPLICATION_PROTOCOLS: -5,
	UNKNOWN: -6,
} as const;

/** The 8-byte encodings of the wide constants (first byte carries the 0b11 length tag). */
export const TRANSPORT_PARAMETERS_TYPE = Uint8Array.of(0xff, 0x51, 0x53, 0x30, 0x0d, 0x0a, 0x0d, 0x0a);
export const PING_REQUEST_TYPE = Uint8Array.of(0xf4, 0x8c, 0x67, 0x52, 0x9e, 0xf8, 0xc7, 0xbd);
export const PING_RESPONSE_TYPE = Uint8Array.of(0xf4, 0x8c, 0x67, 0x52, 0x9e, 0xf8, 0xc7, 0xbe);
export const MAX_RECORD_SIZE_ID = Uint8Array.of(0xc5, 0x71, 0xc5, 0x94, 0x29, 0xcd, 0x08, 0x45);

/** draft-00's max_frame_size (whole frame) and the legacy binding's de-facto limit. */
export const MAX_FRAME_SIZE = 16384;
/** draft-01's default and minimum max_record_size. */
export const DEFAULT_MAX_RECORD_SIZE = 16382;
/** STREAM payload ceiling: @moq/qmux 0.0.6 closes above 16360 in every mode, 0.3.3 sends ≤ 16352. */
export const MAX_STREAM_PAYLOAD = 16352;
/** Room reserved in front of a queued payload for the largest STREAM header (type, id, offset, length). */
export const STREAM_HEADROOM = 1 + 8 + 8 + 8;

const EMPTY = new Uint8Array(0);

/** One decoded frame. Reused: views (`data`, `reason`, `seq`, `params`) point into the message. */
export class Frame {
	type = 0;
	streamId = 0;
	/** STREAM offset; -1 when the OFF bit was clear (the legacy binding and 0.0.6 never send it). */
	offset = -1;
	fin = false;
	data: Uint8Array = EMPTY;
	/** Reset / stop / close code. */
	code = 0;
	/** RESET_STREAM final size; -1 on the legacy binding, which has none. */
	finalSize = -1;
	/** RESET_STREAM_AT reliable size; -1 for a plain reset. */
	reliableSize = -1;
	/** MAX_* limits, *_BLOCKED limits, and CONNECTION_CLOSE's frame type. */
	value = 0;
	reason: Uint8Array = EMPTY;
	/** QX_PING sequence, kept as its raw varint bytes so any 62-bit value echoes exactly. */
	seq: Uint8Array = EMPTY;
	/** QX_TRANSPORT_PARAMETERS body (decode with decodeTransportParameters). */
	params: Uint8Array = EMPTY;

	clear(): this {
		this.type = 0;
		this.streamId = 0;
		this.offset = -1;
		this.fin = false;
		this.data = EMPTY;
		this.code = 0;
		this.finalSize = -1;
		this.reliableSize = -1;
		this.value = 0;
		this.reason = EMPTY;
		this.seq = EMPTY;
		this.params = EMPTY;
		return this;
	}
}

function wideHalves(b: Uint8Array, p: number): [number, number] {
	const hi = (b[p] & 0x3f) * 0x1000000 + (b[p + 1] << 16) + (b[p + 2] << 8) + b[p + 3];
	const lo = ((b[p + 4] << 24) >>> 0) + (b[p + 5] << 16) + (b[p + 6] << 8) + b[p + 7];
	return [hi, lo];
}

function sameBytes(b: Uint8Array, p: number, k: Uint8Array): boolean {
	for (let i = 0; i < 8; i++) if (b[p + i] !== k[i]) return false;
	return true;
}

/**
 * Reads a varint that may be one of qmux's wide (> 2^53) constants: returns the value when it is
 * safe, a negative FrameType/WideKey tag for a known wide constant, or WideKey.UNKNOWN.
 */
export function readKey(r: Reader): number {
	if (r.pos >= r.end) throw NEED_MORE;
	const b = r.buf;
	const p = r.pos;
	if (b[p] >> 6 !== 3) return r.varint();
	if (p + 8 > r.end) throw NEED_MORE;
	r.pos = p + 8;
	const [hi, lo] = wideHalves(b, p);
	if (hi <= 0x1fffff) return hi * 0x100000000 + lo;
	if (sameBytes(b, p, TRANSPORT_PARAMETERS_TYPE)) return FrameType.TRANSPORT_PARAMETERS;
	if (sameBytes(b, p, PING_REQUEST_TYPE)) return FrameType.PING_REQUEST;
	if (sameBytes(b, p, PING_RESPONSE_TYPE)) return FrameType.PING_RESPONSE;
	if (sameBytes(b, p, MAX_RECORD_SIZE_ID)) return WideKey.MAX_RECORD_SIZE;
	if (hi === 0x3d4f9c2a && lo === 0x8b1e6075) return WideKey.APPLICATION_PROTOCOLS;
	return WideKey.UNKNOWN;
}

/** Reads a varint, clamping values above 2^53-1 (a peer's "unlimited" credit) to MAX_SAFE_INTEGER. */
export function readClamped(r: Reader): number {
	if (r.pos >= r.end) throw NEED_MORE;
	const b = r.buf;
	const p = r.pos;
	if (b[p] >> 6 !== 3) return r.varint();
	if (p + 8 > r.end) throw NEED_MORE;
	r.pos = p + 8;
	const [hi, lo] = wideHalves(b, p);
	return hi <= 0x1fffff ? hi * 0x100000000 + lo : Number.MAX_SAFE_INTEGER;
}

function rest(r: Reader): Uint8Array {
	return r.bytes(r.end - r.pos);
}

/** Decodes one legacy `webtransport` frame: a one-byte type; STREAM data and close reasons run to the end. */
function decodeLegacy(r: Reader, f: Frame): void {
	const t = r.u8();
	switch (t) {
		case 0x04:
			f.type = FrameType.RESET_STREAM;
			f.streamId = r.varint();
			f.code = readClamped(r);
			return;
		case 0x05:
			f.type = FrameType.STOP_SENDING;
			f.streamId = r.varint();
			f.code = readClamped(r);
			return;
		case 0x08:
		case 0x09:
			f.type = FrameType.STREAM;
			f.streamId = r.varint();
			f.fin = t === 0x09;
			f.data = rest(r);
			return;
		case 0x1c:
		case 0x1d:
			f.type = t;
			f.code = readClamped(r);
			f.reason = rest(r);
			return;
		default:
			throw new QmuxError(QuicError.FRAME_ENCODING_ERROR, `unknown frame type 0x${t.toString(16)}`, t);
	}
}

/**
 * APPLICATION_CLOSE has no Frame Type field (RFC 9000 §19.19), but @moq/qmux 0.0.6 writes one.
 * When the strict reading does not end exactly at the message end, retry with the extra field.
 */
function decodeAppCloseReason(r: Reader, f: Frame, lenient: boolean): void {
	const start = r.pos;
	const len = r.varint();
	if (!lenient || r.pos + len === r.end) {
		f.reason = r.bytes(len);
		return;
	}
	r.pos = start;
	readKey(r);
	f.reason = r.bytes(r.varint());
}

/**
 * Decodes one frame at `r.pos` into `f` (cleared first). `r.end` must be the end of the message
 * (or record): STREAM without LEN and DATAGRAM 0x30 run to it.
 * Throws QmuxError(FRAME_ENCODING_ERROR) for unknown types, NEED_MORE when truncated.
 */
export function decodeFrame(r: Reader, framing: Framing, f: Frame): void {
	f.clear();
	if (framing === "webtransport") {
		decodeLegacy(r, f);
		return;
	}
	const t = readKey(r);
	if (t >= 0x08 && t <= 0x0f) {
		f.type = FrameType.STREAM;
		f.streamId = r.varint();
		f.offset = t & 0x04 ? r.varint() : -1;
		f.data = t & 0x02 ? r.bytes(r.varint()) : rest(r);
		f.fin = (t & 0x01) !== 0;
		return;
	}
	f.type = t;
	switch (t) {
		case FrameType.PADDING:
			return;
		case FrameType.RESET_STREAM:
			f.streamId = r.varint();
			f.code = readClamped(r);
			f.finalSize = r.varint();
			return;
		case FrameType.RESET_STREAM_AT:
			f.streamId = r.varint();
			f.code = readClamped(r);
			f.finalSize = r.varint();
			f.reliableSize = r.varint();
			if (f.reliableSize > f.finalSize) {
				throw new QmuxError(QuicError.FRAME_ENCODING_ERROR, "RESET_STREAM_AT reliable size exceeds final size", t);
			}
			return;
		case FrameType.STOP_SENDING:
			f.streamId = r.varint();
			f.code = readClamped(r);
			return;
		case FrameType.MAX_DATA:
		case FrameType.DATA_BLOCKED:
		case FrameType.MAX_STREAMS_BIDI:
		case FrameType.MAX_STREAMS_UNI:
		case FrameType.STREAMS_BLOCKED_BIDI:
		case FrameType.STREAMS_BLOCKED_UNI:
			f.value = readClamped(r);
			return;
		case FrameType.MAX_STREAM_DATA:
		case FrameType.STREAM_DATA_BLOCKED:
			f.streamId = r.varint();
			f.value = readClamped(r);
			return;
		case FrameType.CONNECTION_CLOSE:
			f.code = readClamped(r);
			f.value = Math.max(0, readKey(r));
			f.reason = r.bytes(r.varint());
			return;
		case FrameType.APPLICATION_CLOSE:
			f.code = readClamped(r);
			decodeAppCloseReason(r, f, framing === "qmux-00");
			return;
		case FrameType.DATAGRAM:
			f.data = rest(r);
			return;
		case 0x31:
			f.type = FrameType.DATAGRAM;
			f.data = r.bytes(r.varint());
			return;
		case FrameType.TRANSPORT_PARAMETERS:
			f.params = r.bytes(r.varint());
			return;
		case FrameType.PING_REQUEST:
		case FrameType.PING_RESPONSE: {
			const start = r.pos;
			readKey(r);
			f.seq = r.buf.subarray(start, r.pos);
			return;
		}
		default:
			throw new QmuxError(
				QuicError.FRAME_ENCODING_ERROR,
				t < 0 ? "unknown extension frame type" : `unknown frame type 0x${t.toString(16)}`,
				Math.max(0, t),
			);
	}
}

// ---- encoding -------------------------------------------------------------------------------

/** Bytes of a STREAM header for this frame. */
export function streamHeaderSize(qmux: boolean, id: number, offset: number, len: number): number {
	return qmux ? 1 + varintSize(id) + varintSize(offset) + varintSize(len) : 1 + varintSize(id);
}

/**
 * Writes a STREAM header at `buf[pos]`; returns the position where the payload goes. qmux frames
 * always carry OFF and LEN (0x0e/0x0f, like @moq/qmux 0.3.3); legacy frames are 0x08/0x09 + id.
 */
export function writeStreamHeader(
	buf: Uint8Array,
	pos: number,
	qmux: boolean,
	id: number,
	offset: number,
	len: number,
	fin: boolean,
): number {
	if (!qmux) {
		buf[pos] = fin ? 0x09 : 0x08;
		return writeVarint(buf, pos + 1, id);
	}
	buf[pos] = fin ? 0x0f : 0x0e;
	pos = writeVarint(buf, pos + 1, id);
	pos = writeVarint(buf, pos, offset);
	return writeVarint(buf, pos, len);
}

/** A whole STREAM frame (header + copy of `data`); used by tests and control paths, not the data plane. */
export function encodeStream(
	w: Writer,
	qmux: boolean,
	id: number,
	offset: number,
	data: Uint8Array,
	fin: boolean,
): Writer {
	w.ensure(STREAM_HEADROOM + data.length);
	w.pos = writeStreamHeader(w.buf, w.pos, qmux, id, offset, data.length, fin);
	return w.bytes(data);
}

/** RESET_STREAM: qmux `04 id code finalSize`; legacy `04 id code`. */
export function encodeResetStream(w: Writer, qmux: boolean, id: number, code: number, finalSize: number): Writer {
	w.u8(FrameType.RESET_STREAM).varint(id).varint(code);
	return qmux ? w.varint(finalSize) : w;
}

/** RESET_STREAM_AT (qmux-02 only): `24 id code finalSize reliableSize`. */
export function encodeResetStreamAt(
	w: Writer,
	id: number,
	code: number,
	finalSize: number,
	reliableSize: number,
): Writer {
	return w.u8(FrameType.RESET_STREAM_AT).varint(id).varint(code).varint(finalSize).varint(reliableSize);
}

/** STOP_SENDING: `05 id code` in every framing. */
export function encodeStopSending(w: Writer, id: number, code: number): Writer {
	return w.u8(FrameType.STOP_SENDING).varint(id).varint(code);
}

export function encodeMaxData(w: Writer, max: number): Writer {
	return w.u8(FrameType.MAX_DATA).varint(max);
}

export function encodeMaxStreamData(w: Writer, id: number, max: number): Writer {
	return w.u8(FrameType.MAX_STREAM_DATA).varint(id).varint(max);
}

export function encodeMaxStreams(w: Writer, bidi: boolean, max: number): Writer {
	return w.u8(bidi ? FrameType.MAX_STREAMS_BIDI : FrameType.MAX_STREAMS_UNI).varint(max);
}

const utf8 = new TextEncoder();

/** Close reasons are capped so a close frame always fits in one record. */
const MAX_REASON = 1024;

function reasonBytes(reason: string): Uint8Array {
	const b = utf8.encode(reason);
	return b.length > MAX_REASON ? b.subarray(0, MAX_REASON) : b;
}

/** CONNECTION_CLOSE (transport error): qmux `1c code frameType len reason`; legacy `1c code reason…`. */
export function encodeConnectionClose(
	w: Writer,
	qmux: boolean,
	code: number,
	frameType: number,
	reason: string,
): Writer {
	const b = reasonBytes(reason);
	w.u8(FrameType.CONNECTION_CLOSE).varint(code);
	if (qmux) w.varint(frameType).varint(b.length);
	return w.bytes(b);
}

/** APPLICATION_CLOSE: qmux `1d code len reason`; legacy `1d code reason…`. */
export function encodeApplicationClose(w: Writer, qmux: boolean, code: number, reason: string): Writer {
	const b = reasonBytes(reason);
	w.u8(FrameType.APPLICATION_CLOSE).varint(code);
	if (qmux) w.varint(b.length);
	return w.bytes(b);
}

/** QX_PING request or response; `seq` is the raw varint (echoed byte-exact in a response). */
export function encodePing(w: Writer, response: boolean, seq: Uint8Array): Writer {
	return w.bytes(response ? PING_RESPONSE_TYPE : PING_REQUEST_TYPE).bytes(seq);
}

/** `n` PADDING bytes (qmux-01/02 records). */
export function encodePadding(w: Writer, n: number): Writer {
	w.ensure(n);
	w.buf.fill(0, w.pos, w.pos + n);
	w.pos += n;
	return w;
}
