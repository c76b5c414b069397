/**
 * IP literal → network-order bytes, for iPAddress subjectAltNames (RFC 5280 §4.2.1.6:
 * 4 octets for IPv4, 16 for IPv6).
 * @module
 */

import { isIP } from "node:net";

/** The address's bytes, or null when it is not an IP literal. */
export function ipBytes(address: string): Uint8Array | null {
	const family = isIP(address);
	if (family === 4) return new Uint8Array(address.split(".").map(Number));
	if (family === 6) return ipv6Bytes(address);
	return null;
}

function ipv6Bytes(address: string): Uint8Array {
	const out = new Uint8Array(16);
	let text = address;
	// A trailing dotted quad ("::ffff:192.0.2.1") fills the last 4 bytes.
	const lastColon = text.lastIndexOf(":");
	let tail: number[] = [];
	if (text.includes(".", lastColon)) {
		tail = text
			.slice(lastColon + 1)
			.split(".")
			.map(Number);
		text = `${text.slice(0, lastColon + 1)}0:0`;
	}
	const [head, rest] = text.split("::");
	const headGroups = head ? head.split(":") : [];
	const restGroups = rest === undefined ? [] : rest ? rest.split(":") : [];
	const zeros = 8 - headGroups.length - restGroups.length;
	const groups = [...headGroups, ...new Array<string>(rest === undefined ? 0 : zeros).fill("0"), ...restGroups];
	for (let i = 0; i < 8; i++) {
		const value = Number.parseInt(groups[i], 16);
		out[i * 2] = value >> 8;
		out[i * 2 + 1] = value & 0xff;
	}
	if (tail.length === 4) out.set(tail, 12);
	return out;
}
