/**
 * moq-lite version codes and application protocol (ALPN / WebTransport / qmux) names.
 * Internally a version is its last byte (`LiteVersion`); the 32-bit codes only appear in the
 * 0x20/0x21 compat SETUP.
 * @module
 */

/** A moq-lite draft this relay speaks. 2 is only reached through the 0x20/0x21 exchange. */
export type LiteVersion = 2 | 3 | 4 | 5;

/**
 * What each draft has, by name: code that differs between versions asks one of these, never
 * compares version numbers itself (so a reader sees the feature, and a new draft is one edit here).
 */

/** lite-02 only: the 0x20/0x21 session stream carries SESSION_INFO after setup. */
export function hasSessionInfo(v: LiteVersion): boolean {
	return v === 2;
}

/** lite-02 only: an announce stream starts with ANNOUNCE_INIT (the active suffixes at once). */
export function hasAnnounceInit(v: LiteVersion): boolean {
	return v === 2;
}

/** 03+: SUBSCRIBE and SUBSCRIBE_UPDATE carry ordered, max latency and start/end groups. */
export function hasSubscribeParams(v: LiteVersion): boolean {
	return v >= 3;
}

/** 03+: a subscriber may send SUBSCRIBE_UPDATE (02 has none). */
export function hasSubscribeUpdate(v: LiteVersion): boolean {
	return v >= 3;
}

/** 03+: each subscribe response starts with its type (02 has only the bare OK). */
export function hasResponseType(v: LiteVersion): boolean {
	return v >= 3;
}

/** 03+: SUBSCRIBE_DROP. */
export function hasSubscribeDrop(v: LiteVersion): boolean {
	return v >= 3;
}

/** 03+: FETCH requests. */
export function hasFetch(v: LiteVersion): boolean {
	return v >= 3;
}

/** 03+: PROBE streams. */
export function hasProbe(v: LiteVersion): boolean {
	return v >= 3;
}

/** 03+: an ANNOUNCE carries its hop count (the ids themselves from 04). */
export function hasHopCount(v: LiteVersion): boolean {
	return v >= 3;
}

/** 04+: ANNOUNCE carries hop ids, and an announce request the hop to exclude. */
export function hasHops(v: LiteVersion): boolean {
	return v >= 4;
}

/** 03/04: each relay appends its own hop to an ANNOUNCE's hops; 05 sends it once, in ANNOUNCE_OK. */
export function appendsHop(v: LiteVersion): boolean {
	return v === 3 || v === 4;
}

/** 04+: PROBE carries the RTT. */
export function hasProbeRtt(v: LiteVersion): boolean {
	return v >= 4;
}

/** 04+: GOAWAY. */
export function hasGoaway(v: LiteVersion): boolean {
	return v >= 4;
}

/** 05+: the SETUP uni stream (role, and the path over raw QUIC). */
export function hasLiteSetup(v: LiteVersion): boolean {
	return v >= 5;
}

/** 05+: TRACK requests answered with TRACK_INFO. */
export function hasTrackInfo(v: LiteVersion): boolean {
	return v >= 5;
}

/** 05+: an announce stream starts with ANNOUNCE_OK (the answering relay's hop and the active count). */
export function hasAnnounceOk(v: LiteVersion): boolean {
	return v >= 5;
}

/** 05+: ANNOUNCE status 2 (restart): an active announce may replace one already active. */
export function hasAnnounceRestart(v: LiteVersion): boolean {
	return v >= 5;
}

/** 05+: SUBSCRIBE_OK carries the first group and follows it; before, it comes first with the parameters. */
export function hasSubscribeOkGroup(v: LiteVersion): boolean {
	return v >= 5;
}

/** 05+: SUBSCRIBE_END (response type 1; SUBSCRIBE_DROP moves to type 2). */
export function hasSubscribeEnd(v: LiteVersion): boolean {
	return v >= 5;
}

/** 05+: each FRAME carries a timestamp delta. */
export function hasFrameTimestamps(v: LiteVersion): boolean {
	return v >= 5;
}

export const LITE_01 = 0xff0dad01;
export const LITE_02 = 0xff0dad02;
export const LITE_03 = 0xff0dad03;
export const LITE_04 = 0xff0dad04;
export const LITE_05 = 0xff0dad05;
/** moq-transport draft 14: offered by clients in the 0x20 SETUP; out of scope for this relay. */
export const DRAFT_14 = 0xff00000e;

export const ALPN_LITE_05 = "moq-lite-05";
export const ALPN_LITE_04 = "moq-lite-04";
export const ALPN_LITE_03 = "moq-lite-03";
/** Version decided by the 0x20/0x21 SETUP exchange (also what an empty protocol means). */
export const ALPN_LEGACY = "moql";

/** The app protocols the relay accepts, best first (the server's preference picks). */
export const SUPPORTED_ALPNS: readonly string[] = [ALPN_LITE_05, ALPN_LITE_04, ALPN_LITE_03, ALPN_LEGACY];

/** The version an app protocol pins, or null when it is negotiated by 0x20/0x21 (`moql`, `""`) or unknown. */
export function versionFromAlpn(alpn: string): 3 | 4 | 5 | null {
	switch (alpn) {
		case ALPN_LITE_05:
			return 5;
		case ALPN_LITE_04:
			return 4;
		case ALPN_LITE_03:
			return 3;
		default:
			return null;
	}
}

/** The 32-bit wire code of a version (0xff0dad0N). */
export function versionCode(v: LiteVersion): number {
	return 0xff0dad00 + v;
}

/** The version a 32-bit wire code names, or null for one this relay does not speak (lite-01, moqt). */
export function versionFromCode(code: number): LiteVersion | null {
	switch (code) {
		case LITE_02:
			return 2;
		case LITE_03:
			return 3;
		case LITE_04:
			return 4;
		case LITE_05:
			return 5;
		default:
			return null;
	}
}

/**
 * The version to answer a 0x20 CLIENT_SETUP with: lite-02 if offered, else null (reject with VERSION).
 * Never 03+: both JS clients (@moq/lite, @moq/net) build a connection whose session reader throws
 * for 03+, which is fixed by ALPN and has no SETUP.
 */
export function selectCompatVersion(offered: readonly number[]): LiteVersion | null {
	return offered.includes(LITE_02) ? 2 : null;
}
