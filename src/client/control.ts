/**
 * The bounds of the client's control streams, read with the shared `ControlReader`
 * (src/moq/control-reader.ts).
 * @module
 */

import { PROTOCOL_VIOLATION } from "../errors/codes.ts";
import type { ControlLimits } from "../moq/control-reader.ts";

/** Largest control message the client accepts from the relay; a decode error without a code of its own is a protocol violation. */
export const CONTROL: ControlLimits = { maxBytes: 64 * 1024, violation: PROTOCOL_VIOLATION };
