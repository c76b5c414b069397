/**
 * `npm run bench`: what the relay costs per packet, against a baseline measured in the same run, and
 * how many subscribers it carries. Each run, on one core (the load on the others):
 * 1. the bare baseline: bench/pump.ts, a minimal quiche server pushing stream data to
 *    `--pump-connections` clients, with dgram egress, then with the GSO addon when it is built, and
 *    the same loop on the ngtcp2 engine (GSO) when the relay is benched on it: that engine's floor;
 *    then the GSO pumps again sending the bench's track to `--trial-subscribers` connections (the
 *    relay runs' audience, with no relay);
 * 2. the relay (a separate process, `taskset` to core 0) with 1 worker, then 2 workers on that same
 *    core, at a fixed load of `--trial-subscribers`, once per QUIC engine (`--engines`: quiche, and
 *    ngtcp2 when its addon is built): CPU per egress packet, its ratio to the bare pump of the same
 *    run, ngtcp2 ÷ quiche, and 2 workers ÷ 1 worker (the multi-worker machinery's cost);
 * then 3. the capacity sweep per core count and engine (subscribers stepped up until p99 passes the
 * target or a group is lost; then `--refine` counts between the last pass and that failure). Progress lines while running, the tables at the end, and JSON + SVG charts in
 * `--out`. See docs/benchmarks.md.
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadNgtcp2, ngtcp2Unavailable } from "../src/quic/engine.ts";
import { loadUdpNative, udpNativeUnavailable } from "../src/quic/udp-native.ts";
import { HELP, parseArgs } from "./lib/args.ts";
import { benchConsole } from "./lib/console.ts";
import { type PumpRun, pumpLine, pumpName, runPump, stopPumps } from "./lib/pump-trial.ts";
import { capacityTable, costTable, document } from "./lib/report.ts";
import { costChart, latencyChart } from "./lib/svg.ts";
import { refineSweep, runSweep, type SweepResult, stopAll } from "./lib/sweep.ts";
import type { PumpEgress } from "./pump.ts";

async function main(): Promise<number> {
	let parsed: ReturnType<typeof parseArgs>;
	try {
		parsed = parseArgs(process.argv.slice(2));
	} catch (err) {
		console.error((err as Error).message);
		return 2;
	}
	if (parsed === "help") {
		console.log(HELP);
		return 0;
	}
	const opts = parsed;
	if (opts.url === null && opts.engines.includes("ngtcp2") && loadNgtcp2() === null) {
		console.error(`--engines ngtcp2: ${ngtcp2Unavailable()}`);
		return 2;
	}
	// The native generators read these (native/loadgen.c); every child inherits them.
	process.env.MOQ_LOADGEN_GRO = opts.receiverGro ? "1" : "0";
	process.env.MOQ_LOADGEN_ACK_EVERY = String(opts.ackEvery);
	const { say, progress } = benchConsole(opts.silent);
	const started = performance.now();
	say(
		`moq-fanout bench: ${opts.bitrate} Mbit/s, ${opts.fps} fps, ${opts.groupMs} ms groups, keyframe weight ${opts.keyframeWeight}, ` +
			`target p99 ${opts.targetP99Ms} ms at ${opts.latencyAt}, ${opts.runs} run(s), phases ${opts.phases.join(",")}, ` +
			`engines ${opts.engines.join(",")}, ` +
			(opts.generator === "native"
				? `${opts.generators} native load processes (a socket per subscriber; ACK every ${opts.ackEvery}, GRO ${opts.receiverGro ? "on" : "off"})`
				: `${opts.generators} JS load processes × ${opts.sockets} sockets`) +
			(opts.url ? `, relay ${opts.url}` : ""),
	);
	const pumps: PumpRun[] = [];
	const relays: SweepResult[] = [];
	let gsoSkipped: string | null = null;
	const pumpPhase = opts.phases.includes("pump");
	const workersPhase = opts.phases.includes("workers");
	if (pumpPhase && loadUdpNative() === null) gsoSkipped = udpNativeUnavailable();
	// The bare pump on the ngtcp2 engine too, when the relay runs on it here and GSO is there.
	const pumpEgresses: PumpEgress[] = gsoSkipped
		? ["dgram"]
		: opts.engines.includes("ngtcp2") && !opts.url
			? ["dgram", "gso", "ngtcp2"]
			: ["dgram", "gso"];
	const mediaEgresses = pumpEgresses.filter((e) => e !== "dgram");
	if (pumpPhase || workersPhase) {
		say(
			`CPU per egress packet on core 0 (load on the other cores): ` +
				[
					pumpPhase
						? `bare pump → ${opts.pumpConnections} connections (${pumpEgresses.map(pumpName).join(", ")})` +
							(mediaEgresses.length > 0
								? `, then the track to ${opts.trialSubscribers} (${mediaEgresses.map(pumpName).join(", ")})`
								: "")
						: "",
					workersPhase
						? `relay with 1 and 2 workers on ${opts.engines.join(" and ")}, ${opts.trialSubscribers} subscribers`
						: "",
				]
					.filter(Boolean)
					.join("; "),
		);
		if (gsoSkipped) say(`  GSO pump skipped: ${gsoSkipped}`);
	}
	for (let run = 1; run <= opts.runs && (pumpPhase || workersPhase); run++) {
		// Interleaved (pump, relay 1 worker, relay 2 workers, then the next run) so that a slow spell
		// of a shared machine weighs on all of them, and each ratio is taken within one run.
		if (pumpPhase) {
			for (const egress of pumpEgresses) {
				const p = await runPump(opts, egress, run, progress);
				progress(pumpLine(p, opts.runs), true);
				pumps.push(p);
			}
			// The GSO pumps again with the relay runs' audience: the engines' floor under that load.
			for (const egress of mediaEgresses) {
				const p = await runPump(opts, egress, run, progress, "media");
				progress(pumpLine(p, opts.runs), true);
				pumps.push(p);
			}
		}
		if (workersPhase) {
			for (const engine of opts.engines) {
				for (const workers of [1, 2]) {
					const r = await runSweep(opts, 1, run, progress, { workers, steps: [opts.trialSubscribers] }, engine);
					if (r.error) console.error(`  relay run failed: ${r.error}`);
					relays.push(r);
				}
			}
		}
	}
	const sweeps: SweepResult[] = [];
	for (let run = 1; run <= opts.runs && opts.phases.includes("sweep"); run++) {
		for (const cores of opts.cores) {
			for (const engine of opts.engines) {
				say(
					`capacity sweep, run ${run}/${opts.runs}, ${cores} core(s), ${opts.url ? "relay at --url" : `${engine} engine`}:`,
				);
				const sweep = await runSweep(opts, cores, run, progress, null, engine);
				if (sweep.error) console.error(`  sweep failed: ${sweep.error}`);
				else {
					const doubled = sweep.capacity;
					await refineSweep(opts, sweep, progress, engine);
					if (sweep.refineError) console.error(`  refinement failed: ${sweep.refineError}`);
					const refined = sweep.refined ? ` (refined from ${doubled}: tried ${sweep.refined.join(", ")})` : "";
					say(`  → capacity ${sweep.capacity} subscribers${refined} (stopped by ${sweep.stoppedBy})`);
				}
				sweeps.push(sweep);
			}
		}
	}
	const doc = document(opts, sweeps, pumps, relays, gsoSkipped);
	const out = resolve(opts.out);
	mkdirSync(out, { recursive: true });
	const stamp = doc.date.replace(/[:.]/g, "-");
	const json = `${JSON.stringify(doc, null, "\t")}\n`;
	const svg = latencyChart(doc);
	const costSvg = costChart(doc);
	for (const name of [`bench-${stamp}`, "latest"]) {
		writeFileSync(join(out, `${name}.json`), json);
		writeFileSync(join(out, `${name}.svg`), svg);
		writeFileSync(join(out, `${name}-cost.svg`), costSvg);
	}
	say("");
	if (pumpPhase || workersPhase) {
		say(costTable(doc));
		say("");
	}
	if (opts.phases.includes("sweep")) {
		say(capacityTable(doc));
		say("");
	}
	say(
		`wrote ${join(out, `bench-${stamp}.json`)}, .svg (latency) and -cost.svg (per-packet cost); also latest.json / latest.svg / latest-cost.svg; ` +
			`in ${((performance.now() - started) / 1000).toFixed(0)} s`,
	);
	const failed = sweeps.some((s) => s.error) || relays.some((r) => r.error) || pumps.some((p) => p.error);
	return failed ? 1 : 0;
}

// Children (relay, publisher, generators) are ours: take them down with us on Ctrl-C.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
	process.on(signal, () => {
		stopPumps();
		stopAll().finally(() => process.exit(130));
	});
}

main().then(
	(code) => process.exit(code),
	(err) => {
		console.error(err);
		process.exit(1);
	},
);
