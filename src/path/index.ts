/**
 * Broadcast paths: one validated type, `Path`, for the wire, auth, the relay core and HTTP.
 *
 * A string becomes a `Path` once, where it enters the relay (a wire decoder, the session's
 * connection path in auth, a token's claims, a config entry), through `normalizePath`; everything
 * past that edge takes `Path` and never re-checks. The rules follow moq-lite / moq-relay
 * (`moq_net::Path`, @moq/net's `Path.Valid`) and add two refusals:
 *
 * - slashes are implicit at the boundaries: leading and trailing "/" are trimmed and runs of "/"
 *   collapse, so empty segments never survive ("" is the root, which covers every path);
 * - "." and ".." segments are refused, so no path can read as a filesystem-style escape;
 * - more segments than the cap are refused (moq-lite's is 32, the IETF namespace tuple limit;
 *   `[limits] max_path_segments` may lower it).
 *
 * A refused path is a `PathError`: a `DecodeError` with code PROTOCOL_VIOLATION (15).
 *
 * Prefixes match whole segments: "a" is a prefix of "a" and "a/b", never of "ab". Every function
 * takes its subject first: `hasPrefix(path, prefix)`, `stripPrefix(path, prefix)`.
 *
 * Layering: imports only src/coding and src/errors, so every layer may import it.
 * @module
 */

import { DecodeError } from "../coding/errors.ts";
import { PROTOCOL_VIOLATION } from "../errors/codes.ts";

declare const valid: unique symbol;

/** A normalised, validated broadcast path (or prefix, or suffix). Make one with `normalizePath`. */
export type Path = string & { readonly [valid]: true };

/** moq-lite refuses paths with more segments than this (the IETF namespace tuple limit). */
export const MAX_PATH_SEGMENTS = 32;

/** The root: the empty path, a prefix of every path. */
export const ROOT = "" as Path;

const SLASH = 0x2f;
const DOT = 0x2e;

/** Why a path was refused. */
export type PathRefusal = "dot-segment" | "too-many-segments";

/** A string that can never be a path: a protocol violation (15) when it arrives on the wire. */
export class PathError extends DecodeError {
	readonly reason: PathRefusal;
	constructor(reason: PathRefusal, message: string) {
		super(message, PROTOCOL_VIOLATION);
		this.name = "PathError";
		this.reason = reason;
	}
}

/**
 * `raw` as a Path: leading/trailing "/" trimmed, runs of "/" collapsed; throws PathError for a "."
 * or ".." segment or more than `maxSegments` segments. Already-normal input (the common case on
 * the wire) is returned as is, without allocating.
 */
export function normalizePath(raw: string, maxSegments: number = MAX_PATH_SEGMENTS): Path {
	const length = raw.length;
	if (length === 0) return ROOT;

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
				throw new PathError("dot-segment", `path segment "${raw.slice(start, i)}" is not allowed`);
			}
		}
		start = i + 1;
	}

	if (segments > maxSegments) {
		throw new PathError("too-many-segments", `path has ${segments} segments, more than the ${maxSegments} allowed`);
	}
	if (normal) return raw as Path;
	if (segments === 0) return ROOT;
	return raw
		.split("/")
		.filter((part) => part.length > 0)
		.join("/") as Path;
}

/** Like `normalizePath`, but null instead of a PathError. */
export function tryNormalizePath(raw: string, maxSegments: number = MAX_PATH_SEGMENTS): Path | null {
	try {
		return normalizePath(raw, maxSegments);
	} catch (err) {
		if (err instanceof PathError) return null;
		throw err;
	}
}

/** The number of segments ("" has none). */
export function pathSegments(path: Path): number {
	if (path.length === 0) return 0;
	let count = 1;
	for (let i = path.indexOf("/"); i !== -1; i = path.indexOf("/", i + 1)) count++;
	return count;
}

/** True when `prefix` is `path` or a whole-segment ancestor of it. The root is a prefix of every path. */
export function hasPrefix(path: Path, prefix: Path): boolean {
	const size = prefix.length;
	if (size === 0) return true;
	if (path.length < size || !path.startsWith(prefix)) return false;
	return path.length === size || path.charCodeAt(size) === SLASH;
}

/** `path` below `prefix` ("" when equal), or null when `prefix` is not a prefix of it. */
export function stripPrefix(path: Path, prefix: Path): Path | null {
	if (!hasPrefix(path, prefix)) return null;
	if (prefix.length === 0) return path;
	return (path.length === prefix.length ? "" : path.slice(prefix.length + 1)) as Path;
}

/**
 * `rest` under `base` ("" is the identity). The result has the segments of both, which may be more
 * than the cap: where one applies (an announced suffix under its prefix), check it with `normalizePath`.
 */
export function joinPath(base: Path, rest: Path): Path {
	if (base.length === 0) return rest;
	if (rest.length === 0) return base;
	return `${base}/${rest}` as Path;
}

/** True when one path is a prefix of the other (a parent or a child, or equal). */
export function pathsOverlap(a: Path, b: Path): boolean {
	return hasPrefix(a, b) || hasPrefix(b, a);
}

/** True when some path in `prefixes` is a prefix of `path`. */
export function hasAnyPrefix(path: Path, prefixes: readonly Path[]): boolean {
	for (let i = 0; i < prefixes.length; i++) {
		if (hasPrefix(path, prefixes[i])) return true;
	}
	return false;
}

/**
 * Drops duplicates and prefixes covered by another one in the list (["a", "a/b", ""] → [""]),
 * sorted, so per-request checks scan the fewest entries.
 */
export function minimizePrefixes(prefixes: readonly Path[]): Path[] {
	const sorted = [...new Set(prefixes)].sort((a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0));
	const kept: Path[] = [];
	for (const prefix of sorted) {
		if (!hasAnyPrefix(prefix, kept)) kept.push(prefix);
	}
	return kept.sort();
}

/** The cluster's own namespace (gossip: `.internal/origins/<node>`); only relays may publish in it. */
export const INTERNAL_PREFIX = ".internal" as Path;

/** Is `path` in the cluster's namespace (on a segment boundary: `.internal` or `.internal/…`)? */
export function isInternalPath(path: Path): boolean {
	return hasPrefix(path, INTERNAL_PREFIX);
}
