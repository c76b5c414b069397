/**
 * The C allocator's side of the relay's memory: its figures for /metrics, and the periodic trim
 * that hands its free pages back to the kernel (`[workers] malloc_trim`).
 *
 * Why a trim: quiche (through its napi binding) and Node allocate with glibc malloc from every worker
 * thread, and each thread gets its own arena. Memory freed inside an arena stays mapped, and counted
 * in RSS, until the arena's top chunk is free, which rarely happens on a relay whose connections
 * live for hours (cluster links). RSS then climbs with every high-water mark of the churn while the
 * bytes in use stay flat: about 1.6 MB a minute per relay in the 15-minute cluster churn soak
 * (docs/soak.md), which malloc_trim(0) gave back. A trim walks every arena (the allocator's figures
 * are process-wide), so one worker runs it for the process.
 * @module
 */
import { Field, type WorkerCounters } from "../pool/counters.ts";
import { loadUdpNative, MallocSlot, type UdpNative } from "../quic/udp-native.ts";

/** Below this many free bytes a trim would return next to nothing: skip it. */
export const TRIM_MIN_FREE_BYTES = 4 * 1024 * 1024;

export interface NativeHeapFigures {
	/** Bytes the program holds from malloc (mmapped blocks included). */
	inUse: number;
	/** Free bytes malloc keeps mapped in its arenas. */
	free: number;
}

const info = new Float64Array(MallocSlot.count);

/** The allocator's process-wide figures; null without the addon or without glibc's mallinfo2. */
export function nativeHeapFigures(addon: UdpNative | null = loadUdpNative()): NativeHeapFigures | null {
	if (addon === null || !addon.mallocInfo(info)) return null;
	return { inUse: info[MallocSlot.inUse], free: info[MallocSlot.free] };
}

/** One trim: how many bytes of RSS it gave back (0 when skipped or when nothing was released). */
export function trimNativeHeap(
	addon: UdpNative,
	counters: WorkerCounters | null,
	minFreeBytes = TRIM_MIN_FREE_BYTES,
): number {
	if (addon.mallocInfo(info) && info[MallocSlot.free] < minFreeBytes) return 0;
	const before = process.memoryUsage.rss();
	addon.mallocTrim();
	const released = Math.max(0, before - process.memoryUsage.rss());
	if (counters) {
		counters.add(Field.mallocTrims, 1);
		counters.add(Field.mallocTrimmedBytes, released);
	}
	return released;
}

/**
 * Trims every `intervalMs` on an unref'd timer. Returns a stop function, or null when there is
 * nothing to run (interval 0, or no addon: then the allocator keeps its free pages, as before).
 */
export function startNativeHeapTrim(intervalMs: number, counters: WorkerCounters): (() => void) | null {
	const addon = loadUdpNative();
	if (intervalMs <= 0 || addon === null) return null;
	const timer = setInterval(() => trimNativeHeap(addon, counters), intervalMs);
	timer.unref();
	return () => clearInterval(timer);
}
