/**
 * recvMany (native/ngtcp2.c) reads established connections' short-header packets itself, greased
 * fixed bit or not. Both sides advertise grease_quic_bit (RFC 9287) and ngtcp2 clients clear the
 * bit in about half their short-header packets; our quiche-based test clients never do, so this
 * test subscribes with the real ngtcp2 client, the bench's native load generator (moq-loadgen),
 * and checks that nearly every datagram the relay receives is an engine read.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { after, describe, test } from "node:test";
import { nativeGeneratorAvailable, nativeGeneratorPath } from "../bench/lib/native-generator.ts";
import { HEADER_BYTES, nowMs, writeHeader } from "../bench/lib/payload.ts";
import type { PublishedTrack } from "../src/client/publisher.ts";
import { selectEngine } from "../src/quic/engine.ts";
import { connectQuicSession, startTestRelay } from "./support/relay.ts";
import { sleep, until } from "./support/wait.ts";

const SUBSCRIBERS = 8;
const FRAMES_PER_GROUP = 5;
const FRAME_MS = 20;
const MEASURE_MS = 2000;
/** A keyframe of several packets, then deltas of one or two: many ACKs from every subscriber. */
const SIZES = [10_000, 1500, 2500, 1000, 3000];

/** moq-loadgen and its one-line answers (its stdin/stdout protocol: native/loadgen.c). */
class Loadgen {
	readonly child: ChildProcess;
	readonly #lines: string[] = [];
	exited = false;

	constructor(args: string[]) {
		this.child = spawn(nativeGeneratorPath(), args, { stdio: ["pipe", "pipe", "inherit"] });
		this.child.on("exit", () => {
			this.exited = true;
		});
		createInterface({ input: this.child.stdout! }).on("line", (l) => this.#lines.push(l));
	}

	/** Sends `command` and returns the rest of the next answer starting with `word`. */
	async ask(command: string | null, word: string, ms = 30_000): Promise<string> {
		if (command !== null) this.child.stdin!.write(`${command}\n`);
		let rest = "";
		await until(
			() => {
				if (this.exited) throw new Error(`moq-loadgen exited while waiting for "${word}"`);
				const i = this.#lines.findIndex((l) => l === word || l.startsWith(`${word} `));
				if (i < 0) return false;
				rest = this.#lines.splice(0, i + 1)[i].slice(word.length + 1);
				return true;
			},
			ms,
			`moq-loadgen's "${word}"`,
		);
		return rest;
	}

	/** "stop" (it sends its CONNECTION_CLOSEs and exits), SIGKILL if it has not exited in 5 s. */
	async stop(): Promise<void> {
		if (this.exited) return;
		this.child.stdin!.write("stop\n");
		try {
			await until(() => this.exited, 5000, "moq-loadgen to exit");
		} catch {
			this.child.kill("SIGKILL");
		}
	}
}

/** Publishes FRAMES_PER_GROUP-frame groups, one frame every FRAME_MS, with the bench header loadgen reads. */
function publishLoop(track: PublishedTrack): () => void {
	const buffers = SIZES.map((n) => {
		const b = new Uint8Array(n);
		for (let i = HEADER_BYTES; i < n; i++) b[i] = i & 0xff;
		return b;
	});
	let tick = 0;
	let group = track.openGroup();
	let timer: NodeJS.Timeout | null = null;
	const next = (): void => {
		const index = tick % FRAMES_PER_GROUP;
		if (index === 0 && tick > 0) group = track.openGroup();
		writeHeader(buffers[index], nowMs(), group.seq, index, FRAMES_PER_GROUP);
		group.writeFrame(buffers[index]);
		if (index === FRAMES_PER_GROUP - 1) group.close();
		tick++;
		timer = setTimeout(next, FRAME_MS);
	};
	next();
	return () => {
		if (timer !== null) clearTimeout(timer);
	};
}

describe("engine reads: an ngtcp2 client's greased short-header packets are read by recvMany", {
	timeout: 60_000,
}, () => {
	const closers: (() => unknown)[] = [];
	after(async () => {
		for (const c of closers.reverse()) await c();
	});

	for (const on of [true, false])
		test(`engine_reads = ${on}: ${SUBSCRIBERS} moq-loadgen subscribers ${on ? "have their ACKs read by the engine" : "go through the JS intake"}`, async (t) => {
			if (selectEngine(undefined).name !== "ngtcp2") {
				t.skip("the quiche engine serves this pass: recvMany is ngtcp2's");
				return;
			}
			if (!nativeGeneratorAvailable()) {
				t.skip(`${nativeGeneratorPath()} is not built (native/build-ngtcp2.mjs builds it with ngtcp2 and GnuTLS)`);
				return;
			}
			const relay = await startTestRelay(`[server.quic]\nengine_reads = ${on}\n`);
			closers.push(() => relay.close());
			const { session: publisher, fingerprint } = await connectQuicSession(relay);
			closers.push(() => publisher.close());
			// moq-loadgen subscribes to broadcast "live", track "video".
			const stopPublishing = publishLoop(publisher.publish("live", { tracks: ["video"] }).track("video"));
			closers.push(stopPublishing);

			const loadgen = new Loadgen(["127.0.0.1", String(relay.quicPort), "/anon", fingerprint]);
			closers.push(() => loadgen.stop());
			await loadgen.ask(null, "ready");
			const [total, failed] = (await loadgen.ask(`add ${SUBSCRIBERS}`, "added")).split(" ").map(Number);
			assert.equal(failed, 0, "every subscriber connected and subscribed");
			assert.equal(total, SUBSCRIBERS);
			// Let the handshakes' last long-header packets (and the first group joins) settle first.
			await sleep(300);

			const stats = relay.node.quic.stats;
			await loadgen.ask("reset", "reset");
			const packetsIn0 = stats.packetsIn;
			const engineReads0 = stats.engineReads;
			await sleep(MEASURE_MS);
			const packetsIn = stats.packetsIn - packetsIn0;
			const engineReads = stats.engineReads - engineReads0;
			const report = JSON.parse(await loadgen.ask("report", "report")) as {
				subscribers: number;
				frames: number;
				groupsComplete: number;
				groupsLost: number;
				failures: number;
				packetsIn: number;
			};
			t.diagnostic(
				`relay ingress while measuring: ${packetsIn} datagrams, ${engineReads} read by the engine itself ` +
					`(${((100 * engineReads) / Math.max(1, packetsIn)).toFixed(1)} %)`,
			);
			t.diagnostic(
				`moq-loadgen: ${report.subscribers} subscribers, ${report.frames} frames, ${report.groupsComplete} groups complete, ` +
					`${report.groupsLost} lost, ${report.packetsIn} datagrams from the relay`,
			);
			assert.equal(report.subscribers, SUBSCRIBERS, "every subscriber still receiving");
			assert.ok(report.frames > 0, "frames received");
			assert.equal(report.groupsLost, 0, "no group lost");
			assert.equal(report.failures, 0);
			// Without engine reads of greased packets about half the subscribers' ACKs go the JS path.
			assert.ok(packetsIn > 100, `enough ingress to judge: ${packetsIn} datagrams`);
			if (on) assert.ok(engineReads >= packetsIn * 0.9, `${engineReads} of ${packetsIn} datagrams read by the engine`);
			else assert.equal(engineReads, 0, "[server.quic] engine_reads = false: every datagram through server.ts");
		});
});
