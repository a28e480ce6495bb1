/**
 * blkback's events: transitions of one device's requests. The unmap deferral is the kernel's
 * `grant.unmap.deferred` (emitted by `gnttab_unmap_refs_async`), not repeated here.
 */
import { declareEvent, type FieldType } from '@pvsim/eventlog';

declare module '@pvsim/eventlog' {
  interface EventPayloads {
    /** A request passed validation and was dispatched. `op` is BLKIF_OP_*, `sector` in 512-byte units. */
    'blk.request': { dom: number; id: number; op: number; sector: number; nsegs: number };
    /** A request was refused (the frontend's fault) and answered with `status`. */
    'blk.reject': { dom: number; id: number; op: number; status: number; code: string; reason: string };
    /** A response was pushed to the ring (after every grant of its request was unmapped, under `async`). */
    'blk.response': { dom: number; id: number; status: number };
    /** The frontend broke the ring (protocol violation): processing halted, the device disconnects. */
    'blk.ring.halted': { dom: number; reason: string };
  }
}

type F = readonly (readonly [string, FieldType])[];
const REQUEST: F = [['dom', 'u16'], ['id', 'f64'], ['op', 'u8'], ['sector', 'f64'], ['nsegs', 'u8']];
const RESPONSE: F = [['dom', 'u16'], ['id', 'f64'], ['status', 'i32']];

for (const [kind, doc, fields] of [
  ['blk.request', 'blkback dispatched a validated request', REQUEST],
  ['blk.reject', 'blkback refused a request and answered it with an error', undefined],
  ['blk.response', 'blkback pushed a response', RESPONSE],
  ['blk.ring.halted', 'blkback halted ring processing: the frontend broke the protocol', undefined],
] as const) {
  declareEvent({ kind, version: 1, doc, ...(fields ? { fields } : {}) });
}
