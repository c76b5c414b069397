/**
 * `npm run fuzz:live`: starts the relay (the real binary, 2 workers) and sends it mutated valid
 * moq-lite streams over raw QUIC, HTTP/3 WebTransport and WebSocket (test/fuzz/live.ts), then
 * checks that the process lives, no worker restarted, and a fresh publisher/subscriber pair works.
 *
 *   npm run fuzz:live -- [--sessions N] [--streams N] [--concurrency N] [--seed S] [--workers N]
 *                        [--transport quic|webtransport|websocket]... [--rounds N]
 *
 * Exits 1 when the relay did not survive; its stderr tail is printed to show what killed it.
 */
import { checkHealth, type LiveTransport, runLiveFuzz } from "../test/fuzz/live.ts";
import { startRelayProcess } from "../test/support/process-relay.ts";

function usage(message: string): never {
	console.error(`npm run fuzz:live: ${message}`);
	console.error(
		"usage: npm run fuzz:live -- [--sessions N] [--streams N] [--concurrency N] [--seed S] [--workers N] [--transport T]... [--rounds N]",
	);
	process.exit(2);
}

const flags = {
	sessions: 200,
	streams: 12,
	concurrency: 8,
	seed: 1,
	workers: 2,
	rounds: 1,
	transports: [] as LiveTransport[],
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
	const flag = argv[i];
	const value = argv[++i];
	if (value === undefined) usage(`${flag} needs a value`);
	if (flag === "--transport") {
		if (value !== "quic" && value !== "webtransport" && value !== "websocket") usage(`unknown transport ${value}`);
		flags.transports.push(value);
		continue;
	}
	const n = Number(value);
	if (!Number.isSafeInteger(n) || n < 0) usage(`${flag} wants a non-negative integer`);
	if (flag === "--sessions") flags.sessions = n;
	else if (flag === "--streams") flags.streams = n;
	else if (flag === "--concurrency") flags.concurrency = Math.max(1, n);
	else if (flag === "--seed") flags.seed = n;
	else if (flag === "--workers") flags.workers = Math.max(1, n);
	else if (flag === "--rounds") flags.rounds = Math.max(1, n);
	else usage(`unknown argument ${flag}`);
}
const transports: LiveTransport[] =
	flags.transports.length > 0 ? flags.transports : ["quic", "webtransport", "websocket"];

console.log(`starting the relay (${flags.workers} workers)…`);
const relay = await startRelayProcess(["--workers", String(flags.workers), "--log-level", "warn"]);
let failed = false;
try {
	for (let round = 0; round < flags.rounds && !failed; round++) {
		const seed = flags.seed + round;
		console.log(
			`round ${round + 1}/${flags.rounds}: seed ${seed}, ${flags.sessions} sessions × ${flags.streams} streams per transport (${transports.join(", ")})`,
		);
		const started = performance.now();
		let lastLog = 0;
		const report = await runLiveFuzz({
			host: "127.0.0.1",
			port: relay.port,
			seed,
			sessions: flags.sessions,
			streams: flags.streams,
			concurrency: flags.concurrency,
			transports,
			onSession: (transport, done) => {
				const now = performance.now();
				if (now - lastLog > 2000 || done === flags.sessions) {
					lastLog = now;
					console.log(`  ${transport.padEnd(12)} ${done}/${flags.sessions} sessions`);
				}
			},
		});
		const health = await checkHealth(relay, `fuzz-check-${round}`);
		const secs = ((performance.now() - started) / 1000).toFixed(1);
		console.log("");
		console.log("transport      sessions  connect-failures");
		for (const t of transports) {
			console.log(
				`${t.padEnd(13)} ${String(report.sessions[t]).padStart(9)}  ${String(report.connectFailures[t]).padStart(16)}`,
			);
		}
		console.log(`streams sent   ${report.streams} (${report.bytes} bytes) in ${secs} s`);
		console.log(`frame-level    ${report.frameSessions} sessions mutated qmux / HTTP/3 framing`);
		console.log(`relay alive    ${health.alive ? "yes" : "NO"}`);
		console.log(`worker restarts ${health.restarts}`);
		console.log(
			`fresh client   ${Array.isArray(health.frames) ? `received ${health.frames.length} frames` : `FAILED: ${health.frames}`}`,
		);
		failed = !health.alive || health.restarts !== 0 || !Array.isArray(health.frames);
	}
} finally {
	await relay.stop();
}
if (failed) {
	// The supervisor logs each worker death with the error and stack: those lines name the bug.
	const lines = relay.stderr.join("").split("\n");
	const deaths = lines.filter((l) => l.includes("worker died"));
	console.log("\nthe relay did not survive; its log says:\n");
	console.log((deaths.length > 0 ? deaths.slice(0, 10) : lines.slice(-40)).join("\n"));
	process.exitCode = 1;
} else {
	console.log("\nthe relay survived");
}
