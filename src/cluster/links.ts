/**
 * The links this relay dials to the other relays of its cluster (`[cluster] connect`, the guides'
 * `nodes` list where this relay is the one to dial, `parents`). One worker holds them (worker 0,
 * see docs/architecture.md): each link is an ordinary moq-lite session in which both relays ask
 * each other for every announcement under "" and subscribe to what their viewers want, so a
 * peer's broadcasts become routes of the relay core like any publisher's, and ours reach the peer.
 *
 * A link is redialled forever, as moq-relay does: 1 s doubling to 10 s, each wait scaled by a
 * random 50–100 % so that relays restarted together do not dial in lockstep, and back to 1 s
 * after a link that stayed up 10 s. The token is read from `[cluster] token` at every dial, so a
 * renewed token file is used from the next dial on (moq-relay reads it once, and an expired token
 * breaks its redials until a restart).
 * @module
 */

import { readFile } from "node:fs/promises";
import { Grant } from "../auth/grant.ts";
import { parseClusterPeer, shouldDial } from "../config/cluster-urls.ts";
import type { ClusterPeer, RelayConfig } from "../config/types.ts";
import * as Code from "../errors/codes.ts";
import type { Logger } from "../log/logger.ts";
import type { DialTarget, MoqSession } from "../moq/lite/session.ts";
import { normalizePath, type Path, ROOT, stripPrefix } from "../path/index.ts";
import { connectQuic } from "../quic/client.ts";
import type { AnnounceWatcher } from "../relay/announcements.ts";
import type { Relay } from "../relay/relay.ts";
import type { RelayTrack } from "../relay/track.ts";
import type { TrackHandle, TrackInfo, UpstreamPublisher } from "../relay/types.ts";
import type { TransportSession } from "../transport/types.ts";
import { connectWebTransport } from "../webtransport/client.ts";

/**
 * The ALPN a link offers over raw QUIC: moq-lite-05 only. It is the one version whose SETUP carries
 * the path, and so the token (`?jwt=`); a lite-03/04 link over raw QUIC would reach the peer
 * unauthenticated, as an anonymous client rather than a cluster peer. moq-relay 0.14 picks 05.
 */
export const PEER_ALPNS = ["moq-lite-05"];
/** HTTP/3, for WebTransport links (RFC 9114 §3.1). */
const H3_ALPN = "h3";

const BACKOFF_BASE_MS = 1000;
const BACKOFF_MAX_MS = 10_000;
/** A link that stayed up this long resets the backoff. */
const BACKOFF_RESET_AFTER_MS = 10_000;

interface LinkStats {
	/** Smoothed RTT of the active path, in ms as the QUIC binding reports it. */
	rttMs: number;
	bytesIn: number;
	bytesOut: number;
	openStreams: number;
}

export type PeerState = "connecting" | "connected" | "backoff" | "stopped";

/** One configured peer as the /cluster page shows it. */
export interface PeerStatus {
	url: string;
	state: PeerState;
	/** The moq-lite version in use, 0 when not connected. */
	version: number;
	/** The peer's hop id from its SETUP (lite-05), 0 when unknown. */
	id: number;
	/** Smoothed round-trip time (ms) of the link, or null. */
	rttMs: number | null;
	/** Current wait before the next dial (ms), 0 when not waiting. */
	backoffMs: number;
	/** Dials made, and links that came up. */
	dials: number;
	connects: number;
	/** Since when the link is up (ms epoch), or null. */
	connectedSince: number | null;
	/** Why the last attempt or link ended. */
	lastError: string | null;
	bytesIn: number;
	bytesOut: number;
	/** Streams of the link's QUIC connection not finished both ways, or null when not connected. */
	openStreams: number | null;
}

export interface ClusterLinksOptions {
	config: RelayConfig;
	log: Logger;
	/** The worker's relay core: gossip publishes our entry in it and watches the others'. */
	relay: Relay;
	/** Starts a moq-lite session over a dialled transport (the worker's own bookkeeping, limits and guard). */
	startSession(transport: TransportSession, dial: DialTarget): MoqSession;
}

/** The full grant a link runs with: a cluster peer may publish and subscribe everything. */
function peerGrant(): Grant {
	return new Grant(ROOT, [ROOT], [ROOT], null, true);
}

class PeerLink {
	readonly peer: ClusterPeer;
	state: PeerState = "backoff";
	session: MoqSession | null = null;
	transport: TransportSession | null = null;
	/** The link's QUIC counters (under WebTransport too). */
	stats: (() => LinkStats | null) | null = null;
	dials = 0;
	connects = 0;
	connectedSince: number | null = null;
	lastError: string | null = null;
	backoffMs = 0;
	#attempt = 0;
	/** Bytes of the current link (as last read) and of the links before it. */
	#bytesIn = 0;
	#bytesOut = 0;
	#bytesTotalIn = 0;
	#bytesTotalOut = 0;
	#timer: ReturnType<typeof setTimeout> | null = null;
	readonly #links: ClusterLinks;

	constructor(peer: ClusterPeer, links: ClusterLinks) {
		this.peer = peer;
		this.#links = links;
	}

	start(): void {
		this.#dial();
	}

	stop(): void {
		this.state = "stopped";
		if (this.#timer) clearTimeout(this.#timer);
		this.#timer = null;
		this.session?.close(0, "relay shutting down");
	}

	#schedule(reason: string): void {
		if (this.state === "stopped") return;
		this.lastError = reason;
		this.state = "backoff";
		const upFor = this.connectedSince === null ? 0 : Date.now() - this.connectedSince;
		if (upFor >= BACKOFF_RESET_AFTER_MS) this.#attempt = 0;
		this.connectedSince = null;
		const base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(this.#attempt, 10));
		this.#attempt++;
		this.backoffMs = Math.round(base * (0.5 + Math.random() * 0.5));
		this.#timer = setTimeout(() => {
			this.#timer = null;
			this.backoffMs = 0;
			this.#dial();
		}, this.backoffMs);
	}

	#dial(): void {
		if (this.state === "stopped") return;
		this.state = "connecting";
		this.dials++;
		this.#links.connect(this).then(
			({ transport, token, stats }) => {
				if (this.state === "stopped") {
					transport.close(0, "relay shutting down");
					return;
				}
				this.transport = transport;
				this.stats = stats;
				const onClose = (reason: string) => {
					this.#bytesTotalIn += this.#bytesIn;
					this.#bytesTotalOut += this.#bytesOut;
					this.#bytesIn = 0;
					this.#bytesOut = 0;
					this.session = null;
					this.transport = null;
					this.stats = null;
					this.#schedule(reason);
				};
				const session = this.#links.open(this, transport, token);
				this.session = session;
				this.state = "connected";
				this.connects++;
				this.connectedSince = Date.now();
				this.lastError = null;
				const inner = transport.onClose;
				transport.onClose = (code, reason, graceful) => {
					inner?.(code, reason, graceful);
					onClose(`closed (${code}${reason ? `: ${reason}` : ""})`);
				};
			},
			(err: Error) => this.#schedule(err.message),
		);
	}

	status(): PeerStatus {
		const session = this.session;
		const stats = this.stats?.() ?? null;
		if (stats) {
			this.#bytesIn = stats.bytesIn;
			this.#bytesOut = stats.bytesOut;
		}
		return {
			url: this.peer.url,
			state: this.state,
			version: session?.version ?? 0,
			id: session?.peerOrigin ?? 0,
			rttMs: stats && Number.isFinite(stats.rttMs) ? stats.rttMs : null,
			backoffMs: this.backoffMs,
			dials: this.dials,
			connects: this.connects,
			connectedSince: this.connectedSince,
			lastError: this.lastError,
			bytesIn: this.#bytesTotalIn + this.#bytesIn,
			bytesOut: this.#bytesTotalOut + this.#bytesOut,
			openStreams: stats ? stats.openStreams : null,
		};
	}
}

/** A gossiped peer unannounced this long is dropped (moq-relay's 60 s: a re-announce within it keeps the link). */
const GOSSIP_STALE_MS = 60_000;

/**
 * Our gossip entry `<prefix>/<node>`: an empty broadcast (no tracks), published while the relay runs
 * so that the others discover our URL.
 */
class GossipEntry implements UpstreamPublisher {
	readonly id: number;
	constructor(id: number) {
		this.id = id;
	}
	subscribeUpstream(track: TrackHandle): void {
		(track as RelayTrack).abortTrack(Code.NOT_FOUND);
	}
	updateUpstream(): void {}
	unsubscribeUpstream(): void {}
	fetchTrackInfo(): Promise<TrackInfo> {
		return Promise.reject(new Error("a gossip entry has no tracks"));
	}
}

/**
 * moq-relay's gossip path for a node URL: the URL as path segments ("https://a.example:4443/" →
 * "https:/a.example:4443"), and back: a first segment ending in ":" gets its "//" again.
 */
export function gossipPath(prefix: string, node: string): Path {
	return normalizePath(`${prefix}/${node}`, 64);
}

export function gossipUrl(suffix: string): string {
	const slash = suffix.indexOf("/");
	if (slash > 0 && suffix[slash - 1] === ":") return `${suffix.slice(0, slash)}//${suffix.slice(slash + 1)}`;
	return suffix;
}

/** The dialled side of the cluster: one link per configured (or gossiped) peer, held by one worker. */
export class ClusterLinks {
	readonly #opts: ClusterLinksOptions;
	readonly #links: PeerLink[] = [];
	readonly #log: Logger;
	/** Gossip: peers found under `<prefix>/`, by canonical URL, and when each was unannounced. */
	readonly #gossiped = new Map<string, { link: PeerLink; goneAt: number | null }>();
	#gossipEntry: { path: Path; entry: GossipEntry } | null = null;
	#watcher: AnnounceWatcher | null = null;
	#sweep: ReturnType<typeof setInterval> | null = null;

	constructor(opts: ClusterLinksOptions) {
		this.#opts = opts;
		this.#log = opts.log.child({ layer: "cluster" });
		for (const peer of opts.config.cluster?.dial ?? []) this.#links.push(new PeerLink(peer, this));
	}

	start(): void {
		for (const link of this.#links) link.start();
		if (this.#links.length > 0) this.#log.info("cluster links", { peers: this.#links.map((l) => l.peer.url) });
		const c = this.#opts.config.cluster;
		if (c?.mesh && c.node !== null && c.nodeKey !== null) {
			// As in moq-relay, a relay with no peers of its own to dial is a passive rendezvous: it
			// advertises itself but dials nobody it discovers (the others dial it, so a pair never
			// gets a second link that way).
			this.#startGossip(c.prefix, c.node, c.nodeKey, this.#links.length > 0);
		}
	}

	stop(): void {
		for (const link of this.#links) link.stop();
		if (this.#sweep) clearInterval(this.#sweep);
		if (this.#watcher) this.#opts.relay.announces.unwatch(this.#watcher);
		if (this.#gossipEntry) this.#opts.relay.unpublish(this.#gossipEntry.path, this.#gossipEntry.entry, true);
	}

	/**
	 * Gossip (`mesh = true`), as moq-relay does it: publish `<prefix>/<node>`, and dial each relay
	 * found there whose URL sorts after ours (the other side of each pair dials us). A relay that
	 * unannounces is dropped after 60 s unless it comes back.
	 */
	#startGossip(prefix: string, node: string, selfKey: string, discover: boolean): void {
		const relay = this.#opts.relay;
		const path = gossipPath(prefix, node);
		const entry = new GossipEntry(relay.nextSessionId());
		this.#gossipEntry = { path, entry };
		relay.publish(path, [], entry);
		this.#log.info("advertising this relay for gossip", { path });
		if (!discover) return;
		const root = normalizePath(prefix, 64);
		const seen = (p: Path, active: boolean) => {
			const suffix = stripPrefix(p, root);
			if (suffix === null || suffix === "") return;
			let peer: ClusterPeer;
			try {
				peer = parseClusterPeer(gossipUrl(suffix));
			} catch {
				return;
			}
			if (peer.key === selfKey || !shouldDial(selfKey, peer.key)) return;
			if (this.#links.some((l) => l.peer.key === peer.key && !this.#gossiped.has(peer.key))) return; // configured
			const known = this.#gossiped.get(peer.key);
			if (!active) {
				if (known) known.goneAt = Date.now();
				return;
			}
			if (known) {
				known.goneAt = null;
				return;
			}
			const link = new PeerLink(peer, this);
			this.#links.push(link);
			this.#gossiped.set(peer.key, { link, goneAt: null });
			this.#log.info("discovered cluster peer; dialling", { peer: peer.url });
			link.start();
		};
		const watcher: AnnounceWatcher = { prefix: root, onAnnounce: (p, e) => seen(p, e !== null) };
		this.#watcher = watcher;
		for (const e of relay.announces.watch(watcher)) seen(e.path, true);
		this.#sweep = setInterval(() => {
			const now = Date.now();
			for (const [key, g] of this.#gossiped) {
				if (g.goneAt === null || now - g.goneAt < GOSSIP_STALE_MS) continue;
				g.link.stop();
				this.#gossiped.delete(key);
				const i = this.#links.indexOf(g.link);
				if (i >= 0) this.#links.splice(i, 1);
				this.#log.info("gossiped cluster peer gone", { peer: g.link.peer.url });
			}
		}, 5000);
		this.#sweep.unref();
	}

	status(): PeerStatus[] {
		return this.#links.map((l) => l.status());
	}

	/** The token a dial presents: the URL's own `?jwt=`, else `[cluster] token` read now (it may have been renewed). */
	async #token(peer: ClusterPeer): Promise<string | null> {
		if (peer.jwt !== null) return peer.jwt;
		const file = this.#opts.config.cluster?.token ?? null;
		if (file === null) return null;
		const text = (await readFile(file, "utf8")).trim();
		return text.length > 0 ? text : null;
	}

	/**
	 * Opens the transport toward a peer (raw QUIC with moq-lite-05, or WebTransport for a link pinned
	 * to an older version); also returns the token to present and the QUIC connection's counters.
	 */
	async connect(
		link: PeerLink,
	): Promise<{ transport: TransportSession; token: string | null; stats: () => LinkStats | null }> {
		const token = await this.#token(link.peer);
		const config = this.#opts.config;
		const url = new URL(link.peer.url);
		const port = url.port ? Number(url.port) : 443;
		const host = url.hostname.replace(/^\[|\]$/g, "");
		const tls = config.client.tls;
		let certificateHashes: string[] | undefined;
		if (url.protocol === "http:") {
			// moq-relay's http:// peers: fetch the certificate's SHA-256 over plain HTTP and pin it
			// (self-signed development relays).
			const res = await fetch(`http://${url.host}/certificate.sha256`, { signal: AbortSignal.timeout(5000) });
			if (!res.ok) throw new Error(`GET /certificate.sha256 answered ${res.status}`);
			certificateHashes = [(await res.text()).trim()];
		}
		let ca: string | undefined;
		if (!certificateHashes && !tls.disableVerify && tls.root.length > 0) {
			ca = (await Promise.all(tls.root.map((f) => readFile(f, "utf8")))).join("\n");
		}
		const idle = config.cluster?.peerIdleTimeoutMs ?? 5000;
		const version = link.peer.version ?? 5;
		const quic = await connectQuic({
			host,
			port,
			// moq-lite-05 goes over raw QUIC (its SETUP carries the token); an older version pinned
			// with `?version=` goes over WebTransport, whose CONNECT URL carries it.
			alpns: version === 5 ? PEER_ALPNS : [H3_ALPN],
			serverName: url.hostname,
			certificateHashes,
			insecure: !certificateHashes && tls.disableVerify,
			ca,
			timeoutMs: 10_000,
			// A killed peer is noticed within the idle timeout; PINGs keep a quiet link alive.
			limits: { idleTimeoutMs: idle, keepAliveMs: Math.max(250, Math.floor(idle / 3)) },
		});
		const stats = () => quic.linkStats();
		if (version === 5) return { transport: quic, token, stats };
		const target = new URL(url.href);
		if (token) target.searchParams.set("jwt", token);
		// lite-03/04 are WebTransport protocols; lite-02 is plain WebTransport and its own SETUP exchange.
		const protocols = version === 2 ? [] : [`moq-lite-0${version}`];
		try {
			const wt = await connectWebTransport(quic, target, protocols, { timeoutMs: 10_000 });
			if (version !== 2 && wt.protocol !== protocols[0]) {
				wt.close(Code.VERSION, "the peer did not accept the pinned version");
				throw new Error(`the peer did not accept ${protocols[0]} over WebTransport`);
			}
			return { transport: wt, token, stats };
		} catch (err) {
			quic.close(0, "");
			throw err;
		}
	}

	/** Runs the moq-lite session of a link that came up. */
	open(link: PeerLink, transport: TransportSession, token: string | null): MoqSession {
		const url = new URL(link.peer.url);
		// Over raw QUIC the token travels in the SETUP path (over WebTransport it went in the CONNECT
		// URL), as `?jwt=` does on a URL; it is never logged.
		const target = `${url.pathname || "/"}${token ? `?jwt=${encodeURIComponent(token)}` : ""}`;
		this.#log.info("cluster link up", { peer: link.peer.url, protocol: transport.protocol });
		return this.#opts.startSession(transport, { target, grant: peerGrant() });
	}
}
