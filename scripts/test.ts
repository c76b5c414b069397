/**
 * `npm test`: runs every test file under test/ with Node's test runner (on the Node the project
 * pins), then prints one summary line. Extra arguments are passed through (e.g. a file or --test-name-pattern).
 *
 * Two QUIC engines serve the relay (src/quic/engine.ts): a full run (no file named) runs everything
 * on the engine "auto" picks, then the QUIC and WebTransport suites (ENGINE_SUITES) a second time on
 * the other engine, with MOQ_SERVER_QUIC_ENGINE set (it reaches every server a test starts, in
 * process or not). `--engine-suites` names those suites as the files to run.
 * `--engine quiche|ngtcp2` runs the named files (or the full suite) on that engine
 * only, without the second pass.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { autoEngineName, ngtcp2Unavailable } from "../src/quic/engine.ts";

/**
 * The suites the second pass runs on the other engine: the end-to-end QUIC and WebTransport tests
 * (our clients, Chromium, the multi-worker test, the hardening limits and the live fuzzer), about
 * 2.5 minutes on a 2-vCPU machine. Left out to keep it under 3: worker-recovery.test.ts (50–85 s,
 * worker crashes: the pool's behaviour more than the engine's) and attack.test.ts (30 s; its
 * Initial flood is quic-flood.test.ts's, which runs here); both pass on either engine with
 * `--engine`. Also left out: the files whose QUIC use is incidental.
 */
const ENGINE_SUITES = [
	"quic",
	"quic-relay",
	"quic-workers",
	"quic-admission",
	"quic-flood",
	"quic-loss",
	"quic-stray",
	"webtransport-relay",
	"webtransport-quic",
	"webtransport-session",
	"multiworker",
	"gso-delivery",
	"one-write",
	"hardening-relay",
	"browser",
	"ietf-browser",
	"fuzz-live",
].map((name) => join("test", `${name}.test.ts`));

const ENGINES = ["quiche", "ngtcp2"] as const;
type Engine = (typeof ENGINES)[number];

function find(dir: string, out: string[]): string[] {
	for (const name of readdirSync(dir)) {
		const p = join(dir, name);
		if (statSync(p).isDirectory()) find(p, out);
		else if (name.endsWith(".test.ts")) out.push(p);
	}
	return out;
}

const args = process.argv.slice(2);
let engine: Engine | null = null;
const engineAt = args.indexOf("--engine");
if (engineAt >= 0) {
	const value = args[engineAt + 1];
	if (!(ENGINES as readonly string[]).includes(value ?? "")) {
		console.error(`npm test: --engine takes ${ENGINES.join(" or ")}`);
		process.exit(2);
	}
	engine = value as Engine;
	args.splice(engineAt, 2);
}
// --engine-suites: just the QUIC and WebTransport suites (ENGINE_SUITES), say on another build of
// the ngtcp2 engine (scripts/test-ngtcp2-1x.sh).
const suitesAt = args.indexOf("--engine-suites");
if (suitesAt >= 0) args.splice(suitesAt, 1, ...ENGINE_SUITES);
const fullRun = !args.some((a) => a.endsWith(".ts"));
const files = fullRun ? find("test", []).sort() : [];

/** One `node --test` run; returns its exit status. */
function run(files: string[], env: NodeJS.ProcessEnv): number {
	const res = spawnSync(
		process.execPath,
		["--test", "--test-concurrency=1", "--test-timeout=180000", ...args, ...files],
		// A file that leaves a socket open after a failed hook would keep the runner waiting: fail the
		// run after 20 minutes instead of letting CI sit until its own limit.
		{ stdio: "inherit", timeout: 20 * 60_000, killSignal: "SIGKILL", env },
	);
	if (res.error) console.error(`npm test: ${res.error.message}`);
	return res.status ?? 1;
}

const env = engine === null ? process.env : { ...process.env, MOQ_SERVER_QUIC_ENGINE: engine };
let status = run(files, env);

if (fullRun && engine === null) {
	const set = process.env.MOQ_SERVER_QUIC_ENGINE?.trim();
	const first: Engine = set === "quiche" || set === "ngtcp2" ? set : autoEngineName();
	const other: Engine = first === "quiche" ? "ngtcp2" : "quiche";
	const missing = other === "ngtcp2" ? ngtcp2Unavailable() : "";
	if (missing !== "") {
		// Without the libraries there is no second engine to test (CI installs them: .ci/run).
		console.error(`npm test: the QUIC suites ran on ${first} only: ${missing}`);
		if (process.env.CI === "true") status ||= 1;
	} else {
		console.error(`npm test: the QUIC and WebTransport suites again, on the ${other} engine`);
		status = run(ENGINE_SUITES, { ...process.env, MOQ_SERVER_QUIC_ENGINE: other }) || status;
	}
}
process.exit(status);
