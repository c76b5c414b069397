/**
 * Outgoing packets for one UDP socket, sent in batches by the native addon (udp-native.ts) or one
 * by one with `dgram.send`.
 *
 * Batched (the addon loaded, `[server.quic] gso` on): `acquire()` hands out the next slot of a
 * preallocated batch buffer, quiche writes a packet into it, `send()`/`sendTo()` record its length
 * and destination, and the whole batch leaves in one `sendBatch` call when it is full or at the end
 * of the driver's flush turn (driver.ts), so every packet of a turn leaves in that turn. The addon
 * groups same-destination, same-size runs into GSO super-packets and sends them all with sendmmsg:
 * 1.1 µs per packet against 7.6 µs for dgram.send (docs/quic-performance.md).
 *
 * What the addon does not send goes through dgram, in batch order:
 * - the socket's send buffer is full (EAGAIN/ENOBUFS): libuv queues the rest and sends it when the
 *   socket is writable. While any dgram send is unfinished, later batches go through dgram too, so
 *   nothing overtakes a queued packet (no reordering within a destination) and nothing is lost;
 * - the socket is not bound yet, was closed, or the addon reported a socket-level error (from then
 *   on this sender uses dgram only).
 *
 * dgram path: an unconnected `dgram.send()` reads its buffer on a later tick (after the address
 * lookup), so a buffer cannot be reused before its send callback runs (reusing one buffer within a
 * flush was seen to send N copies of the last packet). Allocating per packet costs ~1 µs, so
 * buffers are pooled. Sends on one socket complete in order (libuv only sends synchronously when
 * its queue is empty), so one shared callback can return the oldest in-flight buffer: no closure
 * per packet.
 */
import type dgram from "node:dgram";
import { driver } from "./driver.ts";
import { OutSlot, StopReason, type UdpNative } from "./udp-native.ts";

/** Payload buffers are sized for the largest UDP payload quiche writes (MAX_SEND_UDP_PAYLOAD). */
export const PACKET_BUFFER_SIZE = 1500;
/** Buffers kept in the pool beyond this are left to the GC (after a burst). */
const MAX_POOLED = 4096;
/**
 * Packets per batch. A connection writes at most 64 packets per flush (connection.ts), so a batch
 * holds whole flushes of several connections; 256 × 1500 B = 375 KiB per socket, allocated on the
 * first batched packet. A full batch is sent at once.
 */
export const BATCH_PACKETS = 256;
/** Bytes per address-table entry (native/udp.c ADDRESS_STRIDE: a sockaddr_in6, padded). */
const ADDRESS_STRIDE = 32;
/** sendBatch flags: GSO allowed (native/udp.c FLAG_GSO). */
const GSO = 1;
const EMPTY_BUFFER = Buffer.alloc(0);

export interface SenderStats {
	packetsOut: number;
	bytesOut: number;
	sendErrors: number;
	/** Packets that left inside GSO super-packets (2+ segments). */
	packetsOutGso: number;
	/** Packets the addon sent as a message of their own (no same-size neighbour, or GSO off). */
	packetsOutBatched: number;
	/** Packets sent with dgram.send. */
	packetsOutDgram: number;
	/** Send syscalls: the addon's sendmmsg calls plus one per dgram.send. */
	sendSyscalls: number;
	/** Sockets on which GSO was turned off (UDP_SEGMENT refused) or the addon given up. */
	gsoFallbacks: number;
	/** Batches cut short by a full socket send buffer (the rest went through dgram). */
	sendStalls: number;
}

/**
 * Where a connection's packets go. Built once per connection (and again if the peer's address
 * changes); the sender caches its sockaddr here so a batch copies 32 bytes per destination
 * instead of parsing the address per packet.
 */
export class UdpDestination {
	readonly host: string;
	readonly port: number;
	/** The sockaddr in the form the sender's socket takes; empty when the address is unusable. */
	sockaddr: Uint8Array | null = null;
	/** The batch whose address table holds this destination, and at which entry. */
	batchEpoch = 0;
	batchEntry = 0;

	constructor(host: string, port: number) {
		this.host = host;
		this.port = port;
	}
}

/** Batch numbers, unique per thread, so a destination knows whether the current batch lists it. */
let lastBatchEpoch = 0;

/**
 * What the addon's users need of dgram's internal state: the libuv handle, whose fd the addon
 * writes to (and reads from, receiver.ts, after stopping libuv's own reading with `recvStop`).
 */
export interface DgramState {
	handle: { fd: number; recvStop?: () => number } | null;
}

/**
 * Node keeps the handle under a symbol ("state symbol"); the public `_handle` getter reads the
 * same object but prints a deprecation warning (DEP0112). Null for a socket stand-in.
 */
export function dgramState(socket: dgram.Socket): DgramState | null {
	for (const symbol of Object.getOwnPropertySymbols(socket)) {
		if (symbol.description === "state symbol") {
			const state = (socket as unknown as Record<symbol, DgramState | undefined>)[symbol];
			if (state !== undefined && typeof state === "object" && "handle" in state) return state;
		}
	}
	return null;
}

export class PacketSender {
	readonly socket: dgram.Socket;
	/** Set while the driver holds this sender for its end-of-turn flush (driver.ts). */
	queuedForFlush = false;
	private readonly stats: SenderStats;
	private readonly pool: Buffer[] = [];
	private readonly inFlight: Buffer[] = [];
	private inFlightHead = 0;

	/** The addon; null sends everything with dgram (no addon, `gso = false`, or given up). */
	private udp: UdpNative | null;
	/** The addon this sender started with: told when the socket closes, even after giving up. */
	private readonly addon: UdpNative | null;
	private readonly socketState: DgramState | null;
	private readonly ipv6Socket: boolean;
	/** The fd the addon last sent on (forgotten by the addon when the socket closes). */
	private fd = -1;
	private slots: Buffer = EMPTY_BUFFER;
	private slotViews: Buffer[] = [];
	/** Per slot i: the slots from i to the end of the batch, as one buffer (runBuffer). */
	private runViews: Buffer[] = [];
	/** Per packet: [2i] its length, [2i + 1] its destination's entry in `addresses`. */
	private meta = new Int32Array(0);
	private addresses = new Uint8Array(0);
	/** Per packet, for the dgram fallback: where it goes. */
	private slotHosts: string[] = [];
	private slotPorts = new Uint16Array(0);
	private readonly out = new Float64Array(OutSlot.count);
	private batchCount = 0;
	private addressCount = 0;
	private batchEpoch = ++lastBatchEpoch;

	/** `udp`: the addon to batch with, or null to send every packet with dgram.send. */
	constructor(socket: dgram.Socket, stats: SenderStats, udp: UdpNative | null = null) {
		this.socket = socket;
		this.stats = stats;
		// A socket whose `send` was replaced (a test's lossy link, a proxy) keeps the dgram path, so
		// the replacement sees every packet.
		this.socketState = udp === null || Object.hasOwn(socket, "send") ? null : dgramState(socket);
		this.udp = this.socketState === null ? null : udp;
		this.addon = this.udp;
		this.ipv6Socket = (socket as unknown as { type?: string }).type === "udp6";
		if (this.addon !== null) socket.once("close", this.onSocketClose);
	}

	/** Whether packets are batched through the addon (false: dgram.send each). */
	get batching(): boolean {
		return this.udp !== null;
	}

	/**
	 * A buffer to write one packet into; give it back with `send`/`sendTo` or `release` before
	 * acquiring the next (batched, it is the batch's next free slot, the same until it is used).
	 */
	acquire(): Buffer {
		if (this.udp !== null) {
			if (this.slotViews.length === 0) this.allocateBatch();
			return this.slotViews[this.batchCount];
		}
		return this.pool.pop() ?? Buffer.allocUnsafe(PACKET_BUFFER_SIZE);
	}

	/**
	 * Batched only (`batching`): how many batch slots are free from the next one on (at least 1: a
	 * full batch has been sent). `runBuffer()` spans them, slot k at k × PACKET_BUFFER_SIZE; an
	 * engine that builds several packets per call (ngtcp2's sendBatch) writes them there, and
	 * `commitRun` records them: each packet is written once, in the slot it is sent from.
	 */
	runRoom(): number {
		if (this.slotViews.length === 0) this.allocateBatch();
		return BATCH_PACKETS - this.batchCount;
	}

	/** The free slots from the next one on, as one buffer (see `runRoom`). */
	runBuffer(): Buffer {
		if (this.slotViews.length === 0) this.allocateBatch();
		return this.runViews[this.batchCount];
	}

	/**
	 * Records `count` packets (lengths in `sizes`) written into `runBuffer()`'s first `count` slots,
	 * all to `destination`; as many `sendTo` calls without the copy. Sends the batch when it is full.
	 */
	commitRun(sizes: Uint16Array, count: number, destination: UdpDestination): void {
		const udp = this.udp;
		if (count <= 0) return;
		if (udp === null || count > BATCH_PACKETS - this.batchCount) throw new RangeError("commitRun: not a free run");
		if (destination.batchEpoch !== this.batchEpoch) {
			let sockaddr = destination.sockaddr;
			if (sockaddr === null) sockaddr = destination.sockaddr = this.buildSockaddr(udp, destination);
			if (sockaddr.length === 0) {
				// Unreachable from this socket (see sendTo): dropped, as dgram.send would fail too.
				this.stats.packetsOut += count;
				this.stats.sendErrors += count;
				return;
			}
			this.addresses.set(sockaddr, this.addressCount * ADDRESS_STRIDE);
			destination.batchEpoch = this.batchEpoch;
			destination.batchEntry = this.addressCount++;
		}
		const entry = destination.batchEntry;
		const host = destination.host;
		const port = destination.port;
		const meta = this.meta;
		let bytes = 0;
		let i = this.batchCount;
		for (let k = 0; k < count; k++, i++) {
			const length = sizes[k];
			bytes += length;
			meta[2 * i] = length;
			meta[2 * i + 1] = entry;
			this.slotHosts[i] = host;
			this.slotPorts[i] = port;
		}
		this.stats.packetsOut += count;
		this.stats.bytesOut += bytes;
		this.batchCount = i;
		if (!this.queuedForFlush) {
			this.queuedForFlush = true;
			driver().flushAtEndOfTurn(this);
		}
		if (this.batchCount === BATCH_PACKETS) this.sendBatchNow();
	}

	/** Returns an unused buffer (a batch slot simply stays free). */
	release(buf: Buffer): void {
		if (buf.buffer === this.slots.buffer) return;
		if (this.pool.length < MAX_POOLED) this.pool.push(buf);
	}

	/** Sends `buf[0, length)` to a connection's destination. */
	sendTo(buf: Buffer, length: number, destination: UdpDestination): void {
		this.stats.packetsOut++;
		this.stats.bytesOut += length;
		const udp = this.udp;
		if (udp === null) {
			this.sendWithDgram(buf, length, destination.port, destination.host);
			return;
		}
		if (this.slotViews.length === 0) this.allocateBatch();
		if (destination.batchEpoch !== this.batchEpoch) {
			let sockaddr = destination.sockaddr;
			if (sockaddr === null) sockaddr = destination.sockaddr = this.buildSockaddr(udp, destination);
			if (sockaddr.length === 0) {
				// An address this socket cannot reach (IPv6 on an IPv4 socket): dgram.send would fail too.
				this.stats.sendErrors++;
				return;
			}
			this.addresses.set(sockaddr, this.addressCount * ADDRESS_STRIDE);
			destination.batchEpoch = this.batchEpoch;
			destination.batchEntry = this.addressCount++;
		}
		this.record(buf, length, destination.batchEntry, destination.host, destination.port);
	}

	/** Sends `buf[0, length)` to (host, port): stateless packets (Retry, version negotiation). */
	send(buf: Buffer, length: number, port: number, host: string): void {
		this.stats.packetsOut++;
		this.stats.bytesOut += length;
		const udp = this.udp;
		if (udp === null) {
			this.sendWithDgram(buf, length, port, host);
			return;
		}
		if (this.slotViews.length === 0) this.allocateBatch();
		try {
			udp.writeSockaddr(this.addresses, this.addressCount * ADDRESS_STRIDE, host, port, this.ipv6Socket);
		} catch {
			this.stats.sendErrors++;
			return;
		}
		this.record(buf, length, this.addressCount++, host, port);
	}

	/**
	 * Sends the batch now. The driver calls it at the end of each flush turn for every sender that
	 * recorded a packet; the owner calls it before closing the socket.
	 */
	flushBatch(): void {
		this.queuedForFlush = false;
		this.sendBatchNow();
	}

	/** Buffers handed to dgram and not yet returned. */
	get pending(): number {
		return this.inFlight.length - this.inFlightHead;
	}

	private sendBatchNow(): void {
		const count = this.batchCount;
		if (count === 0) return;
		let done = 0;
		const udp = this.udp;
		// A dgram send still unfinished may sit in libuv's queue: a packet sent now would overtake it.
		if (udp !== null && this.pending === 0) {
			const fd = this.socketState?.handle?.fd ?? -1;
			if (fd >= 0) done = this.sendNative(udp, fd, count);
		}
		for (let i = done; i < count; i++) this.sendSlotWithDgram(i);
		this.batchCount = 0;
		this.addressCount = 0;
		this.batchEpoch = ++lastBatchEpoch;
	}

	private allocateBatch(): void {
		// Its own ArrayBuffer (allocUnsafeSlow): `release` recognises slots by it.
		this.slots = Buffer.allocUnsafeSlow(BATCH_PACKETS * PACKET_BUFFER_SIZE);
		for (let i = 0; i < BATCH_PACKETS; i++) {
			this.slotViews.push(this.slots.subarray(i * PACKET_BUFFER_SIZE, (i + 1) * PACKET_BUFFER_SIZE));
			this.runViews.push(this.slots.subarray(i * PACKET_BUFFER_SIZE));
		}
		this.meta = new Int32Array(2 * BATCH_PACKETS);
		this.addresses = new Uint8Array(BATCH_PACKETS * ADDRESS_STRIDE);
		this.slotHosts = new Array<string>(BATCH_PACKETS).fill("");
		this.slotPorts = new Uint16Array(BATCH_PACKETS);
	}

	private buildSockaddr(udp: UdpNative, destination: UdpDestination): Uint8Array {
		const sockaddr = new Uint8Array(ADDRESS_STRIDE);
		try {
			udp.writeSockaddr(sockaddr, 0, destination.host, destination.port, this.ipv6Socket);
			return sockaddr;
		} catch {
			return EMPTY_BUFFER;
		}
	}

	private record(buf: Buffer, length: number, entry: number, host: string, port: number): void {
		const i = this.batchCount;
		const slot = this.slotViews[i];
		// Not the slot `acquire` handed out (a caller's own buffer): copy it in (~50 ns per KB).
		if (buf !== slot) slot.set(buf.subarray(0, length));
		this.meta[2 * i] = length;
		this.meta[2 * i + 1] = entry;
		this.slotHosts[i] = host;
		this.slotPorts[i] = port;
		this.batchCount = i + 1;
		if (!this.queuedForFlush) {
			this.queuedForFlush = true;
			driver().flushAtEndOfTurn(this);
		}
		// Full: out now (the driver still flushes what follows at the end of the turn).
		if (this.batchCount === BATCH_PACKETS) this.sendBatchNow();
	}

	/** One sendBatch call; returns how many packets, from the first, it consumed. */
	private sendNative(udp: UdpNative, fd: number, count: number): number {
		const out = this.out;
		const stats = this.stats;
		let done: number;
		try {
			done = udp.sendBatch(fd, this.slots, PACKET_BUFFER_SIZE, this.meta, count, this.addresses, GSO, out);
		} catch {
			// The addon refused its arguments: a bug on this side, and nothing was sent. dgram from now on.
			this.giveUpNative();
			return 0;
		}
		this.fd = fd;
		stats.sendSyscalls += out[OutSlot.syscalls];
		stats.packetsOutGso += out[OutSlot.gsoPackets];
		stats.packetsOutBatched += out[OutSlot.singlePackets];
		stats.gsoFallbacks += out[OutSlot.gsoFallbacks];
		stats.sendErrors += out[OutSlot.dropped];
		const stop = out[OutSlot.stop];
		if (stop === StopReason.wouldBlock) stats.sendStalls++;
		else if (stop === StopReason.socketError) this.giveUpNative();
		return done;
	}

	private giveUpNative(): void {
		this.udp = null;
		this.stats.gsoFallbacks++;
	}

	private sendSlotWithDgram(i: number): void {
		const length = this.meta[2 * i];
		const buf = this.pool.pop() ?? Buffer.allocUnsafe(PACKET_BUFFER_SIZE);
		const start = i * PACKET_BUFFER_SIZE;
		this.slots.copy(buf, 0, start, start + length);
		this.sendWithDgram(buf, length, this.slotPorts[i], this.slotHosts[i]);
	}

	/** dgram.send of `buf[0, length)`; the buffer returns to the pool when the socket is done with it. */
	private sendWithDgram(buf: Buffer, length: number, port: number, host: string): void {
		if (buf.buffer === this.slots.buffer) {
			// A batch slot (the addon was given up between acquire and send): slots are reused at once.
			const copy = this.pool.pop() ?? Buffer.allocUnsafe(PACKET_BUFFER_SIZE);
			buf.copy(copy, 0, 0, length);
			buf = copy;
		}
		this.inFlight.push(buf);
		this.stats.packetsOutDgram++;
		this.stats.sendSyscalls++;
		try {
			this.socket.send(buf, 0, length, port, host, this.onSent);
		} catch {
			// Socket closed (or bad address): no callback will come for this buffer.
			this.inFlight.pop();
			this.stats.sendErrors++;
		}
	}

	private readonly onSent = (err: Error | null): void => {
		if (err) this.stats.sendErrors++;
		const buf = this.inFlight[this.inFlightHead];
		this.inFlight[this.inFlightHead++] = undefined as unknown as Buffer;
		if (this.inFlightHead >= 1024 && this.inFlightHead * 2 >= this.inFlight.length) {
			this.inFlight.splice(0, this.inFlightHead);
			this.inFlightHead = 0;
		}
		if (buf !== undefined && this.pool.length < MAX_POOLED) this.pool.push(buf);
	};

	/** The fd number may be reused by the next socket: the addon must not keep its GSO verdict. */
	private readonly onSocketClose = (): void => {
		if (this.fd >= 0) this.addon?.forgetSocket(this.fd);
		this.fd = -1;
	};
}
