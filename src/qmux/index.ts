/** qmux over WebSocket: the server-side TransportSession and its pieces. */
export { QmuxError } from "./error.ts";
export type { Framing } from "./frames.ts";
export { KeepAlive } from "./keepalive.ts";
export {
	DEFAULT_WS_LIMITS,
	type WsLimits,
	WsSession,
	type WsSessionOptions,
} from "./session.ts";
export {
	APP_PROTOCOLS,
	type Negotiated,
	parseOffer,
	parseSubprotocol,
	preferenceList,
	QMUX_PREFERENCE,
	selectSubprotocol,
} from "./subprotocol.ts";
