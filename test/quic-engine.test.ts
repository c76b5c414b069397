/**
 * The ngtcp2 QUIC engine (native/ngtcp2.c, src/quic/engine.ts) on real sockets over loopback: our
 * quiche client (src/quic/client.ts, src/client/) against servers and a relay running on ngtcp2.
 *
 * Skipped when the addon is not built (the system lacks libngtcp2 0.12 + GnuTLS; .ci/run installs
 * them, so CI runs it). The sanitizer test builds the ASan/UBSan variant and runs this file against
 * it in a child process (MOQ_NGTCP2_ADDON names the build under test).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import dgram from "node:dgram";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { MoqClient } from "../src/client/index.ts";
import { connectQuic } from "../src/quic/client.ts";
import type { QuicConnection } from "../src/quic/connection.ts";
import {
	autoEngineName,
	engineChoice,
	loadNgtcp2,
	ngtcp2Path,
	ngtcp2Unavailable,
	selectEngine,
} from "../src/quic/engine.ts";
import type { QuicServer, QuicServerOptions } from "../src/quic/server.ts";
import { clientHellos, initialKeys, LONG_INITIAL, protectLong, varint } from "./fuzz/quic-packets.ts";
import { frameBytes } from "./support/frames.ts";
import { ensureNgtcp2Built } from "./support/ngtcp2.ts";
import { ALPN, collect, connect, echoServer as echoOn, listen } from "./support/quic.ts";
import { startTestRelay } from "./support/relay.ts";
import { deferred, until } from "./support/wait.ts";

const REPO = resolve(import.meta.dirname, "..");
/** Set by the sanitizer test for its child run. */
const SANITIZED_CHILD = process.env.MOQ_NGTCP2_ADDON !== undefined;

ensureNgtcp2Built();
const ADDON = loadNgtcp2();
// Without the libraries there is no engine to test (the relay runs on quiche); CI installs them.
const SKIP = ADDON === null && process.env.CI !== "true" ? `ngtcp2 engine not built: ${ngtcp2Unavailable()}` : false;
const T = { timeout: 20_000, skip: SKIP };
const ENGINE = { quic: { engine: "ngtcp2" as const } };

/** The echo server of test/support/quic.ts on the ngtcp2 engine. */
function echoServer(extra: Partial<QuicServerOptions> = {}) {
	return echoOn({ ...ENGINE, ...extra });
}

describe("quic engine: selection", () => {
	test("engineChoice: the config names an engine, else MOQ_SERVER_QUIC_ENGINE, else auto", () => {
		const saved = process.env.MOQ_SERVER_QUIC_ENGINE;
		try {
			delete process.env.MOQ_SERVER_QUIC_ENGINE;
			assert.equal(engineChoice(undefined), "auto");
			assert.equal(engineChoice("quiche"), "quiche");
			process.env.MOQ_SERVER_QUIC_ENGINE = "ngtcp2";
			assert.equal(engineChoice("auto"), "ngtcp2");
			assert.equal(engineChoice("quiche"), "quiche");
			process.env.MOQ_SERVER_QUIC_ENGINE = "bogus";
			assert.throws(() => engineChoice(undefined), /MOQ_SERVER_QUIC_ENGINE/);
		} finally {
			if (saved === undefined) delete process.env.MOQ_SERVER_QUIC_ENGINE;
			else process.env.MOQ_SERVER_QUIC_ENGINE = saved;
		}
	});

	test("selectEngine: ngtcp2 when asked for and built", { skip: SKIP }, () => {
		const ngtcp2 = selectEngine("ngtcp2");
		assert.equal(ngtcp2.name, "ngtcp2");
		// The library versions the addon was built on, as the start-up log names them (0.12 or 1.x).
		assert.match(ngtcp2.library, /^libngtcp2 (0\.12|1\.\d+)\.\d+, GnuTLS \d+\.\d+\.\d+$/);
		const quiche = selectEngine("quiche");
		assert.equal(quiche.name, "quiche");
		// quiche's binding names its package and version (the package does not report quiche's own).
		assert.match(quiche.library, /^quiche \(napi, @matrixai\/quic-linux-x64 \d+\.\d+\.\d+\)$/);
	});

	test("selectEngine: auto is ngtcp2 when its addon is built", {
		skip: SKIP,
	}, () => {
		const saved = process.env.MOQ_SERVER_QUIC_ENGINE;
		try {
			delete process.env.MOQ_SERVER_QUIC_ENGINE;
			assert.equal(selectEngine("auto").name, "ngtcp2");
			assert.equal(selectEngine(undefined).name, "ngtcp2");
			assert.equal(autoEngineName(), "ngtcp2");
		} finally {
			if (saved !== undefined) process.env.MOQ_SERVER_QUIC_ENGINE = saved;
		}
	});
});

describe("quic engine: ngtcp2 server ↔ quiche client", { skip: SKIP }, () => {
	const servers: QuicServer[] = [];
	after(async () => {
		for (const server of servers) await server.close();
	});

	test("handshake negotiates moq-lite-05; bidi and uni echo byte-exact", T, async () => {
		const { server, sessions } = await echoServer();
		servers.push(server);
		assert.equal(server.engine.name, "ngtcp2");
		const client = await connect(server.port);
		assert.equal(client.protocol, ALPN);
		await until(() => sessions.length === 1);
		assert.equal(sessions[0].protocol, ALPN);
		const bidi = client.openBidi()!;
		const echoed = collect(bidi);
		bidi.write(Buffer.from("hello ngtcp2"));
		bidi.finish();
		assert.equal((await echoed).toString(), "hello ngtcp2");
		const back = deferred<Buffer>();
		client.onStream = (stream) => {
			collect(stream).then(back.resolve, back.reject);
		};
		const uni = client.openUni()!;
		uni.write(Buffer.from("uni payload"));
		uni.finish();
		assert.equal((await back.promise).toString(), "uni payload");
		const stats = sessions[0].linkStats();
		assert.ok(stats !== null && stats.bytesOut > 0 && stats.bytesIn > 0 && stats.rttMs >= 0);
		client.close(0, "");
	});

	test("a peer's finished uni streams are freed: ngtcp2's heap stays flat over 3000 of them", {
		...T,
		timeout: 60_000,
	}, async () => {
		// libngtcp2 0.12 never frees a stream the peer opened for sending only (fixed upstream in
		// 0.14); the engine closes it itself once the app has read its FIN, or its reset after a
		// STOP_SENDING. Without that, each such stream keeps ~214 B of ngtcp2 state until the
		// connection ends: ~640 KB over this test's 3000 streams.
		let fins = 0;
		const sessions: QuicConnection[] = [];
		const server = await listen({
			quic: { engine: "ngtcp2" },
			onSession(session) {
				sessions.push(session);
				let n = 0;
				session.onStream = (stream) => {
					// Every fourth stream is stopped before its end (the peer answers with a reset).
					if (n++ % 4 === 3) {
						stream.stop(7);
						fins++;
						return;
					}
					stream.onData = () => {};
					stream.onFin = () => fins++;
				};
			},
		});
		servers.push(server);
		const client = await connect(server.port);
		await until(() => sessions.length === 1);
		const engineHeap = () => (sessions[0].native.stats() as { engineHeapBytes?: number }).engineHeapBytes ?? Number.NaN;
		const payload = Buffer.alloc(20, 7);
		const send = async (count: number) => {
			const target = fins + count;
			for (let sent = 0; sent < count; ) {
				const uni = client.openUni();
				if (uni === null) {
					await new Promise((r) => setTimeout(r, 2));
					continue;
				}
				uni.write(payload);
				uni.finish();
				sent++;
				if (sent % 100 === 0) await new Promise((r) => setTimeout(r, 1));
			}
			await until(() => fins >= target, 30_000, `${count} streams received`);
			await new Promise((r) => setTimeout(r, 100));
		};
		await send(500);
		const before = engineHeap();
		assert.ok(before > 0, "the engine counts ngtcp2's heap");
		await send(3000);
		const grown = engineHeap() - before;
		assert.ok(grown < 100_000, `ngtcp2's heap grew ${grown} B over 3000 finished peer streams`);
		client.close(0, "");
	});

	test("streams reset before any data do not raise the peer's stream limit", { ...T, timeout: 30_000 }, async () => {
		// 0.12 gives the peer its stream back itself when a RESET_STREAM arrives before any data; the
		// engine crediting it again let a client raise its own concurrent uni stream limit at will.
		const server = await listen({ quic: { engine: "ngtcp2" }, limits: { maxStreamsUni: 16 }, onSession() {} });
		servers.push(server);
		const client = await connect(server.port);
		for (let reset = 0; reset < 400; ) {
			const uni = client.openUni();
			if (uni === null) {
				await new Promise((r) => setTimeout(r, 2));
				continue;
			}
			uni.reset(5);
			reset++;
			if (reset % 16 === 0) await new Promise((r) => setTimeout(r, 5));
		}
		await new Promise((r) => setTimeout(r, 300));
		const left = client.native.peerStreamsLeftUni();
		assert.ok(left <= 16, `the client may open ${left} uni streams at once; the server allows 16`);
		client.close(0, "");
	});

	test("a ClientHello without QUIC transport parameters is refused, and the server lives on", T, async () => {
		// libngtcp2 0.12 aborts the process (negotiated_version assertion) writing its first flight to
		// such a client when the ALPN matches: one datagram killed the worker. RFC 9001 §8.2 wants
		// missing_extension instead.
		const { server } = await echoServer();
		servers.push(server);
		const hello = withoutExtension(clientHellos()[0], 0x39);
		const dcid = Buffer.alloc(16, 0x5a);
		const crypto = Buffer.concat([Buffer.from([0x06, 0x00]), varint(hello.length, 2), hello]);
		// Padded so the datagram reaches the 1200 bytes a client Initial needs (RFC 9000 §14.1).
		const payload = Buffer.concat([crypto, Buffer.alloc(1200 - crypto.length)]);
		const packet = protectLong(
			{ type: LONG_INITIAL, dcid, scid: Buffer.alloc(8, 0x3c), pn: 0, payload },
			initialKeys(dcid, "client"),
		);
		const socket = dgram.createSocket("udp4");
		const answered = deferred<Buffer>();
		socket.on("message", (msg) => answered.resolve(msg));
		socket.send(packet, server.port, "127.0.0.1");
		const reply = await Promise.race([answered.promise, new Promise<null>((r) => setTimeout(() => r(null), 2000))]);
		socket.close();
		assert.ok(reply !== null && (reply[0] & 0x80) !== 0, "the server answers with a long-header close");
		// Still serving.
		const client = await connect(server.port);
		assert.equal(client.protocol, ALPN);
		client.close(0, "");
	});

	test("8 MB both ways on one bidi stream, byte-exact under flow control", { ...T, timeout: 60_000 }, async () => {
		const { server } = await echoServer({ limits: { maxStreamData: 256 * 1024, maxData: 1024 * 1024 } });
		servers.push(server);
		const client = await connect(server.port);
		const payload = Buffer.alloc(8 * 1024 * 1024);
		for (let i = 0; i < payload.length; i++) payload[i] = (i * 2654435761) >>> 24;
		const bidi = client.openBidi()!;
		const echoed = collect(bidi);
		bidi.write(payload);
		bidi.finish();
		const got = await echoed;
		assert.equal(got.length, payload.length);
		assert.ok(got.equals(payload));
		client.close(0, "");
	});

	test("RESET_STREAM codes both ways; the server's STOP_SENDING reaches the client", T, async () => {
		let session!: QuicConnection;
		const ready = deferred();
		const serverReset = deferred<number>();
		const server = await listen({
			...ENGINE,
			onSession(s) {
				session = s;
				s.onStream = (stream) => {
					stream.onData = () => {};
					stream.onReset = (code) => serverReset.resolve(code);
				};
				ready.resolve();
			},
		});
		servers.push(server);
		const client = await connect(server.port);
		await ready.promise;
		const uni = client.openUni()!;
		uni.write(Buffer.from("partial"));
		uni.reset(42);
		assert.equal(await serverReset.promise, 42);

		const clientReset = deferred<number>();
		client.onStream = (stream) => {
			stream.onData = () => {};
			stream.onReset = (code) => clientReset.resolve(code);
		};
		const pushed = session.openUni()!;
		pushed.write(Buffer.from("x"));
		pushed.reset(1000);
		assert.equal(await clientReset.promise, 1000);

		const clientStop = deferred<number>();
		const busy = client.openUni()!;
		let stopped = false;
		busy.onStop = (code) => {
			stopped = true;
			clientStop.resolve(code);
		};
		const serverGot = deferred<import("../src/transport/types.ts").TransportStream>();
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
		client.close(0, "");
	});

	test("a peer's STOP_SENDING ends the server's writes (onStop fires)", T, async () => {
		const stopped = deferred<number>();
		const server = await listen({
			...ENGINE,
			onSession(s) {
				s.onStream = (stream) => {
					let done = false;
					stream.onStop = (code) => {
						done = true;
						stopped.resolve(code);
					};
					const chunk = Buffer.alloc(1000, 7);
					// Keeps writing until the stop is seen.
					const pump = (): void => {
						if (done || s.closed) return;
						stream.write(chunk);
						setTimeout(pump, 2);
					};
					stream.onData = () => pump();
				};
			},
		});
		servers.push(server);
		const client = await connect(server.port);
		const bidi = client.openBidi()!;
		const first = deferred();
		bidi.onData = () => first.resolve();
		bidi.write(Buffer.from("go"));
		await first.promise;
		bidi.stop(77);
		// ngtcp2 0.12 has no callback for a received STOP_SENDING: the engine reads it, with its code,
		// from the decrypted packet (native/ngtcp2.c scan_frames).
		assert.equal(await stopped.promise, 77);
		client.close(0, "");
	});

	test("a STOP_SENDING on a stream the server is not writing to reports its code", T, async () => {
		const stopped = deferred<number>();
		const server = await listen({
			...ENGINE,
			onSession(s) {
				s.onStream = (stream) => {
					stream.onStop = (code) => stopped.resolve(code);
					stream.onData = () => stream.write(Buffer.from("once"));
				};
			},
		});
		servers.push(server);
		const client = await connect(server.port);
		const bidi = client.openBidi()!;
		const first = deferred();
		bidi.onData = () => first.resolve();
		bidi.write(Buffer.from("go"));
		await first.promise;
		bidi.stop(4242);
		assert.equal(await stopped.promise, 4242);
		client.close(0, "");
	});

	test("close code and reason both ways", T, async () => {
		const serverClosed = deferred<[number, string]>();
		const sessions: QuicConnection[] = [];
		const server = await listen({
			...ENGINE,
			onSession(s) {
				sessions.push(s);
				if (sessions.length === 1) s.onClose = (code, reason) => serverClosed.resolve([code, reason]);
			},
		});
		servers.push(server);
		const a = await connect(server.port);
		await until(() => sessions.length === 1);
		a.close(0x1234, "client bye");
		assert.deepEqual(await serverClosed.promise, [0x1234, "client bye"]);

		const b = await connect(server.port);
		const clientClosed = deferred<[number, string]>();
		b.onClose = (code, reason) => clientClosed.resolve([code, reason]);
		await until(() => sessions.length === 2);
		sessions[1].close(0x77, "server bye");
		assert.deepEqual(await clientClosed.promise, [0x77, "server bye"]);

		// An empty reason: its Uint8Array may have no data pointer (found by the live fuzzer under UBSan).
		const c = await connect(server.port);
		const emptyClosed = deferred<[number, string]>();
		c.onClose = (code, reason) => emptyClosed.resolve([code, reason]);
		await until(() => sessions.length === 3);
		sessions[2].close(0x78, "");
		assert.deepEqual(await emptyClosed.promise, [0x78, ""]);
		await until(() => server.connectionCount === 0, 5000, "the server to forget every connection");
	});

	test("idle timeout closes a session whose peer went silent", T, async () => {
		const closed = deferred<[number, string]>();
		const server = await listen({
			...ENGINE,
			limits: { idleTimeoutMs: 400, keepAliveMs: 0 },
			onSession(s) {
				s.onClose = (code, reason) => closed.resolve([code, reason]);
			},
		});
		servers.push(server);
		const socket = dgram.createSocket("udp4");
		const client = await connect(server.port, { socket, limits: { idleTimeoutMs: 60_000, keepAliveMs: 0 } });
		await until(() => server.stats.connectionsAccepted === 1);
		// Silence the client: its packets stop reaching the server.
		const closeSocket = new Promise<void>((r) => socket.close(() => r()));
		await closeSocket;
		const [, reason] = await closed.promise;
		assert.equal(reason, "idle timeout");
		await until(() => server.connectionCount === 0);
		client.onClose = null;
	});

	test("stateless Retry validates the client address first", T, async () => {
		const { server, sessions } = await echoServer({ quic: { engine: "ngtcp2", retry: "on" } });
		servers.push(server);
		const client = await connect(server.port);
		await until(() => sessions.length === 1);
		assert.equal(server.stats.retries, 1);
		const bidi = client.openBidi()!;
		const echoed = collect(bidi);
		bidi.write(Buffer.from("after retry"));
		bidi.finish();
		assert.equal((await echoed).toString(), "after retry");
		client.close(0, "");
	});

	test("an unknown version gets Version Negotiation; garbage is dropped", T, async () => {
		const { server } = await echoServer();
		servers.push(server);
		const socket = dgram.createSocket("udp4");
		await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
		const reply = deferred<Buffer>();
		socket.on("message", (msg) => reply.resolve(msg));
		const probe = Buffer.alloc(1200);
		probe[0] = 0xc0;
		probe.writeUInt32BE(0x1a2a3a4b, 1);
		probe[5] = 8;
		probe.fill(0xaa, 6, 14);
		probe[14] = 8;
		probe.fill(0xbb, 15, 23);
		socket.send(probe, server.port, "127.0.0.1");
		const vn = await reply.promise;
		assert.equal(vn.readUInt32BE(1), 0, "version 0: Version Negotiation");
		assert.ok(vn.subarray(vn.length - 8).includes(Buffer.from([0, 0, 0, 1])), "offers QUIC v1");
		// Garbage Initials (right version, undecryptable) cost nothing lasting.
		for (let i = 0; i < 20; i++) {
			const junk = Buffer.alloc(1200, i);
			junk[0] = 0xc0;
			junk.writeUInt32BE(1, 1);
			junk[5] = 8;
			junk[14] = 8;
			junk[23] = 0;
			socket.send(junk, server.port, "127.0.0.1");
		}
		await until(() => server.stats.garbage + server.stats.recvErrors >= 20, 5000, "the junk to be dropped");
		await until(() => server.connectionCount === 0, 5000);
		socket.close();
		// The server still serves.
		const client = await connect(server.port);
		client.close(0, "");
	});
});

describe("quic engine: relay on ngtcp2", { skip: SKIP, timeout: 90_000 }, () => {
	test("moq-lite publish → 20 viewers byte-exact, with a 1 MB frame, through shared writes", {
		timeout: 60_000,
	}, async () => {
		const relay = await startTestRelay('[server.quic]\nengine = "ngtcp2"');
		const closers: (() => void)[] = [];
		try {
			const fingerprint = await (await fetch(new URL("/certificate.sha256", relay.url()))).text();
			const client = async (): Promise<MoqClient> => {
				const quic = await connectQuic({
					host: "127.0.0.1",
					port: relay.quicPort,
					alpns: ["moq-lite-05"],
					certificateHashes: [fingerprint],
				});
				return MoqClient.connect(quic, { path: "/anon" });
			};
			const pub = await client();
			closers.push(() => pub.close());
			const track = pub.publish("engine", { tracks: ["video"] }).track("video");
			await until(() => relay.node.relay.broadcasts.has("anon/engine"), 10_000, "the relay to learn the broadcast");
			const viewers = await Promise.all(
				Array.from({ length: 20 }, async () => {
					const c = await client();
					closers.push(() => c.close());
					const groups = new Map<number, Uint8Array[]>();
					const ended = new Set<number>();
					c.subscribe(
						"engine",
						"video",
						{},
						{
							onGroup: (seq) => groups.set(seq, []),
							onFrame: (seq, _index, payload) => groups.get(seq)?.push(new Uint8Array(payload)),
							onGroupEnd: (seq, complete) => {
								if (complete) ended.add(seq);
							},
						},
					);
					return { groups, ended };
				}),
			);
			await new Promise((r) => setTimeout(r, 200));
			const sent: Uint8Array[][] = [];
			const seqs: number[] = [];
			for (let g = 0; g < 5; g++) {
				// Group 2 carries one large (1 MB) frame: many packets, flow control, congestion window;
				// too large for the fan-out arena, so each viewer writes it. Group 3's 900 KB frame goes
				// through one shared write, which each viewer's stream takes only part of (its window):
				// the rest waits in the stream's queue, ahead of the next group's frames.
				const frames =
					g === 2
						? [frameBytes(g, 0, 1024 * 1024)]
						: g === 3
							? [frameBytes(g, 0, 900_000), frameBytes(g, 1)]
							: Array.from({ length: 4 }, (_, f) => frameBytes(g, f, 12_000));
				sent.push(frames);
				const seq = track.writeGroup(frames);
				seqs.push(seq);
				await until(() => viewers.every((v) => v.ended.has(seq)), 20_000, `group ${seq} at every viewer`);
			}
			for (const v of viewers) {
				for (const [g, seq] of seqs.entries()) assert.deepEqual(v.groups.get(seq), sent[g], `group ${seq}`);
			}
			// [server.quic] fanout_writes (default): frames went to many viewers per engine call.
			const { sharedWrites, sharedWriteStreams } = relay.node.quic.stats;
			assert.ok(
				sharedWrites > 0 && sharedWriteStreams >= sharedWrites * 10,
				`${sharedWriteStreams} in ${sharedWrites}`,
			);
		} finally {
			for (const close of closers) close();
			await relay.close();
		}
	});
});

test("the sanitizer build (ASan + UBSan) passes the checks above", {
	skip: SANITIZED_CHILD || SKIP,
	timeout: 240_000,
}, () => {
	const built = spawnSync(process.execPath, [join(REPO, "native", "build-ngtcp2.mjs"), "--sanitize"], {
		encoding: "utf8",
	});
	assert.equal(built.status, 0, `sanitized build failed:\n${built.stdout}${built.stderr}`);
	const runtime = spawnSync("gcc", ["-print-file-name=libasan.so"], { encoding: "utf8" }).stdout.trim();
	assert.ok(runtime.startsWith("/") && existsSync(runtime), `gcc does not know where libasan.so is (${runtime})`);
	const { NODE_TEST_CONTEXT: _, ...env } = process.env;
	const child = spawnSync(process.execPath, [join(REPO, "test", "quic-engine.test.ts")], {
		encoding: "utf8",
		timeout: 220_000,
		env: {
			...env,
			MOQ_NGTCP2_ADDON: ngtcp2Path(true),
			LD_PRELOAD: runtime,
			ASAN_OPTIONS: "detect_leaks=0:abort_on_error=1",
			UBSAN_OPTIONS: "halt_on_error=1:print_stacktrace=1",
		},
	});
	const output = `${child.stdout}\n${child.stderr}`;
	assert.doesNotMatch(output, /AddressSanitizer|runtime error:/, output);
	assert.equal(child.status, 0, `the checks failed under the sanitizers:\n${output}`);
	assert.match(child.stdout, /^. pass [1-9]/m);
	assert.match(child.stdout, /^. fail 0$/m);
	assert.match(child.stdout, /^. skipped 1$/m, "only the sanitizer test itself is skipped in the child");
});

/** A ClientHello (handshake message) with extension `type` removed, lengths fixed up. */
function withoutExtension(hello: Buffer, type: number): Buffer {
	let off = 4 + 2 + 32; // handshake header, legacy_version, random
	off += 1 + hello[off]; // legacy_session_id
	off += 2 + hello.readUInt16BE(off); // cipher_suites
	off += 1 + hello[off]; // legacy_compression_methods
	const extStart = off + 2;
	const extEnd = extStart + hello.readUInt16BE(off);
	const kept: Buffer[] = [];
	for (let p = extStart; p < extEnd; ) {
		const len = hello.readUInt16BE(p + 2);
		if (hello.readUInt16BE(p) !== type) kept.push(hello.subarray(p, p + 4 + len));
		p += 4 + len;
	}
	assert.ok(kept.length > 0, "the ClientHello parses");
	const extensions = Buffer.concat(kept);
	const body = Buffer.concat([
		hello.subarray(4, off),
		Buffer.from([extensions.length >> 8, extensions.length & 0xff]),
		extensions,
	]);
	const header = Buffer.from([hello[0], body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]);
	return Buffer.concat([header, body]);
}
