/** The block path's grant auditor over synthetic event streams. */
import { runAuditors, type EventRecord, registeredAuditors } from '@pvsim/eventlog';
import { describe, expect, it } from 'vitest';
import { BLK_RESPONSE_AUDITOR, blkResponseAfterUnmapAuditor } from './index.js';

const BACK = 0;
const FRONT = 1;

/** A stream builder: `seq` counts from 1 in emission order. */
function stream() {
  const evs: EventRecord[] = [];
  const add = (kind: string, payload: Record<string, unknown>, dom = BACK): number => {
    const seq = evs.length + 1;
    evs.push({ seq, tsNs: seq, dom, thread: 0, kind, v: 1, payload } as EventRecord);
    return seq;
  };
  const s = {
    evs,
    add,
    request: (id: number, nsegs = 1) => add('blk.request', { dom: FRONT, id, op: 1, sector: 0, nsegs }),
    response: (id: number) => add('blk.response', { dom: FRONT, id, status: 0 }),
    map: (gref: number, handle: number, hostGfn: number, status = 0) =>
      add('grant.map', { granter: FRONT, gref, mapper: BACK, handle, hostGfn, mfn: 100 + gref, ro: true, status }),
    unmap: (gref: number, handle: number, hostGfn: number) => add('grant.unmap', { granter: FRONT, gref, mapper: BACK, handle, hostGfn, status: 0 }),
    replace: (gref: number, handle: number, hostGfn: number) =>
      add('grant.unmap_replace', { granter: FRONT, gref, mapper: BACK, handle, hostGfn, newGfn: 900, newMfn: 901, status: 0 }),
    get: (gfn: number, gref: number, count: number) => add('page.get', { gfn, domid: FRONT, gref, count }),
    put: (gfn: number, gref: number, count: number) => add('page.put', { gfn, domid: FRONT, gref, count }),
    audit: () => {
      const run = runAuditors([blkResponseAfterUnmapAuditor()]);
      for (const e of evs) run.onEvent(e);
      return run.finish();
    },
  };
  return s;
}

describe('blk.response-after-unmap', () => {
  it('is registered for replay --check', () => {
    expect(registeredAuditors().map((a) => a.name)).toContain(BLK_RESPONSE_AUDITOR);
  });

  it('a clean async sequence (ring mapped, a holder, deferred unmap, response after it) is silent', () => {
    const s = stream();
    const ring = s.map(0, 0, 10);
    s.request(7, 2);
    s.add('balloon.alloc', { count: 2, decreased: 2, firstGfn: 20 });
    s.map(1, 1, 20);
    s.map(2, 2, 21);
    s.request(8);
    s.map(3, 3, 22);
    s.get(20, 1, 2);
    s.add('grant.unmap.deferred', { age: 0, delayMs: 5, busyPages: 1, count: 2, firstGfn: 20 });
    s.unmap(3, 3, 22);
    s.response(8);
    s.put(20, 1, 1);
    s.unmap(1, 1, 20);
    s.unmap(2, 2, 21);
    s.add('grant.unmap.done', { age: 1, count: 2, result: 0, firstGfn: 20 });
    s.response(7);
    s.unmap(0, 0, 10);
    expect(ring).toBe(1);
    expect(s.audit()).toEqual([]);
  });

  it('sync with a late put: the response after an unmap under a holder is a violation citing exact seqs', () => {
    const s = stream();
    s.map(0, 0, 10); // 1: ring
    s.request(7); // 2
    const map = s.map(1, 1, 20); // 3
    const get = s.get(20, 1, 2); // 4: a TCP retransmit holds the page
    const unmap = s.unmap(1, 1, 20); // 5: unmapped under it
    const rsp = s.response(7); // 6
    s.add('mem.fault', { dom: BACK, gfn: 20, write: false, reason: 'gone', granter: FRONT, gref: 1 }); // 7
    s.unmap(0, 0, 10);
    const v = s.audit();
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({ auditor: BLK_RESPONSE_AUDITOR, rule: 'response-while-mapped', dom: BACK, seqs: [map, get, unmap, rsp] });
    expect([map, get, unmap, rsp]).toEqual([3, 4, 5, 6]);
    expect(v[0]!.message).toMatch(/request 7 .*gref 1 unmapped at seq 5 while its page was still held \(page\.get at seq 4\)/);
  });

  it('replace under a holder is the same violation', () => {
    const s = stream();
    s.request(3);
    const map = s.map(5, 9, 30);
    const get = s.get(30, 5, 2);
    const rep = s.replace(5, 9, 30);
    const rsp = s.response(3);
    expect(s.audit()).toEqual([expect.objectContaining({ rule: 'response-while-mapped', seqs: [map, get, rep, rsp] })]);
  });

  it('a response while a grant of its request is still mapped cites the live map and the response', () => {
    const s = stream();
    s.request(1, 2);
    const m1 = s.map(1, 1, 20);
    s.map(2, 2, 21);
    s.unmap(2, 2, 21);
    const rsp = s.response(1);
    s.unmap(1, 1, 20);
    expect(s.audit()).toEqual([expect.objectContaining({ rule: 'response-while-mapped', seqs: [m1, rsp] })]);
  });

  it('a holder that let go before the unmap is fine; a failed map is not a mapping', () => {
    const s = stream();
    s.request(1, 2);
    s.map(1, 1, 20);
    s.map(9, -1, 21, -1);
    s.unmap(1, 1, 20);
    s.response(1);
    s.request(2);
    s.map(1, 4, 20);
    s.get(20, 1, 2);
    s.put(20, 1, 1);
    s.unmap(1, 4, 20);
    s.response(2);
    expect(s.audit()).toEqual([]);
  });

  it('another request\'s mapping is not attributed to an earlier one (the window ends at the next blk event)', () => {
    const s = stream();
    s.request(1);
    s.map(1, 1, 20);
    s.unmap(1, 1, 20);
    s.map(0, 0, 10); // a later map (e.g. a reconnect's ring) after the window closed
    s.response(1);
    s.unmap(0, 0, 10);
    expect(s.audit()).toEqual([]);
  });

  it('mapping left at teardown: at the destroy of either end, and at the end of the log', () => {
    const s = stream();
    s.request(1);
    s.map(1, 1, 20);
    s.unmap(1, 1, 20);
    s.response(1);
    const ring = s.map(0, 0, 10);
    const destroy = s.add('domain.destroy', { domid: FRONT, framesFreed: 0, framesZombie: 1, mappingsReleased: 0, portsClosed: 0 }, BACK);
    const v = s.audit();
    expect(v.map((x) => [x.rule, x.seqs])).toEqual([['mapping-left-at-teardown', [ring, destroy]]]);
    const t = stream();
    const r2 = t.map(0, 0, 10);
    t.request(1);
    t.map(1, 1, 20);
    t.unmap(1, 1, 20);
    t.response(1);
    expect(t.audit().map((x) => [x.rule, x.seqs])).toEqual([['mapping-left-at-teardown', [r2]]]);
  });
});
