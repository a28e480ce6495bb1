/**
 * blkfront against a real in-process hypervisor and XenStore, with a small dom0 backend written
 * here: it maps each segment's grant through its own hypercall client (`mapGrantRef`), moves the
 * data through the memory gate, and answers through blkif's `BlkifBackendPeer`.
 */
import { GNTMAP_host_map, GNTMAP_readonly, GNTST_okay } from '@pvsim/abi';
import {
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_RSP_ERROR,
  BLKIF_RSP_OKAY,
  BLKIF_SLOT_BYTES,
  BlkifBackendPeer,
  blkifResponse,
  buildBackendConnectKeys,
  buildBackendProbeKeys,
  parseFrontendKeys,
  type BlkifDisk,
  type BlkifRequest,
} from '@pvsim/blkif';
import type { EventEmitter, EventKind, EventPayloads } from '@pvsim/eventlog';
import { Hypervisor, createHypervisorSpec, type GnttabMapGrantRef, type HypercallClient } from '@pvsim/hypervisor';
import { SharedRing } from '@pvsim/ring';
import { VirtualClock } from '@pvsim/runtime';
import { LocalXsClient, XenStore, XenbusState, runBackendHandshake, xenbusAddDevice, type BackendEnd } from '@pvsim/xenstore';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { Blkfront, GNTTAB_DEFERRED_RETRY_MS } from './index.js';

const SECTOR = 512;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

function recorder() {
  const events: { kind: string; payload: unknown }[] = [];
  const emitter: EventEmitter = {
    emit(kind, payload) {
      events.push({ kind, payload });
      return events.length;
    },
  };
  const of = <K extends EventKind>(kind: K): EventPayloads[K][] => events.filter((e) => e.kind === kind).map((e) => e.payload as EventPayloads[K]);
  return { events, emitter, of };
}

interface Held {
  handle: number;
  hostGfn: number;
}

/** A dom0 blkback in miniature over a memory disk. */
class MemBackend {
  peer: BlkifBackendPeer | null = null;
  port = -1;
  end: BackendEnd | null = null;
  /** Keep every data grant mapped after answering (a backend that holds on). */
  keepMapped = false;
  /** Hold requests instead of answering them (`pump` does nothing). */
  paused = false;
  readonly held: Held[] = [];
  readonly saw: BlkifRequest[] = [];
  private readonly freeHostGfns: number[];

  constructor(
    private readonly dom0: HypercallClient,
    readonly disk: Uint8Array,
    readonly diskInfo: BlkifDisk,
    private readonly frontDom: number,
  ) {
    this.freeHostGfns = dom0.invalidGfns(0, 400).reverse();
  }

  async start(xs: LocalXsClient, dirs: { frontDir: string; backDir: string }): Promise<void> {
    this.end = await runBackendHandshake(xs, dirs, {
      features: () => Object.fromEntries(buildBackendProbeKeys({ maxRingPageOrder: 0 })),
      frontendKeys: ['ring-ref', 'event-channel', 'protocol', 'feature-persistent'],
      connect: async (front) => {
        const t = parseFrontendKeys(front, { maxRingPageOrder: 0 });
        if (!t.ok) throw new Error(t.error);
        const views = t.value.ringRefs.map((ref) => {
          const op: GnttabMapGrantRef = { hostGfn: this.freeHostGfns.pop()!, flags: GNTMAP_host_map, ref, dom: this.frontDom };
          this.dom0.mapGrantRef([op]);
          if (op.status !== GNTST_okay) throw new Error(`ring map failed ${op.status}`);
          const v = this.dom0.frameView(op.hostGfn);
          if (!v.ok) throw new Error(`ring view refused: ${v.error.reason}`);
          return v.value;
        });
        this.peer = new BlkifBackendPeer(new SharedRing(views, BLKIF_SLOT_BYTES));
        this.port = this.dom0.evtchnBindInterdomain(this.frontDom, t.value.eventChannel);
        if (this.port < 0) throw new Error(`bind failed ${this.port}`);
        return Object.fromEntries(
          buildBackendConnectKeys({ sectors: this.diskInfo.sectors, sectorSize: 512, readOnly: false, featureFlushCache: true, featurePersistent: false }),
        );
      },
    });
  }

  /** Serve every request on the ring; returns how many. */
  pump(): number {
    if (!this.peer || this.paused) return 0;
    const saw = this.peer.serve(this.diskInfo, (req) => this.io(req));
    if (saw.length > 0) this.dom0.evtchnSend(this.port);
    return saw.length;
  }

  private io(req: BlkifRequest): -1 | 0 {
    this.saw.push(req);
    if (req.operation !== BLKIF_OP_READ && req.operation !== BLKIF_OP_WRITE) return BLKIF_RSP_OKAY;
    let pos = req.sector_number * SECTOR;
    for (const s of req.seg) {
      const hostGfn = this.freeHostGfns.pop()!;
      const op: GnttabMapGrantRef = { hostGfn, flags: GNTMAP_host_map | (req.operation === BLKIF_OP_WRITE ? GNTMAP_readonly : 0), ref: s.gref, dom: this.frontDom };
      this.dom0.mapGrantRef([op]);
      if (op.status !== GNTST_okay) {
        this.freeHostGfns.push(hostGfn);
        return BLKIF_RSP_ERROR;
      }
      const off = s.first_sect * SECTOR;
      const len = (s.last_sect - s.first_sect + 1) * SECTOR;
      if (req.operation === BLKIF_OP_WRITE) {
        const tmp = new Uint8Array(len);
        if (this.dom0.read(hostGfn, off, tmp) !== 0) return BLKIF_RSP_ERROR;
        this.disk.set(tmp, pos);
      } else {
        if (this.dom0.write(hostGfn, off, this.disk.subarray(pos, pos + len)) !== 0) return BLKIF_RSP_ERROR;
      }
      pos += len;
      if (this.keepMapped) this.held.push({ handle: op.handle!, hostGfn });
      else this.unmap({ handle: op.handle!, hostGfn });
    }
    return BLKIF_RSP_OKAY;
  }

  unmap(h: Held): void {
    const op = { handle: h.handle, hostGfn: h.hostGfn, status: -1 };
    this.dom0.unmapGrantRef([op]);
    expect(op.status).toBe(GNTST_okay);
    this.freeHostGfns.push(h.hostGfn);
  }

  unmapAll(): void {
    for (const h of this.held.splice(0)) this.unmap(h);
  }
}

interface WorldOpts {
  sectors?: number;
  dataPages?: number;
}

async function world(o: WorldOpts = {}) {
  const rec = recorder();
  const hv = new Hypervisor(createHypervisorSpec({ frames: 2048, maxDomains: 4, gfnsPerDomain: 1024, grantEntries: 1024, maptrackEntries: 512, evtchnPorts: 64 }));
  const ts = hv.toolstack(rec.emitter);
  expect(ts.domainCreate({ domid: 0, name: 'dom0', memoryPages: 16, privileged: true })).toBe(0);
  const dom0 = hv.client(0, rec.emitter);
  const dataPages = o.dataPages ?? 96;
  const guestId = dom0.domainCreate({ name: 'guest', memoryPages: dataPages + 8 });
  expect(guestId).toBeGreaterThan(0);
  const guest = hv.client(guestId, rec.emitter);
  const store = new XenStore();
  const xs = (dom: number) => {
    const c = new LocalXsClient(store, dom, { events: rec.emitter });
    cleanups.push(() => c.close());
    return c;
  };
  const dev = { type: 'vbd', frontDom: guestId, backDom: 0, devid: 51712 };
  const dirs = await xenbusAddDevice(xs(0), dev);
  const sectors = o.sectors ?? 2048;
  const disk = new Uint8Array(sectors * SECTOR);
  const back = new MemBackend(dom0, disk, { sectors, readOnly: false }, guestId);
  await back.start(xs(0), dirs);
  const clock = new VirtualClock();
  const nPages = 1 + dataPages;
  const front = await Blkfront.start({
    client: guest,
    xs: xs(guestId),
    clock,
    events: rec.emitter,
    frontDir: dirs.frontDir,
    backDir: dirs.backDir,
    backendDomid: 0,
    vdev: 51712,
    gfns: Array.from({ length: nPages }, (_, i) => i),
    grantRefs: Array.from({ length: nPages }, (_, i) => 8 + i),
  });
  cleanups.push(() => front.stopTimers());
  await front.waitConnected(5000);

  /** One round of the event loop: backend serves, frontend takes responses. */
  const step = () => {
    back.pump();
    front.interrupt();
  };
  /** Drive both ends until `p` settles (bounded). */
  async function run<T>(p: Promise<T>): Promise<T> {
    let done = false;
    const q = p.finally(() => (done = true));
    q.catch(() => {});
    for (let i = 0; i < 5_000 && !done; i++) {
      step();
      await new Promise((r) => setImmediate(r));
    }
    if (!done) throw new Error(`stalled: ${JSON.stringify(front.stats())} ${front.error}`);
    return q;
  }
  return { hv, rec, dom0, guest, back, front, clock, disk, sectors, run, step, dirs };
}

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 131 + seed * 7 + (i >> 9)) & 0xff);

describe('blkfront handshake', () => {
  it('connects: ring granted, keys published, device properties read', async () => {
    const w = await world();
    expect(w.front.phase).toBe('connected');
    expect(w.front.xenbusState).toBe(XenbusState.Connected);
    expect(w.front.ringSize).toBe(32);
    expect(w.front.device?.sectors).toBe(w.sectors);
    expect(w.front.device?.featureFlushCache).toBe(true);
    expect(w.rec.of('grant.access').some((g) => g.gref === 8 && !g.ro)).toBe(true);
    expect(w.rec.of('evtchn.alloc_unbound').length).toBeGreaterThan(0);
  });
});

describe('blkfront ring pages', () => {
  it('are reached only through the guest\'s own p2m: a ring gfn with no memory stops the handshake with a clear error', async () => {
    const rec = recorder();
    const hv = new Hypervisor(createHypervisorSpec({ frames: 512, maxDomains: 4, gfnsPerDomain: 256, grantEntries: 64, maptrackEntries: 64, evtchnPorts: 32 }));
    expect(hv.toolstack(rec.emitter).domainCreate({ domid: 0, name: 'dom0', memoryPages: 16, privileged: true })).toBe(0);
    const dom0 = hv.client(0, rec.emitter);
    const guestId = dom0.domainCreate({ name: 'guest', memoryPages: 16 });
    const guest = hv.client(guestId, rec.emitter);
    const store = new XenStore();
    const xs = (dom: number) => {
      const c = new LocalXsClient(store, dom, { events: rec.emitter });
      cleanups.push(() => c.close());
      return c;
    };
    const dirs = await xenbusAddDevice(xs(0), { type: 'vbd', frontDom: guestId, backDom: 0, devid: 51712 });
    const back = new MemBackend(dom0, new Uint8Array(64 * SECTOR), { sectors: 64, readOnly: false }, guestId);
    await back.start(xs(0), dirs);
    // gfn 200 was never populated: the ring cannot live there.
    const front = await Blkfront.start({ client: guest, xs: xs(guestId), clock: new VirtualClock(), events: rec.emitter, frontDir: dirs.frontDir, backDir: dirs.backDir, backendDomid: 0, vdev: 51712, gfns: [200, 1, 2, 3], grantRefs: [8, 9, 10, 11] });
    cleanups.push(() => front.stopTimers());
    for (let i = 0; i < 200 && front.xenbusErrors.length === 0; i++) await new Promise((r) => setImmediate(r));
    expect(front.xenbusErrors).toEqual([expect.stringMatching(/ring page gfn 200 cannot be reached \(-22\): no frame at gfn 200/)]);
    expect(rec.of('mem.fault')).toEqual([expect.objectContaining({ dom: guestId, gfn: 200 })]);
    // Nothing was granted or published for a ring that does not exist.
    expect(rec.of('grant.access')).toEqual([]);
    expect(front.xenbusState).not.toBe(XenbusState.Connected);
  });
});

describe('blkfront I/O', () => {
  it('round-trips a write and a read', async () => {
    const w = await world();
    const data = pattern(5 * SECTOR, 1);
    await w.run(w.front.write(3, data));
    expect(w.disk.subarray(3 * SECTOR, 8 * SECTOR)).toEqual(data);
    const back = await w.run(w.front.read(3, 5));
    expect(back).toEqual(data);
    const st = w.front.stats();
    expect(st.inFlight).toBe(0);
    expect(st.freeIds).toBe(32);
    expect(st.deferredGrants).toBe(0);
    // Every data grant ended: the whole pool is free again.
    expect(st.freePages).toBe(96);
  });

  it('buffers: write data is the caller\'s again on return (on the ring or waiting), read results never alias, readInto fills the caller\'s', async () => {
    const w = await world({ dataPages: 8 });
    w.back.paused = true;
    // 8 data pages: the first 8 one-frame writes go on the ring (data copied into the granted
    // pages), the next 4 wait for pages (data kept aside). The caller scribbles over every buffer
    // as soon as write() returns.
    const bufs = Array.from({ length: 12 }, (_, i) => pattern(8 * SECTOR, 40 + i));
    const writes = bufs.map((b, i) => {
      const p = w.front.write(i * 8, b);
      b.fill(0xee);
      return p;
    });
    expect(w.front.stats().waiting).toBe(4);
    w.back.paused = false;
    await w.run(Promise.all(writes));
    for (let i = 0; i < 12; i++) expect(same(w.disk.subarray(i * 8 * SECTOR, (i + 1) * 8 * SECTOR), pattern(8 * SECTOR, 40 + i))).toBe(true);
    // Two reads: distinct memory, untouched by later reads.
    const a = await w.run(w.front.read(0, 8));
    const b = await w.run(w.front.read(8, 8));
    a.fill(0x11);
    expect(same(b, pattern(8 * SECTOR, 41))).toBe(true);
    const c = await w.run(w.front.read(0, 8));
    expect(same(c, pattern(8 * SECTOR, 40))).toBe(true);
    expect(a.every((x) => x === 0x11)).toBe(true);
    // readInto: into the caller's buffer, at its offset; whole sectors only.
    const dst = new Uint8Array(3 * 8 * SECTOR).fill(0x22);
    await w.run(w.front.readInto(16, dst.subarray(8 * SECTOR, 16 * SECTOR)));
    expect(same(dst.subarray(8 * SECTOR, 16 * SECTOR), pattern(8 * SECTOR, 42))).toBe(true);
    expect(dst.subarray(0, 8 * SECTOR).every((x) => x === 0x22) && dst.subarray(16 * SECTOR).every((x) => x === 0x22)).toBe(true);
    await expect(w.front.readInto(0, new Uint8Array(100))).rejects.toThrow(/not whole 512-byte sectors/);
  });

  it('splits at 11 segments with first/last sectors, sector s at s % 8 of its frame', async () => {
    const w = await world();
    // 12 frames from an aligned sector: 11 + 1 segments.
    await w.run(w.front.read(0, 12 * 8));
    const rw = w.back.saw.filter((r) => r.operation === BLKIF_OP_READ);
    expect(rw.map((r) => ('seg' in r ? r.seg.length : -1))).toEqual([11, 1]);
    expect(rw.map((r) => r.sector_number)).toEqual([0, 88]);
    w.back.saw.length = 0;
    // Unaligned: starts at sector 5 of a frame, 90 sectors → first request 11 frames = 83 sectors.
    await w.run(w.front.write(5, pattern(90 * SECTOR, 2)));
    const wr = w.back.saw;
    expect(wr.map((r) => ('seg' in r ? r.seg.length : -1))).toEqual([11, 1]);
    const first = wr[0]!;
    if (!('seg' in first)) throw new Error('rw request expected');
    expect(first.seg[0]!.first_sect).toBe(5);
    expect(first.seg[0]!.last_sect).toBe(7);
    expect(first.seg[10]!.first_sect).toBe(0);
    expect(first.seg[10]!.last_sect).toBe(7);
    expect(first.nr_sectors).toBe(83);
    expect(wr[1]!.sector_number).toBe(5 + 83);
    expect(wr[1]!.nr_sectors).toBe(7);
    expect(w.disk.subarray(5 * SECTOR, 95 * SECTOR)).toEqual(pattern(90 * SECTOR, 2));
    for (const r of [...rw, ...wr]) if ('seg' in r) expect(r.seg.length).toBeLessThanOrEqual(BLKIF_MAX_SEGMENTS_PER_REQUEST);
  });

  it('grants data pages read-only for writes, writable for reads', async () => {
    const w = await world();
    await w.run(w.front.write(0, pattern(SECTOR, 3)));
    await w.run(w.front.read(0, 1));
    const data = w.rec.of('grant.access').filter((g) => g.gref !== 8);
    expect(data.map((g) => g.ro)).toEqual([true, false]);
  });

  it('keeps data integrity over thousands of random concurrent ops against a model', async () => {
    const w = await world({ sectors: 1024, dataPages: 64 });
    const model = new Uint8Array(w.disk.length);
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            write: fc.boolean(),
            sector: fc.nat({ max: 1023 }),
            count: fc.integer({ min: 1, max: 200 }),
            seed: fc.nat({ max: 255 }),
          }),
          { minLength: 1, maxLength: 12 },
        ),
        async (batch) => {
          // Writes of one batch touch disjoint sectors so the model order does not matter.
          const claimed = new Uint8Array(1024);
          const ops: Promise<void>[] = [];
          for (const b of batch) {
            const count = Math.min(b.count, 1024 - b.sector);
            if (b.write) {
              let clash = false;
              for (let s = b.sector; s < b.sector + count; s++) if (claimed[s]) clash = true;
              if (clash) continue;
              claimed.fill(1, b.sector, b.sector + count);
              const data = pattern(count * SECTOR, b.seed);
              model.set(data, b.sector * SECTOR);
              ops.push(w.front.write(b.sector, data));
            }
          }
          await w.run(Promise.all(ops));
          const reads = batch.filter((b) => !b.write).map((b) => ({ sector: b.sector, count: Math.min(b.count, 1024 - b.sector) }));
          const got = await w.run(Promise.all(reads.map((r) => w.front.read(r.sector, r.count))));
          // Buffer.equals: vitest's deep equality walks typed arrays element by element.
          reads.forEach((r, i) => expect(same(got[i]!, model.subarray(r.sector * SECTOR, (r.sector + r.count) * SECTOR))).toBe(true));
        },
      ),
      { numRuns: 250, seed: 0x5eed, endOnFailure: true },
    );
    expect(w.front.stats().completed).toBeGreaterThan(2000);
    expect(same(w.disk, model)).toBe(true);
    expect(w.front.error).toBeNull();
  }, 60_000);

  it('reuses an id only after its completion, and bounds in-flight requests by the ring size', async () => {
    const w = await world({ dataPages: 400 });
    w.back.paused = true;
    const ios = Array.from({ length: 40 }, (_, i) => w.front.read(i * 8, 8));
    // 40 one-frame reads: 32 on the ring (ring size = ids), 8 waiting.
    expect(w.front.stats().inFlight).toBe(32);
    expect(w.front.stats().waiting).toBe(8);
    expect(w.front.stats().freeIds).toBe(0);
    w.back.paused = false;
    await w.run(Promise.all(ios));
    const outstanding = new Set<number>();
    for (const e of w.rec.events) {
      if (e.kind === 'blk.submit') {
        const id = (e.payload as EventPayloads['blk.submit']).id;
        expect(outstanding.has(id)).toBe(false);
        outstanding.add(id);
      } else if (e.kind === 'blk.complete') {
        const id = (e.payload as EventPayloads['blk.complete']).id;
        expect(outstanding.delete(id)).toBe(true);
      }
    }
    expect(outstanding.size).toBe(0);
    expect(w.rec.of('blk.submit').length).toBe(40);
  });

  it('notifies only when the backend asked (req_event)', async () => {
    const w = await world();
    const before = w.front.stats().notifies;
    w.back.paused = true;
    const a = w.front.read(0, 1);
    const b = w.front.read(8, 1); // backend has not consumed: req_event already passed, no notify
    expect(w.front.stats().notifies).toBe(before + 1);
    w.back.paused = false;
    await w.run(Promise.all([a, b]));
  });

  it('flush sends FLUSH_DISKCACHE with no segments', async () => {
    const w = await world();
    await w.run(w.front.flush());
    expect(w.back.saw.at(-1)?.operation).toBe(3);
    expect(w.back.saw.at(-1)?.nr_sectors).toBe(0);
  });

  it('rejects bad extents and partial sectors without touching the ring', async () => {
    const w = await world();
    await expect(w.front.read(w.sectors, 1)).rejects.toThrow(/beyond the disk/);
    await expect(w.front.read(-1, 1)).rejects.toThrow(/bad extent/);
    await expect(w.front.write(0, new Uint8Array(100))).rejects.toThrow(/whole 512-byte sectors/);
    expect(w.front.stats().submitted).toBe(0);
  });

  it('a backend error status fails that I/O only', async () => {
    const w = await world({ sectors: 64 });
    // A request the backend's validator rejects: forge one beyond the disk via a smaller disk view.
    (w.back as unknown as { diskInfo: BlkifDisk }).diskInfo = { sectors: 8, readOnly: false };
    await expect(w.run(w.front.read(16, 1))).rejects.toMatchObject({ status: BLKIF_RSP_ERROR });
    (w.back as unknown as { diskInfo: BlkifDisk }).diskInfo = { sectors: 64, readOnly: false };
    expect(w.front.error).toBeNull();
    await w.run(w.front.read(16, 1));
    expect(w.front.stats().freePages).toBe(96);
  });
});

describe('blkfront deferred end of foreign access', () => {
  it('defers while the backend keeps a grant mapped, keeps the page out of reuse, ends it on the timer after unmap', async () => {
    const w = await world({ dataPages: 4 });
    w.back.keepMapped = true;
    const data = pattern(3 * SECTOR, 9);
    await w.run(w.front.write(0, data)); // one segment
    expect(w.front.stats().deferredGrants).toBe(1);
    const [deferredRef] = w.front.deferredGrefs();
    expect(w.rec.of('blk.gnt_deferred')).toEqual([expect.objectContaining({ gref: deferredRef, ended: false })]);
    expect(w.rec.of('grant.end').filter((e) => e.gref === deferredRef).map((e) => e.ok)).toEqual([false]);
    expect(w.front.stats().freePages).toBe(3);
    // More I/O: the deferred page is never granted again.
    w.back.keepMapped = false;
    for (let i = 0; i < 6; i++) await w.run(w.front.read(8 * i, 8));
    const reuse = w.rec.of('grant.access').filter((g) => g.gref === deferredRef);
    expect(reuse.length).toBe(1);
    // The timer retries while still mapped (no success), then ends it once the backend unmaps.
    w.clock.advance(GNTTAB_DEFERRED_RETRY_MS);
    expect(w.front.stats().deferredGrants).toBe(1);
    w.back.unmapAll();
    w.clock.advance(GNTTAB_DEFERRED_RETRY_MS - 1);
    expect(w.front.stats().deferredGrants).toBe(1);
    w.clock.advance(1);
    expect(w.front.stats().deferredGrants).toBe(0);
    expect(w.front.stats().deferredTotal).toBe(1);
    expect(w.front.stats().freePages).toBe(4);
    expect(w.rec.of('blk.gnt_deferred').at(-1)).toMatchObject({ gref: deferredRef, ended: true });
    // Now it can be used again.
    await w.run(Promise.all([w.front.read(0, 32)]));
    expect(w.rec.of('grant.access').filter((g) => g.gref === deferredRef).length).toBe(2);
  });

  it('I/O waits for pages when every free page is deferred, and proceeds when the timer frees them', async () => {
    const w = await world({ dataPages: 2 });
    w.back.keepMapped = true;
    await w.run(w.front.read(0, 16)); // both pages deferred
    expect(w.front.stats().freePages).toBe(0);
    w.back.keepMapped = false;
    const p = w.front.read(0, 8);
    p.catch(() => {});
    for (let i = 0; i < 20; i++) w.step();
    expect(w.front.stats().waiting).toBe(1);
    w.back.unmapAll();
    w.clock.advance(GNTTAB_DEFERRED_RETRY_MS);
    await w.run(p);
    expect(w.front.stats().deferredGrants).toBe(0);
  });
});

describe('blkfront against a misbehaving backend', () => {
  it('a response with an unknown id is a device error, not a crash', async () => {
    const w = await world();
    w.back.paused = true;
    const p = w.front.read(0, 8);
    const peer = w.back.peer!;
    // Consume the request, answer with an id that was never issued.
    expect(peer.takeRaw().length).toBe(1);
    peer.respond(blkifResponse(777, BLKIF_OP_READ, BLKIF_RSP_OKAY));
    peer.push();
    expect(() => w.front.interrupt()).not.toThrow();
    await expect(p).rejects.toThrow(/id 777, which is not outstanding/);
    expect(w.front.phase).toBe('error');
    expect(w.rec.of('blk.error')).toHaveLength(1);
    await expect(w.front.read(0, 1)).rejects.toThrow(/device stopped/);
    // The grant of the failed request was still taken back (nothing mapped it).
    expect(w.front.stats().freePages).toBe(96);
  });

  it('a duplicate response (id already completed) is a device error', async () => {
    const w = await world();
    w.back.paused = true;
    const p = w.front.read(0, 1);
    const q = w.front.read(8, 1);
    q.catch(() => {});
    const peer = w.back.peer!;
    const reqs = peer.takeRaw();
    const id0 = (reqs[0]!.ok ? (reqs[0]!.value as { id: number }).id : -1);
    peer.respond(blkifResponse(id0, BLKIF_OP_READ, BLKIF_RSP_OKAY));
    peer.respond(blkifResponse(id0, BLKIF_OP_READ, BLKIF_RSP_OKAY));
    peer.push();
    w.front.interrupt();
    await expect(p).resolves.toBeInstanceOf(Uint8Array);
    await expect(q).rejects.toThrow(/not outstanding/);
    expect(w.front.phase).toBe('error');
  });

  it('garbage in a response slot, a wrong operation, and a forged rsp_prod are device errors', async () => {
    for (const bad of ['garbage', 'op', 'rsp_prod'] as const) {
      const w = await world();
      w.back.paused = true;
      const p = w.front.read(0, 1);
      p.catch(() => {});
      const peer = w.back.peer!;
      const reqs = peer.takeRaw();
      const id = reqs[0]!.ok ? (reqs[0]!.value as { id: number }).id : -1;
      if (bad === 'garbage') peer.respondRaw(Uint8Array.from([0xff, 0xff, 0xc1, 0xc1]));
      else if (bad === 'op') peer.respond(blkifResponse(id, BLKIF_OP_WRITE, BLKIF_RSP_OKAY));
      if (bad === 'rsp_prod') peer.forgeRspProd(1000);
      else peer.push();
      expect(() => w.front.interrupt()).not.toThrow();
      await expect(p).rejects.toThrow(/device stopped/);
      expect(w.front.error).not.toBeNull();
      for (const f of cleanups.splice(0).reverse()) await f();
    }
  });
});

describe('blkfront close', () => {
  it('drains in-flight I/O, then goes Closing → Closed', async () => {
    const w = await world();
    w.back.paused = true;
    const ios = [w.front.write(0, pattern(64 * SECTOR, 4)), w.front.read(100, 100)];
    const closing = w.front.close(5000);
    expect(w.front.phase).toBe('closing');
    await expect(w.front.read(0, 1)).rejects.toThrow(/closing/);
    w.back.paused = false;
    await w.run(Promise.all(ios));
    await closing;
    expect(w.front.phase).toBe('closed');
    expect(w.front.xenbusState).toBe(XenbusState.Closed);
    expect(w.disk.subarray(0, 64 * SECTOR)).toEqual(pattern(64 * SECTOR, 4));
    // Ring pages: the backend still maps the ring page, so its end is deferred, not forced.
    expect(w.rec.of('grant.end').filter((e) => e.gref === 8).length).toBeGreaterThan(0);
  });
});
