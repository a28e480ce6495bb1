import { describe, expect, it } from 'vitest';
import { parseCli, resolveOptions } from '../cli.js';
import { BENCHMARKS, checkOption } from '../registry.js';
import {
  chunkIters,
  combineThreads,
  concurrency,
  fillPattern,
  firstDifference,
  firstPatternMismatch,
  gbPerSec,
  makePlan,
  overlapMs,
  PAGE,
  patternByte,
  phaseNumbers,
  runningIntervals,
  threadRound,
  variantOrder,
  type PhaseTiming,
} from './metrics.js';

describe('grant registration', () => {
  it('is in the registry and loads a benchmark of the same name', async () => {
    expect(Object.keys(BENCHMARKS)).toContain('grant');
    const b = await BENCHMARKS.grant!.load();
    expect(b.name).toBe('grant');
    expect(b.description).toBe(BENCHMARKS.grant!.description);
    expect(parseCli(['grant', '--quick'], Object.keys(BENCHMARKS))).toMatchObject({ names: ['grant'], quick: true });
  });

  it('declares options whose defaults fit their own specs', async () => {
    const b = await BENCHMARKS.grant!.load();
    for (const [k, spec] of Object.entries(b.options)) expect(checkOption(k, spec, spec.default)).toBeNull();
    expect(resolveOptions(b, [['shared', '1'], ['grant.batch', '16']], [b])).toMatchObject({ shared: 1, batch: 16, grants: 64, copyFrames: 16 });
    expect(() => resolveOptions(b, [['logOrder', '11']], [b])).toThrow(/≤ 10/);
  });
});

describe('plan and chunk sizing', () => {
  it('--quick shortens the phases, not below 50 ms', () => {
    expect(makePlan(false, 600)).toEqual({ warmMs: 200, phaseMs: 600, chunkMs: 0.25 });
    expect(makePlan(true, 600)).toEqual({ warmMs: 100, phaseMs: 150, chunkMs: 0.25 });
    expect(makePlan(true, 100).phaseMs).toBe(50);
  });

  it('chunk iterations: rate × target, at least 1', () => {
    expect(chunkIters(1000, 1, 0.25)).toBe(250);
    expect(chunkIters(1, 0.001, 0.25)).toBe(250); // 1 µs per iteration
    expect(chunkIters(1, 2, 0.25)).toBe(1);
    expect(chunkIters(0, 1, 0.25)).toBe(1);
    expect(chunkIters(5, Number.NaN, 0.25)).toBe(1);
  });
});

describe('pattern', () => {
  it('differs between guests, refs and offsets, and checks byte for byte', () => {
    const a = new Uint8Array(PAGE);
    fillPattern(a, 1, 8);
    expect(firstPatternMismatch(a, 1, 8)).toBe(-1);
    expect(firstPatternMismatch(a, 2, 8)).toBe(0);
    expect(firstPatternMismatch(a, 1, 9)).toBe(0);
    const b = new Uint8Array(PAGE);
    fillPattern(b, 1, 8);
    expect(firstDifference(a, b)).toBe(-1);
    b[4095] = b[4095]! ^ 1;
    expect(firstDifference(a, b)).toBe(4095);
    expect(firstPatternMismatch(b, 1, 8)).toBe(4095);
    expect(firstDifference(a, b.subarray(1))).toBe(-2);
    // Not periodic within a page at 256 bytes (a frame shifted by 256 bytes would show).
    expect(patternByte(1, 8, 0)).not.toBe(patternByte(1, 8, 256));
    for (let i = 0; i < 64; i++) expect(patternByte(3, 100, i)).toBeGreaterThanOrEqual(0);
  });
});

describe('phase arithmetic', () => {
  const t = (iters: number, ms: number, chunk: number, chunkMs: number[]): PhaseTiming => ({ iters, ms, chunk, chunkMs, chunkStartMs: chunkMs.map((_, i) => i) });

  it('rates from the total, ns/iteration both from the total (wall) and the median chunk', () => {
    const p = phaseNumbers(t(4000, 2, 1000, [0.4, 0.4, 0.4, 0.8]));
    expect(p.perSec).toBeCloseTo(2_000_000);
    expect(p.nsWall).toBeCloseTo(500);
    expect(p.nsChunk).toBeCloseTo(400);
    expect(phaseNumbers(t(0, 0, 1, [])).perSec).toBeNaN();
    expect(phaseNumbers(t(0, 0, 1, [])).nsChunk).toBeNaN();
  });

  it('GB/s of a 4 KiB page in 164 ns ≈ 25', () => {
    expect(gbPerSec(4096, 164)).toBeCloseTo(24.98, 1);
    expect(gbPerSec(4096, 0)).toBeNaN();
  });

  it('per thread: A per grant, B per copy op, C per set, B/C', () => {
    const a = t(100, 1, 10, [0.1]); // 10 µs per batch of 11 (map + unmap)
    const b = t(1000, 1, 100, [0.1]); // 1 µs per call of 2 ops
    const c = t(4000, 1, 400, [0.05]); // 250 ns wall, 125 ns chunk
    const r = threadRound(a, b, c, 11, 2);
    expect(r.aBatchesPerSec).toBeCloseTo(100_000);
    expect(r.aGrantsPerSec).toBeCloseTo(1_100_000);
    expect(r.aNsPerGrant).toBeCloseTo(10_000 / 11);
    expect(r.bCopiesPerSec).toBeCloseTo(2_000_000);
    expect(r.bNsPerCopy).toBeCloseTo(500);
    expect(r.bGBps).toBeCloseTo(4096 / 500);
    expect(r.cNsPerSet).toBeCloseTo(250);
    expect(r.cNsPerSetChunk).toBeCloseTo(125);
    expect(r.copyVsFloor).toBeCloseTo(2);
    expect(r.copyVsFloorChunk).toBeCloseTo(4);
  });

  it('two threads: rates add up, costs are averaged', () => {
    const x = threadRound(t(100, 1, 10, [0.1]), t(1000, 1, 100, [0.1]), t(4000, 1, 400, [0.1]), 11, 1);
    const y = threadRound(t(50, 1, 10, [0.2]), t(500, 1, 100, [0.2]), t(4000, 1, 400, [0.1]), 11, 1);
    const c = combineThreads([x, y]);
    expect(c.aBatchesPerSec).toBeCloseTo(150_000);
    expect(c.bCopiesPerSec).toBeCloseTo(1_500_000);
    expect(c.bNsPerCopy).toBeCloseTo((1000 + 2000) / 2);
    expect(c.copyVsFloor).toBeCloseTo((x.copyVsFloor + y.copyVsFloor) / 2);
    expect(() => combineThreads([])).toThrow();
  });

  it('variant order alternates per round', () => {
    expect(variantOrder(1, ['off', 'on'])).toEqual(['off', 'on']);
    expect(variantOrder(2, ['off', 'on'])).toEqual(['on', 'off']);
    expect(variantOrder(2, ['on'])).toEqual(['on']);
  });
});

describe('concurrency of the two threads', () => {
  const phase = (starts: number[], durs: number[]): PhaseTiming => ({
    iters: starts.length,
    ms: durs.reduce((s, d) => s + d, 0),
    chunk: 1,
    chunkMs: durs,
    chunkStartMs: starts,
  });

  it('running intervals leave out preempted chunks (> 2× median)', () => {
    expect(runningIntervals(phase([10, 11, 12, 30], [1, 1, 15, 1]))).toEqual([
      [10, 11],
      [11, 12],
      [30, 31],
    ]);
    expect(runningIntervals(phase([], []))).toEqual([]);
  });

  it('overlap of interval sets', () => {
    expect(overlapMs([[0, 10]], [[5, 15]])).toBe(5);
    expect(
      overlapMs(
        [
          [0, 2],
          [4, 6],
        ],
        [[1, 5]],
      ),
    ).toBe(2);
    expect(overlapMs([[0, 1]], [[2, 3]])).toBe(0);
    expect(overlapMs([], [[2, 3]])).toBe(0);
  });

  it('threads taking turns on one core: ~0; running side by side: ~1', () => {
    const turnsA = phase([0, 1, 2, 3], [1, 1, 1, 1]);
    const turnsB = phase([4, 5, 6, 7], [1, 1, 1, 1]);
    expect(concurrency(turnsA, turnsB)).toBe(0);
    expect(concurrency(turnsA, turnsA)).toBe(1);
  });
});
