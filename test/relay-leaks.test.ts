import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as Lite from "@moq/lite";
import * as Net from "@moq/net";
import { startTestRelay, type TestRelay } from "./support/relay.ts";
import { until } from "./support/wait.ts";

/**
 * Nothing is left behind: after many sessions publish, subscribe and leave (cleanly or abruptly),
 * the relay holds no broadcasts, tracks, subscriptions, announce watchers or cache bytes.
 */
describe("no leaks across session churn", { timeout: 90_000 }, () => {
	let relay: TestRelay;
	before(async () => {
		relay = await startTestRelay();
	});
	after(async () => {
		await relay.close();
	});

	it("returns to empty after 20 rounds of publish / subscribe / leave", async () => {
		const core = relay.node.relay;
		const opts = { websocket: { delay: 0 } };
		for (let round = 0; round < 20; round++) {
			const name = `churn${round % 3}`;
			const pub = await Net.Connection.connect(relay.url("anon"), opts);
			const bc = new Net.Broadcast.Producer();
			const track = bc.createTrack("video");
			pub.publish(Net.Path.from(name), bc);
			await until(() => core.broadcasts.has(`anon/${name}`), 5000, "publish");
			const viewers = [
				await Net.Connection.connect(relay.url("anon"), opts),
				await Net.Connection.connect(relay.url("anon"), opts),
				await Lite.Connection.connect(relay.url("anon"), opts as never),
			];
			const subs = [
				viewers[0].consume(Net.Path.from(name)).subscribe("video"),
				viewers[1].consume(Net.Path.from(name)).subscribe("video"),
			];
			const liteTrack = viewers[2].consume(Lite.Path.from(name)).subscribe("video", 1);
			const announced = viewers[0].announced(Net.Path.from(""));
			await until(() => core.figures.subscriptions === 3, 5000, "subscriptions");
			const g = track.appendGroup();
			g.writeFrame({ payload: new Uint8Array(5000).fill(round), timestamp: Net.Time.Timestamp.now() });
			g.close();
			for (const sub of subs) assert.ok(await sub.recvGroup());
			assert.ok(await liteTrack.nextGroup());
			announced.close();
			// Alternate who leaves first, and how.
			if (round % 2 === 0) {
				for (const v of viewers) v.close();
				pub.close();
			} else {
				pub.close();
				for (const v of viewers) v.close();
			}
			await until(() => core.figures.sessions === 0, 10_000, `round ${round}: sessions closed`);
		}
		await until(() => core.broadcasts.size === 0, 5000, "broadcasts gone");
		assert.equal(core.figures.subscriptions, 0);
		assert.equal(core.figures.tracks, 0);
		assert.equal(core.announces.size, 0);
		assert.equal(core.announces.watchers, 0);
		assert.equal(core.remoteTracks.size, 0);
		assert.equal(core.budget?.used ?? 0, 0, "every ring's bytes went back to the cache budget");
	});
});
