/**
 * One run of the bare baseline: bench/pump.ts pinned to the relay's core, pushing to
 * `--pump-connections` QUIC clients on the load cores (pump-clients-child.ts), then one measurement
 * window: the pump's CPU from /proc, its egress packets from its own count (the clients' receive
 * count is kept as a cross-check).
 * @module
 */

import { availableParallelism } from "node:os";
import type { FromPump, PumpEgress, PumpMedia, ToPump } from "../pump.ts";
import type { BenchOptions } from "./args.ts";
import { Child } from "./children.ts";
import { machineCpuSample, processCpuSeconds } from "./procstat.ts";
import type { FromPumpClients, ToPumpClients } from "./pump-clients-child.ts";

/** A process above this share of a core is saturated. */
const SATURATED = 0.9;

export interface PumpRun {
	egress: PumpEgress;
	/**
	 * "bulk": pushing as fast as the engine lets it (the baseline); "media": the bench's track to
	 * `--trial-subscribers` connections, paced, as the relay runs serve it (absent in older documents: bulk).
	 */
	audience?: "bulk" | "media";
	run: number;
	connections: number;
	/** Connections that received stream data during the window. */
	receiving: number;
	windowS: number;
	/** Packets the pump sent during the window (its own count), and what the clients' sockets received. */
	packetsOut: number;
	packetsIn: number;
	packetsPerSec: number;
	/** Stream bytes the clients received, Mbit/s. */
	deliveredMbps: number;
	/**
	 * The pump process's CPU (all threads, getrusage at its marks) in cores, and per egress packet
	 * (µs), over the span between its two marks (`windowS`).
	 */
	cpuCores: number | null;
	/** The same CPU read from /proc over this process's measuring window: the cross-check. */
	procCpuCores?: number | null;
	usPerPacket: number | null;
	/** Send system calls per egress packet (1 with dgram.send; below 1 when batched). */
	syscallsPerPacket: number | null;
	/** Share of the packets that left inside GSO super-packets. */
	gsoShare: number | null;
	/** Each client process's share of one core. */
	clientCpu: number[];
	/** The engine at the end of the window: packets lost in the window, mean congestion window (bytes) and RTT. */
	lost: number;
	cwnd: number;
	rtt: number;
	/** How busy the whole machine was over the window (1 = every core); null without /proc. */
	machineBusy: number | null;
	/** "pump": the pump used ≥ 90 % of its core (full speed); "clients": a client process did; else "neither". */
	limitedBy: "pump" | "clients" | "neither";
	error: string | null;
}

export type Progress = (line: string, final: boolean) => void;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;

/** The pump's engine and egress, as the progress lines and tables name it. */
export function pumpName(egress: PumpEgress): string {
	return egress === "dgram" ? "quiche + dgram" : egress === "gso" ? "quiche + GSO" : "ngtcp2 + GSO";
}

/** Cleanups of the run in progress, for an interrupted bench. */
const active = new Set<() => void>();

export function stopPumps(): void {
	for (const stop of active) stop();
}

export async function runPump(
	opts: BenchOptions,
	egress: PumpEgress,
	run: number,
	progress: Progress,
	audience: "bulk" | "media" = "bulk",
): Promise<PumpRun> {
	const cpus = availableParallelism();
	const pumpCores = [0];
	const loadCores = cpus > 1 ? Array.from({ length: cpus - 1 }, (_, i) => i + 1) : [0];
	const connections = audience === "media" ? opts.trialSubscribers : opts.pumpConnections;
	const media: PumpMedia =
		audience === "media"
			? { bitrate: opts.bitrate, fps: opts.fps, groupMs: opts.groupMs, keyframeWeight: opts.keyframeWeight }
			: null;
	const tag = `  run ${run}/${opts.runs} · bare ${pumpName(egress)} pump${audience === "media" ? " (media)" : ""}`;
	const result: PumpRun = {
		egress,
		audience,
		run,
		connections,
		receiving: 0,
		windowS: 0,
		packetsOut: 0,
		packetsIn: 0,
		packetsPerSec: 0,
		deliveredMbps: 0,
		cpuCores: null,
		procCpuCores: null,
		usPerPacket: null,
		syscallsPerPacket: null,
		gsoShare: null,
		clientCpu: [],
		lost: 0,
		cwnd: 0,
		rtt: 0,
		machineBusy: null,
		limitedBy: "neither",
		error: null,
	};
	const pump = new Child<ToPump, FromPump>("../pump.ts", pumpCores);
	const clientCount = Math.max(1, Math.min(opts.generators, connections));
	const clients = Array.from(
		{ length: clientCount },
		() =>
			new Child<ToPumpClients, FromPumpClients>(
				// The same clients as the relay runs' (native or JS): the ratio compares like with like.
				opts.generator === "native" ? "native-pump-clients-child.ts" : "pump-clients-child.ts",
				loadCores,
			),
	);
	const kill = () => {
		for (const c of clients) c.kill();
		pump.kill();
	};
	active.add(kill);
	try {
		progress(`${tag} · starting`, false);
		const ready = await pump.request({ type: "start", egress, connections, media }, "ready", 20_000);
		progress(`${tag} · connecting ${connections} clients`, false);
		await Promise.all(
			clients.map((c, i) => {
				const share = Math.floor(connections / clientCount) + (i < connections % clientCount ? 1 : 0);
				return c.request(
					{ type: "init", port: ready.port, fingerprint: ready.fingerprint, connections: share },
					"ready",
					60_000,
				);
			}),
		);
		for (let left = opts.warmupMs; left > 0; left -= 250) {
			progress(`${tag} · settling ${Math.ceil(left / 1000)} s`, false);
			await sleep(Math.min(250, left));
		}
		const m0 = await pump.request({ type: "mark" }, "mark");
		await Promise.all(clients.map((c) => c.request({ type: "reset" }, "reset")));
		const mach0 = machineCpuSample();
		const cpu0 = processCpuSeconds(pump.proc.pid ?? 0);
		const t0 = performance.now();
		while (performance.now() - t0 < opts.windowMs) {
			progress(`${tag} · measuring ${Math.ceil((opts.windowMs - (performance.now() - t0)) / 1000)} s`, false);
			await sleep(Math.min(250, Math.max(0, opts.windowMs - (performance.now() - t0))));
		}
		const cpu1 = processCpuSeconds(pump.proc.pid ?? 0);
		const elapsed = (performance.now() - t0) / 1000;
		const mach1 = machineCpuSample();
		if (mach0 && mach1)
			result.machineBusy = round((mach1.busy - mach0.busy) / Math.max(1, mach1.total - mach0.total), 3);
		const m1 = await pump.request({ type: "mark" }, "mark");
		const reports = await Promise.all(clients.map((c) => c.request({ type: "report" }, "report")));

		// The pump's packets and CPU come from its own marks, taken at the same instant in its process:
		// a saturated pump can answer a mark late, and /proc read here would then pair the window's CPU
		// with more (or fewer) packets than were sent in it. /proc stays as the cross-check.
		const packets = m1.packetsOut - m0.packetsOut;
		const span = (m1.atMs - m0.atMs) / 1000;
		const cpuSeconds = (m1.cpuMicros - m0.cpuMicros) / 1e6;
		result.windowS = round(span, 2);
		result.packetsOut = packets;
		result.packetsIn = reports.reduce((a, r) => a + r.packetsIn, 0);
		result.receiving = reports.reduce((a, r) => a + r.receiving, 0);
		result.packetsPerSec = Math.round(packets / span);
		// Each client process over its own window (reset → report).
		result.deliveredMbps = round(
			reports.reduce((a, r) => a + (r.elapsedMs > 0 ? (r.bytes * 8) / 1e6 / (r.elapsedMs / 1000) : 0), 0),
			1,
		);
		result.cpuCores = round(cpuSeconds / span, 3);
		if (packets > 0) result.usPerPacket = round((cpuSeconds * 1e6) / packets, 2);
		if (cpu0 !== null && cpu1 !== null) result.procCpuCores = round((cpu1 - cpu0) / elapsed, 3);
		if (packets > 0) {
			result.syscallsPerPacket = round((m1.sendSyscalls - m0.sendSyscalls) / packets, 3);
			if (egress !== "dgram") result.gsoShare = round((m1.gsoPackets - m0.gsoPackets) / packets, 3);
		}
		result.clientCpu = reports.map((r) => round(r.cpuMicros / 1000 / r.elapsedMs, 3));
		result.lost = m1.lost - m0.lost;
		result.cwnd = m1.cwnd;
		result.rtt = m1.rttMs;
		if ((result.cpuCores ?? 0) >= SATURATED) result.limitedBy = "pump";
		else if (result.clientCpu.some((c) => c >= SATURATED)) result.limitedBy = "clients";
		if (packets === 0) result.error = "the pump sent nothing during the window";
	} catch (err) {
		result.error = (err as Error).message;
	} finally {
		pump.send({ type: "stop" });
		for (const c of clients) c.send({ type: "stop" });
		await sleep(150);
		kill();
		active.delete(kill);
	}
	return result;
}

export function pumpLine(r: PumpRun, runs: number): string {
	const label = `  run ${r.run}/${runs} · bare ${pumpName(r.egress).padEnd(14)} pump${r.audience === "media" ? " (media)" : ""}`;
	if (r.error) return `${label} · ERROR ${r.error}`;
	const us = r.usPerPacket === null ? "n/a" : r.usPerPacket.toFixed(2);
	const cpu = r.cpuCores === null ? "n/a" : `${Math.round(r.cpuCores * 100)}%`;
	const gso = r.gsoShare === null ? "" : ` · ${Math.round(r.gsoShare * 100)}% in GSO`;
	return (
		`${label} · ${String(r.receiving).padStart(3)}/${r.connections} conns · ${(r.packetsPerSec / 1000).toFixed(1).padStart(6)} kpps · ` +
		`${r.deliveredMbps.toFixed(0).padStart(5)} Mbit/s · pump ${cpu} of a core · ${us} µs/pkt · ` +
		`${r.syscallsPerPacket?.toFixed(2) ?? "n/a"} syscalls/pkt${gso} · lost ${r.lost} · cwnd ${Math.round(r.cwnd / 1024)} KiB · rtt ${r.rtt} ms · clients ${r.clientCpu.map((c) => Math.round(c * 100)).join("/")}% · ` +
		`machine ${r.machineBusy === null ? "n/a" : `${Math.round(r.machineBusy * 100)}%`} busy · bound by ${r.limitedBy}`
	);
}
