/**
 * Hypercalls, run on the calling thread against the shared tables (see shared.ts), through a
 * client scoped to one domain. A guest's client can act only as that guest; toolstack
 * operations (domain lifecycle) need a privileged client. Peer-supplied numbers (grant refs,
 * handles, ports, gfns) never throw: each becomes the status Xen would return.
 *
 * Every transition is emitted inside the lock that guards it, so the log's order is the order in
 * which the state changed; each event's seq is stamped on the entry it changed (grant entries,
 * maptrack handles) for replay-equals-state.
 */
import {
  DOMID_SELF,
  EINVAL,
  ENOMEM,
  ENOSPC,
  EBUSY,
  EPERM,
  ESRCH,
  EVTCHNSTAT_closed,
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_unbound,
  GNTCOPY_dest_gref,
  GNTCOPY_source_gref,
  GNTMAP_device_map,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTPIN_hstr_inc,
  GNTPIN_hstr_mask,
  GNTPIN_hstw_inc,
  GNTPIN_hstw_mask,
  GNTST_bad_copy_arg,
  GNTST_bad_domain,
  GNTST_bad_gntref,
  GNTST_bad_handle,
  GNTST_bad_page,
  GNTST_general_error,
  GNTST_no_space,
  GNTST_okay,
  GNTST_permission_denied,
  GTF_permit_access,
  GTF_readonly,
  GTF_reading,
  GTF_sub_page,
  GTF_type_mask,
  GTF_writing,
  XEN_PAGE_SIZE,
  assert,
  err,
  isU32,
  ok,
  type Result,
} from '@pvsim/abi';
import type { EventEmitter } from '@pvsim/eventlog';
import {
  A_DOMID,
  A_MFN,
  A_PIN,
  A_WORDS,
  DOMSTATE_ACTIVE,
  DOMSTATE_DYING,
  DOMSTATE_FREE,
  DOM_NAME_BYTES,
  D_GENERATION,
  D_MAPS,
  D_MAX_PAGES,
  D_MT_TOP,
  D_PAUSED,
  D_PRIVILEGED,
  D_STATE,
  D_TOT_PAGES,
  D_WORDS,
  E_REMOTE_DOM,
  E_REMOTE_PORT,
  E_STATE,
  E_WORDS,
  G_ALLOC_LOCK,
  G_FREE_TOP,
  HvState,
  MT_FLAGS,
  MT_GRANTER,
  MT_HOST_GFN,
  MT_INUSE,
  MT_REF,
  MT_WORDS,
  P2M_FOREIGN,
  P2M_INVALID,
  P2M_MFN_MASK,
  spinLock,
  spinUnlock,
  type HypervisorSpec,
} from './shared.js';
import './events.js';

/** `struct gnttab_map_grant_ref`: IN fields, then OUT fields written by the call. */
export interface GnttabMapGrantRef {
  /** Where to map in the caller's space: a ballooned (invalid) gfn (`host_addr`). */
  hostGfn: number;
  flags: number;
  ref: number;
  dom: number;
  status?: number;
  handle?: number;
  /** The machine frame (`dev_bus_addr`), for the caller's `struct page` bookkeeping. */
  mfn?: number;
}

/** `struct gnttab_unmap_grant_ref`. `hostGfn` must match the mapping when given. */
export interface GnttabUnmapGrantRef {
  hostGfn?: number;
  handle: number;
  status?: number;
}

/** `struct gnttab_unmap_and_replace`: unmap `handle` at `hostGfn`, which then shows the frame at `newGfn`; `newGfn` is emptied. */
export interface GnttabUnmapAndReplace {
  hostGfn: number;
  newGfn: number;
  handle: number;
  status?: number;
}

/** One side of `struct gnttab_copy`: a grant reference (with the flag) or one of the caller's own gfns. */
export interface GnttabCopyPtr {
  ref?: number;
  gfn?: number;
  domid: number;
  offset: number;
}

export interface GnttabCopy {
  source: GnttabCopyPtr;
  dest: GnttabCopyPtr;
  len: number;
  flags: number;
  status?: number;
}

export interface DomainCreateOptions {
  /** A specific domid (0 for dom0); default the lowest free one from 1. */
  domid?: number;
  name: string;
  memoryPages: number;
  /** Memory limit (pages) for later populate calls; default `memoryPages`. */
  maxPages?: number;
  privileged?: boolean;
}

export interface EvtchnStatus {
  state: number;
  remoteDom: number;
  remotePort: number;
}

/** What a page reference remembers about the mapping it was taken through (see `stamp`). */
export interface MappingStamp {
  readonly gen: number;
  readonly granter: number;
  readonly gref: number;
}

/** Why `frameView` refused: a negative errno and the reason (also recorded as a `mem.fault`). */
export interface FrameViewError {
  readonly errno: number;
  readonly reason: string;
}

/** Result of a memory-gate access: 0, or a negative reason. */
export const GATE_OK = 0;
export const GATE_FAULT = -1;

/** The machine as seen from one thread: tables plus helpers shared by all clients of the thread. */
export class Hypervisor {
  readonly s: HvState;

  constructor(spec: HypervisorSpec) {
    this.s = new HvState(spec);
  }

  get config() {
    return this.s.c;
  }

  /** A client acting as `domid`. Privilege is the domain's (set at its creation), never asked for. */
  client(domid: number, events: EventEmitter): HypercallClient {
    return new HypercallClient(this.s, domid, events);
  }

  /** The toolstack's client, used before any domain exists (creates dom0). */
  toolstack(events: EventEmitter): HypercallClient {
    return new HypercallClient(this.s, 0, events, true);
  }
}

export class HypercallClient {
  private readonly gfns: number;
  private readonly ge: number;
  private readonly mte: number;
  private readonly ports: number;

  constructor(
    private readonly s: HvState,
    readonly domid: number,
    private readonly events: EventEmitter,
    private readonly bootstrap = false,
  ) {
    assert(Number.isInteger(domid) && domid >= 0 && domid < s.c.maxDomains, `client domid ${domid} outside the domain table`);
    this.gfns = s.c.gfnsPerDomain;
    this.ge = s.c.grantEntries;
    this.mte = s.c.maptrackEntries;
    this.ports = s.c.evtchnPorts;
  }

  private get privileged(): boolean {
    return this.bootstrap || (this.s.isActive(this.domid) && Atomics.load(this.s.domains, this.s.dw(this.domid, D_PRIVILEGED)) === 1);
  }

  private resolve(dom: number): number {
    return dom === DOMID_SELF ? this.domid : dom;
  }

  // ───────────────────────────── domains (toolstack) ─────────────────────────────

  /** `XEN_DOMCTL_createdomain` + populate: a new domain, paused, with `memoryPages` frames at gfns 0… */
  domainCreate(o: DomainCreateOptions): number {
    if (!this.privileged) return -EPERM;
    const s = this.s;
    if (!(Number.isInteger(o.memoryPages) && o.memoryPages >= 0 && o.memoryPages <= this.gfns)) return -EINVAL;
    const maxPages = o.maxPages ?? o.memoryPages;
    if (!(Number.isInteger(maxPages) && maxPages >= o.memoryPages && maxPages <= this.gfns)) return -EINVAL;
    let domid = o.domid ?? -1;
    spinLock(s.global, G_ALLOC_LOCK);
    try {
      if (domid < 0) {
        for (let d = 1; d < s.c.maxDomains; d++) if (s.domState(d) === DOMSTATE_FREE) { domid = d; break; }
        if (domid < 0) return -ENOSPC;
      } else if (!(Number.isInteger(domid) && domid < s.c.maxDomains) || s.domState(domid) !== DOMSTATE_FREE) {
        return -EINVAL;
      }
      if (Atomics.load(s.global, G_FREE_TOP) < o.memoryPages) return -ENOMEM;
      const D = s.domains;
      const b = domid * D_WORDS;
      Atomics.store(D, b + D_MAX_PAGES, maxPages);
      Atomics.store(D, b + D_TOT_PAGES, 0);
      Atomics.store(D, b + D_PRIVILEGED, o.privileged ? 1 : 0);
      Atomics.store(D, b + D_PAUSED, 1);
      Atomics.store(D, b + D_MAPS, 0);
      Atomics.add(D, b + D_GENERATION, 1);
      // Maptrack free stack: handle 0 on top.
      for (let h = 0; h < this.mte; h++) s.maptrackFree[domid * this.mte + h] = this.mte - 1 - h;
      Atomics.store(D, b + D_MT_TOP, this.mte);
      s.maptrack.fill(0, domid * this.mte * MT_WORDS, (domid + 1) * this.mte * MT_WORDS);
      s.grant.fill(0, domid * this.ge * 2, (domid + 1) * this.ge * 2);
      s.active.fill(0, domid * this.ge * A_WORDS, (domid + 1) * this.ge * A_WORDS);
      s.evtchn.fill(0, domid * this.ports * E_WORDS, (domid + 1) * this.ports * E_WORDS);
      s.p2m.fill(P2M_INVALID, domid * this.gfns, (domid + 1) * this.gfns);
      s.p2mHandle.fill(-1, domid * this.gfns, (domid + 1) * this.gfns);
      s.p2mLast.fill(-1, domid * this.gfns * 2, (domid + 1) * this.gfns * 2);
      s.bells[domid]!.reset();
      const name = Buffer.from(o.name, 'utf8').subarray(0, DOM_NAME_BYTES - 1);
      s.domNames.fill(0, domid * DOM_NAME_BYTES, (domid + 1) * DOM_NAME_BYTES);
      s.domNames.set(name, domid * DOM_NAME_BYTES);
      for (let g = 0; g < o.memoryPages; g++) this.populateLocked(domid, g);
      Atomics.store(D, b + D_STATE, DOMSTATE_ACTIVE);
      this.events.emit('domain.create', { domid, name: o.name, memoryPages: o.memoryPages, privileged: !!o.privileged }, this.domid);
    } finally {
      spinUnlock(s.global, G_ALLOC_LOCK);
    }
    return domid;
  }

  domainPause(domid: number, paused = true): number {
    if (!this.privileged) return -EPERM;
    if (!this.s.isActive(domid)) return -ESRCH;
    Atomics.store(this.s.domains, this.s.dw(domid, D_PAUSED), paused ? 1 : 0);
    this.events.emit(paused ? 'domain.pause' : 'domain.unpause', { domid }, this.domid);
    return 0;
  }

  isPaused(domid: number): boolean {
    return Atomics.load(this.s.domains, this.s.dw(domid, D_PAUSED)) === 1;
  }

  /**
   * Destroy a domain as Xen does: release every mapping it holds, close its ports (their peers
   * become unbound), free its frames — except frames other domains still map, which keep it a
   * dying zombie until the last such mapping goes (`domain.released`).
   */
  domainDestroy(domid: number): number {
    if (!this.privileged) return -EPERM;
    const s = this.s;
    if (!s.isActive(domid)) return -ESRCH;
    s.lockDomain(domid);
    Atomics.store(s.domains, s.dw(domid, D_STATE), DOMSTATE_DYING);
    s.unlockDomain(domid);
    // Its own mappings of others' grants.
    let mappingsReleased = 0;
    for (let h = 0; h < this.mte; h++) {
      if (Atomics.load(s.maptrack, (domid * this.mte + h) * MT_WORDS + MT_FLAGS) & MT_INUSE) {
        if (this.unmapHandle(domid, h, undefined, null) === GNTST_okay) mappingsReleased++;
      }
    }
    // Its ports.
    let portsClosed = 0;
    for (let p = 1; p < this.ports; p++) {
      if (Atomics.load(s.evtchn, (domid * this.ports + p) * E_WORDS + E_STATE) !== EVTCHNSTAT_closed) {
        if (this.closePort(domid, p) === 0) portsClosed++;
      }
    }
    // Its frames.
    let framesFreed = 0;
    let framesZombie = 0;
    spinLock(s.global, G_ALLOC_LOCK);
    s.lockDomain(domid);
    try {
      for (let g = 0; g < this.gfns; g++) {
        const i = domid * this.gfns + g;
        const e = s.p2m[i]!;
        if (e === P2M_INVALID || e & P2M_FOREIGN) continue;
        s.p2m[i] = P2M_INVALID;
        Atomics.add(s.p2mGen, i, 1);
        if (Atomics.load(s.frameMaps, e) > 0) {
          Atomics.store(s.frameZombie, e, 1);
          framesZombie++;
        } else {
          this.freeFrameLocked(e);
          Atomics.sub(s.domains, s.dw(domid, D_TOT_PAGES), 1);
          framesFreed++;
        }
      }
      this.events.emit('domain.destroy', { domid, framesFreed, framesZombie, mappingsReleased, portsClosed }, this.domid);
      if (framesZombie === 0) this.releaseDomainLocked(domid);
    } finally {
      s.unlockDomain(domid);
      spinUnlock(s.global, G_ALLOC_LOCK);
    }
    return 0;
  }

  private releaseDomainLocked(domid: number): void {
    Atomics.store(this.s.domains, this.s.dw(domid, D_STATE), DOMSTATE_FREE);
    this.events.emit('domain.released', { domid }, this.domid);
  }

  // ───────────────────────────── memory ─────────────────────────────

  private populateLocked(domid: number, gfn: number): number {
    const s = this.s;
    const top = Atomics.sub(s.global, G_FREE_TOP, 1) - 1;
    assert(top >= 0, 'frame allocator underflow');
    const mfn = s.freeStack[top]!;
    Atomics.store(s.frameOwner, mfn, domid);
    s.frame(mfn).fill(0);
    Atomics.store(s.p2m, domid * this.gfns + gfn, mfn);
    Atomics.add(s.p2mGen, domid * this.gfns + gfn, 1);
    Atomics.add(s.domains, s.dw(domid, D_TOT_PAGES), 1);
    return mfn;
  }

  private freeFrameLocked(mfn: number): void {
    const s = this.s;
    Atomics.store(s.frameOwner, mfn, -1);
    const top = Atomics.add(s.global, G_FREE_TOP, 1);
    s.freeStack[top] = mfn;
  }

  /** `XENMEM_populate_physmap` for one gfn of the caller: give an invalid gfn a fresh zeroed frame. */
  populatePhysmap(gfn: number): number {
    const s = this.s;
    const i = s.p2mIndex(this.domid, gfn);
    if (i < 0 || !s.isActive(this.domid)) return -EINVAL;
    spinLock(s.global, G_ALLOC_LOCK);
    s.lockDomain(this.domid);
    try {
      if (s.p2m[i] !== P2M_INVALID) return -EBUSY;
      if (Atomics.load(s.domains, s.dw(this.domid, D_TOT_PAGES)) >= Atomics.load(s.domains, s.dw(this.domid, D_MAX_PAGES))) return -ENOMEM;
      if (Atomics.load(s.global, G_FREE_TOP) === 0) return -ENOMEM;
      const mfn = this.populateLocked(this.domid, gfn);
      this.events.emit('mem.populate', { domid: this.domid, gfn, mfn });
      return 0;
    } finally {
      s.unlockDomain(this.domid);
      spinUnlock(s.global, G_ALLOC_LOCK);
    }
  }

  /** `XENMEM_decrease_reservation` for one gfn: balloon it out (its frame goes back to Xen). */
  decreaseReservation(gfn: number): number {
    const s = this.s;
    const i = s.p2mIndex(this.domid, gfn);
    if (i < 0 || !s.isActive(this.domid)) return -EINVAL;
    spinLock(s.global, G_ALLOC_LOCK);
    s.lockDomain(this.domid);
    try {
      const e = s.p2m[i]!;
      if (e === P2M_INVALID || e & P2M_FOREIGN) return -EINVAL;
      if (Atomics.load(s.frameMaps, e) > 0) return -EBUSY;
      Atomics.store(s.p2m, i, P2M_INVALID);
      Atomics.add(s.p2mGen, i, 1);
      this.freeFrameLocked(e);
      Atomics.sub(s.domains, s.dw(this.domid, D_TOT_PAGES), 1);
      this.events.emit('mem.decrease', { domid: this.domid, gfn, mfn: e });
      return 0;
    } finally {
      s.unlockDomain(this.domid);
      spinUnlock(s.global, G_ALLOC_LOCK);
    }
  }

  /** The caller's p2m entry for `gfn`: an mfn, `P2M_INVALID`, or an mfn with `P2M_FOREIGN`. */
  p2mEntry(gfn: number): number {
    const i = this.s.p2mIndex(this.domid, gfn);
    return i < 0 ? P2M_INVALID : Atomics.load(this.s.p2m, i);
  }

  /** gfns 0.. that hold no frame (ballooned): where grant maps may go. */
  invalidGfns(from: number, count: number): number[] {
    const out: number[] = [];
    for (let g = Math.max(0, from); g < this.gfns && out.length < count; g++) if (this.p2mEntry(g) === P2M_INVALID) out.push(g);
    return out;
  }

  // ───────────────────────────── grant table: the granting side ─────────────────────────────

  /**
   * `gnttab_grant_foreign_access_ref`: write entry `ref` of the caller's own table, in Xen's
   * order: domid and frame first, then the flags that make it live.
   * Returns 0, or -EINVAL for a ref outside the table, -EBUSY if the entry is in use.
   */
  grantForeignAccess(ref: number, grantee: number, gfn: number, readonly: boolean): number {
    const s = this.s;
    if (!isU32(ref) || ref >= this.ge || !isU32(grantee) || grantee > 0xffff || s.p2mIndex(this.domid, gfn) < 0) return -EINVAL;
    const w = (this.domid * this.ge + ref) * 2;
    const old = Atomics.load(s.grant, w);
    if ((old & GTF_type_mask) !== 0 || old & (GTF_reading | GTF_writing)) return -EBUSY;
    Atomics.store(s.grant, w + 1, gfn);
    Atomics.store(s.grant, w, (GTF_permit_access | (readonly ? GTF_readonly : 0) | (grantee << 16)) >>> 0);
    const seq = this.events.emit('grant.access', { granter: this.domid, gref: ref, grantee, gfn, ro: readonly });
    s.grantSeq[this.domid * this.ge + ref] = seq;
    return 0;
  }

  /**
   * `gnttab_try_end_foreign_access`: one atomic check-and-clear of the entry; fails (false) while
   * any mapping or copy has it pinned (`GTF_reading`/`GTF_writing`).
   */
  endForeignAccess(ref: number): boolean {
    const s = this.s;
    if (!isU32(ref) || ref >= this.ge) return false;
    const w = (this.domid * this.ge + ref) * 2;
    for (;;) {
      const old = Atomics.load(s.grant, w);
      if (old & (GTF_reading | GTF_writing)) {
        this.events.emit('grant.end', { granter: this.domid, gref: ref, ok: false, flags: old & 0xffff });
        return false;
      }
      if (Atomics.compareExchange(s.grant, w, old, 0) === old) {
        const seq = this.events.emit('grant.end', { granter: this.domid, gref: ref, ok: true, flags: old & 0xffff });
        s.grantSeq[this.domid * this.ge + ref] = seq;
        return true;
      }
    }
  }

  /** The caller's own entry: `{flags, domid, frame}` as the guest sees it. */
  grantEntry(ref: number): { flags: number; domid: number; frame: number } | null {
    if (!isU32(ref) || ref >= this.ge) return null;
    const w = (this.domid * this.ge + ref) * 2;
    const w0 = Atomics.load(this.s.grant, w);
    return { flags: w0 & 0xffff, domid: w0 >>> 16, frame: Atomics.load(this.s.grant, w + 1) };
  }

  /** `GNTTABOP_query_size`: `{nr_frames, max_nr_frames}` in 512-entry frames, or -ESRCH. */
  querySize(dom: number = DOMID_SELF): { nrFrames: number; maxNrFrames: number } | number {
    const d = this.resolve(dom);
    if (d !== this.domid && !this.privileged) return -EPERM;
    if (!this.s.isActive(d)) return -ESRCH;
    const frames = Math.ceil(this.ge / (XEN_PAGE_SIZE / 8));
    return { nrFrames: frames, maxNrFrames: frames };
  }

  // ───────────────────────────── grant table: the mapping side ─────────────────────────────

  /** `GNTTABOP_map_grant_ref` on a batch; each op's `status` (and `handle`, `mfn`) are written. */
  mapGrantRef(ops: GnttabMapGrantRef[]): number {
    for (const op of ops) this.mapOne(op);
    return 0;
  }

  private mapOne(op: GnttabMapGrantRef): void {
    const s = this.s;
    const ld = this.domid;
    op.handle = -1;
    op.mfn = -1;
    const rd = this.resolve(op.dom);
    if (!(op.flags & (GNTMAP_host_map | GNTMAP_device_map))) return this.mapFail(op, rd, GNTST_bad_gntref);
    if (!s.isActive(rd) || !s.isActive(ld)) return this.mapFail(op, rd, GNTST_bad_domain);
    const readonly = (op.flags & GNTMAP_readonly) !== 0;
    s.lockPair(ld, rd);
    try {
      if (!s.isActive(rd) || !s.isActive(ld)) return this.mapFail(op, rd, GNTST_bad_domain);
      // Maptrack, pin counts and map counters are guarded by the domain locks: plain accesses.
      // What the lock-free memory gate reads (p2m, p2m handle and generation, maptrack flags)
      // stays atomic, and the p2m entry is written last.
      const top = s.domains[s.dw(ld, D_MT_TOP)]!;
      // Xen ≥ 4.16 (before: GNTST_no_device_space, which Linux still names in its warning).
      if (top === 0) return this.mapFail(op, rd, GNTST_no_space);
      if (!isU32(op.ref) || op.ref >= this.ge) return this.mapFail(op, rd, GNTST_bad_gntref);
      const a = (rd * this.ge + op.ref) * A_WORDS;
      const gw = (rd * this.ge + op.ref) * 2;
      const pin = s.active[a + A_PIN]!;
      if (pin !== 0 && s.active[a + A_DOMID] !== ld) return this.mapFail(op, rd, GNTST_general_error);
      // GNTPIN_incr2oflow: refuse once the counter being raised has bit 7 set (128 pins).
      if ((pin >> (readonly ? 8 : 0)) & 0x80) return this.mapFail(op, rd, GNTST_general_error);
      let setFlags = 0;
      if (pin === 0 || (!readonly && !(pin & GNTPIN_hstw_mask))) {
        // _set_status_v1: check and pin the shared entry with a bounded cmpxchg loop (the
        // granter may be rewriting it concurrently; it is untrusted).
        let retries = 0;
        for (;;) {
          const w0 = Atomics.load(s.grant, gw);
          const flags = w0 & 0xffff;
          if ((flags & (GTF_type_mask | GTF_sub_page)) !== GTF_permit_access || w0 >>> 16 !== ld) return this.mapFail(op, rd, GNTST_general_error);
          if (!readonly && flags & GTF_readonly) return this.mapFail(op, rd, GNTST_general_error);
          const nw = (w0 | GTF_reading | (readonly ? 0 : GTF_writing)) >>> 0;
          if (Atomics.compareExchange(s.grant, gw, w0, nw) === w0) {
            setFlags = (nw & ~w0) & (GTF_reading | GTF_writing);
            break;
          }
          if (retries++ === 4) return this.mapFail(op, rd, GNTST_general_error);
        }
        if (pin === 0) {
          const gfn = Atomics.load(s.grant, gw + 1);
          const gi = s.p2mIndex(rd, gfn);
          const e = gi < 0 ? P2M_INVALID : Atomics.load(s.p2m, gi);
          if (e === P2M_INVALID || e & P2M_FOREIGN) {
            this.clearGrantFlags(gw, setFlags);
            return this.mapFail(op, rd, GNTST_bad_page);
          }
          s.active[a + A_DOMID] = ld;
          s.active[a + A_MFN] = e;
        }
      }
      // The host mapping comes last, as in Xen; refusing it undoes the pin. Linux's rule "page
      // must be ballooned": a map never replaces a frame the mapper has at that gfn.
      const hostIdx = s.p2mIndex(ld, op.hostGfn);
      if (hostIdx < 0 || Atomics.load(s.p2m, hostIdx) !== P2M_INVALID) {
        if (setFlags) this.clearGrantFlags(gw, setFlags);
        return this.mapFail(op, rd, GNTST_general_error);
      }
      const mfn = s.active[a + A_MFN]!;
      s.active[a + A_PIN] = pin + (readonly ? GNTPIN_hstr_inc : GNTPIN_hstw_inc);
      const newTop = top - 1;
      const handle = s.maptrackFree[ld * this.mte + newTop]!;
      s.domains[s.dw(ld, D_MT_TOP)] = newTop;
      const m = (ld * this.mte + handle) * MT_WORDS;
      s.maptrack[m + MT_GRANTER] = rd;
      s.maptrack[m + MT_REF] = op.ref;
      s.maptrack[m + MT_HOST_GFN] = op.hostGfn;
      Atomics.store(s.maptrack, m + MT_FLAGS, MT_INUSE | (op.flags & (GNTMAP_readonly | GNTMAP_host_map | GNTMAP_device_map)));
      Atomics.store(s.p2mHandle, hostIdx, handle);
      s.p2mLast[hostIdx * 2] = rd;
      s.p2mLast[hostIdx * 2 + 1] = op.ref;
      Atomics.add(s.p2mGen, hostIdx, 1);
      Atomics.store(s.p2m, hostIdx, mfn | P2M_FOREIGN);
      s.frameMaps[mfn]!++;
      s.domains[s.dw(ld, D_MAPS)]!++;
      op.status = GNTST_okay;
      op.handle = handle;
      op.mfn = mfn;
      const seq = this.events.emit('grant.map', { granter: rd, gref: op.ref, mapper: ld, handle, hostGfn: op.hostGfn, mfn, ro: readonly, status: GNTST_okay });
      s.maptrackSeq[ld * this.mte + handle] = seq;
    } finally {
      s.unlockPair(ld, rd);
    }
  }

  /** A refused map op: its status, and the `grant.map` event that records the refusal. */
  private mapFail(op: GnttabMapGrantRef, rd: number, status: number): void {
    op.status = status;
    this.events.emit('grant.map', { granter: rd, gref: isU32(op.ref) ? op.ref : -1, mapper: this.domid, handle: -1, hostGfn: op.hostGfn, mfn: -1, ro: !!(op.flags & GNTMAP_readonly), status });
  }

  private clearGrantFlags(gw: number, bits: number): void {
    const g = this.s.grant;
    for (;;) {
      const w0 = Atomics.load(g, gw);
      if (Atomics.compareExchange(g, gw, w0, (w0 & ~bits) >>> 0) === w0) return;
    }
  }

  /** `GNTTABOP_unmap_grant_ref` on a batch. */
  unmapGrantRef(ops: GnttabUnmapGrantRef[]): number {
    for (const op of ops) op.status = this.unmapHandle(this.domid, op.handle, op.hostGfn, null);
    return 0;
  }

  /** `GNTTABOP_unmap_and_replace` (one op per call, as Linux issues it). */
  unmapAndReplace(op: GnttabUnmapAndReplace): number {
    op.status = this.unmapHandle(this.domid, op.handle, op.hostGfn, typeof op.newGfn === 'number' ? op.newGfn : NaN);
    return 0;
  }

  /**
   * Unmap `handle` of domain `ld`. `newGfn` >= 0: replace the mapping with the frame at
   * `newGfn` (which is emptied) instead of leaving the gfn invalid.
   */
  private unmapHandle(ld: number, handle: number, hostGfn: number | undefined, replaceWith: number | null): number {
    const s = this.s;
    const replace = replaceWith !== null;
    const newGfn = replaceWith ?? -1;
    if (!isU32(handle) || handle >= this.mte) return this.unmapFail(ld, handle, hostGfn, replaceWith, GNTST_bad_handle);
    const m = (ld * this.mte + handle) * MT_WORDS;
    // Find the granter without a lock, then lock both and look again.
    const rd0 = Atomics.load(s.maptrack, m + MT_GRANTER);
    if (!(Atomics.load(s.maptrack, m + MT_FLAGS) & MT_INUSE)) return this.unmapFail(ld, handle, hostGfn, replaceWith, GNTST_bad_handle);
    s.lockPair(ld, rd0);
    let releaseZombie = -1;
    try {
      const flags = s.maptrack[m + MT_FLAGS]!;
      const rd = s.maptrack[m + MT_GRANTER]!;
      const ref = s.maptrack[m + MT_REF]!;
      const host = s.maptrack[m + MT_HOST_GFN]!;
      if (!(flags & MT_INUSE) || rd !== rd0) return this.unmapFail(ld, handle, hostGfn, replaceWith, GNTST_bad_handle);
      if (hostGfn !== undefined && hostGfn !== host) return this.unmapFail(ld, handle, hostGfn, replaceWith, GNTST_general_error, rd, ref);
      const hostIdx = s.p2mIndex(ld, host);
      let newMfn = -1;
      let newIdx = -1;
      if (replace) {
        newIdx = s.p2mIndex(ld, newGfn);
        const ne = newIdx < 0 ? P2M_INVALID : s.p2m[newIdx]!;
        if (newIdx === hostIdx || ne === P2M_INVALID || ne & P2M_FOREIGN) return this.unmapFail(ld, handle, hostGfn, replaceWith, GNTST_general_error, rd, ref);
        newMfn = ne;
      }
      const readonly = (flags & GNTMAP_readonly) !== 0;
      const a = (rd * this.ge + ref) * A_WORDS;
      const mfn = s.active[a + A_MFN]!;
      const pin = s.active[a + A_PIN]! - (readonly ? GNTPIN_hstr_inc : GNTPIN_hstw_inc);
      s.active[a + A_PIN] = pin;
      // reduce_status_for_pin: no writers left → clear GTF_writing; no pins → clear GTF_reading.
      const gw = (rd * this.ge + ref) * 2;
      let clear = 0;
      if (!(pin & GNTPIN_hstw_mask)) clear |= GTF_writing;
      if (!(pin & (GNTPIN_hstw_mask | GNTPIN_hstr_mask))) clear |= GTF_reading;
      if (clear) this.clearGrantFlags(gw, clear);
      Atomics.add(s.p2mGen, hostIdx, 1);
      Atomics.store(s.p2mHandle, hostIdx, -1);
      if (replace) {
        Atomics.store(s.p2m, hostIdx, newMfn);
        Atomics.store(s.p2m, newIdx, P2M_INVALID);
        Atomics.add(s.p2mGen, newIdx, 1);
      } else {
        Atomics.store(s.p2m, hostIdx, P2M_INVALID);
      }
      Atomics.store(s.maptrack, m + MT_FLAGS, 0);
      const top = s.domains[s.dw(ld, D_MT_TOP)]!;
      s.maptrackFree[ld * this.mte + top] = handle;
      s.domains[s.dw(ld, D_MT_TOP)] = top + 1;
      s.domains[s.dw(ld, D_MAPS)]!--;
      const left = --s.frameMaps[mfn]!;
      if (left === 0 && Atomics.load(s.frameZombie, mfn) === 1) releaseZombie = mfn;
      const seq = replace
        ? this.events.emit('grant.unmap_replace', { granter: rd, gref: ref, mapper: ld, handle, hostGfn: host, newGfn, newMfn, status: GNTST_okay })
        : this.events.emit('grant.unmap', { granter: rd, gref: ref, mapper: ld, handle, hostGfn: host, status: GNTST_okay });
      s.maptrackSeq[ld * this.mte + handle] = seq;
      return GNTST_okay;
    } finally {
      s.unlockPair(ld, rd0);
      if (releaseZombie >= 0) this.freeZombieFrame(rd0, releaseZombie);
    }
  }

  /** A refused unmap op: the `grant.unmap` (or `grant.unmap_replace`) event recording it; returns the status. */
  private unmapFail(ld: number, handle: number, hostGfn: number | undefined, replaceWith: number | null, status: number, granter = -1, gref = -1): number {
    const base = { granter, gref, mapper: ld, handle: isU32(handle) ? handle : -1, hostGfn: hostGfn ?? -1, status };
    if (replaceWith !== null) this.events.emit('grant.unmap_replace', { ...base, newGfn: replaceWith, newMfn: -1 });
    else this.events.emit('grant.unmap', base);
    return status;
  }

  private freeZombieFrame(dom: number, mfn: number): void {
    const s = this.s;
    spinLock(s.global, G_ALLOC_LOCK);
    s.lockDomain(dom);
    try {
      if (Atomics.load(s.frameZombie, mfn) !== 1 || Atomics.load(s.frameOwner, mfn) !== dom || Atomics.load(s.frameMaps, mfn) !== 0) return;
      Atomics.store(s.frameZombie, mfn, 0);
      this.freeFrameLocked(mfn);
      const left = Atomics.sub(s.domains, s.dw(dom, D_TOT_PAGES), 1) - 1;
      if (left === 0 && s.domState(dom) === DOMSTATE_DYING) this.releaseDomainLocked(dom);
    } finally {
      s.unlockDomain(dom);
      spinUnlock(s.global, G_ALLOC_LOCK);
    }
  }

  /** `GNTTABOP_copy` on a batch; each op's `status` is written. */
  copy(ops: GnttabCopy[]): number {
    for (const op of ops) op.status = this.copyOne(op);
    return 0;
  }

  private copyOne(op: GnttabCopy): number {
    const s = this.s;
    const c = this.domid;
    const srcByRef = (op.flags & GNTCOPY_source_gref) !== 0;
    const dstByRef = (op.flags & GNTCOPY_dest_gref) !== 0;
    const sd = this.resolve(op.source.domid);
    const dd = this.resolve(op.dest.domid);
    const report = (status: number) => {
      this.events.emit('grant.copy', {
        caller: c,
        srcDom: sd,
        srcGref: srcByRef ? (op.source.ref ?? -1) : -1,
        srcGfn: srcByRef ? -1 : (op.source.gfn ?? -1),
        dstDom: dd,
        dstGref: dstByRef ? (op.dest.ref ?? -1) : -1,
        dstGfn: dstByRef ? -1 : (op.dest.gfn ?? -1),
        len: op.len,
        status,
      });
      return status;
    };
    // A zero-length copy succeeds before any check (gnttab_copy_one).
    if (op.len === 0) return report(GNTST_okay);
    // gnttab_copy_lock_domains: each side in turn, the by-frame rule before the lookup; only
    // the literal DOMID_SELF may name a frame, not the caller's own domid.
    if (!srcByRef && op.source.domid !== DOMID_SELF) return report(GNTST_permission_denied);
    if (!s.isActive(sd)) return report(GNTST_bad_domain);
    if (!dstByRef && op.dest.domid !== DOMID_SELF) return report(GNTST_permission_denied);
    if (!s.isActive(dd)) return report(GNTST_bad_domain);
    s.lockPair(sd, dd);
    let srcPinned = -1;
    let dstPinned = -1;
    try {
      const src = srcByRef ? this.claimRef(sd, op.source.ref, true) : this.claimGfn(c, op.source.gfn);
      if (src.status !== GNTST_okay) return report(src.status);
      srcPinned = src.pinnedGw;
      const dst = dstByRef ? this.claimRef(dd, op.dest.ref, false) : this.claimGfn(c, op.dest.gfn);
      if (dst.status !== GNTST_okay) return report(dst.status);
      dstPinned = dst.pinnedGw;
      const so = op.source.offset;
      const doff = op.dest.offset;
      const len = op.len;
      if (!isU32(so) || !isU32(doff) || !isU32(len) || so + len > XEN_PAGE_SIZE || doff + len > XEN_PAGE_SIZE) return report(GNTST_bad_copy_arg);
      const base = s.memory;
      base.copyWithin(dst.mfn * XEN_PAGE_SIZE + doff, src.mfn * XEN_PAGE_SIZE + so, src.mfn * XEN_PAGE_SIZE + so + len);
      return report(GNTST_okay);
    } finally {
      // Release transient pins (only bits this copy set, and only if no mapping pins remain).
      if (srcPinned >= 0) this.releaseTransient(srcPinned, true);
      if (dstPinned >= 0) this.releaseTransient(dstPinned, false);
      s.unlockPair(sd, dd);
    }
  }

  /** Acquire a grant for copying (locks held): check, pin transiently, translate. */
  private claimRef(rd: number, ref: number | undefined, readonly: boolean): { status: number; mfn: number; pinnedGw: number } {
    const s = this.s;
    if (ref === undefined || !isU32(ref) || ref >= this.ge) return { status: GNTST_bad_gntref, mfn: -1, pinnedGw: -1 };
    const gw = (rd * this.ge + ref) * 2;
    const a = (rd * this.ge + ref) * A_WORDS;
    let retries = 0;
    let set = 0;
    for (;;) {
      const w0 = Atomics.load(s.grant, gw);
      const flags = w0 & 0xffff;
      if ((flags & (GTF_type_mask | GTF_sub_page)) !== GTF_permit_access || w0 >>> 16 !== this.domid) return { status: GNTST_general_error, mfn: -1, pinnedGw: -1 };
      if (!readonly && flags & GTF_readonly) return { status: GNTST_general_error, mfn: -1, pinnedGw: -1 };
      const want = GTF_reading | (readonly ? 0 : GTF_writing);
      set = want & ~flags;
      if (set === 0) break;
      if (Atomics.compareExchange(s.grant, gw, w0, (w0 | want) >>> 0) === w0) break;
      if (retries++ === 4) return { status: GNTST_general_error, mfn: -1, pinnedGw: -1 };
    }
    // The grant word's index and the flag bits this copy set (reading = bit 3, writing = bit 4),
    // packed so the result stays a non-negative small integer: gw * 32 + bits.
    const pinned = set ? gw * 32 + set : -1;
    let mfn: number;
    if (s.active[a + A_PIN] !== 0) mfn = s.active[a + A_MFN]!;
    else {
      const gfn = Atomics.load(s.grant, gw + 1);
      const gi = s.p2mIndex(rd, gfn);
      const e = gi < 0 ? P2M_INVALID : Atomics.load(s.p2m, gi);
      if (e === P2M_INVALID || e & P2M_FOREIGN) {
        if (pinned >= 0) this.releaseTransient(pinned, readonly);
        return { status: GNTST_bad_page, mfn: -1, pinnedGw: -1 };
      }
      mfn = e;
    }
    return { status: GNTST_okay, mfn, pinnedGw: pinned };
  }

  /** A frame by the caller's own gfn: must be a frame it owns, not a foreign mapping (get_paged_frame). */
  private claimGfn(c: number, gfn: number | undefined): { status: number; mfn: number; pinnedGw: number } {
    const s = this.s;
    const gi = gfn === undefined ? -1 : s.p2mIndex(c, gfn);
    const e = gi < 0 ? P2M_INVALID : Atomics.load(s.p2m, gi);
    if (e === P2M_INVALID || e & P2M_FOREIGN) return { status: GNTST_bad_page, mfn: -1, pinnedGw: -1 };
    return { status: GNTST_okay, mfn: e & P2M_MFN_MASK, pinnedGw: -1 };
  }

  private releaseTransient(pinned: number, _readonly: boolean): void {
    const gw = Math.floor(pinned / 32);
    const bits = pinned % 32 & (GTF_reading | GTF_writing);
    // Bits set by this copy are ours to clear unless a mapping pinned the entry meanwhile (it
    // cannot: we hold the granter's lock, and maps take it).
    this.clearGrantFlags(gw, bits);
  }

  // ───────────────────────────── the memory gate ─────────────────────────────

  /**
   * The caller's own page at `gfn` as shared memory: a 4 KiB view of the frame its p2m entry
   * names, as a domain reaches memory only through its own page tables. Given only when the entry
   * is valid — a frame the caller owns, or a foreign frame it grant-mapped there, writably, with
   * `GNTMAP_host_map` (a view is writable, so a read-only or device-only mapping gets none).
   * Otherwise an error (`-EINVAL` no frame there or a gfn outside the domain, `-EPERM` a read-only
   * mapping, `-ESRCH` the caller is not running), recorded as a `mem.fault`; never a throw: the
   * gfn is the calling domain's to choose, right or wrong, as any hypercall argument.
   *
   * This is for memory both ends touch in place with Atomics — ring pages — where a copy through
   * the gate per access would defeat the ring. Limitation, honestly: a JavaScript view cannot be
   * revoked. After the caller unmaps the grant (or balloons its own page out) the view still
   * reaches the frame, and nothing records it. So a holder must use it only between map and
   * unmap — a backend's ring mapper drops its ring before it unmaps it, a frontend keeps its ring
   * in frames it owns for the device's life — and every data page goes through `read`/`write`
   * with a page reference's stamp, the checked path that turns a stale access into a
   * `mem.fault` or `mem.leak`.
   */
  frameView(gfn: number): Result<Uint8Array, FrameViewError> {
    const s = this.s;
    const dom = this.domid;
    const refuse = (errno: number, reason: string, granter = -1, gref = -1): Result<Uint8Array, FrameViewError> => {
      this.events.emit('mem.fault', { dom, gfn, write: true, reason: `frame view: ${reason}`, granter, gref });
      return err({ errno, reason });
    };
    const i = s.p2mIndex(dom, gfn);
    if (i < 0) return refuse(-EINVAL, `gfn ${gfn} outside d${dom}'s ${this.gfns} gfns`);
    // Under the caller's lock: maps and unmaps at its gfns hold it, so the entry, its handle and
    // the maptrack flags read here belong to one mapping.
    s.lockDomain(dom);
    try {
      if (!s.isActive(dom)) return refuse(-ESRCH, `d${dom} is not a running domain`);
      const e = Atomics.load(s.p2m, i);
      if (e === P2M_INVALID) {
        const lastGranter = s.p2mLast[i * 2]!;
        const lastRef = s.p2mLast[i * 2 + 1]!;
        const why = lastGranter >= 0 ? `no frame at gfn ${gfn} (last: grant d${lastGranter}/gref ${lastRef}, unmapped)` : `no frame at gfn ${gfn} (ballooned out or never populated)`;
        return refuse(-EINVAL, why, lastGranter, lastRef);
      }
      const mfn = e & P2M_MFN_MASK;
      if (e & P2M_FOREIGN) {
        const granter = s.p2mLast[i * 2]!;
        const gref = s.p2mLast[i * 2 + 1]!;
        const h = Atomics.load(s.p2mHandle, i);
        const mflags = h >= 0 ? Atomics.load(s.maptrack, (dom * this.mte + h) * MT_WORDS + MT_FLAGS) : 0;
        if (!(mflags & MT_INUSE)) return refuse(-EINVAL, `foreign entry at gfn ${gfn} without a live mapping`, granter, gref);
        if (!(mflags & GNTMAP_host_map)) return refuse(-EINVAL, `grant d${granter}/gref ${gref} at gfn ${gfn} is mapped without GNTMAP_host_map`, granter, gref);
        if (mflags & GNTMAP_readonly) return refuse(-EPERM, `grant d${granter}/gref ${gref} at gfn ${gfn} is mapped read-only (a view is writable)`, granter, gref);
        return ok(s.frame(mfn));
      }
      const owner = Atomics.load(s.frameOwner, mfn);
      if (owner !== dom) return refuse(-EINVAL, `gfn ${gfn} shows mfn ${mfn}, owned by d${owner}`);
      return ok(s.frame(mfn));
    } finally {
      s.unlockDomain(dom);
    }
  }

  /** Remember the mapping currently at `gfn`, to hand to later accesses (a page reference). */
  stamp(gfn: number): MappingStamp | null {
    const s = this.s;
    const i = s.p2mIndex(this.domid, gfn);
    if (i < 0) return null;
    return { gen: Atomics.load(s.p2mGen, i), granter: s.p2mLast[i * 2]!, gref: s.p2mLast[i * 2 + 1]! };
  }

  /** Read `dst.length` bytes at `gfn`:`offset` as the caller. Returns GATE_OK or GATE_FAULT. */
  read(gfn: number, offset: number, dst: Uint8Array, stamp?: MappingStamp): number {
    const mfn = this.check(gfn, offset, dst.length, false, stamp);
    if (mfn < 0) return GATE_FAULT;
    const base = mfn * XEN_PAGE_SIZE + offset;
    dst.set(this.s.memory.subarray(base, base + dst.length));
    return GATE_OK;
  }

  /** Write `src` at `gfn`:`offset` as the caller. */
  write(gfn: number, offset: number, src: Uint8Array, stamp?: MappingStamp): number {
    const mfn = this.check(gfn, offset, src.length, true, stamp);
    if (mfn < 0) return GATE_FAULT;
    this.s.memory.set(src, mfn * XEN_PAGE_SIZE + offset);
    return GATE_OK;
  }

  /**
   * The gate: may the caller touch `len` bytes at `gfn`:`offset` in this mode? Returns the mfn,
   * or -1 after recording a fault. A read that reaches a frame not covered by the grant the
   * caller's page reference names is performed (stale mappings do read) and recorded as a leak.
   */
  private check(gfn: number, offset: number, len: number, write: boolean, stamp: MappingStamp | undefined): number {
    const s = this.s;
    const dom = this.domid;
    const i = s.p2mIndex(dom, gfn);
    if (i < 0) return this.fault(gfn, write, 'gfn outside the domain');
    if (!isU32(offset) || !isU32(len) || offset + len > XEN_PAGE_SIZE) return this.fault(gfn, write, `access [${offset}, ${offset + len}) crosses the page`);
    const e = Atomics.load(s.p2m, i);
    if (stamp && Atomics.load(s.p2mGen, i) !== stamp.gen) {
      if (e === P2M_INVALID) return this.fault(gfn, write, `the grant mapping d${stamp.granter}/gref ${stamp.gref} was unmapped`, stamp.granter, stamp.gref);
      const mfn = e & P2M_MFN_MASK;
      if (write) return this.fault(gfn, write, `write through the grant mapping d${stamp.granter}/gref ${stamp.gref}, which is gone`, stamp.granter, stamp.gref);
      this.events.emit('mem.leak', {
        dom,
        gfn,
        mfn,
        owner: Atomics.load(s.frameOwner, mfn),
        granter: stamp.granter,
        gref: stamp.gref,
        reason: `read through grant d${stamp.granter}/gref ${stamp.gref}, which is no longer mapped here: the page now shows mfn ${mfn}`,
      });
      return mfn;
    }
    if (e === P2M_INVALID) {
      const lastGranter = s.p2mLast[i * 2]!;
      const lastRef = s.p2mLast[i * 2 + 1]!;
      return this.fault(gfn, write, lastGranter >= 0 ? `no frame at gfn (last: grant d${lastGranter}/gref ${lastRef}, unmapped)` : 'no frame at gfn', lastGranter, lastRef);
    }
    const mfn = e & P2M_MFN_MASK;
    if (e & P2M_FOREIGN) {
      const h = Atomics.load(s.p2mHandle, i);
      const mflags = h >= 0 ? Atomics.load(s.maptrack, (dom * this.mte + h) * MT_WORDS + MT_FLAGS) : 0;
      if (!(mflags & MT_INUSE) || (write && mflags & GNTMAP_readonly)) {
        const lastGranter = s.p2mLast[i * 2]!;
        const lastRef = s.p2mLast[i * 2 + 1]!;
        if (!(mflags & MT_INUSE)) return this.fault(gfn, write, 'foreign entry without a live mapping', lastGranter, lastRef);
        return this.fault(gfn, write, `write to a read-only mapping of d${lastGranter}/gref ${lastRef}`, lastGranter, lastRef);
      }
      return mfn;
    }
    const owner = Atomics.load(s.frameOwner, mfn);
    if (owner !== dom) {
      if (write) return this.fault(gfn, write, `write to mfn ${mfn}, owned by d${owner}`);
      this.events.emit('mem.leak', { dom, gfn, mfn, owner, granter: -1, gref: -1, reason: `read of mfn ${mfn}, owned by d${owner}, with no grant mapping` });
    }
    return mfn;
  }

  /** Record a refused access (`mem.fault`); the gate's -1. */
  private fault(gfn: number, write: boolean, reason: string, granter = -1, gref = -1): number {
    this.events.emit('mem.fault', { dom: this.domid, gfn, write, reason, granter, gref });
    return -1;
  }

  // ───────────────────────────── event channels ─────────────────────────────

  private ew(dom: number, port: number): number {
    return (dom * this.ports + port) * E_WORDS;
  }

  private validPort(port: number): boolean {
    return isU32(port) && port >= 1 && port < this.ports;
  }

  private freePortLocked(dom: number): number {
    for (let p = 1; p < this.ports; p++) if (this.s.evtchn[this.ew(dom, p) + E_STATE] === EVTCHNSTAT_closed) return p;
    return -1;
  }

  /** `EVTCHNOP_alloc_unbound {dom = DOMID_SELF, remote_dom}`: a port `remoteDom` may bind. */
  evtchnAllocUnbound(remoteDom: number, dom: number = DOMID_SELF): number {
    const s = this.s;
    const d = this.resolve(dom);
    if (d !== this.domid && !this.privileged) return -EPERM;
    const rd = this.resolve(remoteDom);
    if (!s.isActive(d)) return -ESRCH;
    if (!isU32(rd) || rd > 0xffff) return -ESRCH;
    s.lockDomain(d);
    try {
      const p = this.freePortLocked(d);
      if (p < 0) return -ENOSPC;
      const w = this.ew(d, p);
      s.evtchn[w + E_REMOTE_DOM] = rd;
      s.evtchn[w + E_REMOTE_PORT] = 0;
      Atomics.store(s.evtchn, w + E_STATE, EVTCHNSTAT_unbound);
      s.evtchnSeq[d * this.ports + p] = this.events.emit('evtchn.alloc_unbound', { dom: d, port: p, remoteDom: rd });
      return p;
    } finally {
      s.unlockDomain(d);
    }
  }

  /**
   * `EVTCHNOP_bind_interdomain`: bind a new local port to `remoteDom`'s unbound `remotePort`
   * (which must accept us). The new local port is set pending, as Xen does.
   */
  evtchnBindInterdomain(remoteDom: number, remotePort: number): number {
    const s = this.s;
    const ld = this.domid;
    const rd = this.resolve(remoteDom);
    if (!s.isActive(rd)) return -ESRCH;
    if (!this.validPort(remotePort)) return -EINVAL;
    s.lockPair(ld, rd);
    try {
      const rw = this.ew(rd, remotePort);
      if (s.evtchn[rw + E_STATE] !== EVTCHNSTAT_unbound || s.evtchn[rw + E_REMOTE_DOM] !== ld) return -EINVAL;
      const lp = this.freePortLocked(ld);
      if (lp < 0 || (ld === rd && lp === remotePort)) return -ENOSPC;
      const lw = this.ew(ld, lp);
      s.evtchn[lw + E_REMOTE_DOM] = rd;
      s.evtchn[lw + E_REMOTE_PORT] = remotePort;
      Atomics.store(s.evtchn, lw + E_STATE, EVTCHNSTAT_interdomain);
      s.evtchn[rw + E_REMOTE_DOM] = ld;
      s.evtchn[rw + E_REMOTE_PORT] = lp;
      Atomics.store(s.evtchn, rw + E_STATE, EVTCHNSTAT_interdomain);
      const seq = this.events.emit('evtchn.bind', { dom: ld, port: lp, remoteDom: rd, remotePort });
      s.evtchnSeq[ld * this.ports + lp] = seq;
      s.evtchnSeq[rd * this.ports + remotePort] = seq;
      s.bells[ld]!.raise(lp);
      return lp;
    } finally {
      s.unlockPair(ld, rd);
    }
  }

  /**
   * `EVTCHNOP_send`: raise the remote end. A send on an unbound port is dropped (0), as on Xen;
   * a closed or invalid port is -EINVAL.
   */
  evtchnSend(port: number): number {
    const s = this.s;
    const ld = this.domid;
    if (!this.validPort(port)) return -EINVAL;
    const w = this.ew(ld, port);
    const state = Atomics.load(s.evtchn, w + E_STATE);
    if (state === EVTCHNSTAT_unbound) return 0;
    if (state !== EVTCHNSTAT_interdomain) return -EINVAL;
    const rd = s.evtchn[w + E_REMOTE_DOM]!;
    const rp = s.evtchn[w + E_REMOTE_PORT]!;
    // Lock-free read of a pair written under the lock before the state store: a racing close
    // at worst makes us raise a port being torn down, which its owner ignores (Xen has the
    // same window between the check and the raise).
    const delivered = s.isActive(rd) && Atomics.load(s.evtchn, this.ew(rd, rp) + E_STATE) === EVTCHNSTAT_interdomain;
    if (delivered) s.bells[rd]!.raise(rp);
    this.events.emit('evtchn.send', { dom: ld, port, remoteDom: rd, remotePort: rp, delivered });
    return 0;
  }

  /** `EVTCHNOP_close`: the remote end of an interdomain channel goes back to unbound. */
  evtchnClose(port: number): number {
    if (!this.validPort(port)) return -EINVAL;
    return this.closePort(this.domid, port);
  }

  private closePort(ld: number, port: number): number {
    const s = this.s;
    const w = this.ew(ld, port);
    for (;;) {
      // An unbound port may name any domid up to 0xffff as its future peer: lock a remote only
      // when it is a domain of the table.
      const peer = s.evtchn[w + E_REMOTE_DOM]!;
      const rd0 = peer >= 0 && peer < s.c.maxDomains ? peer : ld;
      s.lockPair(ld, rd0);
      try {
        // The peer changed between the look and the lock (a concurrent bind): look again.
        if (s.evtchn[w + E_REMOTE_DOM] !== peer) continue;
        const state = s.evtchn[w + E_STATE]!;
        if (state === EVTCHNSTAT_closed) return -EINVAL;
        const rp = s.evtchn[w + E_REMOTE_PORT]!;
        let remoteUnbound = false;
        if (state === EVTCHNSTAT_interdomain) {
          const rw = this.ew(peer, rp);
          if (s.evtchn[rw + E_STATE] === EVTCHNSTAT_interdomain && s.evtchn[rw + E_REMOTE_DOM] === ld && s.evtchn[rw + E_REMOTE_PORT] === port) {
            s.evtchn[rw + E_REMOTE_DOM] = ld;
            s.evtchn[rw + E_REMOTE_PORT] = 0;
            Atomics.store(s.evtchn, rw + E_STATE, EVTCHNSTAT_unbound);
            remoteUnbound = true;
          }
        }
        Atomics.store(s.evtchn, w + E_STATE, EVTCHNSTAT_closed);
        s.evtchn[w + E_REMOTE_DOM] = 0;
        s.evtchn[w + E_REMOTE_PORT] = 0;
        s.bells[ld]!.unbind(port);
        const inter = state === EVTCHNSTAT_interdomain;
        const seq = this.events.emit('evtchn.close', { dom: ld, port, remoteDom: inter ? peer : -1, remotePort: inter ? rp : -1 }, this.domid);
        s.evtchnSeq[ld * this.ports + port] = seq;
        if (remoteUnbound) s.evtchnSeq[peer * this.ports + rp] = seq;
        return 0;
      } finally {
        s.unlockPair(ld, rd0);
      }
    }
  }

  /** `EVTCHNOP_status`. */
  evtchnStatus(port: number, dom: number = DOMID_SELF): EvtchnStatus | number {
    const d = this.resolve(dom);
    if (d !== this.domid && !this.privileged) return -EPERM;
    if (!this.s.isActive(d) && this.s.domState(d) !== DOMSTATE_DYING) return -ESRCH;
    if (!this.validPort(port)) return -EINVAL;
    const w = this.ew(d, port);
    return { state: Atomics.load(this.s.evtchn, w + E_STATE), remoteDom: this.s.evtchn[w + E_REMOTE_DOM]!, remotePort: this.s.evtchn[w + E_REMOTE_PORT]! };
  }

  /** `EVTCHNOP_unmask`: a notification that arrived while masked fires now. */
  evtchnUnmask(port: number): number {
    if (!this.validPort(port)) return -EINVAL;
    this.s.bells[this.domid]!.unmask(port);
    return 0;
  }

  /** The caller's own doorbells (to bind ports to its waiters, mask, wait). */
  get doorbells() {
    return this.s.bells[this.domid]!;
  }

  // ───────────────────────────── introspection ─────────────────────────────

  /** Live mappings held by `dom` (maptrack entries in use). */
  mappingsHeld(dom: number = this.domid): number {
    return Atomics.load(this.s.domains, this.s.dw(dom, D_MAPS));
  }

  domainInfo(dom: number): { domid: number; name: string; state: number; totPages: number; maxPages: number; paused: boolean; privileged: boolean } | null {
    const s = this.s;
    const st = s.domState(dom);
    if (st === DOMSTATE_FREE) return null;
    return {
      domid: dom,
      name: s.domName(dom),
      state: st,
      totPages: Atomics.load(s.domains, s.dw(dom, D_TOT_PAGES)),
      maxPages: Atomics.load(s.domains, s.dw(dom, D_MAX_PAGES)),
      paused: Atomics.load(s.domains, s.dw(dom, D_PAUSED)) === 1,
      privileged: Atomics.load(s.domains, s.dw(dom, D_PRIVILEGED)) === 1,
    };
  }
}

export { DOMSTATE_ACTIVE, DOMSTATE_DYING, DOMSTATE_FREE };
