/**
 * Our WebTransport client against our WebTransport server over the in-memory loopback pair:
 * negotiation, streams both ways, error codes, and closing from either side.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fromH3, H3 } from "../src/errors/codes.ts";
import type { TransportSession, TransportStream } from "../src/transport/types.ts";
import { connectWebTransport, WebTransportRejectedError } from "../src/webtransport/client.ts";
import { acceptHttp3, type WebTransportServerOptions } from "../src/webtransport/server.ts";
import { loopbackPair } from "./support/loopback.ts";
import { collect as collectBytes } from "./support/quic.ts";
import { until } from "./support/wait.ts";

const TIMEOUT = { timeout: 5000 };
const text = new TextEncoder();
const untext = new TextDecoder();

async function pair(
	clientProtocols = ["moq-lite-05", "moq-lite-04"],
	serverOpts: Partial<WebTransportServerOptions> = {},
	url = "https://127.0.0.1:4443/room/a?jwt=t",
) {
	const { client: quicClient, server: quicServer } = loopbackPair();
	let serverSession: TransportSession | null = null;
	acceptHttp3(quicServer, {
		protocols: ["moq-lite-05", "moq-lite-04", "moq-lite-03", "moql"],
		onSession: (s) => (serverSession = s),
		...serverOpts,
	});
	const client = await connectWebTransport(quicClient, new URL(url), clientProtocols);
	await until(() => serverSession !== null, 10_000, "server session");
	return { client, server: serverSession! as TransportSession, quicClient, quicServer };
}

/** A stream's bytes until FIN, as text. */
const collect = (stream: TransportStream): Promise<string> => collectBytes(stream).then((b) => b.toString());

/** Echoes every bidi stream back, upper-cased, and records uni streams. */
function echo(session: TransportSession, uni: string[]): void {
	session.onStream = (stream) => {
		if (!stream.bidi) {
			collect(stream).then((s) => uni.push(s));
			return;
		}
		stream.onData = (chunk) => stream.write(text.encode(untext.decode(chunk).toUpperCase()));
		stream.onFin = () => stream.finish();
	};
}

describe("webtransport client <-> server (loopback)", () => {
	it("negotiates the first client-offered protocol the server supports", TIMEOUT, async () => {
		const { client, server } = await pair(["moqt-15", "moq-lite-04", "moq-lite-05"]);
		assert.equal(client.kind, "webtransport");
		assert.equal(client.protocol, "moq-lite-04");
		assert.equal(server.protocol, "moq-lite-04");
		assert.equal(server.path, "/room/a");
		assert.equal(server.query.get("jwt"), "t");
		assert.equal(client.path, "/room/a");
	});

	it("negotiates nothing when there is no overlap or no offer", TIMEOUT, async () => {
		for (const offer of [["moqt-15"], []]) {
			const { client, server } = await pair(offer);
			assert.equal(client.protocol, "");
			assert.equal(server.protocol, "");
		}
	});

	it("percent-decodes the path", TIMEOUT, async () => {
		const { server } = await pair(undefined, {}, "https://h:1/a%20b/%C3%A9?jwt=x%20y");
		assert.equal(server.path, "/a b/é");
		assert.equal(server.query.get("jwt"), "x y");
	});

	it("rejects with the server's status", TIMEOUT, async () => {
		const { client: quic, server: quicServer } = loopbackPair();
		acceptHttp3(quicServer, { protocols: ["moql"], authorize: () => 403, onSession: () => {} });
		await assert.rejects(
			connectWebTransport(quic, new URL("https://h/x"), ["moql"]),
			(err: unknown) => err instanceof WebTransportRejectedError && err.status === 403,
		);
		await quic.whenClosed();
	});

	it("times out when the server never answers, closing with H3_REQUEST_CANCELLED", TIMEOUT, async () => {
		const { client: quic } = loopbackPair(); // nobody serves the other end
		await assert.rejects(connectWebTransport(quic, new URL("https://h/"), ["moql"], { timeoutMs: 50 }), /timed out/);
		assert.equal((await quic.whenClosed()).code, H3.REQUEST_CANCELLED);
	});

	it("fails when the server's SETTINGS lack WebTransport", TIMEOUT, async () => {
		const { client: quic, server: raw } = loopbackPair();
		const attempt = connectWebTransport(quic, new URL("https://h/"), ["moql"]);
		raw.openUni()!.write(Uint8Array.of(0x00, 0x04, 0x02, 0x33, 0x01)); // datagrams only
		await assert.rejects(attempt, /do not enable WebTransport/);
		assert.equal((await quic.whenClosed()).code, H3.NO_ERROR);
	});

	it("echoes on client bidi streams and carries client uni streams", TIMEOUT, async () => {
		const { client, server } = await pair();
		const uni: string[] = [];
		echo(server, uni);
		const results = await Promise.all(
			[0, 1, 2].map((i) => {
				const stream = client.openBidi()!;
				assert.equal(stream.id, 4 + 4 * i); // stream 0 is the CONNECT stream
				assert.equal(stream.local, true);
				const done = collect(stream);
				stream.write(text.encode(`hello `));
				stream.write(text.encode(`${i}`));
				stream.finish();
				return done;
			}),
		);
		assert.deepEqual(results, ["HELLO 0", "HELLO 1", "HELLO 2"]);
		const u = client.openUni()!;
		u.write(text.encode("one-way"));
		u.finish();
		await until(() => uni.length === 1);
		assert.deepEqual(uni, ["one-way"]);
	});

	it("server-opened bidi and uni streams reach the client", TIMEOUT, async () => {
		const { client, server } = await pair();
		const uni: string[] = [];
		echo(client, uni);
		const bidi = server.openBidi()!;
		assert.equal(bidi.id % 4, 1);
		const reply = collect(bidi);
		bidi.write(text.encode("ping"));
		bidi.finish();
		assert.equal(await reply, "PING");
		const u = server.openUni()!;
		assert.equal(u.id % 4, 3);
		u.write(text.encode("announce"));
		u.finish();
		await until(() => uni.length === 1);
		assert.deepEqual(uni, ["announce"]);
	});

	it("carries reset and stop codes both ways, mapped", TIMEOUT, async () => {
		const { client, server, quicClient, quicServer } = await pair();
		const got: string[] = [];
		server.onStream = (stream) => {
			stream.onReset = (code) => got.push(`reset ${code}`);
			stream.onStop = (code) => {
				got.push(`stop ${code}`);
				stream.reset(code + 1);
			};
		};
		const stream = client.openBidi()!;
		stream.write(Uint8Array.of(1));
		stream.stop(1000);
		await until(() => got.length === 1);
		stream.reset(42);
		const raw = quicClient.streams.get(stream.id)!;
		await until(() => got.length === 2 && raw.receivedReset !== null);
		assert.deepEqual(got, ["stop 1000", "reset 42"]);
		// The server's answer to STOP_SENDING: a reset the client no longer reports (it stopped reading).
		assert.equal(fromH3(raw.receivedReset!), 1001);
		// On the wire the codes are in the HTTP/3 application range.
		assert.equal(fromH3(quicServer.streams.get(stream.id)!.receivedReset!), 42);
		assert.equal(quicServer.streams.get(stream.id)!.receivedReset, 91141958510854);
	});

	it("client close: both sides see the code and reason, streams are reset, QUIC closes", TIMEOUT, async () => {
		const { client, server, quicClient, quicServer } = await pair();
		const serverStreams: TransportStream[] = [];
		server.onStream = (s) => serverStreams.push(s);
		const open = client.openBidi()!;
		open.write(Uint8Array.of(1));
		await until(() => serverStreams.length === 1);
		const closes: string[] = [];
		client.onClose = (code, reason) => closes.push(`client ${code} ${reason}`);
		server.onClose = (code, reason) => closes.push(`server ${code} ${reason}`);
		client.close(7, "bye");
		assert.equal(client.closed, true);
		assert.equal(client.openBidi(), null);
		await until(() => closes.length === 2);
		assert.deepEqual(closes, ["client 7 bye", "server 7 bye"]);
		const [a, b] = await Promise.all([quicClient.whenClosed(), quicServer.whenClosed()]);
		assert.equal(a.code, H3.NO_ERROR);
		assert.equal(b.code, H3.NO_ERROR);
		assert.equal(quicServer.streams.get(open.id)!.receivedReset, H3.WT_SESSION_GONE);
	});

	it("server close reaches the client with its code and reason", TIMEOUT, async () => {
		const { client, server, quicClient } = await pair();
		const closed = new Promise<[number, string]>((resolve) => {
			client.onClose = (code, reason) => resolve([code, reason]);
		});
		server.close(9, "srv");
		assert.deepEqual(await closed, [9, "srv"]);
		assert.equal((await quicClient.whenClosed()).code, H3.NO_ERROR);
	});

	it("a QUIC connection loss ends the session", TIMEOUT, async () => {
		const { client, quicServer } = await pair();
		const closed = new Promise<number>((resolve) => {
			client.onClose = (code) => resolve(code);
		});
		quicServer.close(0x0, "gone");
		assert.equal(await closed, 0);
	});

	it("streams opened before onStream is set are queued, not lost", TIMEOUT, async () => {
		const { client: quicClient, server: quicServer } = loopbackPair();
		let serverSession: TransportSession | null = null;
		acceptHttp3(quicServer, { protocols: ["moql"], onSession: (s) => (serverSession = s) });
		const client = await connectWebTransport(quicClient, new URL("https://h/"), ["moql"]);
		const s = client.openUni()!;
		s.write(text.encode("early"));
		s.finish();
		await until(() => serverSession !== null && quicServer.streams.get(s.id)?.receivedFin === true);
		const got = await new Promise<string>((resolve) => {
			serverSession!.onStream = (stream) => collect(stream).then(resolve);
		});
		assert.equal(got, "early");
	});
});
