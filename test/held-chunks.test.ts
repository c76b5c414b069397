/**
 * Bytes a session holds past the callback that delivered them are its own copies.
 *
 * The transports hand out chunks that are views of one shared receive buffer (valid only during the
 * callback, src/transport/types.ts), and `Buffer#slice` returns another view, not a copy. A session
 * opened with `moql` over WebTransport holds its first bytes until CLIENT_SETUP says which dialect it
 * speaks (src/moq/ietf/compat.ts). With `chunk.slice()` there, a CLIENT_SETUP whose type byte
 * arrived in a packet of its own (@moq/net writes it apart from the rest, and Chromium sends it at
 * once) was replayed as whatever the next packet put in the buffer: the relay never answered and
 * closed the session after its SETUP timeout. Headless Chromium found it (test/ietf-browser.test.ts);
 * this reproduces it with the relay's own WebTransport client, over real QUIC on loopback.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectQuic } from "../src/quic/client.ts";
import { connectWebTransport } from "../src/webtransport/client.ts";
import "./support/quiet.ts";
import { startTestRelay, type TestRelay } from "./support/relay.ts";
import { sleep, until } from "./support/wait.ts";

/** QUIC varint (RFC 9000 §16). */
function varint(v: number): number[] {
	if (v < 0x40) return [v];
	if (v < 0x4000) return [0x40 | (v >> 8), v & 0xff];
	if (v < 0x40000000) return [0x80 | (v >>> 24), (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
	const hi = Math.floor(v / 2 ** 32);
	return [
		0xc0 | (hi >>> 24),
		(hi >>> 16) & 0xff,
		(hi >>> 8) & 0xff,
		hi & 0xff,
		(v >>> 24) & 0xff,
		(v >>> 16) & 0xff,
		(v >>> 8) & 0xff,
		v & 0xff,
	];
}

/** @moq/net's CLIENT_SETUP over `moql`: type 0x20, u16 length, versions [lite-02, lite-01, draft-14], no parameters. */
function clientSetup(): number[] {
	const versions = [0xff0dad02, 0xff0dad01, 0xff00000e];
	const body = [...varint(versions.length), ...versions.flatMap(varint), ...varint(0)];
	return [0x20, body.length >> 8, body.length & 0xff, ...body];
}

describe("bytes held across callbacks are copies", () => {
	let relay: TestRelay;
	let fingerprint: string;
	before(async () => {
		relay = await startTestRelay();
		fingerprint = await (await fetch(new URL("/certificate.sha256", relay.url()))).text();
	});
	after(async () => {
		await relay?.close();
	});

	for (const split of [false, true]) {
		test(`moql over WebTransport: CLIENT_SETUP ${split ? "with its type byte in a packet of its own" : "in one write"} is answered`, async () => {
			const quic = await connectQuic({
				host: "127.0.0.1",
				port: relay.quicPort,
				alpns: ["h3"],
				certificateHashes: [fingerprint],
			});
			const wt = await connectWebTransport(quic, new URL(`https://127.0.0.1:${relay.quicPort}/anon`), ["moql"]);
			try {
				assert.equal(wt.protocol, "moql");
				const stream = wt.openBidi();
				assert.ok(stream);
				const reply: number[] = [];
				stream.onData = (chunk) => reply.push(...chunk);
				let closed: string | null = null;
				wt.onClose = (code, reason) => {
					closed = `${code} ${reason}`;
				};
				const setup = clientSetup();
				if (split) {
					stream.write(Uint8Array.from(setup.slice(0, 1)));
					// Long enough for the first byte to arrive and be held alone, and for other packets
					// (the peer's ACKs, the next stream data) to pass through the receive buffer.
					await sleep(50);
					stream.write(Uint8Array.from(setup.slice(1)));
				} else {
					stream.write(Uint8Array.from(setup));
				}
				await until(() => reply.length >= 3 || closed !== null, 5000, "SERVER_SETUP or a close");
				assert.equal(closed, null);
				// SERVER_SETUP in the legacy framing (0x21, u16 length) choosing moq-lite-02 (0xff0dad02).
				assert.equal(reply[0], 0x21, Buffer.from(reply).toString("hex"));
				const length = (reply[1] << 8) | reply[2];
				await until(() => reply.length >= 3 + length, 5000, "the whole SERVER_SETUP");
				assert.deepEqual(reply.slice(3, 3 + 8), varint(0xff0dad02));
			} finally {
				wt.close(0, "");
			}
		});
	}
});
