/**
 * A viewer that keeps everything it receives of one track, per group: what the byte-exact fan-out
 * tests compare against what was published.
 */
import type { MoqClient } from "../../src/client/index.ts";

export interface GroupViewer {
	client: MoqClient;
	/** group seq → frames, in arrival order (copies). */
	groups: Map<number, Uint8Array[]>;
	/** Group sequence numbers in the order they started. */
	order: number[];
	/** Groups whose stream ended after their last frame. */
	ended: Set<number>;
}

/** Subscribes `client` to `broadcast`/`track` and collects its groups. */
export function collectGroups(client: MoqClient, broadcast: string, track = "video"): GroupViewer {
	const v: GroupViewer = { client, groups: new Map(), order: [], ended: new Set() };
	client.subscribe(
		broadcast,
		track,
		{},
		{
			onGroup: (seq) => {
				v.groups.set(seq, []);
				v.order.push(seq);
			},
			onFrame: (seq, _index, payload) => v.groups.get(seq)?.push(new Uint8Array(payload)),
			onGroupEnd: (seq, complete) => {
				if (complete) v.ended.add(seq);
			},
		},
	);
	return v;
}
