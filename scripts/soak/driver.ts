/**
 * Session churn against a running relay, shared by `npm run soak` and test/churn.test.ts: rounds of
 * "a publisher starts a broadcast, viewers watch it, everyone leaves", a new one every `roundMs`, so
 * several overlap and the churn is continuous.
 *
 * One round (W = `watchMs`):
 * - the publisher connects and publishes a broadcast with a name no other round uses, one track, a
 *   group of `framesPerGroup` frames every `groupMs`. Even rounds publish with the official
 *   `@moq/net` client over WebSocket, odd rounds with our own client over raw QUIC;
 * - `viewers` viewers, each on its own session, alternating between the two clients. Each plays one
 *   of three parts, rotating with the round: joins at once and stays to the end; joins at once and
 *   leaves at 0.6 W (unsubscribing first, then closing its session); joins mid-round at 0.4 W and
 *   stays to the end;
 * - at W the round ends in one of three ways, rotating over five rounds (so both clients end every
 *   way): the publisher ends the broadcast cleanly and the viewers that stayed wait (up to
 *   `endWaitMs`) to see it end, then everyone leaves ("clean", 3 rounds in 5); the viewers leave
 *   first, then the publisher ends cleanly and leaves ("viewers-first"); the publisher closes its
 *   session without ending the broadcast ("abrupt"), and the viewers wait to see that.
 *
 * What the viewers see is counted (groups, frames, how each subscription ended: clean, reset and
 * with which code, or not at all), never asserted here: the soak and the test decide what matters.
 * @module
 */

import * as Net from "@moq/net";
import { MoqClient } from "../../src/client/index.ts";
import { connectQuic } from "../../src/quic/client.ts";
import type { QuicConnection } from "../../src/quic/connection.ts";

/** `net`: the official @moq/net client over WebSocket. `quic`: our own client over raw QUIC. */
export type ClientKind = "net" | "quic";
export type EndMode = "clean" | "viewers-first" | "abrupt";

/** How round r ends: `END_MODES[r % 5]`. */
export const END_MODES: readonly EndMode[] = ["clean", "clean", "viewers-first", "abrupt", "clean"];

export interface ChurnOptions {
	/** The relay: `http://host:port` (WebSocket), host and port (QUIC), its certificate hash. */
	base: string;
	host: string;
	port: number;
	fingerprint: string;
	/** A round starts every this many ms (default 800). */
	roundMs?: number;
	/** How long a publisher publishes (default 4000). */
	watchMs?: number;
	/** Viewers per round (default 3). */
	viewers?: number;
	/** A group every this many ms (default 40). */
	groupMs?: number;
	framesPerGroup?: number;
	frameBytes?: number;
	/** Rounds in flight at most; the next round waits for one to finish (default 12). */
	maxInFlight?: number;
	/** How long a viewer waits to see the publisher's end (default 2000). */
	endWaitMs?: number;
	/** Broadcast names are `${prefix}-r${round}` (default: `soak-` and a random id). */
	prefix?: string;
	/** A connect that takes longer fails the round's part (default 10000). */
	connectTimeoutMs?: number;
}

/** What the viewers saw of the end of a publisher that ended cleanly or abruptly. */
export interface EndSeen {
	/** The subscription ended cleanly (SUBSCRIBE_END / FIN). */
	clean: number;
	/** It was reset; by code. */
	reset: Record<string, number>;
	/** Nothing within `endWaitMs`. */
	none: number;
	/** The same, by the client the publisher used. */
	byPublisher: Record<ClientKind, { clean: number; reset: number; none: number }>;
}

function emptyEndSeen(): EndSeen {
	return {
		clean: 0,
		reset: {},
		none: 0,
		byPublisher: { net: { clean: 0, reset: 0, none: 0 }, quic: { clean: 0, reset: 0, none: 0 } },
	};
}

export interface ChurnStats {
	roundsStarted: number;
	roundsDone: number;
	/** Rounds in which some connect failed or something threw (see `errors`). */
	roundsWithErrors: number;
	publishers: Record<ClientKind, number>;
	viewerSessions: Record<ClientKind, number>;
	ends: Record<EndMode, number>;
	midJoins: number;
	earlyLeaves: number;
	groupsPublished: number;
	groupsReceived: Record<ClientKind, number>;
	framesReceived: number;
	/** Groups a viewer saw end with a reset rather than FIN (not counting the end of the track). */
	groupsReset: number;
	/** Viewers that watched for at least a second and received no group. */
	starvedViewers: number;
	/** SUBSCRIBEs that ended before any group, while the publisher was still publishing, retried. */
	subscribeRetries: number;
	/** Subscriptions that ended, after groups, while the publisher was still publishing; by code. */
	earlyEnds: Record<string, number>;
	/** What viewers that stayed saw when the publisher ended the broadcast cleanly. */
	afterCleanEnd: EndSeen;
	/** ... and when it closed its session without ending the broadcast. */
	afterAbruptEnd: EndSeen;
	/** Failures by message (connects that failed, exceptions). */
	errors: Record<string, number>;
}

export function emptyStats(): ChurnStats {
	return {
		roundsStarted: 0,
		roundsDone: 0,
		roundsWithErrors: 0,
		publishers: { net: 0, quic: 0 },
		viewerSessions: { net: 0, quic: 0 },
		ends: { clean: 0, "viewers-first": 0, abrupt: 0 },
		midJoins: 0,
		earlyLeaves: 0,
		groupsPublished: 0,
		groupsReceived: { net: 0, quic: 0 },
		framesReceived: 0,
		groupsReset: 0,
		starvedViewers: 0,
		subscribeRetries: 0,
		earlyEnds: {},
		afterCleanEnd: emptyEndSeen(),
		afterAbruptEnd: emptyEndSeen(),
		errors: {},
	};
}

/** Sum of a by-code record. */
export function total(r: Record<string, number>): number {
	let n = 0;
	for (const v of Object.values(r)) n += v;
	return n;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

function bump(r: Record<string, number>, key: string, by = 1): void {
	r[key] = (r[key] ?? 0) + by;
}

/** A short, stable description of a failure (for counting by kind). */
function describe(err: unknown): string {
	const msg = err instanceof Error ? err.message : String(err);
	return msg.replace(/\d{3,}/g, "N").slice(0, 120);
}

/** The reset code an @moq/net error carries (-1 when it is not the peer's code). */
function netCode(err: unknown): number {
	// Net.RemoteError carries the peer's code (duck-typed: its .d.ts re-export does not resolve here).
	const code = (err as { code?: unknown } | null)?.code;
	return err instanceof Error && err.name === "RemoteError" && typeof code === "number" ? code : -1;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
	let timer: ReturnType<typeof setTimeout> | undefined;
	const t = new Promise<never>((_, reject) => {
		timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
	});
	return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

// ── the two clients behind one small interface ─────────────────────────────────────────────────

interface PublisherSession {
	writeGroup(frames: number, payload: Uint8Array): void;
	/** Ends the broadcast cleanly (the session stays open). */
	end(): void;
	/** Closes the session (without ending the broadcast first, if `end` was not called). */
	close(): void;
	/**
	 * Loses the connection: our QUIC client closes it with a transport error (as a crashed or cut-off
	 * publisher's connection ends), which the relay must treat as a loss. @moq/net has no way to drop
	 * its WebSocket; its close is a graceful close (APPLICATION_CLOSE 0), which ends what it published
	 * cleanly.
	 */
	drop(): void;
}

interface SubscriptionHandlers {
	onGroup(): void;
	onFrame(): void;
	onGroupEnd(complete: boolean): void;
	/** The subscription ended: 0 clean, else the reset code (-1: not a code from the peer). */
	onEnd(code: number): void;
}

interface ViewerSession {
	subscribe(name: string, h: SubscriptionHandlers): { close(): void };
	close(): void;
}

const TRACK = "video";

async function netConnect(base: string, timeoutMs: number): Promise<Net.Connection.Established> {
	return await Net.Connection.connect(new URL(`${base}/anon`), {
		websocket: { delay: 0 },
		signal: AbortSignal.timeout(timeoutMs),
	});
}

async function quicConnect(o: Required<ChurnOptions>): Promise<{ client: MoqClient; quic: QuicConnection }> {
	const quic = await connectQuic({
		host: o.host,
		port: o.port,
		alpns: ["moq-lite-05"],
		certificateHashes: [o.fingerprint],
		timeoutMs: o.connectTimeoutMs,
	});
	return { client: await MoqClient.connect(quic, { path: "/anon" }), quic };
}

async function openPublisher(kind: ClientKind, name: string, o: Required<ChurnOptions>): Promise<PublisherSession> {
	if (kind === "net") {
		const conn = await netConnect(o.base, o.connectTimeoutMs);
		const broadcast = new Net.Broadcast.Producer();
		const track = broadcast.createTrack(TRACK);
		conn.publish(Net.Path.from(name), broadcast);
		return {
			writeGroup(frames, payload) {
				const g = track.appendGroup();
				for (let f = 0; f < frames; f++) g.writeFrame({ payload, timestamp: Net.Time.Timestamp.now() });
				g.close();
			},
			end() {
				track.close();
				broadcast.close();
			},
			close: () => conn.close(),
			drop: () => conn.close(),
		};
	}
	const { client, quic } = await withTimeout(quicConnect(o), o.connectTimeoutMs, "QUIC connect");
	const broadcast = client.publish(name);
	const track = broadcast.track(TRACK);
	return {
		writeGroup(frames, payload) {
			if (client.closed) return;
			const g = track.openGroup();
			for (let f = 0; f < frames; f++) g.writeFrame(payload);
			g.close();
		},
		end: () => broadcast.close(),
		close: () => client.close(0, "done"),
		// INTERNAL_ERROR (0x1), a transport error: not a graceful close.
		drop: () => quic.abortTransport(0x1, "dropped"),
	};
}

async function openViewer(kind: ClientKind, o: Required<ChurnOptions>): Promise<ViewerSession> {
	if (kind === "net") {
		const conn = await netConnect(o.base, o.connectTimeoutMs);
		return {
			subscribe(name, h) {
				const broadcast = conn.consume(Net.Path.from(name));
				const sub = broadcast.subscribe(TRACK);
				const readGroup = async (g: Net.Group.Consumer) => {
					h.onGroup();
					try {
						while ((await g.readFrame()) !== undefined) h.onFrame();
						h.onGroupEnd((await g.closed) === null);
					} catch {
						h.onGroupEnd(false);
					}
				};
				void (async () => {
					try {
						for (;;) {
							const g = await sub.recvGroup();
							if (g === undefined) break;
							void readGroup(g);
						}
					} catch {
						// the end is read from `closed` below
					}
					let code: number;
					try {
						const err = await sub.closed;
						code = err === null ? 0 : netCode(err);
					} catch (err) {
						code = netCode(err);
					}
					h.onEnd(code);
				})();
				return {
					close() {
						sub.close();
						broadcast.close();
					},
				};
			},
			close: () => conn.close(),
		};
	}
	const { client } = await withTimeout(quicConnect(o), o.connectTimeoutMs, "QUIC connect");
	return {
		subscribe(name, h) {
			let ended = false;
			const sub = client.subscribe(
				name,
				TRACK,
				{},
				{
					onGroup: () => h.onGroup(),
					onFrame: () => h.onFrame(),
					onGroupEnd: (_seq, complete) => h.onGroupEnd(complete),
					onEnd: (code) => {
						if (ended) return;
						ended = true;
						h.onEnd(code);
					},
				},
			);
			return { close: () => sub.close() };
		},
		close: () => client.close(0, "done"),
	};
}

// ── rounds ─────────────────────────────────────────────────────────────────────────────────────

type Part = "stay" | "leave-early" | "join-mid";
const PARTS: readonly Part[] = ["stay", "leave-early", "join-mid"];

/** Where the round is, shared with its viewers. */
interface RoundState {
	/** The publisher is still publishing (its end has not been triggered). */
	live: boolean;
	/** The viewers are told to leave now (the "viewers-first" end). */
	leave: boolean;
	/** How the publisher ended, once it did. */
	ended: "clean" | "abrupt" | null;
	/** The publisher's client. */
	readonly publisher: ClientKind;
	/** Wakes the viewers waiting on the round (the publisher ended, or they must leave). */
	readonly waiters: Set<() => void>;
	errors: number;
}

function wakeAll(state: RoundState): void {
	for (const w of [...state.waiters]) w();
}

/** Runs rounds against the relay until `stop()`; `stats` counts what happened. */
export class Churn {
	readonly stats: ChurnStats = emptyStats();
	/** Called after every finished round with its index. */
	onRoundDone: ((round: number) => void) | null = null;
	readonly #o: Required<ChurnOptions>;
	readonly #payload: Uint8Array;
	readonly #inFlight = new Set<Promise<void>>();
	/** Sessions still open (closed at the end of their round; `abort` closes them all). */
	readonly #open = new Set<{ close(): void }>();
	/** Rounds waiting for their publisher's time to be up (abort() wakes them). */
	readonly #rounds = new Set<RoundState>();
	#stopping = false;
	#aborted = false;
	#loop: Promise<void> | null = null;
	#wake: (() => void) | null = null;

	constructor(options: ChurnOptions) {
		this.#o = {
			roundMs: 800,
			watchMs: 4000,
			viewers: 3,
			groupMs: 40,
			framesPerGroup: 4,
			frameBytes: 1000,
			maxInFlight: 12,
			endWaitMs: 2000,
			prefix: `soak-${Math.random().toString(36).slice(2, 8)}`,
			connectTimeoutMs: 10_000,
			...options,
		};
		this.#payload = new Uint8Array(this.#o.frameBytes).map((_, i) => i & 0xff);
	}

	get options(): Readonly<Required<ChurnOptions>> {
		return this.#o;
	}

	/** Rounds running now. */
	get inFlight(): number {
		return this.#inFlight.size;
	}

	/** Starts a round every `roundMs` (returns at once). */
	start(): void {
		if (this.#loop !== null) return;
		this.#loop = this.#run();
	}

	/** Starts no more rounds and waits for the running ones to finish (everyone leaves). */
	async stop(): Promise<void> {
		this.#stopping = true;
		this.#wake?.();
		await this.#loop;
		await Promise.all([...this.#inFlight]);
	}

	/** Closes every session still open at once (an interrupted soak). */
	abort(): void {
		this.#stopping = true;
		this.#aborted = true;
		this.#wake?.();
		for (const state of this.#rounds) wakeAll(state);
		for (const s of [...this.#open]) {
			try {
				s.close();
			} catch {
				// already closed
			}
		}
	}

	async #run(): Promise<void> {
		let round = 0;
		let next = performance.now();
		while (!this.#stopping) {
			while (this.#inFlight.size >= this.#o.maxInFlight && !this.#stopping) await Promise.race(this.#inFlight);
			if (this.#stopping) break;
			const r = round++;
			const p: Promise<void> = this.#round(r)
				.catch((err) => {
					this.stats.roundsWithErrors++;
					if (!this.#aborted) bump(this.stats.errors, describe(err));
				})
				.finally(() => {
					this.#inFlight.delete(p);
					this.stats.roundsDone++;
					this.onRoundDone?.(r);
				});
			this.#inFlight.add(p);
			next += this.#o.roundMs;
			// Behind schedule (a slow machine): do not burst to catch up.
			if (next < performance.now()) next = performance.now();
			await new Promise<void>((resolve) => {
				const t = setTimeout(resolve, next - performance.now());
				this.#wake = () => {
					clearTimeout(t);
					resolve();
				};
			});
			this.#wake = null;
		}
	}

	#error(state: RoundState, err: unknown): void {
		// After abort() every session is closed under the clients' feet: that is not worth counting.
		if (this.#aborted) return;
		state.errors++;
		bump(this.stats.errors, describe(err));
	}

	#track<T extends { close(): void }>(s: T): T {
		this.#open.add(s);
		return s;
	}

	#close(s: { close(): void } | null): void {
		if (s === null) return;
		this.#open.delete(s);
		try {
			s.close();
		} catch {
			// already closed
		}
	}

	async #round(r: number): Promise<void> {
		const o = this.#o;
		const s = this.stats;
		s.roundsStarted++;
		const name = `${o.prefix}-r${r}`;
		const pubKind: ClientKind = r % 2 === 0 ? "net" : "quic";
		const mode = END_MODES[r % END_MODES.length];
		const state: RoundState = {
			live: true,
			leave: false,
			ended: null,
			publisher: pubKind,
			waiters: new Set(),
			errors: 0,
		};
		const t0 = performance.now();
		let pub: PublisherSession | null = null;
		let ticker: ReturnType<typeof setInterval> | undefined;
		try {
			pub = this.#track(await openPublisher(pubKind, name, o));
			s.publishers[pubKind]++;
			const publishing = pub;
			const tick = () => {
				try {
					publishing.writeGroup(o.framesPerGroup, this.#payload);
					s.groupsPublished++;
				} catch (err) {
					clearInterval(ticker);
					this.#error(state, err);
				}
			};
			tick();
			ticker = setInterval(tick, o.groupMs);
		} catch (err) {
			this.#error(state, err);
			this.#close(pub);
			s.roundsWithErrors++;
			return;
		}
		const viewers: Promise<void>[] = [];
		for (let i = 0; i < o.viewers; i++) {
			const part = PARTS[(r + i) % PARTS.length];
			const kind: ClientKind = (r + i) % 2 === 0 ? "quic" : "net";
			viewers.push(this.#viewer(name, kind, part, t0, state));
		}
		// The publisher's time is up (or abort() cut the round short).
		this.#rounds.add(state);
		await new Promise<void>((resolve) => {
			const timer = setTimeout(resolve, t0 + o.watchMs - performance.now());
			state.waiters.add(() => {
				clearTimeout(timer);
				resolve();
			});
		});
		this.#rounds.delete(state);
		clearInterval(ticker);
		s.ends[mode]++;
		if (mode === "viewers-first") {
			state.leave = true;
			wakeAll(state);
			await Promise.all(viewers);
			state.live = false;
			state.ended = "clean";
			pub.end();
			// Let the end reach the relay before the session goes.
			await sleep(200);
			this.#close(pub);
		} else if (mode === "clean") {
			state.live = false;
			state.ended = "clean";
			pub.end();
			wakeAll(state);
			await Promise.all(viewers);
			this.#close(pub);
		} else {
			state.live = false;
			state.ended = "abrupt";
			pub.drop();
			wakeAll(state);
			await Promise.all(viewers);
		}
		if (state.errors > 0) s.roundsWithErrors++;
	}

	async #viewer(name: string, kind: ClientKind, part: Part, t0: number, state: RoundState): Promise<void> {
		const o = this.#o;
		const s = this.stats;
		const joinAt = part === "join-mid" ? 0.4 * o.watchMs : 0;
		const leaveAt = part === "leave-early" ? t0 + 0.6 * o.watchMs : Number.POSITIVE_INFINITY;
		await sleep(t0 + joinAt - performance.now());
		if (!state.live || state.leave || this.#aborted) return;
		let session: ViewerSession;
		try {
			session = this.#track(await openViewer(kind, o));
		} catch (err) {
			this.#error(state, err);
			return;
		}
		s.viewerSessions[kind]++;
		if (part === "join-mid") s.midJoins++;
		const watchedFrom = performance.now();
		let groups = 0;
		/** The current subscription, and its end once it ended (null while it runs). */
		const cur: { sub: { close(): void } | null; end: number | null } = { sub: null, end: null };
		let wake: () => void = () => {};
		const waitAtMost = async (ms: number) => {
			const woken = new Promise<void>((resolve) => {
				wake = resolve;
			});
			state.waiters.add(wake);
			await Promise.race([sleep(ms), woken]);
			state.waiters.delete(wake);
		};
		const subscribe = () => {
			cur.end = null;
			let mine = true;
			try {
				cur.sub = session.subscribe(name, {
					onGroup: () => {
						groups++;
						s.groupsReceived[kind]++;
					},
					onFrame: () => {
						s.framesReceived++;
					},
					onGroupEnd: (complete) => {
						if (!complete && state.live && !state.leave) s.groupsReset++;
					},
					onEnd: (code) => {
						if (!mine) return;
						mine = false;
						cur.end = code;
						wake();
					},
				});
			} catch (err) {
				this.#error(state, err);
				cur.end = -1;
			}
		};
		subscribe();
		// Watch until the part says leave, the round says leave, or the publisher ends.
		while (state.live && !state.leave && !this.#aborted) {
			const now = performance.now();
			if (now >= leaveAt) break;
			await waitAtMost(Math.min(leaveAt - now, 250));
			if (this.#aborted) break;
			if (cur.end !== null && state.live && !state.leave) {
				// Ended while the publisher is still there: not announced on this worker yet (a
				// SUBSCRIBE racing the announcement), or something went wrong after groups came.
				if (groups === 0) {
					s.subscribeRetries++;
					await sleep(100);
				} else bump(s.earlyEnds, String(cur.end));
				subscribe();
			}
		}
		if (!state.live && state.ended !== null && !this.#aborted) {
			// The publisher ended while we watch: how does the end reach us?
			const deadline = performance.now() + o.endWaitMs;
			while (cur.end === null && performance.now() < deadline) await waitAtMost(deadline - performance.now());
			const seen = state.ended === "clean" ? s.afterCleanEnd : s.afterAbruptEnd;
			const by = seen.byPublisher[state.publisher];
			if (cur.end === null) {
				seen.none++;
				by.none++;
			} else if (cur.end === 0) {
				seen.clean++;
				by.clean++;
			} else {
				bump(seen.reset, String(cur.end));
				by.reset++;
			}
		}
		if (groups === 0 && performance.now() - watchedFrom >= 1000) s.starvedViewers++;
		if (part === "leave-early" && state.live && !state.leave) {
			s.earlyLeaves++;
			// Unsubscribe first, then leave a moment later.
			this.#close(cur.sub);
			await sleep(100);
		}
		this.#close(session);
	}
}
