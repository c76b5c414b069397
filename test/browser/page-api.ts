/**
 * What a test page exposes on `window.moqPage` once its bundle loaded: the same small surface for
 * each official client library, so one test drives @moq/net and @moq/lite alike. Frames cross the
 * Node ↔ page boundary as base64 strings (byte-exact, cheap to serialize).
 * @module
 */

export interface PageConnection {
	/** The session's negotiated protocol as the library reports it, e.g. "moq-lite-05". */
	version: string;
	/** "webtransport" or "websocket" where the library says; null where it does not. */
	transport: string | null;
}

export interface PageGroup {
	seq: number;
	/** base64 payloads in arrival order. */
	frames: string[];
	/** The group ended (FIN) after its frames. */
	done: boolean;
}

export interface PageApi {
	/** Which library the bundle carries. */
	readonly library: "@moq/net" | "@moq/lite";
	/** Connects over WebTransport only (the WebSocket fallback is disabled). */
	connect(url: string): Promise<PageConnection>;
	/** Publishes broadcast `path` with one track `track`. */
	publish(path: string, track: string): void;
	/** How many subscriptions the relay opened for the published track (lite needs one before writing). */
	publishedSubscribers(): number;
	/** Writes one group of frames (base64) to the published track and closes it; returns its sequence. */
	writeGroup(frames: string[]): number;
	/** Subscribes to `track` of broadcast `path`, recording every group and frame. */
	subscribe(path: string, track: string): void;
	/** What the subscription received so far. */
	received(): PageGroup[];
	/** Errors the page's async loops hit (empty when all is well). */
	errors(): string[];
	close(): void;
}

declare global {
	interface Window {
		moqPage?: PageApi;
	}
}

export function fromBase64(s: string): Uint8Array {
	const bin = atob(s);
	const out = new Uint8Array(bin.length);
	for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
	return out;
}

export function toBase64(b: Uint8Array): string {
	let bin = "";
	for (let i = 0; i < b.length; i += 0x8000) bin += String.fromCharCode(...b.subarray(i, i + 0x8000));
	return btoa(bin);
}
