// An emitting daemon thread for eventlog-threads.test.ts (plain JS on the built packages).
import { parentPort, workerData } from 'node:worker_threads';
import { EventWriter, declareEvent } from '@pvsim/eventlog';
import { RealClock } from '@pvsim/runtime';

declareEvent({ kind: 'test.step', version: 1 });
const { spec, mode, count, lock, state } = workerData;
const writer = new EventWriter(spec, new RealClock(spec.hub.epochMs), { fullWaitUs: 50_000 });
const lockWord = new Int32Array(lock);
const stateWord = new Int32Array(state);

if (mode === 'ordered') {
  // Change shared state and emit under one lock, as a hypercall does: the log's order must
  // then be the order in which the state changed.
  for (let i = 0; i < count; i++) {
    while (Atomics.compareExchange(lockWord, 0, 0, 1) !== 0);
    const v = Atomics.add(stateWord, 0, 1);
    if (!writer.emit('test.step', { v, i })) throw new Error('event dropped');
    Atomics.store(lockWord, 0, 0);
  }
  parentPort.postMessage({ done: true, emitted: writer.emitted, dropped: writer.dropped });
} else {
  for (let i = 0; i < count; i++) writer.emit('test.step', { v: -1, i });
  parentPort.postMessage({ emitted: writer.emitted });
  // Never return: the test terminates this thread abruptly.
  for (;;);
}
