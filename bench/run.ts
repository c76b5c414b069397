/**
 * `npm run bench`: fan-out latency and capacity of the relay. Starts the relay as a separate process
 * pinned to k cores with k workers (or targets `--url`), publishes a synthetic live track, and
 * sweeps subscriber counts with load generator processes; prints the capacity table per core count
 * and writes JSON + an SVG latency chart to `--out`. See docs/benchmarks.md.
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { HELP, parseArgs } from "./lib/args.ts";
import { benchConsole } from "./lib/console.ts";
import { capacityTable, document } from "./lib/report.ts";
import { latencyChart } from "./lib/svg.ts";
import { runSweep, type SweepResult, stopAll } from "./lib/sweep.ts";

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
	const { say, progress } = benchConsole(opts.silent);
	const started = performance.now();
	say(
		`moq-fanout bench: ${opts.bitrate} Mbit/s, ${opts.fps} fps, ${opts.groupMs} ms groups, target p99 ${opts.targetP99Ms} ms, ` +
			`cores ${opts.cores.join(",")}, steps ${opts.steps.join(",")}, ${opts.runs} run(s), ${opts.generators} generator processes` +
			(opts.url ? `, relay ${opts.url}` : ""),
	);
	const sweeps: SweepResult[] = [];
	for (let run = 1; run <= opts.runs; run++) {
		for (const cores of opts.cores) {
			say(`run ${run}/${opts.runs}, ${cores} core(s):`);
			const sweep = await runSweep(opts, cores, run, progress);
			if (sweep.error) console.error(`  sweep failed: ${sweep.error}`);
			else say(`  → capacity ${sweep.capacity} subscribers (stopped by ${sweep.stoppedBy})`);
			sweeps.push(sweep);
		}
	}
	const doc = document(opts, sweeps);
	const out = resolve(opts.out);
	mkdirSync(out, { recursive: true });
	const stamp = doc.date.replace(/[:.]/g, "-");
	const json = `${JSON.stringify(doc, null, "\t")}\n`;
	const svg = latencyChart(doc);
	for (const name of [`bench-${stamp}`, "latest"]) {
		writeFileSync(join(out, `${name}.json`), json);
		writeFileSync(join(out, `${name}.svg`), svg);
	}
	say("");
	say(capacityTable(doc));
	say("");
	say(
		`wrote ${join(out, `bench-${stamp}.json`)} and .svg (also latest.json / latest.svg) in ${((performance.now() - started) / 1000).toFixed(0)} s`,
	);
	return sweeps.some((s) => s.error) ? 1 : 0;
}

// Children (relay, publisher, generators) are ours: take them down with us on Ctrl-C.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
	process.on(signal, () => {
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
