/**
 * Micro-bench of the relay's serve path: one publisher's frames fanned out to N viewers through the
 * real relay (in-process relay node in a worker thread, its own quiche copy), over raw QUIC or
 * WebSocket (qmux). Reports the relay thread's CPU per delivered frame (a frame × a viewer), and in
 * a separate counting pass how many quiche `streamSend` calls and WebSocket messages the relay made
 * per delivered frame (the counting wrappers cost CPU of their own, so that pass is not timed).
 *
 * The publisher (our client over raw QUIC) and the viewers (our client over QUIC, or @moq/net over
 * WebSocket) run in the main thread; only the relay thread's `process.threadCpuUsage()` is measured.
 *
 * Run: node bench/micro/fanout.ts [--transport quic|ws] [--viewers 20] [--fps 600] [--frame-bytes 1000]
 *      [--frames-per-group 30] [--seconds 3] [--runs 3]
 */
import dgram from "node:dgram";
import { fileURLToPath } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import * as Net from "@moq/net";
import { MoqClient } from "../../src/client/index.ts";
import { parseConfig } from "../../src/config/load.ts";
import { silentLogger } from "../../src/log/logger.ts";
import { connectQuic } from "../../src/quic/client.ts";
import { loadQuiche } from "../../src/quic/native.ts";
import { generateCertificate } from "../../src/tls/generate.ts";
import { startRelayNode } from "../../src/worker/relay-node.ts";

export type FanoutTransport = "quic" | "ws";

export interface FanoutOptions {
	transport: FanoutTransport;
	viewers: number;
	/** Frames per second published. */
	fps: number;
	frameBytes: number;
	framesPerGroup: number;
	seconds: number;
	runs: number;
}

export interface FanoutRun {
	/** Relay-thread CPU µs per delivered frame (one frame to one viewer). */
	cpuPerFrameUs: number;
	deliveredFramesPerSecond: number;
	/** Relay-thread CPU use over the window (1 = one core). */
	relayCpu: number;
}

export interface FanoutResult {
	options: FanoutOptions;
	runs: FanoutRun[];
	cpuPerFrameUs: { min: number; median: number; max: number };
	/** From the counting pass: quiche streamSend calls on the relay's group streams, and WebSocket messages, per delivered frame. */
	streamSendsPerFrame: number;
	wsMessagesPerFrame: number;
}

interface RelayWindow {
	cpuUs: number;
	streamSends: number;
	wsMessages: number;
}

type ToRelay = "start" | "stop" | "close";

/** Worker side: the relay node, and (when asked) counters around quiche's streamSend and ws's send. */
async function relayThread(count: boolean): Promise<void> {
	const cert = generateCertificate(["localhost", "127.0.0.1"]);
	const config = parseConfig(
		'[server]\nbind = "127.0.0.1:0"\n[server.tls]\ngenerate = ["localhost"]\n[auth]\npublic = "anon"\n',
		"bench.toml",
		{ baseDir: process.cwd() },
	);
	let streamSends = 0;
	let wsMessages = 0;
	if (count) {
		// The relay's group streams are server-initiated unidirectional: id % 4 === 3.
		const connection = loadQuiche().Connection as unknown as {
			prototype: { streamSend(id: number, data: Uint8Array, fin: boolean): number | null };
		};
		const proto = connection.prototype;
		const streamSend = proto.streamSend;
		proto.streamSend = function (this: unknown, id: number, data: Uint8Array, fin: boolean) {
			if ((id & 3) === 3 && data.length > 0) streamSends++;
			return streamSend.call(this, id, data, fin);
		};
		const { WebSocket } = await import("ws");
		const send = WebSocket.prototype.send;
		WebSocket.prototype.send = function (this: InstanceType<typeof WebSocket>, ...args: Parameters<typeof send>) {
			wsMessages++;
			return send.apply(this, args);
		} as typeof send;
	}
	const node = await startRelayNode({
		config,
		log: silentLogger,
		fingerprint: () => cert.fingerprint,
		tls: { cert: cert.certPem, key: cert.keyPem },
		port: 0,
	});
	let start = { cpu: process.threadCpuUsage(), streamSends: 0, wsMessages: 0 };
	parentPort!.on("message", async (msg: ToRelay) => {
		if (msg === "start") {
			start = { cpu: process.threadCpuUsage(), streamSends, wsMessages };
		} else if (msg === "stop") {
			const cpu = process.threadCpuUsage(start.cpu);
			const report: RelayWindow = {
				cpuUs: cpu.user + cpu.system,
				streamSends: streamSends - start.streamSends,
				wsMessages: wsMessages - start.wsMessages,
			};
			parentPort!.postMessage(report);
		} else if (msg === "close") {
			await node.close();
			parentPort!.close();
		}
	});
	parentPort!.postMessage({ quicPort: node.quicPort, httpPort: node.httpPort, fingerprint: cert.fingerprint });
}

interface RelayInfo {
	quicPort: number;
	httpPort: number;
	fingerprint: string;
}

function request<T>(worker: Worker, msg: ToRelay): Promise<T> {
	return new Promise((resolve) => {
		worker.once("message", resolve);
		worker.postMessage(msg);
	});
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function quicClient(relay: RelayInfo, socket?: dgram.Socket): Promise<MoqClient> {
	const quic = await connectQuic({
		host: "127.0.0.1",
		port: relay.quicPort,
		alpns: ["moq-lite-05"],
		certificateHashes: [relay.fingerprint],
		socket,
	});
	return MoqClient.connect(quic, { path: "/anon" });
}

/** Subscribes a viewer; resolves once the relay accepted the subscription. Counts frames into `frames.n`. */
async function quicViewer(relay: RelayInfo, socket: dgram.Socket, frames: { n: number }): Promise<() => void> {
	const client = await quicClient(relay, socket);
	await new Promise<void>((resolve, reject) => {
		let started = false;
		const attempt = (left: number) => {
			client.subscribe(
				"bench",
				"video",
				{ priority: 1 },
				{
					onFrame: () => {
						frames.n++;
					},
					onStart: () => {
						started = true;
						resolve();
					},
					onEnd: (code) => {
						// Refused while the publisher is still announcing: try again; after the start, an end is the bench closing.
						if (started || client.closed) return;
						if (left > 0) setTimeout(() => attempt(left - 1), 50);
						else reject(new Error(`subscription refused (${code})`));
					},
				},
			);
		};
		attempt(100);
	});
	return () => client.close(0, "bench done");
}

async function wsViewer(relay: RelayInfo, frames: { n: number }): Promise<() => void> {
	const conn = await Net.Connection.connect(new URL(`http://127.0.0.1:${relay.httpPort}/anon`), {
		websocket: { delay: 0 },
	});
	const sub = conn.consume(Net.Path.from("bench")).subscribe("video", { priority: 1 });
	(async () => {
		for (;;) {
			const g = await sub.recvGroup().catch(() => undefined);
			if (!g) return;
			(async () => {
				for (;;) {
					const f = await g.readFrame().catch(() => undefined);
					if (!f) return;
					frames.n++;
				}
			})();
		}
	})();
	return () => conn.close();
}

async function oneRun(options: FanoutOptions, count: boolean): Promise<{ run: FanoutRun; window: RelayWindow }> {
	const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { count } });
	const relay = await new Promise<RelayInfo>((resolve, reject) => {
		worker.once("message", resolve);
		worker.once("error", reject);
	});
	const publisher = await quicClient(relay);
	const track = publisher.publish("bench", { tracks: ["video"] }).track("video");
	const payload = new Uint8Array(options.frameBytes).fill(0x42);
	let group = track.openGroup();
	let inGroup = 0;
	// Frames go out in 5 ms batches on a drift-free clock.
	const t0 = performance.now();
	let sent = 0;
	const timer = setInterval(() => {
		const due = Math.floor(((performance.now() - t0) * options.fps) / 1000);
		for (; sent < due; sent++) {
			if (inGroup === options.framesPerGroup) {
				group.close();
				group = track.openGroup();
				inGroup = 0;
			}
			group.writeFrame(payload);
			inGroup++;
		}
	}, 5);
	const frames = { n: 0 };
	const closers: (() => void)[] = [];
	const socket = dgram.createSocket("udp4");
	for (let i = 0; i < options.viewers; i++) {
		closers.push(
			options.transport === "quic" ? await quicViewer(relay, socket, frames) : await wsViewer(relay, frames),
		);
	}
	// Warm up (slow start, JIT), then measure.
	await sleep(700);
	worker.postMessage("start");
	const framesAtStart = frames.n;
	const w0 = performance.now();
	await sleep(options.seconds * 1000);
	const window = await request<RelayWindow>(worker, "stop");
	const delivered = frames.n - framesAtStart;
	const wallMs = performance.now() - w0;
	clearInterval(timer);
	for (const close of closers) close();
	publisher.close(0, "bench done");
	await sleep(50);
	socket.close();
	worker.postMessage("close");
	await new Promise((resolve) => worker.once("exit", resolve));
	return {
		run: {
			cpuPerFrameUs: window.cpuUs / Math.max(1, delivered),
			deliveredFramesPerSecond: (delivered * 1000) / wallMs,
			relayCpu: window.cpuUs / 1000 / wallMs,
		},
		window: {
			...window,
			streamSends: window.streamSends / Math.max(1, delivered),
			wsMessages: window.wsMessages / Math.max(1, delivered),
		},
	};
}

export async function benchFanout(partial: Partial<FanoutOptions> = {}): Promise<FanoutResult> {
	const options: FanoutOptions = {
		transport: "quic",
		viewers: 20,
		fps: 600,
		frameBytes: 1000,
		framesPerGroup: 30,
		seconds: 3,
		runs: 3,
		...partial,
	};
	const runs: FanoutRun[] = [];
	for (let i = 0; i < options.runs; i++) runs.push((await oneRun(options, false)).run);
	const counted = await oneRun({ ...options, seconds: Math.min(options.seconds, 1) }, true);
	const sorted = runs.map((r) => r.cpuPerFrameUs).sort((a, b) => a - b);
	return {
		options,
		runs,
		cpuPerFrameUs: { min: sorted[0], median: sorted[Math.floor(sorted.length / 2)], max: sorted[sorted.length - 1] },
		streamSendsPerFrame: counted.window.streamSends,
		wsMessagesPerFrame: counted.window.wsMessages,
	};
}

function arg(name: string, fallback: number): number {
	const i = process.argv.indexOf(`--${name}`);
	return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

if (!isMainThread) {
	await relayThread((workerData as { count: boolean }).count);
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
	const print = console.log.bind(console);
	// @moq/net logs every protocol step with console.log.
	console.log = console.info = console.debug = () => {};
	const t = process.argv.indexOf("--transport");
	const result = await benchFanout({
		transport: t >= 0 && process.argv[t + 1] === "ws" ? "ws" : "quic",
		viewers: arg("viewers", 20),
		fps: arg("fps", 600),
		frameBytes: arg("frame-bytes", 1000),
		framesPerGroup: arg("frames-per-group", 30),
		seconds: arg("seconds", 3),
		runs: arg("runs", 3),
	});
	const o = result.options;
	for (const [i, run] of result.runs.entries()) {
		print(
			`run ${i + 1}: ${run.cpuPerFrameUs.toFixed(2)} µs relay CPU per delivered frame, ` +
				`${Math.round(run.deliveredFramesPerSecond)} frames/s delivered, relay thread at ${(run.relayCpu * 100).toFixed(0)} % CPU`,
		);
	}
	const c = result.cpuPerFrameUs;
	print(
		`fan-out over ${o.transport}, ${o.viewers} viewers, ${o.fps} fps × ${o.frameBytes} B: relay CPU per delivered frame ` +
			`min/median/max = ${c.min.toFixed(2)} / ${c.median.toFixed(2)} / ${c.max.toFixed(2)} µs; per delivered frame ` +
			`${result.streamSendsPerFrame.toFixed(2)} streamSend calls, ${result.wsMessagesPerFrame.toFixed(2)} WebSocket messages`,
	);
}
