/**
 * [server.quic] udp_recv_buffer / udp_send_buffer on the real relay process: Linux caps what a
 * process may ask at net.core.rmem_max / wmem_max without an error, so the relay reads the sizes
 * back, says once (worker 0) when it got less than asked, naming the sysctl, and reports what every
 * worker got in /metrics.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
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
