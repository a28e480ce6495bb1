/**
 * The memory gate: every guest access goes through `read`/`write`, which refuse (GATE_FAULT and a
 * 'mem.fault' event naming the grant) an access through a mapping that is gone, a write through a
 * read-only mapping, an access outside the page or the domain; and which report as 'mem.leak' a
 * read through a stale page reference (a stamp) after unmap_and_replace put another frame there.
 */
import { DOMID_SELF, GNTMAP_host_map, GNTMAP_readonly, GNTST_okay, XEN_PAGE_SIZE } from '@pvsim/abi';
import type { EventEmitter, EventKind, EventPayloads } from '@pvsim/eventlog';
import { describe, expect, it } from 'vitest';
import { GATE_FAULT, GATE_OK, Hypervisor, P2M_INVALID, createHypervisorSpec, type GnttabMapGrantRef, type GnttabUnmapAndReplace, type GnttabUnmapGrantRef, type HypercallClient } from './index.js';

interface Rec {
  kind: string;
  payload: unknown;
}

function setup() {
  const events: Rec[] = [];
  let seq = 0;
  const emitter: EventEmitter = {
    emit(kind, payload) {
      events.push({ kind, payload });
      return ++seq;
    },
  };
  const of = <K extends EventKind>(kind: K): EventPayloads[K][] => events.filter((e) => e.kind === kind).map((e) => e.payload as EventPayloads[K]);
  const hv = new Hypervisor(createHypervisorSpec({ frames: 256, maxDomains: 4, gfnsPerDomain: 32, grantEntries: 32, maptrackEntries: 8, evtchnPorts: 32 }));
  const ts = hv.toolstack(emitter);
  ts.domainCreate({ domid: 0, name: 'dom0', memoryPages: 4, privileged: true });
  const a = hv.client(ts.domainCreate({ name: 'granter', memoryPages: 8 }), emitter);
  const b = hv.client(ts.domainCreate({ name: 'mapper', memoryPages: 8 }), emitter);
  const host = b.invalidGfns(0, 2);
  expect(host).toEqual([8, 9]);
  return { hv, events, of, a, b, host: host[0]!, host2: host[1]!, clear: () => void (events.length = 0) };
}

const fill = (n: number, v: number) => new Uint8Array(n).fill(v);

function mapRef(b: HypercallClient, a: HypercallClient, ref: number, hostGfn: number, ro: boolean): GnttabMapGrantRef {
  const op: GnttabMapGrantRef = { hostGfn, flags: GNTMAP_host_map | (ro ? GNTMAP_readonly : 0), ref, dom: a.domid };
  b.mapGrantRef([op]);
  expect(op.status).toBe(GNTST_okay);
  return op;
}

describe('memory gate', () => {
  it("reads and writes of the domain's own frames work and record nothing", () => {
    const { a, events } = setup();
    expect(a.write(3, 10, fill(100, 0xab))).toBe(GATE_OK);
    const got = new Uint8Array(100);
    expect(a.read(3, 10, got)).toBe(GATE_OK);
    expect(got).toEqual(fill(100, 0xab));
    // A whole page, first and last byte.
    expect(a.write(0, 0, fill(XEN_PAGE_SIZE, 7))).toBe(GATE_OK);
    const page = new Uint8Array(XEN_PAGE_SIZE);
    expect(a.read(0, 0, page)).toBe(GATE_OK);
    expect(page.every((x) => x === 7)).toBe(true);
    // A stamp of an own frame stays valid while the frame stays.
    const st = a.stamp(3)!;
    expect(a.read(3, 10, got, st)).toBe(GATE_OK);
    expect(a.write(3, 10, got, st)).toBe(GATE_OK);
    expect(events.filter((e) => e.kind.startsWith('mem.'))).toEqual([]);
  });

  it('a fresh frame reads as zeroes, and other domains do not see its writes', () => {
    const { a, b } = setup();
    a.write(2, 0, fill(16, 9));
    const got = new Uint8Array(16).fill(1);
    expect(b.read(2, 0, got)).toBe(GATE_OK);
    expect(got).toEqual(new Uint8Array(16));
  });

  it('access through a mapping that was unmapped faults, naming the granter and gref', () => {
    const { a, b, host, of, clear } = setup();
    a.grantForeignAccess(12, b.domid, 5, false);
    a.write(5, 0, fill(64, 0x5a));
    const m = mapRef(b, a, 12, host, false);
    const buf = new Uint8Array(64);
    expect(b.read(host, 0, buf)).toBe(GATE_OK);
    expect(buf).toEqual(fill(64, 0x5a));
    const st = b.stamp(host)!;
    expect(st).toMatchObject({ granter: a.domid, gref: 12 });
    const un: GnttabUnmapGrantRef = { handle: m.handle! };
    b.unmapGrantRef([un]);
    expect(un.status).toBe(GNTST_okay);
    clear();
    buf.fill(0);
    expect(b.read(host, 0, buf)).toBe(GATE_FAULT);
    expect(buf).toEqual(new Uint8Array(64)); // nothing was copied out
    expect(b.write(host, 0, fill(8, 1))).toBe(GATE_FAULT);
    expect(b.read(host, 0, buf, st)).toBe(GATE_FAULT);
    const faults = of('mem.fault');
    expect(faults.length).toBe(3);
    expect(faults[0]).toMatchObject({ dom: b.domid, gfn: host, write: false, granter: a.domid, gref: 12 });
    expect(faults[1]).toMatchObject({ dom: b.domid, gfn: host, write: true, granter: a.domid, gref: 12 });
    expect(faults[2]).toMatchObject({ dom: b.domid, gfn: host, write: false, granter: a.domid, gref: 12 });
    expect(of('mem.leak')).toEqual([]);
    // The granter's data was not touched by the refused write.
    const mine = new Uint8Array(8);
    a.read(5, 0, mine);
    expect(mine).toEqual(fill(8, 0x5a));
  });

  it('a read through a stale stamp after unmap_and_replace returns the new frame and is reported as a leak', () => {
    const { a, b, host, of, clear } = setup();
    a.grantForeignAccess(12, b.domid, 5, false);
    a.write(5, 0, fill(32, 0xa1)); // the granted data
    b.write(7, 0, fill(32, 0xb7)); // b's scratch page, which will replace the mapping
    const scratchMfn = b.p2mEntry(7);
    const m = mapRef(b, a, 12, host, false);
    const st = b.stamp(host)!;
    const op: GnttabUnmapAndReplace = { hostGfn: host, newGfn: 7, handle: m.handle! };
    b.unmapAndReplace(op);
    expect(op.status).toBe(GNTST_okay);
    expect(b.p2mEntry(host)).toBe(scratchMfn);
    expect(b.p2mEntry(7)).toBe(P2M_INVALID);
    clear();
    const buf = new Uint8Array(32);
    expect(b.read(host, 0, buf, st)).toBe(GATE_OK); // stale mappings do read…
    expect(buf).toEqual(fill(32, 0xb7)); // …the scratch frame, not the grant
    expect(of('mem.leak')).toEqual([
      expect.objectContaining({ dom: b.domid, gfn: host, mfn: scratchMfn, owner: b.domid, granter: a.domid, gref: 12 }),
    ]);
    // A write through the stale reference faults.
    expect(b.write(host, 0, fill(4, 0), st)).toBe(GATE_FAULT);
    expect(of('mem.fault')).toEqual([expect.objectContaining({ dom: b.domid, gfn: host, write: true, granter: a.domid, gref: 12 })]);
    // Without a stamp the gfn is simply b's own page again: no leak.
    clear();
    expect(b.read(host, 0, buf)).toBe(GATE_OK);
    expect(memEvents(of)).toEqual([]);
    // The emptied scratch gfn faults.
    expect(b.read(7, 0, buf)).toBe(GATE_FAULT);
  });

  it('a write to a read-only mapping faults and leaves the frame unchanged; reads work', () => {
    const { a, b, host, of, clear } = setup();
    a.grantForeignAccess(12, b.domid, 5, true);
    a.write(5, 0, fill(16, 0x33));
    mapRef(b, a, 12, host, true);
    clear();
    expect(b.write(host, 0, fill(16, 0xee))).toBe(GATE_FAULT);
    expect(of('mem.fault')).toEqual([expect.objectContaining({ dom: b.domid, gfn: host, write: true, granter: a.domid, gref: 12 })]);
    const buf = new Uint8Array(16);
    expect(b.read(host, 0, buf)).toBe(GATE_OK);
    expect(buf).toEqual(fill(16, 0x33));
    // A read-only map of a writable grant is read-only too.
    a.grantForeignAccess(13, b.domid, 6, false);
    const host2 = b.invalidGfns(0, 1)[0]!;
    mapRef(b, a, 13, host2, true);
    expect(b.write(host2, 0, fill(1, 1))).toBe(GATE_FAULT);
  });

  it('accesses outside the page, outside the domain, or to an empty gfn fault', () => {
    const { a, b, host, of, clear } = setup();
    a.grantForeignAccess(12, b.domid, 5, false);
    mapRef(b, a, 12, host, false);
    clear();
    const buf10 = new Uint8Array(10);
    expect(b.read(host, XEN_PAGE_SIZE - 9, buf10)).toBe(GATE_FAULT); // mapping, crosses the end
    expect(b.write(host, XEN_PAGE_SIZE - 10, buf10)).toBe(GATE_OK); // fits exactly
    expect(a.write(1, XEN_PAGE_SIZE - 9, buf10)).toBe(GATE_FAULT); // own frame, crosses the end
    expect(a.read(1, -1, buf10)).toBe(GATE_FAULT);
    expect(a.read(1, 1.5, buf10)).toBe(GATE_FAULT);
    expect(a.read(1, XEN_PAGE_SIZE, new Uint8Array(1))).toBe(GATE_FAULT);
    expect(a.read(32, 0, buf10)).toBe(GATE_FAULT); // gfn outside the domain
    expect(a.read(-1, 0, buf10)).toBe(GATE_FAULT);
    expect(a.read(20, 0, buf10)).toBe(GATE_FAULT); // ballooned, never mapped
    expect(b.read(host + 1, 0, buf10)).toBe(GATE_FAULT);
    const faults = of('mem.fault');
    expect(faults.length).toBe(9);
    expect(faults.map((f) => f.dom)).toEqual([b.domid, a.domid, a.domid, a.domid, a.domid, a.domid, a.domid, a.domid, b.domid]);
    expect(faults.find((f) => f.gfn === 20)).toMatchObject({ granter: -1, gref: -1, write: false });
    expect(of('mem.leak')).toEqual([]);
  });

  it('a mapping of a destroyed granter keeps reading the granted frame (no fault, no leak)', () => {
    const { hv, a, b, host, of, clear } = setup();
    a.grantForeignAccess(12, b.domid, 5, false);
    a.write(5, 0, fill(16, 0x44));
    mapRef(b, a, 12, host, false);
    const ts = hv.client(0, { emit: () => 0 });
    expect(ts.domainDestroy(a.domid)).toBe(0);
    clear();
    const buf = new Uint8Array(16);
    expect(b.read(host, 0, buf)).toBe(GATE_OK);
    expect(buf).toEqual(fill(16, 0x44));
    expect(of('mem.fault').length + of('mem.leak').length).toBe(0);
  });

  it('a self-grant mapped read-only (DOMID_SELF) shows the same frame and refuses writes through the mapping', () => {
    const { a } = setup();
    a.grantForeignAccess(12, a.domid, 2, false);
    const op: GnttabMapGrantRef = { hostGfn: 10, flags: GNTMAP_host_map | GNTMAP_readonly, ref: 12, dom: DOMID_SELF };
    a.mapGrantRef([op]);
    expect(op.status).toBe(GNTST_okay);
    a.write(2, 0, fill(4, 0x99));
    const buf = new Uint8Array(4);
    expect(a.read(10, 0, buf)).toBe(GATE_OK);
    expect(buf).toEqual(fill(4, 0x99));
    expect(a.write(10, 0, buf)).toBe(GATE_FAULT);
    a.unmapGrantRef([{ handle: op.handle! }]);
  });
});

/** The mem.* events seen (helper for "nothing recorded" checks). */
function memEvents(of: <K extends EventKind>(kind: K) => EventPayloads[K][]): unknown[] {
  return [...of('mem.fault'), ...of('mem.leak')];
}
