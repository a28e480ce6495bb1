/**
 * One blkback device (`struct xen_blkif` with one ring): ring processing as Linux's
 * `__do_block_io_op`, grant mapping per request, I/O against a `BackingDevice`, and the unmap
 * policy applied at completion.
 *
 * Capabilities come in at construction (hypercall client of the backend domain, its kernel,
 * clock, event log, backing device, ring mapper); nothing is imported as a global.
 *
 * Errors, three kinds (STYLE rule 5):
 *  - the frontend broke the ring (`req_prod` overflow, a slot with no id): `halted`, no more
 *    requests are read, `onHalt` runs (the xenbus glue closes the device); the backend lives on;
 *  - a bad request or a failed map/I/O: BLKIF_RSP_ERROR (or EOPNOTSUPP) for that request only;
 *  - our own bug: an assertion.
 */
import { EBUSY, GATE_OK_VALUE, GNTMAP_host_map, GNTMAP_readonly, GNTST_okay, assert, err, ok, type GrantRef, type Result } from './deps.js';
import {
  BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_OP_WRITE_BARRIER,
  BLKIF_RSP_ERROR,
  BLKIF_RSP_OKAY,
  BLKIF_SECTOR_BYTES,
  blkifBackRing,
  blkifResponse,
  describeBroken,
  extractRequestId,
  rejectResponse,
  validateRequest,
  type BlkifBackRing,
  type BlkifDisk,
  type BlkifRwRequest,
  type BlkifStatus,
  type SharedRing,
} from './deps.js';
import type { EventEmitter } from '@pvsim/eventlog';
import type { GnttabMapGrantRef, GnttabUnmapGrantRef, HypercallClient, MappingStamp } from '@pvsim/hypervisor';
import { GnttabPageCache, page_count, test_and_set_bit, PG_private, type Kernel, type Page } from '@pvsim/kernel';
import type { Clock } from '@pvsim/runtime';
import type { BackingDevice } from './backing.js';
import './events.js';

/**
 * What happens to a request's grant mappings when its I/O completed:
 * - `sync`: unmap at once and respond (the old behaviour: a page someone still holds, e.g. a
 *   retransmitting TCP stack, is unmapped under it; its next access faults);
 * - `replace`: per page `GNTTABOP_unmap_and_replace` with a scratch page of our own, then respond
 *   (the old gntdev way: the holder now reads our scratch frame, a leak);
 * - `async`: `gnttab_unmap_refs_async`, respond only in its done callback (the fix: no response
 *   while any grant of the request is still mapped).
 */
export type UnmapPolicy = 'sync' | 'replace' | 'async';

/** Requests processed per pass of the ring before yielding to the event loop (`batchMax`). */
export const BLKBACK_BATCH_MAX = 32;

/** The backend's hypercalls: the client of the domain blkback runs in. */
export type BlkbackHypercalls = Pick<HypercallClient, 'domid' | 'read' | 'write' | 'evtchnBindInterdomain' | 'evtchnSend' | 'evtchnClose'>;

/** A mapped ring: the frontend's ring pages as this domain sees them through its grant mappings. */
export interface MappedRing {
  readonly sring: SharedRing;
  /** Unmap the ring pages (at disconnect). */
  unmap(): void;
}

/** Maps the frontend's `ring-ref`s (a capability: see `kernelRingMapper`). */
export interface RingMapper {
  map(frontDom: number, refs: readonly GrantRef[]): Result<MappedRing, string>;
}

export interface BlkbackOptions {
  client: BlkbackHypercalls;
  kernel: Kernel;
  clock: Clock;
  events: EventEmitter;
  disk: BackingDevice;
  policy: UnmapPolicy;
  ringMapper: RingMapper;
  /** Requests per pass (default `BLKBACK_BATCH_MAX`). */
  batchMax?: number;
  /** The frontend broke the ring (already halted); the xenbus glue closes the device. */
  onHalt?: (reason: string) => void;
}

export interface BlkbackConnectParams {
  frontDom: number;
  ringRefs: readonly GrantRef[];
  eventChannel: number;
}

/** `struct pending_req`: one request between dispatch and response. */
interface PendingReq {
  readonly id: number;
  readonly operation: number;
  status: BlkifStatus;
  readonly pages: Page[];
  readonly unmapOps: GnttabUnmapGrantRef[];
}

export class BlkbackDevice {
  readonly policy: UnmapPolicy;
  readonly disk: BackingDevice;
  /** `ring->inflight`: requests dispatched and not yet answered. */
  inflight = 0;
  /** Why the ring was halted (the frontend's fault), or null. */
  halted: string | null = null;
  /** Pages dropped from the page cache because someone still held them at unmap (sync/replace). */
  pagesAbandoned = 0;
  frontDom = -1;

  private readonly client: BlkbackHypercalls;
  private readonly kernel: Kernel;
  private readonly clock: Clock;
  private readonly events: EventEmitter;
  private readonly mapper: RingMapper;
  private readonly batchMax: number;
  /** Called once when the ring is halted (the xenbus glue sets it to close the device). */
  onHalt: ((reason: string) => void) | undefined;
  private readonly cache: GnttabPageCache;
  private readonly blkDisk: BlkifDisk;
  private readonly perSector: number;
  private ring: BlkifBackRing | null = null;
  private mapped: MappedRing | null = null;
  private port = -1;
  private passScheduled = false;
  private idleWaiters: (() => void)[] = [];

  constructor(o: BlkbackOptions) {
    this.client = o.client;
    this.kernel = o.kernel;
    this.clock = o.clock;
    this.events = o.events;
    this.disk = o.disk;
    this.policy = o.policy;
    this.mapper = o.ringMapper;
    this.batchMax = o.batchMax ?? BLKBACK_BATCH_MAX;
    assert(Number.isInteger(this.batchMax) && this.batchMax >= 1, `batchMax ${this.batchMax} must be >= 1`);
    this.onHalt = o.onHalt;
    this.cache = new GnttabPageCache(o.kernel);
    this.perSector = o.disk.sectorSize / BLKIF_SECTOR_BYTES;
    this.blkDisk = {
      sectors: o.disk.sectors * this.perSector,
      readOnly: o.disk.readOnly,
      sectorSize: o.disk.sectorSize,
      featureFlushCache: true,
      featureBarrier: false,
      featureDiscard: false,
    };
  }

  get connected(): boolean {
    return this.ring !== null;
  }

  /** The device properties for XenStore (`sectors` is in 512-byte units). */
  get blkifDisk(): BlkifDisk {
    return this.blkDisk;
  }

  /**
   * `xen_blkif_map`: map the ring, attach at its `rsp_prod` (refused if `req_prod` is already
   * impossible), bind the event channel.
   */
  connect(p: BlkbackConnectParams): Result<undefined, string> {
    assert(!this.ring, 'blkback connect while connected: a bug in the caller');
    const m = this.mapper.map(p.frontDom, p.ringRefs);
    if (!m.ok) return m;
    const r = blkifBackRing(m.value.sring);
    if (!r.ok) {
      m.value.unmap();
      return err(describeBroken(r.error));
    }
    const port = this.client.evtchnBindInterdomain(p.frontDom, p.eventChannel);
    if (port < 0) {
      m.value.unmap();
      return err(`frontend gave us event-channel ${p.eventChannel}, which cannot be bound (${port})`);
    }
    this.mapped = m.value;
    this.ring = r.value;
    this.port = port;
    this.frontDom = p.frontDom;
    this.halted = null;
    return ok(undefined);
  }

  /** The local event-channel port (the doorbell a runner waits on), or -1. */
  get localPort(): number {
    return this.port;
  }

  /**
   * `xen_blkif_disconnect`: -EBUSY while requests are in flight (their grants may still be
   * mapped); otherwise unbind, unmap the ring, give cached pages back. 0 on success.
   */
  disconnect(): number {
    if (this.inflight > 0) return -EBUSY;
    if (this.port >= 0) this.client.evtchnClose(this.port);
    this.mapped?.unmap();
    this.mapped = null;
    this.ring = null;
    this.port = -1;
    this.cache.shrink(0);
    return 0;
  }

  /** Resolves once no request is in flight. */
  whenIdle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Disconnect as the xenbus state machine does: wait out the requests in flight, then tear down. */
  async disconnectWhenIdle(): Promise<void> {
    while (this.disconnect() === -EBUSY) await this.whenIdle();
  }

  /**
   * The interrupt: the frontend notified (or a runner polls). Runs one bounded pass now; more
   * passes are scheduled on the clock while work remains.
   */
  kick(): void {
    this.doBlockIoOp();
  }

  /**
   * `do_block_io_op`: one pass of at most `batchMax` requests, then `RING_FINAL_CHECK_FOR_REQUESTS`;
   * if requests remain, another pass is scheduled (yielding to completions and other devices).
   */
  private doBlockIoOp(): void {
    const ring = this.ring;
    if (!ring || this.halted) return;
    let n = 0;
    while (n < this.batchMax) {
      const avail = ring.unconsumedRequests();
      if (ring.broken) return this.halt(describeBroken(ring.broken));
      if (avail === 0) break;
      // Copy the slot once, advance req_cons, then validate the private copy.
      const copy = ring.takeRequest();
      n++;
      if (!copy.ok) {
        const reason = copy.error.kind === 'bad-slot' ? `frontend gave us an undecodable request slot: ${copy.error.reason}` : describeBroken(copy.error.broken);
        return this.halt(reason);
      }
      this.dispatch(copy.value);
      if (this.halted) return;
    }
    this.flushResponses();
    // A full pass with more waiting: go again. Otherwise (including a pass that ended exactly at
    // batchMax with the ring empty) re-arm req_event with the final check, or the frontend would
    // never be asked to notify again.
    if ((n >= this.batchMax && ring.unconsumedRequests() > 0) || ring.finalCheckForRequests()) this.schedulePass();
    else if (ring.broken) this.halt(describeBroken(ring.broken));
  }

  private schedulePass(): void {
    if (this.passScheduled) return;
    this.passScheduled = true;
    this.clock.setTimer(0, () => {
      this.passScheduled = false;
      this.doBlockIoOp();
    });
  }

  private halt(reason: string): void {
    if (this.halted) return;
    this.halted = reason;
    this.flushResponses();
    this.ring?.markBroken('frontend', reason);
    this.events.emit('blk.ring.halted', { dom: this.frontDom, reason }, this.client.domid);
    this.onHalt?.(reason);
  }

  private dispatch(copy: unknown): void {
    const v = validateRequest(copy, this.blkDisk);
    if (!v.ok) {
      const inv = v.error;
      if (inv.kind === 'violation') return this.halt(inv.reason);
      this.events.emit('blk.reject', { dom: this.frontDom, id: inv.id, op: inv.operation, status: inv.status, code: inv.code, reason: inv.reason }, this.client.domid);
      this.makeResponse(rejectResponse(inv).id, inv.operation, inv.status);
      return;
    }
    const req = v.value;
    if (!('seg' in req)) {
      // Discard is not advertised, so the validator refuses it; reaching here is our bug.
      assert(false, 'blkback: a discard request passed validation with feature-discard off: a bug');
    }
    const rw = req as BlkifRwRequest;
    this.events.emit('blk.request', { dom: this.frontDom, id: rw.id, op: rw.operation, sector: rw.sector_number, nsegs: rw.nr_segments }, this.client.domid);
    this.inflight++;
    void this.runRw(rw);
  }

  /** `dispatch_rw_block_io` + `xen_blkbk_map` + the bio + `__end_block_io_op`. */
  private async runRw(req: BlkifRwRequest): Promise<void> {
    const pr: PendingReq = { id: req.id, operation: req.operation, status: BLKIF_RSP_OKAY, pages: [], unmapOps: [] };
    const nseg = req.seg.length;
    if (nseg > 0) {
      const got = this.cache.get(nseg);
      if (typeof got === 'number') return this.finish(pr, BLKIF_RSP_ERROR);
      // Guest → disk needs only read access to the guest's pages.
      const flags = GNTMAP_host_map | (req.operation === BLKIF_OP_READ ? 0 : GNTMAP_readonly);
      const ops: GnttabMapGrantRef[] = req.seg.map((s, i) => ({ hostGfn: got[i]!.gfn, flags, ref: s.gref, dom: this.frontDom }));
      const rc = this.kernel.gnttab_map_refs(ops, got);
      const okIdx: number[] = [];
      for (let i = 0; i < nseg; i++) if (rc === 0 && ops[i]!.status === GNTST_okay) okIdx.push(i);
      if (okIdx.length !== nseg) {
        // A bad gref (or another map failure): unmap what did map, right away (those pages were
        // never handed to I/O: Linux's xen_blkbk_unmap), and answer with an error.
        const mappedPages = okIdx.map((i) => got[i]!);
        if (mappedPages.length > 0) this.kernel.gnttab_unmap_refs(okIdx.map((i) => ({ hostGfn: ops[i]!.hostGfn, handle: ops[i]!.handle! })), mappedPages);
        this.cache.put(got);
        return this.finish(pr, BLKIF_RSP_ERROR);
      }
      pr.pages.push(...got);
      pr.unmapOps.push(...ops.map((o) => ({ hostGfn: o.hostGfn, handle: o.handle! })));
    }
    // Page references for the I/O: every access goes through the memory gate with the mapping's stamp.
    const stamps: MappingStamp[] = pr.pages.map((p) => p.stamp());
    let status: BlkifStatus = BLKIF_RSP_OKAY;
    try {
      status = await this.io(req, pr.pages, stamps);
    } catch {
      status = BLKIF_RSP_ERROR;
    }
    this.complete(pr, status);
  }

  private async io(req: BlkifRwRequest, pages: Page[], stamps: MappingStamp[]): Promise<BlkifStatus> {
    const devSector = req.sector_number / this.perSector;
    switch (req.operation) {
      case BLKIF_OP_WRITE:
      case BLKIF_OP_WRITE_BARRIER: {
        const data = new Uint8Array(req.nr_sectors * BLKIF_SECTOR_BYTES);
        let off = 0;
        for (let i = 0; i < req.seg.length; i++) {
          const s = req.seg[i]!;
          const len = (s.last_sect - s.first_sect + 1) * BLKIF_SECTOR_BYTES;
          if (this.client.read(pages[i]!.gfn, s.first_sect * BLKIF_SECTOR_BYTES, data.subarray(off, off + len), stamps[i]) !== GATE_OK_VALUE) return BLKIF_RSP_ERROR;
          off += len;
        }
        if (data.length > 0) await this.disk.write(devSector, data);
        if (req.operation === BLKIF_OP_WRITE_BARRIER) await this.disk.flush();
        return BLKIF_RSP_OKAY;
      }
      case BLKIF_OP_READ: {
        const data = await this.disk.read(devSector, req.nr_sectors / this.perSector);
        let off = 0;
        for (let i = 0; i < req.seg.length; i++) {
          const s = req.seg[i]!;
          const len = (s.last_sect - s.first_sect + 1) * BLKIF_SECTOR_BYTES;
          if (this.client.write(pages[i]!.gfn, s.first_sect * BLKIF_SECTOR_BYTES, data.subarray(off, off + len), stamps[i]) !== GATE_OK_VALUE) return BLKIF_RSP_ERROR;
          off += len;
        }
        return BLKIF_RSP_OKAY;
      }
      case BLKIF_OP_FLUSH_DISKCACHE: {
        const st = await this.io({ ...req, operation: BLKIF_OP_WRITE } as BlkifRwRequest, pages, stamps);
        await this.disk.flush();
        return st;
      }
      default:
        return BLKIF_RSP_ERROR;
    }
  }

  /** The I/O completed: apply the unmap policy; the response follows the unmap. */
  private complete(pr: PendingReq, status: BlkifStatus): void {
    pr.status = status;
    if (pr.pages.length === 0) return this.finish(pr, status);
    switch (this.policy) {
      case 'sync': {
        // The old behaviour: unmap now whoever still holds the page.
        const rc = this.kernel.gnttab_unmap_refs(pr.unmapOps, pr.pages);
        assert(rc === 0, `blkback: unmapping our own grant mappings failed (${rc}): a bug`);
        this.recycle(pr.pages);
        return this.finish(pr, status);
      }
      case 'replace': {
        const back: Page[] = [];
        for (let i = 0; i < pr.pages.length; i++) {
          const page = pr.pages[i]!;
          const scratch = this.kernel.alloc_page();
          assert(scratch, 'blkback replace policy: no scratch page of our own memory left');
          const st = this.kernel.gnttab_unmap_and_replace(page, pr.unmapOps[i]!.handle, scratch);
          assert(st === GNTST_okay, `blkback: unmap_and_replace of our own mapping failed (${st}): a bug`);
          // The scratch gfn is now empty: it becomes a grant page. The old gfn holds the scratch
          // frame: our memory again, freed unless someone still holds it.
          test_and_set_bit(scratch, PG_private);
          back.push(scratch);
          if (page_count(page) === 1) this.kernel.free_page(page);
          else this.pagesAbandoned++;
        }
        this.cache.put(back);
        return this.finish(pr, status);
      }
      case 'async':
        this.kernel.gnttab_unmap_refs_async({
          unmapOps: pr.unmapOps,
          pages: pr.pages,
          count: pr.pages.length,
          data: pr,
          done: (result) => {
            // xen_blkbk_unmap_and_respond_callback: BUG_ON(result), cache put, respond.
            assert(result === 0, `blkback: async unmap of our own mappings failed (${result}): a bug`);
            this.cache.put(pr.pages);
            this.finish(pr, status);
          },
        });
        return;
    }
  }

  /** Unmapped pages back to the cache; a page someone still holds cannot be reused: drop it. */
  private recycle(pages: Page[]): void {
    const free = pages.filter((p) => page_count(p) === 1);
    this.pagesAbandoned += pages.length - free.length;
    this.cache.put(free);
  }

  private finish(pr: PendingReq, status: BlkifStatus): void {
    this.makeResponse(pr.id, pr.operation, status);
    this.flushResponses();
    this.inflight--;
    if (this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
    // A full response ring may have held back requests: look again.
    if (this.ring && !this.halted && this.ring.unconsumedRequests() > 0) this.schedulePass();
  }

  private pendingPush = false;

  /** `make_response` (queued; pushed by `flushResponses`). */
  private makeResponse(id: number, operation: number, status: BlkifStatus): void {
    const ring = this.ring;
    if (!ring) return;
    const r = ring.pushResponse(blkifResponse(id, operation, status));
    if (!r.ok) return; // the ring is broken: the frontend gets nothing more
    this.pendingPush = true;
    this.events.emit('blk.response', { dom: this.frontDom, id, status }, this.client.domid);
  }

  /** `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY` + `notify_remote_via_irq`. */
  private flushResponses(): void {
    if (!this.ring || !this.pendingPush) return;
    this.pendingPush = false;
    if (this.ring.pushResponsesAndCheckNotify() && this.port >= 0) this.client.evtchnSend(this.port);
  }
}
