/**
 * What the relay sends over the pool's MessagePorts: the main thread to a worker (`pool.post`,
 * `pool.broadcast`) and one worker to another (`ctx.send`). The pool carries these as opaque
 * payloads (src/pool/protocol.ts is its own envelope); every one is tagged by `type`, and each
 * worker checks them once, with `isRelayMessage`, where they arrive (src/worker/entry.ts).
 * Control plane only: structured clone; no media frame ever crosses a port.
 */
import type { RingWriterHandover } from "../cache/ring-writer.ts";
import type { PeerStatus } from "../cluster/links.ts";
import type { RelayConfig } from "../config/types.ts";
import type { Path } from "../path/index.ts";
import type { RingReaderOf } from "../relay/relay.ts";
import type { SubscriptionParams, TrackInfo } from "../relay/types.ts";
import type { GcProbeMessage } from "./gc-probe.ts";
import type { StatusMessage } from "./status.ts";

/** Main thread → worker. */
export type MainMessage =
	/** The certificate was replaced (SIGHUP or renewal). */
	| { type: "tls"; cert: string; key: string; fingerprint: string }
	/**
	 * SIGTERM/SIGINT: stop accepting (new QUIC handshakes refused, WebSocket upgrades 503) and tell
	 * every session to go elsewhere (moq-lite GOAWAY with `uri`, "" for none; HTTP/3 GOAWAY and the
	 * WebTransport DRAIN capsule). Existing sessions keep being served until the pool closes.
	 */
	| { type: "drain"; uri: string }
	/** Test hook (MOQ_FANOUT_DEBUG=1): the worker throws, to exercise supervision. */
	| { type: "crash" };

/**
 * The URL a draining relay sends its moq-lite clients to: the first `[cluster]` peer, or "" (none).
 * Never with its `?jwt=`: the cluster token is not for clients.
 */
export function drainUri(config: RelayConfig): string {
	const c = config.cluster;
	return c?.connect[0]?.url ?? c?.nodes[0]?.url ?? c?.parents[0]?.url ?? "";
}

/** Worker → worker: QUIC packets that landed on the wrong worker or leave through another. */
export type PacketMessage =
	/** A packet for a connection the receiving worker owns (after NAT rebinding, or single-socket spreading). */
	| { type: "pkt"; data: Uint8Array; address: string; port: number; family: string }
	/** Single-socket fallback: a packet for worker 0 to send from the shared socket. */
	| { type: "out"; data: Uint8Array; port: number; host: string };

/** Worker → worker: the shard link's control messages (src/worker/shard-link.ts). */
export type ShardMessage =
	/** `peer`: the worker's route was learned from another relay. */
	| { type: "pub"; path: Path; hops: number[]; w: number; peer: boolean }
	/** `clean`: the publisher unannounced it (its tracks have ended); otherwise it was lost abruptly. */
	| { type: "unpub"; path: Path; w: number; clean: boolean }
	/** The worker's route died abruptly and it lingers: the owner may move the broadcast to another worker's route. */
	| { type: "lost"; path: Path; w: number }
	/** `from`: the route moved from that (lingering) worker, which hands its rings over to `w`. */
	| { type: "ann"; path: Path; hops: number[]; w: number; peer: boolean; from?: number }
	/** A track's ring handed over to the worker now holding the route, with the workers reading it. */
	| {
			type: "adopt";
			path: Path;
			track: string;
			sab: SharedArrayBuffer;
			handover: RingWriterHandover;
			readers: RingReaderOf[];
	  }
	| { type: "end"; path: Path; w: number; clean: boolean }
	| { type: "want"; path: Path; track: string; w: number; params: SubscriptionParams; fwd?: boolean }
	| { type: "update"; path: Path; track: string; w: number; params: SubscriptionParams }
	| { type: "unwant"; path: Path; track: string; w: number; fwd?: boolean }
	| { type: "ring"; path: Path; track: string; sab: SharedArrayBuffer }
	| { type: "gone"; path: Path; track: string }
	| { type: "info?"; id: number; path: Path; track: string }
	| { type: "info"; id: number; info: TrackInfo | null };

/** Worker 0 → the others, once a second while the relay has cluster links: their state for /cluster. */
export type ClusterMessage = { type: "cluster"; peers: PeerStatus[] };

export type RelayMessage = MainMessage | PacketMessage | ShardMessage | StatusMessage | GcProbeMessage | ClusterMessage;

/** Every tag, each once: the compiler checks that the list and the union agree. */
const TAGS: { readonly [T in RelayMessage["type"]]: true } = {
	tls: true,
	drain: true,
	crash: true,
	pkt: true,
	out: true,
	pub: true,
	unpub: true,
	ann: true,
	lost: true,
	adopt: true,
	end: true,
	want: true,
	update: true,
	unwant: true,
	ring: true,
	gone: true,
	"info?": true,
	info: true,
	"status?": true,
	status: true,
	cluster: true,
	"gc?": true,
	gc: true,
};

/**
 * A message from a port is one of ours (by its tag; the fields are trusted: only this program's
 * threads hold the ports).
 */
export function isRelayMessage(v: unknown): v is RelayMessage {
	if (typeof v !== "object" || v === null) return false;
	const t = (v as { type?: unknown }).type;
	return typeof t === "string" && Object.hasOwn(TAGS, t);
}
