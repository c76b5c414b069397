/**
 * `npm run bench:micro`: the benny micro-benchmarks of hot functions — wire codecs, the cache ring,
 * path hashing, and (when present) raw QUIC egress, UDP egress paths (dgram / sendmmsg / GSO) and UDP
 * ingress paths (dgram / recvmmsg) — then
 * one summary table. `--quick` shortens every case; `--only codec,cache,hash,quic,udp,udp-ingress` picks suites.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { runCacheBench } from "./micro/cache.ts";
import { runCodecBench } from "./micro/codec.ts";
import { runHashBench } from "./micro/hash.ts";

interface Row {
	suite: string;
	name: string;
	value: string;
}

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const onlyArg = args.find((a) => a.startsWith("--only"));
const only = onlyArg
	? (onlyArg.includes("=") ? onlyArg.split("=")[1] : args[args.indexOf(onlyArg) + 1]).split(",")
	: null;
const want = (suite: string) => only === null || only.includes(suite);
const maxTime = quick ? 0.5 : 2;
const rows: Row[] = [];
const ops = (n: number) => `${Math.round(n).toLocaleString("en-US")} ops/s`;

if (want("codec")) {
	const summary = await runCodecBench({ maxTime });
	for (const r of summary.results) rows.push({ suite: "codec", name: r.name, value: ops(r.ops) });
}
if (want("cache")) {
	for (const r of await runCacheBench()) rows.push({ suite: "cache", name: r.name, value: ops(r.ops) });
}
if (want("hash")) {
	for (const r of await runHashBench({ maxTime })) rows.push({ suite: "hash", name: r.name, value: ops(r.ops) });
}
if (want("quic") && existsSync(join(import.meta.dirname, "micro", "quic.ts"))) {
	// The QUIC engineer's suite: bare egress of our QUIC stack (server CPU per packet).
	const quic = await import("./micro/quic.ts");
	const result = await quic.benchQuicEgress(quick ? { seconds: 2, runs: 1 } : {});
	const c = result.cpuPerPacketUs;
	rows.push({
		suite: "quic",
		name: `egress, ${result.options.connections} connections, server CPU per packet`,
		value: `${c.min.toFixed(1)} / ${c.median.toFixed(1)} / ${c.max.toFixed(1)} µs (min/med/max)`,
	});
}

if (want("udp")) {
	// UDP egress paths side by side: dgram.send vs the native addon's sendmmsg and GSO (docs/quic-performance.md).
	const udp = await import("./micro/udp.ts");
	const result = await udp.benchUdpEgress(quick ? { runs: 5, packets: 8192 } : {});
	for (const m of result.modes) {
		const c = m.usPerPacket;
		rows.push({
			suite: "udp",
			name: `${m.name}, sender CPU per packet`,
			value: `${c.min.toFixed(2)} / ${c.median.toFixed(2)} / ${c.max.toFixed(2)} µs (min/med/max, ${result.options.runs} runs)`,
		});
	}
	if (result.unavailable) rows.push({ suite: "udp", name: "native addon", value: result.unavailable });
}

if (want("udp-ingress")) {
	// UDP ingress side by side: dgram's 'message' per datagram vs recvmmsg batches (docs/quic-performance.md).
	const ingress = await import("./micro/udp-ingress.ts");
	const result = await ingress.benchUdpIngress(quick ? { runs: 5, datagrams: 8192 } : {});
	for (const m of result.modes) {
		const c = m.usPerDatagram;
		rows.push({
			suite: "udp-in",
			name: `${m.name}, receiver CPU per datagram`,
			value: `${c.min.toFixed(2)} / ${c.median.toFixed(2)} / ${c.max.toFixed(2)} µs (min/med/max, ${result.options.runs} runs)`,
		});
	}
	if (result.unavailable) rows.push({ suite: "udp-in", name: "recvmmsg", value: result.unavailable });
}

console.log("\nSummary");
const w = Math.max(...rows.map((r) => r.name.length));
for (const r of rows) console.log(`  ${r.suite.padEnd(6)} ${r.name.padEnd(w)}  ${r.value}`);
