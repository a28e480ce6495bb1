/**
 * The blkif message schema: what goes in a ring slot (wire shapes, as either end writes them) and
 * what a backend hands device code after validation (branded, frozen `BlkifRequest`).
 *
 * Field names are Xen's (`struct blkif_request`, `blkif_request_discard`, `blkif_response`).
 * Differences from the C layout: `seg` carries exactly `nr_segments` entries (C always has 11),
 * and the u64 `id`/`sector_number` are limited to JavaScript safe integers (0..2^53-1).
 */
import type { Brand, GrantRef } from '@pvsim/abi';
import type { BlkifRwOp, BlkifStatus } from './constants.js';
import { BLKIF_OP_DISCARD } from './constants.js';

/** `struct blkif_request_segment`: a 4 KiB granted frame and the inclusive 512-byte sectors used. */
export interface BlkifSegmentWire {
  gref: number;
  first_sect: number;
  last_sect: number;
}

/** `struct blkif_request` (READ, WRITE, WRITE_BARRIER, FLUSH_DISKCACHE). */
export interface BlkifRequestRwWire {
  operation: number;
  nr_segments: number;
  handle: number;
  id: number;
  sector_number: number;
  seg: BlkifSegmentWire[];
}

/** `struct blkif_request_discard`. */
export interface BlkifRequestDiscardWire {
  operation: typeof BLKIF_OP_DISCARD;
  flag: number;
  handle: number;
  id: number;
  sector_number: number;
  nr_sectors: number;
}

export type BlkifRequestWire = BlkifRequestRwWire | BlkifRequestDiscardWire;

/** `struct blkif_response`. */
export interface BlkifResponseWire {
  id: number;
  operation: number;
  status: number;
}

/** The request `id`: opaque to the backend, echoed in the response (u64; here a safe integer). */
export type BlkifReqId = Brand<number, 'BlkifReqId'>;
/** `blkif_vdev_t` (u16): the request's `handle`. */
export type BlkifVdev = Brand<number, 'BlkifVdev'>;
/** `blkif_sector_t`: a 512-byte sector number on the virtual disk. */
export type BlkifSector = Brand<number, 'BlkifSector'>;

declare const validated: unique symbol;
/** Only `validateRequest` makes one of these. */
type Validated = { readonly [validated]: true };

export interface BlkifSegment {
  readonly gref: GrantRef;
  /** 0..7. */
  readonly first_sect: number;
  /** first_sect..7. */
  readonly last_sect: number;
}

export type BlkifRwRequest = Validated & {
  readonly operation: BlkifRwOp;
  /** 1..11; 0 only for FLUSH_DISKCACHE and WRITE_BARRIER (a pure flush). */
  readonly nr_segments: number;
  readonly handle: BlkifVdev;
  readonly id: BlkifReqId;
  readonly sector_number: BlkifSector;
  readonly seg: readonly BlkifSegment[];
  /** Sum of `last_sect - first_sect + 1`: the 512-byte sectors moved. */
  readonly nr_sectors: number;
};

export type BlkifDiscardRequest = Validated & {
  readonly operation: typeof BLKIF_OP_DISCARD;
  readonly flag: number;
  readonly handle: BlkifVdev;
  readonly id: BlkifReqId;
  readonly sector_number: BlkifSector;
  readonly nr_sectors: number;
};

/** A request that passed every check: the only request type device code accepts. */
export type BlkifRequest = BlkifRwRequest | BlkifDiscardRequest;

/**
 * Build a response with exactly Xen's three fields and nothing else (XSA-216: no stray bytes of
 * the backend's own state ever reach the shared slot).
 */
export function blkifResponse(id: number, operation: number, status: BlkifStatus): BlkifResponseWire {
  return { id, operation, status };
}
