/**
 * blkback's events: transitions of one device's requests. A deferred unmap is logged twice over,
 * on purpose: the kernel's generic `grant.unmap.deferred` (the batch: its first gfn, count, busy
 * pages) and blkback's `blk.unmap.deferred` naming the request whose response now waits.
 */
import { declareEvent, type FieldType } from '@pvsim/eventlog';

declare module '@pvsim/eventlog' {
  interface EventPayloads {
    /**
     * A request passed validation and was dispatched; its segments are mapped next, in one batch
     * on the same thread. `op` is BLKIF_OP_*, `sector` in 512-byte units.
     */
    'blk.request': { dom: number; vdev: number; id: number; op: number; sector: number; nsegs: number };
    /** A request was refused (the frontend's fault) and answered with `status`. */
    'blk.reject': { dom: number; vdev: number; id: number; op: number; status: number; code: string; reason: string };
    /**
     * Under `async`: the request's I/O is done but a page of it is still held (`busyPages` of its
     * segments' pages have a count above 1), so its unmap — and its response — wait `delayMs` for
     * the next try. One event per deferral: `age` is the attempt that found the pages busy (0 the
     * first, at completion), so the last one before the `blk.response` says how long it waited.
     */
    'blk.unmap.deferred': { dom: number; vdev: number; id: number; age: number; delayMs: number; busyPages: number };
    /** A response was pushed to the ring (after every grant of its request was unmapped, under `async`). */
    'blk.response': { dom: number; vdev: number; id: number; status: number };
    /** The frontend broke the ring (protocol violation): processing halted, the device disconnects. */
    'blk.ring.halted': { dom: number; vdev: number; reason: string };
  }
}

/**
 * Every payload names the device: `dom` the frontend, `vdev` its `virtual-device` handle (-1 when
 * the backend was never told it). Version 2 of the kinds that predate it added `vdev`; a
 * version-1 record reads with vdev -1 (`blk.unmap.deferred` had it from its version 1).
 */
export const BLK_BACK_EVENTS_VERSION = 2;
/** The `vdev` of a device never told its `virtual-device`, and of a version-1 record (which had none). */
export const BLKBACK_VDEV_UNKNOWN = -1;

type F = readonly (readonly [string, FieldType])[];
const REQUEST: F = [['dom', 'u16'], ['vdev', 'i32'], ['id', 'f64'], ['op', 'u8'], ['sector', 'f64'], ['nsegs', 'u8']];
const RESPONSE: F = [['dom', 'u16'], ['vdev', 'i32'], ['id', 'f64'], ['status', 'i32']];
const UNMAP_DEFERRED: F = [['dom', 'u16'], ['vdev', 'i32'], ['id', 'f64'], ['age', 'u32'], ['delayMs', 'f64'], ['busyPages', 'u32']];

const withVdev = (payload: Record<string, unknown>, fromVersion: number): Record<string, unknown> =>
  fromVersion < 2 && !('vdev' in payload) ? { ...payload, vdev: BLKBACK_VDEV_UNKNOWN } : payload;

for (const [kind, doc, fields] of [
  ['blk.request', 'blkback dispatched a validated request', REQUEST],
  ['blk.reject', 'blkback refused a request and answered it with an error', undefined],
  ['blk.response', 'blkback pushed a response', RESPONSE],
  ['blk.ring.halted', 'blkback halted ring processing: the frontend broke the protocol', undefined],
] as const) {
  declareEvent({ kind, version: BLK_BACK_EVENTS_VERSION, doc, upgrade: withVdev, ...(fields ? { fields } : {}) });
}

// A kind born with `vdev`: version 1, nothing to upgrade.
declareEvent({ kind: 'blk.unmap.deferred', version: 1, doc: "blkback: a request's pages are still held; its unmap and response wait for a retry", fields: UNMAP_DEFERRED });
