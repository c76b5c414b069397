/**
 * The one shape of the relay's errors: every error that ends a stream, a request or a session
 * carries the wire `code` it ends it with (src/errors/codes.ts). The code is in the space of the
 * layer that throws: moq-lite codes for moq, auth and the cache, HTTP/3 codes for the HTTP/3
 * decoders, QUIC transport codes for qmux. The session guard closes with `code` when a caught
 * error has one (src/transport/guard.ts).
 * @module
 */

export class CodedError extends Error {
	readonly code: number;
	constructor(message: string, code: number) {
		super(message);
		this.code = code;
	}
}
