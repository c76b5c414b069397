/** Public API of the raw-QUIC transport (quiche native binding). */

export { cidOwner } from "./cid.ts";
export { type ConnectQuicOptions, connectQuic, QuicClientEndpoint } from "./client.ts";
export { DEFAULT_QUIC_LIMITS, type QuicLimits } from "./config.ts";
export { type EndpointStats, QuicConnection } from "./connection.ts";
export { loadQuiche } from "./native.ts";
export { QuicServer, type QuicServerOptions } from "./server.ts";
export { QuicStream } from "./stream.ts";
