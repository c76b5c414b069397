import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as Net from "@moq/net";
import { frameBytes } from "./support/frames.ts";
import { startTestRelay, type TestRelay } from "./support/relay.ts";
import { until } from "./support/wait.ts";

/** lite-05 extras through the relay with @moq/net: TRACK_INFO, FETCH of a cached group, SUBSCRIBE_END. */
describe("lite-05 TRACK_INFO, FETCH and SUBSCRIBE_END", { timeout: 30_000 }, () => {
	let relay: TestRelay;
	before(async () => {
		relay = await startTestRelay();
	});
	after(async () => {
		await relay.close();
	});

	it("serves track info, fetches a cached group byte-exact, and ends the subscription when the track ends", async () => {
		const pub = await Net.Connection.connect(relay.url("anon"), { websocket: { delay: 0 } });
		const bc = new Net.Broadcast.Producer();
		const track = bc.createTrack("video", { priority: 3, latencyMax: 1234 });
		pub.publish(Net.Path.from("fetchme"), bc);
		await until(() => relay.node.relay.broadcasts.has("anon/fetchme"), 5000, "publish");

		const view = await Net.Connection.connect(relay.url("anon"), { websocket: { delay: 0 } });
		const consumer = view.consume(Net.Path.from("fetchme"));
		const info = await consumer.track("video").info();
		assert.equal(info.priority, 3);
		assert.equal(info.latencyMax, 1234);

		const sub = consumer.subscribe("video");
		await until(() => relay.node.relay.figures.subscriptions === 1, 5000, "subscription");
		const publishGroup = () => {
			const g = track.appendGroup();
			for (let f = 0; f < 3; f++)
				g.writeFrame({ payload: frameBytes(g.sequence, f, 3000), timestamp: Net.Time.Timestamp.now() });
			g.close();
			return g.sequence;
		};
		// The relay's upstream subscription starts at the publisher's latest group: wait for the
		// first one to come through before publishing the ones the cache must hold.
		const first = publishGroup();
		assert.equal((await sub.recvGroup())?.sequence, first);
		const groups = [first, publishGroup(), publishGroup()];
		for (;;) {
			const g = await sub.recvGroup();
			assert.ok(g);
			if (g.sequence === groups[2]) break;
		}

		// A second viewer fetches group 1 from the relay's cache.
		const other = await Net.Connection.connect(relay.url("anon"), { websocket: { delay: 0 } });
		const fetched = await other.consume(Net.Path.from("fetchme")).track("video").fetchGroup(groups[1]);
		for (let f = 0; f < 3; f++) {
			const frame = await fetched.readFrame();
			assert.ok(frame, `frame ${f}`);
			assert.deepEqual(frame.payload, frameBytes(groups[1], f, 3000));
		}
		assert.equal(await fetched.readFrame(), undefined);

		// The publisher ends the track: the viewer's subscription ends cleanly (SUBSCRIBE_END + FIN).
		track.close();
		const closed = await sub.closed;
		assert.equal(closed, null, "the subscription ended without an error");
		other.close();
		view.close();
		pub.close();
	});
});
