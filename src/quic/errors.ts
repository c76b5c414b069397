/**
 * quiche errors cross the binding as JS Errors whose message is the Rust variant, e.g.
 * `StreamReset(42)`, `StreamStopped(77)`, `StreamLimit`, `InvalidStreamState(3)`, `Done`.
 * Throwing through napi costs ~25 µs (the Error and its stack), so the driver only takes paths
 * that throw on rare events (a reset, a stop, a closed stream).
 */

const STREAM_RESET = /^StreamReset\((\d{1,20})\)$/;
const STREAM_STOPPED = /^StreamStopped\((\d{1,20})\)$/;

function message(err: unknown): string {
	return err instanceof Error ? err.message : String(err);
}

/** The peer's RESET_STREAM code, or -1 when `err` is not a reset. */
export function streamResetCode(err: unknown): number {
	const match = STREAM_RESET.exec(message(err));
	return match === null ? -1 : Number(match[1]);
}

/** The peer's STOP_SENDING code, or -1 when `err` is not a stop. */
export function streamStoppedCode(err: unknown): number {
	const match = STREAM_STOPPED.exec(message(err));
	return match === null ? -1 : Number(match[1]);
}

export function isStreamLimit(err: unknown): boolean {
	return message(err) === "StreamLimit";
}

/** QUIC transport error for a TLS alert (RFC 9001 §4.8): 0x100 + alert. bad_certificate = 42. */
export const CRYPTO_BAD_CERTIFICATE = 0x100 + 42;
