/**
 * QUIC under loss, made deterministic: our client ↔ our server over loopback, with the client's UDP
 * socket wrapped so the test chooses which datagrams it drops on the way in and which it holds back
 * (and releases later) on the way out. The server sends many uni streams the way the relay sends
 * groups (one stream per group, the data flushed in one turn, the end in a later one) and every
 * stream must arrive exactly once, byte-exact, with its FIN.
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { after, describe, test } from "node:test";
import { connectQuic } from "../src/quic/client.ts";
import type { QuicConnection } from "../src/quic/connection.ts";
import type { QuicServer } from "../src/quic/server.ts";
import type { QuicStream } from "../src/quic/stream.ts";
import { ALPN, listen, TEST_CERT_HASH } from "./support/quic.ts";
import { until } from "./support/wait.ts";

const T = { timeout: 30_000 };

/** Frame `part` of stream `index`: deterministic bytes, the first 8 naming them. */
function part(index: number, n: number): Buffer {
	const size = n === 0 ? 4000 + (index % 97) : 120 + ((index * 7 + n * 13) % 400);
	const b = Buffer.alloc(size);
	b.writeUInt32BE(index, 0);
	b.writeUInt32BE(n, 4);
	for (let k = 8; k < size; k++) b[k] = (k * 31 + index * 7 + n) & 0xff;
	return b;
}

const PARTS = 5;

function expected(index: number): Buffer {
	return Buffer.concat(Array.from({ length: PARTS }, (_, n) => part(index, n)));
}

/**
 * A real UDP socket whose inbound datagrams pass `dropIn` first, and whose outbound datagrams are
 * held back while `holding` (the originals go to a sink socket so the sender's completion order
 * is untouched; copies go to their real destination on `release()`).
 */
interface LossySocket {
	socket: dgram.Socket;
	dropIn: ((msg: Buffer) => boolean) | null;
	holding: boolean;
	inbound: number;
	dropped: number;
	/** Datagrams sent to their destination (held ones count when released). */
	outbound: number;
	release(): void;
	close(): void;
}

type RawSend = (
	buf: Buffer,
	offset: number,
	length: number,
	port: number,
	host: string,
	cb?: (err: Error | null) => void,
) => void;

async function lossySocket(): Promise<LossySocket> {
	const socket = dgram.createSocket("udp4");
	const sink = dgram.createSocket("udp4");
	await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
	await new Promise<void>((r) => sink.bind(0, "127.0.0.1", () => r()));
	sink.on("message", () => {});
	const sinkPort = sink.address().port;
	const held: [Buffer, number, string][] = [];
	// The overloads dgram's typings declare do not include the form PacketSender uses.
	const send = socket.send.bind(socket) as unknown as RawSend;
	const emit = socket.emit.bind(socket) as (event: string | symbol, ...args: unknown[]) => boolean;
	const lossy: LossySocket = {
		socket,
		dropIn: null,
		holding: false,
		inbound: 0,
		dropped: 0,
		outbound: 0,
		release() {
			for (const [copy, port, host] of held.splice(0)) {
				lossy.outbound++;
				send(copy, 0, copy.length, port, host);
			}
		},
		close() {
			sink.close();
		},
	};
	socket.emit = function (this: dgram.Socket, event: string | symbol, ...args: unknown[]): boolean {
		if (event === "message") {
			lossy.inbound++;
			if (lossy.dropIn?.(args[0] as Buffer)) {
				lossy.dropped++;
				return true;
			}
		}
		return emit(event, ...args);
	} as typeof socket.emit;
	socket.send = function (
		this: dgram.Socket,
		buf: Buffer,
		offset: number,
		length: number,
		port: number,
		host: string,
		cb?: (err: Error | null) => void,
	): void {
		if (lossy.holding) {
			held.push([Buffer.from(buf.subarray(offset, offset + length)), port, host]);
			send(buf, offset, length, sinkPort, "127.0.0.1", cb);
			return;
		}
		lossy.outbound++;
		send(buf, offset, length, port, host, cb);
	} as typeof socket.send;
	return lossy;
}

/** What one client connection received: per stream index, its bytes, FIN and duplicates. */
interface Received {
	bytes: Map<number, Buffer>;
	fins: Set<number>;
	duplicates: number[];
	resets: number[];
	/** Bytes received so far on each stream (by stream id), FIN or not. */
	progress: Map<number, number>;
}

function receiveAll(conn: QuicConnection): Received {
	const got: Received = { bytes: new Map(), fins: new Set(), duplicates: [], resets: [], progress: new Map() };
	conn.onStream = (stream) => {
		const chunks: Buffer[] = [];
		got.progress.set(stream.id, 0);
		stream.onData = (chunk) => {
			chunks.push(Buffer.from(chunk));
			got.progress.set(stream.id, (got.progress.get(stream.id) ?? 0) + chunk.length);
		};
		stream.onFin = () => {
			const all = Buffer.concat(chunks);
			const index = all.readUInt32BE(0);
			if (got.fins.has(index)) got.duplicates.push(index);
			got.fins.add(index);
			got.bytes.set(index, all);
		};
		stream.onReset = (code) => got.resets.push(code);
	};
	return got;
}

/** Every index in [0, count) arrived once, byte-exact, with FIN (a readable message otherwise). */
function assertComplete(got: Received, count: number, label: string): void {
	const missing: number[] = [];
	const wrong: number[] = [];
	for (let i = 0; i < count; i++) {
		const bytes = got.bytes.get(i);
		if (bytes === undefined) missing.push(i);
		else if (!bytes.equals(expected(i))) wrong.push(i);
	}
	assert.deepEqual(
		{ missing, wrong, duplicates: got.duplicates, resets: got.resets },
		{ missing: [], wrong: [], duplicates: [], resets: [] },
		`${label}: streams without FIN ${missing.length}, wrong bytes ${wrong.length}`,
	);
}

async function turn(): Promise<void> {
	await new Promise((resolve) => setImmediate(resolve));
}

describe("quic: loss and recovery (deterministic drops on a real socket)", () => {
	const servers: QuicServer[] = [];
	const sockets: LossySocket[] = [];
	after(async () => {
		for (const server of servers) await server.close();
		for (const s of sockets) s.close();
	});

	async function setup(connections: number): Promise<{
		server: QuicServer;
		lossy: LossySocket;
		sessions: QuicConnection[];
		clients: QuicConnection[];
		received: Received[];
	}> {
		const sessions: QuicConnection[] = [];
		const server = await listen({ onSession: (s) => sessions.push(s) });
		servers.push(server);
		const lossy = await lossySocket();
		sockets.push(lossy);
		const clients: QuicConnection[] = [];
		const received: Received[] = [];
		for (let c = 0; c < connections; c++) {
			const client = await connectQuic({
				host: "127.0.0.1",
				port: server.port,
				alpns: [ALPN],
				certificateHashes: [TEST_CERT_HASH],
				socket: lossy.socket,
			});
			clients.push(client);
			received.push(receiveAll(client));
		}
		await until(() => sessions.length === connections);
		return { server, lossy, sessions, clients, received };
	}

	test(
		"a FIN written after the data was flushed survives the data's ACK arriving before the next flush",
		T,
		async () => {
			const { lossy, sessions, clients, received } = await setup(1);
			const session = sessions[0];
			const got = received[0];
			const COUNT = 20;
			for (let i = 0; i < COUNT; i++) {
				const stream = session.openUni()!;
				// Hold the client's ACKs for this stream's data.
				lossy.holding = true;
				for (let n = 0; n < PARTS; n++) stream.write(part(i, n));
				const total = expected(i).length;
				await until(() => got.progress.get(stream.id) === total, 5_000, `stream ${i}'s data`);
				// The group ends in a later turn (the relay's GROUP_END) and the ACKs of its data are
				// received before the next flush: end it from the timers phase, so that the poll phase
				// (which reads the released ACKs) comes before the check phase (which flushes).
				await new Promise((resolve) => setTimeout(resolve, 0));
				stream.finish();
				lossy.holding = false;
				lossy.release();
			}
			await until(() => got.fins.size === COUNT, 5_000, "every FIN").catch(() => {});
			assertComplete(got, COUNT, "ACK between finish and flush");
			clients[0].close(0, "");
		},
	);

	test("a lost FIN-only packet is retransmitted (data already acknowledged)", T, async () => {
		const { server, lossy, sessions, clients, received } = await setup(1);
		const got = received[0];
		const COUNT = 10;
		for (let i = 0; i < COUNT; i++) {
			const stream = sessions[0].openUni()!;
			for (let n = 0; n < PARTS; n++) stream.write(part(i, n));
			const total = expected(i).length;
			await until(() => got.progress.get(stream.id) === total, 5_000, `stream ${i}'s data`);
			// Let the client's ACK reach the server, then lose the next datagram: the FIN's.
			await turn();
			await until(() => server.stats.packetsIn >= lossy.outbound, 5_000, "the client's ACK at the server");
			let drop = 1;
			lossy.dropIn = () => drop-- > 0;
			stream.finish();
			await until(() => got.fins.has(i), 5_000, `stream ${i}'s FIN after its packet was lost`);
			lossy.dropIn = null;
		}
		assert.ok(lossy.dropped >= COUNT);
		assertComplete(got, COUNT, "lost FIN-only packets");
		clients[0].close(0, "");
	});

	/**
	 * The relay's pattern on 5 connections sharing one client socket: a stream per group, its frames
	 * flushed in one turn and its FIN in the next, while `drop` discards inbound datagrams.
	 */
	async function relayPattern(drop: (n: number) => boolean, label: string): Promise<void> {
		const CONNECTIONS = 5;
		const GROUPS = 150;
		const { lossy, sessions, clients, received } = await setup(CONNECTIONS);
		let n = 0;
		lossy.dropIn = () => drop(++n);
		const open: QuicStream[] = [];
		for (let i = 0; i < GROUPS; i++) {
			for (const session of sessions) {
				const stream = session.openUni()!;
				assert.ok(stream, "stream credit");
				for (let p = 0; p < PARTS; p++) stream.write(part(i, p));
				open.push(stream);
			}
			await turn();
			for (const stream of open.splice(0)) stream.finish();
			// Keep a bounded number of groups in flight (the client must keep up, as a viewer does).
			await until(
				() => received.every((got) => got.fins.size >= i - 8),
				20_000,
				`${label}: group ${i - 8} at every connection`,
			).catch(() => {});
		}
		await until(() => received.every((got) => got.fins.size === GROUPS), 20_000, `${label}: every FIN`).catch(() => {});
		lossy.dropIn = null;
		for (let c = 0; c < CONNECTIONS; c++) assertComplete(received[c], GROUPS, `${label}, connection ${c}`);
		for (const client of clients) client.close(0, "");
	}

	test("relay pattern, bursts of 12 datagrams lost every 97", T, async () => {
		await relayPattern((n) => n % 97 < 12, "bursts");
	});

	test("relay pattern, every 7th datagram lost", T, async () => {
		await relayPattern((n) => n % 7 === 0, "every 7th");
	});

	test("relay pattern, no loss", T, async () => {
		await relayPattern(() => false, "no loss");
	});
});
