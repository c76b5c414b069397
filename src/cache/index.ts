/** The group cache: per-track SharedArrayBuffer rings, one writer, readers in any thread. */
export { CacheBudget } from "./budget.ts";
export { Doorbell } from "./doorbell.ts";
export { CacheAbort, CacheError, GroupState, Rec, type RecKind } from "./layout.ts";
export { RingReader } from "./ring-reader.ts";
export { RingWriter, type RingWriterOptions } from "./ring-writer.ts";
