/**
 * A real headless Chromium (Debian's `chromium`, driven by playwright-core) running the official
 * clients bundled into a page: it connects to the relay with an `http://` URL (fingerprint fetch,
 * then WebTransport over HTTP/3 with `serverCertificateHashes`; the WebSocket fallback is disabled
 * so it cannot mask a broken WebTransport) and publishes. A second page and a Node viewer on raw
 * QUIC (ALPN moq-lite-05, path /anon in the SETUP) receive every frame byte-exact.
 *
 * Without Chromium the tests are skipped with the reason (the run's summary counts them), except
 * under CI=true, where a missing browser fails the run.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MoqClient } from "../src/client/index.ts";
import { connectQuic } from "../src/quic/client.ts";
import {
	browserMissing,
	browserSkipReason,
	IN_CI,
	launchBrowser,
	type PageLibrary,
	type PageServer,
	startPageServer,
	type TestBrowser,
	type TestPage,
} from "./browser/harness.ts";
import { frameBytes } from "./support/frames.ts";
import { startTestRelay, type TestRelay } from "./support/relay.ts";
import { until } from "./support/wait.ts";

const SKIP = browserSkipReason() ?? false;

const GROUPS = 5;
const FRAMES = 4;

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

/** A Node viewer on raw QUIC through our own moq-lite-05 client. */
async function quicViewer(relay: TestRelay, broadcast: string) {
	const fingerprint = await (await fetch(new URL("/certificate.sha256", relay.url()))).text();
	const quic = await connectQuic({
		host: "127.0.0.1",
		port: relay.quicPort,
		alpns: ["moq-lite-05"],
		certificateHashes: [fingerprint],
	});
	assert.equal(quic.protocol, "moq-lite-05");
	const client = await MoqClient.connect(quic, { path: "/anon" });
	const groups = new Map<number, Uint8Array[]>();
	client.subscribe(
		broadcast,
		"video",
		{},
		{
			onGroup: (seq) => groups.set(seq, []),
			onFrame: (seq, _index, payload) => groups.get(seq)?.push(new Uint8Array(payload)), // a copy: payload is a view
		},
	);
	return { client, groups };
}

function pageFrames(groups: { seq: number; frames: string[] }[], seq: number): string[] | undefined {
	return groups.find((g) => g.seq === seq)?.frames;
}

test("Chromium is installed (required under CI=true)", { skip: SKIP }, () => {
	const missing = browserMissing();
	assert.equal(missing, null, `${missing}: the WebTransport browser tests cannot run${IN_CI ? " and CI=true" : ""}`);
});

describe("Chromium with the official clients over WebTransport", { timeout: 120_000 }, () => {
	let pages: PageServer;
	let browser: TestBrowser;
	before(async () => {
		// Missing under CI: the tests below fail with the reason (not the hook, which would hide which).
		if (SKIP || browserMissing()) return;
		pages = await startPageServer();
		browser = await launchBrowser(pages);
	});
	after(async () => {
		await browser?.close();
		await pages?.close();
	});

	async function fanOut(library: PageLibrary, version: string): Promise<void> {
		const missing = browserMissing();
		if (missing) throw new Error(`${missing}: cannot run the browser test`);
		const relay = await startTestRelay();
		const opened: TestPage[] = [];
		let viewer: Awaited<ReturnType<typeof quicViewer>> | null = null;
		try {
			const broadcast = `bbb-${library}`;
			// Publisher page: http:// URL → fingerprint fetch → WebTransport with the pinned hash.
			const pub = await browser.open(`pub-${library}`, library);
			opened.push(pub);
			const pubConn = await pub.call("connect", relay.url("anon").href);
			assert.equal(pubConn.version, version);
			if (library === "net") assert.equal(pubConn.transport, "webtransport");
			await pub.call("publish", broadcast, "video");
			await until(
				() => relay.node.relay.broadcasts.has(`anon/${broadcast}`),
				10_000,
				"the relay to learn the broadcast",
			);

			// A second page and a Node raw-QUIC viewer subscribe.
			const sub = await browser.open(`sub-${library}`, library);
			opened.push(sub);
			const subConn = await sub.call("connect", relay.url("anon").href);
			assert.equal(subConn.version, version);
			await sub.call("subscribe", broadcast, "video");
			viewer = await quicViewer(relay, broadcast);
			assert.deepEqual(relay.node.sessionsByKind, { quic: 1, webtransport: 2, websocket: 0 });
			await until(() => relay.node.relay.figures.subscriptions === 2, 10_000, "both downstream subscriptions");
			await until(
				async () => (await pub.call("publishedSubscribers")) > 0,
				10_000,
				"the relay's upstream subscription",
			);

			// One group at a time, each awaited at both viewers (latest-first delivery may skip stale groups).
			const seqs: number[] = [];
			for (let g = 0; g < GROUPS; g++) {
				const frames = Array.from({ length: FRAMES }, (_, f) => b64(frameBytes(g, f, 30_000)));
				const seq = await pub.call("writeGroup", frames);
				seqs.push(seq);
				const v = viewer;
				await until(
					async () =>
						(v.groups.get(seq)?.length ?? 0) === FRAMES &&
						(pageFrames(await sub.call("received"), seq)?.length ?? 0) === FRAMES,
					10_000,
					`group ${seq} at both viewers`,
				);
			}

			const pageGroups = await sub.call("received");
			for (const [g, seq] of seqs.entries()) {
				const want = Array.from({ length: FRAMES }, (_, f) => frameBytes(g, f, 30_000));
				assert.deepEqual(viewer.groups.get(seq), want, `QUIC viewer, group ${seq}`);
				assert.deepEqual(
					pageFrames(pageGroups, seq)?.map((f) => new Uint8Array(Buffer.from(f, "base64"))),
					want,
					`page viewer, group ${seq}`,
				);
			}
			assert.deepEqual(await pub.call("errors"), []);
			assert.deepEqual(await sub.call("errors"), []);
			// The library's own log of the WebTransport sub-protocol (WebTransport.protocol).
			for (const label of [pub.label, sub.label]) {
				assert.ok(
					browser.console.some((l) => l.startsWith(`[${label}]`) && l.includes(`negotiated ALPN: ${version}`)),
					`${label} logged the negotiated protocol; console:\n${browser.console.join("\n")}`,
				);
			}
		} finally {
			viewer?.client.close();
			for (const p of opened) await p.page.close();
			await relay.close();
		}
	}

	test("@moq/net 0.3.4 publishes from a page (moq-lite-05); a page and a raw-QUIC viewer receive it", {
		skip: SKIP,
		timeout: 60_000,
	}, async () => {
		await fanOut("net", "moq-lite-05");
	});

	test("@moq/lite 0.2.2 publishes from a page (moq-lite-04); a page and a raw-QUIC viewer receive it", {
		skip: SKIP,
		timeout: 60_000,
	}, async () => {
		await fanOut("lite", "moq-lite-04");
	});
});
