/**
 * The QUIC packet fuzzer (test/fuzz/quic-packets.ts, `npm run fuzz:quic`) against the ngtcp2
 * engine: its packet protection against RFC 9001's test vectors, then a short run (~25 k packets)
 * under the ASan + UBSan build that fails on any crash, sanitizer report or contract violation.
 *
 * Skipped, as test/quic-engine.test.ts is, when the addon cannot be built (no libngtcp2 0.12 +
 * GnuTLS here; CI installs them). QUIC_FUZZ_SEED picks another seed, QUIC_FUZZ_PACKETS the length,
 * QUIC_FUZZ_ADDON a prebuilt sanitized addon to run instead of building native/ngtcp2.c's.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { loadNgtcp2, ngtcp2Path, ngtcp2Unavailable } from "../src/quic/engine.ts";
import {
	clientHellos,
	cryptoData,
	initialKeys,
	LONG_INITIAL,
	protectLong,
	splitDatagram,
	unprotect,
	varint,
} from "./fuzz/quic-packets.ts";

const REPO = resolve(import.meta.dirname, "..");

/** Builds the addon when it is missing or older than its source (as quic-engine.test.ts does). */
function ensureBuilt(): void {
	const path = ngtcp2Path();
	const source = join(REPO, "native", "ngtcp2.c");
	if (existsSync(path) && statSync(path).mtimeMs >= statSync(source).mtimeMs) return;
	spawnSync(process.execPath, [join(REPO, "native", "build-ngtcp2.mjs")], { encoding: "utf8" });
}

ensureBuilt();
const ADDON = loadNgtcp2();
const SKIP = ADDON === null && process.env.CI !== "true" ? `ngtcp2 engine not built: ${ngtcp2Unavailable()}` : false;

test("Initial keys and protection match RFC 9001 Appendix A", () => {
	const dcid = Buffer.from("8394c8f03e515708", "hex");
	const client = initialKeys(dcid, "client");
	assert.equal(client.key.toString("hex"), "1f369613dd76d5467730efcbe3b1a22d");
	assert.equal(client.iv.toString("hex"), "fa044b2f42a3fd3b46fb255c");
	assert.equal(client.hp.toString("hex"), "9f50449e04a0e810283a1e9933adedd2");
	const server = initialKeys(dcid, "server");
	assert.equal(server.key.toString("hex"), "cf3a5331653c364c88f0f379b6067e37");
	assert.equal(server.hp.toString("hex"), "c206b8d9b9f0f37644430b490eeaa314");
	// A.2's header protection: packet number 2 in 4 bytes, first byte 0xc3 → 0xc0 after masking.
	const payload = Buffer.concat([Buffer.from([0x06]), varint(0), varint(4), Buffer.from("abcd"), Buffer.alloc(1100)]);
	const packet = protectLong({ type: LONG_INITIAL, dcid, scid: Buffer.alloc(0), pn: 2, payload }, client);
	assert.equal(packet[0] & 0xf0, 0xc0);
	const [where] = splitDatagram(packet);
	assert.equal(where.end, packet.length);
	const opened = unprotect(packet, where, client, 0, 1);
	assert.equal(opened?.pn, 2);
	assert.ok(opened?.payload?.equals(payload));
	assert.equal(cryptoData([payload]).toString(), "abcd");
	// The embedded ClientHello corpus parses as TLS ClientHellos.
	for (const hello of clientHellos()) assert.equal(hello[0], 1);
});

test("25 k fuzzed packets against the ngtcp2 engine under ASan + UBSan: no crash, no report", {
	skip: SKIP,
	timeout: 180_000,
}, () => {
	const seed = Number(process.env.QUIC_FUZZ_SEED ?? 20260);
	const packets = Number(process.env.QUIC_FUZZ_PACKETS ?? 25_000);
	const { NODE_TEST_CONTEXT: _, MOQ_NGTCP2_ADDON: __, ...env } = process.env;
	if (process.env.QUIC_FUZZ_ADDON) env.MOQ_NGTCP2_ADDON = process.env.QUIC_FUZZ_ADDON;
	const run = spawnSync(
		process.execPath,
		[join(REPO, "scripts", "fuzz-quic.ts"), "--packets", String(packets), "--seed", String(seed), "--sanitize"],
		{ encoding: "utf8", timeout: 170_000, env },
	);
	const output = `${run.stdout}\n${run.stderr}`;
	assert.doesNotMatch(output, /AddressSanitizer|runtime error:|Assertion .* failed/, output);
	assert.equal(run.status, 0, `the fuzz run failed:\n${output}`);
	const fed = /packets fed to the engine\s+([\d,]+)/.exec(run.stdout);
	assert.ok(fed !== null && Number(fed[1].replaceAll(",", "")) >= packets, output);
	assert.match(run.stdout, /sanitizer reports\s+0$/m);
	assert.match(run.stdout, /contract violations\s+0$/m);
	assert.match(run.stdout, /handshakes completed\s+[1-9]/);
	assert.match(run.stdout, /addon .*ngtcp2-sanitized\.node \(ASan \+ UBSan\)/);
});

test("a 1-RTT packet one below the largest, after the peer acknowledged our ACK of that largest: no abort", {
	skip: SKIP,
	timeout: 60_000,
}, () => {
	// libngtcp2 0.12 aborted in its next write (ngtcp2_put_uvarintlen: Assertion `n < 2^62`): see
	// native/ngtcp2.c "The ACK guard". In a child process, so that an abort fails this test only.
	const { NODE_TEST_CONTEXT: _, ...env } = process.env;
	env.MOQ_NGTCP2_ADDON = process.env.QUIC_FUZZ_ADDON || process.env.MOQ_NGTCP2_ADDON || ngtcp2Path();
	const script = `
		import { loadNgtcp2 } from ${JSON.stringify(join(REPO, "src", "quic", "engine.ts"))};
		import { ackOfAckReorder } from ${JSON.stringify(join(REPO, "test", "fuzz", "quic-packets.ts"))};
		const addon = loadNgtcp2();
		console.log("RESULT " + JSON.stringify([ackOfAckReorder(addon), ackOfAckReorder(addon, true)]));`;
	const run = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
		encoding: "utf8",
		timeout: 50_000,
		env,
	});
	const output = `${run.stdout}\n${run.stderr}`;
	assert.doesNotMatch(output, /Assertion .* failed|AddressSanitizer|runtime error:/, output);
	assert.equal(run.status, 0, output);
	const line = /^RESULT (.*)$/m.exec(run.stdout);
	assert.ok(line !== null, output);
	const [attack, benign] = JSON.parse(line[1]);
	// The late packet is dropped (the server's ACK still names only P + 1), the connection goes on.
	assert.deepEqual(attack, { largest: attack.p + 1, firstRange: 0, p: attack.p, alive: true, closed: false });
	// A plain reordering (nothing acknowledged in between) is taken: P and P + 1 in the first range.
	assert.equal(benign.largest, benign.p + 1);
	assert.ok(benign.firstRange >= 1, output);
	assert.ok(benign.alive && !benign.closed, output);
});
