/**
 * Stray datagrams at the server: garbage, a truncated Initial, an unknown version (answered with
 * version negotiation), an Initial with an undecryptable payload. Nothing crashes, every case is
 * counted, and a real client is served afterwards.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { test } from "node:test";
import { connectQuic } from "../src/quic/client.ts";
import { ALPN, collect, listen, TEST_CERT_HASH } from "./support/quic.ts";
import { until } from "./support/wait.ts";

/** A long-header packet: first byte, version, DCID, SCID, then filler up to `size` bytes. */
function longHeader(first: number, version: number, dcid: Buffer, scid: Buffer, size: number): Buffer {
	const head = Buffer.concat([
		Buffer.from([first]),
		Buffer.from([(version >>> 24) & 0xff, (version >>> 16) & 0xff, (version >>> 8) & 0xff, version & 0xff]),
		Buffer.from([dcid.length]),
		dcid,
		Buffer.from([scid.length]),
		scid,
	]);
	return Buffer.concat([head, randomBytes(Math.max(0, size - head.length))]);
}

test("stray datagrams are counted and survived; version negotiation is answered", { timeout: 20_000 }, async () => {
	const server = await listen({
		onSession(session) {
			session.onStream = (stream) => {
				stream.onData = (chunk) => stream.write(chunk);
				stream.onFin = () => stream.finish();
			};
		},
	});
	const raw = dgram.createSocket("udp4");
	await new Promise<void>((resolve) => raw.bind(0, "127.0.0.1", resolve));
	const replies: Buffer[] = [];
	raw.on("message", (msg) => replies.push(msg));
	const send = (packet: Buffer): Promise<void> =>
		new Promise((resolve, reject) =>
			raw.send(packet, server.port, "127.0.0.1", (err) => (err ? reject(err) : resolve())),
		);

	try {
		// Garbage: too short for any packet, and random bytes with a long-header bit but bad lengths.
		await send(Buffer.from([1, 2, 3]));
		await send(Buffer.from([0xc0, 0, 0, 0, 1, 200]));
		// Random short-header datagrams for connection IDs nobody issued.
		for (let i = 0; i < 20; i++) {
			const pkt = randomBytes(100 + i * 50);
			pkt[0] = 0x40 | (pkt[0] & 0x3f);
			pkt[1] = 0; // "owned" by worker 0, i.e. this server
			await send(pkt);
		}
		// A v1 Initial below the 1200-byte minimum.
		await send(longHeader(0xc0, 1, randomBytes(8), randomBytes(8), 600));
		// An unknown version, full size: answered with version negotiation.
		const scid = randomBytes(8);
		const dcid = randomBytes(8);
		await send(longHeader(0xc0, 0x1a2a3a4a, dcid, scid, 1200));
		// A full-size v1 Initial whose payload is noise: no state may survive it.
		await send(longHeader(0xc3, 1, randomBytes(8), randomBytes(8), 1250));

		await until(() => replies.length >= 1 && server.stats.packetsIn >= 25);
		await until(() => server.stats.garbage >= 3);
		const vn = replies[0];
		assert.equal(vn[0] & 0x80, 0x80, "long header");
		assert.equal(vn.readUInt32BE(1), 0, "version 0 = version negotiation");
		assert.ok(vn.subarray(6, 6 + vn[5]).equals(scid), "addressed to the client's SCID");
		const versions: number[] = [];
		let off = 6 + vn[5];
		off += 1 + vn[off];
		for (; off + 4 <= vn.length; off += 4) versions.push(vn.readUInt32BE(off));
		assert.ok(versions.includes(1), `offers QUIC v1 (got ${versions.map((v) => v.toString(16))})`);

		assert.equal(server.stats.versionNegotiations, 1);
		assert.equal(server.stats.truncatedInitials, 1);
		assert.equal(server.stats.unknownConnection, 20);
		assert.equal(server.stats.garbage, 3, "two malformed datagrams and one undecryptable Initial");
		assert.equal(server.stats.connectionsAccepted, 0);
		await until(() => server.stats.connections === 0);

		// Still serves a real client.
		const client = await connectQuic({
			host: "127.0.0.1",
			port: server.port,
			alpns: [ALPN],
			certificateHashes: [TEST_CERT_HASH],
		});
		const stream = client.openBidi()!;
		const echoed = collect(stream);
		stream.write(Buffer.from("after the noise"));
		stream.finish();
		assert.equal((await echoed).toString(), "after the noise");
		client.close(0, "");
	} finally {
		raw.close();
		await server.close();
	}
});

test("packets for another worker's connection IDs go to onForeignPacket", { timeout: 10_000 }, async () => {
	const foreign: number[] = [];
	const server = await listen({
		workerIndex: 2,
		onSession() {},
		onForeignPacket: (_pkt, _rinfo, owner) => foreign.push(owner),
	});
	const raw = dgram.createSocket("udp4");
	await new Promise<void>((resolve) => raw.bind(0, "127.0.0.1", resolve));
	try {
		const pkt = randomBytes(200);
		pkt[0] = 0x40;
		pkt[1] = 5; // a connection ID issued by worker 5
		await new Promise<void>((resolve) => raw.send(pkt, server.port, "127.0.0.1", () => resolve()));
		const own = randomBytes(200);
		own[0] = 0x40;
		own[1] = 2; // ours, but unknown: dropped, not forwarded
		await new Promise<void>((resolve) => raw.send(own, server.port, "127.0.0.1", () => resolve()));
		await until(() => server.stats.packetsIn === 2);
		assert.deepEqual(foreign, [5]);
		assert.equal(server.stats.foreign, 1);
		assert.equal(server.stats.unknownConnection, 1);
	} finally {
		raw.close();
		await server.close();
	}
});
