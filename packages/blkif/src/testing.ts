/**
 * Test doubles: a scriptable frontend peer and backend peer over a real `SharedRing`.
 *
 * Each plays one end of the protocol honestly by default and lets a test misbehave on purpose:
 * push any object (garbage types, extra keys), raw bytes into a slot, or a forged producer index.
 * They use only the protocol module, never a driver, so either driver can be tested against them.
 */
import { assert, type Result } from '@pvsim/abi';
import { REQ_PROD, RSP_PROD, type ConsumeError, type ProduceRefused, type SharedRing } from '@pvsim/ring';
import { allocateBlkifSharedRing, blkifBackRing, blkifFrontRing, blkifLooseCodec, type BlkifBackRing, type BlkifFrontRing } from './codec.js';
import { BLKIF_RSP_OKAY } from './constants.js';
import { blkifResponse, type BlkifRequest, type BlkifRequestWire, type BlkifResponseWire } from './schema.js';
import { parseResponse, rejectResponse, validateRequest, type BlkifDisk, type BlkifInvalid, type BlkifResponse } from './validate.js';

const loose = blkifLooseCodec();

/** Plays blkfront: owns the ring (allocates and `init`s it) and produces requests. */
export class BlkifFrontendPeer {
  readonly sring: SharedRing;
  readonly ring: BlkifFrontRing;

  constructor(order = 0, sring?: SharedRing) {
    this.sring = sring ?? allocateBlkifSharedRing(order);
    if (!sring) this.sring.init();
    this.ring = blkifFrontRing(this.sring);
  }

  /** Queue a well-formed request (not visible until `push`). */
  request(req: BlkifRequestWire): Result<undefined, ProduceRefused> {
    return this.ring.pushRequest(req);
  }

  /** Queue any value at all, msgpack-encoded as is (hostile tests). Returns false if it does not fit. */
  requestAny(value: unknown): boolean {
    const bytes = new Uint8Array(this.sring.slotBytes);
    const n = loose.encode(value, bytes);
    if (n < 0) return false;
    return this.requestRaw(bytes.subarray(0, n));
  }

  /** Queue raw bytes as the next request slot (at most one slot's worth). */
  requestRaw(bytes: Uint8Array): boolean {
    assert(bytes.length <= this.sring.slotBytes, `raw slot of ${bytes.length} bytes exceeds ${this.sring.slotBytes}`);
    if (this.ring.freeRequests() === 0) return false;
    this.sring.copyIn(this.ring.reqProdPvt, bytes, bytes.length);
    this.ring.advanceRequests(1);
    return true;
  }

  /** `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`. */
  push(): boolean {
    return this.ring.pushRequestsAndCheckNotify();
  }

  /** Forge `req_prod` (e.g. far ahead of the ring, for overflow tests). */
  forgeReqProd(value: number): void {
    Atomics.store(this.sring.header, REQ_PROD, value >>> 0);
  }

  /** Take every available response, each checked with `parseResponse`. */
  responses(): Result<BlkifResponse, string | ConsumeError>[] {
    const out: Result<BlkifResponse, string | ConsumeError>[] = [];
    for (let n = this.ring.unconsumedResponses(); n > 0; n--) {
      const r = this.ring.takeResponse();
      out.push(r.ok ? parseResponse(r.value) : r);
    }
    return out;
  }
}

/** What the backend peer saw in one request slot. */
export type BackendSaw =
  | { readonly kind: 'valid'; readonly request: BlkifRequest }
  | { readonly kind: 'invalid'; readonly invalid: BlkifInvalid }
  | { readonly kind: 'bad-slot'; readonly error: ConsumeError };

/** Plays blkback: attaches to a ring the frontend set up and consumes requests. */
export class BlkifBackendPeer {
  readonly sring: SharedRing;
  readonly ring: BlkifBackRing;

  constructor(sring: SharedRing) {
    const r = blkifBackRing(sring);
    assert(r.ok, 'test backend attached to a ring whose req_prod is already impossible');
    this.sring = sring;
    this.ring = r.value;
  }

  /** Take every available request as its decoded private copy (unvalidated). */
  takeRaw(): Result<unknown, ConsumeError>[] {
    const out: Result<unknown, ConsumeError>[] = [];
    for (let n = this.ring.unconsumedRequests(); n > 0; n--) out.push(this.ring.takeRequest());
    return out;
  }

  /**
   * Blkback's loop in miniature: copy, validate, answer. Valid requests get `okStatus` (OKAY by
   * default) from `complete`; rejected ones their error status; a slot with no usable id or no
   * decodable bytes marks the ring broken (frontend's fault) and stops.
   */
  serve(disk: BlkifDisk, complete: (req: BlkifRequest) => BlkifResponseWire['status'] = () => BLKIF_RSP_OKAY): BackendSaw[] {
    const saw: BackendSaw[] = [];
    for (let n = this.ring.unconsumedRequests(); n > 0 && !this.ring.broken; n--) {
      const copy = this.ring.takeRequest();
      if (!copy.ok) {
        saw.push({ kind: 'bad-slot', error: copy.error });
        this.ring.markBroken('frontend', copy.error.kind === 'bad-slot' ? copy.error.reason : 'ring broken');
        break;
      }
      const v = validateRequest(copy.value, disk);
      if (v.ok) {
        saw.push({ kind: 'valid', request: v.value });
        const s = complete(v.value);
        this.respond(blkifResponse(v.value.id, v.value.operation, s === 0 || s === -1 || s === -2 ? s : -1));
      } else {
        saw.push({ kind: 'invalid', invalid: v.error });
        if (v.error.kind === 'violation') {
          this.ring.markBroken('frontend', v.error.reason);
          break;
        }
        this.respond(rejectResponse(v.error));
      }
    }
    this.push();
    return saw;
  }

  /** Queue a response (not visible until `push`). */
  respond(rsp: BlkifResponseWire): Result<undefined, ProduceRefused> {
    return this.ring.pushResponse(rsp);
  }

  /** Queue raw bytes as the next response slot (hostile backend tests). */
  respondRaw(bytes: Uint8Array): boolean {
    assert(bytes.length <= this.sring.slotBytes, `raw slot of ${bytes.length} bytes exceeds ${this.sring.slotBytes}`);
    if (this.ring.rspProdPvt === this.ring.reqCons) return false;
    this.sring.copyIn(this.ring.rspProdPvt, bytes, bytes.length);
    this.ring.pushEmptyResponses(1);
    return true;
  }

  /** `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`. */
  push(): boolean {
    return this.ring.pushResponsesAndCheckNotify();
  }

  /** Forge `rsp_prod` (hostile backend tests). */
  forgeRspProd(value: number): void {
    Atomics.store(this.sring.header, RSP_PROD, value >>> 0);
  }
}

/** A connected pair over one fresh ring. */
export function blkifPeerPair(order = 0): { front: BlkifFrontendPeer; back: BlkifBackendPeer } {
  const front = new BlkifFrontendPeer(order);
  return { front, back: new BlkifBackendPeer(front.sring) };
}
