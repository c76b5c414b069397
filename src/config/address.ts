/**
 * Socket addresses as written in moq-relay configs: "[::]:4443", "0.0.0.0:443", "relay.example:443".
 * @module
 */

import { isIP } from "node:net";
import { describeValue } from "./errors.ts";
import type { ListenAddress } from "./types.ts";

const EXPECTED = 'expected "host:port" like "[::]:4443" or "0.0.0.0:443"';
const HOSTNAME = /^[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*\.?$/i;

/** Parse "host:port" (IPv6 hosts in brackets). Port 0 means "any free port" (useful in tests). */
export function parseListenAddress(value: unknown): ListenAddress {
	if (typeof value !== "string") throw new Error(`${EXPECTED}, got ${describeValue(value)}`);
	let host: string;
	let portText: string;
	if (value.startsWith("[")) {
		const close = value.indexOf("]");
		if (close < 0 || value[close + 1] !== ":") throw new Error(`${EXPECTED}, got ${describeValue(value)}`);
		host = value.slice(1, close);
		portText = value.slice(close + 2);
		if (isIP(host) !== 6) throw new Error(`${EXPECTED}; "${host}" in brackets is not an IPv6 address`);
	} else {
		const colon = value.lastIndexOf(":");
		if (colon < 0) throw new Error(`${EXPECTED}; the port is missing in ${describeValue(value)}`);
		host = value.slice(0, colon);
		portText = value.slice(colon + 1);
		if (host.includes(":")) throw new Error(`${EXPECTED}; put IPv6 addresses in brackets, got ${describeValue(value)}`);
		if (isIP(host) !== 4 && !HOSTNAME.test(host)) {
			throw new Error(`${EXPECTED}; ${describeValue(host)} is not an IP address or host name`);
		}
	}
	if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
		throw new Error(`${EXPECTED}; the port must be 0-65535, got ${describeValue(value)}`);
	}
	return { host, port: Number(portText) };
}

/** The inverse of parseListenAddress: brackets around IPv6 hosts. */
export function formatListenAddress(address: ListenAddress): string {
	return isIP(address.host) === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
