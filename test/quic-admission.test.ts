/**
 * QUIC address validation and handshake admission on one endpoint (src/quic/server.ts): Retry
 * modes on / off / auto, forged / expired / other-address Retry tokens, the per-worker and per-IP
 * handshake caps, the relay-wide per-IP rate and connection caps (Admission), and the handshake
 * gauge returning to zero whatever way a handshake ends.
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { after, describe, test } from "node:test";
import type { RelayConfig } from "../src/config/types.ts";
import { newCid } from "../src/quic/cid.ts";
import { connectQuic } from "../src/quic/client.ts";
import { buildClientConfig, resolveLimits } from "../src/quic/config.ts";
import { loadQuiche } from "../src/quic/native.ts";
import { RetryTokens } from "../src/quic/retry.ts";
import type { QuicServer } from "../src/quic/server.ts";
import { Admission } from "../src/transport/admission.ts";
import { type RefusalReason, refusalCounts } from "../src/transport/refusals.ts";
import { ALPN, listen, TEST_CERT_HASH } from "./support/quic.ts";
import "./support/quiet.ts";
import { sleep, until } from "./support/wait.ts";

const T = { timeout: 20_000 };
const KEY = Buffer.alloc(32, 7);

type QuicOptions = Partial<RelayConfig["server"]["quic"]>;

const servers: QuicServer[] = [];
const sockets: dgram.Socket[] = [];

async function server(quic: QuicOptions, extra: Parameters<typeof listen>[0] | object = {}): Promise<QuicServer> {
	const s = await listen({ quic, retryKey: KEY, onSession: () => {}, ...extra });
	servers.push(s);
	return s;
}

function connect(port: number, timeoutMs = 5000) {
	return connectQuic({ host: "127.0.0.1", port, alpns: [ALPN], certificateHashes: [TEST_CERT_HASH], timeoutMs });
}

/** A UDP socket on 127.0.0.`host`: each host byte is another client address. */
async function socketOn(host: number): Promise<dgram.Socket> {
	const socket = dgram.createSocket("udp4");
	await new Promise<void>((r) => socket.bind(0, `127.0.0.${host}`, () => r()));
	socket.on("error", () => {});
	sockets.push(socket);
	return socket;
}

/** A real client Initial (a ClientHello quiche built) that nobody will ever follow up. */
function realInitial(socket: dgram.Socket, port: number): Buffer {
	const quiche = loadQuiche();
	const config = buildClientConfig([ALPN], false, null, resolveLimits(undefined));
	const local = socket.address();
	const conn = quiche.Connection.connect(
		null,
		newCid(1),
		{ host: local.address, port: local.port },
		{ host: "127.0.0.1", port },
		config,
	);
	const buf = Buffer.alloc(1500);
	const out = conn.send(buf);
	assert.ok(out !== null);
	return buf.subarray(0, out[0]);
}

/** A 1200-byte Initial carrying `token` (its payload does not matter: the token is checked first). */
function initialWithToken(token: Uint8Array, dcid: Buffer = newCid(0)): Buffer {
	const buf = Buffer.alloc(1200);
	let p = 0;
	buf[p++] = 0xc3;
	buf.writeUInt32BE(1, p);
	p += 4;
	buf[p++] = dcid.length;
	dcid.copy(buf, p);
	p += dcid.length;
	buf[p++] = 8;
	p += 8;
	buf.writeUInt16BE(0x4000 | token.length, p);
	p += 2;
	buf.set(token, p);
	p += token.length;
	buf.writeUInt16BE(0x4000 | (buf.length - p - 2), p);
	return buf;
}

function refusals(reason: RefusalReason): number {
	return refusalCounts().byReason[reason];
}

async function send(socket: dgram.Socket, packet: Buffer, port: number): Promise<void> {
	await new Promise<void>((r) => socket.send(packet, port, "127.0.0.1", () => r()));
}

describe("quic admission", () => {
	after(async () => {
		for (const s of servers) await s.close();
		for (const s of sockets) s.close();
	});

	test('retry = "on": every client is validated first, and our client follows the Retry', T, async () => {
		const s = await server({ retry: "on" });
		const conn = await connect(s.port);
		assert.equal(s.stats.retries, 1);
		// The server counts the handshake done once the client's Finished arrives.
		await until(() => s.stats.handshakes === 0, 2000);
		conn.close(0, "");
	});

	test('retry = "off": no Retry, even past the threshold', T, async () => {
		const s = await server({ retry: "off", retryThreshold: 0 });
		const conn = await connect(s.port);
		assert.equal(s.stats.retries, 0);
		conn.close(0, "");
	});

	test(
		'retry = "auto": Retry only while handshakes in progress reach the threshold; the gauge is exact',
		T,
		async () => {
			const s = await server({ retry: "auto", retryThreshold: 1 }, { limits: { handshakeIdleTimeoutMs: 400 } });
			const quiet = await connect(s.port);
			assert.equal(s.stats.retries, 0, "below the threshold: no Retry");
			await until(() => s.stats.handshakes === 0, 2000, "established: no longer a handshake in progress");
			// The handshakes started this second count too (the next test): start from a fresh second.
			await sleep(1000);
			// A half-open handshake (an Initial nobody follows up) puts the worker at the threshold.
			const spoofed = await socketOn(2);
			await send(spoofed, realInitial(spoofed, s.port), s.port);
			await until(() => s.stats.handshakes === 1, 2000);
			const validated = await connect(s.port);
			assert.equal(s.stats.retries, 1, "at the threshold: the new client got a Retry");
			// The silent handshake is dropped after the idle timeout, not the 10 s handshake timeout.
			await until(() => s.stats.handshakes === 0, 2000);
			quiet.close(0, "");
			validated.close(0, "");
			await until(() => s.connectionCount === 0, 5000);
		},
	);

	test(
		'retry = "auto": undecryptable Initials that never stay in progress still switch Retry on, per second',
		T,
		async () => {
			const s = await server({ retry: "auto", retryThreshold: 3 });
			const flood = await socketOn(5);
			// The window is the server's clock second (same process): start just after a boundary.
			await sleep(1000 - (performance.now() % 1000) + 5);
			// Each is accepted (a full quiche accept), fails to decrypt and is dropped at once: never "in
			// progress", but each cost real work. Three in one second reach the threshold.
			for (let i = 0; i < 3; i++) await send(flood, initialWithToken(new Uint8Array(0), newCid(7)), s.port);
			await until(() => s.stats.garbage >= 3, 2000, "three undecryptable Initials dropped");
			assert.equal(s.stats.handshakes, 0, "none of them is in progress");
			assert.equal(s.stats.retries, 0);
			const client = await connect(s.port);
			assert.equal(s.stats.retries, 1, "the next new client in the same second was asked to Retry");
			client.close(0, "");
		},
	);

	test("a forged, expired or other-address token is dropped and counted; no state is kept", T, async () => {
		const s = await server({ retry: "on" });
		const socket = await socketOn(3);
		const { address, port } = socket.address();
		const tokens = new RetryTokens(KEY);
		const odcid = newCid(9);
		const before = refusals("retry_token");
		const forged = new RetryTokens(Buffer.alloc(32, 1)).mint(odcid, address, port);
		const expired = tokens.mint(odcid, address, port, Date.now() - 60_000);
		const otherPort = tokens.mint(odcid, address, port + 1);
		const otherHost = tokens.mint(odcid, "127.0.0.4", port);
		for (const token of [forged, expired, otherPort, otherHost]) {
			await send(socket, initialWithToken(token, newCid(s.workerIndex)), s.port);
		}
		await until(() => refusals("retry_token") === before + 4, 2000);
		assert.equal(s.connectionCount, 0);
		assert.equal(s.stats.retries, 0);
		// The same token for the right address passes the check (and then fails to decrypt: garbage).
		await send(socket, initialWithToken(tokens.mint(odcid, address, port), newCid(s.workerIndex)), s.port);
		await until(() => s.stats.garbage === 1, 2000);
		assert.equal(refusals("retry_token"), before + 4);
	});

	test("per-IP and per-worker handshake caps refuse before any quiche state", T, async () => {
		const s = await server({ retry: "off", maxHandshakes: 3, maxHandshakesPerIp: 2 });
		const perIp = refusals("handshakes_per_ip");
		const total = refusals("handshakes");
		const a = await socketOn(5);
		for (let i = 0; i < 3; i++) await send(a, realInitial(a, s.port), s.port);
		await until(() => refusals("handshakes_per_ip") === perIp + 1, 2000);
		assert.equal(s.stats.handshakes, 2);
		const b = await socketOn(6);
		for (let i = 0; i < 2; i++) await send(b, realInitial(b, s.port), s.port);
		await until(() => refusals("handshakes") === total + 1, 2000);
		assert.equal(s.stats.handshakes, 3);
		assert.equal(s.connectionCount, 3);
	});

	test("relay-wide per-IP handshake rate and connection count (Admission), released exactly once", T, async () => {
		const admission = new Admission({
			maxSessions: 0,
			maxTcpConnections: 0,
			maxConnectionsPerIp: 1,
			handshakeRatePerIp: 1000,
		});
		const s = await server({ retry: "off" }, { admission });
		const perIp = refusals("connections_per_ip");
		const first = await connect(s.port);
		assert.equal(admission.connectionsFrom("127.0.0.1"), 1);
		await assert.rejects(connect(s.port, 500));
		assert.ok(refusals("connections_per_ip") > perIp);
		first.close(0, "");
		await until(() => s.connectionCount === 0, 5000);
		assert.equal(admission.connectionsFrom("127.0.0.1"), 0);
		const second = await connect(s.port);
		second.close(0, "");
		await until(() => s.connectionCount === 0, 5000);
		assert.equal(admission.connectionsFrom("127.0.0.1"), 0);

		const limited = new Admission({
			maxSessions: 0,
			maxTcpConnections: 0,
			maxConnectionsPerIp: 0,
			handshakeRatePerIp: 2,
		});
		const r = await server({ retry: "off" }, { admission: limited });
		const rate = refusals("handshake_rate");
		const c = await socketOn(8);
		for (let i = 0; i < 4; i++) await send(c, realInitial(c, r.port), r.port);
		await until(() => refusals("handshake_rate") >= rate + 1, 2000);
		assert.ok(r.stats.handshakes <= 2);
		await until(() => r.stats.handshakes === 0 && limited.connectionsFrom("127.0.0.8") === 0, 8000);
	});
});
