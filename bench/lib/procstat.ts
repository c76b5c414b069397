/**
 * Process CPU and memory from /proc (Linux): utime + stime of the whole process (every thread), and
 * VmRSS. Used for the relay when it runs on this machine; remote relays are read from /metrics.
 * @module
 */

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

let ticksPerSecond = 0;

function clockTicks(): number {
	if (ticksPerSecond === 0) {
		try {
			ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
		} catch {
			ticksPerSecond = 100;
		}
	}
	return ticksPerSecond;
}

/** CPU seconds (user + system) the process has used, or null when /proc is unavailable. */
export function processCpuSeconds(pid: number): number | null {
	try {
		const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
		// Fields after the ")" of the command name: state is field 3, utime 14, stime 15.
		const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
		const utime = Number(rest[11]);
		const stime = Number(rest[12]);
		return (utime + stime) / clockTicks();
	} catch {
		return null;
	}
}

/** Resident set size in bytes, or null. */
export function processRss(pid: number): number | null {
	try {
		const status = readFileSync(`/proc/${pid}/status`, "utf8");
		const m = /VmRSS:\s+(\d+) kB/.exec(status);
		return m ? Number(m[1]) * 1024 : null;
	} catch {
		return null;
	}
}

/** Whole-machine busy fraction between two samples of /proc/stat. */
export function machineCpuSample(): { busy: number; total: number } | null {
	try {
		const line = readFileSync("/proc/stat", "utf8").split("\n")[0];
		const v = line.trim().split(/\s+/).slice(1).map(Number);
		const idle = v[3] + (v[4] ?? 0);
		const total = v.reduce((a, b) => a + b, 0);
		return { busy: total - idle, total };
	} catch {
		return null;
	}
}

/**
 * Datagrams the kernel dropped on UDP sockets (receive buffer full), from /proc/net/udp and udp6:
 * summed for sockets bound to `port` (the relay) and for every other socket (the load, and whatever
 * else runs on the machine). Null when /proc is unavailable.
 */
export function udpDrops(port: number): { relay: number; other: number } | null {
	let relay = 0;
	let other = 0;
	let found = false;
	for (const file of ["/proc/net/udp", "/proc/net/udp6"]) {
		let text: string;
		try {
			text = readFileSync(file, "utf8");
		} catch {
			continue;
		}
		found = true;
		for (const line of text.split("\n").slice(1)) {
			const f = line.trim().split(/\s+/);
			if (f.length < 13) continue;
			const localPort = Number.parseInt(f[1].split(":")[1], 16);
			const drops = Number(f[f.length - 1]);
			if (!Number.isFinite(drops)) continue;
			if (localPort === port) relay += drops;
			else other += drops;
		}
	}
	return found ? { relay, other } : null;
}
