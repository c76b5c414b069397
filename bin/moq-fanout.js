#!/usr/bin/env node
// Launcher for the `moq-fanout` command. The relay needs Node >= 22.12 (SO_REUSEPORT, type
// stripping); when npm runs this with an older system Node, re-run it on the Node this package pins.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const entry = join(root, "src", "bin", "moq-fanout.ts");
const [major, minor] = process.versions.node.split(".").map(Number);
if (major > 22 || (major === 22 && minor >= 18)) {
	await import(entry);
} else {
	const candidates = [join(root, "node_modules", "node", "bin", "node"), join(root, "node_modules", ".bin", "node")];
	const node = candidates.find((p) => existsSync(p));
	if (!node) {
		console.error(`moq-fanout needs Node >= 22.18 (found ${process.versions.node}); run 'npm install' in ${root}`);
		process.exit(1);
	}
	const res = spawnSync(node, [entry, ...process.argv.slice(2)], { stdio: "inherit" });
	process.exit(res.status ?? 1);
}
