/**
 * IETF moq-transport and moq-lite over WebTransport from a real headless Chromium, every publisher
 * dialect × every viewer dialect: the real relay binary (2 worker threads), one Chromium page
 * (test/browser/page-ietf.ts) holding a WebTransport connection per publisher and per viewer, each
 * the official @moq/net 0.3.4 forced onto one dialect, and Node peers on WebSocket (qmux) from
 * test/support/ietf.ts mixed in as publishers and viewers.
 *
 * How the page forces a dialect over WebTransport (WT-Available-Protocols is the page's offer):
 * - moq-lite-05, IETF drafts 15+: `Connection.connect(url, { webtransport: { protocols: ["moqt-16"],
 *   serverCertificateHashes } })`; the list replaces @moq/net's default offer and the dialect
 *   follows the negotiated name.
 * - moq-lite-02: the same with `moql`; @moq/net's CLIENT_SETUP then offers [lite-02, lite-01,
 *   draft-14] and the relay keeps lite-02.
 * - Draft 14: @moq/net never offers it alone (nor `moq-00`), so the page opens the WebTransport
 *   itself (offering `moql`, or `moq-00`) and runs the draft-14 CLIENT_SETUP offering 0xff00000e
 *   alone with @moq/net's own classes, then its `Ietf.Connection`: the handshake connect() runs.
 *
 * Every connection checks `conn.version` (e.g. "moq-transport-16"), `conn.transport` and the
 * WebTransport's negotiated protocol. Every viewer discovers every broadcast through its own
 * dialect's announcements, subscribes to each, and must receive every frame of every group written
 * after it joined, byte-exact (length and SHA-256 per frame): small frames, an empty one, a ~70 KB
 * one. IETF drafts are included as the relay offers them (IETF_ALPNS): a draft joins the matrix by
 * one line in DIALECTS, and a draft the relay offers without a line here fails the test. The Node
 * peers (WebSocket) publish on lite-02, 14 and 16 and view on lite-05, 14 (`moq-00`) and 15, plus,
 * when the relay offers drafts 17+, the newest of them as a publisher and the oldest as a viewer.
 *
 * A connection that fails (or negotiates another dialect) takes its dialect out of the matrix, the
 * rest still runs, and the test fails listing every such connection with its error and how long it
 * took (a relay that never answers SETUP closes the session after its 10 s SETUP timeout).
 *
 * MOQ_TEST_DIALECTS=d16,lite-05 narrows the browser dialects; MOQ_TEST_RELAY_LOG=debug sets the
 * relay's log level (its stderr is in every failure message). Without Chromium the test is skipped
 * with the reason, except under CI=true (see browser.test.ts).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { isDeepStrictEqual } from "node:util";
import { IETF_ALPNS } from "../src/moq/ietf/version.ts";
import {
	browserMissing,
	browserSkipReason,
	launchBrowser,
	type PageServer,
	startPageServer,
	type TestBrowser,
	type TestPage,
} from "./browser/harness.ts";
import { type IetfPageApi, type IetfPageHandshake, MATRIX_SIZES, matrixPayload } from "./browser/ietf-page-api.ts";
import {
	connectDialect,
	type Dialect,
	type NetConnection,
	type NetTrackProducer,
	newBroadcast,
	now,
	path,
	VERSION_NAME,
} from "./support/ietf.ts";
import { metricSum, type RelayProcess, startRelayProcess } from "./support/process-relay.ts";
import "./support/quiet.ts";
import { sleep, until } from "./support/wait.ts";

const SKIP = browserSkipReason() ?? false;

interface BrowserDialect {
	/** The one protocol the page offers (WT-Available-Protocols). */
	protocol: string;
	handshake: IetfPageHandshake;
	/** What `conn.version` must read. */
	version: string;
	/** The relay's IETF protocol (IETF_ALPNS) the dialect needs; null for moq-lite. */
	needs: string | null;
}

const draft = (n: number): BrowserDialect => ({
	protocol: `moqt-${n}`,
	handshake: "connect",
	version: `moq-transport-${n}`,
	needs: `moqt-${n}`,
});

/**
 * Every dialect the page can force, one line each. Those whose `needs` the relay does not offer
 * (IETF_ALPNS) are left out of the run, so drafts 17–20 join once the relay speaks them.
 */
const DIALECTS: Record<string, BrowserDialect> = {
	"lite-02": { protocol: "moql", handshake: "connect", version: "moq-lite-02", needs: null },
	"lite-05": { protocol: "moq-lite-05", handshake: "connect", version: "moq-lite-05", needs: null },
	d14: { protocol: "moql", handshake: "draft14", version: "moq-transport-14", needs: "moq-00" },
	"d14/moq-00": { protocol: "moq-00", handshake: "draft14", version: "moq-transport-14", needs: "moq-00" },
	d15: draft(15),
	d16: draft(16),
	d17: draft(17),
	d18: draft(18),
	d19: draft(19),
	d20: draft(20),
};

/** The dialects the relay serves: moq-lite, and every IETF draft it offers (IETF_ALPNS). */
const OFFERED = Object.keys(DIALECTS).filter((d) => {
	const needs = DIALECTS[d].needs;
	return needs === null || IETF_ALPNS.includes(needs);
});

/**
 * The browser dialects of this run: all of OFFERED. MOQ_TEST_DIALECTS (a comma-separated list of
 * DIALECTS' keys) narrows it, to look at one dialect alone.
 */
const ONLY = process.env.MOQ_TEST_DIALECTS?.split(",").map((d) => d.trim());
const BROWSER = OFFERED.filter((d) => ONLY === undefined || ONLY.includes(d));

/** Drafts 17+ the relay offers, oldest first: the Node peers take the newest and the oldest of them. */
const MODERN = OFFERED.filter((d) => /^d\d+$/.test(d) && Number(d.slice(1)) >= 17) as Dialect[];

/** Node peers on WebSocket (qmux): publishers and viewers of other dialects than each other. */
const NODE_PUBLISHERS: Dialect[] = ["lite-02", "d14", "d16", ...MODERN.slice(-1)];
const NODE_VIEWERS: Dialect[] = ["lite-05", "d14/moq-00", "d15", ...MODERN.slice(0, 1)];

/** Groups written once every viewer is in. */
const GROUPS = 3;
const TRACK = "t";

/** A broadcast (one path segment) or viewer name: the side (wt: WebTransport in the page, ws: Node on WebSocket) and dialect. */
const slug = (side: "wt" | "ws", dialect: string) => `${side}-${dialect.replace("/", "-")}`;

const digest = (b: Uint8Array) => `${b.length}:${createHash("sha256").update(b).digest("hex")}`;

interface Publisher {
	name: string;
	index: number;
	/** The page connection's id, or the Node track. */
	page: string | null;
	track: NetTrackProducer | null;
}

interface Viewer {
	name: string;
	page: string | null;
	/** A Node viewer's connection. */
	conn: NetConnection | null;
	/** Node viewers: announced paths, and per publisher the groups started and those ended. */
	announced: Set<string>;
	node: Map<string, { started: number; ended: Map<number, string[]>; error: string | null }>;
}

test("every IETF protocol the relay offers has a browser dialect here", () => {
	const covered = new Set(Object.values(DIALECTS).map((d) => d.needs));
	for (const alpn of IETF_ALPNS) {
		assert.ok(covered.has(alpn), `the relay offers ${alpn}: add a line for it to DIALECTS`);
	}
	if (ONLY === undefined) for (const d of ["d14", "d15", "d16"]) assert.ok(BROWSER.includes(d), `${d} is in the run`);
});

describe("IETF moq-transport and moq-lite over WebTransport in Chromium: publisher × viewer dialects", {
	timeout: 120_000,
}, () => {
	let relay: RelayProcess;
	let pages: PageServer;
	let browser: TestBrowser;
	const nodeConns: NetConnection[] = [];

	before(async () => {
		if (SKIP || browserMissing()) return;
		relay = await startRelayProcess(["--workers", "2", "--log-level", process.env.MOQ_TEST_RELAY_LOG ?? "warn"]);
		pages = await startPageServer();
		browser = await launchBrowser(pages);
	});
	after(async () => {
		for (const c of nodeConns) c.close();
		await browser?.close();
		await pages?.close();
		await relay?.stop();
	});

	test(`delivers every frame byte-exact: browser ${BROWSER.join(", ")}; Node publishers ${NODE_PUBLISHERS.join(", ")}, viewers ${NODE_VIEWERS.join(", ")}`, {
		skip: SKIP,
		timeout: 90_000,
	}, async () => {
		const missing = browserMissing();
		if (missing) throw new Error(`${missing}: cannot run the browser test`);
		const started = performance.now();
		const page: TestPage<IetfPageApi> = await browser.open<IetfPageApi>("ietf", "ietf");
		const fingerprint = (await (await fetch(`${relay.base}/certificate.sha256`)).text()).trim();
		const wtUrl = `https://127.0.0.1:${relay.port}/anon`;
		const wsUrl = () => new URL(`${relay.base}/anon`);
		/** Connections that failed or negotiated something else: their dialects leave the matrix, and the test fails. */
		const failures: string[] = [];
		const context = () =>
			`${failures.length ? `connections that failed:\n${failures.join("\n")}\n` : ""}relay stderr:\n${relay.stderr.join("")}\nconsole:\n${browser.console.filter((l) => !l.includes(": debug:")).join("\n")}`;

		let pageSessions = 0;
		const connectPage = async (id: string, dialect: string): Promise<boolean> => {
			const spec = DIALECTS[dialect];
			const t0 = performance.now();
			try {
				const c = await page.call("connect", id, wtUrl, spec.protocol, spec.handshake, fingerprint);
				pageSessions++;
				const want = { version: spec.version, transport: "webtransport", protocol: spec.protocol };
				if (isDeepStrictEqual(c, want)) return true;
				failures.push(`${id}: connected as ${JSON.stringify(c)}, not ${JSON.stringify(want)}`);
			} catch (err) {
				const ms = Math.round(performance.now() - t0);
				failures.push(`${id} (offering ${spec.protocol}): ${(err as Error).message.split("\n")[0]} (after ${ms} ms)`);
			}
			return false;
		};
		const connectNode = async (dialect: Dialect): Promise<NetConnection | null> => {
			try {
				const c = await connectDialect(wsUrl(), dialect);
				nodeConns.push(c);
				if (c.version === VERSION_NAME[dialect]) return c;
				failures.push(`Node ${dialect}: connected as ${c.version}, not ${VERSION_NAME[dialect]}`);
			} catch (err) {
				failures.push(`Node ${dialect}: ${(err as Error).message.split("\n")[0]}`);
			}
			return null;
		};

		// Every page connection at once (a dialect the relay cannot serve costs its SETUP timeout once).
		const connected = await Promise.all(
			BROWSER.map(async (d) =>
				(await Promise.all([connectPage(`pub wt:${d}`, d), connectPage(`view wt:${d}`, d)])).every(Boolean),
			),
		);
		const live = BROWSER.filter((_, i) => connected[i]);

		// Publishers: one broadcast each, one track.
		const publishers: Publisher[] = [];
		for (const d of live) {
			const id = `pub wt:${d}`;
			await page.call("publish", id, `matrix/${slug("wt", d)}`, TRACK);
			publishers.push({ name: slug("wt", d), index: publishers.length, page: id, track: null });
		}
		for (const d of NODE_PUBLISHERS) {
			const c = await connectNode(d);
			if (!c) continue;
			const bc = newBroadcast();
			const track = bc.createTrack(TRACK);
			c.publish(path(`matrix/${slug("ws", d)}`), bc);
			publishers.push({ name: slug("ws", d), index: publishers.length, page: null, track });
		}
		const names = publishers.map((p) => p.name).sort();

		// Viewers: each discovers every broadcast through its own dialect's announcements.
		const viewers: Viewer[] = [];
		for (const d of live) {
			const id = `view wt:${d}`;
			await page.call("watchAnnounced", id, "matrix");
			viewers.push({ name: slug("wt", d), page: id, conn: null, announced: new Set(), node: new Map() });
		}
		for (const d of NODE_VIEWERS) {
			const c = await connectNode(d);
			if (!c) continue;
			const v: Viewer = { name: slug("ws", d), page: null, conn: c, announced: new Set(), node: new Map() };
			viewers.push(v);
			const announced = c.announced(path("matrix"));
			void (async () => {
				for (;;) {
					const ev = await announced.next();
					if (!ev) return;
					if (ev.active) v.announced.add(ev.path);
					else v.announced.delete(ev.path);
				}
			})().catch(() => {}); // ends with the connection; the wait below says what was not seen
		}
		/** Announced paths as broadcast names (relative to `matrix`, whichever way the library reports them). */
		const seen = async (v: Viewer) =>
			(v.page ? await page.call("announced", v.page) : [...v.announced]).map((p) => p.replace(/^matrix\//, "")).sort();
		await until(
			async () => {
				for (const v of viewers) {
					if ((await seen(v)).join() !== names.join()) {
						await sleep(20);
						return false;
					}
				}
				return true;
			},
			15_000,
			"every viewer to see every broadcast announced",
		).catch(async (err) => {
			const lines = await Promise.all(viewers.map(async (v) => `${v.name}: ${(await seen(v)).join(", ")}`));
			throw new Error(`${(err as Error).message}\nwant ${names.join(", ")}\n${lines.join("\n")}\n${context()}`);
		});

		// Every viewer subscribes to every broadcast.
		const key = (p: Publisher, v: Viewer) => `${p.name}→${v.name}`;
		for (const v of viewers) {
			for (const p of publishers) {
				if (v.page) {
					await page.call("subscribe", v.page, key(p, v), `matrix/${p.name}`, TRACK);
					continue;
				}
				const r = { started: 0, ended: new Map<number, string[]>(), error: null as string | null };
				v.node.set(p.name, r);
				const sub = v.conn!.consume(path(`matrix/${p.name}`)).subscribe(TRACK, { priority: 1 });
				void (async () => {
					for (;;) {
						const g = await sub.recvGroup();
						if (!g) return;
						r.started++;
						const frames: string[] = [];
						void (async () => {
							for (;;) {
								const f = await g.readFrame();
								if (!f) break;
								frames.push(digest(f.payload));
							}
							r.ended.set(g.sequence, frames);
						})().catch((err) => {
							r.error = `group ${g.sequence}: ${err}`;
						});
					}
				})().catch((err) => {
					r.error = String(err);
				});
			}
		}

		// Warm-up groups until every subscription has seen one: every viewer is in.
		const pagePublishers = publishers.filter((p) => p.page !== null);
		const warm = async () => {
			await page.call(
				"writeWarmUp",
				pagePublishers.map((p) => p.page!),
			);
			for (const p of publishers) {
				if (!p.track) continue;
				const g = p.track.appendGroup();
				g.writeFrame({ payload: new Uint8Array([0xee]), timestamp: now() });
				g.close();
			}
		};
		await warm();
		let lastWarm = performance.now();
		await until(
			async () => {
				const counts = await page.call("groupCounts");
				const ok = viewers.every((v) =>
					publishers.every((p) => (v.page ? (counts[key(p, v)] ?? 0) : (v.node.get(p.name)?.started ?? 0)) > 0),
				);
				if (ok) return true;
				if (performance.now() - lastWarm > 100) {
					await warm();
					lastWarm = performance.now();
				}
				await sleep(20);
				return false;
			},
			20_000,
			"every viewer to receive a warm-up group of every publisher",
		).catch((err) => {
			throw new Error(`${(err as Error).message}\n${context()}`);
		});
		await sleep(200);

		// The real groups, from every publisher.
		const written = new Map<string, number[]>(publishers.map((p) => [p.name, []]));
		for (let g = 0; g < GROUPS; g++) {
			const seqs = await page.call(
				"writeGroups",
				pagePublishers.map((p) => ({ id: p.page!, pub: p.index, group: g })),
			);
			for (const [i, p] of pagePublishers.entries()) written.get(p.name)!.push(seqs[i]);
			for (const p of publishers) {
				if (!p.track) continue;
				const group = p.track.appendGroup() as ReturnType<NetTrackProducer["appendGroup"]> & { sequence: number };
				for (let f = 0; f < MATRIX_SIZES.length; f++) {
					group.writeFrame({ payload: matrixPayload(p.index, g, f), timestamp: now() });
				}
				group.close();
				written.get(p.name)!.push(group.sequence);
			}
			await sleep(30);
		}

		// What each viewer received of the written groups: sequence → frames ("LENGTH:SHA256").
		const pageWant: Record<string, number[]> = {};
		for (const v of viewers) if (v.page) for (const p of publishers) pageWant[key(p, v)] = written.get(p.name)!;
		const collect = async () => {
			const fromPage = await page.call("received", pageWant);
			const out = new Map<string, { groups: Map<number, string[]>; error: string | null }>();
			for (const v of viewers) {
				for (const p of publishers) {
					const k = key(p, v);
					if (v.page) {
						const r = fromPage[k];
						out.set(k, { groups: new Map(r.groups.map((g) => [g.seq, g.frames])), error: r.error });
					} else {
						const r = v.node.get(p.name)!;
						out.set(k, { groups: r.ended, error: r.error });
					}
				}
			}
			return out;
		};
		/** The pairs still missing a written group, or whose subscription failed. */
		const incomplete = (got: Awaited<ReturnType<typeof collect>>) => {
			const lines: string[] = [];
			for (const v of viewers) {
				for (const p of publishers) {
					const r = got.get(key(p, v))!;
					const want = written.get(p.name)!;
					if (r.error !== null || want.some((s) => !r.groups.has(s))) {
						lines.push(`${key(p, v)}: ended ${[...r.groups.keys()].join(",")} of ${want.join(",")} ${r.error ?? ""}`);
					}
				}
			}
			return lines;
		};
		await until(
			async () => {
				const got = await collect();
				if ([...got.values()].some((r) => r.error !== null)) throw new Error("a subscription failed");
				if (incomplete(got).length === 0) return true;
				await sleep(50);
				return false;
			},
			30_000,
			"every written group at every viewer",
		).catch(async (err) => {
			throw new Error(`${(err as Error).message}\n${incomplete(await collect()).join("\n")}\n${context()}`);
		});

		// Byte-exact: every frame's length and SHA-256, every pair, listed together when any differ.
		const got = await collect();
		const wrong: string[] = [];
		for (const v of viewers) {
			for (const p of publishers) {
				const r = got.get(key(p, v))!;
				for (const [g, seq] of written.get(p.name)!.entries()) {
					const frames = r.groups.get(seq)!;
					const want = MATRIX_SIZES.map((_, f) => digest(matrixPayload(p.index, g, f)));
					if (frames.length !== want.length)
						wrong.push(`${key(p, v)} group ${seq}: ${frames.length} frames, not ${want.length}`);
					for (const [f, w] of want.entries()) {
						if (frames[f] !== undefined && frames[f] !== w)
							wrong.push(`${key(p, v)} group ${seq} frame ${f}: ${frames[f]}, not ${w}`);
					}
				}
			}
		}
		assert.deepEqual(
			[...failures, ...wrong],
			[],
			"every connection on its dialect, and every frame received byte-exact (length:sha256)",
		);
		assert.deepEqual(await page.call("errors"), [], context());
		assert.deepEqual(
			browser.console.filter((l) => l.includes("pageerror")),
			[],
			"no uncaught error in the page",
		);

		const m = await relay.metrics();
		assert.equal(
			metricSum(m, "moq_fanout_sessions", 'transport="webtransport"'),
			pageSessions,
			"WebTransport sessions",
		);
		assert.equal(metricSum(m, "moq_fanout_sessions", 'transport="websocket"'), nodeConns.length, "WebSocket sessions");
		assert.equal(metricSum(m, "moq_fanout_session_faults_total"), 0, "no session faulted");
		assert.equal(metricSum(m, "moq_fanout_refusals_total", 'reason="protocol"'), 0, "no protocol refusal");
		await page.call("closeAll");
		console.error(
			`# ${publishers.length} publishers × ${viewers.length} viewers in ${Math.round(performance.now() - started)} ms`,
		);
	});
});
