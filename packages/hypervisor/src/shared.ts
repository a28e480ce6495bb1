/**
 * The hypervisor's state, all of it in shared memory laid out once at boot, so that every thread
 * runs hypercalls on its own (as Xen runs them on the calling vCPU) against the same tables.
 * `HypervisorSpec` is the postMessage-able description; `HvState` the views over it.
 *
 * Locks: one spinlock per domain (its grant table, maptrack, p2m and ports) and one for frame
 * allocation. An operation that needs two domains takes both in domid order (no deadlock).
 * Critical sections are a few hundred nanoseconds; waiters spin briefly, then sleep on the word.
 */
import { assert } from '@pvsim/abi';
import { XEN_PAGE_SIZE } from '@pvsim/abi';
import { EvtchnDoorbells } from '@pvsim/ring';

export interface HypervisorConfig {
  /** Machine frames (4 KiB each). */
  frames: number;
  /** Domain table size; domids are 0..maxDomains-1 (dom0 is 0). */
  maxDomains: number;
  /** Guest frame numbers per domain (memory plus room for ballooned pages used by grant maps). */
  gfnsPerDomain: number;
  /** Grant table entries per domain (v1). */
  grantEntries: number;
  /** Maptrack handles per domain: how many grant mappings one domain may hold. */
  maptrackEntries: number;
  /** Event-channel ports per domain. */
  evtchnPorts: number;
}

export const HYPERVISOR_CONFIG_DEFAULT: HypervisorConfig = {
  frames: 16384,
  maxDomains: 32,
  gfnsPerDomain: 16384,
  grantEntries: 4096,
  maptrackEntries: 4096,
  evtchnPorts: 1024,
};

// Domain table words.
export const D_STATE = 0;
export const D_LOCK = 1;
export const D_MAX_PAGES = 2;
export const D_TOT_PAGES = 3;
export const D_PRIVILEGED = 4;
export const D_PAUSED = 5;
export const D_MT_TOP = 6; // maptrack free-stack top
export const D_MAPS = 7; // live mappings held by this domain
export const D_GENERATION = 8; // bumped at every create (domid reuse)
export const D_WORDS = 16;
export const DOM_NAME_BYTES = 64;

export const DOMSTATE_FREE = 0;
export const DOMSTATE_ACTIVE = 1;
/** Destroyed; its frames still mapped by other domains keep it a zombie until unmapped. */
export const DOMSTATE_DYING = 2;

// Global words.
export const G_ALLOC_LOCK = 0;
export const G_FREE_TOP = 1;
export const G_WORDS = 4;

/** p2m entry: -1 invalid (ballooned out); else an mfn, with bit 30 for a foreign (grant) mapping. */
export const P2M_INVALID = -1;
export const P2M_FOREIGN = 1 << 30;
export const P2M_MFN_MASK = P2M_FOREIGN - 1;

// Active grant entry words (Xen's `struct active_grant_entry`).
export const A_PIN = 0; // GNTPIN_* counts
export const A_DOMID = 1; // the domain the pinned entry was granted to
export const A_MFN = 2;
export const A_WORDS = 4;

// Maptrack entry words (Xen's `struct grant_mapping`).
export const MT_FLAGS = 0; // 0 = free; else MT_INUSE | GNTMAP_* flags
export const MT_GRANTER = 1;
export const MT_REF = 2;
export const MT_HOST_GFN = 3;
export const MT_WORDS = 4;
export const MT_INUSE = 1 << 16;

// Event-channel port words.
export const E_STATE = 0; // EVTCHNSTAT_*
export const E_REMOTE_DOM = 1; // unbound: who may bind; interdomain: the peer
export const E_REMOTE_PORT = 2;
export const E_WORDS = 4;

export interface HypervisorSpec {
  config: HypervisorConfig;
  memory: SharedArrayBuffer;
  frameOwner: SharedArrayBuffer;
  frameMaps: SharedArrayBuffer;
  /** 1 for a frame of a dying domain kept alive by other domains' mappings (freed at their last unmap). */
  frameZombie: SharedArrayBuffer;
  freeStack: SharedArrayBuffer;
  global: SharedArrayBuffer;
  domains: SharedArrayBuffer;
  domNames: SharedArrayBuffer;
  p2m: SharedArrayBuffer;
  p2mGen: SharedArrayBuffer;
  p2mHandle: SharedArrayBuffer;
  p2mLast: SharedArrayBuffer;
  grant: SharedArrayBuffer;
  grantSeq: SharedArrayBuffer;
  active: SharedArrayBuffer;
  maptrack: SharedArrayBuffer;
  maptrackSeq: SharedArrayBuffer;
  maptrackFree: SharedArrayBuffer;
  evtchn: SharedArrayBuffer;
  /** Seq of the event that last changed each port (replay-equals-state). */
  evtchnSeq: SharedArrayBuffer;
  /** One doorbell table per domain (its shared_info pending/mask bits). */
  bells: SharedArrayBuffer[];
}

/** Lay out a fresh machine. Every frame starts free and zeroed; no domain exists. */
export function createHypervisorSpec(config: Partial<HypervisorConfig> = {}): HypervisorSpec {
  const c: HypervisorConfig = { ...HYPERVISOR_CONFIG_DEFAULT, ...config };
  assert(c.frames >= 16 && c.frames < P2M_FOREIGN, `frames must be 16..2^30, got ${c.frames}`);
  assert(c.maxDomains >= 2 && c.maxDomains <= 0x7ff0, `maxDomains must be 2..0x7ff0, got ${c.maxDomains}`);
  assert(c.grantEntries > 8 && c.maptrackEntries >= 1 && c.gfnsPerDomain >= 1, 'grant table, maptrack and p2m must not be empty');
  assert(c.evtchnPorts >= 32 && c.evtchnPorts % 32 === 0, 'evtchnPorts must be a multiple of 32');
  const i32 = (n: number) => new SharedArrayBuffer(n * 4);
  const D = c.maxDomains;
  const spec: HypervisorSpec = {
    config: c,
    memory: new SharedArrayBuffer(c.frames * XEN_PAGE_SIZE),
    frameOwner: i32(c.frames),
    frameMaps: i32(c.frames),
    frameZombie: i32(c.frames),
    freeStack: i32(c.frames),
    global: i32(G_WORDS),
    domains: i32(D * D_WORDS),
    domNames: new SharedArrayBuffer(D * DOM_NAME_BYTES),
    p2m: i32(D * c.gfnsPerDomain),
    p2mGen: i32(D * c.gfnsPerDomain),
    p2mHandle: i32(D * c.gfnsPerDomain),
    p2mLast: i32(D * c.gfnsPerDomain * 2),
    grant: i32(D * c.grantEntries * 2),
    grantSeq: new SharedArrayBuffer(D * c.grantEntries * 8),
    active: i32(D * c.grantEntries * A_WORDS),
    maptrack: i32(D * c.maptrackEntries * MT_WORDS),
    maptrackSeq: new SharedArrayBuffer(D * c.maptrackEntries * 8),
    maptrackFree: i32(D * c.maptrackEntries),
    evtchn: i32(D * c.evtchnPorts * E_WORDS),
    evtchnSeq: new SharedArrayBuffer(D * c.evtchnPorts * 8),
    bells: Array.from({ length: D }, () => EvtchnDoorbells.create({ maxPorts: c.evtchnPorts, maxWaiters: 16 }).sab),
  };
  new Int32Array(spec.frameOwner).fill(-1);
  new Int32Array(spec.p2m).fill(P2M_INVALID);
  new Int32Array(spec.p2mHandle).fill(-1);
  new Int32Array(spec.p2mLast).fill(-1);
  const free = new Int32Array(spec.freeStack);
  // Hand out low frames first: frame n-1 at the bottom of the stack.
  for (let i = 0; i < c.frames; i++) free[i] = c.frames - 1 - i;
  new Int32Array(spec.global)[G_FREE_TOP] = c.frames;
  return spec;
}

/** Typed views over a spec; cheap to build in each thread. */
export class HvState {
  readonly c: HypervisorConfig;
  /**
   * All of machine memory, every frame of every domain, unchecked. Hypervisor-internal (the memory
   * gate and grant copies use it): a daemon reaches memory only as a domain does, through its
   * hypercall client — `client.frameView(gfn)` for a ring page of its own p2m, `read`/`write` with
   * a stamp for data pages. test/integration/blk/no-machine-memory.test.ts keeps it out of every
   * other package's non-test code.
   */
  readonly memory: Uint8Array;
  readonly frameOwner: Int32Array;
  readonly frameMaps: Int32Array;
  readonly frameZombie: Int32Array;
  readonly freeStack: Int32Array;
  readonly global: Int32Array;
  readonly domains: Int32Array;
  readonly domNames: Uint8Array;
  readonly p2m: Int32Array;
  readonly p2mGen: Int32Array;
  readonly p2mHandle: Int32Array;
  readonly p2mLast: Int32Array;
  readonly grant: Uint32Array;
  readonly grantSeq: Float64Array;
  readonly active: Int32Array;
  readonly maptrack: Int32Array;
  readonly maptrackSeq: Float64Array;
  readonly maptrackFree: Int32Array;
  readonly evtchn: Int32Array;
  readonly evtchnSeq: Float64Array;
  readonly bells: EvtchnDoorbells[];
  /** Prepared 4 KiB views, one per frame (a fresh subarray per access costs 15–20%). */
  private readonly frameViews: Uint8Array[];

  constructor(readonly spec: HypervisorSpec) {
    this.c = spec.config;
    this.memory = new Uint8Array(spec.memory);
    this.frameOwner = new Int32Array(spec.frameOwner);
    this.frameMaps = new Int32Array(spec.frameMaps);
    this.frameZombie = new Int32Array(spec.frameZombie);
    this.freeStack = new Int32Array(spec.freeStack);
    this.global = new Int32Array(spec.global);
    this.domains = new Int32Array(spec.domains);
    this.domNames = new Uint8Array(spec.domNames);
    this.p2m = new Int32Array(spec.p2m);
    this.p2mGen = new Int32Array(spec.p2mGen);
    this.p2mHandle = new Int32Array(spec.p2mHandle);
    this.p2mLast = new Int32Array(spec.p2mLast);
    this.grant = new Uint32Array(spec.grant);
    this.grantSeq = new Float64Array(spec.grantSeq);
    this.active = new Int32Array(spec.active);
    this.maptrack = new Int32Array(spec.maptrack);
    this.maptrackSeq = new Float64Array(spec.maptrackSeq);
    this.maptrackFree = new Int32Array(spec.maptrackFree);
    this.evtchn = new Int32Array(spec.evtchn);
    this.evtchnSeq = new Float64Array(spec.evtchnSeq);
    this.bells = spec.bells.map((b) => EvtchnDoorbells.attach(b));
    this.frameViews = Array.from({ length: this.c.frames }, (_, i) => this.memory.subarray(i * XEN_PAGE_SIZE, (i + 1) * XEN_PAGE_SIZE));
  }

  /**
   * The 4 KiB view of machine frame `mfn`, whoever owns it: no p2m, no grant, no check, and no
   * record of the access. Hypervisor-internal. Daemons use `client.frameView(gfn)`, which hands
   * out a frame only through the caller's own p2m (a frame it owns, or a writable `host_map`
   * grant mapping) and records a refusal as a `mem.fault`; test/integration/blk/no-machine-memory.test.ts
   * keeps `.s.frame` out of every other package's non-test code.
   */
  frame(mfn: number): Uint8Array {
    return this.frameViews[mfn]!;
  }

  dw(dom: number, word: number): number {
    return dom * D_WORDS + word;
  }

  domState(dom: number): number {
    if (!Number.isInteger(dom) || dom < 0 || dom >= this.c.maxDomains) return DOMSTATE_FREE;
    return Atomics.load(this.domains, dom * D_WORDS + D_STATE);
  }

  isActive(dom: number): boolean {
    return this.domState(dom) === DOMSTATE_ACTIVE;
  }

  domName(dom: number): string {
    const b = this.domNames.subarray(dom * DOM_NAME_BYTES, (dom + 1) * DOM_NAME_BYTES);
    const end = b.indexOf(0);
    return Buffer.from(b.subarray(0, end < 0 ? b.length : end)).toString('utf8');
  }

  /** Index of (dom, gfn) in the p2m arrays, or -1 when gfn is out of the domain's range. */
  p2mIndex(dom: number, gfn: number): number {
    if (!Number.isInteger(gfn) || gfn < 0 || gfn >= this.c.gfnsPerDomain) return -1;
    return dom * this.c.gfnsPerDomain + gfn;
  }

  lockDomain(dom: number): void {
    spinLock(this.domains, dom * D_WORDS + D_LOCK);
  }

  unlockDomain(dom: number): void {
    spinUnlock(this.domains, dom * D_WORDS + D_LOCK);
  }

  /** Lock two domains in domid order (one if they are the same). */
  lockPair(a: number, b: number): void {
    if (a === b) return this.lockDomain(a);
    this.lockDomain(Math.min(a, b));
    this.lockDomain(Math.max(a, b));
  }

  unlockPair(a: number, b: number): void {
    if (a === b) return this.unlockDomain(a);
    this.unlockDomain(Math.max(a, b));
    this.unlockDomain(Math.min(a, b));
  }
}

const SPIN_BEFORE_SLEEP = 2000;

/**
 * Test-and-set lock on an Int32 word: 0 free, 1 held, 2 held with sleepers. The holder's
 * critical section is short, so waiters spin first; past that they `Atomics.wait` with a short
 * timeout (a bounded stall, never a hang if a holder thread was terminated mid-section: the
 * timeout lets us report it).
 */
export function spinLock(a: Int32Array, i: number): void {
  if (Atomics.compareExchange(a, i, 0, 1) === 0) return;
  let spins = 0;
  for (;;) {
    if (Atomics.load(a, i) === 0 && Atomics.compareExchange(a, i, 0, 1) === 0) return;
    if (++spins > SPIN_BEFORE_SLEEP) {
      Atomics.compareExchange(a, i, 1, 2);
      if (Atomics.compareExchange(a, i, 0, 2) === 0) return;
      Atomics.wait(a, i, 2, 1);
      if (spins > SPIN_BEFORE_SLEEP + 10_000) assert(false, `hypervisor lock word ${i} held for over 10 s: a thread died inside a hypercall`);
    }
  }
}

export function spinUnlock(a: Int32Array, i: number): void {
  if (Atomics.exchange(a, i, 0) === 2) Atomics.notify(a, i, 1);
}
