/**
 * `frameView`: a domain reaches memory in place only through its own p2m — its own populated
 * frames, and foreign frames it has grant-mapped there (writable, host_map). Everything else is
 * an error result and a `mem.fault`, never a throw and never another domain's frame.
 */
import { EINVAL, EPERM, ESRCH, GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly, GNTST_okay, XEN_PAGE_SIZE } from '@pvsim/abi';
import type { EventEmitter, EventKind, EventPayloads } from '@pvsim/eventlog';
import { describe, expect, it } from 'vitest';
import { GATE_OK, Hypervisor, createHypervisorSpec, type GnttabMapGrantRef, type HypercallClient } from './index.js';

function setup() {
  const events: { kind: string; payload: unknown }[] = [];
  const emitter: EventEmitter = {
    emit(kind, payload) {
      events.push({ kind, payload });
      return events.length;
    },
  };
  const of = <K extends EventKind>(kind: K): EventPayloads[K][] => events.filter((e) => e.kind === kind).map((e) => e.payload as EventPayloads[K]);
  const hv = new Hypervisor(createHypervisorSpec({ frames: 256, maxDomains: 4, gfnsPerDomain: 32, grantEntries: 32, maptrackEntries: 8, evtchnPorts: 32 }));
  const ts = hv.toolstack(emitter);
  expect(ts.domainCreate({ domid: 0, name: 'dom0', memoryPages: 4, privileged: true })).toBe(0);
  const dom0 = hv.client(0, emitter);
  // The guest has memory at gfns 0..15; dom0 at 0..3 only.
  const guest = hv.client(ts.domainCreate({ name: 'guest', memoryPages: 16 }), emitter);
  return { hv, ts, dom0, guest, events, of };
}

function map(mapper: HypercallClient, granter: HypercallClient, ref: number, hostGfn: number, flags = GNTMAP_host_map): GnttabMapGrantRef {
  const op: GnttabMapGrantRef = { hostGfn, flags, ref, dom: granter.domid };
  mapper.mapGrantRef([op]);
  expect(op.status).toBe(GNTST_okay);
  return op;
}

const viewOf = (c: HypercallClient, gfn: number): Uint8Array => {
  const v = c.frameView(gfn);
  if (!v.ok) throw new Error(`unexpected refusal: ${v.error.reason}`);
  return v.value;
};

describe('frameView: what a domain may see in place', () => {
  it("its own populated frame: a 4 KiB view of exactly that frame (the gate sees the view's writes)", () => {
    const { guest, of } = setup();
    const v = viewOf(guest, 5);
    expect(v.length).toBe(XEN_PAGE_SIZE);
    expect(v.buffer).toBeInstanceOf(SharedArrayBuffer);
    v[0] = 0x5a;
    v[XEN_PAGE_SIZE - 1] = 0xa5;
    const got = new Uint8Array(XEN_PAGE_SIZE);
    expect(guest.read(5, 0, got)).toBe(GATE_OK);
    expect(got[0]).toBe(0x5a);
    expect(got[XEN_PAGE_SIZE - 1]).toBe(0xa5);
    // …and the gate's writes show in the view; another gfn is another frame.
    expect(guest.write(5, 100, Uint8Array.of(9, 8, 7))).toBe(GATE_OK);
    expect([...v.subarray(100, 103)]).toEqual([9, 8, 7]);
    expect(viewOf(guest, 6)[0]).toBe(0);
    expect(of('mem.fault')).toEqual([]);
  });

  it('a foreign frame grant-mapped writable at a ballooned gfn: the granter\'s page, both ways', () => {
    const { dom0, guest, of } = setup();
    expect(guest.grantForeignAccess(3, 0, 7, false)).toBe(0);
    expect(guest.write(7, 0, Uint8Array.of(1, 2, 3, 4))).toBe(GATE_OK);
    const host = dom0.invalidGfns(0, 1)[0]!;
    map(dom0, guest, 3, host);
    const v = viewOf(dom0, host);
    expect([...v.subarray(0, 4)]).toEqual([1, 2, 3, 4]);
    v[10] = 0xcc;
    const b = new Uint8Array(1);
    expect(guest.read(7, 10, b)).toBe(GATE_OK);
    expect(b[0]).toBe(0xcc);
    expect(of('mem.fault')).toEqual([]);
  });

  it('refuses a gfn never populated, with -EINVAL and a mem.fault (no throw)', () => {
    const { guest, of } = setup();
    const r = guest.frameView(20);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error.errno).toBe(-EINVAL);
    expect(!r.ok && r.error.reason).toMatch(/no frame at gfn 20 \(ballooned out or never populated\)/);
    expect(of('mem.fault')).toEqual([{ dom: guest.domid, gfn: 20, write: true, reason: expect.stringMatching(/^frame view: no frame at gfn 20/), granter: -1, gref: -1 }]);
  });

  it('refuses a ballooned slot (its frame went back to Xen)', () => {
    const { guest } = setup();
    const before = viewOf(guest, 9);
    expect(before.length).toBe(XEN_PAGE_SIZE);
    expect(guest.decreaseReservation(9)).toBe(0);
    const r = guest.frameView(9);
    expect(!r.ok && r.error.errno).toBe(-EINVAL);
  });

  it("refuses another domain's gfn number the caller has nothing at: never the other domain's frame", () => {
    const { dom0, guest, of } = setup();
    // gfn 12 holds memory in the guest, nothing in dom0 (4 pages).
    viewOf(guest, 12).fill(0x77);
    const r = dom0.frameView(12);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error.errno).toBe(-EINVAL);
    expect(of('mem.fault').at(-1)).toMatchObject({ dom: 0, gfn: 12 });
    // Granted but not mapped here: still nothing.
    expect(guest.grantForeignAccess(4, 0, 12, false)).toBe(0);
    expect(dom0.frameView(12).ok).toBe(false);
  });

  it('refuses gfns outside the domain and non-numbers, as results', () => {
    const { guest } = setup();
    for (const g of [-1, 32, 1e9, 1.5, Number.NaN]) {
      const r = guest.frameView(g);
      expect(!r.ok && r.error.errno).toBe(-EINVAL);
    }
  });

  it('refuses a read-only mapping (-EPERM: a view is writable) and a device-only one (-EINVAL)', () => {
    const { dom0, guest } = setup();
    expect(guest.grantForeignAccess(5, 0, 2, false)).toBe(0);
    expect(guest.grantForeignAccess(6, 0, 3, false)).toBe(0);
    const [h1, h2] = dom0.invalidGfns(0, 2) as [number, number];
    map(dom0, guest, 5, h1, GNTMAP_host_map | GNTMAP_readonly);
    map(dom0, guest, 6, h2, GNTMAP_device_map);
    const ro = dom0.frameView(h1);
    expect(!ro.ok && ro.error.errno).toBe(-EPERM);
    expect(!ro.ok && ro.error.reason).toMatch(/gref 5 .* read-only/);
    const dev = dom0.frameView(h2);
    expect(!dev.ok && dev.error.errno).toBe(-EINVAL);
    expect(!dev.ok && dev.error.reason).toMatch(/without GNTMAP_host_map/);
  });

  it('after the unmap it refuses, naming the grant that was there; a view taken before still reaches the frame (the documented limit)', () => {
    const { dom0, guest, of } = setup();
    expect(guest.grantForeignAccess(7, 0, 1, false)).toBe(0);
    const host = dom0.invalidGfns(0, 1)[0]!;
    const op = map(dom0, guest, 7, host);
    const held = viewOf(dom0, host);
    const un = { hostGfn: host, handle: op.handle!, status: -1 };
    dom0.unmapGrantRef([un]);
    expect(un.status).toBe(GNTST_okay);
    const r = dom0.frameView(host);
    expect(!r.ok && r.error.errno).toBe(-EINVAL);
    expect(!r.ok && r.error.reason).toMatch(/last: grant d\d+\/gref 7, unmapped/);
    expect(of('mem.fault').at(-1)).toMatchObject({ dom: 0, gfn: host, granter: guest.domid, gref: 7 });
    // A JS view cannot be revoked: the holder still has the bytes. That is why ring code keeps a
    // view only between map and unmap, and data pages go through the gate with stamps.
    expect(guest.write(1, 0, Uint8Array.of(0x42))).toBe(GATE_OK);
    expect(held[0]).toBe(0x42);
  });

  it('refuses a caller that is no longer a running domain (-ESRCH)', () => {
    const { ts, guest } = setup();
    expect(ts.domainDestroy(guest.domid)).toBe(0);
    const r = guest.frameView(0);
    expect(!r.ok && r.error.errno).toBe(-ESRCH);
  });
});
