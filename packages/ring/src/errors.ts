/**
 * What can go wrong on a ring, and whose fault it is.
 *
 * - `RingBroken`: the peer violated the ring protocol (an impossible producer index). The ring
 *   stops consuming for good; the device disconnects; our daemon lives on.
 * - `SlotRejected`: one slot did not decode. The slot is consumed; the caller decides whether the
 *   protocol can answer it (usually not: no request id) and typically marks the ring broken.
 * - `ProduceRefused`: our own producer asked for something impossible (ring full, message larger
 *   than a slot). This is the producer's error, reported to the producer, nothing is written.
 */
export type RingBroken =
  | {
      readonly kind: 'req-prod-overflow';
      /** Whose fault: the frontend published a `req_prod` more than the ring size ahead. */
      readonly culprit: 'frontend';
      readonly reqProd: number;
      readonly rspProdPvt: number;
      readonly size: number;
    }
  | {
      readonly kind: 'req-prod-regressed';
      /** Whose fault: the frontend moved `req_prod` back behind requests already consumed. */
      readonly culprit: 'frontend';
      readonly reqProd: number;
      readonly reqCons: number;
    }
  | {
      readonly kind: 'rsp-prod-overflow';
      /** Whose fault: the backend published responses for requests that were never made. */
      readonly culprit: 'backend';
      readonly rspProd: number;
      readonly rspCons: number;
      readonly reqProdPvt: number;
    }
  | { readonly kind: 'marked'; readonly culprit: 'frontend' | 'backend'; readonly reason: string };

export type SlotRejected = {
  readonly kind: 'bad-slot';
  /** The free-running index of the consumed slot. */
  readonly idx: number;
  readonly reason: string;
};

export type ProduceRefused =
  | { readonly kind: 'ring-full'; readonly size: number }
  /** A backend pushed a response while every consumed request was already answered. */
  | { readonly kind: 'nothing-to-answer'; readonly reqCons: number }
  | { readonly kind: 'too-large'; readonly bytesNeeded: number; readonly slotPayloadMax: number }
  | { readonly kind: 'broken'; readonly broken: RingBroken };

export type ConsumeError = SlotRejected | { readonly kind: 'broken'; readonly broken: RingBroken };

export function describeBroken(b: RingBroken): string {
  switch (b.kind) {
    case 'req-prod-overflow':
      return `frontend provided bogus ring requests (req_prod ${b.reqProd} - rsp_prod_pvt ${b.rspProdPvt} > ring size ${b.size}); halting ring processing`;
    case 'req-prod-regressed':
      return `frontend moved req_prod back to ${b.reqProd}, behind req_cons ${b.reqCons}; halting ring processing`;
    case 'rsp-prod-overflow':
      return `backend provided bogus ring responses (rsp_prod ${b.rspProd}, rsp_cons ${b.rspCons}, only ${(b.reqProdPvt - b.rspCons) >>> 0} requests outstanding); halting ring processing`;
    case 'marked':
      return `${b.culprit} broke the ring protocol: ${b.reason}`;
  }
}
