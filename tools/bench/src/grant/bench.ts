/**
 * `grant`: the grant table's hot paths, from two threads at once, rounds interleaved (log off /
 * log on alternate first), each (round, variant) on a fresh machine with fresh threads:
 *
 *   A  a batch of 11 GNTTABOP_map_grant_ref, then the batch of 11 unmaps: batches/s, grants/s,
 *      ns per grant (one map + one unmap)
 *   B  a 4 KiB GNTTABOP_copy from a guest's gref to one of the caller's own frames: copies/s,
 *      ns/copy, GB/s
 *   C  the floor: `Uint8Array.set` of 4 KiB between the same two frames' views, same thread
 *
 * The machine (machine.ts): dom0 (privileged) and a driver domain d3 map, each in its own worker
 * thread with its own client and log channel; guest d1 grants to dom0 and guest d2 to d3 (with
 * `-o shared=1` both map guest d1's grants and contend on its lock). Target: B within 3× of C.
 * Every round checks statuses, leftover mappings and pins, and the data copied and mapped.
 */
import { availableParallelism, tmpdir } from 'node:os';
import { ringEntries } from '@pvsim/abi';
import { LOG_RING_ORDER_DEFAULT, LOG_SLOT_BYTES } from '@pvsim/eventlog';
import type { Benchmark, BenchContext, BenchReport, ReportTable, TargetResult } from '../registry.js';
import { fmtRate, fmtRatio, median, ratio, summarize, type Summary } from '../stats.js';
import { fmtNs, meets } from '../eventlog/account.js';
import { combineThreads, concurrency, makePlan, PHASE_MS_DEFAULT, threadRound, variantOrder, type ThreadRound } from './metrics.js';
import { runRound, type GrantRound, type MachineOptions } from './machine.js';
import { FULL_WAIT_US, type GrantWorkerResult } from './protocol.js';

const COPY_TARGET = 3;
type V = 'off' | 'on';

interface RoundSummary {
  round: number;
  log: V;
  combined: ThreadRound;
  /** Fraction of each phase during which both threads were running (not descheduled). */
  together: { a: number; b: number; c: number };
  perThread: ThreadRound[];
  raw: GrantRound;
}

const r1 = (x: number) => Math.round(x * 10) / 10;
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const rnd = (v: number) => (Math.abs(v) >= 100 ? Math.round(v) : r3(v));
const roundAll = (t: ThreadRound): Record<string, number> => Object.fromEntries(Object.entries(t).map(([k, v]) => [k, rnd(v)]));

/** Identical problems of several rounds as one line: "in 10 of 10 runs (rounds …): …". */
function groupProblems(all: readonly RoundSummary[]): string[] {
  const by = new Map<string, string[]>();
  for (const r of all) for (const p of r.raw.problems) by.set(p, [...(by.get(p) ?? []), `${r.round} ${r.log}`]);
  return [...by].map(([p, where]) => `in ${where.length} of ${all.length} runs (${where.length === all.length ? 'all' : where.join(', ')}): ${p}`);
}

export const grantBenchmark: Benchmark = {
  name: 'grant',
  description: 'grant tables from two threads at once: map+unmap batches of 11, 4 KiB grant copy vs Uint8Array.set, log on vs off',
  options: {
    batch: { description: 'grants per map batch (and per unmap batch)', default: 11, min: 1, max: 64, integer: true },
    grants: { description: 'grants each guest gives each mapping domain (A rotates through them)', default: 64, min: 1, max: 1024, integer: true },
    copyFrames: { description: 'B/C: frame pairs rotated through (source gref → own gfn)', default: 16, min: 1, max: 64, integer: true },
    copyBatch: { description: 'B: copy ops per GNTTABOP_copy call', default: 1, min: 1, max: 64, integer: true },
    shared: { description: '1: both threads use guest d1\'s grants (contend on its lock); 0: one guest each', default: 0, min: 0, max: 1, integer: true },
    phaseMs: { description: 'length of each timed phase A, B, C per round, ms (÷4 with --quick)', default: PHASE_MS_DEFAULT, min: 20, integer: true },
    logOrder: { description: 'log ring per writer: 2^order pages of 4 KiB, 128-byte slots', default: LOG_RING_ORDER_DEFAULT, min: 0, max: 10, integer: true },
    only: { description: 'bitmask of variants: 1 log off (nullEmitter), 2 log on (sink worker + EventWriters)', default: 3, min: 1, max: 3, integer: true },
  },

  async run(ctx: BenchContext): Promise<BenchReport> {
    const o = ctx.options as { batch: number; grants: number; copyFrames: number; copyBatch: number; shared: number; phaseMs: number; logOrder: number; only: number };
    if (o.grants < o.batch) throw new Error(`grants (${o.grants}) must be ≥ batch (${o.batch})`);
    if (o.grants < o.copyFrames) throw new Error(`grants (${o.grants}) must be ≥ copyFrames (${o.copyFrames})`);
    const rounds = ctx.rounds ?? (ctx.quick ? 3 : 5);
    const plan = makePlan(ctx.quick, o.phaseMs);
    const mo: MachineOptions = { grants: o.grants, batch: o.batch, copyFrames: o.copyFrames, copyBatch: o.copyBatch, shared: o.shared === 1, logOrder: o.logOrder };
    const variants: V[] = (['off', 'on'] as const).filter((_, i) => o.only & (1 << i));
    const all: RoundSummary[] = [];
    const t0 = performance.now();
    const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

    for (let round = 1; round <= rounds; round++) {
      const line: string[] = [];
      for (const v of variantOrder(round, variants)) {
        const raw = await runRound(v === 'on', mo, plan);
        const perThread = raw.threads.map((t) => threadRound(t.a, t.b, t.c, o.batch, o.copyBatch));
        const combined = combineThreads(perThread);
        const [x, y] = raw.threads as [GrantWorkerResult, GrantWorkerResult];
        const together = { a: concurrency(x.a, y.a), b: concurrency(x.b, y.b), c: concurrency(x.c, y.c) };
        all.push({ round, log: v, combined, perThread, together, raw });
        const drops = raw.events && raw.events.dropped > 0 ? ` DROPPED ${raw.events.dropped}` : '';
        line.push(
          `log ${v}: A ${fmtNs(combined.aNsPerGrantChunk)} ns/grant, B ${fmtNs(combined.bNsPerCopyChunk)} ns/copy, C ${fmtNs(combined.cNsPerSetChunk)} ns/set (median chunk), B/C ${fmtRatio(combined.copyVsFloorChunk)}` +
            ` (wall ${fmtRatio(combined.copyVsFloor)}), together ${Math.round(((together.a + together.b + together.c) / 3) * 100)}%${drops}${raw.problems.length > 0 ? ` PROBLEMS ${raw.problems.length}` : ''} [${Math.round(raw.wallMs)} ms]`,
        );
      }
      ctx.progress(`round ${round}/${rounds} (${elapsed()}): ${line.join(' | ')}`);
    }

    // ------------------------------------------------------------------------------------------
    const of = (v: V) => all.filter((r) => r.log === v);
    const sm = (xs: number[]): Summary => summarize(xs.map((x) => (Number.isFinite(x) ? x : 0)));
    const colR = (v: V, g: (r: RoundSummary) => number): Summary | undefined => (of(v).length > 0 ? sm(of(v).map(g)) : undefined);
    const col = (v: V, f: (t: ThreadRound) => number): Summary | undefined => colR(v, (r) => f(r.combined));
    const fmtGB = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
    const pct = (x: number) => (Number.isFinite(x) ? `${(x * 100).toFixed(0)}%` : 'n/a');
    type Fmt = (x: number) => string;
    const rowR = (label: string, g: (r: RoundSummary) => number, fmt: Fmt, onOff = true): string[] => {
      const cells = [label];
      for (const v of ['off', 'on'] as const) {
        const s = colR(v, g);
        cells.push(...(s ? [fmt(s.min), fmt(s.median), fmt(s.max)] : ['–', '–', '–']));
      }
      const off = colR('off', g);
      const on = colR('on', g);
      cells.push(onOff && off && on ? fmtRatio(ratio(on.median, off.median)) : '');
      return cells;
    };
    const row = (label: string, f: (t: ThreadRound) => number, fmt: Fmt): string[] => rowR(label, (r) => f(r.combined), fmt);
        const B = o.batch;
    const perCopy = o.copyBatch > 1 ? ` (${o.copyBatch} ops per call)` : '';
    const tables: ReportTable[] = [
      {
        title: `Both threads at once (rates: sum of the 2 threads; ns and ratios: mean of the 2), min / median / max of ${rounds} rounds`,
        head: ['metric', 'off min', 'off median', 'off max', 'on min', 'on median', 'on max', 'on / off'],
        rows: [
          row(`A. batches/s (${B} maps + ${B} unmaps)`, (t) => t.aBatchesPerSec, fmtRate),
          row('A. grants mapped+unmapped/s', (t) => t.aGrantsPerSec, fmtRate),
          row('A. ns per grant (map + unmap), wall', (t) => t.aNsPerGrant, fmtNs),
          row('A. ns per grant, median chunk', (t) => t.aNsPerGrantChunk, fmtNs),
          row(`B. 4 KiB grant copies/s${perCopy}`, (t) => t.bCopiesPerSec, fmtRate),
          row('B. ns per copy, wall', (t) => t.bNsPerCopy, fmtNs),
          row('B. ns per copy, median chunk', (t) => t.bNsPerCopyChunk, fmtNs),
          row('B. GB/s copied (sum)', (t) => t.bGBps, fmtGB),
          row('C. floor: 4 KiB Uint8Array.set/s', (t) => t.cSetsPerSec, fmtRate),
          row('C. ns per set, wall', (t) => t.cNsPerSet, fmtNs),
          row('C. ns per set, median chunk', (t) => t.cNsPerSetChunk, fmtNs),
          row('C. GB/s (sum)', (t) => t.cGBps, fmtGB),
          row('B / C: grant copy vs floor (wall ns)', (t) => t.copyVsFloor, fmtRatio),
          row('B / C: grant copy vs floor (median chunk ns)', (t) => t.copyVsFloorChunk, fmtRatio),
          rowR('A / B / C: both threads running at once, % of phase (mean)', (r) => (r.together.a + r.together.b + r.together.c) / 3, pct, false),
        ],
      },
    ];

    // Per thread, medians over rounds.
    const threadRows: string[][] = [];
    const labels = all[0]!.raw.threads.map((_, i) => (i === 0 ? 'dom0 (d0)' : 'driver domain (d3)'));
    const granterOf = (i: number) => (i === 0 ? 'd1' : o.shared ? 'd1' : 'd2');
    for (const v of variants) {
      for (const [i, label] of labels.entries()) {
        const ts = of(v).map((r) => r.perThread[i]!);
        const m = (f: (t: ThreadRound) => number) => median(ts.map((t) => (Number.isFinite(f(t)) ? f(t) : 0)));
        threadRows.push([
          `${label} ← ${granterOf(i)}`,
          v,
          fmtNs(m((t) => t.aNsPerGrant)),
          fmtNs(m((t) => t.bNsPerCopy)),
          fmtNs(m((t) => t.cNsPerSet)),
          fmtRatio(m((t) => t.copyVsFloor)),
          fmtGB(m((t) => t.bGBps)),
          fmtGB(m((t) => t.cGBps)),
        ]);
      }
    }
    tables.push({
      title: `Per thread, medians of ${rounds} rounds (wall ns)`,
      head: ['thread ← granter', 'log', 'A ns/grant', 'B ns/copy', 'C ns/set', 'B / C', 'B GB/s', 'C GB/s'],
      rows: threadRows,
    });

    // The log's share.
    const on = of('on');
    if (on.length > 0) {
      const ev = (f: (r: RoundSummary) => number) => sm(on.map(f));
      const r3s = (s: Summary, fmt: Fmt) => [fmt(s.min), fmt(s.median), fmt(s.max)];
      const fmtInt = (x: number) => x.toFixed(0);
      const phaseEvents = (r: RoundSummary, p: 'a' | 'b') => r.raw.threads.reduce((s, t) => s + t.log![p].emitted + t.log![p].dropped, 0);
      const phaseDropped = (r: RoundSummary, p: 'a' | 'b') => r.raw.threads.reduce((s, t) => s + t.log![p].dropped, 0);
      const phaseRate = (r: RoundSummary, p: 'a' | 'b') => r.raw.threads.reduce((s, t) => s + ((t.log![p].emitted + t.log![p].dropped) / t[p].ms) * 1000, 0);
      const nsOff = (f: (t: ThreadRound) => number) => col('off', f)?.median ?? Number.NaN;
      const spinShare = (r: RoundSummary) =>
        (r.raw.threads.reduce((s, t) => s + t.log!.a.dropped + t.log!.b.dropped, 0) * FULL_WAIT_US) / 1000 / r.raw.threads.reduce((s, t) => s + t.a.ms + t.b.ms, 0);
      tables.push({
        title: `The log (on): events of both threads, min / median / max of ${on.length} rounds`,
        head: ['metric', 'min', 'median', 'max'],
        rows: [
          ['A. events/s emitted (1 per map, 1 per unmap)', ...r3s(ev((r) => phaseRate(r, 'a')), fmtRate)],
          ['A. events attempted / dropped', `${fmtInt(median(on.map((r) => phaseEvents(r, 'a'))))} / ${fmtInt(median(on.map((r) => phaseDropped(r, 'a'))))}`, '(median)', ''],
          ['B. events/s emitted (1 per copy)', ...r3s(ev((r) => phaseRate(r, 'b')), fmtRate)],
          ['B. events attempted / dropped', `${fmtInt(median(on.map((r) => phaseEvents(r, 'b'))))} / ${fmtInt(median(on.map((r) => phaseDropped(r, 'b'))))}`, '(median)', ''],
          ['log share per event, wall: A (ns/grant on − off) / 2, B (ns/copy on − off)', `A ${fmtNs((col('on', (t) => t.aNsPerGrant)!.median - nsOff((t) => t.aNsPerGrant)) / 2)}`, `B ${fmtNs(col('on', (t) => t.bNsPerCopy)!.median - nsOff((t) => t.bNsPerCopy))}`, '(medians)'],
          ['log share per event, median chunk (≈ CPU): same', `A ${fmtNs((col('on', (t) => t.aNsPerGrantChunk)!.median - nsOff((t) => t.aNsPerGrantChunk)) / 2)}`, `B ${fmtNs(col('on', (t) => t.bNsPerCopyChunk)!.median - nsOff((t) => t.bNsPerCopyChunk))}`, '(medians)'],
          [`A+B: thread time spent in full-ring waits that ended in a drop (drops × ${FULL_WAIT_US} µs)`, ...r3s(ev((r) => spinShare(r)), pct)],
          ['sink records per round', ...r3s(ev((r) => r.raw.events!.stats.records), fmtInt)],
          ['events dropped per round (all writers)', ...r3s(ev((r) => r.raw.events!.dropped), fmtInt)],
          ['sink close() after the threads finished, ms', ...r3s(ev((r) => r.raw.events!.closeMs), fmtInt)],
        ],
      });
    }

    // Verification.
    const problems: string[] = [];
    const verRows = all.map((r) => {
      const t = r.raw.threads;
      const sum = (f: (x: (typeof t)[number]) => number) => t.reduce((s, x) => s + f(x), 0);
      for (const p of r.raw.problems) problems.push(`round ${r.round} log ${r.log}: ${p}`);
      return [
        `${r.round}`,
        r.log,
        `${sum((x) => x.a.iters * o.batch * 2 + x.b.iters * o.copyBatch)}`,
        `${sum((x) => x.verify.badStatus)}`,
        `${sum((x) => x.verify.mappingsLeft)}`,
        `${sum((x) => x.verify.mapMismatches)} / ${sum((x) => x.verify.copyMismatches)}`,
        `${r.raw.machine.flagged} / ${r.raw.machine.pinned}`,
        r.raw.events ? `${r.raw.events.emitted} / ${r.raw.events.dropped}` : '–',
        r.raw.problems.length === 0 ? 'ok' : `FAIL (${r.raw.problems.length})`,
      ];
    });
    tables.push({
      title: 'Verification per round (every op status, mappings and pins left, data mapped / copied vs the guest\'s pattern, log accounting)',
      head: ['round', 'log', 'timed ops', 'bad status', 'mappings left', 'data mismatches map / copy', 'entries left GTF_reading|writing / pinned', 'events emitted / dropped', 'check'],
      rows: verRows,
    });

    const targets: TargetResult[] = [];
    const target = (name: string, measured: number, comparison: '>=' | '<=', threshold: number) =>
      targets.push({ name, measured, comparison, threshold, pass: meets(measured, comparison, threshold) });
    for (const v of variants) {
      target(`4 KiB grant copy / Uint8Array.set floor, log ${v} (ns per 4 KiB, median chunk; median of rounds)`, col(v, (t) => t.copyVsFloorChunk)!.median, '<=', COPY_TARGET);
    }
    target('verification problems (statuses, mappings, pins, data, log accounting)', problems.length, '<=', 0);

    const ringSlots = ringEntries(o.logOrder, LOG_SLOT_BYTES);
    const notes = [
      `${rounds} rounds × ${variants.length} variants (${variants.join(', ')}), order alternating per round; each (round, variant) builds a fresh machine (createHypervisorSpec, 4 domains) and 2 fresh worker threads (+ a sink worker and a fresh log dir under ${tmpdir()} when the log is on). Medians are of per-round values.`,
      `Threads: dom0 (privileged) maps guest d1's grants; driver domain d3 (unprivileged) maps ${o.shared ? "guest d1's too (shared granter: both take d1's lock)" : "guest d2's (one granter each: no lock in common)"}. Each guest grants ${o.grants} writable pages per mapper (refs ${8}…), filled with a pattern naming (guest, ref).`,
      `Per thread, after a ${plan.warmMs} ms warm-up of each phase: A, B, C for ${plan.phaseMs} ms each, both threads in the same phase at once (barrier before each). A: ${B} map ops (GNTMAP_host_map, refs rotating through all ${o.grants}, into ${B} ballooned gfns) in one mapGrantRef call, then one unmapGrantRef of the ${B} handles; ns per grant = batch time / ${B}. B: GNTTABOP_copy of 4096 B, GNTCOPY_source_gref → own gfn, ${o.copyBatch} op per call, rotating over ${o.copyFrames} pairs. C: frame(dst).set(frame(src)) over the same ${o.copyFrames} pairs (hv.s.frame views).`,
      `Timing per chunk of ~${plan.chunkMs} ms (iterations fixed by the warm-up). "wall" = loop time / iterations: includes being descheduled (2 busy threads${variants.includes('on') ? ', + the sink when the log is on,' : ''} on ${availableParallelism()} cores, shared with other tenants) and, log on, full-ring waits. "median chunk" ≈ CPU cost: the targets use it. "running at once" = overlap of the two threads' normal-speed chunks (≤ 2× the median; a preempted or stalled chunk is not one) over the phase's wall time. B / C is per thread and round, then averaged over the 2 threads.`,
      `Log on: sink worker (startSinkWorker defaults), one EventWriter per thread (order ${o.logOrder} = ${ringSlots} slots of ${LOG_SLOT_BYTES} B, fullWaitUs ${FULL_WAIT_US}: on a full ring, spin that long, then drop and count) plus the main thread's for setup; log off: nullEmitter(). Every hypercall emits one event (grant.map, grant.unmap, grant.copy).`,
      'Verification (untimed, after the phases): every op status in the loops, mappingsHeld() = 0, every granted page mapped once and read through the memory gate = the guest\'s pattern, a grant copy into zeroed frames = the source; the main thread then checks no pin, GTF_reading/GTF_writing, frame-mapped count or foreign p2m entry is left, and (log on) that every event is on disk or counted as dropped.',
      ...groupProblems(all).map((p) => `PROBLEM: ${p}`),
      ...(all.some((r) => r.raw.machine.flagged > 0)
        ? [
            'Entries left GTF_reading after grant copies: client.ts claimRef() encodes the transient pin as `gw | (set << 28)`; GTF_reading is bit 3, so bit 31 is set, the value is negative and copyOne()\'s `if (srcPinned >= 0) releaseTransient(…)` never runs (see the "BUG: a grant copy pins the entries transiently only" test in packages/hypervisor/src/grant.test.ts). The guest can then never end access to a page once copied from. It also makes B slightly cheaper than it will be: after a ref\'s first copy, no cmpxchg sets or clears the flag.',
          ]
        : []),
      'The machine is shared and noisy: compare ratios, not absolute values.',
    ];

    return {
      name: 'grant',
      title: 'grant map/unmap batches and 4 KiB grant copies from two threads, against the memory-bandwidth floor',
      tables,
      targets,
      notes,
      data: {
        params: { rounds, quick: ctx.quick, ...o, plan, threads: labels },
        units: { rates: 'per second (sum of 2 threads)', ns: 'ns (mean of 2 threads)', GBps: '1e9 B/s (sum of 2 threads)' },
        variants: Object.fromEntries(
          variants.map((v) => {
            const rs = of(v);
            const keys = Object.keys(rs[0]!.combined) as (keyof ThreadRound)[];
            return [v, Object.fromEntries(keys.map((k) => [k, { ...sm(rs.map((r) => r.combined[k])), rounds: rs.map((r) => rnd(r.combined[k])) }]))];
          }),
        ),
        rounds: all.map((r) => ({
          round: r.round,
          log: r.log,
          wallMs: Math.round(r.raw.wallMs),
          combined: roundAll(r.combined),
          together: { a: r3(r.together.a), b: r3(r.together.b), c: r3(r.together.c) },
          perThread: r.perThread.map(roundAll),
          chunks: r.raw.threads.map((t) => t.chunks),
          iters: r.raw.threads.map((t) => ({ a: t.a.iters, b: t.b.iters, c: t.c.iters })),
          threadLog: r.raw.threads.map((t) => t.log),
          events: r.raw.events ? { emitted: r.raw.events.emitted, dropped: r.raw.events.dropped, sinkRecords: r.raw.events.stats.records, closeMs: r1(r.raw.events.closeMs), accountingOk: r.raw.events.accounting.ok } : undefined,
          problems: r.raw.problems,
        })),
        problems,
        durationMs: Math.round(performance.now() - t0),
      },
    };
  },
};
