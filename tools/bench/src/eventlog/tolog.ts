/**
 * Part 1: `emitters` threads emitting as fast as they can into one sink worker writing to disk;
 * part 3: reading that log back with `readEventBatches`.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readEventBatches, startSinkWorker, type SinkStats, type SinkWorkerHandle } from '@pvsim/eventlog';
import type { EmitterConfig, EmitterResult } from './emitter.js';
import { spawnWorker, withTimeout, absNowMs, type Spawned } from './spawn.js';

const emitterUrl = new URL('./emitter.js', import.meta.url);
const TIMEOUT_MS = 180_000;
export const EMIT_CHUNK = 1024;

export interface ToLogRound {
  emitters: EmitterResult[];
  stats: SinkStats;
  /** Absolute ms: first emit of any emitter, last emitter done, sink's close() resolved. */
  firstEmitAbsMs: number;
  lastEmitAbsMs: number;
  closedAbsMs: number;
  /** close() call → resolved (final drain, footers, fsync, thread gone). */
  closeMs: number;
}

export async function runToLog(dir: string, emitters: number, n: number, logOrder: number): Promise<ToLogRound> {
  let sink: SinkWorkerHandle | undefined = await startSinkWorker({
    dir,
    header: { runId: `bench-eventlog-${process.pid}-${Date.now()}`, meta: { bench: 'eventlog', part: 'emit', emitters, events: n } },
  });
  const workers: Spawned<EmitterResult>[] = [];
  const killAll = async () => {
    await Promise.all(workers.map((w) => w.worker.terminate()));
  };
  try {
    const go = new SharedArrayBuffer(4);
    for (let i = 0; i < emitters; i++) {
      const spec = await sink.channel(`emitter-${i + 1}`, i + 1, logOrder);
      const cfg: EmitterConfig = { spec, n, chunk: EMIT_CHUNK, granter: i + 1, go };
      workers.push(spawnWorker<EmitterResult>(emitterUrl, cfg, `emitter ${i + 1}`));
    }
    await withTimeout(Promise.all(workers.map((w) => w.ready)), TIMEOUT_MS, 'emitters start', killAll);
    const g = new Int32Array(go);
    Atomics.store(g, 0, 1);
    Atomics.notify(g, 0);
    const results = await withTimeout(Promise.all(workers.map((w) => w.result)), TIMEOUT_MS, 'emitters', killAll);
    const tClose = absNowMs();
    const stats = await withTimeout(sink.close(), TIMEOUT_MS, 'sink close');
    const closedAbsMs = absNowMs();
    sink = undefined;
    await withTimeout(Promise.all(workers.map((w) => w.exited)), 5_000, 'emitters exit', killAll);
    return {
      emitters: results,
      stats,
      firstEmitAbsMs: Math.min(...results.map((r) => r.firstEmitAbsMs)),
      lastEmitAbsMs: Math.max(...results.map((r) => r.lastEmitAbsMs)),
      closedAbsMs,
      closeMs: closedAbsMs - tClose,
    };
  } catch (e) {
    await killAll();
    throw e;
  } finally {
    if (sink) await sink.close().catch(() => {});
  }
}

export interface ReadRound {
  ms: number;
  records: number;
  /** `bench.grant` records read. */
  benchEvents: number;
  batches: number;
  /** Bytes of the segment files. */
  bytes: number;
  segments: number;
  sink: number;
}

/** Total size of the log's segment files. */
export async function logBytes(dir: string): Promise<{ bytes: number; segments: number }> {
  let bytes = 0;
  let segments = 0;
  for (const f of await readdir(dir)) {
    bytes += (await stat(join(dir, f))).size;
    segments++;
  }
  return { bytes, segments };
}

/** Read the whole log, touching every record as a consumer would (kind, seq, one payload field). */
export async function readBack(dir: string): Promise<ReadRound> {
  const t0 = performance.now();
  let records = 0;
  let benchEvents = 0;
  let batches = 0;
  let sink = 0;
  for await (const batch of readEventBatches(dir)) {
    batches++;
    records += batch.length;
    for (const e of batch) {
      if (e.kind === 'bench.grant') {
        benchEvents++;
        sink += (e.payload as { gref: number }).gref;
      }
      sink += e.seq & 1;
    }
  }
  const ms = performance.now() - t0;
  return { ms, records, benchEvents, batches, ...(await logBytes(dir)), sink };
}
