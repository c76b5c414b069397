/**
 * `npm run bench:scaling` options, and the three relay configurations it compares.
 * @module
 */

import { availableParallelism } from "node:os";

/** A: one worker. B: k workers, one SO_REUSEPORT socket each. C: k workers, one socket (worker 0 relays). */
export const CONFIG_IDS = ["A", "B", "C"] as const;
export type ConfigId = (typeof CONFIG_IDS)[number];

export interface RelayConfigSpec {
	id: ConfigId;
	workers: number;
	reusePort: boolean;
	label: string;
}

export interface ScalingOptions {
	runs: number;
	/** Longest wait for a quiet machine (≤ 15 % busy) before each trial, seconds; 0: do not wait. */
	quietWaitS: number;
	/** Repeats of a trial that other processes disturbed (see DISTURBED_CORES). */
	retries: number;
	/** Subscriber connections per trial (enough to saturate the relay). */
	subscribers: number;
	/** Mbit/s of the one published track (each subscriber receives all of it). */
	bitrate: number;
	fps: number;
	groupMs: number;
	keyframeWeight: number;
	/** Measurement window and settle time before it, seconds. */
	durationS: number;
	warmupS: number;
	/** Workers (and cores) of configurations B and C. */
	cores: number;
	configs: ConfigId[];
	/** Cores for the publisher and the load generators; null: the cores the relay does not use (see loadCoresFor). */
	loadCores: number[] | null;
	generators: number;
	/** UDP sockets (source ports) per generator. */
	sockets: number;
	/** External relays by configuration (you start them; the bench only loads and labels them). */
	urls: Partial<Record<ConfigId, string>>;
	out: string;
	silent: boolean;
}

export const SCALING_HELP = `npm run bench:scaling [-- options]
  Saturates the relay with one high-bitrate track and many subscribers, in three configurations:
    A  1 worker on 1 core
    B  --cores workers, SO_REUSEPORT (one UDP socket per worker)
    C  --cores workers, single-socket fallback (--reuse-port false: worker 0 owns the socket)
  --runs N                trials per configuration, interleaved A,B,C,A,B,C,… (default 3)
  --quiet-wait S          before each trial, wait up to S seconds for the machine to be ≤ 15 % busy (default 20)
  --retries N             repeat a trial that other processes disturbed, up to N times (default 2)
  --subscribers N         subscriber connections per trial (default 160)
  --bitrate MBPS          bitrate of the published track (default 4)
  --fps N                 frames per second (default 30)
  --group-ms MS           group duration (default 1000)
  --keyframe-weight N     keyframe size as a multiple of a delta frame (default 1: uniform, a throughput test)
  --duration S            measurement window per trial, seconds (default 10)
  --warmup S              settle time after subscribing, seconds (default 3)
  --cores N               workers and cores of B and C (default 2)
  --configs A,B,C         which configurations to run (default all)
  --load-cores 2,3        cores for the publisher and generators (default: the cores the relay does not use;
                          on a machine with no spare core they share the relay's cores)
  --generators N          load generator processes (default max(2, load cores))
  --sockets N             UDP sockets (source ports) per generator (default 16)
  --url ID=URL            load an external relay for configuration ID (repeat), e.g. --url B=https://relay:4443/bench;
                          start it yourself (see docs/scaling.md); CPU then comes from its /metrics
  --out DIR               results directory (default bench/results)`;

function list(value: string, what: string, min = 1): number[] {
	const out: number[] = [];
	for (const part of value.split(",")) {
		const range = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(part);
		if (range) {
			for (let i = Number(range[1]); i <= Number(range[2]); i++) out.push(i);
			continue;
		}
		const n = Number(part.trim());
		if (!Number.isInteger(n) || n < min) throw new Error(`${what}: expected integers ≥ ${min}, got "${value}"`);
		out.push(n);
	}
	return out;
}

export function parseScalingArgs(argv: string[]): ScalingOptions | "help" {
	const flags = new Map<string, string>();
	const urls: Partial<Record<ConfigId, string>> = {};
	let silent = false;
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		if (a === "--help" || a === "-h") return "help";
		if (a === "--silent") {
			silent = true;
			continue;
		}
		if (!a.startsWith("--")) throw new Error(`unexpected argument "${a}"`);
		const eq = a.indexOf("=");
		const name = eq > 0 ? a.slice(0, eq) : a;
		let value: string | undefined = eq > 0 ? a.slice(eq + 1) : argv[++i];
		if (value === undefined) throw new Error(`${a} needs a value`);
		if (name === "--url") {
			const m = /^([ABC])=(.+)$/.exec(value);
			if (!m) throw new Error(`--url: expected ID=URL with ID one of A, B, C, got "${value}"`);
			urls[m[1] as ConfigId] = m[2];
			continue;
		}
		value = value.trim();
		flags.set(name, value);
	}
	const known = new Set([
		"--runs",
		"--retries",
		"--quiet-wait",
		"--subscribers",
		"--bitrate",
		"--fps",
		"--group-ms",
		"--keyframe-weight",
		"--duration",
		"--warmup",
		"--cores",
		"--configs",
		"--load-cores",
		"--generators",
		"--sockets",
		"--out",
	]);
	for (const k of flags.keys()) if (!known.has(k)) throw new Error(`unknown option ${k}\n${SCALING_HELP}`);
	const num = (k: string, d: number, min = Number.MIN_VALUE) => {
		const v = flags.get(k);
		if (v === undefined) return d;
		const n = Number(v);
		if (!Number.isFinite(n) || n < min) throw new Error(`${k}: expected a number ≥ ${min}, got "${v}"`);
		return n;
	};
	const int = (k: string, d: number, min = 1) => {
		const n = num(k, d, min);
		if (!Number.isInteger(n)) throw new Error(`${k}: expected an integer, got "${flags.get(k)}"`);
		return n;
	};
	let configs: ConfigId[] = [...CONFIG_IDS];
	if (flags.has("--configs")) {
		const wanted = flags
			.get("--configs")!
			.split(",")
			.map((x) => x.trim().toUpperCase());
		for (const c of wanted) if (!CONFIG_IDS.includes(c as ConfigId)) throw new Error(`--configs: unknown "${c}"`);
		configs = CONFIG_IDS.filter((c) => wanted.includes(c));
	}
	if (Object.keys(urls).length > 0) configs = configs.filter((c) => urls[c] !== undefined);
	if (configs.length === 0) throw new Error("no configuration to run");
	const loadCores = flags.has("--load-cores") ? list(flags.get("--load-cores")!, "--load-cores", 0) : null;
	const cores = int("--cores", 2, 2);
	const loadCount = loadCores?.length ?? Math.max(1, availableParallelism() - cores);
	return {
		runs: int("--runs", 3),
		retries: int("--retries", 2, 0),
		quietWaitS: num("--quiet-wait", 20, 0),
		subscribers: int("--subscribers", 160),
		bitrate: num("--bitrate", 4),
		fps: num("--fps", 30),
		groupMs: num("--group-ms", 1000),
		keyframeWeight: num("--keyframe-weight", 1),
		durationS: num("--duration", 10),
		warmupS: num("--warmup", 3, 0),
		cores,
		configs,
		loadCores,
		generators: int("--generators", Math.min(8, Math.max(2, loadCount))),
		sockets: int("--sockets", 16),
		urls,
		out: flags.get("--out") ?? "bench/results",
		silent,
	};
}

export function configSpec(id: ConfigId, cores: number): RelayConfigSpec {
	if (id === "A") return { id, workers: 1, reusePort: true, label: "1 worker, 1 core" };
	if (id === "B") return { id, workers: cores, reusePort: true, label: `${cores} workers, SO_REUSEPORT` };
	return { id, workers: cores, reusePort: false, label: `${cores} workers, single socket` };
}

/** The relay of configuration `spec` runs on cores 0..workers-1. */
export function relayCoresFor(spec: RelayConfigSpec): number[] {
	return Array.from({ length: Math.min(spec.workers, availableParallelism()) }, (_, i) => i);
}

/**
 * Where the publisher and generators run. The same cores for every configuration when the machine
 * has cores the widest relay does not use (a fair comparison); otherwise (2 cores, 2 workers) the
 * cores this configuration's relay leaves free, or, when it leaves none, all of them (shared).
 */
export function loadCoresFor(opts: ScalingOptions, spec: RelayConfigSpec): { cores: number[]; shared: boolean } {
	const cpus = availableParallelism();
	if (opts.loadCores !== null) {
		const relay = new Set(relayCoresFor(spec));
		return { cores: opts.loadCores, shared: opts.loadCores.some((c) => relay.has(c)) };
	}
	if (cpus > opts.cores)
		return { cores: Array.from({ length: cpus - opts.cores }, (_, i) => opts.cores + i), shared: false };
	if (cpus > spec.workers)
		return { cores: Array.from({ length: cpus - spec.workers }, (_, i) => spec.workers + i), shared: false };
	return { cores: Array.from({ length: cpus }, (_, i) => i), shared: true };
}
