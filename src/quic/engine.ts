/**
 * The server-side QUIC engine: quiche's napi binding (native.ts) or the C engine on the system's
 * ngtcp2 + GnuTLS (native/ngtcp2.c, built at install by native/build-ngtcp2.mjs when the libraries
 * are present). Both offer the same Connection contract (the subset of quiche's napi Connection that
 * connection.ts drives), so the rest of the relay runs unchanged on either.
 *
 * `[server.quic] engine = "auto" | "ngtcp2" | "quiche"` (MOQ_SERVER_QUIC_ENGINE, which also reaches
 * servers started without a relay config, e.g. tests). "auto": ngtcp2 when its addon loads, else
 * quiche (logged once). Clients (client.ts, cluster links) stay on quiche.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import type { QuicEngineChoice } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import { buildServerConfig, type QuicLimits } from "./config.ts";
import { bindingName, loadQuiche, type QuicheConfig, type QuicheConnection, type QuicheHostPort } from "./native.ts";
import type { WriteSharedNative } from "./shared-writer.ts";

/** The engine's ABI version this code expects (native/ngtcp2.c ABI_VERSION). */
export const NGTCP2_ABI_VERSION = 2;

/** The Debian packages that let the install build the ngtcp2 engine. */
export const NGTCP2_PACKAGES = "libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev pkg-config";

/** What server.ts needs of an engine: quiche's module-level functions and Connection.accept. */
export interface ServerEngine {
	readonly name: "quiche" | "ngtcp2";
	/** The QUIC and TLS libraries under it, with their versions where known (logged at start). */
	readonly library: string;
	versionIsSupported(version: number): boolean;
	negotiateVersion(scid: Uint8Array, dcid: Uint8Array, out: Uint8Array): number;
	retry(
		scid: Uint8Array,
		dcid: Uint8Array,
		newScid: Uint8Array,
		token: Uint8Array,
		version: number,
		out: Uint8Array,
	): number;
	accept(
		scid: Uint8Array,
		odcid: Uint8Array | null,
		local: QuicheHostPort,
		remote: QuicheHostPort,
		config: unknown,
	): QuicheConnection;
	/** One frame to many streams in one call (shared-writer.ts); null when the engine has none (quiche). */
	readonly writeShared: WriteSharedNative | null;
	/** Reads established connections' packets of a receive batch itself (server.ts); null on quiche. */
	readonly recvMany: RecvManyNative | null;
	/** This thread's send-buffer counters; null when the engine keeps none (quiche). */
	readonly sendBufferStats: (() => SendBufferStats) | null;
	/** Connection IDs the engine will issue for `conn` beyond `scid` (the server routes them too). */
	extraScids(conn: QuicheConnection): Uint8Array[];
	buildConfig(cert: string | Uint8Array, key: string | Uint8Array, alpns: string[], limits: QuicLimits): unknown;
}

/** The addon's exports (native/ngtcp2.c). */
export interface Ngtcp2Native {
	abiVersion: number;
	ngtcp2Version: string;
	gnutlsVersion: string;
	Config: new (cert: Uint8Array, key: Uint8Array, alpns: string[], limits: Record<string, number>) => object;
	Connection: {
		accept(
			scid: Uint8Array,
			odcid: Uint8Array | null,
			local: QuicheHostPort,
			remote: QuicheHostPort,
			config: object,
		): QuicheConnection & Ngtcp2ConnectionExtras;
	};
	versionIsSupported(version: number): boolean;
	negotiateVersion(scid: Uint8Array, dcid: Uint8Array, out: Uint8Array): number;
	retry(
		scid: Uint8Array,
		dcid: Uint8Array,
		newScid: Uint8Array,
		token: Uint8Array,
		version: number,
		out: Uint8Array,
	): number;
	writeShared: WriteSharedNative;
	sendBufferStats(): SendBufferStats;
	recvMany: RecvManyNative;
}

/**
 * native/ngtcp2.c recvMany: reads a recvmmsg batch's short-header packets for connections that
 * enabled it; out[i] = slot * 2 + (1 when refused), or -1 for a datagram left to the caller.
 */
export type RecvManyNative = (
	buffer: Uint8Array,
	slotSize: number,
	meta: Int32Array,
	count: number,
	out: Int32Array,
) => number;

/** The ngtcp2 engine's send buffers on this thread (native/ngtcp2.c send_copied / send_held). */
export interface SendBufferStats {
	/** Bytes that writes copied into the engine (a fan-out write copies a frame once for all its streams). */
	copiedBytes: number;
	/** Stream bytes the engine holds until acknowledged (the memory of its send buffers). */
	heldBytes: number;
}

/** Methods the ngtcp2 Connection has beyond quiche's. */
export interface Ngtcp2ConnectionExtras {
	extraScids(): Uint8Array[];
	/** recvMany may read this connection's short-header packets from now on (once the app saw it established). */
	enableFastRecv(): boolean;
	/**
	 * Builds up to `max` packets into `buf`, their lengths into `sizes`; returns the count. Without a
	 * `stride` they lie back to back; with one (≥ 1350), packet k starts at k × stride.
	 */
	sendBatch(buf: Uint8Array, sizes: Uint16Array, max: number, stride?: number): number;
}

const require = createRequire(import.meta.url);
/** The package root: src/quic/ and dist/quic/ are both two levels below it. */
const PACKAGE_ROOT = join(import.meta.dirname, "..", "..");

/** Where native/build-ngtcp2.mjs writes the addon (`sanitized`: the ASan/UBSan build for tests). */
export function ngtcp2Path(sanitized = false): string {
	return join(PACKAGE_ROOT, "native", "build", sanitized ? "ngtcp2-sanitized.node" : "ngtcp2.node");
}

let loaded: Ngtcp2Native | null | undefined;
let unavailableReason = "";

/** Loads the addon at `path`; throws when it fails to load or is another build than this code expects. */
export function loadNgtcp2From(path: string): Ngtcp2Native {
	const addon = require(path) as Ngtcp2Native;
	if (addon.abiVersion !== NGTCP2_ABI_VERSION) {
		throw new Error(
			`${path} has ABI version ${addon.abiVersion}, this code needs ${NGTCP2_ABI_VERSION}: rebuild it (node native/build-ngtcp2.mjs)`,
		);
	}
	return addon;
}

/**
 * This thread's ngtcp2 engine, or null when it is not built or fails to load. MOQ_NGTCP2_ADDON
 * names another build to load (tests point it at the sanitized one).
 */
export function loadNgtcp2(): Ngtcp2Native | null {
	if (loaded !== undefined) return loaded;
	loaded = null;
	const path = process.env.MOQ_NGTCP2_ADDON || ngtcp2Path();
	if (!existsSync(path)) {
		unavailableReason = `${path} is missing (install ${NGTCP2_PACKAGES}, then run: node native/build-ngtcp2.mjs)`;
		return null;
	}
	try {
		loaded = loadNgtcp2From(path);
	} catch (err) {
		unavailableReason = `${path} failed to load: ${(err as Error).message}`;
	}
	return loaded;
}

/** Why `loadNgtcp2()` returned null ("" when it did not). */
export function ngtcp2Unavailable(): string {
	loadNgtcp2();
	return unavailableReason;
}

function pemBytes(pem: string | Uint8Array): Uint8Array {
	return typeof pem === "string" ? new TextEncoder().encode(pem) : pem;
}

function quicheEngine(): ServerEngine {
	const quiche = loadQuiche();
	return {
		name: "quiche",
		library: `quiche (napi, ${bindingName()})`,
		versionIsSupported: (version) => quiche.versionIsSupported(version),
		negotiateVersion: (scid, dcid, out) => quiche.negotiateVersion(scid, dcid, out),
		retry: (scid, dcid, newScid, token, version, out) => quiche.retry(scid, dcid, newScid, token, version, out),
		accept: (scid, odcid, local, remote, config) =>
			quiche.Connection.accept(scid, odcid, local, remote, config as QuicheConfig),
		writeShared: null,
		recvMany: null,
		sendBufferStats: null,
		extraScids: () => [],
		buildConfig: (cert, key, alpns, limits) => buildServerConfig(cert, key, alpns, limits),
	};
}

function ngtcp2Engine(addon: Ngtcp2Native): ServerEngine {
	return {
		name: "ngtcp2",
		library: `libngtcp2 ${addon.ngtcp2Version}, GnuTLS ${addon.gnutlsVersion}`,
		versionIsSupported: (version) => addon.versionIsSupported(version),
		negotiateVersion: (scid, dcid, out) => addon.negotiateVersion(scid, dcid, out),
		retry: (scid, dcid, newScid, token, version, out) => addon.retry(scid, dcid, newScid, token, version, out),
		accept: (scid, odcid, local, remote, config) =>
			addon.Connection.accept(scid, odcid, local, remote, config as object),
		writeShared: addon.writeShared,
		recvMany: addon.recvMany,
		sendBufferStats: addon.sendBufferStats,
		extraScids: (conn) => (conn as unknown as Ngtcp2ConnectionExtras).extraScids(),
		buildConfig: (cert, key, alpns, limits) =>
			new addon.Config(pemBytes(cert), pemBytes(key), alpns, {
				idleTimeoutMs: limits.idleTimeoutMs,
				keepAliveMs: limits.keepAliveMs,
				handshakeTimeoutMs: limits.handshakeTimeoutMs,
				maxData: limits.maxData,
				maxStreamData: limits.maxStreamData,
				maxStreamsBidi: limits.maxStreamsBidi,
				maxStreamsUni: limits.maxStreamsUni,
				maxConnectionWindow: limits.maxConnectionWindow,
				maxStreamWindow: limits.maxStreamWindow,
			}),
	};
}

const ENGINES: readonly QuicEngineChoice[] = ["auto", "ngtcp2", "quiche"];

/**
 * The configured choice: `[server.quic] engine` when it names an engine; for "auto" (the default) or
 * none, MOQ_SERVER_QUIC_ENGINE decides (it reaches servers whose config did not come through
 * src/config's environment layer: in-process test relays, QuicServer.listen), else "auto".
 */
export function engineChoice(configured: QuicEngineChoice | undefined): QuicEngineChoice {
	if (configured !== undefined && configured !== "auto") return configured;
	const env = process.env.MOQ_SERVER_QUIC_ENGINE?.trim();
	if (env === undefined || env === "") return "auto";
	if (!(ENGINES as readonly string[]).includes(env)) {
		throw new RangeError(`MOQ_SERVER_QUIC_ENGINE must be one of ${ENGINES.join(", ")}, got "${env}"`);
	}
	return env as QuicEngineChoice;
}

/**
 * Whether "auto" prefers the ngtcp2 engine when its addon loaded: yes. It passes every QUIC and
 * WebTransport suite (npm test runs them on both engines), costs about 0.6 × quiche's CPU per egress
 * packet, and frees a peer's finished streams (0.12 itself never does; native/ngtcp2.c closes them,
 * docs/quic-performance.md). Without the addon (no libngtcp2 0.12 at install), quiche serves.
 */
const AUTO_PREFERS_NGTCP2 = true;

let loggedFallback = false;

/**
 * The engine "auto" picks in this thread: ngtcp2 when preferred and its addon loads, else quiche
 * (scripts/test.ts runs the QUIC suites a second time on the other one).
 */
export function autoEngineName(): ServerEngine["name"] {
	return AUTO_PREFERS_NGTCP2 && loadNgtcp2() !== null ? "ngtcp2" : "quiche";
}

/**
 * The engine for a server. "ngtcp2" throws when the addon is missing; "auto" falls back to quiche
 * and says once per thread (worker 0 only, every worker loads the same file) which packages enable it.
 */
export function selectEngine(configured: QuicEngineChoice | undefined, log?: Logger, workerIndex = 0): ServerEngine {
	const engine = pickEngine(configured, log, workerIndex);
	// Once per thread that logs (worker 0): which library serves QUIC, 0.12 or 1.x for ngtcp2.
	if (!loggedEngine && workerIndex === 0 && log !== undefined) {
		loggedEngine = true;
		log.info(`quic: ${engine.name} engine (${engine.library})`);
	}
	return engine;
}

let loggedEngine = false;

function pickEngine(
	configured: QuicEngineChoice | undefined,
	log: Logger | undefined,
	workerIndex: number,
): ServerEngine {
	const choice = engineChoice(configured);
	if (choice === "quiche") return quicheEngine();
	if (choice === "ngtcp2") {
		const addon = loadNgtcp2();
		if (addon === null) throw new Error(`[server.quic] engine = "ngtcp2", but ${ngtcp2Unavailable()}`);
		return ngtcp2Engine(addon);
	}
	if (AUTO_PREFERS_NGTCP2) {
		const addon = loadNgtcp2();
		if (addon !== null) return ngtcp2Engine(addon);
		if (!loggedFallback && workerIndex === 0) {
			loggedFallback = true;
			log?.info(`quic: using the quiche engine; the ngtcp2 engine needs ${NGTCP2_PACKAGES} at install`, {
				reason: ngtcp2Unavailable(),
			});
		}
	}
	return quicheEngine();
}
