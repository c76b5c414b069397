/**
 * Reading certificate chains and private keys from PEM files, checked before use: each file
 * parses, and each key belongs to the certificate it is paired with.
 * @module
 */

import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { fingerprint, pemBlocks, toPem } from "./pem.ts";

/** One certificate chain with its key, ready for a TLS context. */
export interface CertificateEntry {
	/** PEM certificate chain, leaf first (only the CERTIFICATE blocks of the file). */
	certPem: string;
	/** PEM PKCS #8 private key. */
	keyPem: string;
	/** DER of the leaf certificate. */
	der: Uint8Array;
	/** Lowercase hex SHA-256 of the leaf's DER. */
	fingerprint: string;
	notBefore: Date;
	notAfter: Date;
	/** Where it came from: the files, or the hostnames it was generated for. */
	origin: { cert: string; key: string } | { generated: string[] };
}

/** A certificate or key file that cannot be used; the message names the file. */
export class CertificateError extends Error {
	/** The file at fault. */
	readonly file: string;

	constructor(file: string, message: string) {
		super(`${file}: ${message}`);
		this.name = "CertificateError";
		this.file = file;
	}
}

/** Load cert/key pairs (paired by index) from PEM files. Throws CertificateError. */
export function loadCertificates(certFiles: string[], keyFiles: string[]): CertificateEntry[] {
	if (certFiles.length !== keyFiles.length) {
		throw new RangeError(
			`${certFiles.length} certificate file(s) but ${keyFiles.length} key file(s); they pair by index`,
		);
	}
	return certFiles.map((certFile, i) => loadPair(certFile, keyFiles[i]));
}

function loadPair(certFile: string, keyFile: string): CertificateEntry {
	const chain = pemBlocks(readText(certFile), "CERTIFICATE");
	if (chain.length === 0) throw new CertificateError(certFile, "no PEM CERTIFICATE block found");
	let leaf: X509Certificate;
	try {
		leaf = new X509Certificate(chain[0]);
		for (const intermediate of chain.slice(1)) new X509Certificate(intermediate);
	} catch (err) {
		throw new CertificateError(certFile, `not a valid X.509 certificate: ${(err as Error).message}`);
	}

	const key = readKey(keyFile);
	if (!leaf.checkPrivateKey(key)) {
		throw new CertificateError(keyFile, `private key does not match the certificate in ${certFile}`);
	}
	return {
		certPem: chain.map((der) => toPem(der, "CERTIFICATE")).join(""),
		keyPem: key.export({ type: "pkcs8", format: "pem" }) as string,
		der: chain[0],
		fingerprint: fingerprint(chain[0]),
		notBefore: new Date(leaf.validFrom),
		notAfter: new Date(leaf.validTo),
		origin: { cert: certFile, key: keyFile },
	};
}

const KEY_BLOCK = /-----BEGIN ((?:EC |RSA |ENCRYPTED )?PRIVATE KEY)-----[\s\S]*?-----END \1-----/;

function readKey(file: string): KeyObject {
	const match = KEY_BLOCK.exec(readText(file));
	if (!match) throw new CertificateError(file, "no PEM PRIVATE KEY block found");
	if (match[1] === "ENCRYPTED PRIVATE KEY") {
		throw new CertificateError(
			file,
			"encrypted private keys are not supported; store it unencrypted with tight permissions",
		);
	}
	try {
		return createPrivateKey(match[0]);
	} catch (err) {
		throw new CertificateError(file, `not a valid private key: ${(err as Error).message}`);
	}
}

function readText(file: string): string {
	try {
		return readFileSync(file, "utf8");
	} catch (err) {
		const code = (err as NodeJS.ErrnoException).code;
		throw new CertificateError(file, code === "ENOENT" ? "file not found" : `cannot read (${code})`);
	}
}
