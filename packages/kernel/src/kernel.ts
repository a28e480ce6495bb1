/**
 * The part of a domain's Linux that drivers use, per thread: the page allocator and balloon,
 * the grant-table helpers of `drivers/xen/grant-table.c` (map, unmap, the deferred unmap of
 * pages still in use, the legacy unmap-and-replace) and delayed work on the injected clock.
 *
 * Capabilities come in at construction (hypercall client scoped to the domain, the domain's
 * shared page table, clock, event emitter); nothing is imported as a global. Several threads of
 * one domain each build a `Kernel` over the same `PageTableSpec`.
 */
import { EINVAL, ENOMEM, GNTST_okay, assert } from '@pvsim/abi';
import type { EventEmitter } from '@pvsim/eventlog';
import { P2M_FOREIGN, P2M_INVALID, type GnttabMapGrantRef, type GnttabUnmapAndReplace, type GnttabUnmapGrantRef } from '@pvsim/hypervisor';
import type { Clock } from '@pvsim/runtime';
import {
  ClearPageForeign,
  PAGE_W_COUNT,
  PG_private,
  PageForeign,
  PageTable,
  SetPageForeign,
  page_count,
  test_and_clear_bit,
  test_and_set_bit,
  type KernelHypercalls,
  type Page,
  type PageTableSpec,
} from './page.js';
import { DelayedWork } from './workqueue.js';
import './events.js';

/** `GNTTAB_UNMAP_REFS_DELAY`: the first retry of a deferred unmap, in ms; retry n waits n times this. */
export const GNTTAB_UNMAP_REFS_DELAY = 5;
/** `age` saturates here (`UINT_MAX`): the retry delay stops growing, the retries do not stop (as in Linux). */
export const GNTTAB_UNMAP_AGE_MAX = 0xffffffff;
/** Pages per `gnttab_map_refs`/`gnttab_unmap_refs` batch (blkback's `BLKIF_MAX_SEGMENTS_PER_REQUEST` × a few). */
export const GNTTAB_BATCH_PAGES_MAX = 1024;

/** `gnttab_unmap_refs_done`: called exactly once per `gnttab_unmap_refs_async`, with 0 or a negative errno. */
export type GnttabUnmapRefsDone<T> = (result: number, item: GntabUnmapQueueData<T>) => void;

/**
 * Told each time an attempt of `gnttab_unmap_refs_async` found `busyPages` of the batch in use
 * and scheduled the retry `delayMs` from now; `age` is the attempt's (0 for the first, in the
 * caller). Not in Linux: pvsim's drivers log the deferral under their own request's name.
 */
export type GnttabUnmapRefsDeferred<T> = (delayMs: number, age: number, busyPages: number, item: GntabUnmapQueueData<T>) => void;

/**
 * `struct gntab_unmap_queue_data`: owned by the caller (blkback embeds one per request, gntdev
 * one per map) and must not be resubmitted before its `done` ran.
 */
export interface GntabUnmapQueueData<T = unknown> {
  unmapOps: GnttabUnmapGrantRef[];
  pages: Page[];
  count: number;
  done: GnttabUnmapRefsDone<T>;
  /**
   * Optional: called after each deferral, once the retry is scheduled (so `done` still comes
   * exactly once, even if this throws). One function may serve every item (it gets the item).
   */
  onDeferred?: GnttabUnmapRefsDeferred<T>;
  data: T;
  /** Retries so far (set to 0 by `gnttab_unmap_refs_async`). */
  age?: number;
  /** `gnttab_work`: set up by `gnttab_unmap_refs_async` once an attempt finds a page busy. */
  work?: DelayedWork;
}

export interface KernelOptions {
  client: KernelHypercalls;
  pages: PageTableSpec;
  clock: Clock;
  events: EventEmitter;
}

export class Kernel {
  readonly client: KernelHypercalls;
  readonly pages: PageTable;
  readonly clock: Clock;
  readonly events: EventEmitter;
  readonly domid: number;
  /** Items of this thread's deferred unmaps now waiting for a retry. */
  private deferred = 0;

  constructor(o: KernelOptions) {
    this.client = o.client;
    this.clock = o.clock;
    this.events = o.events;
    this.pages = new PageTable(o.pages, o.client, o.events);
    this.domid = o.pages.domid;
  }

  pfn_to_page(gfn: number): Page {
    return this.pages.pfn_to_page(gfn);
  }

  /** Deferred unmaps of this thread waiting for their pages to be released. */
  get unmapsDeferred(): number {
    return this.deferred;
  }

  // ───────────────────────────── page allocator and balloon ─────────────────────────────

  private claim(gfn: number): boolean {
    const p = this.pages.pfn_to_page(gfn);
    return Atomics.compareExchange(this.pages.words, p.word(PAGE_W_COUNT), 0, 1) === 0;
  }

  private release(page: Page): void {
    const prev = Atomics.compareExchange(this.pages.words, page.word(PAGE_W_COUNT), 1, 0);
    if (prev !== 1) assert(false, `freeing gfn ${page.gfn} of d${this.domid} with count ${prev}: a bug (still referenced, or freed twice)`);
  }

  /** `alloc_page`: a free page of the domain's own memory (count 1), or null. */
  alloc_page(): Page | null {
    for (let g = 0; g < this.pages.gfns; g++) {
      const e = this.client.p2mEntry(g);
      if (e !== P2M_INVALID && !(e & P2M_FOREIGN) && this.claim(g)) {
        // Re-check after the claim: the frame may have been ballooned out by another thread.
        const e2 = this.client.p2mEntry(g);
        if (e2 !== P2M_INVALID && !(e2 & P2M_FOREIGN)) return this.pages.pfn_to_page(g);
        this.release(this.pages.pfn_to_page(g));
      }
    }
    return null;
  }

  /** `__free_page` (of a page with one reference). */
  free_page(page: Page): void {
    assert(!PageForeign(page), `freeing gfn ${page.gfn} while it maps a foreign page: a bug (unmap first)`);
    this.release(page);
  }

  /**
   * `alloc_xenballooned_pages`: `n` pages with no frame behind them, ready for grant mappings
   * (count 1 each). Empty gfns are taken first; if there are too few, free pages of the domain's
   * memory are ballooned out (`XENMEM_decrease_reservation`). All or nothing: -ENOMEM.
   */
  alloc_xenballooned_pages(n: number): Page[] | number {
    assert(Number.isInteger(n) && n >= 0 && n <= GNTTAB_BATCH_PAGES_MAX, `alloc_xenballooned_pages(${n}): count out of range (max ${GNTTAB_BATCH_PAGES_MAX})`);
    const got: Page[] = [];
    for (let g = 0; g < this.pages.gfns && got.length < n; g++) {
      if (this.client.p2mEntry(g) !== P2M_INVALID || !this.claim(g)) continue;
      if (this.client.p2mEntry(g) === P2M_INVALID) got.push(this.pages.pfn_to_page(g));
      else this.release(this.pages.pfn_to_page(g));
    }
    // Balloon out only when that can satisfy the request (a failed allocation must not drain memory).
    let candidates = 0;
    for (let g = 0; g < this.pages.gfns && got.length + candidates < n; g++) {
      const e = this.client.p2mEntry(g);
      if (e !== P2M_INVALID && !(e & P2M_FOREIGN) && page_count(this.pages.pfn_to_page(g)) === 0) candidates++;
    }
    let decreased = 0;
    for (let g = this.pages.gfns - 1; g >= 0 && got.length < n && got.length + candidates >= n; g--) {
      const e = this.client.p2mEntry(g);
      if (e === P2M_INVALID || e & P2M_FOREIGN || !this.claim(g)) continue;
      if (this.client.decreaseReservation(g) === 0) {
        got.push(this.pages.pfn_to_page(g));
        decreased++;
      } else this.release(this.pages.pfn_to_page(g));
    }
    if (got.length < n) {
      // Lost a race for candidates: pages ballooned out meanwhile stay ballooned (free, no frame).
      for (const p of got) this.release(p);
      return -ENOMEM;
    }
    if (n > 0) this.events.emit('balloon.alloc', { count: n, decreased, firstGfn: got[0]!.gfn }, this.domid);
    return got;
  }

  /** `free_xenballooned_pages`: back to the balloon (or, for a page that holds a frame again, to free memory). */
  free_xenballooned_pages(pages: Page[]): void {
    for (const p of pages) {
      assert(!PageForeign(p), `freeing gfn ${p.gfn} to the balloon while it maps a foreign page: a bug (unmap first)`);
      assert(page_count(p) === 1, `freeing gfn ${p.gfn} to the balloon with count ${page_count(p)}: a bug (still referenced)`);
    }
    for (const p of pages) this.release(p);
    if (pages.length > 0) this.events.emit('balloon.free', { count: pages.length, firstGfn: pages[0]!.gfn }, this.domid);
  }

  /** `gnttab_alloc_pages`: ballooned pages with `PG_private` set (their `private` holds the foreign info while mapped). */
  gnttab_alloc_pages(n: number): Page[] | number {
    const pages = this.alloc_xenballooned_pages(n);
    if (typeof pages === 'number') return pages;
    for (const p of pages) test_and_set_bit(p, PG_private);
    return pages;
  }

  gnttab_free_pages(pages: Page[]): void {
    for (const p of pages) test_and_clear_bit(p, PG_private);
    this.free_xenballooned_pages(pages);
  }

  // ───────────────────────────── grant mappings ─────────────────────────────

  /**
   * `gnttab_map_refs`: one `GNTTABOP_map_grant_ref` batch; each op's `hostGfn` must be its
   * page's gfn (a ballooned page). On `GNTST_okay` the page becomes foreign with the op's
   * domid/gref (the hypervisor's map has set the p2m's foreign entry). Per-op statuses are in
   * the ops. Returns the hypercall's result.
   *
   * Not done: `GNTST_eagain` retries (this hypervisor never pages grants out).
   */
  gnttab_map_refs(mapOps: GnttabMapGrantRef[], pages: Page[]): number {
    const count = mapOps.length;
    // Assertion messages are built only on failure: this runs for every request.
    if (!(count === pages.length && count <= GNTTAB_BATCH_PAGES_MAX)) assert(false, `gnttab_map_refs: ${count} ops for ${pages.length} pages (max ${GNTTAB_BATCH_PAGES_MAX}): a bug`);
    for (let i = 0; i < count; i++) {
      if (mapOps[i]!.hostGfn !== pages[i]!.gfn) assert(false, `gnttab_map_refs: op ${i} maps at gfn ${mapOps[i]!.hostGfn}, its page is gfn ${pages[i]!.gfn}: a bug`);
    }
    const rc = this.client.mapGrantRef(mapOps);
    if (rc !== 0) return rc;
    for (let i = 0; i < count; i++) {
      const op = mapOps[i]!;
      if (op.status === GNTST_okay) SetPageForeign(pages[i]!, op.dom, op.ref);
    }
    return 0;
  }

  /**
   * `gnttab_unmap_refs`: the `GNTTABOP_unmap_grant_ref` batch FIRST, then `ClearPageForeign`
   * (Linux's order: while the hypercall runs the page is still foreign, so netback still finds
   * its gref). Linux on PV then clears the p2m entry itself; here the hypervisor's unmap already
   * did, so that step is a check. Differs from Linux: a page whose op failed keeps `PG_foreign`
   * (its frame is still mapped here, and the flag must say so), and the result is then -EINVAL.
   */
  gnttab_unmap_refs(unmapOps: GnttabUnmapGrantRef[], pages: Page[], count = unmapOps.length): number {
    if (!(count <= unmapOps.length && count <= pages.length && count <= GNTTAB_BATCH_PAGES_MAX)) {
      assert(false, `gnttab_unmap_refs: count ${count} for ${unmapOps.length} ops and ${pages.length} pages: a bug`);
    }
    const ops = count === unmapOps.length ? unmapOps : unmapOps.slice(0, count);
    const rc = this.client.unmapGrantRef(ops);
    if (rc !== 0) return rc;
    let ret = 0;
    for (let i = 0; i < count; i++) {
      const page = pages[i]!;
      if (ops[i]!.status !== GNTST_okay) {
        ret = -EINVAL;
        continue;
      }
      ClearPageForeign(page);
      // clear_foreign_p2m_mapping: the entry must no longer be foreign.
      const e = this.client.p2mEntry(page.gfn);
      if (!(e === P2M_INVALID || !(e & P2M_FOREIGN))) assert(false, `gfn ${page.gfn} still foreign after a successful unmap: a hypervisor bug`);
    }
    return ret;
  }

  /**
   * `gnttab_unmap_refs_async`: unmap once no page of the batch is in use (count 1). The first
   * attempt runs here, in the caller; if any page is busy there is no hypercall at all and the
   * whole batch is retried after 5·(age+1) ms on the clock (each deferral emits
   * `grant.unmap.deferred`, then tells `item.onDeferred` if set). `item.done(result, item)` runs
   * exactly once, when the unmap ran — also when it failed.
   */
  gnttab_unmap_refs_async<T>(item: GntabUnmapQueueData<T>): void {
    assert(!item.work?.pending, 'gnttab_unmap_refs_async: item resubmitted while its unmap is pending: a bug in the caller');
    if (!(item.count <= item.pages.length && item.count <= item.unmapOps.length)) assert(false, `gnttab_unmap_refs_async: count ${item.count} exceeds its ops or pages: a bug`);
    item.work = undefined;
    item.age = 0;
    this.unmapAsyncAttempt(item);
  }

  /** `gnttab_work`, made when the first attempt found a page busy (most unmaps never need it). */
  private retryWork<T>(item: GntabUnmapQueueData<T>): DelayedWork {
    return (item.work ??= new DelayedWork(this.clock, () => {
      this.deferred--;
      if (item.age! !== GNTTAB_UNMAP_AGE_MAX) item.age!++;
      this.unmapAsyncAttempt(item);
    }));
  }

  private unmapAsyncAttempt<T>(item: GntabUnmapQueueData<T>): void {
    const age = item.age!;
    let busyPages = 0;
    for (let pc = 0; pc < item.count; pc++) if (page_count(item.pages[pc]!) > 1) busyPages++;
    const firstGfn = item.count > 0 ? item.pages[0]!.gfn : -1;
    if (busyPages > 0) {
      const delayMs = GNTTAB_UNMAP_REFS_DELAY * (age + 1);
      this.events.emit('grant.unmap.deferred', { age, delayMs, busyPages, count: item.count, firstGfn }, this.domid);
      this.deferred++;
      this.retryWork(item).schedule(delayMs);
      item.onDeferred?.(delayMs, age, busyPages, item);
      return;
    }
    let result: number;
    try {
      result = this.gnttab_unmap_refs(item.unmapOps, item.pages, item.count);
    } catch (e) {
      // An assertion (a bug) inside the unmap: the caller still gets its one `done`, then the bug propagates.
      this.finishUnmap(item, -EINVAL, age, firstGfn);
      throw e;
    }
    this.finishUnmap(item, result, age, firstGfn);
  }

  private finishUnmap<T>(item: GntabUnmapQueueData<T>, result: number, age: number, firstGfn: number): void {
    this.events.emit('grant.unmap.done', { age, count: item.count, result, firstGfn }, this.domid);
    item.done(result, item);
  }

  /** `gnttab_unmap_refs_sync`: resolves with the result once `done` ran (after every page count reached 1). The item's own `done` is replaced, as in Linux. */
  gnttab_unmap_refs_sync<T>(item: Omit<GntabUnmapQueueData<T>, 'done' | 'data'> & Partial<Pick<GntabUnmapQueueData<T>, 'data'>>): Promise<number> {
    return new Promise<number>((resolve) => {
      const full = item as GntabUnmapQueueData<T | undefined>;
      full.done = (result) => resolve(result);
      full.data = item.data;
      this.gnttab_unmap_refs_async(full);
    });
  }

  /**
   * The legacy path (`m2p_remove_override` → `GNTTABOP_unmap_and_replace`): one page per call.
   * The mapping at `page` is replaced by the frame of `scratch`, a page of the backend's own
   * memory, whose gfn is left empty; then `PG_foreign` is cleared. A later read through a page
   * reference taken while the grant was mapped reads the scratch frame: the hypervisor records
   * it as a `mem.leak`. Returns the op's GNTST_* status.
   */
  gnttab_unmap_and_replace(page: Page, handle: number, scratch: Page): number {
    assert(page.gfn !== scratch.gfn, 'gnttab_unmap_and_replace: scratch page is the mapped page: a bug');
    const op: GnttabUnmapAndReplace = { hostGfn: page.gfn, newGfn: scratch.gfn, handle };
    const rc = this.client.unmapAndReplace(op);
    if (rc !== 0) return rc;
    if (op.status === GNTST_okay) ClearPageForeign(page);
    return op.status ?? rc;
  }
}
