#!/usr/bin/env node
// Package `bin` entry for moq-token. The CLI is TypeScript run by Node's type stripping (Node >= 22.12
// with type stripping enabled). npm may start this file with an older system Node, so in that case
// re-execute the CLI with the Node 24 that this package depends on (the `node` npm package).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const entry = join(root, "src", "bin", "moq-token.ts");

const [major, minor] = process.versions.node.split(".").map(Number);
const recentEnough = major > 22 || (major === 22 && minor >= 12);
// Node 22.12-22.17 only strips types behind a flag: process.features.typescript says if it is on.
const stripsTypes = Boolean(process.features?.typescript);

if (recentEnough && stripsTypes) {
	await import(pathToFileURL(entry).href);
} else {
	const node = findNode();
	if (node === null) {
		process.stderr.write(
			`moq-token needs Node >= 22.12 with type stripping (this is ${process.version}), ` +
				"and the bundled node package was not found; run `npm install` in the package.\n",
		);
		process.exit(1);
	}
	const child = spawn(node, [entry, ...process.argv.slice(2)], { stdio: "inherit" });
	for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
		process.on(signal, () => child.kill(signal));
	}
	child.on("error", (err) => {
		process.stderr.write(`moq-token: cannot start ${node}: ${err.message}\n`);
		process.exit(1);
	});
	child.on("exit", (code, signal) => {
		if (signal) process.kill(process.pid, signal);
		else process.exit(code === null ? 1 : code);
	});
}

/** The Node binary of the `node` npm package: nested, linked in .bin, or hoisted next to this package. */
function findNode() {
	const candidates = [join(root, "node_modules", "node", "bin", "node"), join(root, "node_modules", ".bin", "node")];
	try {
		const pkg = createRequire(join(root, "package.json")).resolve("node/package.json");
		candidates.push(join(dirname(pkg), "bin", "node"));
	} catch {
		// not resolvable: only the fixed candidates
	}
	for (const candidate of candidates) if (existsSync(candidate)) return candidate;
	return null;
}
