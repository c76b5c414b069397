/**
 * The QUIC socket's kernel receive queue, read for the metrics once a second: the bytes waiting
 * in it, and the datagrams the kernel dropped because it was full.
 *
 * Why: every viewer's ACKs and every publisher's media share one socket per worker. A keyframe to
 * N viewers comes back as about 35 × N ACKs within milliseconds; when they outrun the worker, the
 * queue fills to SO_RCVBUF ([server.quic] udp_recv_buffer, capped by net.core.rmem_max) and the
 * kernel drops what arrives next, ACKs and media alike, with no error to the process. The global
 * `RcvbufErrors` of /proc/net/snmp mixes every UDP socket of the host; this is the relay's own.
 *
 * How: with the UDP addon, one getsockopt(SO_MEMINFO) per reading (sk_rmem_alloc and sk_drops);
 * without it, the socket's line of /proc/net/udp or udp6, found by the socket's inode (the same two
 * figures: rx_queue and drops). Either way nothing is done per packet. The kernel's drop count is
 * 32 bits and wraps: readings accumulate the difference modulo 2^32, so the total stays monotonic.
 */
import { readFileSync, readlinkSync } from "node:fs";
import { QueueSlot, type UdpNative } from "./udp-native.ts";

export class ReceiveQueueMeter {
	/** Bytes in the receive queue at the last reading (buffer truesize, what counts against SO_RCVBUF). */
	bytes = 0;
	/** Datagrams dropped on arrival since the socket was created. */
	drops = 0;
	/** Where the figures came from at the last reading: "sockopt", "proc", or "none" (unreadable). */
	source: "sockopt" | "proc" | "none" = "none";
	/** The kernel's count at the last reading: a socket's count starts at 0 when it is created. */
	private lastRawDrops = 0;
	private readonly out = new Float64Array(QueueSlot.count);
	private readonly addon: UdpNative | null;
	private readonly ipv6: boolean;

	/** `addon`: the UDP addon if loaded (SO_MEMINFO), else null (/proc only). */
	constructor(addon: UdpNative | null, ipv6: boolean) {
		this.addon = addon;
		this.ipv6 = ipv6;
	}

	/** Reads socket `fd`'s queue; false (figures unchanged) when neither way can read it. */
	read(fd: number): boolean {
		let bytes: number;
		let rawDrops: number;
		if (this.addon?.receiveQueue(fd, this.out)) {
			bytes = this.out[QueueSlot.bytes];
			rawDrops = this.out[QueueSlot.drops];
			this.source = "sockopt";
		} else {
			const line = readProcUdp(fd, this.ipv6);
			if (line === null) {
				this.source = "none";
				return false;
			}
			bytes = line.bytes;
			rawDrops = line.drops;
			this.source = "proc";
		}
		this.drops += (rawDrops - this.lastRawDrops + 0x1_0000_0000) % 0x1_0000_0000;
		this.lastRawDrops = rawDrops;
		this.bytes = bytes;
		return true;
	}
}

/**
 * /proc/net/udp{,6} columns after splitting on spaces: 4 is "tx_queue:rx_queue" (hex bytes), 9 the
 * inode, 12 the drops (decimal), per proc_net(5) and net/ipv4/udp.c udp4_format_sock.
 */
const COLUMN_QUEUES = 4;
const COLUMN_INODE = 9;
const COLUMN_DROPS = 12;

/** The socket's queue bytes and drop count from /proc/net/udp (udp6 for an IPv6 socket); null if not found. */
export function readProcUdp(fd: number, ipv6: boolean): { bytes: number; drops: number } | null {
	let inode: string;
	try {
		const link = readlinkSync(`/proc/self/fd/${fd}`);
		const match = /^socket:\[(\d+)\]$/.exec(link);
		if (match === null) return null;
		inode = match[1];
	} catch {
		return null;
	}
	for (const table of ipv6 ? ["/proc/net/udp6", "/proc/net/udp"] : ["/proc/net/udp", "/proc/net/udp6"]) {
		let text: string;
		try {
			text = readFileSync(table, "latin1");
		} catch {
			continue;
		}
		let at = text.indexOf(` ${inode} `);
		while (at >= 0) {
			const start = text.lastIndexOf("\n", at) + 1;
			const end = text.indexOf("\n", at);
			const fields = text
				.slice(start, end < 0 ? text.length : end)
				.trim()
				.split(/\s+/);
			// The number may also appear in another column of another line (a uid, a timer): check it is the inode.
			if (fields[COLUMN_INODE] === inode && fields.length > COLUMN_DROPS) {
				const bytes = Number.parseInt(fields[COLUMN_QUEUES].split(":")[1] ?? "", 16);
				const drops = Number(fields[COLUMN_DROPS]);
				return Number.isFinite(bytes) && Number.isFinite(drops) ? { bytes, drops } : null;
			}
			if (end < 0) break;
			at = text.indexOf(` ${inode} `, end);
		}
	}
	return null;
}
