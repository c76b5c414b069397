/**
 * Loads native/build/udp.node, the batched UDP egress addon (native/udp.c), once per thread.
 *
 * The addon is optional: it is compiled at `npm install` by native/build.mjs with the system C
 * compiler, which a host may lack. Without it (or with MOQ_FANOUT_NATIVE_UDP=0) every packet goes
 * out through `dgram.send`, as before the addon existed; `loadUdpNative()` then returns null and
 * `udpNativeUnavailable()` says why, for the one log line the relay writes about it.
 *
 * `createRequire` per thread: each worker thread loads the addon into its own environment (the
 * addon keeps its per-socket state in that environment's instance data).
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

/** Bumped with native/udp.c's ABI_VERSION: a build older than the sources is not used. */
export const UDP_NATIVE_ABI_VERSION = 4;

/** Slots of the `out` array that `sendBatch` fills (native/udp.c OUT_*). */
export const OutSlot = {
	syscalls: 0,
	gsoPackets: 1,
	singlePackets: 2,
	gsoFallbacks: 3,
	dropped: 4,
	stop: 5,
	errno: 6,
	count: 7,
} as const;

/** Int32 entries per datagram in recvStart's `meta` (native/udp.c RECV_META). */
export const RECV_META = 7;

/** Slots of the array `mallocInfo` fills (native/udp.c MEM_*), bytes. */
export const MallocSlot = {
	/** Arena heap bytes (the main arena's sbrk heap and the threads' arena heaps). */
	arena: 0,
	/** Bytes in blocks malloc mmapped on their own (large allocations). */
	mmapped: 1,
	/** Bytes in use by the program (allocated and not freed, mmapped blocks included). */
	inUse: 2,
	/** Free bytes malloc holds in its arenas (RSS the program no longer uses, until trimmed). */
	free: 3,
	/** Free bytes at the top of the main arena, which trimming returns first. */
	releasable: 4,
	count: 5,
} as const;

/** Slots of the array `receiveQueue` fills (native/udp.c QUEUE_*). */
export const QueueSlot = {
	/** Bytes waiting in the socket's receive queue (buffer truesize, what counts against SO_RCVBUF). */
	bytes: 0,
	/** Datagrams the kernel dropped on arrival since the socket was created; 32 bits, wrapping. */
	drops: 1,
	count: 2,
} as const;

/** Why a batch stopped early (out[OutSlot.stop]). */
export const StopReason = { none: 0, wouldBlock: 1, socketError: 2 } as const;

export interface UdpNativeConstants {
	abiVersion: number;
	maxBatchPackets: number;
	maxGsoSegments: number;
	maxGsoBytes: number;
	addressStride: number;
	flagGso: number;
	outSlots: number;
	stopWouldBlock: number;
	stopSocketError: number;
	maxRecvBatch: number;
	recvMeta: number;
}

/** The addon's functions (native/udp.c documents each). */
export interface UdpNative {
	/**
	 * Sends packets [0, count): packet i at `packets[i * slotSize]`, its length `meta[2i]`, its
	 * destination entry `meta[2i + 1]` of `addresses`. Returns how many packets, from the first,
	 * were sent (or dropped for their destination); `out` gets this call's figures (OutSlot).
	 */
	sendBatch(
		fd: number,
		packets: Uint8Array,
		slotSize: number,
		meta: Int32Array,
		count: number,
		addresses: Uint8Array,
		flags: number,
		out: Float64Array,
	): number;
	/** Writes the sockaddr of (address, port), as a socket of that family takes it, at `offset`. */
	writeSockaddr(target: Uint8Array, offset: number, address: string, port: number, ipv6Socket: boolean): void;
	/** The socket closed: drop its state (its fd number may come back for another socket). */
	forgetSocket(fd: number): void;
	/** Whether GSO works on `fd` (null before the first GSO send on it). */
	gsoEnabled(fd: number): boolean | null;
	/** Tests only: IP_RECVERR / IPV6_RECVERR, so an ICMP error raises EPOLLERR on the socket. */
	setRecvErrorsForTesting(fd: number, ipv6: boolean): void;
	/** Tests only: SO_NO_CHECK, which makes the kernel refuse UDP_SEGMENT with EINVAL. */
	setNoChecksumForTesting(fd: number, on: boolean): void;
	/**
	 * The C allocator's process-wide figures into `out` (MallocSlot); false where the C library has
	 * no mallinfo2 (not glibc, or glibc before 2.33).
	 */
	mallocInfo(out: Float64Array): boolean;
	/**
	 * Batched ingress (receiver.ts): polls a dup of `fd` and reads datagrams with recvmmsg into
	 * `slots` (slot i at i × slotSize), describing each in `meta` (native/udp.c RECV_*), then calls
	 * `onBatch(count)` once per recvmmsg. Returns the receiver's id for `recvStop`.
	 */
	recvStart(
		fd: number,
		slots: Uint8Array,
		slotSize: number,
		meta: Int32Array,
		onBatch: (count: number) => void,
	): number;
	/** Stops a receiver and closes its copy of the fd. */
	recvStop(id: number): void;
	/** Whether a receiver keeps the event loop alive (socket.ref() / unref() for dgram's reading). */
	recvRef(id: number, ref: boolean): void;
	/** The source address of datagram `index` of the last batch, as dgram writes it. */
	addressString(meta: Int32Array, index: number): string;
	/**
	 * The receive queue of socket `fd` (SO_MEMINFO) into `out` (QueueSlot); false where the kernel
	 * lacks SO_MEMINFO or `fd` is not a socket.
	 */
	receiveQueue(fd: number, out: Float64Array): boolean;
	/** malloc_trim(0): hands free pages of every malloc arena back to the kernel; true if any were. */
	mallocTrim(): boolean;
	readonly constants: UdpNativeConstants;
}

const require = createRequire(import.meta.url);

/** The package root: src/quic/ and dist/quic/ are both two levels below it. */
const PACKAGE_ROOT = join(import.meta.dirname, "..", "..");

/** Where native/build.mjs writes the addon (`sanitized`: the ASan/UBSan build for tests). */
export function udpNativePath(sanitized = false): string {
	return join(PACKAGE_ROOT, "native", "build", sanitized ? "udp-sanitized.node" : "udp.node");
}

let loaded: UdpNative | null | undefined;
let unavailableReason = "";

/**
 * Loads the addon at `path` (tests load the sanitized build this way); throws when it is missing,
 * fails to load, or was built from other sources than this code expects.
 */
export function loadUdpNativeFrom(path: string): UdpNative {
	const addon = require(path) as UdpNative;
	if (addon.constants?.abiVersion !== UDP_NATIVE_ABI_VERSION) {
		throw new Error(
			`${path} has ABI version ${addon.constants?.abiVersion}, this code needs ${UDP_NATIVE_ABI_VERSION}: rebuild it (node native/build.mjs)`,
		);
	}
	if (addon.constants.outSlots !== OutSlot.count) throw new Error(`${path}: unexpected out layout`);
	if (addon.constants.recvMeta !== RECV_META) throw new Error(`${path}: unexpected receive layout`);
	return addon;
}

/** This thread's addon, or null when it is disabled or cannot be loaded (then `dgram` sends). */
export function loadUdpNative(): UdpNative | null {
	if (loaded !== undefined) return loaded;
	loaded = null;
	if (process.env.MOQ_FANOUT_NATIVE_UDP === "0") {
		unavailableReason = "disabled by MOQ_FANOUT_NATIVE_UDP=0";
		return null;
	}
	if (process.platform !== "linux") {
		unavailableReason = `GSO and sendmmsg are Linux-only (platform ${process.platform})`;
		return null;
	}
	const path = udpNativePath();
	if (!existsSync(path)) {
		unavailableReason = `${path} is missing (no C compiler at install? build it with: node native/build.mjs)`;
		return null;
	}
	try {
		loaded = loadUdpNativeFrom(path);
	} catch (err) {
		unavailableReason = `${path} failed to load: ${(err as Error).message}`;
	}
	return loaded;
}

/** Why `loadUdpNative()` returned null ("" when it did not). */
export function udpNativeUnavailable(): string {
	loadUdpNative();
	return unavailableReason;
}
