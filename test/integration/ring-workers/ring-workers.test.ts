/**
 * Two real worker threads, one frontend and one backend, move 10^6 msgpack messages through a
 * 4-page ring with event-channel doorbells. The backend checks every sequence number (no loss,
 * duplicate or reordering) and payload; the frontend checks every response. The frontend goes
 * quiet at random so the backend idles in Atomics.waitAsync between bursts.
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { EvtchnDoorbells, allocateRingPages, SharedRing } from '@pvsim/ring';

const peerScript = fileURLToPath(new URL('./peer.mjs', import.meta.url));

function runPeer(workerData: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const w = new Worker(peerScript, { workerData });
    w.once('message', (m) => {
      void w.terminate();
      if (m.ok) resolve(m);
      else reject(new Error(m.error));
    });
    w.once('error', reject);
    w.once('exit', (code) => code !== 0 && reject(new Error(`worker exited with ${code}`)));
  });
}

describe('ring between two worker threads', () => {
  it('moves 10^6 messages with no loss, duplicate or reordering', async () => {
    const pages = allocateRingPages(2);
    const slotBytes = 64;
    new SharedRing(pages, slotBytes).init();
    const frontBells = EvtchnDoorbells.create({ maxPorts: 32, maxWaiters: 1 });
    const backBells = EvtchnDoorbells.create({ maxPorts: 32, maxWaiters: 1 });
    const frontPort = 5;
    const backPort = 9;
    frontBells.bind(frontPort, 0);
    backBells.bind(backPort, 0);
    const common = {
      pages,
      slotBytes,
      frontBells: frontBells.sab,
      backBells: backBells.sab,
      frontPort,
      backPort,
      total: 1_000_000,
      seed: 7,
    };
    const [front, back] = await Promise.all([runPeer({ ...common, role: 'front' }), runPeer({ ...common, role: 'back' })]);
    expect(front).toMatchObject({ sent: 1_000_000, received: 1_000_000 });
    expect(back).toMatchObject({ received: 1_000_000 });
    // The backend really idled and slept between bursts.
    expect(back.sleeps as number).toBeGreaterThan(10);
    expect(front.idles as number).toBeGreaterThan(10);
  }, 120_000);
});
