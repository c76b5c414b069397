/**
 * A @moq/net 0.3.4 publisher (lite-05 over WebSocket) in its own process, so that a test can drop
 * its connection the abrupt way: SIGKILL, no close of any kind, the kernel closes the socket.
 *
 * Usage: end-publisher.ts URL BROADCAST TRACK... ; frames per group and sizes as test/support/frames.ts.
 * Commands on stdin, one a line: `group` (one complete group on every track), `partial` (a group on
 * every track with two frames, left open). After each command (and once connected) it writes a
 * heartbeat line on stderr: {"published": groups begun per track}.
 */
import "./quiet.ts";
import { createInterface } from "node:readline";
import * as Net from "@moq/net";
import { frameBytes } from "./frames.ts";

const [url, path, ...tracks] = process.argv.slice(2);
const FRAMES = Number(process.env.END_PUBLISHER_FRAMES ?? 4);
const BIG = Number(process.env.END_PUBLISHER_BIG ?? 1200);

const conn = await Net.Connection.connect(new URL(url), { websocket: { delay: 0 } });
const broadcast = new Net.Broadcast.Producer();
const producers = tracks.map((t) => broadcast.createTrack(t));
conn.publish(Net.Path.from(path), broadcast);
let published = 0;
const open: Net.Group.Producer[] = [];
const beat = () => process.stderr.write(`${JSON.stringify({ published, version: conn.version })}\n`);

function group(frames: number, close: boolean): void {
	const seq = published++;
	producers.forEach((p, ti) => {
		const g = p.appendGroup();
		if (g.sequence !== seq) throw new Error(`group ${g.sequence} != ${seq}`);
		for (let f = 0; f < frames; f++)
			g.writeFrame({ payload: frameBytes(seq, f, BIG, ti), timestamp: Net.Time.Timestamp.now() });
		if (close) g.close();
		else open.push(g);
	});
}

group(FRAMES, true);
beat();
for await (const line of createInterface({ input: process.stdin })) {
	if (line === "group") group(FRAMES, true);
	else if (line === "partial") group(2, false);
	beat();
}
