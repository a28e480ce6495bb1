/**
 * The kernel's events: transitions of a domain's own page and unmap state. Page references are
 * recorded on foreign pages only (a backend's grant mappings) — the references that decide when
 * an unmap may happen; references to the domain's own memory are chatter.
 */
import { declareEvent, type FieldType } from '@pvsim/eventlog';

declare module '@pvsim/eventlog' {
  interface EventPayloads {
    /** `get_page` on a foreign page: `count` is the count after the increment. */
    'page.get': { gfn: number; domid: number; gref: number; count: number };
    /** `put_page` on a foreign page: `count` is the count after the decrement. */
    'page.put': { gfn: number; domid: number; gref: number; count: number };
    /** `gnttab_unmap_refs_async` found pages in use and scheduled a retry after `delayMs`. */
    'grant.unmap.deferred': { age: number; delayMs: number; busyPages: number; count: number; firstGfn: number };
    /** `gnttab_unmap_refs_async` ran its unmap (or failed to) and called `done` with `result`. */
    'grant.unmap.done': { age: number; count: number; result: number; firstGfn: number };
    /** Pages left the balloon (`alloc_xenballooned_pages`); `decreased` of them were ballooned out for it. */
    'balloon.alloc': { count: number; decreased: number; firstGfn: number };
    /** Pages went back to the balloon (`free_xenballooned_pages`). */
    'balloon.free': { count: number; firstGfn: number };
  }
}

type F = readonly (readonly [string, FieldType])[];
const PAGE_REF: F = [['gfn', 'i32'], ['domid', 'u16'], ['gref', 'u32'], ['count', 'i32']];
const UNMAP_DEFERRED: F = [['age', 'u32'], ['delayMs', 'f64'], ['busyPages', 'u32'], ['count', 'u32'], ['firstGfn', 'i32']];
const UNMAP_DONE: F = [['age', 'u32'], ['count', 'u32'], ['result', 'i32'], ['firstGfn', 'i32']];

for (const [kind, doc, fields] of [
  ['page.get', 'get_page on a foreign (grant-mapped) page', PAGE_REF],
  ['page.put', 'put_page on a foreign (grant-mapped) page', PAGE_REF],
  ['grant.unmap.deferred', 'gnttab_unmap_refs_async: a page of the batch is in use, retry later', UNMAP_DEFERRED],
  ['grant.unmap.done', 'gnttab_unmap_refs_async: unmap ran, done() called', UNMAP_DONE],
  ['balloon.alloc', 'pages taken from the balloon for grant mappings', undefined],
  ['balloon.free', 'pages given back to the balloon', undefined],
] as const) {
  declareEvent({ kind, version: 1, doc, ...(fields ? { fields } : {}) });
}
