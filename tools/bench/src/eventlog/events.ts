/**
 * The benchmark's own event kinds. Imported by every thread that emits them (the kinds must be
 * declared in each thread; `declareEvent` is per thread like any module state).
 *
 *   bench.grant     a grant-table-like transition, emitted as fast as possible (part 1)
 *   bench.blk       the ring backend consumed a request (like blkback's 'blk.request')
 *   bench.blk_done  the ring frontend took a response
 */
import { declareEvent } from '@pvsim/eventlog';

declare module '@pvsim/eventlog' {
  interface EventPayloads {
    'bench.grant': { gref: number; granter: number; handle: number; ro: boolean };
    'bench.blk': { id: number; op: number; sector: number };
    'bench.blk_done': { id: number; status: number };
  }
}

// Hot-path kinds declare their fields: emitted as a fixed binary struct, not msgpack.
declareEvent({ kind: 'bench.grant', version: 1, doc: 'benchmark: a grant mapped (synthetic)', fields: [['gref', 'u32'], ['granter', 'u16'], ['handle', 'u32'], ['ro', 'bool']] });
declareEvent({ kind: 'bench.blk', version: 1, doc: 'benchmark: the ring backend consumed a request', fields: [['id', 'u32'], ['op', 'u8'], ['sector', 'f64']] });
declareEvent({ kind: 'bench.blk_done', version: 1, doc: 'benchmark: the ring frontend took a response', fields: [['id', 'u32'], ['status', 'i32']] });

/** The payload of the `i`-th grant event of an emitter: small, realistic, not constant. */
export function grantPayload(i: number, granter: number): { gref: number; granter: number; handle: number; ro: boolean } {
  return { gref: 8 + (i & 4095), granter, handle: i, ro: (i & 3) === 0 };
}
