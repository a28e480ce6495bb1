/**
 * The blkif ring slot: msgpack with frozen shared record structures, one message per slot.
 *
 * Slot size. Xen's `sizeof(blkif_request)` is 112 bytes, giving 32 entries on one page. A typical
 * 11-segment request encodes in well under 112 bytes, but the largest legal one (handle 0xffff,
 * id and sector_number near 2^53, eleven grefs near 2^32) needs `BLKIF_SLOT_BYTES` = 115 bytes:
 * a legal request must never be refused for its size, so the slot is 115 bytes. The ring still
 * has 32 entries per page (4032 / 115 = 35, rounded down to a power of two), and 64/128/256/512
 * for 2/4/8/16 pages, exactly Xen's blkif ring sizes.
 */
import { FrontRing, BackRing, SharedRing, msgpackSlotCodec, type RingBroken, type SlotCodec } from '@pvsim/ring';
import { type Result } from '@pvsim/abi';
import { encodeCanonicalRequest, encodeCanonicalResponse } from './canonical.js';
import { BLKIF_OP_DISCARD } from './constants.js';
import type { BlkifRequestWire, BlkifResponseWire } from './schema.js';

/** Xen's `sizeof(struct blkif_request)` on x86_64. */
export const BLKIF_C_REQUEST_BYTES = 112;
/** Bytes per pvsim blkif slot: the largest legal request, msgpack-encoded, plus the length prefix. */
export const BLKIF_SLOT_BYTES = 115;

/**
 * Record shapes shared by both ends, frozen. Key order is part of the shape: the encoders below
 * always write fields in this order so every legal message uses a shared structure.
 */
export const BLKIF_STRUCTURES: readonly (readonly string[])[] = Object.freeze([
  Object.freeze(['operation', 'nr_segments', 'handle', 'id', 'sector_number', 'seg']),
  Object.freeze(['gref', 'first_sect', 'last_sect']),
  Object.freeze(['operation', 'flag', 'handle', 'id', 'sector_number', 'nr_sectors']),
  Object.freeze(['id', 'operation', 'status']),
]);

/** Project a request onto exactly its Xen fields, in structure order. */
function projectRequest(m: BlkifRequestWire): BlkifRequestWire {
  if (m.operation === BLKIF_OP_DISCARD && 'nr_sectors' in m) {
    return { operation: m.operation, flag: m.flag, handle: m.handle, id: m.id, sector_number: m.sector_number, nr_sectors: m.nr_sectors };
  }
  const r = m as Extract<BlkifRequestWire, { seg: unknown }>;
  return {
    operation: r.operation,
    nr_segments: r.nr_segments,
    handle: r.handle,
    id: r.id,
    sector_number: r.sector_number,
    seg: r.seg.map((s) => ({ gref: s.gref, first_sect: s.first_sect, last_sect: s.last_sect })),
  };
}

/**
 * Wrap a msgpack codec: project each message onto its Xen fields and zero the rest of the slot,
 * so a slot never carries anything but this message (XSA-216).
 */
function exact<T>(inner: SlotCodec<T>, project: (m: T) => T): SlotCodec<T> {
  return {
    slotBytes: inner.slotBytes,
    encode(msg, dst) {
      const n = inner.encode(project(msg), dst);
      if (n > 0) dst.fill(0, n, inner.slotBytes);
      return n;
    },
    decode: (src) => inner.decode(src),
  };
}

/**
 * Codec for anything at all in a request slot, with no projection: for test peers that play a
 * hostile frontend (garbage types, extra keys). Decoding is the same as `blkifRequestCodec`'s.
 */
export function blkifLooseCodec(): SlotCodec<unknown> {
  return msgpackSlotCodec<unknown>({ slotBytes: BLKIF_SLOT_BYTES, structures: BLKIF_STRUCTURES });
}

/**
 * Request slots. Decoded values are the peer's, `unknown` until `validateRequest`. A request of
 * numbers is written by hand (canonical.ts: msgpackr's very bytes, without its per-message
 * objects); anything else is projected and packed by msgpackr.
 */
export function blkifRequestCodec(): SlotCodec<BlkifRequestWire> {
  const general = exact(msgpackSlotCodec<BlkifRequestWire>({ slotBytes: BLKIF_SLOT_BYTES, structures: BLKIF_STRUCTURES }), projectRequest);
  return {
    slotBytes: BLKIF_SLOT_BYTES,
    encode(msg, dst) {
      const n = encodeCanonicalRequest(msg, dst, BLKIF_SLOT_BYTES);
      return n >= 0 ? n : general.encode(msg, dst);
    },
    decode: general.decode,
  };
}

/** Response slots (by hand for numbers, as requests). */
export function blkifResponseCodec(): SlotCodec<BlkifResponseWire> {
  const general = exact(msgpackSlotCodec<BlkifResponseWire>({ slotBytes: BLKIF_SLOT_BYTES, structures: BLKIF_STRUCTURES }), (m) => ({
    id: m.id,
    operation: m.operation,
    status: m.status,
  }));
  return {
    slotBytes: BLKIF_SLOT_BYTES,
    encode(msg, dst) {
      const n = encodeCanonicalResponse(msg.id, msg.operation, msg.status, dst, BLKIF_SLOT_BYTES);
      return n >= 0 ? n : general.encode(msg, dst);
    },
    decode: general.decode,
  };
}

/**
 * What a backend's ring decodes: the peer's bytes as an untyped value. The request type is
 * `unknown` on purpose, so nothing but `validateRequest` can look inside.
 */
export type BlkifBackRing = BackRing<unknown, BlkifResponseWire>;
/** A frontend's ring. Responses come from the backend: check them with `parseResponse`. */
export type BlkifFrontRing = FrontRing<BlkifRequestWire, unknown>;

/** A fresh blkif shared ring of `2^order` pages (tests, the launcher); the frontend `init`s it. */
export function allocateBlkifSharedRing(order = 0): SharedRing {
  return SharedRing.allocate(order, BLKIF_SLOT_BYTES);
}

/** The frontend end of a blkif ring (`FRONT_RING_INIT`/`ATTACH` at `start`). */
export function blkifFrontRing(sring: SharedRing, start = 0): BlkifFrontRing {
  return new FrontRing<BlkifRequestWire, unknown>(sring, blkifRequestCodec(), blkifLooseCodec(), start);
}

/** The backend end, attached at the ring's current `rsp_prod` (refused if `req_prod` is impossible). */
export function blkifBackRing(sring: SharedRing): Result<BlkifBackRing, RingBroken> {
  return BackRing.attach<unknown, BlkifResponseWire>(sring, blkifLooseCodec(), blkifResponseCodec());
}
