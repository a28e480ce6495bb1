import { describe, expect, it } from 'vitest';
import { SRING_RING_OFFSET, XEN_PAGE_SIZE } from '@pvsim/abi';
import { BackRing, FrontRing, needsNotify } from './rings.js';
import { SharedRing, allocateRingPages, REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD } from './sring.js';
import { msgpackSlotCodec, rawSlotCodec } from './codec.js';

type Req = { op: number; id: number; sector: number };
type Rsp = { id: number; status: number };
const reqCodec = msgpackSlotCodec<Req>({ slotBytes: 112, structures: [['op', 'id', 'sector']] });
const rspCodec = msgpackSlotCodec<Rsp>({ slotBytes: 112, structures: [['id', 'status']] });

function pair(order = 0, start = 0) {
  const s = SharedRing.allocate(order, 112);
  s.init(start);
  return { s, front: new FrontRing(s, reqCodec, rspCodec, start), back: new BackRing(s, reqCodec, rspCodec, start) };
}

describe('shared ring layout', () => {
  it('initialises as SHARED_RING_INIT', () => {
    const { s } = pair();
    expect([...s.header.subarray(0, 4)]).toEqual([0, 1, 0, 1]);
    expect(s.pages[0]!.subarray(16, SRING_RING_OFFSET).every((b) => b === 0)).toBe(true);
  });
  it('sizes 1..16-page rings to the largest power of two that fits', () => {
    expect([0, 1, 2, 3, 4].map((o) => SharedRing.allocate(o, 112).size)).toEqual([32, 64, 128, 256, 512]);
    expect(SharedRing.allocate(0, 64).size).toBe(32); // (4096-64)/64 = 63 → 32
    expect(SharedRing.allocate(0, 16).size).toBe(128);
  });
  it('rejects a page count that is not a power of two up to 1024', () => {
    expect(() => new SharedRing(allocateRingPages(0).concat(allocateRingPages(1)), 112)).toThrow(/power-of-two number of pages/);
    expect(() => new SharedRing(allocateRingPages(11), 112)).toThrow(/power-of-two number of pages/);
    expect(new SharedRing(allocateRingPages(8), 128).size).toBe(8192 / 2);
  });
  it('places slot i at byte 64 + i*slot and carries a slot across non-contiguous pages', () => {
    // Two pages from different SharedArrayBuffers, as a backend mapping ring-ref0/ring-ref1 gets.
    const pages = [allocateRingPages(0)[0]!, allocateRingPages(0)[0]!];
    const s = new SharedRing(pages, 112);
    s.init();
    const f = new FrontRing(s, rawSlotCodec(112), rawSlotCodec(112));
    const b = new BackRing(s, rawSlotCodec(112), rawSlotCodec(112));
    const straddle = Math.floor((XEN_PAGE_SIZE - SRING_RING_OFFSET) / 112); // slot 36 crosses
    const msg = (i: number) => Uint8Array.from({ length: 112 }, (_, k) => (i * 7 + k) & 0xff);
    for (let i = 0; i <= straddle; i++) {
      expect(f.pushRequest(msg(i)).ok).toBe(true);
    }
    f.pushRequests();
    expect(pages[0]![SRING_RING_OFFSET + 112 * 2 + 5]).toBe(msg(2)[5]);
    for (let i = 0; i <= straddle; i++) {
      const r = b.takeRequest();
      expect(r.ok && [...r.value]).toEqual([...msg(i)]);
    }
  });
});

describe('front and back rings', () => {
  it('moves requests and responses in order', () => {
    const { front, back } = pair();
    for (let i = 0; i < 10; i++) expect(front.pushRequest({ op: 1, id: i, sector: i * 8 }).ok).toBe(true);
    expect(front.pushRequestsAndCheckNotify()).toBe(true);
    expect(back.unconsumedRequests()).toBe(10);
    for (let i = 0; i < 10; i++) {
      const r = back.takeRequest();
      expect(r).toEqual({ ok: true, value: { op: 1, id: i, sector: i * 8 } });
      expect(back.pushResponse({ id: i, status: 0 }).ok).toBe(true);
    }
    expect(back.pushResponsesAndCheckNotify()).toBe(true);
    expect(front.unconsumedResponses()).toBe(10);
    for (let i = 0; i < 10; i++) expect(front.takeResponse()).toEqual({ ok: true, value: { id: i, status: 0 } });
    expect(front.finalCheckForResponses()).toBe(false);
  });

  it('refuses a request when the ring is full and a message larger than a slot', () => {
    const { front } = pair();
    for (let i = 0; i < 32; i++) front.pushRequest({ op: 0, id: i, sector: 0 });
    expect(front.full()).toBe(true);
    expect(front.pushRequest({ op: 0, id: 99, sector: 0 })).toEqual({ ok: false, error: { kind: 'ring-full', size: 32 } });
    const { front: f2 } = pair();
    const r = f2.pushRequest({ op: 0, id: 0, sector: 0, blob: 'x'.repeat(200) } as unknown as Req);
    expect(r.ok === false && r.error.kind).toBe('too-large');
    expect(f2.reqProdPvt).toBe(0);
  });

  it('refuses a response with no consumed request to answer', () => {
    const { back } = pair();
    expect(back.pushResponse({ id: 0, status: 0 })).toEqual({ ok: false, error: { kind: 'nothing-to-answer', reqCons: 0 } });
  });

  it('notifies only when the producer passes the consumer’s event index', () => {
    const { front, back } = pair();
    front.pushRequest({ op: 0, id: 0, sector: 0 });
    expect(front.pushRequestsAndCheckNotify()).toBe(true); // req_event = 1 initially
    front.pushRequest({ op: 0, id: 1, sector: 0 });
    expect(front.pushRequestsAndCheckNotify()).toBe(false); // backend has not re-armed
    back.takeRequest();
    back.takeRequest();
    expect(back.finalCheckForRequests()).toBe(false); // re-arms req_event = 3
    expect(Atomics.load(back.sring.header, REQ_EVENT)).toBe(3);
    front.pushRequest({ op: 0, id: 2, sector: 0 });
    expect(front.pushRequestsAndCheckNotify()).toBe(true);
  });

  it('final check sees a request pushed without notification', () => {
    const { front, back } = pair();
    front.pushRequest({ op: 0, id: 0, sector: 0 });
    front.pushRequests();
    expect(back.finalCheckForRequests()).toBe(true);
  });

  it('works across the 2^32 wrap', () => {
    const start = 0xffff_fff0;
    const { front, back, s } = pair(0, start);
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 20; i++) expect(front.pushRequest({ op: 1, id: round * 100 + i, sector: 0 }).ok).toBe(true);
      front.pushRequestsAndCheckNotify();
      let n = 0;
      while (back.unconsumedRequests() > 0) {
        const r = back.takeRequest();
        expect(r.ok && r.value.id).toBe(round * 100 + n++);
        back.pushResponse({ id: 0, status: 0 });
      }
      expect(n).toBe(20);
      back.pushResponsesAndCheckNotify();
      expect(front.unconsumedResponses()).toBe(20);
      while (front.unconsumedResponses() > 0) front.takeResponse();
    }
    expect(Atomics.load(s.header, REQ_PROD)).toBe((start + 80) >>> 0);
    expect(Atomics.load(s.header, RSP_PROD)).toBe((start + 80) >>> 0);
  });

  it('bounds backend work by the free response slots (RING_REQUEST_CONS_OVERFLOW)', () => {
    const { front, back } = pair();
    for (let i = 0; i < 32; i++) front.pushRequest({ op: 0, id: i, sector: 0 });
    front.pushRequests();
    for (let i = 0; i < 32; i++) back.takeRequest();
    expect(back.requestConsOverflow()).toBe(true);
    expect(back.unconsumedRequests()).toBe(0);
    expect(() => back.takeRequest()).toThrow(/pvsim bug/);
  });
});

describe('one-way use', () => {
  it('empty responses release slots without writing them', () => {
    const { front, back, s } = pair();
    for (let i = 0; i < 32; i++) front.pushRequest({ op: 0, id: i, sector: 0 });
    front.pushRequests();
    for (let i = 0; i < 5; i++) back.takeRequest();
    const before = s.slotViews(0)[0].slice();
    expect(back.pushEmptyResponses(10)).toBe(5);
    back.pushResponses();
    expect([...s.slotViews(0)[0]]).toEqual([...before]);
    expect(front.unconsumedResponses()).toBe(5);
    expect(front.discardResponses(100)).toBe(5);
    expect(front.freeRequests()).toBe(5);
  });

  it('a batching consumer is notified only once eventAhead requests wait', () => {
    const { front, back } = pair();
    expect(back.finalCheckForRequests(4)).toBe(false);
    const notifies: boolean[] = [];
    for (let i = 0; i < 5; i++) {
      front.pushRequest({ op: 0, id: i, sector: 0 });
      notifies.push(front.pushRequestsAndCheckNotify());
    }
    expect(notifies).toEqual([false, false, false, true, false]);
  });
});

describe('hostile peers', () => {
  it('a req_prod more than the ring size ahead breaks the ring and nothing is consumed', () => {
    const { back, s } = pair();
    Atomics.store(s.header, REQ_PROD, 33);
    expect(back.unconsumedRequests()).toBe(0);
    expect(back.broken).toMatchObject({ kind: 'req-prod-overflow', culprit: 'frontend', reqProd: 33, size: 32 });
    expect(back.takeRequest()).toMatchObject({ ok: false, error: { kind: 'broken' } });
    expect(back.reqCons).toBe(0);
    expect(back.finalCheckForRequests()).toBe(false);
    // Repairing the index later does not revive a broken ring.
    Atomics.store(s.header, REQ_PROD, 1);
    expect(back.unconsumedRequests()).toBe(0);
  });

  it('a req_prod behind the consumer (wrapping to huge) breaks the ring', () => {
    const { back, s } = pair(0, 100);
    Atomics.store(s.header, REQ_PROD, 99);
    expect(back.unconsumedRequests()).toBe(0);
    expect(back.broken?.kind).toBe('req-prod-overflow');
  });

  it('a req_prod moved back behind req_cons breaks the ring (ring.h would hand out stale slots)', () => {
    const { front, back, s } = pair();
    for (let i = 0; i < 3; i++) front.pushRequest({ op: 0, id: i, sector: 0 });
    front.pushRequests();
    back.takeRequest();
    back.takeRequest();
    Atomics.store(s.header, REQ_PROD, 1);
    expect(back.unconsumedRequests()).toBe(0);
    expect(back.broken).toMatchObject({ kind: 'req-prod-regressed', culprit: 'frontend', reqProd: 1, reqCons: 2 });
  });

  it('BackRing.attach refuses a ring whose req_prod is already impossible', () => {
    const s = SharedRing.allocate(0, 112);
    s.init();
    Atomics.store(s.header, REQ_PROD, 1000);
    const r = BackRing.attach(s, reqCodec, rspCodec);
    expect(r.ok).toBe(false);
    Atomics.store(s.header, REQ_PROD, 5);
    Atomics.store(s.header, RSP_PROD, 3);
    const r2 = BackRing.attach(s, reqCodec, rspCodec);
    expect(r2.ok && r2.value.reqCons).toBe(3);
  });

  it('responses for requests never made break the front ring', () => {
    const { front, s } = pair();
    front.pushRequest({ op: 0, id: 0, sector: 0 });
    front.pushRequests();
    Atomics.store(s.header, RSP_PROD, 2);
    expect(front.unconsumedResponses()).toBe(0);
    expect(front.broken).toMatchObject({ kind: 'rsp-prod-overflow', culprit: 'backend' });
    expect(front.pushRequest({ op: 0, id: 1, sector: 0 })).toMatchObject({ ok: false, error: { kind: 'broken' } });
  });

  it('a slot that does not decode is reported, consumed, and the ring goes on', () => {
    const { front, back, s } = pair();
    front.pushRequest({ op: 0, id: 0, sector: 0 });
    front.pushRequest({ op: 0, id: 1, sector: 0 });
    front.pushRequests();
    const [slot0] = s.slotViews(0);
    slot0[0] = 0xff; // length 0xff.. larger than the slot
    slot0[1] = 0xff;
    const r = back.takeRequest();
    expect(r).toMatchObject({ ok: false, error: { kind: 'bad-slot', idx: 0 } });
    expect(back.takeRequest()).toEqual({ ok: true, value: { op: 0, id: 1, sector: 0 } });
    expect(back.markBroken('frontend', 'undecodable request')).toMatchObject({ kind: 'marked', culprit: 'frontend' });
  });

  it('reads each slot once: rewriting a slot after it was consumed changes nothing', () => {
    const { front, back, s } = pair();
    front.pushRequest({ op: 1, id: 7, sector: 64 });
    front.pushRequests();
    const r = back.takeRequest();
    const [slot] = s.slotViews(0);
    slot.fill(0xee);
    expect(r).toEqual({ ok: true, value: { op: 1, id: 7, sector: 64 } });
  });
});

describe('needsNotify', () => {
  it('is (new - event) < (new - old) in u32', () => {
    expect(needsNotify(5, 4, 5)).toBe(true);
    expect(needsNotify(5, 4, 6)).toBe(false);
    expect(needsNotify(5, 0, 1)).toBe(true);
    expect(needsNotify(2, 0xffff_fffe, 0xffff_ffff)).toBe(true);
    expect(needsNotify(2, 0xffff_fffe, 3)).toBe(false);
    expect(needsNotify(4, 4, 4)).toBe(false); // nothing new pushed
  });
});
