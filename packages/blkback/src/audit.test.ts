/** The block path's grant auditor over synthetic event streams. */
import { runAuditors, type EventRecord, registeredAuditors } from '@pvsim/eventlog';
import { describe, expect, it } from 'vitest';
import { BLK_RESPONSE_AUDITOR, blkResponseAfterUnmapAuditor } from './index.js';

const BACK = 0;
const FRONT = 1;

/** A stream builder: `seq` counts from 1 in emission order. */
function stream() {
  const evs: EventRecord[] = [];
  const add = (kind: string, payload: Record<string, unknown>, dom = BACK, thread = 0): number => {
    const seq = evs.length + 1;
    evs.push({ seq, tsNs: seq, dom, thread, kind, v: 1, payload } as EventRecord);
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
    /** `blk.request` / `blk.response` of one device (version 2: with `vdev`). */
    requestOn: (vdev: number, id: number, nsegs = 1) => add('blk.request', { dom: FRONT, vdev, id, op: 1, sector: 0, nsegs }),
    responseOn: (vdev: number, id: number) => add('blk.response', { dom: FRONT, vdev, id, status: 0 }),
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
    s.add('blk.unmap.deferred', { dom: FRONT, vdev: -1, id: 7, age: 0, delayMs: 5, busyPages: 1 });
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

  it('two disks of one guest reusing request ids are told apart by vdev', () => {
    const XVDA = 51712;
    const XVDB = 51728;
    // Clean: both devices use id 3 at once; each response comes after its own unmap.
    const s = stream();
    s.requestOn(XVDA, 3);
    s.map(10, 1, 20);
    s.requestOn(XVDB, 3);
    s.map(11, 2, 21);
    s.unmap(10, 1, 20);
    s.responseOn(XVDA, 3);
    s.unmap(11, 2, 21);
    s.responseOn(XVDB, 3);
    expect(s.audit()).toEqual([]);
    // xvdb answers its id 3 with its grant still mapped; xvda's id 3 is fine. Keyed by id alone,
    // xvda's response would be blamed for xvdb's mapping, and xvdb's violation would be lost.
    const t = stream();
    t.requestOn(XVDA, 3);
    t.map(10, 1, 20);
    t.requestOn(XVDB, 3);
    const bMap = t.map(11, 2, 21);
    t.unmap(10, 1, 20);
    t.responseOn(XVDA, 3);
    const bRsp = t.responseOn(XVDB, 3);
    t.unmap(11, 2, 21);
    const v = t.audit();
    expect(v).toEqual([expect.objectContaining({ rule: 'response-while-mapped', seqs: [bMap, bRsp] })]);
    expect(v[0]!.message).toMatch(/request 3 \(vdev 51728, /);
  });

  it('maps by another thread of the backend domain are not the request\'s', () => {
    // Thread 1 maps the same frontend's grant (say a netback) between a request and its own map.
    const s = stream();
    s.requestOn(51712, 5);
    s.add('grant.map', { granter: FRONT, gref: 40, mapper: BACK, handle: 7, hostGfn: 70, mfn: 140, ro: true, status: 0 }, BACK, 1);
    s.map(1, 1, 20);
    s.unmap(1, 1, 20);
    const rsp = s.responseOn(51712, 5);
    s.add('grant.unmap', { granter: FRONT, gref: 40, mapper: BACK, handle: 7, hostGfn: 70, status: 0 }, BACK, 1);
    expect(s.audit()).toEqual([]);
    expect(rsp).toBe(5);
  });

  it('a request takes exactly nsegs maps: the next map of the same thread is not its own', () => {
    const s = stream();
    s.requestOn(51712, 1, 1);
    s.map(1, 1, 20);
    s.map(2, 2, 21); // e.g. a ring page mapped right after, same thread
    s.unmap(1, 1, 20);
    s.responseOn(51712, 1);
    s.unmap(2, 2, 21);
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
