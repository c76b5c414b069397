/**
 * Entry points for configuration: `loadConfig` (a file, or the embedded development config),
 * `parseConfig` (TOML text), `parseArgs` (the command line) and `readEnv` (MOQ_* variables).
 * Precedence: command-line flags, then the environment, then the file, then defaults.
 * @module
 */

import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse as parseToml, TomlError } from "smol-toml";
import { DEFAULT_SOURCE, DEVELOPMENT_CONFIG } from "./defaults.ts";
import { readDocument } from "./document.ts";
import { type Env, readEnv } from "./env.ts";
import { ConfigError } from "./errors.ts";
import { resolveConfig } from "./resolve.ts";
import { emptySettings, mergeSettings, type SourcedSettings } from "./settings.ts";
import type { RelayConfig } from "./types.ts";

export { type CliArgs, parseArgs, USAGE } from "./args.ts";
export { ENV_SOURCE, ENV_VARS, type Env, levelFromLogFilter, readEnv } from "./env.ts";
export { ConfigError } from "./errors.ts";

/** Warnings already printed: each is printed once per process, however often the config loads. */
const warned = new Set<string>();

/** The default `warn`: one line on stderr, once per process. */
function warnOnce(line: string): void {
	if (warned.has(line)) return;
	warned.add(line);
	process.stderr.write(`moq-fanout: warning: ${line}\n`);
}

/**
 * Load and validate the relay config from a TOML file, or the embedded development config
 * when `path` is null. MOQ_* variables of `env` (default: process.env) replace the file's
 * values, and `overrides` (from parseArgs) replace both, before the cross-key checks run, so
 * `--tls-generate localhost` can stand in for a missing certificate. Throws ConfigError naming
 * the file and key, or "environment" and the variable.
 */
export function loadConfig(
	path: string | null,
	overrides: SourcedSettings = emptySettings(),
	options: Pick<ParseOptions, "env" | "warn"> = {},
): RelayConfig {
	const env = options.env ?? process.env;
	const warn = options.warn ?? warnOnce;
	if (path === null) {
		return parseConfig(DEVELOPMENT_CONFIG, DEFAULT_SOURCE, { overrides, baseDir: process.cwd(), env, warn });
	}
	let text: string;
	try {
		text = readFileSync(path, "utf8");
	} catch (err) {
		const code = (err as NodeJS.ErrnoException).code;
		throw new ConfigError(path, "", code === "ENOENT" ? "config file not found" : `cannot read config file (${code})`);
	}
	return parseConfig(text, path, { overrides, env, warn });
}

/** Options for parseConfig. */
export interface ParseOptions {
	/** Relative file paths in the config resolve against this; default: the directory of `source`. */
	baseDir?: string;
	/** Command-line settings that win over the environment's and the file's. */
	overrides?: SourcedSettings;
	/** Environment whose MOQ_* (and MOQ_LOG / RUST_LOG) variables win over the file; default: none. */
	env?: Env;
	/** Where warnings about the environment go (unknown MOQ_* variables); default: stderr, once each. */
	warn?: (line: string) => void;
}

/** Parse and validate TOML text. `source` names it in errors (usually the file path). */
export function parseConfig(text: string, source: string, options: ParseOptions = {}): RelayConfig {
	let document: Record<string, unknown>;
	try {
		// Integers past 2^53 become bigints, so the key's own parser names it ("[cluster] id: expected …")
		// instead of a syntax error about precision.
		document = parseToml(text, { integersAsBigInt: "asNeeded" });
	} catch (err) {
		if (err instanceof TomlError) {
			// smol-toml's message is "Invalid TOML document: <why>\n\n<code excerpt>".
			const why = err.message.split("\n")[0].replace(/^Invalid TOML document: /, "");
			throw new ConfigError(`${source}:${err.line}:${err.column}`, "", `TOML syntax error: ${why}\n${err.codeblock}`);
		}
		throw err;
	}
	const baseDir = options.baseDir ?? dirname(resolve(source));
	const fromFile = readDocument(document, source, baseDir);
	let merged = fromFile;
	if (options.env !== undefined) {
		const fromEnv = readEnv(options.env);
		for (const line of fromEnv.warnings) (options.warn ?? warnOnce)(line);
		merged = mergeSettings(merged, fromEnv.settings);
	}
	return resolveConfig(mergeSettings(merged, options.overrides ?? emptySettings()), source);
}
