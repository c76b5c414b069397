/**
 * Micro-bench: receiver CPU per UDP datagram on the two ingress paths of the QUIC endpoints, side
 * by side in one run (the order alternates every run):
 * - dgram: a 'message' listener (one syscall, Buffer, address string and JS call per datagram);
 * - recvmmsg: src/quic/receiver.ts over the native addon (up to 64 datagrams per syscall and per
 *   JS call, addresses as numbers, strings cached per source).
 * The datagrams are 64 bytes, the size of an ACK, which is what a relay mostly receives. A sender
 * thread sends them in bursts of 32 with a pause between bursts, to a fresh receiving socket per
 * mode and run; only the receiving (main) thread's CPU counts (`process.threadCpuUsage()`, user +
 * system), divided by the datagrams it received. Each handler reads the length and the source port,
 * as the QUIC endpoints do before routing.
 *
 * Run: node bench/micro/udp-ingress.ts [--runs 7] [--datagrams 65536]
 */
import dgram from "node:dgram";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { BatchReceiver } from "../../src/quic/receiver.ts";
import { loadUdpNative, udpNativeUnavailable } from "../../src/quic/udp-native.ts";

const DATAGRAM = 64;
const BURST = 32;

export interface UdpIngressOptions {
	runs: number;
	datagrams: number;
}

export interface UdpIngressMode {
	name: string;
	/** Receiver-thread CPU µs per datagram received, per run. */
	runs: number[];
	usPerDatagram: { min: number; median: number; max: number };
	/** Share of the sent datagrams that arrived, median over runs. */
	delivered: number;
}

export interface UdpIngressResult {
	options: UdpIngressOptions;
	modes: UdpIngressMode[];
	/** Why the recvmmsg mode is missing ("" when it ran). */
	unavailable: string;
}

/** Sender thread: on {port, count}, sends `count` datagrams in bursts, then answers "sent". */
function senderThread(): void {
	const socket = dgram.createSocket("udp4");
	const payload = Buffer.alloc(DATAGRAM, 0x5a);
	socket.bind(0, "127.0.0.1", () => parentPort?.postMessage("ready"));
	parentPort?.on("message", async (msg: { port: number; count: number } | "close") => {
		if (msg === "close") {
			socket.close(() => process.exit(0));
			return;
		}
		for (let sent = 0; sent < msg.count; sent += BURST) {
			for (let i = 0; i < BURST; i++) socket.send(payload, msg.port, "127.0.0.1");
			// A pause between bursts, as ACKs arrive: the receiver is not measured against a flood.
			await new Promise((resolve) => setTimeout(resolve, 1));
		}
		parentPort?.postMessage("sent");
	});
}

function median(values: number[]): number {
	const sorted = [...values].sort((a, b) => a - b);
	return sorted[Math.floor(sorted.length / 2)];
}

/** Whatever the handler reads must not be optimised away. */
let sink = 0;

export async function benchUdpIngress(partial: Partial<UdpIngressOptions> = {}): Promise<UdpIngressResult> {
	const options: UdpIngressOptions = { runs: Math.max(5, partial.runs ?? 7), datagrams: partial.datagrams ?? 65_536 };
	const sender = new Worker(new URL(import.meta.url), { workerData: { sender: true } });
	const fromSender = () => new Promise<string>((r) => sender.once("message", r));
	await fromSender();
	const udp = loadUdpNative();

	/** One measured run of `mode` on a fresh socket: receiver CPU µs per datagram, and the delivered share. */
	const measure = async (batched: boolean): Promise<[number, number]> => {
		const socket = dgram.createSocket("udp4");
		await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
		socket.setRecvBufferSize(8 * 1024 * 1024);
		let received = 0;
		const onPacket = (packet: Buffer, rinfo: dgram.RemoteInfo) => {
			received++;
			sink += packet.length + rinfo.port;
		};
		const stats = { recvSyscalls: 0, garbage: 0 };
		if (batched) {
			if (BatchReceiver.start(socket, udp, stats, onPacket) === null)
				throw new Error("the addon did not take the socket");
		} else {
			socket.on("message", onPacket);
		}
		const cpu = process.threadCpuUsage();
		sender.postMessage({ port: socket.address().port, count: options.datagrams });
		await fromSender();
		// The last burst may still be in the socket's queue.
		let last = -1;
		while (received !== last) {
			last = received;
			await new Promise((r) => setTimeout(r, 20));
		}
		const used = process.threadCpuUsage(cpu);
		await new Promise<void>((r) => socket.close(() => r()));
		return [(used.user + used.system) / Math.max(1, received), received / options.datagrams];
	};

	const modes: [string, boolean][] = [["dgram 'message' per datagram", false]];
	if (udp !== null && typeof udp.recvStart === "function") modes.push(["recvmmsg batches (receiver.ts)", true]);
	const results = modes.map(([name]) => ({ name, runs: [] as number[], delivered: [] as number[] }));
	for (const [, batched] of modes) await measure(batched); // warm-up: JIT, the addon
	for (let run = 0; run < options.runs; run++) {
		for (let k = 0; k < modes.length; k++) {
			const index = (k + run) % modes.length;
			const [us, delivered] = await measure(modes[index][1]);
			results[index].runs.push(us);
			results[index].delivered.push(delivered);
		}
	}
	sender.postMessage("close");
	return {
		options,
		unavailable: modes.length === 1 ? udpNativeUnavailable() || "the addon has no recvStart" : "",
		modes: results.map((r) => ({
			name: r.name,
			runs: r.runs,
			usPerDatagram: { min: Math.min(...r.runs), median: median(r.runs), max: Math.max(...r.runs) },
			delivered: median(r.delivered),
		})),
	};
}

function argNumber(args: string[], name: string): number | undefined {
	const i = args.indexOf(name);
	return i >= 0 ? Number(args[i + 1]) : undefined;
}

if (!isMainThread && (workerData as { sender?: boolean } | null)?.sender) {
	senderThread();
} else if (isMainThread && process.argv[1] && import.meta.filename === process.argv[1]) {
	const args = process.argv.slice(2);
	const result = await benchUdpIngress({ runs: argNumber(args, "--runs"), datagrams: argNumber(args, "--datagrams") });
	console.log(
		`runs=${result.options.runs} datagrams/mode/run=${result.options.datagrams} size=${DATAGRAM}B in bursts of ${BURST}; receiver-thread CPU µs per datagram`,
	);
	if (result.unavailable) console.log(`recvmmsg unavailable: ${result.unavailable}`);
	const base = result.modes[0].usPerDatagram.median;
	for (const m of result.modes) {
		const { min, median: med, max } = m.usPerDatagram;
		console.log(
			`${m.name.padEnd(32)} ${min.toFixed(2)} / ${med.toFixed(2)} / ${max.toFixed(2)} µs  (${(med / base).toFixed(3)} of dgram; received ${(100 * m.delivered).toFixed(1)} %)`,
		);
	}
	if (sink === -1) console.log(sink);
}
