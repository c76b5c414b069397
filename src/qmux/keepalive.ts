/**
 * One timer for every WebSocket session of a listener (not a timer per session): each tick pings
 * sessions that are due and closes those silent past the idle timeout.
 */

/** What the scanner drives; implemented by WsSession. */
export interface KeepAliveTarget {
	/** Called every tick with the current time; the target pings or gives up as its clocks say. */
	keepAliveTick(now: number, pingIntervalMs: number, idleTimeoutMs: number): void;
}

export class KeepAlive {
	readonly pingIntervalMs: number;
	readonly idleTimeoutMs: number;
	#targets = new Set<KeepAliveTarget>();
	#timer: ReturnType<typeof setInterval> | null = null;

	/** Defaults follow moq-relay / qmux §Keep-Alive: WS Ping every 5 s, drop after 30 s of silence. */
	constructor(pingIntervalMs = 5000, idleTimeoutMs = 30000) {
		if (!(pingIntervalMs > 0) || !(idleTimeoutMs > 0)) throw new RangeError("keep-alive intervals must be > 0");
		this.pingIntervalMs = pingIntervalMs;
		this.idleTimeoutMs = idleTimeoutMs;
	}

	get size(): number {
		return this.#targets.size;
	}

	add(t: KeepAliveTarget): void {
		this.#targets.add(t);
		if (this.#timer === null) {
			// A quarter of the shorter period bounds the lateness of a ping or an idle close.
			const tick = Math.max(10, Math.min(this.pingIntervalMs, this.idleTimeoutMs) / 4);
			this.#timer = setInterval(this.#tick, tick);
			this.#timer.unref();
		}
	}

	delete(t: KeepAliveTarget): void {
		this.#targets.delete(t);
		if (this.#targets.size === 0) this.stop();
	}

	stop(): void {
		if (this.#timer !== null) clearInterval(this.#timer);
		this.#timer = null;
	}

	#tick = (): void => {
		const now = Date.now();
		// Targets may delete themselves while we iterate; Set iteration tolerates that.
		for (const t of this.#targets) t.keepAliveTick(now, this.pingIntervalMs, this.idleTimeoutMs);
	};
}
