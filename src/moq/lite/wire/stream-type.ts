/**
 * The first varint of every moq-lite stream. Stream types are written by whoever opens the stream
 * and read by the session's stream dispatcher, not by the message codecs (exceptions: the 0x20/0x21
 * compat SETUP, whose type byte is also the message type, and `writeGroupStreamHeader`).
 * @module
 */

/** Bidirectional stream types. 0 (SESSION) is lite-02's SETUP stream only; a peer opening it is rejected. */
export const BIDI = {
	SESSION: 0,
	ANNOUNCE: 1,
	SUBSCRIBE: 2,
	FETCH: 3,
	PROBE: 4,
	GOAWAY: 5,
	TRACK: 6,
	SETUP_CLIENT: 0x20,
	SETUP_SERVER: 0x21,
} as const;
export type BidiType = (typeof BIDI)[keyof typeof BIDI];

/** Unidirectional stream types: GROUP carries one group's frames; SETUP (lite-05) carries one SETUP message. */
export const UNI = {
	GROUP: 0,
	SETUP: 1,
} as const;
export type UniType = (typeof UNI)[keyof typeof UNI];
