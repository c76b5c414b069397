/**
 * The session guard (src/transport/guard.ts), proven by injection: handlers that throw while
 * handling network input, on every transport entry point (a QUIC datagram, a qmux WebSocket
 * message, a fan-out wake-up). The offending session alone closes, with a precise code, the
 * fault is counted, and the thread and the other sessions carry on. An uncaught throw here would
 * fail this test file (the test runner reports it), as it would kill a relay worker.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import Qmux from "../node_modules/@moq/net/node_modules/@moq/qmux/index.js";
import { DecodeError } from "../src/coding/errors.ts";
import { FAULT } from "../src/errors/codes.ts";
import { startHttpServer } from "../src/http/server.ts";
import { connectQuic } from "../src/quic/client.ts";
import type { QuicConnection } from "../src/quic/connection.ts";
import { drainConsumers, type TrackConsumer } from "../src/relay/track.ts";
import { faultCode } from "../src/transport/guard.ts";
import { refusalCounts } from "../src/transport/refusals.ts";
import type { TransportSession } from "../src/transport/types.ts";
import { ALPN, collect, listen, TEST_CERT_HASH } from "./support/quic.ts";
import { echo } from "./support/websocket.ts";

const T = { timeout: 20_000 };

/** Fails the test if anything escapes to the event loop while `fn` runs. */
async function noEscape<R>(fn: () => Promise<R>): Promise<R> {
	const escaped: unknown[] = [];
	const onError = (err: unknown) => escaped.push(err);
	process.on("uncaughtException", onError);
	process.on("unhandledRejection", onError);
	try {
		const out = await fn();
		await new Promise((r) => setTimeout(r, 50));
		assert.deepEqual(escaped, [], "nothing reached the event loop");
		return out;
	} finally {
		process.off("uncaughtException", onError);
		process.off("unhandledRejection", onError);
	}
}

function closeOf(conn: QuicConnection): Promise<number> {
	return new Promise((resolve) => {
		conn.onClose = (code) => resolve(code);
	});
}

describe("session guard", () => {
	test("faultCode: a decoder's own code, else FAULT", () => {
		assert.equal(faultCode(new DecodeError("bad", 15)), 15);
		assert.equal(faultCode(new TypeError("x")), FAULT);
		assert.equal(faultCode({ code: "ECONNRESET" }), FAULT);
		assert.equal(faultCode({ code: -1 }), FAULT);
		assert.equal(faultCode(null), FAULT);
	});

	test("QUIC: a stream handler that throws closes that connection only, with FAULT", T, async () => {
		let sessions = 0;
		const server = await listen({
			onSession: (conn) => {
				// The first session's handler throws on the first byte; the second echoes.
				if (sessions++ === 0) {
					conn.onStream = (s) => {
						s.onData = () => {
							throw new TypeError("injected: handler bug");
						};
					};
				} else {
					echo(conn);
				}
			},
		});
		try {
			await noEscape(async () => {
				const faults = refusalCounts().faults;
				const dial = () =>
					connectQuic({ host: "127.0.0.1", port: server.port, alpns: [ALPN], certificateHashes: [TEST_CERT_HASH] });
				const victim = await dial();
				const healthy = await dial();
				const closed = closeOf(victim);
				const bad = victim.openBidi()!;
				bad.write(Buffer.from("boom"));
				assert.equal(await closed, FAULT, "the offending connection closes with FAULT");
				assert.equal(refusalCounts().faults, faults + 1, "the fault is counted once");

				const stream = healthy.openBidi()!;
				const echoed = collect(stream);
				stream.write(Buffer.from("still here"));
				stream.finish();
				assert.equal((await echoed).toString(), "still here", "the other connection is untouched");
				healthy.close(0, "");
			});
		} finally {
			await server.close();
		}
	});

	test("QUIC: a session setup (onSession) that throws refuses that connection only", T, async () => {
		let n = 0;
		const server = await listen({
			onSession: (conn) => {
				if (n++ === 0) throw new RangeError("injected: accept bug");
				echo(conn);
			},
		});
		try {
			await noEscape(async () => {
				const dial = () =>
					connectQuic({ host: "127.0.0.1", port: server.port, alpns: [ALPN], certificateHashes: [TEST_CERT_HASH] });
				const first = await dial().catch(() => null);
				if (first) await new Promise<void>((r) => (first.closed ? r() : (first.onClose = () => r())));
				const second = await dial();
				const stream = second.openBidi()!;
				const echoed = collect(stream);
				stream.write(Buffer.from("ok"));
				stream.finish();
				assert.equal((await echoed).toString(), "ok");
				second.close(0, "");
			});
		} finally {
			await server.close();
		}
	});

	test("WebSocket (qmux): a stream handler that throws closes that session only", T, async () => {
		let sessions = 0;
		const closes: { code: number; reason: string }[] = [];
		const handle = await startHttpServer({
			host: "127.0.0.1",
			port: 0,
			fingerprint: () => null,
			onSession: (session: TransportSession) => {
				session.onClose = (code, reason) => closes.push({ code, reason });
				if (sessions++ === 0) {
					session.onStream = () => {
						throw new TypeError("injected: handler bug");
					};
				} else {
					echo(session);
				}
			},
		});
		after(() => handle.close());
		await noEscape(async () => {
			const faults = refusalCounts().faults;
			const url = `http://127.0.0.1:${handle.port}/anon`;
			const victim = new Qmux(url, { protocols: ["qmux-01.moq-lite-05"], requireProtocol: true });
			const healthy = new Qmux(url, { protocols: ["qmux-01.moq-lite-05"], requireProtocol: true });
			victim.closed.catch(() => {});
			healthy.closed.catch(() => {});
			const bidi = await victim.createBidirectionalStream();
			const w = bidi.writable.getWriter();
			await w.write(new Uint8Array([1, 2, 3])).catch(() => {});
			const deadline = Date.now() + 5000;
			while (closes.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
			assert.equal(closes.length, 1, "the offending session closed");
			assert.equal(refusalCounts().faults, faults + 1, "the fault is counted once");

			const s = await healthy.createBidirectionalStream();
			const writer = s.writable.getWriter();
			await writer.write(new TextEncoder().encode("alive"));
			await writer.close();
			const reader = s.readable.getReader();
			const chunks: Uint8Array[] = [];
			for (;;) {
				const { value, done } = await reader.read();
				if (done) break;
				chunks.push(value);
			}
			assert.equal(Buffer.concat(chunks).toString(), "alive", "the other session is untouched");
			assert.equal(sessions, 2);
			healthy.close();
		});
	});

	test("fan-out: a consumer that throws while draining is faulted alone; the others are served", () => {
		const drained: string[] = [];
		const faulted: unknown[] = [];
		const consumer = (name: string, throws: boolean): TrackConsumer => ({
			params: { priority: 0, ordered: false, maxLatencyMs: 0, startGroup: null, endGroup: null } as never,
			attach() {},
			abort() {},
			end() {},
			drain() {
				if (throws) throw new Error(`injected: ${name}`);
				drained.push(name);
			},
			fault(err) {
				faulted.push(err);
			},
		});
		drainConsumers(new Set([consumer("a", false), consumer("b", true), consumer("c", false)]));
		assert.deepEqual(drained, ["a", "c"]);
		assert.equal(faulted.length, 1);
		assert.match(String(faulted[0]), /injected: b/);
	});
});
