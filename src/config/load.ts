/**
 * Entry points for configuration: `loadConfig` (a file, or the embedded development config),
 * `parseConfig` (TOML text) and `parseArgs` (the command line). Precedence: command-line
 * flags, then the file, then defaults.
 * @module
 */

import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse as parseToml, TomlError } from "smol-toml";
import { DEFAULT_SOURCE, DEVELOPMENT_CONFIG } from "./defaults.ts";
import { readDocument } from "./document.ts";
import { ConfigError } from "./errors.ts";
import { resolveConfig } from "./resolve.ts";
import { emptySettings, mergeSettings, type SourcedSettings } from "./settings.ts";
import type { RelayConfig } from "./types.ts";

export { type CliArgs, parseArgs, USAGE } from "./args.ts";
export { ConfigError } from "./errors.ts";

/**
 * Load and validate the relay config from a TOML file, or the embedded development config
 * when `path` is null. `overrides` (from parseArgs) replace the file's values before the
 * cross-key checks run, so `--tls-generate localhost` can stand in for a missing certificate.
 * Throws ConfigError naming the file and key.
 */
export function loadConfig(path: string | null, overrides: SourcedSettings = emptySettings()): RelayConfig {
	if (path === null) return parseConfig(DEVELOPMENT_CONFIG, DEFAULT_SOURCE, { overrides, baseDir: process.cwd() });
	let text: string;
	try {
		text = readFileSync(path, "utf8");
	} catch (err) {
		const code = (err as NodeJS.ErrnoException).code;
		throw new ConfigError(path, "", code === "ENOENT" ? "config file not found" : `cannot read config file (${code})`);
	}
	return parseConfig(text, path, { overrides });
}

/** Options for parseConfig. */
export interface ParseOptions {
	/** Relative file paths in the config resolve against this; default: the directory of `source`. */
	baseDir?: string;
	/** Command-line settings that win over the file's. */
	overrides?: SourcedSettings;
}

/** Parse and validate TOML text. `source` names it in errors (usually the file path). */
export function parseConfig(text: string, source: string, options: ParseOptions = {}): RelayConfig {
	let document: Record<string, unknown>;
	try {
		document = parseToml(text);
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
	return resolveConfig(mergeSettings(fromFile, options.overrides ?? emptySettings()), source);
}
