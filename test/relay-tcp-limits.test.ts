/**
 * TCP hardening against the real relay process (2 workers, SO_REUSEPORT listeners):
 * - slowloris (1 byte/s) and silent connections are closed by `[limits] http_header_timeout`;
 * - upgraded WebSockets that go silent (no pong) are closed by `[limits] idle_timeout`;
 * - a qmux protocol error closes the session with the precise code and the TCP socket within ~1 s,
 *   even when the client never answers the WebSocket close;
 * - `max_tcp_connections`, `max_connections_per_ip` and `handshake_rate_per_ip` hold for the
 *   relay, not per worker, and every refusal is counted in /metrics by reason;
 * - meanwhile a well-behaved @moq/net viewer keeps receiving.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as Net from "@moq/net";
import { metricSum, type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import "./support/quiet.ts";
import { sleep, until } from "./support/wait.ts";

const WORKERS = 2;
const HEADER_TIMEOUT_MS = 2000;
const IDLE_TIMEOUT_MS = 3000;

/** /metrics on a fresh connection that closes after the answer (no pooled socket holding a slot). */
function metrics(port: number): Promise<Map<string, number>> {
	return new Promise((resolve, reject) => {
		http
			.get({ host: "127.0.0.1", port, path: "/metrics", agent: false, headers: { connection: "close" } }, (res) => {
				let text = "";
				res.setEncoding("utf8");
				res.on("data", (d: string) => (text += d));
				res.on("end", () => {
					const out = new Map<string, number>();
					for (const line of text.split("\n")) {
						if (!line || line.startsWith("#")) continue;
						const sp = line.lastIndexOf(" ");
						out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
					}
					resolve(out);
				});
			})
			.on("error", reject);
	});
}

async function refusals(port: number, reason: string): Promise<number> {
	return metricSum(await metrics(port), "moq_fanout_refusals_total", `reason="${reason}"`);
}

/** Waits (workers publish their counters once a second) until the relay-wide count reaches `atLeast`. */
async function refusalsReach(port: number, reason: string, atLeast: number, ms = 5000): Promise<number> {
	const deadline = Date.now() + ms;
	for (;;) {
		const n = await refusals(port, reason);
		if (n >= atLeast || Date.now() > deadline) return n;
		await sleep(250);
	}
}

interface Probe {
	socket: net.Socket;
	/** When the TCP connection was established (ms, Date.now()). */
	openedAt: number;
	/** When the server closed it (FIN, reset or close seen), or 0 while open. */
	closedAt: number;
}

/** Opens a TCP connection (optionally from another loopback address) and records when the server ends it. */
function probe(port: number, localAddress?: string): Promise<Probe> {
	return new Promise((resolve, reject) => {
		// allowHalfOpen: like an attack tool, we never close our side; only the server can end this.
		const socket = net.connect({ host: "127.0.0.1", port, localAddress, allowHalfOpen: true });
		const p: Probe = { socket, openedAt: 0, closedAt: 0 };
		const ended = () => {
			if (p.closedAt === 0) p.closedAt = Date.now();
		};
		// Flowing, so the server's FIN is seen ('end') even when we ignore what it sent before.
		socket.resume();
		socket.on("end", ended);
		socket.on("close", ended);
		socket.on("error", ended);
		socket.once("connect", () => {
			p.openedAt = Date.now();
			resolve(p);
		});
		socket.once("error", reject);
	});
}

/** Completes a WebSocket upgrade by hand (a client that will never answer pings or a close). */
async function rawWebSocket(port: number, protocol: string): Promise<{ p: Probe; frames: ServerFrames }> {
	const p = await probe(port);
	const frames = new ServerFrames();
	let head = Buffer.alloc(0);
	let upgraded = false;
	const done = new Promise<void>((resolve, reject) => {
		p.socket.on("data", (d: Buffer) => {
			if (upgraded) {
				frames.push(d);
				return;
			}
			head = Buffer.concat([head, d]);
			const end = head.indexOf("\r\n\r\n");
			if (end < 0) return;
			const status = head.subarray(0, end).toString("latin1");
			if (!status.startsWith("HTTP/1.1 101")) {
				reject(new Error(`upgrade refused: ${status}`));
				return;
			}
			upgraded = true;
			frames.push(head.subarray(end + 4));
			resolve();
		});
		p.socket.once("end", () => reject(new Error("closed before the upgrade")));
	});
	p.socket.write(
		`GET /anon HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
			`Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n` +
			`Sec-WebSocket-Protocol: ${protocol}\r\n\r\n`,
	);
	await done;
	return { p, frames };
}

/** A masked client binary frame (RFC 6455 §5.2), payload < 126 bytes. */
function clientFrame(payload: Uint8Array): Buffer {
	const mask = randomBytes(4);
	const out = Buffer.alloc(6 + payload.length);
	out[0] = 0x82;
	out[1] = 0x80 | payload.length;
	mask.copy(out, 2);
	for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i] ^ mask[i & 3];
	return out;
}

/** Parses the server's (unmasked) WebSocket frames. */
class ServerFrames {
	#buf = Buffer.alloc(0);
	readonly messages: { opcode: number; payload: Buffer }[] = [];

	push(d: Buffer): void {
		this.#buf = Buffer.concat([this.#buf, d]);
		for (;;) {
			const b = this.#buf;
			if (b.length < 2) return;
			let len = b[1] & 0x7f;
			let at = 2;
			if (len === 126) {
				if (b.length < 4) return;
				len = b.readUInt16BE(2);
				at = 4;
			} else if (len === 127) {
				if (b.length < 10) return;
				len = Number(b.readBigUInt64BE(2));
				at = 10;
			}
			if (b.length < at + len) return;
			this.messages.push({ opcode: b[0] & 0x0f, payload: b.subarray(at, at + len) });
			this.#buf = b.subarray(at + len);
		}
	}
}

async function writeConfig(dir: string, limits: string): Promise<string> {
	const path = join(dir, `relay-${randomBytes(4).toString("hex")}.toml`);
	await writeFile(
		path,
		`[server.tls]\ngenerate = ["localhost", "127.0.0.1"]\n[auth]\npublic = "anon"\n` +
			`[workers]\ncount = ${WORKERS}\n[limits]\n${limits}\n`,
	);
	return path;
}

describe("TCP timeouts and protocol errors (real relay, 2 workers)", { timeout: 60_000 }, () => {
	let dir: string;
	let relay: RelayProcess;
	let pub: Net.Connection.Established;
	let viewer: Net.Connection.Established;
	let publisher: ReturnType<typeof setInterval>;
	/** Groups the viewer received, with when. */
	const received: { seq: number; at: number }[] = [];
	let published = 0;

	before(async () => {
		dir = await mkdtemp(join(tmpdir(), "moq-tcp-limits-"));
		const config = await writeConfig(
			dir,
			`http_header_timeout = "${HEADER_TIMEOUT_MS}ms"\nidle_timeout = "${IDLE_TIMEOUT_MS}ms"\n` +
				// The floods below come from one address: the per-IP limits are the other suite's subject.
				`max_connections_per_ip = 100000\nhandshake_rate_per_ip = 100000\n`,
		);
		relay = await startRelayProcess(["--config", config, "--log-level", "warn"]);

		// A well-behaved publisher and viewer over WebSocket (official client), alive throughout.
		const url = new URL(`${relay.base}/anon`);
		pub = await Net.Connection.connect(url, { websocket: { delay: 0 } });
		const broadcast = new Net.Broadcast.Producer();
		const track = broadcast.createTrack("video");
		pub.publish(Net.Path.from("bbb"), broadcast);
		publisher = setInterval(() => {
			const g = track.appendGroup();
			g.writeFrame({ payload: new Uint8Array(100).fill(published++ & 0xff), timestamp: Net.Time.Timestamp.now() });
			g.close();
		}, 100);
		viewer = await Net.Connection.connect(url, { websocket: { delay: 0 } });
		const announced = viewer.announced(Net.Path.from(""));
		(async () => {
			for (;;) {
				const ev = await announced.next();
				if (!ev) return;
				if (ev.path !== "bbb" || !ev.active) continue;
				const sub = viewer.consume(Net.Path.from("bbb")).subscribe("video", { priority: 1 });
				for (;;) {
					const g = await sub.recvGroup().catch(() => undefined);
					if (!g) return;
					received.push({ seq: g.sequence, at: Date.now() });
				}
			}
		})().catch(() => {});
		await until(() => received.length > 0, 10_000, "the viewer's first group");
	});

	after(async () => {
		clearInterval(publisher);
		viewer?.close();
		pub?.close();
		await relay?.stop();
		await rm(dir, { recursive: true, force: true });
	});

	test("250 slowloris connections (1 byte/s) are closed by the header timeout", async () => {
		const before = await refusals(relay.port, "header_timeout");
		const N = 250;
		const probes = await Promise.all(Array.from({ length: N }, () => probe(relay.port)));
		const request = `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ${"a".repeat(200)}\r\n\r\n`;
		let sent = 0;
		const drip = setInterval(() => {
			for (const p of probes) if (p.closedAt === 0) p.socket.write(request[sent]);
			sent++;
		}, 1000);
		try {
			await until(() => probes.every((p) => p.closedAt !== 0), HEADER_TIMEOUT_MS + 5000, "every slowloris closed");
		} finally {
			clearInterval(drip);
			for (const p of probes) p.socket.destroy();
		}
		const lifetimes = probes.map((p) => p.closedAt - p.openedAt).sort((a, b) => a - b);
		const slowest = lifetimes[N - 1];
		console.error(`slowloris: ${N} closed after ${lifetimes[0]}..${slowest} ms (header timeout ${HEADER_TIMEOUT_MS})`);
		assert.ok(lifetimes[0] >= HEADER_TIMEOUT_MS - 200, `closed too early: ${lifetimes[0]} ms`);
		assert.ok(slowest <= HEADER_TIMEOUT_MS + 1500, `closed too late: ${slowest} ms`);
		assert.ok(sent <= 4, "they never finished their headers");
		assert.ok((await refusalsReach(relay.port, "header_timeout", before + N)) >= before + N, "counted");
	});

	test("a qmux protocol error closes the session with its code and the TCP socket within ~1 s", async () => {
		const before = await refusals(relay.port, "protocol");
		const N = 10;
		const ws = await Promise.all(Array.from({ length: N }, () => rawWebSocket(relay.port, "qmux-00.moq-lite-05")));
		const sentAt = Date.now();
		// 0x2f is no qmux frame type: FRAME_ENCODING_ERROR. We then never answer the close.
		for (const w of ws) w.p.socket.write(clientFrame(Uint8Array.of(0x2f)));
		try {
			await until(() => ws.every((w) => w.p.closedAt !== 0), 5000, "every socket closed after the protocol error");
		} finally {
			for (const w of ws) w.p.socket.destroy();
		}
		const slowest = Math.max(...ws.map((w) => w.p.closedAt - sentAt));
		console.error(`protocol error: ${N} TCP sockets closed ≤ ${slowest} ms after the bad frame`);
		assert.ok(slowest <= 1200, `closed after ${slowest} ms`);
		for (const w of ws) {
			// qmux CONNECTION_CLOSE (0x1c) with FRAME_ENCODING_ERROR (0x07) for frame type 0x2f ...
			const close = w.frames.messages.find((m) => m.opcode === 2 && m.payload[0] === 0x1c);
			assert.ok(close, "CONNECTION_CLOSE sent");
			assert.deepEqual([...close.payload.subarray(0, 3)], [0x1c, 0x07, 0x2f]);
			// ... then the WebSocket close 1002 (protocol error).
			const wsClose = w.frames.messages.find((m) => m.opcode === 8);
			assert.ok(wsClose, "WebSocket close sent");
			assert.equal(wsClose.payload.readUInt16BE(0), 1002);
		}
		assert.ok((await refusalsReach(relay.port, "protocol", before + N)) >= before + N);
	});

	test("silent connections, idle keep-alive and silent WebSockets are closed; a well-behaved viewer is not", async () => {
		const headerBefore = await refusals(relay.port, "header_timeout");
		const idleBefore = await refusals(relay.port, "idle_timeout");
		// 200 connections that never send a byte.
		const silent = await Promise.all(Array.from({ length: 200 }, () => probe(relay.port)));
		// 5 keep-alive connections that make one request, then say nothing.
		const keepAlive = await Promise.all(Array.from({ length: 5 }, () => probe(relay.port)));
		for (const p of keepAlive) p.socket.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
		// 20 upgraded WebSockets that never answer a ping.
		const ws = await Promise.all(Array.from({ length: 20 }, () => rawWebSocket(relay.port, "qmux-01.moq-lite-05")));
		const upgradedAt = Date.now();
		const all = [...silent, ...keepAlive, ...ws.map((w) => w.p)];
		try {
			await until(() => all.every((p) => p.closedAt !== 0), IDLE_TIMEOUT_MS + 5000, "every idle connection closed");
		} finally {
			for (const p of all) p.socket.destroy();
		}
		const silentSlowest = Math.max(...silent.map((p) => p.closedAt - p.openedAt));
		const keepAliveSlowest = Math.max(...keepAlive.map((p) => p.closedAt - p.openedAt));
		const wsTimes = ws.map((w) => w.p.closedAt - upgradedAt);
		console.error(
			`idle: 200 silent closed ≤ ${silentSlowest} ms, keep-alive ≤ ${keepAliveSlowest} ms, ` +
				`20 silent WebSockets ${Math.min(...wsTimes)}..${Math.max(...wsTimes)} ms after the upgrade`,
		);
		assert.ok(silentSlowest <= HEADER_TIMEOUT_MS + 1500, `silent: ${silentSlowest} ms`);
		assert.ok(keepAliveSlowest <= HEADER_TIMEOUT_MS + 1500, `keep-alive: ${keepAliveSlowest} ms`);
		assert.ok(Math.min(...wsTimes) >= IDLE_TIMEOUT_MS - 500, `WebSocket closed too early: ${Math.min(...wsTimes)}`);
		assert.ok(Math.max(...wsTimes) <= IDLE_TIMEOUT_MS + 1500, `WebSocket closed too late: ${Math.max(...wsTimes)}`);
		assert.ok((await refusalsReach(relay.port, "header_timeout", headerBefore + 205)) >= headerBefore + 205);
		assert.ok((await refusalsReach(relay.port, "idle_timeout", idleBefore + 20)) >= idleBefore + 20);

		// Meanwhile (and through the floods above) the official client, answering our pings, stayed.
		const last = published - 1;
		await until(() => received.some((r) => r.seq >= last), 5000, "the viewer to catch up");
		const lifetime = received[received.length - 1].at - received[0].at;
		let gap = 0;
		for (let i = 1; i < received.length; i++) gap = Math.max(gap, received[i].at - received[i - 1].at);
		console.error(`viewer: ${received.length} groups over ${lifetime} ms, longest gap ${gap} ms`);
		assert.ok(lifetime > IDLE_TIMEOUT_MS * 2, "it outlived several idle timeouts");
		assert.ok(gap < 1500, `gap of ${gap} ms`);
	});
});

describe("relay-wide TCP admission (real relay, 2 workers)", { timeout: 60_000 }, () => {
	const MAX_TCP = 10;
	const PER_IP = 4;
	const RATE = 10;
	let dir: string;
	let relay: RelayProcess;

	before(async () => {
		dir = await mkdtemp(join(tmpdir(), "moq-tcp-admission-"));
		const config = await writeConfig(
			dir,
			`max_tcp_connections = ${MAX_TCP}\nmax_connections_per_ip = ${PER_IP}\nhandshake_rate_per_ip = ${RATE}\n` +
				`http_header_timeout = "${HEADER_TIMEOUT_MS}ms"\n`,
		);
		relay = await startRelayProcess(["--config", config, "--log-level", "warn"]);
		// The start-up health checks left a pooled keep-alive connection; the header timeout ends it.
		await sleep(HEADER_TIMEOUT_MS + 700);
	});

	after(async () => {
		await relay?.stop();
		await rm(dir, { recursive: true, force: true });
	});

	/** Opens `count` connections from each address at once; after `settleMs`, those still open were admitted. */
	async function burst(addresses: string[], count: number, settleMs = 400): Promise<Probe[]> {
		const all = await Promise.all(addresses.flatMap((a) => Array.from({ length: count }, () => probe(relay.port, a))));
		await sleep(settleMs);
		return all;
	}

	async function closeAll(probes: Probe[]): Promise<void> {
		for (const p of probes) p.socket.destroy();
		await sleep(300); // the relay sees the closes and releases the slots
	}

	test("max_connections_per_ip: 6 from one address, exactly 4 admitted", async () => {
		const probes = await burst(["127.0.0.2"], 6);
		const open = probes.filter((p) => p.closedAt === 0).length;
		const refusedMs = Math.max(...probes.filter((p) => p.closedAt !== 0).map((p) => p.closedAt - p.openedAt));
		await closeAll(probes);
		console.error(`per-IP: ${open} of 6 admitted; refused ones closed within ${refusedMs} ms`);
		assert.equal(open, PER_IP);
		assert.equal(await refusalsReach(relay.port, "connections_per_ip", 2), 2);
	});

	test("max_tcp_connections = 10 holds for the relay (2 workers): exactly 10 of 24 admitted", async () => {
		const addresses = Array.from({ length: 8 }, (_, i) => `127.0.0.${3 + i}`);
		const probes = await burst(addresses, 3);
		const open = probes.filter((p) => p.closedAt === 0).length;
		await closeAll(probes);
		console.error(`TCP cap: ${open} of ${probes.length} admitted`);
		assert.equal(open, MAX_TCP, "the cap is relay-wide, not per worker");
		assert.equal(await refusalsReach(relay.port, "tcp_connections", 14), 14);
		// The relay keeps serving once the connections are gone.
		assert.ok((await metrics(relay.port)).size > 0);
	});

	test("handshake_rate_per_ip: a burst of 15 in one second from one address", async () => {
		// Start early in a second, so the burst falls in one one-second window.
		while (Date.now() % 1000 > 100) await sleep(10);
		const probes = await burst(["127.0.0.20"], 15);
		const open = probes.filter((p) => p.closedAt === 0).length;
		await closeAll(probes);
		const rate = await refusalsReach(relay.port, "handshake_rate", 15 - RATE);
		console.error(`rate: ${open} of 15 admitted, ${rate} refused by the rate`);
		assert.equal(rate, 15 - RATE);
		assert.ok(open <= PER_IP);
	});
});
