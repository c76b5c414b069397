/** Shared helpers for the WebSocket tests: an echoing relay and stream readers. Not a test file. */
import { type HttpServerHandle, startHttpServer, type WsListenerOptions } from "../../src/http/server.ts";
import type { TransportSession, TransportStream } from "../../src/transport/types.ts";

export interface EchoServer {
	handle: HttpServerHandle;
	url: string;
	sessions: TransportSession[];
	/** Resolves with the next session's onClose (code, reason). */
	closes: { code: number; reason: string }[];
	nextClose(): Promise<{ code: number; reason: string }>;
	/** Resolves once the echo has seen `name`: "<session index>:stop:7", "<session index>:reset:42". */
	event(name: string): Promise<void>;
}

/**
 * Bidi: echo what arrives, FIN on FIN, reset with code+1 on reset, stop → reset with code+2.
 * Uni: open a uni back and copy the bytes (queued until credit arrives), same FIN/reset rules.
 */
export function echo(session: TransportSession, event: (name: string) => void = () => {}): void {
	session.onStream = (s) => {
		if (s.bidi) {
			s.onData = (c) => {
				// A lone 0xff asks the server to STOP_SENDING 77 instead of echoing.
				if (c.length === 1 && c[0] === 0xff) s.stop(77);
				else s.write(c);
			};
			s.onFin = () => s.finish();
			s.onReset = (code) => {
				event(`reset:${code}`);
				s.reset(code + 1);
			};
			s.onStop = (code) => {
				event(`stop:${code}`);
				s.reset(code + 2);
			};
			return;
		}
		let out: TransportStream | null = session.openUni();
		const backlog: Uint8Array[] = [];
		let fin = false;
		let reset = -1;
		const drainBacklog = (): void => {
			if (out === null) return;
			for (const c of backlog) out.write(c);
			backlog.length = 0;
			if (reset >= 0) out.reset(reset + 1);
			else if (fin) out.finish();
		};
		if (out === null) {
			const prev = session.onStreamCredit;
			session.onStreamCredit = () => {
				prev?.();
				if (out === null) {
					out = session.openUni();
					drainBacklog();
				}
			};
		}
		s.onData = (c) => {
			if (out) out.write(c);
			else backlog.push(c.slice());
		};
		s.onFin = () => {
			fin = true;
			if (out) out.finish();
		};
		s.onReset = (code) => {
			reset = code;
			if (out) out.reset(code + 1);
		};
	};
}

export async function startEcho(
	ws?: WsListenerOptions,
	extra?: { fingerprint?: () => string | null },
): Promise<EchoServer> {
	const sessions: TransportSession[] = [];
	const closes: { code: number; reason: string }[] = [];
	const waiters: ((v: { code: number; reason: string }) => void)[] = [];
	const seen = new Set<string>();
	const eventWaiters = new Map<string, () => void>();
	const onEvent = (name: string): void => {
		seen.add(name);
		eventWaiters.get(name)?.();
	};
	const handle = await startHttpServer({
		host: "127.0.0.1",
		port: 0,
		fingerprint: extra?.fingerprint ?? (() => null),
		ws,
		onSession: (session) => {
			const index = sessions.length;
			sessions.push(session);
			session.onClose = (code, reason) => {
				const w = waiters.shift();
				if (w) w({ code, reason });
				else closes.push({ code, reason });
			};
			echo(session, (name) => onEvent(`${index}:${name}`));
		},
	});
	return {
		handle,
		url: `http://127.0.0.1:${handle.port}`,
		sessions,
		closes,
		event: (name) => (seen.has(name) ? Promise.resolve() : new Promise((r) => eventWaiters.set(name, r))),
		nextClose: () => {
			const c = closes.shift();
			if (c) return Promise.resolve(c);
			return new Promise((r) => waiters.push(r));
		},
	};
}

/** Reads a ReadableStream to its end and concatenates the chunks. */
export async function readAll(readable: ReadableStream<Uint8Array>): Promise<Uint8Array> {
	const reader = readable.getReader();
	const chunks: Uint8Array[] = [];
	let n = 0;
	for (;;) {
		const { value, done } = await reader.read();
		if (done) break;
		chunks.push(value);
		n += value.length;
	}
	const out = new Uint8Array(n);
	let off = 0;
	for (const c of chunks) {
		out.set(c, off);
		off += c.length;
	}
	return out;
}

/** Deterministic test bytes. */
export function pattern(n: number, seed = 1): Uint8Array {
	const out = new Uint8Array(n);
	let x = seed;
	for (let i = 0; i < n; i++) {
		x = (x * 1103515245 + 12345) >>> 0;
		out[i] = x >>> 24;
	}
	return out;
}
