/**
 * Grant tables (v1) against Xen's rules (reference: xen-semantics.md 2.4; xen/common/grant_table.c
 * at c447b730): map/unmap/copy statuses in Xen's check order, the GTF_reading/GTF_writing flags
 * in the granter's entry, the hostile cases (foreign grefs, r/o grants mapped writable, ending
 * access while mapped, double and stale handles, frame-number copies of foreign memory,
 * destroyed granters, maptrack exhaustion, batches) and data really moving.
 *
 * Tests named `XEN:` check a rule where the simulator and Xen disagree; tests named `BUG:` check
 * a simulator defect. Both fail until the simulator is fixed (see the comments on each).
 */
import {
  DOMID_SELF,
  EBUSY,
  EINVAL,
  EPERM,
  ESRCH,
  GNTCOPY_dest_gref,
  GNTCOPY_source_gref,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTST_bad_copy_arg,
  GNTST_bad_domain,
  GNTST_bad_gntref,
  GNTST_bad_handle,
  GNTST_bad_page,
  GNTST_bad_virt_addr,
  GNTST_general_error,
  GNTST_no_space,
  GNTST_okay,
  GNTST_permission_denied,
  GTF_permit_access,
  GTF_readonly,
  GTF_reading,
  GTF_sub_page,
  GTF_transitive,
  GTF_writing,
  XEN_PAGE_SIZE,
} from '@pvsim/abi';
import type { EventEmitter, EventKind, EventPayloads } from '@pvsim/eventlog';
import { describe, expect, it } from 'vitest';
import {
  A_PIN,
  A_WORDS,
  D_MT_TOP,
  DOMSTATE_DYING,
  G_FREE_TOP,
  GATE_OK,
  Hypervisor,
  P2M_FOREIGN,
  P2M_INVALID,
  createHypervisorSpec,
  type GnttabCopy,
  type GnttabMapGrantRef,
  type GnttabUnmapAndReplace,
  type GnttabUnmapGrantRef,
  type HypercallClient,
  type HypervisorConfig,
} from './index.js';

// ───────────────────────────── harness ─────────────────────────────

interface Rec {
  kind: string;
  payload: unknown;
  dom: number | undefined;
  seq: number;
}

function recorder() {
  const events: Rec[] = [];
  let seq = 0;
  const emitter: EventEmitter = {
    emit(kind, payload, dom) {
      events.push({ kind, payload, dom, seq: ++seq });
      return seq;
    },
  };
  const of = <K extends EventKind>(kind: K): EventPayloads[K][] => events.filter((e) => e.kind === kind).map((e) => e.payload as EventPayloads[K]);
  const last = <K extends EventKind>(kind: K): EventPayloads[K] | undefined => of(kind).at(-1);
  return { events, emitter, of, last, clear: () => void (events.length = 0) };
}

const PAGES = 8; // every guest: gfns 0..7 hold frames, 8.. are ballooned

function boot(cfg: Partial<HypervisorConfig> = {}) {
  const rec = recorder();
  const spec = createHypervisorSpec({ frames: 512, maxDomains: 8, gfnsPerDomain: 64, grantEntries: 64, maptrackEntries: 32, evtchnPorts: 64, ...cfg });
  const hv = new Hypervisor(spec);
  const ts = hv.toolstack(rec.emitter);
  expect(ts.domainCreate({ domid: 0, name: 'dom0', memoryPages: PAGES, privileged: true })).toBe(0);
  const dom0 = hv.client(0, rec.emitter);
  const guest = (name: string, memoryPages = PAGES): HypercallClient => {
    const id = dom0.domainCreate({ name, memoryPages });
    expect(id).toBeGreaterThan(0);
    return hv.client(id, rec.emitter);
  };
  return { hv, spec, rec, dom0, guest };
}

const RW = GNTMAP_host_map;
const RO = GNTMAP_host_map | GNTMAP_readonly;

function map1(c: HypercallClient, op: GnttabMapGrantRef): GnttabMapGrantRef {
  expect(c.mapGrantRef([op])).toBe(0);
  return op;
}

function unmap1(c: HypercallClient, handle: number, hostGfn?: number): number {
  const op: GnttabUnmapGrantRef = hostGfn === undefined ? { handle } : { handle, hostGfn };
  expect(c.unmapGrantRef([op])).toBe(0);
  return op.status!;
}

function copy1(c: HypercallClient, op: GnttabCopy): number {
  expect(c.copy([op])).toBe(0);
  return op.status!;
}

const flagsOf = (granter: HypercallClient, ref: number) => granter.grantEntry(ref)!.flags;
const inUse = (granter: HypercallClient, ref: number) => flagsOf(granter, ref) & (GTF_reading | GTF_writing);
const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

function readBack(c: HypercallClient, gfn: number, off: number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  expect(c.read(gfn, off, b)).toBe(GATE_OK);
  return b;
}

/** Two guests: `a` grants, `b` maps. */
function pair(cfg: Partial<HypervisorConfig> = {}) {
  const m = boot(cfg);
  const a = m.guest('front');
  const b = m.guest('back');
  // Ballooned gfns of each domain, listed once (a gfn stops being invalid once mapped into).
  const slots = new Map<number, number[]>();
  const slot = (c: HypercallClient, i = 0): number => {
    if (!slots.has(c.domid)) slots.set(c.domid, c.invalidGfns(0, 16));
    return slots.get(c.domid)![i]!;
  };
  return { ...m, a, b, slot };
}

// ───────────────────────────── the granting side ─────────────────────────────

describe('grant entries (the granting side)', () => {
  it('grantForeignAccess writes {flags, domid, frame}; endForeignAccess clears it', () => {
    const { a, b, rec } = pair();
    expect(a.grantForeignAccess(8, b.domid, 3, false)).toBe(0);
    expect(a.grantEntry(8)).toEqual({ flags: GTF_permit_access, domid: b.domid, frame: 3 });
    expect(rec.last('grant.access')).toEqual({ granter: a.domid, gref: 8, grantee: b.domid, gfn: 3, ro: false });
    expect(a.grantForeignAccess(9, b.domid, 4, true)).toBe(0);
    expect(a.grantEntry(9)).toEqual({ flags: GTF_permit_access | GTF_readonly, domid: b.domid, frame: 4 });
    // A live entry is not overwritten.
    expect(a.grantForeignAccess(8, b.domid, 5, false)).toBe(-EBUSY);
    expect(a.endForeignAccess(8)).toBe(true);
    expect(a.grantEntry(8)).toEqual({ flags: 0, domid: 0, frame: 3 });
    expect(rec.last('grant.end')).toMatchObject({ granter: a.domid, gref: 8, ok: true });
    // Bad arguments.
    expect(a.grantForeignAccess(64, b.domid, 3, false)).toBe(-EINVAL);
    expect(a.grantForeignAccess(-1, b.domid, 3, false)).toBe(-EINVAL);
    expect(a.grantForeignAccess(10, b.domid, 64, false)).toBe(-EINVAL);
    expect(a.grantEntry(64)).toBeNull();
  });

  it('endForeignAccess fails while the entry is mapped, and succeeds after the last unmap', () => {
    const { a, b, rec, slot } = pair();
    a.grantForeignAccess(8, b.domid, 1, false);
    const m1 = map1(b, { hostGfn: slot(b, 0), flags: RW, ref: 8, dom: a.domid });
    const m2 = map1(b, { hostGfn: slot(b, 1), flags: RO, ref: 8, dom: a.domid });
    expect([m1.status, m2.status]).toEqual([GNTST_okay, GNTST_okay]);
    expect(a.endForeignAccess(8)).toBe(false);
    expect(rec.last('grant.end')).toEqual({ granter: a.domid, gref: 8, ok: false, flags: GTF_permit_access | GTF_reading | GTF_writing });
    // The entry is untouched by the failed end: still permit_access, still mapped.
    expect(a.grantEntry(8)).toEqual({ flags: GTF_permit_access | GTF_reading | GTF_writing, domid: b.domid, frame: 1 });
    expect(a.grantForeignAccess(8, b.domid, 2, false)).toBe(-EBUSY);
    expect(unmap1(b, m1.handle!)).toBe(GNTST_okay);
    expect(a.endForeignAccess(8)).toBe(false); // the read-only mapping still pins it
    expect(unmap1(b, m2.handle!)).toBe(GNTST_okay);
    expect(a.endForeignAccess(8)).toBe(true);
    expect(flagsOf(a, 8)).toBe(0);
  });
});

// ───────────────────────────── map ─────────────────────────────

describe('GNTTABOP_map_grant_ref', () => {
  it('maps the granter frame into a ballooned gfn and sets GTF_reading|GTF_writing; unmap clears them', () => {
    const { a, b, hv, rec, slot } = pair();
    a.grantForeignAccess(8, b.domid, 2, false);
    const host = slot(b);
    const op = map1(b, { hostGfn: host, flags: RW, ref: 8, dom: a.domid });
    expect(op.status).toBe(GNTST_okay);
    expect(op.handle).toBeGreaterThanOrEqual(0);
    const mfn = a.p2mEntry(2);
    expect(op.mfn).toBe(mfn);
    expect(b.p2mEntry(host)).toBe(mfn | P2M_FOREIGN);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access | GTF_reading | GTF_writing);
    expect(b.mappingsHeld()).toBe(1);
    expect(hv.s.frameMaps[mfn]).toBe(1);
    expect(rec.last('grant.map')).toEqual({ granter: a.domid, gref: 8, mapper: b.domid, handle: op.handle, hostGfn: host, mfn, ro: false, status: GNTST_okay });

    expect(unmap1(b, op.handle!, host)).toBe(GNTST_okay);
    expect(rec.last('grant.unmap')).toEqual({ granter: a.domid, gref: 8, mapper: b.domid, handle: op.handle, hostGfn: host, status: GNTST_okay });
    expect(flagsOf(a, 8)).toBe(GTF_permit_access);
    expect(b.p2mEntry(host)).toBe(P2M_INVALID);
    expect(b.mappingsHeld()).toBe(0);
    expect(hv.s.frameMaps[mfn]).toBe(0);
    expect(hv.s.active[(a.domid * hv.config.grantEntries + 8) * A_WORDS + A_PIN]).toBe(0);
  });

  it('a read-only map sets GTF_reading only; GTF_writing goes with the last writer, GTF_reading with the last pin', () => {
    const { a, b, slot } = pair();
    a.grantForeignAccess(8, b.domid, 2, false);
    const ro = map1(b, { hostGfn: slot(b, 0), flags: RO, ref: 8, dom: a.domid });
    expect(ro.status).toBe(GNTST_okay);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access | GTF_reading);
    const rw = map1(b, { hostGfn: slot(b, 1), flags: RW, ref: 8, dom: a.domid });
    const rw2 = map1(b, { hostGfn: slot(b, 2), flags: RW, ref: 8, dom: a.domid });
    expect([rw.status, rw2.status]).toEqual([GNTST_okay, GNTST_okay]);
    expect(rw.mfn).toBe(ro.mfn);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access | GTF_reading | GTF_writing);
    expect(unmap1(b, rw.handle!)).toBe(GNTST_okay);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access | GTF_reading | GTF_writing); // rw2 still writes
    expect(unmap1(b, rw2.handle!)).toBe(GNTST_okay);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access | GTF_reading);
    expect(unmap1(b, ro.handle!)).toBe(GNTST_okay);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access);
  });

  it('a read-only grant maps read-only; a writable map of it is general_error ("Attempt to write-pin a r/o grant entry")', () => {
    const { a, b, slot } = pair();
    a.grantForeignAccess(8, b.domid, 2, true);
    const bad = map1(b, { hostGfn: slot(b, 0), flags: RW, ref: 8, dom: a.domid });
    expect(bad.status).toBe(GNTST_general_error);
    expect(bad.handle).toBe(-1);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access | GTF_readonly); // no pin left behind
    expect(b.mappingsHeld()).toBe(0);
    const ok = map1(b, { hostGfn: slot(b, 0), flags: RO, ref: 8, dom: a.domid });
    expect(ok.status).toBe(GNTST_okay);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access | GTF_readonly | GTF_reading);
    // Still refused while a read-only pin exists (the upgrade path re-checks GTF_readonly).
    const bad2 = map1(b, { hostGfn: slot(b, 1), flags: RW, ref: 8, dom: a.domid });
    expect(bad2.status).toBe(GNTST_general_error);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access | GTF_readonly | GTF_reading);
    expect(unmap1(b, ok.handle!)).toBe(GNTST_okay);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access | GTF_readonly);
  });

  it("mapping another domain's gref (granted to someone else) is general_error, also while the grantee has it mapped", () => {
    const { a, b, guest, slot } = pair();
    const c = guest('mallory');
    a.grantForeignAccess(8, b.domid, 2, false);
    const steal = map1(c, { hostGfn: slot(c), flags: RO, ref: 8, dom: a.domid });
    expect(steal.status).toBe(GNTST_general_error);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access);
    const good = map1(b, { hostGfn: slot(b), flags: RW, ref: 8, dom: a.domid });
    expect(good.status).toBe(GNTST_okay);
    // Pinned by b: c is refused (act->domid != ld), and b's pin is untouched.
    expect(map1(c, { hostGfn: slot(c), flags: RO, ref: 8, dom: a.domid }).status).toBe(GNTST_general_error);
    expect(map1(c, { hostGfn: slot(c), flags: RW, ref: 8, dom: a.domid }).status).toBe(GNTST_general_error);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access | GTF_reading | GTF_writing);
    expect(c.mappingsHeld()).toBe(0);
    // An entry never granted, and one whose access ended, are refused the same way.
    expect(map1(b, { hostGfn: slot(b, 1), flags: RO, ref: 20, dom: a.domid }).status).toBe(GNTST_general_error);
    a.grantForeignAccess(9, b.domid, 3, false);
    expect(a.endForeignAccess(9)).toBe(true);
    expect(map1(b, { hostGfn: slot(b, 1), flags: RO, ref: 9, dom: a.domid }).status).toBe(GNTST_general_error);
    expect(flagsOf(a, 9)).toBe(0);
    expect(unmap1(b, good.handle!)).toBe(GNTST_okay);
  });

  it('a hostile granter entry (sub-page, transitive, wrong type) is refused with general_error', () => {
    const { a, b, hv, slot } = pair();
    const w = (a.domid * hv.config.grantEntries + 8) * 2;
    for (const flags of [GTF_permit_access | GTF_sub_page, GTF_transitive, 2 /* GTF_accept_transfer */]) {
      // The shared entry is guest memory: the granter may write anything into it.
      Atomics.store(hv.s.grant, w + 1, 2);
      Atomics.store(hv.s.grant, w, (flags | (b.domid << 16)) >>> 0);
      expect(map1(b, { hostGfn: slot(b), flags: RO, ref: 8, dom: a.domid }).status).toBe(GNTST_general_error);
      expect(flagsOf(a, 8)).toBe(flags);
    }
  });

  it("the granter's frame must be valid: a ballooned gfn is bad_page, and the flags are restored", () => {
    const { a, b, slot } = pair();
    a.grantForeignAccess(8, b.domid, 40, false); // gfn 40 holds no frame
    expect(map1(b, { hostGfn: slot(b), flags: RW, ref: 8, dom: a.domid }).status).toBe(GNTST_bad_page);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access);
    a.grantForeignAccess(9, b.domid, 5, false);
    expect(a.decreaseReservation(5)).toBe(0);
    expect(map1(b, { hostGfn: slot(b), flags: RO, ref: 9, dom: a.domid }).status).toBe(GNTST_bad_page);
    expect(flagsOf(a, 9)).toBe(GTF_permit_access);
    expect(b.mappingsHeld()).toBe(0);
    // A mapped frame cannot be ballooned out from under its mapper.
    a.grantForeignAccess(10, b.domid, 6, false);
    const m = map1(b, { hostGfn: slot(b), flags: RO, ref: 10, dom: a.domid });
    expect(m.status).toBe(GNTST_okay);
    expect(a.decreaseReservation(6)).toBe(-EBUSY);
  });

  it("statuses follow Xen's check order, one rule at a time", () => {
    const { a, b, dom0, guest, slot } = pair();
    a.grantForeignAccess(8, b.domid, 2, false);
    const host = slot(b);
    const dead = guest('dead');
    dead.grantForeignAccess(8, b.domid, 2, false);
    expect(dom0.domainDestroy(dead.domid)).toBe(0);
    const st = (o: Partial<GnttabMapGrantRef>) => map1(b, { hostGfn: host, flags: RW, ref: 8, dom: a.domid, ...o }).status;

    // 1. neither host nor device map → bad_gntref, before the domain is looked up
    expect(st({ flags: 0 })).toBe(GNTST_bad_gntref);
    expect(st({ flags: GNTMAP_readonly, dom: 7 })).toBe(GNTST_bad_gntref);
    // 2. unknown or dead granter → bad_domain, before the ref is checked
    expect(st({ dom: 7 })).toBe(GNTST_bad_domain); // never created
    expect(st({ dom: dead.domid })).toBe(GNTST_bad_domain); // destroyed
    expect(st({ dom: 0x7fff })).toBe(GNTST_bad_domain); // outside the domain table
    expect(st({ dom: 7, ref: 1 << 20 })).toBe(GNTST_bad_domain);
    // 3. ref outside the table → bad_gntref, before the host address is checked
    for (const ref of [64, 1 << 20, 0xffffffff, -1, 1.5]) expect(st({ ref })).toBe(GNTST_bad_gntref);
    expect(st({ ref: 64, hostGfn: 1 << 20 })).toBe(GNTST_bad_gntref);
    // 4. The host mapping comes last, as in Xen (which never returns bad_virt_addr from a
    //    map): a host gfn outside the mapper's space, or one that holds a frame, is
    //    general_error — and the pin taken for it is undone.
    expect(st({ hostGfn: 64 })).toBe(GNTST_general_error);
    expect(st({ hostGfn: -1 })).toBe(GNTST_general_error);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access);
    expect(st({ hostGfn: 0 })).toBe(GNTST_general_error);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access);
    //    …after the entry checks: an entry not granted to the mapper is reported first.
    expect(st({ hostGfn: 64, ref: 30 })).toBe(GNTST_general_error);
    // 5. entry not granted to the mapper → general_error; 6. r/o grant mapped writable → general_error
    expect(st({ ref: 30 })).toBe(GNTST_general_error);
    // (GNTMAP_device_map is not asserted: Xen refuses it for translated guests with
    // general_error, "No device mapping in HVM domain", while the simulator maps it.)
    // DOMID_SELF as granter is the mapper itself (a self-grant)
    b.grantForeignAccess(8, b.domid, 3, true);
    const self = map1(b, { hostGfn: host, flags: RO, ref: 8, dom: DOMID_SELF });
    expect(self.status).toBe(GNTST_okay);
    expect(b.p2mEntry(host)).toBe(b.p2mEntry(3) | P2M_FOREIGN);
    expect(unmap1(b, self.handle!)).toBe(GNTST_okay);
    // No failed map consumed a handle or left a pin.
    expect(b.mappingsHeld()).toBe(0);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access);
  });

  it('every failed map emits grant.map with its status and handle -1', () => {
    const { a, b, rec, slot } = pair();
    rec.clear();
    map1(b, { hostGfn: slot(b), flags: RW, ref: 8, dom: a.domid });
    expect(rec.of('grant.map')).toEqual([{ granter: a.domid, gref: 8, mapper: b.domid, handle: -1, hostGfn: slot(b), mfn: -1, ro: false, status: GNTST_general_error }]);
  });

  it('maptrack exhaustion (maptrackEntries: 4): the 5th map fails before the ref is checked, a freed handle is reused', () => {
    const { a, b, hv, slot } = pair({ maptrackEntries: 4 });
    for (let r = 8; r < 14; r++) a.grantForeignAccess(r, b.domid, r - 8, false);
    const ops = [8, 9, 10, 11].map((ref, i): GnttabMapGrantRef => ({ hostGfn: slot(b, i), flags: RW, ref, dom: a.domid }));
    b.mapGrantRef(ops);
    expect(ops.map((o) => o.status)).toEqual([0, 0, 0, 0]);
    expect(new Set(ops.map((o) => o.handle))).toEqual(new Set([0, 1, 2, 3]));
    expect(Atomics.load(hv.s.domains, hv.s.dw(b.domid, D_MT_TOP))).toBe(0);
    const full = map1(b, { hostGfn: slot(b, 4), flags: RW, ref: 12, dom: a.domid });
    expect(full.status).toBeLessThan(0);
    expect(flagsOf(a, 12)).toBe(GTF_permit_access); // nothing pinned
    // The maptrack check comes before the ref bounds check (and after the domain lookup).
    const fullBadRef = map1(b, { hostGfn: slot(b, 4), flags: RW, ref: 1000, dom: a.domid });
    expect(fullBadRef.status).toBe(full.status);
    expect(map1(b, { hostGfn: slot(b, 4), flags: RW, ref: 12, dom: 7 }).status).toBe(GNTST_bad_domain);
    expect(unmap1(b, ops[2]!.handle!)).toBe(GNTST_okay);
    const again = map1(b, { hostGfn: slot(b, 4), flags: RO, ref: 12, dom: a.domid });
    expect(again.status).toBe(GNTST_okay);
    expect(again.handle).toBe(ops[2]!.handle);
  });

  it('as in Xen: maptrack exhaustion is GNTST_no_space (-13) since Xen 4.16 (commit 5c10b96795, "maptrack handle shortage is not IOMMU related"), not no_device_space', () => {
    const { a, b, slot } = pair({ maptrackEntries: 4 });
    for (let r = 8; r < 13; r++) a.grantForeignAccess(r, b.domid, r - 8, false);
    const ops = [8, 9, 10, 11, 12].map((ref, i): GnttabMapGrantRef => ({ hostGfn: slot(b, i), flags: RO, ref, dom: a.domid }));
    b.mapGrantRef(ops);
    expect(ops.map((o) => o.status)).toEqual([0, 0, 0, 0, GNTST_no_space]);
  });

  it('as in Xen: a pin counter at 128 refuses further maps (GNTPIN_incr2oflow_mask: bit 7 of the 8-bit counter), the sim allows 255', () => {
    const { a, b, hv } = pair({ maptrackEntries: 300, gfnsPerDomain: 400 });
    a.grantForeignAccess(8, b.domid, 1, true);
    const slots = b.invalidGfns(PAGES, 130);
    const ops = slots.map((hostGfn): GnttabMapGrantRef => ({ hostGfn, flags: RO, ref: 8, dom: a.domid }));
    b.mapGrantRef(ops);
    expect(ops.slice(0, 128).every((o) => o.status === GNTST_okay)).toBe(true);
    expect([ops[128]!.status, ops[129]!.status]).toEqual([GNTST_general_error, GNTST_general_error]);
    expect(hv.s.active[(a.domid * hv.config.grantEntries + 8) * A_WORDS + A_PIN]! >> 8).toBe(128);
  });

  it('a batch of 11 mixed ops: each op gets its own status, handle and event, in order', () => {
    const { a, b, dom0, rec } = pair();
    a.grantForeignAccess(8, b.domid, 1, false);
    a.grantForeignAccess(9, b.domid, 2, true);
    a.grantForeignAccess(10, dom0.domid, 3, false); // not b's
    a.grantForeignAccess(11, b.domid, 50, false); // no frame behind it
    const g = b.invalidGfns(PAGES, 8);
    const ops: GnttabMapGrantRef[] = [
      { hostGfn: g[0]!, flags: RW, ref: 8, dom: a.domid }, // ok
      { hostGfn: g[1]!, flags: RW, ref: 9, dom: a.domid }, // rw of r/o grant
      { hostGfn: g[1]!, flags: RO, ref: 9, dom: a.domid }, // ok
      { hostGfn: g[2]!, flags: RO, ref: 10, dom: a.domid }, // not granted to b
      { hostGfn: g[2]!, flags: RO, ref: 11, dom: a.domid }, // bad page
      { hostGfn: g[2]!, flags: RO, ref: 64, dom: a.domid }, // bad ref
      { hostGfn: g[2]!, flags: RO, ref: 8, dom: 6 }, // no such domain
      { hostGfn: g[2]!, flags: 0, ref: 8, dom: a.domid }, // no host/device flag
      { hostGfn: 1 << 20, flags: RO, ref: 8, dom: a.domid }, // host gfn outside
      { hostGfn: 3, flags: RO, ref: 8, dom: a.domid }, // populated host gfn
      { hostGfn: g[2]!, flags: RO, ref: 8, dom: a.domid }, // ok (second pin of ref 8)
    ];
    rec.clear();
    expect(b.mapGrantRef(ops)).toBe(0);
    expect(ops.map((o) => o.status)).toEqual([
      GNTST_okay,
      GNTST_general_error,
      GNTST_okay,
      GNTST_general_error,
      GNTST_bad_page,
      GNTST_bad_gntref,
      GNTST_bad_domain,
      GNTST_bad_gntref,
      GNTST_general_error,
      GNTST_general_error,
      GNTST_okay,
    ]);
    expect(rec.of('grant.map').map((e) => e.status)).toEqual(ops.map((o) => o.status));
    const good = ops.filter((o) => o.status === GNTST_okay);
    expect(new Set(good.map((o) => o.handle)).size).toBe(3);
    expect(ops.filter((o) => o.status !== GNTST_okay).every((o) => o.handle === -1)).toBe(true);
    expect(b.mappingsHeld()).toBe(3);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access | GTF_reading | GTF_writing);
    expect(flagsOf(a, 9)).toBe(GTF_permit_access | GTF_readonly | GTF_reading);
    expect(inUse(a, 10) | inUse(a, 11)).toBe(0);
    // Unmap the batch with bad handles interleaved.
    const un: GnttabUnmapGrantRef[] = [
      { handle: good[0]!.handle! },
      { handle: good[0]!.handle! }, // double
      { handle: 31 }, // never mapped
      { handle: 32 }, // outside maptrack
      { handle: good[1]!.handle!, hostGfn: g[0]! }, // wrong host gfn
      { handle: good[1]!.handle!, hostGfn: g[1]! },
      { handle: good[2]!.handle!, hostGfn: g[2]! },
    ];
    b.unmapGrantRef(un);
    expect(un.map((o) => o.status)).toEqual([GNTST_okay, GNTST_bad_handle, GNTST_bad_handle, GNTST_bad_handle, GNTST_general_error, GNTST_okay, GNTST_okay]);
    expect(b.mappingsHeld()).toBe(0);
    expect(inUse(a, 8) | inUse(a, 9)).toBe(0);
  });
});

// ───────────────────────────── unmap ─────────────────────────────

describe('GNTTABOP_unmap_grant_ref', () => {
  it('bad, absent and double handles are bad_handle; a wrong host gfn is general_error and leaves the mapping', () => {
    const { a, b, rec, slot } = pair();
    a.grantForeignAccess(8, b.domid, 1, false);
    const m = map1(b, { hostGfn: slot(b), flags: RW, ref: 8, dom: a.domid });
    for (const h of [-1, 32, 0xffffffff, 1.5, 5]) expect(unmap1(b, h)).toBe(GNTST_bad_handle);
    expect(unmap1(b, m.handle!, slot(b) + 1)).toBe(GNTST_general_error);
    expect(rec.last('grant.unmap')).toMatchObject({ granter: a.domid, gref: 8, status: GNTST_general_error });
    expect(b.mappingsHeld()).toBe(1);
    expect(inUse(a, 8)).toBe(GTF_reading | GTF_writing);
    expect(unmap1(b, m.handle!, slot(b))).toBe(GNTST_okay);
    expect(unmap1(b, m.handle!, slot(b))).toBe(GNTST_bad_handle); // double unmap
    expect(unmap1(b, m.handle!)).toBe(GNTST_bad_handle);
    expect(rec.last('grant.unmap')).toMatchObject({ status: GNTST_bad_handle, handle: m.handle });
    expect(b.mappingsHeld()).toBe(0);
    expect(inUse(a, 8)).toBe(0);
  });

  it("a handle is per domain: another domain cannot unmap b's mapping with b's handle number", () => {
    const { a, b, guest, slot } = pair();
    const c = guest('c');
    a.grantForeignAccess(8, b.domid, 1, false);
    const m = map1(b, { hostGfn: slot(b), flags: RW, ref: 8, dom: a.domid });
    expect(unmap1(c, m.handle!)).toBe(GNTST_bad_handle);
    expect(b.mappingsHeld()).toBe(1);
    expect(unmap1(b, m.handle!)).toBe(GNTST_okay);
  });

  it('a stale handle: once unmapped, its number is reused by the next map and then names the NEW mapping (Xen semantics)', () => {
    // Xen keeps no generation in grant_handle_t: a freed maptrack entry goes back on the free
    // list and the next map returns the same number. Whoever still holds the old number holds a
    // valid handle to the new mapping; the only guard is host_addr, which must match.
    const { a, b, slot } = pair();
    a.grantForeignAccess(8, b.domid, 1, false);
    a.grantForeignAccess(9, b.domid, 2, false);
    const old = map1(b, { hostGfn: slot(b, 0), flags: RW, ref: 8, dom: a.domid });
    expect(unmap1(b, old.handle!)).toBe(GNTST_okay);
    const neu = map1(b, { hostGfn: slot(b, 1), flags: RO, ref: 9, dom: a.domid });
    expect(neu.status).toBe(GNTST_okay);
    expect(neu.handle).toBe(old.handle); // reused
    // The old holder, naming its old host gfn, does not hit the new mapping.
    expect(unmap1(b, old.handle!, slot(b, 0))).toBe(GNTST_general_error);
    expect(b.mappingsHeld()).toBe(1);
    expect(inUse(a, 9)).toBe(GTF_reading);
    expect(b.p2mEntry(slot(b, 1))).toBe(a.p2mEntry(2) | P2M_FOREIGN);
    // Without the host gfn, the number alone unmaps whatever it now names: the new mapping.
    expect(unmap1(b, old.handle!)).toBe(GNTST_okay);
    expect(b.p2mEntry(slot(b, 1))).toBe(P2M_INVALID);
    expect(inUse(a, 9)).toBe(0);
    expect(unmap1(b, neu.handle!)).toBe(GNTST_bad_handle);
  });

  it('unmap_and_replace: the host gfn shows the new frame, the new gfn is emptied, the grant is released', () => {
    const { a, b, rec, slot } = pair();
    a.grantForeignAccess(8, b.domid, 1, false);
    const host = slot(b);
    const m = map1(b, { hostGfn: host, flags: RW, ref: 8, dom: a.domid });
    const scratch = b.p2mEntry(7);
    const bad: GnttabUnmapAndReplace = { hostGfn: host, newGfn: 40, handle: m.handle! }; // 40 holds no frame
    b.unmapAndReplace(bad);
    expect(bad.status).toBe(GNTST_general_error);
    const wrongHost: GnttabUnmapAndReplace = { hostGfn: host + 1, newGfn: 7, handle: m.handle! };
    b.unmapAndReplace(wrongHost);
    expect(wrongHost.status).toBe(GNTST_general_error);
    expect(b.mappingsHeld()).toBe(1);
    const op: GnttabUnmapAndReplace = { hostGfn: host, newGfn: 7, handle: m.handle! };
    expect(b.unmapAndReplace(op)).toBe(0);
    expect(op.status).toBe(GNTST_okay);
    expect(b.p2mEntry(host)).toBe(scratch);
    expect(b.p2mEntry(7)).toBe(P2M_INVALID);
    expect(inUse(a, 8)).toBe(0);
    expect(b.mappingsHeld()).toBe(0);
    expect(rec.last('grant.unmap_replace')).toEqual({ granter: a.domid, gref: 8, mapper: b.domid, handle: m.handle, hostGfn: host, newGfn: 7, newMfn: scratch, status: GNTST_okay });
    const again: GnttabUnmapAndReplace = { hostGfn: host, newGfn: 6, handle: m.handle! };
    b.unmapAndReplace(again);
    expect(again.status).toBe(GNTST_bad_handle);
    expect(a.endForeignAccess(8)).toBe(true);
  });

  it('unmap_and_replace refuses a new gfn that is a foreign mapping, outside the domain, or not a gfn', () => {
    const { a, b, slot } = pair();
    a.grantForeignAccess(8, b.domid, 1, false);
    a.grantForeignAccess(9, b.domid, 2, false);
    const m = map1(b, { hostGfn: slot(b, 0), flags: RW, ref: 8, dom: a.domid });
    const other = map1(b, { hostGfn: slot(b, 1), flags: RW, ref: 9, dom: a.domid });
    for (const newGfn of [slot(b, 1), slot(b, 0), 64, 1.5, 1 << 20]) {
      const op: GnttabUnmapAndReplace = { hostGfn: slot(b, 0), newGfn, handle: m.handle! };
      b.unmapAndReplace(op);
      expect(op.status).toBe(GNTST_general_error);
    }
    expect(b.mappingsHeld()).toBe(2);
    expect(unmap1(b, other.handle!)).toBe(GNTST_okay);
    expect(unmap1(b, m.handle!)).toBe(GNTST_okay);
  });

  it('unmap_and_replace with a negative new gfn is general_error, not a silent plain unmap', () => {
    // unmapAndReplace() passes op.newGfn straight to unmapHandle(), whose internal "no
    // replacement" sentinel is any negative number (`replace = newGfn >= 0`): newGfn -1 (or NaN)
    // unmaps without replacing, reports GNTST_okay and emits 'grant.unmap' rather than
    // 'grant.unmap_replace', while newGfn 64 or 1.5 are general_error.
    const { a, b, rec, slot } = pair();
    a.grantForeignAccess(8, b.domid, 1, false);
    const m = map1(b, { hostGfn: slot(b), flags: RW, ref: 8, dom: a.domid });
    rec.clear();
    const op: GnttabUnmapAndReplace = { hostGfn: slot(b), newGfn: -1, handle: m.handle! };
    b.unmapAndReplace(op);
    expect(op.status).toBe(GNTST_general_error);
    expect(b.mappingsHeld()).toBe(1);
    expect(rec.of('grant.unmap')).toEqual([]);
  });
});

// ───────────────────────────── data ─────────────────────────────

describe('data moves', () => {
  it('a write through a writable mapping is read on the granting side, and vice versa', () => {
    const { a, b, slot } = pair();
    a.grantForeignAccess(8, b.domid, 4, false);
    const host = slot(b);
    const m = map1(b, { hostGfn: host, flags: RW, ref: 8, dom: a.domid });
    const data = bytes(300, 7);
    expect(b.write(host, 100, data)).toBe(GATE_OK);
    expect(readBack(a, 4, 100, 300)).toEqual(data);
    const back = bytes(64, 99);
    expect(a.write(4, 4000, back)).toBe(GATE_OK);
    expect(readBack(b, host, 4000, 64)).toEqual(back);
    expect(unmap1(b, m.handle!)).toBe(GNTST_okay);
    expect(readBack(a, 4, 100, 300)).toEqual(data); // the data stays with the granter
  });

  it('grant copy by gref in both directions moves the bytes', () => {
    const { a, b } = pair();
    a.grantForeignAccess(8, b.domid, 4, true); // source: read-only grant is enough
    a.grantForeignAccess(9, b.domid, 5, false); // dest: writable
    const src = bytes(XEN_PAGE_SIZE, 3);
    a.write(4, 0, src);
    // a's gref 8 → b's own gfn 2 (DOMID_SELF, by frame)
    const op1: GnttabCopy = { source: { ref: 8, domid: a.domid, offset: 10 }, dest: { gfn: 2, domid: DOMID_SELF, offset: 20 }, len: 1000, flags: GNTCOPY_source_gref };
    expect(copy1(b, op1)).toBe(GNTST_okay);
    expect(readBack(b, 2, 20, 1000)).toEqual(src.subarray(10, 1010));
    // b's own gfn 3 → a's gref 9
    const mine = bytes(512, 200);
    b.write(3, 0, mine);
    const op2: GnttabCopy = { source: { gfn: 3, domid: DOMID_SELF, offset: 0 }, dest: { ref: 9, domid: a.domid, offset: XEN_PAGE_SIZE - 512 }, len: 512, flags: GNTCOPY_dest_gref };
    expect(copy1(b, op2)).toBe(GNTST_okay);
    expect(readBack(a, 5, XEN_PAGE_SIZE - 512, 512)).toEqual(mine);
    // gref → gref (both a's; b may use both)
    const op3: GnttabCopy = { source: { ref: 8, domid: a.domid, offset: 0 }, dest: { ref: 9, domid: a.domid, offset: 0 }, len: 16, flags: GNTCOPY_source_gref | GNTCOPY_dest_gref };
    expect(copy1(b, op3)).toBe(GNTST_okay);
    expect(readBack(a, 5, 0, 16)).toEqual(src.subarray(0, 16));
  });

  it('a grant copy pins the entries transiently only: GTF_reading/GTF_writing are cleared after it, and access can be ended', () => {
    // claimRef() encodes the bits it set as `gw | (set << 28)`; GTF_reading << 28 is 2^31, so the
    // value is negative (and GTF_writing << 28 overflows 32 bits): copyOne's `if (srcPinned >= 0)`
    // never calls releaseTransient, and the flags stay set forever.
    const { a, b, rec } = pair();
    a.grantForeignAccess(8, b.domid, 4, false);
    a.grantForeignAccess(9, b.domid, 5, false);
    const ops: GnttabCopy[] = [
      { source: { ref: 8, domid: a.domid, offset: 0 }, dest: { gfn: 2, domid: DOMID_SELF, offset: 0 }, len: 16, flags: GNTCOPY_source_gref },
      { source: { gfn: 2, domid: DOMID_SELF, offset: 0 }, dest: { ref: 9, domid: a.domid, offset: 0 }, len: 16, flags: GNTCOPY_dest_gref },
    ];
    b.copy(ops);
    expect(ops.map((o) => o.status)).toEqual([GNTST_okay, GNTST_okay]);
    expect(rec.of('grant.copy').map((e) => e.status)).toEqual([GNTST_okay, GNTST_okay]);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access);
    expect(flagsOf(a, 9)).toBe(GTF_permit_access);
    expect(a.endForeignAccess(8)).toBe(true);
    expect(a.endForeignAccess(9)).toBe(true);
  });

  it('a copy that fails after pinning (bad_page, bad_copy_arg, r/o dest) leaves no flags behind', () => {
    const { a, b } = pair();
    a.grantForeignAccess(8, b.domid, 50, false); // no frame
    a.grantForeignAccess(9, b.domid, 5, false);
    a.grantForeignAccess(10, b.domid, 6, true);
    const s = (o: GnttabCopy) => copy1(b, o);
    expect(s({ source: { ref: 8, domid: a.domid, offset: 0 }, dest: { gfn: 1, domid: DOMID_SELF, offset: 0 }, len: 8, flags: GNTCOPY_source_gref })).toBe(GNTST_bad_page);
    expect(s({ source: { ref: 9, domid: a.domid, offset: 4090 }, dest: { gfn: 1, domid: DOMID_SELF, offset: 0 }, len: 8, flags: GNTCOPY_source_gref })).toBe(GNTST_bad_copy_arg);
    expect(s({ source: { ref: 9, domid: a.domid, offset: 0 }, dest: { ref: 10, domid: a.domid, offset: 0 }, len: 8, flags: GNTCOPY_source_gref | GNTCOPY_dest_gref })).toBe(GNTST_general_error);
    expect([flagsOf(a, 8), flagsOf(a, 9), flagsOf(a, 10)]).toEqual([GTF_permit_access, GTF_permit_access, GTF_permit_access | GTF_readonly]);
  });

  it('a copy into an entry mapped read-only keeps GTF_reading and clears only the GTF_writing it set', () => {
    const { a, b, slot } = pair();
    a.grantForeignAccess(8, b.domid, 4, false);
    const m = map1(b, { hostGfn: slot(b), flags: RO, ref: 8, dom: a.domid });
    const st = copy1(b, { source: { gfn: 1, domid: DOMID_SELF, offset: 0 }, dest: { ref: 8, domid: a.domid, offset: 0 }, len: 8, flags: GNTCOPY_dest_gref });
    expect(st).toBe(GNTST_okay);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access | GTF_reading);
    expect(unmap1(b, m.handle!)).toBe(GNTST_okay);
    expect(flagsOf(a, 8)).toBe(GTF_permit_access);
  });
});

// ───────────────────────────── copy statuses ─────────────────────────────

describe('GNTTABOP_copy statuses', () => {
  it('by-frame access to another domain is permission_denied (copying a foreign frame by number)', () => {
    const { a, b } = pair();
    a.write(1, 0, bytes(32, 5));
    const secret = readBack(a, 1, 0, 32);
    // b names a's gfn 1 directly, as source and as dest.
    expect(copy1(b, { source: { gfn: 1, domid: a.domid, offset: 0 }, dest: { gfn: 2, domid: DOMID_SELF, offset: 0 }, len: 32, flags: 0 })).toBe(GNTST_permission_denied);
    expect(copy1(b, { source: { gfn: 2, domid: DOMID_SELF, offset: 0 }, dest: { gfn: 1, domid: a.domid, offset: 0 }, len: 32, flags: 0 })).toBe(GNTST_permission_denied);
    // The gref flag on the other side does not help.
    a.grantForeignAccess(8, b.domid, 3, false);
    expect(copy1(b, { source: { gfn: 1, domid: a.domid, offset: 0 }, dest: { ref: 8, domid: a.domid, offset: 0 }, len: 32, flags: GNTCOPY_dest_gref })).toBe(GNTST_permission_denied);
    expect(readBack(b, 2, 0, 32)).not.toEqual(secret);
    expect(readBack(a, 1, 0, 32)).toEqual(secret);
  });

  it("by own gfn: a foreign mapping or an empty gfn is bad_page (one can't copy a foreign frame through its mapping)", () => {
    const { a, b, slot } = pair();
    a.grantForeignAccess(8, b.domid, 1, false);
    const host = slot(b);
    const m = map1(b, { hostGfn: host, flags: RW, ref: 8, dom: a.domid });
    const c = (o: GnttabCopy) => copy1(b, o);
    expect(c({ source: { gfn: host, domid: DOMID_SELF, offset: 0 }, dest: { gfn: 2, domid: DOMID_SELF, offset: 0 }, len: 8, flags: 0 })).toBe(GNTST_bad_page);
    expect(c({ source: { gfn: 2, domid: DOMID_SELF, offset: 0 }, dest: { gfn: host, domid: DOMID_SELF, offset: 0 }, len: 8, flags: 0 })).toBe(GNTST_bad_page);
    expect(c({ source: { gfn: 40, domid: DOMID_SELF, offset: 0 }, dest: { gfn: 2, domid: DOMID_SELF, offset: 0 }, len: 8, flags: 0 })).toBe(GNTST_bad_page);
    expect(c({ source: { gfn: 1 << 20, domid: DOMID_SELF, offset: 0 }, dest: { gfn: 2, domid: DOMID_SELF, offset: 0 }, len: 8, flags: 0 })).toBe(GNTST_bad_page);
    expect(c({ source: { domid: DOMID_SELF, offset: 0 }, dest: { gfn: 2, domid: DOMID_SELF, offset: 0 }, len: 8, flags: 0 })).toBe(GNTST_bad_page);
    expect(unmap1(b, m.handle!)).toBe(GNTST_okay);
  });

  it('offset + len beyond the page is bad_copy_arg; a read-only dest grant is general_error; bad refs and domains', () => {
    const { a, b, dom0 } = pair();
    a.grantForeignAccess(8, b.domid, 1, false);
    a.grantForeignAccess(9, b.domid, 2, true);
    a.grantForeignAccess(10, dom0.domid, 3, false);
    const self = (gfn: number, offset = 0) => ({ gfn, domid: DOMID_SELF, offset });
    const ref = (r: number, offset = 0, domid = a.domid) => ({ ref: r, domid, offset });
    const c = (o: GnttabCopy) => copy1(b, o);
    const S = GNTCOPY_source_gref;
    const D = GNTCOPY_dest_gref;
    expect(c({ source: ref(8, 4000), dest: self(2), len: 97, flags: S })).toBe(GNTST_bad_copy_arg);
    expect(c({ source: ref(8, 4000), dest: self(2), len: 96, flags: S })).toBe(GNTST_okay);
    expect(c({ source: self(2), dest: ref(8, 1), len: XEN_PAGE_SIZE, flags: D })).toBe(GNTST_bad_copy_arg);
    expect(c({ source: self(2, 0), dest: self(3, 0), len: XEN_PAGE_SIZE + 1, flags: 0 })).toBe(GNTST_bad_copy_arg);
    expect(c({ source: self(2, -1), dest: self(3, 0), len: 1, flags: 0 })).toBe(GNTST_bad_copy_arg);
    expect(c({ source: self(2), dest: ref(9), len: 8, flags: D })).toBe(GNTST_general_error); // r/o dest
    expect(c({ source: ref(9), dest: self(2), len: 8, flags: S })).toBe(GNTST_okay); // r/o source is fine
    expect(c({ source: ref(10), dest: self(2), len: 8, flags: S })).toBe(GNTST_general_error); // granted to dom0
    expect(c({ source: ref(20), dest: self(2), len: 8, flags: S })).toBe(GNTST_general_error); // not granted
    expect(c({ source: ref(64), dest: self(2), len: 8, flags: S })).toBe(GNTST_bad_gntref);
    expect(c({ source: self(2), dest: ref(-1), len: 8, flags: D })).toBe(GNTST_bad_gntref);
    expect(c({ source: ref(8, 0, 7), dest: self(2), len: 8, flags: S })).toBe(GNTST_bad_domain);
    expect(c({ source: self(2), dest: ref(8, 0, 0x7fff), len: 8, flags: D })).toBe(GNTST_bad_domain);
    // Source claim before dest claim, both before the page-bounds check.
    expect(c({ source: ref(64), dest: ref(9), len: 8, flags: S | D })).toBe(GNTST_bad_gntref);
    expect(c({ source: ref(8), dest: ref(64), len: 9999, flags: S | D })).toBe(GNTST_bad_gntref);
  });

  it('as in Xen: only DOMID_SELF may reference via frame: the caller naming its own domid numerically is permission_denied', () => {
    // gnttab_copy_lock_domain(): `if ( domid != DOMID_SELF && !is_gref ) return GNTST_permission_denied;`
    // The simulator resolves DOMID_SELF first and compares with the caller (copyOne: `sd !== c`).
    const { b } = pair();
    expect(copy1(b, { source: { gfn: 1, domid: b.domid, offset: 0 }, dest: { gfn: 2, domid: DOMID_SELF, offset: 0 }, len: 8, flags: 0 })).toBe(GNTST_permission_denied);
    expect(copy1(b, { source: { gfn: 1, domid: DOMID_SELF, offset: 0 }, dest: { gfn: 2, domid: b.domid, offset: 0 }, len: 8, flags: 0 })).toBe(GNTST_permission_denied);
  });

  it('as in Xen: the by-frame permission check comes before the domain lookup, side by side (source, then dest)', () => {
    // Xen: lock_domain(source): permission, then lookup; then lock_domain(dest). The simulator
    // looks both domains up first, so a by-frame side naming a dead domain gives bad_domain.
    const { a, b } = pair();
    a.grantForeignAccess(8, b.domid, 1, false);
    expect(copy1(b, { source: { gfn: 1, domid: 7, offset: 0 }, dest: { gfn: 2, domid: DOMID_SELF, offset: 0 }, len: 8, flags: 0 })).toBe(GNTST_permission_denied);
    expect(copy1(b, { source: { gfn: 1, domid: a.domid, offset: 0 }, dest: { ref: 8, domid: 7, offset: 0 }, len: 8, flags: GNTCOPY_dest_gref })).toBe(GNTST_permission_denied);
    // …while a dead source domain by gref is reported before a by-frame dest's permission.
    expect(copy1(b, { source: { ref: 8, domid: 7, offset: 0 }, dest: { gfn: 2, domid: a.domid, offset: 0 }, len: 8, flags: GNTCOPY_source_gref })).toBe(GNTST_bad_domain);
  });

  it('as in Xen: a zero-length copy is GNTST_okay without any check (gnttab_copy_one: `if ( unlikely(!op->len) ) return GNTST_okay;`)', () => {
    const { b } = pair();
    expect(copy1(b, { source: { ref: 64, domid: 7, offset: 0 }, dest: { gfn: 40, domid: DOMID_SELF, offset: 0 }, len: 0, flags: GNTCOPY_source_gref })).toBe(GNTST_okay);
  });
});

// ───────────────────────────── domains ─────────────────────────────

describe('destroyed domains and their grants', () => {
  it('a destroyed granter: new maps are bad_domain; a held mapping survives, reads the data, and its unmap releases the domain', () => {
    const { a, b, dom0, hv, rec, slot } = pair();
    a.grantForeignAccess(8, b.domid, 4, false);
    a.grantForeignAccess(9, b.domid, 5, false);
    const host = slot(b);
    const m = map1(b, { hostGfn: host, flags: RW, ref: 8, dom: a.domid });
    const data = bytes(128, 42);
    expect(a.write(4, 0, data)).toBe(GATE_OK);
    const mfn = a.p2mEntry(4);
    rec.clear();
    expect(dom0.domainDestroy(a.domid)).toBe(0);
    expect(rec.of('domain.destroy')).toEqual([{ domid: a.domid, framesFreed: PAGES - 1, framesZombie: 1, mappingsReleased: 0, portsClosed: 0 }]);
    expect(rec.of('domain.released')).toEqual([]);
    expect(dom0.domainInfo(a.domid)).toMatchObject({ state: DOMSTATE_DYING, totPages: 1 });
    // New maps and copies of the dead granter's grants are refused.
    expect(map1(b, { hostGfn: slot(b, 1), flags: RO, ref: 9, dom: a.domid }).status).toBe(GNTST_bad_domain);
    expect(map1(b, { hostGfn: slot(b, 1), flags: RO, ref: 8, dom: a.domid }).status).toBe(GNTST_bad_domain);
    expect(copy1(b, { source: { ref: 9, domid: a.domid, offset: 0 }, dest: { gfn: 1, domid: DOMID_SELF, offset: 0 }, len: 8, flags: GNTCOPY_source_gref })).toBe(GNTST_bad_domain);
    // The held mapping still reads (and writes) the frame.
    expect(readBack(b, host, 0, 128)).toEqual(data);
    expect(b.write(host, 200, bytes(8, 1))).toBe(GATE_OK);
    expect(hv.s.frameOwner[mfn]).toBe(a.domid);
    // The domid is not reusable while it is a zombie.
    expect(dom0.domainCreate({ domid: a.domid, name: 'reuse', memoryPages: 1 })).toBe(-EINVAL);
    expect(unmap1(b, m.handle!)).toBe(GNTST_okay);
    expect(rec.of('domain.released')).toEqual([{ domid: a.domid }]);
    expect(dom0.domainInfo(a.domid)).toBeNull();
    expect(hv.s.frameOwner[mfn]).toBe(-1);
    expect(hv.s.frameMaps[mfn]).toBe(0);
    expect(b.mappingsHeld()).toBe(0);
    expect(dom0.domainCreate({ domid: a.domid, name: 'reuse', memoryPages: 1 })).toBe(a.domid);
  });

  it('destroying a granter with nothing mapped releases it at once; its free frames return to the allocator', () => {
    const { a, b, dom0, hv, rec } = pair();
    a.grantForeignAccess(8, b.domid, 4, false);
    const free0 = Atomics.load(hv.s.global, G_FREE_TOP);
    rec.clear();
    expect(dom0.domainDestroy(a.domid)).toBe(0);
    expect(rec.events.map((e) => e.kind)).toEqual(['domain.destroy', 'domain.released']);
    expect(Atomics.load(hv.s.global, G_FREE_TOP)).toBe(free0 + PAGES);
    expect(dom0.domainDestroy(a.domid)).toBe(-ESRCH);
  });

  it("destroying the mapper releases its mappings: the granter's flags clear and access can be ended", () => {
    const { a, b, dom0, hv, rec, slot } = pair();
    a.grantForeignAccess(8, b.domid, 4, false);
    a.grantForeignAccess(9, b.domid, 5, true);
    map1(b, { hostGfn: slot(b, 0), flags: RW, ref: 8, dom: a.domid });
    map1(b, { hostGfn: slot(b, 1), flags: RO, ref: 9, dom: a.domid });
    map1(b, { hostGfn: slot(b, 2), flags: RO, ref: 8, dom: a.domid });
    rec.clear();
    expect(dom0.domainDestroy(b.domid)).toBe(0);
    expect(rec.last('domain.destroy')).toMatchObject({ domid: b.domid, mappingsReleased: 3, framesZombie: 0 });
    expect(rec.of('grant.unmap').length).toBe(3);
    expect(inUse(a, 8) | inUse(a, 9)).toBe(0);
    expect(hv.s.frameMaps[a.p2mEntry(4)]).toBe(0);
    expect(a.endForeignAccess(8)).toBe(true);
    expect(a.endForeignAccess(9)).toBe(true);
  });

  it('a zombie granter whose frame is mapped by a mapper that is then destroyed is released by that destroy', () => {
    const { a, b, dom0, rec, slot } = pair();
    a.grantForeignAccess(8, b.domid, 4, false);
    map1(b, { hostGfn: slot(b), flags: RW, ref: 8, dom: a.domid });
    dom0.domainDestroy(a.domid);
    expect(rec.of('domain.released')).toEqual([]);
    dom0.domainDestroy(b.domid);
    // b's destroy unmaps a's last mapped frame (a released), then b frees its own frames.
    expect(rec.of('domain.released')).toEqual([{ domid: a.domid }, { domid: b.domid }]);
    expect(dom0.domainInfo(a.domid)).toBeNull();
  });

  it('destroying a domain that maps its own grant frees that frame twice (the free stack then hands it to two domains)', () => {
    // domainDestroy() first releases the domain's own mappings: unmapHandle() sees frameMaps
    // drop to 0 with the granter (itself) DYING and frees the frame via freeZombieFrame(); the
    // p2m loop that follows still finds the frame at its gfn and frees it again.
    const { hv, dom0, guest, slot } = pair();
    const d = guest('selfmapper');
    d.grantForeignAccess(8, d.domid, 1, false);
    expect(map1(d, { hostGfn: slot(d), flags: RW, ref: 8, dom: DOMID_SELF }).status).toBe(GNTST_okay);
    const free0 = Atomics.load(hv.s.global, G_FREE_TOP);
    expect(dom0.domainDestroy(d.domid)).toBe(0);
    const top = Atomics.load(hv.s.global, G_FREE_TOP);
    expect(top).toBe(free0 + PAGES);
    const stack = Array.from(hv.s.freeStack.subarray(0, top));
    expect(new Set(stack).size).toBe(stack.length);
  });

  it('a guest cannot do toolstack operations', () => {
    const { a, b } = pair();
    expect(a.domainCreate({ name: 'x', memoryPages: 1 })).toBe(-EPERM);
    expect(a.domainDestroy(b.domid)).toBe(-EPERM);
    expect(a.domainDestroy(a.domid)).toBe(-EPERM);
    expect(a.domainPause(b.domid)).toBe(-EPERM);
    expect(a.querySize(b.domid)).toBe(-EPERM);
    expect(a.querySize()).toEqual({ nrFrames: 1, maxNrFrames: 1 });
  });
});
