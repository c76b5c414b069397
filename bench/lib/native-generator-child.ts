/**
 * Bench child process speaking the load-generator protocol (bench/lib/protocol.ts) for the native
 * generator (native-generator.ts): the same subscribers, latency histogram and counts as
 * generator-child.ts, at a fraction of its CPU per received packet. This process only relays
 * commands and turns the binary's latency buckets back into an HDR histogram; its own CPU is added
 * to the binary's, so the bench's "generator saturated" check sees all of it.
 * @module
 */

import * as hdr from "hdr-histogram-js";
import { commonMessage, exitWith, killOnDisconnect, Loadgen } from "./native-generator.ts";
import type { FromGenerator, GeneratorReport, ToGenerator } from "./protocol.ts";

const send = (m: FromGenerator) => process.send?.(m);

interface NativeReport extends Omit<GeneratorReport, "type" | "histogram" | "arrivalHistogram"> {
	/** [bucket value µs, count] pairs: publish → read, and publish → the kernel's receive time. */
	histogram: [number, number][];
	arrivalHistogram?: [number, number][];
}

/** The binary's buckets as an HDR histogram (compressed base64, µs). */
function encodeBuckets(buckets: [number, number][]): string {
	const histogram = hdr.build({
		bitBucketSize: 32,
		lowestDiscernibleValue: 1,
		highestTrackableValue: 120_000_000,
		numberOfSignificantValueDigits: 3,
	});
	for (const [value, count] of buckets) histogram.recordValueWithCount(Math.min(value, 120_000_000), count);
	return hdr.encodeIntoCompressedBase64(histogram);
}

let loadgen: Loadgen | null = null;
let cpu0 = process.cpuUsage();

function onAnswer(word: string, rest: string): void {
	switch (word) {
		case "ready":
			send({ type: "ready" });
			return;
		case "added": {
			const [total, failed] = rest.split(" ").map(Number);
			send({ type: "added", total, failed, ...(failed > 0 ? { error: "no SUBSCRIBE_OK or no connection" } : {}) });
			return;
		}
		case "reset":
			cpu0 = process.cpuUsage();
			send({ type: "reset" });
			return;
		case "report": {
			const { arrivalHistogram, ...r } = JSON.parse(rest) as NativeReport;
			const own = process.cpuUsage(cpu0);
			send({
				...r,
				type: "report",
				histogram: encodeBuckets(r.histogram),
				...(arrivalHistogram ? { arrivalHistogram: encodeBuckets(arrivalHistogram) } : {}),
				cpuMicros: r.cpuMicros + own.user + own.system,
			});
			return;
		}
		default:
			send({ type: "error", message: `moq-loadgen said "${word} ${rest}"` });
	}
}

process.on("message", (m: ToGenerator) => {
	if (commonMessage(loadgen, m.type)) return;
	if (m.type === "init") {
		const t = m.target;
		loadgen = new Loadgen([t.host, String(t.port), t.path, t.fingerprint], onAnswer, exitWith(send));
	} else if (m.type === "add") {
		loadgen?.send(`add ${m.count}`);
	}
});
killOnDisconnect(() => loadgen);
