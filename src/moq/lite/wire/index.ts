/**
 * moq-lite wire codecs (lite-02 … lite-05): one module per message family. Import the modules
 * directly, or this barrel as a namespace (`import * as Wire from "./wire/index.ts"`).
 * @module
 */

export * from "./announce.ts";
export * from "./fetch.ts";
export * from "./goaway.ts";
export * from "./group.ts";
export * from "./message.ts";
export * from "./probe.ts";
export * from "./session.ts";
export * from "./setup.ts";
export * from "./stream-type.ts";
export * from "./subscribe.ts";
export * from "./track.ts";
export * from "./version.ts";
