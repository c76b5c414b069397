/**
 * Browser test harness: bundles a page entry (an official client library plus its `window.moqPage`
 * adapter) with esbuild as an IIFE, serves it from `http://127.0.0.1:PORT/` (WebTransport needs a
 * secure context, and loopback http is one), and drives Debian's Chromium through playwright-core
 * with a fresh profile (flags: CHROMIUM_ARGS).
 * @module
 */

import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import type { PageApi } from "./page-api.ts";

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** CI=true (any value but "", "0" or "false"): every test must run, none may skip for a missing tool. */
export const IN_CI = !!process.env.CI && process.env.CI !== "0" && process.env.CI.toLowerCase() !== "false";

/** Why the browser tests cannot run here, or null when Chromium is installed. */
export function browserMissing(): string | null {
	if (existsSync(CHROMIUM_PATH)) return null;
	return `${CHROMIUM_PATH} not found (apt-get install chromium, or set CHROMIUM_PATH)`;
}

/**
 * The reason to skip the browser tests (counted as skipped in the run's summary), or null when they
 * run. Under CI a missing Chromium is not a reason: the tests run and fail, saying what is missing.
 */
export function browserSkipReason(): string | null {
	if (IN_CI) return null;
	const missing = browserMissing();
	return missing && `${missing}; browser tests skipped`;
}

/** Which page bundle: `page-net.ts`, `page-lite.ts` (both `PageApi`), or `page-ietf.ts` (`IetfPageApi`). */
export type PageLibrary = "net" | "lite" | "ietf";

const bundles = new Map<PageLibrary, Promise<string>>();

/** The page script for `library` as one IIFE (about 600 KB), built once per process. */
export function pageBundle(library: PageLibrary): Promise<string> {
	let bundle = bundles.get(library);
	if (bundle === undefined) {
		const entry = fileURLToPath(new URL(`./page-${library}.ts`, import.meta.url));
		bundle = build({
			entryPoints: [entry],
			bundle: true,
			format: "iife",
			platform: "browser",
			target: "chrome120",
			write: false,
			logLevel: "silent",
		}).then((r) => r.outputFiles[0].text);
		bundles.set(library, bundle);
	}
	return bundle;
}

const LIBRARIES: readonly PageLibrary[] = ["net", "lite", "ietf"];

const PAGE_HTML = `<!doctype html><meta charset="utf-8"><title>moq-fanout browser test</title>
<script src="/net.js"></script>`;

/**
 * Serves the test page at `/` and the bundles at `/net.js` and `/lite.js` on loopback (and any
 * library's page at `/LIBRARY.html` with its bundle at `/LIBRARY.js`).
 */
export interface PageServer {
	origin: string;
	close(): Promise<void>;
}

export async function startPageServer(): Promise<PageServer> {
	const server = http.createServer((req, res) => {
		const path = new URL(req.url ?? "/", "http://x").pathname;
		const library = LIBRARIES.find((l) => path === `/${l}.js`) ?? null;
		if (library !== null) {
			pageBundle(library).then(
				(js) => {
					res.writeHead(200, { "content-type": "text/javascript" });
					res.end(js);
				},
				(err) => {
					res.writeHead(500, { "content-type": "text/plain" });
					res.end(String(err));
				},
			);
			return;
		}
		const html = path === "/" ? "net" : LIBRARIES.find((l) => path === `/${l}.html`);
		if (html !== undefined) {
			res.writeHead(200, { "content-type": "text/html" });
			res.end(PAGE_HTML.replace("/net.js", `/${html}.js`));
			return;
		}
		res.writeHead(404).end();
	});
	await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
	const { port } = server.address() as AddressInfo;
	return {
		origin: `http://127.0.0.1:${port}`,
		close: () =>
			new Promise<void>((resolve) => {
				server.closeAllConnections();
				server.close(() => resolve());
			}),
	};
}

/** A headless Chromium with a fresh profile directory. */
export interface TestBrowser {
	context: BrowserContext;
	/** Console lines of every page, prefixed with the page's label. */
	console: string[];
	/**
	 * Opens a page with `library` loaded; resolves once `window.moqPage` exists. `Api` is what the
	 * page's `window.moqPage` is (`PageApi` for "net" and "lite").
	 */
	open<Api extends object = PageApi>(label: string, library: PageLibrary): Promise<TestPage<Api>>;
	close(): Promise<void>;
}

export interface TestPage<Api extends object = PageApi> {
	page: Page;
	label: string;
	/** Calls `window.moqPage[method](...args)` in the page and returns its (serializable) result. */
	call<K extends keyof Api>(
		method: K,
		...args: Api[K] extends (...a: infer A) => unknown ? A : never
	): Promise<Api[K] extends (...a: never[]) => infer R ? Awaited<R> : never>;
}

/** Chromium flags verified to run these pages headless; no WebTransport-specific flag is needed. */
export const CHROMIUM_ARGS = [
	"--no-sandbox",
	"--disable-gpu",
	"--no-first-run",
	"--disable-background-networking",
	"--disable-component-update",
	"--disable-sync",
];

export async function launchBrowser(pages: PageServer): Promise<TestBrowser> {
	const profile = await mkdtemp(join(tmpdir(), "moq-chromium-"));
	const context = await chromium
		.launchPersistentContext(profile, { executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS })
		.catch(async (err: unknown) => {
			await rm(profile, { recursive: true, force: true });
			throw err;
		});
	const lines: string[] = [];
	return {
		context,
		console: lines,
		async open<Api extends object = PageApi>(label: string, library: PageLibrary): Promise<TestPage<Api>> {
			const page = await context.newPage();
			page.on("console", (m) => lines.push(`[${label}] ${m.type()}: ${m.text()}`));
			page.on("pageerror", (e) => lines.push(`[${label}] pageerror: ${e.message}`));
			await page.goto(`${pages.origin}/${library === "net" ? "" : `${library}.html`}`);
			await page.waitForFunction(() => window.moqPage !== undefined, undefined, { timeout: 10_000 });
			const call = ((method: string, ...args: unknown[]) =>
				page.evaluate(
					([m, a]) => {
						const api = window.moqPage as unknown as Record<string, (...x: unknown[]) => unknown>;
						return api[m as string](...(a as unknown[]));
					},
					[method, args] as const,
				)) as TestPage<Api>["call"];
			return { page, label, call };
		},
		async close() {
			await context.close();
			await rm(profile, { recursive: true, force: true });
		},
	};
}
