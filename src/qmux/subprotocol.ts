/**
 * WebSocket subprotocol negotiation: the selected value fixes both the framing and
 * the application protocol. `qmux-0X.<alpn>` → draft X + alpn; bare `qmux-0X` → draft X, no app
 * protocol; `webtransport` or nothing → legacy framing, no app protocol ("" means the client runs the
 * 0x20/0x21 SETUP exchange).
 */
import type { Framing } from "./frames.ts";

/** App protocols in server preference order: moq-lite, then IETF moq-transport (src/moq/ietf/version.ts). */
export const APP_PROTOCOLS: readonly string[] = [
	"moq-lite-05",
	"moq-lite-04",
	"moq-lite-03",
	"moql",
	"moqt-20",
	"moqt-19",
	"moqt-18",
	"moqt-17",
	"moqt-16",
	"moqt-15",
	"moq-00",
];

/**
 * qmux drafts in server preference order. qmux-01 first: it is what the reference Rust relay
 * negotiates (so it is the client path exercised in production), it has records and QX_PING
 * keep-alive, and it lacks draft-02's extra ordering rules. 02 then 00 remain fully supported.
 */
export const QMUX_PREFERENCE: readonly Framing[] = ["qmux-01", "qmux-02", "qmux-00"];

export interface Negotiated {
	framing: Framing;
	/** The app protocol, "" when none. */
	protocol: string;
}

/** Our offer list, most preferred first: every app protocol under every draft, then the bare forms. */
export function preferenceList(
	apps: readonly string[] = APP_PROTOCOLS,
	drafts: readonly Framing[] = QMUX_PREFERENCE,
): string[] {
	const out: string[] = [];
	for (const app of apps) for (const d of drafts) out.push(`${d}.${app}`);
	for (const d of drafts) out.push(d);
	out.push("webtransport");
	return out;
}

const DEFAULT_PREFERENCE = preferenceList();

/** Splits a raw `Sec-WebSocket-Protocol` header into its tokens. */
export function parseOffer(header: string | string[] | undefined): string[] {
	if (header === undefined) return [];
	const raw = Array.isArray(header) ? header.join(",") : header;
	const out: string[] = [];
	for (const part of raw.split(",")) {
		const t = part.trim();
		if (t !== "") out.push(t);
	}
	return out;
}

/** The first of *our* preferences the client offered, or null when none fits. */
export function selectSubprotocol(
	offered: Iterable<string>,
	preference: readonly string[] = DEFAULT_PREFERENCE,
): string | null {
	const set = offered instanceof Set ? (offered as Set<string>) : new Set(offered);
	for (const p of preference) if (set.has(p)) return p;
	return null;
}

const DRAFTS: readonly Framing[] = ["qmux-00", "qmux-01", "qmux-02"];

/** Framing and app protocol of a selected subprotocol ("" = none offered → legacy). */
export function parseSubprotocol(value: string): Negotiated {
	for (const d of DRAFTS) {
		if (value === d) return { framing: d, protocol: "" };
		if (value.length > d.length + 1 && value.startsWith(d) && value[d.length] === ".") {
			return { framing: d, protocol: value.slice(d.length + 1) };
		}
	}
	return { framing: "webtransport", protocol: "" };
}
