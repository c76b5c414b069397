/**
 * Stateless retry tokens (RFC 9000 §8.1.2): the server proves the client owns its address before
 * keeping any state. Token = issued-at (u32 s) | odcid length | odcid | HMAC-SHA256(…, address)[0,16).
 * Off by default; a relay under a spoofed-Initial flood turns it on.
 */
import { createHmac, randomBytes } from "node:crypto";

const MAC_LEN = 16;
const TOKEN_LIFETIME_S = 10;

export class RetryTokens {
	private readonly key: Buffer;

	constructor(key: Buffer = randomBytes(32)) {
		this.key = key;
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
