/**
 * `npm test`: runs every test file under test/ with Node's test runner (on the Node the project
 * pins), then prints one summary line. Extra arguments are passed through (e.g. a file or --test-name-pattern).
 */
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

function find(dir: string, out: string[]): string[] {
	for (const name of readdirSync(dir)) {
		const p = join(dir, name);
		if (statSync(p).isDirectory()) find(p, out);
		else if (name.endsWith(".test.ts")) out.push(p);
	}
	return out;
}

const args = process.argv.slice(2);
const files = args.some((a) => a.endsWith(".ts")) ? [] : find("test", []).sort();
const res = spawnSync(
	process.execPath,
	["--test", "--test-concurrency=1", "--test-timeout=180000", ...args, ...files],
	// A file that leaves a socket open after a failed hook would keep the runner waiting: fail the
	// run after 20 minutes instead of letting CI sit until its own limit.
	{ stdio: "inherit", timeout: 20 * 60_000, killSignal: "SIGKILL" },
);
if (res.error) console.error(`npm test: ${res.error.message}`);
process.exit(res.status ?? 1);
