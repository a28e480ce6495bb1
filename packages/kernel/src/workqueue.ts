/**
 * Delayed work on the daemon's injected `Clock` (real in worker mode, virtual in tests): the
 * shape of Linux's `struct delayed_work`, `schedule_delayed_work` and `cancel_delayed_work`.
 */
import { assert } from '@pvsim/abi';
import type { Clock, TimerHandle } from '@pvsim/runtime';

export class DelayedWork {
  private timer: TimerHandle | null = null;

  constructor(
    readonly clock: Clock,
    /** The work function; runs on the clock's timer (a fresh task, never inside `schedule`). */
    readonly fn: () => void,
  ) {}

  get pending(): boolean {
    return this.timer !== null;
  }

  /** Runs the work after `delayMs` unless it is already pending (then false, as Linux does). */
  schedule(delayMs: number): boolean {
    assert(Number.isFinite(delayMs) && delayMs >= 0, `delayed work needs a finite delay >= 0, got ${delayMs}: a bug`);
    if (this.timer) return false;
    this.timer = this.clock.setTimer(delayMs, () => {
      this.timer = null;
      this.fn();
    });
    return true;
  }

  /** Returns whether pending work was cancelled. */
  cancel(): boolean {
    if (!this.timer) return false;
    this.timer.cancel();
    this.timer = null;
    return true;
  }
}

/** `INIT_DELAYED_WORK`. */
export function INIT_DELAYED_WORK(clock: Clock, fn: () => void): DelayedWork {
  return new DelayedWork(clock, fn);
}

/** `schedule_delayed_work(work, delay)`: false if it was already pending. */
export function schedule_delayed_work(work: DelayedWork, delayMs: number): boolean {
  return work.schedule(delayMs);
}

/** `cancel_delayed_work`: true if pending work was cancelled. */
export function cancel_delayed_work(work: DelayedWork): boolean {
  return work.cancel();
}
