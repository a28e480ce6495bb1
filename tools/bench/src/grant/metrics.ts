/**
 * Pure helpers of the grant benchmark: sizing, the data pattern the guests write (so a copy or a
 * mapping can be checked byte for byte), the per-phase arithmetic and the per-round summary.
 * No I/O, no threads; unit-tested in metrics.test.ts.
 */
import { XEN_PAGE_SIZE } from '@pvsim/abi';
import { median } from '../stats.js';

export interface Plan {
  /** Warm-up per phase (JIT), ms. */
  warmMs: number;
  /** Timed phase, ms (each of A, B, C). */
  phaseMs: number;
  /** A timed chunk lasts about this long (its iteration count is fixed after the warm-up), ms. */
  chunkMs: number;
}

export const PHASE_MS_DEFAULT = 600;
export const QUICK_DIVISOR = 4;

/** `--quick` shortens the timed phases ÷4 and the warm-ups ÷2 (a cold JIT would mislead). */
export function makePlan(quick: boolean, phaseMs: number): Plan {
  return {
    warmMs: quick ? 100 : 200,
    phaseMs: Math.max(50, Math.round(quick ? phaseMs / QUICK_DIVISOR : phaseMs)),
    chunkMs: 0.25,
  };
}

/**
 * Iterations per timed chunk so that a chunk lasts about `targetMs`, from a warm-up that ran
 * `iters` iterations in `ms`. At least 1.
 */
export function chunkIters(iters: number, ms: number, targetMs: number): number {
  if (!(iters > 0) || !(ms > 0)) return 1;
  return Math.max(1, Math.round((iters / ms) * targetMs));
}

/** Byte `i` of the page a guest grants as `ref`: depends on both, so a wrong frame shows. */
export function patternByte(granter: number, ref: number, i: number): number {
  return (granter * 131 + ref * 29 + i * 7 + (i >>> 8)) & 0xff;
}

export function fillPattern(page: Uint8Array, granter: number, ref: number): void {
  for (let i = 0; i < page.length; i++) page[i] = patternByte(granter, ref, i);
}

/** Index of the first byte of `page` that is not the pattern of (granter, ref), or -1. */
export function firstPatternMismatch(page: Uint8Array, granter: number, ref: number): number {
  for (let i = 0; i < page.length; i++) if (page[i] !== patternByte(granter, ref, i)) return i;
  return -1;
}

/** Index of the first differing byte of two equally long arrays, or -1 (-2 for different lengths). */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return -2;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** One timed phase of one thread, as the worker reports it. */
export interface PhaseTiming {
  /** Iterations (A: one map batch + one unmap batch; B: one copy call; C: one set). */
  iters: number;
  /** Sum of the chunk times: the wall time spent in the loop, ms. */
  ms: number;
  /** Iterations per chunk (the last chunk may be shorter: it is in `iters` but not in `chunkMs`'s median). */
  chunk: number;
  /** Each full chunk's duration, ms. */
  chunkMs: ArrayLike<number>;
  /** Each chunk's start, absolute ms (`performance.timeOrigin + performance.now()`: comparable across threads). */
  chunkStartMs: ArrayLike<number>;
}

export interface PhaseNumbers {
  /** Iterations per second. */
  perSec: number;
  /** ns per iteration, wall (total time / iterations: includes being descheduled). */
  nsWall: number;
  /** ns per iteration, median chunk (≈ the CPU cost: a chunk that was preempted is an outlier). */
  nsChunk: number;
}

export function phaseNumbers(t: PhaseTiming): PhaseNumbers {
  const perSec = t.ms > 0 ? (t.iters / t.ms) * 1000 : Number.NaN;
  const nsWall = t.iters > 0 ? (t.ms * 1e6) / t.iters : Number.NaN;
  let nsChunk = Number.NaN;
  if (t.chunkMs.length > 0 && t.chunk > 0) {
    const xs: number[] = [];
    for (let i = 0; i < t.chunkMs.length; i++) xs.push((t.chunkMs[i]! * 1e6) / t.chunk);
    nsChunk = median(xs);
  }
  return { perSec, nsWall, nsChunk };
}

/** GB/s (10^9 bytes) of moving `bytes` in `ns` nanoseconds. */
export function gbPerSec(bytes: number, ns: number): number {
  return ns > 0 ? bytes / ns : Number.NaN;
}

export const PAGE = XEN_PAGE_SIZE;

/** Per thread and round: A, B and C turned into the report's units. */
export interface ThreadRound {
  /** A: map+unmap batches/s, grants (each mapped and unmapped)/s, ns per grant (wall, chunk). */
  aBatchesPerSec: number;
  aGrantsPerSec: number;
  aNsPerGrant: number;
  aNsPerGrantChunk: number;
  /** B: copies/s, ns per 4 KiB copy (wall, chunk), GB/s (wall). */
  bCopiesPerSec: number;
  bNsPerCopy: number;
  bNsPerCopyChunk: number;
  bGBps: number;
  /** C: sets/s, ns per 4 KiB set (wall, chunk), GB/s. */
  cSetsPerSec: number;
  cNsPerSet: number;
  cNsPerSetChunk: number;
  cGBps: number;
  /** B / C, ns per 4 KiB (wall; chunk). */
  copyVsFloor: number;
  copyVsFloorChunk: number;
}

export function threadRound(a: PhaseTiming, b: PhaseTiming, c: PhaseTiming, batch: number, copyBatch: number): ThreadRound {
  const A = phaseNumbers(a);
  const B = phaseNumbers(b);
  const C = phaseNumbers(c);
  const bNs = B.nsWall / copyBatch;
  const bNsChunk = B.nsChunk / copyBatch;
  return {
    aBatchesPerSec: A.perSec,
    aGrantsPerSec: A.perSec * batch,
    aNsPerGrant: A.nsWall / batch,
    aNsPerGrantChunk: A.nsChunk / batch,
    bCopiesPerSec: B.perSec * copyBatch,
    bNsPerCopy: bNs,
    bNsPerCopyChunk: bNsChunk,
    bGBps: gbPerSec(PAGE, bNs),
    cSetsPerSec: C.perSec,
    cNsPerSet: C.nsWall,
    cNsPerSetChunk: C.nsChunk,
    cGBps: gbPerSec(PAGE, C.nsWall),
    copyVsFloor: C.nsWall > 0 ? bNs / C.nsWall : Number.NaN,
    copyVsFloorChunk: C.nsChunk > 0 ? bNsChunk / C.nsChunk : Number.NaN,
  };
}

/** Both threads of one round: rates add up, per-operation costs and ratios are averaged. */
export function combineThreads(ts: readonly ThreadRound[]): ThreadRound {
  if (ts.length === 0) throw new RangeError('no threads');
  const sum = (f: (t: ThreadRound) => number) => ts.reduce((s, t) => s + f(t), 0);
  const mean = (f: (t: ThreadRound) => number) => sum(f) / ts.length;
  return {
    aBatchesPerSec: sum((t) => t.aBatchesPerSec),
    aGrantsPerSec: sum((t) => t.aGrantsPerSec),
    aNsPerGrant: mean((t) => t.aNsPerGrant),
    aNsPerGrantChunk: mean((t) => t.aNsPerGrantChunk),
    bCopiesPerSec: sum((t) => t.bCopiesPerSec),
    bNsPerCopy: mean((t) => t.bNsPerCopy),
    bNsPerCopyChunk: mean((t) => t.bNsPerCopyChunk),
    bGBps: sum((t) => t.bGBps),
    cSetsPerSec: sum((t) => t.cSetsPerSec),
    cNsPerSet: mean((t) => t.cNsPerSet),
    cNsPerSetChunk: mean((t) => t.cNsPerSetChunk),
    cGBps: sum((t) => t.cGBps),
    copyVsFloor: mean((t) => t.copyVsFloor),
    copyVsFloorChunk: mean((t) => t.copyVsFloorChunk),
  };
}

/** Per round, which variant goes first: alternate, to cancel drift. */
export function variantOrder(round: number, variants: readonly ('off' | 'on')[]): ('off' | 'on')[] {
  return round % 2 === 1 ? [...variants] : [...variants].reverse();
}

/**
 * The intervals (absolute ms) during which a thread was running its loop: its chunks, except
 * those that took more than `factor` × the median chunk (it was descheduled during those).
 */
export function runningIntervals(t: PhaseTiming, factor = 2): [number, number][] {
  const n = Math.min(t.chunkMs.length, t.chunkStartMs.length);
  if (n === 0) return [];
  const ds: number[] = [];
  for (let i = 0; i < n; i++) ds.push(t.chunkMs[i]!);
  const limit = factor * median(ds);
  const out: [number, number][] = [];
  for (let i = 0; i < n; i++) if (t.chunkMs[i]! <= limit) out.push([t.chunkStartMs[i]!, t.chunkStartMs[i]! + t.chunkMs[i]!]);
  return out.sort((x, y) => x[0] - y[0]);
}

/** Total length of the intersection of two sets of intervals, each sorted by start and non-overlapping. */
export function overlapMs(a: readonly (readonly [number, number])[], b: readonly (readonly [number, number])[]): number {
  let i = 0;
  let j = 0;
  let sum = 0;
  while (i < a.length && j < b.length) {
    const lo = Math.max(a[i]![0], b[j]![0]);
    const hi = Math.min(a[i]![1], b[j]![1]);
    if (hi > lo) sum += hi - lo;
    if (a[i]![1] < b[j]![1]) i++;
    else j++;
  }
  return sum;
}

/**
 * How much of a phase the two threads really ran at once: the overlap of their running
 * intervals over the phase's mean wall time (0..1). On a machine whose other tenants hold a
 * core, two "concurrent" threads may mostly take turns on one.
 */
export function concurrency(x: PhaseTiming, y: PhaseTiming): number {
  const wall = (x.ms + y.ms) / 2;
  return wall > 0 ? overlapMs(runningIntervals(x), runningIntervals(y)) / wall : Number.NaN;
}
