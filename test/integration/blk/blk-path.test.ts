/**
 * The block path end to end, in one thread: blkfront (guest) and blkback (dom0) over the
 * hypervisor's shared tables, dom0's kernel and an in-process XenStore with both handshakes.
 * Event channels are routed: a send on either side runs the other side's interrupt/kick.
 * Every transition is recorded as an EventRecord and audited (blk.response-after-unmap,
 * hv.teardown).
 */
import { BLKIF_OP_WRITE } from '@pvsim/blkif';
import { BLK_RESPONSE_AUDITOR, BlkbackDevice, MemoryDisk, blkResponseAfterUnmapAuditor, kernelRingMapper, runBlkbackXenbus, type UnmapPolicy } from '@pvsim/blkback';
import { Blkfront } from '@pvsim/blkfront';
import { runAuditors, type EventEmitter, type EventRecord } from '@pvsim/eventlog';
import { GATE_FAULT, GATE_OK, Hypervisor, createHypervisorSpec, routeEvtchnSend, teardownAuditor } from '@pvsim/hypervisor';
import { Kernel, createPageTableSpec, get_page, put_page, type Page } from '@pvsim/kernel';
import { VirtualClock } from '@pvsim/runtime';
import { LocalXsClient, XenStore, XenbusState, xenbusAddDevice } from '@pvsim/xenstore';
import { afterEach, describe, expect, it } from 'vitest';

const SECTORS = 2048;
const DATA_PAGES = 96;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

function recorder() {
  const events: EventRecord[] = [];
  const emitter: EventEmitter = {
    emit(kind, payload, dom) {
      const seq = events.length + 1;
      events.push({ seq, tsNs: seq, dom: dom ?? -1, thread: 0, kind, v: 1, payload } as EventRecord);
      return seq;
    },
  };
  const of = (kind: string) => events.filter((e) => e.kind === kind);
  const audit = () => {
    const run = runAuditors([blkResponseAfterUnmapAuditor(), teardownAuditor()]);
    for (const e of events) run.onEvent(e);
    return run.finish();
  };
  return { events, emitter, of, audit };
}

async function world(policy: UnmapPolicy) {
  const rec = recorder();
  const hv = new Hypervisor(createHypervisorSpec({ frames: 4096, maxDomains: 4, gfnsPerDomain: 1024, grantEntries: 1024, maptrackEntries: 1024, evtchnPorts: 64 }));
  expect(hv.toolstack(rec.emitter).domainCreate({ domid: 0, name: 'dom0', memoryPages: 64, privileged: true })).toBe(0);
  const dom0 = hv.client(0, rec.emitter);
  const gid = dom0.domainCreate({ name: 'guest', memoryPages: DATA_PAGES + 8 });
  expect(gid).toBeGreaterThan(0);
  const guest = hv.client(gid, rec.emitter);
  const clock = new VirtualClock();
  const kernel = new Kernel({ client: dom0, pages: createPageTableSpec(0, 1024), clock, events: rec.emitter });
  /** Every page blkback maps a grant into, in order (the ring's first). */
  const mapped: Page[] = [];
  const orig = kernel.gnttab_map_refs.bind(kernel);
  kernel.gnttab_map_refs = (ops, pages) => {
    const rc = orig(ops, pages);
    mapped.push(...pages);
    return rc;
  };
  const store = new XenStore();
  const xs = (dom: number) => {
    const c = new LocalXsClient(store, dom, { events: rec.emitter });
    cleanups.push(() => c.close());
    return c;
  };
  const dirs = await xenbusAddDevice(xs(0), { type: 'vbd', frontDom: gid, backDom: 0, devid: 51712 });
  const disk = new MemoryDisk(SECTORS);
  let front: Blkfront | null = null;
  const dev = new BlkbackDevice({
    client: routeEvtchnSend(dom0, () => front?.interrupt()),
    kernel,
    clock,
    events: rec.emitter,
    disk,
    policy,
    ringMapper: kernelRingMapper(kernel),
  });
  const back = await runBlkbackXenbus(xs(0), dirs, dev, gid, { clock });
  cleanups.push(() => back.stop());
  const nPages = 1 + DATA_PAGES;
  front = await Blkfront.start({
    client: routeEvtchnSend(guest, () => dev.kick()),
    xs: xs(gid),
    clock,
    events: rec.emitter,
    frontDir: dirs.frontDir,
    backDir: dirs.backDir,
    backendDomid: 0,
    vdev: 51712,
    gfns: Array.from({ length: nPages }, (_, i) => i),
    grantRefs: Array.from({ length: nPages }, (_, i) => 8 + i),
  });
  const f = front;
  cleanups.push(() => f.stopTimers());
  await f.waitConnected(5000);
  expect(dev.connected).toBe(true);
  mapped.length = 0;

  /** Let I/O promises and due timers run: `rounds` turns of the loop, virtual time `ms` each. */
  const settle = async (rounds = 4, ms = 1) => {
    for (let i = 0; i < rounds; i++) {
      await new Promise((r) => setImmediate(r));
      clock.advance(ms);
    }
  };
  /** Drive until `p` settles (bounded). */
  async function run<T>(p: Promise<T>): Promise<T> {
    let done = false;
    const q = p.finally(() => (done = true));
    q.catch(() => {});
    for (let i = 0; i < 5_000 && !done; i++) await settle(1);
    if (!done) throw new Error(`stalled: ${JSON.stringify(f.stats())} ${f.error}`);
    return q;
  }
  /** Close the device (both handshakes to Closed), then destroy the guest. */
  async function teardown(): Promise<void> {
    await run(f.close(5000));
    for (let i = 0; i < 200 && dev.connected; i++) await new Promise((r) => setTimeout(r, 2));
    expect(dev.connected).toBe(false);
    expect(f.xenbusState).toBe(XenbusState.Closed);
    expect(dom0.mappingsHeld()).toBe(0);
    expect(dom0.domainDestroy(gid)).toBe(0);
  }
  return { hv, rec, dom0, guest, gid, kernel, dev, disk, front: f, clock, mapped, settle, run, teardown };
}

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

const POLICIES = ['sync', 'replace', 'async'] as const;

describe('blkfront ↔ blkback: data integrity', () => {
  for (const policy of POLICIES) {
    it(`${policy}: 300 random reads and writes (concurrent, disjoint) agree with a model`, { timeout: 60_000 }, async () => {
      const w = await world(policy);
      const model = new Uint8Array(SECTORS * 512);
      const rnd = prng(POLICIES.indexOf(policy) + 11);
      const int = (n: number) => Math.floor(rnd() * n);
      const SLOT = 128;
      let ops = 0;
      let readsChecked = 0;
      while (ops < 300) {
        // A batch: distinct 128-sector slots, one op each, all in flight together.
        const slots = [...Array(SECTORS / SLOT).keys()].sort(() => rnd() - 0.5).slice(0, 1 + int(8));
        const pending: Promise<void>[] = [];
        for (const slot of slots) {
          const count = 1 + int(SLOT);
          const sector = slot * SLOT + int(SLOT - count + 1);
          ops++;
          if (rnd() < 0.5) {
            const data = Uint8Array.from({ length: count * 512 }, () => int(256));
            model.set(data, sector * 512);
            pending.push(w.front.write(sector, data));
          } else {
            const want = model.slice(sector * 512, (sector + count) * 512);
            pending.push(
              w.front.read(sector, count).then((got) => {
                expect(Buffer.from(got).equals(Buffer.from(want))).toBe(true);
                readsChecked++;
              }),
            );
          }
        }
        await w.run(Promise.all(pending));
      }
      expect(Buffer.from(w.disk.bytes).equals(Buffer.from(model))).toBe(true);
      expect(readsChecked).toBeGreaterThan(100);
      expect(w.rec.of('mem.fault')).toHaveLength(0);
      expect(w.rec.of('mem.leak')).toHaveLength(0);
      expect(w.rec.of('blk.response').length).toBeGreaterThanOrEqual(300);
      // Nothing held a page past its I/O: no unmap was ever deferred.
      expect(w.rec.of('blk.unmap.deferred')).toHaveLength(0);
      expect(w.rec.of('grant.unmap.deferred')).toHaveLength(0);
      await w.teardown();
      expect(w.rec.audit()).toEqual([]);
    });
  }
});

describe('blkfront ↔ blkback: a page still held at completion (a TCP retransmit)', () => {
  for (const policy of POLICIES) {
    it(`${policy}`, { timeout: 60_000 }, async () => {
      const w = await world(policy);
      const data = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7 + 3) & 0xff);
      const write = w.front.write(64, data);
      let written = false;
      void write.then(() => (written = true));
      // The routed send runs blkback's kick in a microtask: the request is mapped after it.
      await Promise.resolve();
      await Promise.resolve();
      expect(w.mapped).toHaveLength(1);
      const page = w.mapped[0]!;
      get_page(page);
      const stamp = page.stamp();
      const reqSeq = w.rec.of('blk.request').at(-1)!;
      expect(reqSeq.payload).toMatchObject({ op: BLKIF_OP_WRITE, nsegs: 1 });
      const buf = new Uint8Array(4096);
      if (policy === 'async') {
        // The response waits for the holder.
        await w.settle(20, 10);
        expect(written).toBe(false);
        expect(w.dev.inflight).toBe(1);
        expect(w.rec.of('grant.unmap.deferred').length).toBeGreaterThan(0);
        expect(w.dom0.read(page.gfn, 0, buf, stamp)).toBe(GATE_OK);
        expect(buf).toEqual(data);
        put_page(page);
        await w.run(write);
        const kinds = w.rec.events.map((e) => e.kind);
        expect(kinds.lastIndexOf('grant.unmap.done')).toBeLessThan(kinds.lastIndexOf('blk.response'));
        // blkback named the waiting request at every deferral, all before its response.
        const id = (reqSeq.payload as { id: number }).id;
        const deferred = w.rec.of('blk.unmap.deferred');
        expect(deferred.length).toBe(w.rec.of('grant.unmap.deferred').length);
        expect(deferred.map((e) => e.payload)).toEqual(deferred.map((_, age) => ({ dom: w.gid, vdev: 51712, id, age, delayMs: 5 * (age + 1), busyPages: 1 })));
        const rsp = w.rec.events.find((e) => e.kind === 'blk.response' && (e.payload as { id: number }).id === id && e.seq > reqSeq.seq)!;
        expect(deferred.every((e) => e.seq > reqSeq.seq && e.seq < rsp.seq && e.dom === 0)).toBe(true);
        expect(w.rec.of('mem.fault')).toHaveLength(0);
        expect(w.rec.of('mem.leak')).toHaveLength(0);
      } else {
        await w.run(write);
        // sync and replace never wait: nothing is deferred (the holder is simply cut off).
        expect(w.rec.of('blk.unmap.deferred')).toHaveLength(0);
        if (policy === 'sync') {
          expect(w.dom0.read(page.gfn, 0, buf, stamp)).toBe(GATE_FAULT);
          expect(w.rec.of('mem.fault')).toHaveLength(1);
          expect(w.rec.of('mem.leak')).toHaveLength(0);
        } else {
          expect(w.dom0.read(page.gfn, 0, buf, stamp)).toBe(GATE_OK);
          expect(w.rec.of('mem.leak')).toHaveLength(1);
          expect(w.rec.of('mem.fault')).toHaveLength(0);
          expect(buf).not.toEqual(data);
        }
        put_page(page);
      }
      expect(Buffer.from(w.disk.bytes.subarray(64 * 512, 72 * 512)).equals(Buffer.from(data))).toBe(true);
      expect(Buffer.from(await w.run(w.front.read(64, 8))).equals(Buffer.from(data))).toBe(true);
      await w.teardown();
      const v = w.rec.audit();
      if (policy === 'async') {
        expect(v).toEqual([]);
      } else {
        // The response went out while the holder still reached the frontend's page.
        const mapSeq = w.rec.events.find((e) => e.kind === 'grant.map' && e.seq > reqSeq.seq && (e.payload as { hostGfn: number }).hostGfn === page.gfn)!.seq;
        const getSeq = w.rec.of('page.get').find((e) => e.seq > mapSeq)!.seq;
        const unmapSeq = w.rec.events.find((e) => e.kind === (policy === 'sync' ? 'grant.unmap' : 'grant.unmap_replace') && e.seq > getSeq)!.seq;
        const rspSeq = w.rec.events.find((e) => e.kind === 'blk.response' && e.seq > unmapSeq)!.seq;
        expect(v).toEqual([expect.objectContaining({ auditor: BLK_RESPONSE_AUDITOR, rule: 'response-while-mapped', dom: 0, seqs: [mapSeq, getSeq, unmapSeq, rspSeq] })]);
      }
      // No mapping left at teardown: neither auditor says so.
      expect(v.filter((x) => x.rule !== 'response-while-mapped')).toEqual([]);
    });
  }
});
