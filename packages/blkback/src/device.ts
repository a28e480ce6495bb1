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
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_OP_WRITE_BARRIER,
  BLKIF_RSP_ERROR,
  BLKIF_RSP_OKAY,
  BLKIF_SECTOR_BYTES,
  BlkifRequestReader,
  blkifBackRing,
  blkifResponse,
  describeBroken,
  rejectResponse,
  type BlkifBackRing,
  type BlkifDisk,
  type BlkifRequest,
  type BlkifRwRequest,
  type BlkifStatus,
  type SharedRing,
} from './deps.js';
import type { EventEmitter } from '@pvsim/eventlog';
import type { GnttabMapGrantRef, GnttabUnmapGrantRef, HypercallClient, MappingStamp } from '@pvsim/hypervisor';
import { GnttabPageCache, page_count, test_and_set_bit, PG_private, type GntabUnmapQueueData, type Kernel, type Page } from '@pvsim/kernel';
import type { Clock } from '@pvsim/runtime';
import type { BackingDevice } from './backing.js';
import { BLKBACK_VDEV_UNKNOWN } from './events.js';

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
  /**
   * The device's `virtual-device` handle (e.g. 51712 for xvda), named in every event. Default:
   * `runBlkbackXenbus` takes it from the frontend's directory (`…/device/vbd/<vdev>`), as Linux's
   * `backend_changed` takes the handle; a device never given one reports `BLKBACK_VDEV_UNKNOWN`.
   */
  vdev?: number;
  /** The frontend broke the ring (already halted); the xenbus glue closes the device. */
  onHalt?: (reason: string) => void;
}

export interface BlkbackConnectParams {
  frontDom: number;
  ringRefs: readonly GrantRef[];
  eventChannel: number;
}

/**
 * `struct pending_req`: one request between dispatch and response. It is also the request's
 * `gntab_unmap_queue_data` (Linux embeds one in each pending_req), so the async unmap allocates
 * nothing of its own.
 */
interface PendingReq extends GntabUnmapQueueData<null> {
  id: number;
  operation: number;
  status: BlkifStatus;
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
  /** The `virtual-device` handle this device serves (see `BlkbackOptions.vdev`). */
  vdev: number;

  private readonly client: BlkbackHypercalls;
  /** `client.domid`, read once: every event names it. */
  private readonly domid: number;
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
  private reader: BlkifRequestReader | null = null;
  private mapped: MappedRing | null = null;
  private port = -1;
  private passScheduled = false;
  private idleWaiters: (() => void)[] = [];
  /**
   * I/O done in memory (a `view` disk), waiting for its completion: completions run as a batch,
   * after the pass, like a bio's end_io (see `queueCompletion`).
   */
  private completions: PendingReq[] = [];
  private completionsScheduled = false;
  /** Inside a completion batch: responses are pushed once at its end. */
  private batching = false;
  /** Private bounce buffer of one request's write data (guest pages → disk), reused per request. */
  private readonly bounce = new Uint8Array(BLKIF_MAX_SEGMENTS_PER_REQUEST * 8 * BLKIF_SECTOR_BYTES);
  private readonly runBatch = () => this.completeBatch();
  private readonly runBatchNext = () => queueMicrotask(this.runBatch);
  /** Every request's `onDeferred` (one function for all: the item names the request). */
  private readonly unmapDeferred = (delayMs: number, age: number, busyPages: number, item: GntabUnmapQueueData<null>): void => {
    this.events.emit('blk.unmap.deferred', { dom: this.frontDom, vdev: this.vdev, id: (item as PendingReq).id, age, delayMs, busyPages }, this.domid);
  };

  constructor(o: BlkbackOptions) {
    this.client = o.client;
    this.domid = o.client.domid;
    this.kernel = o.kernel;
    this.clock = o.clock;
    this.events = o.events;
    this.disk = o.disk;
    this.policy = o.policy;
    this.mapper = o.ringMapper;
    this.batchMax = o.batchMax ?? BLKBACK_BATCH_MAX;
    this.vdev = o.vdev ?? BLKBACK_VDEV_UNKNOWN;
    assert(Number.isInteger(this.batchMax) && this.batchMax >= 1, `batchMax ${this.batchMax} must be >= 1`);
    assert(Number.isInteger(this.vdev) && this.vdev >= -1 && this.vdev <= 0x7fff_ffff, `vdev ${this.vdev} is not a virtual-device handle`);
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
    this.reader = new BlkifRequestReader(r.value);
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
    // Drop the ring (its views of the pages) first, then unmap: a view cannot be revoked.
    const mapped = this.mapped;
    this.mapped = null;
    this.ring = null;
    this.reader = null;
    this.port = -1;
    mapped?.unmap();
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
    const reader = this.reader;
    if (!ring || !reader || this.halted) return;
    let n = 0;
    while (n < this.batchMax) {
      const avail = ring.unconsumedRequests();
      if (ring.broken) return this.halt(describeBroken(ring.broken));
      if (avail === 0) break;
      // Copy the slot once, advance req_cons, then validate the private copy.
      const t = reader.take(this.blkDisk);
      n++;
      if (t.ok) this.dispatch(t.value);
      else {
        const e = t.error;
        switch (e.kind) {
          case 'bad-slot':
            return this.halt(`frontend gave us an undecodable request slot: ${e.reason}`);
          case 'broken':
            return this.halt(describeBroken(e.broken));
          case 'violation':
            return this.halt(e.reason);
          case 'reject':
            this.events.emit('blk.reject', { dom: this.frontDom, vdev: this.vdev, id: e.id, op: e.operation, status: e.status, code: e.code, reason: e.reason }, this.domid);
            this.makeResponse(rejectResponse(e).id, e.operation, e.status);
        }
      }
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
    this.events.emit('blk.ring.halted', { dom: this.frontDom, vdev: this.vdev, reason }, this.domid);
    this.onHalt?.(reason);
  }

  private dispatch(req: BlkifRequest): void {
    if (!('seg' in req)) {
      // Discard is not advertised, so the validator refuses it; reaching here is our bug.
      assert(false, 'blkback: a discard request passed validation with feature-discard off: a bug');
    }
    const rw = req as BlkifRwRequest;
    this.events.emit('blk.request', { dom: this.frontDom, vdev: this.vdev, id: rw.id, op: rw.operation, sector: rw.sector_number, nsegs: rw.nr_segments }, this.domid);
    this.inflight++;
    this.runRw(rw);
  }

  /**
   * `dispatch_rw_block_io` + `xen_blkbk_map` + the bio. Segments are mapped in one batch, now;
   * the I/O either runs now against a disk in memory (`view`), completing as a batch after the
   * pass, or goes to the backing device's promise.
   */
  private runRw(req: BlkifRwRequest): void {
    const nseg = req.seg.length;
    const pr: PendingReq = {
      id: req.id,
      operation: req.operation,
      status: BLKIF_RSP_OKAY,
      pages: NO_PAGES,
      unmapOps: NO_OPS,
      count: 0,
      data: null,
      done: (result) => this.unmapped(pr, result),
      onDeferred: this.unmapDeferred,
    };
    if (nseg > 0) {
      const got = this.cache.get(nseg);
      if (typeof got === 'number') return this.finish(pr, BLKIF_RSP_ERROR);
      // Guest → disk needs only read access to the guest's pages.
      const flags = GNTMAP_host_map | (req.operation === BLKIF_OP_READ ? 0 : GNTMAP_readonly);
      const ops: GnttabMapGrantRef[] = new Array<GnttabMapGrantRef>(nseg);
      for (let i = 0; i < nseg; i++) ops[i] = { hostGfn: got[i]!.gfn, flags, ref: req.seg[i]!.gref, dom: this.frontDom };
      const rc = this.kernel.gnttab_map_refs(ops, got);
      let okAll = rc === 0;
      for (let i = 0; okAll && i < nseg; i++) if (ops[i]!.status !== GNTST_okay) okAll = false;
      if (!okAll) {
        // A bad gref (or another map failure): unmap what did map, right away (those pages were
        // never handed to I/O: Linux's xen_blkbk_unmap), and answer with an error.
        const okIdx: number[] = [];
        for (let i = 0; rc === 0 && i < nseg; i++) if (ops[i]!.status === GNTST_okay) okIdx.push(i);
        const mappedPages = okIdx.map((i) => got[i]!);
        if (mappedPages.length > 0) this.kernel.gnttab_unmap_refs(okIdx.map((i) => ({ hostGfn: ops[i]!.hostGfn, handle: ops[i]!.handle! })), mappedPages);
        this.cache.put(got);
        return this.finish(pr, BLKIF_RSP_ERROR);
      }
      pr.pages = got;
      const unmapOps: GnttabUnmapGrantRef[] = new Array<GnttabUnmapGrantRef>(nseg);
      for (let i = 0; i < nseg; i++) unmapOps[i] = { hostGfn: ops[i]!.hostGfn, handle: ops[i]!.handle! };
      pr.unmapOps = unmapOps;
      pr.count = nseg;
    }
    // Page references for the I/O: every access goes through the memory gate with the mapping's stamp.
    const stamps: MappingStamp[] = new Array<MappingStamp>(nseg);
    for (let i = 0; i < nseg; i++) stamps[i] = pr.pages[i]!.stamp();
    if (this.disk.view && (req.operation === BLKIF_OP_READ || req.operation === BLKIF_OP_WRITE)) {
      let status: BlkifStatus;
      try {
        status = this.ioInMemory(req, pr.pages, stamps);
      } catch {
        status = BLKIF_RSP_ERROR;
      }
      pr.status = status;
      this.queueCompletion(pr);
      return;
    }
    this.io(req, pr.pages, stamps).then(
      (status) => this.complete(pr, status),
      () => this.complete(pr, BLKIF_RSP_ERROR),
    );
  }

  /**
   * Read or write against a disk in memory, now: disk → guest pages straight through the gate;
   * guest pages → the private bounce buffer, then the disk only once every segment was read (a
   * failed segment leaves the disk untouched, as the device path does).
   */
  private ioInMemory(req: BlkifRwRequest, pages: Page[], stamps: MappingStamp[]): BlkifStatus {
    const disk = this.disk;
    const bytes = req.nr_sectors * BLKIF_SECTOR_BYTES;
    const view = disk.view!(req.sector_number / this.perSector, req.nr_sectors / this.perSector);
    const seg = req.seg;
    let off = 0;
    if (req.operation === BLKIF_OP_READ) {
      for (let i = 0; i < seg.length; i++) {
        const s = seg[i]!;
        const len = (s.last_sect - s.first_sect + 1) * BLKIF_SECTOR_BYTES;
        if (this.client.write(pages[i]!.gfn, s.first_sect * BLKIF_SECTOR_BYTES, view.subarray(off, off + len), stamps[i]) !== GATE_OK_VALUE) return BLKIF_RSP_ERROR;
        off += len;
      }
      return BLKIF_RSP_OKAY;
    }
    if (disk.readOnly) return BLKIF_RSP_ERROR;
    const bounce = this.bounce;
    for (let i = 0; i < seg.length; i++) {
      const s = seg[i]!;
      const len = (s.last_sect - s.first_sect + 1) * BLKIF_SECTOR_BYTES;
      if (this.client.read(pages[i]!.gfn, s.first_sect * BLKIF_SECTOR_BYTES, bounce.subarray(off, off + len), stamps[i]) !== GATE_OK_VALUE) return BLKIF_RSP_ERROR;
      off += len;
    }
    view.set(bytes === bounce.length ? bounce : bounce.subarray(0, bytes));
    return BLKIF_RSP_OKAY;
  }

  /** The I/O through the backing device's promises (files, flushes, barriers). */
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

  /**
   * An in-memory I/O is done: complete it with the others of this pass, as a bio completes
   * asynchronously. Two microtask turns later, which is when the promise path completes a memory
   * disk's I/O too (a page reference taken right after the pass still counts at the unmap).
   */
  private queueCompletion(pr: PendingReq): void {
    this.completions.push(pr);
    if (this.completionsScheduled) return;
    this.completionsScheduled = true;
    queueMicrotask(this.runBatchNext);
  }

  private completeBatch(): void {
    this.completionsScheduled = false;
    const batch = this.completions;
    this.completions = [];
    this.batching = true;
    try {
      for (let i = 0; i < batch.length; i++) this.complete(batch[i]!, batch[i]!.status);
    } finally {
      this.batching = false;
      this.afterResponses();
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
        if (rc !== 0) assert(false, `blkback: unmapping our own grant mappings failed (${rc}): a bug`);
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
          if (st !== GNTST_okay) assert(false, `blkback: unmap_and_replace of our own mapping failed (${st}): a bug`);
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
        // xen_blkbk_unmap_and_respond: `pr` is its own unmap item; its `done` responds. While a
        // page is still held, each retry scheduled is logged as `blk.unmap.deferred`.
        this.kernel.gnttab_unmap_refs_async(pr);
        return;
    }
  }

  /** `xen_blkbk_unmap_and_respond_callback`: BUG_ON(result), cache put, respond. */
  private unmapped(pr: PendingReq, result: number): void {
    if (result !== 0) assert(false, `blkback: async unmap of our own mappings failed (${result}): a bug`);
    this.cache.put(pr.pages);
    this.finish(pr, pr.status);
  }

  /** Unmapped pages back to the cache; a page someone still holds cannot be reused: drop it. */
  private recycle(pages: Page[]): void {
    const free = pages.filter((p) => page_count(p) === 1);
    this.pagesAbandoned += pages.length - free.length;
    this.cache.put(free);
  }

  private finish(pr: PendingReq, status: BlkifStatus): void {
    this.makeResponse(pr.id, pr.operation, status);
    this.inflight--;
    if (this.batching) return;
    this.afterResponses();
  }

  /** Push the responses made, wake idle waiters, look at the ring again if it was held back. */
  private afterResponses(): void {
    this.flushResponses();
    if (this.inflight === 0 && this.idleWaiters.length > 0) for (const w of this.idleWaiters.splice(0)) w();
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
    this.events.emit('blk.response', { dom: this.frontDom, vdev: this.vdev, id, status }, this.domid);
  }

  /** `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY` + `notify_remote_via_irq`. */
  private flushResponses(): void {
    if (!this.ring || !this.pendingPush) return;
    this.pendingPush = false;
    if (this.ring.pushResponsesAndCheckNotify() && this.port >= 0) this.client.evtchnSend(this.port);
  }
}

const NO_PAGES: Page[] = [];
const NO_OPS: GnttabUnmapGrantRef[] = [];
