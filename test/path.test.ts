import assert from "node:assert/strict";
import { test } from "node:test";
import { DecodeError } from "../src/coding/errors.ts";
import { CodedError } from "../src/errors/coded-error.ts";
import { PROTOCOL_VIOLATION } from "../src/errors/codes.ts";
import {
	hasAnyPrefix,
	hasPrefix,
	joinPath,
	MAX_PATH_SEGMENTS,
	minimizePrefixes,
	normalizePath,
	type Path,
	PathError,
	pathSegments,
	pathsOverlap,
	ROOT,
	stripPrefix,
	tryNormalizePath,
} from "../src/path/index.ts";

const p = (path: string): Path => normalizePath(path);
const segments = (n: number, name = "s") => Array.from({ length: n }, (_, i) => `${name}${i}`).join("/");

function refusal(fn: () => unknown): PathError {
	try {
		fn();
	} catch (err) {
		assert.ok(err instanceof PathError, `expected PathError, got ${String(err)}`);
		return err;
	}
	assert.fail("expected a PathError");
}

test("normalizePath trims and collapses slashes; empty segments vanish", () => {
	assert.equal(normalizePath(""), "");
	assert.equal(normalizePath("/"), "");
	assert.equal(normalizePath("///"), "");
	assert.equal(normalizePath("foo"), "foo");
	assert.equal(normalizePath("/foo/bar/"), "foo/bar");
	assert.equal(normalizePath("//foo///bar//"), "foo/bar");
	assert.equal(normalizePath("a//b///c"), "a/b/c");
	// Dots inside a segment are just characters.
	assert.equal(normalizePath("a.b/..c/c.../.x"), "a.b/..c/c.../.x");
});

test("normalizePath returns already-normal input as is; ROOT is the empty path", () => {
	const path = "rooms/1/cam";
	assert.equal(normalizePath(path), path);
	assert.equal(ROOT, "");
	assert.equal(normalizePath(""), ROOT);
});

test("normalizePath refuses . and .. segments: PathError, a DecodeError with code 15", () => {
	for (const bad of ["..", ".", "a/../b", "/a/./b", "a/..", "../x", "a//./b/", "./"]) {
		const err = refusal(() => normalizePath(bad));
		assert.equal(err.reason, "dot-segment", bad);
		assert.equal(err.code, PROTOCOL_VIOLATION);
		assert.ok(err instanceof DecodeError);
		assert.ok(err instanceof CodedError);
		assert.equal(tryNormalizePath(bad), null, bad);
	}
});

test("normalizePath caps the segments: moq-lite's 32 by default, or the configured cap", () => {
	assert.equal(MAX_PATH_SEGMENTS, 32);
	const ok = segments(MAX_PATH_SEGMENTS);
	assert.equal(normalizePath(ok), ok);
	const err = refusal(() => normalizePath(`${ok}/one-more`));
	assert.equal(err.reason, "too-many-segments");
	assert.equal(err.code, PROTOCOL_VIOLATION);
	assert.equal(normalizePath("a/b/c", 3), "a/b/c");
	assert.equal(refusal(() => normalizePath("a/b/c/d", 3)).reason, "too-many-segments");
	// Counted after empty segments collapse.
	assert.equal(normalizePath("/a//b//c/", 3), "a/b/c");
	assert.equal(tryNormalizePath("a/b/c/d", 3), null);
});

test("Path is branded: only normalizePath (or the path functions) make one", () => {
	const path: Path = normalizePath("a/b");
	const prefix: Path = p("a");
	assert.equal(hasPrefix(path, prefix), true);
	// @ts-expect-error a raw string is not a Path: it must be validated first
	hasPrefix("a/b", prefix);
	// @ts-expect-error the brand is one way: a Path is a string, not the reverse
	const notPath: Path = "a/b";
	assert.equal(notPath, "a/b");
	const back: string = path;
	assert.equal(back, "a/b");
});

test("hasPrefix matches whole segments only; the root is a prefix of everything", () => {
	assert.equal(hasPrefix(p("a/b"), p("a")), true);
	assert.equal(hasPrefix(p("ab"), p("a")), false);
	assert.equal(hasPrefix(p("a"), p("a")), true);
	assert.equal(hasPrefix(p("a"), p("a/b")), false);
	assert.equal(hasPrefix(p("foo/bar"), ROOT), true);
	assert.equal(hasPrefix(ROOT, ROOT), true);
	assert.equal(hasPrefix(ROOT, p("a")), false);
	assert.equal(hasPrefix(p("rooms/10"), p("rooms/1")), false);
	assert.equal(hasPrefix(p("rooms/1/cam"), p("rooms/1")), true);
});

test("stripPrefix takes the path first and cuts on segment boundaries", () => {
	assert.equal(stripPrefix(p("a/x/y"), p("a")), "x/y");
	assert.equal(stripPrefix(p("a"), p("a")), "");
	assert.equal(stripPrefix(p("ab"), p("a")), null);
	assert.equal(stripPrefix(p("a"), p("a/b")), null);
	assert.equal(stripPrefix(p("a/b"), ROOT), "a/b");
	assert.equal(stripPrefix(p("foo"), p("bar")), null);
});

test("joinPath: the root is the identity; the cap is the caller's to check", () => {
	assert.equal(joinPath(ROOT, ROOT), "");
	assert.equal(joinPath(p("a"), ROOT), "a");
	assert.equal(joinPath(ROOT, p("b")), "b");
	assert.equal(joinPath(p("a"), p("b/c")), "a/b/c");
	const joined = joinPath(p(segments(MAX_PATH_SEGMENTS)), p("x"));
	assert.equal(pathSegments(joined), MAX_PATH_SEGMENTS + 1);
	assert.equal(refusal(() => normalizePath(joined)).reason, "too-many-segments");
	// Joining and stripping are inverses.
	assert.equal(stripPrefix(joinPath(p("a/b"), p("c")), p("a/b")), "c");
});

test("pathSegments, pathsOverlap, hasAnyPrefix, minimizePrefixes", () => {
	assert.equal(pathSegments(ROOT), 0);
	assert.equal(pathSegments(p("a")), 1);
	assert.equal(pathSegments(p("a/b")), 2);
	assert.equal(pathsOverlap(p("a"), p("a/b")), true);
	assert.equal(pathsOverlap(p("a/b"), p("a")), true);
	assert.equal(pathsOverlap(p("a/b"), p("a/c")), false);
	assert.equal(pathsOverlap(p("a"), p("ab")), false);
	assert.equal(hasAnyPrefix(p("x"), []), false);
	assert.equal(hasAnyPrefix(p("x/z"), [p("y"), p("x")]), true);
	assert.equal(hasAnyPrefix(p("xz"), [p("x")]), false);
	assert.deepEqual(minimizePrefixes([p("a/b"), p("a"), p("a"), p("c")]), ["a", "c"]);
	assert.deepEqual(minimizePrefixes([p("a"), ROOT, p("b/c")]), [""]);
	assert.deepEqual(minimizePrefixes([p("ab"), p("a")]), ["a", "ab"]);
	assert.deepEqual(minimizePrefixes([]), []);
});
