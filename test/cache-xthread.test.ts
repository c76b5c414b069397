import assert from "node:assert/strict";
import { test } from "node:test";
import { Worker } from "node:worker_threads";
import { CacheBudget, Doorbell } from "../src/cache/index.ts";
import type { ReaderResult, WriterResult } from "./fixtures/cache-xthread-worker.ts";

const WORKER = new URL("./fixtures/cache-xthread-worker.ts", import.meta.url);

function nextMessage<T>(worker: Worker): Promise<T> {
	return new Promise((resolve, reject) => {
		const onError = (err: Error) => reject(err);
		worker.once("error", onError);
		worker.once("message", (msg: T) => {
			worker.off("error", onError);
			resolve(msg);
		});
	});
}

test("50 MB through a 1 MB ring: one writer thread, two reader threads, byte-exact", { timeout: 120_000 }, async () => {
	const bells = Doorbell.createBuffer(3);
	const budget = CacheBudget.create(4 << 20);
	const spawn = (role: string, self: number) =>
		new Worker(WORKER, { workerData: { role, self, bells, budget: budget.buffer } });
	const writer = spawn("writer", 0);
	const readers = [spawn("reader", 1), spawn("reader", 2)];
	try {
		const { ring } = await nextMessage<{ ring: SharedArrayBuffer }>(writer);
		// The writer reserved its ring from the budget this thread created: one shared counter.
		assert.ok(budget.used >= 1 << 20, `budget used ${budget.used}`);
		for (const r of readers) r.postMessage({ ring });
		await Promise.all(readers.map((r) => nextMessage(r)));
		const results = [nextMessage<WriterResult>(writer), ...readers.map((r) => nextMessage<ReaderResult>(r))];
		writer.postMessage("go");
		const [w, ...rs] = (await Promise.all(results)) as [WriterResult, ReaderResult, ReaderResult];

		assert.ok(w.bytes >= 50 * 1024 * 1024);
		const sent = new Map(w.groups.map(([seq, hash, bytes, frames]) => [seq, [hash, bytes, frames]]));
		for (const [i, r] of rs.entries()) {
			for (const [seq, hash, bytes, frames] of r.groups) {
				assert.deepEqual([hash, bytes, frames], sent.get(seq), `reader ${i + 1}, group ${seq}`);
			}
			// Lapped readers drop groups, but between laps they read whole groups (typically half or more).
			assert.ok(r.groups.length >= 20, `reader ${i + 1} completed only ${r.groups.length} groups`);
			// Batched wake-ups: at most one per writer turn, far fewer than frames.
			assert.ok(r.wakes * 4 < w.frames, `reader ${i + 1}: ${r.wakes} wakes for ${w.frames} frames`);
			console.log(
				`reader ${i + 1}: ${r.groups.length}/${w.groups.length} groups verified, ${r.laps} lapped + ${r.torn} torn-copy recoveries, ` +
					`${r.wakes} wakes, ${r.records} records`,
			);
		}
		assert.ok(w.wakesSent <= 2 * w.flushes && w.flushes <= w.turns + 1);
		console.log(
			`writer: ${(w.bytes / 1048576).toFixed(1)} MB, ${w.frames} frames, ${w.chunks} chunks, ${w.turns} turns, ` +
				`${w.flushes} flushes, ${w.wakesSent} wakes sent, ${w.evicted} groups evicted`,
		);
	} finally {
		await Promise.all([writer, ...readers].map((x) => x.terminate()));
	}
});
