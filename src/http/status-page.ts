/**
 * The relay's status page: `GET /` is a self-contained HTML page (inline CSS and JS, nothing
 * external) that polls `GET /status` (JSON, gathered by src/worker/status.ts) every second and
 * renders one table per worker (sessions by transport, subscriptions, viewers, bitrate in and out
 * from successive samples of the byte counters) and a table of the broadcasts with their tracks
 * and viewer counts.
 *
 * Broadcast paths and track names come from clients: the page only ever puts relay data into the
 * DOM with `textContent`, never as markup. The page is also served with a per-response nonce CSP
 * (`default-src 'none'`, the one inline script and style allowed by nonce, `connect-src 'self'`),
 * `X-Content-Type-Options: nosniff`, and no CORS header (unlike the other routes): another
 * origin's page cannot read the relay's broadcast list through a visitor's browser.
 */
import { randomBytes } from "node:crypto";
import type { ServerResponse } from "node:http";

const SECURITY_HEADERS: Record<string, string> = {
	"x-content-type-options": "nosniff",
	"cache-control": "no-store",
	"referrer-policy": "no-referrer",
	"x-frame-options": "DENY",
};

/** The CSP of the page: only its own nonce'd inline script and style run; it may fetch same-origin only. */
export function statusPageCsp(nonce: string): string {
	return (
		`default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; ` +
		"img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	);
}

/** `GET /`: the page, with a fresh nonce. */
export function sendStatusPage(res: ServerResponse, head: boolean): void {
	const nonce = randomBytes(16).toString("base64");
	const body = statusPageHtml(nonce);
	res.writeHead(200, {
		...SECURITY_HEADERS,
		"content-type": "text/html; charset=utf-8",
		"content-length": Buffer.byteLength(body),
		"content-security-policy": statusPageCsp(nonce),
	});
	res.end(head ? undefined : body);
}

/** `GET /status`: the JSON the page polls. A failing gatherer answers 500. */
export function sendStatus(res: ServerResponse, head: boolean, status: () => Promise<unknown>): void {
	const answer = (code: number, type: string, body: string) => {
		if (res.headersSent || res.destroyed) return;
		res.writeHead(code, {
			...SECURITY_HEADERS,
			"content-type": type,
			"content-length": Buffer.byteLength(body),
			"content-security-policy": "default-src 'none'; frame-ancestors 'none'",
		});
		res.end(head ? undefined : body);
	};
	status().then(
		(s) => answer(200, "application/json", JSON.stringify(s)),
		() => answer(500, "text/plain", "internal error"),
	);
}

/** The page. Only `nonce` is substituted (base64: no quote or angle bracket can appear in it). */
export function statusPageHtml(nonce: string): string {
	return PAGE.replaceAll("__NONCE__", nonce);
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>moq-fanout status</title>
<style nonce="__NONCE__">
:root { color-scheme: light dark; --fg: #1d232a; --muted: #66707a; --line: #d8dde3; --bg: #fff; --card: #f5f7f9; --accent: #0b6bcb; --bad: #b42318; }
@media (prefers-color-scheme: dark) { :root { --fg: #e3e7eb; --muted: #9aa4ae; --line: #38414a; --bg: #15191d; --card: #1e2429; --accent: #6cb4ff; --bad: #ff8a80; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 16px 20px 24px; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 18px; margin: 0 0 2px; }
h2 { font-size: 15px; margin: 18px 0 8px; }
#summary { color: var(--muted); margin: 0 0 4px; }
#state { margin: 0; color: var(--muted); font-size: 12px; }
#state.error { color: var(--bad); }
#workers { display: flex; flex-wrap: wrap; gap: 12px; }
table { border-collapse: collapse; }
table.worker { background: var(--card); border: 1px solid var(--line); border-radius: 6px; min-width: 240px; }
table.worker caption { text-align: left; font-weight: 600; padding: 6px 8px 2px; }
table.worker caption.missing { color: var(--bad); }
table.worker th { text-align: left; font-weight: normal; color: var(--muted); padding: 2px 8px; }
table.worker th.sub { padding-left: 22px; }
table.worker td { text-align: right; padding: 2px 8px; font-variant-numeric: tabular-nums; }
table#broadcasts { width: 100%; border: 1px solid var(--line); }
table#broadcasts th, table#broadcasts td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
table#broadcasts th { background: var(--card); }
table#broadcasts td.viewers, table#broadcasts td.worker, table#broadcasts th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.path { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
.track { display: inline-block; margin: 0 6px 2px 0; padding: 0 6px; border: 1px solid var(--line); border-radius: 10px; font-size: 12px; }
.empty { color: var(--muted); }
</style>
</head>
<body>
<h1>moq-fanout</h1>
<p id="summary">loading…</p>
<p id="state"></p>
<h2>Workers</h2>
<div id="workers"></div>
<h2>Broadcasts</h2>
<table id="broadcasts">
<thead><tr><th>Path</th><th class="num">Publisher worker</th><th class="num">Viewers</th><th>Tracks (subscriptions)</th></tr></thead>
<tbody></tbody>
</table>
<script nonce="__NONCE__">
"use strict";
(() => {
  const POLL_MS = 1000;
  // Bitrate over the samples of the last few seconds: each worker refreshes its counters once a
  // second, so the difference of two adjacent samples alone would jump between 0 and twice the rate.
  const WINDOW_MS = 5000;
  const samples = [];

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function bitrate(bitsPerSecond) {
    if (!(bitsPerSecond >= 0)) return "–";
    const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
    let v = bitsPerSecond, i = 0;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return (i === 0 ? Math.round(v) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
  }
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = n, i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v : v.toFixed(1)) + " " + units[i];
  }
  /** bits/s in and out of worker \`index\` over the sample window, or null before two samples. */
  function rates(index) {
    const last = samples[samples.length - 1];
    const first = samples[0];
    const dt = (last.time - first.time) / 1000;
    const a = first.workers.find((w) => w.index === index);
    const b = last.workers.find((w) => w.index === index);
    if (!a || !b || dt <= 0) return null;
    return { in: Math.max(0, b.bytesIn - a.bytesIn) * 8 / dt, out: Math.max(0, b.bytesOut - a.bytesOut) * 8 / dt };
  }

  function workerTable(w) {
    const t = el("table", undefined, "worker");
    t.dataset.worker = String(w.index);
    const cap = el("caption", "Worker " + w.index + (w.answered ? "" : " (no answer)"), w.answered ? "" : "missing");
    t.append(cap);
    const r = rates(w.index);
    const s = w.sessions;
    const rows = [
      ["sessions", "Sessions", s.quic + s.webtransport + s.websocket],
      ["quic", "QUIC", s.quic, "sub"],
      ["webtransport", "WebTransport", s.webtransport, "sub"],
      ["websocket", "WebSocket", s.websocket, "sub"],
      ["publishing", "Publishing", w.publishing],
      ["viewers", "Viewers", w.viewers],
      ["subscriptions", "Subscriptions", w.subscriptions],
      ["bitrate-in", "Bitrate in", r ? bitrate(r.in) : "–"],
      ["bitrate-out", "Bitrate out", r ? bitrate(r.out) : "–"],
      ["groups", "Groups in / out / dropped", w.groupsIn + " / " + w.groupsOut + " / " + w.groupsDropped],
      ["udp-drops", "Datagrams dropped by the socket", w.udpRecvDrops],
      ["loop", "Event loop busy", Math.round(w.eventLoopUtilization * 100) + " %"],
      ["restarts", "Restarts", w.restarts],
    ];
    const body = el("tbody");
    for (const [key, label, value, cls] of rows) {
      const tr = el("tr");
      tr.dataset.field = key;
      tr.append(el("th", label, cls), el("td", value));
      body.append(tr);
    }
    t.append(body);
    return t;
  }

  function broadcastRow(b) {
    const tr = el("tr", undefined, "broadcast");
    const tracks = el("td", undefined, "tracks");
    if (b.tracks.length === 0) tracks.append(el("span", "no subscriptions", "empty"));
    for (const t of b.tracks) tracks.append(el("span", t.name + " (" + t.viewers + ")", "track"));
    tr.append(el("td", b.path === "" ? "(root)" : b.path, "path"), el("td", b.worker, "worker"), el("td", b.viewers, "viewers"), tracks);
    return tr;
  }

  function render(s) {
    samples.push(s);
    while (samples.length > 2 && s.time - samples[0].time > WINDOW_MS) samples.shift();
    let sessions = 0, viewers = 0, bitsIn = 0, bitsOut = 0, known = false;
    for (const w of s.workers) {
      sessions += w.sessions.quic + w.sessions.webtransport + w.sessions.websocket;
      const r = rates(w.index);
      if (r) { bitsIn += r.in; bitsOut += r.out; known = true; }
    }
    for (const b of s.broadcasts) viewers += b.viewers;
    // The cache budget is shared by the workers: every worker reports the same relay-wide figure.
    const cache = s.workers.reduce((m, w) => Math.max(m, w.cacheBytes), 0);
    document.getElementById("summary").textContent =
      "version " + s.version + " · " + s.workers.length + " workers · " + sessions + " sessions · " +
      s.broadcasts.length + " broadcasts · " + viewers + " viewers · in " + (known ? bitrate(bitsIn) : "–") +
      " · out " + (known ? bitrate(bitsOut) : "–") + " · cache " + bytes(cache);
    document.getElementById("workers").replaceChildren(...s.workers.map(workerTable));
    const body = document.querySelector("#broadcasts tbody");
    if (s.broadcasts.length === 0) {
      const tr = el("tr");
      const td = el("td", "no broadcasts", "empty");
      td.colSpan = 4;
      tr.append(td);
      body.replaceChildren(tr);
    } else body.replaceChildren(...s.broadcasts.map(broadcastRow));
    const state = document.getElementById("state");
    state.className = "";
    state.textContent = "updated " + new Date(s.time).toLocaleTimeString() + " by worker " + s.worker +
      (s.complete ? "" : " · some workers did not answer: their viewers are missing");
  }

  async function poll() {
    try {
      const r = await fetch("status", { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      render(await r.json());
    } catch (e) {
      const state = document.getElementById("state");
      state.className = "error";
      state.textContent = "cannot reach the relay: " + (e && e.message ? e.message : String(e)) + " (retrying)";
    }
    setTimeout(poll, POLL_MS);
  }
  poll();
})();
</script>
</body>
</html>
`;
