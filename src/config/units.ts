/**
 * Sizes and durations as operators write them: `8MiB`, `64MB`, `30s`, `1m30s`, `500ms`.
 * Bare integers are bytes and milliseconds respectively.
 * @module
 */

import { describeValue } from "./errors.ts";

const SIZE_UNITS: Record<string, number> = {
	"": 1,
	b: 1,
	k: 1e3,
	kb: 1e3,
	m: 1e6,
	mb: 1e6,
	g: 1e9,
	gb: 1e9,
	t: 1e12,
	tb: 1e12,
	ki: 2 ** 10,
	kib: 2 ** 10,
	mi: 2 ** 20,
	mib: 2 ** 20,
	gi: 2 ** 30,
	gib: 2 ** 30,
	ti: 2 ** 40,
	tib: 2 ** 40,
};

const SIZE_PATTERN = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i;

const SIZE_EXPECTED = 'expected a size like "8MiB" or a positive integer';

/**
 * Parse a size: a positive integer (bytes) or a string with a decimal (kB, MB, GB, TB) or
 * binary (KiB, MiB, GiB, TiB) unit. Units are case-insensitive. Throws with a readable message.
 */
export function parseSize(value: unknown): number {
	let bytes: number;
	if (typeof value === "number") {
		bytes = value;
	} else if (typeof value === "string") {
		const text = value.trim();
		if (text.endsWith("%")) {
			throw new Error(`${SIZE_EXPECTED}; percentages of memory are not supported, got ${describeValue(value)}`);
		}
		const match = SIZE_PATTERN.exec(text);
		const unit = match ? SIZE_UNITS[match[2].toLowerCase()] : undefined;
		if (!match || unit === undefined) throw new Error(`${SIZE_EXPECTED}, got ${describeValue(value)}`);
		bytes = Math.round(Number(match[1]) * unit);
	} else {
		throw new Error(`${SIZE_EXPECTED}, got ${describeValue(value)}`);
	}
	if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`${SIZE_EXPECTED}, got ${describeValue(value)}`);
	return bytes;
}

/** parseSize, then within [min, max] bytes (a socket option takes a C int, for one). */
export function boundedSize(min: number, max: number): (value: unknown) => number {
	return (value) => {
		const bytes = parseSize(value);
		if (bytes < min || bytes > max)
			throw new Error(`expected a size from ${min} to ${max} bytes, got ${describeValue(value)} (${bytes} bytes)`);
		return bytes;
	};
}

const DURATION_UNITS: Record<string, number> = {
	ms: 1,
	s: 1000,
	sec: 1000,
	m: 60_000,
	min: 60_000,
	h: 3_600_000,
	d: 86_400_000,
};

const DURATION_PART = /(\d+(?:\.\d+)?)\s*([a-z]+)/gy;

const DURATION_EXPECTED = 'expected a duration like "30s" or "500ms", or a non-negative integer of milliseconds';

/**
 * Parse a duration in milliseconds: a non-negative integer (ms), or a string of one or more
 * number+unit parts (`ms`, `s`, `m`/`min`, `h`, `d`), e.g. "1m30s". "0" is accepted without a unit.
 */
export function parseDuration(value: unknown): number {
	let ms: number;
	if (typeof value === "number") {
		ms = value;
	} else if (typeof value === "string") {
		const text = value.replace(/\s+/g, "").toLowerCase();
		if (text === "0") return 0;
		ms = 0;
		let consumed = 0;
		DURATION_PART.lastIndex = 0;
		for (let part = DURATION_PART.exec(text); part !== null; part = DURATION_PART.exec(text)) {
			const unit = DURATION_UNITS[part[2]];
			if (unit === undefined) throw new Error(`${DURATION_EXPECTED}, got ${describeValue(value)}`);
			ms += Number(part[1]) * unit;
			consumed = DURATION_PART.lastIndex;
		}
		if (consumed === 0 || consumed !== text.length) {
			throw new Error(`${DURATION_EXPECTED}, got ${describeValue(value)}`);
		}
		ms = Math.round(ms);
	} else {
		throw new Error(`${DURATION_EXPECTED}, got ${describeValue(value)}`);
	}
	if (!Number.isSafeInteger(ms) || ms < 0) throw new Error(`${DURATION_EXPECTED}, got ${describeValue(value)}`);
	return ms;
}

/** Format bytes with the largest binary unit that divides them exactly ("8MiB"), for docs and logs. */
export function formatSize(bytes: number): string {
	for (const [unit, size] of [
		["TiB", 2 ** 40],
		["GiB", 2 ** 30],
		["MiB", 2 ** 20],
		["KiB", 2 ** 10],
	] as const) {
		if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
	}
	return `${bytes}B`;
}
