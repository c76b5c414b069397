/**
 * Small helpers shared by the client's control streams: message accumulation with decode-error
 * handling, so each handler only says what to do with a decoded message.
 * @module
 */

import { DecodeError } from "../coding/errors.ts";
import type { Reader } from "../coding/reader.ts";
import { MessageBuffer } from "../moq/message-buffer.ts";
import { PROTOCOL_VIOLATION } from "../moq/wire/codes.ts";
import type { TransportStream } from "../transport/types.ts";

/** Largest control message the client accepts from the relay. */
export const MAX_CONTROL_MESSAGE = 64 * 1024;

/**
 * Buffers a control stream and decodes whole messages in order. `decode` picks the decoder for the
 * next message (the first message of a stream often differs from the rest). A decode error resets the
 * stream with the error's code and reports it through `onError`.
 */
export class ControlReader {
	readonly buf = new MessageBuffer(MAX_CONTROL_MESSAGE);
	readonly #stream: TransportStream;
	readonly #onError: (code: number, message: string) => void;
	#failed = false;
	#released = false;

	constructor(stream: TransportStream, onError: (code: number, message: string) => void) {
		this.#stream = stream;
		this.#onError = onError;
	}

	get failed(): boolean {
		return this.#failed;
	}

	/** Appends `chunk` and runs `handle` for each whole message `decode` can read. */
	push<T>(chunk: Uint8Array | null, decode: (r: Reader) => T, handle: (m: T) => void): void {
		if (this.#failed || this.#released) return;
		try {
			if (chunk !== null) this.buf.push(chunk);
			for (;;) {
				const m = this.buf.tryDecode(decode);
				if (m === undefined) return;
				handle(m);
				if (this.#failed || this.#released) return;
			}
		} catch (err) {
			this.fail(err instanceof DecodeError ? err.code : PROTOCOL_VIOLATION, (err as Error).message);
		}
	}

	/**
	 * Stops decoding (the handler took the stream over) and returns the bytes buffered after the last
	 * decoded message, copied.
	 */
	release(): Uint8Array {
		this.#released = true;
		return this.buf.rest().slice();
	}

	fail(code: number, message: string): void {
		if (this.#failed) return;
		this.#failed = true;
		this.#stream.onData = null;
		this.#stream.reset(code);
		this.#stream.stop(code);
		this.#onError(code, message);
	}
}
