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
 * @module
 */

/** A moq-transport draft this relay speaks. */
export type IetfDraft = 14 | 15 | 16;

export const DRAFT_14 = 0xff00000e;
export const DRAFT_15 = 0xff00000f;
export const DRAFT_16 = 0xff000010;

export const ALPN_DRAFT_14 = "moq-00";
export const ALPN_DRAFT_15 = "moqt-15";
export const ALPN_DRAFT_16 = "moqt-16";

/** Our IETF application protocols, newest first (offered after every moq-lite one). */
export const IETF_ALPNS: readonly string[] = [ALPN_DRAFT_16, ALPN_DRAFT_15, ALPN_DRAFT_14];

/** The draft an application protocol names; null for anything else (moq-lite, `moql`, ""). */
export function draftFromAlpn(protocol: string): IetfDraft | null {
	switch (protocol) {
		case ALPN_DRAFT_14:
			return 14;
		case ALPN_DRAFT_15:
			return 15;
		case ALPN_DRAFT_16:
			return 16;
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

/** 16+: SUBSCRIBE_NAMESPACE carries Subscribe Options after the prefix. */
export function hasSubscribeOptions(d: IetfDraft): boolean {
	return d >= 16;
}

/** 16+: PUBLISH_NAMESPACE_DONE / _CANCEL name the request ID (14/15: the namespace). */
export function namespaceDoneById(d: IetfDraft): boolean {
	return d >= 16;
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
