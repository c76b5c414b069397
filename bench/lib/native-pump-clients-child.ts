/**
 * Bench child process speaking the pump-clients protocol (pump-clients-child.ts) with the native
 * load generator in raw mode (`moq-loadgen --raw`): plain QUIC readers that acknowledge exactly as
 * the native subscribers do, so the bare pump and the relay it is compared with face the same
 * clients (the same ACKs to process per sent packet).
 * @module
 */

import { commonMessage, exitWith, killOnDisconnect, Loadgen } from "./native-generator.ts";
import type { FromPumpClients, ToPumpClients } from "./pump-clients-child.ts";

const send = (m: FromPumpClients) => process.send?.(m);

interface RawReport {
	subscribers: number;
	silent: number;
	bytes: number;
	packetsIn: number;
	cpuMicros: number;
	elapsedMs: number;
}

let loadgen: Loadgen | null = null;
let connections = 0;
let cpu0 = process.cpuUsage();

function onAnswer(word: string, rest: string): void {
	switch (word) {
		case "ready":
			loadgen?.send(`add ${connections}`);
			return;
		case "added":
			send({ type: "ready", connected: Number(rest.split(" ")[0]) });
			return;
		case "reset":
			cpu0 = process.cpuUsage();
			send({ type: "reset" });
			return;
		case "report": {
			const r = JSON.parse(rest) as RawReport;
			const own = process.cpuUsage(cpu0);
			send({
				type: "report",
				packetsIn: r.packetsIn,
				bytes: r.bytes,
				receiving: r.subscribers - r.silent,
				cpuMicros: r.cpuMicros + own.user + own.system,
				elapsedMs: r.elapsedMs,
			});
			return;
		}
		default:
			send({ type: "error", message: `moq-loadgen said "${word} ${rest}"` });
	}
}

process.on("message", (m: ToPumpClients) => {
	if (commonMessage(loadgen, m.type)) return;
	if (m.type === "init") {
		connections = m.connections;
		loadgen = new Loadgen(["--raw", "127.0.0.1", String(m.port), "-", m.fingerprint], onAnswer, exitWith(send));
	}
});
killOnDisconnect(() => loadgen);
