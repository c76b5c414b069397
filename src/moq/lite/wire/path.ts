/**
 * Broadcast path rules shared by every moq-lite version (notes §2, §3.2): paths are "/"-separated
 * segments with no leading, trailing or doubled "/"; prefixes match whole segments.
 * Protocol level only; authorization scopes live in src/auth/path.ts.
 * @module
 */

import { DecodeError } from "../../../coding/errors.ts";
import { PROTOCOL_VIOLATION } from "./codes.ts";

/** moq-lite (and moq-transport's namespace tuple) allow at most this many segments. */
export const MAX_PATH_SEGMENTS = 32;

const SLASH = 0x2f;

/**
 * Trims leading/trailing "/" and collapses runs of "/". Throws DecodeError (15) above `maxSegments`.
 * Already-normal paths (the common case) are returned as is, without building a new string.
 */
export function normalizePath(raw: string, maxSegments = MAX_PATH_SEGMENTS): string {
	let path = raw;
	if (!isNormal(raw)) path = raw.replace(/\/+/g, "/").replace(/^\//, "").replace(/\/$/, "");
	if (path.length > 0 && countSegments(path) > maxSegments) {
		throw new DecodeError(`path has more than ${maxSegments} segments`, PROTOCOL_VIOLATION);
	}
	return path;
}

function isNormal(path: string): boolean {
	const n = path.length;
	if (n === 0) return true;
	if (path.charCodeAt(0) === SLASH || path.charCodeAt(n - 1) === SLASH) return false;
	return path.indexOf("//") === -1;
}

function countSegments(path: string): number {
	let count = 1;
	for (let i = path.indexOf("/"); i !== -1; i = path.indexOf("/", i + 1)) count++;
	return count;
}

/** The number of segments of a normalised path ("" has none). */
export function pathSegments(path: string): number {
	return path.length === 0 ? 0 : countSegments(path);
}

/** True when `prefix` is `path` or a whole-segment ancestor of it ("a" matches "a", "a/x", not "ab"). Both normalised. */
export function hasPrefix(path: string, prefix: string): boolean {
	if (prefix.length === 0) return true;
	if (!path.startsWith(prefix)) return false;
	return path.length === prefix.length || path.charCodeAt(prefix.length) === SLASH;
}

/** The suffix of `path` below `prefix` ("" when equal), or null when `prefix` does not match whole segments. */
export function stripPrefix(path: string, prefix: string): string | null {
	if (!hasPrefix(path, prefix)) return null;
	if (prefix.length === 0) return path;
	return path.length === prefix.length ? "" : path.slice(prefix.length + 1);
}

/** Joins two normalised paths ("" is the identity). */
export function joinPath(a: string, b: string): string {
	if (a.length === 0) return b;
	if (b.length === 0) return a;
	return `${a}/${b}`;
}
