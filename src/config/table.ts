/**
 * A checked view of one TOML table: typed reads that name the key on failure, and a final
 * check that rejects every key nobody read (moq-relay's `deny_unknown_fields`).
 * @module
 */

import { ConfigError, describeValue } from "./errors.ts";

/** Parses one raw TOML value; throws an Error whose message says what was expected. */
export type ValueParser<T> = (value: unknown) => T;

/** True for a TOML table (smol-toml gives plain objects; dates are Date instances). */
export function isTable(value: unknown): value is Record<string, unknown> {
	return value !== null && typeof value === "object" && !Array.isArray(value) && !(value instanceof Date);
}

/** One TOML table under a dotted path, read key by key. */
export class TableReader {
	readonly source: string;
	/** Dotted path of this table; "" for the document root. */
	readonly path: string;
	#table: Record<string, unknown>;
	#known = new Set<string>();
	#unsupported = new Map<string, string>();

	constructor(source: string, path: string, table: Record<string, unknown>) {
		this.source = source;
		this.path = path;
		this.#table = table;
	}

	/** The dotted path of a key in this table. */
	keyPath(key: string): string {
		return this.path ? `${this.path}.${key}` : key;
	}

	/** Whether the key is present (and marks it known). */
	has(key: string): boolean {
		this.#known.add(key);
		return Object.hasOwn(this.#table, key);
	}

	/** An error about one key of this table. */
	error(key: string, message: string): ConfigError {
		return new ConfigError(this.source, this.keyPath(key), message);
	}

	/** An error about the table as a whole (cross-key rules). */
	tableError(message: string): ConfigError {
		return new ConfigError(this.source, this.path, message, { table: true });
	}

	/** Read and parse an optional key; a parse failure becomes a ConfigError naming it. */
	read<T>(key: string, parse: ValueParser<T>): T | undefined {
		if (!this.has(key)) return undefined;
		try {
			return parse(this.#table[key]);
		} catch (err) {
			if (err instanceof ConfigError) throw err;
			throw this.error(key, (err as Error).message);
		}
	}

	/** A nested table, or undefined when absent; a non-table value is an error. */
	table(key: string): TableReader | undefined {
		if (!this.has(key)) return undefined;
		const value = this.#table[key];
		if (!isTable(value)) throw this.error(key, `expected a table, got ${describeValue(value)}`);
		return new TableReader(this.source, this.keyPath(key), value);
	}

	/** A key moq-relay knows but moq-fanout does not implement: a precise error beats "unknown key". */
	unsupported(key: string, why: string): void {
		this.#unsupported.set(key, why);
	}

	/** Reject every key that was not read: unknown keys are mistakes, never silently ignored. */
	finish(): void {
		for (const key of Object.keys(this.#table)) {
			if (this.#known.has(key)) continue;
			const why = this.#unsupported.get(key);
			if (why !== undefined) throw this.error(key, `moq-relay option not supported by moq-fanout: ${why}`);
			const expected = [...this.#known].join(", ");
			const hint = expected ? `; expected one of: ${expected}` : "";
			if (isTable(this.#table[key])) {
				throw new ConfigError(this.source, this.keyPath(key), `unknown table${hint}`, { table: true });
			}
			throw this.error(key, `unknown key${hint}`);
		}
	}
}

// ── Value parsers ──────────────────────────────────────────────────────

/** A string. */
export function string(value: unknown): string {
	if (typeof value !== "string") throw new Error(`expected a string, got ${describeValue(value)}`);
	return value;
}

/** A non-empty string (file paths, URLs). */
export function nonEmptyString(value: unknown): string {
	if (typeof value !== "string" || value === "") {
		throw new Error(`expected a non-empty string, got ${describeValue(value)}`);
	}
	return value;
}

/** A string or an array of strings (moq-relay's `OneOrMany`). */
export function stringList(value: unknown): string[] {
	if (typeof value === "string") return [value];
	if (Array.isArray(value) && value.every((item) => typeof item === "string")) return value as string[];
	throw new Error(`expected a string or an array of strings, got ${describeValue(value)}`);
}

/** A boolean. */
export function boolean(value: unknown): boolean {
	if (typeof value !== "boolean") throw new Error(`expected true or false, got ${describeValue(value)}`);
	return value;
}

/** An integer within [min, max]. */
export function integer(min: number, max: number): ValueParser<number> {
	return (value) => {
		if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
			const what = min === 0 ? "a non-negative integer" : min === 1 ? "a positive integer" : "an integer";
			throw new Error(`expected ${what} from ${min} to ${max}, got ${describeValue(value)}`);
		}
		return value;
	};
}

/** One of a fixed set of strings, case-insensitive; returns the canonical lowercase form. */
export function oneOf<T extends string>(choices: readonly T[]): ValueParser<T> {
	return (value) => {
		const lower = typeof value === "string" ? value.toLowerCase() : undefined;
		const found = choices.find((choice) => choice === lower);
		if (found === undefined) throw new Error(`expected one of ${choices.join(", ")}, got ${describeValue(value)}`);
		return found;
	};
}
