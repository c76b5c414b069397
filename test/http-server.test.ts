/** The HTTP/1.1 listener over real sockets: routes, headers, upgrade refusal, malformed input, TLS, reusePort. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import Qmux from "../node_modules/@moq/net/node_modules/@moq/qmux/index.js";
import { type HttpServerHandle, startHttpServer } from "../src/http/server.ts";
import { type EchoServer, pattern, readAll, startEcho } from "./support/websocket.ts";

const TIMEOUT = { timeout: 15_000 };
const FP = "3f".repeat(32);

interface Reply {
	status: number;
	headers: IncomingHttpHeaders;
	body: string;
}

function get(port: number, path: string, method = "GET", headers: Record<string, string> = {}): Promise<Reply> {
	return new Promise((resolve, reject) => {
		const req = httpRequest({ host: "127.0.0.1", port, path, method, headers }, (res) => {
			let body = "";
			res.setEncoding("utf8");
			res.on("data", (c) => {
				body += c;
			});
			res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
		});
		req.on("error", reject);
		req.end();
	});
}

/**
 * Writes raw bytes on a fresh TCP connection and returns what the server sent before closing
 * (or, with `headOnly`, its response head, after which we hang up).
 */
function raw(port: number, bytes: string, headOnly = false): Promise<string> {
	return new Promise((resolve, reject) => {
		const s = connect(port, "127.0.0.1", () => s.write(bytes));
		let out = "";
		s.setEncoding("latin1");
		s.on("data", (c) => {
			out += c;
			if (headOnly && out.includes("\r\n\r\n")) s.destroy();
		});
		s.on("close", () => resolve(out));
		s.on("error", reject);
	});
}

function upgradeRequest(protocols: string | null): string {
	return (
		"GET /anon HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		(protocols === null ? "" : `Sec-WebSocket-Protocol: ${protocols}\r\n`) +
		"\r\n"
	);
}

describe("HTTP routes", () => {
	let server: EchoServer;
	let bare: HttpServerHandle;
	before(async () => {
		server = await startEcho({}, { fingerprint: () => FP });
		bare = await startHttpServer({
			host: "127.0.0.1",
			port: 0,
			fingerprint: () => null,
			onSession: () => {},
			health: () => ({ status: "ok", workers: 3 }),
			metrics: () => "moq_sessions 2\n",
		});
	});
	after(async () => {
		await server.handle.close();
		await bare.close();
	});

	test("/certificate.sha256: 64 lowercase hex chars, no newline, text/plain, CORS", TIMEOUT, async () => {
		const r = await get(server.handle.port, "/certificate.sha256?ignored=1");
		assert.equal(r.status, 200);
		assert.equal(r.body, FP);
		assert.match(r.body, /^[0-9a-f]{64}$/);
		assert.equal(r.headers["content-type"], "text/plain");
		assert.equal(r.headers["access-control-allow-origin"], "*");
		assert.equal(r.headers["content-length"], "64");
	});

	test("/certificate.sha256 is 404 without a certificate", TIMEOUT, async () => {
		const r = await get(bare.port, "/certificate.sha256");
		assert.equal(r.status, 404);
		assert.equal(r.headers["access-control-allow-origin"], "*");
	});

	test("/health and /metrics", TIMEOUT, async () => {
		const h = await get(bare.port, "/health");
		assert.equal(h.status, 200);
		assert.equal(h.headers["content-type"], "application/json");
		assert.deepEqual(JSON.parse(h.body), { status: "ok", workers: 3 });
		const dflt = await get(server.handle.port, "/health");
		assert.deepEqual(JSON.parse(dflt.body), { status: "ok" });
		const m = await get(bare.port, "/metrics");
		assert.equal(m.status, 200);
		assert.match(String(m.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
		assert.equal(m.body, "moq_sessions 2\n");
		assert.equal((await get(server.handle.port, "/metrics")).status, 404);
	});

	test("anything else is 404 with CORS; OPTIONS preflight is answered", TIMEOUT, async () => {
		for (const [path, method] of [
			["/", "GET"],
			["/nope", "GET"],
			["/certificate.sha256", "POST"],
		]) {
			const r = await get(server.handle.port, path, method);
			assert.equal(r.status, 404, `${method} ${path}`);
			assert.equal(r.headers["access-control-allow-origin"], "*");
		}
		const o = await get(server.handle.port, "/certificate.sha256", "OPTIONS", {
			origin: "https://example.com",
			"access-control-request-method": "GET",
			"access-control-request-headers": "x-foo",
		});
		assert.equal(o.status, 204);
		assert.equal(o.headers["access-control-allow-origin"], "*");
		assert.match(String(o.headers["access-control-allow-methods"]), /GET/);
		assert.equal(o.headers["access-control-allow-headers"], "x-foo");
	});

	test("a WebSocket offering only unknown subprotocols gets 400 and no upgrade", TIMEOUT, async () => {
		const reply = await raw(server.handle.port, upgradeRequest("chat, qmux-01.moqt-99"));
		assert.match(reply, /^HTTP\/1\.1 400 /);
		assert.doesNotMatch(reply, /101 Switching/);
		// Through a real client too: the handshake fails.
		const ws = new WebSocket(`ws://127.0.0.1:${server.handle.port}/`, ["chat"]);
		await new Promise<void>((resolve) => {
			ws.onerror = () => resolve();
		});
	});

	test("a WebSocket offering no subprotocol is upgraded (legacy framing)", TIMEOUT, async () => {
		const reply = await raw(server.handle.port, upgradeRequest(null), true);
		assert.match(reply, /^HTTP\/1\.1 101 /);
		assert.doesNotMatch(reply, /Sec-WebSocket-Protocol/i);
	});

	test("malformed requests get 400 / 431 and the server keeps serving", TIMEOUT, async () => {
		assert.match(await raw(server.handle.port, "GARBAGE\r\n\r\n"), /^HTTP\/1\.1 400 /);
		assert.match(await raw(server.handle.port, "GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"), /^HTTP\/1\.1 400 /);
		const huge = `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`;
		assert.match(await raw(server.handle.port, huge), /^HTTP\/1\.1 431 /);
		assert.match(
			await raw(server.handle.port, upgradeRequest("qmux-01.moql").replace("/anon", "/%E0%A4%A")),
			/^HTTP\/1\.1 400 /,
		);
		assert.equal((await get(server.handle.port, "/certificate.sha256")).status, 200);
	});

	test("garbage and text close only their own session; another keeps echoing", TIMEOUT, async () => {
		const good = new Qmux(`${server.url}/`, { protocols: ["qmux-01.moq-lite-05"], requireProtocol: true });
		await good.ready;
		for (const bad of [Uint8Array.of(0x40, 0x99), "text"]) {
			const ws = new WebSocket(`ws://127.0.0.1:${server.handle.port}/`, ["qmux-01.moq-lite-05"]);
			const closed = new Promise<number>((r) => {
				ws.onclose = (e) => r(e.code);
			});
			await new Promise<void>((r) => {
				ws.onopen = () => r();
			});
			ws.send(bad);
			assert.equal(await closed, typeof bad === "string" ? 1003 : 1002);
		}
		const bidi = await good.createBidirectionalStream();
		const reading = readAll(bidi.readable);
		const writer = bidi.writable.getWriter();
		await writer.write(pattern(5000));
		await writer.close();
		assert.deepEqual(await reading, pattern(5000));
		good.close();
	});

	test("close() ends open sessions", TIMEOUT, async () => {
		const s = await startEcho();
		const client = new Qmux(`${s.url}/`, { protocols: ["qmux-00.moq-lite-04"], requireProtocol: true });
		await client.ready;
		assert.equal(s.handle.sessions, 1);
		const closed = s.nextClose();
		await s.handle.close();
		assert.deepEqual(await closed, { code: 0, reason: "server shutting down" });
		assert.deepEqual(await client.closed, { closeCode: 0, reason: "server shutting down" });
	});
});

describe("HTTP listener options", () => {
	test("reusePort lets two listeners bind the same port", TIMEOUT, async () => {
		const a = await startHttpServer({
			host: "127.0.0.1",
			port: 0,
			reusePort: true,
			fingerprint: () => FP,
			onSession: () => {},
		});
		const b = await startHttpServer({
			host: "127.0.0.1",
			port: a.port,
			reusePort: true,
			fingerprint: () => FP,
			onSession: () => {},
		});
		try {
			assert.equal(b.port, a.port);
			assert.equal((await get(a.port, "/certificate.sha256")).body, FP);
		} finally {
			await a.close();
			await b.close();
		}
	});

	test("TLS: served over https; setTls swaps the certificate", TIMEOUT, async (t) => {
		const dir = mkdtempSync(join(tmpdir(), "moq-http-"));
		const make = (name: string): { cert: Buffer; key: Buffer } => {
			const r = spawnSync("openssl", [
				"req",
				"-x509",
				"-newkey",
				"ec",
				"-pkeyopt",
				"ec_paramgen_curve:P-256",
				"-nodes",
				"-days",
				"14",
				"-subj",
				`/CN=${name}`,
				"-keyout",
				join(dir, `${name}.key`),
				"-out",
				join(dir, `${name}.pem`),
			]);
			if (r.status !== 0) throw new Error(String(r.stderr));
			return { cert: readFileSync(join(dir, `${name}.pem`)), key: readFileSync(join(dir, `${name}.key`)) };
		};
		let one: { cert: Buffer; key: Buffer };
		let two: { cert: Buffer; key: Buffer };
		try {
			one = make("one");
			two = make("two");
		} catch (e) {
			t.skip(`openssl unavailable: ${e}`);
			return;
		}
		const fingerprintOf = (pem: Buffer): string =>
			createHash("sha256").update(new X509Certificate(pem).raw).digest("hex");
		let current = one.cert;
		const handle = await startHttpServer({
			host: "127.0.0.1",
			port: 0,
			tls: one,
			fingerprint: () => fingerprintOf(current),
			onSession: () => {},
		});
		const fetchTls = (): Promise<{ body: string; peer: string }> =>
			new Promise((resolve, reject) => {
				const req = httpsRequest(
					{
						host: "127.0.0.1",
						port: handle.port,
						path: "/certificate.sha256",
						rejectUnauthorized: false,
						agent: false,
					},
					(res) => {
						let body = "";
						const peer =
							res.socket && "getPeerCertificate" in res.socket
								? (res.socket as import("node:tls").TLSSocket).getPeerCertificate().subject.CN
								: "";
						res.on("data", (c) => {
							body += c;
						});
						res.on("end", () => resolve({ body, peer: String(peer) }));
					},
				);
				req.on("error", reject);
				req.end();
			});
		try {
			const r1 = await fetchTls();
			assert.equal(r1.peer, "one");
			assert.equal(r1.body, fingerprintOf(one.cert));
			handle.setTls(two);
			current = two.cert;
			const r2 = await fetchTls();
			assert.equal(r2.peer, "two");
			assert.equal(r2.body, fingerprintOf(two.cert));
		} finally {
			await handle.close();
		}
	});
});
