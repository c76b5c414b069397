/**
 * Authentication before accepting, against a real relay on real sockets: a refused token on the
 * WebSocket upgrade or the HTTP/3 extended CONNECT is answered HTTP 401 (no token, or one that does
 * not verify) or 403 (a valid token that does not cover the path), with a short text body, instead
 * of 101/200 followed by a moq-lite close; nothing of the token reaches the relay's log. A valid
 * token still connects (official @moq/net over WebSocket, our WebTransport client), anonymous
 * public paths need none, and raw QUIC keeps the lite-05 SETUP path check (close code 6).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import * as Net from "@moq/net";
import { Authenticator } from "../src/auth/index.ts";
import { MoqClient } from "../src/client/index.ts";
import { parseConfig } from "../src/config/load.ts";
import { startHttpServer } from "../src/http/server.ts";
import { createLogger } from "../src/log/logger.ts";
import { connectQuic } from "../src/quic/client.ts";
import { generateCertificate } from "../src/tls/generate.ts";
import { refusalCounts } from "../src/transport/refusals.ts";
import { connectWebTransport, WebTransportRejectedError } from "../src/webtransport/client.ts";
import { ConnectStream } from "../src/webtransport/connect.ts";
import { H3Connection } from "../src/webtransport/connection.ts";
import type { Field } from "../src/webtransport/qpack.ts";
import { type RelayNode, startRelayNode } from "../src/worker/relay-node.ts";
import { rawUpgrade } from "./support/raw-upgrade.ts";
import { until } from "./support/relay.ts";

const REPO = resolve(import.meta.dirname, "..");
const NODE = join(REPO, "node_modules", ".bin", "node");
const MOQ_TOKEN = join(REPO, "node_modules", ".bin", "moq-token");
const T = { timeout: 30_000 };

function moqToken(args: string[]): string {
	return execFileSync(NODE, [MOQ_TOKEN, ...args], { encoding: "utf8" }).trim();
}

interface H3Answer {
	fields: Map<string, string>;
	/** Every byte the relay sent on the request stream (HEADERS and DATA frames). */
	raw: () => Buffer;
	ended: Promise<void>;
}

/** An HTTP/3 client connection to the relay (SETTINGS exchanged). */
async function h3Client(port: number, fingerprint: string): Promise<H3Connection> {
	const quic = await connectQuic({ host: "127.0.0.1", port, alpns: ["h3"], certificateHashes: [fingerprint] });
	const h3 = new H3Connection(quic, false, undefined, undefined);
	const settings = new Promise<void>((r) => {
		h3.onPeerSettings = () => r();
	});
	h3.start();
	await settings;
	return h3;
}

/** One extended CONNECT for `target`; resolves with the response fields once they arrive. */
function wtConnect(h3: H3Connection, target: string): Promise<H3Answer> {
	const stream = h3.quic.openBidi();
	assert.ok(stream, "bidi credit");
	const req = new ConnectStream(stream, h3);
	const chunks: Buffer[] = [];
	const inner = stream.onData!;
	stream.onData = (chunk) => {
		chunks.push(Buffer.from(chunk));
		inner(chunk);
	};
	let ended!: () => void;
	const endedP = new Promise<void>((r) => {
		ended = r;
	});
	req.onEnded = () => ended();
	const fields: Field[] = [
		[":method", "CONNECT"],
		[":scheme", "https"],
		[":authority", "127.0.0.1"],
		[":path", target],
		[":protocol", "webtransport"],
		["sec-webtransport-http3-draft02", "1"],
		["wt-available-protocols", '"moq-lite-05"'],
		["origin", "http://127.0.0.1"],
	];
	return new Promise((resolve) => {
		req.onHeaders = (f) => {
			req.final = true;
			resolve({ fields: new Map(f), raw: () => Buffer.concat(chunks), ended: endedP });
		};
		req.sendHeaders(fields, false);
	});
}

describe("tokens are checked before the upgrade / CONNECT is answered", { timeout: 120_000 }, () => {
	let dir: string;
	let key: string;
	let node: RelayNode;
	let fingerprint: string;
	const lines: string[] = [];
	const tokens: Record<string, string> = {};

	before(async () => {
		dir = mkdtempSync(join(tmpdir(), "moq-auth-connect-"));
		key = join(dir, "relay.jwk");
		moqToken(["generate", "--key", key, "--algorithm", "HS256", "--id", "relay"]);
		const other = join(dir, "other.jwk");
		moqToken(["generate", "--key", other, "--algorithm", "HS256", "--id", "relay"]);
		const sign = (...args: string[]) => moqToken(["sign", "--key", key, ...args]);
		tokens.room1 = sign("--root", "rooms/1", "--publish", "", "--subscribe", "");
		tokens.expired = sign(
			"--root",
			"rooms/1",
			"--subscribe",
			"",
			"--expires",
			String(Math.floor(Date.now() / 1000) - 5),
		);
		tokens.wrongKey = moqToken(["sign", "--key", other, "--root", "rooms/1", "--subscribe", ""]);
		const [h, p, s] = tokens.room1.split(".");
		const payload = JSON.parse(Buffer.from(p, "base64url").toString());
		tokens.tampered = `${h}.${Buffer.from(JSON.stringify({ ...payload, root: "" })).toString("base64url")}.${s}`;

		const config = parseConfig(
			`[server]\nbind = "127.0.0.1:0"\n[server.tls]\ngenerate = ["localhost", "127.0.0.1"]\n` +
				`[auth]\npublic = "anon"\nkey = ${JSON.stringify(key)}\n`,
			"test.toml",
			{ baseDir: process.cwd() },
		);
		const cert = generateCertificate(["localhost", "127.0.0.1"]);
		node = await startRelayNode({
			config,
			log: createLogger("debug", "text", {}, (line) => lines.push(line)),
			fingerprint: () => cert.fingerprint,
			tls: { cert: cert.certPem, key: cert.keyPem },
			port: 0,
		});
		fingerprint = cert.fingerprint;
	});
	after(async () => {
		await node?.close();
		rmSync(dir, { recursive: true, force: true });
	});

	test(
		"WebSocket: 401 without a token or with a bad one, 403 outside the token root, 400 for a bad path",
		T,
		async () => {
			const port = node.httpPort!;
			const refusedBefore = refusalCounts().byReason.auth;
			const cases: [string, number, string][] = [
				["/rooms/1", 401, "missing token"],
				["/rooms/1?jwt=", 401, "missing token"],
				["/rooms/1?jwt=not.a.jwt", 401, "invalid token"],
				[`/rooms/1?jwt=${tokens.expired}`, 401, "token expired"],
				[`/rooms/1?jwt=${tokens.wrongKey}`, 401, "invalid token"],
				[`/rooms/1?jwt=${tokens.tampered}`, 401, "invalid token"],
				[`/rooms/10?jwt=${tokens.room1}`, 403, "forbidden: token does not cover this path"],
				[`/other?jwt=${tokens.room1}`, 403, "forbidden: token does not cover this path"],
				// A token always wins over the public prefixes.
				[`/anon?jwt=${tokens.room1}`, 403, "forbidden: token does not cover this path"],
				// The last non-empty jwt wins.
				[`/rooms/1?jwt=${tokens.room1}&jwt=bad`, 401, "invalid token"],
				[`/${"a/".repeat(40)}x`, 400, "invalid path"],
			];
			for (const [target, status, reason] of cases) {
				const answer = await rawUpgrade(port, target, "qmux-01.moq-lite-05");
				assert.equal(answer.status, status, target);
				assert.equal(answer.body, reason, target);
				assert.equal(answer.headers["content-type"], "text/plain");
				assert.equal(answer.headers.connection, "close");
			}
			assert.equal(refusalCounts().byReason.auth - refusedBefore, cases.length, "each refusal counted as auth");
			assert.equal(node.sessionsByKind.websocket, 0, "no session was created for a refused upgrade");

			// Accepted: a valid token at (or below) its root, the last non-empty jwt, an anonymous public path.
			for (const target of [
				`/rooms/1?jwt=${tokens.room1}`,
				`/rooms/1/sub?jwt=${tokens.room1}`,
				`/rooms?jwt=${tokens.room1}`,
				`/rooms/1?jwt=bad&jwt=${tokens.room1}&jwt=`,
				"/anon",
				"/anon/room",
				"/",
			]) {
				assert.equal((await rawUpgrade(port, target, "qmux-01.moq-lite-05")).status, 101, target);
			}
		},
	);

	test("WebSocket: the official @moq/net client connects with a valid token and is refused without", T, async () => {
		const url = (path: string) => new URL(`http://127.0.0.1:${node.httpPort}/${path}`);
		const publisher = await Net.Connection.connect(url(`rooms/1?jwt=${tokens.room1}`), { websocket: { delay: 0 } });
		const broadcast = new Net.Broadcast.Producer();
		broadcast.createTrack("video");
		publisher.publish(Net.Path.from("cam"), broadcast);
		await until(() => node.relay.broadcasts.has("rooms/1/cam"), 10_000, "rooms/1/cam from @moq/net");
		publisher.close();

		for (const path of ["rooms/1", `rooms/10?jwt=${tokens.room1}`, `rooms/1?jwt=${tokens.expired}`]) {
			const outcome = await Net.Connection.connect(url(path), { websocket: { delay: 0 } }).then(
				(conn: { close(): void }) => {
					conn.close();
					return "connected";
				},
				() => "refused",
			);
			assert.equal(outcome, "refused", path);
		}
	});

	test("HTTP/3 extended CONNECT: :status 401/403/400 with the reason as a text body", T, async () => {
		const h3 = await h3Client(node.quicPort, fingerprint);
		try {
			const refusedBefore = refusalCounts().byReason.auth;
			const cases: [string, number, string][] = [
				["/rooms/1", 401, "missing token"],
				[`/rooms/1?jwt=${tokens.expired}`, 401, "token expired"],
				[`/rooms/1?jwt=${tokens.tampered}`, 401, "invalid token"],
				[`/rooms/10?jwt=${tokens.room1}`, 403, "forbidden: token does not cover this path"],
				[`/${"a/".repeat(40)}x`, 400, "invalid path"],
			];
			for (const [target, status, reason] of cases) {
				const answer = await wtConnect(h3, target);
				assert.equal(answer.fields.get(":status"), String(status), target);
				assert.equal(answer.fields.get("content-type"), "text/plain");
				await answer.ended;
				assert.ok(answer.raw().includes(Buffer.from(reason)), `${target}: body has "${reason}"`);
			}
			assert.equal(refusalCounts().byReason.auth - refusedBefore, cases.length);
			assert.equal(node.sessionsByKind.webtransport, 0);

			// The same HTTP/3 connection then opens a session with a valid token.
			const ok = await wtConnect(h3, `/rooms/1?jwt=${tokens.room1}`);
			assert.equal(ok.fields.get(":status"), "200");
			assert.equal(ok.fields.get("wt-protocol"), '"moq-lite-05"');
			await until(() => node.sessionsByKind.webtransport === 1, 5000, "the WebTransport session");
		} finally {
			h3.quic.close(0, "done");
		}
		await until(() => node.sessionsByKind.webtransport === 0, 5000, "the session to end with its connection");
	});

	test(
		"WebTransport client: refused with the status; a valid token publishes, a public path needs none",
		T,
		async () => {
			const dial = async (target: string) => {
				const quic = await connectQuic({
					host: "127.0.0.1",
					port: node.quicPort,
					alpns: ["h3"],
					certificateHashes: [fingerprint],
				});
				return connectWebTransport(quic, new URL(`https://127.0.0.1:${node.quicPort}${target}`), ["moq-lite-05"]);
			};
			for (const [target, status] of [
				["/rooms/1", 401],
				[`/rooms/2?jwt=${tokens.room1}`, 403],
			] as const) {
				const err = await dial(target).then(
					() => null,
					(e: unknown) => e,
				);
				assert.ok(err instanceof WebTransportRejectedError, `${target}: ${String(err)}`);
				assert.equal(err.status, status);
			}

			const pub = await MoqClient.connect(await dial(`/rooms/1?jwt=${tokens.room1}`));
			const track = pub.publish("wt-cam", { tracks: ["v"] }).track("v");
			await until(() => node.relay.broadcasts.has("rooms/1/wt-cam"), 5000, "rooms/1/wt-cam over WebTransport");
			const viewer = await MoqClient.connect(await dial("/anon"));
			const anonPub = viewer.publish("open", { tracks: ["v"] });
			await until(() => node.relay.broadcasts.has("anon/open"), 5000, "anon/open over WebTransport");
			assert.ok(track && anonPub);
			pub.close();
			viewer.close();
		},
	);

	test("raw QUIC: the lite-05 SETUP path is still checked by the session (close code 6)", T, async () => {
		const quic = (path: string) =>
			connectQuic({
				host: "127.0.0.1",
				port: node.quicPort,
				alpns: ["moq-lite-05"],
				certificateHashes: [fingerprint],
			}).then((t) => MoqClient.connect(t, { path }));
		const closeCode = (path: string) =>
			quic(path).then(
				// The refusal can arrive with the SETUP reply (one receive batch): closed before we look.
				(c) => new Promise<number>((r) => (c.closed ? r(c.closeCode ?? -1) : (c.onClose = (code) => r(code)))),
				(e: Error) => e.message,
			);
		assert.equal(await closeCode("/rooms/1"), 6);
		assert.equal(await closeCode(`/rooms/10?jwt=${tokens.room1}`), 6);
		assert.equal(await closeCode(`/rooms/1?jwt=${tokens.expired}`), 6);
		const ok = await quic(`/rooms/1?jwt=${tokens.room1}`);
		ok.publish("quic-cam", { tracks: ["v"] });
		await until(() => node.relay.broadcasts.has("rooms/1/quic-cam"), 5000, "rooms/1/quic-cam over raw QUIC");
		ok.close();
	});

	test("the grant the listener verified is handed to the session: one verification per session", T, async () => {
		const original = Authenticator.prototype.authorize;
		let calls = 0;
		Authenticator.prototype.authorize = function (this: Authenticator, ...args: Parameters<typeof original>) {
			calls++;
			return original.apply(this, args);
		};
		try {
			const url = new URL(`http://127.0.0.1:${node.httpPort}/rooms/1?jwt=${tokens.room1}`);
			const ws = await Net.Connection.connect(url, { websocket: { delay: 0 } });
			const broadcast = new Net.Broadcast.Producer();
			broadcast.createTrack("video");
			ws.publish(Net.Path.from("once-ws"), broadcast);
			await until(() => node.relay.broadcasts.has("rooms/1/once-ws"), 5000, "rooms/1/once-ws");
			assert.equal(calls, 1, "WebSocket: verified once, at the upgrade");
			ws.close();

			const quic = await connectQuic({
				host: "127.0.0.1",
				port: node.quicPort,
				alpns: ["h3"],
				certificateHashes: [fingerprint],
			});
			const wt = await connectWebTransport(
				quic,
				new URL(`https://127.0.0.1:${node.quicPort}/rooms/1?jwt=${tokens.room1}`),
				["moq-lite-05"],
			);
			const pub = await MoqClient.connect(wt);
			pub.publish("once-wt", { tracks: ["v"] });
			await until(() => node.relay.broadcasts.has("rooms/1/once-wt"), 5000, "rooms/1/once-wt");
			assert.equal(calls, 2, "WebTransport: verified once, at the CONNECT");
			pub.close();
		} finally {
			Authenticator.prototype.authorize = original;
		}
	});

	test("the relay log names the refusals and never contains a token", () => {
		assert.ok(
			lines.some((l) => l.includes("refused") && l.includes("reason=auth")),
			"an auth refusal was logged",
		);
		const all = lines.join("\n");
		for (const [name, token] of Object.entries(tokens)) {
			for (const part of token.split(".")) {
				if (part.length >= 8) assert.ok(!all.includes(part), `the log contains a segment of the ${name} token`);
			}
		}
	});
});

describe("a held upgrade is still under the header deadline", () => {
	test("an authorize that never settles: the socket is cut at the header timeout", T, async () => {
		let asked = 0;
		const handle = await startHttpServer({
			host: "127.0.0.1",
			port: 0,
			fingerprint: () => null,
			onSession: () => assert.fail("no session may be created"),
			authorize: () => {
				asked++;
				return new Promise(() => {});
			},
			limits: { httpHeaderTimeoutMs: 300, idleTimeoutMs: 60_000 },
		});
		try {
			const before = refusalCounts().byReason.header_timeout;
			const socket: Socket = createConnection({ host: "127.0.0.1", port: handle.port });
			const closed = new Promise<number>((r) => socket.once("close", () => r(performance.now())));
			const received: Buffer[] = [];
			socket.on("data", (d) => received.push(d));
			socket.on("error", () => {});
			const start = performance.now();
			socket.write(
				"GET /x HTTP/1.1\r\nHost: relay\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
					"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
			);
			const end = await closed;
			assert.equal(asked, 1);
			assert.ok(end - start < 3000, `cut after ${Math.round(end - start)} ms`);
			assert.equal(Buffer.concat(received).length, 0, "nothing was answered");
			assert.equal(refusalCounts().byReason.header_timeout - before, 1);
			await until(() => handle.connections === 0, 2000, "the connection to be released");
		} finally {
			await handle.close();
		}
	});

	test("an authorize that throws answers 500; the upgrade is refused, not accepted", T, async () => {
		const handle = await startHttpServer({
			host: "127.0.0.1",
			port: 0,
			fingerprint: () => null,
			onSession: () => assert.fail("no session may be created"),
			authorize: () => Promise.reject(new Error("boom")),
		});
		try {
			const answer = await rawUpgrade(handle.port, "/x");
			assert.equal(answer.status, 500);
			assert.equal(answer.body, "internal error");
		} finally {
			await handle.close();
		}
	});
});
