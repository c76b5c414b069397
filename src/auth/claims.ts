/**
 * moq-token claims (`root`, `put`, `get`, `exp`, `iat`) and how they map onto a connection path,
 * following `moq_token::Claims::authorize` and `Scope::allows` (moq-dev/moq HEAD).
 * @module
 */
import { hasPrefix, joinPath, normalizePath, type Path, PathError, ROOT, stripPrefix } from "../path/index.ts";
import type { KeyScope } from "./jwk.ts";
import { pathList } from "./jwk.ts";

/** Verified claims with every path normalised. */
export interface Claims {
	readonly root: Path;
	readonly publish: readonly Path[];
	readonly subscribe: readonly Path[];
	/** `exp`, unix seconds, or null. */
	readonly expires: number | null;
	/** `iat`, unix seconds, or null (informational). */
	readonly issued: number | null;
	/** moq-relay 0.10's `cluster: true` (`moq-token sign --cluster`): the bearer is a relay of the cluster. */
	readonly cluster: boolean;
}

/** Prefixes relative to the connection path; "" grants the path itself and everything below. */
export interface Permissions {
	publish: Path[];
	subscribe: Path[];
}

/**
 * Validate a verified JWT payload's moq-token claims. Returns an error string (safe to log) when a
 * claim has the wrong shape or the token grants nothing.
 */
export function parseClaims(payload: Readonly<Record<string, unknown>>): Claims | string {
	try {
		const root = payload.root === undefined || payload.root === null ? "" : payload.root;
		if (typeof root !== "string") return "claim root must be a string";
		const publish = pathList(payload.put);
		if (publish === null) return "claim put must be a string or a list of strings";
		const subscribe = pathList(payload.get);
		if (subscribe === null) return "claim get must be a string or a list of strings";
		const expires = numericDate(payload.exp);
		const issued = numericDate(payload.iat);
		if (expires === undefined || issued === undefined) return "claims exp/iat must be numbers";
		// moq-token `Claims::validate`: a token that grants nothing is useless and refused.
		if (publish.length === 0 && subscribe.length === 0) return "token grants neither publish (put) nor subscribe (get)";
		return { root: normalizePath(root), publish, subscribe, expires, issued, cluster: payload.cluster === true };
	} catch (err) {
		if (err instanceof PathError) return `invalid path in claims: ${err.message}`;
		throw err;
	}
}

function numericDate(value: unknown): number | null | undefined {
	if (value === undefined || value === null) return null;
	return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

/**
 * The access `claims` grant at `path` (normalised), rebased relative to `path`, or why none.
 *
 * The path and the root must overlap in either direction: a path below the root narrows every grant
 * (dropping those outside it); a path above the root prepends the rest of the root to every grant so
 * they stay anchored where the token points. Matching is on whole segments.
 */
export function authorizeClaims(
	claims: Pick<Claims, "root" | "publish" | "subscribe">,
	path: Path,
): Permissions | "root-mismatch" | "no-access" {
	// Exactly one of these is non-empty: how far the path reaches past the root, or the root past the path.
	let suffix = stripPrefix(path, claims.root);
	let prefix = ROOT;
	if (suffix === null) {
		const above = stripPrefix(claims.root, path);
		if (above === null) return "root-mismatch";
		suffix = ROOT;
		prefix = above;
	}
	const publish = rebase(claims.publish, prefix, suffix);
	const subscribe = rebase(claims.subscribe, prefix, suffix);
	if (publish.length === 0 && subscribe.length === 0) return "no-access";
	return { publish, subscribe };
}

function rebase(grants: readonly Path[], prefix: Path, suffix: Path): Path[] {
	const out: Path[] = [];
	for (const grant of grants) {
		const anchored = joinPath(prefix, grant);
		const remaining = stripPrefix(anchored, suffix);
		if (remaining !== null) {
			out.push(remaining); // the grant lies at or below the path: keep what is left below it
		} else if (hasPrefix(suffix, anchored)) {
			out.push(ROOT); // the grant stops above the path but contains it: everything below is granted
		}
	}
	return out;
}

/**
 * moq-token `Scope::allows`: every path the claims grant lies under some prefix the key's scope
 * allows, per role. An empty role in the scope denies that role entirely.
 */
export function scopeAllows(scope: KeyScope, claims: Pick<Claims, "root" | "publish" | "subscribe">): boolean {
	return (
		covers(scope.root, scope.publish, claims.root, claims.publish) &&
		covers(scope.root, scope.subscribe, claims.root, claims.subscribe)
	);
}

function covers(scopeRoot: Path, granted: readonly Path[], claimsRoot: Path, requested: readonly Path[]) {
	return requested.every((request) => {
		const absolute = joinPath(claimsRoot, request);
		return granted.some((grant) => hasPrefix(absolute, joinPath(scopeRoot, grant)));
	});
}
