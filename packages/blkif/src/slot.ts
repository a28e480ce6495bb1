/**
 * The blkif slot's fast paths: the one canonical encoding, written and read by hand.
 *
 * Both ends put msgpack in a slot (codec.ts): msgpackr with the frozen `BLKIF_STRUCTURES`, so a
 * request of integers is always the same few bytes — record 0x40 (the rw request) whose `seg` is
 * an array of records 0x41, a response is record 0x43. Going through msgpackr costs an object per
 * record on decode, and validating that object exactly (own data properties only, every key
 * checked) costs a property descriptor per field. Here:
 *
 *  - `encodeCanonicalRequest` / `encodeCanonicalResponse` write, for messages whose fields are all
 *    numbers, the very bytes msgpackr writes (its integer and float64 rules, see `numBytes`);
 *    anything else returns -1 and the caller encodes with msgpackr.
 *  - `BlkifRequestReader` (backend) and `BlkifResponseReader` (frontend) copy a slot out of shared
 *    memory once into private memory, advance the consumer index, then read the private copy. A
 *    copy that is the canonical encoding of an ACCEPTABLE request (every check of
 *    `validateRequest`, in its order, passes) becomes the validated, frozen request straight from
 *    the bytes. Anything else at all — another byte form, another shape, any check failing — goes
 *    the general way: msgpack decode, then `validateRequest` / `parseResponse`, which produce the
 *    exact error. So the fast path only ever accepts, and it accepts exactly what the general path
 *    accepts, with the same value (slot.test.ts checks this against msgpackr and the validators on
 *    canonical, mutated and random bytes).
 *
 * Stateless: a canonical slot always reads the same, and so does the general path. (msgpackr on
 * its own would keep a peer's inline record definition for the slots after it; ring's codec refuses
 * a slot that defines a record, or carries any other msgpack extension type, before msgpackr reads
 * it, so a peer cannot change how later slots read.)
 */
import { assert, err, ok, type Result } from '@pvsim/abi';
import type { BackRing, ConsumeError, FrontRing, SlotCodec } from '@pvsim/ring';
import { Cursor, canonicalRequest, canonicalResponse } from './canonical.js';
import { BLKIF_SLOT_BYTES, blkifLooseCodec } from './codec.js';
import type { BlkifRequest } from './schema.js';
import { parseResponse, validateRequest, type BlkifDisk, type BlkifInvalid, type BlkifResponse } from './validate.js';

/** Why a request slot gave no request: the ring's (copy, decode) or the validator's verdict. */
export type BlkifSlotError = ConsumeError | BlkifInvalid;

/** Why a response slot gave no response: the ring's (copy, decode) or `parseResponse`'s reason. */
export type BlkifResponseSlotError = ConsumeError | { readonly kind: 'invalid'; readonly reason: string };

function readRequest(c: Cursor, disk: BlkifDisk, codec: SlotCodec<unknown>, idx: number): Result<BlkifRequest, BlkifSlotError> {
  const fast = canonicalRequest(c, disk);
  if (fast) return ok(fast);
  const d = codec.decode(c.src);
  if (!d.ok) return err({ kind: 'bad-slot', idx, reason: d.error });
  return validateRequest(d.value, disk);
}

function readResponse(c: Cursor, codec: SlotCodec<unknown>, idx: number): Result<BlkifResponse, BlkifResponseSlotError> {
  const fast = canonicalResponse(c);
  if (fast) return ok(fast);
  const d = codec.decode(c.src);
  if (!d.ok) return err({ kind: 'bad-slot', idx, reason: d.error });
  const r = parseResponse(d.value);
  return r.ok ? r : err({ kind: 'invalid', reason: r.error });
}

/**
 * Read one private copy of a request slot (`BLKIF_SLOT_BYTES` long): the fast path, else
 * `codec.decode` then `validateRequest`. For tests and consumers that copy slots themselves;
 * `idx` names the slot in a bad-slot error.
 */
export function readRequestSlot(src: Uint8Array, disk: BlkifDisk, codec: SlotCodec<unknown>, idx = 0): Result<BlkifRequest, BlkifSlotError> {
  return readRequest(new Cursor(src), disk, codec, idx);
}

/** `readRequestSlot` for a response slot: the fast path, else `codec.decode` then `parseResponse`. */
export function readResponseSlot(src: Uint8Array, codec: SlotCodec<unknown>, idx = 0): Result<BlkifResponse, BlkifResponseSlotError> {
  return readResponse(new Cursor(src), codec, idx);
}

/**
 * The backend's request intake over one ring: `RING_COPY_REQUEST` (one copy of the whole slot
 * into private memory) and `req_cons++`, then the private copy is read and validated. One per
 * ring: it owns the private slot and a msgpack decoder of its own for the general path (a
 * frontend's slots never go through another ring's decoder).
 */
export class BlkifRequestReader {
  private readonly cursor = new Cursor(Buffer.alloc(BLKIF_SLOT_BYTES));
  private readonly codec = blkifLooseCodec();

  constructor(readonly ring: BackRing<unknown, unknown>) {}

  /** Take the next request. Call only when `ring.unconsumedRequests() > 0`. */
  take(disk: BlkifDisk): Result<BlkifRequest, BlkifSlotError> {
    const ring = this.ring;
    if (ring.broken) return err({ kind: 'broken', broken: ring.broken });
    const idx = ring.reqCons;
    ring.sring.copyOut(idx, this.cursor.src);
    ring.consumeRequests(1);
    return readRequest(this.cursor, disk, this.codec, idx);
  }
}

/** The frontend's response intake: one copy of the slot, `rsp_cons++`, then the private copy is read. */
export class BlkifResponseReader {
  private readonly cursor = new Cursor(Buffer.alloc(BLKIF_SLOT_BYTES));
  private readonly codec = blkifLooseCodec();

  constructor(readonly ring: FrontRing<unknown, unknown>) {}

  /** Take the next response. Call only when `ring.unconsumedResponses() > 0`. */
  take(): Result<BlkifResponse, BlkifResponseSlotError> {
    const ring = this.ring;
    if (ring.broken) return err({ kind: 'broken', broken: ring.broken });
    // As FrontRing.takeResponse: rsp_prod was checked by unconsumedResponses(); only private
    // state is looked at here, then rsp_cons++ and the one copy of the slot.
    const idx = ring.rspCons;
    if (((ring.reqProdPvt - idx) >>> 0) === 0) assert(false, 'BlkifResponseReader.take with no request outstanding: a bug in the caller');
    ring.rspCons = (idx + 1) >>> 0;
    ring.sring.copyOut(idx, this.cursor.src);
    return readResponse(this.cursor, this.codec, idx);
  }
}
