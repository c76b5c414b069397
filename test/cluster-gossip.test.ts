/**
 * `[cluster] mesh = true` (gossip), as moq-relay does it: each relay publishes
 * `.internal/origins/<node>`, and dials each relay it finds there whose URL sorts after its own, so
 * that three relays that only know a rendezvous relay end up with one link per pair. Also: the
 * gossip path round-trips a URL, and only a peer may publish under `.internal/`.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { MoqClient } from "../src/client/index.ts";
import { gossipPath, gossipUrl } from "../src/cluster/links.ts";
import { connectQuic } from "../src/quic/client.ts";
import { freePort } from "./support/process-relay.ts";
import "./support/quiet.ts";
import { until } from "./support/wait.ts";

interface ClusterPage {
	peers: { url: string; state: string }[];
	broadcasts: { path: string }[];
}

test("a gossip path holds a node URL and gives it back", () => {
	const path = gossipPath(".internal/origins", "https://us-east.relay.example.com:4443/");
	assert.equal(path, ".internal/origins/https:/us-east.relay.example.com:4443");
	assert.equal(gossipUrl(path.slice(".internal/origins/".length)), "https://us-east.relay.example.com:4443");
});

describe("gossip: three relays that know one rendezvous relay", { timeout: 60_000 }, () => {
	let dir: string;
	const ports: number[] = [];
	const kids: ChildProcess[] = [];
	const url = (p: number) => `http://127.0.0.1:${p}/`;
	const page = async (p: number): Promise<ClusterPage> => {
		// Links are held by worker 0 and shared with the others once a second: ask until it is the fresh view.
		return (await (await fetch(`http://127.0.0.1:${p}/cluster`)).json()) as ClusterPage;
	};

	before(async () => {
		dir = mkdtempSync(join(tmpdir(), "moq-gossip-"));
		const tokenCli = (args: string[]) =>
			execFileSync(process.execPath, ["src/bin/moq-token.ts", "--key", join(dir, "root.jwk"), ...args], {
				encoding: "utf8",
			});
		tokenCli(["generate"]);
		writeFileSync(join(dir, "cluster.jwt"), tokenCli(["sign", "--publish", "", "--subscribe", ""]));
		for (let i = 0; i < 3; i++) ports.push(await freePort());
		for (const [i, p] of ports.entries()) {
			const connect = i === 0 ? "" : `connect = ["${url(ports[0])}"]\n`;
			const config = join(dir, `relay${i}.toml`);
			writeFileSync(
				config,
				`[server.tls]\ngenerate = ["localhost", "127.0.0.1"]\n[auth]\nkey = "${join(dir, "root.jwk")}"\npublic = "anon"\n[log]\nlevel = "warn"\n` +
					`[cluster]\nmesh = true\nnode = "${url(p)}"\ntoken = "${join(dir, "cluster.jwt")}"\n${connect}`,
			);
			kids.push(
				spawn(process.execPath, ["src/bin/moq-fanout.ts", "--bind", `127.0.0.1:${p}`, config, "--workers", "2"], {
					stdio: "ignore",
				}),
			);
		}
	});
	after(async () => {
		for (const k of kids) k.kill("SIGKILL");
		rmSync(dir, { recursive: true, force: true });
	});

	test("each relay advertises itself, and each pair ends up with exactly one link", async () => {
		const links = new Set<string>();
		await until(
			async () => {
				links.clear();
				for (const p of ports) {
					for (let k = 0; k < 4; k++) {
						const view = await page(p).catch(() => null);
						if (!view) return false;
						for (const peer of view.peers) if (peer.state === "connected") links.add(`${url(p)} -> ${peer.url}`);
						if (view.broadcasts.filter((b) => b.path.startsWith(".internal/origins/")).length < 3) return false;
					}
				}
				return links.size === 3;
			},
			30_000,
			"three links, one per pair, and every relay's entry everywhere",
		);
		// Pairs, whichever side dialled: never both sides of one pair.
		const pairs = [...links].map((l) => l.split(" -> ").sort().join(" <> "));
		assert.equal(new Set(pairs).size, 3, `one link per pair: ${[...links].join(", ")}`);
		// The two that know only the rendezvous dial it; between them the smaller URL dials.
		const [a, b] = [url(ports[1]), url(ports[2])].sort();
		assert.ok(links.has(`${a} -> ${b}`), `the smaller URL dials the larger: ${[...links].join(", ")}`);
	});

	test("a client that is not a peer may not publish under .internal/ (a gossip entry would make relays dial it)", async () => {
		// Publish rights on everything, but no subscribe: not a peer.
		const token = execFileSync(
			process.execPath,
			["src/bin/moq-token.ts", "--key", join(dir, "root.jwk"), "sign", "--publish", ""],
			{ encoding: "utf8" },
		).trim();
		const fp = await (await fetch(`http://127.0.0.1:${ports[0]}/certificate.sha256`)).text();
		const quic = await connectQuic({
			host: "127.0.0.1",
			port: ports[0],
			alpns: ["moq-lite-05"],
			certificateHashes: [fp],
		});
		const client = await MoqClient.connect(quic, { path: `/?jwt=${token}` });
		client.publish(".internal/origins/http:/evil.example").track("x");
		client.publish("elsewhere").track("x");
		await until(
			async () => (await page(ports[0])).broadcasts.some((b) => b.path === "elsewhere"),
			5000,
			"the client's ordinary broadcast",
		);
		const view = await page(ports[0]);
		assert.ok(
			!view.broadcasts.some((b) => b.path.includes("evil.example")),
			"the client's .internal path is not a broadcast",
		);
		// Counters reach /metrics within a second.
		await until(
			async () =>
				/moq_fanout_refusals_total\{[^}]*reason="announce_route"[^}]*\} [1-9]/.test(
					await (await fetch(`http://127.0.0.1:${ports[0]}/metrics`)).text(),
				),
			5000,
			"the refused announcement counted",
		);
		client.close(0, "");
	});
});
