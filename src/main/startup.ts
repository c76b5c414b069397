/**
 * Start-up checks on the main thread, before any worker starts, so that every config and file
 * problem ends the process with status 2 and one line naming the key and the file (bin/moq-fanout.ts),
 * never a worker's stack trace: the TLS files, the `[auth]` keys, and the ports.
 *
 * Ports: workers bind with SO_REUSEPORT, which lets a second process (a second moq-fanout started
 * by mistake) bind the same port and silently take half of the clients. Two checks refuse that:
 * - a lock file keyed by the UDP port (`$XDG_RUNTIME_DIR`, else the temp dir), holding the pid;
 *   a lock whose pid is gone (or is no longer a moq-fanout) is stale and taken over. It serialises
 *   two instances starting at the same moment, which a bind probe alone cannot (each probes before
 *   the other's workers have bound), and it names the other instance's pid.
 * - an exclusive bind probe (no SO_REUSEPORT) of the UDP port and each TCP listener, closed at once:
 *   the kernel refuses it while anyone holds the port, whatever user, container or lock directory
 *   that holder has, so a port held by another program (or by a moq-fanout whose lock we cannot
 *   see) is caught too; a moq-fanout there is recognised by its /health answer.
 * @module
 */

import dgram from "node:dgram";
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Authenticator } from "../auth/index.ts";
import type { ListenAddress, RelayConfig } from "../config/types.ts";
import { CertificateError } from "../tls/load.ts";
import { CertificateStore } from "../tls/store.ts";

/** A problem with the config or a file it names, found at start-up: exit 2 with `message` (one line). */
export class StartupError extends Error {
	constructor(message: string) {
		super(message.replace(/\s*\n\s*/g, " "));
		this.name = "StartupError";
	}
}

/** The certificates, or a StartupError naming `[server.tls] cert`/`key` and the file. */
export function loadCertificateStore(config: RelayConfig): CertificateStore {
	try {
		return new CertificateStore(config.tls);
	} catch (err) {
		if (err instanceof CertificateError) {
			const key = config.tls.key.includes(err.file) ? "key" : "cert";
			throw new StartupError(`${config.source}: [server.tls] ${key}: ${err.message}`);
		}
		throw new StartupError(`${config.source}: [server.tls]: ${(err as Error).message}`);
	}
}

/** Loads the `[auth]` keys once here as each worker will: a bad JWK fails now, naming the key and file. */
export async function checkAuth(config: RelayConfig): Promise<void> {
	try {
		await Authenticator.create(config.auth, config.source, { maxPathSegments: config.limits.maxPathSegments });
	} catch (err) {
		let message = (err as Error).message;
		if (config.auth.key !== null && looksLikePem(config.auth.key))
			message += " (this is a PEM file: [auth] key takes a JWK, e.g. from `moq-token generate`)";
		throw new StartupError(message);
	}
}

function looksLikePem(file: string): boolean {
	try {
		return readFileSync(file, "utf8").trimStart().startsWith("-----BEGIN");
	} catch {
		return false;
	}
}

/**
 * Claims the relay's ports: takes the lock file of the UDP port, then probes every port with an
 * exclusive bind. Throws StartupError when another moq-fanout or another program holds one. The
 * lock is released when the process exits. Port 0 (tests: an ephemeral port) is not checked.
 */
export async function claimPorts(config: RelayConfig): Promise<void> {
	const bind = config.server.bind;
	if (bind.port === 0) return;
	claimLock(config, bind);
	const tcp: { key: string; address: ListenAddress }[] = [];
	const http = config.web.http;
	if (http !== null && http.port !== 0) {
		const same = http.host === bind.host && http.port === bind.port;
		tcp.push({ key: same ? "[server] bind (TCP, for [web.http])" : "[web.http] listen", address: http });
	}
	if (config.web.https !== null && config.web.https.port !== 0)
		tcp.push({ key: "[web.https] listen", address: config.web.https });
	await probe(config, "[server] bind", "UDP", bind, () => probeUdp(bind));
	for (const { key, address } of tcp) await probe(config, key, "TCP", address, () => probeTcp(address));
}

async function probe(
	config: RelayConfig,
	key: string,
	proto: string,
	address: ListenAddress,
	bind: () => Promise<void>,
): Promise<void> {
	try {
		await bind();
	} catch (err) {
		const code = (err as NodeJS.ErrnoException).code ?? "";
		const where = `${proto} ${formatAddress(address)}`;
		if (code === "EADDRINUSE") {
			const other = await otherRelay(config);
			throw new StartupError(
				other
					? `${config.source}: ${key}: ${where} is held by another moq-fanout (its /health answers on TCP ${other}); stop it first`
					: `${config.source}: ${key}: ${where} is already in use by another program`,
			);
		}
		const why =
			code === "EACCES"
				? "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"
				: code === "EADDRNOTAVAIL"
					? "no such local address"
					: (err as Error).message;
		throw new StartupError(`${config.source}: ${key}: cannot bind ${where}: ${why}`);
	}
}

function probeUdp(address: ListenAddress): Promise<void> {
	return new Promise((resolve, reject) => {
		const socket = dgram.createSocket({ type: address.host.includes(":") ? "udp6" : "udp4", reuseAddr: false });
		socket.once("error", (err) => {
			socket.close();
			reject(err);
		});
		socket.bind({ address: address.host, port: address.port, exclusive: true }, () => {
			socket.close(() => resolve());
		});
	});
}

function probeTcp(address: ListenAddress): Promise<void> {
	return new Promise((resolve, reject) => {
		const server = net.createServer();
		server.once("error", reject);
		server.listen({ host: address.host, port: address.port, exclusive: true }, () => {
			server.close(() => resolve());
		});
	});
}

/** "host:port" of a moq-fanout answering /health on our HTTP listener's address, or null. */
async function otherRelay(config: RelayConfig): Promise<string | null> {
	const http = config.web.http;
	if (http === null) return null;
	const host = http.host === "::" || http.host === "0.0.0.0" ? "127.0.0.1" : http.host;
	const target = formatAddress({ host, port: http.port });
	try {
		const res = await fetch(`http://${target}/health`, { signal: AbortSignal.timeout(1000) });
		const body = (await res.json()) as { worker?: unknown };
		return typeof body.worker === "number" ? target : null;
	} catch {
		return null;
	}
}

function formatAddress(a: ListenAddress): string {
	return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** Where the lock of a UDP port lives. */
export function lockFile(port: number): string {
	return join(process.env.XDG_RUNTIME_DIR || tmpdir(), `moq-fanout-${port}.lock`);
}

function claimLock(config: RelayConfig, bind: ListenAddress): void {
	const file = lockFile(bind.port);
	for (let attempt = 0; attempt < 2; attempt++) {
		try {
			const fd = openSync(file, "wx", 0o644);
			writeSync(fd, `${process.pid}\n`);
			closeSync(fd);
			process.once("exit", () => releaseLock(file));
			return;
		} catch (err) {
			const code = (err as NodeJS.ErrnoException).code;
			// A directory we cannot write (read-only /tmp): the bind probe still guards the port.
			if (code !== "EEXIST") return;
		}
		const pid = readPid(file);
		if (pid !== null && pid !== process.pid && isMoqFanout(pid)) {
			throw new StartupError(
				`${config.source}: [server] bind: UDP ${formatAddress(bind)} is held by another moq-fanout (pid ${pid}, lock ${file}); stop it first`,
			);
		}
		// Stale: its process is gone (or the pid now belongs to something else).
		try {
			unlinkSync(file);
		} catch {
			// removed meanwhile, or not ours to remove: the next attempt tells
		}
	}
}

function releaseLock(file: string): void {
	try {
		if (readPid(file) === process.pid) unlinkSync(file);
	} catch {
		// already gone
	}
}

function readPid(file: string): number | null {
	try {
		const pid = Number.parseInt(readFileSync(file, "utf8").trim(), 10);
		return Number.isInteger(pid) && pid > 0 ? pid : null;
	} catch {
		return null;
	}
}

/** Whether `pid` is alive and (where /proc tells) a moq-fanout, not a reused pid. */
function isMoqFanout(pid: number): boolean {
	try {
		process.kill(pid, 0);
	} catch (err) {
		if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
	}
	try {
		return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("moq-fanout");
	} catch {
		return true;
	}
}
