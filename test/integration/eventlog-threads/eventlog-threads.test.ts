/**
 * The event log across real worker threads: the sink in its own thread, three emitters that
 * change shared state under a lock and emit, and an emitter killed right after emitting.
 */
import { Worker } from 'node:worker_threads';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { readEvents, startSinkWorker, type EventRecord } from '@pvsim/eventlog';

const emitter = fileURLToPath(new URL('./emitter.mjs', import.meta.url));
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function runEmitter(workerData: Record<string, unknown>, onFirstMessage?: (w: Worker) => void): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const w = new Worker(emitter, { workerData });
    w.once('message', (m) => {
      onFirstMessage?.(w);
      resolve(m);
    });
    w.once('error', reject);
  });
}

async function collect(dir: string): Promise<EventRecord[]> {
  const out: EventRecord[] = [];
  for await (const e of readEvents(dir)) out.push(e);
  return out;
}

describe('event log across worker threads', () => {
  it('writes three threads’ events in one total order consistent with the state changes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvsim-log-'));
    dirs.push(dir);
    const log = await startSinkWorker({ dir, header: { runId: 'order', seed: 3 } });
    const lock = new SharedArrayBuffer(4);
    const state = new SharedArrayBuffer(4);
    const count = 50_000;
    const specs = await Promise.all([1, 2, 3].map((d) => log.channel(`emitter${d}`, d)));
    const results = await Promise.all(specs.map((spec) => runEmitter({ spec, mode: 'ordered', count, lock, state })));
    for (const r of results) expect(r).toMatchObject({ emitted: count, dropped: 0 });
    const stats = await log.close();
    expect(stats).toMatchObject({ gaps: 0, dropped: 0, corruptParts: 0 });
    const events = await collect(dir);
    expect(events.map((e) => e.seq)).toEqual([...Array(events.length).keys()]);
    const steps = events.filter((e) => e.kind === 'test.step');
    expect(steps.length).toBe(3 * count);
    // The shared counter's values appear in log order: the order the state changed.
    expect(steps.every((e, i) => (e.payload as { v: number }).v === i)).toBe(true);
    // And each thread's own events are in its emit order.
    for (const d of [1, 2, 3]) {
      const mine = steps.filter((e) => e.dom === d).map((e) => (e.payload as { i: number }).i);
      expect(mine).toEqual([...Array(count).keys()]);
    }
    expect(new Set(steps.map((e) => e.thread))).toEqual(new Set(specs.map((s) => s.id)));
  }, 60_000);

  it('loses none of the events a thread emitted before it was terminated abruptly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvsim-log-'));
    dirs.push(dir);
    const log = await startSinkWorker({ dir, header: { runId: 'kill', seed: 4 } });
    const spec = await log.channel('doomed', 7);
    const count = 20_000;
    let killed: Promise<number> | null = null;
    const r = await runEmitter({ spec, mode: 'die', count, lock: new SharedArrayBuffer(4), state: new SharedArrayBuffer(4) }, (w) => {
      killed = w.terminate();
    });
    expect(r).toMatchObject({ emitted: count });
    await killed;
    const stats = await log.close();
    expect(stats).toMatchObject({ gaps: 0, dropped: 0 });
    const steps = (await collect(dir)).filter((e) => e.kind === 'test.step');
    expect(steps.map((e) => (e.payload as { i: number }).i)).toEqual([...Array(count).keys()]);
    expect(steps.every((e) => e.dom === 7)).toBe(true);
  }, 60_000);
});
