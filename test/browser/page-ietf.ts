/**
 * Page side of the IETF dialect matrix (test/ietf-browser.test.ts): the official @moq/net 0.3.4,
 * bundled by esbuild into an IIFE that sets `window.moqPage` (an `IetfPageApi`). One page holds
 * many connections, each forced onto one dialect over WebTransport (see `IetfPageHandshake`).
 * Runs in Chromium only.
 * @module
 */

import * as Net from "@moq/net";
import * as IetfNs from "../../node_modules/@moq/net/ietf/index.js";
import * as StreamNs from "../../node_modules/@moq/net/stream.js";
import { type IetfPageApi, type IetfPageReceived, MATRIX_SIZES, matrixPayload } from "./ietf-page-api.ts";

// biome-ignore lint/suspicious/noExplicitAny: @moq/net's internal modules have no usable types here
const Ietf = IetfNs as any;
// biome-ignore lint/suspicious/noExplicitAny: as above
const Stream = StreamNs as any;

const DRAFT_14 = 0xff00000e;

type Conn = Awaited<ReturnType<typeof Net.Connection.connect>>;

/**
 * Every WebTransport the page creates (@moq/net's included) by its options' `protocols` array: the
 * array a connect passes is the one @moq/net hands to the constructor, so it finds the connection's
 * own transport (to read `.protocol`) even with connects in flight at once.
 */
const transports = new Map<unknown, WebTransport>();
const NativeWebTransport = globalThis.WebTransport;
globalThis.WebTransport = class extends NativeWebTransport {
	constructor(url: string | URL, options?: WebTransportOptions & { protocols?: string[] }) {
		super(url, options);
		if (options?.protocols) transports.set(options.protocols, this);
	}
};

const conns = new Map<string, Conn>();
const producers = new Map<string, Net.Track.Producer>();
const announcedPaths = new Map<string, Set<string>>();
interface Subscription {
	/** Groups started, warm-up included. */
	started: number;
	/** seq → "LENGTH:SHA256" per frame, once the group ended. */
	ended: Map<number, string[]>;
	error: string | null;
}
const subscriptions = new Map<string, Subscription>();
const errors: string[] = [];

function conn(id: string): Conn {
	const c = conns.get(id);
	if (c === undefined) throw new Error(`no connection ${id}`);
	return c;
}

function hexBytes(hex: string): Uint8Array<ArrayBuffer> {
	const out = new Uint8Array(hex.length / 2);
	for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
	return out;
}

async function digest(payload: Uint8Array): Promise<string> {
	const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", payload as Uint8Array<ArrayBuffer>));
	return `${payload.length}:${Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** The draft-14 handshake over a WebTransport of our own (what connect() would run on `moql` if it offered 14 alone). */
async function connectDraft14(url: URL, protocols: string[], certSha256: string): Promise<Conn> {
	const quic = new WebTransport(url, {
		allowPooling: false,
		congestionControl: "low-latency",
		protocols,
		serverCertificateHashes: [{ algorithm: "sha-256", value: hexBytes(certSha256) }],
	} as WebTransportOptions);
	quic.closed.catch(() => {});
	await quic.ready;
	const stream = await Stream.Stream.open(quic);
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
		quic,
		control: stream,
		maxRequestId: server.parameters.getVarint(Ietf.SetupOption.MaxRequestId) ?? 0n,
		version: server.version,
		solicit: Ietf.solicitFromSetup(server.parameters),
	}) as Conn;
}

async function readGroups(sub: Net.Track.Subscriber, s: Subscription): Promise<void> {
	for (;;) {
		const group = await sub.recvGroup();
		if (!group) return;
		s.started++;
		const seq = group.sequence;
		void (async () => {
			const frames: Promise<string>[] = [];
			for (;;) {
				const frame = await group.readFrame();
				if (!frame) break;
				frames.push(digest(frame.payload));
			}
			s.ended.set(seq, await Promise.all(frames));
		})().catch((err) => {
			s.error = `group ${seq}: ${err}`;
		});
	}
}

const api: IetfPageApi = {
	library: "@moq/net ietf",
	async connect(id, url, protocol, handshake, certSha256) {
		const target = new URL(url);
		const protocols = [protocol];
		let c: Conn;
		try {
			c =
				handshake === "draft14"
					? await connectDraft14(target, protocols, certSha256)
					: await Net.Connection.connect(target, {
							websocket: { enabled: false },
							webtransport: { protocols, serverCertificateHashes: [{ value: certSha256 }] },
						} as Parameters<typeof Net.Connection.connect>[1]);
		} catch (err) {
			// A session the handshake failed on must not stay open at the relay.
			transports.get(protocols)?.close();
			transports.delete(protocols);
			throw err;
		}
		conns.set(id, c);
		const wt = transports.get(protocols) as (WebTransport & { protocol?: string }) | undefined;
		transports.delete(protocols);
		if (wt === undefined) throw new Error(`${id}: connected without a WebTransport of its own`);
		return { version: c.version, transport: c.transport, protocol: wt.protocol ?? "(none)" };
	},
	publish(id, path, track) {
		const broadcast = new Net.Broadcast.Producer();
		producers.set(id, broadcast.createTrack(track));
		conn(id).publish(Net.Path.from(path), broadcast);
	},
	writeGroups(writes) {
		return writes.map(({ id, pub, group }) => {
			const producer = producers.get(id);
			if (producer === undefined) throw new Error(`${id} publishes nothing`);
			const g = producer.appendGroup();
			for (let f = 0; f < MATRIX_SIZES.length; f++) {
				g.writeFrame({ payload: matrixPayload(pub, group, f), timestamp: Net.Time.Timestamp.now() });
			}
			g.close();
			return g.sequence;
		});
	},
	writeWarmUp(ids) {
		for (const id of ids) {
			const g = producers.get(id)?.appendGroup();
			if (g === undefined) throw new Error(`${id} publishes nothing`);
			g.writeFrame({ payload: new Uint8Array([0xee]), timestamp: Net.Time.Timestamp.now() });
			g.close();
		}
	},
	watchAnnounced(id, prefix) {
		const seen = new Set<string>();
		announcedPaths.set(id, seen);
		const announced = conn(id).announced(Net.Path.from(prefix));
		void (async () => {
			for (;;) {
				const ev = await announced.next();
				if (!ev) return;
				if (ev.active) seen.add(ev.path);
				else seen.delete(ev.path);
			}
		})().catch((err) => errors.push(`${id} announced: ${err}`));
	},
	announced: (id) => [...(announcedPaths.get(id) ?? [])],
	subscribe(id, key, path, track) {
		const s: Subscription = { started: 0, ended: new Map(), error: null };
		subscriptions.set(key, s);
		const sub = conn(id).consume(Net.Path.from(path)).subscribe(track, { priority: 1 });
		readGroups(sub, s).catch((err) => {
			s.error = `subscription: ${err}`;
		});
	},
	groupCounts: () => Object.fromEntries([...subscriptions].map(([k, s]) => [k, s.started])),
	received(seqs) {
		const out: Record<string, IetfPageReceived> = {};
		for (const [key, want] of Object.entries(seqs)) {
			const s = subscriptions.get(key);
			if (s === undefined) throw new Error(`no subscription ${key}`);
			const groups: IetfPageReceived["groups"] = [];
			for (const seq of want) {
				const frames = s.ended.get(seq);
				if (frames !== undefined) groups.push({ seq, frames });
			}
			out[key] = { groups, error: s.error };
		}
		return out;
	},
	errors: () => errors,
	closeAll() {
		for (const c of conns.values()) c.close();
		conns.clear();
	},
};

(window as unknown as { moqPage: IetfPageApi }).moqPage = api;
