/**
 * Page side for the official @moq/net 0.3.4, bundled by esbuild into an IIFE that sets
 * `window.moqPage`. Runs in Chromium only.
 * @module
 */

import * as Net from "@moq/net";
import { fromBase64, type PageApi, type PageGroup, toBase64 } from "./page-api.ts";

let conn: Awaited<ReturnType<typeof Net.Connection.connect>> | null = null;
let producer: Net.Track.Producer | null = null;
const received: PageGroup[] = [];
const errors: string[] = [];

function session() {
	if (conn === null) throw new Error("not connected");
	return conn;
}

async function readGroups(sub: Net.Track.Subscriber): Promise<void> {
	for (;;) {
		const group = await sub.recvGroup();
		if (!group) return;
		const entry: PageGroup = { seq: group.sequence, frames: [], done: false };
		received.push(entry);
		void (async () => {
			for (;;) {
				const frame = await group.readFrame();
				if (!frame) break;
				entry.frames.push(toBase64(frame.payload));
			}
			entry.done = true;
		})().catch((err) => errors.push(`group ${entry.seq}: ${err}`));
	}
}

const api: PageApi = {
	library: "@moq/net",
	async connect(url) {
		conn = await Net.Connection.connect(new URL(url), { websocket: { enabled: false } });
		return { version: conn.version, transport: conn.transport };
	},
	publish(path, track) {
		const broadcast = new Net.Broadcast.Producer();
		producer = broadcast.createTrack(track);
		session().publish(Net.Path.from(path), broadcast);
	},
	publishedSubscribers() {
		return producer?.used.peek() ? 1 : 0;
	},
	writeGroup(frames) {
		if (producer === null) throw new Error("nothing published");
		const group = producer.appendGroup();
		for (const f of frames) group.writeFrame({ payload: fromBase64(f), timestamp: Net.Time.Timestamp.now() });
		group.close();
		return group.sequence;
	},
	subscribe(path, track) {
		const sub = session().consume(Net.Path.from(path)).subscribe(track, { priority: 1 });
		readGroups(sub).catch((err) => errors.push(`subscription: ${err}`));
	},
	received: () => received,
	errors: () => errors,
	close() {
		conn?.close();
	},
};

window.moqPage = api;
