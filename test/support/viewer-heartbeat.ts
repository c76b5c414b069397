/**
 * The heartbeat of the load-test viewer processes (test/fixtures/*-viewers.ts), one JSON line on
 * stderr every 250 ms, read back by support/child.ts: how many viewers are connected, and each
 * viewer's newest complete group (-1: none yet).
 */
export function startHeartbeat(viewers: readonly { connected: boolean; complete: number[] }[]): void {
	setInterval(() => {
		const newest = viewers.map((v) => v.complete.reduce((a, b) => Math.max(a, b), -1));
		process.stderr.write(`${JSON.stringify({ connected: viewers.filter((v) => v.connected).length, newest })}\n`);
	}, 250);
}
