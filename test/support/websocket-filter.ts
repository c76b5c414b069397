/**
 * Lets a test restrict the WebSocket subprotocols the official clients offer, to force a given
 * moq-lite version over qmux (the clients offer every version they know, newest first).
 */
const NativeWebSocket = globalThis.WebSocket;
let filter: ((protocols: string[]) => string[]) | null = null;

class FilteringWebSocket extends NativeWebSocket {
	constructor(url: string | URL, protocols?: string | string[]) {
		const list = protocols === undefined ? [] : Array.isArray(protocols) ? protocols : [protocols];
		super(url, filter ? filter(list) : list);
	}
}

globalThis.WebSocket = FilteringWebSocket as typeof WebSocket;

/** Runs `fn` (which must create its WebSocket synchronously or soon) with only protocols passing `keep`. */
export async function withOfferedProtocols<T>(keep: (p: string) => boolean, fn: () => Promise<T>): Promise<T> {
	filter = (list) => list.filter(keep);
	try {
		return await fn();
	} finally {
		filter = null;
	}
}
