/**
 * xenstored's thread as the launcher runs it: the daemon serving the domains' rings, plus the
 * xs_wire Unix socket for dom0 tools (`XENSTORED_PATH=… xenstore-ls`). The socket server needs
 * the store object, so it runs here, in the thread that owns the store. Same command protocol as
 * @pvsim/xenstore's own worker (`xsdHandle`).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EventWriter, nullEmitter } from '@pvsim/eventlog';
import { RealClock } from '@pvsim/runtime';
import { XenstoredDaemon, startXsSocketServer, xsdHandle, type XsdCommand, type XsdReply } from '@pvsim/xenstore';
import type { XenstoredLauncherData } from './protocol.js';

const data = workerData as XenstoredLauncherData;
const port = parentPort!;
try {
  const log = data.log;
  const events = log ? new EventWriter(log, new RealClock(log.hub.epochMs)) : nullEmitter();
  const seq = log ? new BigInt64Array(log.hub.seq) : null;
  const daemon = new XenstoredDaemon({
    events,
    ...(data.quota ? { quota: data.quota } : {}),
    ...(seq ? { seqNow: () => Number(Atomics.load(seq, 0)) - 1 } : {}),
  });
  daemon.start();
  const server = await startXsSocketServer(daemon.store, data.socketPath);
  port.on('message', (m: { type: 'command'; id: number; cmd: XsdCommand }) => {
    if (m?.type !== 'command') return;
    let reply: XsdReply;
    try {
      reply = xsdHandle(daemon, m.cmd);
    } catch (e) {
      reply = { ok: false, error: `xenstored bug: ${e instanceof Error ? e.message : String(e)}` };
    }
    if (reply.ok && reply.done) {
      void server
        .close()
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
