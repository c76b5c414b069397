/**
 * Bench child process: the receiving end of the bare pump (bench/pump.ts). Raw QUIC connections of
 * our client (src/quic/client.ts), each on a UDP socket of its own (the pump tells its peers apart
 * by port alone), each reading the stream the pump opens and counting what arrives; the sockets
 * count the datagrams they receive (the pump's egress).
 * @module
 */

import dgram from "node:dgram";
import { clientEndpointStats, connectQuic } from "../../src/quic/client.ts";
import type { QuicConnection } from "../../src/quic/connection.ts";

export type ToPumpClients =
	| { type: "init"; port: number; fingerprint: string; connections: number }
	| { type: "reset" }
	| { type: "report" }
	| { type: "stop" };

export type FromPumpClients =
	| { type: "ready"; connected: number }
	| { type: "reset" }
	| {
			type: "report";
			packetsIn: number;
			bytes: number;
			/** Connections that received stream data during the window. */
			receiving: number;
			cpuMicros: number;
			elapsedMs: number;
	  }
	| { type: "error"; message: string };

const send = (m: FromPumpClients) => process.send?.(m);

const sockets: dgram.Socket[] = [];
let packetsAtReset = 0;
let bytes = 0;
let cpu0 = process.cpuUsage();
let t0 = performance.now();
const connections: QuicConnection[] = [];
const bytesPer: number[] = [];
let bytesPerAtReset: number[] = [];
/** Datagrams received on every socket so far (the endpoints count them: see clientEndpointStats). */
const packetsReceived = (): number => sockets.reduce((n, s) => n + (clientEndpointStats(s)?.packetsIn ?? 0), 0);

async function init(m: Extract<ToPumpClients, { type: "init" }>): Promise<void> {
	for (let i = 0; i < m.connections; i++) {
		const socket = dgram.createSocket("udp4");
		sockets.push(socket);
		const conn = await connectQuic({
			host: "127.0.0.1",
			port: m.port,
			alpns: ["moq-lite-05"],
			certificateHashes: [m.fingerprint],
			socket,
		});
		const index = connections.length;
		bytesPer.push(0);
		conn.onStream = (stream) => {
			stream.onData = (chunk) => {
				bytes += chunk.length;
				bytesPer[index] += chunk.length;
			};
		};
		connections.push(conn);
	}
	send({ type: "ready", connected: connections.length });
}

process.on("message", (m: ToPumpClients) => {
	switch (m.type) {
		case "init":
			init(m).catch((err: Error) => send({ type: "error", message: err.message }));
			return;
		case "reset":
			packetsAtReset = packetsReceived();
			bytes = 0;
			bytesPerAtReset = [...bytesPer];
			cpu0 = process.cpuUsage();
			t0 = performance.now();
			send({ type: "reset" });
			return;
		case "report": {
			const cpu = process.cpuUsage(cpu0);
			send({
				type: "report",
				packetsIn: packetsReceived() - packetsAtReset,
				bytes,
				receiving: bytesPer.filter((b, i) => b > (bytesPerAtReset[i] ?? 0)).length,
				cpuMicros: cpu.user + cpu.system,
				elapsedMs: performance.now() - t0,
			});
			return;
		}
		case "stop":
			for (const c of connections) c.close(0, "bench done");
			setTimeout(() => process.exit(0), 50);
			return;
	}
});
process.on("disconnect", () => process.exit(0));
