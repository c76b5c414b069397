import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createLogger } from "../src/log/logger.ts";
import { Field } from "../src/pool/counters.ts";
import { WorkerPool } from "../src/pool/supervisor.ts";
import type { FixtureCommand, FixtureData } from "./fixtures/pool-worker.ts";
import { until } from "./support/wait.ts";

const ENTRY = new URL("./fixtures/pool-worker.ts", import.meta.url);

interface Captured {
	log: ReturnType<typeof createLogger>;
	entries: Record<string, unknown>[];
}

function captureLog(): Captured {
	const entries: Record<string, unknown>[] = [];
	return { entries, log: createLogger("debug", "json", {}, (l) => entries.push(JSON.parse(l))) };
}

type Msg = Record<string, unknown>;

/** Resolves with the first app message from the pool matching `match`, or rejects after `ms`. */
function nextMessage(pool: WorkerPool, match: (index: number, m: Msg) => boolean, ms = 5000): Promise<Msg> {
	return new Promise((resolve, reject) => {
		const timer = setTimeout(() => {
			off();
			reject(new Error("timed out waiting for a pool message"));
		}, ms);
		const off = pool.onMessage((i, m) => {
			if (!match(i, m as Msg)) return;
			clearTimeout(timer);
			off();
			resolve(m as Msg);
		});
	});
}

function command(pool: WorkerPool, index: number, c: FixtureCommand): void {
	assert.equal(pool.post(index, c), true, `worker ${index} is up`);
}

let pingId = 0;
async function ping(pool: WorkerPool, index: number): Promise<Msg> {
	const id = ++pingId;
	const reply = nextMessage(pool, (_i, m) => m.type === "pong" && m.id === id);
	command(pool, index, { cmd: "ping", id });
	return reply;
}

/** Sends `text` from worker `from` to worker `to` through the mesh; resolves when `to` reports it. */
async function relay(pool: WorkerPool, from: number, to: number, text: string): Promise<void> {
	const got = nextMessage(pool, (_i, m) => m.type === "peer-message" && m.at === to && (m.msg as Msg)?.text === text);
	command(pool, from, { cmd: "relay", to, text });
	const m = await got;
	assert.equal(m.from, from, "the receiver knows the sender from the port it arrived on");
}

function nextReady(pool: WorkerPool, index: number, generation: number, ms = 5000): Promise<number> {
	const t0 = performance.now();
	return new Promise((resolve, reject) => {
		const timer = setTimeout(() => {
			off();
			reject(new Error(`worker ${index} generation ${generation} not ready within ${ms} ms`));
		}, ms);
		const off = pool.onWorkerReady((i, _info, g) => {
			if (i !== index || g !== generation) return;
			clearTimeout(timer);
			off();
			resolve(performance.now() - t0);
		});
	});
}

describe("WorkerPool", { timeout: 60_000 }, () => {
	const pools: WorkerPool[] = [];
	after(async () => {
		await Promise.all(pools.map((p) => p.close(1000)));
	});

	async function startPool(extra: Partial<Parameters<typeof WorkerPool.start>[0]> = {}): Promise<WorkerPool> {
		const pool = await WorkerPool.start({
			count: 3,
			entry: ENTRY,
			log: captureLog().log,
			restartBackoffMs: 10,
			...extra,
		});
		pools.push(pool);
		return pool;
	}

	test("starts 3 workers that all report ready", { timeout: 20_000 }, async () => {
		const readies: number[] = [];
		const pool = await startPool();
		pool.onWorkerReady((i) => readies.push(i));
		const status = pool.status();
		assert.equal(status.length, 3);
		assert.deepEqual(
			status.map((s) => [s.index, s.ready, s.generation]),
			[
				[0, true, 1],
				[1, true, 1],
				[2, true, 1],
			],
		);
		const ids = new Set(status.map((s) => s.threadId));
		assert.equal(ids.size, 3, "three distinct threads");
		for (let i = 0; i < 3; i++) {
			const pong = await ping(pool, i);
			assert.equal(pong.index, i);
			assert.equal(pong.threadId, status[i].threadId);
			assert.deepEqual(status[i].info, { threadId: status[i].threadId, generation: 1 });
		}
		assert.deepEqual(readies, [], "no further ready events");
	});

	test("worker i posts to worker j directly through the mesh, every pair", { timeout: 20_000 }, async () => {
		const pool = await startPool();
		for (let from = 0; from < 3; from++) {
			for (let to = 0; to < 3; to++) if (from !== to) await relay(pool, from, to, `hello ${from}->${to}`);
		}
	});

	test("the main thread reads every worker's counters from shared memory", { timeout: 20_000 }, async () => {
		const pool = await startPool();
		// The fixture ticks framesIn on a timer: visible without asking the workers anything.
		await until(() => pool.counters.readAll().every((f) => f.framesIn > 3));
		const counted = nextMessage(pool, (i, m) => i === 2 && m.type === "counted");
		command(pool, 2, { cmd: "count", field: "bytesIn", n: 1234 });
		await counted;
		const figures = pool.counters.readAll();
		assert.deepEqual(
			figures.map((f) => f.bytesIn),
			[0, 0, 1234],
		);
		for (const f of figures) {
			assert.ok(f.cpuUserMicros + f.cpuSystemMicros > 0, "thread CPU sampled at connect");
			assert.ok(f.heapUsedBytes > 0, "heap sampled at connect");
			assert.ok(f.eventLoopUtilization >= 0 && f.eventLoopUtilization <= 1);
			assert.equal(f.restarts, 0);
		}
		assert.equal(Field.bytesIn, 6);
	});

	test("a crashed worker is replaced in its slot, the mesh is rebuilt, the others never stop", {
		timeout: 30_000,
	}, async () => {
		const cap = captureLog();
		const pool = await startPool({ log: cap.log });
		const before = pool.status();
		const pong0 = await ping(pool, 0);
		const pong2 = await ping(pool, 2);
		await until(() => pool.counters.readAll().every((f) => f.framesIn > 0));
		const counted = nextMessage(pool, (i, m) => i === 1 && m.type === "counted");
		command(pool, 1, { cmd: "count", field: "groupsIn", n: 7 });
		await counted;
		const ticks = pool.counters.readAll().map((f) => f.framesIn);

		const restarts = [
			nextMessage(pool, (_i, m) => m.type === "peer-restart" && m.at === 0 && m.index === 1),
			nextMessage(pool, (_i, m) => m.type === "peer-restart" && m.at === 2 && m.index === 1),
		];
		const replaced = nextReady(pool, 1, 2);
		command(pool, 1, { cmd: "crash" });
		const ms = await replaced;
		assert.ok(ms < 5000, `replaced within 5 s (took ${ms.toFixed(0)} ms)`);
		await Promise.all(restarts);

		const now = pool.status();
		assert.equal(now[1].generation, 2);
		assert.equal(now[1].restarts, 1);
		assert.notEqual(now[1].threadId, before[1].threadId, "a new thread in slot 1");
		assert.equal(now[0].threadId, before[0].threadId, "worker 0 untouched");
		assert.equal(now[2].threadId, before[2].threadId, "worker 2 untouched");
		assert.equal(pool.restarts, 1);

		// The mesh works to and from the replacement.
		await relay(pool, 0, 1, "to new 1");
		await relay(pool, 1, 0, "from new 1");
		await relay(pool, 2, 1, "to new 1 again");
		await relay(pool, 1, 2, "from new 1 again");
		await relay(pool, 0, 2, "old pair still fine");

		// The others kept running: same thread, same start, timer-driven counter kept rising.
		assert.equal((await ping(pool, 0)).startedAt, pong0.startedAt);
		assert.equal((await ping(pool, 2)).startedAt, pong2.startedAt);
		await until(() => {
			const f = pool.counters.readAll();
			return f[0].framesIn > ticks[0] + 5 && f[2].framesIn > ticks[2] + 5;
		});
		const f1 = pool.counters.read(1);
		assert.equal(f1.restarts, 1, "restarts counted in shared memory");
		assert.equal(f1.groupsIn, 7, "counters survive a replacement (monotonic)");

		const died = cap.entries.find((e) => e.msg === "worker died; restarting it");
		assert.ok(died, "the restart is logged");
		assert.equal(died.worker, 1);
		assert.match(String(died.error), /fixture worker 1 crashed on request/);
	});

	test("a worker that exits on its own is replaced too", { timeout: 30_000 }, async () => {
		const pool = await startPool();
		const replaced = nextReady(pool, 2, 2);
		command(pool, 2, { cmd: "exit", code: 3 });
		await replaced;
		await relay(pool, 2, 0, "back");
		assert.equal(pool.counters.read(2).restarts, 1);
	});

	test("a crash loop backs off exponentially, then recovers", { timeout: 30_000 }, async () => {
		const cap = captureLog();
		let broken = false;
		const pool = await startPool({
			log: cap.log,
			restartBackoffMs: 20,
			workerData: (i): FixtureData => ({ throwOnStart: broken && i === 0 }),
		});
		broken = true;
		const delays = () => cap.entries.filter((e) => e.msg === "worker died; restarting it").map((e) => e.delayMs);
		command(pool, 0, { cmd: "crash" });
		await until(() => delays().length >= 4);
		broken = false;
		await until(() => pool.status()[0].ready);
		assert.deepEqual(delays().slice(0, 4), [20, 40, 80, 160]);
		const gen = pool.status()[0].generation;
		assert.ok(gen >= 5, `generation ${gen}`);
		await relay(pool, 0, 1, "recovered");
		await relay(pool, 2, 0, "recovered too");
	});

	test("survivors hear of a dead peer at once, not when its replacement starts", { timeout: 30_000 }, async () => {
		const pool = await startPool({ count: 2, restartBackoffMs: 5000 });
		const t0 = performance.now();
		const down = nextMessage(pool, (_i, m) => m.type === "peer-down" && m.at === 1 && m.index === 0, 2000);
		command(pool, 0, { cmd: "crash" });
		await down;
		assert.ok(performance.now() - t0 < 2000);
		assert.equal(pool.status()[0].ready, false, "the replacement is still waiting out its backoff");
	});

	test("the last worker serving restarts at once, and other slots' backoffs are cut short", {
		timeout: 30_000,
	}, async () => {
		const cap = captureLog();
		const pool = await startPool({ count: 2, log: cap.log, restartBackoffMs: 400 });
		const died = () => cap.entries.filter((e) => e.msg === "worker died; restarting it");
		// Worker 0 crash-loops while worker 1 serves: plain exponential backoff (400, 800, 1600).
		for (let gen = 2; gen <= 4; gen++) {
			const back = nextReady(pool, 0, gen, 10_000);
			command(pool, 0, { cmd: "crash" });
			await back;
		}
		assert.deepEqual(
			died().map((e) => e.delayMs),
			[400, 800, 1600],
		);
		// Now worker 0 waits 3200 ms, and worker 1 (the only one serving) dies too.
		command(pool, 0, { cmd: "crash" });
		await until(() => died().length === 4);
		const t0 = performance.now();
		const back1 = nextReady(pool, 1, 2, 10_000);
		const back0 = nextReady(pool, 0, 5, 10_000);
		back0.catch(() => {}); // awaited below; must not go unhandled if an assertion fails first
		command(pool, 1, { cmd: "crash" });
		await back1;
		const last = died().at(-1)!;
		assert.equal(last.worker, 1);
		assert.equal(last.delayMs, 0, "no backoff when nothing else serves");
		assert.equal(last.allDown, true);
		const ms0 = await back0;
		assert.ok(ms0 < 2500, `worker 0's 3200 ms backoff was cut to the first step (back after ${ms0.toFixed(0)} ms)`);
		assert.ok(performance.now() - t0 < 5000);
		await relay(pool, 0, 1, "both back");
	});

	test("start() rejects naming a worker that fails before ready", { timeout: 20_000 }, async () => {
		await assert.rejects(
			WorkerPool.start({
				count: 3,
				entry: ENTRY,
				log: captureLog().log,
				workerData: (i): FixtureData => ({ throwOnStart: i === 2 }),
			}),
			/worker 2 exited with code 1 before it was ready: fixture worker 2 refuses to start/,
		);
	});

	test("options are validated with their names", async () => {
		const log = captureLog().log;
		await assert.rejects(
			WorkerPool.start({ count: 0, entry: ENTRY, log }),
			/options\.count must be a positive integer/,
		);
		await assert.rejects(
			WorkerPool.start({ count: 1, entry: ENTRY, log, restartBackoffMs: -1 }),
			/options\.restartBackoffMs must be a non-negative number/,
		);
	});
});

/** Runs test/fixtures/pool-child.ts and requires the process to exit on its own. */
function runChild(mode: string): Promise<{ code: number | null; result: Msg }> {
	const script = fileURLToPath(new URL("./fixtures/pool-child.ts", import.meta.url));
	return new Promise((resolve, reject) => {
		const child = spawn(process.execPath, [script, mode], { stdio: ["ignore", "pipe", "inherit"] });
		let out = "";
		child.stdout.on("data", (d) => (out += d));
		const timer = setTimeout(() => {
			child.kill("SIGKILL");
			reject(new Error(`child (${mode}) did not exit by itself within 15 s; output: ${out}`));
		}, 15_000);
		child.on("exit", (code) => {
			clearTimeout(timer);
			try {
				resolve({ code, result: JSON.parse(out.trim().split("\n").at(-1) ?? "{}") });
			} catch (e) {
				reject(e);
			}
		});
	});
}

describe("WorkerPool.close() in a child process", { timeout: 60_000 }, () => {
	test("drains every worker and the process exits by itself", { timeout: 20_000 }, async () => {
		const { code, result } = await runChild("clean");
		assert.equal(code, 0);
		assert.equal(result.error, undefined);
		assert.equal((result.pong as Msg).type, "pong");
		assert.equal(result.idempotent, true);
		assert.deepEqual(result.exits, [0, 1, 2]);
		assert.deepEqual(result.status, [null, null, null]);
		assert.ok((result.logs as string[]).includes("worker pool closed"));
		assert.ok(!(result.logs as string[]).includes("workers did not drain in time; terminating them"));
	});

	test("terminates a worker that does not drain in time", { timeout: 20_000 }, async () => {
		const { code, result } = await runChild("hang");
		assert.equal(code, 0);
		assert.deepEqual(result.exits, [0, 1, 2]);
		assert.ok((result.closeMs as number) >= 500, `waited the drain timeout (${result.closeMs} ms)`);
		assert.ok((result.logs as string[]).includes("workers did not drain in time; terminating them"));
	});

	test("a ready timeout fails start() naming the worker, and the process exits by itself", {
		timeout: 20_000,
	}, async () => {
		const { code, result } = await runChild("no-ready");
		assert.equal(code, 0);
		assert.equal(result.error, "worker 1 did not report ready within 2000 ms");
	});
});
