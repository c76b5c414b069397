/**
 * The decoder fuzzers in `npm test`: every target in test/fuzz/targets.ts runs 10,000 seeded cases
 * (valid messages, every truncation, then stacked mutations). `npm run fuzz` runs the same targets
 * with 1,000,000 cases each. A failure prints the crashing input and a regression test to paste.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fuzz, hex, regressionSnippet, runCase, type Target } from "./fuzz/engine.ts";
import { allTargets } from "./fuzz/targets.ts";

const CASES = 10_000;
/** Fixed, so a failure in CI reproduces locally with `npm run fuzz -- --seed 20240611 --target NAME`. */
const SEED = 20240611;

describe("decoder fuzzing (10k cases per target)", () => {
	for (const target of allTargets()) {
		test(target.name, async () => {
			const tally = await fuzz(target, { seed: SEED, cases: CASES });
			assert.equal(tally.cases, CASES);
			const report = tally.crashes
				.map((c) => `case ${c.index}: ${c.error}\n  input ${hex(c.input)}\n${regressionSnippet(c)}`)
				.join("\n\n");
			assert.equal(tally.crashCount, 0, `${target.name} crashed on ${tally.crashCount} case(s):\n${report}`);
			// A target whose cases all end the same way is not exploring anything.
			assert.ok(tally.ok > 0 && tally.rejected > 0, `${target.name}: ${JSON.stringify(tally)}`);
		});
	}
});

describe("fuzz engine", () => {
	const base = { name: "probe", corpus: [Uint8Array.of(1, 2, 3)], expected: (e: unknown) => e instanceof SyntaxError };

	test("an unexpected error class is a crash, the decoder's own error is a refusal", async () => {
		const typeError: Target = {
			...base,
			run: (b) => {
				if (b.length > 3) throw new TypeError("boom");
				if (b.length === 0) throw new SyntaxError("refused");
				return "ok";
			},
		};
		assert.equal(await runCase(typeError, Uint8Array.of(1)), "ok");
		assert.equal(await runCase(typeError, new Uint8Array(0)), "rejected");
		assert.deepEqual(await runCase(typeError, new Uint8Array(4)), { crash: "TypeError: boom" });
		const tally = await fuzz(typeError, { seed: 1, cases: 2000 });
		assert.ok(tally.crashCount > 0 && tally.crashes.length <= 5, "crashes are counted, a few are kept");
	});

	test("a case over its time budget is a crash", async () => {
		const slow: Target = {
			...base,
			budgetMs: 5,
			run: () => {
				const until = performance.now() + 20;
				while (performance.now() < until);
				return "ok";
			},
		};
		const r = await runCase(slow, Uint8Array.of(1));
		assert.equal(typeof r, "object");
		assert.match((r as { crash: string }).crash, /budget/);
	});

	test("the same seed gives the same cases; truncations of the corpus come first", async () => {
		const { generate } = await import("./fuzz/engine.ts");
		const t: Target = { ...base, run: () => "ok" };
		for (let i = 0; i < 4; i++) assert.deepEqual(generate(t, 7, i), Uint8Array.of(1, 2, 3).subarray(0, i));
		for (let i = 4; i < 200; i++) assert.deepEqual(generate(t, 7, i), generate(t, 7, i));
	});
});
