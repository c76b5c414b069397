/**
 * The one way tests wait: for a condition, with a deadline and a name, so a test that would hang
 * fails instead and says what it was waiting for.
 */

/**
 * Resolves once `cond` holds, checking every 5 ms (a timer, not every event-loop turn: a long wait
 * must not spin a core that a relay process needs). Throws "timed out after N ms waiting for WHAT"
 * past `ms`.
 */
export async function until(cond: () => boolean | Promise<boolean>, ms = 10_000, what = "condition"): Promise<void> {
	if (process.env.MOQ_TEST_TRACE) console.error(`waiting for ${what}`);
	const start = performance.now();
	while (!(await cond())) {
		if (performance.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
		await sleep(5);
	}
}

/** A plain delay. Only for pacing a load (publishing rate, a time window), never for ordering. */
export function sleep(ms: number): Promise<void> {
	return new Promise((r) => setTimeout(r, ms));
}

/** A promise plus its resolve and reject, for awaiting callbacks. */
export function deferred<T = void>(): {
	promise: Promise<T>;
	resolve: (value: T) => void;
	reject: (err: unknown) => void;
} {
	let resolve!: (value: T) => void;
	let reject!: (err: unknown) => void;
	const promise = new Promise<T>((res, rej) => {
		resolve = res;
		reject = rej;
	});
	return { promise, resolve, reject };
}
