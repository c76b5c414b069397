/**
 * `npm run fuzz:quic`: the QUIC packet fuzzer (test/fuzz/quic-packets.ts) against the ngtcp2
 * engine's server Connection, in-process, no sockets.
 *
 *   npm run fuzz:quic -- [--packets N] [--seed S] [--sanitize] [--case I] [--from I] [--api-edges]
 *
 * The fuzzing runs in a child process so that a crash (an abort, a sanitizer report) is still
 * reported, with the case it happened in: the child writes the index of each case before running
 * it, and a case is a function of (seed, index), so `--seed S --case I` replays it. --sanitize
 * builds native/build/ngtcp2-sanitized.node (ASan + UBSan) and runs the child under gcc's libasan
 * (LD_PRELOAD) with MOQ_NGTCP2_ADDON pointing at it. Exits 1 on a crash, a sanitizer report or a
 * contract violation. With MOQ_NGTCP2_ADDON set, --sanitize runs that build instead of building one.
 */
import { spawn, spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { loadNgtcp2, ngtcp2Path, ngtcp2Unavailable } from "../src/quic/engine.ts";
import { type FuzzStats, runFuzz } from "../test/fuzz/quic-packets.ts";

const REPO = resolve(import.meta.dirname, "..");
const SUMMARY = "QUIC-FUZZ-SUMMARY ";

interface Flags {
	packets: number;
	seed: number;
	sanitize: boolean;
	only?: number;
	from?: number;
	apiEdges: boolean;
}

function usage(message: string): never {
	console.error(`npm run fuzz:quic: ${message}`);
	console.error(
		"usage: npm run fuzz:quic -- [--packets N] [--seed S] [--sanitize] [--case I] [--from I] [--api-edges]",
	);
	process.exit(2);
}

function parseFlags(argv: string[]): Flags {
	const out: Flags = { packets: 1_000_000, seed: 1, sanitize: false, apiEdges: false };
	for (let i = 0; i < argv.length; i++) {
		const flag = argv[i];
		const num = (): number => {
			const v = Number(argv[++i]);
			if (!Number.isSafeInteger(v) || v < 0) usage(`${flag} needs a non-negative integer`);
			return v;
		};
		if (flag === "--packets") out.packets = num();
		else if (flag === "--seed") out.seed = num();
		else if (flag === "--case") out.only = num();
		else if (flag === "--from") out.from = num();
		else if (flag === "--sanitize") out.sanitize = true;
		else if (flag === "--api-edges") out.apiEdges = true;
		else usage(`unknown flag ${flag}`);
	}
	return out;
}

const flags = parseFlags(process.argv.slice(2));

if (process.env.MOQ_QUIC_FUZZ_CHILD === "1") await child();
else await parent();

/** The fuzzing itself. */
async function child(): Promise<void> {
	const addon = loadNgtcp2();
	if (addon === null) {
		console.error(`fuzz:quic: ${ngtcp2Unavailable()}`);
		process.exit(3);
	}
	const crumbPath = process.env.MOQ_QUIC_FUZZ_BREADCRUMB;
	const crumb = crumbPath ? openSync(crumbPath, "w") : -1;
	const t0 = performance.now();
	const stats = await runFuzz(addon, {
		seed: flags.seed,
		packets: flags.packets,
		from: flags.from,
		only: flags.only,
		apiEdges: flags.apiEdges,
		onCase: crumb >= 0 ? (index) => writeSync(crumb, `${index}          `, 0) : undefined,
		onProgress: (s: FuzzStats, index: number) => {
			const secs = (performance.now() - t0) / 1000;
			console.log(
				`  ${s.packets.toLocaleString("en")} packets (${Math.round(s.packets / secs)}/s), case ${index}, ` +
					`${s.handshakes} handshakes, ${s.recvErrors} refused, ${s.recvManyPackets} via recvMany, ${secs.toFixed(0)} s`,
			);
		},
	});
	if (crumb >= 0) closeSync(crumb);
	console.log(SUMMARY + JSON.stringify({ ...stats, seconds: (performance.now() - t0) / 1000 }));
}

async function parent(): Promise<void> {
	const env: NodeJS.ProcessEnv = { ...process.env, MOQ_QUIC_FUZZ_CHILD: "1" };
	delete env.NODE_TEST_CONTEXT;
	// MOQ_NGTCP2_ADDON already set: that (sanitized) build is the one under test, not rebuilt.
	const givenAddon = process.env.MOQ_NGTCP2_ADDON;
	if (flags.sanitize && !givenAddon) {
		const built = spawnSync(process.execPath, [join(REPO, "native", "build-ngtcp2.mjs"), "--sanitize"], {
			encoding: "utf8",
		});
		if (built.status !== 0) {
			console.error(`fuzz:quic: the sanitized build failed:\n${built.stdout}${built.stderr}`);
			process.exit(3);
		}
	}
	if (flags.sanitize) {
		const runtime = spawnSync("gcc", ["-print-file-name=libasan.so"], { encoding: "utf8" }).stdout?.trim() ?? "";
		if (!runtime.startsWith("/") || !existsSync(runtime)) {
			console.error(`fuzz:quic: gcc does not know where libasan.so is (${runtime})`);
			process.exit(3);
		}
		env.LD_PRELOAD = runtime;
		// handle_abort: an assertion in libngtcp2 prints the stack, so the engine call behind it shows.
		env.ASAN_OPTIONS = "detect_leaks=0:abort_on_error=1:handle_abort=1";
		env.UBSAN_OPTIONS = "halt_on_error=1:print_stacktrace=1";
		env.MOQ_NGTCP2_ADDON = givenAddon || ngtcp2Path(true);
	}
	const addonPath = env.MOQ_NGTCP2_ADDON || ngtcp2Path();
	const dir = mkdtempSync(join(tmpdir(), "moq-quic-fuzz-"));
	const crumbPath = join(dir, "case");
	env.MOQ_QUIC_FUZZ_BREADCRUMB = crumbPath;
	console.log(
		`fuzz:quic: ${flags.only !== undefined ? `case ${flags.only}` : `${flags.packets.toLocaleString("en")} packets`}, ` +
			`seed ${flags.seed}, addon ${addonPath}${flags.sanitize ? " (ASan + UBSan)" : ""}`,
	);
	// --expose-gc: at each health check the fuzzer collects and lets the event loop turn, so the
	// native objects it dropped are finalized (quiche clients hold a keylog file open until then).
	const childProcess = spawn(process.execPath, ["--expose-gc", import.meta.filename, ...process.argv.slice(2)], {
		env,
		stdio: ["ignore", "pipe", "pipe"],
	});
	let stderr = "";
	let summary: (FuzzStats & { seconds: number; lastCase: number }) | null = null;
	let pending = "";
	childProcess.stdout.setEncoding("utf8");
	childProcess.stdout.on("data", (chunk: string) => {
		pending += chunk;
		let nl = pending.indexOf("\n");
		while (nl >= 0) {
			const line = pending.slice(0, nl);
			pending = pending.slice(nl + 1);
			if (line.startsWith(SUMMARY)) summary = JSON.parse(line.slice(SUMMARY.length));
			else console.log(line);
			nl = pending.indexOf("\n");
		}
	});
	childProcess.stderr.setEncoding("utf8");
	childProcess.stderr.on("data", (chunk: string) => {
		stderr += chunk;
		process.stderr.write(chunk);
	});
	const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((done) =>
		childProcess.on("close", (c, s) => done([c, s])),
	);
	const reports = (stderr.match(/ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer/g) ?? []).length;
	const crashed = code !== 0 || signal !== null;
	const result = summary as (FuzzStats & { seconds: number; lastCase: number }) | null;
	if (result !== null) printSummary(result, reports);
	if (crashed || reports > 0 || result === null || result.violations.length > 0) {
		let at = "";
		try {
			at = readFileSync(crumbPath, "utf8").trim();
		} catch {
			// no case started
		}
		console.log(`\nFAILED: child exit ${signal ?? code}, sanitizer reports ${reports}`);
		if (result !== null && result.violations.length > 0)
			console.log(`contract violations: ${result.violations.join("; ")}`);
		if (crashed && at !== "") {
			const edges = flags.apiEdges ? " --api-edges" : "";
			console.log(`crashed in case ${at} of seed ${flags.seed}; replay it alone with:`);
			console.log(
				`  npm run fuzz:quic -- --seed ${flags.seed} --case ${at}${edges}${flags.sanitize ? " --sanitize" : ""}`,
			);
		}
		rmSync(dir, { recursive: true, force: true });
		process.exit(1);
	}
	rmSync(dir, { recursive: true, force: true });
}

function printSummary(s: FuzzStats & { seconds: number; lastCase: number }, reports: number): void {
	const rows = Object.entries(s.byKind).sort((a, b) => b[1] - a[1]);
	const width = Math.max(...rows.map(([k]) => k.length));
	console.log("\nQUIC packet fuzz summary");
	console.log(`  packets fed to the engine  ${s.packets.toLocaleString("en")} (recv calls and recvMany batch entries)`);
	for (const [kind, n] of rows) console.log(`    ${kind.padEnd(width)}  ${n.toLocaleString("en")}`);
	const cases = Object.entries(s.casesByKind)
		.map(([k, n]) => `${k} ${n.toLocaleString("en")} (${((s.msByKind[k] ?? 0) / 1000).toFixed(1)} s)`)
		.join(", ");
	console.log(`  cases                      ${s.cases.toLocaleString("en")}: ${cases}, last case ${s.lastCase}`);
	console.log(
		`  handshakes completed       ${s.handshakes.toLocaleString("en")} (${s.healthChecks} health checks passed)`,
	);
	console.log(`  sessions fuzzed            ${s.sessionsFuzzed.toLocaleString("en")}`);
	console.log(
		`  via recvMany               ${s.recvManyPackets.toLocaleString("en")} in ${s.recvManyCalls.toLocaleString("en")} calls ` +
			`(${s.recvManyRead.toLocaleString("en")} read by the engine, ${s.recvManyRefused.toLocaleString("en")} of them refused; ` +
			`${s.recvManyLeft.toLocaleString("en")} left to recv)`,
	);
	console.log(`  recvMany argument edges    ${s.recvManyEdgeCalls.toLocaleString("en")} calls`);
	console.log(`  packets refused (recv threw) ${s.recvErrors.toLocaleString("en")}`);
	console.log(`  server packets out         ${s.serverPackets.toLocaleString("en")}`);
	console.log(`  stateless calls            ${s.statelessCalls.toLocaleString("en")}`);
	console.log(`  contract violations        ${s.violations.length}`);
	console.log(`  sanitizer reports          ${reports}`);
	console.log(
		`  time                       ${s.seconds.toFixed(1)} s (${Math.round(s.packets / s.seconds)} packets/s)`,
	);
}
