/** Moved to test/support/quic.ts; bench/micro/quic.ts still imports this path. */
export * from "./support/quic.ts";
