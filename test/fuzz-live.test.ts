/**
 * The live fuzzer, bounded for `npm test`: the real relay process (2 workers) takes mutated valid
 * moq-lite streams from unauthenticated clients over raw QUIC, HTTP/3 WebTransport and WebSocket,
 * then must still be running, with no worker restarted, and serve a fresh publisher/subscriber pair.
 * `npm run fuzz:live` runs the same thing longer.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { checkHealth, runLiveFuzz } from "./fuzz/live.ts";
import { type RelayProcess, startRelayProcess } from "./support/process-relay.ts";

let relay: RelayProcess;
before(async () => {
	relay = await startRelayProcess(["--workers", "2", "--log-level", "warn"]);
});
after(async () => {
	await relay?.stop();
});

test("live fuzz: mutated streams over QUIC, WebTransport and WebSocket leave the relay serving", {
	timeout: 60_000,
}, async () => {
	const report = await runLiveFuzz({
		host: "127.0.0.1",
		port: relay.port,
		seed: 20240611,
		sessions: 60,
		streams: 12,
		concurrency: 6,
	});
	// Survival first: a dying worker also makes later handshakes fail, and that is the symptom, not the cause.
	const health = await checkHealth(relay, "fuzz-check");
	const deaths = relay.stderr
		.join("")
		.split("\n")
		.filter((l) => l.includes("worker died"))
		.slice(0, 5)
		.join("\n");
	assert.ok(health.alive, `the relay process died:\n${relay.stderr.join("").slice(-4000)}`);
	assert.equal(health.restarts, 0, `a worker died and was restarted:\n${deaths}`);
	assert.ok(Array.isArray(health.frames), `a fresh client got no frames: ${health.frames}`);
	assert.ok(health.frames.length >= 3);
	for (const t of ["quic", "webtransport", "websocket"] as const) {
		assert.ok(
			report.sessions[t] >= 50,
			`${t}: only ${report.sessions[t]} sessions connected (${JSON.stringify(report)})`,
		);
	}
	assert.ok(report.streams > 500, `only ${report.streams} streams were sent`);
});
