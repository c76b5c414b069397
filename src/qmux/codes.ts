/**
 * QUIC transport error codes (RFC 9000 §20.1), which qmux reuses in CONNECTION_CLOSE (0x1c).
 * Application closes (0x1d) carry the moq-lite code instead.
 */
export const QuicError = {
	NO_ERROR: 0x00,
	INTERNAL_ERROR: 0x01,
	CONNECTION_REFUSED: 0x02,
	FLOW_CONTROL_ERROR: 0x03,
	STREAM_LIMIT_ERROR: 0x04,
	STREAM_STATE_ERROR: 0x05,
	FINAL_SIZE_ERROR: 0x06,
	FRAME_ENCODING_ERROR: 0x07,
	TRANSPORT_PARAMETER_ERROR: 0x08,
	PROTOCOL_VIOLATION: 0x0a,
} as const;
export type QuicErrorCode = (typeof QuicError)[keyof typeof QuicError];

/** A connection error found while decoding or applying a frame; the session closes with `code`. */
export class QmuxError extends Error {
	readonly code: QuicErrorCode;
	/** The frame type that triggered it (CONNECTION_CLOSE's Frame Type field); 0 when unknown. */
	readonly frameType: number;
	constructor(code: QuicErrorCode, message: string, frameType = 0) {
		super(message);
		this.code = code;
		this.frameType = frameType;
	}
}
