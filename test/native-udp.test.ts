/**
 * The native UDP egress addon (native/udp.c) and the batching sender on it (src/quic/sender.ts), on
 * real loopback sockets:
 * - a batch of mixed destinations (IPv4, IPv6, v4-mapped) and sizes arrives byte-exact and in order
 *   per destination, grouped as the rules say (GSO runs of one destination and size, a shorter last
 *   segment, 64 segments and 65507 bytes per super-packet at most), in one sendmmsg;
 * - GSO off (flag), and a socket that refuses UDP_SEGMENT (SO_NO_CHECK): the batch is resent
 *   without GSO, nothing lost, GSO stays off for that fd until it is forgotten;
 * - every bad argument throws a JS error, and a bad fd stops the batch with a socket error;
 * - PacketSender: batches flushed at the end of the turn and when full; a batch cut short by a full
 *   send buffer (EAGAIN, simulated: loopback never fills a UDP send buffer, the kernel frees each
 *   datagram as loopback transmits it) goes on through dgram, later batches wait behind it, and
 *   every packet arrives once and in order.
 * The sanitizer test builds the ASan/UBSan variant and runs this file against it in a child process.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import dgram from "node:dgram";
import { closeSync, existsSync, openSync, readdirSync, readlinkSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { Worker } from "node:worker_threads";
import { createCountersBuffer, Field, WorkerCounters } from "../src/pool/counters.ts";
import { ReceiveQueueMeter, readProcUdp } from "../src/quic/receive-queue.ts";
import { BatchReceiver, RECV_SLOT_SIZE } from "../src/quic/receiver.ts";
import {
	BATCH_PACKETS,
	PACKET_BUFFER_SIZE,
	PacketSender,
	type SenderStats,
	UdpDestination,
} from "../src/quic/sender.ts";
import {
	loadUdpNativeFrom,
	MallocSlot,
	OutSlot,
	QueueSlot,
	RECV_META,
	StopReason,
	type UdpNative,
	udpNativePath,
} from "../src/quic/udp-native.ts";
import { trimNativeHeap } from "../src/worker/native-heap.ts";
import { until } from "./support/wait.ts";

const REPO = resolve(import.meta.dirname, "..");
const IN_CI = process.env.CI === "true";
/** Set by the sanitizer test for its child run: the addon build under test. */
const ADDON_UNDER_TEST = process.env.MOQ_FANOUT_TEST_UDP_ADDON;

function compilerMissing(): string | null {
	for (const cc of [process.env.CC, "cc", "gcc"]) {
		if (cc && spawnSync(cc, ["--version"], { stdio: "ignore" }).status === 0) return null;
	}
	return "no C compiler (cc/gcc): the addon cannot be built here";
}

/** Builds the addon when it is missing or older than its source (npm install builds it too). */
function ensureBuilt(sanitized: boolean): string {
	const path = udpNativePath(sanitized);
	const source = join(REPO, "native", "udp.c");
	if (existsSync(path) && statSync(path).mtimeMs >= statSync(source).mtimeMs) return path;
	const args = [join(REPO, "native", "build.mjs"), ...(sanitized ? ["--sanitize"] : [])];
	const built = spawnSync(process.execPath, args, {
		encoding: "utf8",
		env: { ...process.env, MOQ_FANOUT_NATIVE_UDP: "" },
	});
	assert.ok(existsSync(path), `native/build.mjs did not build ${path}:\n${built.stdout}${built.stderr}`);
	return path;
}

const NO_COMPILER = ADDON_UNDER_TEST === undefined ? compilerMissing() : null;
// Without a compiler there is no addon to test (the relay then sends with dgram); CI must have one.
const SKIP = NO_COMPILER !== null && !IN_CI ? NO_COMPILER : false;

function dgramStateOf(socket: dgram.Socket): { handle: { fd: number; recvStop?: () => number } } {
	const symbol = Object.getOwnPropertySymbols(socket).find((s) => s.description === "state symbol");
	assert.ok(symbol, "dgram keeps its state under a symbol");
	return (socket as unknown as Record<symbol, { handle: { fd: number; recvStop?: () => number } }>)[symbol];
}

function fdOf(socket: dgram.Socket): number {
	const symbol = Object.getOwnPropertySymbols(socket).find((s) => s.description === "state symbol");
	assert.ok(symbol, "dgram keeps its state under a symbol");
	return (socket as unknown as Record<symbol, { handle: { fd: number } }>)[symbol].handle.fd;
}

async function bound(type: "udp4" | "udp6", host: string): Promise<dgram.Socket> {
	const socket = dgram.createSocket(type);
	await new Promise<void>((r) => socket.bind(0, host, () => r()));
	return socket;
}

/** A receiver that keeps every datagram (a copy), with a receive buffer for whole bursts. */
interface Receiver {
	socket: dgram.Socket;
	host: string;
	got: Buffer[];
}

async function receiver(type: "udp4" | "udp6", host: string): Promise<Receiver> {
	const socket = await bound(type, host);
	socket.setRecvBufferSize(4 * 1024 * 1024);
	const r: Receiver = { socket, host, got: [] };
	socket.on("message", (msg) => r.got.push(Buffer.from(msg)));
	return r;
}

/** Deterministic packet content: destination, sequence number, then a pattern. */
function payload(destination: number, seq: number, length: number): Buffer {
	const b = Buffer.alloc(length);
	for (let i = 0; i < length; i++) b[i] = (i * 29 + seq * 7 + destination * 13) & 0xff;
	if (length >= 8) {
		b.writeUInt32BE(destination, 0);
		b.writeUInt32BE(seq, 4);
	}
	return b;
}

/** A batch in the addon's layout: packets in slots, meta [length, destination] per packet. */
class Batch {
	readonly slotSize: number;
	readonly packets: Uint8Array;
	readonly meta: Int32Array;
	readonly addresses = new Uint8Array(32 * 8);
	readonly expected: Buffer[][] = [];
	count = 0;
	private readonly seq: number[] = [];

	constructor(slotSize: number, capacity: number) {
		this.slotSize = slotSize;
		this.packets = new Uint8Array(slotSize * capacity);
		this.meta = new Int32Array(2 * capacity);
	}

	destination(udp: UdpNative, index: number, host: string, port: number, ipv6Socket: boolean): void {
		udp.writeSockaddr(this.addresses, index * 32, host, port, ipv6Socket);
		this.expected[index] = [];
		this.seq[index] = 0;
	}

	add(destination: number, length: number, times = 1): void {
		for (let k = 0; k < times; k++) {
			const data = payload(destination, this.seq[destination]++, length);
			this.packets.set(data, this.count * this.slotSize);
			this.meta[2 * this.count] = length;
			this.meta[2 * this.count + 1] = destination;
			this.expected[destination].push(data);
			this.count++;
		}
	}
}

async function arrived(receivers: Receiver[], expected: Buffer[][]): Promise<void> {
	const total = (i: number) => expected[i].length;
	await until(() => receivers.every((r, i) => r.got.length >= total(i)), 5000, "every datagram to arrive");
	for (const [i, r] of receivers.entries()) {
		assert.equal(r.got.length, total(i), `destination ${i}: datagram count`);
		for (const [k, want] of expected[i].entries()) {
			assert.ok(r.got[k].equals(want), `destination ${i}: datagram ${k} differs (order or bytes)`);
		}
	}
}

describe("native UDP egress addon", { skip: SKIP, timeout: 120_000 }, () => {
	let udp: UdpNative;
	const sockets: dgram.Socket[] = [];
	const track = <T extends { socket: dgram.Socket } | dgram.Socket>(s: T): T => {
		sockets.push("socket" in s ? s.socket : s);
		return s;
	};

	before(() => {
		assert.equal(NO_COMPILER, null, `${NO_COMPILER} (CI=true requires one)`);
		udp = loadUdpNativeFrom(ADDON_UNDER_TEST ?? ensureBuilt(false));
	});
	after(() => {
		for (const s of sockets) s.close();
	});

	test("mixed destinations and sizes: byte-exact, in order per destination, grouped by the GSO rules", async () => {
		const sender = track(await bound("udp6", "::"));
		const v4 = track(await receiver("udp4", "127.0.0.1"));
		const v6 = track(await receiver("udp6", "::1"));
		const v4b = track(await receiver("udp4", "127.0.0.1"));
		const batch = new Batch(PACKET_BUFFER_SIZE, 256);
		batch.destination(udp, 0, "127.0.0.1", v4.socket.address().port, true);
		batch.destination(udp, 1, "::1", v6.socket.address().port, true);
		batch.destination(udp, 2, "::ffff:127.0.0.1", v4b.socket.address().port, true);
		let gso = 0;
		let single = 0;
		batch.add(0, 1350, 10); // one super-packet of 11: a shorter last segment joins the run
		batch.add(0, 300);
		gso += 11;
		batch.add(1, 500); // alone
		single++;
		batch.add(0, 1000, 70); // 64 + 6: the segment cap splits the run
		gso += 70;
		batch.add(2, 100, 3); // a longer packet cannot join a run of shorter ones
		batch.add(2, 200);
		gso += 3;
		single++;
		batch.add(1, 1350, 2); // same size, same destination, after another destination: a new run
		gso += 2;
		batch.add(0, 1, 1); // one-byte packet
		single++;
		const out = new Float64Array(OutSlot.count);
		const sent = udp.sendBatch(
			fdOf(sender),
			batch.packets,
			batch.slotSize,
			batch.meta,
			batch.count,
			batch.addresses,
			1,
			out,
		);
		assert.equal(sent, batch.count);
		assert.equal(out[OutSlot.stop], StopReason.none);
		assert.equal(out[OutSlot.syscalls], 1, "one sendmmsg for the whole batch");
		assert.equal(out[OutSlot.gsoPackets], gso);
		assert.equal(out[OutSlot.singlePackets], single);
		assert.equal(out[OutSlot.dropped], 0);
		assert.equal(udp.gsoEnabled(fdOf(sender)), true);
		await arrived([v4, v6, v4b], batch.expected);
	});

	test("an IPv4 socket; a super-packet stops at 65507 bytes", async () => {
		const sender = track(await bound("udp4", "127.0.0.1"));
		const rx = track(await receiver("udp4", "127.0.0.1"));
		const batch = new Batch(20_000, 8);
		batch.destination(udp, 0, "127.0.0.1", rx.socket.address().port, false);
		batch.add(0, 20_000, 4); // 3 × 20000 fit in 65507, the fourth goes alone
		const out = new Float64Array(OutSlot.count);
		assert.equal(udp.sendBatch(fdOf(sender), batch.packets, 20_000, batch.meta, 4, batch.addresses, 1, out), 4);
		assert.equal(out[OutSlot.gsoPackets], 3);
		assert.equal(out[OutSlot.singlePackets], 1);
		await arrived([rx], batch.expected);
	});

	test("GSO off: one datagram per message, same delivery", async () => {
		const sender = track(await bound("udp4", "127.0.0.1"));
		const rx = track(await receiver("udp4", "127.0.0.1"));
		const batch = new Batch(PACKET_BUFFER_SIZE, 64);
		batch.destination(udp, 0, "127.0.0.1", rx.socket.address().port, false);
		batch.add(0, 1350, 40);
		batch.add(0, 77);
		const out = new Float64Array(OutSlot.count);
		const sent = udp.sendBatch(
			fdOf(sender),
			batch.packets,
			batch.slotSize,
			batch.meta,
			batch.count,
			batch.addresses,
			0,
			out,
		);
		assert.equal(sent, 41);
		assert.equal(out[OutSlot.gsoPackets], 0);
		assert.equal(out[OutSlot.singlePackets], 41);
		assert.equal(out[OutSlot.syscalls], 1);
		assert.equal(udp.gsoEnabled(fdOf(sender)), null, "no GSO send, no probe");
		await arrived([rx], batch.expected);
	});

	test("a socket that refuses UDP_SEGMENT: GSO off for that fd, the batch resent without it", async () => {
		// A dual-stack socket to an IPv4 receiver: SO_NO_CHECK only affects IPv4 destinations.
		const sender = track(await bound("udp6", "::"));
		const rx = track(await receiver("udp4", "127.0.0.1"));
		const fd = fdOf(sender);
		udp.setNoChecksumForTesting(fd, true);
		const batch = new Batch(PACKET_BUFFER_SIZE, 64);
		batch.destination(udp, 0, "127.0.0.1", rx.socket.address().port, true);
		batch.add(0, 1200, 30);
		batch.add(0, 1000);
		const out = new Float64Array(OutSlot.count);
		assert.equal(
			udp.sendBatch(fd, batch.packets, batch.slotSize, batch.meta, batch.count, batch.addresses, 1, out),
			31,
		);
		assert.equal(out[OutSlot.gsoFallbacks], 1);
		assert.equal(out[OutSlot.gsoPackets], 0);
		assert.equal(out[OutSlot.singlePackets], 31);
		assert.equal(out[OutSlot.syscalls], 2, "the refused sendmmsg, then the resend");
		assert.equal(udp.gsoEnabled(fd), false);
		// Remembered: the next batch goes without GSO at once.
		assert.equal(
			udp.sendBatch(fd, batch.packets, batch.slotSize, batch.meta, batch.count, batch.addresses, 1, out),
			31,
		);
		assert.equal(out[OutSlot.gsoFallbacks], 0);
		assert.equal(out[OutSlot.syscalls], 1);
		batch.expected[0].push(...batch.expected[0]);
		await arrived([rx], batch.expected);
		udp.forgetSocket(fd);
		assert.equal(udp.gsoEnabled(fd), null, "forgotten: the fd number may come back for another socket");
	});

	test("a destination the kernel refuses: its packets are dropped and counted, the rest sent, GSO kept", async () => {
		const sender = track(await bound("udp6", "::"));
		const rx = track(await receiver("udp6", "::1"));
		const fd = fdOf(sender);
		const batch = new Batch(PACKET_BUFFER_SIZE, 64);
		batch.destination(udp, 0, "::1", rx.socket.address().port, true);
		// Port 0 (writeSockaddr refuses it; zeroed here): sendmsg answers EINVAL, the errno UDP_SEGMENT
		// also gives when it cannot segment.
		batch.destination(udp, 1, "::1", 9, true);
		batch.addresses.fill(0, 32 + 2, 32 + 4);
		batch.add(0, 1200, 5);
		batch.add(1, 1200, 5);
		batch.add(0, 1200, 5);
		const refused = batch.expected[1].length;
		const out = new Float64Array(OutSlot.count);
		assert.equal(
			udp.sendBatch(fd, batch.packets, batch.slotSize, batch.meta, batch.count, batch.addresses, 1, out),
			15,
		);
		assert.equal(out[OutSlot.dropped], refused);
		assert.equal(out[OutSlot.errno], 22, "EINVAL");
		assert.equal(out[OutSlot.gsoFallbacks], 0, "the address was at fault, not GSO");
		assert.equal(udp.gsoEnabled(fd), true);
		assert.equal(out[OutSlot.gsoPackets], 10);
		await arrived([rx], [batch.expected[0]]);
	});

	test("bad arguments throw; a bad fd stops the batch with a socket error", async () => {
		const sender = track(await bound("udp4", "127.0.0.1"));
		const fd = fdOf(sender);
		const batch = new Batch(100, 4);
		batch.destination(udp, 0, "127.0.0.1", 9, false);
		batch.add(0, 50, 2);
		const out = new Float64Array(OutSlot.count);
		const call = (over: Partial<Record<string, unknown>>) => {
			const a = {
				fd,
				packets: batch.packets,
				slot: 100,
				meta: batch.meta,
				count: 2,
				addresses: batch.addresses,
				flags: 1,
				out,
				...over,
			};
			return () =>
				(udp.sendBatch as (...args: unknown[]) => number)(
					a.fd,
					a.packets,
					a.slot,
					a.meta,
					a.count,
					a.addresses,
					a.flags,
					a.out,
				);
		};
		const bad: [string, Partial<Record<string, unknown>>][] = [
			["fd a string", { fd: "3" }],
			["fd negative", { fd: -1 }],
			["fd fractional", { fd: 1.5 }],
			["fd NaN", { fd: Number.NaN }],
			["packets an Int32Array", { packets: new Int32Array(100) }],
			["packets a plain array", { packets: [1, 2, 3] }],
			["slotSize 0", { slot: 0 }],
			["slotSize above 65507", { slot: 70_000 }],
			["meta a Uint32Array", { meta: new Uint32Array(8) }],
			["meta too short", { meta: new Int32Array(3) }],
			["count above the packets buffer", { count: 5, meta: new Int32Array(10).fill(1) }],
			["count above 1024", { count: 1025 }],
			["count negative", { count: -1 }],
			["length 0", { meta: Int32Array.of(0, 0, 50, 0) }],
			["length above slotSize", { meta: Int32Array.of(101, 0, 50, 0) }],
			["destination past the table", { meta: Int32Array.of(50, 8, 50, 0) }],
			["destination negative", { meta: Int32Array.of(50, -1, 50, 0) }],
			["destination entry not a sockaddr", { addresses: new Uint8Array(32) }],
			["addresses not a Uint8Array", { addresses: {} }],
			["flags unknown", { flags: 4 }],
			["out too short", { out: new Float64Array(3) }],
			["out a Float32Array", { out: new Float32Array(7) }],
		];
		for (const [what, over] of bad) assert.throws(call(over), /must|outside|shorter|fewer|neither|hold/, what);
		assert.throws(() => (udp.sendBatch as (...args: unknown[]) => number)(fd, batch.packets), /sendBatch\(/);

		const target = new Uint8Array(40);
		const write =
			(...args: unknown[]) =>
			() =>
				(udp.writeSockaddr as (...a: unknown[]) => void)(...args);
		assert.throws(write(target, 9, "127.0.0.1", 1, false), /past the end/);
		assert.throws(write(target, -1, "127.0.0.1", 1, false), /offset/);
		assert.throws(write(target, 0, "127.0.0.1", 0, false), /port/);
		assert.throws(write(target, 0, "127.0.0.1", 65_536, false), /port/);
		assert.throws(write(target, 0, "127.0.0.1", 1.5, false), /port/);
		assert.throws(write(target, 0, "localhost", 1, false), /not an IP/);
		assert.throws(write(target, 0, "x".repeat(500), 1, false), /not an IP/);
		assert.throws(write(target, 0, "127.0.0.1\u0000junk", 1, false), /not an IP/);
		assert.throws(write(target, 0, 2130706433, 1, false), /string/);
		assert.throws(write(target, 0, "::1", 1, false), /IPv4 socket/);
		assert.throws(write(target, 0, "fe80::1%no-such-interface", 1, true), /zone/);
		assert.throws(write(target, 0, "::1", 1, "yes"), /boolean/);
		assert.throws(write(new Int8Array(40), 0, "::1", 1, true), /Uint8Array/);
		assert.throws(write(target, 0), /writeSockaddr\(/);
		// Good ones: a v4-mapped address on an IPv4 socket is plain IPv4; a numeric zone is a scope id.
		udp.writeSockaddr(target, 0, "::ffff:10.1.2.3", 443, false);
		assert.deepEqual([...target.subarray(0, 8)], [2, 0, 1, 187, 10, 1, 2, 3]);
		udp.writeSockaddr(target, 8, "fe80::1%1", 443, true);
		assert.equal(new DataView(target.buffer).getUint32(8 + 24, true), 1, "sin6_scope_id");

		for (const name of ["forgetSocket", "gsoEnabled", "setNoChecksumForTesting"] as const) {
			assert.throws(() => (udp[name] as (...a: unknown[]) => unknown)("x", true), /fd/, name);
		}

		// Not a socket, or no such fd: nothing sent, the batch stops with a socket error.
		const file = openSync("/dev/null", "r");
		try {
			assert.equal(udp.sendBatch(file, batch.packets, 100, batch.meta, 2, batch.addresses, 1, out), 0);
			assert.equal(out[OutSlot.stop], StopReason.socketError);
		} finally {
			closeSync(file);
		}
		assert.equal(udp.sendBatch(1_000_000, batch.packets, 100, batch.meta, 2, batch.addresses, 0, out), 0);
		assert.equal(out[OutSlot.stop], StopReason.socketError);
		// An empty batch is fine.
		assert.equal(udp.sendBatch(fd, batch.packets, 100, batch.meta, 0, batch.addresses, 1, out), 0);
	});

	test("reads the C allocator's figures and trims its arenas ([workers] malloc_trim)", () => {
		const figures = new Float64Array(MallocSlot.count).fill(-1);
		// Debian 12's glibc is 2.36: mallinfo2 is there. (Under ASan the allocator is ASan's, whose
		// figures glibc does not see: they may read 0, but are written.)
		assert.equal(udp.mallocInfo(figures), true);
		for (const v of figures) assert.ok(Number.isFinite(v) && v >= 0, `figures ${[...figures]}`);
		if (ADDON_UNDER_TEST === undefined) assert.ok(figures[MallocSlot.inUse] > 0, "bytes in use");
		assert.throws(() => udp.mallocInfo(new Float32Array(MallocSlot.count) as never), /Float64Array/);
		assert.throws(() => udp.mallocInfo(new Float64Array(2)), /at least 5/);
		assert.throws(() => (udp.mallocInfo as (...a: unknown[]) => unknown)(), /mallocInfo\(out\)/);
		assert.equal(typeof udp.mallocTrim(), "boolean");

		// The relay's trim step counts each trim and what it gave back.
		const counters = new WorkerCounters(createCountersBuffer(1), 0);
		const released = trimNativeHeap(udp, counters, 0);
		assert.ok(released >= 0);
		assert.equal(counters.get(Field.mallocTrims), 1);
		assert.equal(counters.get(Field.mallocTrimmedBytes), released);
		// Too little free memory to bother: skipped, not counted.
		assert.equal(trimNativeHeap(udp, counters, Number.MAX_SAFE_INTEGER), 0);
		assert.equal(counters.get(Field.mallocTrims), 1);
	});

	test("reads a socket's receive queue and drop count (SO_MEMINFO), as /proc/net/udp has them", async () => {
		for (const [type, host] of [
			["udp4", "127.0.0.1"],
			["udp6", "::1"],
		] as const) {
			const rx = await bound(type, host);
			const tx = await bound(type, host);
			try {
				// Nobody reads: the queue fills to the (smallest) receive buffer, then the kernel drops.
				(dgramStateOf(rx).handle.recvStop as () => number)();
				rx.setRecvBufferSize(4096);
				const fd = fdOf(rx);
				const queue = new Float64Array(QueueSlot.count).fill(-1);
				assert.equal(udp.receiveQueue(fd, queue), true);
				assert.deepEqual([...queue], [0, 0], `${type}: empty, nothing dropped`);
				const payload = Buffer.alloc(1000);
				for (let i = 0; i < 50; i++) {
					await new Promise<void>((r) => tx.send(payload, rx.address().port, host, () => r()));
				}
				assert.equal(udp.receiveQueue(fd, queue), true);
				const proc = readProcUdp(fd, type === "udp6");
				assert.ok(proc !== null, "the socket's line in /proc/net");
				assert.ok(queue[QueueSlot.bytes] > 0 && queue[QueueSlot.drops] > 0, `${type}: ${[...queue]}`);
				assert.ok(queue[QueueSlot.drops] < 50, `${type}: some datagrams were queued: ${[...queue]}`);
				assert.deepEqual([proc.bytes, proc.drops], [...queue], `${type}: /proc agrees`);
				// The meter the relay's metrics read: the same figures either way.
				const viaAddon = new ReceiveQueueMeter(udp, type === "udp6");
				const viaProc = new ReceiveQueueMeter(null, type === "udp6");
				assert.equal(viaAddon.read(fd), true);
				assert.equal(viaProc.read(fd), true);
				assert.deepEqual([viaAddon.source, viaProc.source], ["sockopt", "proc"]);
				assert.deepEqual([viaProc.bytes, viaProc.drops], [viaAddon.bytes, viaAddon.drops]);
				assert.deepEqual([viaAddon.bytes, viaAddon.drops], [...queue]);
				// More drops: the sockopt path sees them at once; /proc is read at most every
				// PROC_READ_INTERVAL_MS (it lists every UDP socket of the host), so its figures stand.
				for (let i = 0; i < 10; i++) {
					await new Promise<void>((r) => tx.send(payload, rx.address().port, host, () => r()));
				}
				assert.equal(viaAddon.read(fd), true);
				assert.equal(viaAddon.drops, queue[QueueSlot.drops] + 10, "the queue was full: all 10 dropped");
				assert.equal(viaProc.read(fd), true);
				assert.equal(viaProc.drops, queue[QueueSlot.drops], "not read again so soon");
			} finally {
				rx.close();
				tx.close();
			}
		}

		// Not a socket, or no such fd: false, nothing written.
		const queue = new Float64Array(QueueSlot.count).fill(-1);
		const file = openSync("/dev/null", "r");
		try {
			assert.equal(udp.receiveQueue(file, queue), false);
			assert.equal(readProcUdp(file, false), null);
		} finally {
			closeSync(file);
		}
		assert.equal(udp.receiveQueue(1_000_000, queue), false);
		assert.deepEqual([...queue], [-1, -1]);
		assert.equal(new ReceiveQueueMeter(udp, false).read(1_000_000), false);
		// Bad arguments throw.
		assert.throws(() => udp.receiveQueue("x" as never, queue), /fd/);
		assert.throws(() => udp.receiveQueue(0, new Float32Array(2) as never), /Float64Array/);
		assert.throws(() => udp.receiveQueue(0, new Float64Array(1)), /at least 2/);
		assert.throws(() => (udp.receiveQueue as (...a: unknown[]) => unknown)(0), /receiveQueue\(fd, out\)/);
	});
});

describe("ReceiveQueueMeter", () => {
	test("the kernel's 32-bit drop count wraps: the total keeps counting", () => {
		let raw = 0;
		const fake = {
			receiveQueue(_fd: number, out: Float64Array): boolean {
				out[QueueSlot.bytes] = 100;
				out[QueueSlot.drops] = raw;
				return true;
			},
		} as unknown as UdpNative;
		const meter = new ReceiveQueueMeter(fake, false);
		raw = 7;
		assert.equal(meter.read(3), true);
		assert.equal(meter.drops, 7, "a socket's count starts at 0");
		raw = 0xffff_fff0;
		meter.read(3);
		assert.equal(meter.drops, 0xffff_fff0);
		raw = 0x10;
		meter.read(3);
		assert.equal(meter.drops, 0x1_0000_0010, "across the wrap");
		meter.read(3);
		assert.equal(meter.drops, 0x1_0000_0010, "no new drop, no change");
		assert.equal(meter.bytes, 100);
	});
});

/** A SenderStats with every counter at zero. */
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

/** Writes `packets` of `length` bytes through the sender to `destination`, as a connection does. */
function writePackets(
	sender: PacketSender,
	destination: UdpDestination,
	id: number,
	from: number,
	n: number,
	length: number,
	sent: Buffer[],
): void {
	for (let seq = from; seq < from + n; seq++) {
		const buf = sender.acquire();
		const data = payload(id, seq, length);
		data.copy(buf);
		sender.sendTo(buf, length, destination);
		sent.push(data);
	}
}

const nextTurn = () => new Promise<void>((r) => setImmediate(r));

describe("PacketSender on the addon", { skip: SKIP, timeout: 60_000 }, () => {
	let udp: UdpNative;
	const sockets: dgram.Socket[] = [];
	before(() => {
		udp = loadUdpNativeFrom(ADDON_UNDER_TEST ?? ensureBuilt(false));
	});
	after(() => {
		for (const s of sockets) s.close();
	});

	test("a turn's packets leave together at its end; a full batch leaves at once", async () => {
		const socket = await bound("udp6", "::");
		const a = await receiver("udp4", "127.0.0.1");
		const b = await receiver("udp6", "::1");
		sockets.push(socket, a.socket, b.socket);
		const stats = senderStats();
		const sender = new PacketSender(socket, stats, udp);
		assert.equal(sender.batching, true);
		const toA = new UdpDestination("::ffff:127.0.0.1", a.socket.address().port);
		const toB = new UdpDestination("::1", b.socket.address().port);
		const sentA: Buffer[] = [];
		const sentB: Buffer[] = [];
		writePackets(sender, toA, 0, 0, 20, 1350, sentA);
		writePackets(sender, toB, 1, 0, 5, 900, sentB);
		sender.send(sender.acquire().fill(7), 60, b.socket.address().port, "::1"); // a stateless packet (Retry)
		sentB.push(Buffer.alloc(60, 7));
		assert.equal(stats.sendSyscalls, 0, "nothing sent before the end of the turn");
		await nextTurn();
		assert.equal(stats.sendSyscalls, 1);
		assert.equal(stats.packetsOutGso, 25);
		assert.equal(stats.packetsOutBatched, 1);
		// More than a batch in one turn: the first BATCH_PACKETS leave when the batch fills.
		writePackets(sender, toA, 0, 20, BATCH_PACKETS + 10, 1200, sentA);
		assert.equal(stats.sendSyscalls, 2, "the full batch left at once");
		await nextTurn();
		assert.equal(stats.sendSyscalls, 3);
		assert.equal(stats.packetsOut, 26 + BATCH_PACKETS + 10);
		assert.equal(stats.packetsOutDgram, 0);
		await arrived([a, b], [sentA, sentB]);
	});

	test("runs written in place (an engine's sendBatch): no copy, batched with the rest, a full batch leaves at once", async () => {
		const socket = await bound("udp4", "127.0.0.1");
		const a = await receiver("udp4", "127.0.0.1");
		const b = await receiver("udp4", "127.0.0.1");
		sockets.push(socket, a.socket, b.socket);
		const stats = senderStats();
		const sender = new PacketSender(socket, stats, udp);
		const toA = new UdpDestination("127.0.0.1", a.socket.address().port);
		const toB = new UdpDestination("127.0.0.1", b.socket.address().port);
		const sentA: Buffer[] = [];
		const sentB: Buffer[] = [];
		const sizes = new Uint16Array(BATCH_PACKETS);
		/** As native/ngtcp2.c sendBatch does: packet k at k × PACKET_BUFFER_SIZE of runBuffer(). */
		const run = (to: UdpDestination, id: number, from: number, n: number, length: number, sent: Buffer[]) => {
			assert.ok(n <= sender.runRoom());
			const buf = sender.runBuffer();
			for (let k = 0; k < n; k++) {
				const data = payload(id, from + k, length - (k === n - 1 ? 100 : 0));
				data.copy(buf, k * PACKET_BUFFER_SIZE);
				sizes[k] = data.length;
				sent.push(data);
			}
			sender.commitRun(sizes, n, to);
		};
		writePackets(sender, toA, 0, 0, 3, 1350, sentA);
		run(toA, 0, 3, 40, 1350, sentA);
		run(toB, 1, 0, 10, 1200, sentB);
		assert.equal(sender.runRoom(), BATCH_PACKETS - 53);
		assert.equal(stats.sendSyscalls, 0, "nothing sent before the end of the turn");
		// Filling the batch to the last slot sends it at once; the next run starts a fresh batch.
		run(toA, 0, 43, sender.runRoom(), 1350, sentA);
		assert.equal(stats.sendSyscalls, 1, "the full batch left at once");
		assert.equal(sender.runRoom(), BATCH_PACKETS);
		run(toB, 1, 10, 5, 1200, sentB);
		await nextTurn();
		assert.equal(stats.sendSyscalls, 2);
		assert.equal(stats.packetsOut, 3 + 40 + 10 + (BATCH_PACKETS - 53) + 5);
		assert.equal(stats.packetsOutDgram, 0);
		assert.ok(stats.packetsOutGso > 0, "same-size runs left as GSO super-packets");
		assert.throws(() => sender.commitRun(sizes, BATCH_PACKETS + 1, toA), RangeError);
		await arrived([a, b], [sentA, sentB]);
	});

	test("a batch cut short by a full send buffer: the rest through dgram, later batches behind it, nothing lost or reordered", async () => {
		const socket = await bound("udp4", "127.0.0.1");
		const rx = await receiver("udp4", "127.0.0.1");
		sockets.push(socket, rx.socket);
		// Loopback never fills a UDP send buffer, so the stall is simulated: the first call sends 7
		// packets for real and reports EAGAIN, as sendmmsg does when the buffer fills mid-batch.
		let calls = 0;
		let stallNext = true;
		const stalling: UdpNative = {
			...udp,
			sendBatch(fd, packets, slotSize, meta, count, addresses, flags, out) {
				calls++;
				if (!stallNext) return udp.sendBatch(fd, packets, slotSize, meta, count, addresses, flags, out);
				stallNext = false;
				const sent = udp.sendBatch(fd, packets, slotSize, meta, Math.min(count, 7), addresses, flags, out);
				out[OutSlot.stop] = StopReason.wouldBlock;
				out[OutSlot.errno] = 11;
				return sent;
			},
		};
		const stats = senderStats();
		const sender = new PacketSender(socket, stats, stalling);
		const to = new UdpDestination("127.0.0.1", rx.socket.address().port);
		const sent: Buffer[] = [];
		writePackets(sender, to, 0, 0, 30, 1350, sent);
		sender.flushBatch();
		assert.equal(calls, 1);
		assert.equal(stats.sendStalls, 1);
		assert.equal(stats.packetsOutGso, 7);
		assert.equal(stats.packetsOutDgram, 23, "the unsent rest went to dgram");
		// dgram's sends are unfinished (as libuv's queue is while the buffer stays full): the next
		// batch must not overtake them.
		assert.equal(sender.pending, 23);
		writePackets(sender, to, 0, 30, 10, 1350, sent);
		sender.flushBatch();
		assert.equal(calls, 1, "the addon is not used while dgram sends are unfinished");
		assert.equal(stats.packetsOutDgram, 33);
		await until(() => sender.pending === 0, 5000, "dgram's queue to drain");
		writePackets(sender, to, 0, 40, 12, 1350, sent);
		await nextTurn();
		assert.equal(calls, 2, "back on the addon once dgram drained");
		assert.equal(stats.packetsOutGso, 19);
		assert.equal(stats.packetsOut, 52);
		await arrived([rx], [sent]);
	});

	test("without the addon (gso = false) every packet goes through dgram", async () => {
		const socket = await bound("udp4", "127.0.0.1");
		const rx = await receiver("udp4", "127.0.0.1");
		sockets.push(socket, rx.socket);
		const stats = senderStats();
		const sender = new PacketSender(socket, stats, null);
		assert.equal(sender.batching, false);
		const to = new UdpDestination("127.0.0.1", rx.socket.address().port);
		const sent: Buffer[] = [];
		writePackets(sender, to, 0, 0, 20, 1350, sent);
		assert.equal(stats.packetsOutDgram, 20, "sent at once, no batch");
		assert.equal(stats.sendSyscalls, 20);
		await arrived([rx], [sent]);
	});

	test("a socket error gives the addon up for that socket; packets go on through dgram", async () => {
		const socket = await bound("udp4", "127.0.0.1");
		const rx = await receiver("udp4", "127.0.0.1");
		sockets.push(socket, rx.socket);
		const broken: UdpNative = {
			...udp,
			sendBatch(_fd, packets, slotSize, meta, count, addresses, flags, out) {
				// As the addon answers for a closed fd (EBADF).
				return udp.sendBatch(1_000_000, packets, slotSize, meta, count, addresses, flags, out);
			},
		};
		const stats = senderStats();
		const sender = new PacketSender(socket, stats, broken);
		const to = new UdpDestination("127.0.0.1", rx.socket.address().port);
		const sent: Buffer[] = [];
		writePackets(sender, to, 0, 0, 10, 1000, sent);
		await nextTurn();
		assert.equal(stats.gsoFallbacks, 1);
		assert.equal(sender.batching, false);
		writePackets(sender, to, 0, 10, 5, 1000, sent);
		assert.equal(stats.packetsOutDgram, 15);
		await arrived([rx], [sent]);
	});
});

/** How many of the process's file descriptors refer to `socket` (Linux: "socket:[inode]" links). */
function fdsOf(socket: dgram.Socket): number {
	const target = readlinkSync(`/proc/self/fd/${fdOf(socket)}`);
	let n = 0;
	for (const fd of readdirSync("/proc/self/fd")) {
		try {
			if (readlinkSync(`/proc/self/fd/${fd}`) === target) n++;
		} catch {
			// closed meanwhile (readdir's own fd)
		}
	}
	return n;
}

/** The links of the process's file descriptors (Linux), to find a socket's after it closed. */
function fdLinks(): string[] {
	const links: string[] = [];
	for (const fd of readdirSync("/proc/self/fd")) {
		try {
			links.push(readlinkSync(`/proc/self/fd/${fd}`));
		} catch {
			// readdir's own fd
		}
	}
	return links;
}

describe("native UDP ingress (recvmmsg)", { skip: SKIP, timeout: 120_000 }, () => {
	let udp: UdpNative;
	const sockets: dgram.Socket[] = [];

	before(() => {
		assert.equal(NO_COMPILER, null, `${NO_COMPILER} (CI=true requires one)`);
		udp = loadUdpNativeFrom(ADDON_UNDER_TEST ?? ensureBuilt(false));
	});
	after(() => {
		for (const s of sockets) s.close();
	});

	/** Starts the addon's receiver on `socket` (libuv's reading stopped), recording every datagram. */
	function startRaw(socket: dgram.Socket, slots = 16, slotSize = 2048) {
		const buffer = new Uint8Array(slots * slotSize);
		const meta = new Int32Array(slots * RECV_META);
		const got: { data: Buffer; port: number; family: number; address: string }[] = [];
		let batches = 0;
		const id = udp.recvStart(fdOf(socket), buffer, slotSize, meta, (count) => {
			batches++;
			for (let i = 0; i < count; i++) {
				const length = meta[i * RECV_META];
				const data = length < 0 ? Buffer.alloc(0) : Buffer.from(buffer.subarray(i * slotSize, i * slotSize + length));
				got.push({
					data,
					port: meta[i * RECV_META + 1],
					family: meta[i * RECV_META + 2],
					address: udp.addressString(meta, i),
				});
			}
		});
		const state = Object.getOwnPropertySymbols(socket).find((s) => s.description === "state symbol")!;
		(socket as unknown as Record<symbol, { handle: { recvStop(): number } }>)[state].handle.recvStop();
		return { id, got, batches: () => batches };
	}

	test("datagrams arrive byte-exact and in order, many per call; one too large for a slot is reported as such", async () => {
		const rx = await bound("udp4", "127.0.0.1");
		sockets.push(rx);
		rx.setRecvBufferSize(4 * 1024 * 1024);
		const tx = await bound("udp4", "127.0.0.1");
		sockets.push(tx);
		const r = startRaw(rx);
		const sent: Buffer[] = [];
		for (let seq = 0; seq < 300; seq++) {
			const data = payload(1, seq, 1 + ((seq * 97) % 2048));
			sent.push(data);
			tx.send(data, rx.address().port, "127.0.0.1");
		}
		tx.send(Buffer.alloc(5000, 7), rx.address().port, "127.0.0.1");
		await until(() => r.got.length >= 301, 5000, "every datagram to arrive");
		udp.recvStop(r.id);
		for (const [k, want] of sent.entries()) {
			assert.ok(r.got[k].data.equals(want), `datagram ${k} differs (order or bytes)`);
			assert.equal(r.got[k].port, tx.address().port);
			assert.equal(r.got[k].family, 4);
			assert.equal(r.got[k].address, "127.0.0.1");
		}
		assert.equal(r.got[300].data.length, 0, "the 5000-byte datagram is flagged, not delivered in part");
		assert.ok(r.batches() < 301, `${r.batches()} calls for 301 datagrams: batched`);
	});

	test("a dual-stack socket reports IPv4 sources as ::ffff:a.b.c.d and IPv6 ones as dgram writes them", async () => {
		const rx = await bound("udp6", "::");
		sockets.push(rx);
		const r = startRaw(rx);
		const v4 = await bound("udp4", "127.0.0.1");
		const v6 = await bound("udp6", "::1");
		sockets.push(v4, v6);
		v4.send(Buffer.from("four"), rx.address().port, "127.0.0.1");
		await until(() => r.got.length >= 1, 5000, "the IPv4 datagram");
		v6.send(Buffer.from("six"), rx.address().port, "::1");
		await until(() => r.got.length >= 2, 5000, "the IPv6 datagram");
		udp.recvStop(r.id);
		assert.deepEqual(
			r.got.map((g) => [g.data.toString(), g.family, g.address, g.port]),
			[
				["four", 6, "::ffff:127.0.0.1", v4.address().port],
				["six", 6, "::1", v6.address().port],
			],
		);
	});

	test("recvStop closes the addon's copy of the fd; a second recvStop is ignored", async () => {
		const rx = await bound("udp4", "127.0.0.1");
		assert.equal(fdsOf(rx), 1);
		const r = startRaw(rx);
		assert.equal(fdsOf(rx), 2, "one dup of the socket's fd");
		udp.recvStop(r.id);
		udp.recvStop(r.id); // twice: ignored
		await until(() => fdsOf(rx) === 1, 2000, "the dup to be closed");
		await new Promise<void>((resolve) => rx.close(() => resolve()));
	});

	test("BatchReceiver: takes over a socket, hands over views, stops with the socket", async () => {
		const rx = await bound("udp4", "127.0.0.1");
		const tx = await bound("udp4", "127.0.0.1");
		sockets.push(tx);
		const link = readlinkSync(`/proc/self/fd/${fdOf(rx)}`);
		const stats = { recvSyscalls: 0, garbage: 0 };
		const got: string[] = [];
		const receiver = BatchReceiver.start(rx, udp, stats, (packet, rinfo) => {
			got.push(`${packet.toString()} ${rinfo.address}:${rinfo.port === tx.address().port}`);
		});
		assert.ok(receiver !== null);
		assert.equal(fdsOf(rx), 2);
		rx.on("message", () => assert.fail("dgram must not deliver while the addon reads"));
		for (let i = 0; i < 20; i++) tx.send(Buffer.from(`p${i}`), rx.address().port, "127.0.0.1");
		tx.send(Buffer.alloc(RECV_SLOT_SIZE + 1), rx.address().port, "127.0.0.1");
		await until(() => got.length >= 20 && stats.garbage === 1, 5000, "20 datagrams and the oversized one");
		assert.deepEqual(
			got,
			Array.from({ length: 20 }, (_, i) => `p${i} 127.0.0.1:true`),
		);
		assert.ok(stats.recvSyscalls >= 1 && stats.recvSyscalls <= 21);
		await new Promise<void>((resolve) => rx.close(() => resolve()));
		// libuv closes the handle (and the addon the dup) in a later loop iteration's close phase.
		await until(() => !fdLinks().includes(link), 2000, "the socket and the addon's dup to be closed");
	});

	test("a socket error (EPOLLERR, an ICMP error with IP_RECVERR) does not stop the receiver", async () => {
		const rx = await bound("udp4", "127.0.0.1");
		const tx = await bound("udp4", "127.0.0.1");
		const gone = await bound("udp4", "127.0.0.1");
		const closedPort = gone.address().port;
		await new Promise<void>((resolve) => gone.close(() => resolve()));
		sockets.push(rx, tx);
		udp.setRecvErrorsForTesting(fdOf(rx), false);
		const r = startRaw(rx);
		// To a closed port: the ICMP port-unreachable lands in rx's error queue and raises EPOLLERR,
		// on which libuv stops a poll handle.
		rx.send(Buffer.from("nobody"), closedPort, "127.0.0.1");
		await new Promise((resolve) => setTimeout(resolve, 50));
		tx.send(Buffer.from("after the error"), rx.address().port, "127.0.0.1");
		await until(() => r.got.length >= 1, 3000, "the datagram sent after the socket error");
		assert.equal(r.got[0].data.toString(), "after the error");
		udp.recvStop(r.id);
	});

	test("a worker thread that ends while receiving: the environment's cleanup closes the receiver", async () => {
		const source = `
			const dgram = require("node:dgram");
			const { workerData } = require("node:worker_threads");
			const udp = require(workerData.addon);
			const socket = dgram.createSocket("udp4");
			socket.bind(0, "127.0.0.1", () => {
				const symbol = Object.getOwnPropertySymbols(socket).find((s) => s.description === "state symbol");
				const handle = socket[symbol].handle;
				udp.recvStart(handle.fd, new Uint8Array(4096), 2048, new Int32Array(2 * ${RECV_META}), () => {});
				handle.recvStop();
				process.exit(0);
			});`;
		const worker = new Worker(source, { eval: true, workerData: { addon: ADDON_UNDER_TEST ?? udpNativePath(false) } });
		const code = await new Promise<number>((resolve, reject) => {
			worker.once("error", reject);
			worker.once("exit", resolve);
		});
		assert.equal(code, 0);
	});

	test("bad arguments throw", async () => {
		const rx = await bound("udp4", "127.0.0.1");
		sockets.push(rx);
		const fd = fdOf(rx);
		const slots = new Uint8Array(4096);
		const meta = new Int32Array(2 * RECV_META);
		const noop = () => {};
		assert.throws(() => udp.recvStart(fd, slots, 0, meta, noop), RangeError);
		assert.throws(() => udp.recvStart(fd, slots, 8192, meta, noop), /at least one slot/);
		assert.throws(() => udp.recvStart(fd, slots, 1024, meta, noop), /RECV_META entries per slot/);
		assert.throws(() => udp.recvStart(fd, slots, 2048, meta, null as unknown as () => void), TypeError);
		assert.throws(() => udp.recvStart(fd, new Int32Array(8) as unknown as Uint8Array, 2048, meta, noop), TypeError);
		assert.throws(() => udp.recvStart(1_000_000, slots, 2048, meta, noop), /dup of fd/);
		assert.throws(() => udp.addressString(meta, 5), /past the end/);
		assert.throws(() => udp.addressString(new Int32Array(RECV_META), 0), /no address/);
	});
});

test("the sanitizer build (ASan + UBSan) passes the checks above", {
	skip: ADDON_UNDER_TEST !== undefined || SKIP,
	timeout: 180_000,
}, () => {
	assert.equal(NO_COMPILER, null, `${NO_COMPILER} (CI=true requires one)`);
	const built = spawnSync(process.execPath, [join(REPO, "native", "build.mjs"), "--sanitize"], { encoding: "utf8" });
	assert.equal(built.status, 0, `sanitized build failed:\n${built.stdout}${built.stderr}`);
	const runtime = spawnSync("gcc", ["-print-file-name=libasan.so"], { encoding: "utf8" }).stdout.trim();
	assert.ok(runtime.startsWith("/") && existsSync(runtime), `gcc does not know where libasan.so is (${runtime})`);
	// Not NODE_TEST_CONTEXT: the child would then report in the runner's binary protocol.
	const { NODE_TEST_CONTEXT: _, ...env } = process.env;
	const child = spawnSync(process.execPath, [join(REPO, "test", "native-udp.test.ts")], {
		encoding: "utf8",
		timeout: 150_000,
		env: {
			...env,
			MOQ_FANOUT_TEST_UDP_ADDON: udpNativePath(true),
			LD_PRELOAD: runtime,
			// V8 and Node allocate for the process lifetime: leak reports would be theirs, not ours.
			ASAN_OPTIONS: "detect_leaks=0:abort_on_error=1",
			UBSAN_OPTIONS: "halt_on_error=1:print_stacktrace=1",
		},
	});
	const output = `${child.stdout}\n${child.stderr}`;
	assert.doesNotMatch(output, /AddressSanitizer|runtime error:/, output);
	assert.equal(child.status, 0, `the checks failed under the sanitizers:\n${output}`);
	assert.match(child.stdout, /^. pass [1-9]/m);
	assert.match(child.stdout, /^. fail 0$/m);
	assert.match(child.stdout, /^. skipped 1$/m, "only the sanitizer test itself is skipped in the child");
});
