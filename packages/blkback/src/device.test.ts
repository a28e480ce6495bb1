import { REQ_EVENT } from '@pvsim/ring';
/**
 * blkback against a real hypervisor + kernel: each unmap policy with a page someone still holds,
 * data integrity against a model, every hostile request of the issue, disconnect while busy.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EBUSY, type GrantRef } from '@pvsim/abi';
import { BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, BLKIF_SLOT_BYTES, BlkifFrontendPeer, type BlkifRequestWire } from '@pvsim/blkif';
import { runAuditors, type EventEmitter, type EventKind, type EventPayloads, type EventRecord } from '@pvsim/eventlog';
import { GATE_FAULT, GATE_OK, Hypervisor, createHypervisorSpec, type HypercallClient } from '@pvsim/hypervisor';
import { Kernel, createPageTableSpec, get_page, page_count, put_page, type Page } from '@pvsim/kernel';
import { SharedRing } from '@pvsim/ring';
import { VirtualClock } from '@pvsim/runtime';
import { describe, expect, it } from 'vitest';
import { BlkbackDevice, FileDisk, MemoryDisk, blkResponseAfterUnmapAuditor, kernelRingMapper, type BackingDevice, type UnmapPolicy } from './index.js';

const GUEST_PAGES = 256;
const GFNS = 512;

/** The client's own page at `gfn` as shared memory (the frontend's ring, played here). */
function ownView(c: HypercallClient, gfn: number): Uint8Array {
  const v = c.frameView(gfn);
  if (!v.ok) throw new Error(v.error.reason);
  return v.value;
}

function boot(opts: { policy?: UnmapPolicy; disk?: BackingDevice; batchMax?: number } = {}) {
  const events: { kind: string; payload: unknown; mappingsHeld: number }[] = [];
  let held = () => 0;
  const emitter: EventEmitter = {
    emit(kind, payload) {
      events.push({ kind, payload, mappingsHeld: held() });
      return events.length;
    },
  };
  const of = <K extends EventKind>(kind: K): EventPayloads[K][] => events.filter((e) => e.kind === kind).map((e) => e.payload as EventPayloads[K]);
  const spec = createHypervisorSpec({ frames: 2048, maxDomains: 4, gfnsPerDomain: GFNS, grantEntries: 512, maptrackEntries: 512, evtchnPorts: 32 });
  const hv = new Hypervisor(spec);
  expect(hv.toolstack(emitter).domainCreate({ domid: 0, name: 'dom0', memoryPages: 64, privileged: true })).toBe(0);
  const dom0 = hv.client(0, emitter);
  held = () => dom0.mappingsHeld();
  const gid = dom0.domainCreate({ name: 'guest', memoryPages: GUEST_PAGES });
  const guest = hv.client(gid, emitter);
  // Ring at guest gfn 0 (ref 0); data pages gfn r as ref r.
  for (let r = 0; r < GUEST_PAGES; r++) expect(guest.grantForeignAccess(r, 0, r, false)).toBe(0);
  const sring = new SharedRing([ownView(guest, 0)], BLKIF_SLOT_BYTES);
  sring.init();
  const front = new BlkifFrontendPeer(0, sring);
  const port = guest.evtchnAllocUnbound(0);
  const clock = new VirtualClock();
  const kernel = new Kernel({ client: dom0, pages: createPageTableSpec(0, GFNS), clock, events: emitter });
  const mapped: Page[] = [];
  const orig = kernel.gnttab_map_refs.bind(kernel);
  kernel.gnttab_map_refs = (ops, pages) => {
    const rc = orig(ops, pages);
    mapped.push(...pages);
    return rc;
  };
  const disk = opts.disk ?? new MemoryDisk(256);
  const dev = new BlkbackDevice({ client: dom0, kernel, clock, events: emitter, disk, policy: opts.policy ?? 'async', ringMapper: kernelRingMapper(kernel), ...(opts.batchMax ? { batchMax: opts.batchMax } : {}) });
  const c = dev.connect({ frontDom: gid, ringRefs: [0 as GrantRef], eventChannel: port });
  expect(c).toEqual({ ok: true, value: undefined });
  mapped.length = 0;
  /** Let I/O promises and due timers run (virtual time moves `ms`). */
  const settle = async (ms = 1) => {
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setImmediate(r));
      clock.advance(ms);
    }
  };
  const submit = (req: Partial<BlkifRequestWire> & { seg?: { gref: number; first_sect: number; last_sect: number }[] }) => {
    const seg = req.seg ?? [{ gref: 1, first_sect: 0, last_sect: 7 }];
    const r = front.request({ operation: BLKIF_OP_WRITE, nr_segments: seg.length, handle: 0, id: 1, sector_number: 0, ...req, seg } as BlkifRequestWire);
    expect(r.ok).toBe(true);
    front.push();
  };
  const responses = () => front.responses().map((r) => (r.ok ? r.value : expect.unreachable(JSON.stringify(r.error))));
  return { hv, dom0, guest, gid, front, sring, clock, kernel, dev, disk, events, of, mapped, settle, submit, responses };
}

const fill = (v: number) => new Uint8Array(4096).fill(v);

describe('unmap policies with a page still held (a TCP retransmit keeps a reference)', () => {
  for (const policy of ['sync', 'replace', 'async'] as const) {
    it(`${policy}`, async () => {
      const b = boot({ policy });
      expect(b.guest.write(1, 0, fill(0xab))).toBe(GATE_OK);
      b.submit({ id: 7 });
      b.dev.kick();
      expect(b.mapped).toHaveLength(1);
      const page = b.mapped[0]!;
      get_page(page);
      const stamp = page.stamp();
      await b.settle();
      const buf = new Uint8Array(16);
      if (policy === 'sync') {
        // The bug: the response went out with the page unmapped under its holder.
        expect(b.responses()).toEqual([{ id: 7, operation: BLKIF_OP_WRITE, status: BLKIF_RSP_OKAY }]);
        expect(b.dom0.read(page.gfn, 0, buf, stamp)).toBe(GATE_FAULT);
        expect(b.of('mem.fault')).toHaveLength(1);
        put_page(page);
      } else if (policy === 'replace') {
        expect(b.responses()).toEqual([{ id: 7, operation: BLKIF_OP_WRITE, status: BLKIF_RSP_OKAY }]);
        expect(b.dom0.read(page.gfn, 0, buf, stamp)).toBe(GATE_OK);
        expect(b.of('mem.leak')).toHaveLength(1);
        expect(buf[0]).not.toBe(0xab);
        put_page(page);
      } else {
        // The fix: nothing until the holder lets go, then unmap, then the response.
        await b.settle(50);
        expect(b.responses()).toEqual([]);
        expect(b.of('grant.unmap.deferred').length).toBeGreaterThan(1);
        expect(b.dev.inflight).toBe(1);
        put_page(page);
        await b.settle(50);
        expect(b.responses()).toEqual([{ id: 7, operation: BLKIF_OP_WRITE, status: BLKIF_RSP_OKAY }]);
        const kinds = b.events.map((e) => e.kind);
        expect(kinds.indexOf('grant.unmap.done')).toBeLessThan(kinds.indexOf('blk.response'));
        expect(b.of('mem.fault')).toHaveLength(0);
        expect(b.of('mem.leak')).toHaveLength(0);
      }
      // The write reached the disk whatever the policy.
      expect((b.disk as MemoryDisk).bytes.subarray(0, 4096)).toEqual(fill(0xab));
      expect(b.dev.inflight).toBe(0);
    });
  }

  it('async: no response while any grant of the frontend is still mapped (besides the ring)', async () => {
    const b = boot({ policy: 'async' });
    for (let i = 0; i < 20; i++) b.submit({ id: i, operation: i % 2 ? BLKIF_OP_READ : BLKIF_OP_WRITE, sector_number: i * 8, seg: [{ gref: 1 + i, first_sect: 0, last_sect: 7 }, { gref: 100 + i, first_sect: 2, last_sect: 3 }] });
    b.dev.kick();
    const held = b.mapped.filter((_, i) => i % 3 === 0);
    for (const p of held) get_page(p);
    await b.settle(10);
    for (const p of held) put_page(p);
    await b.settle(50);
    expect(b.responses()).toHaveLength(20);
    const rsp = b.events.filter((e) => e.kind === 'blk.response');
    expect(rsp).toHaveLength(20);
    // A request's own pages are unmapped before its response; other requests may still hold theirs.
    expect(rsp.at(-1)!.mappingsHeld).toBe(1);
  });
});

describe('blk.unmap.deferred (async: the request waits for a held page)', () => {
  it('one per deferral, naming the request, with its age; all before the blk.response', async () => {
    const b = boot({ policy: 'async' });
    b.dev.vdev = 51712;
    b.submit({ id: 42, seg: [{ gref: 1, first_sect: 0, last_sect: 7 }, { gref: 2, first_sect: 0, last_sect: 7 }] });
    b.dev.kick();
    expect(b.mapped).toHaveLength(2);
    get_page(b.mapped[1]!);
    await b.settle(20);
    expect(b.responses()).toEqual([]);
    put_page(b.mapped[1]!);
    await b.settle(50);
    expect(b.responses()).toEqual([{ id: 42, operation: BLKIF_OP_WRITE, status: BLKIF_RSP_OKAY }]);
    const deferred = b.of('blk.unmap.deferred');
    expect(deferred.length).toBeGreaterThan(1);
    // One per attempt that found the page held: ages 0, 1, 2…, delays 5·(age+1) ms.
    expect(deferred).toEqual(deferred.map((_, age) => ({ dom: b.gid, vdev: 51712, id: 42, age, delayMs: 5 * (age + 1), busyPages: 1 })));
    // Each follows the kernel's own record of the same deferral, and the response follows them all.
    const kinds = b.events.map((e) => e.kind).filter((k) => k === 'grant.unmap.deferred' || k === 'blk.unmap.deferred' || k === 'blk.response');
    expect(kinds).toEqual([...deferred.flatMap(() => ['grant.unmap.deferred', 'blk.unmap.deferred']), 'blk.response']);
  });

  it('none when no page is held, whatever the policy', async () => {
    for (const policy of ['async', 'sync', 'replace'] as const) {
      const b = boot({ policy });
      for (let i = 0; i < 4; i++) b.submit({ id: i, sector_number: i * 8, seg: [{ gref: 1 + i, first_sect: 0, last_sect: 7 }] });
      b.dev.kick();
      await b.settle(10);
      expect(b.responses()).toHaveLength(4);
      expect(b.of('blk.unmap.deferred')).toEqual([]);
      expect(b.of('grant.unmap.deferred')).toEqual([]);
    }
  });
});

/** Deterministic PRNG (mulberry32). */
function prng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('data integrity', () => {
  for (const policy of ['async', 'sync'] as const) {
    it(`${policy}: 2000 random writes and reads in batches agree with a model`, { timeout: 30_000 }, async () => {
      const SECTORS = 256;
      const b = boot({ policy, disk: new MemoryDisk(SECTORS), batchMax: 5 });
      const model = new Uint8Array(SECTORS * 512);
      const rnd = prng(policy === 'async' ? 1 : 2);
      const int = (n: number) => Math.floor(rnd() * n);
      let id = 0;
      let checked = 0;
      while (id < 2000) {
        const batch: { id: number; op: number; segs: { gref: number; first: number; last: number }[]; expect?: Uint8Array }[] = [];
        let gref = 1;
        for (let k = 1 + int(12); k > 0; k--) {
          const nseg = 1 + int(4);
          const segs = Array.from({ length: nseg }, () => {
            const first = int(8);
            return { gref: gref++, first, last: first + int(8 - first) };
          });
          const nsec = segs.reduce((a, s) => a + s.last - s.first + 1, 0);
          const sector = int(SECTORS - nsec + 1);
          const op = rnd() < 0.5 ? BLKIF_OP_WRITE : BLKIF_OP_READ;
          let off = sector * 512;
          const entry: (typeof batch)[number] = { id: id++, op, segs };
          if (op === BLKIF_OP_WRITE) {
            for (const s of segs) {
              const data = new Uint8Array((s.last - s.first + 1) * 512);
              for (let q = 0; q < data.length; q += 64) data.fill(int(256), q, q + 64);
              expect(b.guest.write(s.gref, s.first * 512, data)).toBe(GATE_OK);
              model.set(data, off);
              off += data.length;
            }
          } else {
            entry.expect = model.slice(off, off + nsec * 512);
            for (const s of segs) expect(b.guest.write(s.gref, 0, fill(0xee))).toBe(GATE_OK);
          }
          batch.push(entry);
          b.submit({ id: entry.id, operation: op, sector_number: sector, seg: segs.map((s) => ({ gref: s.gref, first_sect: s.first, last_sect: s.last })) });
        }
        b.dev.kick();
        await b.settle();
        const rsp = b.responses();
        expect(rsp.map((r) => r.id).sort((x, y) => x - y)).toEqual(batch.map((e) => e.id));
        expect(rsp.every((r) => r.status === BLKIF_RSP_OKAY)).toBe(true);
        for (const e of batch) {
          if (!e.expect) continue;
          let off = 0;
          for (const s of e.segs) {
            const got = new Uint8Array((s.last - s.first + 1) * 512);
            expect(b.guest.read(s.gref, s.first * 512, got)).toBe(GATE_OK);
            expect(got).toEqual(e.expect.subarray(off, off + got.length));
            off += got.length;
            checked++;
          }
        }
      }
      expect((b.disk as MemoryDisk).bytes).toEqual(model);
      expect(checked).toBeGreaterThan(500);
      expect(b.of('mem.fault')).toHaveLength(0);
      expect(b.dom0.mappingsHeld()).toBe(1);
    });
  }
});

describe('a hostile frontend', () => {
  const cases: [string, Record<string, unknown>][] = [
    ['a bad gref', { seg: [{ gref: 1, first_sect: 0, last_sect: 7 }, { gref: 500, first_sect: 0, last_sect: 7 }] }],
    ['12 segments', { seg: Array.from({ length: 12 }, (_, i) => ({ gref: 1 + i, first_sect: 0, last_sect: 0 })) }],
    ['first_sect > last_sect', { seg: [{ gref: 1, first_sect: 5, last_sect: 4 }] }],
    ['last_sect >= 8', { seg: [{ gref: 1, first_sect: 0, last_sect: 8 }] }],
    ['a sector beyond the disk', { sector_number: 250 }],
  ];
  for (const [what, fields] of cases) {
    it(`${what}: that request gets BLKIF_RSP_ERROR, the backend stays up`, async () => {
      const b = boot();
      const seg = (fields.seg as { gref: number }[] | undefined) ?? [{ gref: 1, first_sect: 0, last_sect: 7 }];
      expect(b.front.requestAny({ operation: BLKIF_OP_WRITE, nr_segments: seg.length, handle: 0, id: 9, sector_number: 0, ...fields, seg })).toBe(true);
      b.front.push();
      b.submit({ id: 10, sector_number: 8 });
      b.dev.kick();
      await b.settle();
      expect(b.responses()).toEqual([
        { id: 9, operation: BLKIF_OP_WRITE, status: BLKIF_RSP_ERROR },
        { id: 10, operation: BLKIF_OP_WRITE, status: BLKIF_RSP_OKAY },
      ]);
      expect(b.dev.halted).toBeNull();
      expect(b.dom0.mappingsHeld()).toBe(1);
      expect(b.disk instanceof MemoryDisk && b.disk.bytes.subarray(0, 4096).every((x) => x === 0)).toBe(true);
    });
  }

  it('a write to a read-only disk: BLKIF_RSP_ERROR; reads still work', async () => {
    const b = boot({ disk: new MemoryDisk(64, 512, true, new Uint8Array(64 * 512).fill(3)) });
    b.submit({ id: 1 });
    b.submit({ id: 2, operation: BLKIF_OP_READ });
    b.dev.kick();
    await b.settle();
    expect(b.responses().map((r) => r.status)).toEqual([BLKIF_RSP_ERROR, BLKIF_RSP_OKAY]);
    const got = new Uint8Array(4096);
    b.guest.read(1, 0, got);
    expect(got.every((x) => x === 3)).toBe(true);
  });

  it('req_prod far ahead: the ring is halted, the device can still disconnect, nothing throws', async () => {
    const b = boot();
    const halts: string[] = [];
    b.dev.onHalt = (r) => halts.push(r);
    b.submit({ id: 1 });
    b.front.forgeReqProd(1000);
    expect(() => b.dev.kick()).not.toThrow();
    await b.settle();
    expect(b.dev.halted).toMatch(/bogus ring requests/);
    expect(halts).toHaveLength(1);
    expect(b.of('blk.ring.halted')).toHaveLength(1);
    expect(b.of('blk.request')).toHaveLength(0);
    b.dev.kick(); // halted: no more processing
    expect(b.dev.disconnect()).toBe(0);
    expect(b.dom0.mappingsHeld()).toBe(0);
  });

  it('a slot rewritten after consumption has no effect', async () => {
    const b = boot({ policy: 'sync' });
    b.guest.write(1, 0, fill(0x11));
    b.guest.write(2, 0, fill(0x22));
    b.submit({ id: 1, sector_number: 0, seg: [{ gref: 1, first_sect: 0, last_sect: 0 }] });
    b.dev.kick();
    // Rewrite slot 0 in place: other gref, other sector, other id.
    const evil = new BlkifFrontendPeer(0, b.sring);
    const before = b.sring.header.slice();
    evil.request({ operation: BLKIF_OP_WRITE, nr_segments: 1, handle: 0, id: 99, sector_number: 40, seg: [{ gref: 2, first_sect: 0, last_sect: 7 }] });
    b.sring.header.set(before);
    await b.settle();
    expect(b.responses()).toEqual([{ id: 1, operation: BLKIF_OP_WRITE, status: BLKIF_RSP_OKAY }]);
    const bytes = (b.disk as MemoryDisk).bytes;
    expect(bytes.subarray(0, 512).every((x) => x === 0x11)).toBe(true);
    expect(bytes.every((x, i) => i < 512 || x === 0)).toBe(true);
  });

  it('bounded work per pass: batchMax requests per kick, the rest on the next pass', async () => {
    const b = boot({ batchMax: 4 });
    for (let i = 0; i < 10; i++) b.submit({ id: i, sector_number: i, seg: [{ gref: 1 + i, first_sect: 0, last_sect: 0 }] });
    b.dev.kick();
    expect(b.of('blk.request')).toHaveLength(4);
    await b.settle();
    expect(b.of('blk.request')).toHaveLength(10);
    expect(b.responses()).toHaveLength(10);
  });
});

describe('notification after a full pass', () => {
  it('a pass that ends exactly at batchMax with the ring empty still re-arms req_event', async () => {
    const b = boot({ batchMax: 4 });
    for (let i = 0; i < 4; i++) b.submit({ id: i, sector_number: i, seg: [{ gref: 1 + i, first_sect: 0, last_sect: 0 }] });
    b.dev.kick();
    await b.settle();
    expect(b.responses()).toHaveLength(4);
    // The frontend's next push must be asked to notify (req_event = req_cons + 1), or it would
    // never ring the backend again and the device would stall with requests on the ring.
    expect(Atomics.load(b.sring.header, REQ_EVENT)).toBe(5);
  });
});

describe('disconnect', () => {
  it('waits (EBUSY) while requests are in flight', async () => {
    const b = boot({ policy: 'async' });
    b.submit({ id: 1 });
    b.dev.kick();
    const page = b.mapped[0]!;
    get_page(page);
    await b.settle(10);
    expect(b.dev.disconnect()).toBe(-EBUSY);
    let done = false;
    const p = b.dev.disconnectWhenIdle().then(() => (done = true));
    await b.settle(10);
    expect(done).toBe(false);
    expect(b.dev.connected).toBe(true);
    put_page(page);
    await b.settle(50);
    await p;
    expect(done).toBe(true);
    expect(b.dev.connected).toBe(false);
    expect(b.dom0.mappingsHeld()).toBe(0);
    expect(page_count(page)).toBe(0);
  });
});

describe('FileDisk', () => {
  it('round trip, directly and through blkback', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blkback-'));
    try {
      const disk = await FileDisk.open(join(dir, 'disk.img'), { sizeBytes: 64 * 512 });
      expect(disk.sectors).toBe(64);
      await disk.write(3, new Uint8Array(1024).fill(5));
      expect(await disk.read(3, 2)).toEqual(new Uint8Array(1024).fill(5));
      const b = boot({ disk });
      b.guest.write(1, 0, fill(0x42));
      b.submit({ id: 1, sector_number: 8 });
      b.submit({ id: 2, operation: BLKIF_OP_READ, sector_number: 3, seg: [{ gref: 2, first_sect: 1, last_sect: 2 }] });
      b.dev.kick();
      let rsp: ReturnType<typeof b.responses> = [];
      for (let i = 0; i < 200 && rsp.length < 2; i++) {
        await new Promise((r) => setTimeout(r, 2));
        b.clock.advance(1);
        rsp = rsp.concat(b.responses());
      }
      expect(rsp.map((r) => r.status)).toEqual([BLKIF_RSP_OKAY, BLKIF_RSP_OKAY]);
      await disk.flush();
      expect(await disk.read(8, 8)).toEqual(fill(0x42).subarray(0, 4096));
      const got = new Uint8Array(1024);
      b.guest.read(2, 512, got);
      expect(got.every((x) => x === 5)).toBe(true);
      await disk.close();
      const ro = await FileDisk.open(join(dir, 'disk.img'), { readOnly: true });
      expect(ro.readOnly).toBe(true);
      expect((await ro.read(8, 1))[0]).toBe(0x42);
      await expect(ro.write(0, new Uint8Array(512))).rejects.toThrow(/read-only/);
      await ro.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('two disks of one guest', () => {
  /** One guest with two rings (gfn 0 → xvda, gfn 1 → xvdb), a device each, events as records. */
  function twoDisks(policy: UnmapPolicy) {
    const events: EventRecord[] = [];
    const emitter: EventEmitter = {
      emit(kind, payload, dom) {
        events.push({ seq: events.length + 1, tsNs: events.length + 1, dom: dom ?? -1, thread: 0, kind, v: 1, payload } as EventRecord);
        return events.length;
      },
    };
    const hv = new Hypervisor(createHypervisorSpec({ frames: 2048, maxDomains: 4, gfnsPerDomain: GFNS, grantEntries: 512, maptrackEntries: 512, evtchnPorts: 32 }));
    expect(hv.toolstack(emitter).domainCreate({ domid: 0, name: 'dom0', memoryPages: 64, privileged: true })).toBe(0);
    const dom0 = hv.client(0, emitter);
    const gid = dom0.domainCreate({ name: 'guest', memoryPages: GUEST_PAGES });
    const guest = hv.client(gid, emitter);
    for (let r = 0; r < GUEST_PAGES; r++) expect(guest.grantForeignAccess(r, 0, r, false)).toBe(0);
    const clock = new VirtualClock();
    const kernel = new Kernel({ client: dom0, pages: createPageTableSpec(0, GFNS), clock, events: emitter });
    const devs = [51712, 51728].map((vdev, ring) => {
      const sring = new SharedRing([ownView(guest, ring)], BLKIF_SLOT_BYTES);
      sring.init();
      const front = new BlkifFrontendPeer(0, sring);
      const dev = new BlkbackDevice({ client: dom0, kernel, clock, events: emitter, disk: new MemoryDisk(256), policy, vdev, ringMapper: kernelRingMapper(kernel) });
      expect(dev.connect({ frontDom: gid, ringRefs: [ring as GrantRef], eventChannel: guest.evtchnAllocUnbound(0) })).toEqual({ ok: true, value: undefined });
      return { vdev, front, dev };
    });
    const settle = async (ms = 1) => {
      for (let i = 0; i < 4; i++) {
        await new Promise((r) => setImmediate(r));
        clock.advance(ms);
      }
    };
    const audit = () => {
      const run = runAuditors([blkResponseAfterUnmapAuditor()]);
      for (const e of events) run.onEvent(e);
      return run.finish();
    };
    return { kernel, devs, events, settle, audit };
  }

  it('reusing request ids: every event names its vdev, and the auditor tells the devices apart', async () => {
    const w = twoDisks('sync');
    const [a, b] = w.devs as [(typeof w.devs)[number], (typeof w.devs)[number]];
    const mapped: Page[] = [];
    const orig = w.kernel.gnttab_map_refs.bind(w.kernel);
    w.kernel.gnttab_map_refs = (ops, pages) => {
      const rc = orig(ops, pages);
      mapped.push(...pages);
      return rc;
    };
    // Both disks get request id 7; xvdb's page is still held when its I/O completes (sync: the
    // response goes out with the page unmapped under the holder). xvda's is not.
    for (const [d, gref] of [[a, 2], [b, 3]] as const) {
      expect(d.front.request({ operation: BLKIF_OP_WRITE, nr_segments: 1, handle: d.vdev, id: 7, sector_number: 0, seg: [{ gref, first_sect: 0, last_sect: 7 }] }).ok).toBe(true);
      d.front.push();
      d.dev.kick();
    }
    expect(mapped).toHaveLength(2);
    get_page(mapped[1]!);
    await w.settle();
    put_page(mapped[1]!);
    for (const d of [a, b]) expect(d.front.responses().map((r) => r.ok && r.value)).toEqual([{ id: 7, operation: BLKIF_OP_WRITE, status: BLKIF_RSP_OKAY }]);
    const blk = w.events.filter((e) => e.kind.startsWith('blk.'));
    expect(blk.map((e) => [e.kind, (e.payload as { vdev: number }).vdev])).toEqual([
      ['blk.request', 51712],
      ['blk.request', 51728],
      ['blk.response', 51712],
      ['blk.response', 51728],
    ]);
    // (The ring mappings are still there at the end of this log: the devices stay connected.)
    const v = w.audit().filter((x) => x.rule !== 'mapping-left-at-teardown');
    const rspB = blk[3]!.seq;
    expect(v).toEqual([expect.objectContaining({ rule: 'response-while-mapped', dom: 0 })]);
    expect(v[0]!.seqs.at(-1)).toBe(rspB);
    expect(v[0]!.message).toMatch(/request 7 \(vdev 51728, /);
  });

  it('async: the same ids on both disks audit clean', async () => {
    const w = twoDisks('async');
    for (let id = 0; id < 8; id++) {
      for (const d of w.devs) {
        expect(d.front.request({ operation: id % 2 ? BLKIF_OP_READ : BLKIF_OP_WRITE, nr_segments: 1, handle: d.vdev, id, sector_number: id * 8, seg: [{ gref: 2 + id + (d.vdev & 0xff), first_sect: 0, last_sect: 7 }] }).ok).toBe(true);
      }
    }
    for (const d of w.devs) {
      d.front.push();
      d.dev.kick();
    }
    await w.settle();
    for (const d of w.devs) expect(d.front.responses()).toHaveLength(8);
    expect(w.events.filter((e) => e.kind === 'blk.response')).toHaveLength(16);
    expect(w.audit().filter((x) => x.rule === 'response-while-mapped')).toEqual([]);
  });
});
