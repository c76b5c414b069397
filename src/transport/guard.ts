/**
 * The session guard: every entry point that handles bytes from the network (a UDP datagram for
 * one QUIC connection, a WebSocket message, a timer or promise acting for one session) runs its
 * work inside `try`, and hands whatever it catches to `faultCode` + `countFault`, then closes that
 * session alone. An exception thrown by one client's input therefore never unwinds into the event
 * loop, where it would kill the worker thread and every session on it.
 *
 * `try`/`catch` costs nothing in V8 until something throws, so the guard sits at the entry
 * points (once per datagram, message or timer), not around every frame.
 * @module
 */

import { FAULT } from "../errors/codes.ts";
import type { LogLine } from "../log/logger.ts";
import { countFault } from "./refusals.ts";

/** Largest code a decoder error may carry into a close (QUIC application codes are varints). */
const MAX_CODE = 2 ** 32 - 1;

/**
 * The close code for a caught error: its own code when it carries one (a `CodedError`: a
 * `DecodeError` is a protocol violation by the peer, with its precise code), else FAULT (1: moq-lite
 * leaves it unassigned, so a client can tell "the relay failed on my input" from a refusal).
 */
export function faultCode(err: unknown): number {
	const code = (err as { code?: unknown } | null)?.code;
	return typeof code === "number" && Number.isInteger(code) && code >= 0 && code <= MAX_CODE ? code : FAULT;
}

/**
 * Counts and logs (rate limited) a fault caught for one session. The log carries the error's
 * message and the first frames of its stack, never the input bytes (they may hold a token).
 */
export function reportFault(err: unknown, log: LogLine | undefined, fields: Record<string, unknown>): void {
	const e = err instanceof Error ? err : new Error(String(err));
	const stack = (e.stack ?? "")
		.split("\n")
		.slice(1, 4)
		.map((l) => l.trim());
	countFault(log, { ...fields, error: `${e.name}: ${e.message}`, at: stack.join(" < ") });
}
