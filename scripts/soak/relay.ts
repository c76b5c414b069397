/**
 * The relay a churn runs against: the real `moq-fanout` process (its worker pool as threads of that
 * one process) on a free port of 127.0.0.1, with a generated config: a generated certificate,
 * anonymous access under `anon/`, the cache sized as in issue 16's reproduction (8 MiB rings, 64 MiB
 * in all) and the given worker count. Reads its RSS from /proc and its own counts from /metrics.
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { metric, parseMetrics, type Sample } from "../../bench/lib/metrics.ts";
import { processRss } from "../../bench/lib/procstat.ts";
import { freePort } from "../../test/support/process-relay.ts";

const REPO = join(import.meta.dirname, "..", "..");

export interface SoakRelayOptions {
	/** Worker threads (≥ 1; the soak insists on ≥ 2 so that frames cross threads). */
	workers: number;
	/** `[cache] track_bytes` (default "8MiB"). */
	trackBytes?: string;
	/** `[cache] total_bytes` (default "64MiB", issue 16's reproduction). */
	totalBytes?: string;
	/**
	 * The relay's entry point: a `.ts` or `.js` file run on this Node (default: the checkout's
	 * src/bin/moq-fanout.ts), or an executable (e.g. an installed `moq-fanout`).
	 */
	bin?: string;
	/** `--log-level` (default "warn"). */
	logLevel?: string;
}

/** The relay's own counts, as /metrics reports them (per-worker families summed over workers). */
export interface RelayCounts {
	/** moq_fanout_sessions: open sessions, all transports. */
	sessions: number;
	/** moq_fanout_relay_broadcasts: broadcasts on the relay, each counted once. */
	broadcasts: number;
	/** moq_fanout_broadcasts: announcement replicas (every worker holds one of each broadcast). */
	broadcastReplicas: number;
	/** moq_fanout_tracks. */
	tracks: number;
	/** moq_fanout_subscriptions. */
	subscriptions: number;
	/**
	 * moq_fanout_cache_bytes: ring bytes taken from the cache budget. The budget is one counter
	 * shared by every worker and each worker's series reports all of it, so this is the largest
	 * series, not their sum.
	 */
	cacheBytes: number;
	/** moq_fanout_worker_heap_used_bytes, summed over workers. */
	heapBytes: number;
	/** moq_fanout_tcp_connections (includes the soak's own keep-alive /metrics connection). */
	tcpConnections: number;
	/** moq_fanout_session_faults_total: sessions closed because the relay threw (a bug). */
	sessionFaults: number;
	/** moq_fanout_worker_restarts_total. */
	workerRestarts: number;
	/** moq_fanout_refusals_total, by reason (non-zero ones only). */
	refusals: Record<string, number>;
	/** moq_fanout_session_closes_total, by reason. */
	closes: Record<string, number>;
}

/** The counts that must return to zero once every client has left. */
export const LEAK_COUNTS = [
	"sessions",
	"broadcasts",
	"broadcastReplicas",
	"tracks",
	"subscriptions",
	"cacheBytes",
] as const;
export type LeakCount = (typeof LEAK_COUNTS)[number];

export interface SoakRelay {
	readonly pid: number;
	readonly port: number;
	/** http://127.0.0.1:port */
	readonly base: string;
	/** Hex SHA-256 of the relay's certificate (for raw QUIC clients). */
	readonly fingerprint: string;
	readonly child: ChildProcess;
	/** VmRSS of the relay process (every worker thread included), bytes; null once it is gone. */
	rss(): number | null;
	counts(): Promise<RelayCounts>;
	/** The relay's stderr tail. */
	log(): string;
	/** SIGTERM (graceful drain), a second SIGTERM after `graceMs`, SIGKILL after twice that. Exit code. */
	stop(graceMs?: number): Promise<number | null>;
}

function byLabel(samples: Sample[], name: string, label: string): Record<string, number> {
	const out: Record<string, number> = {};
	for (const s of samples) {
		if (s.name !== name) continue;
		const key = s.labels[label] ?? "";
		out[key] = (out[key] ?? 0) + s.value;
	}
	return out;
}

function largest(samples: Sample[], name: string): number {
	let max = 0;
	for (const s of samples) if (s.name === name && s.value > max) max = s.value;
	return max;
}

/** Parses the counts out of a /metrics exposition. */
export function countsFrom(text: string): RelayCounts {
	const m = parseMetrics(text);
	const get = (name: string) => metric(m, `moq_fanout_${name}`) ?? 0;
	const refusals = byLabel(m, "moq_fanout_refusals_total", "reason");
	for (const k of Object.keys(refusals)) if (refusals[k] === 0) delete refusals[k];
	return {
		sessions: get("sessions"),
		broadcasts: get("relay_broadcasts"),
		broadcastReplicas: get("broadcasts"),
		tracks: get("tracks"),
		subscriptions: get("subscriptions"),
		cacheBytes: largest(m, "moq_fanout_cache_bytes"),
		heapBytes: get("worker_heap_used_bytes"),
		tcpConnections: get("tcp_connections"),
		sessionFaults: get("session_faults_total"),
		workerRestarts: get("worker_restarts_total"),
		refusals,
		closes: byLabel(m, "moq_fanout_session_closes_total", "reason"),
	};
}

function relayCommand(bin: string | undefined): [string, string[]] {
	const entry = bin ?? join(REPO, "src/bin/moq-fanout.ts");
	if (/\.(c|m)?(t|j)s$/.test(entry)) return [process.execPath, [entry]];
	return [entry, []];
}

/** Starts the relay and resolves once /health says every worker is ready. */
export async function startSoakRelay(opts: SoakRelayOptions): Promise<SoakRelay> {
	const dir = mkdtempSync(join(tmpdir(), "moq-soak-"));
	const config = join(dir, "soak.toml");
	writeFileSync(
		config,
		[
			"[server.tls]",
			'generate = ["localhost", "127.0.0.1"]',
			"[auth]",
			'public = ["anon"]',
			"[cache]",
			`track_bytes = "${opts.trackBytes ?? "8MiB"}"`,
			`total_bytes = "${opts.totalBytes ?? "64MiB"}"`,
			"[workers]",
			`count = ${opts.workers}`,
			"",
		].join("\n"),
	);
	const port = await freePort();
	const [cmd, pre] = relayCommand(opts.bin);
	// Its own process group: a Ctrl-C in the terminal reaches the soak, which then stops the relay
	// itself (and still reads its counts while it drains).
	const child = spawn(
		cmd,
		[...pre, "--config", config, "--bind", `127.0.0.1:${port}`, "--log-level", opts.logLevel ?? "warn"],
		{ stdio: ["ignore", "ignore", "pipe"], detached: true },
	);
	let stderr = "";
	child.stderr!.setEncoding("utf8").on("data", (d: string) => {
		stderr = (stderr + d).slice(-16_000);
	});
	const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
	child.once("exit", () => rmSync(dir, { recursive: true, force: true }));
	// Never leave it behind, whatever way this process ends.
	const reap = () => {
		if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
	};
	process.once("exit", reap);
	const base = `http://127.0.0.1:${port}`;
	const deadline = Date.now() + 30_000;
	for (;;) {
		if (child.exitCode !== null) throw new Error(`the relay exited (${child.exitCode}): ${stderr}`);
		const ok = await fetch(`${base}/health`, { signal: AbortSignal.timeout(1000) }).then(
			(r) => r.ok,
			() => false,
		);
		if (ok) break;
		if (Date.now() > deadline) {
			reap();
			throw new Error(`the relay did not come up on port ${port}: ${stderr}`);
		}
		await new Promise((r) => setTimeout(r, 100));
	}
	const fingerprint = (await (await fetch(`${base}/certificate.sha256`)).text()).trim();
	return {
		pid: child.pid ?? 0,
		port,
		base,
		fingerprint,
		child,
		rss: () => (child.exitCode === null ? processRss(child.pid ?? 0) : null),
		async counts() {
			const res = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) });
			if (!res.ok) throw new Error(`GET /metrics: HTTP ${res.status}`);
			return countsFrom(await res.text());
		},
		log: () => stderr,
		async stop(graceMs = 5000) {
			if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
			child.kill("SIGTERM");
			const timers = [
				setTimeout(() => child.kill("SIGTERM"), graceMs),
				setTimeout(() => child.kill("SIGKILL"), graceMs * 2),
			];
			const code = await exited;
			for (const t of timers) clearTimeout(t);
			process.off("exit", reap);
			return code;
		},
	};
}
