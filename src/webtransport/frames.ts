/**
 * HTTP/3 frame and capsule plumbing. Frames (RFC 9114 §7.1) and capsules (RFC 9297 §3.2) share one
 * shape (varint type, varint length, payload), so one incremental parser serves both: each header
 * goes to a handler that picks whether the payload is buffered whole (bounded by the handler),
 * streamed through, or skipped without buffering (unknown and GREASE types).
 */

import { DecodeError } from "../coding/errors.ts";
import { varintSize } from "../coding/varint.ts";
import type { Writer } from "../coding/writer.ts";
import { H3 } from "../errors/codes.ts";
import { Capsule, Frame, MAX_CLOSE_REASON_BYTES, Setting } from "./codes.ts";

export const Body = { BUFFER: 0, SKIP: 1, STREAM: 2 } as const;
export type BodyMode = (typeof Body)[keyof typeof Body];

export interface TlvHandler {
	/** A header arrived: decide how its payload is handled. Throw DecodeError to refuse it. */
	tlvHeader(type: number, length: number): BodyMode;
	/** BUFFER: the whole payload, a view valid only during the call. */
	tlvBody(type: number, payload: Uint8Array): void;
	/** STREAM: the next part of the payload, a view valid only during the call. */
	tlvChunk(type: number, bytes: Uint8Array): void;
}

const EMPTY = new Uint8Array(0);

/**
 * Reads a QUIC varint without the 2^53 limit: frame, setting and capsule types are often GREASE
 * values chosen at random, and those are skipped, so an imprecise value is harmless there.
 */
export function looseVarint(buf: Uint8Array, pos: number): number {
	const size = 1 << (buf[pos] >> 6);
	let v = buf[pos] & 0x3f;
	for (let i = 1; i < size; i++) v = v * 256 + buf[pos + i];
	return v;
}

/** Incremental parser for type-length-value sequences (H3 frames, capsules). */
export class TlvParser {
	private readonly handler: TlvHandler;
	private readonly head = new Uint8Array(16);
	private headLen = 0;
	private inBody = false;
	private type = 0;
	private remaining = 0;
	private mode: BodyMode = Body.SKIP;
	private body: Uint8Array | null = null;
	private bodyLen = 0;
	/** Set by stop(): the owner tore down; no more callbacks. */
	stopped = false;

	constructor(handler: TlvHandler) {
		this.handler = handler;
	}

	/** True between frames: a stream ending here ended cleanly (RFC 9114 §7.1). */
	get atBoundary(): boolean {
		return !this.inBody && this.headLen === 0;
	}

	stop(): void {
		this.stopped = true;
		this.body = null;
	}

	push(chunk: Uint8Array): void {
		let pos = 0;
		const end = chunk.length;
		while (pos < end && !this.stopped) {
			if (!this.inBody) {
				pos = this.readHeader(chunk, pos);
				continue;
			}
			const n = Math.min(this.remaining, end - pos);
			const mode = this.mode;
			if (mode === Body.BUFFER) {
				if (this.body === null) {
					// Whole payload in this chunk: hand out a view, no copy.
					if (n === this.remaining) {
						pos += n;
						this.finishFrame(chunk.subarray(pos - n, pos));
						continue;
					}
					this.body = new Uint8Array(this.remaining);
					this.bodyLen = 0;
				}
				this.body.set(chunk.subarray(pos, pos + n), this.bodyLen);
				this.bodyLen += n;
			} else if (mode === Body.STREAM) {
				this.handler.tlvChunk(this.type, chunk.subarray(pos, pos + n));
			}
			pos += n;
			this.remaining -= n;
			if (this.remaining === 0 && !this.stopped) {
				const body = this.body;
				this.finishFrame(body === null ? EMPTY : body);
			}
		}
	}

	private readHeader(chunk: Uint8Array, pos: number): number {
		const head = this.head;
		const end = chunk.length;
		while (pos < end) {
			head[this.headLen++] = chunk[pos++];
			const typeSize = 1 << (head[0] >> 6);
			if (this.headLen <= typeSize) continue;
			const lenSize = 1 << (head[typeSize] >> 6);
			if (this.headLen < typeSize + lenSize) continue;
			const type = looseVarint(head, 0);
			const length = looseVarint(head, typeSize);
			this.headLen = 0;
			if (length > Number.MAX_SAFE_INTEGER) throw new DecodeError("frame length above 2^53", H3.FRAME_ERROR);
			this.type = type;
			this.remaining = length;
			this.body = null;
			this.inBody = true;
			this.mode = this.handler.tlvHeader(type, length);
			if (length === 0 && !this.stopped) this.finishFrame(EMPTY);
			return pos;
		}
		return pos;
	}

	private finishFrame(payload: Uint8Array): void {
		this.inBody = false;
		this.remaining = 0;
		this.body = null;
		if (this.mode === Body.BUFFER) this.handler.tlvBody(this.type, payload);
	}
}

/** Writes a frame (or capsule) header. */
export function writeTlvHeader(w: Writer, type: number, length: number): void {
	w.varint(type).varint(length);
}

export type SettingsList = readonly (readonly [id: number, value: number])[];

/** Writes a SETTINGS frame. */
export function writeSettingsFrame(w: Writer, settings: SettingsList): void {
	let length = 0;
	for (const [id, value] of settings) length += varintSize(id) + varintSize(value);
	writeTlvHeader(w, Frame.SETTINGS, length);
	for (const [id, value] of settings) w.varint(id).varint(value);
}

/**
 * Decodes a SETTINGS payload. Truncated pairs are H3_FRAME_ERROR; duplicates and the HTTP/2-only
 * identifiers 0x02..0x05 are H3_SETTINGS_ERROR (RFC 9114 §7.2.4.1). Unknown ids are kept (ignored).
 */
export function decodeSettings(payload: Uint8Array): Map<number, number> {
	const settings = new Map<number, number>();
	let pos = 0;
	while (pos < payload.length) {
		const idSize = 1 << (payload[pos] >> 6);
		if (pos + idSize >= payload.length) throw new DecodeError("truncated SETTINGS", H3.FRAME_ERROR);
		const valueSize = 1 << (payload[pos + idSize] >> 6);
		if (pos + idSize + valueSize > payload.length) throw new DecodeError("truncated SETTINGS", H3.FRAME_ERROR);
		const id = looseVarint(payload, pos);
		const value = looseVarint(payload, pos + idSize);
		pos += idSize + valueSize;
		if (id >= 0x02 && id <= 0x05) throw new DecodeError(`HTTP/2 setting ${id} in SETTINGS`, H3.SETTINGS_ERROR);
		if (settings.has(id)) throw new DecodeError(`duplicate setting ${id}`, H3.SETTINGS_ERROR);
		settings.set(id, value);
	}
	return settings;
}

/**
 * How many WebTransport sessions the peer's SETTINGS allow; 0 means it does not speak WebTransport.
 * A datagram setting is required; then WT_MAX_SESSIONS (drafts ≥ 07) if present, else draft-02's
 * ENABLE_WEBTRANSPORT with the optional draft 05–06 session limit (absent: one session).
 */
export function peerWebTransportSessions(settings: ReadonlyMap<number, number>): number {
	if (settings.get(Setting.H3_DATAGRAM) !== 1 && settings.get(Setting.H3_DATAGRAM_DRAFT04) !== 1) return 0;
	const maxSessions = settings.get(Setting.WT_MAX_SESSIONS);
	if (maxSessions !== undefined) return maxSessions;
	if (settings.get(Setting.ENABLE_WEBTRANSPORT) !== 1) return 0;
	return settings.get(Setting.WEBTRANSPORT_MAX_SESSIONS_DRAFT) ?? 1;
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8");

/** `reason` as UTF-8, cut at a character boundary to fit a CLOSE_WEBTRANSPORT_SESSION capsule. */
export function closeReasonBytes(reason: string): Uint8Array {
	const bytes = utf8Encoder.encode(reason);
	if (bytes.length <= MAX_CLOSE_REASON_BYTES) return bytes;
	let cut = MAX_CLOSE_REASON_BYTES;
	while (cut > 0 && (bytes[cut] & 0xc0) === 0x80) cut--; // don't split a multi-byte character
	return bytes.subarray(0, cut);
}

/** A DATA frame holding one CLOSE_WEBTRANSPORT_SESSION capsule (u32 code, then the reason). */
export function writeCloseCapsuleFrame(w: Writer, code: number, reason: string): void {
	const reasonBytes = closeReasonBytes(reason);
	const capsuleLength = 4 + reasonBytes.length;
	const dataLength = varintSize(Capsule.CLOSE_WEBTRANSPORT_SESSION) + varintSize(capsuleLength) + capsuleLength;
	writeTlvHeader(w, Frame.DATA, dataLength);
	writeTlvHeader(w, Capsule.CLOSE_WEBTRANSPORT_SESSION, capsuleLength);
	w.u32(code).bytes(reasonBytes);
}

/** A DATA frame holding one DRAIN_WEBTRANSPORT_SESSION capsule. */
export function writeDrainCapsuleFrame(w: Writer): void {
	writeTlvHeader(w, Frame.DATA, varintSize(Capsule.DRAIN_WEBTRANSPORT_SESSION) + 1);
	writeTlvHeader(w, Capsule.DRAIN_WEBTRANSPORT_SESSION, 0);
}

/** Decodes a CLOSE_WEBTRANSPORT_SESSION body; H3_MESSAGE_ERROR when malformed. */
export function decodeCloseCapsule(body: Uint8Array): { code: number; reason: string } {
	if (body.length < 4 || body.length > 4 + MAX_CLOSE_REASON_BYTES) {
		throw new DecodeError(`CLOSE_WEBTRANSPORT_SESSION of ${body.length} bytes`, H3.MESSAGE_ERROR);
	}
	const code = ((body[0] << 24) >>> 0) + (body[1] << 16) + (body[2] << 8) + body[3];
	return { code, reason: utf8Decoder.decode(body.subarray(4)) };
}
