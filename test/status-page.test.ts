/**
 * The status page (`GET /`, src/http/status-page.ts) and its data (`GET /status`,
 * src/worker/status.ts), against the real relay process with 2 workers: a publisher and two
 * viewers on raw QUIC, then headless Chromium (playwright-core, a fresh profile) loads the page and
 * must show the broadcast, its viewer count, a non-zero bitrate and the sessions of each worker.
 * The page is kept as docs/status-page.png (rewritten when missing or with MOQ_UPDATE_SCREENSHOT=1;
 * otherwise the screenshot goes to the test's temporary directory). A broadcast path that is HTML
 * markup must be shown as text, never parsed. With `[internal] listen` the page and its data are
 * served there alone.
 *
 * Without Chromium the browser tests are skipped with the reason, except under CI=true, where a
 * missing browser fails them (as in test/browser.test.ts). The JSON test needs no browser.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { MoqClient } from "../src/client/index.ts";
import type { PublishedTrack } from "../src/client/publisher.ts";
import { type HttpServerHandle, startHttpServer } from "../src/http/server.ts";
import { connectQuic } from "../src/quic/client.ts";
import type { RelayStatus } from "../src/worker/status.ts";
import { browserMissing, browserSkipReason, CHROMIUM_ARGS, CHROMIUM_PATH, IN_CI } from "./browser/harness.ts";
import { freePort, type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import { until } from "./support/wait.ts";

const SKIP = browserSkipReason() ?? false;
const SCREENSHOT = resolve(import.meta.dirname, "..", "docs", "status-page.png");
/** The committed screenshot is rewritten only when missing or asked for, so a test run leaves the tree clean. */
const UPDATE_SCREENSHOT = process.env.MOQ_UPDATE_SCREENSHOT === "1" || !existsSync(SCREENSHOT);
const BROADCAST = "live/demo";
const HOSTILE = "xss/<img src=x onerror=window.__xss=1>";

async function client(relay: RelayProcess): Promise<MoqClient> {
	const quic = await connectQuic({ host: "127.0.0.1", port: relay.port, alpns: ["moq-lite-05"], insecure: true });
	return MoqClient.connect(quic, { path: "/" });
}

/** A viewer of `broadcast`/`track` that has received at least one frame. */
async function viewer(relay: RelayProcess, broadcast: string, track: string): Promise<MoqClient> {
	const c = await client(relay);
	const watch = c.announced("");
	await until(() => watch.active.has(broadcast), 5000, `${broadcast} announced to the viewer`);
	let frames = 0;
	c.subscribe(broadcast, track, {}, { onFrame: () => frames++ });
	await until(() => frames > 0, 5000, `a frame of ${broadcast} at a viewer`);
	return c;
}

async function status(relay: RelayProcess): Promise<RelayStatus> {
	const r = await fetch(`${relay.base}/status`);
	assert.equal(r.status, 200);
	return (await r.json()) as RelayStatus;
}

describe("status page routes", () => {
	const servers: HttpServerHandle[] = [];
	const serve = async (status?: () => Promise<unknown>) => {
		const s = await startHttpServer({
			host: "127.0.0.1",
			port: 0,
			fingerprint: () => null,
			onSession: () => {},
			status,
		});
		servers.push(s);
		return `http://127.0.0.1:${s.port}`;
	};
	after(async () => {
		for (const s of servers) await s.close();
	});

	test("/ and /status only with a status source; the page's headers; a failing source answers 500", async () => {
		const none = await serve();
		for (const path of ["/", "/status"]) assert.equal((await fetch(none + path)).status, 404, path);

		const base = await serve(async () => ({ broadcasts: [{ path: "</script><b>x" }] }));
		const page = await fetch(`${base}/`);
		assert.equal(page.status, 200);
		assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
		assert.equal(page.headers.get("x-content-type-options"), "nosniff");
		assert.equal(page.headers.get("access-control-allow-origin"), null);
		const csp = page.headers.get("content-security-policy") ?? "";
		const nonce = /script-src 'nonce-([A-Za-z0-9+/=]+)'/.exec(csp)?.[1];
		assert.ok(nonce, csp);
		assert.match(csp, /^default-src 'none'; /);
		assert.match(csp, /connect-src 'self'/);
		const html = await page.text();
		assert.ok(html.includes(`<script nonce="${nonce}">`));
		assert.ok(!/<script[^>]*src=|<link|@import|url\(/i.test(html), "nothing external");
		const again = (await fetch(`${base}/`)).headers.get("content-security-policy");
		assert.notEqual(again, csp, "a fresh nonce per response");

		const data = await fetch(`${base}/status`);
		assert.equal(data.headers.get("content-type"), "application/json");
		assert.equal(data.headers.get("x-content-type-options"), "nosniff");
		assert.deepEqual(await data.json(), { broadcasts: [{ path: "</script><b>x" }] });
		assert.equal((await fetch(`${base}/status`, { method: "HEAD" })).status, 200);

		const failing = await serve(() => Promise.reject(new Error("boom")));
		const r = await fetch(`${failing}/status`);
		assert.equal(r.status, 500);
		assert.equal(await r.text(), "internal error");
	});
});

describe("status page with [internal] listen", { timeout: 60_000 }, () => {
	test("served on the internal listener only; the public listener answers 404", async () => {
		const dir = mkdtempSync(join(tmpdir(), "moq-status-internal-"));
		const internal = await freePort();
		const config = join(dir, "relay.toml");
		writeFileSync(
			config,
			`[server.tls]\ngenerate = ["localhost", "127.0.0.1"]\n[auth]\npublic = ""\n[internal]\nlisten = "127.0.0.1:${internal}"\n`,
		);
		const relay = await startRelayProcess([config, "--workers", "2", "--log-level", "warn"]);
		try {
			const base = `http://127.0.0.1:${internal}`;
			const page = await fetch(`${base}/`);
			assert.equal(page.status, 200);
			assert.match(await page.text(), /<title>moq-fanout status<\/title>/);
			const s = (await (await fetch(`${base}/status`)).json()) as RelayStatus;
			assert.equal(s.workers.length, 2);
			assert.equal(s.complete, true);
			for (const path of ["/", "/status"]) {
				const r = await fetch(relay.base + path);
				assert.equal(r.status, 404, `public ${path}`);
				await r.body?.cancel();
			}
		} finally {
			await relay.stop();
			rmSync(dir, { recursive: true, force: true });
		}
	});
});

/** Open sessions per worker once they add up to `total` (figures are refreshed once a second). */
async function sessionsPerWorker(relay: RelayProcess, total: number): Promise<number[]> {
	let per: number[] = [];
	await until(
		async () => {
			const s = await status(relay);
			per = s.workers.map((w) => w.sessions.quic + w.sessions.webtransport + w.sessions.websocket);
			return per.reduce((a, b) => a + b, 0) === total;
		},
		5000,
		`${total} sessions in /status`,
	);
	return per;
}

describe("status page", { timeout: 120_000 }, () => {
	let dir: string;
	let relay: RelayProcess;
	const clients: MoqClient[] = [];
	const timers: ReturnType<typeof setInterval>[] = [];

	/** Publishes `path` with one track, writing a 1 KiB group every 50 ms (about 160 kbit/s). */
	async function publish(path: string, track: string): Promise<PublishedTrack> {
		const pub = await client(relay);
		clients.push(pub);
		const t = pub.publish(path).track(track);
		const payload = new Uint8Array(1024).fill(7);
		timers.push(setInterval(() => t.writeGroup([payload]), 50));
		return t;
	}

	before(async () => {
		dir = mkdtempSync(join(tmpdir(), "moq-status-"));
		const config = join(dir, "relay.toml");
		writeFileSync(config, `[server.tls]\ngenerate = ["localhost", "127.0.0.1"]\n[auth]\npublic = ""\n`);
		relay = await startRelayProcess([config, "--workers", "2", "--log-level", "warn"]);
		await publish(BROADCAST, "video");
		await until(async () => (await status(relay)).broadcasts.length === 1, 5000, "the broadcast in /status");
		const publisherWorker = (await status(relay)).broadcasts[0].worker;
		// The kernel spreads connections over the workers by address: keep connecting until at least
		// one of the two viewers is on a worker other than the publisher's, so the viewer counts
		// must be gathered across workers.
		const viewers: MoqClient[] = [];
		for (let attempt = 0; ; attempt++) {
			viewers.push(await viewer(relay, BROADCAST, "video"));
			const perWorker = await sessionsPerWorker(relay, 1 + viewers.length);
			const elsewhere = perWorker.some((n, w) => w !== publisherWorker && n > 0);
			if (viewers.length === 2 && elsewhere) break;
			if (viewers.length === 2) {
				assert.ok(attempt < 12, "every viewer landed on the publisher's worker");
				viewers.pop()!.close(0, "");
				await sessionsPerWorker(relay, 2);
			}
		}
		clients.push(...viewers);
	});
	after(async () => {
		for (const t of timers) clearInterval(t);
		for (const c of clients) c.close(0, "");
		await relay?.stop();
		if (dir) rmSync(dir, { recursive: true, force: true });
	});

	test("/status: every worker's sessions, the broadcast with its viewers summed over the workers", async () => {
		let s = await status(relay);
		// Each worker copies its figures to shared memory once a second.
		await until(
			async () => {
				s = await status(relay);
				const b = s.broadcasts.find((x) => x.path === BROADCAST);
				const sessions = s.workers.reduce((n, w) => n + w.sessions.quic, 0);
				return b?.viewers === 2 && sessions === 3;
			},
			5000,
			"/status to show 3 sessions and 2 viewers",
		);
		assert.equal(s.complete, true);
		assert.equal(s.workers.length, 2);
		assert.deepEqual(
			s.workers.map((w) => w.index),
			[0, 1],
		);
		const b = s.broadcasts.find((x) => x.path === BROADCAST)!;
		assert.deepEqual(b.tracks, [{ name: "video", viewers: 2 }]);
		assert.equal(
			s.workers.reduce((n, w) => n + w.viewers, 0),
			2,
		);
		assert.equal(
			s.workers.reduce((n, w) => n + w.publishing, 0),
			1,
		);
		assert.ok(s.workers.every((w) => w.answered));
		// At least one viewer is on another worker than the publisher: its count came from that worker.
		assert.ok(
			s.workers.some((w) => w.index !== b.worker && w.viewers > 0),
			JSON.stringify(s.workers),
		);

		const r = await fetch(`${relay.base}/status`);
		assert.equal(r.headers.get("x-content-type-options"), "nosniff");
		assert.equal(r.headers.get("access-control-allow-origin"), null, "no CORS on the status data");
		await r.body?.cancel();
	});

	test("Chromium is installed (required under CI=true)", { skip: SKIP }, () => {
		const missing = browserMissing();
		assert.equal(missing, null, `${missing}: the status page tests cannot run${IN_CI ? " and CI=true" : ""}`);
	});

	describe("in headless Chromium", () => {
		let profile: string;
		let context: BrowserContext;
		let page: Page;
		const errors: string[] = [];

		before(async () => {
			if (SKIP || browserMissing()) return;
			profile = mkdtempSync(join(tmpdir(), "moq-chromium-"));
			context = await chromium.launchPersistentContext(profile, {
				executablePath: CHROMIUM_PATH,
				headless: true,
				args: CHROMIUM_ARGS,
				viewport: { width: 960, height: 600 },
				colorScheme: "light",
			});
			page = await context.newPage();
			page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
			page.on("console", (m) => {
				if (m.type() === "error") errors.push(`console: ${m.text()}`);
			});
		});
		after(async () => {
			await context?.close();
			if (profile) rmSync(profile, { recursive: true, force: true });
		});

		test("shows the broadcast, its viewers, a bitrate and the sessions per worker", { skip: SKIP }, async () => {
			assert.ok(page, browserMissing() ?? "the browser did not start");
			const response = await page.goto(`${relay.base}/`);
			assert.ok(response);
			assert.equal(response.status(), 200);
			const headers = response.headers();
			assert.match(headers["content-type"], /^text\/html/);
			assert.equal(headers["x-content-type-options"], "nosniff");
			assert.match(headers["content-security-policy"], /default-src 'none'/);
			assert.match(headers["content-security-policy"], /connect-src 'self'/);

			// The page needs two samples a few seconds apart for a bitrate.
			await page.waitForFunction(
				(path) => {
					const row = [...document.querySelectorAll("#broadcasts tr.broadcast")].find(
						(r) => r.querySelector("td.path")?.textContent === path,
					);
					const out = document.querySelectorAll("table.worker tr[data-field=bitrate-out] td");
					return (
						row?.querySelector("td.viewers")?.textContent === "2" &&
						[...out].some((td) => /^[1-9]|^0\.\d*[1-9]/.test(td.textContent ?? "")) &&
						/ 3 sessions /.test(document.getElementById("summary")?.textContent ?? "")
					);
				},
				BROADCAST,
				{ timeout: 15_000 },
			);
			const shown = await page.evaluate(() => ({
				summary: document.getElementById("summary")?.textContent ?? "",
				workers: [...document.querySelectorAll("table.worker")].map((t) => {
					const field = (k: string) => t.querySelector(`tr[data-field="${k}"] td`)?.textContent ?? "";
					return {
						caption: t.querySelector("caption")?.textContent ?? "",
						sessions: field("sessions"),
						quic: field("quic"),
						viewers: field("viewers"),
						in: field("bitrate-in"),
						out: field("bitrate-out"),
						udpDrops: field("udp-drops"),
					};
				}),
				broadcasts: [...document.querySelectorAll("#broadcasts tr.broadcast")].map((r) => ({
					path: r.querySelector("td.path")?.textContent,
					viewers: r.querySelector("td.viewers")?.textContent,
					tracks: r.querySelector("td.tracks")?.textContent,
				})),
			}));
			assert.deepEqual(
				shown.workers.map((w) => w.caption),
				["Worker 0", "Worker 1"],
			);
			assert.equal(
				shown.workers.reduce((n, w) => n + Number(w.sessions), 0),
				3,
			);
			assert.equal(
				shown.workers.reduce((n, w) => n + Number(w.quic), 0),
				3,
			);
			assert.equal(
				shown.workers.reduce((n, w) => n + Number(w.viewers), 0),
				2,
			);
			// Each worker's QUIC socket drop count is shown; a few viewers never fill a socket.
			assert.deepEqual(
				shown.workers.map((w) => w.udpDrops),
				["0", "0"],
			);
			assert.deepEqual(shown.broadcasts, [{ path: BROADCAST, viewers: "2", tracks: "video (2)" }]);
			assert.match(shown.summary, / 2 workers · 3 sessions · 1 broadcasts · 2 viewers · in \d/);
			// The publisher's worker receives about 160 kbit/s.
			assert.ok(
				shown.workers.some((w) => /^\d+(\.\d+)? kbit\/s$/.test(w.in) && !w.in.startsWith("0")),
				JSON.stringify(shown.workers),
			);
			assert.deepEqual(errors, []);

			const shot = UPDATE_SCREENSHOT ? SCREENSHOT : join(dir, "status-page.png");
			mkdirSync(resolve(shot, ".."), { recursive: true });
			await page.screenshot({ path: shot, fullPage: true });
		});

		test("a broadcast path that is markup is shown as text", { skip: SKIP }, async () => {
			assert.ok(page, browserMissing() ?? "the browser did not start");
			await publish(HOSTILE, "video");
			clients.push(await viewer(relay, HOSTILE, "video"));
			await page.waitForFunction(
				(path) =>
					[...document.querySelectorAll("#broadcasts td.path")].some((td) => td.textContent === path) &&
					[...document.querySelectorAll("#broadcasts td.tracks")].length === 2,
				HOSTILE,
				{ timeout: 10_000 },
			);
			const dom = await page.evaluate(() => ({
				images: document.querySelectorAll("img").length,
				xss: (window as unknown as { __xss?: unknown }).__xss ?? null,
				paths: [...document.querySelectorAll("#broadcasts td.path")].map((td) => td.innerHTML),
			}));
			assert.equal(dom.images, 0);
			assert.equal(dom.xss, null);
			assert.ok(dom.paths.includes("xss/&lt;img src=x onerror=window.__xss=1&gt;"), JSON.stringify(dom.paths));
			assert.deepEqual(errors, []);
		});
	});
});
