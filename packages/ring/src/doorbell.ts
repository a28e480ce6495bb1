/**
 * Event-channel doorbells in shared memory: the delivery half of Xen's event channels.
 *
 * One table per domain, like the pending/mask bitmaps of `shared_info`, plus Xen's two-level
 * selector per waiter (a waiter is one thread that services some ports, like a vCPU):
 *
 *   pending[W]   bit p set: port p has an event not yet taken       (Atomics.or / Atomics.and)
 *   mask[W]      bit p set: port p is masked                        (Atomics.or / Atomics.and)
 *   bound[V][W]  bit p set: waiter v services port p
 *   owner[P]     the waiter that services port p, or -1 (O(1) lookup for raise)
 *   sel[V]       bit w set: pending word w may hold work for waiter v (evtchn_pending_sel)
 *   gen[V]       the wake-up generation of waiter v: bumped on every kick; the futex word
 *
 * Raising port p (what `EVTCHNOP_send` does to the remote end): set pending; only on the 0→1
 * edge and only if unmasked, set the selector bit, bump `gen` and `Atomics.notify` it. A
 * notification while masked stays pending and is delivered by `unmask`, as in Xen.
 *
 * No lost wake-up: a waiter reads `gen` *before* it takes pending work, and then waits only while
 * `gen` still holds that value. A raise that the scan missed bumped `gen` after the read, so the
 * wait returns at once ('not-equal'). All accesses are Atomics (sequentially consistent), so a
 * raise racing an unmask is seen by at least one of them: at worst both kick (harmless).
 */
import { assert, isU32 } from '@pvsim/abi';

const MAGIC = 0x45564348; // 'EVCH'
const HDR_MAGIC = 0;
const HDR_MAX_PORTS = 1;
const HDR_MAX_WAITERS = 2;
const HDR_WORDS = 4;

/** Default limits; `EVTCHN_2L_NR_CHANNELS` is 4096 on 64-bit Xen, 1024 is plenty per domain here. */
export const EVTCHN_PORTS_DEFAULT = 1024;
export const EVTCHN_WAITERS_DEFAULT = 16;
export const EVTCHN_WAITERS_MAX = 32;

export type WaitOutcome = 'woken' | 'timed-out';

export interface WaitOptions {
  /**
   * Spin on the generation word at most this long before sleeping (0 = never spin). The budget
   * adapts between `spinUs / 16` and `spinUs`: halved after a spin that found nothing, doubled
   * after one that caught a wake-up, so a peer that answers fast is caught without sleeping and
   * a thread short of cores does not burn its budget on every wait.
   */
  spinUs?: number;
  /** Give up after this long (ms); default: wait forever. */
  timeoutMs?: number;
}

export class EvtchnDoorbells {
  readonly sab: SharedArrayBuffer;
  readonly maxPorts: number;
  readonly maxWaiters: number;
  private readonly words: number;
  private readonly pending: Int32Array;
  private readonly masked: Int32Array;
  private readonly bound: Int32Array;
  private readonly sel: Int32Array;
  private readonly owner: Int32Array;
  /** Futex words: Int32Array because `Atomics.wait` requires it. */
  private readonly gen: Int32Array;

  private constructor(sab: SharedArrayBuffer) {
    const hdr = new Int32Array(sab, 0, HDR_WORDS);
    assert(Atomics.load(hdr, HDR_MAGIC) === MAGIC, 'not an event-channel doorbell table');
    this.sab = sab;
    this.maxPorts = Atomics.load(hdr, HDR_MAX_PORTS);
    this.maxWaiters = Atomics.load(hdr, HDR_MAX_WAITERS);
    const W = (this.words = this.maxPorts / 32);
    const V = this.maxWaiters;
    let off = HDR_WORDS * 4;
    const take = (n: number) => {
      const a = new Int32Array(sab, off, n);
      off += n * 4;
      return a;
    };
    this.pending = take(W);
    this.masked = take(W);
    this.bound = take(V * W);
    this.sel = take(V);
    this.gen = take(V);
    this.owner = take(this.maxPorts);
  }

  /** A new table. Ports start unmasked, unbound and not pending. */
  static create(opts: { maxPorts?: number; maxWaiters?: number } = {}): EvtchnDoorbells {
    const maxPorts = opts.maxPorts ?? EVTCHN_PORTS_DEFAULT;
    const maxWaiters = opts.maxWaiters ?? EVTCHN_WAITERS_DEFAULT;
    assert(maxPorts >= 32 && maxPorts % 32 === 0 && maxPorts <= 1 << 17, `maxPorts must be a multiple of 32 up to 131072, got ${maxPorts}`);
    assert(maxWaiters >= 1 && maxWaiters <= EVTCHN_WAITERS_MAX, `maxWaiters must be 1..${EVTCHN_WAITERS_MAX}, got ${maxWaiters}`);
    const W = maxPorts / 32;
    const sab = new SharedArrayBuffer((HDR_WORDS + 2 * W + maxWaiters * W + 2 * maxWaiters + maxPorts) * 4);
    const hdr = new Int32Array(sab, 0, HDR_WORDS);
    new Int32Array(sab, (HDR_WORDS + 2 * W + maxWaiters * W + 2 * maxWaiters) * 4, maxPorts).fill(-1);
    hdr[HDR_MAX_PORTS] = maxPorts;
    hdr[HDR_MAX_WAITERS] = maxWaiters;
    Atomics.store(hdr, HDR_MAGIC, MAGIC);
    return new EvtchnDoorbells(sab);
  }

  /** The same table seen from another thread (the SharedArrayBuffer was posted to it). */
  static attach(sab: SharedArrayBuffer): EvtchnDoorbells {
    return new EvtchnDoorbells(sab);
  }

  /** Is `port` a number this table can hold? For untrusted port numbers. */
  validPort(port: number): boolean {
    return isU32(port) && port < this.maxPorts;
  }

  private checkPort(port: number): void {
    // The message is built only on failure: this runs on every raise.
    if (!this.validPort(port)) assert(false, `port ${port} outside 0..${this.maxPorts - 1}`);
  }

  /** Route `port`'s events to waiter `v` (`EVTCHNOP_bind_vcpu`); unbinds it from any other. */
  bind(port: number, v: number): void {
    this.checkPort(port);
    assert(Number.isInteger(v) && v >= 0 && v < this.maxWaiters, `waiter ${v} outside 0..${this.maxWaiters - 1}`);
    const w = port >>> 5;
    const bit = 1 << (port & 31);
    for (let u = 0; u < this.maxWaiters; u++) Atomics.and(this.bound, u * this.words + w, ~bit);
    Atomics.or(this.bound, v * this.words + w, bit);
    Atomics.store(this.owner, port, v);
    // An event that arrived before the binding must not be stranded.
    if (Atomics.load(this.pending, w) & bit) this.kick(v, w);
  }

  /** Stop routing `port` to any waiter (the port is closed). Its pending bit is cleared. */
  unbind(port: number): void {
    this.checkPort(port);
    const w = port >>> 5;
    const bit = 1 << (port & 31);
    Atomics.store(this.owner, port, -1);
    for (let u = 0; u < this.maxWaiters; u++) Atomics.and(this.bound, u * this.words + w, ~bit);
    Atomics.and(this.pending, w, ~bit);
  }

  /** Which waiter services `port`, or -1. */
  waiterOf(port: number): number {
    this.checkPort(port);
    return Atomics.load(this.owner, port);
  }

  /**
   * Raise an event on `port`. Returns true if this was a new event (the 0→1 edge of the pending
   * bit); a raise on a port already pending coalesces, as in Xen.
   */
  raise(port: number): boolean {
    this.checkPort(port);
    const w = port >>> 5;
    const bit = 1 << (port & 31);
    const old = Atomics.or(this.pending, w, bit);
    if (old & bit) return false;
    if (Atomics.load(this.masked, w) & bit) return true;
    const v = this.waiterOf(port);
    if (v >= 0) this.kick(v, w);
    return true;
  }

  private kick(v: number, w: number): void {
    Atomics.or(this.sel, v, 1 << (w & 31));
    Atomics.add(this.gen, v, 1);
    Atomics.notify(this.gen, v);
  }

  mask(port: number): void {
    this.checkPort(port);
    Atomics.or(this.masked, port >>> 5, 1 << (port & 31));
  }

  /** Unmask; an event that arrived while masked is delivered now (`EVTCHNOP_unmask`). */
  unmask(port: number): void {
    this.checkPort(port);
    const w = port >>> 5;
    const bit = 1 << (port & 31);
    Atomics.and(this.masked, w, ~bit);
    if (Atomics.load(this.pending, w) & bit) {
      const v = this.waiterOf(port);
      if (v >= 0) this.kick(v, w);
    }
  }

  isPending(port: number): boolean {
    this.checkPort(port);
    return (Atomics.load(this.pending, port >>> 5) & (1 << (port & 31))) !== 0;
  }

  isMasked(port: number): boolean {
    this.checkPort(port);
    return (Atomics.load(this.masked, port >>> 5) & (1 << (port & 31))) !== 0;
  }

  /** Clear `port`'s pending bit; returns whether it was set (`test_and_clear_bit`). */
  clearPending(port: number): boolean {
    this.checkPort(port);
    const bit = 1 << (port & 31);
    return (Atomics.and(this.pending, port >>> 5, ~bit) & bit) !== 0;
  }

  /**
   * Forget every port: not pending, unmasked, unbound (a domid is being reused). Generations are
   * kept, so a waiter that still sleeps on an old value is not confused.
   */
  reset(): void {
    for (let w = 0; w < this.words; w++) {
      Atomics.store(this.pending, w, 0);
      Atomics.store(this.masked, w, 0);
    }
    for (let i = 0; i < this.bound.length; i++) Atomics.store(this.bound, i, 0);
    for (let v = 0; v < this.maxWaiters; v++) Atomics.store(this.sel, v, 0);
    for (let p = 0; p < this.maxPorts; p++) Atomics.store(this.owner, p, -1);
  }

  /** The waiter handle for waiter `v`, to be used by the one thread that services it. */
  waiter(v: number): EvtchnWaiter {
    assert(Number.isInteger(v) && v >= 0 && v < this.maxWaiters, `waiter ${v} outside 0..${this.maxWaiters - 1}`);
    return new EvtchnWaiter(this, v, this.pending, this.masked, this.bound, this.sel, this.gen, this.words);
  }
}

export class EvtchnWaiter {
  /** Current adaptive spin budget (µs), within [max/16, max] of the last `spinUs` asked for. */
  private spinBudgetUs = -1;

  constructor(
    readonly table: EvtchnDoorbells,
    readonly index: number,
    private readonly pending: Int32Array,
    private readonly masked: Int32Array,
    private readonly bound: Int32Array,
    private readonly sel: Int32Array,
    private readonly gen: Int32Array,
    private readonly words: number,
  ) {}

  /** Read the generation before taking work; pass it to `wait` afterwards (see the file comment). */
  generation(): number {
    return Atomics.load(this.gen, this.index);
  }

  /**
   * Take every pending, unmasked port bound to this waiter, clearing their pending bits
   * (the upcall's scan). Calls `fn` once per port, in port order within each word.
   * Returns how many ports fired.
   */
  takePending(fn: (port: number) => void): number {
    let sel = Atomics.exchange(this.sel, this.index, 0);
    let fired = 0;
    while (sel !== 0) {
      const w = 31 - Math.clz32(sel & -sel);
      sel &= sel - 1;
      // A word index can exceed 31 for tables above 1024 ports: the selector bit is w & 31,
      // so scan every word that aliases onto this bit.
      for (let word = w; word < this.words; word += 32) {
        const mine = Atomics.load(this.bound, this.index * this.words + word);
        const ready = Atomics.load(this.pending, word) & ~Atomics.load(this.masked, word) & mine;
        if (ready === 0) continue;
        const got = Atomics.and(this.pending, word, ~ready) & ready;
        let bits = got;
        while (bits !== 0) {
          const b = 31 - Math.clz32(bits & -bits);
          bits &= bits - 1;
          fired++;
          fn(word * 32 + b);
        }
      }
    }
    return fired;
  }

  /**
   * Wait until the generation differs from `seen` (someone kicked us since we read it), after an
   * optional bounded spin. Never blocks the event loop beyond the spin: the sleep is
   * `Atomics.waitAsync`. NB: a pending `waitAsync` does not keep a worker thread alive; the
   * daemon runner must hold its event loop open.
   */
  wait(seen: number, opts: WaitOptions = {}): WaitOutcome | Promise<WaitOutcome> {
    const gen = this.gen;
    const i = this.index;
    if (Atomics.load(gen, i) !== seen) return 'woken';
    const maxUs = opts.spinUs ?? 0;
    if (maxUs > 0) {
      const minUs = maxUs / 16;
      let budget = this.spinBudgetUs;
      if (budget < minUs || budget > maxUs) budget = maxUs;
      const deadline = performance.now() + budget / 1000;
      do {
        for (let k = 0; k < 64; k++) {
          if (Atomics.load(gen, i) !== seen) {
            this.spinBudgetUs = Math.min(maxUs, budget * 2);
            return 'woken';
          }
        }
      } while (performance.now() < deadline);
      this.spinBudgetUs = Math.max(minUs, budget / 2);
    }
    const r = Atomics.waitAsync(gen, i, seen, opts.timeoutMs ?? Infinity);
    if (!r.async) return r.value === 'timed-out' ? 'timed-out' : 'woken';
    return r.value.then((v) => (v === 'timed-out' ? 'timed-out' : 'woken'));
  }
}
