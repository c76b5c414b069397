/**
 * qmux's connection error. Its code is a QUIC transport code (src/errors/codes.ts `QuicError`),
 * sent in a transport CONNECTION_CLOSE (0x1c).
 * @module
 */

import { CodedError } from "../errors/coded-error.ts";
import type { QuicErrorCode } from "../errors/codes.ts";

/** A connection error found while decoding or applying a frame; the session closes with `code`. */
export class QmuxError extends CodedError {
	declare readonly code: QuicErrorCode;
	/** The frame type that triggered it (CONNECTION_CLOSE's Frame Type field); 0 when unknown. */
	readonly frameType: number;
	constructor(code: QuicErrorCode, message: string, frameType = 0) {
		super(message, code);
		this.frameType = frameType;
	}
}
