/**
 * `gnttab_page_cache`: a backend's free list of ballooned pages for grant mappings, so the
 * steady state maps into pages it already holds instead of going to the balloon per request.
 * One per backend, used from that backend's thread only (Linux guards it with a spinlock).
 */
import { assert } from '@pvsim/abi';
import type { Kernel } from './kernel.js';
import { PageForeign, page_count, type Page } from './page.js';

export class GnttabPageCache {
  private readonly pages: Page[] = [];

  constructor(
    private readonly kernel: Kernel,
    /** Pages kept when `gnttab_page_cache_shrink` runs without a target. */
    readonly keepMax = 256,
  ) {}

  /** `num_pages`. */
  get num_pages(): number {
    return this.pages.length;
  }

  /** `gnttab_page_cache_get` for `n` pages: cached ones first (most recently put first), the rest from `gnttab_alloc_pages`. -ENOMEM leaves the cache as it was. */
  get(n: number): Page[] | number {
    const fromCache = Math.min(n, this.pages.length);
    const out = new Array<Page>(fromCache);
    for (let i = 0; i < fromCache; i++) out[i] = this.pages.pop()!;
    if (out.length < n) {
      const more = this.kernel.gnttab_alloc_pages(n - out.length);
      if (typeof more === 'number') {
        this.pages.push(...out.reverse());
        return more;
      }
      out.push(...more);
    }
    return out;
  }

  /** `gnttab_page_cache_put`: unmapped pages with no other references come back here. */
  put(pages: Page[]): void {
    for (const p of pages) {
      if (PageForeign(p)) assert(false, `page cache: gfn ${p.gfn} put back while it maps a foreign page: a bug (unmap first)`);
      if (page_count(p) !== 1) assert(false, `page cache: gfn ${p.gfn} put back with count ${page_count(p)}: a bug (still referenced)`);
    }
    for (let i = 0; i < pages.length; i++) this.pages.push(pages[i]!);
  }

  /** `gnttab_page_cache_shrink`: give pages beyond `keep` back to the balloon. */
  shrink(keep = this.keepMax): void {
    if (this.pages.length <= keep) return;
    this.kernel.gnttab_free_pages(this.pages.splice(keep));
  }
}
