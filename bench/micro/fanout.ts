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
 * With `--fanout-writes both` (the default) each run measures the relay with [server.quic]
 * fanout_writes off, then on (one ngtcp2 call per frame for all the viewers at it), and the summary
 * gives both and their ratio run by run; the counting pass also counts the engine's writeShared
 * calls and the stream writes they carried.
 *
 * Run: node bench/micro/fanout.ts [--transport quic|ws] [--viewers 20] [--fps 600] [--frame-bytes 1000]
 *      [--frames-per-group 30] [--seconds 3] [--runs 3] [--fanout-writes on|off|both]
 */
import dgram from "node:dgram";
import { fileURLToPath } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import * as Net from "@moq/net";
import { MoqClient } from "../../src/client/index.ts";
import { parseConfig } from "../../src/config/load.ts";
import { silentLogger } from "../../src/log/logger.ts";
import { connectQuic } from "../../src/quic/client.ts";
import { loadNgtcp2, selectEngine } from "../../src/quic/engine.ts";
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
	/** [server.quic] fanout_writes for the relay: on, off, or each run both ways (off first). */
	fanoutWrites: "on" | "off" | "both";
}

export interface FanoutRun {
	/** Relay-thread CPU µs per delivered frame (one frame to one viewer). */
	cpuPerFrameUs: number;
	deliveredFramesPerSecond: number;
	/** Relay-thread CPU use over the window (1 = one core). */
	relayCpu: number;
}

interface Spread {
	min: number;
	median: number;
	max: number;
}

export interface FanoutResult {
	options: FanoutOptions;
	/** The relay's QUIC engine. */
	engine: string;
	/** Runs with fanout_writes as configured (on, when "both"). */
	runs: FanoutRun[];
	cpuPerFrameUs: Spread;
	/** With "both": the runs with fanout_writes off, and on ÷ off run by run. */
	offRuns: FanoutRun[];
	offCpuPerFrameUs: Spread | null;
	onOverOff: Spread | null;
	/** From the counting pass (fanout_writes as configured, on when "both"): the engine's writeShared calls and the stream writes they carried, per delivered frame. */
	sharedCallsPerFrame: number;
	sharedStreamsPerFrame: number;
	/** Bytes copied into the engine per delivered frame (ngtcp2). */
	copiedPerFrame: number;
	/** From the counting pass: quiche streamSend calls on the relay's group streams, and WebSocket messages, per delivered frame. */
	streamSendsPerFrame: number;
	wsMessagesPerFrame: number;
}

interface RelayWindow {
	cpuUs: number;
	streamSends: number;
	wsMessages: number;
	sharedCalls: number;
	sharedStreams: number;
	/** Bytes copied into the engine's send buffers (ngtcp2; 0 on quiche). */
	copied: number;
}

type ToRelay = "start" | "stop" | "close";

/** Worker side: the relay node, and (when asked) counters around quiche's streamSend and ws's send. */
async function relayThread(count: boolean, fanoutWrites: boolean): Promise<void> {
	const cert = generateCertificate(["localhost", "127.0.0.1"]);
	const config = parseConfig(
		'[server]\nbind = "127.0.0.1:0"\n[server.tls]\ngenerate = ["localhost"]\n[auth]\npublic = "anon"\n' +
			`[server.quic]\nfanout_writes = ${fanoutWrites}\n`,
		"bench.toml",
		{ baseDir: process.cwd() },
	);
	let streamSends = 0;
	let wsMessages = 0;
	if (count) {
		// The relay's group streams are server-initiated unidirectional: id % 4 === 3.
		type Proto = { streamSend(id: number, data: Uint8Array, fin: boolean): number | null };
		const protos = [(loadQuiche().Connection as unknown as { prototype: Proto }).prototype];
		const ngtcp2 = loadNgtcp2();
		if (ngtcp2 !== null) protos.push((ngtcp2.Connection as unknown as { prototype: Proto }).prototype);
		for (const proto of protos) {
			const streamSend = proto.streamSend;
			proto.streamSend = function (this: unknown, id: number, data: Uint8Array, fin: boolean) {
				if ((id & 3) === 3 && data.length > 0) streamSends++;
				return streamSend.call(this, id, data, fin);
			};
		}
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
	const stats = node.quic.stats;
	const copied = () => node.quic.engine.sendBufferStats?.().copiedBytes ?? 0;
	let start = {
		cpu: process.threadCpuUsage(),
		streamSends: 0,
		wsMessages: 0,
		sharedCalls: 0,
		sharedStreams: 0,
		copied: 0,
	};
	parentPort!.on("message", async (msg: ToRelay) => {
		if (msg === "start") {
			start = {
				cpu: process.threadCpuUsage(),
				streamSends,
				wsMessages,
				sharedCalls: stats.sharedWrites,
				sharedStreams: stats.sharedWriteStreams,
				copied: copied(),
			};
		} else if (msg === "stop") {
			const cpu = process.threadCpuUsage(start.cpu);
			const report: RelayWindow = {
				cpuUs: cpu.user + cpu.system,
				streamSends: streamSends - start.streamSends,
				wsMessages: wsMessages - start.wsMessages,
				sharedCalls: stats.sharedWrites - start.sharedCalls,
				sharedStreams: stats.sharedWriteStreams - start.sharedStreams,
				copied: copied() - start.copied,
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

async function oneRun(
	options: FanoutOptions,
	count: boolean,
	fanoutWrites: boolean,
): Promise<{ run: FanoutRun; window: RelayWindow }> {
	const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { count, fanoutWrites } });
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
			sharedCalls: window.sharedCalls / Math.max(1, delivered),
			sharedStreams: window.sharedStreams / Math.max(1, delivered),
			copied: window.copied / Math.max(1, delivered),
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
		fanoutWrites: "both",
		...partial,
	};
	const on = options.fanoutWrites !== "off";
	const runs: FanoutRun[] = [];
	const offRuns: FanoutRun[] = [];
	const ratios: number[] = [];
	for (let i = 0; i < options.runs; i++) {
		// Paired: off then on in each run, so a slow spell of a shared machine weighs on both.
		if (options.fanoutWrites === "both") offRuns.push((await oneRun(options, false, false)).run);
		runs.push((await oneRun(options, false, on)).run);
		if (options.fanoutWrites === "both") ratios.push(runs[i].cpuPerFrameUs / offRuns[i].cpuPerFrameUs);
		progress(`  run ${i + 1}/${options.runs} done`);
	}
	const counted = await oneRun({ ...options, seconds: Math.min(options.seconds, 1) }, true, on);
	return {
		options,
		engine: selectEngine(undefined).name,
		runs,
		cpuPerFrameUs: spread(runs.map((r) => r.cpuPerFrameUs)),
		offRuns,
		offCpuPerFrameUs: offRuns.length > 0 ? spread(offRuns.map((r) => r.cpuPerFrameUs)) : null,
		onOverOff: ratios.length > 0 ? spread(ratios) : null,
		sharedCallsPerFrame: counted.window.sharedCalls,
		sharedStreamsPerFrame: counted.window.sharedStreams,
		copiedPerFrame: counted.window.copied,
		streamSendsPerFrame: counted.window.streamSends,
		wsMessagesPerFrame: counted.window.wsMessages,
	};
}

function spread(values: number[]): Spread {
	const sorted = [...values].sort((a, b) => a - b);
	return { min: sorted[0], median: sorted[Math.floor(sorted.length / 2)], max: sorted[sorted.length - 1] };
}

/** Progress on stderr (the summary goes to stdout). */
function progress(line: string): void {
	process.stderr.write(`${line}\n`);
}

function arg(name: string, fallback: number): number {
	const i = process.argv.indexOf(`--${name}`);
	return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

if (!isMainThread) {
	const data = workerData as { count: boolean; fanoutWrites: boolean };
	await relayThread(data.count, data.fanoutWrites);
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
	const print = console.log.bind(console);
	// @moq/net logs every protocol step with console.log.
	console.log = console.info = console.debug = () => {};
	const t = process.argv.indexOf("--transport");
	const fw = process.argv.indexOf("--fanout-writes");
	const fanoutWrites = fw >= 0 ? process.argv[fw + 1] : "both";
	if (fanoutWrites !== "on" && fanoutWrites !== "off" && fanoutWrites !== "both") {
		print(`--fanout-writes: expected on, off or both, got "${fanoutWrites}"`);
		process.exit(2);
	}
	const result = await benchFanout({
		transport: t >= 0 && process.argv[t + 1] === "ws" ? "ws" : "quic",
		viewers: arg("viewers", 20),
		fps: arg("fps", 600),
		frameBytes: arg("frame-bytes", 1000),
		framesPerGroup: arg("frames-per-group", 30),
		seconds: arg("seconds", 3),
		runs: arg("runs", 3),
		fanoutWrites,
	});
	const o = result.options;
	const line = (label: string, run: FanoutRun, i: number) =>
		print(
			`run ${i + 1}${label}: ${run.cpuPerFrameUs.toFixed(2)} µs relay CPU per delivered frame, ` +
				`${Math.round(run.deliveredFramesPerSecond)} frames/s delivered, relay thread at ${(run.relayCpu * 100).toFixed(0)} % CPU`,
		);
	for (const [i, run] of result.runs.entries()) {
		if (result.offRuns[i]) line(", fanout_writes off", result.offRuns[i], i);
		line(o.fanoutWrites === "both" ? ", fanout_writes on " : "", run, i);
	}
	const f = (s: Spread, digits = 2) =>
		`${s.min.toFixed(digits)} / ${s.median.toFixed(digits)} / ${s.max.toFixed(digits)}`;
	print(
		`fan-out over ${o.transport} (${result.engine} engine), ${o.viewers} viewers, ${o.fps} fps × ${o.frameBytes} B: ` +
			`relay CPU per delivered frame min/median/max = ${f(result.cpuPerFrameUs)} µs` +
			(o.fanoutWrites === "both" ? " with fanout_writes" : ""),
	);
	if (result.offCpuPerFrameUs && result.onOverOff) {
		print(
			`  without fanout_writes ${f(result.offCpuPerFrameUs)} µs; with ÷ without, run by run: ${f(result.onOverOff, 3)}`,
		);
	}
	print(
		`  per delivered frame: ${result.streamSendsPerFrame.toFixed(2)} streamSend calls, ` +
			`${result.sharedStreamsPerFrame.toFixed(2)} writes through ${result.sharedCallsPerFrame.toFixed(3)} writeShared calls, ` +
			`${result.wsMessagesPerFrame.toFixed(2)} WebSocket messages, ${result.copiedPerFrame.toFixed(0)} B copied into the engine`,
	);
}
