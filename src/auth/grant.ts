/**
 * What one session may do: its root, and the prefixes (relative to it) it may publish and subscribe
 * under. Checked on every request, so the checks are plain loops over a few short strings.
 * @module
 */
import { hasAnyPrefix, minimizePrefixes, type Path, pathsOverlap } from "../path/index.ts";

/** The permissions of one authenticated session. */
export class Grant {
	/** The session root: every wire path of this session is relative to it. */
	readonly root: Path;
	/** Prefixes relative to `root` this session may publish under ("" = everything); empty = none. */
	readonly publish: readonly Path[];
	/** Prefixes relative to `root` this session may subscribe under ("" = everything); empty = none. */
	readonly subscribe: readonly Path[];
	/** ms epoch when the session must close (token `exp`), or null. */
	readonly expiresAt: number | null;
	/**
	 * Another relay of the cluster: a verified token that grants everything (root "", publish and
	 * subscribe "") or carries moq-relay 0.10's `cluster: true` claim. Only peers may publish under
	 * `.internal/`; a peer's announcements carry routes.
	 */
	readonly peer: boolean;

	constructor(
		root: Path,
		publish: readonly Path[],
		subscribe: readonly Path[],
		expiresAt: number | null,
		peer = false,
	) {
		this.root = root;
		this.publish = Object.freeze(minimizePrefixes(publish));
		this.subscribe = Object.freeze(minimizePrefixes(subscribe));
		this.expiresAt = expiresAt;
		this.peer = peer;
	}

	/** May this session publish (announce) the broadcast at `relativePath`? */
	canPublish(relativePath: Path): boolean {
		return hasAnyPrefix(relativePath, this.publish);
	}

	/** May this session subscribe to / fetch from the broadcast at `relativePath`? */
	canSubscribe(relativePath: Path): boolean {
		return hasAnyPrefix(relativePath, this.subscribe);
	}

	/**
	 * Could anything under the announce prefix `relativePrefix` be visible to this session? False means
	 * an ANNOUNCE_REQUEST for it gets an empty set (moq-relay leaves the stream open and sends nothing).
	 */
	canSubscribeUnder(relativePrefix: Path): boolean {
		for (const prefix of this.subscribe) if (pathsOverlap(prefix, relativePrefix)) return true;
		return false;
	}

	/** Same as `canSubscribeUnder`, for the prefixes the relay asks a publishing client to announce. */
	canPublishUnder(relativePrefix: Path): boolean {
		for (const prefix of this.publish) if (pathsOverlap(prefix, relativePrefix)) return true;
		return false;
	}

	/**
	 * moq-relay's handshake check of the lite-05 SETUP Role (0 both, 1 publish, 2 subscribe): a client
	 * that says it only publishes needs a publish grant, and so on. Unknown roles need either.
	 */
	allowsRole(role: number): boolean {
		if (role === 1) return this.publish.length > 0;
		if (role === 2) return this.subscribe.length > 0;
		return this.publish.length > 0 || this.subscribe.length > 0;
	}

	/** True once `nowMs` reaches the token's expiry. */
	isExpired(nowMs: number): boolean {
		return this.expiresAt !== null && nowMs >= this.expiresAt;
	}
}
