/**
 * Request validation: the backend's "copy, then validate, then wrap" (STYLE rule 4, XSA-155).
 *
 * The input is the decoded, private copy of one request slot (the ring copied the slot out of
 * shared memory once; msgpack decoded the copy). Nothing here reads shared memory, and nothing
 * here throws for any input: every problem is a value that says whose fault it is and maps to
 * exactly one response status.
 *
 * Checks run in protocol order, as Linux blkback's `__do_block_io_op` / `dispatch_rw_block_io`:
 * a usable `id` (else no response is possible) → `operation` known and supported → field types →
 * `nr_segments` 1..11 (0 only for a pure flush) → each segment `first_sect <= last_sect <= 7` →
 * `sector_number + sectors` within the disk (checked without overflow) → no write to a read-only
 * disk → alignment to the disk's logical sector size. (Linux's `xen_vbd_translate` tests
 * read-only before the bounds; either order gives the same status, BLKIF_RSP_ERROR.)
 */
import { isU16, isU32, err, ok, type GrantRef, type Result } from '@pvsim/abi';
import {
  BLKIF_DISCARD_SECURE,
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP_DISCARD,
  BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_INDIRECT,
  BLKIF_OP_READ,
  BLKIF_OP_UNDECODABLE_ECHO,
  BLKIF_OP_WRITE,
  BLKIF_OP_WRITE_BARRIER,
  BLKIF_RSP_EOPNOTSUPP,
  BLKIF_RSP_ERROR,
  BLKIF_SECTOR_BYTES,
  BLKIF_SECTORS_PER_FRAME,
  type BlkifErrorStatus,
  type BlkifRwOp,
} from './constants.js';
import {
  blkifResponse,
  type BlkifDiscardRequest,
  type BlkifReqId,
  type BlkifRequest,
  type BlkifResponseWire,
  type BlkifRwRequest,
  type BlkifSector,
  type BlkifSegment,
  type BlkifVdev,
} from './schema.js';

/** What the backend knows about the disk behind the ring. Trusted configuration. */
export interface BlkifDisk {
  /** Disk size in 512-byte sectors (XenStore `sectors`). */
  readonly sectors: number;
  readonly readOnly: boolean;
  /** Logical sector size in bytes (`sector-size`): a power of two, at least 512. Default 512. */
  readonly sectorSize?: number;
  /** `feature-flush-cache` advertised. Default true. */
  readonly featureFlushCache?: boolean;
  /** `feature-barrier` advertised. Default true. */
  readonly featureBarrier?: boolean;
  /** `feature-discard` advertised. Default true. */
  readonly featureDiscard?: boolean;
  /** `discard-secure` advertised. Default false. */
  readonly discardSecure?: boolean;
}

/** Why a request was refused; each code has exactly one wire status (`BLKIF_REJECT_STATUS`). */
export type BlkifRejectCode =
  | 'unknown-operation'
  | 'unsupported-operation'
  | 'bad-field'
  | 'bad-nr-segments'
  | 'bad-segment'
  | 'beyond-disk'
  | 'read-only'
  | 'misaligned';

export const BLKIF_REJECT_STATUS: Readonly<Record<BlkifRejectCode, BlkifErrorStatus>> = Object.freeze({
  'unknown-operation': BLKIF_RSP_EOPNOTSUPP,
  'unsupported-operation': BLKIF_RSP_EOPNOTSUPP,
  'bad-field': BLKIF_RSP_ERROR,
  'bad-nr-segments': BLKIF_RSP_ERROR,
  'bad-segment': BLKIF_RSP_ERROR,
  'beyond-disk': BLKIF_RSP_ERROR,
  'read-only': BLKIF_RSP_ERROR,
  'misaligned': BLKIF_RSP_ERROR,
});

/**
 * An invalid request.
 * - `reject`: the request had a usable id; answer it with `status` (an operational error, the
 *   ring lives on). `operation` is the byte to echo.
 * - `violation`: not even an id could be read; no response is possible. A protocol violation by
 *   the frontend: the backend marks the ring broken (`ring.markBroken('frontend', reason)`).
 */
export type BlkifInvalid =
  | {
      readonly kind: 'reject';
      readonly code: BlkifRejectCode;
      readonly id: BlkifReqId;
      readonly operation: number;
      readonly status: BlkifErrorStatus;
      readonly reason: string;
    }
  | { readonly kind: 'violation'; readonly reason: string };

/** The response that answers a rejected request (exactly Xen's three fields). */
export function rejectResponse(inv: Extract<BlkifInvalid, { kind: 'reject' }>): BlkifResponseWire {
  return blkifResponse(inv.id, inv.operation, inv.status);
}

const RW_KEYS = ['operation', 'nr_segments', 'handle', 'id', 'sector_number', 'seg'] as const;
const DISCARD_KEYS = ['operation', 'flag', 'handle', 'id', 'sector_number', 'nr_sectors'] as const;
const SEG_KEYS = ['gref', 'first_sect', 'last_sect'] as const;

/** A plain record decoded from msgpack: no array, no class, no foreign prototype. */
function isRecord(v: unknown): v is object {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const p: unknown = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

const ABSENT: unique symbol = Symbol('absent');
/** Own data property only: never a prototype's value, never a getter call. */
function own(o: object, k: string): unknown {
  const d = Object.getOwnPropertyDescriptor(o, k);
  return d && 'value' in d ? d.value : ABSENT;
}

const show = (v: unknown): string => {
  if (v === ABSENT) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v.length > 20 ? `${v.slice(0, 20)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  if (typeof v === 'bigint') return `${v}n`;
  return Array.isArray(v) ? 'an array' : `a${typeof v === 'object' ? 'n object' : ` ${typeof v}`}`;
};

/** The first key that is not exactly one of `keys`, or a missing one; null when the set matches. */
function keyProblem(o: object, keys: readonly string[]): string | null {
  for (const k of Reflect.ownKeys(o)) {
    if (typeof k !== 'string' || !keys.includes(k)) return `an unexpected key ${typeof k === 'string' ? JSON.stringify(k) : String(k)}`;
  }
  for (const k of keys) if (own(o, k) === ABSENT) return `no "${k}" field`;
  return null;
}

const isSafeUint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isU8 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xff;

/** Read the request id out of any decoded slot, if it has a usable one. */
export function extractRequestId(copy: unknown): BlkifReqId | null {
  try {
    if (!isRecord(copy)) return null;
    const id = own(copy, 'id');
    return isSafeUint(id) ? (id as BlkifReqId) : null;
  } catch {
    return null;
  }
}

/**
 * Validate the private copy of one request against `disk`. Returns a frozen `BlkifRequest` or why
 * not. Never throws.
 */
export function validateRequest(copy: unknown, disk: BlkifDisk): Result<BlkifRequest, BlkifInvalid> {
  try {
    return validateUnsafe(copy, disk);
  } catch (e) {
    // Only reachable for exotic inputs (a Proxy); a decoded msgpack copy never gets here.
    return err({ kind: 'violation', reason: `frontend gave us a request that cannot be read (${e instanceof Error ? e.message : String(e)})` });
  }
}

function validateUnsafe(copy: unknown, disk: BlkifDisk): Result<BlkifRequest, BlkifInvalid> {
  if (!isRecord(copy)) return err({ kind: 'violation', reason: `frontend gave us ${show(copy)} instead of a request record; no id to answer` });
  const rawId = own(copy, 'id');
  if (!isSafeUint(rawId)) {
    return err({ kind: 'violation', reason: `frontend gave us a request whose id is ${show(rawId)}, not an integer 0..2^53-1; no id to answer` });
  }
  const id = rawId as BlkifReqId;
  const rawOp = own(copy, 'operation');
  const operation = isU8(rawOp) ? rawOp : BLKIF_OP_UNDECODABLE_ECHO;
  const reject = (code: BlkifRejectCode, reason: string): Result<BlkifRequest, BlkifInvalid> =>
    err({ kind: 'reject', code, id, operation, status: BLKIF_REJECT_STATUS[code], reason: `frontend gave us ${reason}` });

  // 1. operation known and supported (Linux: unknown → EOPNOTSUPP).
  switch (rawOp) {
    case BLKIF_OP_READ:
    case BLKIF_OP_WRITE:
      break;
    case BLKIF_OP_WRITE_BARRIER:
      if (disk.featureBarrier === false) return reject('unsupported-operation', 'BLKIF_OP_WRITE_BARRIER, but feature-barrier is not advertised');
      break;
    case BLKIF_OP_FLUSH_DISKCACHE:
      if (disk.featureFlushCache === false) return reject('unsupported-operation', 'BLKIF_OP_FLUSH_DISKCACHE, but feature-flush-cache is not advertised');
      break;
    case BLKIF_OP_DISCARD:
      if (disk.featureDiscard === false) return reject('unsupported-operation', 'BLKIF_OP_DISCARD, but feature-discard is not advertised');
      return validateDiscard(copy, id, disk, reject);
    case BLKIF_OP_INDIRECT:
      return reject('unsupported-operation', 'BLKIF_OP_INDIRECT, but feature-max-indirect-segments is not advertised');
    default:
      return reject('unknown-operation', `operation ${show(rawOp)}, which is not a blkif operation`);
  }
  const op = rawOp as BlkifRwOp;

  // 2. the shape and field types.
  const keys = keyProblem(copy, RW_KEYS);
  if (keys) return reject('bad-field', `a request with ${keys}`);
  const handle = own(copy, 'handle');
  if (!isU16(handle)) return reject('bad-field', `handle ${show(handle)}, not a u16`);
  const sector = own(copy, 'sector_number');
  if (!isSafeUint(sector)) return reject('bad-field', `sector_number ${show(sector)}, not an integer 0..2^53-1`);
  const nseg = own(copy, 'nr_segments');
  if (!isU8(nseg)) return reject('bad-field', `nr_segments ${show(nseg)}, not a u8`);

  // 3. nr_segments: 1..11, or 0 for a flush with no data (REQ_PREFLUSH in Linux).
  const pureFlushOk = op === BLKIF_OP_FLUSH_DISKCACHE || op === BLKIF_OP_WRITE_BARRIER;
  if (nseg > BLKIF_MAX_SEGMENTS_PER_REQUEST || (nseg === 0 && !pureFlushOk)) {
    return reject('bad-nr-segments', `nr_segments ${nseg}; allowed: 1..${BLKIF_MAX_SEGMENTS_PER_REQUEST}${pureFlushOk ? ' or 0' : ''}`);
  }
  const rawSeg = own(copy, 'seg');
  if (!Array.isArray(rawSeg) || Object.getPrototypeOf(rawSeg) !== Array.prototype) return reject('bad-field', `seg ${show(rawSeg)}, not an array`);
  if (rawSeg.length !== nseg) return reject('bad-field', `${rawSeg.length} seg entries for nr_segments ${nseg}`);

  // 4. each segment: a u32 gref, 0 <= first_sect <= last_sect <= 7.
  const seg: BlkifSegment[] = [];
  let total = 0;
  for (let i = 0; i < nseg; i++) {
    const s: unknown = own(rawSeg, String(i));
    if (!isRecord(s)) return reject('bad-segment', `segment ${i} as ${show(s)}, not a record`);
    const sk = keyProblem(s, SEG_KEYS);
    if (sk) return reject('bad-segment', `segment ${i} with ${sk}`);
    const gref = own(s, 'gref');
    if (!isU32(gref)) return reject('bad-segment', `segment ${i} with gref ${show(gref)}, not a u32 grant reference`);
    const first = own(s, 'first_sect');
    const last = own(s, 'last_sect');
    if (!isU8(first) || !isU8(last)) return reject('bad-segment', `segment ${i} with first_sect ${show(first)} / last_sect ${show(last)}, not u8s`);
    if (first > last) return reject('bad-segment', `segment ${i} with first_sect ${first} > last_sect ${last}`);
    if (last >= BLKIF_SECTORS_PER_FRAME) return reject('bad-segment', `segment ${i} with last_sect ${last}, beyond the 4 KiB frame (0..${BLKIF_SECTORS_PER_FRAME - 1})`);
    seg.push(Object.freeze({ gref: gref as GrantRef, first_sect: first, last_sect: last }));
    total += last - first + 1;
  }

  // 5. within the disk, with no wrap: sector_number + total <= sectors, computed as a subtraction.
  if (total > 0 && (total > disk.sectors || sector > disk.sectors - total)) {
    return reject('beyond-disk', `sectors ${sector}..${sector}+${total} beyond the disk's ${disk.sectors} sectors`);
  }
  // 6. nothing but reads on a read-only disk.
  if (op !== BLKIF_OP_READ && disk.readOnly) return reject('read-only', `operation ${op} on a read-only disk`);
  // 7. alignment to the logical sector size (Linux: "Misaligned I/O request from domain").
  const per = (disk.sectorSize ?? BLKIF_SECTOR_BYTES) / BLKIF_SECTOR_BYTES;
  if (per > 1) {
    if (sector % per !== 0) return reject('misaligned', `sector_number ${sector}, not a multiple of ${per} (sector-size ${disk.sectorSize})`);
    for (let i = 0; i < seg.length; i++) {
      const s = seg[i]!;
      if ((s.last_sect - s.first_sect + 1) % per !== 0) return reject('misaligned', `segment ${i} of ${s.last_sect - s.first_sect + 1} sectors, not a multiple of ${per}`);
    }
  }
  const req = {
    operation: op,
    nr_segments: nseg,
    handle: handle as BlkifVdev,
    id,
    sector_number: sector as BlkifSector,
    seg: Object.freeze(seg),
    nr_sectors: total,
  };
  return ok(Object.freeze(req) as BlkifRwRequest);
}

function validateDiscard(
  copy: object,
  id: BlkifReqId,
  disk: BlkifDisk,
  reject: (code: BlkifRejectCode, reason: string) => Result<BlkifRequest, BlkifInvalid>,
): Result<BlkifRequest, BlkifInvalid> {
  const keys = keyProblem(copy, DISCARD_KEYS);
  if (keys) return reject('bad-field', `a discard request with ${keys}`);
  const flag = own(copy, 'flag');
  if (!isU8(flag) || (flag & ~BLKIF_DISCARD_SECURE) !== 0) return reject('bad-field', `discard flag ${show(flag)}; only BLKIF_DISCARD_SECURE is defined`);
  if (flag & BLKIF_DISCARD_SECURE && !disk.discardSecure) return reject('unsupported-operation', 'a secure discard, but discard-secure is not advertised');
  const handle = own(copy, 'handle');
  if (!isU16(handle)) return reject('bad-field', `handle ${show(handle)}, not a u16`);
  const sector = own(copy, 'sector_number');
  if (!isSafeUint(sector)) return reject('bad-field', `sector_number ${show(sector)}, not an integer 0..2^53-1`);
  const n = own(copy, 'nr_sectors');
  if (!isSafeUint(n)) return reject('bad-field', `nr_sectors ${show(n)}, not an integer 0..2^53-1`);
  if (n > 0 && (n > disk.sectors || sector > disk.sectors - n)) {
    return reject('beyond-disk', `discard of sectors ${sector}..${sector}+${n} beyond the disk's ${disk.sectors} sectors`);
  }
  if (disk.readOnly) return reject('read-only', 'a discard on a read-only disk');
  const req = { operation: BLKIF_OP_DISCARD, flag, handle: handle as BlkifVdev, id, sector_number: sector as BlkifSector, nr_sectors: n };
  return ok(Object.freeze(req) as BlkifDiscardRequest);
}

/** A response the frontend has checked. */
export interface BlkifResponse {
  readonly id: BlkifReqId;
  readonly operation: number;
  readonly status: -2 | -1 | 0;
}

/**
 * The frontend's check of a decoded response copy: Xen's three fields, `status` one of
 * BLKIF_RSP_*. Whether `id` names an outstanding request is the driver's check.
 */
export function parseResponse(copy: unknown): Result<BlkifResponse, string> {
  try {
    if (!isRecord(copy)) return err(`backend gave us ${show(copy)} instead of a response record`);
    const k = keyProblem(copy, ['id', 'operation', 'status']);
    if (k) return err(`backend gave us a response with ${k}`);
    const id = own(copy, 'id');
    const operation = own(copy, 'operation');
    const status = own(copy, 'status');
    if (!isSafeUint(id)) return err(`backend gave us response id ${show(id)}`);
    if (!isU8(operation)) return err(`backend gave us response operation ${show(operation)}`);
    if (status !== 0 && status !== -1 && status !== -2) return err(`backend gave us response status ${show(status)}`);
    return ok(Object.freeze({ id: id as BlkifReqId, operation, status }));
  } catch (e) {
    return err(`backend gave us a response that cannot be read (${e instanceof Error ? e.message : String(e)})`);
  }
}
