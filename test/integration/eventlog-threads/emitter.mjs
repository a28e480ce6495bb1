// An emitting daemon thread for eventlog-threads.test.ts (plain JS on the built packages).
import { parentPort, workerData } from 'node:worker_threads';
import { EventWriter, declareEvent } from '@pvsim/eventlog';
import { RealClock } from '@pvsim/runtime';

declareEvent({ kind: 'test.step', version: 1 });
declareEvent({ kind: 'test.kv.set', version: 1 });
declareEvent({ kind: 'test.kv.del', version: 1 });
declareEvent({ kind: 'test.map', version: 1 });
const { spec, mode, count, lock, state, seed = 1, silentAt = -1 } = workerData;
const writer = new EventWriter(spec, new RealClock(spec.hub.epochMs), { fullWaitUs: 50_000 });
const lockWord = new Int32Array(lock);
const stateWord = new Int32Array(state);

if (mode === 'ordered') {
  // Change shared state and emit under one lock, as a hypercall does: the log's order must
  // then be the order in which the state changed.
  for (let i = 0; i < count; i++) {
    while (Atomics.compareExchange(lockWord, 0, 0, 1) !== 0);
    const v = Atomics.add(stateWord, 0, 1);
    if (writer.emit('test.step', { v, i }) < 0) throw new Error('event dropped');
    Atomics.store(lockWord, 0, 0);
  }
  parentPort.postMessage({ done: true, emitted: writer.emitted, dropped: writer.dropped });
} else if (mode === 'state') {
  // A daemon with live state: every change is emitted, and the entry remembers the seq of the
  // event that last changed it. At `silentAt` it changes state without emitting (a bug replay
  // must find).
  let rng = seed >>> 0;
  const rand = (n) => ((rng = (Math.imul(rng, 1664525) + 1013904223) >>> 0) % n);
  const live = new Map();
  for (let i = 0; i < count; i++) {
    if (i === silentAt && live.size > 0) {
      // Change an existing entry and say nothing: the entry still names its last real event.
      const [key, prev] = live.entries().next().value;
      live.set(key, { value: { n: i, silent: true }, seq: prev.seq });
      continue;
    }
    const key = `d${spec.dom}/k${rand(50)}`;
    if (rand(4) === 0 && live.has(key)) {
      writer.emit('test.kv.del', { key });
      live.delete(key);
    } else {
      const value = { n: i, w: rand(1000) };
      const seq = writer.emit('test.kv.set', { key, value });
      live.set(key, { value, seq });
    }
    if (i % 97 === 0) writer.emit('test.map', { gref: 8 + (i % 5), granter: spec.dom, handle: i });
  }
  parentPort.postMessage({ done: true, emitted: writer.emitted, dropped: writer.dropped, live: [...live] });
} else {
  for (let i = 0; i < count; i++) writer.emit('test.step', { v: -1, i });
  parentPort.postMessage({ emitted: writer.emitted });
  // Never return: the test terminates this thread abruptly.
  for (;;);
}
