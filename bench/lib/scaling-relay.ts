/**
 * The relay under test for the scaling bench: the shared launcher with the worker count and
 * `--reuse-port` chosen per configuration (the single-socket fallback is `--reuse-port false`).
 * @module
 */

import { type RelayProcess, startRelay } from "./relay-process.ts";

export function startScalingRelay(cores: number[], workers: number, reusePort: boolean): Promise<RelayProcess> {
	return startRelay(cores, { workers, reusePort });
}
