/** Entry point of the hypervisor daemon's thread (see daemon.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { EventWriter, nullEmitter } from '@pvsim/eventlog';
import { RealClock } from '@pvsim/runtime';
import { HypervisorDaemon, type HvCommand, type HypervisorWorkerData } from './daemon.js';

const data = workerData as HypervisorWorkerData;
const port = parentPort!;
try {
  const events = data.log ? new EventWriter(data.log, new RealClock(data.log.hub.epochMs)) : nullEmitter();
  const daemon = new HypervisorDaemon(data.spec, events, data.dom0);
  port.on('message', (m: { type: 'command'; id: number; cmd: HvCommand }) => {
    if (m?.type !== 'command') return;
    let reply;
    try {
      reply = daemon.handle(m.cmd);
    } catch (e) {
      reply = { ok: false as const, error: `hypervisor bug: ${e instanceof Error ? e.message : String(e)}` };
    }
    port.postMessage({ type: 'reply', id: m.id, reply });
  });
  port.postMessage({ type: 'ready' });
} catch (e) {
  port.postMessage({ type: 'error', error: e instanceof Error ? e.message : String(e) });
}
