/**
 * Bench child process: many subscriber sessions (our QUIC client) on a few shared UDP sockets, each
 * recording publish → receive latency into one HDR histogram (µs) and counting incomplete groups.
 * Several sockets (not one) so the relay's SO_REUSEPORT hashing spreads this process's connections
 * over its workers, like real viewers with distinct addresses.
 * @module
 */

import dgram from "node:dgram";
import * as hdr from "hdr-histogram-js";
import type { MoqClient, Subscription } from "../../src/client/index.ts";
import { clientEndpointStats } from "../../src/quic/client.ts";
import { connectClient, type RelayTarget } from "./connect.ts";
import { HeaderReader, nowMs } from "./payload.ts";
import { BROADCAST, type FromGenerator, type ToGenerator, TRACK } from "./protocol.ts";

const send = (m: FromGenerator) => process.send?.(m);
const NOT_FOUND = 13;
/** Concurrent handshakes while ramping up. */
const CONNECT_BATCH = 16;

function newHistogram(): hdr.Histogram {
	return hdr.build({
		bitBucketSize: 32,
		lowestDiscernibleValue: 1,
		highestTrackableValue: 120_000_000,
		numberOfSignificantValueDigits: 3,
	});
}

let histogram = newHistogram();
let measuring = false;
let frames = 0;
let bytes = 0;
let groupsComplete = 0;
let groupsLost = 0;
let failures = 0;
/** Datagrams our client endpoints received on these sockets, when the window opened. */
let packetsAtReset = 0;
/** Datagrams received on every socket so far (the endpoints count them: see clientEndpointStats). */
const packetsReceived = (): number => sockets.reduce((n, s) => n + (clientEndpointStats(s)?.packetsIn ?? 0), 0);
let cpu0 = process.cpuUsage();
let t0 = nowMs();
const header = new HeaderReader();

/** One viewer: a session, its subscription, and the group it is currently receiving. */
class Viewer {
	client: MoqClient | null = null;
	sub: Subscription | null = null;
	group = -1;
	received = 0;
	expected = 0;
	framesInWindow = 0;

	readonly onFrame = (_seq: number, _index: number, payload: Uint8Array): void => {
		if (!header.read(payload)) return;
		const now = nowMs();
		if (!measuring) {
			this.track();
			return;
		}
		frames++;
		bytes += payload.length;
		this.framesInWindow++;
		const us = Math.round((now - header.sentMs) * 1000);
		histogram.recordValue(us > 0 ? us : 1);
		this.track();
	};

	/** Group accounting from the frame header: a group is complete when all its frames came. */
	track(): void {
		const g = header.group;
		if (g !== this.group) {
			if (g < this.group) return; // a late frame of an older group: already accounted
			if (measuring && this.group >= 0) {
				if (this.received < this.expected) groupsLost++;
				else groupsComplete++;
				// Groups skipped entirely (never started here).
				if (g > this.group + 1) groupsLost += g - this.group - 1;
			}
			this.group = g;
			this.received = 0;
			this.expected = header.frames;
		}
		this.received++;
	}
}

let target: RelayTarget | null = null;
let sockets: dgram.Socket[] = [];
const viewers: Viewer[] = [];

let nextSocket = 0;

async function addViewer(): Promise<void> {
	const v = new Viewer();
	// Count before the first await: viewers added in one concurrent batch must not all pick the same
	// socket (one 4-tuple puts every connection on one relay worker).
	const socket = sockets[nextSocket++ % sockets.length];
	v.client = await connectClient(target!, socket);
	v.client.onClose = () => {
		if (measuring) failures++;
	};
	await subscribe(v);
	viewers.push(v);
}

/** Subscribes, retrying while the relay does not know the broadcast yet (the publisher is still announcing). */
function subscribe(v: Viewer, attempt = 0): Promise<void> {
	return new Promise((resolve, reject) => {
		let started = false;
		const sub = v.client!.subscribe(
			BROADCAST,
			TRACK,
			{ priority: 1 },
			{
				onFrame: v.onFrame,
				onStart: () => {
					started = true;
					resolve();
				},
				onEnd: (code) => {
					if (started) {
						if (measuring) failures++;
						return;
					}
					if (code === NOT_FOUND && attempt < 100) {
						setTimeout(() => subscribe(v, attempt + 1).then(resolve, reject), 100);
					} else reject(new Error(`subscription refused (${code})`));
				},
			},
		);
		v.sub = sub;
	});
}

process.on("message", (m: ToGenerator) => {
	switch (m.type) {
		case "init":
			target = m.target;
			sockets = Array.from({ length: m.sockets }, () => {
				return dgram.createSocket("udp4");
			});
			send({ type: "ready" });
			return;
		case "add":
			add(m.count).then(
				(failed) => send({ type: "added", total: viewers.length, failed }),
				(err: Error) => send({ type: "added", total: viewers.length, failed: m.count, error: err.message }),
			);
			return;
		case "reset":
			histogram = newHistogram();
			frames = bytes = groupsComplete = groupsLost = failures = 0;
			// Counts the relay's egress packets to us exactly, in the same window as the latencies.
			packetsAtReset = packetsReceived();
			for (const v of viewers) v.framesInWindow = 0;
			measuring = true;
			cpu0 = process.cpuUsage();
			t0 = nowMs();
			send({ type: "reset" });
			return;
		case "report": {
			const cpu = process.cpuUsage(cpu0);
			send({
				type: "report",
				histogram: hdr.encodeIntoCompressedBase64(histogram),
				subscribers: viewers.length,
				frames,
				bytes,
				groupsComplete,
				groupsLost,
				silent: viewers.filter((v) => v.framesInWindow === 0).length,
				cpuMicros: cpu.user + cpu.system,
				elapsedMs: nowMs() - t0,
				failures,
				packetsIn: packetsReceived() - packetsAtReset,
			});
			measuring = false;
			return;
		}
		case "stop":
			for (const v of viewers) v.client?.close(0, "bench done");
			setTimeout(() => process.exit(0), 50);
			return;
	}
});
process.on("disconnect", () => process.exit(0));

async function add(count: number): Promise<number> {
	let failed = 0;
	let left = count;
	while (left > 0) {
		const n = Math.min(CONNECT_BATCH, left);
		left -= n;
		const results = await Promise.allSettled(Array.from({ length: n }, () => addViewer()));
		for (const r of results) if (r.status === "rejected") failed++;
	}
	return failed;
}
