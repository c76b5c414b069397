/**
 * The machine's UDP error counters from /proc/net/snmp (Linux): RcvbufErrors counts datagrams
 * dropped because a socket's receive buffer was full, InErrors every datagram not delivered.
 * Machine-wide (relay and load together); relay-process drops per port come from procstat.udpDrops.
 * @module
 */

import { readFileSync } from "node:fs";

export interface UdpCounters {
	rcvbufErrors: number;
	inErrors: number;
}

/** Parses the two "Udp:" lines (names, then values) of /proc/net/snmp text. */
export function parseSnmpUdp(text: string): UdpCounters | null {
	const lines = text.split("\n").filter((l) => l.startsWith("Udp:"));
	if (lines.length < 2) return null;
	const names = lines[0].trim().split(/\s+/).slice(1);
	const values = lines[1].trim().split(/\s+/).slice(1).map(Number);
	const get = (name: string) => {
		const i = names.indexOf(name);
		return i >= 0 && Number.isFinite(values[i]) ? values[i] : null;
	};
	const rcvbufErrors = get("RcvbufErrors");
	const inErrors = get("InErrors");
	if (rcvbufErrors === null || inErrors === null) return null;
	return { rcvbufErrors, inErrors };
}

export function udpCounters(): UdpCounters | null {
	try {
		return parseSnmpUdp(readFileSync("/proc/net/snmp", "utf8"));
	} catch {
		return null;
	}
}
