/**
 * Model test: random grant-table traffic from three guests (plus dom0, a destroyed domain and a
 * domid never created) against a plain reference model of Xen's rules written here (maps, pins,
 * maptrack free list, shared-entry flags, p2m, frame contents). After every operation EVERY
 * status, handle and mfn is compared, and then every grant entry ({flags, domid, frame}: so
 * GTF_reading/GTF_writing), every p2m entry and every domain's mapping count.
 *
 * Traffic: grant / end access (also on entries in use), map rw/ro with hostile flags, bad refs,
 * bad or dead domains, populated or out-of-range host gfns, in batches; unmap and
 * unmap_and_replace by live, stale or made-up handles with right, wrong or no host gfn; copies by
 * gref or gfn in both directions with bad offsets and lengths; gate reads and writes (contents
 * checked); balloon out / populate (bad_page and -EBUSY cases).
 *
 * The model follows Xen (xen/common/grant_table.c at c447b730) where it and the simulator differ:
 * maptrack exhaustion is GNTST_no_space; a copy side by frame must say DOMID_SELF literally and
 * that check precedes the domain lookup; a zero-length copy is GNTST_okay unchecked; copies pin
 * only transiently. See grant.test.ts (the `XEN:`/`BUG:` tests) for each of these on its own.
 * Where Xen differs by guest type it follows the simulator's choices: GNTMAP_device_map is a
 * mapping (as for PV guests); a host gfn outside the domain or already populated is
 * GNTST_general_error, found after the entry checks (Xen creates the host mapping last).
 */
import fc from 'fast-check';
import {
  DOMID_SELF,
  EBUSY,
  EINVAL,
  ENOMEM,
  GNTCOPY_dest_gref,
  GNTCOPY_source_gref,
  GNTMAP_application_map,
  GNTMAP_device_map,
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
  GTF_writing,
  XEN_PAGE_SIZE,
  gntstName,
} from '@pvsim/abi';
import type { EventEmitter } from '@pvsim/eventlog';
import { describe, expect, it } from 'vitest';
import { GATE_FAULT, GATE_OK, Hypervisor, P2M_FOREIGN, P2M_INVALID, createHypervisorSpec, type GnttabCopy, type GnttabMapGrantRef, type GnttabUnmapGrantRef, type HypercallClient } from './index.js';

const GE = 12; // grant entries per domain
const MTE = 5; // maptrack handles per domain
const GFNS = 12; // gfns per domain
const PAGES = 6; // populated at creation: 0..5; 6..11 ballooned
const GUESTS = [1, 2, 3] as const;
const DEAD = 4; // created, then destroyed
const NEVER = 5; // never created
/** Xen ≥ 4.16 (commit 5c10b96795). */
const MAPTRACK_FULL = GNTST_no_space;

// ───────────────────────────── operations ─────────────────────────────

/**
 * Operations carry both raw (possibly hostile) arguments and a selector, resolved against the
 * model's state when the operation runs: 'mine' picks an entry currently granted to the actor,
 * 'other' one granted to somebody else, 'raw' keeps the raw numbers. So most maps and copies name
 * something that exists, and the rest probe every refusal.
 */
type Sel = 'mine' | 'other' | 'raw';
type RefSide = { byRef: true; sel: Sel; pick: number; dom: number; ref: number; offset: number };
type GfnSide = { byRef: false; own: boolean; pick: number; dom: number; gfn: number; offset: number };
type Side = RefSide | GfnSide;
/** A copy side with its selector resolved. */
type RSide = { byRef: true; dom: number; ref: number; offset: number } | { byRef: false; dom: number; gfn: number; offset: number };
type GfnSel = { sel: 'own' | 'mapped' | 'free' | 'raw'; pick: number; gfn: number };
type MapArg = { sel: Sel; pick: number; dom: number; ref: number; host: GfnSel; flags: number };

type Op =
  | { t: 'grant'; actor: number; ref: number; grantee: number; gfn: number; ro: boolean }
  | { t: 'end'; actor: number; ref: number }
  | { t: 'map'; actor: number; ops: MapArg[] }
  | { t: 'unmap'; actor: number; ops: { pick: number; live: boolean; host: 'none' | 'right' | 'wrong' }[] }
  | { t: 'replace'; actor: number; pick: number; live: boolean; newGfn: GfnSel; wrongHost: boolean }
  | { t: 'copy'; actor: number; ops: { src: Side; dst: Side; len: number }[] }
  | { t: 'write'; actor: number; gfn: GfnSel; offset: number; len: number; v: number }
  | { t: 'read'; actor: number; gfn: GfnSel; offset: number; len: number }
  | { t: 'decrease'; actor: number; gfn: GfnSel }
  | { t: 'populate'; actor: number; gfn: GfnSel };

const actor = fc.constantFrom(...GUESTS);
/** Mostly live guests, sometimes dom0, the dead, the unborn, DOMID_SELF, junk. */
const domArb = fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...GUESTS) }, { weight: 1, arbitrary: fc.constantFrom(0, DEAD, NEVER, DOMID_SELF, 0x7fff) });
const refArb = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 7 }) }, { weight: 2, arbitrary: fc.integer({ min: 8, max: GE - 1 }) }, { weight: 1, arbitrary: fc.constantFrom(GE, GE + 1, 0xffffffff, -1) });
const rawGfnArb = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: GFNS - 1 }) }, { weight: 1, arbitrary: fc.constantFrom(GFNS, -1, 1 << 20) });
const gfnSel = (weights: [number, number, number, number]): fc.Arbitrary<GfnSel> =>
  fc.record({
    sel: fc.oneof(
      { weight: weights[0], arbitrary: fc.constant('own' as const) },
      { weight: weights[1], arbitrary: fc.constant('mapped' as const) },
      { weight: weights[2], arbitrary: fc.constant('free' as const) },
      { weight: weights[3], arbitrary: fc.constant('raw' as const) },
    ),
    pick: fc.nat(50),
    gfn: rawGfnArb,
  });
const selArb = fc.oneof({ weight: 8, arbitrary: fc.constant('mine' as const) }, { weight: 1, arbitrary: fc.constant('other' as const) }, { weight: 1, arbitrary: fc.constant('raw' as const) });
const mapFlagsArb = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(GNTMAP_host_map, GNTMAP_host_map | GNTMAP_readonly) },
  { weight: 1, arbitrary: fc.constantFrom(0, GNTMAP_readonly, GNTMAP_device_map, GNTMAP_device_map | GNTMAP_host_map | GNTMAP_readonly, GNTMAP_application_map | GNTMAP_host_map) },
);
const offsetArb = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 64 }) }, { weight: 1, arbitrary: fc.integer({ min: XEN_PAGE_SIZE - 40, max: XEN_PAGE_SIZE + 1 }) });
const lenArb = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 48 }) }, { weight: 1, arbitrary: fc.constantFrom(0, 4096, 4097) });
const sideArb: fc.Arbitrary<Side> = fc.oneof(
  fc.record({ byRef: fc.constant(true as const), sel: selArb, pick: fc.nat(50), dom: domArb, ref: refArb, offset: offsetArb }),
  fc.record({
    byRef: fc.constant(false as const),
    own: fc.boolean(),
    pick: fc.nat(50),
    dom: fc.oneof({ weight: 6, arbitrary: fc.constant(DOMID_SELF) }, { weight: 1, arbitrary: domArb }),
    gfn: rawGfnArb,
    offset: offsetArb,
  }),
);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 7,
    arbitrary: fc.record({
      t: fc.constant('grant' as const),
      actor,
      ref: refArb,
      grantee: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...GUESTS) }, { weight: 1, arbitrary: domArb }),
      gfn: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: PAGES - 1 }) }, { weight: 1, arbitrary: rawGfnArb }),
      ro: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('end' as const), actor, ref: refArb }) },
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant('map' as const),
      actor,
      ops: fc.array(fc.record({ sel: selArb, pick: fc.nat(50), dom: domArb, ref: refArb, host: gfnSel([1, 1, 10, 1]), flags: mapFlagsArb }), { minLength: 1, maxLength: 3 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant('unmap' as const),
      actor,
      ops: fc.array(fc.record({ pick: fc.nat(50), live: fc.boolean(), host: fc.constantFrom('none' as const, 'right' as const, 'right' as const, 'wrong' as const) }), { minLength: 1, maxLength: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('replace' as const), actor, pick: fc.nat(50), live: fc.boolean(), newGfn: gfnSel([6, 1, 1, 1]), wrongHost: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('copy' as const), actor, ops: fc.array(fc.record({ src: sideArb, dst: sideArb, len: lenArb }), { minLength: 1, maxLength: 2 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('write' as const), actor, gfn: gfnSel([3, 4, 1, 1]), offset: offsetArb, len: lenArb, v: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('read' as const), actor, gfn: gfnSel([3, 4, 1, 1]), offset: offsetArb, len: lenArb }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('decrease' as const), actor, gfn: gfnSel([6, 1, 1, 1]) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('populate' as const), actor, gfn: gfnSel([1, 1, 6, 1]) }) },
);

// ───────────────────────────── the reference model ─────────────────────────────

type P2m = { own: number } | { handle: number };
interface MEntry {
  flags: number;
  domid: number;
  frame: number;
}
interface MActive {
  r: number;
  w: number;
  mapper: number;
  mfn: number;
}
interface MMap {
  granter: number;
  ref: number;
  ro: boolean;
  hostGfn: number;
}
interface MDom {
  p2m: Map<number, P2m>;
  entries: MEntry[];
  active: MActive[];
  mt: Map<number, MMap>;
  /** Free maptrack handles; the next map takes the last one. */
  free: number[];
  tot: number;
  max: number;
}

const isU32 = (n: number) => Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
const inGfns = (g: number) => Number.isInteger(g) && g >= 0 && g < GFNS;

class Model {
  readonly doms = new Map<number, MDom>();
  readonly mem = new Map<number, Uint8Array>();

  addDomain(d: number, mfns: number[]): void {
    const p2m = new Map<number, P2m>();
    mfns.forEach((mfn, gfn) => {
      p2m.set(gfn, { own: mfn });
      this.mem.set(mfn, new Uint8Array(XEN_PAGE_SIZE));
    });
    this.doms.set(d, {
      p2m,
      entries: Array.from({ length: GE }, () => ({ flags: 0, domid: 0, frame: 0 })),
      active: Array.from({ length: GE }, () => ({ r: 0, w: 0, mapper: -1, mfn: -1 })),
      mt: new Map(),
      free: Array.from({ length: MTE }, (_, i) => MTE - 1 - i),
      tot: mfns.length,
      max: mfns.length,
    });
  }

  dom(d: number): MDom {
    const x = this.doms.get(d);
    if (!x) throw new Error(`model: no domain ${d}`);
    return x;
  }

  resolve(actor: number, d: number): number {
    return d === DOMID_SELF ? actor : d;
  }

  ownMfn(d: number, gfn: number): number {
    const e = this.dom(d).p2m.get(gfn);
    return e && 'own' in e ? e.own : -1;
  }

  frameMaps(mfn: number): number {
    let n = 0;
    for (const x of this.doms.values()) for (const m of x.mt.values()) if (this.dom(m.granter).active[m.ref]!.mfn === mfn) n++;
    return n;
  }

  grant(actor: number, ref: number, grantee: number, gfn: number, ro: boolean): number {
    if (!isU32(ref) || ref >= GE || !isU32(grantee) || grantee > 0xffff || !inGfns(gfn)) return -EINVAL;
    const e = this.dom(actor).entries[ref]!;
    if (e.flags & 3 || e.flags & (GTF_reading | GTF_writing)) return -EBUSY;
    e.flags = GTF_permit_access | (ro ? GTF_readonly : 0);
    e.domid = grantee;
    e.frame = gfn;
    return 0;
  }

  end(actor: number, ref: number): boolean {
    if (!isU32(ref) || ref >= GE) return false;
    const e = this.dom(actor).entries[ref]!;
    if (e.flags & (GTF_reading | GTF_writing)) return false;
    e.flags = 0;
    e.domid = 0;
    return true;
  }

  map(actor: number, o: { dom: number; ref: number; hostGfn: number; flags: number }): { status: number; handle: number; mfn: number } {
    const fail = (status: number) => ({ status, handle: -1, mfn: -1 });
    if (!(o.flags & (GNTMAP_host_map | GNTMAP_device_map))) return fail(GNTST_bad_gntref);
    const rd = this.resolve(actor, o.dom);
    if (!this.doms.has(rd)) return fail(GNTST_bad_domain);
    const ld = this.dom(actor);
    if (ld.free.length === 0) return fail(MAPTRACK_FULL);
    if (!isU32(o.ref) || o.ref >= GE) return fail(GNTST_bad_gntref);
    // The host mapping is made last (Xen): a bad or populated host gfn is general_error after
    // the entry checks, and nothing stays pinned.
    const hostOk = inGfns(o.hostGfn) && !ld.p2m.has(o.hostGfn);
    const ro = (o.flags & GNTMAP_readonly) !== 0;
    const g = this.dom(rd);
    const act = g.active[o.ref]!;
    const e = g.entries[o.ref]!;
    const pinned = act.r + act.w > 0;
    if (pinned && act.mapper !== actor) return fail(GNTST_general_error);
    if ((ro ? act.r : act.w) >= 128) return fail(GNTST_general_error); // GNTPIN_incr2oflow
    if (!pinned || (!ro && act.w === 0)) {
      if ((e.flags & 3) !== GTF_permit_access || e.domid !== actor) return fail(GNTST_general_error);
      if (!ro && e.flags & GTF_readonly) return fail(GNTST_general_error);
      if (!pinned) {
        const mfn = this.ownMfn(rd, e.frame);
        if (mfn < 0) return fail(GNTST_bad_page);
        if (!hostOk) return fail(GNTST_general_error);
        act.mapper = actor;
        act.mfn = mfn;
      }
      if (!hostOk) return fail(GNTST_general_error);
      e.flags |= GTF_reading | (ro ? 0 : GTF_writing);
    }
    if (!hostOk) return fail(GNTST_general_error);
    if (ro) act.r++;
    else act.w++;
    const handle = ld.free.pop()!;
    ld.mt.set(handle, { granter: rd, ref: o.ref, ro, hostGfn: o.hostGfn });
    ld.p2m.set(o.hostGfn, { handle });
    return { status: GNTST_okay, handle, mfn: act.mfn };
  }

  private release(actor: number, handle: number): MMap {
    const ld = this.dom(actor);
    const m = ld.mt.get(handle)!;
    const g = this.dom(m.granter);
    const act = g.active[m.ref]!;
    if (m.ro) act.r--;
    else act.w--;
    const e = g.entries[m.ref]!;
    if (act.w === 0) e.flags &= ~GTF_writing;
    if (act.r + act.w === 0) e.flags &= ~GTF_reading;
    ld.mt.delete(handle);
    ld.free.push(handle);
    ld.p2m.delete(m.hostGfn);
    return m;
  }

  unmap(actor: number, handle: number, hostGfn: number | undefined): number {
    const ld = this.dom(actor);
    if (!isU32(handle) || handle >= MTE || !ld.mt.has(handle)) return GNTST_bad_handle;
    if (hostGfn !== undefined && hostGfn !== ld.mt.get(handle)!.hostGfn) return GNTST_general_error;
    this.release(actor, handle);
    return GNTST_okay;
  }

  replace(actor: number, handle: number, hostGfn: number, newGfn: number): number {
    const ld = this.dom(actor);
    if (!isU32(handle) || handle >= MTE || !ld.mt.has(handle)) return GNTST_bad_handle;
    const m = ld.mt.get(handle)!;
    if (hostGfn !== m.hostGfn) return GNTST_general_error;
    const newMfn = inGfns(newGfn) ? this.ownMfn(actor, newGfn) : -1;
    if (newMfn < 0) return GNTST_general_error;
    this.release(actor, handle);
    ld.p2m.set(hostGfn, { own: newMfn });
    ld.p2m.delete(newGfn);
    return GNTST_okay;
  }

  copy(actor: number, o: { src: RSide; dst: RSide; len: number }): number {
    if (o.len === 0) return GNTST_okay; // gnttab_copy_one: `if ( unlikely(!op->len) ) return GNTST_okay;`
    const lock = (s: RSide): number => {
      if (!s.byRef && s.dom !== DOMID_SELF) return GNTST_permission_denied; // "Only DOMID_SELF may reference via frame"
      return this.doms.has(this.resolve(actor, s.dom)) ? GNTST_okay : GNTST_bad_domain;
    };
    const ls = lock(o.src);
    if (ls) return ls;
    const lds = lock(o.dst);
    if (lds) return lds;
    const claim = (s: RSide, ro: boolean): { status: number; mfn: number } => {
      if (!s.byRef) {
        const mfn = inGfns(s.gfn) ? this.ownMfn(actor, s.gfn) : -1;
        return mfn < 0 ? { status: GNTST_bad_page, mfn } : { status: GNTST_okay, mfn };
      }
      if (!isU32(s.ref) || s.ref >= GE) return { status: GNTST_bad_gntref, mfn: -1 };
      const rd = this.resolve(actor, s.dom);
      const g = this.dom(rd);
      const act = g.active[s.ref]!;
      const e = g.entries[s.ref]!;
      const pinned = act.r + act.w > 0;
      if (pinned && act.mapper !== actor) return { status: GNTST_general_error, mfn: -1 };
      if (!pinned || (!ro && act.w === 0)) {
        if ((e.flags & 3) !== GTF_permit_access || e.domid !== actor) return { status: GNTST_general_error, mfn: -1 };
        if (!ro && e.flags & GTF_readonly) return { status: GNTST_general_error, mfn: -1 };
      }
      const mfn = pinned ? act.mfn : this.ownMfn(rd, e.frame);
      return mfn < 0 ? { status: GNTST_bad_page, mfn } : { status: GNTST_okay, mfn };
    };
    const src = claim(o.src, true);
    if (src.status) return src.status;
    const dst = claim(o.dst, false);
    if (dst.status) return dst.status;
    if (o.src.offset + o.len > XEN_PAGE_SIZE || o.dst.offset + o.len > XEN_PAGE_SIZE) return GNTST_bad_copy_arg;
    const s = this.mem.get(src.mfn)!;
    this.mem.get(dst.mfn)!.set(s.slice(o.src.offset, o.src.offset + o.len), o.dst.offset);
    return GNTST_okay; // the transient pins are gone again: the flags are as before
  }

  /** The gate: the frame an access reaches, or -1 for a fault. */
  gate(actor: number, gfn: number, offset: number, len: number, write: boolean): number {
    if (!inGfns(gfn) || offset + len > XEN_PAGE_SIZE) return -1;
    const e = this.dom(actor).p2m.get(gfn);
    if (!e) return -1;
    if ('own' in e) return e.own;
    const m = this.dom(actor).mt.get(e.handle)!;
    if (write && m.ro) return -1;
    return this.dom(m.granter).active[m.ref]!.mfn;
  }

  decrease(actor: number, gfn: number): number {
    if (!inGfns(gfn)) return -EINVAL;
    const mfn = this.ownMfn(actor, gfn);
    if (mfn < 0) return -EINVAL;
    if (this.frameMaps(mfn) > 0) return -EBUSY;
    const d = this.dom(actor);
    d.p2m.delete(gfn);
    d.tot--;
    this.mem.delete(mfn);
    return 0;
  }

  /** Returns the expected result; `learn` is told the new frame's mfn (the sim picks it). */
  populate(actor: number, gfn: number, learn: () => number): number {
    if (!inGfns(gfn)) return -EINVAL;
    const d = this.dom(actor);
    if (d.p2m.has(gfn)) return -EBUSY;
    if (d.tot >= d.max) return -ENOMEM;
    const mfn = learn();
    d.p2m.set(gfn, { own: mfn });
    d.tot++;
    this.mem.set(mfn, new Uint8Array(XEN_PAGE_SIZE));
    return 0;
  }
}

// ───────────────────────────── lockstep runner ─────────────────────────────

const st = (n: number | undefined) => (n === undefined ? 'undefined' : n <= 0 && n >= -13 ? `${gntstName(n)}` : String(n));

function run(ops: Op[]): void {
  let seq = 0;
  const emitter: EventEmitter = { emit: () => ++seq };
  const hv = new Hypervisor(createHypervisorSpec({ frames: 96, maxDomains: 6, gfnsPerDomain: GFNS, grantEntries: GE, maptrackEntries: MTE, evtchnPorts: 32 }));
  const ts = hv.toolstack(emitter);
  expect(ts.domainCreate({ domid: 0, name: 'dom0', memoryPages: 2, privileged: true })).toBe(0);
  const model = new Model();
  const clients = new Map<number, HypercallClient>();
  for (const d of GUESTS) {
    expect(ts.domainCreate({ domid: d, name: `g${d}`, memoryPages: PAGES })).toBe(d);
    const c = hv.client(d, emitter);
    clients.set(d, c);
    model.addDomain(d, Array.from({ length: PAGES }, (_, g) => c.p2mEntry(g)));
  }
  model.addDomain(0, [hv.client(0, emitter).p2mEntry(0), hv.client(0, emitter).p2mEntry(1)]);
  expect(ts.domainCreate({ domid: DEAD, name: 'dead', memoryPages: 1 })).toBe(DEAD);
  expect(ts.domainDestroy(DEAD)).toBe(0);

  const trace: string[] = [];
  const check = (what: string, got: unknown, want: unknown) => {
    if (!Object.is(got, want) && JSON.stringify(got) !== JSON.stringify(want)) {
      throw new Error(`${what}: sim ${typeof got === 'number' ? st(got) : JSON.stringify(got)}, model (Xen) ${typeof want === 'number' ? st(want) : JSON.stringify(want)}\n  after:\n    ${trace.join('\n    ')}`);
    }
  };
  /** A handle for unmap: one of the actor's live handles, or any number. */
  const handleOf = (actor: number, pick: number, live: boolean): number => {
    const hs = [...model.dom(actor).mt.keys()].sort((x, y) => x - y);
    if (live && hs.length) return hs[pick % hs.length]!;
    return [0, 1, 2, 3, 4, MTE, -1, 0xffffffff, 2.5][pick % 9]!;
  };
  /** A (granter, ref) currently granted to the actor ('mine') or to someone else ('other'). */
  const entryOf = (actor: number, sel: Sel, pick: number, dom: number, ref: number): { dom: number; ref: number } => {
    if (sel === 'raw') return { dom, ref };
    const found: { dom: number; ref: number }[] = [];
    for (const g of GUESTS) {
      model.dom(g).entries.forEach((e, r) => {
        if ((e.flags & 3) === GTF_permit_access && (e.domid === actor) === (sel === 'mine')) found.push({ dom: g === actor && pick % 2 ? DOMID_SELF : g, ref: r });
      });
    }
    return found.length ? found[pick % found.length]! : { dom, ref };
  };
  /** A gfn of the actor: one holding its own frame, a foreign mapping, a ballooned one, or raw. */
  const gfnOf = (actor: number, g: GfnSel): number => {
    const p2m = model.dom(actor).p2m;
    const all = Array.from({ length: GFNS }, (_, i) => i);
    const c =
      g.sel === 'own' ? all.filter((i) => 'own' in (p2m.get(i) ?? {})) : g.sel === 'mapped' ? all.filter((i) => 'handle' in (p2m.get(i) ?? {})) : g.sel === 'free' ? all.filter((i) => !p2m.has(i)) : [];
    return c.length ? c[g.pick % c.length]! : g.gfn;
  };
  const sideOf = (actor: number, s: Side): RSide => {
    if (s.byRef) return { byRef: true, offset: s.offset, ...entryOf(actor, s.sel, s.pick, s.dom, s.ref) };
    return { byRef: false, dom: s.dom, offset: s.offset, gfn: s.own ? gfnOf(actor, { sel: 'own', pick: s.pick, gfn: s.gfn }) : gfnOf(actor, { sel: s.pick % 3 ? 'mapped' : 'raw', pick: s.pick, gfn: s.gfn }) };
  };

  for (const op of ops) {
    const c = clients.get(op.actor)!;
    trace.push(JSON.stringify(op));
    const resolved = (x: unknown) => trace.push(`  = ${JSON.stringify(x)}`);
    switch (op.t) {
      case 'grant':
        check('grant', c.grantForeignAccess(op.ref, op.grantee, op.gfn, op.ro), model.grant(op.actor, op.ref, op.grantee, op.gfn, op.ro));
        break;
      case 'end':
        check('end', c.endForeignAccess(op.ref), model.end(op.actor, op.ref));
        break;
      case 'map': {
        const args = op.ops.map((o) => ({ ...entryOf(op.actor, o.sel, o.pick, o.dom, o.ref), hostGfn: gfnOf(op.actor, o.host), flags: o.flags }));
        resolved(args);
        const sim: GnttabMapGrantRef[] = args.map((a) => ({ ...a }));
        c.mapGrantRef(sim);
        args.forEach((a, i) => {
          const want = model.map(op.actor, a);
          const got = sim[i]!;
          check(`map[${i}] status`, got.status, want.status);
          check(`map[${i}] handle`, got.handle, want.handle);
          check(`map[${i}] mfn`, got.mfn, want.mfn);
        });
        break;
      }
      case 'unmap': {
        const args = op.ops.map((o) => {
          const handle = handleOf(op.actor, o.pick, o.live);
          const m = model.dom(op.actor).mt.get(handle);
          const hostGfn = o.host === 'none' ? undefined : o.host === 'right' && m ? m.hostGfn : PAGES + ((o.pick * 7) % (GFNS - PAGES));
          return { handle, hostGfn };
        });
        resolved(args);
        const batch: GnttabUnmapGrantRef[] = args.map((a) => (a.hostGfn === undefined ? { handle: a.handle } : { handle: a.handle, hostGfn: a.hostGfn }));
        c.unmapGrantRef(batch);
        args.forEach((a, i) => check(`unmap[${i}]`, batch[i]!.status, model.unmap(op.actor, a.handle, a.hostGfn)));
        break;
      }
      case 'replace': {
        const handle = handleOf(op.actor, op.pick, op.live);
        const m = model.dom(op.actor).mt.get(handle);
        const hostGfn = m && !op.wrongHost ? m.hostGfn : PAGES;
        const r = { hostGfn, newGfn: gfnOf(op.actor, op.newGfn), handle, status: undefined as number | undefined };
        resolved(r);
        c.unmapAndReplace(r);
        check('unmap_and_replace', r.status, model.replace(op.actor, handle, hostGfn, r.newGfn));
        break;
      }
      case 'copy': {
        const args = op.ops.map((o) => ({ src: sideOf(op.actor, o.src), dst: sideOf(op.actor, o.dst), len: o.len }));
        resolved(args);
        const toPtr = (s: RSide) => (s.byRef ? { ref: s.ref, domid: s.dom, offset: s.offset } : { gfn: s.gfn, domid: s.dom, offset: s.offset });
        const sim: GnttabCopy[] = args.map((o) => ({
          source: toPtr(o.src),
          dest: toPtr(o.dst),
          len: o.len,
          flags: (o.src.byRef ? GNTCOPY_source_gref : 0) | (o.dst.byRef ? GNTCOPY_dest_gref : 0),
        }));
        c.copy(sim);
        args.forEach((o, i) => check(`copy[${i}]`, sim[i]!.status, model.copy(op.actor, o)));
        break;
      }
      case 'write': {
        const gfn = gfnOf(op.actor, op.gfn);
        resolved(gfn);
        const data = new Uint8Array(op.len).fill(op.v);
        const mfn = model.gate(op.actor, gfn, op.offset, op.len, true);
        check('write', c.write(gfn, op.offset, data), mfn < 0 ? GATE_FAULT : GATE_OK);
        if (mfn >= 0) model.mem.get(mfn)!.set(data, op.offset);
        break;
      }
      case 'read': {
        const gfn = gfnOf(op.actor, op.gfn);
        resolved(gfn);
        const buf = new Uint8Array(op.len);
        const mfn = model.gate(op.actor, gfn, op.offset, op.len, false);
        check('read', c.read(gfn, op.offset, buf), mfn < 0 ? GATE_FAULT : GATE_OK);
        if (mfn >= 0) check('read data', Buffer.from(buf).toString('hex'), Buffer.from(model.mem.get(mfn)!.subarray(op.offset, op.offset + op.len)).toString('hex'));
        break;
      }
      case 'decrease': {
        const gfn = gfnOf(op.actor, op.gfn);
        resolved(gfn);
        check('decrease_reservation', c.decreaseReservation(gfn), model.decrease(op.actor, gfn));
        break;
      }
      case 'populate': {
        const gfn = gfnOf(op.actor, op.gfn);
        resolved(gfn);
        const got = c.populatePhysmap(gfn);
        check('populate_physmap', got, model.populate(op.actor, gfn, () => c.p2mEntry(gfn)));
        break;
      }
    }
    // Whole-state comparison after every operation.
    for (const d of GUESTS) {
      const cd = clients.get(d)!;
      const md = model.dom(d);
      for (let ref = 0; ref < GE; ref++) check(`d${d} grant entry ${ref}`, cd.grantEntry(ref), md.entries[ref]);
      for (let g = 0; g < GFNS; g++) {
        const e = md.p2m.get(g);
        let want = P2M_INVALID;
        if (e && 'own' in e) want = e.own;
        else if (e) {
          const m = md.mt.get(e.handle)!;
          want = model.dom(m.granter).active[m.ref]!.mfn | P2M_FOREIGN;
        }
        check(`d${d} p2m[${g}]`, cd.p2mEntry(g), want);
      }
      check(`d${d} mappingsHeld`, cd.mappingsHeld(), md.mt.size);
    }
  }
}

describe('grant tables against a reference model of Xen', () => {
  it('random traffic from three guests: every status, handle, flag, p2m entry and byte agrees', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60, size: 'max' }), (ops) => {
        run(ops);
      }),
      { seed: 4, numRuns: 150 },
    );
  });
});
