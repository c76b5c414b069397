/**
 * A minimal DER (ASN.1 Distinguished Encoding Rules, ITU-T X.690) encoder: just the types an
 * X.509 certificate needs. Every function returns the complete TLV (tag, length, value).
 * @module
 */

const TAG = {
	INTEGER: 0x02,
	BIT_STRING: 0x03,
	OCTET_STRING: 0x04,
	OID: 0x06,
	UTF8_STRING: 0x0c,
	IA5_STRING: 0x16,
	UTC_TIME: 0x17,
	GENERALIZED_TIME: 0x18,
	BOOLEAN: 0x01,
	SEQUENCE: 0x30,
	SET: 0x31,
} as const;

/** Tag, definite length (short form below 128, else long form; X.690 §8.1.3), value. */
export function tlv(tag: number, value: Uint8Array): Uint8Array {
	const length = value.length;
	let header: number[];
	if (length < 0x80) {
		header = [tag, length];
	} else {
		const bytes: number[] = [];
		for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
		header = [tag, 0x80 | bytes.length, ...bytes];
	}
	const out = new Uint8Array(header.length + length);
	out.set(header, 0);
	out.set(value, header.length);
	return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
	let size = 0;
	for (const part of parts) size += part.length;
	const out = new Uint8Array(size);
	let offset = 0;
	for (const part of parts) {
		out.set(part, offset);
		offset += part.length;
	}
	return out;
}

/** SEQUENCE of already-encoded elements. */
export function sequence(...elements: Uint8Array[]): Uint8Array {
	return tlv(TAG.SEQUENCE, concat(elements));
}

/** SET of already-encoded elements (callers pass one element, so DER's sort order is moot). */
export function set(...elements: Uint8Array[]): Uint8Array {
	return tlv(TAG.SET, concat(elements));
}

/** A non-negative INTEGER from big-endian magnitude bytes: minimal, with a 0x00 pad if the top bit is set. */
export function unsignedInteger(magnitude: Uint8Array): Uint8Array {
	let start = 0;
	while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
	const trimmed = magnitude.subarray(start);
	const body = trimmed.length === 0 ? new Uint8Array([0]) : trimmed;
	return tlv(TAG.INTEGER, body[0] & 0x80 ? concat([new Uint8Array([0]), body]) : body);
}

/** A small non-negative INTEGER. */
export function smallInteger(value: number): Uint8Array {
	const bytes: number[] = [];
	for (let n = value; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
	return unsignedInteger(new Uint8Array(bytes));
}

export function boolean(value: boolean): Uint8Array {
	return tlv(TAG.BOOLEAN, new Uint8Array([value ? 0xff : 0x00]));
}

/** OBJECT IDENTIFIER from dotted form ("1.2.840.10045.2.1"), X.690 §8.19. */
export function oid(dotted: string): Uint8Array {
	const arcs = dotted.split(".").map(Number);
	const bytes: number[] = [arcs[0] * 40 + arcs[1]];
	for (const arc of arcs.slice(2)) {
		const base128: number[] = [arc & 0x7f];
		for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) base128.unshift(0x80 | (n & 0x7f));
		bytes.push(...base128);
	}
	return tlv(TAG.OID, new Uint8Array(bytes));
}

export function octetString(value: Uint8Array): Uint8Array {
	return tlv(TAG.OCTET_STRING, value);
}

/** BIT STRING of whole bytes (no unused bits). */
export function bitString(value: Uint8Array): Uint8Array {
	return tlv(TAG.BIT_STRING, concat([new Uint8Array([0]), value]));
}

/** BIT STRING with `unusedBits` trailing zero bits in the last byte (for KeyUsage flags). */
export function bitStringWithUnused(value: Uint8Array, unusedBits: number): Uint8Array {
	return tlv(TAG.BIT_STRING, concat([new Uint8Array([unusedBits]), value]));
}

export function utf8String(value: string): Uint8Array {
	return tlv(TAG.UTF8_STRING, new TextEncoder().encode(value));
}

export function ia5String(value: string): Uint8Array {
	return tlv(TAG.IA5_STRING, asciiBytes(value));
}

/**
 * X.509 Time (RFC 5280 §4.1.2.5): UTCTime "YYMMDDHHMMSSZ" through 2049, GeneralizedTime
 * "YYYYMMDDHHMMSSZ" from 2050. Milliseconds are dropped.
 */
export function time(date: Date): Uint8Array {
	const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
	const digits = iso.slice(0, 19).replace(/[-T:]/g, "");
	const year = date.getUTCFullYear();
	if (year >= 1950 && year < 2050) return tlv(TAG.UTC_TIME, asciiBytes(`${digits.slice(2)}Z`));
	return tlv(TAG.GENERALIZED_TIME, asciiBytes(`${digits}Z`));
}

/** [n] EXPLICIT: a constructed context-specific tag wrapping a complete element. */
export function explicit(n: number, element: Uint8Array): Uint8Array {
	return tlv(0xa0 | n, element);
}

/** [n] IMPLICIT for a primitive type: the context-specific tag replaces the type's own. */
export function implicitPrimitive(n: number, content: Uint8Array): Uint8Array {
	return tlv(0x80 | n, content);
}

function asciiBytes(value: string): Uint8Array {
	const out = new Uint8Array(value.length);
	for (let i = 0; i < value.length; i++) {
		const code = value.charCodeAt(i);
		if (code > 0x7f) throw new RangeError(`not ASCII: ${JSON.stringify(value)}`);
		out[i] = code;
	}
	return out;
}
