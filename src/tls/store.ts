/**
 * The relay's current certificates, replaceable at runtime (SIGHUP) without a restart.
 * A reload that fails keeps serving the previous certificates and reports why.
 * @module
 */

import { generateCertificate } from "./generate.ts";
import { type CertificateEntry, loadCertificates } from "./load.ts";

/** The `[server.tls]` part of RelayConfig. */
export interface TlsSettings {
	cert: string[];
	key: string[];
	generate: string[];
}

/** What a reload did. */
export interface ReloadResult {
	/** False when the new material was bad; the old certificates stay in use. */
	ok: boolean;
	/** True when any fingerprint changed. */
	changed: boolean;
	error?: Error;
}

/**
 * Regenerate a self-signed certificate once less than this much validity is left, so a
 * long-running relay renews before browsers reject it (they cap validity at 14 days).
 */
const RENEW_BEFORE_MS = 7 * 86_400_000;

/** Holds the certificates in use: configured files first, then the generated one if any. */
export class CertificateStore {
	#settings: TlsSettings;
	#entries: CertificateEntry[];
	#generation = 0;
	#listeners = new Set<(store: CertificateStore) => void>();

	/** Load the configured files and generate the self-signed certificate. Throws on bad files. */
	constructor(settings: TlsSettings) {
		this.#settings = { cert: [...settings.cert], key: [...settings.key], generate: [...settings.generate] };
		this.#entries = this.#build(null, Date.now());
		if (this.#entries.length === 0) throw new RangeError("no certificate configured: give cert/key files or generate");
	}

	/** Every certificate, configured files first. */
	get entries(): readonly CertificateEntry[] {
		return this.#entries;
	}

	/** The default certificate (the first). */
	get current(): CertificateEntry {
		return this.#entries[0];
	}

	/** PEM chain of the default certificate. */
	get cert(): string {
		return this.current.certPem;
	}

	/** PEM key of the default certificate. */
	get key(): string {
		return this.current.keyPem;
	}

	/** Fingerprint of the default certificate. */
	get fingerprint(): string {
		return this.current.fingerprint;
	}

	/** All fingerprints, for /certificate.sha256 and logs. */
	get fingerprints(): string[] {
		return this.#entries.map((entry) => entry.fingerprint);
	}

	/** Increments each time the certificates change; lets workers skip redundant context rebuilds. */
	get generation(): number {
		return this.#generation;
	}

	/** Call `listener` after every reload that changed a certificate. Returns an unsubscribe function. */
	onChange(listener: (store: CertificateStore) => void): () => void {
		this.#listeners.add(listener);
		return () => this.#listeners.delete(listener);
	}

	/**
	 * Re-read the certificate files and renew the generated certificate if it is within a week
	 * of expiry. On any error the current certificates stay and the error is returned, not thrown,
	 * so a bad renewal cannot take a running relay down.
	 */
	reload(now = Date.now()): ReloadResult {
		let next: CertificateEntry[];
		try {
			next = this.#build(this.#entries, now);
		} catch (err) {
			return { ok: false, changed: false, error: err as Error };
		}
		const changed =
			next.length !== this.#entries.length ||
			next.some((entry, i) => entry.fingerprint !== this.#entries[i].fingerprint);
		if (changed) {
			this.#entries = next;
			this.#generation++;
			for (const listener of this.#listeners) listener(this);
		}
		return { ok: true, changed };
	}

	#build(previous: CertificateEntry[] | null, now: number): CertificateEntry[] {
		const entries = loadCertificates(this.#settings.cert, this.#settings.key);
		if (this.#settings.generate.length > 0) {
			const old = previous?.find((entry) => "generated" in entry.origin);
			if (old && old.notAfter.getTime() - now > RENEW_BEFORE_MS) {
				entries.push(old);
			} else {
				const generated = generateCertificate(this.#settings.generate, { now: new Date(now) });
				entries.push({
					certPem: generated.certPem,
					keyPem: generated.keyPem,
					der: generated.der,
					fingerprint: generated.fingerprint,
					notBefore: generated.notBefore,
					notAfter: generated.notAfter,
					origin: { generated: [...this.#settings.generate] },
				});
			}
		}
		return entries;
	}
}
