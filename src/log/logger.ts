import type { LogLevel } from "../config/types.ts";

const RANK: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50 };

export type LogFields = Record<string, unknown>;

export interface Logger {
	readonly level: LogLevel;
	enabled(level: LogLevel): boolean;
	trace(msg: string, fields?: LogFields): void;
	debug(msg: string, fields?: LogFields): void;
	info(msg: string, fields?: LogFields): void;
	warn(msg: string, fields?: LogFields): void;
	error(msg: string, fields?: LogFields): void;
	child(fields: LogFields): Logger;
}

/** One level of a Logger, e.g. `log.warn`: what a caller takes when it only ever logs at one level. */
export type LogLine = Logger["warn"];

/** Keys whose values are never written (tokens travel in URLs and query strings). */
const SECRET_KEYS = new Set(["jwt", "token", "authorization", "key", "secret"]);

function scrub(fields: LogFields): LogFields {
	let out: LogFields | null = null;
	for (const k in fields) {
		if (SECRET_KEYS.has(k.toLowerCase())) {
			out ??= { ...fields };
			out[k] = "[redacted]";
		}
	}
	return out ?? fields;
}

/**
 * A small structured logger: one line per event, text (`level msg k=v`) or JSON, on stderr.
 * Control-plane only: the data plane counts into metrics instead of logging.
 */
export function createLogger(
	level: LogLevel,
	format: "text" | "json" = "text",
	base: LogFields = {},
	sink: (line: string) => void = (l) => process.stderr.write(l + "\n"),
): Logger {
	const min = RANK[level];
	const emit = (lvl: LogLevel, msg: string, fields?: LogFields) => {
		if (RANK[lvl] < min) return;
		const all = fields ? scrub({ ...base, ...fields }) : base;
		if (format === "json") {
			sink(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...all }));
			return;
		}
		let line = `${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} ${msg}`;
		for (const k in all) {
			const v = all[k];
			const s =
				typeof v === "string"
					? /[\s="]/.test(v)
						? JSON.stringify(v)
						: v
					: v instanceof Error
						? JSON.stringify(v.message)
						: JSON.stringify(v);
			line += ` ${k}=${s}`;
		}
		sink(line);
	};
	return {
		level,
		enabled: (l) => RANK[l] >= min,
		trace: (m, f) => emit("trace", m, f),
		debug: (m, f) => emit("debug", m, f),
		info: (m, f) => emit("info", m, f),
		warn: (m, f) => emit("warn", m, f),
		error: (m, f) => emit("error", m, f),
		child: (f) => createLogger(level, format, { ...base, ...f }, sink),
	};
}

export const silentLogger: Logger = createLogger("error", "text", {}, () => {});
