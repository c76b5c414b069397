/**
 * Publisher churn across a cluster (the clustering issue's "route counts flat over a churn run"),
 * the short version of `npm run soak:cluster` (scripts/cluster-soak/run.ts, in process): a full
 * mesh of 3 relay processes (2 workers each, one shared `nodes` list, linger 1 s, peer idle timeout
 * 2 s); for 45 s a @moq/net publisher joins a random relay every 2 s with a fresh broadcast, 1-3
 * viewers watch it from the other relays, and it leaves (unpublish, connection close, or after its
 * viewers). Asserts:
 * - every viewer got every group from the one after its first to the last published, whole,
 *   byte-exact and once, and every viewer got something;
 * - while the churn runs, each relay's broadcasts, routes, upstream subscriptions and subscriptions
 *   stay within their bound per broadcast in flight, and no relay lists a broadcast well after its end;
 * - at rest, every count (broadcasts, routes, lingering, replicas, upstream subscriptions,
 *   subscriptions, tracks, sessions) is back to its pre-churn baseline within 20 s, links up;
 * - at rest, after forced full collections (the GC probe), no worker has a track or ring alive beyond
 *   what its relay core holds (a link session once kept every group it refused, and so its ring);
 * - no relay exited.
 * RSS is not asserted (45 s is warm-up): the soak measures it (docs/soak.md, "Cluster churn").
 * MOQ_TEST_TRACE=1 prints the soak's summary.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { summary } from "../scripts/cluster-soak/report.ts";
import { runClusterSoak } from "../scripts/cluster-soak/run.ts";
import "./support/quiet.ts";

// @moq/net warns on every session it opens and on every reset it sees.
if (!process.env.MOQ_TEST_LOG) console.warn = () => {};

describe("publisher churn across a 3-relay mesh", { timeout: 120_000 }, () => {
	it("delivers every group, keeps route counts bounded, and returns every count to its baseline", async () => {
		const r = await runClusterSoak({
			relays: 3,
			workers: 2,
			minutes: 0.75,
			roundMs: 2000,
			watchMs: 5000,
			sampleMs: 3000,
			onProgress: (line) => {
				if (process.env.MOQ_TEST_TRACE) console.error(line);
			},
		});
		const report = summary(r).join("\n");
		if (process.env.MOQ_TEST_TRACE) console.error(report);
		const verdict = (name: string) => {
			const v = r.verdicts.find((x) => x.name.startsWith(name));
			assert.ok(v, `verdict ${name}`);
			return v;
		};
		const st = r.stats;
		// The churn did something: rounds of every kind, media across the links.
		assert.ok(st.roundsDone >= 15, `rounds done: ${st.roundsDone}\n${report}`);
		assert.equal(st.roundsDone, st.roundsStarted, `every round finished\n${report}`);
		assert.ok(st.groupsChecked > 1000, `groups checked: ${st.groupsChecked}\n${report}`);
		const maxRoutes = Math.max(...r.samples.filter((s) => s.phase === "churn").map((s) => s.routes));
		assert.ok(maxRoutes > 0, `routes seen during the churn\n${report}`);

		assert.ok(verdict("no relay exited").ok, `${verdict("no relay exited").detail}\n${report}`);
		assert.equal(st.problemCount, 0, `delivery problems:\n- ${st.problems.join("\n- ")}\n${report}`);
		assert.equal(st.starvedViewers, 0, `viewers that got nothing\n${report}`);
		assert.equal(st.viewerOpenFailures + st.publishFailures, 0, `failed connects: ${JSON.stringify(st.errors)}`);
		assert.deepEqual(r.overBound, [], `counts above their bound during the churn\n${report}`);
		assert.deepEqual(r.stale, [], `ghost broadcasts\n${report}`);
		assert.deepEqual(r.leftovers, [], `counts not back to baseline at rest\n${report}`);
		// Forced full collections in every worker at rest: nothing of an ended broadcast still alive.
		assert.deepEqual(r.retained, [], `tracks or rings retained at rest\n${report}`);
		assert.ok(r.restSeconds !== null && r.restSeconds <= 20, `back at rest after ${r.restSeconds} s\n${report}`);
	});
});
