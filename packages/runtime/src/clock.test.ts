import { describe, expect, it } from 'vitest';
import { RealClock, VirtualClock } from './clock.js';

describe('VirtualClock', () => {
  it('runs timers in time order, ties in the order set, only when advanced', () => {
    const c = new VirtualClock();
    const log: string[] = [];
    c.setTimer(5, () => log.push('b'));
    c.setTimer(1, () => log.push('a'));
    c.setTimer(5, () => log.push('c'));
    const x = c.setTimer(3, () => log.push('cancelled'));
    x.cancel();
    expect(log).toEqual([]);
    expect(c.advance(2)).toBe(1);
    expect(log).toEqual(['a']);
    expect(c.nowNs()).toBe(2_000_000);
    c.advance(10);
    expect(log).toEqual(['a', 'b', 'c']);
    expect(c.nowNs()).toBe(12_000_000);
  });

  it('lets a timer set timers, seen at their virtual time', () => {
    const c = new VirtualClock();
    const seen: number[] = [];
    const tick = (n: number) => {
      seen.push(c.nowNs());
      if (n > 0) c.setTimer(5 * (6 - n), () => tick(n - 1));
    };
    c.setTimer(0, () => tick(3));
    c.runAll();
    expect(seen).toEqual([0, 15_000_000, 35_000_000, 60_000_000]);
    expect(c.nextTimerNs()).toBeNull();
  });

  it('bounds runAll against timers that re-arm forever', () => {
    const c = new VirtualClock();
    const again = () => void c.setTimer(1, again);
    c.setTimer(1, again);
    expect(c.runAll(100)).toBe(100);
  });
});

describe('RealClock', () => {
  it('is monotonic and shares an epoch', async () => {
    const a = new RealClock();
    const b = new RealClock(a.epoch);
    const t0 = a.nowNs();
    await new Promise((r) => a.setTimer(2, () => r(undefined)));
    expect(b.nowNs()).toBeGreaterThan(t0 + 1_000_000);
  });

  it('a zero delay runs on a next turn (setImmediate, not the 1 ms setTimeout clamp), and cancels', async () => {
    const c = new RealClock();
    const ran: string[] = [];
    c.setTimer(0, () => ran.push('zero'));
    c.setTimer(0, () => ran.push('cancelled')).cancel();
    // Ten thousand back-to-back zero-delay timers: ≥ 10 s if each were clamped to 1 ms.
    let n = 0;
    const t0 = performance.now();
    await new Promise<void>((r) => {
      const again = () => (++n === 10_000 ? r() : c.setTimer(0, again));
      c.setTimer(0, again);
    });
    expect(ran).toEqual(['zero']);
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});
