/**
 * Micro-bench: server CPU per egress QUIC packet of our driver. Its bare counterpart (a hand-written
 * 20-connection push over the same binding, bench/pump.ts) is measured by `npm run bench -- --phases pump`.
 *
 * The server runs in a worker thread (its own addon copy) and streams to N client connections
 * that share one socket in the main thread. CPU is the server thread's `process.threadCpuUsage()`
 * over the measuring window divided by the packets it sent in that window.
 *
 * Run: node bench/micro/quic.ts [--connections 20] [--seconds 3] [--runs 3]
 */
import dgram from "node:dgram";
import { fileURLToPath } from "node:url";
import { isMainThread, parentPort, Worker } from "node:worker_threads";
import { connectQuic } from "../../src/quic/client.ts";
import type { QuicConnection } from "../../src/quic/connection.ts";
import { QuicServer } from "../../src/quic/server.ts";
import type { TransportStream } from "../../src/transport/types.ts";
import { TEST_CERT, TEST_CERT_HASH, TEST_KEY } from "../../test/quic-fixtures.ts";

const ALPN = "moq-lite-05";

export interface QuicBenchOptions {
	connections: number;
	seconds: number;
	runs: number;
}

export interface QuicBenchRun {
	/** Server-thread CPU µs per egress packet. */
	cpuPerPacketUs: number;
	packetsPerSecond: number;
	/** Stream payload bytes the clients received per second. */
	deliveredMBps: number;
	/** Server-thread CPU use over the window (1 = one core). */
	serverCpu: number;
}

export interface QuicBenchResult {
	options: QuicBenchOptions;
	runs: QuicBenchRun[];
	cpuPerPacketUs: { min: number; median: number; max: number };
}

interface WindowReport {
	cpuUs: number;
	packets: number;
	wallMs: number;
}

/** Worker side: a server that streams 16 KB writes to each session as fast as flow control allows. */
async function serverThread(): Promise<void> {
	const chunk = Buffer.alloc(16 * 1024, 0x42);
	const server = await QuicServer.listen({
		host: "127.0.0.1",
		port: 0,
		cert: TEST_CERT,
		key: TEST_KEY,
		alpns: [ALPN],
		onSession(session) {
			const stream = session.openUni();
			if (stream === null) return;
			const fill = (): void => {
				while (!session.closed && stream.buffered < 256 * 1024) stream.write(chunk);
			};
			stream.onDrain = fill;
			stream.onStop = () => {};
			fill();
		},
	});
	let start = { cpu: process.threadCpuUsage(), packets: 0, wall: 0 };
	parentPort!.on("message", async (msg: string) => {
		if (msg === "start") {
			start = { cpu: process.threadCpuUsage(), packets: server.stats.packetsOut, wall: performance.now() };
		} else if (msg === "stop") {
			const cpu = process.threadCpuUsage(start.cpu);
			const report: WindowReport = {
				cpuUs: cpu.user + cpu.system,
				packets: server.stats.packetsOut - start.packets,
				wallMs: performance.now() - start.wall,
			};
			parentPort!.postMessage(report);
		} else if (msg === "close") {
			await server.close();
			parentPort!.close();
		}
	});
	parentPort!.postMessage(server.port);
}

function request<T>(worker: Worker, msg: string): Promise<T> {
	return new Promise((resolve) => {
		worker.once("message", resolve);
		worker.postMessage(msg);
	});
}

async function oneRun(options: QuicBenchOptions): Promise<QuicBenchRun> {
	const worker = new Worker(fileURLToPath(import.meta.url));
	const port = await new Promise<number>((resolve, reject) => {
		worker.once("message", resolve);
		worker.once("error", reject);
	});
	const socket = dgram.createSocket("udp4");
	let delivered = 0;
	const sessions: QuicConnection[] = [];
	for (let i = 0; i < options.connections; i++) {
		const session = await connectQuic({
			host: "127.0.0.1",
			port,
			alpns: [ALPN],
			certificateHashes: [TEST_CERT_HASH],
			socket,
		});
		session.onStream = (stream: TransportStream) => {
			stream.onData = (chunk) => {
				delivered += chunk.length;
			};
		};
		sessions.push(session);
	}
	// Warm up (slow start, window auto-tuning), then measure.
	await new Promise((resolve) => setTimeout(resolve, 500));
	worker.postMessage("start");
	const deliveredAtStart = delivered;
	await new Promise((resolve) => setTimeout(resolve, options.seconds * 1000));
	const report = await request<WindowReport>(worker, "stop");
	const deliveredBytes = delivered - deliveredAtStart;
	for (const session of sessions) session.close(0, "bench done");
	await new Promise((resolve) => setImmediate(resolve));
	await new Promise((resolve) => setTimeout(resolve, 20));
	socket.close();
	worker.postMessage("close");
	await new Promise((resolve) => worker.once("exit", resolve));
	return {
		cpuPerPacketUs: report.cpuUs / report.packets,
		packetsPerSecond: (report.packets * 1000) / report.wallMs,
		deliveredMBps: deliveredBytes / 1e6 / (report.wallMs / 1000),
		serverCpu: report.cpuUs / 1000 / report.wallMs,
	};
}

/** Runs the bench `runs` times and summarizes the CPU per packet. */
export async function benchQuicEgress(partial: Partial<QuicBenchOptions> = {}): Promise<QuicBenchResult> {
	const options: QuicBenchOptions = { connections: 20, seconds: 3, runs: 3, ...partial };
	const runs: QuicBenchRun[] = [];
	for (let i = 0; i < options.runs; i++) runs.push(await oneRun(options));
	const sorted = runs.map((r) => r.cpuPerPacketUs).sort((a, b) => a - b);
	return {
		options,
		runs,
		cpuPerPacketUs: { min: sorted[0], median: sorted[Math.floor(sorted.length / 2)], max: sorted[sorted.length - 1] },
	};
}

function arg(name: string, fallback: number): number {
	const i = process.argv.indexOf(`--${name}`);
	return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

if (!isMainThread) {
	await serverThread();
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
	const result = await benchQuicEgress({
		connections: arg("connections", 20),
		seconds: arg("seconds", 3),
		runs: arg("runs", 3),
	});
	for (const [i, run] of result.runs.entries()) {
		console.log(
			`run ${i + 1}: ${run.cpuPerPacketUs.toFixed(2)} µs CPU/packet, ${(run.packetsPerSecond / 1000).toFixed(1)} kpps, ` +
				`${run.deliveredMBps.toFixed(1)} MB/s delivered, server thread at ${(run.serverCpu * 100).toFixed(0)} % CPU`,
		);
	}
	const c = result.cpuPerPacketUs;
	console.log(
		`quic egress, ${result.options.connections} connections: CPU per packet min/median/max = ` +
			`${c.min.toFixed(2)} / ${c.median.toFixed(2)} / ${c.max.toFixed(2)} µs (bare quiche baseline: npm run bench -- --phases pump)`,
	);
}
