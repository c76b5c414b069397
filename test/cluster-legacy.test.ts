/**
 * Cluster links on the versions without hop ids: lite-03 announces carry only a hop count and
 * lite-02 none, so a relay cannot see a loop through such a link. In moq-relay that produced
 * ghost broadcasts (its issues #1148 and #2718): in a triangle, each relay kept the broadcast
 * alive through the other after the publisher had gone. Here the three links of a triangle are
 * pinned to lite-02/03 with `?version=` (they go over WebTransport, whose CONNECT URL carries the
 * cluster token), the broadcast is delivered over them, and after the publisher leaves no relay
 * announces it again.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
	ClusterNode,
	type ClusterSecrets,
	clusterPort,
	linksUp,
	makeSecrets,
	Publisher,
	type Publisher as PublisherT,
	paced,
	peerUrl,
	relayToml,
	stopAll,
	Viewer,
} from "./support/cluster.ts";
import "./support/quiet.ts";
import { sleep, until } from "./support/wait.ts";

const SHAPE = { framesPerGroup: 4, big: 1200 };
const LINGER_MS = 1000;

describe("cluster links on lite-02/03 (no hop ids): a triangle", { timeout: 120_000 }, () => {
	let secrets: ClusterSecrets;
	let relays: ClusterNode[] = [];
	const clients: { close(): void }[] = [];

	before(async () => {
		secrets = makeSecrets();
		const ports: number[] = [];
		while (ports.length < 3) ports.push(await clusterPort(ports));
		const pinned = (port: number, version: string) => `${peerUrl(port)}?version=${version}`;
		// B dials A on lite-03, C dials A on lite-02 and B on lite-03: every link of the triangle is legacy.
		const specs = [
			{ name: "legacy-A", connect: [] as string[] },
			{ name: "legacy-B", connect: [pinned(ports[0], "moq-lite-03")] },
			{ name: "legacy-C", connect: [pinned(ports[0], "moq-lite-02"), pinned(ports[1], "moq-lite-03")] },
		];
		relays = specs.map((s, i) => {
			const config = join(secrets.dir, `${s.name}.toml`);
			writeFileSync(config, relayToml(secrets, { id: 201 + i, connect: s.connect, linger: `${LINGER_MS}ms` }));
			return new ClusterNode(s.name, ports[i], config);
		});
		await Promise.all(relays.map((n) => n.start()));
	});
	after(async () => {
		for (const c of clients) {
			try {
				c.close();
			} catch {}
		}
		await stopAll(relays);
		secrets?.remove();
	});

	/** Who announces `name` (under /anon) right now. */
	async function announcing(name: string): Promise<string[]> {
		const out: string[] = [];
		for (const n of relays) if ((await n.announced().catch((): string[] => [])).includes(name)) out.push(n.name);
		return out;
	}

	/** Publishes `name` on A, checks delivery at viewers on B and C, then ends it with `end`. */
	async function roundTrip(name: string, end: (pub: PublisherT) => void): Promise<void> {
		const [A, B, C] = relays;
		const pub = await Publisher.open(A, name, ["video"], SHAPE);
		clients.push(pub);
		pub.start(50);
		for (const n of relays) {
			await until(
				paced(async () => (await announcing(name)).includes(n.name)),
				10_000,
				`${name} on ${n.name}`,
			);
		}
		const viewers = await Promise.all([B, C].map((n) => Viewer.open(`${name}@${n.name}`, n, name, "video", 0, SHAPE)));
		clients.push(...viewers);
		await until(() => viewers.every((v) => v.newest >= 0), 10_000, "every viewer to receive a group");
		const from = pub.next + 1;
		await until(() => pub.next > from + 5, 5000, "more groups");
		pub.pause();
		const to = pub.next - 1;
		await until(() => viewers.every((v) => v.completeRange(from, to)), 5000, `groups ${from}-${to}`).catch(() => {});
		const problems = viewers.flatMap((v) => v.problems(from, to));
		assert.deepEqual(problems, [], `delivery over the legacy links:\n  ${problems.join("\n  ")}`);

		const endedAt = performance.now();
		end(pub);
		// Gone everywhere within linger + 1 s…
		await until(
			paced(async () => (await announcing(name)).length === 0),
			LINGER_MS + 1000,
			`${name} withdrawn everywhere`,
		).catch(async (err: Error) => {
			throw new Error(`${err.message}: still announced by ${await announcing(name)}`);
		});
		const goneAfter = performance.now() - endedAt;
		// …and no ghost: for the next 5 s no relay announces it again through another.
		const deadline = performance.now() + 5000;
		while (performance.now() < deadline) {
			const ghosts = await announcing(name);
			assert.deepEqual(
				ghosts,
				[],
				`${name} came back (a ghost) ${Math.round(performance.now() - endedAt)} ms after its end`,
			);
			await sleep(200);
		}
		for (const v of viewers) v.close();
		assert.ok(goneAfter <= LINGER_MS + 1000, `withdrawn after ${goneAfter} ms`);
	}

	test("the links come up on the pinned versions, over WebTransport, as cluster peers", async () => {
		const [A, B, C] = relays;
		await linksUp(B, [A.url]);
		await linksUp(C, [A.url, B.url]);
		// The version is known once the session's handshake is done (lite-02's SETUP exchange comes after the link is up).
		const versions = async (n: ClusterNode) => (await n.cluster()).peers.map((p) => `${p.url} v${p.version}`).sort();
		const wantC = [`${A.url} v2`, `${B.url} v3`].sort();
		await until(
			paced(async () => JSON.stringify(await versions(C)) === JSON.stringify(wantC)),
			5000,
			"C's link versions",
		).catch(async () => assert.deepEqual(await versions(C), wantC));
		await until(
			paced(async () => JSON.stringify(await versions(B)) === JSON.stringify([`${A.url} v3`])),
			5000,
			"B's link version",
		).catch(async () => assert.deepEqual(await versions(B), [`${A.url} v3`]));
	});

	test("a clean unpublish: delivered over the legacy links, then withdrawn everywhere, and no ghost", async () => {
		await roundTrip("ghost-clean", (pub) => pub.unpublish());
	});

	test("the publisher's connection closes: withdrawn everywhere, and no ghost", async () => {
		await roundTrip("ghost-close", (pub) => pub.close());
	});
});
