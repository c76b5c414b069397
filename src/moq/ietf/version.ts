/**
 * IETF moq-transport drafts this relay speaks, their version codes and application protocol names,
 * and what differs between them, by name: code that depends on the draft asks one of these
 * predicates, never compares draft numbers itself.
 *
 * How a session gets its draft (docs/ietf.md):
 * - ALPN / WebTransport protocol / WebSocket subprotocol `moqt-15`, `moqt-16`: fixed by the name;
 *   the 0x20 CLIENT_SETUP carries no version list.
 * - `moq-00`: draft-14, confirmed by the 0x20 CLIENT_SETUP's version list (it must offer 0xff00000e).
 * - `moql` or nothing: the 0x20 CLIENT_SETUP decides; draft-14 only when the client offers no
 *   moq-lite version this relay speaks (a lite-02 offer keeps today's lite-02 choice).
 * - `moqt-17` … `moqt-20`: fixed by the name; each side opens a unidirectional stream with SETUP
 *   (0x2F00) and every request is a bidirectional stream of its own.
 * @module
 */

/** A moq-transport draft this relay speaks. */
export type IetfDraft = 14 | 15 | 16 | 17 | 18 | 19 | 20;

/** Every draft this relay speaks, oldest first. */
export const IETF_DRAFTS: readonly IetfDraft[] = [14, 15, 16, 17, 18, 19, 20];

export const DRAFT_14 = 0xff00000e;
export const DRAFT_15 = 0xff00000f;
export const DRAFT_16 = 0xff000010;
export const DRAFT_17 = 0xff000011;
export const DRAFT_18 = 0xff000012;
export const DRAFT_19 = 0xff000013;
export const DRAFT_20 = 0xff000014;

export const ALPN_DRAFT_14 = "moq-00";
export const ALPN_DRAFT_15 = "moqt-15";
export const ALPN_DRAFT_16 = "moqt-16";
export const ALPN_DRAFT_17 = "moqt-17";
export const ALPN_DRAFT_18 = "moqt-18";
export const ALPN_DRAFT_19 = "moqt-19";
export const ALPN_DRAFT_20 = "moqt-20";

/** Our IETF application protocols, newest first (offered after every moq-lite one). */
export const IETF_ALPNS: readonly string[] = [
	ALPN_DRAFT_20,
	ALPN_DRAFT_19,
	ALPN_DRAFT_18,
	ALPN_DRAFT_17,
	ALPN_DRAFT_16,
	ALPN_DRAFT_15,
	ALPN_DRAFT_14,
];

/** The application protocol name of a draft (`moq-00` for 14). */
export function alpnOf(d: IetfDraft): string {
	return d === 14 ? ALPN_DRAFT_14 : `moqt-${d}`;
}

/** The draft an application protocol names; null for anything else (moq-lite, `moql`, ""). */
export function draftFromAlpn(protocol: string): IetfDraft | null {
	switch (protocol) {
		case ALPN_DRAFT_14:
			return 14;
		case ALPN_DRAFT_15:
			return 15;
		case ALPN_DRAFT_16:
			return 16;
		case ALPN_DRAFT_17:
			return 17;
		case ALPN_DRAFT_18:
			return 18;
		case ALPN_DRAFT_19:
			return 19;
		case ALPN_DRAFT_20:
			return 20;
		default:
			return null;
	}
}

/** True when the negotiated application protocol is one of ours from IETF moq-transport. */
export function isIetfProtocol(protocol: string): boolean {
	return draftFromAlpn(protocol) !== null;
}

/** The 32-bit version code of a draft (0xff0000NN). */
export function versionCode(d: IetfDraft): number {
	return 0xff000000 + d;
}

/** The draft a version code names, or null for one this relay does not speak as IETF. */
export function draftFromCode(code: number): IetfDraft | null {
	switch (code) {
		case DRAFT_14:
			return 14;
		case DRAFT_15:
			return 15;
		case DRAFT_16:
			return 16;
		case DRAFT_17:
			return 17;
		case DRAFT_18:
			return 18;
		case DRAFT_19:
			return 19;
		case DRAFT_20:
			return 20;
		default:
			return null;
	}
}

/** "moq-transport-16" (the name @moq/net reports as `conn.version`). */
export function draftName(d: IetfDraft): string {
	return `moq-transport-${d}`;
}

/** 14: CLIENT_SETUP lists versions and SERVER_SETUP names the chosen one (15+: ALPN fixed it). */
export function hasSetupVersions(d: IetfDraft): boolean {
	return d === 14;
}

/**
 * 15+: REQUEST_OK (0x07) and REQUEST_ERROR (0x05) answer every request; 14 has per-message replies
 * (SUBSCRIBE_ERROR 0x05, PUBLISH_NAMESPACE_OK 0x07 / _ERROR 0x08, SUBSCRIBE_NAMESPACE_OK 0x12 /
 * _ERROR 0x13, FETCH_ERROR 0x19, PUBLISH_ERROR 0x1F, TRACK_STATUS_ERROR 0x0F).
 */
export function hasRequestOk(d: IetfDraft): boolean {
	return d >= 15;
}

/** 16+: REQUEST_ERROR carries a retry interval before its reason. */
export function hasRetryInterval(d: IetfDraft): boolean {
	return d >= 16;
}

/** 14: SUBSCRIBE carries priority, group order, forward and the filter inline (15+: as parameters). */
export function hasInlineSubscribeFields(d: IetfDraft): boolean {
	return d === 14;
}

/** 14: SUBSCRIBE_OK carries expires, group order and content-exists inline (15+: parameters only). */
export function hasInlineSubscribeOkFields(d: IetfDraft): boolean {
	return d === 14;
}

/**
 * 16+: SUBSCRIBE_NAMESPACE opens its own bidi stream, answered there with REQUEST_OK then NAMESPACE
 * (0x08) / NAMESPACE_DONE (0x0E); it ends with the stream (no UNSUBSCRIBE_NAMESPACE). 14/15: it is
 * a control message, and the namespaces come back as PUBLISH_NAMESPACE requests of their own.
 */
export function hasNamespaceStream(d: IetfDraft): boolean {
	return d >= 16;
}

/**
 * 16/17: SUBSCRIBE_NAMESPACE (0x11) carries Subscribe Options after the prefix. 18+ renumbered the
 * message (0x50) without them (SUBSCRIBE_TRACKS, 0x51, took the TRACKS option).
 */
export function hasSubscribeOptions(d: IetfDraft): boolean {
	return d === 16 || d === 17;
}

/** 16: PUBLISH_NAMESPACE_DONE / _CANCEL name the request ID (14/15: the namespace; 17+: gone). */
export function namespaceDoneById(d: IetfDraft): boolean {
	return d >= 16;
}

/** 14: each request has its own OK / ERROR messages (15+: REQUEST_OK, REQUEST_ERROR). */
export function hasPerRequestReplies(d: IetfDraft): boolean {
	return !hasRequestOk(d);
}

/** 14: FETCH carries subscriber priority and group order inline (15+: as parameters). */
export function hasInlineFetchFields(d: IetfDraft): boolean {
	return d === 14;
}

/** 14: PUBLISH carries group order, content-exists / largest and forward inline (15+: parameters). */
export function hasInlinePublishFields(d: IetfDraft): boolean {
	return d === 14;
}

/** The code "no such track / namespace" has in the draft's REQUEST_ERROR registry. */
export function doesNotExistCode(d: IetfDraft): number {
	// 14: SUBSCRIBE_ERROR TRACK_DOES_NOT_EXIST (0x4); 15+: REQUEST_ERROR DOES_NOT_EXIST (0x10).
	return d === 14 ? 0x4 : 0x10;
}

// ---------------------------------------------------------------------------------------------
// Drafts 17+

/**
 * 17+: no control stream. SETUP (0x2F00) goes on a unidirectional stream each side opens (ours then
 * carries only GOAWAY), and every request is a bidirectional stream of its own that carries its
 * replies; a request ends with its stream (UNSUBSCRIBE, PUBLISH_NAMESPACE_DONE / _CANCEL,
 * UNSUBSCRIBE_NAMESPACE and FETCH_CANCEL are gone). 14–16: one bidirectional control stream.
 */
export function hasRequestStreams(d: IetfDraft): boolean {
	return d >= 17;
}

/**
 * 17+: every varint on every stream (control messages, their parameters, subgroup headers and
 * objects, the LOCATION_FILTER inside its parameter) is the leading-ones form (1–9 bytes by the
 * count of leading 1 bits), not QUIC's two-bit-length form. 14–16: QUIC varints.
 */
export function hasLeadingOnesVarints(d: IetfDraft): boolean {
	return d >= 17;
}

/** 18+: the leading-ones 7-byte form (prefix 1111110x) is valid; 17 reserves it. */
export function hasSevenByteVarint(d: IetfDraft): boolean {
	return d >= 18;
}

/** 14–16: MAX_REQUEST_ID and REQUESTS_BLOCKED (request-ID flow control); 17+ removed them. */
export function hasRequestFlowControl(d: IetfDraft): boolean {
	return d <= 16;
}

/** 14–16: replies (SUBSCRIBE_OK, REQUEST_OK/ERROR, PUBLISH_DONE…) name their request ID; 17+: the stream does. */
export function hasRequestIdInReplies(d: IetfDraft): boolean {
	return d <= 16;
}

/** 17 only: requests carry a Required Request ID Delta after their request ID. */
export function hasRequiredRequestIdDelta(d: IetfDraft): boolean {
	return d === 17;
}

/**
 * 17+: message parameters are Type-Value pairs whose value layout the type defines (a u8, a bool,
 * a varint, or length-prefixed bytes); an unknown type cannot be skipped. 14–16: key-value pairs.
 */
export function hasTypedParams(d: IetfDraft): boolean {
	return d >= 17;
}

/** 17+: SETUP options and Track Properties run to the end of the message, with no count. */
export function hasUnifiedSetup(d: IetfDraft): boolean {
	return d >= 17;
}

/** 17+: GOAWAY carries a timeout after the URI. */
export function hasGoawayTimeout(d: IetfDraft): boolean {
	return d >= 17;
}

/** 18+: SUBSCRIBE_NAMESPACE is 0x50, and SUBSCRIBE_TRACKS (0x51) exists. 14–17: 0x11. */
export function hasRenumberedSubscribeNamespace(d: IetfDraft): boolean {
	return d >= 18;
}

/** 18+: subgroup header types carry the FIRST_OBJECT bit (0x40): the stream starts at the group's first object. */
export function hasFirstObjectBit(d: IetfDraft): boolean {
	return d >= 18;
}

/** 17 only: PUBLISH_BLOCKED (0x0F) on a SUBSCRIBE_NAMESPACE stream. */
export function hasPublishBlocked(d: IetfDraft): boolean {
	return d === 17;
}

/**
 * 20+: LOCATION_FILTER (parameter 0x21) is up to four varints whose count selects the meaning (none:
 * unfiltered; one: groups back from the largest; two: a start, 0/0 being the next object; three or
 * four: a range), and SUBSCRIBE may carry FILL_PARAMETERS (0x23) and INCLUDE_PROPERTIES (0x35).
 * 14–19: a Filter Type tag then its locations.
 */
export function hasFieldFilters(d: IetfDraft): boolean {
	return d >= 20;
}

/** 16+: key-value-pair types (parameters, object properties) are delta-encoded from the previous one. */
export function hasDeltaTypes(d: IetfDraft): boolean {
	return d >= 16;
}

/** 16+: SUBSCRIBE_OK, PUBLISH and FETCH_OK end with Track Extensions (key-value pairs to the end). */
export function hasTrackExtensions(d: IetfDraft): boolean {
	return d >= 16;
}

/** 15+: subgroup header types 0x30–0x3D (no publisher priority field) beside 0x10–0x1D. */
export function hasPriorityFreeSubgroups(d: IetfDraft): boolean {
	return d >= 15;
}

/** 14/15: object status 0x1 (Object Does Not Exist). */
export function hasObjectDoesNotExist(d: IetfDraft): boolean {
	return d <= 15;
}

/** 18 only: GOAWAY may end with an optional Request ID (19 removed it again). */
export function hasGoawayRequestId(d: IetfDraft): boolean {
	return d === 18;
}
