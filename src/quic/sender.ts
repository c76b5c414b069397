/**
 * Outgoing packets for one UDP socket: a pool of send buffers and the FIFO that returns them.
 *
 * An unconnected `dgram.send()` reads its buffer on a later tick (after the address lookup), so a
 * buffer cannot be reused before its send callback runs (reusing one buffer within a flush was
 * seen to send N copies of the last packet). Allocating per packet costs ~1 µs, so buffers are pooled.
 *
 * Sends on one socket complete in order (libuv only sends synchronously when its queue is empty),
 * so one shared callback can return the oldest in-flight buffer: no closure per packet.
 */
import type dgram from "node:dgram";

/** Payload buffers are sized for the largest UDP payload quiche writes (MAX_SEND_UDP_PAYLOAD). */
export const PACKET_BUFFER_SIZE = 1500;
/** Buffers kept in the pool beyond this are left to the GC (after a burst). */
const MAX_POOLED = 4096;

export interface SenderStats {
	packetsOut: number;
	bytesOut: number;
	sendErrors: number;
}

export class PacketSender {
	readonly socket: dgram.Socket;
	private readonly stats: SenderStats;
	private readonly pool: Buffer[] = [];
	private readonly inFlight: Buffer[] = [];
	private inFlightHead = 0;

	constructor(socket: dgram.Socket, stats: SenderStats) {
		this.socket = socket;
		this.stats = stats;
	}

	/** A buffer to write one packet into; give it back with `send` or `release`. */
	acquire(): Buffer {
		return this.pool.pop() ?? Buffer.allocUnsafe(PACKET_BUFFER_SIZE);
	}

	/** Returns an unused buffer to the pool. */
	release(buf: Buffer): void {
		if (this.pool.length < MAX_POOLED) this.pool.push(buf);
	}

	/** Sends `buf[0, length)`; the buffer returns to the pool when the socket is done with it. */
	send(buf: Buffer, length: number, port: number, host: string): void {
		this.inFlight.push(buf);
		this.stats.packetsOut++;
		this.stats.bytesOut += length;
		try {
			this.socket.send(buf, 0, length, port, host, this.onSent);
		} catch {
			// Socket closed (or bad address): no callback will come for this buffer.
			this.inFlight.pop();
			this.stats.sendErrors++;
		}
	}

	/** Buffers handed to the socket and not yet returned. */
	get pending(): number {
		return this.inFlight.length - this.inFlightHead;
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
}
