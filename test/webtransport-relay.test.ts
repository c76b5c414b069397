/**
 * Bad input against the running relay (in process, every listener wired as in production) on its
 * QUIC port: garbage datagrams, truncated and corrupted Initials, an HTTP/3 request that is not a
 * WebTransport CONNECT (404), a malformed `wt-available-protocols` (400), a control stream without
 * SETTINGS and an undecodable QPACK section (connection closed with the precise HTTP/3 / QPACK
 * code). Nothing crashes, every case is counted or answered, and normal clients still work after,
 * including on the very connection whose requests were refused.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { after, before, describe, test } from "node:test";
import { MoqClient } from "../src/client/index.ts";
import { H3 } from "../src/errors/codes.ts";
import { connectQuic } from "../src/quic/client.ts";
import type { QuicConnection } from "../src/quic/connection.ts";
import { connectWebTransport } from "../src/webtransport/client.ts";
import { ConnectStream } from "../src/webtransport/connect.ts";
import { H3Connection } from "../src/webtransport/connection.ts";
import type { Field } from "../src/webtransport/qpack.ts";
import { startTestRelay, type TestRelay } from "./support/relay.ts";
import { until } from "./support/wait.ts";

const T = { timeout: 20_000 };

/** A datagram socket aimed at the relay's QUIC port, recording what comes back. */
async function rawSocket(port: number) {
	const socket = dgram.createSocket("udp4");
	await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
	const replies: Buffer[] = [];
	socket.on("message", (m) => replies.push(m));
	return {
		replies,
		send: (packet: Uint8Array) =>
			new Promise<void>((resolve, reject) =>
				socket.send(packet, port, "127.0.0.1", (err) => (err ? reject(err) : resolve())),
			),
		close: () => socket.close(),
	};
}

/** A real client Initial (ALPN h3), captured by pointing our client at a socket that never answers. */
async function captureInitial(): Promise<Buffer> {
	const sink = dgram.createSocket("udp4");
	await new Promise<void>((r) => sink.bind(0, "127.0.0.1", () => r()));
	const first = new Promise<Buffer>((r) => sink.once("message", (m) => r(m)));
	const attempt = connectQuic({
		host: "127.0.0.1",
		port: sink.address().port,
		alpns: ["h3"],
		insecure: true,
		timeoutMs: 500,
	});
	const initial = await first;
	await attempt.then(
		(c) => c.close(0, ""),
		() => {},
	);
	sink.close();
	return initial;
}

const CONNECT: Field[] = [
	[":method", "CONNECT"],
	[":scheme", "https"],
	[":authority", "127.0.0.1"],
	[":path", "/anon"],
	[":protocol", "webtransport"],
	["sec-webtransport-http3-draft02", "1"],
	["origin", "http://127.0.0.1"],
];

/** An HTTP/3 client connection (our SETTINGS sent, the relay's received). */
async function h3Client(relay: TestRelay, fingerprint: string): Promise<{ quic: QuicConnection; h3: H3Connection }> {
	const quic = await connectQuic({
		host: "127.0.0.1",
		port: relay.quicPort,
		alpns: ["h3"],
		certificateHashes: [fingerprint],
	});
	assert.equal(quic.protocol, "h3");
	const h3 = new H3Connection(quic, false, undefined, undefined);
	const settings = new Promise<void>((r) => {
		h3.onPeerSettings = () => r();
	});
	h3.start();
	await settings;
	return { quic, h3 };
}

interface Response {
	fields: Map<string, string>;
	/** The relay ended the request stream (FIN) after its response. */
	ended: Promise<void>;
}

/** Sends one request on a new bidi stream and resolves with the response's header fields. */
function request(h3: H3Connection, fields: Field[]): Promise<Response> {
	const stream = h3.quic.openBidi();
	assert.ok(stream, "bidi credit");
	const req = new ConnectStream(stream, h3);
	let ended!: () => void;
	const endedP = new Promise<void>((r) => {
		ended = r;
	});
	req.onEnded = () => ended();
	return new Promise((resolve) => {
		req.onHeaders = (f) => {
			req.final = true;
			resolve({ fields: new Map(f), ended: endedP });
		};
		req.sendHeaders(fields, false);
	});
}

/** Resolves with the code the relay closed `quic` with. */
function closedWith(quic: QuicConnection): Promise<{ code: number; reason: string }> {
	return new Promise((resolve) => {
		quic.onClose = (code, reason) => resolve({ code, reason });
	});
}

describe("relay on its QUIC port: bad input", { timeout: 60_000 }, () => {
	let relay: TestRelay;
	let fingerprint: string;
	before(async () => {
		relay = await startTestRelay();
		fingerprint = await (await fetch(new URL("/certificate.sha256", relay.url()))).text();
	});
	after(async () => {
		await relay.close();
	});

	test("garbage datagrams, truncated and corrupted Initials: counted, dropped, no crash", T, async () => {
		const stats = relay.node.quic.stats;
		const before = { ...stats };
		const raw = await rawSocket(relay.quicPort);
		try {
			// Not QUIC at all.
			await raw.send(Uint8Array.of(1, 2, 3));
			await raw.send(Buffer.from("GET / HTTP/1.1\r\n\r\n"));
			await raw.send(Uint8Array.of(0xc0, 0, 0, 0, 1, 200)); // long header, DCID length past the end
			// Short-header packets for connection IDs this worker never issued.
			for (let i = 0; i < 10; i++) {
				const pkt = randomBytes(60 + i * 100);
				pkt[0] = 0x40 | (pkt[0] & 0x3f);
				pkt[1] = 0; // worker 0's prefix: ours to own, so not forwarded
				await raw.send(pkt);
			}
			// A real Initial, cut short (a client Initial must fill ≥ 1200 bytes)...
			const initial = await captureInitial();
			assert.ok(initial.length >= 1200, `captured Initial of ${initial.length} bytes`);
			await raw.send(initial.subarray(0, 700));
			await raw.send(initial.subarray(0, 1199));
			// ...and one at full size whose encrypted payload (the ClientHello) was tampered with.
			const corrupt = Buffer.from(initial);
			for (let i = 200; i < 240; i++) corrupt[i] ^= 0x5a;
			await raw.send(corrupt);

			await until(() => stats.packetsIn - before.packetsIn >= 16, 5000, "the relay to read every datagram");
			assert.equal(stats.unknownConnection - before.unknownConnection, 10, "short headers for unknown IDs");
			assert.equal(stats.truncatedInitials - before.truncatedInitials, 2, "Initials under 1200 bytes");
			assert.equal(stats.recvErrors - before.recvErrors, 1, "the tampered Initial failed decryption");
			// 3 non-QUIC datagrams, plus the tampered Initial's connection state, dropped at once.
			assert.equal(stats.garbage - before.garbage, 4, "garbage");
			assert.equal(stats.connections, before.connections, "no half-open connection kept");
			assert.equal(stats.connectionsAccepted, before.connectionsAccepted, "no session came of any of it");
			assert.deepEqual(raw.replies, [], "nothing answered (no amplification)");
		} finally {
			raw.close();
		}
		const health = await fetch(new URL("/health", relay.url()));
		assert.equal(health.status, 200);
	});

	test(
		"HTTP/3: a GET gets 404, a malformed wt-available-protocols 400; the same connection then connects",
		T,
		async () => {
			const { quic, h3 } = await h3Client(relay, fingerprint);
			try {
				const get = await request(h3, [
					[":method", "GET"],
					[":scheme", "https"],
					[":authority", "127.0.0.1"],
					[":path", "/anon"],
				]);
				assert.equal(get.fields.get(":status"), "404");
				await get.ended;

				const notWebTransport = await request(h3, [
					...CONNECT.filter(([n]) => n !== ":protocol"),
					[":protocol", "websocket"],
				] as Field[]);
				assert.equal(notWebTransport.fields.get(":status"), "400");
				await notWebTransport.ended;

				for (const bad of ['"moq-lite-05", "unterminated', '"moq-lite-05",', "(moq-lite-05)", '"moq-lite-05" "moql"']) {
					const res = await request(h3, [...CONNECT, ["wt-available-protocols", bad]]);
					assert.equal(res.fields.get(":status"), "400", `wt-available-protocols: ${bad}`);
					await res.ended;
				}
				assert.equal(relay.node.sessionsByKind.webtransport, 0);

				// Same QUIC connection, a well-formed CONNECT: accepted, protocol negotiated as a quoted sf-string.
				const ok = await request(h3, [...CONNECT, ["wt-available-protocols", '"moq-lite-05", "moq-lite-04"']]);
				assert.equal(ok.fields.get(":status"), "200");
				assert.equal(ok.fields.get("wt-protocol"), '"moq-lite-05"');
				assert.equal(ok.fields.get("sec-webtransport-http3-draft"), "draft02");
				await until(() => relay.node.sessionsByKind.webtransport === 1, 5000, "the relay's WebTransport session");
			} finally {
				quic.close(0, "done");
			}
			await until(() => relay.node.sessionsByKind.webtransport === 0, 5000, "the session to end with its connection");
		},
	);

	test("HTTP/3 protocol errors close the connection with the precise code", T, async () => {
		// A control stream whose first frame is not SETTINGS: H3_MISSING_SETTINGS.
		{
			const quic = await connectQuic({
				host: "127.0.0.1",
				port: relay.quicPort,
				alpns: ["h3"],
				certificateHashes: [fingerprint],
			});
			const closed = closedWith(quic);
			quic.openUni()!.write(Uint8Array.of(0x00, 0x07, 0x01, 0x00)); // control stream, GOAWAY(0)
			const { code } = await closed;
			assert.equal(code, H3.MISSING_SETTINGS);
		}
		// A HEADERS frame whose QPACK prefix references the dynamic table we disabled: QPACK_DECOMPRESSION_FAILED.
		{
			const { quic, h3 } = await h3Client(relay, fingerprint);
			const closed = new Promise<number>((r) => {
				h3.onClosed = (code) => r(code);
			});
			quic.openBidi()!.write(Uint8Array.of(0x01, 0x03, 0x05, 0x00, 0xd1)); // HEADERS, Required Insert Count 5
			assert.equal(await closed, H3.QPACK_DECOMPRESSION_FAILED);
		}
		// A request stream carrying a SETTINGS frame: H3_FRAME_UNEXPECTED.
		{
			const { quic, h3 } = await h3Client(relay, fingerprint);
			const closed = new Promise<number>((r) => {
				h3.onClosed = (code) => r(code);
			});
			quic.openBidi()!.write(Uint8Array.of(0x04, 0x00));
			assert.equal(await closed, H3.FRAME_UNEXPECTED);
		}
	});

	test("afterwards a normal WebTransport client publishes and a raw-QUIC client receives", T, async () => {
		const wtQuic = await connectQuic({
			host: "127.0.0.1",
			port: relay.quicPort,
			alpns: ["h3"],
			certificateHashes: [fingerprint],
		});
		const wt = await connectWebTransport(wtQuic, new URL(`https://127.0.0.1:${relay.quicPort}/anon`), [
			"moq-lite-05",
			"moq-lite-04",
		]);
		assert.equal(wt.protocol, "moq-lite-05");
		const pub = await MoqClient.connect(wt);
		const track = pub.publish("after", { tracks: ["v"] }).track("v");

		const viewerQuic = await connectQuic({
			host: "127.0.0.1",
			port: relay.quicPort,
			alpns: ["moq-lite-05"],
			certificateHashes: [fingerprint],
		});
		const viewer = await MoqClient.connect(viewerQuic, { path: "/anon" });
		const got: Uint8Array[] = [];
		viewer.subscribe("after", "v", {}, { onFrame: (_s, _i, p) => got.push(new Uint8Array(p)) });
		await until(() => track.subscribers === 1, 5000, "the relay's upstream subscription");
		const payload = randomBytes(5000);
		track.writeGroup([payload]);
		await until(() => got.length === 1, 5000, "the frame");
		assert.deepEqual(got[0], new Uint8Array(payload));
		pub.close();
		viewer.close();
	});
});
