import assert from "node:assert/strict";
import { test } from "node:test";
import { authorizeClaims, parseClaims, scopeAllows } from "../src/auth/claims.ts";
import { Grant } from "../src/auth/grant.ts";
import { parseConnectTarget } from "../src/auth/params.ts";
import { normalizePath, type Path } from "../src/path/index.ts";

// The path functions themselves are tested in path.test.ts; here, how auth uses them.
const p = (path: string): Path => normalizePath(path);
const ps = (paths: string[]): Path[] => paths.map(p);

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
		root: p(root),
		subscribe: ps(subscribe),
		publish: ps(publish),
	};
}

test("authorize: path equals root", () => {
	assert.deepEqual(authorizeClaims(claims("room/123", [""], ["alice"]), p("room/123")), {
		subscribe: [""],
		publish: ["alice"],
	});
});

test("authorize: path extends root narrows the grants", () => {
	assert.deepEqual(authorizeClaims(claims("room/123", ["bob"], ["alice"]), p("room/123/alice")), {
		subscribe: [],
		publish: [""],
	});
});

test("authorize: path is a parent of root re-anchors the grants", () => {
	assert.deepEqual(authorizeClaims(claims("demo", [""], ["alice"]), p("")), {
		subscribe: ["demo"],
		publish: ["demo/alice"],
	});
	assert.deepEqual(authorizeClaims(claims("a/b/c", ["x"], []), p("a")), { subscribe: ["b/c/x"], publish: [] });
});

test("authorize: empty root grants what it lists wherever it connects", () => {
	assert.deepEqual(authorizeClaims(claims("", ["demo"], []), p("demo/room")), { subscribe: [""], publish: [] });
});

test("authorize: slashes are implicit", () => {
	assert.deepEqual(authorizeClaims(claims("/room/123/", ["/bob/"], []), p("//room/123//")), {
		subscribe: ["bob"],
		publish: [],
	});
});

test("authorize: segment boundaries, unrelated paths, no access", () => {
	assert.equal(authorizeClaims(claims("foo", [""], [""]), p("foobar")), "root-mismatch");
	assert.equal(authorizeClaims(claims("demo", [""], [""]), p("other")), "root-mismatch");
	assert.equal(authorizeClaims(claims("", ["demo"], []), p("other")), "no-access");
	assert.equal(authorizeClaims(claims("rooms/1", [""], [""]), p("rooms/10")), "root-mismatch");
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
	const scope = { root: p("project"), publish: ps(["live"]), subscribe: ps(["watch"]) };
	assert.equal(scopeAllows(scope, claims("project/live/room", [], [""])), true);
	assert.equal(scopeAllows(scope, claims("project/lively", [], [""])), false);
	assert.equal(scopeAllows({ ...scope, subscribe: [] }, claims("project/live", [""], [])), false);
	assert.equal(scopeAllows(scope, claims("", [], [""])), false);
	assert.equal(scopeAllows(scope, claims("", [], ["project/live/room"])), true);
	assert.equal(scopeAllows(scope, claims("project", [], ["live/room", "other"])), false);
});

test("Grant: whole-segment checks, announce-prefix overlap, roles, expiry", () => {
	const grant = new Grant(p("rooms"), ps(["1", "1/cam"]), ps([""]), 1000);
	assert.deepEqual(grant.publish, ["1"]);
	assert.equal(grant.canPublish(p("1")), true);
	assert.equal(grant.canPublish(p("1/cam")), true);
	assert.equal(grant.canPublish(p("10")), false);
	assert.equal(grant.canSubscribe(p("anything/at/all")), true);
	assert.equal(grant.canPublishUnder(p("")), true);
	assert.equal(grant.canPublishUnder(p("1/x")), true);
	assert.equal(grant.canPublishUnder(p("2")), false);
	assert.equal(grant.allowsRole(1), true);
	assert.equal(grant.isExpired(999), false);
	assert.equal(grant.isExpired(1000), true);
	const viewer = new Grant(p(""), [], ps(["a"]), null);
	assert.equal(viewer.allowsRole(1), false);
	assert.equal(viewer.allowsRole(2), true);
	assert.equal(viewer.allowsRole(0), true);
	assert.equal(viewer.canSubscribeUnder(p("b")), false);
	assert.equal(viewer.isExpired(Number.MAX_SAFE_INTEGER), false);
	assert.ok(Object.isFrozen(viewer.subscribe));
});
