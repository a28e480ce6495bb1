/**
 * The sink as its own thread. Started by `startSinkWorker`; talks to its parent with a tiny
 * command protocol (discriminated union): attach a channel, close.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { RealClock, holdEventLoop } from '@pvsim/runtime';
import { LogSink, runSinkLoop } from './sink.js';
import type { SinkToParent, ParentToSink, SinkWorkerData } from './sink-host.js';

const data = workerData as SinkWorkerData;
const port = parentPort!;
const clock = new RealClock(data.hub.epochMs);
const keepAlive = holdEventLoop();
const sink = new LogSink({ dir: data.dir, hub: data.hub, clock, header: data.header, segmentBytes: data.segmentBytes, gapTimeoutMs: data.gapTimeoutMs });
const loop = runSinkLoop(sink, clock, { pollMs: data.pollMs, flushMs: data.flushMs });
const send = (m: SinkToParent) => port.postMessage(m);

port.on('message', (m: ParentToSink) => {
  switch (m.type) {
    case 'attach':
      sink.attach(m.spec);
      send({ type: 'attached', id: m.spec.id });
      break;
    case 'stats':
      send({ type: 'stats', stats: sink.stats });
      break;
    case 'close':
      loop.stop().then(
        (stats) => {
          send({ type: 'closed', stats });
          keepAlive.release();
          port.close();
        },
        (e: unknown) => send({ type: 'error', message: String((e as Error)?.stack ?? e) }),
      );
      break;
  }
});
loop.done.catch((e: unknown) => send({ type: 'error', message: String((e as Error)?.stack ?? e) }));
