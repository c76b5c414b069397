import assert from "node:assert/strict";
import { test } from "node:test";
import { authorizeClaims, parseClaims, scopeAllows } from "../src/auth/claims.ts";
import { Grant } from "../src/auth/grant.ts";
import { parseConnectTarget } from "../src/auth/params.ts";
import {
	anyPrefixOf,
	isPrefixOf,
	joinPath,
	MAX_PATH_SEGMENTS,
	minimizePrefixes,
	normalizePath,
	PathError,
	pathsOverlap,
	stripPrefix,
	tryNormalizePath,
} from "../src/auth/path.ts";

test("normalizePath trims and collapses slashes like moq-lite", () => {
	assert.equal(normalizePath(""), "");
	assert.equal(normalizePath("/"), "");
	assert.equal(normalizePath("///"), "");
	assert.equal(normalizePath("foo"), "foo");
	assert.equal(normalizePath("/foo/bar/"), "foo/bar");
	assert.equal(normalizePath("//foo///bar//"), "foo/bar");
	assert.equal(normalizePath("a.b/..c/c.."), "a.b/..c/c..");
});

test("normalizePath returns already-normal input unchanged (same string)", () => {
	const path = "live/room/cam";
	assert.equal(normalizePath(path), path);
});

test("normalizePath refuses dot segments", () => {
	for (const bad of ["..", ".", "a/../b", "/a/./b", "a/..", "../x"]) {
		assert.throws(() => normalizePath(bad), PathError, bad);
		assert.equal(tryNormalizePath(bad), null);
	}
});

test("normalizePath refuses more than 32 segments, with a code-15 error", () => {
	const ok = Array.from({ length: MAX_PATH_SEGMENTS }, (_, i) => `s${i}`).join("/");
	assert.equal(normalizePath(ok), ok);
	const err = (() => {
		try {
			normalizePath(`${ok}/one-more`);
		} catch (e) {
			return e as PathError;
		}
		throw new Error("no error");
	})();
	assert.ok(err instanceof PathError);
	assert.equal(err.code, 15);
	assert.match(err.message, /33 segments/);
	assert.equal(normalizePath("a/b/c", 3), "a/b/c");
	assert.throws(() => normalizePath("a/b/c/d", 3), PathError);
});

test("isPrefixOf matches whole segments only", () => {
	assert.equal(isPrefixOf("", "foo/bar"), true);
	assert.equal(isPrefixOf("", ""), true);
	assert.equal(isPrefixOf("foo", "foo"), true);
	assert.equal(isPrefixOf("foo", "foo/bar"), true);
	assert.equal(isPrefixOf("foo/bar", "foo/bar"), true);
	assert.equal(isPrefixOf("fo", "foo/bar"), false);
	assert.equal(isPrefixOf("foo", "foobar"), false);
	assert.equal(isPrefixOf("foo/bar", "foo"), false);
	assert.equal(isPrefixOf("rooms/1", "rooms/10"), false);
	assert.equal(isPrefixOf("rooms/1", "rooms/1/cam"), true);
});

test("stripPrefix, joinPath, pathsOverlap, anyPrefixOf", () => {
	assert.equal(stripPrefix("", "foo/bar"), "foo/bar");
	assert.equal(stripPrefix("foo", "foo/bar"), "bar");
	assert.equal(stripPrefix("foo/bar", "foo/bar"), "");
	assert.equal(stripPrefix("foo", "foobar"), null);
	assert.equal(stripPrefix("foo", "bar"), null);
	assert.equal(joinPath("", ""), "");
	assert.equal(joinPath("foo", ""), "foo");
	assert.equal(joinPath("", "bar"), "bar");
	assert.equal(joinPath("foo", "bar"), "foo/bar");
	assert.equal(pathsOverlap("a", "a/b"), true);
	assert.equal(pathsOverlap("a/b", "a"), true);
	assert.equal(pathsOverlap("a/b", "a/c"), false);
	assert.equal(anyPrefixOf([], "x"), false);
	assert.equal(anyPrefixOf(["y", "x"], "x/z"), true);
});

test("minimizePrefixes drops duplicates and covered prefixes", () => {
	assert.deepEqual(minimizePrefixes(["a/b", "a", "a", "c"]), ["a", "c"]);
	assert.deepEqual(minimizePrefixes(["a", "", "b/c"]), [""]);
	assert.deepEqual(minimizePrefixes(["ab", "a"]), ["a", "ab"]);
	assert.deepEqual(minimizePrefixes([]), []);
});

test("parseConnectTarget: percent-decoded path, last non-empty jwt wins", () => {
	assert.deepEqual(parseConnectTarget("/customer/foo?jwt=xd"), { path: "/customer/foo", jwt: "xd" });
	assert.deepEqual(parseConnectTarget("/customer/foo"), { path: "/customer/foo", jwt: null });
	assert.deepEqual(parseConnectTarget(""), { path: "/", jwt: null });
	assert.deepEqual(parseConnectTarget("/foo?jwt="), { path: "/foo", jwt: null });
	assert.deepEqual(parseConnectTarget("/foo?a=1&jwt=ab%20cd"), { path: "/foo", jwt: "ab cd" });
	assert.deepEqual(parseConnectTarget("/foo?jwt=first&jwt=second"), { path: "/foo", jwt: "second" });
	assert.deepEqual(parseConnectTarget("/a%20b/c"), { path: "/a b/c", jwt: null });
	assert.equal(parseConnectTarget("/bad%zz"), null);
});

// Cases ported from moq-token `Claims::authorize` tests (moq-dev/moq rs/moq-token/src/claims.rs).
function claims(root: string, subscribe: string[], publish: string[]) {
	return {
		root: normalizePath(root),
		subscribe: subscribe.map((p) => normalizePath(p)),
		publish: publish.map((p) => normalizePath(p)),
	};
}

test("authorize: path equals root", () => {
	assert.deepEqual(authorizeClaims(claims("room/123", [""], ["alice"]), "room/123"), {
		subscribe: [""],
		publish: ["alice"],
	});
});

test("authorize: path extends root narrows the grants", () => {
	assert.deepEqual(authorizeClaims(claims("room/123", ["bob"], ["alice"]), "room/123/alice"), {
		subscribe: [],
		publish: [""],
	});
});

test("authorize: path is a parent of root re-anchors the grants", () => {
	assert.deepEqual(authorizeClaims(claims("demo", [""], ["alice"]), ""), {
		subscribe: ["demo"],
		publish: ["demo/alice"],
	});
	assert.deepEqual(authorizeClaims(claims("a/b/c", ["x"], []), "a"), { subscribe: ["b/c/x"], publish: [] });
});

test("authorize: empty root grants what it lists wherever it connects", () => {
	assert.deepEqual(authorizeClaims(claims("", ["demo"], []), "demo/room"), { subscribe: [""], publish: [] });
});

test("authorize: slashes are implicit", () => {
	assert.deepEqual(authorizeClaims(claims("/room/123/", ["/bob/"], []), normalizePath("//room/123//")), {
		subscribe: ["bob"],
		publish: [],
	});
});

test("authorize: segment boundaries, unrelated paths, no access", () => {
	assert.equal(authorizeClaims(claims("foo", [""], [""]), "foobar"), "root-mismatch");
	assert.equal(authorizeClaims(claims("demo", [""], [""]), "other"), "root-mismatch");
	assert.equal(authorizeClaims(claims("", ["demo"], []), "other"), "no-access");
	assert.equal(authorizeClaims(claims("rooms/1", [""], [""]), "rooms/10"), "root-mismatch");
});

test("parseClaims: one-or-many, defaults, and useless tokens", () => {
	const single = parseClaims({ root: "test", put: "single-publish", get: ["a", "b"] });
	assert.ok(typeof single !== "string");
	assert.deepEqual(single.publish, ["single-publish"]);
	assert.deepEqual(single.subscribe, ["a", "b"]);
	const noRoot = parseClaims({ get: "" });
	assert.ok(typeof noRoot !== "string");
	assert.equal(noRoot.root, "");
	assert.equal(noRoot.expires, null);
	assert.match(parseClaims({ root: "x" }) as string, /neither publish/);
	assert.match(parseClaims({ root: "x", put: [], get: [] }) as string, /neither publish/);
	assert.match(parseClaims({ root: 5, put: "" }) as string, /root must be a string/);
	assert.match(parseClaims({ put: [1] }) as string, /put must be/);
	assert.match(parseClaims({ put: "", exp: "soon" }) as string, /exp\/iat/);
	assert.match(parseClaims({ root: "a/../b", put: "" }) as string, /invalid path/);
});

test("scopeAllows: contained, sibling, role escalation, escaping above the root", () => {
	const scope = { root: "project", publish: ["live"], subscribe: ["watch"] };
	assert.equal(scopeAllows(scope, claims("project/live/room", [], [""])), true);
	assert.equal(scopeAllows(scope, claims("project/lively", [], [""])), false);
	assert.equal(scopeAllows({ ...scope, subscribe: [] }, claims("project/live", [""], [])), false);
	assert.equal(scopeAllows(scope, claims("", [], [""])), false);
	assert.equal(scopeAllows(scope, claims("", [], ["project/live/room"])), true);
	assert.equal(scopeAllows(scope, claims("project", [], ["live/room", "other"])), false);
});

test("Grant: whole-segment checks, announce-prefix overlap, roles, expiry", () => {
	const grant = new Grant("rooms", ["1", "1/cam"], [""], 1000);
	assert.deepEqual(grant.publish, ["1"]);
	assert.equal(grant.canPublish("1"), true);
	assert.equal(grant.canPublish("1/cam"), true);
	assert.equal(grant.canPublish("10"), false);
	assert.equal(grant.canSubscribe("anything/at/all"), true);
	assert.equal(grant.canPublishUnder(""), true);
	assert.equal(grant.canPublishUnder("1/x"), true);
	assert.equal(grant.canPublishUnder("2"), false);
	assert.equal(grant.allowsRole(1), true);
	assert.equal(grant.isExpired(999), false);
	assert.equal(grant.isExpired(1000), true);
	const viewer = new Grant("", [], ["a"], null);
	assert.equal(viewer.allowsRole(1), false);
	assert.equal(viewer.allowsRole(2), true);
	assert.equal(viewer.allowsRole(0), true);
	assert.equal(viewer.canSubscribeUnder("b"), false);
	assert.equal(viewer.isExpired(Number.MAX_SAFE_INTEGER), false);
	assert.ok(Object.isFrozen(viewer.subscribe));
});
