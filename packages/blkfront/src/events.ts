/**
 * blkfront's events: one kind per transition of a request or of a grant the frontend could not
 * yet take back. `dom` is the guest's domid, `vdev` the `virtual-device` handle.
 */
import { declareEvent } from '@pvsim/eventlog';

declare module '@pvsim/eventlog' {
  interface EventPayloads {
    /** A request was put on the ring (`blkif_queue_rw_req`): its id, op and extent. */
    'blk.submit': { dom: number; vdev: number; id: number; op: number; sector: number; nrSegments: number; nrSectors: number };
    /** A response completed a request (`blkif_completion`); `status` is BLKIF_RSP_*. */
    'blk.complete': { dom: number; vdev: number; id: number; op: number; status: number };
    /** The backend broke the protocol (bad response, unknown id, broken ring): the device stops. */
    'blk.error': { dom: number; vdev: number; reason: string };
    /** `gnttab_add_deferred` (ended false) or a later timer run that finally ended it (ended true). */
    'blk.gnt_deferred': { dom: number; vdev: number; gref: number; gfn: number; ended: boolean };
  }
}

declareEvent({
  kind: 'blk.submit',
  version: 1,
  doc: 'blkfront put a request on the ring',
  fields: [
    ['dom', 'u16'],
    ['vdev', 'u32'],
    ['id', 'u32'],
    ['op', 'u8'],
    ['sector', 'f64'],
    ['nrSegments', 'u8'],
    ['nrSectors', 'u32'],
  ],
});
declareEvent({
  kind: 'blk.complete',
  version: 1,
  doc: 'blkfront completed a request from its response',
  fields: [
    ['dom', 'u16'],
    ['vdev', 'u32'],
    ['id', 'u32'],
    ['op', 'u8'],
    ['status', 'i32'],
  ],
});
declareEvent({
  kind: 'blk.error',
  version: 1,
  doc: 'the backend broke the blkif protocol; the device stopped',
  fields: [
    ['dom', 'u16'],
    ['vdev', 'u32'],
    ['reason', 'str'],
  ],
});
declareEvent({
  kind: 'blk.gnt_deferred',
  version: 1,
  doc: 'a data grant was still mapped by the backend: its end of access was deferred (or, later, done)',
  fields: [
    ['dom', 'u16'],
    ['vdev', 'u32'],
    ['gref', 'u32'],
    ['gfn', 'u32'],
    ['ended', 'bool'],
  ],
});
