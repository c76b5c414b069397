/**
 * Bench child process: publishes the synthetic live track (see payload.ts) to the relay over our
 * QUIC client, on a drift-free frame clock, stamping each frame with its send time.
 * @module
 */

import type { MoqClient } from "../../src/client/index.ts";
import { connectClient } from "./connect.ts";
import { frameSizes, HEADER_BYTES, nowMs, writeHeader } from "./payload.ts";
import { BROADCAST, type FromPublisher, type ToPublisher, TRACK } from "./protocol.ts";

const send = (m: FromPublisher) => process.send?.(m);
let client: MoqClient | null = null;
let timer: NodeJS.Timeout | null = null;

let full = true;
let goRequested = false;

process.on("message", (m: ToPublisher) => {
	if (m.type === "start") {
		full = !m.idleUntilGo;
		start(m).catch((err: Error) => send({ type: "error", message: err.message }));
	} else if (m.type === "go") {
		goRequested = true;
	} else if (m.type === "stop") {
		if (timer) clearTimeout(timer);
		client?.close(0, "bench done");
		process.exit(0);
	}
});
process.on("disconnect", () => process.exit(0));

async function start(m: Extract<ToPublisher, { type: "start" }>): Promise<void> {
	client = await connectClient(m.target);
	const broadcast = client.publish(BROADCAST, { tracks: [TRACK], maxLatencyMs: Math.max(5000, m.shape.groupMs * 2) });
	const track = broadcast.track(TRACK);
	const sizes = frameSizes(m.shape);
	const buffers = sizes.map((n) => {
		const b = new Uint8Array(Math.max(n, HEADER_BYTES));
		for (let i = HEADER_BYTES; i < b.length; i++) b[i] = i & 0xff;
		return b;
	});
	const idle = new Uint8Array(HEADER_BYTES);
	const interval = 1000 / m.shape.fps;
	const t0 = nowMs();
	let tick = 0;
	let group = track.openGroup();
	let frames = 0;
	const cpu0 = process.cpuUsage();
	const next = (): void => {
		const index = tick % sizes.length;
		if (index === 0 && tick > 0) {
			// Switch at a group boundary so every group is uniformly idle or full.
			if (goRequested && !full) {
				full = true;
				send({ type: "going" });
			}
			group = track.openGroup();
		}
		const buf = full ? buffers[index] : idle;
		writeHeader(buf, nowMs(), group.seq, index, sizes.length);
		group.writeFrame(buf, Date.now());
		frames++;
		if (index === sizes.length - 1) group.close();
		tick++;
		if (tick % 30 === 0) {
			const c = process.cpuUsage(cpu0);
			send({ type: "stats", groups: group.seq + 1, frames, cpuMicros: c.user + c.system });
		}
		timer = setTimeout(next, Math.max(0, t0 + tick * interval - nowMs()));
	};
	next();
	send({ type: "ready" });
	client.onClose = (code, reason) => {
		send({ type: "error", message: `publisher session closed (${code}: ${reason})` });
		process.exit(1);
	};
}
