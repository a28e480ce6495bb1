/**
 * Part 2: the ring benchmark's msgpack workload (its own worker script, ring/worker.ts) with the
 * event log off or on. On: a sink worker writing to a temp dir, and each ring end an
 * `EventWriter` emitting one event per request consumed (back) / response taken (front).
 * Throughput is the ring benchmark's: one-way requests/s of the timed phase, measured by the
 * front; no ping-pong phase.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSinkWorker, type SinkStats, type SinkWorkerHandle } from '@pvsim/eventlog';
import { EvtchnDoorbells, SharedRing } from '@pvsim/ring';
import { BACK_PORT, BACK_WAITER, FRONT_PORT, FRONT_WAITER, SLOT_BYTES } from '../ring/protocol.js';
import { planTotal, type BackResult, type FrontResult, type Plan, type RingShared, type Tuning, type WorkerConfig } from '../ring/worker.js';
import { accountEvents, type Accounting } from './account.js';
import { spawnWorker, withTimeout } from './spawn.js';

const ringWorkerUrl = new URL('../ring/worker.js', import.meta.url);
const TIMEOUT_MS = 120_000;

export interface RingRound {
  log: boolean;
  tputPerSec: number;
  /** Front's timed phase, ms. */
  tputMs: number;
  /** Log on: what the ring ends emitted and the sink wrote. */
  events?: { front: number; back: number; dropped: number; sinkRecords: number; closeMs: number; accounting: Accounting; stats: SinkStats };
}

export async function runRingRound(withLog: boolean, warm: number, n: number, tuning: Tuning, order: number, logOrder: number): Promise<RingRound> {
  const plan: Plan = { tputWarm: warm, tputN: n, pingWarm: 0, pingN: 0, pingBudgetMs: 0 };
  const sring = SharedRing.allocate(order, SLOT_BYTES);
  sring.init();
  const db = EvtchnDoorbells.create({ maxPorts: 32, maxWaiters: 2 });
  db.bind(BACK_PORT, BACK_WAITER);
  db.bind(FRONT_PORT, FRONT_WAITER);
  const control = new SharedArrayBuffer(4);
  new Int32Array(control)[0] = planTotal(plan);
  const ring: RingShared = { sab: sring.pages[0]!.buffer as SharedArrayBuffer, order, doorbells: db.sab, control };
  const frontCfg: WorkerConfig = { role: 'front', variant: 'msgpack', plan, tuning, ring };
  const backCfg: WorkerConfig = { role: 'back', variant: 'msgpack', plan, tuning, ring };

  let dir: string | undefined;
  let sink: SinkWorkerHandle | undefined;
  try {
    if (withLog) {
      dir = await mkdtemp(join(tmpdir(), 'pvsim-bench-eventlog-ring-'));
      sink = await startSinkWorker({ dir, header: { runId: `bench-eventlog-ring-${process.pid}`, meta: { bench: 'eventlog', part: 'ring' } } });
      backCfg.log = await sink.channel('ring-back', 1, logOrder);
      frontCfg.log = await sink.channel('ring-front', 2, logOrder);
    }
    const back = spawnWorker<BackResult>(ringWorkerUrl, backCfg, 'ring back');
    let front: ReturnType<typeof spawnWorker<FrontResult>> | undefined;
    const killAll = async () => {
      await Promise.all([back.worker.terminate(), front?.worker.terminate()]);
    };
    try {
      await withTimeout(back.ready, TIMEOUT_MS, 'ring back start', killAll);
      front = spawnWorker<FrontResult>(ringWorkerUrl, frontCfg, 'ring front');
      const [f, b] = await withTimeout(Promise.all([front.result, back.result]), TIMEOUT_MS, 'ring round', killAll);
      if (b.served !== f.sent) throw new Error(`ring: back served ${b.served}, front sent ${f.sent}`);
      const codes = await withTimeout(Promise.all([front.exited, back.exited]), 5_000, 'ring workers exit', killAll);
      if (codes.some((c) => c !== 0)) throw new Error(`ring: workers exited with codes ${codes.join(', ')}`);
      const out: RingRound = { log: withLog, tputPerSec: (f.tputN / f.tputMs) * 1000, tputMs: f.tputMs };
      if (sink) {
        const fl = f.log;
        const bl = b.log;
        if (!fl || !bl) throw new Error('ring: log on, but a ring end reported no log counts');
        const t = performance.now();
        const stats = await withTimeout(sink.close(), TIMEOUT_MS, 'ring sink close');
        const closeMs = performance.now() - t;
        sink = undefined;
        out.events = {
          front: fl.emitted,
          back: bl.emitted,
          dropped: fl.dropped + bl.dropped,
          sinkRecords: stats.records,
          closeMs,
          accounting: accountEvents([fl, bl], stats),
          stats,
        };
      }
      return out;
    } catch (e) {
      await killAll();
      throw e;
    }
  } finally {
    if (sink) await sink.close().catch(() => {});
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}
