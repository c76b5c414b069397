import { MoqClient } from "../../src/client/index.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { RelayConfig } from "../../src/config/types.ts";
import { createLogger, silentLogger } from "../../src/log/logger.ts";
import { connectQuic } from "../../src/quic/client.ts";
import { generateCertificate } from "../../src/tls/generate.ts";
import { type RelayNode, startRelayNode } from "../../src/worker/relay-node.ts";
import "./quiet.ts";

export interface TestRelay {
	node: RelayNode;
	config: RelayConfig;
	url(path?: string): URL;
	/** The UDP port (QUIC / WebTransport); the TCP port has the same number. */
	quicPort: number;
	/** The relay's certificate (PEM), for clients that verify TLS with it as the CA. */
	certPem: string;
	close(): Promise<void>;
}

/** Starts an in-process relay on ephemeral loopback ports with the given extra TOML. */
export async function startTestRelay(extraToml = ""): Promise<TestRelay> {
	const toml = `
[server]
bind = "127.0.0.1:0"
[server.tls]
generate = ["localhost", "127.0.0.1"]
[auth]
public = "anon"
${extraToml}
`;
	const config = parseConfig(toml, "test.toml", { baseDir: process.cwd() });
	const cert = generateCertificate(["localhost", "127.0.0.1"]);
	const log = process.env.MOQ_TEST_LOG ? createLogger(process.env.MOQ_TEST_LOG as never) : silentLogger;
	const node = await startRelayNode({
		config,
		log,
		fingerprint: () => cert.fingerprint,
		tls: { cert: cert.certPem, key: cert.keyPem },
		port: 0,
	});
	return {
		node,
		config,
		url: (path = "anon") => new URL(`http://127.0.0.1:${node.httpPort}/${path}`),
		quicPort: node.quicPort,
		certPem: cert.certPem,
		close: () => node.close(),
	};
}

/**
 * A moq-lite-05 session over raw QUIC at `path`, its certificate pinned by the hash the relay serves
 * at /certificate.sha256 (returned too, for the test's other clients).
 */
export async function connectQuicSession(
	relay: TestRelay,
	path = "/anon",
): Promise<{ session: MoqClient; fingerprint: string }> {
	const fingerprint = (await (await fetch(new URL("/certificate.sha256", relay.url()))).text()).trim();
	const session = await MoqClient.connect(
		await connectQuic({
			host: "127.0.0.1",
			port: relay.quicPort,
			alpns: ["moq-lite-05"],
			certificateHashes: [fingerprint],
		}),
		{ path },
	);
	return { session, fingerprint };
}

/** Kept for the tests that import it from here (auth-relay.test.ts); it is support/wait.ts's. */
export { until } from "./wait.ts";
