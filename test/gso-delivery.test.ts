/**
 * The real relay process (two workers) with `[server.quic] gso` on and off, through a lossy UDP
 * proxy on loopback that drops 3 % of datagrams each way: a QUIC publisher and QUIC viewers (our
 * src/client) talk to the relay only through the proxy, and every viewer receives every frame of
 * every group byte-exact and in order in both modes. /metrics shows which egress path carried the
 * packets: GSO super-packets with gso on (when the addon is built), dgram.send only with gso off.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import dgram from "node:dgram";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { MoqClient } from "../src/client/index.ts";
import { connectQuic } from "../src/quic/client.ts";
import { udpNativePath } from "../src/quic/udp-native.ts";
import { frameBytes } from "./support/frames.ts";
import { collectGroups, type GroupViewer } from "./support/group-viewer.ts";
import { metricSum, type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import "./support/quiet.ts";
import { sleep, until } from "./support/wait.ts";

const REPO = resolve(import.meta.dirname, "..");
const IN_CI = process.env.CI === "true";
const VIEWERS = 6;
const GROUPS = 8;
const FRAMES = 5;
const DROP_RATE = 0.03;
const PATHS = "moq_fanout_quic_sent_packets_by_path_total";

/** The addon, built if a compiler is here (npm install builds it; CI must have it). */
function addonBuilt(): boolean {
	if (!existsSync(udpNativePath()))
		spawnSync(process.execPath, [join(REPO, "native", "build.mjs")], { stdio: "ignore" });
	return existsSync(udpNativePath());
}

/** A keyframe of ~40 KB (30 full packets: long GSO runs) and small frames after it. */
function groupFrames(group: number): Uint8Array[] {
	return Array.from({ length: FRAMES }, (_, f) => frameBytes(group, f, 40_000));
}

/** Deterministic drops (mulberry32), so a failure can be rerun with the same loss pattern. */
function random(seed: number): () => number {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

/**
 * A UDP proxy: clients send to `port`; each client gets its own upstream socket toward the relay
 * (so the relay sees one address per client), and replies go back from `port`. Drops DROP_RATE of
 * the datagrams in each direction.
 */
class LossyProxy {
	readonly front = dgram.createSocket("udp4");
	readonly upstreams = new Map<string, dgram.Socket>();
	forwarded = 0;
	dropped = 0;
	private readonly relayPort: number;
	private readonly drop: () => boolean;

	constructor(relayPort: number, seed: number) {
		this.relayPort = relayPort;
		const rng = random(seed);
		this.drop = () => {
			if (rng() < DROP_RATE) {
				this.dropped++;
				return true;
			}
			this.forwarded++;
			return false;
		};
		this.front.on("message", (msg, from) => {
			const key = `${from.address}:${from.port}`;
			let up = this.upstreams.get(key);
			if (up === undefined) {
				up = dgram.createSocket("udp4");
				this.upstreams.set(key, up);
				up.on("message", (reply) => {
					if (!this.drop()) this.front.send(reply, from.port, from.address);
				});
				up.bind(0, "127.0.0.1", () => up?.setRecvBufferSize(4 * 1024 * 1024));
			}
			if (!this.drop()) up.send(msg, this.relayPort, "127.0.0.1");
		});
	}

	async listen(): Promise<number> {
		await new Promise<void>((r) => this.front.bind(0, "127.0.0.1", () => r()));
		this.front.setRecvBufferSize(4 * 1024 * 1024);
		return this.front.address().port;
	}

	close(): void {
		this.front.close();
		for (const up of this.upstreams.values()) up.close();
	}
}

async function connect(port: number): Promise<MoqClient> {
	const quic = await connectQuic({
		host: "127.0.0.1",
		port,
		alpns: ["moq-lite-05"],
		insecure: true,
		timeoutMs: 20_000,
	});
	return MoqClient.connect(quic, { path: "/anon" });
}

async function viewer(port: number, broadcast: string): Promise<GroupViewer> {
	return collectGroups(await connect(port), broadcast);
}

async function runThroughLoss(gso: boolean): Promise<{ relay: RelayProcess; proxy: LossyProxy }> {
	// Both batched paths (GSO egress, recvmmsg ingress) on, or both off.
	const relay = await startRelayProcess(["--workers", "2"], {
		MOQ_SERVER_QUIC_GSO: String(gso),
		MOQ_SERVER_QUIC_RECV_BATCH: String(gso),
	});
	const proxy = new LossyProxy(relay.port, gso ? 1 : 2);
	const port = await proxy.listen();
	const broadcast = `gso-${gso ? "on" : "off"}`;
	const publisher = await connect(port);
	const track = publisher.publish(broadcast, { tracks: ["video"] }).track("video");
	const viewers: GroupViewer[] = [];
	try {
		for (let i = 0; i < VIEWERS; i++) viewers.push(await viewer(port, broadcast));
		// Warm-up groups until every viewer's subscription is in place (a viewer starts at the
		// group current when its subscription reaches the relay).
		let warm = 0;
		await until(
			async () => {
				if (track.subscribers > 0) track.writeGroup([frameBytes(1000 + warm++, 0, 200)]);
				await sleep(100);
				return viewers.every((v) => v.ended.size > 0);
			},
			30_000,
			"every viewer to receive a warm-up group",
		);
		const seqs: number[] = [];
		for (let g = 0; g < GROUPS; g++) {
			const seq = track.writeGroup(groupFrames(g));
			seqs.push(seq);
			await until(() => viewers.every((v) => v.ended.has(seq)), 30_000, `group ${seq} at all ${VIEWERS} viewers`);
		}
		for (const [i, v] of viewers.entries()) {
			for (const [g, seq] of seqs.entries()) {
				assert.deepEqual(
					v.groups.get(seq),
					groupFrames(g),
					`viewer ${i} group ${seq}: every frame, byte-exact, in order`,
				);
			}
			const seen = v.order.filter((seq) => seqs.includes(seq));
			assert.deepEqual(seen, seqs, `viewer ${i}: groups in order`);
		}
		assert.ok(proxy.dropped > 0, "the proxy dropped datagrams");
	} finally {
		for (const v of viewers) v.client.close();
		publisher.close();
	}
	return { relay, proxy };
}

describe("fan-out through 3 % loss each way, relay process with [server.quic] gso and recv_batch on and off", {
	timeout: 240_000,
}, () => {
	const cleanup: (() => unknown)[] = [];
	after(async () => {
		for (const c of cleanup.reverse()) await c();
	});

	for (const gso of [true, false]) {
		test(`gso = recv_batch = ${gso}: every viewer gets every frame byte-exact and in order`, async (t) => {
			const native = gso && addonBuilt();
			if (gso && !native) {
				assert.ok(!IN_CI, "CI=true: the native UDP addon must build (a C compiler is required)");
				t.diagnostic("the native UDP addon is not built (no C compiler): gso = true falls back to dgram");
			}
			const { relay, proxy } = await runThroughLoss(gso);
			cleanup.push(
				() => relay.stop(),
				() => proxy.close(),
			);
			t.diagnostic(`proxy forwarded ${proxy.forwarded} datagrams, dropped ${proxy.dropped}`);
			// Workers publish their counters once a second: the last publish may predate the traffic.
			const path = native ? 'path="gso"' : 'path="dgram"';
			let m = await relay.metrics();
			const deadline = Date.now() + 5000;
			while (metricSum(m, PATHS, path) === 0 && Date.now() < deadline) {
				await sleep(250);
				m = await relay.metrics();
			}
			const gsoPackets = metricSum(m, PATHS, 'path="gso"');
			const dgramPackets = metricSum(m, PATHS, 'path="dgram"');
			const syscalls = metricSum(m, "moq_fanout_quic_send_syscalls_total");
			t.diagnostic(
				`relay egress: gso ${gsoPackets}, sendmmsg ${metricSum(m, PATHS, 'path="sendmmsg"')}, dgram ${dgramPackets}, syscalls ${syscalls}`,
			);
			const received = metricSum(m, "moq_fanout_received_packets_total");
			const receives = metricSum(m, "moq_fanout_quic_recv_syscalls_total");
			t.diagnostic(`relay ingress: ${received} datagrams in ${receives} receive syscalls`);
			if (native) {
				assert.ok(gsoPackets > 0, "gso on: packets left in GSO super-packets");
				assert.ok(receives > 0 && receives < received, "recv_batch on: several datagrams per recvmmsg");
				assert.equal(metricSum(m, "moq_fanout_quic_gso_fallbacks_total"), 0);
				assert.doesNotMatch(relay.stderr.join(""), /native UDP egress unavailable/);
			} else {
				assert.equal(gsoPackets, 0, "no GSO without the addon path");
				assert.ok(dgramPackets > 0, "dgram carried the packets");
				assert.equal(receives, received, "recv_batch off: one receive per datagram");
			}
		});
	}
});
