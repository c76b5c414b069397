/**
 * Decoding signals. `NeedMore` is thrown (a shared singleton, no allocation) when a synchronous
 * decoder runs out of buffered bytes: the caller keeps its bytes and retries when more arrive.
 * `DecodeError` means the bytes can never decode: the owner of the stream closes it with `code`.
 */
export class NeedMoreError extends Error {
	constructor() {
		super("need more bytes");
	}
}
export const NEED_MORE = new NeedMoreError();

export class DecodeError extends Error {
	/** A moq-lite reset/close code (see src/moq/lite/wire/codes.ts); 15 = protocol violation by default. */
	readonly code: number;
	constructor(message: string, code = 15) {
		super(message);
		this.code = code;
	}
}
