/**
 * A small seeded, bounded mutation fuzzer shared by `test/fuzz.test.ts` (≥ 10 k cases per target in
 * `npm test`) and `scripts/fuzz.ts` (≥ 1 M per target in `npm run fuzz`).
 *
 * Every case is derived from (seed, target, case index) alone, so a crash is reproduced from its
 * three numbers as well as from its hex dump, and a watchdog can rebuild the input of a case that
 * hung without the hung thread telling it anything.
 *
 * A target decodes bytes and either succeeds, runs out of input (NEED_MORE), or refuses with the
 * decoder's own typed error; `expected` says which errors those are. Anything else is a crash: another
 * error class (TypeError, RangeError, URIError, stack overflow…), a broken invariant (reading past the
 * input, a valid decode that does not re-encode to itself), or a case over its time budget.
 */
import { NEED_MORE } from "../../src/coding/errors.ts";
import { prng } from "../support/prng.ts";

export type Outcome = "ok" | "more" | "rejected";

export interface Target {
	name: string;
	/** Valid encodings the mutators start from (each must decode "ok": checked before fuzzing). */
	corpus: Uint8Array[];
	/** Decodes `input`; returns "ok" (or "more" for a decoder that reports it by value) or throws. */
	run(input: Uint8Array): Outcome | Promise<Outcome>;
	/** True when `err` is this decoder's own refusal (a typed error with a stable code). */
	expected(err: unknown): boolean;
	/** Largest input generated (default 4096): keeps a case's cost bounded. */
	maxInput?: number;
	/** A case slower than this is reported as a hang (default 2000 ms: generous for a busy 2-core CI box). */
	budgetMs?: number;
}

/** Thrown by a target when an invariant does not hold: always a crash. */
export class InvariantError extends Error {
	constructor(message: string) {
		super(message);
		this.name = "InvariantError";
	}
}

export function invariant(cond: unknown, message: string): asserts cond {
	if (!cond) throw new InvariantError(message);
}

/** mulberry32 (support/prng.ts): tiny, fast, good enough to spread mutations; seeded per case. */
export class Rng {
	/** The next number in [0, 1). */
	readonly next: () => number;
	constructor(seed: number) {
		this.next = prng(seed);
	}
	/** An integer in [0, n). */
	int(n: number): number {
		return Math.floor(this.next() * n);
	}
	pick<T>(items: readonly T[]): T {
		return items[this.int(items.length)];
	}
	chance(p: number): boolean {
		return this.next() < p;
	}
}

/** FNV-1a of a string: turns a target name into part of the per-case seed. */
export function hashName(name: string): number {
	let h = 0x811c9dc5;
	for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
	return h >>> 0;
}

/** The seed of one case: mixes the run seed, the target and the index so cases are independent. */
export function caseSeed(seed: number, target: string, index: number): number {
	let h = (Math.imul(seed >>> 0, 0x9e3779b1) ^ hashName(target)) >>> 0;
	h = Math.imul(h ^ index, 0x85ebca6b) >>> 0;
	h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
	return (h ^ (h >>> 16)) >>> 0;
}

/** Bytes that sit on varint/prefix/UTF-8 boundaries: where length and type bugs live. */
const INTERESTING = [0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0xbf, 0xc0, 0xfe, 0xff, 0x20, 0x2f, 0x25, 0x0a];

/** Encoded varints at every size boundary, up to 8 bytes of 0xff (above 2^53: the known-bad class). */
const BIG_VARINTS: Uint8Array[] = [
	Uint8Array.of(0x3f),
	Uint8Array.of(0x7f, 0xff),
	Uint8Array.of(0x40, 0x00),
	Uint8Array.of(0xbf, 0xff, 0xff, 0xff),
	Uint8Array.of(0x80, 0x00, 0x40, 0x00),
	Uint8Array.of(0xc0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
	Uint8Array.of(0xc0, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00),
	Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
	Uint8Array.of(0xc0, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff),
];

/** A QUIC varint of `value` in exactly `size` bytes (1, 2, 4 or 8; value must fit). */
function varintOfSize(value: number, size: number): number[] {
	const out: number[] = [];
	let v = value;
	for (let i = size - 1; i >= 0; i--) {
		out[i] = v % 256;
		v = Math.floor(v / 256);
	}
	out[0] |= [0, 0, 0x40, 0, 0x80, 0, 0, 0, 0xc0][size];
	return out;
}

/**
 * Overwrites the byte at `at` (read as a varint's first byte) with a larger length: the "length
 * field inflation" that makes a decoder trust a count or size the input does not back.
 */
function inflate(b: number[], at: number, rng: Rng): void {
	const oldSize = 1 << (b[at] >> 6);
	const sizes = [1, 2, 4, 8];
	const size = rng.pick(sizes);
	const max = size === 1 ? 63 : size === 2 ? 16383 : size === 4 ? 2 ** 30 - 1 : 2 ** 53 - 1;
	const candidates = [b.length, b.length + 1, 2 * b.length + 7, max, max - 1, Math.floor(max / 2) + 1, 255, 256];
	const value = Math.min(max, rng.pick(candidates));
	b.splice(at, Math.min(oldSize, b.length - at), ...varintOfSize(value, size));
}

/**
 * One mutated input. The first cases of every corpus entry sweep truncation at every length (the
 * "incomplete message" class, deterministic and exhaustive); after that, 1–4 stacked mutations.
 */
export function generate(target: Target, seed: number, index: number): Uint8Array {
	const corpus = target.corpus;
	const cap = target.maxInput ?? 4096;
	// Exhaustive truncation first: case k walks corpus entries and every prefix length of each.
	let k = index;
	for (const sample of corpus) {
		if (k <= sample.length) return sample.slice(0, k);
		k -= sample.length + 1;
	}
	const rng = new Rng(caseSeed(seed, target.name, index));
	if (rng.chance(0.03)) {
		// Plain garbage now and then, biased to small bytes so lengths are often plausible.
		const b = new Uint8Array(rng.int(Math.min(cap, 64)));
		for (let i = 0; i < b.length; i++) b[i] = rng.chance(0.5) ? rng.int(8) : rng.int(256);
		return b;
	}
	return mutate(rng.pick(corpus), rng, corpus, cap);
}

/**
 * 1–4 stacked mutations of `sample` (bit flips, byte replacement, truncation, big varints, length
 * inflation, splices with other corpus entries, deletions, duplications, insertions), at most `cap`
 * bytes. Also used by the live fuzzer on whole streams.
 */
export function mutate(sample: Uint8Array, rng: Rng, corpus: readonly Uint8Array[], cap = 4096): Uint8Array {
	const b = Array.from(sample);
	const edits = 1 + rng.int(4);
	for (let e = 0; e < edits; e++) {
		const at = rng.int(b.length + 1);
		switch (rng.int(10)) {
			case 0: // bit flip
				if (b.length > 0) b[at % b.length] ^= 1 << rng.int(8);
				break;
			case 1: // byte replace: random or on a boundary
				if (b.length > 0) b[at % b.length] = rng.chance(0.5) ? rng.int(256) : rng.pick(INTERESTING);
				break;
			case 2: // truncate at a random length
				b.length = at;
				break;
			case 3: // insert a large varint (up to 8 bytes of 0xff)
				b.splice(at, 0, ...rng.pick(BIG_VARINTS));
				break;
			case 4: // overwrite a varint with a large one
				if (b.length > 0) b.splice(at % b.length, 1 + rng.int(2), ...rng.pick(BIG_VARINTS));
				break;
			case 5: // length-field inflation
				if (b.length > 0) inflate(b, at % b.length, rng);
				break;
			case 6: {
				// splice: our head + another valid message's tail (type/length confusion across messages)
				const other = rng.pick(corpus);
				b.length = at;
				b.push(...other.subarray(rng.int(other.length + 1)));
				break;
			}
			case 7: // delete a range
				b.splice(at, 1 + rng.int(8));
				break;
			case 8: {
				// duplicate a range (repeated fields, params, frames)
				const len = 1 + rng.int(16);
				b.splice(at, 0, ...b.slice(at, at + len));
				break;
			}
			default: // insert a few random bytes
				for (let n = 1 + rng.int(3); n > 0; n--)
					b.splice(at, 0, rng.chance(0.5) ? rng.pick(INTERESTING) : rng.int(256));
		}
		if (b.length > cap) b.length = cap;
	}
	return Uint8Array.from(b);
}

export interface Tally {
	target: string;
	cases: number;
	ok: number;
	more: number;
	rejected: number;
	/** Every crashing case counts here; only the first few are kept in `crashes`. */
	crashCount: number;
	crashes: Crash[];
	ms: number;
}

export interface Crash {
	target: string;
	seed: number;
	index: number;
	input: Uint8Array;
	error: string;
}

function describeError(err: unknown): string {
	if (err instanceof Error) return `${err.name}: ${err.message}`;
	return `non-Error thrown: ${String(err)}`;
}

/** Runs one input; returns its outcome, or the crash description. */
export async function runCase(target: Target, input: Uint8Array): Promise<Outcome | { crash: string }> {
	const budget = target.budgetMs ?? 2000;
	const start = performance.now();
	let outcome: Outcome | { crash: string };
	try {
		const r = target.run(input);
		outcome = r instanceof Promise ? await r : r;
	} catch (err) {
		if (err === NEED_MORE) outcome = "more";
		else if (!(err instanceof InvariantError) && target.expected(err)) outcome = "rejected";
		else outcome = { crash: describeError(err) };
	}
	const ms = performance.now() - start;
	if (ms > budget && typeof outcome === "string") outcome = { crash: `took ${ms.toFixed(0)} ms (budget ${budget} ms)` };
	return outcome;
}

export interface FuzzOptions {
	seed: number;
	cases: number;
	/** Stop collecting after this many crashes (default 5): one bug usually crashes many cases. */
	maxCrashes?: number;
	/** Called every `progressEvery` cases (the script's progress line; the watchdog's heartbeat). */
	onProgress?: (done: number) => void;
	progressEvery?: number;
	/** Called before each case with its index (the script's watchdog rebuilds a hung case from it). */
	onCase?: (index: number) => void;
	/** Index of the first case (lets the script split or resume a run). */
	from?: number;
}

/**
 * Fuzzes one target. Checks the corpus first: an invalid sample would silently waste every case
 * derived from it. Synchronous targets are looped without awaiting per case.
 */
export async function fuzz(target: Target, opts: FuzzOptions): Promise<Tally> {
	const tally: Tally = {
		target: target.name,
		cases: 0,
		ok: 0,
		more: 0,
		rejected: 0,
		crashCount: 0,
		crashes: [],
		ms: 0,
	};
	const start = performance.now();
	for (const [i, sample] of target.corpus.entries()) {
		const r = await runCase(target, sample);
		if (r !== "ok") {
			const why = typeof r === "string" ? r : r.crash;
			throw new Error(`${target.name}: corpus sample ${i} does not decode (${why}): ${hex(sample)}`);
		}
	}
	const maxCrashes = opts.maxCrashes ?? 5;
	const every = opts.progressEvery ?? 10_000;
	const from = opts.from ?? 0;
	for (let i = from; i < from + opts.cases; i++) {
		opts.onCase?.(i);
		const input = generate(target, opts.seed, i);
		const r = await runCase(target, input);
		tally.cases++;
		if (typeof r === "string") {
			if (r === "ok") tally.ok++;
			else if (r === "more") tally.more++;
			else tally.rejected++;
		} else {
			tally.crashCount++;
			if (tally.crashes.length < maxCrashes) {
				tally.crashes.push({ target: target.name, seed: opts.seed, index: i, input, error: r.crash });
			}
		}
		if (opts.onProgress && tally.cases % every === 0) opts.onProgress(tally.cases);
	}
	tally.ms = performance.now() - start;
	return tally;
}

export function hex(b: Uint8Array): string {
	return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

/** A regression test to paste into test/fuzz-regressions.test.ts for a crash. */
export function regressionSnippet(c: Crash): string {
	return [
		`test("${c.target}: <what it found> (fuzz seed ${c.seed} case ${c.index})", async () => {`,
		`\tconst target = targetNamed("${c.target}");`,
		`\t// ${c.error.replace(/\n/g, " ")}`,
		`\tassert.notEqual(typeof (await runCase(target, Buffer.from("${hex(c.input)}", "hex"))), "object");`,
		"});",
	].join("\n");
}
