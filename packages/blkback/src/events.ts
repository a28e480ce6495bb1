/**
 * blkback's events: transitions of one device's requests. The unmap deferral is the kernel's
 * `grant.unmap.deferred` (emitted by `gnttab_unmap_refs_async`), not repeated here.
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
    /** A response was pushed to the ring (after every grant of its request was unmapped, under `async`). */
    'blk.response': { dom: number; vdev: number; id: number; status: number };
    /** The frontend broke the ring (protocol violation): processing halted, the device disconnects. */
    'blk.ring.halted': { dom: number; vdev: number; reason: string };
  }
}

/**
 * Every payload names the device: `dom` the frontend, `vdev` its `virtual-device` handle (-1 when
 * the backend was never told it). Version 2 added `vdev`; a version-1 record reads with vdev -1.
 */
export const BLK_BACK_EVENTS_VERSION = 2;
/** The `vdev` of a device never told its `virtual-device`, and of a version-1 record (which had none). */
export const BLKBACK_VDEV_UNKNOWN = -1;

type F = readonly (readonly [string, FieldType])[];
const REQUEST: F = [['dom', 'u16'], ['vdev', 'i32'], ['id', 'f64'], ['op', 'u8'], ['sector', 'f64'], ['nsegs', 'u8']];
const RESPONSE: F = [['dom', 'u16'], ['vdev', 'i32'], ['id', 'f64'], ['status', 'i32']];

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
