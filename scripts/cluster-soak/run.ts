/**
 * The cluster churn soak's core, shared by `npm run soak:cluster` (scripts/cluster-soak.ts) and
 * test/cluster-churn.test.ts: start the mesh, take the baseline, churn (scripts/cluster-soak/
 * driver.ts) while sampling every relay, wait for every count to return to its baseline, stop the
 * relays, and judge (scripts/cluster-soak/report.ts). No printing and no files here: progress goes
 * to `onProgress`, the result is returned.
 * @module
 */

import type { WorkerProbeReport } from "../../src/worker/gc-probe.ts";
import type { ClusterNode } from "../../test/support/cluster.ts";
import { sleep } from "../../test/support/wait.ts";
import { REST_COUNTS, type RelayReading, type RestCount, SoakCluster } from "./cluster.ts";
import { ClusterChurn } from "./driver.ts";
import { countBounds, progressLine, verdicts } from "./report.ts";
import type { ClusterSample, ClusterSoakOptions, ClusterSoakResult, StaleSighting } from "./result.ts";

export type { ClusterSoakOptions, ClusterSoakResult, StaleSighting };

const MAX_STALE_EXCERPTS = 5;

function restCounts(r: Pick<RelayReading, RestCount>): Record<RestCount, number> {
	return Object.fromEntries(REST_COUNTS.map((k) => [k, r[k]])) as Record<RestCount, number>;
}

/**
 * The GC probe at rest (src/worker/gc-probe.ts): each worker forces full collections, then counts
 * the tracks and rings still alive. Anything above what its relay core still lists is held by
 * something that outlived its broadcast. On a cluster link (a session that never ends) that is
 * memory the relay never gets back: it found the link sessions keeping every group they had refused.
 */
async function retainedAtRest(nodes: ClusterNode[]): Promise<string[] | null> {
	const out: string[] = [];
	for (const n of nodes) {
		const found = await retainedOn(n);
		if (found === null) return null;
		out.push(...found);
	}
	return out;
}

/** Asked again for a while: some objects are let go by timers after the counts are back (grace periods, linger). */
const RETAINED_TRIES = 5;
const RETAINED_RETRY_MS = 3000;

async function retainedOn(n: ClusterNode): Promise<string[] | null> {
	const probe = async (snapshot: boolean) => {
		const res = await fetch(`${n.base}/debug/gc-probe${snapshot ? "?snapshot=1" : ""}`, {
			signal: AbortSignal.timeout(60_000),
		});
		if (res.status !== 200) return null;
		return ((await res.json()) as { workers: WorkerProbeReport[] }).workers;
	};
	const over = (w: WorkerProbeReport) => {
		const held = w.relay.tracks + w.relay.remoteTracks;
		return !w.answered || w.live.track > held || w.live.ring > held;
	};
	for (let attempt = 1; ; attempt++) {
		// The last attempt also writes heap snapshots of the relay's workers, for the retainers (the
		// files stay in the temp dir).
		const last = attempt === RETAINED_TRIES;
		const workers = await probe(last).catch(() => null);
		if (workers === null) return null;
		const bad = workers.filter(over);
		if (bad.length === 0) return [];
		if (!last) {
			await sleep(RETAINED_RETRY_MS);
			continue;
		}
		return bad.map((w) =>
			w.answered
				? `${n.name} worker ${w.index}: ${w.live.track} tracks and ${w.live.ring} rings alive after full collections ${((RETAINED_TRIES - 1) * RETAINED_RETRY_MS) / 1000} s apart, its relay core holds ${w.relay.tracks + w.relay.remoteTracks} (${JSON.stringify(w.live)}; heap snapshot ${w.snapshot ?? "none"})`
				: `${n.name} worker ${w.index}: did not answer the GC probe`,
		);
	}
}

export async function runClusterSoak(opts: ClusterSoakOptions = {}): Promise<ClusterSoakResult> {
	// The relays inherit the environment: the GC probe lets the soak check at rest that nothing of
	// an ended broadcast is still alive (a few registrations per track and session, nothing per frame).
	process.env.MOQ_FANOUT_GC_PROBE = "1";
	const o = {
		relays: opts.relays ?? 3,
		workers: opts.workers ?? 2,
		minutes: opts.minutes ?? 5,
		roundMs: opts.roundMs ?? 2000,
		watchMs: opts.watchMs ?? 6000,
		maxViewers: opts.maxViewers ?? 3,
		closeShare: opts.closeShare ?? 0.15,
		viewersFirstShare: opts.viewersFirstShare ?? 0.15,
		sampleMs: opts.sampleMs ?? 5000,
		restWaitMs: opts.restWaitMs ?? 20_000,
		lingerMs: opts.lingerMs ?? 1000,
		peerIdleMs: opts.peerIdleMs ?? 2000,
	};
	const say = opts.onProgress ?? (() => {});
	// A broadcast may outlive its publisher's end by linger + peer idle timeout (a lost route); past
	// that and a 2 s margin, a relay still listing it holds a ghost.
	const settleMs = o.lingerMs + o.peerIdleMs + 2000;

	const cluster = await SoakCluster.start({
		relays: o.relays,
		workers: o.workers,
		lingerMs: o.lingerMs,
		peerIdleMs: o.peerIdleMs,
	});
	const nodes = cluster.nodes;
	say(
		`mesh up: ${nodes.map((n, i) => `${n.name} ${n.url} id ${cluster.ids[i]} pid ${n.child?.pid} (dials ${cluster.dials(n).length})`).join(", ")}`,
	);
	const churn = new ClusterChurn({
		nodes,
		roundMs: o.roundMs,
		watchMs: o.watchMs,
		maxViewers: o.maxViewers,
		closeShare: o.closeShare,
		viewersFirstShare: o.viewersFirstShare,
		endWaitMs: settleMs,
		seed: opts.seed,
	});
	const samples: ClusterSample[] = [];
	/** By relay and path. */
	const stale = new Map<string, StaleSighting>();
	const sampleErrors: string[] = [];
	let t0 = performance.now();
	let maxInFlight = 0;

	/** Reads every relay at once; one sample per relay that answered. */
	async function sampleAll(phase: ClusterSample["phase"]): Promise<(ClusterSample | null)[]> {
		const ts = performance.now();
		const readings = await Promise.all(
			nodes.map((n) =>
				cluster.read(n).catch((err: Error) => {
					if (sampleErrors.length < 50)
						sampleErrors.push(`${((ts - t0) / 1000).toFixed(1)} s ${phase}: ${n.name}: ${err.message}`);
					return null;
				}),
			),
		);
		const te = performance.now();
		const live = churn.liveBetween(ts, te, settleMs);
		maxInFlight = Math.max(maxInFlight, churn.inFlight);
		const out: (ClusterSample | null)[] = [];
		for (const [i, r] of readings.entries()) {
			if (!r) {
				out.push(null);
				continue;
			}
			let staleHere = 0;
			for (const path of r.paths) {
				const round = churn.roundOf(path);
				const ended = round?.endAt ?? null;
				if (round && (ended === null || ended >= ts - settleMs)) continue;
				staleHere++;
				const key = `${nodes[i].name} ${path}`;
				const t = (ts - t0) / 1000;
				const seen = stale.get(key);
				if (seen) {
					seen.lastT = t;
					seen.samples++;
					continue;
				}
				const s: StaleSighting = {
					relay: nodes[i].name,
					path,
					firstT: t,
					lastT: t,
					samples: 1,
					endedAgoMs: ended === null ? null : Math.round(ts - ended),
					mode: round?.mode ?? null,
					round: round
						? `published on ${nodes[round.pub].name}, viewers on ${round.viewers.map((v) => nodes[v].name).join(",")}`
						: null,
				};
				if (stale.size < MAX_STALE_EXCERPTS) s.excerpt = await cluster.excerpt(nodes[i]);
				stale.set(key, s);
			}
			const { paths: _p, perWorker, ...counts } = r;
			const s: ClusterSample = {
				t: (ts - t0) / 1000,
				phase,
				relay: i,
				name: nodes[i].name,
				rounds: churn.stats.roundsDone,
				inFlight: churn.inFlight,
				live,
				...counts,
				stale: staleHere,
				perWorker: Object.entries(perWorker)
					.map(([w, [b, rt, l]]) => `w${w}:${b}/${rt}/${l}`)
					.join(" "),
			};
			samples.push(s);
			out.push(s);
		}
		return out;
	}

	const exitsSeen = () => cluster.exits.length > 0;
	let interrupted = false;
	const onAbort = () => {
		interrupted = true;
		churn.abort();
	};
	opts.signal?.addEventListener("abort", onAbort, { once: true });

	// The baseline: every link up, figures published (workers publish them once a second).
	let baselineRow: (ClusterSample | null)[] = [];
	for (let i = 0; i < 10; i++) {
		await sleep(1500);
		baselineRow = await sampleAll("idle");
		if (baselineRow.every((s) => s !== null && s.peersUp === s.peersDialled)) break;
	}
	for (const s of baselineRow) if (s) s.t = 0;
	const baseline = baselineRow.map((s, i) => {
		if (!s) throw new Error(`${nodes[i].name} did not answer for the baseline: ${sampleErrors.at(-1)}`);
		return restCounts(s);
	});
	say(
		`baseline: ${nodes.map((n, i) => `${n.name} ${REST_COUNTS.map((k) => `${k} ${baseline[i][k]}`).join(" ")}`).join("; ")}`,
	);

	t0 = performance.now();
	const started = new Date().toISOString();
	churn.start();
	const endAt = t0 + o.minutes * 60_000;
	let sampling: Promise<unknown> = Promise.resolve();
	const aborted = new Promise<void>((r) => opts.signal?.addEventListener("abort", () => r(), { once: true }));
	while (!interrupted && !exitsSeen()) {
		const nextAt = Math.min(endAt, performance.now() + o.sampleMs);
		await Promise.race([sleep(Math.max(0, nextAt - performance.now())), aborted]);
		if (interrupted || performance.now() >= endAt) break;
		await sampling;
		sampling = sampleAll("churn").then((row) => say(progressLine(row, churn.stats.roundsDone, churn.inFlight)));
	}
	await sampling;
	const churnSeconds = (performance.now() - t0) / 1000;
	if (exitsSeen()) {
		say(`a relay exited: ${cluster.exits.map((e) => `${e.relay} (${e.code})`).join(", ")}; stopping the churn`);
		churn.abort();
	} else if (!interrupted)
		say(`churn over after ${churnSeconds.toFixed(0)} s: no more rounds; ${churn.inFlight} in flight finish`);
	// Every round ends within its connect timeouts, watch and end waits; a hung one is not waited for.
	let drainTimer: ReturnType<typeof setTimeout> | undefined;
	await Promise.race([
		churn.stop(),
		new Promise<void>((r) => {
			drainTimer = setTimeout(r, interrupted || exitsSeen() ? 10_000 : 60_000);
		}),
	]);
	clearTimeout(drainTimer);
	const drainedSeconds = (performance.now() - t0) / 1000;
	// The last churn sample, once every round has finished: the end of the churn for the charts.
	const lastChurn = await sampleAll("churn");
	say(progressLine(lastChurn, churn.stats.roundsDone, churn.inFlight));

	// At rest: every count back to its baseline within restWaitMs (the workers' figures are up to a
	// second old), the links still up.
	const restStart = performance.now();
	let restSeconds: number | null = null;
	let restRow: (ClusterSample | null)[] = [];
	const back = (s: ClusterSample | null, i: number) =>
		s !== null && REST_COUNTS.every((k) => s[k] === baseline[i][k]) && s.peersUp === s.peersDialled;
	while (!exitsSeen()) {
		await sleep(1000);
		restRow = await sampleAll("rest");
		if (restRow.every(back)) {
			restSeconds = (performance.now() - restStart) / 1000;
			break;
		}
		if (performance.now() - restStart > o.restWaitMs) break;
	}
	say(progressLine(restRow, churn.stats.roundsDone, churn.inFlight, "rest"));
	const leftovers: string[] = [];
	for (const [i, s] of restRow.entries()) {
		if (back(s, i)) continue;
		const n = nodes[i];
		if (!s) {
			leftovers.push(`${n.name}: did not answer at rest`);
			continue;
		}
		const off = REST_COUNTS.filter((k) => s[k] !== baseline[i][k]).map(
			(k) => `${k} ${s[k]} (baseline ${baseline[i][k]})`,
		);
		if (s.peersUp !== s.peersDialled) off.push(`links up ${s.peersUp} of ${s.peersDialled}`);
		// When did it stop changing? The samples of this relay since the churn ended.
		const states: [number, number, string][] = [];
		for (const x of samples) {
			if (x.relay !== i || x.phase === "idle" || x.t < churnSeconds - 1) continue;
			const state =
				REST_COUNTS.filter((k) => x[k] !== baseline[i][k])
					.map((k) => `${k}=${x[k]}`)
					.join(",") || "baseline";
			const prev = states.at(-1);
			if (prev && prev[2] === state) prev[1] = x.t;
			else states.push([x.t, x.t, state]);
		}
		const history = states
			.map(([a, b, state]) => `${a.toFixed(0)}${b > a ? `-${b.toFixed(0)}` : ""} s ${state}`)
			.join("; ");
		leftovers.push(
			`${n.name}: ${off.join(", ")} ${((performance.now() - restStart) / 1000).toFixed(0)} s after the last client left; per worker broadcasts/routes/lingering ${s.perWorker}; history: ${history}\n    /metrics (non-zero): ${await cluster.metricsExcerpt(n)}\n    /cluster: ${(await cluster.excerpt(n, 2500)).replace(/\n/g, "\n    ")}`,
		);
	}

	const retained = await retainedAtRest(nodes);

	const logs = cluster.logs();
	const exits = cluster.exits.map((e) => ({ relay: e.relay, code: e.code, t: (e.at - t0) / 1000 }));
	const exitCodes = await cluster.stop();
	opts.signal?.removeEventListener("abort", onAbort);

	const overBound = countBounds(samples, baseline, o.relays, o.maxViewers);
	const stats = churn.stats;
	const result: ClusterSoakResult = {
		options: { ...o, seed: churn.seed },
		relays: nodes.map((n, i) => ({ name: n.name, url: n.url, id: cluster.ids[i], dials: cluster.dials(n) })),
		started,
		churnSeconds,
		drainedSeconds,
		restSeconds,
		samples,
		baseline,
		rest: restRow.map((s) => (s ? restCounts(s) : null)),
		leftovers,
		retained,
		overBound,
		stale: [...stale.values()],
		sampleErrors,
		exits,
		exitCodes,
		stats,
		rounds: churn.rounds,
		maxInFlight,
		verdicts: [],
		ok: false,
		interrupted,
		logs,
	};
	result.verdicts = verdicts(result);
	result.ok = !interrupted && result.verdicts.every((v) => v.ok);
	return result;
}
