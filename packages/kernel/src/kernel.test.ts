/**
 * The kernel layer against a real hypervisor: struct page (refcount, PG_foreign/private,
 * events on foreign pages only), the balloon, gnttab_map_refs/gnttab_unmap_refs and their order,
 * gnttab_unmap_refs_async (all or nothing, linear retries on the virtual clock, exactly one
 * done), the sync variant, the legacy unmap-and-replace path and the page cache.
 */
import { GNTMAP_host_map, GNTST_bad_handle, GNTST_okay, EINVAL, ENOMEM } from '@pvsim/abi';
import type { EventEmitter, EventKind, EventPayloads } from '@pvsim/eventlog';
import { Hypervisor, P2M_FOREIGN, P2M_INVALID, createHypervisorSpec, type GnttabMapGrantRef, type GnttabUnmapGrantRef, type HypercallClient } from '@pvsim/hypervisor';
import { VirtualClock } from '@pvsim/runtime';
import { describe, expect, it } from 'vitest';
import {
  DelayedWork,
  GnttabPageCache,
  Kernel,
  PG_foreign,
  PG_owner_priv_1,
  PG_pinned,
  PagePrivate,
  PageForeign,
  createPageTableSpec,
  get_page,
  page_count,
  put_page,
  schedule_delayed_work,
  xen_page_foreign,
  type GntabUnmapQueueData,
  type KernelHypercalls,
  type Page,
} from './index.js';

function recorder() {
  const events: { kind: string; payload: unknown; dom: number | undefined }[] = [];
  let seq = 0;
  const emitter: EventEmitter = {
    emit(kind, payload, dom) {
      events.push({ kind, payload, dom });
      return ++seq;
    },
  };
  const of = <K extends EventKind>(kind: K): EventPayloads[K][] => events.filter((e) => e.kind === kind).map((e) => e.payload as EventPayloads[K]);
  return { events, emitter, of };
}

const GUEST_PAGES = 16;
const GFNS = 64;

/** dom0 (the backend, with the kernel under test) and a guest granting gfns 0..15 to dom0 as refs 0..15. */
function boot(opts: { dom0Pages?: number; wrap?: (c: HypercallClient) => KernelHypercalls } = {}) {
  const rec = recorder();
  const spec = createHypervisorSpec({ frames: 512, maxDomains: 4, gfnsPerDomain: GFNS, grantEntries: 64, maptrackEntries: 32, evtchnPorts: 32 });
  const hv = new Hypervisor(spec);
  const ts = hv.toolstack(rec.emitter);
  expect(ts.domainCreate({ domid: 0, name: 'dom0', memoryPages: opts.dom0Pages ?? 8, privileged: true })).toBe(0);
  const dom0 = hv.client(0, rec.emitter);
  const gid = dom0.domainCreate({ name: 'guest', memoryPages: GUEST_PAGES });
  const guest = hv.client(gid, rec.emitter);
  for (let r = 0; r < GUEST_PAGES; r++) expect(guest.grantForeignAccess(r, 0, r, false)).toBe(0);
  const clock = new VirtualClock();
  const client = opts.wrap ? opts.wrap(dom0) : dom0;
  const k = new Kernel({ client, pages: createPageTableSpec(0, GFNS), clock, events: rec.emitter });
  return { hv, rec, dom0, guest, gid, clock, k };
}

type Booted = ReturnType<typeof boot>;

/** Map refs `refs` of the guest into fresh grant pages; returns pages and the unmap ops for them. */
function mapRefs(b: Booted, refs: number[]) {
  const pages = b.k.gnttab_alloc_pages(refs.length);
  if (typeof pages === 'number') throw new Error(`alloc failed: ${pages}`);
  const ops: GnttabMapGrantRef[] = refs.map((ref, i) => ({ hostGfn: pages[i]!.gfn, flags: GNTMAP_host_map, ref, dom: b.gid }));
  expect(b.k.gnttab_map_refs(ops, pages)).toBe(0);
  for (const op of ops) expect(op.status).toBe(GNTST_okay);
  const unmapOps: GnttabUnmapGrantRef[] = ops.map((op) => ({ hostGfn: op.hostGfn, handle: op.handle! }));
  return { pages, ops, unmapOps };
}

function item(unmapOps: GnttabUnmapGrantRef[], pages: Page[]) {
  const calls: number[] = [];
  const it: GntabUnmapQueueData<string> = { unmapOps, pages, count: pages.length, data: 'req', done: (result, i) => {
    expect(i).toBe(it);
    calls.push(result);
  } };
  return { it, calls };
}

/** Counts unmap hypercalls and records PG_foreign of the batch's pages while the hypercall runs. */
function spyingClient(pagesRef: { pages: Page[] }) {
  const seen: { calls: number; foreignDuring: boolean[][] } = { calls: 0, foreignDuring: [] };
  const wrap = (c: HypercallClient): KernelHypercalls =>
    Object.assign(Object.create(c) as HypercallClient, {
      unmapGrantRef(ops: GnttabUnmapGrantRef[]) {
        seen.calls++;
        seen.foreignDuring.push(pagesRef.pages.map((p) => PageForeign(p)));
        return c.unmapGrantRef(ops);
      },
    });
  return { seen, wrap };
}

describe('struct page', () => {
  it('PG_foreign aliases PG_pinned (PG_owner_priv_1)', () => {
    expect(PG_foreign).toBe(PG_pinned);
    expect(PG_foreign).toBe(PG_owner_priv_1);
  });

  it('refcount, PG_private, xen_page_foreign, and page.get/page.put on foreign pages only', () => {
    const b = boot();
    const own = b.k.alloc_page()!;
    expect(page_count(own)).toBe(1);
    expect(get_page(own)).toBe(2);
    expect(put_page(own)).toBe(1);
    expect(xen_page_foreign(own)).toBeNull();
    expect(b.rec.of('page.get')).toHaveLength(0);
    expect(() => put_page(own)).toThrow(/unbalanced put_page/);
    expect(page_count(own)).toBe(1);

    const { pages } = mapRefs(b, [3]);
    const p = pages[0]!;
    expect(PagePrivate(p)).toBe(true);
    expect(PageForeign(p)).toBe(true);
    expect(xen_page_foreign(p)).toEqual({ domid: b.gid, gref: 3 });
    expect(b.dom0.p2mEntry(p.gfn) & P2M_FOREIGN).toBe(P2M_FOREIGN);
    get_page(p);
    put_page(p);
    expect(b.rec.of('page.get')).toEqual([{ gfn: p.gfn, domid: b.gid, gref: 3, count: 2 }]);
    expect(b.rec.of('page.put')).toEqual([{ gfn: p.gfn, domid: b.gid, gref: 3, count: 1 }]);
  });

  it('a page object hands out a memory-gate stamp that reads the granted frame', () => {
    const b = boot();
    expect(b.guest.write(3, 0, Uint8Array.of(1, 2, 3))).toBe(0);
    const { pages } = mapRefs(b, [3]);
    const dst = new Uint8Array(3);
    expect(b.dom0.read(pages[0]!.gfn, 0, dst, pages[0]!.stamp())).toBe(0);
    expect([...dst]).toEqual([1, 2, 3]);
  });
});

describe('balloon', () => {
  it('takes empty gfns first; all or nothing', () => {
    const b = boot();
    const pages = b.k.alloc_xenballooned_pages(3) as Page[];
    expect(pages.map((p) => p.gfn)).toEqual([8, 9, 10]);
    for (const p of pages) expect(b.dom0.p2mEntry(p.gfn)).toBe(P2M_INVALID);
    expect((b.k.alloc_xenballooned_pages(2) as Page[]).map((p) => p.gfn)).toEqual([11, 12]);
    // 64 gfns: 8 populated, 5 taken → 51 empty + 8 free to balloon out = 59; 60 is too many.
    expect(b.k.alloc_xenballooned_pages(60)).toBe(-ENOMEM);
    expect(b.rec.of('mem.decrease')).toHaveLength(0); // a failed allocation does not drain memory
    b.k.free_xenballooned_pages(pages);
    expect((b.k.alloc_xenballooned_pages(1) as Page[])[0]!.gfn).toBe(8);
  });

  it('balloons out populated free pages (decrease_reservation) when no gfn is empty', () => {
    const b = boot({ dom0Pages: GFNS });
    const keep = b.k.alloc_page()!; // gfn 0: in use, never ballooned out
    const pages = b.k.alloc_xenballooned_pages(2) as Page[];
    expect(pages.map((p) => p.gfn)).toEqual([63, 62]);
    for (const p of pages) expect(b.dom0.p2mEntry(p.gfn)).toBe(P2M_INVALID);
    expect(b.rec.of('mem.decrease').map((e) => e.gfn)).toEqual([63, 62]);
    expect(b.rec.of('balloon.alloc').at(-1)).toEqual({ count: 2, decreased: 2, firstGfn: 63 });
    expect(b.dom0.p2mEntry(keep.gfn)).not.toBe(P2M_INVALID);
  });
});

describe('gnttab_map_refs / gnttab_unmap_refs', () => {
  it('a failed op leaves its page not foreign', () => {
    const b = boot();
    const pages = b.k.gnttab_alloc_pages(2) as Page[];
    const ops: GnttabMapGrantRef[] = [
      { hostGfn: pages[0]!.gfn, flags: GNTMAP_host_map, ref: 1, dom: b.gid },
      { hostGfn: pages[1]!.gfn, flags: GNTMAP_host_map, ref: 60, dom: b.gid }, // never granted
    ];
    expect(b.k.gnttab_map_refs(ops, pages)).toBe(0);
    expect(ops[1]!.status).not.toBe(GNTST_okay);
    expect(PageForeign(pages[0]!)).toBe(true);
    expect(PageForeign(pages[1]!)).toBe(false);
  });

  it('hypercall first, then ClearPageForeign: foreign while the unmap runs, clear and p2m invalid after', () => {
    const ref = { pages: [] as Page[] };
    const spy = spyingClient(ref);
    const b = boot({ wrap: spy.wrap });
    const { pages, unmapOps } = mapRefs(b, [0, 1, 2]);
    ref.pages = pages;
    expect(b.k.gnttab_unmap_refs(unmapOps, pages)).toBe(0);
    expect(spy.seen.foreignDuring).toEqual([[true, true, true]]);
    for (const p of pages) {
      expect(PageForeign(p)).toBe(false);
      expect(xen_page_foreign(p)).toBeNull();
      expect(b.dom0.p2mEntry(p.gfn)).toBe(P2M_INVALID);
    }
    expect(b.rec.of('grant.unmap').map((e) => e.status)).toEqual([GNTST_okay, GNTST_okay, GNTST_okay]);
  });
});

describe('gnttab_unmap_refs_async', () => {
  it('unmaps at once, in the caller, when no page is in use', () => {
    const b = boot();
    const { pages, unmapOps } = mapRefs(b, [0, 1]);
    const { it: item1, calls } = item(unmapOps, pages);
    b.k.gnttab_unmap_refs_async(item1);
    expect(calls).toEqual([0]);
    expect(b.rec.of('grant.unmap.deferred')).toHaveLength(0);
    expect(b.clock.runAll()).toBe(0);
  });

  it('one busy page in a batch of 11: no hypercall, nothing unmapped; retries at 5, 10, 15… ms; exactly one done', () => {
    const ref = { pages: [] as Page[] };
    const spy = spyingClient(ref);
    const b = boot({ wrap: spy.wrap });
    const refs = Array.from({ length: 11 }, (_, i) => i);
    const { pages, unmapOps } = mapRefs(b, refs);
    ref.pages = pages;
    const busy = pages[7]!;
    get_page(busy); // e.g. an skb still queued for retransmission
    const { it: item1, calls } = item(unmapOps, pages);
    b.k.gnttab_unmap_refs_async(item1);

    const atMs: number[] = [];
    const stillAllMapped = () => {
      expect(spy.seen.calls).toBe(0);
      expect(b.rec.of('grant.unmap')).toHaveLength(0);
      for (const p of pages) {
        expect(PageForeign(p)).toBe(true);
        expect(b.dom0.p2mEntry(p.gfn) & P2M_FOREIGN).toBe(P2M_FOREIGN);
      }
    };
    stillAllMapped();
    expect(b.k.unmapsDeferred).toBe(1);
    // Retry times: 5, 5+10, 5+10+15, 5+10+15+20.
    for (let n = 0; n < 4; n++) {
      const next = b.clock.nextTimerNs();
      expect(next).not.toBeNull();
      atMs.push(next! / 1e6);
      b.clock.advance(next! / 1e6 - b.clock.nowNs() / 1e6);
      stillAllMapped();
    }
    expect(atMs).toEqual([5, 15, 30, 50]);
    expect(b.rec.of('grant.unmap.deferred')).toEqual([0, 1, 2, 3, 4].map((age) => ({ age, delayMs: 5 * (age + 1), busyPages: 1, count: 11, firstGfn: pages[0]!.gfn })));
    expect(calls).toEqual([]);

    put_page(busy);
    b.clock.advance(25);
    expect(calls).toEqual([0]);
    expect(spy.seen.calls).toBe(1);
    for (const p of pages) {
      expect(PageForeign(p)).toBe(false);
      expect(b.dom0.p2mEntry(p.gfn)).toBe(P2M_INVALID);
    }
    expect(b.rec.of('grant.unmap.done')).toEqual([{ age: 5, count: 11, result: 0, firstGfn: pages[0]!.gfn }]);
    expect(b.clock.runAll()).toBe(0);
    expect(calls).toEqual([0]);
    expect(b.k.unmapsDeferred).toBe(0);
  });

  it('exactly one done when the hypercall fails (a bad handle), also after a deferral', () => {
    const b = boot();
    const { pages, unmapOps } = mapRefs(b, [4, 5]);
    unmapOps[1]!.handle = 31; // never handed out
    get_page(pages[0]!);
    const { it: item1, calls } = item(unmapOps, pages);
    b.k.gnttab_unmap_refs_async(item1);
    put_page(pages[0]!);
    b.clock.runAll();
    expect(calls).toEqual([-EINVAL]);
    expect(unmapOps[0]!.status).toBe(GNTST_okay);
    expect(unmapOps[1]!.status).toBe(GNTST_bad_handle);
    // The page whose unmap failed still maps the guest's frame, and says so.
    expect(PageForeign(pages[0]!)).toBe(false);
    expect(PageForeign(pages[1]!)).toBe(true);
    expect(b.clock.runAll()).toBe(0);
    expect(calls).toHaveLength(1);
  });

  it('resubmitting an item whose unmap is pending is a bug', () => {
    const b = boot();
    const { pages, unmapOps } = mapRefs(b, [0]);
    get_page(pages[0]!);
    const { it: item1 } = item(unmapOps, pages);
    b.k.gnttab_unmap_refs_async(item1);
    expect(() => b.k.gnttab_unmap_refs_async(item1)).toThrow(/resubmitted/);
  });

  it('age saturates at UINT_MAX: the delay stops growing', () => {
    const b = boot();
    const { pages, unmapOps } = mapRefs(b, [0]);
    get_page(pages[0]!);
    const { it: item1 } = item(unmapOps, pages);
    b.k.gnttab_unmap_refs_async(item1);
    item1.age = 0xffffffff - 1;
    b.clock.advance(5);
    expect(item1.age).toBe(0xffffffff);
    b.clock.runAll(1);
    expect(item1.age).toBe(0xffffffff);
    expect(b.rec.of('grant.unmap.deferred').at(-1)!.delayMs).toBe(5 * 2 ** 32);
  });
});

describe('gnttab_unmap_refs_async: telling the caller about a deferral (onDeferred)', () => {
  it('once per deferral, after grant.unmap.deferred and with its age and delay; never when nothing is held', () => {
    const b = boot();
    const { pages, unmapOps } = mapRefs(b, [0, 1, 2]);
    get_page(pages[1]!);
    get_page(pages[2]!);
    const { it: item1, calls } = item(unmapOps, pages);
    const told: { delayMs: number; age: number; busyPages: number; deferredEvents: number }[] = [];
    item1.onDeferred = (delayMs, age, busyPages, i) => {
      expect(i).toBe(item1);
      // The kernel's own event is already in the log, and the retry already scheduled.
      told.push({ delayMs, age, busyPages, deferredEvents: b.rec.of('grant.unmap.deferred').length });
      expect(b.clock.nextTimerNs()).not.toBeNull();
    };
    b.k.gnttab_unmap_refs_async(item1);
    b.clock.advance(5); // age 1: both still held
    put_page(pages[2]!);
    b.clock.advance(10); // age 2: one still held
    put_page(pages[1]!);
    b.clock.runAll();
    expect(told).toEqual([
      { delayMs: 5, age: 0, busyPages: 2, deferredEvents: 1 },
      { delayMs: 10, age: 1, busyPages: 2, deferredEvents: 2 },
      { delayMs: 15, age: 2, busyPages: 1, deferredEvents: 3 },
    ]);
    expect(calls).toEqual([0]);

    const again = mapRefs(b, [3]);
    const { it: item2, calls: calls2 } = item(again.unmapOps, again.pages);
    let toldAgain = 0;
    item2.onDeferred = () => toldAgain++;
    b.k.gnttab_unmap_refs_async(item2);
    expect(calls2).toEqual([0]);
    expect(toldAgain).toBe(0);
  });

  it('a throwing onDeferred (a bug in the caller) still leaves exactly one done', () => {
    const b = boot();
    const { pages, unmapOps } = mapRefs(b, [0]);
    get_page(pages[0]!);
    const { it: item1, calls } = item(unmapOps, pages);
    item1.onDeferred = () => {
      throw new Error('caller bug');
    };
    expect(() => b.k.gnttab_unmap_refs_async(item1)).toThrow(/caller bug/);
    put_page(pages[0]!);
    b.clock.runAll();
    expect(calls).toEqual([0]);
    expect(b.clock.runAll()).toBe(0);
  });
});

describe('gnttab_unmap_refs_sync', () => {
  it('resolves with the result once every page is released', async () => {
    const b = boot();
    const { pages, unmapOps } = mapRefs(b, [0, 1, 2]);
    get_page(pages[2]!);
    let result: number | null = null;
    const done = b.k.gnttab_unmap_refs_sync({ unmapOps, pages, count: 3 }).then((r) => (result = r));
    b.clock.advance(100);
    await Promise.resolve();
    expect(result).toBeNull();
    expect(PageForeign(pages[0]!)).toBe(true);
    put_page(pages[2]!);
    b.clock.runAll();
    await done;
    expect(result).toBe(0);
    for (const p of pages) expect(b.dom0.p2mEntry(p.gfn)).toBe(P2M_INVALID);
  });
});

describe('legacy unmap_and_replace', () => {
  it('replaces the mapping with a scratch frame: flag cleared, a read through the old stamp is a mem.leak', () => {
    const b = boot();
    expect(b.guest.write(6, 0, Uint8Array.of(0xaa))).toBe(0);
    const { pages, ops } = mapRefs(b, [6]);
    const page = pages[0]!;
    const stamp = page.stamp(); // e.g. an skb frag still pointing at the page
    const scratch = b.k.alloc_page()!;
    const scratchMfn = b.dom0.p2mEntry(scratch.gfn);
    expect(b.k.gnttab_unmap_and_replace(page, ops[0]!.handle!, scratch)).toBe(GNTST_okay);
    expect(PageForeign(page)).toBe(false);
    expect(b.dom0.p2mEntry(page.gfn)).toBe(scratchMfn);
    expect(b.dom0.p2mEntry(scratch.gfn)).toBe(P2M_INVALID);
    expect(b.rec.of('mem.leak')).toHaveLength(0);
    const dst = new Uint8Array(1);
    expect(b.dom0.read(page.gfn, 0, dst, stamp)).toBe(0);
    expect(dst[0]).not.toBe(0xaa);
    expect(b.rec.of('mem.leak')).toEqual([expect.objectContaining({ dom: 0, gfn: page.gfn, mfn: scratchMfn, owner: 0, granter: b.gid, gref: 6 })]);
  });

  it('a bad handle is the op status and leaves the page foreign', () => {
    const b = boot();
    const { pages } = mapRefs(b, [6]);
    expect(b.k.gnttab_unmap_and_replace(pages[0]!, 30, b.k.alloc_page()!)).toBe(GNTST_bad_handle);
    expect(PageForeign(pages[0]!)).toBe(true);
  });
});

describe('gnttab_page_cache', () => {
  it('reuses pages put back; allocates from the balloon only when empty; shrink frees the rest', () => {
    const b = boot();
    const cache = new GnttabPageCache(b.k);
    const first = cache.get(2) as Page[];
    expect(b.rec.of('balloon.alloc')).toHaveLength(1);
    const ops: GnttabMapGrantRef[] = first.map((p, i) => ({ hostGfn: p.gfn, flags: GNTMAP_host_map, ref: i, dom: b.gid }));
    b.k.gnttab_map_refs(ops, first);
    expect(() => cache.put(first)).toThrow(/maps a foreign page/);
    b.k.gnttab_unmap_refs(ops.map((o) => ({ handle: o.handle! })), first);
    cache.put(first);
    expect(cache.num_pages).toBe(2);
    const again = cache.get(3) as Page[];
    expect(again.slice(0, 2).map((p) => p.gfn).sort()).toEqual(first.map((p) => p.gfn).sort());
    expect(b.rec.of('balloon.alloc')).toHaveLength(2);
    expect(b.rec.of('balloon.alloc')[1]!.count).toBe(1);
    cache.put(again);
    cache.shrink(1);
    expect(cache.num_pages).toBe(1);
    expect(b.rec.of('balloon.free').at(-1)!.count).toBe(2);
  });
});

describe('delayed work', () => {
  it('runs once on the injected clock; schedule while pending is refused; cancel', () => {
    const clock = new VirtualClock();
    let runs = 0;
    const w = new DelayedWork(clock, () => runs++);
    expect(schedule_delayed_work(w, 5)).toBe(true);
    expect(schedule_delayed_work(w, 1)).toBe(false);
    clock.advance(4);
    expect(runs).toBe(0);
    clock.advance(1);
    expect(runs).toBe(1);
    expect(w.pending).toBe(false);
    w.schedule(5);
    expect(w.cancel()).toBe(true);
    clock.runAll();
    expect(runs).toBe(1);
  });
});
