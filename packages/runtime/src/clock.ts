/**
 * Time and timers, handed to every daemon at start (never imported as globals), so the same
 * daemon code runs on real time in a worker thread and on virtual time in the deterministic
 * single-thread mode.
 */
import { assert } from '@pvsim/abi';

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Nanoseconds since the run's epoch (an integer, monotonic). */
  nowNs(): number;
  /** Run `fn` once after `delayMs` (0 = as soon as possible, after the current task). */
  setTimer(delayMs: number, fn: () => void): TimerHandle;
}

/** Real time: `performance.now()` against a shared epoch, `setTimeout` for timers. */
export class RealClock implements Clock {
  /** `performance.now()` of this thread at the run's epoch (threads have different time origins). */
  private readonly zeroMs: number;

  /** `epochMs` is a `performance.timeOrigin + performance.now()` value shared by all threads of a run. */
  constructor(private readonly epochMs: number = performance.timeOrigin + performance.now()) {
    this.zeroMs = epochMs - performance.timeOrigin;
  }

  get epoch(): number {
    return this.epochMs;
  }

  nowNs(): number {
    // Integer nanoseconds; `| 0` would overflow after 2 s, so floor a float instead.
    return Math.floor((performance.now() - this.zeroMs) * 1e6);
  }

  /**
   * A zero delay runs `fn` on the next turn of the event loop (`setImmediate`), after pending
   * I/O: Node clamps `setTimeout(0)` to 1 ms, which would make every "go again" of a daemon (a
   * backend's next ring pass) cost a millisecond of idle time.
   */
  setTimer(delayMs: number, fn: () => void): TimerHandle {
    if (!(delayMs > 0)) {
      const i = setImmediate(fn);
      return { cancel: () => clearImmediate(i) };
    }
    const t = setTimeout(fn, delayMs);
    return { cancel: () => clearTimeout(t) };
  }
}

type VTimer = { atNs: number; order: number; fn: () => void; cancelled: boolean };

/**
 * Virtual time: nothing happens until the owner advances it. Timers due at the same instant run
 * in the order they were set. Deterministic: no real clock is ever read.
 */
export class VirtualClock implements Clock {
  private now = 0;
  private order = 0;
  private timers: VTimer[] = [];

  nowNs(): number {
    return this.now;
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    assert(Number.isFinite(delayMs) && delayMs >= 0, `timer delay must be finite and >= 0, got ${delayMs}`);
    const t: VTimer = { atNs: this.now + Math.round(delayMs * 1e6), order: this.order++, fn, cancelled: false };
    this.timers.push(t);
    return {
      cancel: () => {
        t.cancelled = true;
      },
    };
  }

  /** Time of the next live timer, or null. */
  nextTimerNs(): number | null {
    let best: VTimer | null = null;
    for (const t of this.timers) if (!t.cancelled && (!best || t.atNs < best.atNs || (t.atNs === best.atNs && t.order < best.order))) best = t;
    return best ? best.atNs : null;
  }

  /** Run every timer due up to `now + ms`, in time order, then leave the clock there. Returns timers run. */
  advance(ms: number): number {
    const until = this.now + Math.round(ms * 1e6);
    let ran = 0;
    for (;;) {
      const next = this.popDue(until);
      if (!next) break;
      this.now = next.atNs;
      next.fn();
      ran++;
    }
    this.now = until;
    return ran;
  }

  /** Run timers until none is left or `maxTimers` ran (a bound against self-rearming timers). */
  runAll(maxTimers = 1_000_000): number {
    let ran = 0;
    while (ran < maxTimers) {
      const next = this.popDue(Infinity);
      if (!next) break;
      this.now = Math.max(this.now, next.atNs);
      next.fn();
      ran++;
    }
    return ran;
  }

  private popDue(until: number): VTimer | null {
    this.timers = this.timers.filter((t) => !t.cancelled);
    let best: VTimer | null = null;
    for (const t of this.timers) {
      if (t.atNs <= until && (!best || t.atNs < best.atNs || (t.atNs === best.atNs && t.order < best.order))) best = t;
    }
    if (best) this.timers.splice(this.timers.indexOf(best), 1);
    return best;
  }
}
