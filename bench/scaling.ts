/**
 * `npm run bench:scaling`: multi-core scaling of the relay. For each configuration (A: 1 worker on
 * 1 core; B: k workers with SO_REUSEPORT; C: k workers behind the single-socket fallback) it runs
 * the real relay as a separate process, publishes one high-bitrate track and saturates it with
 * subscribers on forked load generators, then reports delivered throughput, relay CPU per egress
 * packet, per-worker balance, UDP drops and what limited each trial; min / median / max over runs,
 * and the ratios B/A and C/B. Writes JSON + an SVG bar chart to --out. See docs/scaling.md.
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { benchConsole } from "./lib/console.ts";
import { configSpec, loadCoresFor, parseScalingArgs, relayCoresFor, SCALING_HELP } from "./lib/scaling-args.ts";
import { scalingChart, scalingDocument, scalingTable, trialLine } from "./lib/scaling-report.ts";
import { runTrial, stopAllTrials, type TrialResult } from "./lib/scaling-trial.ts";

async function main(): Promise<number> {
	let parsed: ReturnType<typeof parseScalingArgs>;
	try {
		parsed = parseScalingArgs(process.argv.slice(2));
	} catch (err) {
		console.error((err as Error).message);
		return 2;
	}
	if (parsed === "help") {
		console.log(SCALING_HELP);
		return 0;
	}
	const opts = parsed;
	const { say, progress } = benchConsole(opts.silent);
	const started = performance.now();
	say(
		`moq-fanout scaling bench: ${opts.subscribers} subscribers × ${opts.bitrate} Mbit/s, ${opts.fps} fps, ` +
			`${opts.groupMs} ms groups, ${opts.durationS} s windows, ${opts.runs} run(s), ` +
			`${opts.generators} generators × ${opts.sockets} sockets`,
	);
	for (const id of opts.configs) {
		const spec = configSpec(id, opts.cores);
		const url = opts.urls[id];
		const where = url
			? `external relay ${url}`
			: `relay on cores [${relayCoresFor(spec).join(",")}], load on [${loadCoresFor(opts, spec).cores.join(",")}]` +
				(loadCoresFor(opts, spec).shared ? " (shared with the relay)" : "");
		say(`  ${id}: ${spec.label}: ${where}`);
	}
	const trials: TrialResult[] = [];
	/** Trials other processes disturbed; kept in the JSON, left out of the summary. */
	const discarded: TrialResult[] = [];
	// Interleaved (A, B, C, A, B, C, …) so a slow spell of the shared machine hits every configuration.
	for (let run = 1; run <= opts.runs; run++) {
		for (const id of opts.configs) {
			let t = await runTrial(opts, id, run, progress);
			progress(trialLine(t), true);
			while (t.disturbed && t.attempt <= opts.retries) {
				discarded.push(t);
				t = await runTrial(opts, id, run, progress, t.attempt + 1);
				progress(trialLine(t), true);
			}
			trials.push(t);
			if (t.error && !opts.silent) console.error(t.error);
		}
	}
	const doc = scalingDocument(opts, trials, discarded);
	const out = resolve(opts.out);
	mkdirSync(out, { recursive: true });
	const stamp = doc.date.replace(/[:.]/g, "-");
	const json = `${JSON.stringify(doc, null, "\t")}\n`;
	const svg = scalingChart(doc);
	for (const name of [`scaling-${stamp}`, "scaling-latest"]) {
		writeFileSync(join(out, `${name}.json`), json);
		writeFileSync(join(out, `${name}.svg`), svg);
	}
	say("");
	say(scalingTable(doc));
	say("");
	say(
		`wrote ${join(out, `scaling-${stamp}.json`)} and .svg (also scaling-latest.json / .svg) in ` +
			`${((performance.now() - started) / 1000).toFixed(0)} s`,
	);
	return trials.some((t) => t.error) ? 1 : 0;
}

// Children (relays, publishers, generators) are ours: take them down with us on Ctrl-C.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
	process.on(signal, () => {
		stopAllTrials().finally(() => process.exit(130));
	});
}

main().then(
	(code) => process.exit(code),
	(err) => {
		console.error(err);
		process.exit(1);
	},
);
