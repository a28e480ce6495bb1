// A guest's frontend daemon thread (blkfront-shaped) for xenstored.test.ts: handshake to
// Connected, then, when told, teardown.
import { parentPort, workerData } from 'node:worker_threads';
import { EventWriter } from '@pvsim/eventlog';
import { RealClock } from '@pvsim/runtime';
import { XenbusState, XsRingClient, runFrontendHandshake } from '@pvsim/xenstore';

const { spec, log, frontDir, backDir } = workerData;
const report = [];
try {
  const client = new XsRingClient(spec, { events: new EventWriter(log, new RealClock(log.hub.epochMs)) });
  // The guest's own view: relative paths are under /local/domain/<dom>.
  report.push(`name ${await client.read('name')}`);
  const front = await runFrontendHandshake(client, { frontDir, backDir }, {
    async setup(backend) {
      report.push(`backend features: flush-cache ${await backend.read('feature-flush-cache')}, persistent ${await backend.read('feature-persistent')}`);
      return { 'ring-ref': '8', 'event-channel': '5', protocol: 'x86_64-abi', 'feature-persistent': '1' };
    },
    backendKeys: ['sectors', 'info', 'sector-size'],
    async connect(p) {
      report.push(`disk of ${p.sectors} sectors of ${p['sector-size']} bytes`);
    },
    async disconnect() {
      report.push('free ring');
    },
  });
  await front.waitForState(XenbusState.Connected, 20_000);
  parentPort.postMessage({ type: 'connected', report: [...report] });
  parentPort.once('message', async (m) => {
    try {
      if (m?.type !== 'close') throw new Error(`unexpected ${JSON.stringify(m)}`);
      await front.close(20_000);
      await front.stop();
      client.close();
      parentPort.postMessage({ type: 'closed', state: front.state, report, errors: front.errors });
    } catch (e) {
      parentPort.postMessage({ type: 'error', error: String(e?.stack ?? e) });
    }
  });
} catch (e) {
  parentPort.postMessage({ type: 'error', error: String(e?.stack ?? e) });
}
