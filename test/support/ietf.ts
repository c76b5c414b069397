/**
 * The official @moq/net 0.3.4 client forced onto one dialect, over WebSocket (qmux) in Node, for the
 * IETF tests (test/ietf-*.test.ts). Not a test file.
 *
 * - moq-lite-05/-03 and IETF drafts 15–20: `new Session(url, { protocols: [alpn], versions: { [alpn]:
 *   null }, requireProtocol: true })` from @moq/qmux, passed as `transport` (connect() then picks the
 *   dialect by the negotiated name). Drafts 18 and 20 are pinned to `qmux-01`, as @moq/net's own
 *   WebSocket connect pins them (connection/connect.js); 17+ run @moq/net's uni-stream SETUP.
 * - moq-lite-02: the same with `moql`: @moq/net then offers [lite-02, lite-01, draft-14] in its
 *   CLIENT_SETUP and the relay keeps choosing lite-02.
 * - Draft 14: @moq/net never offers it alone (it only reaches draft-14 when a server picks it from
 *   that list) and refuses the `moq-00` name. So the handshake connect() would run is done here with
 *   @moq/net's own classes (its `ietf/` and `stream.js`, which the package does not export by name):
 *   CLIENT_SETUP offering only 0xff00000e over `moql` (or `moq-00`), then its `Ietf.Connection`.
 */
import * as Net from "@moq/net";
import * as IetfNs from "../../node_modules/@moq/net/ietf/index.js";
// @moq/net's own qmux (0.3.3), the one its WebSocket connect uses: the package's top-level
// `@moq/qmux` is 0.0.6, @moq/lite's, which ignores `versions` and `requireProtocol`, and throws from
// its message handler when data arrives for a stream the application has cancelled (an unhandled
// rejection that failed this file's teardown now and then).
import Session from "../../node_modules/@moq/net/node_modules/@moq/qmux/index.js";
import * as StreamNs from "../../node_modules/@moq/net/stream.js";

/** @moq/net's typings do not resolve under this project's settings: the parts used, typed here. */
export interface NetGroupProducer {
	writeFrame(frame: { payload: Uint8Array; timestamp: unknown }): void;
	close(abort?: Error): void;
}
export interface NetTrackProducer {
	appendGroup(): NetGroupProducer;
	close(abort?: Error): void;
}
export interface NetBroadcastProducer {
	createTrack(name: string): NetTrackProducer;
	close(): void;
}
export interface NetGroup {
	sequence: number;
	readFrame(): Promise<{ payload: Uint8Array } | undefined>;
}
export interface NetTrack {
	recvGroup(): Promise<NetGroup | undefined>;
	close(): void;
}
export interface NetConnection {
	version: string;
	close(): void;
	publish(path: unknown, broadcast: unknown): void;
	announced(prefix: unknown): { next(): Promise<{ path: string; active: boolean } | undefined> };
	consume(path: unknown): { subscribe(track: string, options: { priority: number }): NetTrack };
	closed: Promise<void>;
}

/** What the tests need of @moq/net's unexported internals. */
// biome-ignore lint/suspicious/noExplicitAny: @moq/net's internal modules have no usable types here
const Ietf = IetfNs as any;
// biome-ignore lint/suspicious/noExplicitAny: as above
const Stream = StreamNs as any;

export const DRAFT_14 = 0xff00000e;
export const DRAFT_15 = 0xff00000f;
export const DRAFT_16 = 0xff000010;

export type Dialect =
	| "lite-02"
	| "lite-03"
	| "lite-05"
	| "d14"
	| "d14/moq-00"
	| "d15"
	| "d16"
	| "d17"
	| "d18"
	| "d19"
	| "d20";

/** Every IETF draft dialect @moq/net can be forced onto here (draft 14 over `moql`), oldest first. */
export const IETF_DIALECTS: readonly Dialect[] = ["d14", "d15", "d16", "d17", "d18", "d19", "d20"];

/** The IETF drafts the relay speaks, and each one's application protocol name. */
export const IETF_DRAFT_ALPN: Readonly<Record<number, string>> = {
	14: "moq-00",
	15: "moqt-15",
	16: "moqt-16",
	17: "moqt-17",
	18: "moqt-18",
	19: "moqt-19",
	20: "moqt-20",
};

/** What `conn.version` reads for each dialect. */
export const VERSION_NAME: Record<Dialect, string> = {
	"lite-02": "moq-lite-02",
	"lite-03": "moq-lite-03",
	"lite-05": "moq-lite-05",
	d14: "moq-transport-14",
	"d14/moq-00": "moq-transport-14",
	d15: "moq-transport-15",
	d16: "moq-transport-16",
	d17: "moq-transport-17",
	d18: "moq-transport-18",
	d19: "moq-transport-19",
	d20: "moq-transport-20",
};

/** The qmux draft @moq/net pins an application protocol to over WebSocket (null: any). */
const QMUX_PIN: Record<string, string | null> = { "moqt-18": "qmux-01", "moqt-20": "qmux-01" };

/** A qmux session (WebSocket) pinned to one application protocol. */
export async function qmux(url: URL, protocol: string): Promise<Session> {
	// `versions` pins the qmux draft per protocol (null: any); @moq/qmux's typings predate it.
	const t = new Session(url, {
		protocols: [protocol],
		versions: { [protocol]: QMUX_PIN[protocol] ?? null },
		requireProtocol: true,
	} as never);
	await t.ready;
	return t;
}

/** @moq/net connected over WebSocket on `dialect` (see the module doc). */
export async function connectDialect(url: URL, dialect: Dialect): Promise<NetConnection> {
	switch (dialect) {
		case "lite-02":
			return (await Net.Connection.connect(url, { transport: await qmux(url, "moql") })) as unknown as NetConnection;
		case "lite-03":
			return (await Net.Connection.connect(url, {
				transport: await qmux(url, "moq-lite-03"),
			})) as unknown as NetConnection;
		case "lite-05":
			return (await Net.Connection.connect(url, {
				transport: await qmux(url, "moq-lite-05"),
			})) as unknown as NetConnection;
		case "d15":
			return (await Net.Connection.connect(url, { transport: await qmux(url, "moqt-15") })) as unknown as NetConnection;
		case "d16":
		case "d17":
		case "d18":
		case "d19":
		case "d20":
			return (await Net.Connection.connect(url, {
				transport: await qmux(url, `moqt-${dialect.slice(1)}`),
			})) as unknown as NetConnection;
		case "d14":
			return connectDraft14(url, "moql");
		case "d14/moq-00":
			return connectDraft14(url, "moq-00");
	}
}

/** The draft-14 handshake @moq/net's connect() runs on `moql`, offering draft-14 alone. */
export async function connectDraft14(url: URL, protocol: "moql" | "moq-00"): Promise<NetConnection> {
	const t = await qmux(url, protocol);
	const stream = await Stream.Stream.open(t);
	await stream.writer.u53(0x20);
	const params = new Ietf.SetupOptions();
	params.setVarint(Ietf.SetupOption.MaxRequestId, 42069n);
	params.setBytes(Ietf.SetupOption.Implementation, new TextEncoder().encode("moq-lite-js"));
	Ietf.solicitIntoSetup(params);
	await new Ietf.ClientSetup({ versions: [DRAFT_14], parameters: params }).encode(stream.writer, DRAFT_14);
	const type = await stream.reader.u53();
	if (type !== 0x21) throw new Error(`expected SERVER_SETUP (0x21), got 0x${type.toString(16)}`);
	const server = await Ietf.ServerSetup.decode(stream.reader, DRAFT_14);
	return new Ietf.Connection({
		discovery: true,
		client: true,
		url,
		quic: t,
		control: stream,
		maxRequestId: server.parameters.getVarint(Ietf.SetupOption.MaxRequestId) ?? 0n,
		version: server.version,
		solicit: Ietf.solicitFromSetup(server.parameters),
	}) as NetConnection;
}

/** A new @moq/net broadcast producer. */
export function newBroadcast(): NetBroadcastProducer {
	return new Net.Broadcast.Producer() as unknown as NetBroadcastProducer;
}

export function path(p: string): unknown {
	return Net.Path.from(p);
}

export function now(): unknown {
	return Net.Time.Timestamp.now();
}

/** The bytes @moq/net's encoder writes in `fn` (its `Writer` over a collecting stream). */
export async function netBytes(version: number, fn: (w: unknown) => Promise<void>): Promise<Uint8Array> {
	const chunks: Uint8Array[] = [];
	const w = new Stream.Writer(
		new WritableStream<Uint8Array>({
			write(chunk) {
				chunks.push(new Uint8Array(chunk));
			},
		}),
		version,
	);
	await fn(w);
	w.close();
	await w.closed;
	const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
	let p = 0;
	for (const c of chunks) {
		out.set(c, p);
		p += c.length;
	}
	return out;
}

/** Decodes `bytes` with @moq/net's reader in `fn` (its messages are untyped here). */
// biome-ignore lint/suspicious/noExplicitAny: @moq/net's message classes have no usable types here
export async function netRead(version: number, bytes: Uint8Array, fn: (r: unknown) => Promise<any>): Promise<any> {
	return fn(new Stream.Reader(undefined, bytes, version));
}

/** @moq/net's IETF namespace (message classes, Version, SetupOptions, Parameters, Group, Frame…). */
export { Ietf as NetIetf };

// ---------------------------------------------------------------------------------------------
// A raw IETF client over any TransportSession (raw QUIC from src/quic/client.ts, WebTransport from
// src/webtransport/client.ts): our own codec on the wire, every message and close code visible.

import { NEED_MORE } from "../../src/coding/errors.ts";
import { Reader } from "../../src/coding/reader.ts";
import { Writer } from "../../src/coding/writer.ts";
import { hasRequestStreams, type IetfDraft, versionCode } from "../../src/moq/ietf/version.ts";
import {
	decodeAfterType,
	decodeControl,
	encodeControl,
	type IetfMessage,
	inDraft,
	Msg,
	type Params,
	readVarint,
	SetupParam,
} from "../../src/moq/ietf/wire/message.ts";
import { decodeSubgroupHeader, ObjectParser, type SubgroupHeader } from "../../src/moq/ietf/wire/object.ts";
import { MessageBuffer } from "../../src/moq/message-buffer.ts";
import type { TransportSession, TransportStream } from "../../src/transport/types.ts";

/** A subgroup stream the relay opened toward a raw client, parsed as it arrives. */
export interface RawGroup {
	header: SubgroupHeader | null;
	objects: { id: number; payload: Uint8Array }[];
	/** "fin", "reset <code>", or null while open. */
	end: string | null;
}

/**
 * A raw IETF client. On drafts 14–16 `control` is the bidirectional control stream; on 17+ it is our
 * SETUP stream (unidirectional), the relay's SETUP arrives on one of its own, and `request()` opens a
 * stream per request. Every message received (on any stream) is queued for `next()`; `streamOf`
 * says which stream it came on (a request stream the relay opened, such as its upstream SUBSCRIBE,
 * is answered with `send(m, streamOf(m))`).
 */
export class RawIetf {
	readonly t: TransportSession;
	readonly d: IetfDraft;
	control!: TransportStream;
	readonly groups: RawGroup[] = [];
	/** 17+: how each request stream ended from the relay's side ("fin", "reset <code>"), by stream. */
	readonly ends = new Map<TransportStream, string>();
	readonly #from = new WeakMap<IetfMessage, TransportStream>();
	/** Bidi streams the relay opened (none expected on 14–16). */
	readonly #buf = new MessageBuffer(1 << 20);
	readonly #queue: IetfMessage[] = [];
	#wake: (() => void) | null = null;
	/** Resolves with the session's close (code, reason). */
	readonly closed: Promise<{ code: number; reason: string }>;
	#closedInfo: { code: number; reason: string } | null = null;
	controlEnd: string | null = null;

	constructor(t: TransportSession, d: IetfDraft) {
		this.t = t;
		this.d = d;
		this.closed = new Promise((resolve) => {
			t.onClose = (code, reason) => {
				this.#closedInfo = { code, reason };
				resolve({ code, reason });
				this.#wake?.();
			};
		});
		t.onStream = (s) => {
			if (s.bidi) {
				if (!hasRequestStreams(d)) {
					s.reset(0);
					return;
				}
				this.#follow(s);
				return;
			}
			this.#uni(s);
		};
	}

	/** A unidirectional stream from the relay: a subgroup stream, or (17+) its SETUP stream. */
	#uni(s: TransportStream): void {
		const d = this.d;
		const buf = new MessageBuffer(1 << 20);
		let type: number | null = null;
		let setup = false;
		let g: RawGroup | null = null;
		let parser: ObjectParser | null = null;
		s.onData = (chunk) => {
			if (parser) return parser.push(chunk);
			buf.push(chunk);
			if (setup) return this.#drain(buf, s);
			if (type === null) {
				const t = buf.tryDecode((r) => readVarint(r, d));
				if (t === undefined) return;
				type = t;
				if (hasRequestStreams(d) && t === Msg.SETUP) {
					setup = true;
					const m = buf.tryDecode((r) => decodeAfterType(r, Msg.SETUP, d));
					if (m) this.#push(m, s);
					return this.#drain(buf, s);
				}
				g = { header: null, objects: [], end: null };
				this.groups.push(g);
			}
			const grp = g!;
			const t = type;
			const h = buf.tryDecode(inDraft(d, (r) => decodeSubgroupHeader(r, t, d)));
			if (!h) return;
			grp.header = h;
			const p = new ObjectParser(d, h.extensions, 1 << 24);
			parser = p;
			let cur: number[] = [];
			p.onObject = (id) => {
				cur = [];
				grp.objects.push({ id, payload: new Uint8Array(0) });
			};
			p.onData = (view) => cur.push(...view);
			p.onEnd = () => {
				grp.objects[grp.objects.length - 1].payload = Uint8Array.from(cur);
			};
			const rest = buf.rest();
			if (rest.length) p.push(rest.slice());
		};
		s.onFin = () => {
			if (g) g.end = "fin";
			else if (setup) this.controlEnd = "fin";
		};
		s.onReset = (code) => {
			if (g) g.end = `reset ${code}`;
			else if (setup) this.controlEnd = `reset ${code}`;
		};
	}

	/** Decodes every whole message `buf` holds, queued as from `s`. */
	#drain(buf: MessageBuffer, s: TransportStream): void {
		for (;;) {
			let m: IetfMessage | undefined;
			try {
				m = buf.tryDecode((r) => decodeControl(r, this.d));
			} catch (err) {
				this.ends.set(s, `undecodable: ${(err as Error).message}`);
				return;
			}
			if (m === undefined) break;
			this.#push(m, s);
		}
	}

	#push(m: IetfMessage, s: TransportStream): void {
		this.#from.set(m, s);
		this.#queue.push(m);
		this.#wake?.();
	}

	/** Reads a bidirectional stream's messages into the queue (17+ request streams). */
	#follow(s: TransportStream): void {
		const buf = new MessageBuffer(1 << 20);
		s.onData = (chunk) => {
			buf.push(chunk);
			this.#drain(buf, s);
		};
		s.onFin = () => {
			this.ends.set(s, "fin");
			this.#wake?.();
		};
		s.onReset = (code) => {
			this.ends.set(s, `reset ${code}`);
			this.#wake?.();
		};
	}

	/** The stream a received message came on. */
	streamOf(m: IetfMessage): TransportStream {
		const s = this.#from.get(m);
		if (!s) throw new Error("not a received message");
		return s;
	}

	/**
	 * Sends a request: on 14–16 on the control stream; on 17+ on a new stream of its own (returned),
	 * whose replies are queued.
	 */
	request(m: IetfMessage): TransportStream {
		if (!hasRequestStreams(this.d)) {
			this.send(m);
			return this.control;
		}
		const s = this.t.openBidi();
		if (!s) throw new Error("no stream credit for a request");
		this.#follow(s);
		this.send(m, s);
		return s;
	}

	/** 17+: a new request stream with `bytes` on it (raw, for bad input). */
	rawRequest(bytes: Uint8Array | number[]): TransportStream {
		const s = this.t.openBidi();
		if (!s) throw new Error("no stream credit for a request");
		this.#follow(s);
		this.sendRaw(bytes, s);
		return s;
	}

	get isClosed(): boolean {
		return this.#closedInfo !== null;
	}

	/**
	 * Opens the control stream and sends CLIENT_SETUP (draft-14 offers `versions`); on 17+ opens our
	 * SETUP stream and sends SETUP (the relay's arrives as a `setup` message).
	 */
	setup(params: Params = new Map([[SetupParam.MAX_REQUEST_ID, 1000]]), versions = [versionCode(this.d)]): void {
		if (hasRequestStreams(this.d)) {
			const u = this.t.openUni();
			if (!u) throw new Error("no stream credit for the SETUP stream");
			this.control = u;
			params.delete(SetupParam.MAX_REQUEST_ID);
			this.send({ kind: "setup", params });
			return;
		}
		const s = this.t.openBidi();
		if (!s) throw new Error("no stream credit for the control stream");
		this.control = s;
		s.onData = (chunk) => {
			this.#buf.push(chunk);
			for (;;) {
				let m: IetfMessage | undefined;
				try {
					m = this.#buf.tryDecode((r) => decodeControl(r, this.d));
				} catch (err) {
					this.controlEnd = `undecodable: ${(err as Error).message}`;
					return;
				}
				if (m === undefined) break;
				this.#push(m, s);
			}
			this.#wake?.();
		};
		s.onFin = () => {
			this.controlEnd = "fin";
		};
		s.onReset = (code) => {
			this.controlEnd = `reset ${code}`;
		};
		this.send({ kind: "client_setup", versions, params });
	}

	send(m: IetfMessage, on: TransportStream = this.control): void {
		const w = new Writer(64);
		encodeControl(w, m, this.d);
		on.write(w.finish());
	}

	sendRaw(bytes: Uint8Array | number[], on: TransportStream = this.control): void {
		on.write(bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes));
	}

	/** The next control message (skipping none), or throws after `ms`. */
	async next(ms = 3000): Promise<IetfMessage> {
		const deadline = Date.now() + ms;
		for (;;) {
			const m = this.#queue.shift();
			if (m) return m;
			if (this.#closedInfo) throw new Error(`session closed (${this.#closedInfo.code}) ${this.#closedInfo.reason}`);
			const left = deadline - Date.now();
			if (left <= 0) throw new Error("no control message in time");
			await new Promise<void>((resolve) => {
				const timer = setTimeout(resolve, left);
				this.#wake = () => {
					clearTimeout(timer);
					resolve();
				};
			});
			this.#wake = null;
		}
	}

	/** The next control message of `kind`, skipping others (MAX_REQUEST_ID updates and such). */
	async expect<K extends IetfMessage["kind"]>(kind: K, ms = 3000): Promise<Extract<IetfMessage, { kind: K }>> {
		const deadline = Date.now() + ms;
		for (;;) {
			const m = await this.next(Math.max(1, deadline - Date.now()));
			if (m.kind === kind) return m as Extract<IetfMessage, { kind: K }>;
			if (m.kind === "max_request_id") continue;
			throw new Error(`expected ${kind}, got ${JSON.stringify(m, (_k, v) => (v instanceof Map ? [...v] : v))}`);
		}
	}

	close(code = 0): void {
		this.t.close(code, "");
	}
}

/** Decodes one message from bytes (a helper for assertions). */
export function decodeOne(bytes: Uint8Array, d: IetfDraft): IetfMessage | undefined {
	try {
		return decodeControl(new Reader(bytes), d);
	} catch (err) {
		if (err === NEED_MORE) return undefined;
		throw err;
	}
}
