/** The relay's HTTP/1.1 + WebSocket listener. */
export {
	type HttpServerHandle,
	type HttpServerOptions,
	startHttpServer,
	type TlsFiles,
	type WsListenerOptions,
} from "./server.ts";
