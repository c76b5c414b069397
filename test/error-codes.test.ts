import assert from "node:assert/strict";
import { test } from "node:test";
import { AuthError } from "../src/auth/index.ts";
import { CacheError } from "../src/cache/index.ts";
import { DecodeError } from "../src/coding/errors.ts";
import { CodedError } from "../src/errors/coded-error.ts";
import * as Code from "../src/errors/codes.ts";
import { H3, QuicError } from "../src/errors/codes.ts";
import { PathError } from "../src/path/index.ts";
import { QmuxError } from "../src/qmux/error.ts";
import { faultCode } from "../src/transport/guard.ts";

test("moq-lite codes keep their wire values (moq-net error.rs, plus FAULT)", () => {
	const expected: Record<string, number> = {
		CANCEL: 0,
		FAULT: 1,
		OLD: 2,
		TIMEOUT: 3,
		UNAUTHORIZED: 6,
		VERSION: 9,
		UNEXPECTED_STREAM: 10,
		DUPLICATE: 12,
		NOT_FOUND: 13,
		PROTOCOL_VIOLATION: 15,
		UNEXPECTED_MESSAGE: 16,
		UNSUPPORTED: 17,
		DROPPED: 24,
		CLOSED: 25,
		LAGGED: 26,
		FRAME_TOO_LARGE: 27,
		TIMESTAMP_MISMATCH: 29,
		UNROUTABLE: 30,
		EVICTED: 31,
		APPLICATION_BASE: 64,
	};
	const table = Code as unknown as Record<string, unknown>;
	for (const [name, value] of Object.entries(expected)) assert.equal(table[name], value, name);
	// Every numeric export is in the list above: no code was added or renumbered unnoticed.
	const numeric = Object.entries(table).filter(([, v]) => typeof v === "number");
	assert.deepEqual(Object.fromEntries(numeric), expected);
});

test("codeName names every moq-lite code", () => {
	assert.equal(Code.codeName(Code.PROTOCOL_VIOLATION), "protocol violation");
	assert.equal(Code.codeName(Code.FAULT), "fault");
	assert.equal(Code.codeName(Code.FRAME_TOO_LARGE), "frame too large");
	assert.equal(Code.codeName(66), "app 2");
	assert.equal(Code.codeName(7), "unknown 7");
});

test("QUIC transport (qmux) and HTTP/3 codes keep their wire values", () => {
	assert.equal(QuicError.NO_ERROR, 0x00);
	assert.equal(QuicError.INTERNAL_ERROR, 0x01);
	assert.equal(QuicError.FLOW_CONTROL_ERROR, 0x03);
	assert.equal(QuicError.FRAME_ENCODING_ERROR, 0x07);
	assert.equal(QuicError.PROTOCOL_VIOLATION, 0x0a);
	assert.equal(H3.NO_ERROR, 0x100);
	assert.equal(H3.INTERNAL_ERROR, 0x102);
	assert.equal(H3.FRAME_UNEXPECTED, 0x105);
	assert.equal(H3.QPACK_DECOMPRESSION_FAILED, 0x200);
	assert.equal(H3.WT_SESSION_GONE, 0x170d7b68);
});

test("WebTransport maps moq-lite codes into HTTP/3's application range, skipping GREASE", () => {
	assert.equal(Code.toH3(0), 0x52e4a40fa8db);
	assert.equal(Code.toH3(0x1e), 0x52e4a40fa8db + 0x1f); // one GREASE codepoint skipped
	assert.equal(Code.toH3(0xffffffff), 0x52e5ac983162);
	assert.equal(Code.toH3(-5), Code.toH3(0));
	for (let code = 0; code < 4000; code++) assert.equal(Code.fromH3(Code.toH3(code)), code);
	assert.equal(Code.fromH3(H3.REQUEST_CANCELLED), null);
	assert.equal(Code.fromH3(0x52e4a40fa8db + 0x1e), null, "a GREASE codepoint carries no code");
});

test("each transport carries moq-lite codes its own way", () => {
	for (const code of [Code.CANCEL, Code.PROTOCOL_VIOLATION, Code.LAGGED, Code.APPLICATION_BASE + 3]) {
		// Raw QUIC and qmux: RESET_STREAM / STOP_SENDING and CONNECTION_CLOSE 0x1d carry the code as is.
		for (const carrier of ["quic", "qmux"] as const) {
			assert.equal(Code.streamCodeOn(carrier, code), code);
			assert.equal(Code.streamCodeFrom(carrier, code), code);
			assert.equal(Code.sessionCodeOn(carrier, code), code);
		}
		// WebTransport: stream codes in HTTP/3's application range, session close as a u32.
		assert.equal(Code.streamCodeOn("webtransport", code), Code.toH3(code));
		assert.equal(Code.streamCodeFrom("webtransport", Code.toH3(code)), code);
		assert.equal(Code.sessionCodeOn("webtransport", code), code);
	}
	assert.equal(Code.streamCodeFrom("webtransport", H3.REQUEST_CANCELLED), null);
	assert.equal(Code.sessionCodeOn("webtransport", 2 ** 40), 0xffffffff);
	assert.equal(Code.sessionCodeOn("webtransport", -1), 0);
});

test("error classes share one code field (CodedError), which the session guard closes with", () => {
	const decode = new DecodeError("x");
	const auth = new AuthError("no-access", "x");
	const cache = new CacheError("x");
	const qmux = new QmuxError(QuicError.FLOW_CONTROL_ERROR, "x", 0x08);
	const path = new PathError("dot-segment", "x");
	for (const err of [decode, auth, cache, qmux, path]) assert.ok(err instanceof CodedError, err.constructor.name);
	assert.equal(decode.code, Code.PROTOCOL_VIOLATION);
	assert.equal(new DecodeError("x", H3.FRAME_ERROR).code, H3.FRAME_ERROR);
	assert.equal(auth.code, Code.UNAUTHORIZED);
	assert.equal(auth.httpStatus, 403);
	assert.equal(auth.httpText, "forbidden: token grants nothing at this path");
	assert.equal(new AuthError("path-invalid", "x").httpStatus, 400);
	assert.equal(cache.code, Code.FAULT);
	assert.equal(cache.name, "CacheError");
	assert.equal(qmux.code, QuicError.FLOW_CONTROL_ERROR);
	assert.equal(qmux.frameType, 0x08);
	assert.equal(path.code, Code.PROTOCOL_VIOLATION);
	assert.equal(faultCode(decode), Code.PROTOCOL_VIOLATION);
	assert.equal(faultCode(auth), Code.UNAUTHORIZED);
	assert.equal(faultCode(cache), Code.FAULT);
	assert.equal(faultCode(new TypeError("x")), Code.FAULT);
});
