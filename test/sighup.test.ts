/**
 * Certificate renewal without a restart: the real binary (2 workers) serves certificate *files*
 * from `[server.tls] cert/key`; the files are replaced and SIGHUP sent. The QUIC sessions already
 * open keep working, every new connection presents the new certificate (pinning the new hash
 * succeeds, the old one fails), and /certificate.sha256 serves the new fingerprint.
 */
import assert from "node:assert/strict";
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { MoqClient } from "../src/client/index.ts";
import { connectQuic } from "../src/quic/client.ts";
import { type GeneratedCertificate, generateCertificate } from "../src/tls/generate.ts";
import { type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import "./support/quiet.ts";
import { until } from "./support/wait.ts";

const WORKERS = 2;
/** New connections to try: SO_REUSEPORT spreads them over the workers by source port. */
const PROBES = 8;

/** Replaces a file the way certbot-style tools do: write aside, then rename over. */
async function replaceFile(path: string, content: string): Promise<void> {
	await writeFile(`${path}.tmp`, content);
	await rename(`${path}.tmp`, path);
}

/** GET on a fresh TCP connection each time (no keep-alive), so successive calls can reach different workers. */
function getFresh(url: string): Promise<{ status: number; body: string }> {
	return new Promise((resolve, reject) => {
		http
			.get(url, { agent: false }, (res) => {
				let body = "";
				res.setEncoding("utf8");
				res.on("data", (d: string) => (body += d));
				res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
			})
			.on("error", reject);
	});
}

describe("SIGHUP reloads certificate files", { timeout: 60_000 }, () => {
	let dir: string;
	let relay: RelayProcess;
	let oldCert: GeneratedCertificate;
	let newCert: GeneratedCertificate;
	before(async () => {
		dir = await mkdtemp(join(tmpdir(), "moq-sighup-"));
		oldCert = generateCertificate(["localhost", "127.0.0.1"]);
		newCert = generateCertificate(["localhost", "127.0.0.1"]);
		await writeFile(join(dir, "cert.pem"), oldCert.certPem);
		await writeFile(join(dir, "key.pem"), oldCert.keyPem);
		const config = join(dir, "relay.toml");
		await writeFile(
			config,
			`[server.tls]\ncert = [${JSON.stringify(join(dir, "cert.pem"))}]\nkey = [${JSON.stringify(join(dir, "key.pem"))}]\n` +
				`[auth]\npublic = "anon"\n[workers]\ncount = ${WORKERS}\n`,
		);
		relay = await startRelayProcess(["--config", config, "--log-level", "info"]);
	});
	after(async () => {
		await relay?.stop();
		await rm(dir, { recursive: true, force: true });
	});

	const quic = (fingerprint: string, alpns = ["moq-lite-05"]) =>
		connectQuic({ host: "127.0.0.1", port: relay.port, alpns, certificateHashes: [fingerprint], timeoutMs: 5000 });

	test("open sessions survive, new connections get the new certificate, the fingerprint route follows", async () => {
		assert.notEqual(oldCert.fingerprint, newCert.fingerprint);
		for (let i = 0; i < PROBES; i++) {
			assert.equal((await getFresh(`${relay.base}/certificate.sha256`)).body, oldCert.fingerprint);
		}

		// A publisher and a viewer, pinned to the old certificate, exchanging a frame.
		const pub = await MoqClient.connect(await quic(oldCert.fingerprint), { path: "/anon" });
		const viewer = await MoqClient.connect(await quic(oldCert.fingerprint), { path: "/anon" });
		const track = pub.publish("renewal", { tracks: ["v"] }).track("v");
		// The two sessions may sit on different workers: wait for the announcement to reach the viewer's.
		const announced = viewer.announced("");
		await until(() => announced.active.has("renewal"), 10_000, "the announcement");
		const got: number[] = [];
		viewer.subscribe("renewal", "v", {}, { onFrame: (_s, _i, p) => got.push(p[0]) });
		await until(() => track.subscribers === 1, 10_000, "the relay's upstream subscription");
		track.writeGroup([Uint8Array.of(1, 1, 1)]);
		await until(() => got.length === 1, 10_000, "the first frame");

		// Renew: new files, then SIGHUP. Each worker logs once it swapped its TLS context.
		await replaceFile(join(dir, "cert.pem"), newCert.certPem);
		await replaceFile(join(dir, "key.pem"), newCert.keyPem);
		const logged = () => relay.stderr.join("").split("certificate replaced").length - 1;
		const before = logged();
		relay.child.kill("SIGHUP");
		await until(() => logged() - before === WORKERS, 10_000, `all ${WORKERS} workers to replace the certificate`);
		assert.match(relay.stderr.join(""), /certificates reloaded/);

		// The open sessions carry on: the same subscription gets the next group.
		track.writeGroup([Uint8Array.of(2, 2, 2)]);
		await until(() => got.length === 2, 10_000, "a frame after the reload");
		assert.deepEqual(got, [1, 2]);
		assert.equal(pub.closed || viewer.closed, false);

		const replaced = relay.stderr
			.join("")
			.split("\n")
			.filter((l) => l.includes("certificate replaced"));
		assert.ok(
			replaced.slice(-WORKERS).every((l) => l.includes(newCert.fingerprint)),
			replaced.join("\n"),
		);

		// New connections, on every worker (the server's connection IDs name their worker): the new
		// hash is accepted, the old one refused.
		const workersSeen = new Set<number>();
		for (let i = 0; i < 40 && (i < PROBES || workersSeen.size < WORKERS); i++) {
			const fresh = await quic(newCert.fingerprint);
			assert.equal(fresh.protocol, "moq-lite-05");
			workersSeen.add(fresh.native.destinationId()[0]);
			fresh.close(0, "probe");
			await assert.rejects(quic(oldCert.fingerprint), /matches none of the pinned hashes/);
		}
		assert.equal(workersSeen.size, WORKERS, "probes reached every worker");
		// WebTransport's ALPN (h3) is served with the same new certificate.
		const h3 = await quic(newCert.fingerprint, ["h3"]);
		assert.equal(h3.protocol, "h3");
		h3.close(0, "probe");
		for (let i = 0; i < PROBES; i++) {
			const res = await getFresh(`${relay.base}/certificate.sha256`);
			assert.equal(res.status, 200);
			assert.equal(res.body, newCert.fingerprint);
		}
		assert.equal(relay.child.exitCode, null, "the relay is still running");
		pub.close();
		viewer.close();
	});

	test("a bad renewal (key not matching the certificate) keeps the current certificate", async () => {
		const other = generateCertificate(["localhost"]);
		await replaceFile(join(dir, "key.pem"), other.keyPem);
		const failures = () => relay.stderr.join("").split("certificate reload failed").length - 1;
		const before = failures();
		relay.child.kill("SIGHUP");
		await until(() => failures() === before + 1, 10_000, "the reload to be refused");
		const fresh = await quic(newCert.fingerprint);
		fresh.close(0, "probe");
		assert.equal((await getFresh(`${relay.base}/certificate.sha256`)).body, newCert.fingerprint);
	});
});
