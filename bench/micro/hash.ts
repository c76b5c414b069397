/**
 * Micro-benchmark of broadcast path hashing: FNV-1a 32-bit over the path's UTF-8 bytes, the function
 * that picks a broadcast's owner worker (`hash(path) % workers`). A local implementation until the
 * relay's own is settled; `fnv1a32` is exported so the two can be compared.
 */
import { fileURLToPath } from "node:url";
import b from "benny";

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const utf8 = new TextEncoder();

/** FNV-1a 32-bit of `bytes`. */
export function fnv1a32(bytes: Uint8Array): number {
	let h = FNV_OFFSET;
	for (let i = 0; i < bytes.length; i++) {
		h ^= bytes[i];
		h = Math.imul(h, FNV_PRIME);
	}
	return h >>> 0;
}

/** FNV-1a 32-bit over the UTF-8 encoding of `s`, without materialising the bytes. */
export function fnv1a32String(s: string): number {
	let h = FNV_OFFSET;
	const mix = (byte: number) => {
		h ^= byte;
		h = Math.imul(h, FNV_PRIME);
	};
	for (let i = 0; i < s.length; i++) {
		let c = s.charCodeAt(i);
		if (c < 0x80) {
			h ^= c;
			h = Math.imul(h, FNV_PRIME);
			continue;
		}
		if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
			const d = s.charCodeAt(i + 1);
			if (d >= 0xdc00 && d <= 0xdfff) {
				c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
				i++;
			} else c = 0xfffd;
		} else if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
		if (c < 0x800) {
			mix(0xc0 | (c >> 6));
		} else if (c < 0x10000) {
			mix(0xe0 | (c >> 12));
			mix(0x80 | ((c >> 6) & 0x3f));
		} else {
			mix(0xf0 | (c >> 18));
			mix(0x80 | ((c >> 12) & 0x3f));
			mix(0x80 | ((c >> 6) & 0x3f));
		}
		mix(0x80 | (c & 0x3f));
	}
	return h >>> 0;
}

export interface HashBenchOptions {
	/** Seconds per case (benny's maxTime). */
	maxTime?: number;
}

export async function runHashBench(opts: HashBenchOptions = {}): Promise<{ name: string; ops: number }[]> {
	const maxTime = opts.maxTime ?? 2;
	const short = "anon/bbb";
	const long = "customers/acme/events/2026-keynote/cameras/stage-left/hd";
	const unicode = "salle/répétition/カメラ";
	const longBytes = utf8.encode(long);
	let sink = 0;
	const summary = await b.suite(
		"path hashing (FNV-1a 32)",
		b.add(
			`string, ${short.length} chars ASCII`,
			() => {
				sink ^= fnv1a32String(short);
			},
			{ maxTime },
		),
		b.add(
			`string, ${long.length} chars ASCII`,
			() => {
				sink ^= fnv1a32String(long);
			},
			{ maxTime },
		),
		b.add(
			"string, non-ASCII",
			() => {
				sink ^= fnv1a32String(unicode);
			},
			{ maxTime },
		),
		b.add(
			`TextEncoder.encode + bytes, ${long.length} chars`,
			() => {
				sink ^= fnv1a32(utf8.encode(long));
			},
			{ maxTime },
		),
		b.add(
			`bytes only (pre-encoded), ${longBytes.length} B`,
			() => {
				sink ^= fnv1a32(longBytes);
			},
			{ maxTime },
		),
		b.cycle(),
		b.complete(),
	);
	if (sink === 0.5) console.log("unreachable"); // keeps the work observable
	return summary.results.map((r) => ({ name: r.name, ops: Math.round(r.ops) }));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
	const results = await runHashBench({ maxTime: Number(process.env.BENCH_MAX_TIME ?? 2) });
	for (const r of results) console.log(`${r.name}: ${r.ops.toLocaleString("en-US")} ops/s`);
}
