/**
 * Messages between the bench parent and its child processes (publisher, load generators), over the
 * `child_process.fork` IPC channel. Control plane only: a few messages per sweep step.
 * @module
 */

import type { RelayTarget } from "./connect.ts";
import type { TrackShape } from "./payload.ts";

export const BROADCAST = "live";
export const TRACK = "video";

export type ToPublisher =
	/**
	 * idleUntilGo: publish header-only frames on the same clock (the broadcast is announced and every
	 * subscription gets its SUBSCRIBE_OK while the relay is unloaded) until "go", then the full
	 * bitrate from the next group. Connecting hundreds of viewers to a saturated relay stalls them.
	 */
	{ type: "start"; target: RelayTarget; shape: TrackShape; idleUntilGo?: boolean } | { type: "go" } | { type: "stop" };
export type FromPublisher =
	| { type: "ready" }
	/** The first full-bitrate group has started (after "go"). */
	| { type: "going" }
	| { type: "error"; message: string }
	| { type: "stats"; groups: number; frames: number; cpuMicros: number };

export type ToGenerator =
	| { type: "init"; target: RelayTarget; sockets: number; groupMs: number }
	| { type: "add"; count: number }
	| { type: "reset" }
	| { type: "report" }
	| { type: "stop" };

export interface GeneratorReport {
	type: "report";
	/** hdr-histogram-js compressed base64, values in µs: publish → this process read the frame's last datagram. */
	histogram: string;
	/**
	 * The same, publish → the kernel's receive time of that datagram (native/loadgen.c, SO_TIMESTAMPNS):
	 * without the time it waited in this process's sockets. Absent from the JS generator.
	 */
	arrivalHistogram?: string;
	subscribers: number;
	frames: number;
	bytes: number;
	groupsComplete: number;
	/** Groups not completely received: missing frames, or skipped entirely. */
	groupsLost: number;
	/** Subscribers that received nothing during the window. */
	silent: number;
	/** CPU time of this process during the window (µs) and the window (ms). */
	cpuMicros: number;
	elapsedMs: number;
	/** Subscriptions that ended or sessions that closed during the window. */
	failures: number;
	/** UDP datagrams received by this process's sockets during the window (= relay egress to it). */
	packetsIn: number;
}

export type FromGenerator =
	| { type: "ready" }
	| { type: "added"; total: number; failed: number; error?: string }
	| { type: "reset" }
	| GeneratorReport
	| { type: "error"; message: string };
