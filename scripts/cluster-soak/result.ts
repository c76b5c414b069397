/**
 * The cluster soak's result and sample types, shared by the run (run.ts) and the report (report.ts).
 * @module
 */
import type { Verdict } from "../soak/report.ts";
import type { RelayReading, RestCount } from "./cluster.ts";
import type { ClusterChurnStats, RoundRecord } from "./driver.ts";

/** One reading of one relay. */
export interface ClusterSample extends Omit<RelayReading, "paths" | "perWorker"> {
	/** Seconds since the churn started (0 for the baseline). */
	t: number;
	phase: "idle" | "churn" | "rest";
	/** Index and name of the relay. */
	relay: number;
	name: string;
	/** Rounds finished (all relays), rounds in flight, at the sample. */
	rounds: number;
	inFlight: number;
	/** Rounds whose broadcast may exist during the sample: in flight, or ended < settle time before it. */
	live: number;
	/** Broadcasts listed whose round ended long before (or that no round made). */
	stale: number;
	/** Per worker: broadcasts/routes/lingering. */
	perWorker: string;
}

/** A verdict, with a label of a few words for the chart. */
export interface ClusterVerdict extends Verdict {
	short: string;
}

export interface ClusterSoakOptions {
	/** Relays in the mesh, 3..5 (default 3). */
	relays?: number;
	/** Workers per relay (default 2). */
	workers?: number;
	/** How long rounds keep starting (default 5). */
	minutes?: number;
	roundMs?: number;
	watchMs?: number;
	/** Viewers per round: 1..maxViewers (default 3). */
	maxViewers?: number;
	/** Share of rounds ending by the publisher's connection closing, and viewers-first (default 0.15 each). */
	closeShare?: number;
	viewersFirstShare?: number;
	/** How often every relay is sampled (default 5000). */
	sampleMs?: number;
	/** How long to wait at rest for the counts to return to their baseline (default 20000). */
	restWaitMs?: number;
	lingerMs?: number;
	peerIdleMs?: number;
	seed?: number;
	/** Cuts the churn short (Ctrl-C): the run is reported, and fails. */
	signal?: AbortSignal;
	onProgress?: (line: string) => void;
}

/** A broadcast a relay still listed well after its round ended (or one no round of ours made). */
export interface StaleSighting {
	relay: string;
	path: string;
	/** Seconds since the churn started: first and last sample that listed it. */
	firstT: number;
	lastT: number;
	/** Samples that listed it. */
	samples: number;
	/** ms from the round's end (its publisher's unpublish or close) to the first sighting; null: not one of ours. */
	endedAgoMs: number | null;
	mode: string | null;
	/** Where the round's publisher and viewers were. */
	round: string | null;
	/** The relay's /cluster, per worker, at the first sighting (the first few only). */
	excerpt?: string;
}

export interface ClusterSoakResult {
	options: Required<Omit<ClusterSoakOptions, "signal" | "onProgress" | "seed">> & { seed: number };
	relays: { name: string; url: string; id: number; dials: string[] }[];
	/** ISO time the churn started. */
	started: string;
	/** Seconds of churn (from the first round to the last one's start), and until the last round finished. */
	churnSeconds: number;
	drainedSeconds: number;
	/** Seconds from the churn's stop (every client gone) until every count was back, or null if never. */
	restSeconds: number | null;
	samples: ClusterSample[];
	baseline: Record<RestCount, number>[];
	/** The last reading at rest, per relay (null: the relay did not answer). */
	rest: (Record<RestCount, number> | null)[];
	/** What was not back to baseline at rest, per relay, with /cluster excerpts. */
	leftovers: string[];
	/**
	 * At rest, after forced full collections in every worker (the GC probe): tracks and rings still
	 * alive beyond what the worker's relay core holds, per relay and worker. null: the probe was not
	 * answered (a relay started without MOQ_FANOUT_GC_PROBE=1).
	 */
	retained: string[] | null;
	/** Counts above their bound during the churn. */
	overBound: string[];
	/** Each (relay, broadcast) seen stale, in order of the first sighting. */
	stale: StaleSighting[];
	sampleErrors: string[];
	exits: { relay: string; code: number | string | null; t: number }[];
	/** Each relay's exit status on SIGTERM at the end. */
	exitCodes: (number | string | null)[];
	stats: ClusterChurnStats;
	rounds: RoundRecord[];
	/** The most rounds in flight at any sample. */
	maxInFlight: number;
	verdicts: ClusterVerdict[];
	ok: boolean;
	interrupted: boolean;
	/** The relays' stderr tails (empty when they said nothing). */
	logs: string;
}
