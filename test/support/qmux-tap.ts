/**
 * A wire tap on the official clients' WebSocket (qmux) connections: what the relay actually put on
 * the wire, stream by stream, whatever the client library makes of it. @moq/net 0.3.4 on lite-05,
 * for one, reports a SUBSCRIBE stream the relay reset as a clean end of the track (it drains the
 * responses and swallows the reset), so only the wire tells a clean end from a reset there.
 *
 * `tapped(tap, connect)` attaches `tap` to the WebSocket that `connect` opens (one at a time). The tap
 * decodes every frame both ways with the relay's own qmux codec and records, per stream, the bytes
 * (the first few KiB), FIN and RESET_STREAM; connection closes; and the WebSocket close.
 *
 * `tap.starve = true` withholds the client's MAX_STREAMS_UNI frames: the relay runs out of stream
 * credit toward that viewer (after the library's initial 100) and its subscriptions wait for credit.
 * `tap.release()` then sends the newest credit the library tried to give.
 *
 * Also installs the subprotocol filter (websocket-filter.ts): import this module in its place.
 */

import { Reader } from "../../src/coding/reader.ts";
import { Writer } from "../../src/coding/writer.ts";
import { codeName } from "../../src/errors/codes.ts";
import { GroupStreamDecoder } from "../../src/moq/lite/wire/group.ts";
import { BIDI, UNI } from "../../src/moq/lite/wire/stream-type.ts";
import { decodeSubscribe, decodeSubscribeResponse, type SubscribeResponse } from "../../src/moq/lite/wire/subscribe.ts";
import type { LiteVersion } from "../../src/moq/lite/wire/version.ts";
import { decodeFrame, encodeMaxStreams, Frame, FrameType, type Framing, usesRecords } from "../../src/qmux/frames.ts";
import { parseSubprotocol } from "../../src/qmux/subprotocol.ts";
import { withOfferedProtocols } from "./websocket-filter.ts";

/** Bytes kept per stream and direction: enough for every control message, and a group's header. */
const KEEP = 8192;

export interface StreamEnd {
	/** FIN, or RESET_STREAM with its code. */
	kind: "fin" | "reset";
	code: number;
	/** The tap's event counter when it came (orders events across streams). */
	at: number;
}

export interface TapStream {
	readonly id: number;
	/** Received bytes (the first KEEP). */
	recv: Uint8Array;
	recvBytes: number;
	/** Sent bytes (the first KEEP). */
	sent: Uint8Array;
	sentBytes: number;
	/** How the relay's side of the stream ended (null: still open). */
	recvEnd: StreamEnd | null;
	/** How our side ended. */
	sentEnd: StreamEnd | null;
	/** STOP_SENDING the relay sent on it. */
	stopRecv: number | null;
}

/** A group stream as seen on the wire. */
export interface WireGroup {
	seq: number;
	streamId: number;
	/** How its sender ended it (null: still open). */
	end: StreamEnd | null;
	/** Complete frames carried (null when more bytes passed than the tap keeps). */
	frames: number | null;
}

/** A subscription as seen on the wire: the SUBSCRIBE stream and the group streams that name it. */
export interface WireSubscription {
	streamId: number;
	subscribeId: number;
	broadcast: string;
	track: string;
	/** Responses the publishing side sent on the SUBSCRIBE stream (SUBSCRIBE_OK / _END / _DROP). */
	responses: SubscribeResponse[];
	/** How the publishing side ended the SUBSCRIBE stream. */
	end: StreamEnd | null;
	groups: WireGroup[];
}

function append(buf: Uint8Array, data: Uint8Array): Uint8Array {
	const room = KEEP - buf.length;
	if (room <= 0 || data.length === 0) return buf;
	const add = data.length > room ? data.subarray(0, room) : data;
	const out = new Uint8Array(buf.length + add.length);
	out.set(buf);
	out.set(add, buf.length);
	return out;
}

function bytesOf(data: unknown): Uint8Array | null {
	if (data instanceof ArrayBuffer) return new Uint8Array(data);
	if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
	return null;
}

export class WireTap {
	readonly name: string;
	/** The negotiated WebSocket subprotocol ("" when none). */
	protocol = "";
	framing: Framing = "webtransport";
	readonly streams = new Map<number, TapStream>();
	/** CONNECTION_CLOSE / APPLICATION_CLOSE the relay sent. */
	readonly closes: { code: number; app: boolean; reason: string }[] = [];
	/** CONNECTION_CLOSE / APPLICATION_CLOSE this client sent, with the tap's event counter then. */
	readonly closesSent: { code: number; app: boolean; at: number }[] = [];
	/** The WebSocket's close event. */
	socketClose: { code: number; reason: string } | null = null;
	/** The tap's event counter when this client called close() on its WebSocket (null: it did not). */
	closeCalledAt: number | null = null;
	/** Withhold MAX_STREAMS_UNI (see the module comment). */
	starve = false;
	/** The newest MAX_STREAMS_UNI withheld (0: none). */
	withheldUni = 0;
	/** Frames that failed to decode (a tap bug or a broken peer): reported, never thrown. */
	readonly errors: string[] = [];
	#events = 0;
	#socket: TappingWebSocket | null = null;
	readonly #frame = new Frame();
	readonly #reader = new Reader(new Uint8Array(0));

	constructor(name: string) {
		this.name = name;
	}

	/** Events so far (compare with StreamEnd.at). */
	get now(): number {
		return this.#events;
	}

	/** Streams the relay opened to us (server-initiated unidirectional: group streams, lite-05 SETUP). */
	get uniStreamsFromRelay(): number {
		let n = 0;
		for (const id of this.streams.keys()) if ((id & 3) === 3) n++;
		return n;
	}

	attach(socket: TappingWebSocket): void {
		this.#socket = socket;
		socket.addEventListener("open", () => {
			this.protocol = socket.protocol;
			this.framing = parseSubprotocol(socket.protocol).framing;
		});
		socket.addEventListener("message", (ev: MessageEvent) => {
			const b = bytesOf(ev.data);
			if (b) this.#decode(b, "recv");
		});
		socket.addEventListener("close", (ev: CloseEvent) => {
			this.socketClose = { code: ev.code, reason: ev.reason };
		});
	}

	/** Gives the relay the stream credit withheld while starving, and stops starving. */
	release(): void {
		this.starve = false;
		if (this.withheldUni === 0 || !this.#socket) return;
		const w = new Writer(16);
		encodeMaxStreams(w, false, this.withheldUni);
		this.#socket.sendRaw(w.view());
		this.withheldUni = 0;
	}

	/** An outgoing message: recorded, and returned without its MAX_STREAMS_UNI frames while starving (null: send nothing). */
	outgoing(data: unknown): unknown {
		const b = bytesOf(data);
		if (!b) return data;
		const kept = this.#decode(b, "sent");
		if (kept === null) return data;
		return kept.length === 0 ? null : kept;
	}

	#stream(id: number): TapStream {
		let s = this.streams.get(id);
		if (!s) {
			s = {
				id,
				recv: new Uint8Array(0),
				recvBytes: 0,
				sent: new Uint8Array(0),
				sentBytes: 0,
				recvEnd: null,
				sentEnd: null,
				stopRecv: null,
			};
			this.streams.set(id, s);
		}
		return s;
	}

	/** Decodes one message; for an outgoing one while starving, returns the message without MAX_STREAMS_UNI (else null). */
	#decode(msg: Uint8Array, dir: "recv" | "sent"): Uint8Array | null {
		const r = this.#reader.reset(msg);
		const f = this.#frame;
		const dropped: [number, number][] = [];
		try {
			do {
				const start = r.pos;
				decodeFrame(r, this.framing, f);
				this.#events++;
				if (dir === "sent" && f.type === FrameType.MAX_STREAMS_UNI && this.starve) {
					this.withheldUni = Math.max(this.withheldUni, f.value);
					dropped.push([start, r.pos]);
					continue;
				}
				this.#onFrame(f, dir);
			} while (usesRecords(this.framing) && r.remaining > 0);
		} catch (err) {
			this.errors.push(`${dir} frame: ${err instanceof Error ? err.message : String(err)}`);
			return null;
		}
		if (dropped.length === 0) return null;
		const parts: Uint8Array[] = [];
		let at = 0;
		for (const [s, e] of dropped) {
			parts.push(msg.subarray(at, s));
			at = e;
		}
		parts.push(msg.subarray(at));
		const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
		let p = 0;
		for (const part of parts) {
			out.set(part, p);
			p += part.length;
		}
		return out;
	}

	#onFrame(f: Frame, dir: "recv" | "sent"): void {
		switch (f.type) {
			case FrameType.STREAM: {
				const s = this.#stream(f.streamId);
				if (dir === "recv") {
					s.recv = append(s.recv, f.data);
					s.recvBytes += f.data.length;
					if (f.fin && !s.recvEnd) s.recvEnd = { kind: "fin", code: 0, at: this.#events };
				} else {
					s.sent = append(s.sent, f.data);
					s.sentBytes += f.data.length;
					if (f.fin && !s.sentEnd) s.sentEnd = { kind: "fin", code: 0, at: this.#events };
				}
				return;
			}
			case FrameType.RESET_STREAM:
			case FrameType.RESET_STREAM_AT: {
				const s = this.#stream(f.streamId);
				const end: StreamEnd = { kind: "reset", code: f.code, at: this.#events };
				if (dir === "recv") s.recvEnd ??= end;
				else s.sentEnd ??= end;
				return;
			}
			case FrameType.STOP_SENDING:
				if (dir === "recv") this.#stream(f.streamId).stopRecv ??= f.code;
				return;
			case FrameType.CONNECTION_CLOSE:
			case FrameType.APPLICATION_CLOSE:
				if (dir === "sent")
					this.closesSent.push({ code: f.code, app: f.type === FrameType.APPLICATION_CLOSE, at: this.#events });
				else
					this.closes.push({
						code: f.code,
						app: f.type === FrameType.APPLICATION_CLOSE,
						reason: new TextDecoder().decode(f.reason),
					});
				return;
		}
	}

	/**
	 * The subscriptions on this connection, with their group streams: as a viewer, those this client
	 * opened (the relay answers and sends the groups); as a publisher, those the relay opened to it.
	 */
	subscriptions(v: LiteVersion, side: "viewer" | "publisher" = "viewer"): WireSubscription[] {
		// Polled by waits: parsed again only when something new came or went.
		const key = `${v}/${side}/${this.#events}`;
		if (this.#parsed?.key === key) return this.#parsed.subs;
		const subs = this.#subscriptions(v, side);
		this.#parsed = { key, subs };
		return subs;
	}

	#parsed: { key: string; subs: WireSubscription[] } | null = null;

	#subscriptions(v: LiteVersion, side: "viewer" | "publisher"): WireSubscription[] {
		const viewer = side === "viewer";
		const subs: WireSubscription[] = [];
		const byId = new Map<number, WireSubscription>();
		for (const s of this.streams.values()) {
			if ((s.id & 3) !== (viewer ? 0 : 1)) continue;
			const request = viewer ? s.sent : s.recv;
			if (request.length === 0) continue;
			const r = new Reader(request);
			try {
				if (r.varint() !== BIDI.SUBSCRIBE) continue;
				const m = decodeSubscribe(r, v);
				const responses: SubscribeResponse[] = [];
				const rr = new Reader(viewer ? s.recv : s.sent);
				while (rr.remaining > 0) {
					try {
						responses.push(decodeSubscribeResponse(rr, v));
					} catch {
						break;
					}
				}
				const sub: WireSubscription = {
					streamId: s.id,
					subscribeId: m.id,
					broadcast: m.broadcast,
					track: m.track,
					responses,
					end: viewer ? s.recvEnd : s.sentEnd,
					groups: [],
				};
				subs.push(sub);
				byId.set(m.id, sub);
			} catch (err) {
				this.errors.push(`stream ${s.id}: ${err instanceof Error ? err.message : String(err)}`);
			}
		}
		for (const s of this.streams.values()) {
			if ((s.id & 3) !== (viewer ? 3 : 2)) continue;
			const bytes = viewer ? s.recv : s.sent;
			const total = viewer ? s.recvBytes : s.sentBytes;
			if (bytes.length === 0 || bytes[0] !== UNI.GROUP) continue;
			const d = new GroupStreamDecoder(v, Number.MAX_SAFE_INTEGER);
			let id = -1;
			let seq = -1;
			let frames = 0;
			d.onHeader = (subscribeId, sequence) => {
				id = subscribeId;
				seq = sequence;
			};
			d.onFrameEnd = () => frames++;
			try {
				d.push(bytes, 1);
			} catch (err) {
				this.errors.push(`group stream ${s.id}: ${err instanceof Error ? err.message : String(err)}`);
			}
			if (id < 0) continue;
			byId.get(id)?.groups.push({
				seq,
				streamId: s.id,
				end: viewer ? s.recvEnd : s.sentEnd,
				frames: total > bytes.length ? null : frames,
			});
		}
		for (const sub of subs) sub.groups.sort((a, b) => a.seq - b.seq);
		return subs;
	}

	/** RESET_STREAMs the relay sent, as "stream N: code C (name)". */
	resetsReceived(): string[] {
		const out: string[] = [];
		for (const s of this.streams.values())
			if (s.recvEnd?.kind === "reset") out.push(`stream ${s.id}: ${describeCode(s.recvEnd.code)}`);
		return out;
	}
}

export function describeCode(code: number): string {
	return `code ${code} (${codeName(code)})`;
}

let pending: WireTap | null = null;

type SendData = Parameters<WebSocket["send"]>[0];

const Base = globalThis.WebSocket;

export class TappingWebSocket extends Base {
	readonly tap: WireTap | null;

	constructor(url: string | URL, protocols?: string | string[]) {
		super(url, protocols);
		this.tap = pending;
		pending = null;
		this.tap?.attach(this);
	}

	override send(data: SendData): void {
		const tap = this.tap;
		if (!tap) return super.send(data);
		const out = tap.outgoing(data);
		if (out === null) return;
		super.send(out as SendData);
	}

	override close(code?: number, reason?: string): void {
		if (this.tap) this.tap.closeCalledAt ??= this.tap.now;
		super.close(code, reason);
	}

	/** Sends bypassing the tap (the tap's own frames). */
	sendRaw(data: Uint8Array): void {
		super.send(new Uint8Array(data));
	}
}

globalThis.WebSocket = TappingWebSocket as typeof WebSocket;

/**
 * Runs `connect` with `tap` attached to the WebSocket it opens, and (with `keep`) only the offered
 * subprotocols passing `keep` (to force a moq-lite version).
 */
export async function tapped<T>(tap: WireTap, connect: () => Promise<T>, keep?: (p: string) => boolean): Promise<T> {
	pending = tap;
	try {
		return keep ? await withOfferedProtocols(keep, connect) : await connect();
	} finally {
		pending = null;
	}
}
