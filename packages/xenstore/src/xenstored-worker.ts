/**
 * Entry point of xenstored's thread (see daemon.ts): the daemon serving the domains' rings and,
 * when `socketPath` is given, the xs_wire Unix socket for dom0 tools — it runs here because the
 * socket server needs the store object, which lives in this thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EventWriter, nullEmitter } from '@pvsim/eventlog';
import { RealClock } from '@pvsim/runtime';
import { XenstoredDaemon, xsdHandle, type XenstoredWorkerData, type XsdCommand, type XsdReply } from './daemon.js';
import { startXsSocketServer } from './server.js';

const data = workerData as XenstoredWorkerData;
const port = parentPort!;
try {
  const log = data.log;
  const events = log ? new EventWriter(log, new RealClock(log.hub.epochMs)) : nullEmitter();
  // The run-wide counter holds the next seq: everything this thread emitted is below it.
  const seq = log ? new BigInt64Array(log.hub.seq) : null;
  const daemon = new XenstoredDaemon({
    events,
    ...(data.quota ? { quota: data.quota } : {}),
    ...(seq ? { seqNow: () => Number(Atomics.load(seq, 0)) - 1 } : {}),
  });
  // start() holds the event loop: a pending Atomics.waitAsync alone would let the thread exit.
  daemon.start();
  // The socket shares the daemon's store and hooks: one dispatcher, whichever transport.
  const server = data.socketPath ? await startXsSocketServer(daemon.store, data.socketPath, { hooks: daemon.hooks }) : null;
  port.on('message', (m: { type: 'command'; id: number; cmd: XsdCommand }) => {
    if (m?.type !== 'command') return;
    let reply: XsdReply;
    try {
      reply = xsdHandle(daemon, m.cmd);
    } catch (e) {
      reply = { ok: false, error: `xenstored bug: ${e instanceof Error ? e.message : String(e)}` };
    }
    if (reply.ok && reply.done) {
      void (server ? server.close() : Promise.resolve())
        .then(() => daemon.stop())
        .then(() => port.postMessage({ type: 'reply', id: m.id, reply }));
      return;
    }
    port.postMessage({ type: 'reply', id: m.id, reply });
  });
  port.postMessage({ type: 'ready' });
} catch (e) {
  port.postMessage({ type: 'error', error: e instanceof Error ? e.message : String(e) });
}
