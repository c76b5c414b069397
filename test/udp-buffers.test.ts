/**
 * [server.quic] udp_recv_buffer / udp_send_buffer on the real relay process: Linux caps what a
 * process may ask at net.core.rmem_max / wmem_max without an error, so the relay reads the sizes
 * back, says once (worker 0) when it got less than asked, naming the sysctl, and reports what every
 * worker got in /metrics.
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { udpDrops } from "../bench/lib/procstat.ts";
import { metricSum, type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import { until } from "./support/wait.ts";

const WORKERS = 2;
const SEND_ASKED = 64 * 1024;
const RECV_ASKED = 1024 * 1024 * 1024;

/** A sysctl's value, or null where /proc/sys is not readable. */
function sysctl(name: string): number | null {
	try {
		return Number(readFileSync(`/proc/sys/${name.replaceAll(".", "/")}`, "utf8").trim());
	} catch {
		return null;
	}
}

describe("UDP socket buffers", { skip: process.platform !== "linux" && "Linux socket(7) semantics" }, () => {
	let relay: RelayProcess;

	before(async () => {
		relay = await startRelayProcess(["--workers", String(WORKERS), "--log-level", "warn"], {
			MOQ_SERVER_QUIC_UDP_RECV_BUFFER: "1GiB",
			MOQ_SERVER_QUIC_UDP_SEND_BUFFER: "64KiB",
		});
	});

	after(async () => {
		await relay?.stop();
	});

	test("a buffer the kernel capped is said once, with the sysctl; every worker reports what it got", async () => {
		const rmemMax = sysctl("net.core.rmem_max");
		const wmemMax = sysctl("net.core.wmem_max");
		// 1 GiB is above any ceiling a host sets for UDP; 64 KiB is below Linux's default one.
		assert.ok(rmemMax === null || rmemMax < RECV_ASKED, `net.core.rmem_max is ${rmemMax}`);
		assert.ok(wmemMax === null || wmemMax >= SEND_ASKED, `net.core.wmem_max is ${wmemMax}`);

		let m = new Map<string, number>();
		await until(
			async () => {
				m = await relay.metrics();
				return metricSum(m, "moq_fanout_quic_udp_send_buffer_bytes") > 0;
			},
			10_000,
			"the buffer gauges in /metrics",
		);
		for (let w = 0; w < WORKERS; w++) {
			const recv = metricSum(m, "moq_fanout_quic_udp_recv_buffer_bytes", `worker="${w}"`);
			const send = metricSum(m, "moq_fanout_quic_udp_send_buffer_bytes", `worker="${w}"`);
			// Linux reports twice what it granted (socket(7)): the send buffer got all it asked.
			assert.equal(send, 2 * SEND_ASKED, `worker ${w}'s send buffer`);
			assert.ok(recv > 0 && recv < 2 * RECV_ASKED, `worker ${w}'s receive buffer: ${recv}`);
			if (rmemMax !== null) assert.equal(recv, 2 * rmemMax, `worker ${w}: capped at net.core.rmem_max`);
		}

		const log = relay.stderr.join("");
		const warnings = log.split("\n").filter((line) => line.includes("UDP recv buffer"));
		assert.equal(warnings.length, 1, `one warning for the relay, from worker 0:\n${log}`);
		assert.match(warnings[0], /\[server\.quic\] udp_recv_buffer asks; raise net\.core\.rmem_max/);
		assert.match(
			warnings[0],
			new RegExp(`the kernel gave the UDP recv buffer ${rmemMax ?? "\\d+"} bytes of the ${RECV_ASKED}`),
		);
		assert.doesNotMatch(log, /UDP send buffer/, "the send buffer got what it asked");
	});
});

/** The kernel's drop count for the relay's sockets (bound to `port`), or null where /proc is not readable. */
function procDrops(port: number): number | null {
	return udpDrops(port)?.relay ?? null;
}

/**
 * The QUIC socket's receive queue in /metrics: with a receive buffer of a few datagrams, a burst
 * of garbage at the port overflows it; the relay's drop counter must then equal the kernel's own
 * count for its socket, read through SO_MEMINFO (the UDP addon) or, without the addon, through
 * /proc/net/udp.
 */
for (const [name, env] of [
	["SO_MEMINFO (the UDP addon)", {}],
	["/proc/net/udp (no addon)", { MOQ_FANOUT_NATIVE_UDP: "0" }],
] as const) {
	describe(`UDP receive queue drops, ${name}`, { skip: process.platform !== "linux" && "Linux only" }, () => {
		let relay: RelayProcess;

		before(async () => {
			relay = await startRelayProcess(["--workers", "1", "--log-level", "warn"], {
				// The smallest buffer a key allows; the kernel grants at least its own minimum.
				MOQ_SERVER_QUIC_UDP_RECV_BUFFER: "4KiB",
				...env,
			});
		});

		after(async () => {
			await relay?.stop();
		});

		test("a burst that overflows the socket is counted, as the kernel counts it", async () => {
			let m = await relay.metrics();
			assert.equal(metricSum(m, "moq_fanout_quic_udp_recv_drops_total"), 0, "no drop before the burst");
			assert.ok(m.has('moq_fanout_quic_udp_recv_queue_bytes{worker="0"}'), "the queue gauge is published");
			const before = procDrops(relay.port);
			assert.equal(before ?? 0, 0, "the kernel counted no drop before the burst");

			const flood = dgram.createSocket("udp4");
			await new Promise<void>((resolve) => flood.bind(0, "127.0.0.1", resolve));
			// Not QUIC (fixed bit clear): each is dropped by the relay at once, if it gets to read it.
			const garbage = Buffer.alloc(1200);
			try {
				for (let burst = 0; burst < 20 && (procDrops(relay.port) ?? 0) === 0; burst++) {
					await new Promise<void>((resolve) => {
						let pending = 2000;
						for (let i = 0; i < 2000; i++) {
							flood.send(garbage, relay.port, "127.0.0.1", () => {
								if (--pending === 0) resolve();
							});
						}
					});
				}
			} finally {
				flood.close();
			}
			const kernel = procDrops(relay.port);
			assert.ok(kernel !== null && kernel > 0, `the burst overflowed the socket (kernel count ${kernel})`);
			// The workers publish once a second: wait for the reading after the last drop.
			await until(
				async () => {
					m = await relay.metrics();
					return metricSum(m, "moq_fanout_quic_udp_recv_drops_total") === procDrops(relay.port);
				},
				10_000,
				"the relay's drop counter to equal the kernel's",
			);
			assert.equal(metricSum(m, "moq_fanout_quic_udp_recv_drops_total", 'worker="0"'), procDrops(relay.port));
			// The status page's data carries the same count.
			const status = (await (await fetch(`${relay.base}/status`)).json()) as {
				workers: { udpRecvDrops: number; restarts: number }[];
			};
			assert.equal(status.workers[0].udpRecvDrops, procDrops(relay.port));
			// The flood cost the worker nothing but the drops: it was never replaced.
			assert.equal(status.workers[0].restarts, 0);
			assert.equal(metricSum(m, "moq_fanout_worker_restarts_total"), 0);
			// The relay read what was queued: the queue is empty again.
			assert.equal(metricSum(m, "moq_fanout_quic_udp_recv_queue_bytes"), 0);
		});
	});
}
