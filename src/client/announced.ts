/**
 * Discovery: an ANNOUNCE request (bidi type 1) for a prefix; the relay answers ANNOUNCE_OK (how many
 * active broadcasts follow at once), then one ANNOUNCE per broadcast that starts or ends.
 * @module
 */

import type { Reader } from "../coding/reader.ts";
import { Writer } from "../coding/writer.ts";
import { CANCEL } from "../errors/codes.ts";
import { ControlReader } from "../moq/control-reader.ts";
import {
	type Announce,
	type AnnounceOk,
	decodeAnnounce,
	decodeAnnounceOk,
	encodeAnnounceRequest,
} from "../moq/lite/wire/announce.ts";
import { BIDI } from "../moq/lite/wire/stream-type.ts";
import { joinPath, normalizePath, type Path } from "../path/index.ts";
import type { TransportStream } from "../transport/types.ts";
import { CONTROL } from "./control.ts";

/** Live set of broadcasts under a prefix. */
export class Announced {
	readonly prefix: Path;
	/** Full paths (prefix joined with the suffix) currently active. */
	readonly active = new Set<string>();
	/** A broadcast became active (`true`) or ended (`false`). Paths are full (prefix included). */
	onAnnounce: ((path: string, active: boolean) => void) | null = null;
	/** ANNOUNCE_OK and the initial set it promised have arrived. */
	onReady: (() => void) | null = null;
	/** The relay ended the stream (FIN or reset); every path is gone. */
	onEnd: ((code: number) => void) | null = null;
	ready = false;
	/** The relay's hop id, from ANNOUNCE_OK. */
	relayHop = 0;

	readonly #stream: TransportStream;
	readonly #reader: ControlReader;
	#initialLeft = -1;
	#ended = false;

	/** @internal */
	constructor(stream: TransportStream, prefix: string, ownHop: number) {
		this.prefix = normalizePath(prefix);
		this.#stream = stream;
		this.#reader = new ControlReader(stream, CONTROL, (code) => this.#end(code));
		const w = new Writer(32 + prefix.length);
		w.varint(BIDI.ANNOUNCE);
		encodeAnnounceRequest(w, { prefix: this.prefix, excludeHop: ownHop }, 5);
		stream.write(w.view());
		// First ANNOUNCE_OK, then (#resumeWith) a fresh reader for the announces.
		stream.onData = (chunk) => this.#reader.push(chunk, decodeOk, this.#onOk);
		stream.onFin = () => {
			stream.finish();
			this.#end(0);
		};
		stream.onReset = (code) => this.#end(code || CANCEL);
	}

	/** Resolves once the initial set has arrived. */
	whenReady(): Promise<void> {
		if (this.ready) return Promise.resolve();
		return new Promise((resolve) => {
			const prev = this.onReady;
			this.onReady = () => {
				prev?.();
				resolve();
			};
		});
	}

	readonly #onOk = (ok: AnnounceOk): void => {
		this.relayHop = ok.hopId;
		this.#initialLeft = ok.activeCount;
		// Stop decoding ANNOUNCE_OK; the rest of the buffer is announces.
		this.#resumeWith(this.#reader.release());
	};

	#resumeWith(rest: Uint8Array): void {
		const reader = new ControlReader(this.#stream, CONTROL, (code) => this.#end(code));
		this.#stream.onData = (chunk) => reader.push(chunk, decode, this.#onAnnounce);
		if (this.#initialLeft === 0) this.#markReady();
		if (rest.length > 0) reader.push(rest, decode, this.#onAnnounce);
	}

	readonly #onAnnounce = (a: Announce): void => {
		const path = joinPath(this.prefix, a.suffix);
		if (a.active) this.active.add(path);
		else this.active.delete(path);
		this.onAnnounce?.(path, a.active);
		if (!this.ready && this.#initialLeft > 0 && --this.#initialLeft === 0) this.#markReady();
	};

	#markReady(): void {
		if (this.ready) return;
		this.ready = true;
		this.onReady?.();
	}

	/** Stops watching (FIN + STOP_SENDING). */
	close(): void {
		if (this.#ended) return;
		this.#stream.finish();
		this.#stream.stop(CANCEL);
		this.#end(0);
	}

	#end(code: number): void {
		if (this.#ended) return;
		this.#ended = true;
		for (const path of this.active) this.onAnnounce?.(path, false);
		this.active.clear();
		this.onEnd?.(code);
	}
}

function decodeOk(r: Reader): AnnounceOk {
	return decodeAnnounceOk(r, 5);
}

function decode(r: Reader): Announce {
	return decodeAnnounce(r, 5);
}
