/**
 * Page side for the official @moq/lite 0.2.2 (it negotiates moq-lite-04 over WebTransport),
 * bundled by esbuild into an IIFE that sets `window.moqPage`. Runs in Chromium only.
 * @module
 */

import * as Lite from "@moq/lite";
import { fromBase64, type PageApi, type PageGroup, toBase64 } from "./page-api.ts";

let conn: Awaited<ReturnType<typeof Lite.Connection.connect>> | null = null;
/** The published track's name, and the Track objects the relay asked for (lite serves on request). */
let publishedName = "";
const servedTracks: Lite.Track[] = [];
let nextSeq = 0;
const received: PageGroup[] = [];
const errors: string[] = [];

function session() {
	if (conn === null) throw new Error("not connected");
	return conn;
}

async function serveRequests(broadcast: Lite.Broadcast): Promise<void> {
	for (;;) {
		const request = await broadcast.requested();
		if (!request) return;
		if (request.track.name === publishedName) servedTracks.push(request.track);
		else request.track.close(new Error("not found"));
	}
}

async function readGroups(track: Lite.Track): Promise<void> {
	for (;;) {
		const group = await track.recvGroup();
		if (!group) return;
		const entry: PageGroup = { seq: group.sequence, frames: [], done: false };
		received.push(entry);
		void (async () => {
			for (;;) {
				const frame = await group.readFrame();
				if (!frame) break;
				entry.frames.push(toBase64(frame));
			}
			entry.done = true;
		})().catch((err) => errors.push(`group ${entry.seq}: ${err}`));
	}
}

const api: PageApi = {
	library: "@moq/lite",
	async connect(url) {
		conn = await Lite.Connection.connect(new URL(url), { websocket: { enabled: false } });
		return { version: String(conn.version), transport: null };
	},
	publish(path, track) {
		publishedName = track;
		const broadcast = new Lite.Broadcast();
		session().publish(Lite.Path.from(path), broadcast);
		serveRequests(broadcast).catch((err) => errors.push(`publish: ${err}`));
	},
	publishedSubscribers: () => servedTracks.length,
	writeGroup(frames) {
		if (servedTracks.length === 0) throw new Error("the relay has not subscribed yet");
		const seq = nextSeq++;
		for (const track of servedTracks) {
			const group = new Lite.Group(seq);
			track.writeGroup(group);
			for (const f of frames) group.writeFrame(fromBase64(f));
			group.close();
		}
		return seq;
	},
	subscribe(path, track) {
		const sub = session().consume(Lite.Path.from(path)).subscribe(track, 1);
		readGroups(sub).catch((err) => errors.push(`subscription: ${err}`));
	},
	received: () => received,
	errors: () => errors,
	close() {
		conn?.close();
	},
};

window.moqPage = api;
