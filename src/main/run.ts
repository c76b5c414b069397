import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { CacheBudget } from "../cache/budget.ts";
import { Doorbell } from "../cache/doorbell.ts";
import type { RelayConfig } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import { WorkerPool } from "../pool/supervisor.ts";
import { createAdmissionBuffer, reclaimWorker } from "../transport/admission.ts";
import type { WorkerInit } from "../worker/entry.ts";
import { drainUri, type MainMessage } from "../worker/messages.ts";
import { checkAuth, claimPorts, loadCertificateStore } from "./startup.ts";

function packageVersion(): string {
	return (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string })
		.version;
}

/**
 * The main thread: validates config, certificates, keys and ports (a StartupError, exit 2, for any
 * of them: see startup.ts), starts the relay workers, supervises them, and serves nothing on the
 * data plane. SIGHUP reloads certificate files; SIGINT/SIGTERM drain (see `drain` below).
 */
export async function runRelay(config: RelayConfig, log: Logger): Promise<WorkerPool> {
	const certs = loadCertificateStore(config);
	await checkAuth(config);
	await claimPorts(config);
	const budget = CacheBudget.create(config.cache.totalBytes);
	const doorbell = Doorbell.createBuffer(config.workers.count);
	// Relay-wide limits (sessions, TCP connections, per-IP counts) shared by every worker.
	const admission = createAdmissionBuffer(config.workers.count);
	// QUIC Retry tokens one worker mints must validate on another (quic/retry.ts): one key per relay.
	const retryKey = randomBytes(32);
	// Our id in cluster hop chains: `[cluster] id` when set (stable across restarts), else random per
	// process, below 2^53 so JS peers can read it. Every worker uses the same one.
	const hopId = config.cluster?.id ?? 1 + Math.floor(Math.random() * 0xfffffffffff);
	const version = packageVersion();
	const init = (): WorkerInit => ({
		config,
		tls: { cert: certs.cert, key: certs.key, fingerprint: certs.fingerprint },
		budget: budget.buffer,
		doorbell,
		admission,
		retryKey,
		hopId,
		version,
	});
	const pool = await WorkerPool.start({
		count: config.workers.count,
		entry: new URL("../worker/entry.ts", import.meta.url),
		workerData: init,
		log,
		resourceLimits: workerHeapLimits(),
	});
	// A dead worker cannot release its sessions and connections: give them back before its
	// replacement starts, so the relay-wide counts stay exact across any number of restarts.
	pool.onWorkerExit((index) => reclaimWorker(admission, index));
	const bind = config.server.bind;
	const host = bind.host.includes(":") ? `[${bind.host}]` : bind.host;
	const http = config.web.http;
	log.info("moq-fanout listening", {
		quic: `${host}:${bind.port}/udp`,
		http: http ? `http://${http.host.includes(":") ? `[${http.host}]` : http.host}:${http.port}` : "off",
		workers: config.workers.count,
		fingerprint: certs.fingerprint,
		public: config.auth.public,
		config: config.source,
	});
	const onHup = () => {
		const res = certs.reload();
		if (!res.ok) {
			log.error("certificate reload failed; keeping the old ones", { error: res.error?.message });
			return;
		}
		log.info("certificates reloaded", { changed: res.changed, fingerprint: certs.fingerprint });
		if (!res.changed) return;
		const tls: MainMessage = { type: "tls", cert: certs.cert, key: certs.key, fingerprint: certs.fingerprint };
		pool.broadcast(tls);
	};
	// Graceful drain (SIGTERM/SIGINT): /health answers 503 "draining" at once (pool state), workers
	// refuse new sessions and send each session its protocol's GOAWAY, existing sessions are served
	// until [server] drain_timeout (or until none is left), then the pool closes and the process
	// exits 0. A second signal exits at once with status 1.
	let draining = false;
	const drain = (signal: string) => {
		if (draining) {
			log.warn("second signal while draining: exiting now", { signal });
			process.exit(1);
		}
		draining = true;
		const timeoutMs = config.server.drainTimeoutMs;
		const uri = drainUri(config);
		const t0 = performance.now();
		log.info("draining", { signal, drainTimeoutMs: timeoutMs, redirect: uri || null });
		pool.drain();
		pool.broadcast({ type: "drain", uri } satisfies MainMessage);
		let deadline: ReturnType<typeof setTimeout> | undefined;
		let idleCheck: ReturnType<typeof setInterval> | undefined;
		const finish = async (why: string) => {
			clearTimeout(deadline);
			clearInterval(idleCheck);
			log.info("drain over; closing", { why, ms: Math.round(performance.now() - t0) });
			await pool.close(5000);
			process.off("SIGHUP", onHup);
			process.exit(0);
		};
		if (timeoutMs <= 0) {
			void finish("drain_timeout is 0");
			return;
		}
		deadline = setTimeout(() => void finish("drain_timeout"), timeoutMs);
		// Nothing left to serve: end early. Workers publish their figures once a second (and right
		// after taking the drain message), so wait past one publication before trusting a zero.
		idleCheck = setInterval(() => {
			if (performance.now() - t0 < 1200) return;
			let open = 0;
			for (const f of pool.counters.readAll()) {
				open += f.sessionsQuic + f.sessionsWebTransport + f.sessionsWebSocket + f.quicHandshakes;
			}
			if (open === 0) void finish("no sessions left");
		}, 250);
	};
	process.on("SIGHUP", onHup);
	// A generated certificate is valid 14 days (the browser limit for pinned hashes): check twice a
	// day and renew it once less than a week is left (CertificateStore.reload does the renewal).
	if (config.tls.generate.length > 0) setInterval(onHup, 12 * 3600_000).unref();
	// Test hook (MOQ_FANOUT_DEBUG=1): "crash N" on stdin makes worker N throw, to exercise supervision.
	if (process.env.MOQ_FANOUT_DEBUG === "1") {
		const { createInterface } = await import("node:readline");
		createInterface({ input: process.stdin }).on("line", (line) => {
			const m = /^crash (\d+)$/.exec(line.trim());
			if (m) pool.post(Number(m[1]), { type: "crash" } satisfies MainMessage);
		});
	}
	process.on("SIGINT", () => drain("SIGINT"));
	process.on("SIGTERM", () => drain("SIGTERM"));
	return pool;
}

/**
 * Each worker's young generation is capped. V8 grows a busy isolate's semi-spaces to their
 * maximum (tens of MB each) and keeps them: with the relay's small, short-lived per-group objects
 * that only raised every worker's resident memory, round after round of broadcasts, without
 * making scavenges rarer in a way the fan-out path notices (docs/soak.md has the measurements).
 * MOQ_FANOUT_YOUNG_GENERATION_MB overrides it (0: V8's default) for measurements.
 */
function workerHeapLimits(): { maxYoungGenerationSizeMb?: number } {
	const override = process.env.MOQ_FANOUT_YOUNG_GENERATION_MB;
	const mb = override !== undefined && /^\d+$/.test(override) ? Number(override) : 16;
	return mb > 0 ? { maxYoungGenerationSizeMb: mb } : {};
}
