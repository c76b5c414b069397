/**
 * Decoding signals. `NeedMore` is thrown (a shared singleton, no allocation) when a synchronous
 * decoder runs out of buffered bytes: the caller keeps its bytes and retries when more arrive.
 * `DecodeError` means the bytes can never decode: the owner of the stream closes it with `code`.
 */
import { CodedError } from "../errors/coded-error.ts";
import { PROTOCOL_VIOLATION } from "../errors/codes.ts";

export class NeedMoreError extends Error {
	constructor() {
		super("need more bytes");
	}
}
export const NEED_MORE = new NeedMoreError();

/**
 * Bytes that can never decode. `code` is the layer's own (src/errors/codes.ts): a moq-lite code,
 * PROTOCOL_VIOLATION by default, or an HTTP/3 code from the HTTP/3 decoders.
 */
export class DecodeError extends CodedError {
	constructor(message: string, code: number = PROTOCOL_VIOLATION) {
		super(message, code);
	}
}
