/**
 * Starting the sink in its own worker thread, from the launcher's thread.
 *
 *   const log = await startSinkWorker({ dir, header });
 *   const spec = await log.channel('blkback', 0);   // attached before anyone can emit on it
 *   … post `spec` to a daemon thread, which builds an `EventWriter` on it …
 *   const stats = await log.close();
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { assert } from '@pvsim/abi';
import { createLogChannel, createLogHub, type LogChannelSpec, type LogHubSpec } from './channel.js';
import type { SegmentHeader } from './format.js';
import type { SinkStats } from './sink.js';

export interface SinkWorkerData {
  dir: string;
  hub: LogHubSpec;
  header: Omit<SegmentHeader, 'segment' | 'createdAt' | 'format'>;
  segmentBytes?: number;
  gapTimeoutMs?: number;
  pollMs?: number;
  flushMs?: number;
}

export type ParentToSink = { type: 'attach'; spec: LogChannelSpec } | { type: 'stats' } | { type: 'close' };
export type SinkToParent =
  | { type: 'attached'; id: number }
  | { type: 'stats'; stats: SinkStats }
  | { type: 'closed'; stats: SinkStats }
  | { type: 'error'; message: string };

export interface SinkWorkerHandle {
  readonly hub: LogHubSpec;
  /** The sink's thread (for `worker.performance.eventLoopUtilization()`). */
  readonly worker: Worker;
  /** Create a writer channel and wait until the sink drains it. */
  channel(name: string, dom: number, order?: number): Promise<LogChannelSpec>;
  stats(): Promise<SinkStats>;
  /** Final drain, footers written, thread gone. */
  close(): Promise<SinkStats>;
}

export async function startSinkWorker(opts: Omit<SinkWorkerData, 'hub'> & { hub?: LogHubSpec }): Promise<SinkWorkerHandle> {
  const hub = opts.hub ?? createLogHub();
  const data: SinkWorkerData = { ...opts, hub };
  const worker = new Worker(fileURLToPath(new URL('./sink-worker.js', import.meta.url)), { workerData: data, name: 'pvsim-log-sink' });
  let nextId = 1;
  let failure: Error | null = null;
  const waiting: { type: SinkToParent['type']; resolve: (m: SinkToParent) => void; reject: (e: Error) => void }[] = [];
  const fail = (e: Error) => {
    failure = e;
    for (const w of waiting.splice(0)) w.reject(e);
  };
  worker.on('message', (m: SinkToParent) => {
    if (m.type === 'error') return fail(new Error(`log sink failed: ${m.message}`));
    const i = waiting.findIndex((w) => w.type === m.type);
    if (i >= 0) waiting.splice(i, 1)[0]!.resolve(m);
  });
  worker.on('error', (e) => fail(e));
  worker.on('exit', (code) => {
    if (waiting.length > 0) fail(new Error(`log sink thread exited (code ${code}) with requests outstanding`));
  });
  const request = <T extends SinkToParent['type']>(msg: ParentToSink, reply: T) =>
    new Promise<Extract<SinkToParent, { type: T }>>((resolve, reject) => {
      if (failure) return reject(failure);
      waiting.push({ type: reply, resolve: resolve as (m: SinkToParent) => void, reject });
      worker.postMessage(msg);
    });
  return {
    hub,
    worker,
    async channel(name, dom, order) {
      const spec = createLogChannel(hub, nextId++, name, dom, order);
      const r = await request({ type: 'attach', spec }, 'attached');
      assert(r.id === spec.id, 'sink attached another channel');
      return spec;
    },
    stats: async () => (await request({ type: 'stats' }, 'stats')).stats,
    close: async () => (await request({ type: 'close' }, 'closed')).stats,
  };
}
