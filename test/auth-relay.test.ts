/**
 * Token enforcement end to end: the real relay on loopback, the official @moq/net client over
 * WebSocket, and keys/tokens minted by the official @moq/token CLI.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import dgram from "node:dgram";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import * as Net from "@moq/net";
import { MoqClient } from "../src/client/index.ts";
import { connectQuic } from "../src/quic/client.ts";
import { rawUpgrade } from "./support/raw-upgrade.ts";
import { startTestRelay, type TestRelay, until } from "./support/relay.ts";

const REPO = resolve(import.meta.dirname, "..");
const NODE = join(REPO, "node_modules", ".bin", "node");
const MOQ_TOKEN = join(REPO, "node_modules", ".bin", "moq-token");

function moqToken(args: string[]): string {
	return execFileSync(NODE, [MOQ_TOKEN, ...args], { encoding: "utf8" }).trim();
}

type Connection = Awaited<ReturnType<typeof Net.Connection.connect>>;

/** Settles with "group" when a group arrives, "refused" when the subscription fails or ends empty. */
function firstGroup(conn: Connection, broadcast: string, track: string): Promise<"group" | "refused"> {
	const sub = conn.consume(Net.Path.from(broadcast)).subscribe(track, { priority: 1 });
	return sub.recvGroup().then(
		(g: unknown) => (g ? "group" : "refused"),
		() => "refused",
	);
}

describe("auth through the relay", { timeout: 60_000 }, () => {
	let relay: TestRelay;
	let dir: string;
	let key: string;
	const open: Connection[] = [];
	const connect = async (path: string, token: string) => {
		const conn = await Net.Connection.connect(relay.url(`${path}?jwt=${token}`), { websocket: { delay: 0 } });
		open.push(conn);
		return conn;
	};
	const sign = (...args: string[]) => moqToken(["sign", "--key", key, ...args]);

	before(async () => {
		dir = mkdtempSync(join(tmpdir(), "moq-auth-relay-"));
		key = join(dir, "relay.jwk");
		moqToken(["generate", "--key", key, "--algorithm", "HS256", "--id", "relay"]);
		// Appended under the harness's [auth] (public = "anon").
		relay = await startTestRelay(`key = ${JSON.stringify(key)}\n`);
	});
	after(async () => {
		for (const c of open) c.close();
		await relay.close();
		rmSync(dir, { recursive: true, force: true });
	});

	it("a publish-only token publishes but cannot subscribe; a subscribe-only token the reverse", async () => {
		const publisher = await connect("rooms/1", sign("--root", "rooms/1", "--publish", ""));
		const broadcast = new Net.Broadcast.Producer();
		const video = broadcast.createTrack("video");
		publisher.publish(Net.Path.from("cam"), broadcast);
		await until(() => relay.node.relay.broadcasts.has("rooms/1/cam"), 10_000, "the relay to learn rooms/1/cam");

		const viewer = await connect("rooms/1", sign("--root", "rooms/1", "--subscribe", ""));
		const received = firstGroup(viewer, "cam", "video");
		await until(() => relay.node.relay.figures.subscriptions > 0, 10_000, "the viewer's subscription");
		const g = video.appendGroup();
		g.writeFrame({ payload: new Uint8Array([1, 2, 3]), timestamp: Net.Time.Timestamp.now() });
		g.close();
		assert.equal(await received, "group");

		// The publisher's own subscription is refused per request; its session survives.
		assert.equal(await firstGroup(publisher, "cam", "video"), "refused");
		const second = new Net.Broadcast.Producer();
		second.createTrack("video");
		publisher.publish(Net.Path.from("cam2"), second);
		await until(
			() => relay.node.relay.broadcasts.has("rooms/1/cam2"),
			10_000,
			"a second broadcast on the same session",
		);

		// The subscribe-only viewer publishes nothing: the relay never asks it for announcements.
		// A mixed token shows the per-prefix check: "allowed" lands, "denied" (sent alongside) does not.
		const mixed = await connect("rooms/1", sign("--root", "rooms/1", "--publish", "allowed", "--subscribe", ""));
		for (const name of ["denied", "allowed"]) {
			const b = new Net.Broadcast.Producer();
			b.createTrack("video");
			mixed.publish(Net.Path.from(name), b);
		}
		await until(() => relay.node.relay.broadcasts.has("rooms/1/allowed"), 10_000, "rooms/1/allowed");
		assert.equal(relay.node.relay.broadcasts.has("rooms/1/denied"), false);
	});

	it("a token for rooms/1 cannot touch rooms/10", async () => {
		const token = sign("--root", "rooms/1", "--publish", "", "--subscribe", "");
		// Refused at the upgrade: 403 (the token is valid, but not for this path), never 101.
		const outsider = await Net.Connection.connect(relay.url(`rooms/10?jwt=${token}`), { websocket: { delay: 0 } }).then(
			(conn: { close(): void }) => {
				conn.close();
				return "connected";
			},
			() => "refused",
		);
		assert.equal(outsider, "refused");
		const answer = await rawUpgrade(relay.node.httpPort!, `/rooms/10?jwt=${token}`, "qmux-01.moq-lite-05");
		assert.equal(answer.status, 403);
		assert.equal(answer.body, "forbidden: token does not cover this path");

		// From the parent path the same token is re-anchored under "1/": "10/..." stays out of reach.
		const parent = await connect("rooms", token);
		const publisher = await connect("rooms/10", sign("--root", "rooms/10", "--publish", ""));
		const b = new Net.Broadcast.Producer();
		b.createTrack("video");
		publisher.publish(Net.Path.from("cam"), b);
		await until(() => relay.node.relay.broadcasts.has("rooms/10/cam"), 10_000, "rooms/10/cam");
		assert.equal(await firstGroup(parent, "10/cam", "video"), "refused");
	});

	it("a token expiring mid-session closes the session", async () => {
		const exp = Math.floor(Date.now() / 1000) + 3;
		const conn = await connect("rooms/1", sign("--root", "rooms/1", "--subscribe", "", "--expires", String(exp)));
		const started = Date.now();
		await conn.closed.catch(() => undefined);
		// Closed by the relay at the deadline (not before it, give or take a second of clock rounding).
		assert.ok(Date.now() >= exp * 1000 - 1000, `closed ${exp * 1000 - Date.now()} ms early`);
		assert.ok(Date.now() - started < 10_000);
	});

	it("expired, wrong-key and tampered tokens are refused at connect", async () => {
		const other = join(dir, "other.jwk");
		moqToken(["generate", "--key", other, "--algorithm", "HS256"]);
		const good = sign("--root", "rooms/1", "--subscribe", "");
		const [h, p, s] = good.split(".");
		const payload = JSON.parse(Buffer.from(p, "base64url").toString());
		const tampered = `${h}.${Buffer.from(JSON.stringify({ ...payload, root: "" })).toString("base64url")}.${s}`;
		const bad = [
			sign("--root", "rooms/1", "--subscribe", "", "--expires", String(Math.floor(Date.now() / 1000) - 5)),
			moqToken(["sign", "--key", other, "--root", "rooms/1", "--subscribe", ""]),
			tampered,
		];
		const reasons = ["token expired", "invalid token", "invalid token"];
		for (const [i, token] of bad.entries()) {
			const outcome = await Net.Connection.connect(relay.url(`rooms/1?jwt=${token}`), { websocket: { delay: 0 } }).then(
				(conn: { close(): void }) => {
					conn.close();
					return "connected";
				},
				() => "refused",
			);
			assert.equal(outcome, "refused");
			// What the client was told: 401 with the reason, not a 101 and a moq-lite close.
			const answer = await rawUpgrade(relay.node.httpPort!, `/rooms/1?jwt=${token}`, "qmux-01.moq-lite-05");
			assert.equal(answer.status, 401);
			assert.equal(answer.body, reasons[i]);
		}
	});

	it("raw QUIC carries the token in the lite-05 SETUP path, with the same scoping", async () => {
		const fingerprint = await (await fetch(relay.url("certificate.sha256"))).text();
		const socket = dgram.createSocket("udp4");
		await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
		const quic = (path: string) =>
			connectQuic({
				host: "127.0.0.1",
				port: relay.quicPort,
				alpns: ["moq-lite-05"],
				certificateHashes: [fingerprint],
				socket,
			}).then((t) => MoqClient.connect(t, { path }));
		try {
			// A publish-only token publishes over QUIC; a subscribe-only token reads it; neither can do the other.
			const pub = await quic(`/rooms/7?jwt=${sign("--root", "rooms/7", "--publish", "")}`);
			const bc = pub.publish("cam", { tracks: ["video"] });
			await until(() => relay.node.relay.broadcasts.has("rooms/7/cam"), 10_000, "rooms/7/cam over QUIC");
			const viewer = await quic(`/rooms/7?jwt=${sign("--root", "rooms/7", "--subscribe", "")}`);
			const got = new Promise<number>((resolve) =>
				viewer.subscribe("cam", "video", {}, { onGroup: (seq) => resolve(seq) }),
			);
			// Publish once the relay's upstream subscription has reached our publisher.
			await until(() => bc.track("video").subscribers > 0, 10_000, "the relay's upstream subscription");
			const seq = bc.track("video").writeGroup([new Uint8Array([1, 2, 3])]);
			assert.equal(await got, seq);
			const refused = new Promise<number>((resolve) =>
				pub.subscribe("cam", "video", {}, { onEnd: (code) => resolve(code) }),
			);
			assert.equal(await refused, 6, "a publish-only token cannot subscribe (reset with 6, session alive)");
			assert.equal(pub.closed, false);
			// A bad token is refused at setup (raw QUIC has no HTTP request): the session closes with 6.
			const bad = await quic(`/rooms/7?jwt=${sign("--root", "rooms/8", "--subscribe", "")}`).then(
				(c) =>
					new Promise<string>((resolve) =>
						c.closed ? resolve("closed") : (c.onClose = (code) => resolve(`closed ${code}`)),
					),
				(err: Error) => `refused: ${err.message}`,
			);
			assert.equal(bad, "closed 6");
			viewer.close();
			pub.close();
		} finally {
			socket.close();
		}
	});
});
