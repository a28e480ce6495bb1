/**
 * Part 1's emitting thread: an `EventWriter` on its own channel (default `fullWaitUs`), `n`
 * `bench.grant` events as fast as it can. Before that, the same loop without `emit` (it only
 * builds the payload object and lets it escape), so the report can subtract the payload's cost.
 *
 * Both loops are timed per chunk of `chunk` events: the sum is the wall time spent in the loop
 * (preemption included: 3 emitters and a sink share 2 cores), the median chunk approximates
 * the CPU cost. All emitters start together on a shared flag, after every one is ready.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EventWriter, type LogChannelSpec } from '@pvsim/eventlog';
import { RealClock } from '@pvsim/runtime';
import { grantPayload } from './events.js';
import { absNowMs, type WorkerReply } from './spawn.js';

export interface EmitterConfig {
  spec: LogChannelSpec;
  /** Events to attempt. */
  n: number;
  /** Events per timed chunk. */
  chunk: number;
  /** `granter` field of the payloads (a domain id). */
  granter: number;
  /** Int32Array[1]: 0 until the parent says go. */
  go: SharedArrayBuffer;
}

export interface EmitterResult {
  type: 'result';
  n: number;
  emitted: number;
  dropped: number;
  /** Bare loop (payload only): total ms and ms per chunk. */
  bareMs: number;
  bareChunkMs: Float64Array;
  /** Emit loop (payload + emit): total ms and ms per chunk. */
  emitMs: number;
  emitChunkMs: Float64Array;
  /** Absolute ms (timeOrigin-based) of the first emit and after the last. */
  firstEmitAbsMs: number;
  lastEmitAbsMs: number;
  sink: number;
}

function bareLoop(n: number, chunk: number, granter: number, out: Float64Array): { ms: number; sink: number } {
  const keep: object[] = new Array<object>(256).fill({});
  let sink = 0;
  let total = 0;
  for (let c = 0, i = 0; i < n; c++) {
    const end = Math.min(n, i + chunk);
    const t0 = performance.now();
    for (; i < end; i++) {
      const p = grantPayload(i, granter);
      keep[i & 255] = p;
      sink += p.gref;
    }
    const dt = performance.now() - t0;
    out[c] = dt;
    total += dt;
  }
  return { ms: total, sink: sink + keep.length };
}

function emitLoop(w: EventWriter, n: number, chunk: number, granter: number, out: Float64Array): number {
  let total = 0;
  for (let c = 0, i = 0; i < n; c++) {
    const end = Math.min(n, i + chunk);
    const t0 = performance.now();
    for (; i < end; i++) w.emit('bench.grant', grantPayload(i, granter));
    const dt = performance.now() - t0;
    out[c] = dt;
    total += dt;
  }
  return total;
}

function run(cfg: EmitterConfig): EmitterResult {
  const w = new EventWriter(cfg.spec, new RealClock(cfg.spec.hub.epochMs));
  const chunks = Math.ceil(cfg.n / cfg.chunk);
  const bareChunkMs = new Float64Array(chunks);
  const bare = bareLoop(cfg.n, cfg.chunk, cfg.granter, bareChunkMs);
  parentPort!.postMessage({ type: 'ready' } satisfies WorkerReply<EmitterResult>);
  const go = new Int32Array(cfg.go);
  while (Atomics.load(go, 0) === 0) Atomics.wait(go, 0, 0, 1000);
  const emitChunkMs = new Float64Array(chunks);
  const firstEmitAbsMs = absNowMs();
  const emitMs = emitLoop(w, cfg.n, cfg.chunk, cfg.granter, emitChunkMs);
  const lastEmitAbsMs = absNowMs();
  return {
    type: 'result',
    n: cfg.n,
    emitted: w.emitted,
    dropped: w.dropped,
    bareMs: bare.ms,
    bareChunkMs,
    emitMs,
    emitChunkMs,
    firstEmitAbsMs,
    lastEmitAbsMs,
    sink: bare.sink,
  };
}

if (parentPort) {
  try {
    const r = run(workerData as EmitterConfig);
    parentPort.postMessage(r satisfies WorkerReply<EmitterResult>, [r.bareChunkMs.buffer as ArrayBuffer, r.emitChunkMs.buffer as ArrayBuffer]);
  } catch (e) {
    parentPort.postMessage({ type: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) } satisfies WorkerReply<EmitterResult>);
  }
}
