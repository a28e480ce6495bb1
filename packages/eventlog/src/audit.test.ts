import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { VirtualClock } from '@pvsim/runtime';
import { createLogChannel, createLogHub } from './channel.js';
import { LogSink } from './sink.js';
import { EventWriter } from './writer.js';
import { declareEvent, type EventRecord } from './schema.js';
import { destroyedDomainAuditor, genericAuditors, runAuditors, sequenceAuditor, type Auditor, type Violation } from './audit.js';

declare module './schema.js' {
  interface EventPayloads {
    'test.tick': { n: number; blob?: string };
  }
}
declareEvent({ kind: 'test.tick', version: 1 });

const ev = (seq: number, kind = 'test.tick', payload: Record<string, unknown> = { n: seq }, dom = 1): EventRecord =>
  ({ seq, tsNs: seq * 1000, dom, thread: dom, kind, v: 1, payload }) as EventRecord;

function audit(auditors: Auditor[], events: EventRecord[]): Violation[] {
  const run = runAuditors(auditors);
  for (const e of events) run.onEvent(e);
  return [...run.finish()];
}

const brief = (vs: Violation[]) => vs.map((v) => ({ rule: v.rule, seqs: v.seqs, ...(v.dom !== undefined ? { dom: v.dom } : {}) }));

describe('sequenceAuditor', () => {
  it('is silent on a contiguous stream from any first seq', () => {
    expect(audit([sequenceAuditor()], [5, 6, 7, 8].map((s) => ev(s)))).toEqual([]);
    expect(audit([sequenceAuditor()], [])).toEqual([]);
  });

  it('reports an unexplained jump as sequence-gap citing the events either side', () => {
    const vs = audit([sequenceAuditor()], [0, 1, 2, 6, 7].map((s) => ev(s)));
    expect(brief(vs)).toEqual([{ rule: 'sequence-gap', seqs: [2, 6] }]);
    expect(vs[0]!.message).toMatch(/3 event\(s\) missing between seq 2 and 6 \(seq 3\.\.5\)/);
    expect(vs[0]!.auditor).toBe('sequence');
  });

  it('reports a repeat and a decrease as sequence-order', () => {
    const vs = audit([sequenceAuditor()], [1, 2, 2, 3, 1, 4].map((s) => ev(s)));
    expect(brief(vs)).toEqual([
      { rule: 'sequence-order', seqs: [2] },
      { rule: 'sequence-order', seqs: [1, 3] },
    ]);
    expect(vs[0]!.message).toBe('seq 2 repeated');
    expect(vs[1]!.message).toBe('seq 1 after seq 3: sequence went backwards');
  });

  it('a late event fills its hole: one sequence-order, no sequence-gap', () => {
    expect(brief(audit([sequenceAuditor()], [1, 2, 4, 3, 5].map((s) => ev(s))))).toEqual([{ rule: 'sequence-order', seqs: [3, 4] }]);
  });

  it('a log.gap record after the hole explains it: events-lost citing the record, no sequence-gap', () => {
    // As the sink writes it: the hole 3..5, later records, then its log.gap (with a number of its own).
    const events = [ev(1), ev(2), ev(6), ev(7), ev(8, 'log.gap', { from: 3, to: 5, reason: 'missing for 500 ms' }, 0), ev(9)];
    const vs = audit([sequenceAuditor()], events);
    expect(brief(vs)).toEqual([{ rule: 'events-lost', seqs: [8] }]);
    expect(vs[0]!.message).toBe('3 event(s) lost (seq 3..5): missing for 500 ms');
  });

  it('a log.gap record before its hole explains it too', () => {
    const events = [ev(1), ev(2, 'log.gap', { from: 3, to: 4, reason: '' }, 0), ev(5)];
    expect(brief(audit([sequenceAuditor()], events))).toEqual([{ rule: 'events-lost', seqs: [2] }]);
  });

  it('a hole only partly explained: events-lost for the record, sequence-gap for the rest', () => {
    const events = [ev(10), ev(20), ev(21, 'log.gap', { from: 11, to: 14, reason: 'x' }, 0)];
    const vs = audit([sequenceAuditor()], events);
    expect(brief(vs)).toEqual([
      { rule: 'events-lost', seqs: [21] },
      { rule: 'sequence-gap', seqs: [10, 20] },
    ]);
    expect(vs[1]!.message).toMatch(/5 event\(s\) missing between seq 10 and 20 \(seq 15\.\.19\)/);
  });

  it('subtracts explained ranges wherever they fall in a hole', () => {
    const events = [ev(10), ev(20), ev(21, 'log.gap', { from: 15, to: 16, reason: 'x' }, 0), ev(22, 'log.gap', { from: 19, to: 19, reason: 'x' }, 0)];
    const vs = audit([sequenceAuditor()], events);
    expect(brief(vs)).toEqual([
      { rule: 'events-lost', seqs: [21] },
      { rule: 'events-lost', seqs: [22] },
      { rule: 'sequence-gap', seqs: [10, 20] },
    ]);
    expect(vs[2]!.message).toMatch(/6 event\(s\) missing between seq 10 and 20 \(seq 11\.\.14, 17\.\.18\)/);
  });

  it('remembers a log.gap record until the stream reaches its range', () => {
    const events = [ev(1), ev(2, 'log.gap', { from: 4, to: 5, reason: '' }, 0), ev(3), ev(6)];
    expect(brief(audit([sequenceAuditor()], events))).toEqual([{ rule: 'events-lost', seqs: [2] }]);
  });

  it('reports log.dropped as events-dropped, naming the writer and its domain', () => {
    const events = [
      ev(0, 'log.writer', { writer: 3, name: 'blkback', dom: 7 }, 0),
      ev(1),
      ev(2, 'log.dropped', { writer: 3, count: 12, total: 40 }, 0),
      ev(3, 'log.dropped', { writer: 9, count: 1, total: 1 }, 0),
    ];
    const vs = audit([sequenceAuditor()], events);
    expect(brief(vs)).toEqual([
      { rule: 'events-dropped', seqs: [2], dom: 7 },
      { rule: 'events-dropped', seqs: [3] },
    ]);
    expect(vs[0]!.message).toBe('writer 3 (dom 7) dropped 12 event(s) (40 in total): its buffer stayed full');
  });

  it('reports a malformed log.gap as bad-log-record', () => {
    expect(brief(audit([sequenceAuditor()], [ev(1), ev(2, 'log.gap', { from: 9, to: 3 }, 0)]))).toEqual([{ rule: 'bad-log-record', seqs: [2] }]);
  });

  it('finds exactly the holes punched into a contiguous run (fast-check)', () => {
    fc.assert(
      fc.property(fc.nat(1000), fc.uniqueArray(fc.integer({ min: 1, max: 98 }), { maxLength: 20 }), (start, holes) => {
        const drop = new Set(holes);
        const events = Array.from({ length: 100 }, (_, i) => i)
          .filter((i) => !drop.has(i))
          .map((i) => ev(start + i));
        const vs = audit([sequenceAuditor()], events);
        // Expected: one sequence-gap per maximal run of dropped offsets.
        const runs: [number, number][] = [];
        for (const h of [...drop].sort((a, b) => a - b)) {
          const last = runs.at(-1);
          if (last && last[1] === h - 1) last[1] = h;
          else runs.push([h, h]);
        }
        expect(brief(vs)).toEqual(runs.map(([a, b]) => ({ rule: 'sequence-gap', seqs: [start + a - 1, start + b + 1] })));
      }),
      { seed: 7, numRuns: 200 },
    );
  });
});

describe('destroyedDomainAuditor', () => {
  const destroy = (seq: number, domid: number) => ev(seq, 'domain.destroy', { domid }, 0);
  const create = (seq: number, domid: number) => ev(seq, 'domain.create', { domid }, 0);

  it('reports each event a domain emits after its destroy, citing both', () => {
    const events = [create(1, 5), ev(2, 'test.tick', {}, 5), destroy(3, 5), ev(4, 'test.tick', {}, 6), ev(5, 'test.tick', {}, 5), ev(6, 'test.tick', {}, 5)];
    const vs = audit([destroyedDomainAuditor()], events);
    expect(brief(vs)).toEqual([
      { rule: 'event-after-destroy', seqs: [3, 5], dom: 5 },
      { rule: 'event-after-destroy', seqs: [3, 6], dom: 5 },
    ]);
    expect(vs[0]!.message).toBe('dom 5 emitted test.tick at seq 5 after it was destroyed at seq 3');
    expect(vs[0]!.auditor).toBe('destroyed-domain');
  });

  it('allows the dying domain to emit its own destroy, others to talk about it, and domid reuse after create', () => {
    const events = [
      ev(1, 'test.tick', {}, 5),
      ev(2, 'domain.destroy', { domid: 5 }, 5), // the domain's own last word
      ev(3, 'test.tick', { about: 5 }, 0), // dom0 cleaning up after it
      destroy(4, 5), // a second destroy changes nothing
      create(5, 5),
      ev(6, 'test.tick', {}, 5),
      destroy(7, 5),
      ev(8, 'test.tick', {}, 5),
    ];
    expect(brief(audit([destroyedDomainAuditor()], events))).toEqual([{ rule: 'event-after-destroy', seqs: [7, 8], dom: 5 }]);
  });

  it('takes other kinds and field names', () => {
    const a = destroyedDomainAuditor({ destroyKind: 'vm.gone', createKind: 'vm.born', domField: 'id' });
    const events = [ev(1, 'vm.gone', { id: 2 }, 0), ev(2, 'domain.create', { domid: 2 }, 0), ev(3, 'x.y', {}, 2), ev(4, 'vm.born', { id: 2 }, 0), ev(5, 'x.y', {}, 2)];
    expect(brief(audit([a], events))).toEqual([{ rule: 'event-after-destroy', seqs: [1, 3], dom: 2 }]);
  });

  it('lists a bounded number of offences per domain and summarises the rest', () => {
    const events = [destroy(1, 3), ...Array.from({ length: 10 }, (_, i) => ev(2 + i, 'test.tick', {}, 3))];
    const vs = audit([destroyedDomainAuditor({ reportsPerDomainMax: 2 })], events);
    expect(brief(vs)).toEqual([
      { rule: 'event-after-destroy', seqs: [1, 2], dom: 3 },
      { rule: 'event-after-destroy', seqs: [1, 3], dom: 3 },
      { rule: 'event-after-destroy', seqs: [1, 11], dom: 3 },
    ]);
    expect(vs[2]!.message).toBe('dom 3: 8 more event(s) after its destroy at seq 1 (not listed; last at seq 11)');
  });

  it('ignores destroy events without a numeric domid', () => {
    expect(audit([destroyedDomainAuditor()], [ev(1, 'domain.destroy', { domid: 'x' }, 0), ev(2, 'test.tick', {}, 0)])).toEqual([]);
  });
});

describe('runAuditors', () => {
  it('runs several auditors live, calling onViolation as each is found, and bounds what it keeps', () => {
    const seen: string[] = [];
    const run = runAuditors(genericAuditors(), { onViolation: (v) => seen.push(`${v.rule}@${v.seqs.join(',')}`), violationsMax: 2 });
    run.onEvent(ev(1));
    run.onEvent(ev(3)); // hole at 2: decided at finish
    run.onEvent(ev(4, 'domain.destroy', { domid: 1 }, 0));
    run.onEvent(ev(5, 'test.tick', {}, 1));
    expect(seen).toEqual(['event-after-destroy@4,5']);
    run.onEvent(ev(5, 'test.tick', {}, 2));
    const vs = run.finish();
    expect(seen).toEqual(['event-after-destroy@4,5', 'sequence-order@5', 'sequence-gap@1,3']);
    expect(vs.map((v) => v.rule)).toEqual(['event-after-destroy', 'sequence-order']);
    expect(run.suppressed).toBe(1);
    expect(() => run.finish()).toThrow(/twice/);
    expect(() => run.onEvent(ev(9))).toThrow(/after finish/);
  });
});

describe('live on the sink', () => {
  it('audits the sink’s stream as it is written: a lost number is events-lost, nothing else', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvsim-audit-'));
    try {
      const clock = new VirtualClock();
      const hub = createLogHub(0);
      const run = runAuditors(genericAuditors());
      const sink = new LogSink({ dir, hub, clock, header: { runId: 'audit' }, gapTimeoutMs: 100, onRecord: (e) => run.onEvent(e) });
      const writers = [1, 2].map((i) => {
        const spec = createLogChannel(hub, i, `w${i}`, i, 2);
        sink.attach(spec);
        return new EventWriter(spec, clock, { fullWaitUs: 0 });
      });
      writers[0]!.emit('test.tick', { n: 0 });
      const lost = Number(Atomics.add(new BigInt64Array(hub.seq), 0, 1n)); // a writer died mid-emit
      writers[1]!.emit('test.tick', { n: 1 });
      sink.drain();
      clock.advance(200);
      sink.drain();
      await sink.close();
      const vs = run.finish();
      expect(vs.map((v) => v.rule)).toEqual(['events-lost']);
      expect(vs[0]!.message).toMatch(new RegExp(`1 event\\(s\\) lost \\(seq ${lost}\\)`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
