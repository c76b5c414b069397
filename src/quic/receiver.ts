/**
 * Batched ingress for one UDP socket: the native addon (native/udp.c recvStart) reads up to
 * RECV_SLOTS datagrams per recvmmsg into one preallocated buffer and calls `onBatch` once for all
 * of them, instead of dgram's syscall, Buffer, address string and JS call per datagram (19 % of the
 * relay's CPU at 100 viewers, mostly ACKs: docs/quic-performance.md).
 *
 * Buffer lifetime: the Buffer handed to `onPacket` is a view of a slot that the next batch
 * overwrites. Everything that keeps a packet past the call copies it (the engines read it
 * synchronously; a packet forwarded to another worker is copied by postMessage), exactly as the
 * `transport/types.ts` contract asks of every receive buffer.
 *
 * Addresses: the addon reports numbers; the strings the relay compares and logs are made once per
 * source address and port and kept in a bounded cache, written as dgram writes them
 * ("::ffff:127.0.0.1" on a dual-stack socket).
 */
import type dgram from "node:dgram";
import { dgramState } from "./sender.ts";
import { RECV_META, type UdpNative } from "./udp-native.ts";

/** Datagrams per recvmmsg. */
export const RECV_SLOTS = 64;
/**
 * Bytes per slot. Both engines advertise max_udp_payload_size 1350 (RFC 9000 §18.2), so only a
 * client's first flight may be larger; a datagram that does not fit is cut by the kernel and dropped
 * here, counted as garbage (a client padding its Initials beyond 4 KiB is not one we can serve).
 */
export const RECV_SLOT_SIZE = 4096;
const META = RECV_META;
const LENGTH = 0;
const PORT = 1;
const FAMILY = 2;
const ADDR = 3;
/** Bytes 8..11 of an IPv4-mapped IPv6 address (00 00 ff ff), read as an Int32 in host order. */
const MAPPED_V4_WORD = new Int32Array(new Uint8Array([0, 0, 0xff, 0xff]).buffer)[0];
/** Source addresses remembered; past this the cache starts over (a spoofed-source flood stays bounded). */
const MAX_CACHED_SOURCES = 4096;

export interface ReceiverStats {
	/** recvmmsg calls that returned datagrams (dgram: one per datagram). */
	recvSyscalls: number;
	garbage: number;
}

export type PacketHandler = (packet: Buffer, rinfo: dgram.RemoteInfo) => void;

/**
 * Takes what it can of a batch before its datagrams are handed to the PacketHandler one by one
 * (server.ts: the ngtcp2 engine reads established connections' packets itself). `buffer` holds
 * datagram i at i * RECV_SLOT_SIZE, `meta` its length and source (native/udp.c RECV_*); it sets
 * out[i] >= 0 for each datagram it took and returns how many.
 */
export type BatchIntake = (buffer: Buffer, meta: Int32Array, count: number, out: Int32Array) => number;

export class BatchReceiver {
	private readonly udp: UdpNative;
	private readonly stats: ReceiverStats;
	private readonly onPacket: PacketHandler;
	private readonly slots = Buffer.allocUnsafeSlow(RECV_SLOTS * RECV_SLOT_SIZE);
	private readonly views: Buffer[] = [];
	private readonly meta = new Int32Array(RECV_SLOTS * META);
	private readonly sources = new Map<number | string, dgram.RemoteInfo>();
	private readonly takenOut = new Int32Array(RECV_SLOTS);
	private id = -1;
	/** See BatchIntake; set by the owner. */
	intake: BatchIntake | null = null;

	/**
	 * Takes over reading `socket` (bound) when the addon can; null when it cannot (no addon, an old
	 * build, no libuv handle): the caller keeps dgram's 'message' events then.
	 */
	static start(
		socket: dgram.Socket,
		udp: UdpNative | null,
		stats: ReceiverStats,
		onPacket: PacketHandler,
	): BatchReceiver | null {
		if (udp === null || typeof udp.recvStart !== "function") return null;
		// A socket whose `emit` was replaced (a test's lossy link, a proxy) keeps dgram's 'message'
		// events, so the replacement sees every datagram (as sender.ts keeps dgram for a replaced `send`).
		if (Object.hasOwn(socket, "emit")) return null;
		const handle = dgramState(socket)?.handle;
		if (handle == null || typeof handle.recvStop !== "function" || !(handle.fd >= 0)) return null;
		const receiver = new BatchReceiver(udp, stats, onPacket);
		// Ours first, then libuv's stops: a datagram arriving in between waits in the kernel's queue.
		receiver.id = udp.recvStart(handle.fd, receiver.slots, RECV_SLOT_SIZE, receiver.meta, receiver.onBatch);
		handle.recvStop();
		socket.once("close", () => receiver.stop());
		return receiver;
	}

	private constructor(udp: UdpNative, stats: ReceiverStats, onPacket: PacketHandler) {
		this.udp = udp;
		this.stats = stats;
		this.onPacket = onPacket;
		for (let i = 0; i < RECV_SLOTS; i++) {
			this.views.push(this.slots.subarray(i * RECV_SLOT_SIZE, (i + 1) * RECV_SLOT_SIZE));
		}
	}

	/**
	 * Whether waiting for datagrams keeps the process alive: what `socket.ref()` / `unref()` decide
	 * for dgram's own reading, which no longer runs (a shared client socket is unref'd when idle).
	 */
	setRef(ref: boolean): void {
		if (this.id >= 0) this.udp.recvRef(this.id, ref);
	}

	/** Stops reading and closes the addon's copy of the fd (idempotent). */
	stop(): void {
		if (this.id < 0) return;
		this.udp.recvStop(this.id);
		this.id = -1;
	}

	private readonly onBatch = (count: number): void => {
		this.stats.recvSyscalls++;
		const meta = this.meta;
		const taken = this.intake === null ? 0 : this.intake(this.slots, meta, count, this.takenOut);
		const out = this.takenOut;
		for (let i = 0; i < count && this.id >= 0; i++) {
			if (taken > 0 && out[i] >= 0) continue;
			const base = i * META;
			const length = meta[base + LENGTH];
			if (length < 0) {
				this.stats.garbage++;
				continue;
			}
			this.onPacket(this.views[i].subarray(0, length), this.source(base, i));
		}
	};

	/** The RemoteInfo of datagram `index` (its `size` is not kept current: nothing reads it). */
	private source(base: number, index: number): dgram.RemoteInfo {
		const meta = this.meta;
		const port = meta[base + PORT];
		let key: number | string;
		if (meta[base + FAMILY] === 4) {
			key = (meta[base + ADDR] >>> 0) * 65536 + port;
		} else if (meta[base + ADDR] === 0 && meta[base + ADDR + 1] === 0 && meta[base + ADDR + 2] === MAPPED_V4_WORD) {
			// ::ffff:a.b.c.d, the form IPv4 peers take on a dual-stack socket: a number key, no string.
			key = -((meta[base + ADDR + 3] >>> 0) * 65536 + port) - 1;
		} else {
			key = `${meta[base + ADDR]},${meta[base + ADDR + 1]},${meta[base + ADDR + 2]},${meta[base + ADDR + 3]},${port}`;
		}
		let info = this.sources.get(key);
		if (info === undefined) {
			if (this.sources.size >= MAX_CACHED_SOURCES) this.sources.clear();
			const family = meta[base + FAMILY] === 4 ? "IPv4" : "IPv6";
			info = { address: this.udp.addressString(meta, index), family, port, size: 0 };
			this.sources.set(key, info);
		}
		return info;
	}
}
