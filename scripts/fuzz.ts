/**
 * `npm run fuzz`: the long run of the decoder fuzzers (test/fuzz/targets.ts), 1,000,000 cases per
 * target by default. Each target runs in its own worker thread so a hang (an infinite loop the
 * per-case time budget cannot interrupt) or a crash that takes the thread down is still reported:
 * the worker publishes the index of the case it is on, and cases are a pure function of
 * (seed, target, index), so the watchdog rebuilds the offending input from that index alone.
 *
 *   npm run fuzz -- [--cases N] [--seed S] [--target NAME]... [--jobs J] [--stall-seconds S] [--list]
 *
 * Prints progress, then a summary table; exits 1 when any target crashed, after printing each
 * crashing input in hex with a regression test to paste into test/fuzz-regressions.test.ts.
 */
import { availableParallelism } from "node:os";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { type Crash, fuzz, generate, hex, regressionSnippet, type Tally } from "../test/fuzz/engine.ts";
import { allTargets, targetNamed } from "../test/fuzz/targets.ts";

interface Job {
	target: string;
	seed: number;
	cases: number;
	/** Int32Array over a SharedArrayBuffer: [current case index]. */
	current: SharedArrayBuffer;
}

type FromWorker = { kind: "progress"; done: number } | { kind: "done"; tally: Tally };

if (!isMainThread) {
	const job = workerData as Job;
	const current = new Int32Array(job.current);
	const tally = await fuzz(targetNamed(job.target), {
		seed: job.seed,
		cases: job.cases,
		progressEvery: 20_000,
		onCase: (i) => Atomics.store(current, 0, i),
		onProgress: (done) => parentPort!.postMessage({ kind: "progress", done } satisfies FromWorker),
	});
	parentPort!.postMessage({ kind: "done", tally } satisfies FromWorker);
} else {
	await main();
}

function usage(message: string): never {
	console.error(`npm run fuzz: ${message}`);
	console.error(
		"usage: npm run fuzz -- [--cases N] [--seed S] [--target NAME]... [--jobs J] [--stall-seconds S] [--list]",
	);
	process.exit(2);
}

function parseFlags(argv: string[]) {
	// A case stuck this long (whole seconds) is a hang: far above any budget, below CI's patience.
	const out = { cases: 1_000_000, seed: 1, targets: [] as string[], jobs: 1, list: false, stallSeconds: 60 };
	for (let i = 0; i < argv.length; i++) {
		const flag = argv[i];
		const value = () => {
			const v = argv[++i];
			if (v === undefined) usage(`${flag} needs a value`);
			return v;
		};
		const count = (v: string) => {
			const n = Number(v.replace(/_/g, ""));
			if (!Number.isSafeInteger(n) || n < 0) usage(`${flag} wants a non-negative integer, got ${v}`);
			return n;
		};
		if (flag === "--cases") out.cases = count(value());
		else if (flag === "--seed") out.seed = count(value());
		else if (flag === "--target") out.targets.push(value());
		else if (flag === "--jobs") out.jobs = Math.max(1, count(value()));
		else if (flag === "--stall-seconds") out.stallSeconds = Math.max(1, count(value()));
		else if (flag === "--list") out.list = true;
		else usage(`unknown argument ${flag}`);
	}
	return out;
}

/** Runs one target in a worker with a stall watchdog; always resolves with a tally. */
function runTarget(
	target: string,
	seed: number,
	cases: number,
	stallMs: number,
	log: (line: string) => void,
): Promise<Tally> {
	const current = new SharedArrayBuffer(4);
	const index = new Int32Array(current);
	const started = performance.now();
	const worker = new Worker(new URL(import.meta.url), { workerData: { target, seed, cases, current } satisfies Job });
	return new Promise((resolve) => {
		let done = 0;
		let lastBeat = Date.now();
		let lastIndex = -1;
		let lastLog = 0;
		let settled = false;
		const finish = (tally: Tally) => {
			if (settled) return;
			settled = true;
			clearInterval(watchdog);
			resolve(tally);
		};
		/** A tally for a target the worker could not finish: what it had done, plus the case it died on. */
		const died = (why: string) => {
			const at = Atomics.load(index, 0);
			const crash: Crash = { target, seed, index: at, input: generate(targetNamed(target), seed, at), error: why };
			finish({
				target,
				cases: Math.max(done, at),
				ok: 0,
				more: 0,
				rejected: 0,
				crashCount: 1,
				crashes: [crash],
				ms: performance.now() - started,
			});
		};
		const watchdog = setInterval(() => {
			const at = Atomics.load(index, 0);
			if (at !== lastIndex) {
				lastIndex = at;
				lastBeat = Date.now();
			} else if (Date.now() - lastBeat > stallMs) {
				void worker.terminate();
				died(`hang: no progress for ${stallMs / 1000} s on this case`);
			}
		}, 1000);
		worker.on("message", (m: FromWorker) => {
			if (m.kind === "progress") {
				done = m.done;
				const now = performance.now();
				if (now - lastLog > 5000 || done === cases) {
					lastLog = now;
					const rate = done / ((now - started) / 1000);
					log(
						`  ${target.padEnd(30)} ${String(done).padStart(9)}/${cases}  ${((100 * done) / cases).toFixed(0).padStart(3)}%  ${(rate / 1000).toFixed(1)}k cases/s`,
					);
				}
			} else {
				finish(m.tally);
			}
		});
		worker.on("error", (err) => died(`worker died: ${err.name}: ${err.message}`));
		worker.on("exit", (code) => {
			if (!settled) died(`worker exited with code ${code}`);
		});
	});
}

function formatTable(tallies: Tally[]): string {
	const head = ["target", "cases", "ok", "need-more", "rejected", "crashes", "time", "cases/s"];
	const rows = tallies.map((t) => [
		t.target,
		t.cases.toLocaleString("en-US"),
		t.ok.toLocaleString("en-US"),
		t.more.toLocaleString("en-US"),
		t.rejected.toLocaleString("en-US"),
		String(t.crashCount),
		`${(t.ms / 1000).toFixed(1)} s`,
		Math.round(t.cases / (t.ms / 1000)).toLocaleString("en-US"),
	]);
	const total = tallies.reduce((a, t) => a + t.cases, 0);
	const crashes = tallies.reduce((a, t) => a + t.crashCount, 0);
	const ms = tallies.reduce((a, t) => a + t.ms, 0);
	rows.push(["total", total.toLocaleString("en-US"), "", "", "", String(crashes), `${(ms / 1000).toFixed(1)} s`, ""]);
	const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
	const line = (cells: string[]) =>
		cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
	const rule = widths.map((w) => "-".repeat(w)).join("  ");
	return [line(head), rule, ...rows.slice(0, -1).map(line), rule, line(rows[rows.length - 1])].join("\n");
}

async function main(): Promise<void> {
	const flags = parseFlags(process.argv.slice(2));
	const all = allTargets().map((t) => t.name);
	if (flags.list) {
		console.log(all.join("\n"));
		return;
	}
	const chosen =
		flags.targets.length === 0
			? all
			: all.filter((name) => flags.targets.some((want) => name === want || name.includes(want)));
	if (chosen.length === 0) usage(`no target matches ${flags.targets.join(", ")} (see --list)`);
	const jobs = Math.min(flags.jobs, availableParallelism(), chosen.length);
	console.log(
		`fuzzing ${chosen.length} target(s), ${flags.cases.toLocaleString("en-US")} cases each, seed ${flags.seed}, ${jobs} at a time`,
	);

	const started = performance.now();
	const tallies = new Map<string, Tally>();
	const queue = [...chosen];
	const lane = async () => {
		for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
			const tally = await runTarget(name, flags.seed, flags.cases, flags.stallSeconds * 1000, (line) =>
				console.log(line),
			);
			tallies.set(name, tally);
			const mark = tally.crashCount === 0 ? "ok" : `${tally.crashCount} CRASH(ES)`;
			console.log(
				`[${tallies.size}/${chosen.length}] ${name}: ${tally.cases} cases in ${(tally.ms / 1000).toFixed(1)} s, ${mark}`,
			);
		}
	};
	await Promise.all(Array.from({ length: jobs }, lane));

	const ordered = chosen.map((name) => tallies.get(name)!);
	console.log(`\n${formatTable(ordered)}`);
	console.log(`\nwall time ${((performance.now() - started) / 1000).toFixed(1)} s`);

	const crashed = ordered.filter((t) => t.crashCount > 0);
	if (crashed.length === 0) {
		console.log("no crashes");
		return;
	}
	console.log(`\n${ordered.reduce((a, t) => a + t.crashCount, 0)} crashing case(s); the first of each target:`);
	for (const t of crashed) {
		const [c, ...more] = t.crashes;
		console.log(`\n${c.target}, seed ${c.seed}, case ${c.index}: ${c.error}`);
		console.log(`input (${c.input.length} bytes): ${hex(c.input)}`);
		if (more.length > 0) console.log(`also cases ${more.map((m) => `${m.index} (${m.error})`).join(", ")}`);
		console.log("regression test for test/fuzz-regressions.test.ts:\n");
		console.log(regressionSnippet(c));
	}
	process.exitCode = 1;
}
