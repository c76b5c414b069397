/**
 * Command-line parsing for `moq-fanout`. Flag names follow moq-relay where it has one
 * (`--server-bind`/`--listen`, `--tls-generate`, `--auth-public`, `--log-level` …). The config
 * file may be given positionally (moq-relay) or with `--config` (the seed documents).
 * @module
 */

import { resolve } from "node:path";
import { parseListenAddress } from "./address.ts";
import { parseClusterPeer } from "./cluster-urls.ts";
import { MAX_CLUSTER_ID, MAX_WORKERS } from "./defaults.ts";
import { ConfigError } from "./errors.ts";
import {
	certificateName,
	clusterNodeUrl,
	emptySettings,
	joinPeers,
	LOG_FORMATS,
	LOG_LEVELS,
	normalizePrefix,
	type SettingName,
	type Settings,
	type SourcedSettings,
	setSetting,
} from "./settings.ts";
import { integer, oneOf, type ValueParser } from "./table.ts";
import type { ClusterPeer } from "./types.ts";

/** What the command line asked for. */
export interface CliArgs {
	/** The config file, or null for the embedded development config. */
	configPath: string | null;
	help: boolean;
	version: boolean;
	/** Settings given as flags; they replace the file's values (see loadConfig). */
	overrides: SourcedSettings;
}

const CLI = "command line";

/** How one flag is read: its setting, how a value parses, and whether repeats accumulate. */
interface FlagSpec {
	setting: SettingName;
	parse: ValueParser<unknown>;
	/** Repeatable, and each value may be a comma-separated list. */
	list?: "comma" | "repeat";
}

const path: ValueParser<string> = (value) => {
	if (typeof value !== "string" || value === "") throw new Error("expected a path");
	return resolve(value);
};

const FLAGS: Record<string, FlagSpec> = {
	"--bind": { setting: "bind", parse: parseListenAddress },
	"--workers": {
		setting: "workers",
		parse: (value) => integer(0, MAX_WORKERS)(/^\d+$/.test(String(value)) ? Number(value) : value),
	},
	"--reuse-port": {
		setting: "reusePort",
		parse: (value) => {
			if (value === "true" || value === true) return true;
			if (value === "false" || value === false) return false;
			throw new Error("expected true or false");
		},
	},
	"--log-level": { setting: "logLevel", parse: oneOf(LOG_LEVELS) },
	"--log-format": { setting: "logFormat", parse: oneOf(LOG_FORMATS) },
	"--auth-public": { setting: "authPublic", parse: (value) => normalizePrefix(String(value)), list: "repeat" },
	"--auth-key": { setting: "authKey", parse: path },
	"--auth-key-dir": { setting: "authKeyDir", parse: path },
	"--tls-generate": { setting: "tlsGenerate", parse: certificateName, list: "comma" },
	"--tls-cert": { setting: "tlsCert", parse: path, list: "repeat" },
	"--tls-key": { setting: "tlsKey", parse: path, list: "repeat" },
	"--web-http-listen": {
		setting: "httpListen",
		parse: (value) => (value === "off" ? null : parseListenAddress(value)),
	},
	"--internal-listen": { setting: "internalListen", parse: parseListenAddress },
	"--cluster-connect": { setting: "clusterConnect", parse: parseClusterPeer, list: "comma" },
	"--cluster-token": { setting: "clusterToken", parse: path },
	"--cluster-node": { setting: "clusterNode", parse: clusterNodeUrl },
	"--cluster-id": {
		setting: "clusterId",
		parse: (value) => integer(1, MAX_CLUSTER_ID)(/^\d+$/.test(String(value)) ? Number(value) : value),
	},
};

/** moq-relay spellings of the same flags. */
const ALIASES: Record<string, string> = {
	"--server-bind": "--bind",
	"--listen": "--bind",
	"--server-tls-generate": "--tls-generate",
	"--server-tls-cert": "--tls-cert",
	"--server-tls-key": "--tls-key",
	"--http-listen": "--web-http-listen",
};

/** `--help` text. */
export const USAGE = `Usage: moq-fanout [relay.toml] [options]
       moq-fanout --config relay.toml [options]

A Media over QUIC (moq-lite) relay. Without a config file it runs the development
config: UDP+TCP [::]:4443, a generated certificate for localhost, anonymous access
under anon/. Flags override the file.

Options:
  -c, --config <file>          config file (TOML; see docs/configuration.md)
      --bind <host:port>       QUIC listen address (aliases --server-bind, --listen)
      --workers <n>            relay worker threads; 0 = one per core
      --reuse-port <bool>      one SO_REUSEPORT socket per worker (true), or one socket for all (false)
      --log-level <level>      trace, debug, info, warn or error
      --log-format <format>    text or json
      --tls-cert <file>        PEM certificate chain (repeat; pairs with --tls-key)
      --tls-key <file>         PEM private key (repeat)
      --tls-generate <names>   self-signed certificate for these comma-separated names
      --auth-key <file>        JWK file that verifies tokens
      --auth-key-dir <dir>     directory of {kid}.jwk files
      --auth-public <prefix>   path prefix open without a token (repeat; "" = all)
      --web-http-listen <addr> HTTP/WebSocket TCP address, or "off"
      --internal-listen <addr> plain HTTP for /metrics and /health (keep it private)
      --cluster-connect <urls> comma-separated relays to connect to
      --cluster-token <file>   token file for connecting to other relays
      --cluster-node <url>     this relay's own URL (its entry in [cluster] nodes)
      --cluster-id <n>         this relay's hop id, 1 to 2^53-1 (default: random per start)
  -h, --help                   show this help
  -V, --version                show the version
`;

/** Parse `process.argv.slice(2)`. Throws ConfigError (source "command line") naming the flag. */
export function parseArgs(argv: string[]): CliArgs {
	const result: CliArgs = { configPath: null, help: false, version: false, overrides: emptySettings() };
	const lists = new Map<SettingName, unknown[]>();
	let positionalOnly = false;

	for (let i = 0; i < argv.length; i++) {
		const arg = argv[i];
		if (positionalOnly || !arg.startsWith("-") || arg === "-") {
			setConfigPath(arg, "<file>");
			continue;
		}
		if (arg === "--") {
			positionalOnly = true;
			continue;
		}
		const eq = arg.indexOf("=");
		const rawName = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg;
		const inline = rawName === arg ? undefined : arg.slice(eq + 1);
		const name = ALIASES[rawName] ?? rawName;
		const takeValue = (): string => {
			if (inline !== undefined) return inline;
			const next = argv[i + 1];
			if (next === undefined || next.startsWith("--")) {
				throw new ConfigError(CLI, rawName, `needs a value (use ${rawName}=VALUE for values starting with "--")`);
			}
			i++;
			return next;
		};

		if (name === "-h" || name === "--help") {
			result.help = true;
		} else if (name === "-V" || name === "--version") {
			result.version = true;
		} else if (name === "-c" || name === "--config") {
			setConfigPath(takeValue(), rawName);
		} else {
			const spec = FLAGS[name];
			if (!spec) throw new ConfigError(CLI, rawName, "unknown option; see --help");
			const text = takeValue();
			const items = spec.list === "comma" ? text.split(",").map((item) => item.trim()) : [text];
			const parsed = items.map((item) => {
				try {
					return spec.parse(item);
				} catch (err) {
					throw new ConfigError(CLI, rawName, (err as Error).message);
				}
			});
			const origin = { source: CLI, key: rawName };
			if (spec.list) {
				const list = lists.get(spec.setting) ?? [];
				if (spec.setting === "clusterConnect") {
					try {
						joinPeers(list as ClusterPeer[], parsed as ClusterPeer[]);
					} catch (err) {
						throw new ConfigError(CLI, rawName, (err as Error).message);
					}
				} else {
					list.push(...parsed);
				}
				lists.set(spec.setting, list);
				setSetting(result.overrides, spec.setting, list as Settings[SettingName], origin);
			} else {
				setSetting(result.overrides, spec.setting, parsed[0] as Settings[SettingName], origin);
			}
		}
	}
	return result;

	function setConfigPath(value: string, flag: string): void {
		if (result.configPath !== null && result.configPath !== value) {
			throw new ConfigError(CLI, flag, `only one config file can be given (already have ${result.configPath})`);
		}
		result.configPath = value;
	}
}
