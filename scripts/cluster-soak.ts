/**
 * `npm run soak:cluster -- --minutes N`: publisher churn across a full mesh of real relay
 * processes (3 by default, 2 workers each, one shared `nodes` list): a @moq/net publisher joins a
 * random relay every few seconds, viewers watch it from the others, it leaves (unpublish,
 * connection close, or after its viewers). Samples every relay's RSS (/proc), its /cluster view
 * (broadcasts, routes, lingering) and its /metrics counts; prints per-relay trends, count tables and
 * ASCII charts; writes samples (CSV, JSON), summary.txt and an SVG chart; exits 0 when RSS is flat
 * (second-half slope ≤ 50 KB per round, max ≤ 1.25 × the reference after the first minute) on
 * every relay, the counts stay bounded during the churn and return to their baseline at rest, no
 * ghost broadcast is seen, every viewer got every group and no relay exited; 1 otherwise; 2 on bad
 * arguments. See docs/soak.md ("Cluster churn").
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { chartSvg, summary, toCsv, verdicts } from "./cluster-soak/report.ts";
import { type ClusterSoakResult, runClusterSoak } from "./cluster-soak/run.ts";

const USAGE = `npm run soak:cluster -- [options]

  --minutes N      how long rounds keep starting (default 5; decimals allowed)
  --relays N       relays in the mesh, 3..5 (default 3)
  --workers N      worker threads per relay (default 2)
  --round-ms N     a new round every N ms; rounds overlap (default 2000)
  --watch-ms N     how long each round's publisher publishes (default 6000)
  --viewers N      at most N viewers per round, 1..N drawn at random (default 3)
  --sample-ms N    how often every relay is sampled (default 5000)
  --seed N         the PRNG seed of the draws (default: random, printed)
  --out DIR        where samples.csv, samples.json, summary.txt, chart.svg go (default soak-out/cluster/)
  --report FILE    run nothing: judge and report an earlier run again from its samples.json
`;

function fail(msg: string): never {
	process.stderr.write(`soak:cluster: ${msg}\n\n${USAGE}`);
	process.exit(2);
}

const { values } = (() => {
	try {
		return parseArgs({
			options: {
				minutes: { type: "string", default: "5" },
				relays: { type: "string", default: "3" },
				workers: { type: "string", default: "2" },
				"round-ms": { type: "string", default: "2000" },
				"watch-ms": { type: "string", default: "6000" },
				viewers: { type: "string", default: "3" },
				"sample-ms": { type: "string", default: "5000" },
				seed: { type: "string" },
				out: { type: "string", default: "soak-out/cluster" },
				report: { type: "string" },
				help: { type: "boolean", short: "h" },
			},
		});
	} catch (err) {
		fail((err as Error).message);
	}
})();
if (values.help) {
	process.stdout.write(USAGE);
	process.exit(0);
}
function num(name: keyof typeof values, min: number, max = Number.POSITIVE_INFINITY, integer = true): number {
	const v = Number(values[name]);
	if (!Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
		fail(
			`--${name} must be ${integer ? "an integer" : "a number"} ≥ ${min}${max < Number.POSITIVE_INFINITY ? ` and ≤ ${max}` : ""} (got ${values[name]})`,
		);
	}
	return v;
}
const minutes = num("minutes", 0.1, Number.POSITIVE_INFINITY, false);
const relays = num("relays", 3, 5);
const workers = num("workers", 1, 16);
const roundMs = num("round-ms", 200);
const watchMs = num("watch-ms", 1000);
const maxViewers = num("viewers", 1, 10);
const sampleMs = num("sample-ms", 1000);
const seed = values.seed === undefined ? undefined : num("seed", 0, 2 ** 32 - 1);
const outDir = resolve(values.out!);

// The official client logs every protocol step on the console: this script writes its own lines
// with process.stdout.
for (const k of ["log", "info", "debug", "warn", "error"] as const) console[k] = () => {};
const say = (line: string) => process.stdout.write(`${line}\n`);
let unhandled = 0;
process.on("unhandledRejection", () => {
	unhandled++;
});

// Ctrl-C: the churn stops at once (every client leaves), the rest is still measured and reported
// (the run fails). A second Ctrl-C a moment later quits.
const abort = new AbortController();
let interruptedAt = 0;
process.on("SIGINT", () => {
	// npm forwards its own copy of a terminal's Ctrl-C: only a second one a moment later quits.
	if (abort.signal.aborted && performance.now() - interruptedAt < 1000) return;
	if (abort.signal.aborted) process.exit(130);
	interruptedAt = performance.now();
	say("\nSIGINT: stopping the churn (again to quit at once)");
	abort.abort();
});
process.on("SIGTERM", () => abort.abort());

let result: ClusterSoakResult;
if (values.report !== undefined) {
	try {
		result = JSON.parse(readFileSync(values.report, "utf8")) as ClusterSoakResult;
	} catch (err) {
		fail(`--report ${values.report}: ${(err as Error).message}`);
	}
	result.verdicts = verdicts(result);
	result.ok = !result.interrupted && result.verdicts.every((v) => v.ok);
} else {
	say(
		`soak:cluster: ${minutes} min, ${relays} relays × ${workers} workers (full mesh), a round every ${roundMs} ms (${watchMs} ms each, 1-${maxViewers} viewers), sampling every ${sampleMs} ms`,
	);
	try {
		result = await runClusterSoak({
			relays,
			workers,
			minutes,
			roundMs,
			watchMs,
			maxViewers,
			sampleMs,
			seed,
			signal: abort.signal,
			onProgress: say,
		});
	} catch (err) {
		process.stderr.write(`soak:cluster: ${(err as Error).stack ?? String(err)}\n`);
		process.exit(2);
	}
}

const lines = summary(result);
if (unhandled) lines.splice(1, 0, `  ${unhandled} unhandled promise rejections in the clients`);
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, "samples.csv"), toCsv(result.samples));
writeFileSync(join(outDir, "samples.json"), `${JSON.stringify(result, null, 1)}\n`);
writeFileSync(join(outDir, "chart.svg"), chartSvg(result));
writeFileSync(join(outDir, "summary.txt"), `${lines.join("\n")}\n`);
lines.push(`artifacts: ${join(outDir, "samples.csv")}, samples.json, summary.txt, chart.svg`);
say("");
say(lines.join("\n"));
process.exit(result.ok ? 0 : 1);
