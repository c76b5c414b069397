/**
 * Relay-wide admission: the limits that must hold for the whole relay, not per worker thread
 * (sessions, TCP connections, connections per IP, new connections per second per IP), kept in one
 * SharedArrayBuffer that every worker updates with Atomics, plus the per-thread refusal counters.
 *
 * Layout (Int32 slots):
 * - global: [0] sessions, [1] TCP connections, then the per-IP connection sketch (ROWS × WIDTH),
 *   then the per-IP rate table (ROWS × WIDTH × [second, count]).
 * - one region per worker: [0] sessions it holds, [1] TCP connections it holds, then its own copy
 *   of the per-IP sketch. A worker that dies cannot release what it held, so the main thread
 *   subtracts the dead worker's region from the global one (`reclaimWorker`) before replacing it.
 *
 * Per-IP counts live in a count-min sketch: ROWS independent hashes into WIDTH counters each; an
 * address's count is the minimum of its counters. Memory is fixed whatever the number of
 * addresses (an attacker with many addresses cannot grow it); a collision can only over-count, so
 * the limit may refuse slightly early for an address sharing every row with a busy one, never let
 * one exceed it. IPv6 addresses count per /64: one host usually owns a whole /64.
 * @module
 */

const ROWS = 2;
const WIDTH = 4096;
const SKETCH = ROWS * WIDTH;
const GLOBAL_SESSIONS = 0;
const GLOBAL_TCP = 1;
const GLOBAL_SKETCH = 16;
const GLOBAL_RATE = GLOBAL_SKETCH + SKETCH;
const GLOBAL_LEN = GLOBAL_RATE + SKETCH * 2;
const WORKER_SESSIONS = 0;
const WORKER_TCP = 1;
const WORKER_SKETCH = 16;
const WORKER_LEN = WORKER_SKETCH + SKETCH;

/** The limits `Admission` enforces; 0 or Infinity means unlimited. */
export interface AdmissionLimits {
	/** Concurrent moq sessions, relay-wide. */
	maxSessions: number;
	/** Concurrent TCP connections (HTTP, WebSocket), relay-wide. */
	maxTcpConnections: number;
	/** Concurrent connections (QUIC and TCP together) from one IP address (/64 for IPv6), relay-wide. */
	maxConnectionsPerIp: number;
	/** New connections (QUIC handshakes and TCP accepts) per second from one IP address, relay-wide. */
	handshakeRatePerIp: number;
}

/** Allocates the shared block for `workers` workers (main thread, once). */
export function createAdmissionBuffer(workers: number): SharedArrayBuffer {
	return new SharedArrayBuffer((GLOBAL_LEN + workers * WORKER_LEN) * Int32Array.BYTES_PER_ELEMENT);
}

/**
 * Main thread, after worker `index` exited and before its replacement starts: gives back
 * everything the dead thread held (its sessions, TCP connections and per-IP counts).
 */
export function reclaimWorker(buffer: SharedArrayBuffer, index: number): void {
	const all = new Int32Array(buffer);
	const base = GLOBAL_LEN + index * WORKER_LEN;
	Atomics.sub(all, GLOBAL_SESSIONS, Atomics.exchange(all, base + WORKER_SESSIONS, 0));
	Atomics.sub(all, GLOBAL_TCP, Atomics.exchange(all, base + WORKER_TCP, 0));
	for (let i = 0; i < SKETCH; i++) {
		const held = Atomics.exchange(all, base + WORKER_SKETCH + i, 0);
		if (held !== 0) Atomics.sub(all, GLOBAL_SKETCH + i, held);
	}
}

/** FNV-1a of a string with a per-row seed. */
function hash(text: string, seed: number): number {
	let h = 0x811c9dc5 ^ seed;
	for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
	// Final avalanche so nearby addresses spread over the row.
	h ^= h >>> 16;
	h = Math.imul(h, 0x85ebca6b);
	h ^= h >>> 13;
	return (h >>> 0) % WIDTH;
}

/**
 * The key an address is counted under: IPv4 as is (also when IPv4-mapped), IPv6 by its /64
 * prefix, so an attacker with one IPv6 subnet counts as one address.
 */
export function addressKey(address: string): string {
	if (!address.includes(":")) return address;
	const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
	if (mapped) return mapped[1];
	const zone = address.indexOf("%");
	const bare = zone < 0 ? address : address.slice(0, zone);
	const [head, tail] = bare.split("::", 2);
	const left = head ? head.split(":") : [];
	const right = tail === undefined ? [] : tail ? tail.split(":") : [];
	const groups =
		tail === undefined
			? left
			: [...left, ...new Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
	return groups
		.slice(0, 4)
		.map((g) => Number.parseInt(g || "0", 16).toString(16))
		.join(":");
}

/**
 * One worker's view of the relay-wide limits. Every `tryX` that returns true must be paired with
 * exactly one matching release from the same thread.
 */
export class Admission {
	readonly limits: AdmissionLimits;
	readonly #all: Int32Array;
	readonly #mine: number;
	readonly #rows = new Int32Array(ROWS);

	/** `buffer` from createAdmissionBuffer (shared), or omitted for a standalone relay (tests). */
	constructor(limits: AdmissionLimits, buffer: SharedArrayBuffer = createAdmissionBuffer(1), worker = 0) {
		this.limits = limits;
		this.#all = new Int32Array(buffer);
		this.#mine = GLOBAL_LEN + worker * WORKER_LEN;
		if (this.#mine + WORKER_LEN > this.#all.length) throw new RangeError(`worker ${worker} has no admission region`);
	}

	/** Sessions open relay-wide (all workers). */
	get sessions(): number {
		return Atomics.load(this.#all, GLOBAL_SESSIONS);
	}

	/** TCP connections open relay-wide. */
	get tcpConnections(): number {
		return Atomics.load(this.#all, GLOBAL_TCP);
	}

	tryOpenSession(): boolean {
		return this.#tryTake(GLOBAL_SESSIONS, WORKER_SESSIONS, this.limits.maxSessions);
	}

	closeSession(): void {
		this.#give(GLOBAL_SESSIONS, WORKER_SESSIONS);
	}

	tryOpenTcp(): boolean {
		return this.#tryTake(GLOBAL_TCP, WORKER_TCP, this.limits.maxTcpConnections);
	}

	closeTcp(): void {
		this.#give(GLOBAL_TCP, WORKER_TCP);
	}

	/** Counts one more connection from `address`; false (and nothing counted) past the per-IP cap. */
	tryOpenConnection(address: string): boolean {
		const max = this.limits.maxConnectionsPerIp;
		const rows = this.#locate(address);
		const all = this.#all;
		let refused = false;
		for (let r = 0; r < ROWS; r++) {
			const n = Atomics.add(all, GLOBAL_SKETCH + rows[r], 1) + 1;
			// Count-min: the address is over only when every one of its counters is.
			if (r === 0) refused = max > 0 && n > max;
			else refused &&= n > max;
		}
		if (refused) {
			for (let r = 0; r < ROWS; r++) Atomics.sub(all, GLOBAL_SKETCH + rows[r], 1);
			return false;
		}
		for (let r = 0; r < ROWS; r++) all[this.#mine + WORKER_SKETCH + rows[r]]++;
		return true;
	}

	closeConnection(address: string): void {
		const rows = this.#locate(address);
		for (let r = 0; r < ROWS; r++) {
			Atomics.sub(this.#all, GLOBAL_SKETCH + rows[r], 1);
			this.#all[this.#mine + WORKER_SKETCH + rows[r]]--;
		}
	}

	/** Connections open from `address` relay-wide (an upper bound: see the module note). */
	connectionsFrom(address: string): number {
		const rows = this.#locate(address);
		let min = Number.POSITIVE_INFINITY;
		for (let r = 0; r < ROWS; r++) min = Math.min(min, Atomics.load(this.#all, GLOBAL_SKETCH + rows[r]));
		return min;
	}

	/**
	 * Counts a new connection attempt from `address` in the current one-second window; false when
	 * the address already made `handshakeRatePerIp` this second.
	 */
	allowHandshake(address: string, nowMs: number = Date.now()): boolean {
		const rate = this.limits.handshakeRatePerIp;
		if (!(rate > 0) || rate === Number.POSITIVE_INFINITY) return true;
		const second = Math.floor(nowMs / 1000) | 0;
		const rows = this.#locate(address);
		const all = this.#all;
		let min = Number.POSITIVE_INFINITY;
		for (let r = 0; r < ROWS; r++) {
			const at = GLOBAL_RATE + rows[r] * 2;
			const seen = Atomics.load(all, at);
			// A new second: the first thread to notice resets the count (a lost race only lets a few
			// extra attempts through at the window edge).
			if (seen !== second && Atomics.compareExchange(all, at, seen, second) === seen) Atomics.store(all, at + 1, 0);
			min = Math.min(min, Atomics.add(all, at + 1, 1) + 1);
		}
		return min <= rate;
	}

	#locate(address: string): Int32Array {
		const key = addressKey(address);
		const rows = this.#rows;
		for (let r = 0; r < ROWS; r++) rows[r] = r * WIDTH + hash(key, r * 0x9e3779b9);
		return rows;
	}

	#tryTake(global: number, mine: number, max: number): boolean {
		const n = Atomics.add(this.#all, global, 1) + 1;
		if (max > 0 && n > max) {
			Atomics.sub(this.#all, global, 1);
			return false;
		}
		this.#all[this.#mine + mine]++;
		return true;
	}

	#give(global: number, mine: number): void {
		Atomics.sub(this.#all, global, 1);
		this.#all[this.#mine + mine]--;
	}
}
