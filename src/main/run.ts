import type { RelayConfig } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import { CertificateStore } from "../tls/store.ts";
import { startRelayNode } from "../worker/relay-node.ts";

/** Runs the relay until SIGINT/SIGTERM; SIGHUP reloads certificate files. */
export async function runRelay(config: RelayConfig, log: Logger): Promise<void> {
	const certs = new CertificateStore(config.tls);
	const node = await startRelayNode({
		config,
		log,
		fingerprint: () => certs.fingerprint,
		tls: { cert: certs.cert, key: certs.key },
	});
	const http = config.web.http;
	log.info("moq-fanout listening", {
		quic: `${config.server.bind.host}:${config.server.bind.port}/udp`,
		http: http ? `http://${http.host.includes(":") ? `[${http.host}]` : http.host}:${node.httpPort}` : "off",
		fingerprint: certs.fingerprint,
		public: config.auth.public,
		config: config.source,
	});
	process.on("SIGHUP", () => {
		const res = certs.reload();
		if (res.ok) log.info("certificates reloaded", { changed: res.changed, fingerprint: certs.fingerprint });
		else log.error("certificate reload failed; keeping the old ones", { error: res.error?.message });
	});
	let stopping = false;
	const stop = async (signal: string) => {
		if (stopping) return;
		stopping = true;
		log.info("shutting down", { signal });
		await node.close();
		process.exit(0);
	};
	process.on("SIGINT", () => void stop("SIGINT"));
	process.on("SIGTERM", () => void stop("SIGTERM"));
}
