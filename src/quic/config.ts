/**
 * quiche Config construction. A Config costs ~10 ms to build (TLS context), so one is shared by
 * every connection of an endpoint; a certificate change builds a new one for new connections.
 */
import { loadQuiche, type QuicheConfig } from "./native.ts";

/** Transport limits for a relay (all optional; defaults in DEFAULT_QUIC_LIMITS). */
export interface QuicLimits {
	/** Concurrent connections accepted by one endpoint. */
	maxConnections: number;
	/** QUIC max_idle_timeout (ms). */
	idleTimeoutMs: number;
	/** PING after this long without sending (ms); 0 disables. */
	keepAliveMs: number;
	/** A connection must finish its handshake within this (ms). */
	handshakeTimeoutMs: number;
	/**
	 * Server side: a handshake whose client sent nothing for this long is dropped (ms; 0 = off).
	 * A live client answers our first flight within a round trip, or retransmits its Initial at its
	 * PTO (about 1 s, then 2 s); an Initial replayed from a spoofed address never sends again, and
	 * would otherwise hold its ~60 KB of TLS and recovery state for the whole handshake timeout.
	 */
	handshakeIdleTimeoutMs: number;
	/** initial_max_streams_bidi / _uni we grant the peer. */
	maxStreamsBidi: number;
	maxStreamsUni: number;
	/** initial_max_data (connection flow-control window). */
	maxData: number;
	/** initial_max_stream_data_* (per-stream window). */
	maxStreamData: number;
	/** Upper bounds for quiche's window auto-tuning. */
	maxConnectionWindow: number;
	maxStreamWindow: number;
	/**
	 * Stateless retry (address validation) before accepting a connection, when the server has no
	 * `[server.quic]` options (tests); with them, `retry` there decides.
	 */
	retry: boolean;
}

export const DEFAULT_QUIC_LIMITS: QuicLimits = {
	maxConnections: 10_000,
	idleTimeoutMs: 30_000,
	keepAliveMs: 5_000,
	handshakeTimeoutMs: 10_000,
	handshakeIdleTimeoutMs: 3_000,
	maxStreamsBidi: 1024,
	maxStreamsUni: 1024,
	// Video: a few MB in flight per connection / stream.
	maxData: 16 * 1024 * 1024,
	maxStreamData: 4 * 1024 * 1024,
	maxConnectionWindow: 24 * 1024 * 1024,
	maxStreamWindow: 16 * 1024 * 1024,
	retry: false,
};

export function resolveLimits(partial: Partial<QuicLimits> | undefined): QuicLimits {
	return { ...DEFAULT_QUIC_LIMITS, ...partial };
}

/** Signature algorithms BoringSSL supports (the binding needs the list spelled out). */
const SIGALGS = [
	"ecdsa_secp256r1_sha256",
	"ecdsa_secp384r1_sha384",
	"ecdsa_secp521r1_sha512",
	"ed25519",
	"rsa_pss_rsae_sha256",
	"rsa_pss_rsae_sha384",
	"rsa_pss_rsae_sha512",
	"rsa_pkcs1_sha256",
	"rsa_pkcs1_sha384",
	"rsa_pkcs1_sha512",
].join(":");

/** Largest UDP payload we send/accept (quiche's MAX_DATAGRAM_SIZE is 1350). */
const MAX_UDP_PAYLOAD = 1350;

function pemBytes(pem: string | Uint8Array): Uint8Array {
	return typeof pem === "string" ? new TextEncoder().encode(pem) : pem;
}

function applyTransport(config: QuicheConfig, alpns: string[], limits: QuicLimits): void {
	config.setApplicationProtos(alpns);
	// Chromium needs max_datagram_frame_size for WebTransport; harmless for raw QUIC.
	config.enableDgram(true, 1000, 1000);
	config.setMaxIdleTimeout(limits.idleTimeoutMs);
	config.setMaxRecvUdpPayloadSize(MAX_UDP_PAYLOAD);
	config.setMaxSendUdpPayloadSize(MAX_UDP_PAYLOAD);
	config.setInitialMaxData(limits.maxData);
	config.setInitialMaxStreamDataBidiLocal(limits.maxStreamData);
	config.setInitialMaxStreamDataBidiRemote(limits.maxStreamData);
	config.setInitialMaxStreamDataUni(limits.maxStreamData);
	config.setInitialMaxStreamsBidi(limits.maxStreamsBidi);
	config.setInitialMaxStreamsUni(limits.maxStreamsUni);
	config.setMaxConnectionWindow(limits.maxConnectionWindow);
	config.setMaxStreamWindow(limits.maxStreamWindow);
	config.setDisableActiveMigration(true);
	config.grease(true);
}

/** Server side: certificate chain + key (PEM), ALPNs in preference order. */
export function buildServerConfig(
	cert: string | Uint8Array,
	key: string | Uint8Array,
	alpns: string[],
	limits: QuicLimits,
): QuicheConfig {
	const quiche = loadQuiche();
	const config = quiche.Config.withBoringSslCtx(false, false, null, [pemBytes(key)], [pemBytes(cert)], SIGALGS);
	applyTransport(config, alpns, limits);
	return config;
}

/**
 * Client side. `verifyPeer` false when the caller pins certificate hashes (checked after the
 * handshake) or explicitly asks for an insecure connection; `ca` is a PEM bundle to trust.
 */
export function buildClientConfig(
	alpns: string[],
	verifyPeer: boolean,
	ca: string | Uint8Array | null,
	limits: QuicLimits,
): QuicheConfig {
	const quiche = loadQuiche();
	const config = quiche.Config.withBoringSslCtx(
		verifyPeer,
		false,
		ca === null ? null : pemBytes(ca),
		null,
		null,
		SIGALGS,
	);
	applyTransport(config, alpns, limits);
	return config;
}
