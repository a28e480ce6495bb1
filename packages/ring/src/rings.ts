/**
 * Front and back ends of a shared ring (`struct X_front_ring` / `struct X_back_ring`).
 *
 * They are different types on purpose: the frontend produces requests and consumes responses,
 * the backend the reverse, and neither can call the other's operations. Private indices are
 * free-running u32 (`>>> 0`) exactly as `RING_IDX` in ring.h; the differential test under
 * test/interop compares every decision with Xen's C macros.
 *
 * Trust: the peer's shared indices are untrusted. A producer index that is impossible marks the
 * ring broken (typed, with the culprit) and nothing more is consumed. Every slot is copied out of
 * shared memory once, then decoded from the private copy. No peer-controlled byte makes any
 * method here throw; programmer errors (taking from an empty ring) are assertions.
 */
import { assert, err, ok, type Ok, type Result } from '@pvsim/abi';
import type { SlotCodec } from './codec.js';
import type { ConsumeError, ProduceRefused, RingBroken } from './errors.js';
import { REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD, type SharedRing } from './sring.js';

const OK_VOID: Ok<undefined> = ok(undefined);

/** `(RING_IDX)(new - event) < (RING_IDX)(new - old)`: did the producer pass the peer's event index? */
export const needsNotify = (newProd: number, oldProd: number, event: number): boolean =>
  ((newProd - event) >>> 0) < ((newProd - oldProd) >>> 0);

abstract class RingEnd {
  readonly sring: SharedRing;
  readonly size: number;
  protected readonly header: Uint32Array;
  protected readonly scratch: Buffer;
  protected brokenBy: RingBroken | null = null;

  constructor(sring: SharedRing) {
    this.sring = sring;
    this.size = sring.size;
    this.header = sring.header;
    // Private, not shared: msgpackr's fast path and XSA-155 both want the slot copied here.
    this.scratch = Buffer.alloc(sring.slotBytes);
  }

  /** Why this ring stopped, or null while it works. */
  get broken(): RingBroken | null {
    return this.brokenBy;
  }

  /** Stop the ring for a protocol violation found above the ring layer (e.g. an undecodable slot). */
  markBroken(culprit: 'frontend' | 'backend', reason: string): RingBroken {
    if (!this.brokenBy) this.brokenBy = { kind: 'marked', culprit, reason };
    return this.brokenBy;
  }

  protected produce<T>(codec: SlotCodec<T>, idx: number, msg: T): Result<undefined, ProduceRefused> {
    // Our own writes may go straight into shared memory (the peer cannot publish them before
    // we move the producer index); only a slot split across pages goes through the scratch.
    const direct = this.sring.directSlot(idx);
    const n = codec.encode(msg, direct ?? this.scratch);
    if (n < 0) return err({ kind: 'too-large', bytesNeeded: -n, slotPayloadMax: this.sring.slotBytes });
    if (!direct) this.sring.copyIn(idx, this.scratch, n);
    return OK_VOID;
  }

  protected consume<T>(codec: SlotCodec<T>, idx: number): Result<T, ConsumeError> {
    this.sring.copyOut(idx, this.scratch);
    const r = codec.decode(this.scratch);
    return r.ok ? r : err({ kind: 'bad-slot', idx, reason: r.error });
  }
}

export class FrontRing<Req, Rsp> extends RingEnd {
  /** `req_prod_pvt`: requests written but perhaps not yet pushed. */
  reqProdPvt: number;
  /** `rsp_cons`. */
  rspCons: number;
  private readonly reqCodec: SlotCodec<Req>;
  private readonly rspCodec: SlotCodec<Rsp>;

  /** `FRONT_RING_ATTACH(r, s, start)`; call `sring.init(start)` first on a fresh ring. */
  constructor(sring: SharedRing, reqCodec: SlotCodec<Req>, rspCodec: SlotCodec<Rsp>, start = 0) {
    super(sring);
    assert(reqCodec.slotBytes <= sring.slotBytes && rspCodec.slotBytes <= sring.slotBytes, 'codec slot larger than ring slot');
    this.reqCodec = reqCodec;
    this.rspCodec = rspCodec;
    this.reqProdPvt = start >>> 0;
    this.rspCons = start >>> 0;
  }

  /** `RING_FREE_REQUESTS`. */
  freeRequests(): number {
    return this.size - ((this.reqProdPvt - this.rspCons) >>> 0);
  }

  /** `RING_FULL`. */
  full(): boolean {
    return this.freeRequests() === 0;
  }

  /** Write a request at `req_prod_pvt` (not yet visible to the backend until a push). */
  pushRequest(req: Req): Result<undefined, ProduceRefused> {
    if (this.brokenBy) return err({ kind: 'broken', broken: this.brokenBy });
    if (this.freeRequests() === 0) return err({ kind: 'ring-full', size: this.size });
    const r = this.produce(this.reqCodec, this.reqProdPvt, req);
    if (r.ok) this.reqProdPvt = (this.reqProdPvt + 1) >>> 0;
    return r;
  }

  /**
   * For a producer that writes request slots itself (through `sring.directSlot(reqProdPvt + i)`
   * or `sring.copyIn`): account `n` slots as written. The caller checked `freeRequests()`.
   */
  advanceRequests(n: number): void {
    if (!(n >= 0 && n <= this.freeRequests())) assert(false, `advanceRequests(${n}) with ${this.freeRequests()} free`);
    this.reqProdPvt = (this.reqProdPvt + n) >>> 0;
  }

  /** `RING_PUSH_REQUESTS`: publish `req_prod` without a notify decision. */
  pushRequests(): void {
    Atomics.store(this.header, REQ_PROD, this.reqProdPvt);
  }

  /**
   * `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`. Returns whether the backend asked to be notified.
   * Order: slot bytes (plain stores) → `req_prod` (Atomics.store, the wmb) → `req_event`
   * (Atomics.load, after the store: the mb). Atomics are sequentially consistent, so the backend
   * either sees the new `req_prod` in its final check or we see its new `req_event` here.
   */
  pushRequestsAndCheckNotify(): boolean {
    const h = this.header;
    const oldProd = Atomics.load(h, REQ_PROD);
    const newProd = this.reqProdPvt;
    Atomics.store(h, REQ_PROD, newProd);
    return needsNotify(newProd, oldProd, Atomics.load(h, REQ_EVENT));
  }

  /**
   * `XEN_RING_NR_UNCONSUMED_RESPONSES`, after checking the backend's `rsp_prod`: more responses
   * than requests outstanding is impossible and breaks the ring (`RING_RESPONSE_PROD_OVERFLOW`,
   * tightened to the requests actually outstanding).
   */
  unconsumedResponses(): number {
    if (this.brokenBy) return 0;
    const rp = Atomics.load(this.header, RSP_PROD);
    const avail = (rp - this.rspCons) >>> 0;
    const outstanding = (this.reqProdPvt - this.rspCons) >>> 0;
    if (avail > outstanding) {
      this.brokenBy = { kind: 'rsp-prod-overflow', culprit: 'backend', rspProd: rp, rspCons: this.rspCons, reqProdPvt: this.reqProdPvt };
      return 0;
    }
    return avail;
  }

  /** Consume one response (copy, advance `rsp_cons`, decode). Call only when `unconsumedResponses() > 0`. */
  takeResponse(): Result<Rsp, ConsumeError> {
    if (this.brokenBy) return err({ kind: 'broken', broken: this.brokenBy });
    const idx = this.rspCons;
    // Private state only: the shared rsp_prod was validated by unconsumedResponses().
    assert(((this.reqProdPvt - idx) >>> 0) !== 0, 'takeResponse with no request outstanding');
    this.rspCons = (idx + 1) >>> 0;
    return this.consume(this.rspCodec, idx);
  }

  /** Consume up to `n` responses without reading them (their slots carry nothing: one-way use). */
  discardResponses(n: number): number {
    const avail = this.unconsumedResponses();
    const k = n < avail ? n : avail;
    this.rspCons = (this.rspCons + k) >>> 0;
    return k;
  }

  /**
   * `RING_FINAL_CHECK_FOR_RESPONSES`: if nothing is pending, set `rsp_event = rsp_cons + 1`
   * and look again, so a response pushed in between is never missed.
   */
  finalCheckForResponses(): boolean {
    if (this.unconsumedResponses() > 0) return true;
    if (this.brokenBy) return false;
    Atomics.store(this.header, RSP_EVENT, (this.rspCons + 1) >>> 0);
    return this.unconsumedResponses() > 0;
  }
}

export class BackRing<Req, Rsp> extends RingEnd {
  /** `rsp_prod_pvt`. */
  rspProdPvt: number;
  /** `req_cons`. */
  reqCons: number;
  private readonly reqCodec: SlotCodec<Req>;
  private readonly rspCodec: SlotCodec<Rsp>;

  /** `BACK_RING_ATTACH(r, s, start)`. Backends attaching to a live ring use `BackRing.attach`. */
  constructor(sring: SharedRing, reqCodec: SlotCodec<Req>, rspCodec: SlotCodec<Rsp>, start = 0) {
    super(sring);
    assert(reqCodec.slotBytes <= sring.slotBytes && rspCodec.slotBytes <= sring.slotBytes, 'codec slot larger than ring slot');
    this.reqCodec = reqCodec;
    this.rspCodec = rspCodec;
    this.rspProdPvt = start >>> 0;
    this.reqCons = start >>> 0;
  }

  /**
   * Attach at the ring's current `rsp_prod`, as Linux backends do, refusing a ring whose
   * `req_prod` is already more than the ring size ahead (`xen_blkif_map` returns -EIO).
   */
  static attach<Req, Rsp>(sring: SharedRing, reqCodec: SlotCodec<Req>, rspCodec: SlotCodec<Rsp>): Result<BackRing<Req, Rsp>, RingBroken> {
    const rspProd = Atomics.load(sring.header, RSP_PROD);
    const reqProd = Atomics.load(sring.header, REQ_PROD);
    if (((reqProd - rspProd) >>> 0) > sring.size) {
      return err({ kind: 'req-prod-overflow', culprit: 'frontend', reqProd, rspProdPvt: rspProd, size: sring.size });
    }
    return ok(new BackRing(sring, reqCodec, rspCodec, rspProd));
  }

  /**
   * `XEN_RING_NR_UNCONSUMED_REQUESTS`, after `RING_REQUEST_PROD_OVERFLOW` and a check that
   * `req_prod` did not move back behind `req_cons`: requests available,
   * bounded by the response slots still free, so we never consume a request we cannot answer.
   */
  unconsumedRequests(): number {
    if (this.brokenBy) return 0;
    const rp = Atomics.load(this.header, REQ_PROD);
    if (((rp - this.rspProdPvt) >>> 0) > this.size) {
      this.brokenBy = { kind: 'req-prod-overflow', culprit: 'frontend', reqProd: rp, rspProdPvt: this.rspProdPvt, size: this.size };
      return 0;
    }
    const req = (rp - this.reqCons) >>> 0;
    // ring.h does not catch a req_prod moved back behind req_cons (but not behind rsp_prod_pvt):
    // it would hand out stale slots that were never published. We halt on it too.
    if (req > ((rp - this.rspProdPvt) >>> 0)) {
      this.brokenBy = { kind: 'req-prod-regressed', culprit: 'frontend', reqProd: rp, reqCons: this.reqCons };
      return 0;
    }
    const rsp = this.size - ((this.reqCons - this.rspProdPvt) >>> 0);
    return req < rsp ? req : rsp;
  }

  /**
   * `RING_COPY_REQUEST` + `req_cons++`: copy the slot once into private memory, advance, then
   * decode the copy. Call only when `unconsumedRequests() > 0`.
   */
  takeRequest(): Result<Req, ConsumeError> {
    if (this.brokenBy) return err({ kind: 'broken', broken: this.brokenBy });
    const idx = this.reqCons;
    assert(((this.reqCons - this.rspProdPvt) >>> 0) < this.size, 'takeRequest with no response slot free (RING_REQUEST_CONS_OVERFLOW)');
    this.reqCons = (idx + 1) >>> 0;
    return this.consume(this.reqCodec, idx);
  }

  /**
   * For a consumer that reads request slots itself (`sring.slotViews(reqCons + i)`), copying
   * each once into its own memory: account `n` requests as consumed. The caller checked
   * `unconsumedRequests()`.
   */
  consumeRequests(n: number): void {
    if (!(n >= 0 && n <= this.size - ((this.reqCons - this.rspProdPvt) >>> 0))) assert(false, `consumeRequests(${n}) beyond the free response slots`);
    this.reqCons = (this.reqCons + n) >>> 0;
  }

  /** `RING_REQUEST_CONS_OVERFLOW(r, cons)`. */
  requestConsOverflow(cons: number = this.reqCons): boolean {
    return ((cons - this.rspProdPvt) >>> 0) >= this.size;
  }

  /** Write a response at `rsp_prod_pvt`. A response for a request never consumed is our bug. */
  pushResponse(rsp: Rsp): Result<undefined, ProduceRefused> {
    if (this.brokenBy) return err({ kind: 'broken', broken: this.brokenBy });
    if (this.rspProdPvt === this.reqCons) return err({ kind: 'nothing-to-answer', reqCons: this.reqCons });
    const r = this.produce(this.rspCodec, this.rspProdPvt, rsp);
    if (r.ok) this.rspProdPvt = (this.rspProdPvt + 1) >>> 0;
    return r;
  }

  /**
   * Answer the next `n` consumed requests with empty responses: only `rsp_prod_pvt` moves, no
   * slot is written. For one-way protocols (an event-log drain) whose responses carry nothing
   * but the slot's release. Returns how many were answered (at most those consumed).
   */
  pushEmptyResponses(n: number): number {
    const owed = (this.reqCons - this.rspProdPvt) >>> 0;
    const k = n < owed ? n : owed;
    this.rspProdPvt = (this.rspProdPvt + k) >>> 0;
    return k;
  }

  /** `RING_PUSH_RESPONSES`. */
  pushResponses(): void {
    Atomics.store(this.header, RSP_PROD, this.rspProdPvt);
  }

  /** `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`; same ordering argument as the request side. */
  pushResponsesAndCheckNotify(): boolean {
    const h = this.header;
    const oldProd = Atomics.load(h, RSP_PROD);
    const newProd = this.rspProdPvt;
    Atomics.store(h, RSP_PROD, newProd);
    return needsNotify(newProd, oldProd, Atomics.load(h, RSP_EVENT));
  }

  /**
   * `RING_FINAL_CHECK_FOR_REQUESTS`: re-arm `req_event = req_cons + 1`, then look again.
   * `eventAhead` > 1 asks to be notified only once that many requests are waiting (a batching
   * consumer that also polls, like the event-log sink); ring.h's macro is `eventAhead = 1`.
   */
  finalCheckForRequests(eventAhead = 1): boolean {
    if (this.unconsumedRequests() > 0) return true;
    if (this.brokenBy) return false;
    if (!(eventAhead >= 1 && eventAhead <= this.size)) assert(false, `eventAhead must be 1..${this.size}`);
    Atomics.store(this.header, REQ_EVENT, (this.reqCons + eventAhead) >>> 0);
    return this.unconsumedRequests() > 0;
  }
}
