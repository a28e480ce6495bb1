/**
 * Pure helpers of the eventlog benchmark: sizing, per-event arithmetic and the accounting that
 * proves no event went missing silently. No I/O, no threads; unit-tested in account.test.ts.
 */
import { median } from '../stats.js';

export interface Counts {
  /** Events emitters attempted, per part-1 emitter thread. */
  emitEvents: number;
  /** Ring workload: warm-up and timed requests per round. */
  ringWarm: number;
  ringN: number;
}

/** Defaults: 3 × 1 M events (≥ 3 M on disk for the reader), ring plan as the ring benchmark's. */
export const DEFAULT_EMIT_EVENTS = 1_000_000;
export const RING_WARM = 200_000;
export const RING_N = 1_000_000;
/** `--quick` divides counts by this (the ring warm-up only by 2: a cold msgpack path misleads). */
export const QUICK_DIVISOR = 5;

export function scaleCounts(quick: boolean, emitEvents: number, scale: number): Counts {
  const d = quick ? QUICK_DIVISOR : 1;
  return {
    emitEvents: Math.max(1_000, Math.round(emitEvents / d)),
    ringWarm: Math.max(1_000, Math.round((RING_WARM * scale) / (quick ? 2 : 1))),
    ringN: Math.max(1_000, Math.round((RING_N * scale) / d)),
  };
}

/** Nanoseconds per event from a duration in ms; NaN for no events. */
export function nsPerEvent(ms: number, events: number): number {
  return events > 0 ? (ms * 1e6) / events : Number.NaN;
}

/** Events per second from a duration in ms; NaN for a non-positive duration. */
export function perSecond(events: number, ms: number): number {
  return ms > 0 ? (events / ms) * 1000 : Number.NaN;
}

/**
 * Median ns/event over the full chunks of a run timed chunk by chunk (`chunkMs[i]` = ms spent on
 * `chunk` events). A chunk during which the thread was descheduled is an outlier the median
 * ignores, so this approximates the CPU cost per event where the plain mean is wall time.
 * The last chunk is partial when `events` is not a multiple of `chunk`; it is left out.
 */
export function chunkMedianNs(chunkMs: ArrayLike<number>, chunk: number, events: number): number {
  const full = Math.min(chunkMs.length, Math.floor(events / chunk));
  if (full === 0) return chunkMs.length > 0 ? nsPerEvent(chunkMs[0]!, events) : Number.NaN;
  const xs: number[] = new Array<number>(full);
  for (let i = 0; i < full; i++) xs[i] = (chunkMs[i]! * 1e6) / chunk;
  return median(xs);
}

/** Per round, which variant of the ring workload goes first: alternate to cancel drift. */
export function ringOrder(round: number): ['off', 'on'] | ['on', 'off'] {
  return round % 2 === 1 ? ['off', 'on'] : ['on', 'off'];
}

/** What the emitters say they did. */
export interface EmitterCounts {
  emitted: number;
  dropped: number;
}

/** The sink's counters (a subset of `SinkStats`). */
export interface SinkCounts {
  records: number;
  writers: number;
  gaps: number;
  lostSeqs: number;
  dropped: number;
  corruptParts: number;
}

export interface Accounting {
  emitted: number;
  dropped: number;
  /** Records the sink wrote that are its own (log.writer, log.gap, log.end, log.dropped). */
  sinkOwn: number;
  /** Of those, `log.dropped` records (each reports a batch of drops). */
  droppedRecords: number;
  /** Emitted events that are neither on disk nor counted as dropped: must be 0. */
  unaccounted: number;
  /** Everything is consistent: records = emitted + own, drops counted on both sides, no loss. */
  ok: boolean;
  problems: string[];
}

/**
 * Check that every event an emitter attempted is either on disk or counted as dropped.
 * `readBack` (records counted by reading the log) makes the check exact when there were drops:
 * the sink's stats do not say how many `log.dropped` records it wrote (one per drain that saw
 * drops), only how many events they cover.
 */
export function accountEvents(emitters: readonly EmitterCounts[], sink: SinkCounts, readBack?: { records: number; benchEvents: number }): Accounting {
  const emitted = emitters.reduce((s, e) => s + e.emitted, 0);
  const dropped = emitters.reduce((s, e) => s + e.dropped, 0);
  const problems: string[] = [];
  // log.writer per writer + log.gap per gap + log.end; log.dropped records come on top.
  const fixedOwn = sink.writers + sink.gaps + 1;
  let droppedRecords = sink.records - emitted - fixedOwn;
  let unaccounted = 0;
  if (readBack) {
    if (readBack.records !== sink.records) problems.push(`read back ${readBack.records} records, the sink wrote ${sink.records}`);
    unaccounted = emitted - readBack.benchEvents;
    droppedRecords = readBack.records - readBack.benchEvents - fixedOwn;
  } else {
    // Without reading back, only a lower bound: with drops, at least one log.dropped record.
    const ownMin = dropped > 0 ? 1 : 0;
    if (droppedRecords < ownMin) unaccounted = ownMin - droppedRecords;
  }
  if (unaccounted !== 0) problems.push(`${unaccounted} emitted events are neither on disk nor counted as dropped`);
  if (sink.dropped !== dropped) problems.push(`writers dropped ${dropped} events, the sink counted ${sink.dropped}`);
  if (dropped > 0 && droppedRecords < 1) problems.push(`${dropped} events dropped but no log.dropped record on disk`);
  if (dropped === 0 && droppedRecords > 0) problems.push(`${droppedRecords} unexpected records on disk`);
  if (droppedRecords < 0) droppedRecords = 0;
  if (sink.lostSeqs > 0) problems.push(`${sink.lostSeqs} sequence numbers lost in ${sink.gaps} gaps`);
  if (sink.corruptParts > 0) problems.push(`${sink.corruptParts} corrupt ring parts`);
  return { emitted, dropped, sinkOwn: sink.records - emitted, droppedRecords, unaccounted, ok: problems.length === 0, problems };
}

/** `measured comparison threshold`; NaN never passes. */
export function meets(measured: number, comparison: '>=' | '<=', threshold: number): boolean {
  return Number.isFinite(measured) && (comparison === '>=' ? measured >= threshold : measured <= threshold);
}

/** Bytes as `12.3 MB` (decimal units, as disk sizes are usually quoted). */
export function fmtBytes(n: number): string {
  if (!Number.isFinite(n)) return 'n/a';
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n.toFixed(0)} B`;
}

/** Nanoseconds with one decimal under 100. */
export function fmtNs(ns: number): string {
  if (!Number.isFinite(ns)) return 'n/a';
  return Math.abs(ns) < 100 ? ns.toFixed(1) : ns.toFixed(0);
}
