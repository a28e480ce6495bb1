// A dom0 backend daemon thread (blkback-shaped) for xenstored.test.ts. Plain JS on purpose: it
// loads the built packages exactly as a daemon would, and is handed its capabilities — a
// xenstore connection and a log channel — at start.
import { parentPort, workerData } from 'node:worker_threads';
import { EventWriter } from '@pvsim/eventlog';
import { RealClock } from '@pvsim/runtime';
import { XenbusState, XsRingClient, runBackendHandshake } from '@pvsim/xenstore';

const { spec, log, frontDir, backDir } = workerData;
const report = [];
try {
  const client = new XsRingClient(spec, { events: new EventWriter(log, new RealClock(log.hub.epochMs)) });
  const back = await runBackendHandshake(client, { backDir, frontDir }, {
    features: () => ({ 'feature-flush-cache': '1', 'feature-persistent': '1', 'max-ring-page-order': '0' }),
    async connect(front) {
      // The frontend's keys are the guest's: validate before use.
      if (!/^\d+$/.test(front['ring-ref']) || !/^\d+$/.test(front['event-channel'])) throw new Error(`guest gave us ${JSON.stringify(front)}`);
      report.push(`map ring-ref ${front['ring-ref']}, bind event-channel ${front['event-channel']}`);
      return { sectors: '2097152', info: '0', 'sector-size': '512', 'physical-sector-size': '512' };
    },
    async disconnect() {
      report.push('unmap, unbind');
    },
  });
  await back.waitForState(XenbusState.Connected, 20_000);
  parentPort.postMessage({ type: 'connected', report: [...report] });
  await back.waitForState(XenbusState.Closed, 20_000);
  await back.stop();
  client.close();
  parentPort.postMessage({ type: 'closed', state: back.state, report, errors: back.errors });
} catch (e) {
  parentPort.postMessage({ type: 'error', error: String(e?.stack ?? e) });
}
