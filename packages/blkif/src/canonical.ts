/**
 * The blkif slot's canonical encoding, by hand (see slot.ts for why and for the proof obligation):
 * writers that produce exactly msgpackr's bytes for messages of numbers, and readers that
 * recognise those bytes and apply the validators' checks. Nothing here decides a rejection: a
 * reader returns null for anything it does not accept, and the caller takes the general path.
 *
 * No import of codec.ts (which uses the writers): writers take the slot size as an argument.
 */
import type { GrantRef } from '@pvsim/abi';
import { MSGPACK_SLOT_HEADER_BYTES } from '@pvsim/ring';
import {
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP_DISCARD,
  BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_OP_WRITE_BARRIER,
  BLKIF_SECTOR_BYTES,
  BLKIF_SECTORS_PER_FRAME,
} from './constants.js';
import type { BlkifRequestWire, BlkifRwRequest, BlkifSegment, BlkifSegmentWire } from './schema.js';
import type { BlkifDisk, BlkifResponse } from './validate.js';

/** msgpackr's record ids of `BLKIF_STRUCTURES` (0x40 + index). */
const REC_RW = 0x40;
const REC_SEG = 0x41;
const REC_RSP = 0x43;

// ─────────────────────────── writing ───────────────────────────

/**
 * Bytes msgpackr (records on, no float32) writes for the number `v`: a non-negative u32 as a
 * fixint below 0x40 (0x40..0x7f are record ids), else 0xcc/0xcd/0xce; a negative i32 as a
 * negative fixint or 0xd0/0xd1/0xd2; anything else (fractions, NaN, beyond 32 bits) as float64.
 */
function numBytes(v: number): number {
  if (v >>> 0 === v) return v < 0x40 ? 1 : v < 0x100 ? 2 : v < 0x10000 ? 3 : 5;
  if (v >> 0 === v) return v >= -0x20 ? 1 : v >= -0x80 ? 2 : v >= -0x8000 ? 3 : 5;
  return 9;
}

/** Write `v` as msgpackr does at `p`; returns the next position. */
function putNum(dst: Uint8Array, p: number, v: number): number {
  if (v >>> 0 === v) {
    if (v < 0x40) {
      dst[p] = v;
      return p + 1;
    }
    if (v < 0x100) {
      dst[p] = 0xcc;
      dst[p + 1] = v;
      return p + 2;
    }
    if (v < 0x10000) {
      dst[p] = 0xcd;
      dst[p + 1] = v >>> 8;
      dst[p + 2] = v & 0xff;
      return p + 3;
    }
    dst[p] = 0xce;
    dst[p + 1] = v >>> 24;
    dst[p + 2] = (v >>> 16) & 0xff;
    dst[p + 3] = (v >>> 8) & 0xff;
    dst[p + 4] = v & 0xff;
    return p + 5;
  }
  if (v >> 0 === v) {
    if (v >= -0x20) {
      dst[p] = 0x100 + v;
      return p + 1;
    }
    if (v >= -0x80) {
      dst[p] = 0xd0;
      dst[p + 1] = v + 0x100;
      return p + 2;
    }
    if (v >= -0x8000) {
      dst[p] = 0xd1;
      dst[p + 1] = (v >> 8) & 0xff;
      dst[p + 2] = v & 0xff;
      return p + 3;
    }
    dst[p] = 0xd2;
    dst[p + 1] = (v >>> 24) & 0xff;
    dst[p + 2] = (v >>> 16) & 0xff;
    dst[p + 3] = (v >>> 8) & 0xff;
    dst[p + 4] = v & 0xff;
    return p + 5;
  }
  F64[0] = v;
  dst[p] = 0xcb;
  // Big-endian, as msgpack wants; F64_BYTES is little-endian on every platform Node runs on.
  for (let i = 0; i < 8; i++) dst[p + 1 + i] = F64_BYTES[7 - i]!;
  return p + 9;
}
const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);

/**
 * Encode an rw request (not a discard) whose fields are all numbers into `dst` (a slot of
 * `slotBytes`), exactly as msgpackr would, and zero the rest of the slot (XSA-216). Returns the bytes written with the
 * length prefix, or -1 when the message is not of that kind (the caller uses msgpackr; a message
 * too large for the slot is its case too, so that it reports the size).
 */
export function encodeCanonicalRequest(m: BlkifRequestWire, dst: Uint8Array, slotBytes: number): number {
  const op = m.operation;
  if (op === BLKIF_OP_DISCARD || typeof op !== 'number') return -1;
  const r = m as Extract<BlkifRequestWire, { seg: unknown }>;
  const nseg = r.nr_segments;
  const handle = r.handle;
  const id = r.id;
  const sector = r.sector_number;
  const seg = r.seg;
  if (typeof nseg !== 'number' || typeof handle !== 'number' || typeof id !== 'number' || typeof sector !== 'number') return -1;
  if (!Array.isArray(seg) || seg.length >= 0x10) return -1;
  let n = 1 + numBytes(op) + numBytes(nseg) + numBytes(handle) + numBytes(id) + numBytes(sector) + 1;
  for (let i = 0; i < seg.length; i++) {
    const s: BlkifSegmentWire | undefined = seg[i];
    if (typeof s !== 'object' || s === null) return -1;
    const g = s.gref;
    const f = s.first_sect;
    const l = s.last_sect;
    if (typeof g !== 'number' || typeof f !== 'number' || typeof l !== 'number') return -1;
    n += 1 + numBytes(g) + numBytes(f) + numBytes(l);
  }
  if (n > slotBytes - MSGPACK_SLOT_HEADER_BYTES || dst.length < slotBytes) return -1;
  dst[0] = n & 0xff;
  dst[1] = n >>> 8;
  dst[2] = REC_RW;
  let p = putNum(dst, 3, op);
  p = putNum(dst, p, nseg);
  p = putNum(dst, p, handle);
  p = putNum(dst, p, id);
  p = putNum(dst, p, sector);
  dst[p++] = 0x90 | seg.length;
  for (let i = 0; i < seg.length; i++) {
    const s = seg[i]!;
    dst[p++] = REC_SEG;
    p = putNum(dst, p, s.gref);
    p = putNum(dst, p, s.first_sect);
    p = putNum(dst, p, s.last_sect);
  }
  dst.fill(0, p, slotBytes);
  return p;
}

/** `encodeCanonicalRequest` for a response (Xen's three fields, numbers). */
export function encodeCanonicalResponse(id: number, operation: number, status: number, dst: Uint8Array, slotBytes: number): number {
  if (typeof id !== 'number' || typeof operation !== 'number' || typeof status !== 'number') return -1;
  const n = 1 + numBytes(id) + numBytes(operation) + numBytes(status);
  if (n > slotBytes - MSGPACK_SLOT_HEADER_BYTES || dst.length < slotBytes) return -1;
  dst[0] = n;
  dst[1] = 0;
  dst[2] = REC_RSP;
  let p = putNum(dst, 3, id);
  p = putNum(dst, p, operation);
  p = putNum(dst, p, status);
  dst.fill(0, p, slotBytes);
  return p;
}

// ─────────────────────────── reading ───────────────────────────

/**
 * A cursor over one private slot copy. `num()` reads one number in a form msgpackr decodes to
 * exactly that number (positive fixint 0x00..0x3f, 0xcc/0xcd/0xce, negative fixint, 0xd0/0xd1/
 * 0xd2, float64 0xcb), or gives NaN for any other byte (a record id, a string, …): the caller then
 * falls back. A NaN from a float64 falls back too, which is equally fine.
 */
export class Cursor {
  p = 0;
  end = 0;
  private readonly dv: DataView;

  constructor(readonly src: Uint8Array) {
    this.dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  }

  /** Position after the length prefix; false when the prefix is not 1..payload max. */
  start(): boolean {
    const n = this.src[0]! | (this.src[1]! << 8);
    this.p = MSGPACK_SLOT_HEADER_BYTES;
    this.end = MSGPACK_SLOT_HEADER_BYTES + n;
    return n >= 1 && n <= this.src.length - MSGPACK_SLOT_HEADER_BYTES;
  }

  byte(): number {
    return this.p < this.end ? this.src[this.p++]! : -1;
  }

  num(): number {
    const s = this.src;
    const p = this.p;
    if (p >= this.end) return NaN;
    const t = s[p]!;
    let need: number;
    let v: number;
    if (t < 0x40) {
      this.p = p + 1;
      return t;
    }
    if (t >= 0xe0) {
      this.p = p + 1;
      return t - 0x100;
    }
    switch (t) {
      case 0xcc:
        need = 2;
        v = s[p + 1]!;
        break;
      case 0xcd:
        need = 3;
        v = (s[p + 1]! << 8) | s[p + 2]!;
        break;
      case 0xce:
        need = 5;
        v = ((s[p + 1]! << 24) | (s[p + 2]! << 16) | (s[p + 3]! << 8) | s[p + 4]!) >>> 0;
        break;
      case 0xd0:
        need = 2;
        v = (s[p + 1]! << 24) >> 24;
        break;
      case 0xd1:
        need = 3;
        v = (((s[p + 1]! << 8) | s[p + 2]!) << 16) >> 16;
        break;
      case 0xd2:
        need = 5;
        v = (s[p + 1]! << 24) | (s[p + 2]! << 16) | (s[p + 3]! << 8) | s[p + 4]!;
        break;
      case 0xcb:
        need = 9;
        v = p + 9 <= this.end ? this.dv.getFloat64(p + 1) : NaN;
        break;
      default:
        return NaN;
    }
    if (p + need > this.end) return NaN;
    this.p = p + need;
    return v;
  }
}

const isSafeUint = (v: number): boolean => Number.isSafeInteger(v) && v >= 0;
const isU8 = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 0xff;

/**
 * The canonical rw request in `c`, if it passes every check of `validateRequest` against `disk`:
 * the validated request, built as `validateRequest` builds it. null for anything else.
 */
export function canonicalRequest(c: Cursor, disk: BlkifDisk): BlkifRwRequest | null {
  if (!c.start() || c.byte() !== REC_RW) return null;
  const op = c.num();
  const nseg = c.num();
  const handle = c.num();
  const id = c.num();
  const sector = c.num();
  // The same checks as validateUnsafe, in its order; each failure leaves the verdict (and its
  // words) to it.
  if (!isSafeUint(id)) return null;
  switch (op) {
    case BLKIF_OP_READ:
    case BLKIF_OP_WRITE:
      break;
    case BLKIF_OP_WRITE_BARRIER:
      if (disk.featureBarrier === false) return null;
      break;
    case BLKIF_OP_FLUSH_DISKCACHE:
      if (disk.featureFlushCache === false) return null;
      break;
    default:
      return null;
  }
  if (!(Number.isInteger(handle) && handle >= 0 && handle <= 0xffff)) return null;
  if (!isSafeUint(sector) || !isU8(nseg)) return null;
  const pureFlushOk = op === BLKIF_OP_FLUSH_DISKCACHE || op === BLKIF_OP_WRITE_BARRIER;
  if (nseg > BLKIF_MAX_SEGMENTS_PER_REQUEST || (nseg === 0 && !pureFlushOk)) return null;
  const a = c.byte();
  if (a !== (0x90 | nseg)) return null;
  const seg: BlkifSegment[] = new Array<BlkifSegment>(nseg);
  let total = 0;
  for (let i = 0; i < nseg; i++) {
    if (c.byte() !== REC_SEG) return null;
    const gref = c.num();
    const first = c.num();
    const last = c.num();
    if (!(Number.isInteger(gref) && gref >= 0 && gref <= 0xffff_ffff)) return null;
    if (!isU8(first) || !isU8(last) || first > last || last >= BLKIF_SECTORS_PER_FRAME) return null;
    seg[i] = Object.freeze({ gref: gref as GrantRef, first_sect: first, last_sect: last });
    total += last - first + 1;
  }
  // Exactly one message, nothing after it (msgpackr refuses trailing bytes).
  if (c.p !== c.end) return null;
  if (total > 0 && (total > disk.sectors || sector > disk.sectors - total)) return null;
  if (op !== BLKIF_OP_READ && disk.readOnly) return null;
  const per = (disk.sectorSize ?? BLKIF_SECTOR_BYTES) / BLKIF_SECTOR_BYTES;
  if (per > 1) {
    if (sector % per !== 0) return null;
    for (let i = 0; i < nseg; i++) {
      const s = seg[i]!;
      if ((s.last_sect - s.first_sect + 1) % per !== 0) return null;
    }
  }
  const req = { operation: op, nr_segments: nseg, handle, id, sector_number: sector, seg: Object.freeze(seg), nr_sectors: total };
  return Object.freeze(req) as unknown as BlkifRwRequest;
}

/** The canonical response in `c` if `parseResponse` accepts it, as it builds it; else null. */
export function canonicalResponse(c: Cursor): BlkifResponse | null {
  if (!c.start() || c.byte() !== REC_RSP) return null;
  const id = c.num();
  const operation = c.num();
  const status = c.num();
  if (c.p !== c.end || !isSafeUint(id) || !isU8(operation) || (status !== 0 && status !== -1 && status !== -2)) return null;
  return Object.freeze({ id, operation, status }) as BlkifResponse;
}

