/**
 * QX_TRANSPORT_PARAMETERS (qmux §transport parameters): `type(8 bytes) len (id len value)*`.
 * Each value is one varint filling its length exactly; reset_stream_at is an empty flag.
 */
import { DecodeError, NEED_MORE } from "../coding/errors.ts";
import { Reader } from "../coding/reader.ts";
import { varintSize } from "../coding/varint.ts";
import type { Writer } from "../coding/writer.ts";
import { QuicError } from "../errors/codes.ts";
import { QmuxError } from "./error.ts";
import {
	DEFAULT_MAX_RECORD_SIZE,
	type Framing,
	MAX_RECORD_SIZE_ID,
	readClamped,
	readKey,
	TRANSPORT_PARAMETERS_TYPE,
	usesRecords,
	WideKey,
} from "./frames.ts";

export interface TransportParams {
	/** Milliseconds; 0 = none. */
	maxIdleTimeout: number;
	initialMaxData: number;
	/** Credit for data on bidi streams the *sender of these params* opens. */
	initialMaxStreamDataBidiLocal: number;
	/** Credit for data on bidi streams the receiver of these params opens. */
	initialMaxStreamDataBidiRemote: number;
	initialMaxStreamDataUni: number;
	initialMaxStreamsBidi: number;
	initialMaxStreamsUni: number;
	/** 0 = datagrams refused. We never advertise them: moq-lite forbids datagrams on qmux. */
	maxDatagramFrameSize: number;
	/** qmux-01/02 only; default and minimum 16382. */
	maxRecordSize: number;
	/** qmux-02: the sender accepts RESET_STREAM_AT. */
	resetStreamAt: boolean;
}

/** What a peer that sent no parameter has: zero credit (RFC 9000 §18.2) and the default record size. */
export function defaultParams(): TransportParams {
	return {
		maxIdleTimeout: 0,
		initialMaxData: 0,
		initialMaxStreamDataBidiLocal: 0,
		initialMaxStreamDataBidiRemote: 0,
		initialMaxStreamDataUni: 0,
		initialMaxStreamsBidi: 0,
		initialMaxStreamsUni: 0,
		maxDatagramFrameSize: 0,
		maxRecordSize: DEFAULT_MAX_RECORD_SIZE,
		resetStreamAt: false,
	};
}

const ID = {
	MAX_IDLE_TIMEOUT: 0x01,
	INITIAL_MAX_DATA: 0x04,
	BIDI_LOCAL: 0x05,
	BIDI_REMOTE: 0x06,
	UNI: 0x07,
	STREAMS_BIDI: 0x08,
	STREAMS_UNI: 0x09,
	RESET_STREAM_AT: 0x1d,
	MAX_DATAGRAM_FRAME_SIZE: 0x20,
} as const;

function param(w: Writer, id: number, value: number): void {
	if (value === 0) return; // absent means 0
	w.varint(id).varint(varintSize(value)).varint(value);
}

/** Writes a whole QX_TRANSPORT_PARAMETERS frame for `framing`. */
export function encodeTransportParameters(w: Writer, p: TransportParams, framing: Framing): Writer {
	w.bytes(TRANSPORT_PARAMETERS_TYPE);
	return w.framed((b) => {
		param(b, ID.MAX_IDLE_TIMEOUT, p.maxIdleTimeout);
		param(b, ID.INITIAL_MAX_DATA, p.initialMaxData);
		param(b, ID.BIDI_LOCAL, p.initialMaxStreamDataBidiLocal);
		param(b, ID.BIDI_REMOTE, p.initialMaxStreamDataBidiRemote);
		param(b, ID.UNI, p.initialMaxStreamDataUni);
		param(b, ID.STREAMS_BIDI, p.initialMaxStreamsBidi);
		param(b, ID.STREAMS_UNI, p.initialMaxStreamsUni);
		param(b, ID.MAX_DATAGRAM_FRAME_SIZE, p.maxDatagramFrameSize);
		if (usesRecords(framing) && p.maxRecordSize !== DEFAULT_MAX_RECORD_SIZE) {
			b.bytes(MAX_RECORD_SIZE_ID).varint(varintSize(p.maxRecordSize)).varint(p.maxRecordSize);
		}
		if (framing === "qmux-02" && p.resetStreamAt) b.varint(ID.RESET_STREAM_AT).varint(0);
	});
}

function fail(message: string): never {
	throw new QmuxError(QuicError.TRANSPORT_PARAMETER_ERROR, message);
}

/** QUIC v1 parameters that qmux forbids: connection ids, tokens, ack tuning, migration, preferred address. */
function forbidden(id: number): boolean {
	return id === 0x00 || id === 0x02 || id === 0x03 || (id >= 0x0a && id <= 0x10);
}

/**
 * Decodes a parameters body (QX_TRANSPORT_PARAMETERS' payload). Unknown ids are skipped (and may
 * repeat); a repeated known id, a forbidden id, a malformed value or a record size below the
 * minimum is TRANSPORT_PARAMETER_ERROR.
 */
export function decodeTransportParameters(body: Uint8Array, framing: Framing): TransportParams {
	const p = defaultParams();
	const r = new Reader(body);
	const value = new Reader(body);
	let seen = 0; // bit per known id
	try {
		while (r.remaining > 0) {
			const id = readKey(r);
			const len = r.varint();
			const bytes = r.bytes(len);
			if (id === WideKey.APPLICATION_PROTOCOLS) fail("application_protocols is not allowed over WebSocket");
			if (forbidden(id)) fail(`forbidden transport parameter 0x${id.toString(16)}`);
			const bit = knownBit(id);
			if (bit === 0) continue;
			if (seen & bit) fail(`duplicate transport parameter ${id}`);
			seen |= bit;
			if (id === ID.RESET_STREAM_AT) {
				if (len !== 0) fail("reset_stream_at must be empty");
				p.resetStreamAt = true;
				continue;
			}
			value.reset(bytes);
			const v = readClamped(value);
			if (value.remaining !== 0) fail(`transport parameter ${id} has trailing bytes`);
			switch (id) {
				case ID.MAX_IDLE_TIMEOUT:
					p.maxIdleTimeout = v;
					break;
				case ID.INITIAL_MAX_DATA:
					p.initialMaxData = v;
					break;
				case ID.BIDI_LOCAL:
					p.initialMaxStreamDataBidiLocal = v;
					break;
				case ID.BIDI_REMOTE:
					p.initialMaxStreamDataBidiRemote = v;
					break;
				case ID.UNI:
					p.initialMaxStreamDataUni = v;
					break;
				case ID.STREAMS_BIDI:
					p.initialMaxStreamsBidi = v;
					break;
				case ID.STREAMS_UNI:
					p.initialMaxStreamsUni = v;
					break;
				case ID.MAX_DATAGRAM_FRAME_SIZE:
					p.maxDatagramFrameSize = v;
					break;
				case WideKey.MAX_RECORD_SIZE:
					p.maxRecordSize = v;
					break;
			}
		}
	} catch (e) {
		if (e === NEED_MORE || e instanceof DecodeError) fail("malformed transport parameters");
		throw e;
	}
	if (p.initialMaxStreamsBidi > 2 ** 60 || p.initialMaxStreamsUni > 2 ** 60) fail("max_streams above 2^60");
	if (usesRecords(framing) && p.maxRecordSize < DEFAULT_MAX_RECORD_SIZE) fail("max_record_size below 16382");
	return p;
}

function knownBit(id: number): number {
	switch (id) {
		case ID.MAX_IDLE_TIMEOUT:
			return 1 << 0;
		case ID.INITIAL_MAX_DATA:
			return 1 << 1;
		case ID.BIDI_LOCAL:
			return 1 << 2;
		case ID.BIDI_REMOTE:
			return 1 << 3;
		case ID.UNI:
			return 1 << 4;
		case ID.STREAMS_BIDI:
			return 1 << 5;
		case ID.STREAMS_UNI:
			return 1 << 6;
		case ID.MAX_DATAGRAM_FRAME_SIZE:
			return 1 << 7;
		case ID.RESET_STREAM_AT:
			return 1 << 8;
		case WideKey.MAX_RECORD_SIZE:
			return 1 << 9;
		default:
			return 0;
	}
}
