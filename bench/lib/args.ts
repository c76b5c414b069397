/**
 * `npm run bench` options.
 * @module
 */

import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { ngtcp2Path } from "../../src/quic/engine.ts";
import { nativeGeneratorAvailable } from "./native-generator.ts";

/**
 * What `npm run bench` measures, in this order within each run:
 * pump: the bare quiche + UDP push pump (dgram, and GSO when the native addon is built): the baseline;
 *   the same on ngtcp2 (GSO) when that engine is benched; then the GSO pumps sending the track to the
 *   relay runs' audience (the engines' floor under the relay's load, with no relay);
 * workers: the relay with 1 worker, then 2 workers, both pinned to one core, at a fixed load;
 * sweep: the capacity sweep (p99 target, no group lost) per core count.
 */
export const PHASES = ["pump", "workers", "sweep"] as const;
export type Phase = (typeof PHASES)[number];

/**
 * The relay's QUIC engines (`[server.quic] engine`): the relay runs of the workers phase and the
 * capacity sweep run once per engine, one after the other within each run.
 */
export const ENGINES = ["quiche", "ngtcp2"] as const;
export type Engine = (typeof ENGINES)[number];

export interface BenchOptions {
	quick: boolean;
	phases: Phase[];
	/** The relay's QUIC engines to measure (default: both when native/build/ngtcp2.node exists). */
	engines: Engine[];
	/** External relay (`https://host:port/path`): no local relay process, CPU from /metrics only. */
	url: string | null;
	/** Mbit/s per subscriber (the track's bitrate). */
	bitrate: number;
	fps: number;
	groupMs: number;
	/** Keyframe size as a multiple of a delta frame. */
	keyframeWeight: number;
	targetP99Ms: number;
	/**
	 * Which latency the p99 target judges (the native generator reports both): "arrival", a frame's
	 * publish → the kernel's receive time of the datagram that completed it at the subscriber (the
	 * relay's delivery, as a viewer on its own machine sees it), or "read", publish → the generator
	 * having read that datagram (adds the time it queued behind the other subscribers' packets in the
	 * generator: hundreds of subscribers share a core here). The JS generator measures only "read".
	 */
	latencyAt: "arrival" | "read";
	maxSubscribers: number;
	/** Core counts of the capacity sweep (relay pinned to cores 0..k-1 with k workers). */
	cores: number[];
	/** Client connections the bare pump pushes to. */
	pumpConnections: number;
	/** Subscribers of the relay runs that measure CPU per packet (1 worker, 2 workers on one core). */
	trialSubscribers: number;
	runs: number;
	out: string;
	/** Subscriber counts to sweep (ascending). */
	steps: number[];
	/**
	 * After a sweep fails a step, this many evenly spaced counts between its last pass and that
	 * failure, in a fresh relay (0: none). Doubling steps alone make every capacity ratio 1, 2 or 4.
	 */
	refine: number;
	/** Settle time after adding subscribers, and the measurement window (ms). */
	warmupMs: number;
	windowMs: number;
	/** Load generator processes, and UDP sockets per generator. */
	generators: number;
	sockets: number;
	/**
	 * The load generators' implementation: "native" (native/build/moq-loadgen, C on ngtcp2: a few µs
	 * per received packet) or "js" (our TypeScript client on quiche: about what the relay spends per
	 * sent packet, so it saturates the cores left to it first).
	 */
	generator: "native" | "js";
	/**
	 * How the native generator's subscribers receive and acknowledge (MOQ_LOADGEN_GRO and
	 * MOQ_LOADGEN_ACK_EVERY of native/loadgen.c): UDP_GRO on their sockets, and an ACK every this many
	 * ack-eliciting packets. Defaults (off, 2) are the baselines' conditions.
	 */
	receiverGro: boolean;
	ackEvery: number;
	/** Print nothing but errors (tests). */
	silent: boolean;
}

const HELP = `npm run bench [-- options]
  Each run measures, on one core: the bare quiche + UDP push pump (dgram, then GSO when
  native/build/udp.node exists; then on ngtcp2 with GSO when it is benched), the GSO pumps again
  sending the track to --trial-subscribers connections (the relay's audience, no relay), the relay
  with 1 worker and with 2 workers at that load (CPU per egress packet, and its ratios: relay ÷ bare,
  relay ÷ its engine's pump with the same audience, 2 workers ÷ 1), then the capacity sweep.
  --quick                 smoke run (about 2 min on 2 cores): 1 run, short windows, fewer subscribers
  --phases a,b            what to run: pump, workers, sweep (default all three)
  --engines a,b           the relay's QUIC engines: quiche, ngtcp2 (default both when
                          native/build/ngtcp2.node exists, else quiche); each relay run and
                          sweep runs once per engine, in the same run
  --url URL               bench an existing relay (https://host:port/path); default: start one locally
  --bitrate MBPS          track bitrate per subscriber (default 2.5)
  --fps N                 frames per second (default 30)
  --group-ms MS           group (keyframe interval) duration (default 2000; quick 1000)
  --keyframe-weight N     keyframe size as a multiple of a delta frame (default 10)
  --target-p99-ms MS      latency target for the capacity table (default 100)
  --latency-at arrival|read  which latency the target judges (default arrival with the native
                          generator, read with the JS one): arrival = publish → the kernel's
                          receive time of the datagram completing the frame at the subscriber;
                          read = publish → the generator having read it (adds its own queueing:
                          hundreds of subscribers share a core). Both are reported either way
  --max-subscribers N     stop the sweep there (default 3200; quick 400)
  --steps a,b,c           subscriber counts (default 10,25,50,100,200,400,800,...)
  --refine N              after the first failing step, N evenly spaced counts between it and
                          the last passing one, in a fresh relay (default 3; quick 0; 0: off)
  --cores 1,2             core counts of the capacity sweep (default 1)
  --pump-connections N    connections the bare pump pushes to (default 20)
  --trial-subscribers N   subscribers of the 1-worker / 2-worker relay runs, and connections of
                          the pumps that send them the track (default 100; quick 40)
  --runs N                repeat every measurement (default 3; quick 1); min / median / max over runs
  --warmup-ms MS          settle time per step and per run (default 2000; quick 1000)
  --window-ms MS          measurement window per step and per run (default 5000; quick 2500)
  --generators N          load generator processes (default: max(2, free cores), at most 8)
  --sockets N             UDP sockets per generator (default 8; the native generator uses one
                          per subscriber)
  --generator native|js   load generator: native (native/build/moq-loadgen, C on ngtcp2; the
                          default when it was built) or js (our TypeScript client)
  --receiver-gro on|off   native generator: receive with UDP_GRO, a sender's GSO train in one
                          buffer (default off). On loopback the receivers' kernel work is charged
                          to the relay's CPU: per datagram without GRO, per train with it
  --ack-every N           native generator: acknowledge every Nth ack-eliciting packet (2-1000;
                          default 2, RFC 9000's); 10 is close to a decimating browser stack
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
		"--receiver-gro",
		"--ack-every",
		"--target-p99-ms",
		"--latency-at",
		"--max-subscribers",
		"--steps",
		"--refine",
		"--cores",
		"--phases",
		"--engines",
		"--pump-connections",
		"--trial-subscribers",
		"--runs",
		"--warmup-ms",
		"--window-ms",
		"--generators",
		"--sockets",
		"--generator",
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
	const cores = flags.has("--cores") ? list(flags.get("--cores")!, "--cores") : [1];
	const url = flags.get("--url") ?? null;
	// An external relay: only the sweep applies (the pump and the pinned relay runs need this machine's relay).
	let phases: Phase[] = url === null ? [...PHASES] : ["sweep"];
	if (flags.has("--phases")) {
		const named = flags
			.get("--phases")!
			.split(",")
			.map((p) => p.trim());
		const unknown = named.filter((p) => !(PHASES as readonly string[]).includes(p));
		if (unknown.length > 0 || named.length === 0)
			throw new Error(`--phases: expected some of ${PHASES.join(",")}, got "${flags.get("--phases")}"`);
		phases = PHASES.filter((p) => named.includes(p));
		if (url !== null && phases.some((p) => p !== "sweep"))
			throw new Error("--phases: with --url only the sweep runs (pump and workers measure a relay started here)");
	}
	let engines: Engine[] = existsSync(ngtcp2Path()) ? [...ENGINES] : ["quiche"];
	if (flags.has("--engines")) {
		const named = flags
			.get("--engines")!
			.split(",")
			.map((e) => e.trim());
		const unknown = named.filter((e) => !(ENGINES as readonly string[]).includes(e));
		if (unknown.length > 0 || named.length === 0)
			throw new Error(`--engines: expected some of ${ENGINES.join(",")}, got "${flags.get("--engines")}"`);
		engines = ENGINES.filter((e) => named.includes(e));
	}
	// An external relay runs whatever engine it was started with: one sweep, labelled with the first named.
	if (url !== null) engines = engines.slice(0, 1);
	const maxSubscribers = num("--max-subscribers", quick ? 400 : 3200);
	const steps = flags.has("--steps") ? list(flags.get("--steps")!, "--steps") : defaultSteps(maxSubscribers);
	const maxCores = Math.max(...cores);
	const refine = flags.has("--refine") ? Number(flags.get("--refine")) : quick ? 0 : 3;
	if (!Number.isInteger(refine) || refine < 0 || refine > 8)
		throw new Error(`--refine: expected an integer from 0 to 8, got "${flags.get("--refine")}"`);
	const generator = generatorKind(flags.get("--generator"));
	const receiverGro = onOff(flags.get("--receiver-gro"), "--receiver-gro");
	const ackEvery = num("--ack-every", 2);
	if (!Number.isInteger(ackEvery) || ackEvery < 2 || ackEvery > 1000)
		throw new Error(`--ack-every: expected an integer from 2 to 1000, got "${flags.get("--ack-every")}"`);
	if (generator !== "native" && (receiverGro || ackEvery !== 2))
		throw new Error("--receiver-gro and --ack-every apply to the native generator (--generator native)");
	const latencyAt = latencyPoint(flags.get("--latency-at"), generator);
	return {
		quick,
		phases,
		engines,
		url,
		bitrate: num("--bitrate", 2.5),
		fps: num("--fps", 30),
		groupMs: num("--group-ms", quick ? 1000 : 2000),
		keyframeWeight: num("--keyframe-weight", 10),
		targetP99Ms: num("--target-p99-ms", 100),
		latencyAt,
		maxSubscribers,
		cores,
		pumpConnections: Math.round(num("--pump-connections", 20)),
		trialSubscribers: Math.round(num("--trial-subscribers", quick ? 40 : 100)),
		runs: Math.round(num("--runs", quick ? 1 : 3)),
		out: flags.get("--out") ?? "bench/results",
		steps: steps.filter((n) => n <= maxSubscribers).sort((a, b) => a - b),
		refine,
		warmupMs: num("--warmup-ms", quick ? 1000 : 2000),
		windowMs: num("--window-ms", quick ? 2500 : 5000),
		generators: Math.round(num("--generators", Math.min(8, Math.max(2, cpus - maxCores)))),
		sockets: Math.round(num("--sockets", 8)),
		generator,
		receiverGro,
		ackEvery,
		silent: bools.has("--silent"),
	};
}

function latencyPoint(named: string | undefined, generator: "native" | "js"): "arrival" | "read" {
	if (named === undefined) return generator === "native" ? "arrival" : "read";
	if (named !== "arrival" && named !== "read")
		throw new Error(`--latency-at: expected arrival or read, got "${named}"`);
	if (named === "arrival" && generator !== "native")
		throw new Error("--latency-at arrival needs the native generator (the JS one cannot read receive timestamps)");
	return named;
}

function onOff(value: string | undefined, what: string): boolean {
	if (value === undefined || value === "off") return false;
	if (value === "on") return true;
	throw new Error(`${what}: expected on or off, got "${value}"`);
}

function generatorKind(named: string | undefined): "native" | "js" {
	if (named === undefined) return nativeGeneratorAvailable() ? "native" : "js";
	if (named !== "native" && named !== "js") throw new Error(`--generator: expected native or js, got "${named}"`);
	if (named === "native" && !nativeGeneratorAvailable())
		throw new Error(
			"--generator native: native/build/moq-loadgen is not built (npm install builds it with the ngtcp2 engine)",
		);
	return named;
}

export { HELP };
