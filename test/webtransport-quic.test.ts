/**
 * Our WebTransport client against our WebTransport server over real QUIC (src/quic) on loopback
 * UDP: ALPN h3, the HTTP/3 handshake, streams, error codes and closing.
 */

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { connectQuic } from "../src/quic/client.ts";
import type { QuicServer } from "../src/quic/server.ts";
import type { TransportSession, TransportStream } from "../src/transport/types.ts";
import { connectWebTransport, WebTransportRejectedError } from "../src/webtransport/client.ts";
import { acceptHttp3, type WebTransportServerOptions } from "../src/webtransport/server.ts";
import { collect, listen, TEST_CERT_HASH } from "./support/quic.ts";
import { deferred, until } from "./support/wait.ts";

const T = { timeout: 20_000 };
const SERVER_PROTOCOLS = ["moq-lite-05", "moq-lite-04", "moq-lite-03", "moql"];

describe("webtransport over real QUIC (loopback UDP)", () => {
	const servers: QuicServer[] = [];
	after(async () => {
		for (const server of servers) await server.close();
	});

	async function start(opts: Partial<WebTransportServerOptions> = {}) {
		const sessions: TransportSession[] = [];
		const waiters: ((s: TransportSession) => void)[] = [];
		const server = await listen({
			alpns: ["h3"],
			onSession(quic) {
				acceptHttp3(quic, {
					protocols: SERVER_PROTOCOLS,
					onSession(session) {
						sessions.push(session);
						for (const w of waiters.splice(0)) w(session);
					},
					...opts,
				});
			},
		});
		servers.push(server);
		const nextSession = () =>
			sessions.length > 0
				? Promise.resolve(sessions.shift()!)
				: new Promise<TransportSession>((resolve) => waiters.push((s) => resolve(sessions.shift() ?? s)));
		return { server, nextSession };
	}

	async function dial(port: number, path = "/room/a?jwt=t", protocols = ["moq-lite-05", "moq-lite-04"]) {
		const quic = await connectQuic({ host: "127.0.0.1", port, alpns: ["h3"], certificateHashes: [TEST_CERT_HASH] });
		assert.equal(quic.protocol, "h3");
		const session = await connectWebTransport(quic, new URL(`https://127.0.0.1:${port}${path}`), protocols);
		return { quic, session };
	}

	it("handshake: protocol negotiation, path and query, bidi echo of 1 MiB", T, async () => {
		const { server, nextSession } = await start();
		const { session: client } = await dial(server.port, "/room%20a/b?jwt=x%20y");
		const session = await nextSession();
		assert.equal(client.kind, "webtransport");
		assert.equal(client.protocol, "moq-lite-05");
		assert.equal(session.protocol, "moq-lite-05");
		assert.equal(session.path, "/room a/b");
		assert.equal(session.query.get("jwt"), "x y");
		session.onStream = (stream) => {
			stream.onData = (chunk) => stream.write(chunk);
			stream.onFin = () => stream.finish();
		};
		const stream = client.openBidi()!;
		const echoed = collect(stream);
		const payload = new Uint8Array(1 << 20);
		for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
		for (let off = 0; off < payload.length; off += 16384) stream.write(payload.subarray(off, off + 16384));
		stream.finish();
		const got = await echoed;
		assert.equal(got.length, payload.length);
		assert.ok(got.equals(payload));
		client.close(0, "");
	});

	it("uni streams both ways and a server-opened bidi stream", T, async () => {
		const { server, nextSession } = await start();
		const { session: client } = await dial(server.port);
		const session = await nextSession();
		const serverGot = deferred<string>();
		session.onStream = (stream) => {
			collect(stream).then((b) => serverGot.resolve(b.toString()));
		};
		const clientStreams: TransportStream[] = [];
		const clientGot = deferred<void>();
		client.onStream = (stream) => {
			clientStreams.push(stream);
			if (stream.bidi) {
				stream.onData = (chunk) => stream.write(chunk);
				stream.onFin = () => stream.finish();
			} else {
				collect(stream).then((b) => {
					assert.equal(b.toString(), "from server");
					clientGot.resolve();
				});
			}
		};
		const up = client.openUni()!;
		up.write(Buffer.from("from client"));
		up.finish();
		assert.equal(await serverGot.promise, "from client");
		const down = session.openUni()!;
		down.write(Buffer.from("from server"));
		down.finish();
		await clientGot.promise;
		const bidi = session.openBidi()!;
		assert.equal(bidi.id % 4, 1);
		const echoed = collect(bidi);
		bidi.write(Buffer.from("ping"));
		bidi.finish();
		assert.equal((await echoed).toString(), "ping");
		session.close(0, "");
	});

	it("reset and stop codes cross mapped (42, 2^32-1)", T, async () => {
		const { server, nextSession } = await start();
		const { session: client } = await dial(server.port);
		const session = await nextSession();
		const reset = deferred<number>();
		const stopped = deferred<number>();
		session.onStream = (stream) => {
			// The first stream gets reset by the client; the second one is stopped by the server.
			if (stream.id === 4) {
				stream.onData = () => arrived.resolve();
				stream.onReset = (code) => reset.resolve(code);
			} else {
				stream.onData = () => stream.stop(4294967295);
			}
		};
		// A stream reset before its 0x41 header arrives cannot be attributed to a session: wait for it.
		const arrived = deferred<void>();
		const toReset = client.openBidi()!;
		toReset.write(Buffer.from("x"));
		await arrived.promise;
		toReset.reset(42);
		const toStop = client.openBidi()!;
		toStop.onStop = (code) => stopped.resolve(code);
		toStop.write(Buffer.from("x"));
		assert.equal(await stopped.promise, 4294967295);
		assert.equal(await reset.promise, 42);
		client.close(0, "");
	});

	it("close from either side carries code and reason", T, async () => {
		const { server, nextSession } = await start();
		{
			const { session: client, quic } = await dial(server.port);
			const session = await nextSession();
			const closed = deferred<[number, string]>();
			session.onClose = (code, reason) => closed.resolve([code, reason]);
			client.close(7, "bye");
			assert.deepEqual(await closed.promise, [7, "bye"]);
			// The server's FIN answers our capsule; then our side closes the QUIC connection.
			await until(() => quic.closed, 10_000, "the QUIC connection to close");
		}
		{
			const { session: client, quic } = await dial(server.port);
			const session = await nextSession();
			const closed = deferred<[number, string]>();
			client.onClose = (code, reason) => closed.resolve([code, reason]);
			session.close(9, "srv");
			assert.deepEqual(await closed.promise, [9, "srv"]);
			// The WebTransport layer then closes the QUIC connection.
			await until(() => quic.closed, 10_000, "the QUIC connection to close");
		}
	});

	it("a rejected CONNECT surfaces the status", T, async () => {
		const { server } = await start({ authorize: (path) => (path === "/forbidden" ? 403 : 404) });
		const quic = await connectQuic({
			host: "127.0.0.1",
			port: server.port,
			alpns: ["h3"],
			certificateHashes: [TEST_CERT_HASH],
		});
		await assert.rejects(
			connectWebTransport(quic, new URL(`https://127.0.0.1:${server.port}/forbidden`), ["moql"]),
			(err: unknown) => err instanceof WebTransportRejectedError && err.status === 403,
		);
	});
});
