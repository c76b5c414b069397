/**
 * Stateless retry tokens (RFC 9000 §8.1.2): the server proves the client owns its address before
 * keeping any state. Token = issued-at (u32 s) | odcid length | odcid | HMAC-SHA256(…, address)[0,16).
 *
 * The token binds the client's address and port, so a spoofed source never gets a usable one (it
 * never sees our Retry), and it expires: a captured token is useless after TOKEN_LIFETIME_S. The
 * server keeps nothing between Retry and the Initial that carries the token.
 *
 * One key per relay process: the Initial that follows a Retry can land on another worker (NAT
 * rebinding changes the SO_REUSEPORT hash), which validates it before forwarding it to the worker
 * named in its DCID, so every worker must accept the tokens of every other (the main thread
 * creates the key and passes it to the workers).
 */
import { createHmac, randomBytes } from "node:crypto";

const MAC_LEN = 16;
/** A client answers a Retry within a round trip; 10 s covers any sane RTT and a few retransmissions. */
export const TOKEN_LIFETIME_S = 10;

export class RetryTokens {
	private readonly key: Buffer;

	constructor(key: Uint8Array = randomBytes(32)) {
		this.key = Buffer.from(key);
	}

	mint(odcid: Uint8Array, host: string, port: number, nowMs = Date.now()): Buffer {
		const body = Buffer.allocUnsafe(5 + odcid.length);
		body.writeUInt32BE(Math.floor(nowMs / 1000) >>> 0, 0);
		body[4] = odcid.length;
		body.set(odcid, 5);
		return Buffer.concat([body, this.mac(body, host, port)]);
	}

	/** The original DCID carried by a valid token, or null. */
	validate(token: Uint8Array, host: string, port: number, nowMs = Date.now()): Buffer | null {
		if (token.length < 5 + MAC_LEN) return null;
		const buf = Buffer.from(token.buffer, token.byteOffset, token.byteLength);
		const odcidLen = buf[4];
		if (buf.length !== 5 + odcidLen + MAC_LEN) return null;
		const body = buf.subarray(0, 5 + odcidLen);
		const expected = this.mac(body, host, port);
		if (!expected.equals(buf.subarray(5 + odcidLen))) return null;
		const age = Math.floor(nowMs / 1000) - buf.readUInt32BE(0);
		if (age < 0 || age > TOKEN_LIFETIME_S) return null;
		return Buffer.from(body.subarray(5));
	}

	private mac(body: Buffer, host: string, port: number): Buffer {
		return createHmac("sha256", this.key).update(body).update(`${host}|${port}`).digest().subarray(0, MAC_LEN);
	}
}
