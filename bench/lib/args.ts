/**
 * `npm run bench` options.
 * @module
 */

import { availableParallelism } from "node:os";

export interface BenchOptions {
	quick: boolean;
	/** External relay (`https://host:port/path`): no local relay process, CPU from /metrics only. */
	url: string | null;
	/** Mbit/s per subscriber (the track's bitrate). */
	bitrate: number;
	fps: number;
	groupMs: number;
	/** Keyframe size as a multiple of a delta frame. */
	keyframeWeight: number;
	targetP99Ms: number;
	maxSubscribers: number;
	/** Core counts to emulate (relay pinned to cores 0..k-1 with k workers). */
	cores: number[];
	runs: number;
	out: string;
	/** Subscriber counts to sweep (ascending). */
	steps: number[];
	/** Settle time after adding subscribers, and the measurement window (ms). */
	warmupMs: number;
	windowMs: number;
	/** Load generator processes, and UDP sockets per generator. */
	generators: number;
	sockets: number;
	/** Print nothing but errors (tests). */
	silent: boolean;
}

const HELP = `npm run bench [-- options]
  --quick                 short sweep (< 2 min on 2 cores): 1 run, short windows
  --url URL               bench an existing relay (https://host:port/path); default: start one locally
  --bitrate MBPS          track bitrate per subscriber (default 2.5)
  --fps N                 frames per second (default 30)
  --group-ms MS           group (keyframe interval) duration (default 2000; quick 1000)
  --keyframe-weight N     keyframe size as a multiple of a delta frame (default 10)
  --target-p99-ms MS      latency target for the capacity table (default 100)
  --max-subscribers N     stop the sweep there (default 3200; quick 400)
  --steps a,b,c           subscriber counts (default 10,25,50,100,200,400,800,...)
  --cores 1,2             core counts to emulate (default: 1 and every power of 2 up to the machine's cores)
  --runs N                repeat the sweep (default 3; quick 1)
  --warmup-ms MS          settle time per step (default 2000; quick 1000)
  --window-ms MS          measurement window per step (default 8000; quick 2500)
  --generators N          load generator processes (default: max(2, free cores), at most 8)
  --sockets N             UDP sockets per generator (default 8)
  --out DIR               results directory (default bench/results)`;

export function defaultSteps(max: number): number[] {
	const steps = [10, 25, 50, 100];
	while (steps[steps.length - 1] * 2 <= max) steps.push(steps[steps.length - 1] * 2);
	return steps.filter((n) => n <= max);
}

function list(value: string, what: string): number[] {
	const out = value.split(",").map((x) => Number(x.trim()));
	if (out.some((x) => !Number.isFinite(x) || x <= 0))
		throw new Error(`${what}: expected positive numbers, got "${value}"`);
	return out;
}

export function parseArgs(argv: string[]): BenchOptions | "help" {
	const flags = new Map<string, string>();
	const bools = new Set<string>();
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		if (a === "--help" || a === "-h") return "help";
		if (a === "--quick" || a === "--silent") {
			bools.add(a);
			continue;
		}
		if (!a.startsWith("--")) throw new Error(`unexpected argument "${a}"`);
		const eq = a.indexOf("=");
		if (eq > 0) flags.set(a.slice(0, eq), a.slice(eq + 1));
		else {
			const v = argv[++i];
			if (v === undefined) throw new Error(`${a} needs a value`);
			flags.set(a, v);
		}
	}
	const known = new Set([
		"--url",
		"--bitrate",
		"--fps",
		"--group-ms",
		"--keyframe-weight",
		"--target-p99-ms",
		"--max-subscribers",
		"--steps",
		"--cores",
		"--runs",
		"--warmup-ms",
		"--window-ms",
		"--generators",
		"--sockets",
		"--out",
	]);
	for (const k of flags.keys()) if (!known.has(k)) throw new Error(`unknown option ${k}\n${HELP}`);
	const quick = bools.has("--quick");
	const num = (k: string, d: number) => {
		const v = flags.get(k);
		if (v === undefined) return d;
		const n = Number(v);
		if (!Number.isFinite(n) || n <= 0) throw new Error(`${k}: expected a positive number, got "${v}"`);
		return n;
	};
	const cpus = availableParallelism();
	const defaultCores = [1];
	for (let k = 2; k <= cpus; k *= 2) defaultCores.push(k);
	const cores = flags.has("--cores") ? list(flags.get("--cores")!, "--cores") : defaultCores;
	const maxSubscribers = num("--max-subscribers", quick ? 400 : 3200);
	const steps = flags.has("--steps") ? list(flags.get("--steps")!, "--steps") : defaultSteps(maxSubscribers);
	const maxCores = Math.max(...cores);
	return {
		quick,
		url: flags.get("--url") ?? null,
		bitrate: num("--bitrate", 2.5),
		fps: num("--fps", 30),
		groupMs: num("--group-ms", quick ? 1000 : 2000),
		keyframeWeight: num("--keyframe-weight", 10),
		targetP99Ms: num("--target-p99-ms", 100),
		maxSubscribers,
		cores,
		runs: Math.round(num("--runs", quick ? 1 : 3)),
		out: flags.get("--out") ?? "bench/results",
		steps: steps.filter((n) => n <= maxSubscribers).sort((a, b) => a - b),
		warmupMs: num("--warmup-ms", quick ? 1000 : 2000),
		windowMs: num("--window-ms", quick ? 2500 : 8000),
		generators: Math.round(num("--generators", Math.min(8, Math.max(2, cpus - maxCores)))),
		sockets: Math.round(num("--sockets", 8)),
		silent: bools.has("--silent"),
	};
}

export { HELP };
