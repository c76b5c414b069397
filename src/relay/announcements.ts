import { hasPrefix, type Path } from "../path/index.ts";

function sameHops(a: readonly number[], b: readonly number[]): boolean {
	if (a.length !== b.length) return false;
	for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
	return true;
}

/** Who publishes a broadcast: enough for the relay to route a subscription to it. */
export interface AnnounceEntry {
	/** Absolute broadcast path (normalised). */
	readonly path: Path;
	/** Hop ids of the relays/clients it came through (loop prevention and route choice). */
	readonly hops: readonly number[];
	/** Opaque owner identity: a session id, or a worker index in the multi-worker build. */
	readonly owner: number;
	/** Learned from another relay of the cluster (an edge relay never passes those on to other relays). */
	readonly peer?: boolean;
}

export interface AnnounceWatcher {
	/** Absolute prefix (normalised) the watcher wants. */
	readonly prefix: Path;
	/** active = the entry now published; ended = `null` (the path went away). */
	onAnnounce(path: Path, entry: AnnounceEntry | null): void;
}

/**
 * The set of live broadcast paths and the sessions watching prefixes of it. Announcements are rare
 * and small, so a linear scan of watchers per change is fine; every worker keeps a full replica.
 */
export class AnnounceRegistry {
	readonly #active = new Map<Path, AnnounceEntry>();
	readonly #watchers = new Set<AnnounceWatcher>();

	get size(): number {
		return this.#active.size;
	}

	/** Sessions watching a prefix (for leak checks and metrics). */
	get watchers(): number {
		return this.#watchers.size;
	}

	get(path: Path): AnnounceEntry | undefined {
		return this.#active.get(path);
	}

	/** Publishes or replaces `entry`. Watchers see `ended` then `active` on replacement (never a duplicate active). */
	add(entry: AnnounceEntry): void {
		const previous = this.#active.get(entry.path);
		this.#active.set(entry.path, entry);
		for (const w of this.#watchers) {
			if (!hasPrefix(entry.path, w.prefix)) continue;
			if (previous) w.onAnnounce(entry.path, null);
			w.onAnnounce(entry.path, entry);
		}
	}

	/**
	 * The path's route changed (another publisher or hop chain) without it ending: watchers see the
	 * new entry as a second `active` (a lite-05 peer hears a restart). Adds the path if absent.
	 */
	update(entry: AnnounceEntry): void {
		const previous = this.#active.get(entry.path);
		this.#active.set(entry.path, entry);
		if (previous && previous.owner === entry.owner && sameHops(previous.hops, entry.hops)) return;
		for (const w of this.#watchers) if (hasPrefix(entry.path, w.prefix)) w.onAnnounce(entry.path, entry);
	}

	/** Removes the path if `owner` still owns it. Returns whether it did. */
	remove(path: Path, owner: number): boolean {
		const current = this.#active.get(path);
		if (!current || current.owner !== owner) return false;
		this.#active.delete(path);
		for (const w of this.#watchers) if (hasPrefix(path, w.prefix)) w.onAnnounce(path, null);
		return true;
	}

	/** Registers a watcher and returns the currently active entries under its prefix. */
	watch(w: AnnounceWatcher): AnnounceEntry[] {
		this.#watchers.add(w);
		const initial: AnnounceEntry[] = [];
		for (const e of this.#active.values()) if (hasPrefix(e.path, w.prefix)) initial.push(e);
		return initial;
	}

	unwatch(w: AnnounceWatcher): void {
		this.#watchers.delete(w);
	}

	entries(): IterableIterator<AnnounceEntry> {
		return this.#active.values();
	}
}
