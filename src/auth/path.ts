/**
 * Broadcast path helpers shared by auth and announce scoping.
 *
 * Paths follow moq-lite / moq-relay (`moq_net::Path`, `@moq/net` `Path.from`): slashes are implicit
 * at the boundaries, so leading and trailing "/" are trimmed and "//" collapses to "/". Prefix
 * matching is on whole segments: "foo" covers "foo" and "foo/bar", never "foobar"; "" covers
 * everything. On top of moq we refuse "." and ".." segments, so no path can ever read as a
 * filesystem-style escape, and more than 32 segments (the moq-lite wire limit).
 *
 * Every function except `normalizePath` assumes its arguments are already normalised.
 * @module
 */
import { DecodeError } from "../coding/errors.ts";

/** moq-lite refuses paths with more segments than this (IETF namespace tuple limit). */
export const MAX_PATH_SEGMENTS = 32;

const SLASH = 0x2f;
const DOT = 0x2e;

/** A path that can never be valid; code 15 (protocol violation) when it arrives on the wire. */
export class PathError extends DecodeError {}

/**
 * Trim leading/trailing "/", collapse "//", refuse "." / ".." segments and more than `maxSegments`
 * segments. Already-normal input (the common case on the wire) is returned as is, without allocating.
 */
export function normalizePath(raw: string, maxSegments = MAX_PATH_SEGMENTS): string {
	const length = raw.length;
	if (length === 0) return raw;

	// One scan: count segments, spot empty ones (leading, trailing or doubled "/"), refuse dot segments.
	let normal = true;
	let segments = 0;
	let start = 0;
	for (let i = 0; i <= length; i++) {
		if (i < length && raw.charCodeAt(i) !== SLASH) continue;
		const size = i - start;
		if (size === 0) {
			normal = false;
		} else {
			segments++;
			if (size <= 2 && raw.charCodeAt(start) === DOT && (size === 1 || raw.charCodeAt(start + 1) === DOT)) {
				throw new PathError(`path segment "${raw.slice(start, i)}" is not allowed`);
			}
		}
		start = i + 1;
	}

	if (segments > maxSegments) {
		throw new PathError(`path has ${segments} segments, more than the ${maxSegments} allowed`);
	}
	if (normal) return raw;
	if (segments === 0) return "";
	return raw
		.split("/")
		.filter((part) => part.length > 0)
		.join("/");
}

/** Like `normalizePath`, but returns null instead of throwing. */
export function tryNormalizePath(raw: string, maxSegments = MAX_PATH_SEGMENTS): string | null {
	try {
		return normalizePath(raw, maxSegments);
	} catch (err) {
		if (err instanceof PathError) return null;
		throw err;
	}
}

/** True when `prefix` covers `path` on a segment boundary. The empty prefix covers everything. */
export function isPrefixOf(prefix: string, path: string): boolean {
	const size = prefix.length;
	if (size === 0) return true;
	if (path.length < size || !path.startsWith(prefix)) return false;
	return path.length === size || path.charCodeAt(size) === SLASH;
}

/** `path` without `prefix` and its delimiter ("" when equal), or null when `prefix` does not cover it. */
export function stripPrefix(prefix: string, path: string): string | null {
	const size = prefix.length;
	if (size === 0) return path;
	if (!isPrefixOf(prefix, path)) return null;
	return path.length === size ? "" : path.slice(size + 1);
}

/** Join two normalised paths, skipping the delimiter when either side is empty. */
export function joinPath(base: string, rest: string): string {
	if (base.length === 0) return rest;
	if (rest.length === 0) return base;
	return `${base}/${rest}`;
}

/** True when one path covers the other, in either direction (a parent or a child, or equal). */
export function pathsOverlap(a: string, b: string): boolean {
	return isPrefixOf(a, b) || isPrefixOf(b, a);
}

/** True when some prefix in `prefixes` covers `path`. */
export function anyPrefixOf(prefixes: readonly string[], path: string): boolean {
	for (let i = 0; i < prefixes.length; i++) {
		if (isPrefixOf(prefixes[i], path)) return true;
	}
	return false;
}

/**
 * Drop duplicates and prefixes covered by another one in the list (["a", "a/b", ""] → [""]),
 * sorted, so per-request checks scan the fewest entries.
 */
export function minimizePrefixes(prefixes: readonly string[]): string[] {
	const sorted = [...new Set(prefixes)].sort((a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0));
	const kept: string[] = [];
	for (const prefix of sorted) {
		if (!anyPrefixOf(kept, prefix)) kept.push(prefix);
	}
	return kept.sort();
}
