/**
 * Turns the ring benchmark's msgpack protocol into one that logs: the backend emits `bench.blk`
 * per request it consumes — one transition per request, like blkback's 'blk.request'. With
 * `bothEnds`, the frontend also emits `bench.blk_done` per response (two events per request:
 * a stress case, not the target's workload). Loaded by ring/worker.ts only when its config
 * carries a log channel, so the ring benchmark itself never loads the event log.
 */
import { EventWriter, type LogChannelSpec } from '@pvsim/eventlog';
import { RealClock } from '@pvsim/runtime';
import './events.js';
import type { BlkReq, BlkRsp, RingProtocol } from '../ring/protocol.js';

export interface LogCounts {
  emitted: number;
  dropped: number;
}

export function withEventLog(
  proto: RingProtocol<BlkReq, BlkRsp>,
  role: 'front' | 'back',
  spec: LogChannelSpec,
  bothEnds = false,
): { proto: RingProtocol<BlkReq, BlkRsp>; counts(): LogCounts } {
  const w = new EventWriter(spec, new RealClock(spec.hub.epochMs));
  if (role === 'back') {
    const readReq = proto.readReq;
    proto.readReq = function (this: RingProtocol<BlkReq, BlkRsp>, req: BlkReq): number {
      const id = readReq.call(this, req);
      w.emit('bench.blk', { id, op: req.op, sector: req.sector });
      return id;
    };
  } else if (bothEnds) {
    const readRsp = proto.readRsp;
    proto.readRsp = function (this: RingProtocol<BlkReq, BlkRsp>, rsp: BlkRsp): number {
      const id = readRsp.call(this, rsp);
      w.emit('bench.blk_done', { id, status: rsp.status });
      return id;
    };
  }
  return { proto, counts: () => ({ emitted: w.emitted, dropped: w.dropped }) };
}
