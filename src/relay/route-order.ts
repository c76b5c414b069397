/**
 * The order of routes to one broadcast, as moq-relay orders them, so that a mixed cluster agrees on
 * which route wins: fewer hops, then an FNV-1a hash of the path and hop ids, then the newest. Pure:
 * the relay core (routes of local sessions) and the cluster layer both use it.
 * @module
 */

/** FNV-1a basis moq-net uses for the route tie-break ("420 C0DEC B00B"). */
export const ROUTE_HASH_SEED = 0x420c0decb00bn;
/** The standard 64-bit FNV prime. */
export const ROUTE_HASH_PRIME = 0x100000001b3n;

const MASK64 = 0xffffffffffffffffn;
const utf8 = new TextEncoder();

function fnvByte(hash: bigint, byte: bigint): bigint {
	return ((hash ^ byte) * ROUTE_HASH_PRIME) & MASK64;
}

/** A hop id must be a safe non-negative integer (they are varints on the wire, ≤ 2^53 here). */
export function checkId(id: number): void {
	if (!Number.isSafeInteger(id) || id < 0) throw new RangeError(`invalid hop id ${id}`);
}

/**
 * moq-net's `fnv_key(path, hops)`: FNV-1a (wrapping 64-bit) from `ROUTE_HASH_SEED` over the UTF-8 bytes
 * of the full broadcast path, then each hop id as 8 little-endian bytes. Not on a per-frame path.
 */
export function routeHash(path: string, hops: readonly number[]): bigint {
	let hash = ROUTE_HASH_SEED;
	for (const byte of utf8.encode(path)) hash = fnvByte(hash, BigInt(byte));
	for (const id of hops) {
		checkId(id);
		let v = BigInt(id);
		for (let i = 0; i < 8; i++) {
			hash = fnvByte(hash, v & 0xffn);
			v >>= 8n;
		}
	}
	return hash;
}

export function hopsEqual(a: readonly number[], b: readonly number[]): boolean {
	if (a.length !== b.length) return false;
	for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
	return true;
}
