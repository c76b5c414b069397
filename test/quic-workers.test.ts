/**
 * Regression guard for the private quiche addon copy per thread (src/quic/native.ts): 3 worker
 * threads, each with its own private copy of the quiche addon and its own SO_REUSEPORT server on one
 * port, under load from a client process for a few seconds. With one shared copy this crashed (SIGSEGV / V8 fatal) in 6 of 6 runs.
 *
 * One file, three roles: the node:test driver (main thread), a server worker (worker thread), and
 * the load client (a child process started with QUIC_LOAD_CLIENT=port).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import dgram from "node:dgram";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { connectQuic } from "../src/quic/client.ts";
import type { QuicConnection } from "../src/quic/connection.ts";
import { threadCopyPath } from "../src/quic/native.ts";
import type { TransportStream } from "../src/transport/types.ts";
import { ALPN, listen, TEST_CERT_HASH } from "./support/quic.ts";

const WORKERS = 3;
const CONNECTIONS = 30;
const LOAD_MS = 3000;

interface WorkerReport {
	index: number;
	copyPath: string;
	accepted: number;
	bytesIn: number;
	packetsOut: number;
}

/** Server worker: echoes bidi streams and pushes a uni stream of data to every session. */
async function serverWorker(): Promise<void> {
	const { index, port } = workerData as { index: number; port: number };
	let bytesIn = 0;
	const server = await listen({
		port,
		reusePort: true,
		workerIndex: index,
		onSession(session) {
			session.onStream = (stream) => {
				stream.onData = (chunk) => {
					bytesIn += chunk.length;
					stream.write(chunk);
				};
				stream.onFin = () => stream.finish();
			};
			const push = session.openUni();
			if (push !== null) {
				const chunk = Buffer.alloc(32 * 1024, index);
				for (let i = 0; i < 8; i++) push.write(chunk);
				push.finish();
			}
		},
	});
	parentPort!.postMessage({ ready: true, port: server.port });
	parentPort!.on("message", async (msg: string) => {
		if (msg !== "stop") return;
		const report: WorkerReport = {
			index,
			copyPath: threadCopyPath(),
			accepted: server.stats.connectionsAccepted,
			bytesIn,
			packetsOut: server.stats.packetsOut,
		};
		await server.close();
		parentPort!.postMessage({ report });
		parentPort!.close();
	});
}

/** Load client: CONNECTIONS connections (one socket each, so the kernel spreads them), echo loops. */
async function loadClient(port: number): Promise<void> {
	const sessions: QuicConnection[] = [];
	let echoed = 0;
	let pushed = 0;
	let running = true;
	for (let i = 0; i < CONNECTIONS; i++) {
		const socket = dgram.createSocket("udp4");
		const session = await connectQuic({
			host: "127.0.0.1",
			port,
			alpns: [ALPN],
			certificateHashes: [TEST_CERT_HASH],
			socket,
		});
		session.onStream = (stream) => {
			stream.onData = (chunk) => {
				pushed += chunk.length;
			};
		};
		// After the CONNECTION_CLOSE has gone out (the flush runs in the driver's setImmediate).
		session.onClose = () => setImmediate(() => socket.close());
		sessions.push(session);
	}
	const payload = Buffer.alloc(8 * 1024, 0x5a);
	const loop = (session: QuicConnection): void => {
		if (!running || session.closed) return;
		const stream: TransportStream | null = session.openBidi();
		if (stream === null) {
			session.onStreamCredit = () => loop(session);
			return;
		}
		stream.onData = (chunk) => {
			echoed += chunk.length;
		};
		stream.onFin = () => loop(session);
		for (let i = 0; i < 4; i++) stream.write(payload);
		stream.finish();
	};
	for (const session of sessions) loop(session);
	await new Promise((resolve) => setTimeout(resolve, LOAD_MS));
	running = false;
	for (const session of sessions) session.close(0, "done");
	await new Promise((resolve) => setImmediate(resolve));
	process.stdout.write(`${JSON.stringify({ echoed, pushed })}\n`);
}

async function main(): Promise<void> {
	const self = fileURLToPath(import.meta.url);

	test("3 worker threads with private addon copies serve one reusePort port under load", {
		timeout: 60_000,
	}, async () => {
		const workers: Worker[] = [];
		const exits: Promise<unknown>[] = [];
		const crashes: string[] = [];
		const startWorker = (index: number, port: number): Promise<number> => {
			const worker = new Worker(self, { workerData: { index, port } });
			workers.push(worker);
			exits.push(new Promise((resolve) => worker.once("exit", resolve)));
			worker.on("error", (err) => crashes.push(`worker ${index}: ${err.message}`));
			worker.on("exit", (code) => {
				if (code !== 0) crashes.push(`worker ${index} exited with ${code}`);
			});
			return new Promise((resolve, reject) => {
				worker.once("message", (msg: { port: number }) => resolve(msg.port));
				worker.once("error", reject);
			});
		};
		// The first worker picks the port; the others join it with SO_REUSEPORT.
		const port = await startWorker(0, 0);
		for (let i = 1; i < WORKERS; i++) assert.equal(await startWorker(i, port), port);

		// Not a node:test child itself: drop the runner's context variable.
		const { NODE_TEST_CONTEXT: _, ...env } = process.env;
		const child = spawn(process.execPath, [self], {
			env: { ...env, QUIC_LOAD_CLIENT: String(port) },
			stdio: ["ignore", "pipe", "inherit"],
		});
		let out = "";
		child.stdout.on("data", (chunk: Buffer) => {
			out += chunk.toString();
		});
		const exitCode = await new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
		assert.equal(exitCode, 0, "load client exited cleanly");
		const client = JSON.parse(out.trim().split("\n").pop()!) as { echoed: number; pushed: number };

		const reports: WorkerReport[] = [];
		for (const worker of workers) {
			const report = new Promise<WorkerReport>((resolve) =>
				worker.on("message", (msg: { report?: WorkerReport }) => {
					if (msg.report) resolve(msg.report);
				}),
			);
			worker.postMessage("stop");
			reports.push(await report);
		}
		await Promise.all(exits);

		assert.deepEqual(crashes, []);
		assert.equal(new Set(reports.map((r) => r.copyPath)).size, WORKERS, "one addon copy per thread");
		const accepted = reports.reduce((sum, r) => sum + r.accepted, 0);
		assert.equal(accepted, CONNECTIONS);
		for (const r of reports) assert.ok(r.accepted > 0, `worker ${r.index} got connections (SO_REUSEPORT spread)`);
		assert.equal(client.pushed, CONNECTIONS * 8 * 32 * 1024, "every session's pushed stream arrived");
		assert.ok(client.echoed > 1024 * 1024, `echo traffic flowed (${client.echoed} bytes)`);
	});
}

if (!isMainThread) await serverWorker();
else if (process.env.QUIC_LOAD_CLIENT) await loadClient(Number(process.env.QUIC_LOAD_CLIENT));
else await main();
