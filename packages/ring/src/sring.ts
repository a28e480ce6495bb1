/**
 * The shared ring: `struct <name>_sring` of Xen's `io/ring.h` laid over 1 to 16 pages of shared
 * memory. The pages need not be contiguous (a backend maps `ring-ref0..N` one grant at a time),
 * so a slot that straddles a page boundary is read and written as two pieces.
 *
 * Memory model: the four shared indices are only read and written with `Atomics`, which are
 * sequentially consistent in JavaScript. That makes every `wmb()`/`rmb()`/`mb()` of ring.h hold
 * at the point where ring.h places it: slot bytes written before an `Atomics.store` of a producer
 * index are visible to a thread that `Atomics.load`s that index and then reads the slot.
 */
import {
  SRING_PVT_OFFSET,
  SRING_REQ_EVENT_OFFSET,
  SRING_REQ_PROD_OFFSET,
  SRING_RING_OFFSET,
  SRING_RSP_EVENT_OFFSET,
  SRING_RSP_PROD_OFFSET,
  XEN_PAGE_SIZE,
  assert,
  ringEntries,
} from '@pvsim/abi';

/** Word indices of the shared header in a Uint32Array over page 0. */
export const REQ_PROD = SRING_REQ_PROD_OFFSET / 4;
export const REQ_EVENT = SRING_REQ_EVENT_OFFSET / 4;
export const RSP_PROD = SRING_RSP_PROD_OFFSET / 4;
export const RSP_EVENT = SRING_RSP_EVENT_OFFSET / 4;

/**
 * Largest ring this module builds: 2^10 pages (4 MiB). Xen protocols cap their own rings lower
 * (blkif's `max-ring-page-order` is at most `RING_ORDER_MAX` = 4); pvsim-internal one-way
 * channels such as event-log writers use larger ones.
 */
export const SHARED_RING_ORDER_LIMIT = 10;

/** One slot as seen in shared memory: one piece, or two when it straddles pages. */
type SlotPieces = readonly [Uint8Array] | readonly [Uint8Array, Uint8Array];

export class SharedRing {
  /** `RING_SIZE`: entries, a power of two. */
  readonly size: number;
  readonly mask: number;
  readonly slotBytes: number;
  readonly order: number;
  /** Header words: `req_prod`, `req_event`, `rsp_prod`, `rsp_event`. Atomics only. */
  readonly header: Uint32Array;
  readonly pages: readonly Uint8Array[];
  /** Prepared views per slot (a fresh `subarray` per access costs 15–20%). */
  private readonly slots: SlotPieces[];

  /**
   * @param pages 2^order views of exactly 4096 bytes each, over SharedArrayBuffers (Xen
   *   protocols: order 0..4, `RING_ORDER_MAX`; enforced by each protocol's handshake).
   * @param slotBytes the protocol's fixed entry size (`sizeof(union X_sring_entry)`).
   */
  constructor(pages: readonly Uint8Array[], slotBytes: number) {
    const order = Math.log2(pages.length);
    assert(
      Number.isInteger(order) && order >= 0 && order <= SHARED_RING_ORDER_LIMIT,
      `ring needs a power-of-two number of pages up to ${1 << SHARED_RING_ORDER_LIMIT}, got ${pages.length}`,
    );
    for (const p of pages) {
      assert(p.byteLength === XEN_PAGE_SIZE, `ring page must be ${XEN_PAGE_SIZE} bytes, got ${p.byteLength}`);
      assert(p.byteOffset % 4 === 0, 'ring page must be 4-byte aligned');
    }
    assert(Number.isInteger(slotBytes) && slotBytes >= 1, `slot size must be a positive integer, got ${slotBytes}`);
    const size = ringEntries(order, slotBytes);
    assert(size >= 1, `a ${slotBytes}-byte slot does not fit a ring of ${pages.length} page(s)`);
    this.order = order;
    this.size = size;
    this.mask = size - 1;
    this.slotBytes = slotBytes;
    this.pages = pages;
    const p0 = pages[0]!;
    this.header = new Uint32Array(p0.buffer, p0.byteOffset, SRING_RING_OFFSET / 4);
    this.slots = [];
    for (let i = 0; i < size; i++) {
      const start = SRING_RING_OFFSET + i * slotBytes;
      const end = start + slotBytes;
      const pa = Math.floor(start / XEN_PAGE_SIZE);
      const pb = Math.floor((end - 1) / XEN_PAGE_SIZE);
      const a = pages[pa]!;
      if (pa === pb) {
        this.slots.push([a.subarray(start % XEN_PAGE_SIZE, start % XEN_PAGE_SIZE + slotBytes)]);
      } else {
        const first = XEN_PAGE_SIZE - (start % XEN_PAGE_SIZE);
        this.slots.push([a.subarray(start % XEN_PAGE_SIZE), pages[pb]!.subarray(0, slotBytes - first)]);
      }
    }
  }

  /** Allocate fresh pages in a new SharedArrayBuffer (tests, benchmarks, the launcher). */
  static allocate(order: number, slotBytes: number): SharedRing {
    return new SharedRing(allocateRingPages(order), slotBytes);
  }

  /**
   * `SHARED_RING_INIT`: done by the frontend only. `start` lets tests begin near 2^32;
   * Xen always uses 0.
   */
  init(start = 0): void {
    const h = this.header;
    Atomics.store(h, REQ_PROD, start >>> 0);
    Atomics.store(h, RSP_PROD, start >>> 0);
    Atomics.store(h, REQ_EVENT, (start + 1) >>> 0);
    Atomics.store(h, RSP_EVENT, (start + 1) >>> 0);
    this.pages[0]!.fill(0, SRING_PVT_OFFSET, SRING_RING_OFFSET);
  }

  /** Copy slot `idx` (free-running) out of shared memory into `dst`, once, whole. */
  copyOut(idx: number, dst: Uint8Array): void {
    const s = this.slots[idx & this.mask]!;
    dst.set(s[0]);
    if (s.length === 2) dst.set(s[1], s[0].length);
  }

  /** The slot's single shared view, or null when it straddles two pages. For producers only. */
  directSlot(idx: number): Uint8Array | null {
    const s = this.slots[idx & this.mask]!;
    return s.length === 1 ? s[0] : null;
  }

  /** Copy the first `n` bytes of `src` into slot `idx`. */
  copyIn(idx: number, src: Uint8Array, n: number): void {
    const s = this.slots[idx & this.mask]!;
    const a = s[0];
    if (s.length === 1 || n <= a.length) {
      if (n <= 64) for (let i = 0; i < n; i++) a[i] = src[i]!;
      else a.set(src.subarray(0, n));
    } else {
      a.set(src.subarray(0, a.length));
      s[1].set(src.subarray(a.length, n));
    }
  }

  /** Raw shared slot views, for tests that play a hostile peer rewriting a slot. */
  slotViews(idx: number): SlotPieces {
    return this.slots[idx & this.mask]!;
  }
}

/** `2^order` page views over one new SharedArrayBuffer. */
export function allocateRingPages(order: number): Uint8Array[] {
  const n = 1 << order;
  const sab = new SharedArrayBuffer(n * XEN_PAGE_SIZE);
  return Array.from({ length: n }, (_, i) => new Uint8Array(sab, i * XEN_PAGE_SIZE, XEN_PAGE_SIZE));
}
