import { type ChildProcess, spawn } from "node:child_process";
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import net from "node:net";

/**
 * Ports below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768–60999 unless
 * changed). A port the kernel handed out with bind(0) and that was released again is soon the
 * source port of some other test's outgoing connection, which then makes the relay's listen fail
 * with EADDRINUSE (seen in CI); a port outside that range is only taken by whoever binds it.
 */
function portRange(): [number, number] {
	try {
		const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
		if (Number.isInteger(low) && low > 12_000) return [10_000, low];
	} catch {
		// not Linux: any unprivileged range below the usual ephemeral one
	}
	return [20_000, 32_768];
}

/** Whether `port` can be bound on UDP and TCP at 127.0.0.1 now. */
async function bindable(port: number): Promise<boolean> {
	const udp = dgram.createSocket("udp4");
	const udpOk = await new Promise<boolean>((r) => {
		udp.once("error", () => r(false));
		udp.bind(port, "127.0.0.1", () => r(true));
	});
	if (!udpOk) {
		udp.close();
		return false;
	}
	const tcpOk = await new Promise<boolean>((r) => {
		const srv = net.createServer();
		srv.once("error", () => r(false));
		srv.listen(port, "127.0.0.1", () => srv.close(() => r(true)));
	});
	udp.close();
	return tcpOk;
}

/** A port free on both UDP and TCP (the relay binds the same number on both), outside the ephemeral range. */
export async function freePort(): Promise<number> {
	const [low, high] = portRange();
	for (;;) {
		const port = low + Math.floor(Math.random() * (high - low));
		if (await bindable(port)) return port;
	}
}

export interface RelayProcess {
	child: ChildProcess;
	port: number;
	base: string;
	stderr: string[];
	metrics(): Promise<Map<string, number>>;
	/** Sum of a metric over the given label filter (e.g. worker="1"). */
	stop(): Promise<number | null>;
}

/** Starts `moq-fanout` as a separate process (the real binary and worker pool) on a free port. */
export async function startRelayProcess(args: string[], env: Record<string, string> = {}): Promise<RelayProcess> {
	const port = await freePort();
	const child = spawn(process.execPath, ["src/bin/moq-fanout.ts", "--bind", `127.0.0.1:${port}`, ...args], {
		stdio: ["pipe", "pipe", "pipe"],
		env: { ...process.env, ...env },
	});
	const stderr: string[] = [];
	child.stderr!.setEncoding("utf8").on("data", (d: string) => stderr.push(d));
	child.stdout!.resume();
	const base = `http://127.0.0.1:${port}`;
	const deadline = Date.now() + 20_000;
	for (;;) {
		if (child.exitCode !== null) throw new Error(`relay exited: ${stderr.join("")}`);
		const ok = await fetch(`${base}/health`).then(
			(r) => r.ok,
			() => false,
		);
		if (ok) break;
		if (Date.now() > deadline) throw new Error(`relay did not start: ${stderr.join("")}`);
		await new Promise((r) => setTimeout(r, 100));
	}
	return {
		child,
		port,
		base,
		stderr,
		async metrics() {
			const text = await (await fetch(`${base}/metrics`)).text();
			const out = new Map<string, number>();
			for (const line of text.split("\n")) {
				if (!line || line.startsWith("#")) continue;
				const sp = line.lastIndexOf(" ");
				out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
			}
			return out;
		},
		async stop() {
			if (child.exitCode !== null) return child.exitCode;
			// SIGTERM drains: the relay exits once no session is left (about a second after the last
			// one closed) or at [server] drain_timeout (30 s). A test that leaves sessions open should
			// not wait for that: a second signal exits at once.
			const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
			child.kill("SIGTERM");
			const first = await Promise.race([exited, new Promise<"slow">((r) => setTimeout(() => r("slow"), 3000))]);
			if (first !== "slow") return first;
			child.kill("SIGTERM");
			return await exited;
		},
	};
}

/**
 * Sum of the per-worker samples of `name` whose labels include all of `match` (e.g. 'worker="1"'):
 * the relay's total of a per-worker family (relay-wide families have no worker label: read them
 * with `m.get(name)`).
 */
export function metricSum(m: Map<string, number>, name: string, ...match: string[]): number {
	let sum = 0;
	for (const [k, v] of m) {
		const brace = k.indexOf("{");
		const n = brace < 0 ? k : k.slice(0, brace);
		if (n !== name || brace < 0) continue;
		const labels = k.slice(brace);
		if (!labels.includes("worker=")) continue; // per-worker series only
		if (match.every((x) => labels.includes(x))) sum += v;
	}
	return sum;
}
