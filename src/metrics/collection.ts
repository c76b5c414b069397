/**
 * The GC probe: proof that what a broadcast or a session allocated becomes collectable when it ends.
 *
 * With `MOQ_FANOUT_GC_PROBE=1` in the environment, the construction sites register their objects
 * in a `FinalizationRegistry` by kind, and this module counts, per worker thread, how many were
 * created and how many V8 has collected since. A test forces collections in every worker (the
 * internal route `/debug/gc-probe`, src/worker/gc-probe.ts) and checks that nothing of an ended
 * broadcast or session is still alive. Without the variable `probe` is one test of a constant: no
 * registration, nothing per frame either way (every site is per session, track, ring or reader).
 *
 * Kinds (the places that register):
 * - `session`: a moq-lite session (MoqSession);
 * - `connection`: a raw QUIC connection (QuicConnection; its quiche state is freed with it);
 * - `track`: a relay track, local (RelayTrack, which writes the ring) or remote (RemoteTrack);
 * - `ring`: a ring's SharedArrayBuffer, as this thread sees it: the writer's, and each one another
 *   worker received (a SharedArrayBuffer posted to a worker is a new object there, holding the
 *   same memory, which is freed once every thread's object is collected). Counted once per object;
 * - `reader`: a RingReader (a viewer's, a fetch's, a remote track's watcher);
 * - `serve`: a subscription served from a ring: a viewer's (TrackServe), a fetch (FetchServe), or
 *   another worker's reading of a ring this worker writes (the relay's RemoteReader).
 * @module
 */
import v8 from "node:v8";
import vm from "node:vm";

export const PROBE_KINDS = ["session", "connection", "track", "ring", "reader", "serve"] as const;
export type ProbeKind = (typeof PROBE_KINDS)[number];

export type ProbeCounts = Record<ProbeKind, number>;

/** Whether the probe is on in this process (read once: the environment is the process's). */
export const GC_PROBE = process.env.MOQ_FANOUT_GC_PROBE === "1";

const zero = (): ProbeCounts => ({ session: 0, connection: 0, track: 0, ring: 0, reader: 0, serve: 0 });
const created = zero();
const collected = zero();
/** Objects registered already (a ring's buffer is registered once, however many readers it has here). */
const seen = new WeakSet<object>();
const registry = GC_PROBE
	? new FinalizationRegistry<ProbeKind>((kind) => {
			collected[kind]++;
		})
	: null;

/** Registers `target` under `kind` when the probe is on (once per object); otherwise does nothing. */
export function probe(kind: ProbeKind, target: object): void {
	if (registry === null || seen.has(target)) return;
	seen.add(target);
	created[kind]++;
	registry.register(target, kind);
}

/** This thread's counts: created, collected, and live (created and not collected yet). */
export function probeCounts(): { created: ProbeCounts; collected: ProbeCounts; live: ProbeCounts } {
	const live = zero();
	for (const k of PROBE_KINDS) live[k] = created[k] - collected[k];
	return { created: { ...created }, collected: { ...collected }, live };
}

type GcFunction = (options?: { type?: "major" | "minor"; execution?: "sync" | "async" }) => void;

let gcFn: GcFunction | null | undefined;

/**
 * V8's `gc()` for this thread: the global one when the process runs with `--expose-gc`, else one
 * made without it. Worker threads refuse `--expose-gc` in their execArgv (ERR_WORKER_INVALID_EXEC_ARGV),
 * but V8 installs the extension into every context created after the flag is set, so a fresh `vm`
 * context gives this isolate's `gc` and leaves the main context as it was. Null if neither works.
 */
export function gcFunction(): GcFunction | null {
	if (gcFn === undefined) {
		gcFn = (globalThis as { gc?: GcFunction }).gc ?? null;
		if (gcFn === null) {
			try {
				v8.setFlagsFromString("--expose-gc");
				gcFn = vm.runInNewContext("gc") as GcFunction;
			} catch {
				gcFn = null;
			}
		}
	}
	return gcFn;
}

/**
 * Full collections in this thread, `rounds` times, letting the event loop turn in between:
 * FinalizationRegistry callbacks run as tasks after a collection, and an object whose last
 * reference was a pending callback or timer only becomes garbage on a later turn.
 */
export async function collectGarbage(rounds = 4): Promise<boolean> {
	const gc = gcFunction();
	if (gc === null) return false;
	for (let i = 0; i < rounds; i++) {
		gc({ type: "major", execution: "sync" });
		await new Promise((resolve) => setTimeout(resolve, 20));
	}
	return true;
}
