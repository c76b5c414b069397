import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import * as tls from "node:tls";
import * as Der from "../src/tls/der.ts";
import { generateCertificate } from "../src/tls/generate.ts";
import { ipBytes } from "../src/tls/ip.ts";
import { fingerprint, pemBlocks } from "../src/tls/pem.ts";

const DAY_MS = 86_400_000;
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

/** Node prints fingerprints as "AB:CD:…"; ours is lowercase hex without separators. */
const normalise = (nodeFingerprint: string) => nodeFingerprint.replaceAll(":", "").toLowerCase();

function hasOpenssl(): boolean {
	try {
		execFileSync("openssl", ["version"], { stdio: "ignore" });
		return true;
	} catch {
		return false;
	}
}

describe("tls: generated certificate", () => {
	const now = new Date();
	const generated = generateCertificate(["localhost", "127.0.0.1", "::1", "relay.example"], { now });
	const x509 = new X509Certificate(generated.certPem);

	test("parses with crypto.X509Certificate and is ECDSA P-256", () => {
		assert.equal(x509.publicKey.asymmetricKeyType, "ec");
		assert.equal(x509.publicKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
		assert.equal(x509.ca, false);
		assert.deepEqual(x509.keyUsage, ["1.3.6.1.5.5.7.3.1"]);
	});

	test("validity is exactly 14 days, starting one day ago (Chromium serverCertificateHashes limit)", () => {
		const from = Date.parse(x509.validFrom);
		const to = Date.parse(x509.validTo);
		assert.equal(to - from, 14 * DAY_MS);
		assert.ok(to - from <= 14 * DAY_MS);
		const expectedFrom = Math.floor(now.getTime() / 1000) * 1000 - DAY_MS;
		assert.equal(from, expectedFrom);
		assert.equal(generated.notBefore.getTime(), from);
		assert.equal(generated.notAfter.getTime(), to);
	});

	test("SANs: IP literals as iPAddress, names as dNSName", () => {
		assert.equal(
			x509.subjectAltName,
			"DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:relay.example",
		);
		assert.equal(x509.checkHost("localhost"), "localhost");
		assert.equal(x509.checkHost("relay.example"), "relay.example");
		assert.equal(x509.checkIP("127.0.0.1"), "127.0.0.1");
		assert.equal(x509.checkIP("::1"), "::1");
		assert.equal(x509.checkHost("other.example"), undefined);
	});

	test("the self-signature verifies and the key matches", () => {
		assert.equal(x509.verify(x509.publicKey), true);
		assert.equal(x509.checkPrivateKey(createPrivateKey(generated.keyPem)), true);
	});

	test("fingerprint is the SHA-256 of the DER, as Node reports it", () => {
		assert.match(generated.fingerprint, /^[0-9a-f]{64}$/);
		assert.equal(generated.fingerprint, normalise(x509.fingerprint256));
		assert.equal(fingerprint(generated.der), generated.fingerprint);
		assert.equal(fingerprint(generated.certPem), generated.fingerprint);
		assert.deepEqual(new Uint8Array(x509.raw), generated.der);
	});

	test("each call makes a new key and serial", () => {
		const other = generateCertificate(["localhost"]);
		assert.notEqual(other.fingerprint, generated.fingerprint);
		assert.notEqual(new X509Certificate(other.certPem).serialNumber, x509.serialNumber);
	});

	test("shorter validity on request; longer than 14 days refused", () => {
		const week = new X509Certificate(generateCertificate(["localhost"], { days: 7 }).certPem);
		assert.equal(Date.parse(week.validTo) - Date.parse(week.validFrom), 7 * DAY_MS);
		assert.throws(() => generateCertificate(["localhost"], { days: 15 }), RangeError);
		assert.throws(() => generateCertificate(["localhost"], { days: 0 }), RangeError);
		assert.throws(() => generateCertificate([]), RangeError);
	});

	test("wildcards, IPv4-mapped IPv6 and international names", () => {
		const cert = new X509Certificate(
			generateCertificate(["*.example.com", "::ffff:192.0.2.1", "bücher.example"]).certPem,
		);
		assert.equal(
			cert.subjectAltName,
			"DNS:*.example.com, IP Address:0:0:0:0:0:FFFF:C000:201, DNS:xn--bcher-kva.example",
		);
	});

	test("openssl accepts it as a v3 certificate and as its own trust anchor", {
		skip: hasOpenssl() ? false : "openssl not on PATH",
	}, () => {
		const dir = mkdtempSync(join(tmpdir(), "moq-fanout-tls-"));
		try {
			const file = join(dir, "cert.pem");
			writeFileSync(file, generated.certPem);
			const text = execFileSync("openssl", ["x509", "-in", file, "-noout", "-text"], { encoding: "utf8" });
			assert.match(text, /Version: 3 \(0x2\)/);
			assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
			assert.match(text, /NIST CURVE: P-256|ASN1 OID: prime256v1/);
			assert.match(text, /DNS:localhost, IP Address:127\.0\.0\.1/);
			assert.match(text, /CA:FALSE/);
			const verified = execFileSync("openssl", ["verify", "-CAfile", file, file], { encoding: "utf8" });
			assert.match(verified, /: OK/);
		} finally {
			rmSync(dir, { recursive: true, force: true });
		}
	});
});

describe("tls: real handshake on loopback", () => {
	const generated = generateCertificate(["localhost", "127.0.0.1"]);
	const server = tls.createServer({ cert: generated.certPem, key: generated.keyPem }, (socket) => {
		socket.end("hello");
	});
	after(() => server.close());

	async function port(): Promise<number> {
		if (!server.listening) await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
		return (server.address() as AddressInfo).port;
	}

	/** Connect, read the greeting, and return the peer certificate's fingerprint. */
	async function handshake(options: tls.ConnectionOptions): Promise<{ fingerprint: string; data: string }> {
		const socket = tls.connect({ host: "127.0.0.1", port: await port(), ...options });
		return new Promise((resolve, reject) => {
			let data = "";
			socket.setEncoding("utf8");
			socket.on("data", (chunk) => (data += chunk));
			socket.on("error", reject);
			socket.on("end", () => resolve({ fingerprint: normalise(socket.getPeerCertificate().fingerprint256), data }));
		});
	}

	test("createSecureContext accepts the PEM pair", () => {
		assert.doesNotThrow(() => tls.createSecureContext({ cert: generated.certPem, key: generated.keyPem }));
	});

	test("a client trusting only this certificate verifies the name localhost", { timeout: 5000 }, async () => {
		const result = await handshake({ ca: generated.certPem, servername: "localhost" });
		assert.equal(result.data, "hello");
		assert.equal(result.fingerprint, generated.fingerprint);
	});

	test("the IP SAN verifies when connecting by address", { timeout: 5000 }, async () => {
		const result = await handshake({ ca: generated.certPem });
		assert.equal(result.fingerprint, generated.fingerprint);
	});

	test("pinning by fingerprint (what serverCertificateHashes does)", { timeout: 5000 }, async () => {
		const result = await handshake({
			servername: "localhost",
			rejectUnauthorized: false,
			checkServerIdentity: (_host, cert) =>
				normalise(cert.fingerprint256) === generated.fingerprint ? undefined : new Error("fingerprint mismatch"),
		});
		assert.equal(result.fingerprint, generated.fingerprint);
	});

	test("a name outside the SANs is refused", { timeout: 5000 }, async () => {
		await assert.rejects(handshake({ ca: generated.certPem, servername: "evil.example" }), /altnames|Hostname/i);
	});
});

describe("tls: DER encoder", () => {
	test("lengths: short form below 128, long form above", () => {
		assert.equal(hex(Der.tlv(0x04, new Uint8Array(127))).slice(0, 4), "047f");
		assert.equal(hex(Der.tlv(0x04, new Uint8Array(128))).slice(0, 6), "048180");
		assert.equal(hex(Der.tlv(0x04, new Uint8Array(256))).slice(0, 8), "04820100");
		assert.equal(hex(Der.tlv(0x04, new Uint8Array(65536))).slice(0, 10), "0483010000");
	});

	test("OIDs", () => {
		assert.equal(hex(Der.oid("1.2.840.10045.2.1")), "06072a8648ce3d0201");
		assert.equal(hex(Der.oid("1.2.840.10045.4.3.2")), "06082a8648ce3d040302");
		assert.equal(hex(Der.oid("2.5.29.17")), "0603551d11");
	});

	test("integers are minimal and positive", () => {
		assert.equal(hex(Der.smallInteger(0)), "020100");
		assert.equal(hex(Der.smallInteger(2)), "020102");
		assert.equal(hex(Der.smallInteger(128)), "02020080");
		assert.equal(hex(Der.unsignedInteger(new Uint8Array([0, 0, 0x7f]))), "02017f");
		assert.equal(hex(Der.unsignedInteger(new Uint8Array([0xff]))), "020200ff");
	});

	test("times: UTCTime before 2050, GeneralizedTime from 2050", () => {
		assert.equal(
			Buffer.from(Der.time(new Date("2026-03-04T05:06:07.890Z"))).toString("latin1"),
			"\x17\x0d260304050607Z",
		);
		assert.equal(Buffer.from(Der.time(new Date("2050-01-01T00:00:00Z"))).toString("latin1"), "\x18\x0f20500101000000Z");
	});

	test("booleans, bit strings, context tags", () => {
		assert.equal(hex(Der.boolean(true)), "0101ff");
		assert.equal(hex(Der.bitStringWithUnused(new Uint8Array([0x80]), 7)), "03020780");
		assert.equal(hex(Der.explicit(0, Der.smallInteger(2))), "a003020102");
		assert.equal(hex(Der.implicitPrimitive(7, new Uint8Array([127, 0, 0, 1]))), "87047f000001");
	});
});

describe("tls: helpers", () => {
	test("ipBytes", () => {
		assert.deepEqual(ipBytes("127.0.0.1"), new Uint8Array([127, 0, 0, 1]));
		assert.equal(hex(ipBytes("::1")!), "00000000000000000000000000000001");
		assert.equal(hex(ipBytes("::")!), "00000000000000000000000000000000");
		assert.equal(hex(ipBytes("2001:db8::8:800:200c:417a")!), "20010db80000000000080800200c417a");
		assert.equal(hex(ipBytes("fe80::")!), "fe800000000000000000000000000000");
		assert.equal(hex(ipBytes("::ffff:192.0.2.1")!), "00000000000000000000ffffc0000201");
		assert.equal(hex(ipBytes("1:2:3:4:5:6:7:8")!), "00010002000300040005000600070008");
		assert.equal(ipBytes("localhost"), null);
	});

	test("pemBlocks round-trips what toPem-based generation wrote", () => {
		const generated = generateCertificate(["localhost"]);
		const [der] = pemBlocks(generated.certPem, "CERTIFICATE");
		assert.deepEqual(der, generated.der);
		assert.throws(() => fingerprint("no pem here"), TypeError);
	});
});
