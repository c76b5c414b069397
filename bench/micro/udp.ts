/**
 * Micro-bench: sender CPU per UDP packet on the egress paths of src/quic/sender.ts, side by side
 * in one run (the order rotates every run), 1350-byte packets to one loopback receiver:
 * - dgram.send: PacketSender without the addon (the fallback, and `[server.quic] gso = false`);
 * - addon sendmmsg: `sendBatch` with GSO off, one message per packet;
 * - addon GSO: `sendBatch` with GSO on, one super-packet per batch;
 * - PacketSender + addon: the relay's batched path (acquire, sendTo, end-of-turn flush).
 * Packets go out 32 per event-loop turn (a connection's flush writes up to 64). The receiver drains
 * in a worker thread; only the sending thread's CPU counts (`process.threadCpuUsage()`, user + system,
 * which on loopback includes the kernel's delivery to the receiving socket). The receiver (Node
 * dgram, several µs per datagram) cannot keep up with the batched modes: the "received" share shows
 * its socket buffer overflowing, not packets the sender lost.
 *
 * Run: node bench/micro/udp.ts [--runs 7] [--packets 32768]
 */
import dgram from "node:dgram";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { PACKET_BUFFER_SIZE, PacketSender, type SenderStats, UdpDestination } from "../../src/quic/sender.ts";
import { loadUdpNative, OutSlot, type UdpNative, udpNativeUnavailable } from "../../src/quic/udp-native.ts";

const PACKET = 1350;
const PER_TURN = 32;

export interface UdpBenchOptions {
	runs: number;
	packets: number;
}

export interface UdpModeResult {
	name: string;
	/** Sender-thread CPU µs per packet, per run. */
	runs: number[];
	usPerPacket: { min: number; median: number; max: number };
	/** Share of the packets the receiver got, median over runs (drops are the receiver's, not ours). */
	delivered: number;
}

export interface UdpBenchResult {
	options: UdpBenchOptions;
	modes: UdpModeResult[];
	/** Why the addon modes are missing ("" when they ran). */
	unavailable: string;
}

/** Receiver thread: counts datagrams; answers each "count" message with the count so far. */
function receiverThread(): void {
	const socket = dgram.createSocket("udp4");
	let count = 0;
	socket.on("message", () => count++);
	socket.bind(0, "127.0.0.1", () => {
		socket.setRecvBufferSize(8 * 1024 * 1024);
		parentPort?.postMessage({ port: socket.address().port });
	});
	parentPort?.on("message", (msg: string) => {
		if (msg === "count") parentPort?.postMessage({ count });
		else socket.close(() => process.exit(0));
	});
}

const nextTurn = () => new Promise<void>((r) => setImmediate(r));

function fdOf(socket: dgram.Socket): number {
	const symbol = Object.getOwnPropertySymbols(socket).find((s) => s.description === "state symbol");
	const state = symbol && (socket as unknown as Record<symbol, { handle: { fd: number } | null }>)[symbol];
	return state?.handle?.fd ?? -1;
}

function senderStats(): SenderStats {
	return {
		packetsOut: 0,
		bytesOut: 0,
		sendErrors: 0,
		packetsOutGso: 0,
		packetsOutBatched: 0,
		packetsOutDgram: 0,
		sendSyscalls: 0,
		gsoFallbacks: 0,
		sendStalls: 0,
	};
}

type Mode = (packets: number) => Promise<void>;

function median(values: number[]): number {
	const sorted = [...values].sort((a, b) => a - b);
	return sorted[Math.floor(sorted.length / 2)];
}

export async function benchUdpEgress(partial: Partial<UdpBenchOptions> = {}): Promise<UdpBenchResult> {
	const options: UdpBenchOptions = { runs: Math.max(5, partial.runs ?? 7), packets: partial.packets ?? 32_768 };
	const receiver = new Worker(new URL(import.meta.url), { workerData: { receiver: true } });
	const fromReceiver = () => new Promise<{ port?: number; count?: number }>((r) => receiver.once("message", r));
	const { port } = (await fromReceiver()) as { port: number };
	const received = async () => {
		receiver.postMessage("count");
		return (await fromReceiver()).count ?? 0;
	};
	/** The receiver's count once it stopped growing (its queue drained), so modes do not mix. */
	const drained = async () => {
		let last = -1;
		for (;;) {
			const now = await received();
			if (now === last) return now;
			last = now;
			await new Promise((r) => setTimeout(r, 30));
		}
	};

	const socket = dgram.createSocket("udp4");
	await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
	socket.setSendBufferSize(4 * 1024 * 1024);
	const udp: UdpNative | null = loadUdpNative();
	const modes: [string, Mode][] = [];

	const dgramSender = new PacketSender(socket, senderStats(), null);
	const destination = new UdpDestination("127.0.0.1", port);
	const fill = (buf: Buffer) => buf.fill(0xab, 0, PACKET);
	modes.push([
		"dgram.send (PacketSender, no addon)",
		async (packets) => {
			for (let sent = 0; sent < packets; sent += PER_TURN) {
				for (let i = 0; i < PER_TURN; i++) dgramSender.sendTo(fill(dgramSender.acquire()), PACKET, destination);
				await nextTurn();
			}
		},
	]);
	if (udp !== null) {
		const fd = fdOf(socket);
		const slots = Buffer.alloc(PER_TURN * PACKET_BUFFER_SIZE, 0xab);
		const meta = new Int32Array(2 * PER_TURN);
		for (let i = 0; i < PER_TURN; i++) meta[2 * i] = PACKET;
		const addresses = new Uint8Array(32);
		udp.writeSockaddr(addresses, 0, "127.0.0.1", port, false);
		const out = new Float64Array(OutSlot.count);
		const raw =
			(flags: number): Mode =>
			async (packets) => {
				for (let sent = 0; sent < packets; sent += PER_TURN) {
					udp.sendBatch(fd, slots, PACKET_BUFFER_SIZE, meta, PER_TURN, addresses, flags, out);
					await nextTurn();
				}
			};
		modes.push(["addon sendmmsg (32 messages per call)", raw(0)]);
		modes.push(["addon GSO (32 segments per call)", raw(1)]);
		const batched = new PacketSender(socket, senderStats(), udp);
		const batchedDestination = new UdpDestination("127.0.0.1", port);
		modes.push([
			"PacketSender + addon (relay path)",
			async (packets) => {
				for (let sent = 0; sent < packets; sent += PER_TURN) {
					for (let i = 0; i < PER_TURN; i++) batched.sendTo(fill(batched.acquire()), PACKET, batchedDestination);
					await nextTurn();
				}
			},
		]);
	}

	const results = modes.map(([name]) => ({ name, runs: [] as number[], delivered: [] as number[] }));
	// Warm-up: JIT, pools, the receiver's buffer.
	for (const [, mode] of modes) await mode(4096);
	for (let run = 0; run < options.runs; run++) {
		for (let k = 0; k < modes.length; k++) {
			const index = (k + run) % modes.length;
			const before = await drained();
			const cpu = process.threadCpuUsage();
			await modes[index][1](options.packets);
			const used = process.threadCpuUsage(cpu);
			results[index].runs.push((used.user + used.system) / options.packets);
			results[index].delivered.push(((await drained()) - before) / options.packets);
		}
	}
	receiver.postMessage("close");
	socket.close();
	return {
		options,
		unavailable: udp === null ? udpNativeUnavailable() : "",
		modes: results.map((r) => ({
			name: r.name,
			runs: r.runs,
			usPerPacket: { min: Math.min(...r.runs), median: median(r.runs), max: Math.max(...r.runs) },
			delivered: median(r.delivered),
		})),
	};
}

function argNumber(args: string[], name: string): number | undefined {
	const i = args.indexOf(name);
	return i >= 0 ? Number(args[i + 1]) : undefined;
}

if (!isMainThread && (workerData as { receiver?: boolean } | null)?.receiver) {
	receiverThread();
} else if (isMainThread && process.argv[1] && import.meta.filename === process.argv[1]) {
	const args = process.argv.slice(2);
	const result = await benchUdpEgress({ runs: argNumber(args, "--runs"), packets: argNumber(args, "--packets") });
	console.log(
		`runs=${result.options.runs} packets/mode/run=${result.options.packets} size=${PACKET}B, ${PER_TURN} per turn; sender-thread CPU µs per packet`,
	);
	if (result.unavailable) console.log(`addon unavailable: ${result.unavailable}`);
	const base = result.modes[0].usPerPacket.median;
	for (const m of result.modes) {
		const { min, median: med, max } = m.usPerPacket;
		console.log(
			`${m.name.padEnd(40)} ${min.toFixed(2)} / ${med.toFixed(2)} / ${max.toFixed(2)} µs  (${(med / base).toFixed(3)} of dgram; received ${(100 * m.delivered).toFixed(1)} %)`,
		);
	}
}
