/**
 * PEM armour (RFC 7468) and certificate fingerprints.
 * @module
 */

import { createHash } from "node:crypto";

/** Wrap DER bytes as PEM with 64-column base64 lines. */
export function toPem(der: Uint8Array, label: string): string {
	const base64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("base64");
	const lines = base64.match(/.{1,64}/g) ?? [];
	return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** Every block with this label, decoded to DER, in file order. */
export function pemBlocks(text: string, label: string): Uint8Array[] {
	const pattern = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, "g");
	const blocks: Uint8Array[] = [];
	for (const match of text.matchAll(pattern)) {
		blocks.push(new Uint8Array(Buffer.from(match[1].replace(/\s+/g, ""), "base64")));
	}
	return blocks;
}

/**
 * SHA-256 of a certificate's DER, as lowercase hex without separators: the value browsers
 * take in WebTransport `serverCertificateHashes` and moq-relay serves at /certificate.sha256.
 * Given PEM, the first CERTIFICATE block (the leaf) is hashed.
 */
export function fingerprint(derOrPem: Uint8Array | string): string {
	let der: Uint8Array;
	if (typeof derOrPem === "string") {
		const [leaf] = pemBlocks(derOrPem, "CERTIFICATE");
		if (!leaf) throw new TypeError("no CERTIFICATE block in PEM text");
		der = leaf;
	} else {
		der = derOrPem;
	}
	return createHash("sha256").update(der).digest("hex");
}
