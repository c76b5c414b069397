/**
 * The reading half of a control stream, for every MoQ dialect and both ends (the relay's sessions
 * and src/client): bounded buffering and whole-message decoding, where a message that can never
 * decode (or a stream buffered over its limit) fails the stream with a code and tells the owner.
 * @module
 */

import { DecodeError } from "../coding/errors.ts";
import type { Reader } from "../coding/reader.ts";
import type { TransportStream } from "../transport/types.ts";
import { MessageBuffer } from "./message-buffer.ts";

/** How a control stream is bounded, and the dialect's code for a peer that breaks the protocol. */
export interface ControlLimits {
	/** Most bytes buffered for one message. */
	readonly maxBytes: number;
	/** The reset code for a stream over `maxBytes`, or an error that carries no code of its own. */
	readonly violation: number;
}

/** Told once, when the stream failed (it is already reset and stopped). */
export type ControlError = (code: number, message: string) => void;

/**
 * Buffers one control stream and decodes its messages in order. A decode error (or the buffer limit)
 * resets and stops the stream with the error's code and reports it through `onError`, once.
 */
export class ControlReader {
	readonly buf: MessageBuffer;
	readonly #stream: TransportStream;
	readonly #violation: number;
	readonly #onError: ControlError;
	#failed = false;
	#released = false;

	constructor(stream: TransportStream, limits: ControlLimits, onError: ControlError) {
		this.buf = new MessageBuffer(limits.maxBytes);
		this.#stream = stream;
		this.#violation = limits.violation;
		this.#onError = onError;
	}

	get failed(): boolean {
		return this.#failed;
	}

	/** Appends a chunk; false (and the stream failed) when it takes the buffer over its limit. */
	append(chunk: Uint8Array): boolean {
		try {
			this.buf.push(chunk);
			return true;
		} catch {
			this.fail(this.#violation, "control stream over limit");
			return false;
		}
	}

	/**
	 * Feeds every later chunk of the stream into the buffer and calls `onChunk` after each (and once
	 * now, for what is buffered already). Replaces the stream's `onData`.
	 */
	follow(onChunk: () => void): void {
		this.#stream.onData = (chunk) => {
			if (this.append(chunk)) onChunk();
		};
		onChunk();
	}

	/** One whole message, or undefined while it is incomplete or when it can never decode (the stream failed). */
	next<T>(decode: (r: Reader) => T): T | undefined {
		try {
			return this.buf.tryDecode(decode);
		} catch (err) {
			this.fail(err instanceof DecodeError ? err.code : this.#violation, (err as Error).message);
			return undefined;
		}
	}

	/** Appends `chunk` (if any) and runs `handle` for each whole message `decode` can read, until released or failed. */
	push<T>(chunk: Uint8Array | null, decode: (r: Reader) => T, handle: (m: T) => void): void {
		if (this.#failed || this.#released) return;
		if (chunk !== null && !this.append(chunk)) return;
		try {
			for (;;) {
				const m = this.buf.tryDecode(decode);
				if (m === undefined) return;
				handle(m);
				if (this.#failed || this.#released) return;
			}
		} catch (err) {
			this.fail(err instanceof DecodeError ? err.code : this.#violation, (err as Error).message);
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

	/** Resets and stops the stream with `code` and tells the owner (once). */
	fail(code: number, message: string): void {
		if (this.#failed) return;
		this.#failed = true;
		this.#stream.onData = null;
		this.#stream.reset(code);
		this.#stream.stop(code);
		this.#onError(code, message);
	}
}
