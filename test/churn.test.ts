/**
 * The bounded churn of issue 16 ("Broadcast lifecycle"): a minute of the soak's rounds (scripts/soak/
 * driver.ts: publishers on @moq/net over WebSocket and on our client over raw QUIC, ending cleanly,
 * viewers-first or abruptly; viewers joining mid-round and leaving early) against the real relay
 * process with 2 workers. Afterwards the relay's own counts (/metrics) of sessions, broadcasts,
 * tracks, subscriptions and cache bytes are back to zero. RSS is not asserted here (too noisy for
 * a minute): `npm run soak` measures it (docs/soak.md).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Churn, total } from "../scripts/soak/driver.ts";
import { LEAK_COUNTS, type RelayCounts, type SoakRelay, startSoakRelay } from "../scripts/soak/relay.ts";
import "./support/quiet.ts";
import { sleep, until } from "./support/wait.ts";

/** How long rounds keep starting; the running ones then finish (a few seconds more). */
const CHURN_MS = 60_000;

// @moq/net warns on every session it opens and on every reset it sees.
if (!process.env.MOQ_TEST_LOG) console.warn = () => {};
const trace = (what: unknown) => {
	if (process.env.MOQ_TEST_TRACE) console.error(JSON.stringify(what));
};

function leakCounts(c: RelayCounts): Record<string, number> {
	return Object.fromEntries(LEAK_COUNTS.map((k) => [k, c[k]]));
}

describe("session churn against the relay process (2 workers)", { timeout: 150_000 }, () => {
	let relay: SoakRelay;
	before(async () => {
		relay = await startSoakRelay({ workers: 2 });
	});
	after(async () => {
		await relay?.stop();
	});

	it("returns the relay's counts of sessions, broadcasts, tracks, subscriptions and cache bytes to zero", async () => {
		const churn = new Churn({
			base: relay.base,
			host: "127.0.0.1",
			port: relay.port,
			fingerprint: relay.fingerprint,
			roundMs: 1000,
			watchMs: 3000,
			viewers: 3,
		});
		const relayDied = new Promise<never>((_, reject) =>
			relay.child.once("exit", (code, signal) =>
				reject(new Error(`the relay exited (${code ?? signal}): ${relay.log().slice(-2000)}`)),
			),
		);
		relayDied.catch(() => {});
		// The most each count reached while the churn ran: a churn that never got anything going
		// would return to zero trivially.
		const peak = Object.fromEntries(LEAK_COUNTS.map((k) => [k, 0])) as Record<(typeof LEAK_COUNTS)[number], number>;
		let sampling = true;
		const sampler = (async () => {
			while (sampling) {
				const c = await relay.counts().catch(() => null);
				if (c) for (const k of LEAK_COUNTS) peak[k] = Math.max(peak[k], c[k]);
				trace({ counts: c && leakCounts(c), rounds: churn.stats.roundsDone, live: churn.inFlight });
				await sleep(1000);
			}
		})();
		try {
			churn.start();
			await Promise.race([sleep(CHURN_MS), relayDied]);
			await Promise.race([churn.stop(), relayDied]);
		} catch (err) {
			churn.abort();
			throw err;
		} finally {
			sampling = false;
			await sampler;
		}
		const s = churn.stats;
		trace(s);

		// The churn did what it is for: both clients published and watched, every kind of end happened.
		assert.ok(s.roundsDone >= 30, `rounds finished: ${s.roundsDone}`);
		assert.ok(s.publishers.net > 0 && s.publishers.quic > 0, `publishers: ${JSON.stringify(s.publishers)}`);
		assert.ok(
			s.ends.clean > 0 && s.ends["viewers-first"] > 0 && s.ends.abrupt > 0,
			`round ends: ${JSON.stringify(s.ends)}`,
		);
		assert.ok(s.midJoins > 0 && s.earlyLeaves > 0, `mid-round joins ${s.midJoins}, early leaves ${s.earlyLeaves}`);
		assert.ok(
			s.groupsReceived.net > 0 && s.groupsReceived.quic > 0,
			`groups received: ${JSON.stringify(s.groupsReceived)}`,
		);
		// A lost connection (our QUIC publisher's transport error) reaches the viewers that stayed as a
		// reset, never as a clean end. (@moq/net's "abrupt" rounds are a graceful close: a clean end.)
		const quicAbrupt = s.afterAbruptEnd.byPublisher.quic;
		assert.ok(quicAbrupt.reset > 0, `after a lost connection: ${JSON.stringify(s.afterAbruptEnd)}`);
		assert.equal(quicAbrupt.clean, 0, `a lost connection never ends cleanly: ${JSON.stringify(s.afterAbruptEnd)}`);
		// And a clean end is never a reset.
		assert.equal(total(s.afterCleanEnd.reset), 0, `after a clean end: ${JSON.stringify(s.afterCleanEnd)}`);
		for (const k of LEAK_COUNTS) assert.ok(peak[k] > 0, `${k} rose while the churn ran (peak ${peak[k]})`);

		// Everyone has left: every count the relay keeps of them reads zero. Workers publish their
		// figures once a second.
		let last: RelayCounts | null = null;
		const zero = Object.fromEntries(LEAK_COUNTS.map((k) => [k, 0]));
		await until(
			async () => {
				if (last !== null) await sleep(250);
				last = await relay.counts();
				return LEAK_COUNTS.every((k) => last![k] === 0);
			},
			15_000,
			"the relay's counts to return to zero",
		).catch(() => {});
		assert.ok(last, "read /metrics");
		const c = last as RelayCounts;
		assert.deepEqual(
			leakCounts(c),
			zero,
			`left on the relay after ${s.roundsDone} rounds (${JSON.stringify(s.ends)} ends; viewers saw ${JSON.stringify({ afterClean: s.afterCleanEnd, afterAbrupt: s.afterAbruptEnd })})`,
		);
		assert.equal(c.sessionFaults, 0, "no session closed by a fault");
		assert.equal(c.workerRestarts, 0, "no worker died");
		assert.equal(relay.child.exitCode, null, "the relay is still up");
	});
});
