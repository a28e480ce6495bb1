/**
 * dom0's block backend thread: one `BlkbackDevice` per virtual disk of every guest, each with
 * its xenbus handshake over this thread's own xenstored ring connection, one kernel (page table,
 * page cache, grant maps) for the thread, and one upcall loop on dom0's doorbells.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { BlkbackDevice, FileDisk, MemoryDisk, kernelRingMapper, runBlkbackXenbus, type BackingDevice } from '@pvsim/blkback';
import { EventWriter, nullEmitter } from '@pvsim/eventlog';
import { Hypervisor } from '@pvsim/hypervisor';
import { Kernel, createPageTableSpec } from '@pvsim/kernel';
import { RealClock, serveCommands } from '@pvsim/runtime';
import { XenbusState, XsRingClient, type BackendEnd } from '@pvsim/xenstore';
import { runUpcallLoop } from './evtloop.js';
import type { DeviceCommand, DeviceReply, Dom0WorkerData } from './protocol.js';

const data = workerData as Dom0WorkerData;
const port = parentPort!;

interface Back {
  dev: BlkbackDevice;
  end: BackendEnd;
  frontDom: number;
  devid: number;
  disk: BackingDevice;
}

async function openDisk(b: Dom0WorkerData['devices'][number]['backing'], readOnly: boolean): Promise<BackingDevice> {
  if (b.kind === 'mem') return new MemoryDisk(Math.floor(b.bytes / 512), 512, readOnly);
  return FileDisk.open(b.path, readOnly || b.sizeBytes === undefined ? { readOnly } : { readOnly, sizeBytes: b.sizeBytes });
}

try {
  const clock = new RealClock(data.log ? data.log.hub.epochMs : undefined);
  const events = data.log ? new EventWriter(data.log, clock) : nullEmitter();
  const hv = new Hypervisor(data.spec);
  const client = hv.client(0, events);
  const kernel = new Kernel({ client, pages: createPageTableSpec(0, data.spec.config.gfnsPerDomain), clock, events });
  const xs = new XsRingClient(data.xs, { events });
  const backs: Back[] = [];
  const errors: string[] = [];
  for (const d of data.devices) {
    const disk = await openDisk(d.backing, d.readOnly);
    const dev = new BlkbackDevice({ client, kernel, clock, events, disk, policy: data.policy, vdev: d.devid, ringMapper: kernelRingMapper(kernel) });
    const end = await runBlkbackXenbus(xs, { backDir: d.backDir, frontDir: d.frontDir }, dev, d.frontDom, { clock });
    backs.push({ dev, end, frontDom: d.frontDom, devid: d.devid, disk });
  }
  const ports = () => {
    const m = new Map<number, () => void>();
    for (const b of backs) if (b.dev.connected && b.dev.localPort >= 0) m.set(b.dev.localPort, () => b.dev.kick());
    return m;
  };
  const loop = runUpcallLoop(client.doorbells, data.waiter, ports, (e) => errors.push(String(e)));

  const handle = async (cmd: DeviceCommand): Promise<DeviceReply> => {
    switch (cmd.type) {
      case 'wait-connected':
        await Promise.all(backs.map((b) => b.end.waitForState(XenbusState.Connected, cmd.timeoutMs)));
        return { ok: true };
      case 'status':
        return {
          ok: true,
          devices: backs.map((b) => ({ frontDom: b.frontDom, devid: b.devid, state: b.end.state, port: b.dev.connected ? b.dev.localPort : -1, inflight: b.dev.inflight, error: b.dev.halted })),
        };
      case 'load':
        return { ok: false, error: 'dom0 blkback runs no load jobs' };
      case 'shutdown': {
        // The frontends close first (drained); each backend follows to Closed once idle.
        await Promise.all(backs.map((b) => b.end.waitForState(XenbusState.Closed, cmd.timeoutMs).catch(() => undefined)));
        for (const b of backs) if (b.dev.connected) await b.dev.disconnectWhenIdle();
        for (const b of backs) await b.end.stop();
        await loop.stop();
        for (const b of backs) await b.disk.close?.();
        xs.close();
        const bad = [...errors, ...backs.flatMap((b) => b.end.errors)];
        return bad.length ? { ok: false, error: bad.join('; ') } : { ok: true };
      }
    }
  };
  serveCommands<DeviceCommand, DeviceReply>(port, handle, (error) => ({ ok: false, error }));
} catch (e) {
  port.postMessage({ type: 'error', error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
}
