/**
 * `npm run build` (and `prepack`): transpiles src/ to JavaScript in dist/, one file per source file
 * (src/a/b.ts → dist/a/b.js), for the published package, which runs on the user's Node (package.json
 * `engines`) without type stripping. Development keeps running the .ts sources (`npm start`, `npm test`).
 *
 * Not a bundle, on purpose: the layout stays the same depth as src/, so every path a module builds
 * from its own location still resolves. `new URL("../../package.json", import.meta.url)` reaches
 * the package root from dist/ as it does from src/; `new URL("../worker/entry.ts", import.meta.url)`
 * (the worker threads' entry) is rewritten to `.js` like every relative import; `createRequire(
 * import.meta.url)` (the quiche addon in quic/native.ts) resolves from the package's node_modules.
 * After writing, every relative specifier in the output is checked to name a file that exists, and
 * any leftover relative `.ts` string fails the build, so a new `import.meta` path in src/ that the
 * build does not handle is caught here rather than in an installed package.
 *
 * The output goes to a scratch folder first and replaces dist/ only when complete and checked.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { build } from "esbuild";

const root = resolve(import.meta.dirname, "..");
const srcDir = join(root, "src");
const distDir = join(root, "dist");
/** Node the output must run on (the package's `engines`). */
const TARGET = "node22.19";

function sources(dir: string, out: string[] = []): string[] {
	for (const name of readdirSync(dir).sort()) {
		const p = join(dir, name);
		if (statSync(p).isDirectory()) sources(p, out);
		else if (name.endsWith(".ts") && !name.endsWith(".d.ts") && !name.endsWith(".test.ts")) out.push(p);
	}
	return out;
}

/**
 * Relative module specifiers in esbuild's output: `from "./x.ts"`, `import "./x.ts"`,
 * `import("./x.ts")`, `new URL("./x.ts", import.meta.url)`. Group 1 is the lead-in, 2 the quote,
 * 3 the path.
 */
const SPECIFIER = /(\bfrom\s*|\bimport\s*\(?\s*|\bnew URL\(\s*)(["'])(\.{1,2}\/[^"'\n]*)\2/g;

export interface BuildResult {
	files: number;
	bytes: number;
	ms: number;
}

export async function buildDist(): Promise<BuildResult> {
	const started = Date.now();
	const entryPoints = sources(srcDir);
	if (entryPoints.length === 0) throw new Error(`no sources under ${srcDir}`);
	const result = await build({
		entryPoints,
		outbase: srcDir,
		outdir: distDir,
		bundle: false,
		format: "esm",
		platform: "node",
		target: TARGET,
		tsconfig: join(root, "tsconfig.json"),
		// Comments other than licences go; names and layout stay readable for stack traces.
		legalComments: "inline",
		charset: "utf8",
		write: false,
		logLevel: "warning",
	});
	const scratch = join(root, `.dist-build-${process.pid}`);
	rmSync(scratch, { recursive: true, force: true });
	const problems: string[] = [];
	const written = new Set<string>();
	let bytes = 0;
	try {
		for (const file of result.outputFiles) {
			const rel = relative(distDir, file.path);
			const text = file.text.replace(SPECIFIER, (_m, lead: string, q: string, spec: string) => {
				const js = spec.endsWith(".ts") ? `${spec.slice(0, -3)}.js` : spec;
				return `${lead}${q}${js}${q}`;
			});
			const target = join(scratch, rel);
			mkdirSync(dirname(target), { recursive: true });
			writeFileSync(target, text);
			written.add(rel.split(sep).join("/"));
			bytes += Buffer.byteLength(text);
		}
		// Check what was written: resolve each relative specifier from the file's place in dist/.
		for (const rel of written) {
			const text = readFileSync(join(scratch, rel), "utf8");
			for (const m of text.matchAll(SPECIFIER)) {
				const spec = m[3];
				const inDist = resolve(join(distDir, dirname(rel)), spec);
				const exists = inDist.startsWith(distDir + sep)
					? written.has(relative(distDir, inDist).split(sep).join("/"))
					: existsSync(inDist);
				if (!exists) problems.push(`dist/${rel}: "${spec}" does not resolve (${relative(root, inDist)})`);
			}
			for (const m of text.matchAll(/(["'`])(\.{1,2}\/[^"'`\n]*\.ts)\1/g)) {
				problems.push(`dist/${rel}: leftover .ts path ${m[0]} (use new URL("./x.ts", import.meta.url))`);
			}
		}
		if (problems.length > 0) throw new Error(`build check failed:\n  ${problems.join("\n  ")}`);
		rmSync(distDir, { recursive: true, force: true });
		renameSync(scratch, distDir);
	} finally {
		rmSync(scratch, { recursive: true, force: true });
	}
	return { files: written.size, bytes, ms: Date.now() - started };
}

if (import.meta.main) {
	const r = await buildDist().catch((err: Error) => {
		console.error(`build: ${err.message}`);
		process.exit(1);
	});
	console.log(`build: ${r.files} files, ${(r.bytes / 1024).toFixed(0)} KiB in dist/ (${r.ms} ms)`);
}
