/**
 * The HTTP/WebSocket listener's admission and deadlines in process (connections.ts): refusals at
 * accept, every admitted connection released exactly once whatever ends it (client close, header
 * timeout, idle timeout, linger after an error, TLS), and the close linger after a 400.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import tls from "node:tls";
import { type HttpServerHandle, startHttpServer } from "../src/http/server.ts";
import { generateCertificate } from "../src/tls/generate.ts";
import { Admission } from "../src/transport/admission.ts";
import { refusalCounts } from "../src/transport/refusals.ts";
import "./support/quiet.ts";
import { until } from "./support/wait.ts";

const HEADER_MS = 300;
const IDLE_MS = 600;

/** Resolves when the server ends the connection (FIN or reset); `at` is how long that took. */
function ended(socket: net.Socket): Promise<number> {
	const start = Date.now();
	socket.resume();
	return new Promise((resolve) => {
		const done = () => resolve(Date.now() - start);
		socket.once("end", done);
		socket.once("close", done);
		socket.on("error", () => {});
	});
}

function connect(port: number, localAddress?: string): Promise<net.Socket> {
	return new Promise((resolve, reject) => {
		const s = net.connect({ host: "127.0.0.1", port, localAddress, allowHalfOpen: true }, () => resolve(s));
		s.once("error", reject);
	});
}

describe("HTTP listener admission and deadlines", { timeout: 30_000 }, () => {
	const admission = new Admission({
		maxSessions: 0,
		maxTcpConnections: 6,
		maxConnectionsPerIp: 4,
		handshakeRatePerIp: 0,
	});
	let plain: HttpServerHandle;
	let secure: HttpServerHandle;

	before(async () => {
		const cert = generateCertificate(["localhost", "127.0.0.1"]);
		const common = {
			host: "127.0.0.1",
			port: 0,
			fingerprint: () => null,
			onSession: () => {},
			admission,
			limits: { httpHeaderTimeoutMs: HEADER_MS, idleTimeoutMs: IDLE_MS },
		};
		plain = await startHttpServer(common);
		secure = await startHttpServer({ ...common, tls: { cert: cert.certPem, key: cert.keyPem } });
	});

	after(async () => {
		await plain.close();
		await secure.close();
	});

	test("per-IP and relay-wide caps refuse at accept; every slot comes back", async () => {
		const refusedBefore = { ...refusalCounts().byReason };
		const a = await Promise.all(Array.from({ length: 5 }, () => connect(plain.port, "127.0.0.2")));
		const aEnds = a.map(ended);
		await until(() => admission.tcpConnections === 4, 2000, "the first address at its cap");
		const b = await Promise.all(Array.from({ length: 4 }, () => connect(secure.port, "127.0.0.3")));
		const bEnds = b.map(ended);
		await new Promise((r) => setTimeout(r, 100));
		// 127.0.0.2: 4 of 5 (per IP); 127.0.0.3: the 2 left under the cap of 6 (TLS listener, same count).
		assert.equal(admission.tcpConnections, 6);
		assert.equal(plain.connections + secure.connections, 6);
		const counts = refusalCounts().byReason;
		assert.equal(counts.connections_per_ip - refusedBefore.connections_per_ip, 1);
		assert.equal(counts.tcp_connections - refusedBefore.tcp_connections, 2);
		// The rest end by the header timeout, over TCP and over TLS alike.
		const times = await Promise.all([...aEnds, ...bEnds]);
		assert.ok(Math.max(...times) < HEADER_MS + 600, `${times}`);
		await until(() => admission.tcpConnections === 0, 2000, "every slot released");
		assert.equal(admission.connectionsFrom("127.0.0.2"), 0);
		assert.equal(admission.connectionsFrom("127.0.0.3"), 0);
		assert.equal(plain.connections + secure.connections, 0);
	});

	test("TLS slowloris after the handshake is cut at the header timeout", async () => {
		const s = tls.connect({ host: "127.0.0.1", port: secure.port, rejectUnauthorized: false });
		await new Promise<void>((r) => s.once("secureConnect", () => r()));
		const done = ended(s as unknown as net.Socket);
		s.write("GET / HTTP/1.1\r\n");
		const timer = setInterval(() => s.writable && s.write("X"), 50);
		const ms = await done;
		clearInterval(timer);
		assert.ok(ms >= HEADER_MS - 150 && ms < HEADER_MS + 600, `${ms} ms`);
		await until(() => admission.tcpConnections === 0, 2000, "released");
	});

	test("a keep-alive connection is idle-closed; a 400 is lingered then destroyed", async () => {
		// A request whose response completes, then silence: the next headers never come.
		const k = await connect(plain.port);
		const kEnd = ended(k);
		k.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
		// Garbage: 400, and we never close our side (half-open forever without the linger).
		const g = await connect(plain.port);
		const gEnd = ended(g);
		g.write("NOT HTTP\r\n\r\n");
		const [kMs, gMs] = await Promise.all([kEnd, gEnd]);
		assert.ok(kMs < HEADER_MS + 600, `keep-alive ${kMs} ms`);
		assert.ok(gMs < 1200, `400 ${gMs} ms`);
		await new Promise((r) => setTimeout(r, 100));
		// FIN came; the linger then destroys the server side though we keep ours open.
		await until(() => admission.tcpConnections === 0, 2000, "released");
		k.destroy();
		g.destroy();
	});
});
