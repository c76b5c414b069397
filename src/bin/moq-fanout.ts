/**
 * `moq-fanout [relay.toml] [--config relay.toml] [flags]`: loads and validates the config, then runs
 * the relay. Config errors, bad certificate or key files and busy ports (src/main/startup.ts) name
 * the file and key on one line and exit with status 2.
 */
import { readFileSync } from "node:fs";
import { ConfigError, loadConfig, parseArgs, USAGE } from "../config/load.ts";
import { createLogger } from "../log/logger.ts";
import { runRelay } from "../main/run.ts";
import { StartupError } from "../main/startup.ts";

function version(): string {
	const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
	return pkg.version;
}

async function main(): Promise<void> {
	let args: ReturnType<typeof parseArgs>;
	try {
		args = parseArgs(process.argv.slice(2));
	} catch (err) {
		process.stderr.write(`moq-fanout: ${(err as Error).message}\n\n${USAGE}`);
		process.exit(2);
	}
	if (args.help) {
		process.stdout.write(USAGE);
		return;
	}
	if (args.version) {
		process.stdout.write(`moq-fanout ${version()}\n`);
		return;
	}
	let config: ReturnType<typeof loadConfig>;
	try {
		config = loadConfig(args.configPath, args.overrides);
	} catch (err) {
		if (err instanceof ConfigError) {
			process.stderr.write(`moq-fanout: ${err.message}\n`);
			process.exit(2);
		}
		throw err;
	}
	const log = createLogger(config.log.level, config.log.format);
	try {
		await runRelay(config, log);
	} catch (err) {
		if (err instanceof StartupError) {
			process.stderr.write(`moq-fanout: ${err.message}\n`);
			process.exit(2);
		}
		// A worker that could not bind (a port taken between the check and the bind) is a port
		// problem too, not a bug: one line, status 2.
		const message = err instanceof Error ? err.message : String(err);
		if (/\b(EADDRINUSE|EACCES|EADDRNOTAVAIL)\b/.test(message)) {
			process.stderr.write(`moq-fanout: ${config.source}: [server] bind: ${message.split("\n")[0]}\n`);
			process.exit(2);
		}
		throw err;
	}
}

await main();
