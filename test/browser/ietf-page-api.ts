/**
 * What the IETF dialect page (page-ietf.ts) exposes on `window.moqPage`, and the content both
 * sides agree on: one Chromium page holds many @moq/net connections, each forced onto one dialect
 * over WebTransport and named by an id the test picks. Frames do not cross the Node ↔ page boundary:
 * publishers build them from `matrixPayload` (a pure function of publisher, group and frame, the
 * same in Node and the page) and viewers report each frame as its length and SHA-256.
 * @module
 */

/** How the page opens a connection. */
export type IetfPageHandshake =
	/** `Connection.connect(url, { webtransport: { protocols: [protocol], … } })`: @moq/net picks the dialect by the negotiated name. */
	| "connect"
	/**
	 * A WebTransport offering only `protocol` (`moql` or `moq-00`), then the draft-14 CLIENT_SETUP
	 * offering 0xff00000e alone, with @moq/net's own classes (`connect()` always offers moq-lite
	 * first on `moql` and never offers `moq-00`).
	 */
	| "draft14";

export interface IetfPageConnection {
	/** `conn.version`, e.g. "moq-transport-16". */
	version: string;
	/** `conn.transport`: "webtransport" (qmux would read "websocket"). */
	transport: string;
	/** The WebTransport's negotiated protocol (`WebTransport.protocol`, from WT-Protocol). */
	protocol: string;
}

/** One subscription's progress: the groups that ended, with their frames as "LENGTH:SHA256HEX". */
export interface IetfPageReceived {
	groups: { seq: number; frames: string[] }[];
	error: string | null;
}

export interface IetfPageApi {
	readonly library: "@moq/net ietf";
	/** Opens connection `id` over WebTransport to `url` (https), pinning the relay's certificate hash (hex). */
	connect(
		id: string,
		url: string,
		protocol: string,
		handshake: IetfPageHandshake,
		certSha256: string,
	): Promise<IetfPageConnection>;
	/** Publishes broadcast `path` on connection `id`, with one track `track`. */
	publish(id: string, path: string, track: string): void;
	/** Writes one group per entry (`matrixPayload(pub, group, f)` for every frame f) and closes it; returns the sequences. */
	writeGroups(writes: { id: string; pub: number; group: number }[]): number[];
	/** Writes a one-byte warm-up group to each connection's track. */
	writeWarmUp(ids: string[]): void;
	/** Starts recording connection `id`'s announcements under `prefix`. */
	watchAnnounced(id: string, prefix: string): void;
	/** The paths announced active (and not since withdrawn) to connection `id`. */
	announced(id: string): string[];
	/** Subscribes connection `id` to `track` of broadcast `path`, recording it under `key`. */
	subscribe(id: string, key: string, path: string, track: string): void;
	/** How many groups each subscription has seen start (warm-up included). */
	groupCounts(): Record<string, number>;
	/** Each subscription's ended groups among `seqs` (by key; `seqs` by key too). */
	received(seqs: Record<string, number[]>): Record<string, IetfPageReceived>;
	/** Errors of the page's async loops (empty when all is well). */
	errors(): string[];
	/** Closes every connection. */
	closeAll(): void;
}

/** Frame sizes of the matrix groups (0: an empty frame; 70 000: larger than any QUIC packet or flow-control window start). */
export const MATRIX_SIZES = [900, 0, 70_000, 17, 3];

/** Deterministic content per publisher index, group and frame; sizes vary a little by group and publisher. */
export function matrixPayload(pub: number, group: number, frame: number): Uint8Array {
	const base = MATRIX_SIZES[frame];
	const size = base === 0 ? 0 : base + ((group * 13 + pub * 7) % 50);
	const b = new Uint8Array(size);
	for (let i = 0; i < size; i++) b[i] = (i * 31 + (i >> 8) + group * 7 + frame * 3 + pub * 101) & 0xff;
	return b;
}
