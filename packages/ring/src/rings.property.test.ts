/**
 * Two peers driven through random operation sequences (fixed seeds), checked against a plain
 * queue model: nothing lost, duplicated or reordered; counts and final checks consistent (notify
 * decisions are compared with Xen's own macros in test/interop/ring-h);
 * hostile producers never make the ring throw and never get a slot consumed past a bogus index.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BackRing, FrontRing } from './rings.js';
import { REQ_PROD, RSP_PROD, SharedRing } from './sring.js';
import { msgpackSlotCodec } from './codec.js';

type Msg = { id: number; v: string };
const codec = msgpackSlotCodec<Msg>({ slotBytes: 64, structures: [['id', 'v']] });

type Op =
  | { t: 'push'; n: number }
  | { t: 'pushNotify' }
  | { t: 'consume'; n: number }
  | { t: 'respond'; n: number }
  | { t: 'rspNotify' }
  | { t: 'finalReq' }
  | { t: 'finalRsp' }
  | { t: 'takeRsp'; n: number }
  | { t: 'hostileReqProd'; delta: number }
  | { t: 'hostileRspProd'; delta: number };

const honestOps: fc.Arbitrary<Op>[] = [
  fc.record({ t: fc.constant('push' as const), n: fc.integer({ min: 1, max: 40 }) }),
  fc.constant({ t: 'pushNotify' as const }),
  fc.record({ t: fc.constant('consume' as const), n: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ t: fc.constant('respond' as const), n: fc.integer({ min: 1, max: 40 }) }),
  fc.constant({ t: 'rspNotify' as const }),
  fc.constant({ t: 'finalReq' as const }),
  fc.constant({ t: 'finalRsp' as const }),
  fc.record({ t: fc.constant('takeRsp' as const), n: fc.integer({ min: 1, max: 40 }) }),
];
const hostileOps: fc.Arbitrary<Op>[] = [
  fc.record({ t: fc.constant('hostileReqProd' as const), delta: fc.integer({ min: -(2 ** 31), max: 2 ** 31 }) }),
  fc.record({ t: fc.constant('hostileRspProd' as const), delta: fc.integer({ min: -(2 ** 31), max: 2 ** 31 }) }),
];
const starts = fc.oneof(fc.constant(0), fc.integer({ min: 0xffff_ff00, max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff }));

function run(start: number, order: number, ops: Op[]) {
  const s = SharedRing.allocate(order, 64);
  s.init(start);
  const front = new FrontRing(s, codec, codec, start);
  const back = new BackRing(s, codec, codec, start);
  let nextId = 0;
  const pushedUnpublished: number[] = [];
  const published: number[] = [];
  const awaitingResponse: number[] = [];
  const responsesUnpublished: number[] = [];
  const responsesPublished: number[] = [];
  for (const op of ops) {
    switch (op.t) {
      case 'push':
        for (let i = 0; i < op.n; i++) {
          const free = front.freeRequests();
          const r = front.pushRequest({ id: nextId, v: 'r' + nextId });
          if (free === 0 || front.broken) {
            expect(r.ok).toBe(false);
            break;
          }
          expect(r.ok).toBe(true);
          pushedUnpublished.push(nextId++);
        }
        break;
      case 'pushNotify':
        front.pushRequestsAndCheckNotify();
        published.push(...pushedUnpublished.splice(0));
        break;
      case 'consume':
        for (let i = 0; i < op.n && back.unconsumedRequests() > 0; i++) {
          const r = back.takeRequest();
          expect(r.ok).toBe(true);
          if (r.ok) {
            expect(r.value.id).toBe(published.shift());
            expect(r.value.v).toBe('r' + r.value.id);
            awaitingResponse.push(r.value.id);
          }
        }
        if (!back.broken) expect(back.unconsumedRequests()).toBe(Math.min(published.length, s.size - awaitingResponse.length - responsesUnpublished.length - responsesPublished.length));
        break;
      case 'respond':
        for (let i = 0; i < op.n; i++) {
          const id = awaitingResponse[0];
          const r = back.pushResponse({ id: id ?? -1, v: 'p' });
          if (id === undefined || back.broken) {
            expect(r.ok).toBe(false);
            break;
          }
          expect(r.ok).toBe(true);
          responsesUnpublished.push(awaitingResponse.shift()!);
        }
        break;
      case 'rspNotify':
        back.pushResponsesAndCheckNotify();
        responsesPublished.push(...responsesUnpublished.splice(0));
        break;
      case 'finalReq': {
        const work = back.finalCheckForRequests();
        if (!back.broken) expect(work).toBe(published.length > 0 && awaitingResponse.length + responsesUnpublished.length + responsesPublished.length < s.size);
        break;
      }
      case 'finalRsp': {
        const work = front.finalCheckForResponses();
        if (!front.broken) expect(work).toBe(responsesPublished.length > 0);
        break;
      }
      case 'takeRsp':
        for (let i = 0; i < op.n && front.unconsumedResponses() > 0; i++) {
          const r = front.takeResponse();
          expect(r.ok && r.value.id).toBe(responsesPublished.shift());
        }
        break;
      case 'hostileReqProd': {
        const bogus = (Atomics.load(s.header, REQ_PROD) + op.delta) >>> 0;
        Atomics.store(s.header, REQ_PROD, bogus);
        const overflow = ((bogus - back.rspProdPvt) >>> 0) > s.size;
        const regressed = ((bogus - back.reqCons) >>> 0) > ((bogus - back.rspProdPvt) >>> 0);
        // Not `back.broken !== null` as the alias: TS would then narrow `back.broken` to null
        // below, across the call that breaks the ring.
        const brokenBefore = back.broken;
        const wasBroken = brokenBefore !== null;
        const n = back.unconsumedRequests();
        if (!wasBroken && (overflow || regressed)) {
          expect(back.broken?.kind).toBe(overflow ? 'req-prod-overflow' : 'req-prod-regressed');
        }
        if (overflow || regressed || wasBroken) expect(n).toBe(0);
        else expect(n).toBeLessThanOrEqual(s.size);
        // Consume whatever the ring now offers: garbage slots decode to errors or values, never throws.
        for (let i = 0; i < 64 && back.unconsumedRequests() > 0; i++) back.takeRequest();
        return 'hostile';
      }
      case 'hostileRspProd': {
        const bogus = (Atomics.load(s.header, RSP_PROD) + op.delta) >>> 0;
        Atomics.store(s.header, RSP_PROD, bogus);
        const outstanding = (front.reqProdPvt - front.rspCons) >>> 0;
        const n = front.unconsumedResponses();
        if (((bogus - front.rspCons) >>> 0) > outstanding) {
          expect(front.broken?.kind).toBe('rsp-prod-overflow');
          expect(n).toBe(0);
        }
        for (let i = 0; i < 64 && front.unconsumedResponses() > 0; i++) front.takeResponse();
        return 'hostile';
      }
    }
    // Shared indices never run ahead of what the model says was published.
    expect((Atomics.load(s.header, REQ_PROD) - start) >>> 0).toBe(nextId - pushedUnpublished.length);
  }
  return 'honest';
}

describe('ring property tests', () => {
  it('honest peers: nothing lost, duplicated or reordered, across 2^32 (seeded)', () => {
    fc.assert(
      fc.property(starts, fc.integer({ min: 0, max: 2 }), fc.array(fc.oneof(...honestOps), { maxLength: 200 }), (start, order, ops) => {
        run(start, order, ops);
      }),
      { seed: 20261125, numRuns: 400 },
    );
  });

  it('hostile producers: never throws, never consumes past a bogus index (seeded)', () => {
    fc.assert(
      fc.property(starts, fc.array(fc.oneof(...honestOps, ...hostileOps), { maxLength: 120 }), (start, ops) => {
        run(start, 0, ops);
      }),
      { seed: 1337, numRuns: 600 },
    );
  });

  it('a frontend rewriting slots at random never makes the backend throw (seeded)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat({ max: 31 }), fc.nat({ max: 63 }), fc.integer({ min: 0, max: 255 })), { maxLength: 200 }), (writes) => {
        const s = SharedRing.allocate(0, 64);
        s.init();
        const front = new FrontRing(s, codec, codec);
        const back = new BackRing(s, codec, codec);
        for (let i = 0; i < 32; i++) front.pushRequest({ id: i, v: 'x'.repeat(i) });
        front.pushRequests();
        for (const [slot, off, byte] of writes) s.slotViews(slot)[0][off] = byte;
        let good = 0;
        while (back.unconsumedRequests() > 0) if (back.takeRequest().ok) good++;
        expect(good).toBeLessThanOrEqual(32);
        expect(back.reqCons).toBe(32);
      }),
      { seed: 99, numRuns: 300 },
    );
  });
});
