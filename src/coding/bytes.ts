/**
 * Keeping bytes past the callback that handed them over.
 * @module
 */

/**
 * An owned copy of `bytes`, for holding a received chunk after its callback returns.
 *
 * Never `chunk.slice()` for that: the transports hand out Node Buffers that are views of one shared
 * receive buffer (src/transport/types.ts: a chunk is valid only during the call), and
 * `Buffer#slice` returns another view of the same memory, not a copy. The next packet then
 * overwrites what was "kept": a CLIENT_SETUP whose first byte arrived alone was replayed as a
 * different byte, and the session never got its SERVER_SETUP.
 */
export function ownedCopy(bytes: Uint8Array): Uint8Array {
	return new Uint8Array(bytes);
}
