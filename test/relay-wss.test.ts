import assert from "node:assert/strict";
import https from "node:https";
import { after, before, describe, it } from "node:test";
import WebSocket from "ws";
import { startTestRelay, type TestRelay } from "./support/relay.ts";

/** [web.https]: the HTTP routes and the qmux WebSocket endpoint over TLS, with the relay's certificate. */
describe("HTTPS and wss://", { timeout: 20_000 }, () => {
	let relay: TestRelay;
	before(async () => {
		relay = await startTestRelay(`[web.https]\nlisten = "127.0.0.1:0"\n`);
	});
	after(async () => {
		await relay.close();
	});

	it("serves the fingerprint over HTTPS and upgrades wss:// to qmux", async () => {
		const port = relay.node.httpsPort!;
		assert.ok(port > 0);
		const body = await new Promise<string>((resolve, reject) => {
			https
				.get(
					{ host: "127.0.0.1", port, path: "/certificate.sha256", ca: relay.certPem, servername: "localhost" },
					(res) => {
						let text = "";
						res.setEncoding("utf8").on("data", (d: string) => (text += d));
						res.on("end", () => resolve(text));
					},
				)
				.on("error", reject);
		});
		assert.match(body, /^[0-9a-f]{64}$/);

		// The generated certificate names 127.0.0.1 too, so the IP verifies without a servername.
		const ws = new WebSocket(`wss://127.0.0.1:${port}/anon`, ["qmux-01.moq-lite-05"], { ca: relay.certPem });
		// The server speaks first on qmux-01: its transport parameters, in a binary message.
		const first = await new Promise<Buffer>((resolve, reject) => {
			ws.once("message", (data) => resolve(data as Buffer));
			ws.once("error", reject);
		});
		assert.equal(ws.protocol, "qmux-01.moq-lite-05");
		assert.ok(first.length > 0);
		ws.close();
	});
});
