/**
 * The per-thread QUIC driver's flush turn ([server.quic] flush_turn_ms): a turn that runs out of
 * time leaves the rest of its connections, first in line and still dirty, to the next turn, so the
 * event loop reads in between, and every connection is flushed exactly once.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { setImmediate as immediate } from "node:timers/promises";
import { DEFAULT_FLUSH_TURN_MS, type Driven, Driver } from "../src/quic/driver.ts";

/** A connection whose flush busy-waits `costMs` and records the order of flushes. */
function busy(name: string, costMs: number, order: string[]): Driven {
	return {
		deadline: Number.POSITIVE_INFINITY,
		dirty: false,
		flush() {
			const end = performance.now() + costMs;
			while (performance.now() < end) {
				// a flush that builds packets for costMs
			}
			order.push(name);
		},
		onTimer() {},
		fault(err) {
			throw err;
		},
	};
}

test("a flush turn over its budget leaves the rest first in line for the next turn, I/O in between", async () => {
	const driver = new Driver();
	assert.equal(driver.turnMs, DEFAULT_FLUSH_TURN_MS);
	driver.turnMs = 5;
	const order: string[] = [];
	const conns = ["a", "b", "c", "d", "e", "f"].map((n) => busy(n, 2, order));
	for (const c of conns) driver.markDirty(c);
	// One turn: a and b and c fit in 5 ms (c starts at about 4 ms), the rest wait.
	await immediate();
	assert.ok(order.length >= 2 && order.length < 6, `first turn flushed ${order.join(",")}`);
	const firstTurn = order.length;
	assert.ok(
		conns.slice(firstTurn).every((c) => c.dirty),
		"the rest are still marked dirty",
	);
	// Marked between turns (a viewer that got a new frame): after the leftovers.
	const late = busy("late", 0, order);
	driver.markDirty(late);
	driver.markDirty(conns[firstTurn]); // already queued: not twice
	while (order.length < 7) await immediate();
	await immediate();
	assert.deepEqual(order, ["a", "b", "c", "d", "e", "f", "late"], "each once, leftovers before later ones");
	assert.ok(conns.every((c) => !c.dirty) && !late.dirty);
});

test("flush_turn_ms = 0: one turn flushes every dirty connection", async () => {
	const driver = new Driver();
	driver.turnMs = 0;
	const order: string[] = [];
	for (const n of ["a", "b", "c", "d"]) driver.markDirty(busy(n, 3, order));
	await immediate();
	assert.deepEqual(order, ["a", "b", "c", "d"]);
});
