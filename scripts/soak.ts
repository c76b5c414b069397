/**
 * `npm run soak -- --minutes N`: publish/leave churn with joining and leaving viewers against the
 * real relay process (≥ 2 workers) for N minutes, sampling the relay's RSS (/proc) and its own
 * counts (/metrics); prints the trend and a chart, writes samples (CSV, JSON) and an SVG chart, and
 * exits 0 when issue 16's criteria hold (RSS over the second half: slope ≤ 50 KB per round and
 * ≤ 1.25 × the RSS after round 1; every count back to zero once the clients left), 1 otherwise.
 * See docs/soak.md.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Churn, type ChurnStats, total } from "./soak/driver.ts";
import { LEAK_COUNTS, type RelayCounts, type SoakRelay, startSoakRelay } from "./soak/relay.ts";
import {
	asciiChart,
	chartSvg,
	clock,
	fmt,
	MAX_RSS_RATIO,
	type SoakSample,
	toCsv,
	trendTable,
	verdicts,
} from "./soak/report.ts";

const USAGE = `npm run soak -- [options]

  --minutes N      how long the churn runs (default 10; decimals allowed)
  --workers N      relay worker threads, at least 2 (default 2)
  --round-ms N     a new round starts every N ms; rounds overlap (default 800)
  --watch-ms N     how long each round's publisher publishes (default 4000)
  --viewers N      viewers per round (default 3)
  --sample-ms N    how often the relay is sampled (default 5000)
  --cache-total S  [cache] total_bytes (default "64MiB")
  --track-bytes S  [cache] track_bytes (default "8MiB")
  --out DIR        where samples.csv, samples.json, chart.svg, summary.txt go (default soak-out/)
  --relay BIN      the relay to run: a .ts/.js entry point or an executable (default: src/bin/moq-fanout.ts)
`;

function fail(msg: string): never {
	process.stderr.write(`soak: ${msg}\n\n${USAGE}`);
	process.exit(2);
}

const { values } = (() => {
	try {
		return parseArgs({
			options: {
				minutes: { type: "string", default: "10" },
				workers: { type: "string", default: "2" },
				"round-ms": { type: "string", default: "800" },
				"watch-ms": { type: "string", default: "4000" },
				viewers: { type: "string", default: "3" },
				"sample-ms": { type: "string", default: "5000" },
				"cache-total": { type: "string", default: "64MiB" },
				"track-bytes": { type: "string", default: "8MiB" },
				out: { type: "string", default: "soak-out" },
				relay: { type: "string" },
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
function num(name: keyof typeof values, min: number, integer = true): number {
	const v = Number(values[name]);
	if (!Number.isFinite(v) || v < min || (integer && !Number.isInteger(v))) {
		fail(`--${name} must be ${integer ? "an integer" : "a number"} ≥ ${min} (got ${values[name]})`);
	}
	return v;
}
const minutes = num("minutes", 0.1, false);
const workers = num("workers", 2);
const roundMs = num("round-ms", 50);
const watchMs = num("watch-ms", 500);
const viewerCount = num("viewers", 0);
const sampleMs = num("sample-ms", 200);
const outDir = resolve(values.out!);

// The official client logs every protocol step on the console: this script writes its own lines
// with process.stdout / process.stderr.
for (const k of ["log", "info", "debug", "warn", "error"] as const) console[k] = () => {};
const say = (line: string) => process.stdout.write(`${line}\n`);
let unhandled = 0;
process.on("unhandledRejection", () => {
	unhandled++;
});

say(
	`soak: ${minutes} min, ${workers} workers, a round every ${roundMs} ms (${watchMs} ms each, ${viewerCount} viewers), cache ${values["cache-total"]} (${values["track-bytes"]} rings), sampling every ${sampleMs} ms`,
);
let relay: SoakRelay;
try {
	relay = await startSoakRelay({
		workers,
		bin: values.relay,
		totalBytes: values["cache-total"],
		trackBytes: values["track-bytes"],
	});
} catch (err) {
	process.stderr.write(`soak: ${(err as Error).message}\n`);
	process.exit(2);
}
say(`relay: pid ${relay.pid}, ${relay.base} (QUIC on udp/${relay.port})`);

const churn = new Churn({
	base: relay.base,
	host: "127.0.0.1",
	port: relay.port,
	fingerprint: relay.fingerprint,
	roundMs,
	watchMs,
	viewers: viewerCount,
});
const samples: SoakSample[] = [];
let t0 = performance.now();
let relayGone = false;
let interrupted = false;
let lastCounts: RelayCounts | null = null;

async function sample(phase: SoakSample["phase"]): Promise<SoakSample | null> {
	const rss = relay.rss();
	if (rss === null) {
		relayGone = true;
		return null;
	}
	let c: RelayCounts;
	try {
		c = await relay.counts();
	} catch (err) {
		if (relay.child.exitCode !== null) relayGone = true;
		else say(`  (sample failed: ${(err as Error).message})`);
		return null;
	}
	lastCounts = c;
	const st = churn.stats;
	const s: SoakSample = {
		t: (performance.now() - t0) / 1000,
		phase,
		rounds: st.roundsDone,
		inFlight: churn.inFlight,
		rss,
		sessions: c.sessions,
		broadcasts: c.broadcasts,
		broadcastReplicas: c.broadcastReplicas,
		tracks: c.tracks,
		subscriptions: c.subscriptions,
		cacheBytes: c.cacheBytes,
		heapBytes: c.heapBytes,
		cleanSeenClean: st.afterCleanEnd.clean,
		cleanSeenReset: total(st.afterCleanEnd.reset),
		abruptSeenReset: total(st.afterAbruptEnd.reset),
	};
	samples.push(s);
	return s;
}

function progress(s: SoakSample): void {
	say(
		[
			`${s.phase === "rest" ? "rest " : ""}${clock(s.t).padStart(6)}`,
			`round ${String(s.rounds).padStart(5)} (${s.inFlight} live)`,
			`RSS ${fmt(s.rss / 1e6, 1).padStart(6)} MB`,
			`heap ${fmt(s.heapBytes / 1e6, 1).padStart(5)} MB`,
			`sessions ${String(s.sessions).padStart(3)}`,
			`bcasts ${String(s.broadcasts).padStart(2)}`,
			`tracks ${String(s.tracks).padStart(2)}`,
			`subs ${String(s.subscriptions).padStart(3)}`,
			`cache ${fmt(s.cacheBytes / 2 ** 20, 0).padStart(3)} MiB`,
			`ends seen clean/reset ${s.cleanSeenClean}/${s.cleanSeenReset}`,
		].join("  "),
	);
}

// Ctrl-C: everyone leaves at once, the relay is stopped, and what was measured is reported.
let stopRequested: (() => void) | null = null;
const stopNow = new Promise<void>((r) => {
	stopRequested = r;
});
let interruptedAt = 0;
process.on("SIGINT", () => {
	// A terminal's Ctrl-C reaches both npm and this process, and npm forwards its own copy: only a
	// second one a moment later means "quit now".
	if (interrupted && performance.now() - interruptedAt < 1000) return;
	if (interrupted) {
		relay.child.kill("SIGKILL");
		process.exit(130);
	}
	interrupted = true;
	interruptedAt = performance.now();
	say("\nSIGINT: stopping the churn (again to quit at once)");
	churn.abort();
	stopRequested?.();
});
process.on("SIGTERM", () => {
	interrupted = true;
	churn.abort();
	stopRequested?.();
});

await sample("idle");
t0 = performance.now();
samples[0].t = 0;
let roundOneSampled = false;
churn.onRoundDone = () => {
	if (roundOneSampled || churn.stats.roundsDone < 1) return;
	roundOneSampled = true;
	void sample("churn").then((s) => s && progress(s));
};
churn.start();
const endAt = t0 + minutes * 60_000;
const ticker = setInterval(() => {
	void sample("churn").then((s) => {
		if (s) progress(s);
		else if (relayGone) stopRequested?.();
	});
}, sampleMs);
await Promise.race([stopNow, new Promise((r) => setTimeout(r, Math.max(0, endAt - performance.now())))]);
clearInterval(ticker);
const churnEnd = (performance.now() - t0) / 1000;
if (!interrupted && !relayGone) {
	say(`${clock(churnEnd)}: starting no more rounds; waiting for the ${churn.inFlight} in flight to finish`);
	await churn.stop();
} else {
	churn.abort();
	await Promise.race([churn.stop(), new Promise((r) => setTimeout(r, 10_000))]);
}

// At rest: every client has left. The workers publish their figures once a second; wait (up to
// 20 s) for every count to read zero.
let rest: Partial<Record<(typeof LEAK_COUNTS)[number], number>> | null = null;
if (!relayGone) {
	const deadline = performance.now() + 20_000;
	for (;;) {
		await new Promise((r) => setTimeout(r, 1000));
		const s = await sample("rest");
		if (!s || lastCounts === null) break;
		const counts: RelayCounts = lastCounts;
		rest = Object.fromEntries(LEAK_COUNTS.map((k) => [k, counts[k]]));
		if (LEAK_COUNTS.every((k) => counts[k] === 0) || performance.now() > deadline) {
			progress(s);
			break;
		}
	}
}
const finalCounts = lastCounts as RelayCounts | null;
const exitCode = await relay.stop();

// ── the report ──────────────────────────────────────────────────────────────────────────────
const st: ChurnStats = churn.stats;
const lines: string[] = [];
const out = (l = "") => lines.push(l);
out();
out(
	`soak summary: ${clock(churnEnd)} of churn, ${st.roundsDone} rounds (${st.publishers.net} published with @moq/net over WebSocket, ${st.publishers.quic} with our client over QUIC), ${workers} workers${interrupted ? " (interrupted)" : ""}`,
);
out(
	`  viewers: ${st.viewerSessions.net + st.viewerSessions.quic} sessions (${st.viewerSessions.net} @moq/net, ${st.viewerSessions.quic} QUIC), ${st.midJoins} joined mid-round, ${st.earlyLeaves} left early; ${st.groupsReceived.net + st.groupsReceived.quic} groups received (${st.groupsPublished} published), ${st.starvedViewers} viewers got nothing`,
);
out(
	`  round ends: ${st.ends.clean} clean, ${st.ends["viewers-first"]} viewers-first (then clean), ${st.ends.abrupt} abrupt (publisher closed its session without ending)`,
);
const codes = (r: Record<string, number>) =>
	Object.keys(r).length === 0
		? ""
		: ` (code ${Object.entries(r)
				.map(([k, v]) => `${k}: ${v}`)
				.join(", ")})`;
const byPub = (e: typeof st.afterCleanEnd) =>
	` [by publisher: @moq/net ${e.byPublisher.net.clean} clean / ${e.byPublisher.net.reset} reset / ${e.byPublisher.net.none} nothing; QUIC ${e.byPublisher.quic.clean} / ${e.byPublisher.quic.reset} / ${e.byPublisher.quic.none}]`;
out(
	`  ends seen by viewers that stayed: after a clean end ${st.afterCleanEnd.clean} clean, ${total(st.afterCleanEnd.reset)} reset${codes(st.afterCleanEnd.reset)}, ${st.afterCleanEnd.none} nothing within 2 s${byPub(st.afterCleanEnd)}`,
);
out(
	`                                    after an abrupt end ${total(st.afterAbruptEnd.reset)} reset${codes(st.afterAbruptEnd.reset)}, ${st.afterAbruptEnd.clean} clean, ${st.afterAbruptEnd.none} nothing${byPub(st.afterAbruptEnd)}`,
);
if (st.subscribeRetries || total(st.earlyEnds) || st.groupsReset)
	out(
		`  subscriptions: ${st.subscribeRetries} retried (ended before the announcement reached the viewer's worker), ${total(st.earlyEnds)} ended while the publisher was live${codes(st.earlyEnds)}, ${st.groupsReset} groups reset mid-stream`,
	);
if (Object.keys(st.errors).length) {
	out(`  client errors (${st.roundsWithErrors} rounds):`);
	for (const [msg, n] of Object.entries(st.errors)) out(`    ${n} × ${msg}`);
}
if (unhandled) out(`  ${unhandled} unhandled promise rejections in the clients`);
if (finalCounts) {
	const refusals = Object.entries(finalCounts.refusals);
	out(
		`  relay: exit ${exitCode}, ${finalCounts.sessionFaults} session faults, ${finalCounts.workerRestarts} worker restarts, refusals ${refusals.length ? refusals.map(([k, v]) => `${k} ${v}`).join(", ") : "none"}; session closes ${Object.entries(
			finalCounts.closes,
		)
			.filter(([, v]) => v > 0)
			.map(([k, v]) => `${k} ${v}`)
			.join(", ")}`,
	);
}
if (relayGone) out(`  THE RELAY EXITED during the soak:\n${relay.log().slice(-3000)}`);
else if (exitCode !== 0)
	out(
		`  WARNING: the relay exited with status ${exitCode} on SIGTERM (a graceful drain exits 0); its stderr ends with:\n${relay
			.log()
			.slice(-1500)
			.split("\n")
			.map((l) => `    | ${l}`)
			.join("\n")}`,
	);
const idle = samples.find((s) => s.phase === "idle");
const atRest = [...samples].reverse().find((s) => s.phase === "rest");
out();
out(
	`RSS: idle before the churn ${fmt((idle?.rss ?? Number.NaN) / 1e6, 1)} MB, at rest after it ${fmt((atRest?.rss ?? Number.NaN) / 1e6, 1)} MB. Trend from the first sample after round 1; slopes over the second half (least squares):`,
);
out(trendTable(samples));
out();
out(
	asciiChart(
		samples,
		"rss",
		64,
		12,
		(samples.find((s) => s.phase === "churn" && s.rounds >= 1)?.rss ?? 0) * MAX_RSS_RATIO,
	),
);
out();
const v = verdicts(samples, rest);
if (minutes < 10) out(`(a ${minutes}-minute run: the RSS criteria are meant for long runs; short ones are noisy)`);
for (const x of v) out(`${x.ok ? "PASS" : "FAIL"}  ${x.name}: ${x.detail}`);
const ok = !relayGone && !interrupted && v.every((x) => x.ok);
out(ok ? "soak: PASS" : `soak: FAIL${interrupted ? " (interrupted)" : ""}`);

mkdirSync(outDir, { recursive: true });
const options = {
	minutes,
	workers,
	roundMs,
	watchMs,
	viewers: viewerCount,
	sampleMs,
	cacheTotal: values["cache-total"],
	trackBytes: values["track-bytes"],
	relay: values.relay ?? "src/bin/moq-fanout.ts",
};
writeFileSync(join(outDir, "samples.csv"), toCsv(samples));
writeFileSync(
	join(outDir, "samples.json"),
	`${JSON.stringify({ options, started: new Date(Date.now() - performance.now() + t0).toISOString(), stats: st, verdicts: v, samples }, null, 1)}\n`,
);
writeFileSync(
	join(outDir, "chart.svg"),
	chartSvg(
		samples,
		`moq-fanout soak: ${clock(churnEnd)} of churn, ${st.roundsDone} rounds, ${workers} workers — ${ok ? "PASS" : "FAIL"}`,
		[
			`a round every ${roundMs} ms, ${watchMs} ms each, ${viewerCount} viewers; cache ${options.cacheTotal} (${options.trackBytes} rings); RSS idle ${fmt((idle?.rss ?? Number.NaN) / 1e6, 1)} MB, at rest ${fmt((atRest?.rss ?? Number.NaN) / 1e6, 1)} MB`,
			v.map((x) => `${x.ok ? "PASS" : "FAIL"}: ${x.detail}`).join("; "),
		],
	),
);
writeFileSync(join(outDir, "summary.txt"), `${lines.join("\n")}\n`);
out(`artifacts: ${join(outDir, "samples.csv")}, samples.json, chart.svg, summary.txt`);
say(lines.join("\n"));
process.exit(ok ? 0 : 1);
