/**
 * Raw QUIC over loopback: our client against our server (ALPN moq-lite-05), real UDP sockets.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import type { QuicConnection } from "../src/quic/connection.ts";
import type { QuicServer } from "../src/quic/server.ts";
import type { TransportStream } from "../src/transport/types.ts";
import {
	ALPN,
	collect,
	connect,
	echoServer,
	listen,
	TEST_CERT_2,
	TEST_CERT_2_HASH,
	TEST_KEY_2,
} from "./support/quic.ts";
import { deferred, until } from "./support/wait.ts";

const T = { timeout: 20_000 };

describe("quic: our client ↔ our server", () => {
	const servers: QuicServer[] = [];
	after(async () => {
		for (const server of servers) await server.close();
	});

	test("handshake negotiates moq-lite-05, bidi echo, raw-QUIC session fields", T, async () => {
		const { server, sessions } = await echoServer();
		servers.push(server);
		const client = await connect(server.port);
		assert.equal(client.kind, "quic");
		assert.equal(client.protocol, ALPN);
		await until(() => sessions.length === 1);
		assert.equal(sessions[0].protocol, ALPN);
		assert.equal(sessions[0].path, "");
		assert.match(sessions[0].remote, /^127\.0\.0\.1:\d+$/);
		sessions[0].setPath("/room%20a/x?jwt=abc&y=1");
		assert.equal(sessions[0].path, "/room a/x");
		assert.equal(sessions[0].query.get("jwt"), "abc");

		const stream = client.openBidi()!;
		assert.equal(stream.id, 0);
		assert.equal(stream.bidi, true);
		assert.equal(stream.local, true);
		const echoed = collect(stream);
		stream.write(Buffer.from("hello "));
		stream.write(Buffer.from("quic"));
		stream.finish();
		assert.equal((await echoed).toString(), "hello quic");
		client.close(0, "done");
	});

	test("uni streams both directions; server ids 3, 7, 11 and client ids 2, 6", T, async () => {
		const { server, sessions } = await echoServer();
		servers.push(server);
		const client = await connect(server.port);
		const received: TransportStream[] = [];
		const replies: Promise<Buffer>[] = [];
		client.onStream = (stream) => {
			received.push(stream);
			replies.push(collect(stream));
		};
		const a = client.openUni()!;
		const b = client.openUni()!;
		assert.deepEqual([a.id, b.id], [2, 6]);
		a.write(Buffer.from("one"));
		a.finish();
		b.write(Buffer.from("two"));
		b.finish();
		// Server-initiated uni stream with no client prompt.
		await until(() => sessions.length === 1);
		const pushed = sessions[0].openUni()!;
		pushed.write(Buffer.from("three"));
		pushed.finish();
		await until(() => replies.length === 3);
		const texts = (await Promise.all(replies)).map((b) => b.toString()).sort();
		assert.deepEqual(texts, ["one", "three", "two"]);
		assert.deepEqual(
			received.map((s) => s.id).sort((x, y) => x - y),
			[3, 7, 11],
		);
		for (const stream of received) {
			assert.equal(stream.bidi, false);
			assert.equal(stream.local, false);
		}
		client.close(0, "");
	});

	test("10 MB server → client transfer is byte-exact under flow control; buffered and onDrain", T, async () => {
		const payload = randomBytes(10 * 1024 * 1024);
		const limits = {
			maxData: 512 * 1024,
			maxStreamData: 128 * 1024,
			maxConnectionWindow: 1024 * 1024,
			maxStreamWindow: 512 * 1024,
		};
		let drains = 0;
		let maxBuffered = 0;
		const sent = deferred();
		const server = await listen({
			limits,
			onSession(session) {
				const stream = session.openUni()!;
				stream.onDrain = () => drains++;
				// Write in 16 KB pieces from a reused scratch buffer: the transport must copy.
				const scratch = Buffer.alloc(16 * 1024);
				for (let off = 0; off < payload.length; off += scratch.length) {
					payload.copy(scratch, 0, off, off + scratch.length);
					stream.write(scratch);
					scratch.fill(0xee);
					if (stream.buffered > maxBuffered) maxBuffered = stream.buffered;
				}
				stream.finish();
				sent.resolve();
			},
		});
		servers.push(server);
		const client = await connect(server.port, { limits });
		const got = deferred<Buffer>();
		client.onStream = (stream) => {
			collect(stream).then(got.resolve, got.reject);
		};
		await sent.promise;
		const bytes = await got.promise;
		assert.equal(bytes.length, payload.length);
		assert.equal(createHash("sha256").update(bytes).digest("hex"), createHash("sha256").update(payload).digest("hex"));
		assert.ok(maxBuffered > 1024 * 1024, `flow control should have queued bytes (max buffered ${maxBuffered})`);
		assert.ok(drains >= 1, "onDrain fires once the queue empties");
		client.close(0, "");
	});

	test("10 MB client → server on a bidi stream, echoed back", T, async () => {
		const { server } = await echoServer();
		servers.push(server);
		const client = await connect(server.port);
		const payload = randomBytes(10 * 1024 * 1024);
		const stream = client.openBidi()!;
		const echoed = collect(stream);
		for (let off = 0; off < payload.length; off += 100_000) stream.write(payload.subarray(off, off + 100_000));
		stream.finish();
		const bytes = await echoed;
		assert.ok(bytes.equals(payload));
		client.close(0, "");
	});

	test("200 concurrent uni streams", T, async () => {
		const totals = new Map<number, number>();
		const all = deferred();
		const server = await listen({
			onSession(session) {
				session.onStream = (stream) => {
					let n = 0;
					stream.onData = (chunk) => {
						n += chunk.length;
					};
					stream.onFin = () => {
						totals.set(stream.id, n);
						if (totals.size === 200) all.resolve();
					};
				};
			},
		});
		servers.push(server);
		const client = await connect(server.port);
		const streams: TransportStream[] = [];
		for (let i = 0; i < 200; i++) streams.push(client.openUni()!);
		const chunk = Buffer.alloc(1000, 7);
		for (let round = 0; round < 5; round++) for (const s of streams) s.write(chunk);
		for (const s of streams) s.finish();
		await all.promise;
		for (const s of streams) assert.equal(totals.get(s.id), 5000);
		client.close(0, "");
	});

	test("RESET_STREAM and STOP_SENDING codes both ways", T, async () => {
		const serverSide = {
			reset: deferred<number>(),
			stop: deferred<number>(),
		};
		let session!: QuicConnection;
		const ready = deferred();
		const server = await listen({
			onSession(s) {
				session = s;
				s.onStream = (stream) => {
					if (stream.id === 2) {
						stream.onReset = (code) => serverSide.reset.resolve(code);
					} else if (stream.id === 0) {
						// Client bidi: the server will be asked to stop sending on it.
						stream.onStop = (code) => serverSide.stop.resolve(code);
						stream.onData = () => stream.write(Buffer.from("pong"));
					}
				};
				ready.resolve();
			},
		});
		servers.push(server);
		const client = await connect(server.port);
		await ready.promise;

		// client → server RESET_STREAM(42)
		const uni = client.openUni()!;
		uni.write(Buffer.from("partial"));
		uni.reset(42);
		assert.equal(await serverSide.reset.promise, 42);

		// client → server STOP_SENDING(77) on a bidi stream the server writes to
		const bidi = client.openBidi()!;
		const firstReply = deferred();
		bidi.onData = () => firstReply.resolve();
		bidi.write(Buffer.from("ping"));
		await firstReply.promise;
		bidi.stop(77);
		assert.equal(await serverSide.stop.promise, 77);

		// server → client RESET_STREAM(1000) on a server uni stream
		const clientReset = deferred<number>();
		const clientStop = deferred<number>();
		client.onStream = (stream) => {
			stream.onData = () => {};
			stream.onReset = (code) => clientReset.resolve(code);
		};
		const pushed = session.openUni()!;
		pushed.write(Buffer.from("x"));
		pushed.reset(1000);
		assert.equal(await clientReset.promise, 1000);

		// server → client STOP_SENDING(9) on a client uni stream the client keeps writing to.
		// (quiche 0.18 forgets a stream whose data is all acknowledged when the stop arrives, and
		// its code with it: then onStop reports 0. With data in flight the code comes through.)
		const busy = client.openUni()!;
		let stopped = false;
		busy.onStop = (code) => {
			stopped = true;
			clientStop.resolve(code);
		};
		const serverGot = deferred<TransportStream>();
		session.onStream = (stream) => {
			stream.onData = () => {};
			serverGot.resolve(stream);
		};
		const chunk = Buffer.alloc(1000, 1);
		const keepWriting = (): void => {
			if (stopped || client.closed) return;
			busy.write(chunk);
			setImmediate(keepWriting);
		};
		keepWriting();
		(await serverGot.promise).stop(9);
		assert.equal(await clientStop.promise, 9);
		assert.equal(busy.buffered, 0, "a stopped stream drops its queue");
		client.close(0, "");
	});

	test("close code and reason both ways; onClose exactly once", T, async () => {
		const serverClosed = deferred<[number, string]>();
		const serverCloses: number[] = [];
		const sessions: QuicConnection[] = [];
		const server = await listen({
			onSession(s) {
				const index = sessions.push(s) - 1;
				serverCloses[index] = 0;
				s.onClose = (code, reason) => {
					serverCloses[index]++;
					if (index === 0) serverClosed.resolve([code, reason]);
				};
			},
		});
		servers.push(server);
		const a = await connect(server.port);
		let clientCloses = 0;
		a.onClose = () => clientCloses++;
		a.close(7, "bye");
		a.close(8, "again");
		assert.deepEqual(await serverClosed.promise, [7, "bye"]);
		assert.equal(a.closed, true);
		assert.equal(clientCloses, 1);

		const b = await connect(server.port);
		const clientClosed = deferred<[number, string]>();
		b.onClose = (code, reason) => clientClosed.resolve([code, reason]);
		await until(() => sessions.length === 2);
		sessions[1].close(9, "srv");
		assert.deepEqual(await clientClosed.promise, [9, "srv"]);
		assert.equal(b.closed, true);
		assert.deepEqual(serverCloses, [1, 1]);
	});

	test("idle timeout closes a session whose peer went silent", T, async () => {
		const closed = deferred<[number, string]>();
		const server = await listen({
			limits: { idleTimeoutMs: 400, keepAliveMs: 100 },
			onSession(s) {
				s.onClose = (code, reason) => closed.resolve([code, reason]);
			},
		});
		servers.push(server);
		const socket = dgram.createSocket("udp4");
		const client = await connect(server.port, { socket, limits: { idleTimeoutMs: 400 } });
		assert.equal(client.closed, false);
		// The server surfaces the session once our last handshake flight has reached it.
		await until(() => server.stats.connectionsAccepted === 1);
		// The client vanishes without CONNECTION_CLOSE: its socket stops answering.
		socket.close();
		const started = performance.now();
		const [code, reason] = await closed.promise;
		assert.equal(code, 0);
		assert.equal(reason, "idle timeout");
		assert.ok(performance.now() - started < 5000);
	});

	test("keep-alive holds an idle connection open past the idle timeout", T, async () => {
		const { server, sessions } = await echoServer({ limits: { idleTimeoutMs: 500, keepAliveMs: 100 } });
		servers.push(server);
		const client = await connect(server.port, { limits: { idleTimeoutMs: 500, keepAliveMs: 100 } });
		let closed = false;
		client.onClose = () => {
			closed = true;
		};
		// Wall-clock is the point of this test: three idle timeouts pass without traffic from the app.
		await new Promise((r) => setTimeout(r, 1500));
		assert.equal(closed, false);
		assert.equal(sessions[0].closed, false);
		const stream = client.openBidi()!;
		const echoed = collect(stream);
		stream.write(Buffer.from("still here"));
		stream.finish();
		assert.equal((await echoed).toString(), "still here");
		client.close(0, "");
	});

	test("openUni returns null at the peer's stream limit, then onStreamCredit", T, async () => {
		const server = await listen({
			limits: { maxStreamsUni: 4 },
			onSession(s) {
				s.onStream = (stream) => {
					stream.onData = () => {};
				};
			},
		});
		servers.push(server);
		const client = await connect(server.port);
		const opened: TransportStream[] = [];
		for (let i = 0; i < 4; i++) opened.push(client.openUni()!);
		assert.equal(client.openUni(), null);
		const credit = deferred();
		client.onStreamCredit = () => credit.resolve();
		// Finishing the streams lets the server collect them and grant more (MAX_STREAMS).
		for (const s of opened) {
			s.write(Buffer.from("x"));
			s.finish();
		}
		await credit.promise;
		const next = client.openUni();
		assert.ok(next !== null);
		assert.equal(next.id, 18);
		client.close(0, "");
	});

	test("50 concurrent client connections share one client socket", T, async () => {
		const { server, sessions } = await echoServer();
		servers.push(server);
		const socket = dgram.createSocket("udp4");
		const clients = await Promise.all(Array.from({ length: 50 }, () => connect(server.port, { socket })));
		const replies = await Promise.all(
			clients.map((client, i) => {
				const stream = client.openBidi()!;
				const echoed = collect(stream);
				stream.write(Buffer.from(`client ${i}`));
				stream.finish();
				return echoed;
			}),
		);
		replies.forEach((reply, i) => {
			assert.equal(reply.toString(), `client ${i}`);
		});
		assert.equal(server.stats.connectionsAccepted, 50);
		assert.equal(new Set(sessions.map((s) => s.remote)).size, 1, "all from one client address");
		for (const client of clients) client.close(0, "");
		socket.close();
	});

	test("a server bound to :: is dual-stack (IPv4 and IPv6 clients)", T, async () => {
		const { server, sessions } = await echoServer({ host: "::" });
		servers.push(server);
		for (const host of ["127.0.0.1", "::1"]) {
			const client = await connect(server.port, { host });
			const stream = client.openBidi()!;
			const echoed = collect(stream);
			stream.write(Buffer.from(host));
			stream.finish();
			assert.equal((await echoed).toString(), host);
			client.close(0, "");
		}
		assert.match(sessions[0].remote, /^127\.0\.0\.1:\d+$/);
		assert.match(sessions[1].remote, /^\[::1\]:\d+$/);
	});

	test(
		"datagrams arrive in recvmmsg batches ([server.quic] recv_batch), or one by one through dgram when it is off",
		T,
		async () => {
			const upload = randomBytes(1 << 20);
			for (const recvBatch of [true, false]) {
				const { server } = await echoServer({ quic: { recvBatch } });
				servers.push(server);
				const client = await connect(server.port);
				const stream = client.openBidi()!;
				const echoed = collect(stream);
				stream.write(upload);
				stream.finish();
				assert.ok((await echoed).equals(upload), "byte-exact echo");
				client.close(0, "");
				const { packetsIn, recvSyscalls } = server.stats;
				assert.ok(packetsIn > 700, `${packetsIn} datagrams in`);
				if (recvBatch) assert.ok(recvSyscalls < packetsIn, `${recvSyscalls} receive calls for ${packetsIn} datagrams`);
				else assert.equal(recvSyscalls, packetsIn, "dgram: one receive per datagram");
			}
		},
	);

	test("an idle shared client socket does not keep the process alive (with recvmmsg ingress too)", T, () => {
		const child = spawnSync(process.execPath, [join(import.meta.dirname, "fixtures", "shared-socket-exit.ts")], {
			encoding: "utf8",
			timeout: 15_000,
		});
		assert.equal(child.error, undefined, `the child did not exit by itself: ${child.error?.message}`);
		assert.equal(child.status, 0, child.stderr);
		assert.match(child.stdout, /^closed, batched receive: (true|false)$/m);
	});

	test("pinned certificate hash mismatch is refused", T, async () => {
		const { server } = await echoServer();
		servers.push(server);
		await assert.rejects(connect(server.port, { certificateHashes: ["00".repeat(32)] }), /pinned hashes/);
		// insecure skips verification altogether
		const client = await connect(server.port, { certificateHashes: undefined, insecure: true });
		assert.equal(client.protocol, ALPN);
		client.close(0, "");
	});

	test("ALPN mismatch fails the handshake", T, async () => {
		const { server } = await echoServer();
		servers.push(server);
		const started = performance.now();
		await assert.rejects(connect(server.port, { alpns: ["h3"], timeoutMs: 5000 }), /closed during the handshake/);
		assert.ok(performance.now() - started < 2000, "the refusal is reported without waiting for a timeout");
	});

	test("stateless retry (opt-in) validates the client address first", T, async () => {
		const { server } = await echoServer({ limits: { retry: true } });
		servers.push(server);
		const client = await connect(server.port);
		assert.equal(server.stats.retries, 1);
		const stream = client.openBidi()!;
		const echoed = collect(stream);
		stream.write(Buffer.from("after retry"));
		stream.finish();
		assert.equal((await echoed).toString(), "after retry");
		client.close(0, "");
	});

	test("setCertificate: new connections use the new certificate", T, async () => {
		const { server } = await echoServer();
		servers.push(server);
		const before = await connect(server.port);
		server.setCertificate(TEST_CERT_2, TEST_KEY_2);
		await assert.rejects(connect(server.port), /pinned hashes/);
		const afterSwap = await connect(server.port, { certificateHashes: [TEST_CERT_2_HASH] });
		assert.equal(afterSwap.protocol, ALPN);
		// The existing connection keeps working on its old TLS context.
		assert.equal(before.closed, false);
		const stream = before.openBidi()!;
		const echoed = collect(stream);
		stream.write(Buffer.from("old"));
		stream.finish();
		assert.equal((await echoed).toString(), "old");
		before.close(0, "");
		afterSwap.close(0, "");
	});
});
