/**
 * Real-socket interop: our server (startHttpServer + WsSession) against the official @moq/qmux
 * clients, 0.3.3 (used by @moq/net) in every framing and 0.0.6 (used by @moq/lite).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import Qmux006 from "@moq/qmux";
import Qmux, { StreamError } from "../node_modules/@moq/net/node_modules/@moq/qmux/index.js";
import { type EchoServer, pattern, readAll, startEcho } from "./support/websocket.ts";

const TIMEOUT = { timeout: 20_000 };

type Client = InstanceType<typeof Qmux>;

/** The 0.3.3 client over a WebSocket we open ourselves, to offer exactly `protocols`. */
function overSocket(url: string, protocols?: string[]): Client {
	return new Qmux(new WebSocket(url, protocols) as unknown as ConstructorParameters<typeof Qmux>[0]);
}

interface Variant {
	name: string;
	/** What the server should report as the app protocol. */
	protocol: string;
	framing: string;
	connect(base: string): Client;
}

const VARIANTS: Variant[] = [
	...(["qmux-02", "qmux-01", "qmux-00"] as const).map(
		(v): Variant => ({
			name: `${v}.moq-lite-05`,
			protocol: "moq-lite-05",
			framing: v,
			connect: (base) =>
				new Qmux(`${base}/anon/room?jwt=abc`, { protocols: [`${v}.moq-lite-05`], requireProtocol: true }),
		}),
	),
	{
		name: "bare qmux-00",
		protocol: "",
		framing: "qmux-00",
		connect: (base) => overSocket(`${base.replace("http", "ws")}/anon/room?jwt=abc`, ["qmux-00"]),
	},
	{
		name: "webtransport (legacy)",
		protocol: "",
		framing: "webtransport",
		connect: (base) => overSocket(`${base.replace("http", "ws")}/anon/room?jwt=abc`, ["webtransport"]),
	},
	{
		name: "no subprotocol (legacy)",
		protocol: "",
		framing: "webtransport",
		connect: (base) => overSocket(`${base.replace("http", "ws")}/anon/room?jwt=abc`),
	},
];

async function echoBidi(client: Client, data: Uint8Array): Promise<Uint8Array> {
	const bidi = await client.createBidirectionalStream();
	const reading = readAll(bidi.readable);
	const writer = bidi.writable.getWriter();
	await writer.write(data);
	await writer.close();
	return reading;
}

async function echoUni(client: Client, data: Uint8Array): Promise<Uint8Array> {
	const incoming = client.incomingUnidirectionalStreams.getReader();
	const out = await client.createUnidirectionalStream();
	const writer = out.getWriter();
	await writer.write(data);
	await writer.close();
	const { value } = await incoming.read();
	incoming.releaseLock();
	assert.ok(value);
	return readAll(value);
}

describe("qmux over WebSocket with @moq/qmux 0.3.3", () => {
	let server: EchoServer;
	before(async () => {
		// Small windows, so a 1 MB transfer only completes if both sides replenish credit.
		server = await startEcho({
			limits: { maxData: 64 * 1024, maxStreamDataBidiRemote: 32 * 1024, maxStreamDataUni: 32 * 1024, maxStreamsUni: 4 },
		});
	});
	after(() => server.handle.close());

	for (const v of VARIANTS) {
		test(`${v.name}: negotiation, echo, 1 MB, uni, resets`, TIMEOUT, async () => {
			const before = server.sessions.length;
			const client = v.connect(server.url);
			await client.ready;
			assert.equal(client.protocol, v.protocol);
			const session = server.sessions[before];
			assert.ok(session);
			assert.equal(session.protocol, v.protocol);
			assert.equal((session as unknown as { framing: string }).framing, v.framing);
			assert.equal(session.path, "/anon/room");
			assert.equal(session.query.get("jwt"), "abc");
			assert.match(session.remote, /^127\.0\.0\.1:\d+$/);

			// Small echo, byte-exact.
			const small = pattern(1000, 7);
			assert.deepEqual(await echoBidi(client, small), small);

			// 1 MB through 32 KiB server windows and the client's 256 KiB windows.
			const big = pattern(1024 * 1024, 3);
			assert.deepEqual(await echoBidi(client, big), big);

			// Uni: the server opens a uni stream back with the same bytes; more streams than the
			// server's uni limit (4), so MAX_STREAMS replenishment is exercised too.
			for (let i = 0; i < 6; i++) {
				const data = pattern(40_000 + i, 11 + i);
				assert.deepEqual(await echoUni(client, data), data);
			}

			// Client resets its send side with 42: the server sees 42 and resets back with 43.
			const bidi = await client.createBidirectionalStream();
			const reader = bidi.readable.getReader();
			const writer = bidi.writable.getWriter();
			await writer.write(pattern(10));
			const first = await reader.read();
			assert.deepEqual(first.value, pattern(10));
			await writer.abort(new StreamError(42));
			await assert.rejects(reader.read(), (e: StreamError) => {
				assert.equal(e.streamErrorCode, 43);
				return true;
			});

			// Client asks the server to stop (STOP_SENDING 7): the server's onStop sees 7.
			const bidi2 = await client.createBidirectionalStream();
			const w2 = bidi2.writable.getWriter();
			await w2.write(pattern(5));
			const r2 = bidi2.readable.getReader();
			assert.deepEqual((await r2.read()).value, pattern(5));
			await r2.cancel(new StreamError(7));
			await server.event(`${before}:stop:7`);
			await server.event(`${before}:reset:42`);

			// The server asks the client to stop (STOP_SENDING 77): the client's writable fails with 77.
			const bidi3 = await client.createBidirectionalStream();
			const w3 = bidi3.writable.getWriter();
			await w3.write(Uint8Array.of(0xff));
			await assert.rejects(w3.closed, (e: StreamError) => {
				assert.equal(e.streamErrorCode, 77);
				return true;
			});

			// Close from the client with an app code: the server's onClose reports it.
			const closed = server.nextClose();
			client.close({ closeCode: 3, reason: "bye" });
			assert.deepEqual(await closed, { code: 3, reason: "bye" });
		});
	}

	test("server close(code, reason) reaches the client", TIMEOUT, async () => {
		const before = server.sessions.length;
		const client = VARIANTS[0].connect(server.url);
		await client.ready;
		const session = server.sessions[before];
		const closed = server.nextClose();
		session.close(5, "going away");
		assert.deepEqual(await client.closed, { closeCode: 5, reason: "going away" });
		assert.deepEqual(await closed, { code: 5, reason: "going away" });
		assert.equal(session.closed, true);
	});

	test("server-opened streams respect the client's stream limit and fire onStreamCredit", TIMEOUT, async () => {
		const before = server.sessions.length;
		const client = new Qmux(`${server.url}/`, {
			protocols: ["qmux-01.moq-lite-05"],
			requireProtocol: true,
			config: { maxStreamsUni: 2n },
		});
		await client.ready;
		const session = server.sessions[before];
		// Wait for the client's parameters (they set the limit) by a bidi round trip.
		assert.deepEqual(await echoBidi(client, pattern(3)), pattern(3));
		const a = session.openUni();
		const b = session.openUni();
		assert.ok(a && b);
		assert.equal(session.openUni(), null);
		const credit = new Promise<void>((r) => {
			session.onStreamCredit = r;
		});
		a.write(pattern(100, 1));
		a.finish();
		b.write(pattern(100, 2));
		b.finish();
		const incoming = client.incomingUnidirectionalStreams.getReader();
		for (let i = 0; i < 2; i++) {
			const { value } = await incoming.read();
			assert.ok(value);
			assert.deepEqual(await readAll(value), pattern(100, i + 1));
		}
		await credit;
		const c = session.openUni();
		assert.ok(c);
		client.close();
	});
});

describe("qmux over WebSocket with @moq/qmux 0.0.6 (@moq/lite)", () => {
	let server: EchoServer;
	before(async () => {
		server = await startEcho({ limits: { maxData: 64 * 1024, maxStreamDataBidiRemote: 32 * 1024 } });
	});
	after(() => server.handle.close());

	test("bare offer negotiates qmux-00 with no app protocol; echo and 1 MB", TIMEOUT, async () => {
		const client = new Qmux006(`${server.url}/lite`);
		await client.ready;
		assert.equal(client.protocol, "");
		const session = server.sessions[0];
		assert.equal((session as unknown as { framing: string }).framing, "qmux-00");
		assert.equal(session.protocol, "");
		assert.equal(session.path, "/lite");
		for (const data of [pattern(1000), pattern(1024 * 1024, 5)]) {
			const bidi = await client.createBidirectionalStream();
			const reading = readAll(bidi.readable);
			const writer = bidi.writable.getWriter();
			await writer.write(data);
			await writer.close();
			assert.deepEqual(await reading, data);
		}
		client.close();
	});

	test("an app protocol offer negotiates qmux-00.moq-lite-04", TIMEOUT, async () => {
		const client = new Qmux006(`${server.url}/lite`, { protocols: ["moq-lite-04"] });
		await client.ready;
		assert.equal(client.protocol, "moq-lite-04");
		const data = pattern(50_000);
		const bidi = await client.createBidirectionalStream();
		const reading = readAll(bidi.readable);
		const writer = bidi.writable.getWriter();
		await writer.write(data);
		await writer.close();
		assert.deepEqual(await reading, data);
		client.close();
	});
});
