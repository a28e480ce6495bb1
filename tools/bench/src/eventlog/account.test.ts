import { describe, expect, it } from 'vitest';
import {
  accountEvents,
  chunkMedianNs,
  DEFAULT_EMIT_EVENTS,
  fmtBytes,
  fmtNs,
  meets,
  nsPerEvent,
  perSecond,
  QUICK_DIVISOR,
  RING_N,
  RING_WARM,
  ringOrder,
  scaleCounts,
  type SinkCounts,
} from './account.js';

const sink = (over: Partial<SinkCounts>): SinkCounts => ({ records: 0, writers: 3, gaps: 0, lostSeqs: 0, dropped: 0, corruptParts: 0, ...over });

describe('scaleCounts', () => {
  it('defaults: 1 M events per emitter, the ring plan of the ring benchmark', () => {
    expect(scaleCounts(false, DEFAULT_EMIT_EVENTS, 1)).toEqual({ emitEvents: 1_000_000, ringWarm: RING_WARM, ringN: RING_N });
  });

  it('--quick divides counts, but the ring warm-up only by 2', () => {
    expect(scaleCounts(true, 1_000_000, 1)).toEqual({ emitEvents: 1_000_000 / QUICK_DIVISOR, ringWarm: RING_WARM / 2, ringN: RING_N / QUICK_DIVISOR });
  });

  it('scale applies to the ring only, with floors', () => {
    expect(scaleCounts(false, 5_000, 0.5)).toEqual({ emitEvents: 5_000, ringWarm: RING_WARM / 2, ringN: RING_N / 2 });
    expect(scaleCounts(true, 1_000, 0.0001)).toEqual({ emitEvents: 1_000, ringWarm: 1_000, ringN: 1_000 });
  });
});

describe('per-event arithmetic', () => {
  it('ns per event and events per second', () => {
    expect(nsPerEvent(1, 1_000)).toBe(1_000);
    expect(nsPerEvent(5, 0)).toBeNaN();
    expect(perSecond(3_000_000, 2_000)).toBe(1_500_000);
    expect(perSecond(10, 0)).toBeNaN();
  });

  it('chunk median ignores a descheduled chunk and the partial last chunk', () => {
    // 4 full chunks of 1000 events at 1 µs/event, one of them preempted (10×), then 500 events.
    const chunks = [1, 1, 10, 1, 99];
    expect(chunkMedianNs(chunks, 1_000, 4_500)).toBe(1_000);
    // The plain mean would be 25 µs/event.
    expect(nsPerEvent(chunks.reduce((a, b) => a + b), 4_500)).toBeCloseTo(24_888.9, 0);
  });

  it('chunk median with fewer events than a chunk falls back to the whole run', () => {
    expect(chunkMedianNs([0.5], 1_000, 500)).toBe(1_000);
    expect(chunkMedianNs([], 1_000, 0)).toBeNaN();
  });

  it('ring variants alternate which goes first', () => {
    expect(ringOrder(1)).toEqual(['off', 'on']);
    expect(ringOrder(2)).toEqual(['on', 'off']);
    expect(ringOrder(3)).toEqual(['off', 'on']);
  });
});

describe('accountEvents', () => {
  const three = [
    { emitted: 100, dropped: 0 },
    { emitted: 200, dropped: 0 },
    { emitted: 300, dropped: 0 },
  ];

  it('no drops: records = emitted + log.writer per writer + log.end', () => {
    const a = accountEvents(three, sink({ records: 604 }));
    expect(a).toMatchObject({ emitted: 600, dropped: 0, sinkOwn: 4, droppedRecords: 0, unaccounted: 0, ok: true });
  });

  it('no drops: a missing record is unaccounted', () => {
    const a = accountEvents(three, sink({ records: 603 }));
    expect(a.ok).toBe(false);
    expect(a.unaccounted).toBe(1);
    expect(a.problems.join()).toMatch(/1 emitted events are neither on disk nor counted/);
  });

  it('drops counted on both sides, with log.dropped records, are fine', () => {
    const em = [
      { emitted: 90, dropped: 10 },
      { emitted: 100, dropped: 0 },
    ];
    // 190 events + 2 log.writer + 1 log.end + 3 log.dropped records.
    const a = accountEvents(em, sink({ records: 196, writers: 2, dropped: 10 }), { records: 196, benchEvents: 190 });
    expect(a).toMatchObject({ emitted: 190, dropped: 10, droppedRecords: 3, unaccounted: 0, ok: true });
  });

  it('drops the sink did not count, or no log.dropped record, are problems', () => {
    const em = [{ emitted: 90, dropped: 10 }];
    expect(accountEvents(em, sink({ records: 93, writers: 1, dropped: 4 })).problems.join()).toMatch(/writers dropped 10 events, the sink counted 4/);
    const silent = accountEvents(em, sink({ records: 92, writers: 1, dropped: 10 }));
    expect(silent.ok).toBe(false);
    expect(silent.problems.join()).toMatch(/no log.dropped record/);
  });

  it('reading back makes it exact: events missing from the file, or a record count mismatch', () => {
    const a = accountEvents(three, sink({ records: 604 }), { records: 603, benchEvents: 599 });
    expect(a.unaccounted).toBe(1);
    expect(a.problems.join()).toMatch(/read back 603 records, the sink wrote 604/);
  });

  it('lost sequence numbers and corrupt parts are problems', () => {
    expect(accountEvents(three, sink({ records: 605, gaps: 1, lostSeqs: 2 })).problems.join()).toMatch(/2 sequence numbers lost in 1 gaps/);
    expect(accountEvents(three, sink({ records: 604, corruptParts: 1 })).problems.join()).toMatch(/1 corrupt ring parts/);
  });
});

describe('targets and formatting', () => {
  it('meets: NaN never passes', () => {
    expect(meets(0.85, '>=', 0.8)).toBe(true);
    expect(meets(0.75, '>=', 0.8)).toBe(false);
    expect(meets(0, '<=', 0)).toBe(true);
    expect(meets(Number.NaN, '<=', 0)).toBe(false);
  });

  it('formats bytes and nanoseconds', () => {
    expect(fmtBytes(512)).toBe('512 B');
    expect(fmtBytes(43_813_421)).toBe('43.8 MB');
    expect(fmtBytes(2.5e9)).toBe('2.50 GB');
    expect(fmtNs(59.06)).toBe('59.1');
    expect(fmtNs(1304.4)).toBe('1304');
    expect(fmtNs(Number.NaN)).toBe('n/a');
  });
});
