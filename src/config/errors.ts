/**
 * Configuration errors. Every message names where the bad value came from (the file, or
 * "command line") and which key, so an operator can fix it without reading our source.
 * @module
 */

/** A configuration problem: an unknown key, a bad value, a missing file, a contradiction. */
export class ConfigError extends Error {
	/** The config file (as given), "<default>", or "command line". */
	readonly source: string;
	/** Dotted key path ("cache.track_bytes"), a flag ("--bind"), or "" when the whole file is at fault. */
	readonly key: string;

	/** `table: true` renders the key as a table header (`[cluster.foo]`) rather than `[cluster] foo`. */
	constructor(source: string, key: string, message: string, options?: { table?: boolean }) {
		const where = !key ? "" : options?.table && !key.startsWith("-") ? `[${key}]: ` : `${describeKey(key)}: `;
		super(`${source}: ${where}${message}`);
		this.name = "ConfigError";
		this.source = source;
		this.key = key;
	}
}

/**
 * Render a dotted key the way it is written in TOML: `[cache] track_bytes`.
 * Flags (`--bind`) and top-level keys are shown as they are.
 */
export function describeKey(key: string): string {
	if (key.startsWith("-")) return key;
	const dot = key.lastIndexOf(".");
	if (dot < 0) return key;
	return `[${key.slice(0, dot)}] ${key.slice(dot + 1)}`;
}

/** A short, unambiguous rendering of a TOML value for error messages. */
export function describeValue(value: unknown): string {
	if (typeof value === "string") return JSON.stringify(value);
	if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value);
	if (Array.isArray(value)) return "an array";
	if (value instanceof Date) return "a date";
	if (value !== null && typeof value === "object") {
		// smol-toml returns TomlDate (a Date subclass) for dates; anything else is a table.
		return "a table";
	}
	return String(value);
}
