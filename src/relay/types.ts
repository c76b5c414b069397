/** Shared relay-core shapes (independent of wire versions and transports). */

import type { Path } from "../path/index.ts";

export interface TrackInfo {
	priority: number;
	ordered: boolean;
	maxLatencyMs: number;
	/** Units per second of frame timestamps (lite-05). */
	timescale: number;
}

/** What a pre-05 upstream implies (moq-relay synthesises the same). */
export const DEFAULT_TRACK_INFO: Readonly<TrackInfo> = {
	priority: 0,
	ordered: false,
	maxLatencyMs: 5000,
	timescale: 1000,
};

export interface SubscriptionParams {
	priority: number;
	ordered: boolean;
	maxLatencyMs: number;
	startGroup: number | null;
	endGroup: number | null;
}

/**
 * The publishing side of a broadcast: a session toward a publishing client (or, later, a link to
 * another relay). The relay asks it for tracks; it writes what arrives into the track's ring.
 */
export interface UpstreamPublisher {
	readonly id: number;
	/** Starts the upstream subscription for `track` (called once, when the first viewer arrives). */
	subscribeUpstream(track: TrackHandle): void;
	/** The aggregate of the viewers' parameters changed. */
	updateUpstream(track: TrackHandle): void;
	/** The last viewer left. */
	unsubscribeUpstream(track: TrackHandle): void;
	/** TRACK_INFO for a track of one of its broadcasts (asked upstream once, then cached by the caller). */
	fetchTrackInfo(broadcastPath: Path, track: string): Promise<TrackInfo>;
}

/** The part of a relay track an upstream publisher sees. */
export interface TrackHandle {
	readonly broadcastPath: Path;
	readonly name: string;
	readonly aggregate: Readonly<SubscriptionParams>;
}
