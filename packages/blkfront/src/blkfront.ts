/**
 * blkfront: one virtual block device of a guest, over the blkif ring (Linux
 * `drivers/block/xen-blkfront.c`, non-persistent, non-indirect grants).
 *
 * Life of an I/O: `read`/`write` split it into requests of at most
 * `BLKIF_MAX_SEGMENTS_PER_REQUEST` 4 KiB frames (`first_sect`/`last_sect` inclusive, sector `s`
 * placed at sector `s % 8` of its frame, as page-cache pages lie). Each request takes an id from
 * the free-id list (`get_id_from_freelist`) and one data page per segment; each page is granted
 * to the backend (read-only for a write to disk, writable for a read), the request goes on the
 * ring, and one `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY` per batch decides whether to send the event
 * channel. On a response (`blkif_interrupt`) the response is checked (`parseResponse`, then its
 * id and operation against the shadow), each grant is ended with one atomic check-and-clear
 * (`gnttab_try_end_foreign_access`, never query-then-end: XSA-396), read data is copied out, and
 * only then are the id and the page free again.
 *
 * A grant the backend still has mapped cannot be ended: as Linux `gnttab_end_foreign_access`,
 * the page (and its ref) go on a deferred list and stay out of reuse; a timer on the injected
 * clock retries every `GNTTAB_DEFERRED_RETRY_MS`, `GNTTAB_DEFERRED_PER_RUN` entries a run.
 *
 * Whose fault: anything the backend writes (responses, `rsp_prod`, XenStore keys) is untrusted
 * and never throws here; a violation stops the device (`error`, a `blk.error` event) and fails
 * the outstanding I/O. Bad arguments from the caller reject the call's promise. Internal
 * inconsistencies are asserts.
 *
 * Capabilities only: the guest's hypercall client, its XenStore client, the clock and the event
 * emitter. The ring is memory both ends touch in place: its pages are reached through the
 * client's `frameView` of the guest's own gfns (its page tables, never machine memory), taken at
 * setup and kept for the device's life, as the frames stay the guest's. Data pages are only
 * touched through the client's memory gate.
 */
import { XEN_PAGE_SIZE, assert, type EvtchnPort, type GrantRef } from '@pvsim/abi';
import {
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_RSP_OKAY,
  BLKIF_SECTOR_BYTES,
  BLKIF_SECTORS_PER_FRAME,
  BLKIF_SLOT_BYTES,
  BlkifResponseReader,
  blkifFrontRing,
  buildFrontendKeys,
  parseBackendConnectKeys,
  parseBackendProbeKeys,
  type BackendDevice,
  type BlkifFrontRing,
  type BlkifSegmentWire,
} from '@pvsim/blkif';
import type { EventEmitter } from '@pvsim/eventlog';
import type { HypercallClient } from '@pvsim/hypervisor';
import { SharedRing, describeBroken } from '@pvsim/ring';
import type { Clock, TimerHandle } from '@pvsim/runtime';
import { XenbusState, runFrontendHandshake, type FrontendEnd, type XsClient } from '@pvsim/xenstore';
import './events.js';

/** Linux's deferred-grant timer period (`HZ`), in ms. */
export const GNTTAB_DEFERRED_RETRY_MS = 1000;
/** Linux `free_per_iteration`: deferred entries retried per timer run. */
export const GNTTAB_DEFERRED_PER_RUN = 10;
/** Requests (parts of I/Os) that may wait for a ring slot, an id or pages before new I/O is refused. */
export const BLKFRONT_WAITING_REQUESTS_MAX = 4096;
/** Largest ring this frontend asks for (`xen_blkif_max_ring_order`, pvsim default). */
export const BLKFRONT_RING_ORDER_MAX = 4;
/** Responses handled per `interrupt()` call, times the ring size (a bound on a hostile backend). */
const INTERRUPT_ROUNDS_MAX = 4;
/**
 * `read()` results up to this size are carved from shared zeroed slabs of `READ_SLAB_BYTES`
 * (each region handed out once, never reused); larger ones get their own buffer.
 */
const READ_SLAB_BYTES = 64 * 1024;
const READ_SLAB_ITEM_MAX = 16 * 1024;

/** What blkfront needs of the guest's hypercall client. */
export type BlkfrontHypercalls = Pick<
  HypercallClient,
  'domid' | 'grantForeignAccess' | 'endForeignAccess' | 'evtchnAllocUnbound' | 'evtchnSend' | 'evtchnClose' | 'read' | 'write' | 'frameView'
>;

export interface BlkfrontOptions {
  client: BlkfrontHypercalls;
  xs: XsClient;
  clock: Clock;
  events: EventEmitter;
  /** `/local/domain/<dom>/device/vbd/<devid>` and the backend's directory (from the toolstack). */
  frontDir: string;
  backDir: string;
  backendDomid: number;
  /** `virtual-device` (the request `handle`). */
  vdev: number;
  /**
   * Frames the guest gives this device (gfns it has memory at): the first `2^ringPageOrder` hold
   * the ring, the rest are the data-page pool (its size bounds the segments in flight).
   */
  gfns: readonly number[];
  /** Grant refs of the guest's table for this device, one per entry of `gfns` (same order). */
  grantRefs: readonly number[];
  /** Ring pages wanted (`2^order`), capped by the backend's `max-ring-page-order`. Default 0. */
  ringPageOrder?: number;
  /** Wait for the backend's InitWait before publishing (default true). */
  waitForInitWait?: boolean;
}

/** An operational error of one I/O (rejects its promise; the device may live on). */
export class BlkfrontError extends Error {
  constructor(
    message: string,
    /** BLKIF_RSP_* of the failing response, or null when no response was involved. */
    readonly status: number | null = null,
  ) {
    super(message);
    this.name = 'BlkfrontError';
  }
}

export interface BlkfrontStats {
  /** Requests on the ring, awaiting a response. */
  readonly inFlight: number;
  /** Requests waiting for a ring slot, an id or data pages. */
  readonly waiting: number;
  /** Grants whose end of access is deferred right now (`deferred_count`). */
  readonly deferredGrants: number;
  /** Grants ever deferred. */
  readonly deferredTotal: number;
  readonly submitted: number;
  readonly completed: number;
  /** Event-channel sends (pushes the backend asked to be told about). */
  readonly notifies: number;
  readonly freeIds: number;
  readonly freePages: number;
}

/** One pool frame with the grant ref that always travels with it. */
interface DataPage {
  readonly gfn: number;
  readonly gref: number;
}

interface Io {
  readonly op: number;
  /**
   * Read: filled on completion. Write: the caller's data while the call runs; a private copy if
   * a part still waits for a slot when the call returns (the caller may reuse its buffer).
   */
  buf: Uint8Array;
  parts: number;
  failure: BlkfrontError | null;
  /** What the call's promise resolves with (a read's result buffer; undefined otherwise). */
  readonly value: unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (e: BlkfrontError) => void;
}

interface Part {
  readonly io: Io;
  readonly op: number;
  readonly sector: number;
  /** First 512-byte sector's offset in the frame of the first segment (0..7). */
  readonly firstSect: number;
  readonly nrSectors: number;
  /** Byte offset of this part's data in `io.buf`. */
  readonly bufOff: number;
}

interface SegUse {
  readonly page: DataPage;
  readonly firstSect: number;
  readonly lastSect: number;
  readonly bufOff: number;
}

/** `struct blk_shadow`: what an outstanding id stands for. */
interface Shadow {
  readonly id: number;
  readonly part: Part;
  readonly segs: readonly SegUse[];
}

interface Deferred {
  readonly page: DataPage;
  /** A data page goes back to the pool when ended; ring pages do not. */
  readonly data: boolean;
  tries: number;
}

export type BlkfrontPhase = 'connecting' | 'connected' | 'closing' | 'closed' | 'error';

const segmentsFor = (firstSect: number, nrSectors: number): number => Math.ceil((firstSect + nrSectors) / BLKIF_SECTORS_PER_FRAME);

export class Blkfront {
  private readonly o: BlkfrontOptions;
  private readonly dom: number;
  private readonly ringReserve: readonly DataPage[];
  private readonly freePages: DataPage[] = [];
  private readonly deferred: Deferred[] = [];
  private deferredTimer: TimerHandle | null = null;
  private deferredTotal = 0;

  private ring: BlkifFrontRing | null = null;
  private reader: BlkifResponseReader | null = null;
  /** The slab `read()` results are carved from, and its next free byte. */
  private readSlab = new Uint8Array(0);
  private readSlabOff = 0;
  private ringPages: readonly DataPage[] = [];
  private port = -1;
  private shadows: (Shadow | null)[] = [];
  /** LIFO, as Linux's `shadow_free` chain. */
  private freeIds: number[] = [];
  private readonly waiting: Part[] = [];
  private inFlight = 0;
  private submitted = 0;
  private completed = 0;
  private notifies = 0;

  private end: FrontendEnd | null = null;
  private dev: BackendDevice | null = null;
  private phaseNow: BlkfrontPhase = 'connecting';
  private errorReason: string | null = null;
  private drainWaiters: (() => void)[] = [];

  private constructor(o: BlkfrontOptions) {
    assert(o.gfns.length === o.grantRefs.length, `blkfront: ${o.gfns.length} gfns but ${o.grantRefs.length} grant refs`);
    const order = o.ringPageOrder ?? 0;
    assert(Number.isInteger(order) && order >= 0 && order <= BLKFRONT_RING_ORDER_MAX, `blkfront: ring-page-order ${order} not in 0..${BLKFRONT_RING_ORDER_MAX}`);
    const nRing = 1 << order;
    assert(o.gfns.length > nRing, `blkfront: ${o.gfns.length} frames leave no data pages after ${nRing} ring page(s)`);
    this.o = o;
    this.dom = o.client.domid;
    const pages = o.gfns.map((gfn, i) => ({ gfn, gref: o.grantRefs[i]! }));
    this.ringReserve = pages.slice(0, nRing);
    // Popped from the end: keep the pool in gfn order for the first users.
    this.freePages = pages.slice(nRing).reverse();
  }

  /**
   * Start the device: run the xenbus frontend handshake (`talk_to_blkback` when the backend is
   * in InitWait, `blkfront_connect` when it is Connected). Resolves once the handshake watches
   * the backend; `waitConnected` waits for the device.
   */
  static async start(o: BlkfrontOptions): Promise<Blkfront> {
    const f = new Blkfront(o);
    f.end = await runFrontendHandshake(
      o.xs,
      { frontDir: o.frontDir, backDir: o.backDir },
      {
        setup: (backend) => f.setup(backend),
        backendKeys: ['sectors', 'info', 'sector-size'],
        connect: (props) => f.connect(props),
        disconnect: () => f.disconnect(),
      },
      { clock: o.clock, waitForInitWait: o.waitForInitWait ?? true, reconnect: false },
    );
    return f;
  }

  /** Resolves when the device is Connected. */
  async waitConnected(timeoutMs?: number): Promise<void> {
    assert(this.end !== null, 'blkfront: waitConnected before start');
    await this.end.waitForState(XenbusState.Connected, timeoutMs);
  }

  get phase(): BlkfrontPhase {
    return this.phaseNow;
  }
  /** The protocol violation that stopped the device, or null. */
  get error(): string | null {
    return this.errorReason;
  }
  /** The backend's device properties, once connected. */
  get device(): BackendDevice | null {
    return this.dev;
  }
  /** This end's xenbus state. */
  get xenbusState(): XenbusState {
    return this.end?.state ?? XenbusState.Unknown;
  }
  /** `RING_SIZE` (also the number of request ids), 0 before setup. */
  get ringSize(): number {
    return this.ring?.size ?? 0;
  }
  /** The event-channel port (ours), -1 before setup. */
  get eventChannel(): number {
    return this.port;
  }
  /** Handshake problems noted by xenbus (the peer's doing, or a failed hook). */
  get xenbusErrors(): readonly string[] {
    return this.end?.errors ?? [];
  }

  stats(): BlkfrontStats {
    return {
      inFlight: this.inFlight,
      waiting: this.waiting.length,
      deferredGrants: this.deferred.length,
      deferredTotal: this.deferredTotal,
      submitted: this.submitted,
      completed: this.completed,
      notifies: this.notifies,
      freeIds: this.freeIds.length,
      freePages: this.freePages.length,
    };
  }

  // ─────────────────────────── handshake hooks ───────────────────────────

  /** `setup_blkring`: grant the ring page(s), allocate the event channel, return the keys. */
  private async setup(backend: { read(key: string): Promise<string | null> }): Promise<Record<string, string>> {
    const maxOrderKey = await backend.read('max-ring-page-order');
    const probe = parseBackendProbeKeys(maxOrderKey === null ? {} : { 'max-ring-page-order': maxOrderKey });
    // A bad key is the backend's fault: fall back to one page (Linux ignores the key then).
    const maxOrder = probe.ok ? probe.value.maxRingPageOrder : 0;
    const order = Math.min(Math.log2(this.ringReserve.length), maxOrder);
    const pages = this.ringReserve.slice(0, 1 << order);
    const c = this.o.client;
    const views: Uint8Array[] = [];
    for (const p of pages) {
      const v = c.frameView(p.gfn);
      // The toolstack gave us a gfn with no memory behind it: this device cannot start.
      if (!v.ok) throw new Error(`blkfront ${this.o.frontDir}: ring page gfn ${p.gfn} cannot be reached (${v.error.errno}): ${v.error.reason}`);
      views.push(v.value);
    }
    const sring = new SharedRing(views, BLKIF_SLOT_BYTES);
    sring.init();
    const granted: DataPage[] = [];
    for (const p of pages) {
      const rc = c.grantForeignAccess(p.gref, this.o.backendDomid, p.gfn, false);
      if (rc !== 0) {
        for (const g of granted) this.endOrDefer(g, false);
        throw new Error(`blkfront ${this.o.frontDir}: granting ring page gfn ${p.gfn} (gref ${p.gref}) failed: ${rc}`);
      }
      granted.push(p);
    }
    const port = c.evtchnAllocUnbound(this.o.backendDomid);
    if (port < 0) {
      for (const g of granted) this.endOrDefer(g, false);
      throw new Error(`blkfront ${this.o.frontDir}: alloc_unbound to d${this.o.backendDomid} failed: ${port}`);
    }
    this.ring = blkifFrontRing(sring);
    this.reader = new BlkifResponseReader(this.ring);
    this.ringPages = pages;
    this.port = port;
    this.shadows = Array.from({ length: sring.size }, () => null);
    this.freeIds = Array.from({ length: sring.size }, (_, i) => sring.size - 1 - i);
    const keys = buildFrontendKeys({
      ringRefs: pages.map((p) => p.gref as GrantRef),
      eventChannel: port as EvtchnPort,
      featurePersistent: false,
      virtualDevice: this.o.vdev,
      deviceType: 'disk',
    });
    return Object.fromEntries(keys);
  }

  /** `blkfront_connect`: read the device properties (untrusted), then accept I/O. */
  private async connect(props: Record<string, string>): Promise<void> {
    const entries: Record<string, string> = { ...props };
    for (const k of ['feature-flush-cache', 'feature-barrier', 'physical-sector-size']) {
      const v = await this.o.xs.tryRead(`${this.o.backDir}/${k}`);
      if (v !== null) entries[k] = v;
    }
    const d = parseBackendConnectKeys(entries);
    if (!d.ok) throw new Error(d.error);
    this.dev = d.value;
    if (this.phaseNow === 'connecting') this.phaseNow = 'connected';
    this.kick();
  }

  /** Teardown (backend gone, or our close): fail what is outstanding, take the grants back. */
  private async disconnect(): Promise<void> {
    this.failAll(new BlkfrontError(`blkfront ${this.o.frontDir}: device disconnected`));
    for (const p of this.ringPages) this.endOrDefer(p, false);
    this.ringPages = [];
    if (this.port >= 0) this.o.client.evtchnClose(this.port);
    this.port = -1;
    this.ring = null;
    this.reader = null;
    if (this.phaseNow === 'connecting' || this.phaseNow === 'connected') this.phaseNow = 'closed';
    this.checkDrained();
  }

  // ─────────────────────────── the block API ───────────────────────────

  /**
   * Read `count` 512-byte sectors from `sector`. The result is new memory that nothing else
   * writes to; small results may share an ArrayBuffer with earlier ones (as Node's pooled
   * Buffers do), so a view over its `.buffer` must use `byteOffset`/`byteLength`. `readInto`
   * reads into the caller's own memory instead.
   */
  read(sector: number, count: number): Promise<Uint8Array> {
    const buf = this.resultBuffer(Math.max(0, Number.isSafeInteger(count) ? count : 0) * BLKIF_SECTOR_BYTES);
    return this.io(BLKIF_OP_READ, sector, count, buf, buf);
  }

  /**
   * Read `dst.length / 512` sectors from `sector` into `dst` (whole sectors). `dst` is written as
   * responses arrive: leave it alone until the promise settles; after a failure any part of it
   * may have been written.
   */
  readInto(sector: number, dst: Uint8Array): Promise<void> {
    if (dst.length % BLKIF_SECTOR_BYTES !== 0) {
      return Promise.reject(new BlkfrontError(`read into ${dst.length} bytes: not whole ${BLKIF_SECTOR_BYTES}-byte sectors`));
    }
    return this.io(BLKIF_OP_READ, sector, dst.length / BLKIF_SECTOR_BYTES, dst, undefined);
  }

  /**
   * Write `data` (whole 512-byte sectors) at `sector`. `data` is copied before the call returns
   * (into the granted pages, or aside for a part that waits for a slot): the caller may reuse it.
   */
  write(sector: number, data: Uint8Array): Promise<void> {
    if (data.length % BLKIF_SECTOR_BYTES !== 0) {
      return Promise.reject(new BlkfrontError(`write of ${data.length} bytes: not whole ${BLKIF_SECTOR_BYTES}-byte sectors`));
    }
    return this.io(BLKIF_OP_WRITE, sector, data.length / BLKIF_SECTOR_BYTES, data, undefined);
  }

  /** A zeroed buffer of `bytes` for a read's result: a region of a slab never handed out before, or its own. */
  private resultBuffer(bytes: number): Uint8Array {
    if (bytes > READ_SLAB_ITEM_MAX) return new Uint8Array(bytes);
    if (this.readSlabOff + bytes > this.readSlab.length) {
      this.readSlab = new Uint8Array(READ_SLAB_BYTES);
      this.readSlabOff = 0;
    }
    const off = this.readSlabOff;
    this.readSlabOff = off + bytes;
    return this.readSlab.subarray(off, off + bytes);
  }

  /** `BLKIF_OP_FLUSH_DISKCACHE` with no segments; a no-op when the backend offers no flush. */
  flush(): Promise<void> {
    const refuse = this.refusal();
    if (refuse) return Promise.reject(refuse);
    if (!this.dev?.featureFlushCache) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const io: Io = { op: BLKIF_OP_FLUSH_DISKCACHE, buf: new Uint8Array(0), parts: 1, failure: null, value: undefined, resolve: resolve as (v: unknown) => void, reject };
      this.waiting.push({ io, op: BLKIF_OP_FLUSH_DISKCACHE, sector: 0, firstSect: 0, nrSectors: 0, bufOff: 0 });
      this.kick();
    });
  }

  /**
   * Closing: refuse new I/O, let what is queued and in flight drain, then Closing → Closed
   * through xenbus (which tears the ring down). Grants the backend still maps stay deferred.
   */
  async close(timeoutMs?: number): Promise<void> {
    if (this.phaseNow === 'connected' || this.phaseNow === 'connecting') this.phaseNow = 'closing';
    await this.drained();
    await this.end?.close(timeoutMs);
    await this.end?.stop();
    if (this.phaseNow !== 'error') this.phaseNow = 'closed';
  }

  /** Resolves when nothing is in flight or waiting. */
  drained(): Promise<void> {
    if (this.inFlight === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((r) => this.drainWaiters.push(r));
  }

  private refusal(): BlkfrontError | null {
    if (this.phaseNow === 'error') return new BlkfrontError(`device stopped: ${this.errorReason}`);
    if (this.phaseNow !== 'connected' || !this.dev || !this.ring) return new BlkfrontError(`device is ${this.phaseNow}, not accepting I/O`);
    return null;
  }

  /** Split and queue an I/O; its promise resolves with `value` once every part completed. */
  private io<T>(op: number, sector: number, count: number, buf: Uint8Array, value: T): Promise<T> {
    const refuse = this.refusal();
    if (refuse) return Promise.reject(refuse);
    const dev = this.dev!;
    if (!Number.isSafeInteger(sector) || sector < 0 || !Number.isSafeInteger(count) || count < 0) {
      return Promise.reject(new BlkfrontError(`bad extent: sector ${sector}, count ${count}`));
    }
    if (count > dev.sectors || sector > dev.sectors - count) {
      return Promise.reject(new BlkfrontError(`sectors ${sector}..${sector}+${count} beyond the disk's ${dev.sectors}`));
    }
    if (op === BLKIF_OP_WRITE && dev.readOnly) return Promise.reject(new BlkfrontError('write to a read-only disk'));
    if (count === 0) return Promise.resolve(value);
    // Split: each request spans at most 11 frames; sector s sits at sector s % 8 of its frame.
    const perRequest = BLKIF_MAX_SEGMENTS_PER_REQUEST * BLKIF_SECTORS_PER_FRAME;
    const nParts = Math.ceil(((sector % BLKIF_SECTORS_PER_FRAME) + count) / perRequest);
    if (this.waiting.length + nParts > BLKFRONT_WAITING_REQUESTS_MAX) {
      return Promise.reject(new BlkfrontError(`queue full: ${this.waiting.length} requests waiting (max ${BLKFRONT_WAITING_REQUESTS_MAX})`));
    }
    return new Promise<T>((resolve, reject) => {
      const io: Io = { op, buf, parts: nParts, failure: null, value, resolve: resolve as (v: unknown) => void, reject };
      for (let s = sector, left = count; left > 0; ) {
        const firstSect = s % BLKIF_SECTORS_PER_FRAME;
        const n = Math.min(left, perRequest - firstSect);
        this.waiting.push({ io, op, sector: s, firstSect, nrSectors: n, bufOff: (s - sector) * BLKIF_SECTOR_BYTES });
        s += n;
        left -= n;
      }
      this.kick();
      // The parts that got a slot had their data copied into granted pages; the last part is the
      // last to go, so if it still waits, keep the data aside: the caller's buffer is its own again.
      if (op === BLKIF_OP_WRITE && this.waiting.length > 0 && this.waiting[this.waiting.length - 1]!.io === io) io.buf = buf.slice();
    });
  }

  // ─────────────────────────── submission ───────────────────────────

  /** Put waiting requests on the ring while ids, slots and pages last; one push and notify. */
  private kick(): void {
    const ring = this.ring;
    if (!ring || this.phaseNow === 'error' || !this.dev) return;
    let queued = 0;
    while (this.waiting.length > 0 && !ring.full() && this.freeIds.length > 0) {
      const part = this.waiting[0]!;
      const nSegs = part.nrSectors === 0 ? 0 : segmentsFor(part.firstSect, part.nrSectors);
      if (this.freePages.length < nSegs) break;
      this.waiting.shift();
      this.queueRequest(ring, part, nSegs);
      queued++;
    }
    if (queued === 0) return;
    if (ring.pushRequestsAndCheckNotify()) {
      this.notifies++;
      this.o.client.evtchnSend(this.port);
    }
  }

  /** `blkif_queue_rw_req`: id, grants, slot. */
  private queueRequest(ring: BlkifFrontRing, part: Part, nSegs: number): void {
    const c = this.o.client;
    const id = this.freeIds.pop()!;
    // Assertion messages are built only on failure: this runs for every request.
    if (this.shadows[id] !== null) assert(false, `blkfront bug: free id ${id} still has a shadow`);
    const segs: SegUse[] = new Array<SegUse>(nSegs);
    const wire: BlkifSegmentWire[] = new Array<BlkifSegmentWire>(nSegs);
    let sectorsLeft = part.nrSectors;
    let bufOff = part.bufOff;
    for (let i = 0; i < nSegs; i++) {
      const page = this.freePages.pop()!;
      const firstSect = i === 0 ? part.firstSect : 0;
      const lastSect = Math.min(BLKIF_SECTORS_PER_FRAME - 1, firstSect + sectorsLeft - 1);
      const len = (lastSect - firstSect + 1) * BLKIF_SECTOR_BYTES;
      // A write fills the page from the caller's data; a read gives the backend write access, so
      // it must see zeros, never what the page held before.
      const src = part.op === BLKIF_OP_WRITE ? part.io.buf.subarray(bufOff, bufOff + len) : ZERO_PAGE;
      if (c.write(page.gfn, part.op === BLKIF_OP_WRITE ? firstSect * BLKIF_SECTOR_BYTES : 0, src) !== 0) assert(false, `blkfront bug: own gfn ${page.gfn} refused a write`);
      const rc = c.grantForeignAccess(page.gref, this.o.backendDomid, page.gfn, part.op === BLKIF_OP_WRITE);
      if (rc !== 0) assert(false, `blkfront bug: grant ref ${page.gref} for gfn ${page.gfn} refused (${rc}) though its last access was ended`);
      segs[i] = { page, firstSect, lastSect, bufOff };
      wire[i] = { gref: page.gref, first_sect: firstSect, last_sect: lastSect };
      sectorsLeft -= lastSect - firstSect + 1;
      bufOff += len;
    }
    this.shadows[id] = { id, part, segs };
    const r = ring.pushRequest({ operation: part.op, nr_segments: nSegs, handle: this.o.vdev, id, sector_number: part.sector, seg: wire });
    if (!r.ok) assert(false, `blkfront bug: request ${id} refused by the ring (${r.error.kind})`);
    this.inFlight++;
    this.submitted++;
    this.o.events.emit(
      'blk.submit',
      { dom: this.dom, vdev: this.o.vdev, id, op: part.op, sector: part.sector, nrSegments: nSegs, nrSectors: part.nrSectors },
      this.dom,
    );
  }

  // ─────────────────────────── completion ───────────────────────────

  /**
   * `blkif_interrupt`: the event channel fired (or the owner polls). Consumes every response,
   * then `RING_FINAL_CHECK_FOR_RESPONSES`. Never throws for anything the backend wrote.
   */
  interrupt(): void {
    const ring = this.ring;
    const reader = this.reader;
    if (!ring || !reader || this.phaseNow === 'error') return;
    const budget = ring.size * INTERRUPT_ROUNDS_MAX;
    let handled = 0;
    do {
      for (let n = ring.unconsumedResponses(); n > 0; n--) {
        if (++handled > budget) return void this.kick(); // the rest on the next interrupt
        // One copy of the slot, rsp_cons++, then the private copy is checked (parseResponse's rules).
        const rsp = reader.take();
        if (!rsp.ok) {
          const e = rsp.error;
          if (e.kind === 'invalid') return this.deviceError(e.reason);
          return this.deviceError(`backend gave us an unreadable response: ${e.kind === 'bad-slot' ? e.reason : describeBroken(e.broken)}`);
        }
        const { id, operation, status } = rsp.value;
        const sh = id < this.shadows.length ? this.shadows[id] : null;
        if (!sh) return this.deviceError(`backend gave us a response for id ${id}, which is not outstanding`);
        if (operation !== sh.part.op) return this.deviceError(`backend gave us operation ${operation} in the response to id ${id}, a request of operation ${sh.part.op}`);
        this.complete(sh, status);
      }
      if (ring.broken) return this.deviceError(`ring broken: ${describeBroken(ring.broken)}`);
    } while (ring.finalCheckForResponses());
    if (ring.broken) return this.deviceError(`ring broken: ${describeBroken(ring.broken)}`);
    this.kick();
    this.checkDrained();
  }

  /** `blkif_completion`: end each grant (or defer it), copy read data, free the id. */
  private complete(sh: Shadow, status: number): void {
    const c = this.o.client;
    const part = sh.part;
    for (let i = 0; i < sh.segs.length; i++) {
      const s = sh.segs[i]!;
      // XSA-396: one atomic check-and-clear; on success the backend can no longer change the
      // page, so read data is copied from a page that is ours alone.
      this.endOrDefer(s.page, true);
      if (part.op === BLKIF_OP_READ && status === BLKIF_RSP_OKAY) {
        const len = (s.lastSect - s.firstSect + 1) * BLKIF_SECTOR_BYTES;
        if (c.read(s.page.gfn, s.firstSect * BLKIF_SECTOR_BYTES, part.io.buf.subarray(s.bufOff, s.bufOff + len)) !== 0) assert(false, `blkfront bug: own gfn ${s.page.gfn} refused a read`);
      }
    }
    this.shadows[sh.id] = null;
    this.freeIds.push(sh.id);
    this.inFlight--;
    this.completed++;
    this.o.events.emit('blk.complete', { dom: this.dom, vdev: this.o.vdev, id: sh.id, op: part.op, status }, this.dom);
    if (status !== BLKIF_RSP_OKAY && !part.io.failure) {
      part.io.failure = new BlkfrontError(`backend answered request ${sh.id} (sector ${part.sector}) with status ${status}`, status);
    }
    this.partDone(part.io);
  }

  private partDone(io: Io, failure?: BlkfrontError): void {
    if (failure && !io.failure) io.failure = failure;
    if (--io.parts > 0) return;
    if (io.failure) io.reject(io.failure);
    else io.resolve(io.value);
  }

  /** The backend broke the protocol: stop the device, fail all I/O, take back what we can. */
  private deviceError(reason: string): void {
    if (this.phaseNow === 'error') return;
    this.errorReason = reason;
    this.phaseNow = 'error';
    this.ring?.markBroken('backend', reason);
    this.o.events.emit('blk.error', { dom: this.dom, vdev: this.o.vdev, reason }, this.dom);
    this.failAll(new BlkfrontError(`device stopped: ${reason}`));
    this.checkDrained();
  }

  private failAll(e: BlkfrontError): void {
    for (const sh of this.shadows) {
      if (!sh) continue;
      for (const s of sh.segs) this.endOrDefer(s.page, true);
      this.shadows[sh.id] = null;
      this.freeIds.push(sh.id);
      this.inFlight--;
      this.partDone(sh.part.io, e);
    }
    for (const p of this.waiting.splice(0)) this.partDone(p.io, e);
  }

  private checkDrained(): void {
    if (this.inFlight !== 0 || this.waiting.length !== 0) return;
    for (const r of this.drainWaiters.splice(0)) r();
  }

  // ─────────────────────────── deferred end of access ───────────────────────────

  /** `gnttab_end_foreign_access`: end now, or keep the page out of reuse and retry later. */
  private endOrDefer(page: DataPage, data: boolean): void {
    if (this.o.client.endForeignAccess(page.gref)) {
      if (data) this.freePages.push(page);
      return;
    }
    this.deferred.push({ page, data, tries: 0 });
    this.deferredTotal++;
    this.o.events.emit('blk.gnt_deferred', { dom: this.dom, vdev: this.o.vdev, gref: page.gref, gfn: page.gfn, ended: false }, this.dom);
    this.armDeferredTimer();
  }

  private armDeferredTimer(): void {
    if (this.deferredTimer || this.deferred.length === 0) return;
    this.deferredTimer = this.o.clock.setTimer(GNTTAB_DEFERRED_RETRY_MS, () => this.deferredRun());
  }

  /** `gnttab_handle_deferred`: retry the oldest entries; those still mapped go to the back. */
  private deferredRun(): void {
    this.deferredTimer = null;
    let freed = 0;
    for (let i = 0, n = Math.min(GNTTAB_DEFERRED_PER_RUN, this.deferred.length); i < n; i++) {
      const d = this.deferred.shift()!;
      if (this.o.client.endForeignAccess(d.page.gref)) {
        if (d.data) this.freePages.push(d.page);
        freed++;
        this.o.events.emit('blk.gnt_deferred', { dom: this.dom, vdev: this.o.vdev, gref: d.page.gref, gfn: d.page.gfn, ended: true }, this.dom);
      } else {
        d.tries++;
        this.deferred.push(d);
      }
    }
    this.armDeferredTimer();
    if (freed > 0) this.kick();
  }

  /** The refs whose end is deferred (oldest first), for tests and diagnostics. */
  deferredGrefs(): number[] {
    return this.deferred.map((d) => d.page.gref);
  }

  /** Stop the deferred timer (the entries stay listed: their pages are never reused). */
  stopTimers(): void {
    this.deferredTimer?.cancel();
    this.deferredTimer = null;
  }
}

const ZERO_PAGE = new Uint8Array(XEN_PAGE_SIZE);
