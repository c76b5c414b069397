/**
 * Our own lightweight moq-lite-05 client (bench load generator, publishers, tests).
 * @module
 */

export { Announced } from "./announced.ts";
export { type ClientOptions, MoqClient } from "./client.ts";
export {
	GroupWriter,
	type PublishedBroadcast,
	type PublishedTrack,
	type PublishOptions,
	TIMESCALE,
} from "./publisher.ts";
export type { SubscribeOptions, Subscription, SubscriptionHandlers } from "./subscription.ts";
