/**
 * Shared fixtures of the QUIC tests: a long-lived self-signed ECDSA P-256 test certificate (raw
 * QUIC tests pin its hash or run insecure, so its validity period does not matter) and helpers.
 */
import { createHash, X509Certificate } from "node:crypto";
import { connectQuic } from "../../src/quic/client.ts";
import type { QuicConnection } from "../../src/quic/connection.ts";
import { QuicServer, type QuicServerOptions } from "../../src/quic/server.ts";

export const TEST_KEY = `-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIGskjSYYUeHCv0GqGqhglZSqpxnbXaL/rbXN3VUVPl9hoAoGCCqGSM49
AwEHoUQDQgAEb0hgsu/KA/nZNMA+W8oCPWUfXb5ryE7yZ0RCDpjbRnFz6+stV6C0
w4zIHpknJQtGk/pm9F3IVOuxO8obSEt69Q==
-----END EC PRIVATE KEY-----`;

export const TEST_CERT = `-----BEGIN CERTIFICATE-----
MIIBrjCCAVSgAwIBAgIUf1/Wn1pbxQvvSck6pGOnUQL0rMgwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyMzE0MjI1N1oYDzIxMjYxMDMw
MTQyMjU3WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAARvSGCy78oD+dk0wD5bygI9ZR9dvmvITvJnREIOmNtGcXPr6y1XoLTD
jMgemSclC0aT+mb0XchU67E7yhtIS3r1o4GBMH8wHQYDVR0OBBYEFAsI2LGgDdGi
lAxgv9UqPdUhvz+rMB8GA1UdIwQYMBaAFAsI2LGgDdGilAxgv9UqPdUhvz+rMA8G
A1UdEwEB/wQFMAMBAf8wLAYDVR0RBCUwI4IJbG9jYWxob3N0hwR/AAABhxAAAAAA
AAAAAAAAAAAAAAABMAoGCCqGSM49BAMCA0gAMEUCIH6lzA+YiLsd08y2ZQw0Uvum
vozmxMUlXXLjxazCwkD3AiEArzayAM1Iehk+43fmcddlX4v8fnlWxnTcZV8qI4DG
ICs=
-----END CERTIFICATE-----`;

/** Lowercase hex SHA-256 of the test certificate's DER. */
export const TEST_CERT_HASH = createHash("sha256").update(new X509Certificate(TEST_CERT).raw).digest("hex");

/** A second certificate, for the certificate-swap test. */
export const TEST_KEY_2 = `-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIEVmrKrXWCzxGoP2JcRwYkwwwPVlqdeMx3FuQ2ckveBMoAoGCCqGSM49
AwEHoUQDQgAEVWRa5xTX4zvyrsXUUwHkdlkPEbeRb1MkBzalsmzp3wDLkQ7IAZoE
E8Vro1/2PANPVfdG6rXVILpWlgOkfAFTLQ==
-----END EC PRIVATE KEY-----`;

export const TEST_CERT_2 = `-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUOziAxP+NxQHZJPa5xNmDkNJiA/0wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyMzE0MjM1MFoYDzIxMjYxMDMw
MTQyMzUwWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAARVZFrnFNfjO/KuxdRTAeR2WQ8Rt5FvUyQHNqWybOnfAMuRDsgBmgQT
xWujX/Y8A09V90bqtdUgulaWA6R8AVMto28wbTAdBgNVHQ4EFgQUWb4JQAOidfhx
/4ppznnOaIGLCsgwHwYDVR0jBBgwFoAUWb4JQAOidfhx/4ppznnOaIGLCsgwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDSAAwRQIhAJuRx+MTOpuLC1j1Pdech4Se6MN+hJ1VNPNUxhZ7Oj6LAiAm
u1Adb+YPKvvreWJHIQKOcrm1BW9ocfN2d+dixanlYQ==
-----END CERTIFICATE-----`;

export const TEST_CERT_2_HASH = createHash("sha256").update(new X509Certificate(TEST_CERT_2).raw).digest("hex");

export const ALPN = "moq-lite-05";

export function listen(
	options: Partial<QuicServerOptions> & Pick<QuicServerOptions, "onSession">,
): Promise<QuicServer> {
	return QuicServer.listen({ host: "127.0.0.1", port: 0, cert: TEST_CERT, key: TEST_KEY, alpns: [ALPN], ...options });
}

/** Collects a stream's bytes until FIN. */
export function collect(stream: {
	onData: ((chunk: Uint8Array) => void) | null;
	onFin: (() => void) | null;
	onReset: ((code: number) => void) | null;
}): Promise<Buffer> {
	const chunks: Buffer[] = [];
	return new Promise((resolve, reject) => {
		stream.onData = (chunk) => chunks.push(Buffer.from(chunk));
		stream.onFin = () => resolve(Buffer.concat(chunks));
		stream.onReset = (code) => reject(new Error(`reset ${code}`));
	});
}

/** A server whose sessions echo every peer stream (bidi: back on the stream; uni: on a new uni). */
export async function echoServer(extra: Partial<QuicServerOptions> = {}): Promise<{
	server: QuicServer;
	sessions: QuicConnection[];
}> {
	const sessions: QuicConnection[] = [];
	const server = await listen({
		...extra,
		onSession(session) {
			sessions.push(session);
			session.onStream = (stream) => {
				if (stream.bidi) {
					stream.onData = (chunk) => stream.write(chunk);
					stream.onFin = () => stream.finish();
				} else {
					const reply = session.openUni()!;
					stream.onData = (chunk) => reply.write(chunk);
					stream.onFin = () => reply.finish();
				}
			};
		},
	});
	return { server, sessions };
}

/** Our quiche client to a test server on loopback, pinning the test certificate. */
export function connect(port: number, extra: Partial<Parameters<typeof connectQuic>[0]> = {}): Promise<QuicConnection> {
	return connectQuic({ host: "127.0.0.1", port, alpns: [ALPN], certificateHashes: [TEST_CERT_HASH], ...extra });
}
