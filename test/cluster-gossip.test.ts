/**
 * `[cluster] mesh = true` (gossip), as moq-relay does it: each relay publishes
 * `.internal/origins/<node>`, and dials each relay it finds there whose URL sorts after its own, so
 * that three relays that only know a rendezvous relay end up with one link per pair. Also: the
 * gossip path round-trips a URL, and only a peer may publish under `.internal/`.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { MoqClient } from "../src/client/index.ts";
import { gossipPath, gossipUrl } from "../src/cluster/links.ts";
import { connectQuic } from "../src/quic/client.ts";
import {
	ClusterNode,
	type ClusterPage,
	type ClusterSecrets,
	clusterPort,
	httpGet,
	makeSecrets,
	peerUrl,
	relayToml,
} from "./support/cluster.ts";
import "./support/quiet.ts";
import { until } from "./support/wait.ts";

test("a gossip path holds a node URL and gives it back", () => {
	const path = gossipPath(".internal/origins", "https://us-east.relay.example.com:4443/");
	assert.equal(path, ".internal/origins/https:/us-east.relay.example.com:4443");
	assert.equal(gossipUrl(path.slice(".internal/origins/".length)), "https://us-east.relay.example.com:4443");
});

describe("gossip: three relays that know one rendezvous relay", { timeout: 90_000 }, () => {
	let secrets: ClusterSecrets;
	const nodes: ClusterNode[] = [];
	const ports: number[] = [];
	const url = peerUrl;
	const page = async (p: number): Promise<ClusterPage> => {
		const r = await httpGet(`http://127.0.0.1:${p}/cluster`);
		if (r.status !== 200) throw new Error(`GET /cluster: ${r.status}`);
		return JSON.parse(r.body) as ClusterPage;
	};
	const logs = () => nodes.map((n) => `--- ${n.name} (${n.alive ? "running" : "exited"}):\n${n.log(1500)}`).join("\n");

	before(async () => {
		secrets = makeSecrets();
		for (let i = 0; i < 3; i++) ports.push(await clusterPort(ports));
		for (const [i, p] of ports.entries()) {
			const config = join(secrets.dir, `relay${i}.toml`);
			writeFileSync(
				config,
				relayToml(secrets, { mesh: { node: url(p) }, connect: i === 0 ? undefined : [url(ports[0])] }),
			);
			nodes.push(new ClusterNode(`relay${i}`, p, config));
		}
		await Promise.all(nodes.map((n) => n.start()));
	});
	after(async () => {
		await Promise.all(nodes.map((n) => n.kill()));
		secrets?.remove();
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
		).catch((err: Error) => {
			throw new Error(`${err.message}\nlinks: ${[...links].join(", ")}\n${logs()}`);
		});
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
			["src/bin/moq-token.ts", "--key", secrets.key, "sign", "--publish", ""],
			{ encoding: "utf8" },
		).trim();
		const fp = (await httpGet(`http://127.0.0.1:${ports[0]}/certificate.sha256`)).body;
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
					(await httpGet(`http://127.0.0.1:${ports[0]}/metrics`)).body,
				),
			5000,
			"the refused announcement counted",
		);
		client.close(0, "");
	});
});
