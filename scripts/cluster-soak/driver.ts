/**
 * Publisher churn across a cluster, for `npm run soak:cluster` and test/cluster-churn.test.ts:
 * a new round every `roundMs`, so several overlap. One round (W = `watchMs`):
 *
 * - a @moq/net publisher (WebSocket) joins a random relay with a broadcast path no other round
 *   uses, two tracks (video, audio), a group every `groupMs` on each, `framesPerGroup` frames;
 * - 1..`maxViewers` viewers join random OTHER relays (so the media crosses a cluster link), each on
 *   its own session, each subscribed once to one track (test/support/cluster.ts's Viewer: frames
 *   checked byte-exact, duplicates noted);
 * - at W the publisher pauses and the viewers must hold every group from the one after their
 *   first through the last one published, whole and once (else: a delivery problem); then the
 *   round ends, drawn at random: mostly ("clean") the publisher unpublishes (tracks and broadcast
 *   end; the viewers wait to see their subscriptions end), then everyone leaves; sometimes
 *   ("close") the publisher's connection closes without unpublishing; sometimes ("viewers-first")
 *   the viewers leave first, then the publisher unpublishes and leaves.
 *
 * Nothing is asserted here: the stats and each round's record (when its broadcast started and
 * ended, which relays) are for the soak and the test to judge. The draws come from a seeded PRNG.
 * @module
 */

import { type ClusterNode, type MediaShape, Publisher, Viewer } from "../../test/support/cluster.ts";
import { prng } from "../../test/support/prng.ts";
import { sleep } from "../../test/support/wait.ts";

export type EndMode = "clean" | "close" | "viewers-first";
export const END_MODES: readonly EndMode[] = ["clean", "close", "viewers-first"];

export interface ClusterChurnOptions {
	nodes: ClusterNode[];
	/** A round starts every this many ms (default 2000). */
	roundMs?: number;
	/** How long a publisher publishes (default 6000). */
	watchMs?: number;
	/** A group on each track every this many ms (default 100). */
	groupMs?: number;
	/** Frames per group (default 3) and the size of the first one (default 1000 bytes). */
	framesPerGroup?: number;
	frameBytes?: number;
	/** Viewers per round: 1..maxViewers (default 3). */
	maxViewers?: number;
	/** Share of rounds that end by closing the publisher's connection, and viewers-first (default 0.15 each). */
	closeShare?: number;
	viewersFirstShare?: number;
	/** Rounds in flight at most: a round due while this many run is skipped (default 12). */
	maxInFlight?: number;
	/** How long viewers wait to see their subscription end after the publisher's end (default 5000). */
	endWaitMs?: number;
	/** How long the viewers have to hold the last group published after the publisher paused (default 3000). */
	deliverWaitMs?: number;
	/** A connect (or a viewer's wait for the announcement) that takes longer fails (default 10000). */
	connectTimeoutMs?: number;
	seed?: number;
	/** Broadcast names are `${prefix}-r${round}` (default `cs-` and a random id). */
	prefix?: string;
}

/** How a viewer's one subscription ended after the publisher's end. */
export interface EndSeen {
	clean: number;
	/** Reset, by code (or the error's text when it has no code). */
	reset: Record<string, number>;
	/** Not within endWaitMs. */
	none: number;
}

export interface RoundRecord {
	round: number;
	/** The broadcast path as the relays list it ("anon/…"). */
	path: string;
	/** Index of the publisher's relay, and of each viewer's. */
	pub: number;
	viewers: number[];
	mode: EndMode;
	/** performance.now(): round start, the publisher's end (unpublish or close), the round's end. */
	startAt: number;
	endAt: number | null;
	doneAt: number | null;
	groupsPublished: number;
	groupsReceived: number;
	problems: number;
}

export interface ClusterChurnStats {
	roundsStarted: number;
	roundsDone: number;
	/** Rounds not started because maxInFlight rounds were running. */
	roundsSkipped: number;
	ends: Record<EndMode, number>;
	/** Publishers and viewers per relay (index). */
	publishersPerRelay: number[];
	viewersPerRelay: number[];
	publishFailures: number;
	viewerSessions: number;
	viewerOpenFailures: number;
	groupsPublished: number;
	/** Groups the viewers received (each viewer's distinct groups, summed). */
	groupsReceived: number;
	/** Groups checked in the delivery windows (from the one after a viewer's first to the last published). */
	groupsChecked: number;
	/** Viewers that received no group at all. */
	starvedViewers: number;
	/** Missing, incomplete, corrupt or duplicate groups, early ends, silent viewers: count, and the first ones. */
	problemCount: number;
	problems: string[];
	/** Subscriptions that ended while the publisher was still publishing. */
	earlyEnds: number;
	/** What viewers that stayed saw after a clean unpublish, and after the publisher's connection closed. */
	afterUnpublish: EndSeen;
	afterClose: EndSeen;
	/** Failures by message (connects, timeouts, exceptions). */
	errors: Record<string, number>;
}

const MAX_PROBLEMS_KEPT = 200;

function emptyEndSeen(): EndSeen {
	return { clean: 0, reset: {}, none: 0 };
}

export function emptyChurnStats(relays: number): ClusterChurnStats {
	return {
		roundsStarted: 0,
		roundsDone: 0,
		roundsSkipped: 0,
		ends: { clean: 0, close: 0, "viewers-first": 0 },
		publishersPerRelay: Array.from({ length: relays }, () => 0),
		viewersPerRelay: Array.from({ length: relays }, () => 0),
		publishFailures: 0,
		viewerSessions: 0,
		viewerOpenFailures: 0,
		groupsPublished: 0,
		groupsReceived: 0,
		groupsChecked: 0,
		starvedViewers: 0,
		problemCount: 0,
		problems: [],
		earlyEnds: 0,
		afterUnpublish: emptyEndSeen(),
		afterClose: emptyEndSeen(),
		errors: {},
	};
}

/** A promise that rejects after `ms`; a result that comes late is handed to `late` (to close it). */
function timeout<T>(p: Promise<T>, ms: number, what: string, late: (v: T) => void): Promise<T> {
	let timer: ReturnType<typeof setTimeout> | undefined;
	let timedOut = false;
	const t = new Promise<never>((_, reject) => {
		timer = setTimeout(() => {
			timedOut = true;
			reject(new Error(`${what}: timed out after ${ms} ms`));
		}, ms);
	});
	p.then(
		(v) => {
			if (timedOut) late(v);
		},
		() => {},
	);
	return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function quietly(f: () => void): void {
	try {
		f();
	} catch {}
}

/** The code of a viewer's `ended.how` ("error: RemoteError: remote error: 24" → "24"). */
function endCode(how: string): string {
	const m = /remote error: (\d+)/.exec(how) ?? /code:? (\d+)/i.exec(how);
	return m ? m[1] : how.slice(0, 60);
}

export class ClusterChurn {
	readonly nodes: ClusterNode[];
	readonly stats: ClusterChurnStats;
	readonly rounds: RoundRecord[] = [];
	readonly prefix: string;
	readonly seed: number;
	readonly shape: MediaShape;
	readonly roundMs: number;
	readonly watchMs: number;
	readonly groupMs: number;
	readonly maxViewers: number;
	readonly closeShare: number;
	readonly viewersFirstShare: number;
	readonly maxInFlight: number;
	readonly endWaitMs: number;
	readonly deliverWaitMs: number;
	readonly connectTimeoutMs: number;
	/** Called when a round finishes. */
	onRoundDone: ((r: RoundRecord) => void) | null = null;
	#random: () => number;
	#inFlight = new Set<Promise<void>>();
	#loop: Promise<void> | null = null;
	#stopping = false;
	#abort: () => void = () => {};
	#aborted: Promise<void>;
	#isAborted = false;

	constructor(opts: ClusterChurnOptions) {
		this.nodes = opts.nodes;
		this.roundMs = opts.roundMs ?? 2000;
		this.watchMs = opts.watchMs ?? 6000;
		this.groupMs = opts.groupMs ?? 100;
		this.shape = { framesPerGroup: opts.framesPerGroup ?? 3, big: opts.frameBytes ?? 1000 };
		this.maxViewers = opts.maxViewers ?? 3;
		this.closeShare = opts.closeShare ?? 0.15;
		this.viewersFirstShare = opts.viewersFirstShare ?? 0.15;
		this.maxInFlight = opts.maxInFlight ?? 12;
		this.endWaitMs = opts.endWaitMs ?? 5000;
		this.deliverWaitMs = opts.deliverWaitMs ?? 3000;
		this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
		this.seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
		this.prefix = opts.prefix ?? `cs-${Math.random().toString(36).slice(2, 8)}`;
		this.#random = prng(this.seed);
		this.stats = emptyChurnStats(this.nodes.length);
		this.#aborted = new Promise<void>((r) => {
			this.#abort = r;
		});
	}

	get inFlight(): number {
		return this.#inFlight.size;
	}

	/** The round a broadcast path ("anon/<prefix>-r<n>") belongs to, or undefined (not this churn's). */
	roundOf(path: string): RoundRecord | undefined {
		const m = /-r(\d+)$/.exec(path);
		if (!m || !path.startsWith(`anon/${this.prefix}-r`)) return undefined;
		return this.rounds[Number(m[1])];
	}

	/**
	 * Rounds whose broadcast may exist somewhere in [from, to] (performance.now()): started by `to`,
	 * and not ended, or ended less than `settleMs` before `from`.
	 */
	liveBetween(from: number, to: number, settleMs: number): number {
		let n = 0;
		for (const r of this.rounds) if (r.startAt <= to && (r.endAt === null || r.endAt >= from - settleMs)) n++;
		return n;
	}

	start(): void {
		if (this.#loop) return;
		this.#loop = this.#run();
	}

	/** Starts no more rounds and waits for the running ones to finish. */
	async stop(): Promise<void> {
		this.#stopping = true;
		await this.#loop;
		while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
	}

	/** Cuts the running rounds short (everyone leaves at once) and starts no more. */
	abort(): void {
		this.#stopping = true;
		this.#isAborted = true;
		this.#abort();
	}

	/** A delay that an abort cuts short. */
	#wait(ms: number): Promise<void> {
		return Promise.race([sleep(ms), this.#aborted]);
	}

	async #run(): Promise<void> {
		let next = performance.now();
		while (!this.#stopping) {
			if (this.#inFlight.size >= this.maxInFlight) this.stats.roundsSkipped++;
			else {
				const p = this.#round(this.rounds.length).catch((err: unknown) => this.#error(String(err)));
				this.#inFlight.add(p);
				void p.finally(() => this.#inFlight.delete(p));
			}
			next += this.roundMs;
			await this.#wait(Math.max(0, next - performance.now()));
		}
	}

	#error(msg: string): void {
		// Ports and round numbers vary: group messages by their shape.
		const key = msg.replace(/\d+/g, "N").slice(0, 160);
		this.stats.errors[key] = (this.stats.errors[key] ?? 0) + 1;
	}

	#problem(msg: string): void {
		this.stats.problemCount++;
		if (this.stats.problems.length < MAX_PROBLEMS_KEPT) this.stats.problems.push(msg);
	}

	#pick(n: number): number {
		return Math.min(n - 1, Math.floor(this.#random() * n));
	}

	async #round(index: number): Promise<void> {
		const st = this.stats;
		const relays = this.nodes.length;
		const pubAt = this.#pick(relays);
		const others = this.nodes.map((_, i) => i).filter((i) => i !== pubAt);
		const viewerCount = 1 + this.#pick(this.maxViewers);
		const viewerAt = Array.from({ length: viewerCount }, () => others[this.#pick(others.length)]);
		const tracks = viewerAt.map(() => this.#pick(2));
		const draw = this.#random();
		const mode: EndMode =
			draw < this.closeShare ? "close" : draw < this.closeShare + this.viewersFirstShare ? "viewers-first" : "clean";
		const name = `${this.prefix}-r${index}`;
		const rec: RoundRecord = {
			round: index,
			path: `anon/${name}`,
			pub: pubAt,
			viewers: viewerAt,
			mode,
			startAt: performance.now(),
			endAt: null,
			doneAt: null,
			groupsPublished: 0,
			groupsReceived: 0,
			problems: 0,
		};
		this.rounds[index] = rec;
		st.roundsStarted++;
		const tag = `round ${index} (${this.nodes[pubAt].name} → ${viewerAt.map((i) => this.nodes[i].name).join(",")}, ${mode})`;
		const problem = (msg: string) => {
			rec.problems++;
			this.#problem(`${tag}: ${msg}`);
		};

		let pub: Publisher;
		try {
			pub = await timeout(
				Publisher.open(this.nodes[pubAt], name, ["video", "audio"], this.shape),
				this.connectTimeoutMs,
				"publisher connect",
				(p) => p.close(),
			);
		} catch (err) {
			st.publishFailures++;
			this.#error(`publisher on ${this.nodes[pubAt].name}: ${String(err)}`);
			problem(`the publisher could not connect: ${String(err)}`);
			rec.endAt = rec.doneAt = performance.now();
			st.roundsDone++;
			this.onRoundDone?.(rec);
			return;
		}
		st.publishersPerRelay[pubAt]++;
		pub.start(this.groupMs);
		const pubStart = performance.now();

		const opened = await Promise.allSettled(
			viewerAt.map((at, i) =>
				timeout(
					Viewer.open(
						`v${i}@${this.nodes[at].name}/${tracks[i] ? "audio" : "video"}`,
						this.nodes[at],
						name,
						tracks[i] ? "audio" : "video",
						tracks[i],
						this.shape,
						this.connectTimeoutMs,
					),
					this.connectTimeoutMs * 2,
					"viewer connect",
					(v) => v.close(),
				),
			),
		);
		const viewers: Viewer[] = [];
		opened.forEach((r, i) => {
			if (r.status === "fulfilled") {
				viewers.push(r.value);
				st.viewerSessions++;
				st.viewersPerRelay[viewerAt[i]]++;
			} else {
				st.viewerOpenFailures++;
				this.#error(`viewer on ${this.nodes[viewerAt[i]].name}: ${String(r.reason)}`);
				problem(`viewer ${i} on ${this.nodes[viewerAt[i]].name} could not subscribe: ${String(r.reason)}`);
			}
		});

		try {
			await this.#wait(Math.max(0, pubStart + this.watchMs - performance.now()));

			// Delivery: the publisher pauses; every viewer must hold the groups from the one after its
			// first through the last published, whole and once.
			pub.pause();
			const last = pub.next - 1;
			rec.groupsPublished = pub.next * 2;
			st.groupsPublished += pub.next * 2;
			/** The group after the first one the viewer received (the first may be joined mid-way), or -1. */
			const from = (v: Viewer) => {
				let first: { seq: number; at: number } | null = null;
				for (const g of v.groups.values()) if (first === null || g.at < first.at) first = g;
				return first ? first.seq + 1 : -1;
			};
			if (!this.#isAborted) {
				const deadline = performance.now() + this.deliverWaitMs;
				while (
					performance.now() < deadline &&
					!this.#isAborted &&
					viewers.some((v) => v.ended === null && (from(v) < 0 || !v.completeRange(from(v), last)))
				)
					await this.#wait(20);
			}
			for (const v of viewers) {
				if (v.ended) {
					st.earlyEnds++;
					if (!this.#isAborted) problem(`${v.name}: subscription ended while the publisher was live: ${v.ended.how}`);
				}
				const f = from(v);
				if (f < 0) {
					st.starvedViewers++;
					if (!this.#isAborted) problem(`${v.name}: received no group (publisher at group ${last})`);
					continue;
				}
				if (last >= f) st.groupsChecked += last - f + 1;
				if (!this.#isAborted) for (const p of v.problems(f, last)) problem(p);
			}

			// The end.
			if (mode === "viewers-first") {
				for (const v of viewers) quietly(() => v.close());
				await this.#wait(500);
				rec.endAt = performance.now();
				pub.unpublish();
				await this.#wait(300);
				quietly(() => pub.close());
			} else {
				rec.endAt = performance.now();
				if (mode === "clean") pub.unpublish();
				else quietly(() => pub.close());
				const open = viewers.filter((v) => v.ended === null);
				const deadline = performance.now() + this.endWaitMs;
				while (performance.now() < deadline && !this.#isAborted && open.some((v) => v.ended === null))
					await this.#wait(20);
				const seen = mode === "clean" ? st.afterUnpublish : st.afterClose;
				if (!this.#isAborted) {
					for (const v of open) {
						if (v.ended === null) seen.none++;
						else if (v.ended.how === "ended") seen.clean++;
						else {
							const code = endCode(v.ended.how);
							seen.reset[code] = (seen.reset[code] ?? 0) + 1;
						}
					}
				}
				for (const v of viewers) quietly(() => v.close());
				if (mode === "clean") {
					await this.#wait(200);
					quietly(() => pub.close());
				}
			}
			st.ends[mode]++;
			rec.groupsReceived = viewers.reduce((a, v) => a + v.groups.size, 0);
			st.groupsReceived += rec.groupsReceived;
		} finally {
			rec.endAt ??= performance.now();
			quietly(() => pub.close());
			for (const v of viewers) quietly(() => v.close());
			rec.doneAt = performance.now();
			st.roundsDone++;
			this.onRoundDone?.(rec);
		}
	}
}
