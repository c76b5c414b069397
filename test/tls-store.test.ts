import assert from "node:assert/strict";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import * as tls from "node:tls";
import { generateCertificate } from "../src/tls/generate.ts";
import { CertificateError, loadCertificates } from "../src/tls/load.ts";
import { CertificateStore } from "../src/tls/store.ts";

const dir = mkdtempSync(join(tmpdir(), "moq-fanout-tls-store-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Write a fresh certificate and key under `name` and return their paths and fingerprint. */
function writePair(name: string, hostnames = ["localhost"]) {
	const generated = generateCertificate(hostnames);
	const cert = join(dir, `${name}.pem`);
	const key = join(dir, `${name}.key`);
	writeFileSync(cert, generated.certPem);
	writeFileSync(key, generated.keyPem);
	return { cert, key, generated };
}

function throwsNaming(fn: () => unknown, file: string, pattern: RegExp): void {
	assert.throws(fn, (err: unknown) => {
		assert.ok(err instanceof CertificateError, String(err));
		assert.equal(err.file, file);
		assert.ok(err.message.startsWith(`${file}: `), err.message);
		assert.match(err.message, pattern);
		return true;
	});
}

describe("tls: loadCertificates", () => {
	test("loads pairs by index with fingerprints and validity", () => {
		const a = writePair("a");
		const b = writePair("b", ["relay.example"]);
		const entries = loadCertificates([a.cert, b.cert], [a.key, b.key]);
		assert.equal(entries.length, 2);
		assert.equal(entries[0].fingerprint, a.generated.fingerprint);
		assert.equal(entries[1].fingerprint, b.generated.fingerprint);
		assert.deepEqual(entries[0].der, a.generated.der);
		assert.equal(entries[0].notAfter.getTime(), a.generated.notAfter.getTime());
		assert.deepEqual(entries[0].origin, { cert: a.cert, key: a.key });
		assert.doesNotThrow(() => tls.createSecureContext({ cert: entries[1].certPem, key: entries[1].keyPem }));
	});

	test("keeps the whole chain, leaf first, and fingerprints the leaf", () => {
		const leaf = writePair("leaf");
		const other = generateCertificate(["intermediate.example"]);
		const chain = join(dir, "chain.pem");
		writeFileSync(chain, `# a comment\n${leaf.generated.certPem}\n${other.certPem}`);
		const [entry] = loadCertificates([chain], [leaf.key]);
		assert.equal(entry.fingerprint, leaf.generated.fingerprint);
		assert.equal(entry.certPem.match(/BEGIN CERTIFICATE/g)?.length, 2);
		assert.equal(entry.certPem.includes("# a comment"), false);
	});

	test("accepts SEC1 'EC PRIVATE KEY' files and a key file that also holds the certificate", () => {
		const pair = writePair("sec1");
		const sec1 = createPrivateKey(pair.generated.keyPem).export({ type: "sec1", format: "pem" }) as string;
		const combined = join(dir, "combined.pem");
		writeFileSync(combined, pair.generated.certPem + sec1);
		const [entry] = loadCertificates([combined], [combined]);
		assert.equal(entry.fingerprint, pair.generated.fingerprint);
		assert.match(entry.keyPem, /BEGIN PRIVATE KEY/);
	});

	test("a key that belongs to another certificate is named", () => {
		const a = writePair("mismatch-a");
		const b = writePair("mismatch-b");
		throwsNaming(
			() => loadCertificates([a.cert], [b.key]),
			b.key,
			/does not match the certificate in .*mismatch-a\.pem/,
		);
	});

	test("unusable files are named", () => {
		const pair = writePair("good");
		const garbage = join(dir, "garbage.pem");
		writeFileSync(garbage, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
		const empty = join(dir, "empty.pem");
		writeFileSync(empty, "nothing here\n");
		const encrypted = join(dir, "encrypted.key");
		writeFileSync(
			encrypted,
			createPrivateKey(pair.generated.keyPem).export({
				type: "pkcs8",
				format: "pem",
				cipher: "aes-256-cbc",
				passphrase: "secret",
			}) as string,
		);
		throwsNaming(() => loadCertificates([garbage], [pair.key]), garbage, /not a valid X\.509 certificate/);
		throwsNaming(() => loadCertificates([empty], [pair.key]), empty, /no PEM CERTIFICATE block/);
		throwsNaming(() => loadCertificates([pair.cert], [empty]), empty, /no PEM PRIVATE KEY block/);
		throwsNaming(
			() => loadCertificates([pair.cert], [encrypted]),
			encrypted,
			/encrypted private keys are not supported/,
		);
		const missing = join(dir, "missing.pem");
		throwsNaming(() => loadCertificates([missing], [pair.key]), missing, /file not found/);
		assert.throws(() => loadCertificates([pair.cert], []), RangeError);
	});
});

describe("tls: CertificateStore", () => {
	test("holds configured files first, then the generated certificate", () => {
		const pair = writePair("store-files");
		const store = new CertificateStore({ cert: [pair.cert], key: [pair.key], generate: ["localhost", "127.0.0.1"] });
		assert.equal(store.entries.length, 2);
		assert.equal(store.fingerprint, pair.generated.fingerprint);
		assert.equal(store.cert, store.entries[0].certPem);
		assert.equal(store.key, store.entries[0].keyPem);
		assert.deepEqual(store.entries[1].origin, { generated: ["localhost", "127.0.0.1"] });
		assert.deepEqual(store.fingerprints, [pair.generated.fingerprint, store.entries[1].fingerprint]);
		assert.throws(() => new CertificateStore({ cert: [], key: [], generate: [] }), RangeError);
	});

	test("reload picks up replaced files and tells listeners", () => {
		const pair = writePair("rotate");
		const store = new CertificateStore({ cert: [pair.cert], key: [pair.key], generate: [] });
		const seen: string[] = [];
		store.onChange((changed) => seen.push(changed.fingerprint));

		assert.deepEqual(store.reload(), { ok: true, changed: false });
		assert.equal(store.generation, 0);

		const renewed = writePair("rotate");
		assert.deepEqual(store.reload(), { ok: true, changed: true });
		assert.equal(store.fingerprint, renewed.generated.fingerprint);
		assert.equal(store.generation, 1);
		assert.deepEqual(seen, [renewed.generated.fingerprint]);
	});

	test("a bad reload keeps the old certificate and reports the error", () => {
		const pair = writePair("bad-reload");
		const store = new CertificateStore({ cert: [pair.cert], key: [pair.key], generate: [] });
		let notified = false;
		store.onChange(() => (notified = true));

		// Half-written renewal: the new certificate with the old key.
		writeFileSync(pair.cert, generateCertificate(["localhost"]).certPem);
		const result = store.reload();
		assert.equal(result.ok, false);
		assert.equal(result.changed, false);
		assert.ok(result.error instanceof CertificateError);
		assert.match(result.error.message, /bad-reload\.key: private key does not match/);
		assert.equal(store.fingerprint, pair.generated.fingerprint);
		assert.equal(store.generation, 0);
		assert.equal(notified, false);

		rmSync(pair.cert);
		assert.match(store.reload().error?.message ?? "", /bad-reload\.pem: file not found/);
		assert.equal(store.fingerprint, pair.generated.fingerprint);
	});

	test("the generated certificate is kept while fresh and renewed in its last week", () => {
		const store = new CertificateStore({ cert: [], key: [], generate: ["localhost"] });
		const first = store.current;
		assert.deepEqual(store.reload(), { ok: true, changed: false });
		assert.equal(store.current, first);

		const nearExpiry = first.notAfter.getTime() - 2 * 86_400_000;
		assert.deepEqual(store.reload(nearExpiry), { ok: true, changed: true });
		assert.notEqual(store.fingerprint, first.fingerprint);
		const renewed = new X509Certificate(store.cert);
		assert.equal(Date.parse(renewed.validFrom), Math.floor(nearExpiry / 1000) * 1000 - 86_400_000);
	});

	test("a SIGHUP-style reload swaps what a live TLS server presents", { timeout: 5000 }, async () => {
		const pair = writePair("live");
		const store = new CertificateStore({ cert: [pair.cert], key: [pair.key], generate: [] });
		const server = tls.createServer({ cert: store.cert, key: store.key }, (socket) => socket.end());
		store.onChange((changed) => server.setSecureContext({ cert: changed.cert, key: changed.key }));
		await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
		const { port } = server.address() as AddressInfo;

		const peerFingerprint = () =>
			new Promise<string>((resolve, reject) => {
				const socket = tls.connect({ host: "127.0.0.1", port, servername: "localhost", rejectUnauthorized: false });
				socket.on("secureConnect", () => {
					resolve(socket.getPeerCertificate().fingerprint256.replaceAll(":", "").toLowerCase());
					socket.destroy();
				});
				socket.on("error", reject);
			});

		try {
			assert.equal(await peerFingerprint(), pair.generated.fingerprint);
			const renewed = writePair("live");
			assert.equal(store.reload().changed, true);
			assert.equal(await peerFingerprint(), renewed.generated.fingerprint);
		} finally {
			server.close();
		}
	});
});
