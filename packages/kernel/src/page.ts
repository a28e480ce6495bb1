/**
 * `struct page` for every gfn of one domain, in shared memory: all threads (daemons) of the
 * domain see the same reference counts, flags and `private` words, as every CPU of a Linux guest
 * sees the same `mem_map`. `PageTableSpec` is the postMessage-able description; `PageTable` the
 * views one thread builds over it.
 *
 * Layout: `PAGE_WORDS` Int32 words per gfn (named below). Every access is an `Atomics`
 * operation (sequentially consistent), so:
 *  - a reference taken in one thread is seen by the next `page_count` in any thread (the
 *    all-or-nothing check of `gnttab_unmap_refs_async` depends on it);
 *  - `SetPageForeign` writes `private` BEFORE setting the flag and `xen_page_foreign` reads the
 *    flag BEFORE `private`, so a reader that sees the flag sees the domid/gref of that mapping.
 */
import { assert, isU32 } from '@pvsim/abi';
import type { HypercallClient, MappingStamp } from '@pvsim/hypervisor';

/**
 * The hypercalls the kernel uses: a domid-scoped client, or a test's wrapper around one.
 * `frameView` is how a driver reaches a page it shares in place (a ring it mapped): the
 * domain's own page tables, never machine memory.
 */
export type KernelHypercalls = Pick<
  HypercallClient,
  'domid' | 'mapGrantRef' | 'unmapGrantRef' | 'unmapAndReplace' | 'p2mEntry' | 'stamp' | 'decreaseReservation' | 'populatePhysmap' | 'frameView'
>;
import type { EventEmitter } from '@pvsim/eventlog';
import './events.js';

/**
 * `page->_refcount`. 0: free — guest memory if the gfn holds a frame, a ballooned slot if not.
 * Allocation is one compare-exchange 0→1, so two threads never hand out the same page.
 */
export const PAGE_W_COUNT = 0;
/** `page->flags` (bits below). */
export const PAGE_W_FLAGS = 1;
/** `page->private`, low half: the foreign domid (u16) while `PG_foreign`. */
export const PAGE_W_PRIV_DOMID = 2;
/** `page->private`, high half: the foreign grant reference (u32) while `PG_foreign`. */
export const PAGE_W_PRIV_GREF = 3;
export const PAGE_WORDS = 4;

// Page flag bit numbers (Linux's `enum pageflags` order for the ones we use).
export const PG_locked = 0;
export const PG_dirty = 3;
export const PG_owner_priv_1 = 9;
export const PG_private = 11;
export const PG_reserved = 10;
/** "Pinned in Xen as a read-only pagetable page." */
export const PG_pinned = PG_owner_priv_1;
/** "Has a grant mapping of another (foreign) domain's page": an alias of `PG_pinned`, safe because page-table pages are never foreign. */
export const PG_foreign = PG_owner_priv_1;

/** What `xen_page_foreign` returns: `struct xen_page_foreign`. */
export interface XenPageForeign {
  readonly domid: number;
  readonly gref: number;
}

export interface PageTableSpec {
  readonly domid: number;
  readonly gfns: number;
  /** `gfns * PAGE_WORDS` Int32 words. */
  readonly sab: SharedArrayBuffer;
}

/** Lay out the page table of a domain with `gfns` frames (its p2m size): every page free, no flags. */
export function createPageTableSpec(domid: number, gfns: number): PageTableSpec {
  assert(Number.isInteger(domid) && domid >= 0 && domid <= 0xffff, `domid ${domid} is not a u16`);
  assert(Number.isInteger(gfns) && gfns >= 1, `a page table needs at least one gfn, got ${gfns}`);
  return { domid, gfns, sab: new SharedArrayBuffer(gfns * PAGE_WORDS * 4) };
}

/** One thread's view of a domain's pages (`mem_map`). */
export class PageTable {
  readonly domid: number;
  readonly gfns: number;
  readonly words: Int32Array;
  private readonly pages: (Page | undefined)[];

  constructor(
    readonly spec: PageTableSpec,
    /** The domain's own hypercall client (for `stamp`). */
    readonly client: KernelHypercalls,
    readonly events: EventEmitter,
  ) {
    assert(client.domid === spec.domid, `page table of d${spec.domid} given a client of d${client.domid}: a bug in the caller`);
    this.domid = spec.domid;
    this.gfns = spec.gfns;
    this.words = new Int32Array(spec.sab);
    assert(this.words.length === spec.gfns * PAGE_WORDS, 'page table buffer does not match its gfn count');
    this.pages = new Array<Page | undefined>(spec.gfns);
  }

  /** `pfn_to_page`: the page of `gfn` (one object per gfn per thread). */
  pfn_to_page(gfn: number): Page {
    if (!(Number.isInteger(gfn) && gfn >= 0 && gfn < this.gfns)) assert(false, `gfn ${gfn} outside d${this.domid}'s ${this.gfns} pages: a bug in the caller`);
    let p = this.pages[gfn];
    if (!p) this.pages[gfn] = p = new Page(this, gfn);
    return p;
  }
}

/** `struct page *`: a handle on the shared words of one gfn. */
export class Page {
  private readonly w: number;

  constructor(
    readonly table: PageTable,
    readonly gfn: number,
  ) {
    this.w = gfn * PAGE_WORDS;
  }

  /** Index of word `k` of this page in `table.words`. */
  word(k: number): number {
    return this.w + k;
  }

  /** A page reference for the memory gate: remembers the mapping now at this gfn. */
  stamp(): MappingStamp {
    const s = this.table.client.stamp(this.gfn);
    if (!s) assert(false, `gfn ${this.gfn} has no p2m slot: a bug in the page table`);
    return s;
  }
}

const words = (page: Page) => page.table.words;

export function page_count(page: Page): number {
  return Atomics.load(words(page), page.word(PAGE_W_COUNT));
}

/** Take a reference. Emits `page.get` when the page is foreign. */
export function get_page(page: Page): number {
  const count = Atomics.add(words(page), page.word(PAGE_W_COUNT), 1) + 1;
  if (count <= 1) assert(false, `get_page on free page gfn ${page.gfn} of d${page.table.domid}: a bug (take pages from the allocator first)`);
  const f = xen_page_foreign(page);
  if (f) page.table.events.emit('page.get', { gfn: page.gfn, domid: f.domid, gref: f.gref, count }, page.table.domid);
  return count;
}

/** Drop a reference. Emits `page.put` when the page is foreign. Dropping below 1 here is a bug: pages are freed through their allocator. */
export function put_page(page: Page): number {
  const a = words(page);
  const i = page.word(PAGE_W_COUNT);
  const count = Atomics.sub(a, i, 1) - 1;
  if (count < 1) {
    Atomics.add(a, i, 1);
    assert(false, `put_page would free gfn ${page.gfn} of d${page.table.domid} (count was ${count + 1}): a bug (unbalanced put_page)`);
  }
  const f = xen_page_foreign(page);
  if (f) page.table.events.emit('page.put', { gfn: page.gfn, domid: f.domid, gref: f.gref, count }, page.table.domid);
  return count;
}

export function page_flags(page: Page): number {
  return Atomics.load(words(page), page.word(PAGE_W_FLAGS));
}

export function test_bit(page: Page, bit: number): boolean {
  return (page_flags(page) & (1 << bit)) !== 0;
}

/** Atomically set `bit`; returns whether it was already set (`test_and_set_bit`). */
export function test_and_set_bit(page: Page, bit: number): boolean {
  return (Atomics.or(words(page), page.word(PAGE_W_FLAGS), 1 << bit) & (1 << bit)) !== 0;
}

/** Atomically clear `bit`; returns whether it was set (`test_and_clear_bit`). */
export function test_and_clear_bit(page: Page, bit: number): boolean {
  return (Atomics.and(words(page), page.word(PAGE_W_FLAGS), ~(1 << bit)) & (1 << bit)) !== 0;
}

export function PageForeign(page: Page): boolean {
  return test_bit(page, PG_foreign);
}

/** Mark the page as mapping `gref` of `domid`: `private` first, then the flag (see the header). */
export function SetPageForeign(page: Page, domid: number, gref: number): void {
  if (!(Number.isInteger(domid) && domid >= 0 && domid <= 0xffff && isU32(gref))) assert(false, `foreign page info d${domid}/gref ${gref} out of range: a bug`);
  const a = words(page);
  Atomics.store(a, page.word(PAGE_W_PRIV_DOMID), domid);
  Atomics.store(a, page.word(PAGE_W_PRIV_GREF), gref | 0);
  test_and_set_bit(page, PG_foreign);
}

export function ClearPageForeign(page: Page): void {
  test_and_clear_bit(page, PG_foreign);
}

export function PagePrivate(page: Page): boolean {
  return test_bit(page, PG_private);
}

/** `xen_page_foreign`: the foreign domid/gref, or null when `PG_foreign` is clear. */
export function xen_page_foreign(page: Page): XenPageForeign | null {
  if (!PageForeign(page)) return null;
  const a = words(page);
  return { domid: Atomics.load(a, page.word(PAGE_W_PRIV_DOMID)), gref: Atomics.load(a, page.word(PAGE_W_PRIV_GREF)) >>> 0 };
}
