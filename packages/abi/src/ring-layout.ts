/**
 * Byte layout of a shared ring page, per Xen's public `io/ring.h` (`struct <name>_sring`).
 * Checked against the C header by test/interop/ring-h.
 */
/** `XEN_PAGE_SHIFT` is 12 on every architecture. */
export const XEN_PAGE_SHIFT = 12;
export const XEN_PAGE_SIZE = 1 << XEN_PAGE_SHIFT;

export const SRING_REQ_PROD_OFFSET = 0;
export const SRING_REQ_EVENT_OFFSET = 4;
export const SRING_RSP_PROD_OFFSET = 8;
export const SRING_RSP_EVENT_OFFSET = 12;
/** `pvt` union (4 bytes) then `__pad[44]`; zeroed by `SHARED_RING_INIT`. */
export const SRING_PVT_OFFSET = 16;
/** `offsetof(struct X_sring, ring)`. */
export const SRING_RING_OFFSET = 64;

/** Ring orders accepted for multi-page rings (`max-ring-page-order`): 1 to 16 pages. */
export const RING_ORDER_MAX = 4;

/** `__RD32`: round down to a power of two (0 stays 0). */
export function roundDownPow2(n: number): number {
  if (n < 1) return 0;
  return 2 ** Math.floor(Math.log2(n));
}

/**
 * `__CONST_RING_SIZE`: entries in a ring of `2^order` pages whose union entry is `entryBytes`
 * long: `__RD32((pages * PAGE_SIZE - offsetof(ring)) / sizeof(entry))`.
 */
export function ringEntries(order: number, entryBytes: number): number {
  const bytes = (XEN_PAGE_SIZE << order) - SRING_RING_OFFSET;
  return roundDownPow2(Math.floor(bytes / entryBytes));
}
