/**
 * Statistics and number formatting shared by every benchmark. Pure functions, no I/O.
 *
 * Percentiles of latency samples come from loadgen's HdrHistogram (see `latencySummary`); the helpers
 * here only summarise a handful of per-round values (min / median / max across rounds).
 */
import { latencyStats, newLatencyHistogram } from '@pvsim/loadgen';

function finite(values: readonly number[], what: string): number[] {
  if (values.length === 0) throw new RangeError(`${what} of no values`);
  for (const v of values) if (!Number.isFinite(v)) throw new RangeError(`${what}: ${v} is not a finite number`);
  return [...values];
}

export function min(values: readonly number[]): number {
  let m = Infinity;
  for (const v of finite(values, 'min')) if (v < m) m = v;
  return m;
}

export function max(values: readonly number[]): number {
  let m = -Infinity;
  for (const v of finite(values, 'max')) if (v > m) m = v;
  return m;
}

/** The middle value; the mean of the two middle values for an even count. */
export function median(values: readonly number[]): number {
  const s = finite(values, 'median').sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** `a / b`; NaN when `b` is 0 or either side is not finite (reported as "n/a", never a pass). */
export function ratio(a: number, b: number): number {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return Number.NaN;
  return a / b;
}

export interface Summary {
  n: number;
  min: number;
  median: number;
  max: number;
}

export function summarize(values: readonly number[]): Summary {
  return { n: values.length, min: min(values), median: median(values), max: max(values) };
}

export interface LatencySummary {
  /** Samples recorded. */
  count: number;
  minUs: number;
  meanUs: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

/**
 * Percentiles of round-trip samples given in milliseconds (as `performance.now()` differences),
 * through an HDR histogram at nanosecond resolution and 3 significant digits.
 */
export function latencySummary(samplesMs: ArrayLike<number>): LatencySummary {
  if (samplesMs.length === 0) throw new RangeError('latency summary of no samples');
  const h = newLatencyHistogram();
  for (let i = 0; i < samplesMs.length; i++) h.recordValue(Math.max(1, Math.round(samplesMs[i]! * 1e6)));
  const { count, minUs, meanUs, p50Us, p99Us, p999Us, maxUs } = latencyStats(h);
  h.destroy();
  return { count, minUs, meanUs, p50Us, p99Us, p999Us, maxUs };
}

/** Messages per second, human-scaled: `1.23 M/s`, `345 k/s`, `812 /s`. */
export function fmtRate(perSec: number): string {
  if (!Number.isFinite(perSec)) return 'n/a';
  if (perSec >= 1e6) return `${(perSec / 1e6).toFixed(perSec >= 1e8 ? 0 : 2)} M/s`;
  if (perSec >= 1e3) return `${(perSec / 1e3).toFixed(perSec >= 1e5 ? 0 : 1)} k/s`;
  return `${perSec.toFixed(0)} /s`;
}

/** Microseconds with 3 significant digits (at least one decimal under 10 µs). */
export function fmtUs(us: number): string {
  if (!Number.isFinite(us)) return 'n/a';
  if (us < 10) return us.toFixed(2);
  if (us < 100) return us.toFixed(1);
  return us.toFixed(0);
}

/** A ratio as `3.95×`, or `n/a`. */
export function fmtRatio(r: number): string {
  if (!Number.isFinite(r)) return 'n/a';
  if (r >= 100) return `${r.toFixed(0)}×`;
  if (r >= 0.1) return `${r.toFixed(2)}×`;
  return `${r.toFixed(3)}×`;
}
