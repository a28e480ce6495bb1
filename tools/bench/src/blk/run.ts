/**
 * One (round, variant) of `blk`: a fresh world (world.ts), the log on (sink worker + one
 * EventWriter each for the guest's and dom0's channels) or off (nullEmitter), `qd` I/Os kept in
 * flight (random 4 KiB aligned blocks, writes and reads mixed), a warm-up, a timed window, then
 * the checks and the teardown.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventWriter, nullEmitter, startSinkWorker, type EventEmitter, type SinkWorkerHandle } from '@pvsim/eventlog';
import { RealClock } from '@pvsim/runtime';
import { accountEvents, type Accounting } from '../eventlog/account.js';
import { latencySummary, type LatencySummary } from '../stats.js';
import { BLOCK_BYTES, SECTORS_PER_BLOCK, blocksOf, checkBlock, fillBlock, iops, pickFreeBlock, prng, type Variant } from './load.js';
import { TapEmitter, buildWorld } from './world.js';

export interface RunParams {
  diskMiB: number;
  qd: number;
  writePct: number;
  warmMs: number;
  measureMs: number;
  logOrder: number;
  /** Full-block check of every n-th read (the others check 3 words). */
  fullCheckEvery: number;
  seed: number;
  batchMax: number;
}

export interface VariantResult extends Variant {
  iops: number;
  lat: LatencySummary;
  /** Completions in the timed window / in the whole run. */
  measured: number;
  total: number;
  reads: number;
  writes: number;
  readsChecked: number;
  readsFullChecked: number;
  readMismatches: number;
  diskBlocksChecked: number;
  diskMismatches: number;
  ioErrors: number;
  memFault: number;
  memLeak: number;
  /** Events emitted per I/O in the timed window (all emitters). */
  eventsPerIo: number;
  logStats?: { emitted: number; dropped: number; records: number; accounting?: Accounting; closeMs: number } | undefined;
  setupMs: number;
  wallMs: number;
  problems: string[];
}

const GUEST_DOM = 1;

export async function runVariant(v: Variant, p: RunParams, round: number): Promise<VariantResult> {
  const tWall = performance.now();
  const problems: string[] = [];
  let dir: string | undefined;
  let sink: SinkWorkerHandle | undefined;
  const writers: EventWriter[] = [];
  try {
    let dom0Inner: EventEmitter = nullEmitter();
    let guestInner: EventEmitter = nullEmitter();
    if (v.log === 'on') {
      dir = await mkdtemp(join(tmpdir(), 'pvsim-bench-blk-'));
      sink = await startSinkWorker({ dir, header: { runId: `bench-blk-${process.pid}-${Date.now()}`, meta: { bench: 'blk', policy: v.policy, round } } });
      const clk = new RealClock(sink.hub.epochMs);
      const w0 = new EventWriter(await sink.channel('dom0', 0, p.logOrder), clk);
      const wg = new EventWriter(await sink.channel('guest', GUEST_DOM, p.logOrder), clk);
      writers.push(w0, wg);
      dom0Inner = w0;
      guestInner = wg;
    }
    const dom0Tap = new TapEmitter(dom0Inner);
    const guestTap = new TapEmitter(guestInner);
    const tapEvents = () => dom0Tap.events + guestTap.events;
    const clock = new RealClock(sink?.hub.epochMs);
    const world = await buildWorld({ policy: v.policy, diskMiB: p.diskMiB, dataPages: Math.max(64, p.qd * 2), dom0Events: dom0Tap, guestEvents: guestTap, clock, batchMax: p.batchMax });
    const setupMs = performance.now() - tWall;
    const { front, disk } = world;

    // ── the load ──
    const nBlocks = blocksOf(p.diskMiB);
    const gens = new Uint32Array(nBlocks);
    const busy = new Uint8Array(nBlocks);
    const rnd = prng(p.seed + round * 7919 + ['sync', 'replace', 'async'].indexOf(v.policy) * 131 + (v.log === 'on' ? 17 : 0));
    const writeFrac = p.writePct / 100;
    let samples = new Float64Array(1 << 18);
    let nSamples = 0;
    let total = 0;
    let measured = 0;
    let reads = 0;
    let writes = 0;
    let readsChecked = 0;
    let readsFull = 0;
    let readMismatches = 0;
    let ioErrors = 0;
    let tStart = Number.POSITIVE_INFINITY;
    let tEnd = Number.POSITIVE_INFINITY;
    let evStart = 0;
    let evEnd = 0;
    let stop = false;
    let lastProgress = performance.now();
    const t0 = performance.now();

    const slot = async (i: number): Promise<void> => {
      const buf = new Uint8Array(BLOCK_BYTES);
      const words = new Uint32Array(buf.buffer);
      while (!stop) {
        let b = pickFreeBlock(rnd, nBlocks, busy);
        if (b < 0) b = (i * 977) % nBlocks; // cannot happen with qd ≪ blocks; stay deterministic
        busy[b] = 1;
        const isWrite = rnd() < writeFrac;
        const ts = performance.now();
        try {
          if (isWrite) {
            const g = gens[b]! + 1;
            fillBlock(words, b, g);
            await front.write(b * SECTORS_PER_BLOCK, buf);
            gens[b] = g;
            writes++;
          } else {
            const got = await front.read(b * SECTORS_PER_BLOCK, SECTORS_PER_BLOCK);
            reads++;
            const full = reads % p.fullCheckEvery === 0;
            if (!checkBlock(got, b, gens[b]!, full)) readMismatches++;
            readsChecked++;
            if (full) readsFull++;
          }
        } catch {
          ioErrors++;
        }
        busy[b] = 0;
        const te = performance.now();
        lastProgress = te;
        total++;
        if (tStart === Number.POSITIVE_INFINITY) {
          if (te - t0 >= p.warmMs) {
            tStart = te;
            evStart = tapEvents();
          }
        } else if (te <= tEnd) {
          measured++;
          if (ts >= tStart) {
            if (nSamples === samples.length) {
              const s2 = new Float64Array(samples.length * 2);
              s2.set(samples);
              samples = s2;
            }
            samples[nSamples++] = te - ts;
          }
          if (te - tStart >= p.measureMs) {
            tEnd = te;
            evEnd = tapEvents();
            stop = true;
          }
        }
      }
    };
    let watchdog: NodeJS.Timeout | undefined;
    const stalled = new Promise<never>((_, reject) => {
      watchdog = setInterval(() => {
        if (performance.now() - lastProgress > 10_000) reject(new Error(`stalled: ${JSON.stringify(front.stats())} ${front.error ?? ''}`));
      }, 500);
    });
    try {
      await Promise.race([Promise.all(Array.from({ length: p.qd }, (_, i) => slot(i))), stalled]);
    } finally {
      clearInterval(watchdog);
    }
    const windowMs = tEnd - tStart;

    // ── checks ──
    let diskBlocksChecked = 0;
    let diskMismatches = 0;
    const check = prng(p.seed ^ 0x5bd1e995);
    for (let k = 0; k < 256; k++) {
      const b = Math.floor(check() * nBlocks);
      if (!checkBlock(disk.bytes.subarray(b * BLOCK_BYTES, (b + 1) * BLOCK_BYTES), b, gens[b]!, true)) diskMismatches++;
      diskBlocksChecked++;
    }
    // Every block written at least once in this run, against the disk (cheap: 3 words each).
    for (let b = 0; b < nBlocks; b++) {
      if (gens[b] !== 0 && !checkBlock(disk.bytes.subarray(b * BLOCK_BYTES, (b + 1) * BLOCK_BYTES), b, gens[b]!, false)) diskMismatches++;
    }
    if (readMismatches > 0) problems.push(`${readMismatches} reads returned other data than last written`);
    if (diskMismatches > 0) problems.push(`${diskMismatches} disk blocks differ from the last write`);
    if (ioErrors > 0) problems.push(`${ioErrors} I/Os failed`);
    const memFault = dom0Tap.memFault + guestTap.memFault;
    const memLeak = dom0Tap.memLeak + guestTap.memLeak;
    if (v.policy === 'async' && (memFault > 0 || memLeak > 0)) problems.push(`async: ${memFault} mem.fault, ${memLeak} mem.leak`);
    if (nSamples === 0) problems.push('no I/O completed in the timed window');
    problems.push(...(await world.teardown()));

    let logStats: VariantResult['logStats'];
    if (sink) {
      const counts = writers.map((w) => ({ emitted: w.emitted, dropped: w.dropped }));
      const t = performance.now();
      const stats = await sink.close();
      const closeMs = performance.now() - t;
      sink = undefined;
      const accounting = accountEvents(counts, stats);
      for (const pr of accounting.problems) problems.push(`log: ${pr}`);
      logStats = { emitted: accounting.emitted, dropped: accounting.dropped, records: stats.records, accounting, closeMs };
    }
    return {
      ...v,
      iops: iops(measured, windowMs),
      lat: nSamples > 0 ? latencySummary(samples.subarray(0, nSamples)) : { count: 0, minUs: NaN, meanUs: NaN, p50Us: NaN, p99Us: NaN, p999Us: NaN, maxUs: NaN },
      measured,
      total,
      reads,
      writes,
      readsChecked,
      readsFullChecked: readsFull,
      readMismatches,
      diskBlocksChecked,
      diskMismatches,
      ioErrors,
      memFault,
      memLeak,
      eventsPerIo: measured > 0 ? (evEnd - evStart) / measured : NaN,
      logStats,
      setupMs,
      wallMs: performance.now() - tWall,
      problems,
    };
  } finally {
    if (sink) await sink.close().catch(() => {});
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}
