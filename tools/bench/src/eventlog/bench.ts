/**
 * `eventlog`: what the event log costs, in one run, rounds interleaved:
 *
 *   1. emitters → disk   3 worker threads emit small events as fast as they can into one sink
 *                        worker (startSinkWorker) writing to a temp dir: events/s to disk, and
 *                        ns/event spent in the emitting thread (emit loop vs a payload-only loop)
 *   2. ring + log        the ring benchmark's msgpack workload, log off vs on (the back emits per
 *                        request consumed, the front per response taken): throughput ratio
 *   3. read back         part 1's log read with readEventBatches: events/s, bytes/event
 *
 * Every round checks that each attempted event is on disk or counted as dropped (reading the
 * log back counts the records by kind), so a drop can never go unnoticed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ringEntries } from '@pvsim/abi';
import { LOG_RING_ORDER_DEFAULT, LOG_SLOT_BYTES } from '@pvsim/eventlog';
import { SHARED_RING_ORDER_LIMIT } from '@pvsim/ring';
import type { Benchmark, BenchContext, BenchReport, ReportTable, TargetResult } from '../registry.js';
import { fmtRate, fmtRatio, median, ratio, summarize, type Summary } from '../stats.js';
import type { Tuning } from '../ring/worker.js';
import {
  accountEvents,
  chunkMedianNs,
  DEFAULT_EMIT_EVENTS,
  fmtBytes,
  fmtNs,
  meets,
  nsPerEvent,
  perSecond,
  ringOrder,
  scaleCounts,
  type Accounting,
} from './account.js';
import { runRingRound, type RingRound } from './ringlog.js';
import { EMIT_CHUNK, readBack, runToLog, type ReadRound, type ToLogRound } from './tolog.js';

/** The ring benchmark's defaults (its `-o` options), so part 2 is the same workload. */
const RING_TUNING: Tuning = { spinUs: 200, burst: 32, batch: 32 };
const RING_ORDER = 2;
const RING_TARGET = 0.8;
const READ_TARGET = 1_000_000;

interface EmitRound {
  diskPerSec: number;
  emitPerSec: number;
  lagMs: number;
  closeMs: number;
  loopNs: number;
  bareNs: number;
  ownNs: number;
  loopChunkNs: number;
  bareChunkNs: number;
  ownChunkNs: number;
  attempted: number;
  emitted: number;
  dropped: number;
  perEmitter: { emitted: number; dropped: number; loopNs: number; bareNs: number; loopChunkNs: number }[];
  stats: ToLogRound['stats'];
  accounting: Accounting;
}

interface ReadSummaryRound {
  perSec: number;
  mbPerSec: number;
  bytesPerEvent: number;
  records: number;
  bytes: number;
  segments: number;
  batches: number;
  ms: number;
}

function emitRound(t: ToLogRound, read: ReadRound): EmitRound {
  const rs = t.emitters;
  const attempted = rs.reduce((s, r) => s + r.n, 0);
  const emitted = rs.reduce((s, r) => s + r.emitted, 0);
  const dropped = rs.reduce((s, r) => s + r.dropped, 0);
  const loopNs = nsPerEvent(
    rs.reduce((s, r) => s + r.emitMs, 0),
    attempted,
  );
  const bareNs = nsPerEvent(
    rs.reduce((s, r) => s + r.bareMs, 0),
    attempted,
  );
  const perEmitter = rs.map((r) => ({
    emitted: r.emitted,
    dropped: r.dropped,
    loopNs: nsPerEvent(r.emitMs, r.n),
    bareNs: nsPerEvent(r.bareMs, r.n),
    loopChunkNs: chunkMedianNs(r.emitChunkMs, EMIT_CHUNK, r.n),
    bareChunkNs: chunkMedianNs(r.bareChunkMs, EMIT_CHUNK, r.n),
  }));
  const loopChunkNs = median(perEmitter.map((e) => e.loopChunkNs));
  const bareChunkNs = median(perEmitter.map((e) => e.bareChunkNs));
  return {
    diskPerSec: perSecond(emitted, t.closedAbsMs - t.firstEmitAbsMs),
    emitPerSec: perSecond(attempted, t.lastEmitAbsMs - t.firstEmitAbsMs),
    lagMs: t.closedAbsMs - t.lastEmitAbsMs,
    closeMs: t.closeMs,
    loopNs,
    bareNs,
    ownNs: loopNs - bareNs,
    loopChunkNs,
    bareChunkNs,
    ownChunkNs: loopChunkNs - bareChunkNs,
    attempted,
    emitted,
    dropped,
    perEmitter,
    stats: t.stats,
    accounting: accountEvents(rs, t.stats, { records: read.records, benchEvents: read.benchEvents }),
  };
}

const r1 = (x: number) => Math.round(x * 10) / 10;

export const eventlogBenchmark: Benchmark = {
  name: 'eventlog',
  description: 'event log: emitters → sink → disk (events/s, ns/emit), ring with the log on vs off, reading a log back',
  options: {
    events: { description: 'part 1: events per emitter thread (÷5 with --quick)', default: DEFAULT_EMIT_EVENTS, min: 1000, integer: true },
    emitters: { description: 'part 1: emitter threads', default: 3, min: 1, max: 64, integer: true },
    logOrder: { description: 'log ring per writer: 2^order pages of 4 KiB, 128-byte slots', default: LOG_RING_ORDER_DEFAULT, min: 0, max: SHARED_RING_ORDER_LIMIT, integer: true },
    scale: { description: 'part 2: multiply the ring message counts', default: 1, min: 0.01 },
    only: { description: 'bitmask of parts: 1 emit→disk (+3 read back), 2 ring off/on', default: 3, min: 1, max: 3, integer: true },
  },

  async run(ctx: BenchContext): Promise<BenchReport> {
    const o = ctx.options as { events: number; emitters: number; logOrder: number; scale: number; only: number };
    // 4 rounds by default (not 5 like ring): a round is ~15 s here, and the default run must stay under ~90 s.
    const rounds = ctx.rounds ?? (ctx.quick ? 3 : 4);
    const counts = scaleCounts(ctx.quick, o.events, o.scale);
    const doEmit = (o.only & 1) !== 0;
    const doRing = (o.only & 2) !== 0;
    const emits: EmitRound[] = [];
    const reads: ReadSummaryRound[] = [];
    const ring: { off: RingRound[]; on: RingRound[] } = { off: [], on: [] };
    const t0 = performance.now();
    const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

    for (let round = 1; round <= rounds; round++) {
      const line: string[] = [];
      if (doEmit) {
        const dir = await mkdtemp(join(tmpdir(), 'pvsim-bench-eventlog-'));
        try {
          const t = await runToLog(dir, o.emitters, counts.emitEvents, o.logOrder);
          const rd = await readBack(dir);
          const e = emitRound(t, rd);
          emits.push(e);
          reads.push({
            perSec: perSecond(rd.records, rd.ms),
            mbPerSec: perSecond(rd.bytes, rd.ms) / 1e6,
            bytesPerEvent: rd.bytes / rd.records,
            records: rd.records,
            bytes: rd.bytes,
            segments: rd.segments,
            batches: rd.batches,
            ms: rd.ms,
          });
          ctx.progress(
            `round ${round}/${rounds} (${elapsed()}): to disk ${fmtRate(e.diskPerSec)}, emit ${fmtNs(e.loopNs)} − bare ${fmtNs(e.bareNs)} ns/event` +
              `${e.dropped > 0 ? `, DROPPED ${e.dropped}` : ''}${e.accounting.ok ? '' : ', ACCOUNTING FAILED'} | read back ${fmtRate(perSecond(rd.records, rd.ms))}`,
          );
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      }
      if (doRing) {
        for (const v of ringOrder(round)) {
          const r = await runRingRound(v === 'on', counts.ringWarm, counts.ringN, RING_TUNING, RING_ORDER, o.logOrder);
          ring[v].push(r);
          line.push(`log ${v} ${fmtRate(r.tputPerSec)}${r.events && r.events.dropped > 0 ? ` (DROPPED ${r.events.dropped})` : ''}`);
        }
        ctx.progress(`round ${round}/${rounds} (${elapsed()}): ring ${line.join(', ')}`);
      }
    }

    // ------------------------------------------------------------------------------------------
    const tables: ReportTable[] = [];
    const targets: TargetResult[] = [];
    const target = (name: string, measured: number, comparison: '>=' | '<=', threshold: number) =>
      targets.push({ name, measured, comparison, threshold, pass: meets(measured, comparison, threshold) });
    const sm = (xs: number[]): Summary => summarize(xs.map((x) => (Number.isFinite(x) ? x : 0)));
    const row3 = (label: string, xs: number[], fmt: (x: number) => string) => {
      const s = sm(xs);
      return [label, fmt(s.min), fmt(s.median), fmt(s.max)];
    };
    const fmtMs = (x: number) => x.toFixed(0);
    const fmtInt = (x: number) => x.toFixed(0);

    let emitData: Record<string, unknown> | undefined;
    if (doEmit) {
      const E = (f: (e: EmitRound) => number) => emits.map(f);
      tables.push({
        title: `1. ${o.emitters} emitter threads → 1 sink worker → disk, ${counts.emitEvents.toLocaleString('en')} bench.grant events each (min / median / max of ${rounds} rounds)`,
        head: ['metric', 'min', 'median', 'max'],
        rows: [
          row3('events/s to disk (first emit → sink close() resolved)', E((e) => e.diskPerSec), fmtRate),
          row3('events/s emitted (first emit → last emit returned)', E((e) => e.emitPerSec), fmtRate),
          row3('sink behind: last emit → files closed, ms', E((e) => e.lagMs), fmtMs),
          row3('emitting thread: payload + emit(), ns/event (wall)', E((e) => e.loopNs), fmtNs),
          row3('emitting thread: payload only (bare loop), ns/event', E((e) => e.bareNs), fmtNs),
          row3('→ emit() itself, ns/event (wall)', E((e) => e.ownNs), fmtNs),
          row3(`→ emit() itself, ns/event (median ${EMIT_CHUNK}-event chunk)`, E((e) => e.ownChunkNs), fmtNs),
          row3('events dropped by the full-ring policy (all emitters)', E((e) => e.dropped), fmtInt),
        ],
      });
      tables.push({
        title: `3. Reading the part-1 log back with readEventBatches (min / median / max of ${rounds} rounds)`,
        head: ['metric', 'min', 'median', 'max'],
        rows: [
          row3('events/s read (open → last batch)', reads.map((r) => r.perSec), fmtRate),
          row3('MB/s read', reads.map((r) => r.mbPerSec), (x) => x.toFixed(1)),
          row3('bytes per event on disk (all segment bytes / records)', reads.map((r) => r.bytesPerEvent), (x) => x.toFixed(1)),
          row3('records in the log', reads.map((r) => r.records), fmtInt),
          row3('log size on disk', reads.map((r) => r.bytes), fmtBytes),
        ],
      });
      emitData = {
        rounds: emits.map((e) => ({
          ...e,
          diskPerSec: Math.round(e.diskPerSec),
          emitPerSec: Math.round(e.emitPerSec),
          lagMs: r1(e.lagMs),
          closeMs: r1(e.closeMs),
        })),
        diskPerSec: sm(E((e) => e.diskPerSec)),
        emitPerSec: sm(E((e) => e.emitPerSec)),
        loopNs: sm(E((e) => e.loopNs)),
        bareNs: sm(E((e) => e.bareNs)),
        ownNs: sm(E((e) => e.ownNs)),
        ownChunkNs: sm(E((e) => e.ownChunkNs)),
        dropped: sm(E((e) => e.dropped)),
      };
    }

    let ringData: Record<string, unknown> | undefined;
    if (doRing) {
      const off = ring.off.map((r) => r.tputPerSec);
      const on = ring.on.map((r) => r.tputPerSec);
      const paired = on.map((x, i) => ratio(x, off[i]!));
      const offS = summarize(off);
      const onS = summarize(on);
      const ratioMedians = ratio(onS.median, offS.median);
      const ev = ring.on.map((r) => r.events!);
      tables.push({
        title: `2. Ring workload (msgpack, one-way, ${counts.ringN.toLocaleString('en')} requests timed), log off vs on, requests/s (min / median / max of ${rounds} rounds)`,
        head: ['variant', 'min', 'median', 'max', 'median vs off'],
        rows: [
          ['log off', fmtRate(offS.min), fmtRate(offS.median), fmtRate(offS.max), fmtRatio(1)],
          ['log on (backend emits bench.blk per request)', fmtRate(onS.min), fmtRate(onS.median), fmtRate(onS.max), fmtRatio(ratioMedians)],
          ['per-round ratio on / off', ...(() => {
            const s = sm(paired);
            return [fmtRatio(s.min), fmtRatio(s.median), fmtRatio(s.max), ''];
          })()],
          ['log on: events written per round', ...row3('', ev.map((e) => e.front + e.back), fmtInt).slice(1), ''],
          ['log on: events dropped per round', ...row3('', ev.map((e) => e.dropped), fmtInt).slice(1), ''],
          ['log on: sink close() after the ring finished, ms', ...row3('', ev.map((e) => e.closeMs), fmtMs).slice(1), ''],
        ],
      });
      target('ring msgpack throughput, log on / log off (medians)', ratioMedians, '>=', RING_TARGET);
      ringData = {
        off: { ...offS, rounds: off },
        on: { ...onS, rounds: on },
        ratioOfMedians: ratioMedians,
        pairedRatios: paired,
        events: ev.map((e) => ({ front: e.front, back: e.back, dropped: e.dropped, sinkRecords: e.sinkRecords, closeMs: r1(e.closeMs), accounting: e.accounting })),
      };
    }
    if (doEmit) target('log read-back, events/s (readEventBatches, part-1 log)', median(reads.map((r) => r.perSec)), '>=', READ_TARGET);

    // Accounting: every attempted event is on disk or counted as dropped, in every round.
    const accRows: string[][] = [];
    const problems: string[] = [];
    emits.forEach((e, i) => {
      const a = e.accounting;
      accRows.push([`1. emit→disk, round ${i + 1}`, fmtInt(e.attempted), fmtInt(a.emitted), fmtInt(a.dropped), fmtInt(e.stats.records), fmtInt(e.stats.dropped), fmtInt(a.unaccounted), a.ok ? 'ok' : 'FAIL']);
      for (const p of a.problems) problems.push(`part 1 round ${i + 1}: ${p}`);
    });
    ring.on.forEach((r, i) => {
      const ev = r.events!;
      const a = ev.accounting;
      accRows.push([`2. ring log on, round ${i + 1}`, fmtInt(a.emitted + a.dropped), fmtInt(a.emitted), fmtInt(a.dropped), fmtInt(ev.stats.records), fmtInt(ev.stats.dropped), fmtInt(a.unaccounted), a.ok ? 'ok' : 'FAIL']);
      for (const p of a.problems) problems.push(`part 2 round ${i + 1}: ${p}`);
    });
    tables.push({
      title: 'Accounting: attempted = written + dropped, per round (part 1 checked against the records read back; sink records include its own log.* records)',
      head: ['round', 'attempted', 'emitted', 'dropped (writers)', 'sink records', 'dropped (sink)', 'unaccounted', 'check'],
      rows: accRows,
    });
    target('events neither on disk nor counted as dropped (+ other accounting problems)', problems.length, '<=', 0);

    const notes = [
      `${rounds} rounds; each round runs part 1 (fresh sink worker and ${o.emitters} fresh emitter threads, log in a fresh dir under ${tmpdir()}, removed after), part 3 on that log, then part 2 off and on (order alternating per round, fresh threads each time). Medians are of per-round values.`,
      `Writers: EventWriter with default options (fullWaitUs 500: on a full ring, raise the sink's doorbell, spin ≤ 500 µs, then drop and count). Log ring per writer: order ${o.logOrder} = ${ringEntries(o.logOrder, LOG_SLOT_BYTES)} slots of ${LOG_SLOT_BYTES} B. Sink: startSinkWorker defaults (pollMs 5, flushMs 20, 64 MiB segments).`,
      `Part 1: payload {gref, granter, handle, ro} under 'bench.grant'. Emitters start together on a shared flag; "to disk" is timed from the first emit of any emitter until the sink's close() resolved (final drain, footer, fsync, thread gone). ns/event are measured inside the emitters around chunks of ${EMIT_CHUNK} events: "wall" = total loop time / events (includes being descheduled: ${o.emitters} emitters + sink on ${availableParallelism()} cores), "median chunk" ≈ CPU cost. emit()'s own cost = (payload + emit loop) − (payload-only loop, objects kept alive the same way).`,
      `Part 2: ring benchmark's msgpack variant (ring/worker.ts), order ${RING_ORDER}, burst ${RING_TUNING.burst}, batch ${RING_TUNING.batch}, spin ${RING_TUNING.spinUs} µs; ${counts.ringWarm.toLocaleString('en')} warm-up + ${counts.ringN.toLocaleString('en')} timed requests; log on = sink worker + 2 writers (${2 * (counts.ringWarm + counts.ringN)} events per round), 3 busy threads on 2 cores.`,
      'Part 3: readEventBatches(dir) from open to the last batch, in the main thread, every record touched (kind, seq, a payload field); bytes/event = all segment file bytes (prefix, frames, footer) / records.',
      ...problems.map((p) => `ACCOUNTING: ${p}`),
      'The machine is shared and noisy: compare ratios, not absolute values.',
    ];

    return {
      name: 'eventlog',
      title: 'the event log: emit cost, throughput to disk, cost to a ring workload, read-back speed',
      tables,
      targets,
      notes,
      data: {
        params: { rounds, quick: ctx.quick, ...o, counts, emitChunk: EMIT_CHUNK, ring: { ...RING_TUNING, order: RING_ORDER } },
        units: { rates: 'events/s or requests/s', ns: 'ns/event', ms: 'ms' },
        emit: emitData,
        read: doEmit ? { rounds: reads, perSec: summarize(reads.map((r) => r.perSec)), bytesPerEvent: summarize(reads.map((r) => r.bytesPerEvent)) } : undefined,
        ring: ringData,
        accountingProblems: problems,
        durationMs: Math.round(performance.now() - t0),
      },
    };
  },
};
