/**
 * Self-signed ECDSA P-256 certificates for development and for browsers that pin a
 * certificate hash (WebTransport `serverCertificateHashes`). Node can make keys and sign but
 * not build certificates, so the TBSCertificate (RFC 5280 §4.1) is encoded here with der.ts.
 * @module
 */

import { createHash, generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { domainToASCII } from "node:url";
import * as Der from "./der.ts";
import { ipBytes } from "./ip.ts";
import { fingerprint, toPem } from "./pem.ts";

/** A generated certificate and its private key. */
export interface GeneratedCertificate {
	/** PEM "CERTIFICATE". */
	certPem: string;
	/** PEM "PRIVATE KEY" (PKCS #8). */
	keyPem: string;
	/** The certificate's DER bytes. */
	der: Uint8Array;
	/** Lowercase hex SHA-256 of `der`. */
	fingerprint: string;
	notBefore: Date;
	notAfter: Date;
}

export interface GenerateOptions {
	/** Validity in days, at most 14 (default 14). */
	days?: number;
	/** The clock, for tests. */
	now?: Date;
}

const DAY_MS = 86_400_000;

/**
 * Chromium refuses `serverCertificateHashes` certificates valid for longer than 14 days
 * (W3C WebTransport: "the validity period … must not exceed two weeks").
 */
export const MAX_VALIDITY_DAYS = 14;

const OID = {
	ecdsaWithSha256: "1.2.840.10045.4.3.2",
	commonName: "2.5.4.3",
	subjectKeyIdentifier: "2.5.29.14",
	keyUsage: "2.5.29.15",
	subjectAltName: "2.5.29.17",
	basicConstraints: "2.5.29.19",
	extKeyUsage: "2.5.29.37",
	serverAuth: "1.3.6.1.5.5.7.3.1",
} as const;

/**
 * A self-signed X.509 v3 certificate for `hostnames` (IP literals become iPAddress SANs, the
 * rest dNSName SANs) with a fresh ECDSA P-256 key. Like moq-relay: valid from one day ago (clock
 * drift) for exactly `days` (14) days after that, so notAfter − notBefore never exceeds 14 days.
 */
export function generateCertificate(hostnames: string[], opts: GenerateOptions = {}): GeneratedCertificate {
	const days = opts.days ?? MAX_VALIDITY_DAYS;
	if (!(days > 0 && days <= MAX_VALIDITY_DAYS)) {
		throw new RangeError(`certificate validity must be more than 0 and at most ${MAX_VALIDITY_DAYS} days, got ${days}`);
	}
	if (hostnames.length === 0) throw new RangeError("at least one hostname is needed for a certificate");
	const altNames = hostnames.map(generalName);

	const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
	const spki = new Uint8Array(publicKey.export({ type: "spki", format: "der" }));

	// Whole seconds: X.509 times have no fractions, so the encoded span stays exactly `days`.
	const now = Math.floor((opts.now ?? new Date()).getTime() / 1000) * 1000;
	const notBefore = new Date(now - DAY_MS);
	const notAfter = new Date(notBefore.getTime() + Math.round(days * DAY_MS));

	// 16 random bytes, top bit clear so the INTEGER is positive, second bit set so it stays 16 bytes (RFC 5280 §4.1.2.2).
	const serial = randomBytes(16);
	serial[0] = (serial[0] & 0x3f) | 0x40;

	const algorithm = Der.sequence(Der.oid(OID.ecdsaWithSha256));
	const name = Der.sequence(Der.set(Der.sequence(Der.oid(OID.commonName), Der.utf8String("moq-fanout self-signed"))));
	// The key identifier is the SHA-1 of the subjectPublicKey bits (RFC 5280 §4.2.1.2 method 1):
	// for P-256 that is the 65-byte uncompressed point ending the SPKI.
	const keyId = createHash("sha1")
		.update(spki.subarray(spki.length - 65))
		.digest();

	const tbs = Der.sequence(
		Der.explicit(0, Der.smallInteger(2)), // v3
		Der.unsignedInteger(serial),
		algorithm,
		name,
		Der.sequence(Der.time(notBefore), Der.time(notAfter)),
		name,
		spki,
		Der.explicit(
			3,
			Der.sequence(
				extension(OID.basicConstraints, true, Der.sequence()), // cA FALSE (the default, so omitted)
				extension(OID.keyUsage, true, Der.bitStringWithUnused(new Uint8Array([0x80]), 7)), // digitalSignature
				extension(OID.extKeyUsage, false, Der.sequence(Der.oid(OID.serverAuth))),
				extension(OID.subjectKeyIdentifier, false, Der.octetString(keyId)),
				extension(OID.subjectAltName, false, Der.sequence(...altNames)),
			),
		),
	);
	// Node's ECDSA signatures are DER ECDSA-Sig-Value, which is what X.509 carries.
	const signature = new Uint8Array(sign("sha256", tbs, privateKey));
	const der = Der.sequence(tbs, algorithm, Der.bitString(signature));

	return {
		certPem: toPem(der, "CERTIFICATE"),
		keyPem: privateKey.export({ type: "pkcs8", format: "pem" }) as string,
		der,
		fingerprint: fingerprint(der),
		notBefore,
		notAfter,
	};
}

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }. */
function extension(id: string, critical: boolean, value: Uint8Array): Uint8Array {
	return critical
		? Der.sequence(Der.oid(id), Der.boolean(true), Der.octetString(value))
		: Der.sequence(Der.oid(id), Der.octetString(value));
}

/** GeneralName: iPAddress [7] for IP literals, dNSName [2] (IA5String, punycode) otherwise. */
function generalName(hostname: string): Uint8Array {
	const ip = ipBytes(hostname);
	if (ip) return Der.implicitPrimitive(7, ip);
	const wildcard = hostname.startsWith("*.");
	const ascii = domainToASCII(wildcard ? hostname.slice(2) : hostname);
	if (!ascii) throw new RangeError(`not a valid host name: ${JSON.stringify(hostname)}`);
	return Der.implicitPrimitive(2, new TextEncoder().encode(wildcard ? `*.${ascii}` : ascii));
}
