/**
 * The per-thread scheduler of every QUIC connection (server and client side alike):
 * - one flush per connection per event-loop turn: connections are marked dirty as events arrive
 *   and all dirty ones flush together in one `setImmediate` (so a turn's received packets are
 *   answered together and their ACKs coalesce);
 * - one timer for all connections: a single `setTimeout` armed at the earliest deadline, and a scan
 *   of the connections when it fires (a `setTimeout` per connection, re-armed at every flush, costs far more);
 * - one egress batch per socket per turn: after the connections flushed, every sender holding
 *   packets sends them (sender.ts: GSO/sendmmsg through the native addon), so the packets of a turn
 *   leave in that turn, whoever wrote them (a connection's flush, or the server answering an
 *   Initial with a Retry from its message handler).
 */

export interface Driven {
	/** Absolute time (performance.now() ms) at which `onTimer` must run; Infinity for never. */
	deadline: number;
	/** Set by the driver while queued for a flush. */
	dirty: boolean;
	/** Sends what the connection has to send and recomputes `deadline`. */
	flush(now: number): void;
	/** The deadline passed: run quiche's timeout / keep-alive (then the driver flushes it). */
	onTimer(now: number): void;
	/** Something thrown while flushing or timing this connection: close it alone (transport/guard.ts). */
	fault(err: unknown): void;
}

/** A socket's egress batch (sender.ts PacketSender). */
export interface BatchedSender {
	/** Set by the sender when it asks for the end-of-turn flush, cleared by `flushBatch`. */
	queuedForFlush: boolean;
	/** Sends what the batch holds; never throws. */
	flushBatch(): void;
}

/** Nodes timers have 1 ms resolution; deadlines this close are handled in the same scan. */
const TIMER_SLACK_MS = 0.5;

export class Driver {
	private readonly connections = new Set<Driven>();
	private dirtyList: Driven[] = [];
	private spareList: Driven[] = [];
	private senders: BatchedSender[] = [];
	/** True while flushAll runs: senders queued meanwhile are flushed at its end, in this turn. */
	private flushing = false;
	private immediate: NodeJS.Immediate | null = null;
	private timer: NodeJS.Timeout | null = null;
	private timerAt = Number.POSITIVE_INFINITY;

	get size(): number {
		return this.connections.size;
	}

	add(conn: Driven): void {
		this.connections.add(conn);
	}

	remove(conn: Driven): void {
		this.connections.delete(conn);
	}

	/** Queue a flush of `conn` for the end of this event-loop turn. */
	markDirty(conn: Driven): void {
		if (conn.dirty) return;
		conn.dirty = true;
		this.dirtyList.push(conn);
		if (this.immediate === null) this.immediate = setImmediate(this.flushAll);
	}

	/** Send `sender`'s batch at the end of this turn's flush, after every connection wrote its packets. */
	flushAtEndOfTurn(sender: BatchedSender): void {
		this.senders.push(sender);
		if (this.immediate === null && !this.flushing) this.immediate = setImmediate(this.flushAll);
	}

	/** Make sure the timer fires no later than `deadline`. */
	arm(deadline: number): void {
		if (deadline >= this.timerAt) return;
		if (deadline === Number.POSITIVE_INFINITY) return;
		if (this.timer !== null) clearTimeout(this.timer);
		this.timerAt = deadline;
		const delay = Math.max(0, deadline - performance.now());
		this.timer = setTimeout(this.scan, delay);
		// The sockets keep the process alive, not the timer.
		this.timer.unref();
	}

	private readonly flushAll = (): void => {
		this.immediate = null;
		const list = this.dirtyList;
		// Connections re-marked during the flush (e.g. more to send than one flush allows) go to the next turn.
		this.dirtyList = this.spareList;
		const now = performance.now();
		this.flushing = true;
		for (let i = 0; i < list.length; i++) {
			const conn = list[i];
			conn.dirty = false;
			try {
				conn.flush(now);
			} catch (err) {
				// A flush runs stream pumps and session callbacks; one connection's fault stays its own.
				conn.fault(err);
			}
			this.arm(conn.deadline);
		}
		this.flushing = false;
		list.length = 0;
		this.spareList = list;
		const senders = this.senders;
		for (let i = 0; i < senders.length; i++) senders[i].flushBatch();
		senders.length = 0;
	};

	private readonly scan = (): void => {
		this.timer = null;
		this.timerAt = Number.POSITIVE_INFINITY;
		const now = performance.now() + TIMER_SLACK_MS;
		let next = Number.POSITIVE_INFINITY;
		for (const conn of this.connections) {
			if (conn.deadline <= now) {
				try {
					conn.onTimer(now);
				} catch (err) {
					conn.fault(err);
				}
				this.markDirty(conn);
			} else if (conn.deadline < next) {
				next = conn.deadline;
			}
		}
		this.arm(next);
	};
}

let threadDriver: Driver | null = null;

/** The driver of this thread (module state is per thread under worker_threads). */
export function driver(): Driver {
	if (threadDriver === null) threadDriver = new Driver();
	return threadDriver;
}
