/**
 * One guest with one block device, blkfront and blkback in this thread (as
 * test/integration/blk/blk-path.test.ts): the hypervisor, dom0's kernel, an in-process XenStore,
 * both xenbus handshakes, and event channels routed by wrapping `evtchnSend` (a send on one side
 * runs the other side's interrupt()/kick() in a microtask).
 */
import { BlkbackDevice, MemoryDisk, kernelRingMapper, runBlkbackXenbus } from '@pvsim/blkback';
import { Blkfront } from '@pvsim/blkfront';
import type { EventEmitter, EventKind, EventPayloads } from '@pvsim/eventlog';
import { Hypervisor, createHypervisorSpec, routeEvtchnSend } from '@pvsim/hypervisor';
import { Kernel, createPageTableSpec } from '@pvsim/kernel';
import type { Clock } from '@pvsim/runtime';
import { LocalXsClient, XenStore, xenbusAddDevice } from '@pvsim/xenstore';
import type { Policy } from './load.js';

export const VDEV = 51712;

/** Forwards to `inner`, counting every event and the ones that mean a broken memory contract. */
export class TapEmitter implements EventEmitter {
  events = 0;
  memFault = 0;
  memLeak = 0;
  constructor(private readonly inner: EventEmitter) {}
  emit<K extends EventKind>(kind: K, payload: EventPayloads[K], dom?: number): number {
    this.events++;
    if (kind === 'mem.fault') this.memFault++;
    else if (kind === 'mem.leak') this.memLeak++;
    return this.inner.emit(kind, payload, dom);
  }
}

export interface WorldOptions {
  policy: Policy;
  diskMiB: number;
  /** Data pages the guest gives blkfront (bounds the segments in flight). */
  dataPages: number;
  /** Emitter of the toolstack, dom0 (hypervisor client, kernel, blkback, its XenStore client). */
  dom0Events: EventEmitter;
  /** Emitter of the guest (hypervisor client, blkfront, its XenStore client). */
  guestEvents: EventEmitter;
  clock: Clock;
  /** blkback requests per ring pass (BlkbackOptions.batchMax). */
  batchMax: number;
}

export interface World {
  front: Blkfront;
  dev: BlkbackDevice;
  disk: MemoryDisk;
  /** Close the device (both handshakes to Closed), check no mapping is left, destroy the guest. Returns problems. */
  teardown(): Promise<string[]>;
}

export async function buildWorld(o: WorldOptions): Promise<World> {
  const cleanups: (() => unknown)[] = [];
  const cleanup = async () => {
    for (const f of cleanups.splice(0).reverse()) await f();
  };
  try {
    const hv = new Hypervisor(createHypervisorSpec({ frames: 4096, maxDomains: 4, gfnsPerDomain: 1024, grantEntries: 1024, maptrackEntries: 1024, evtchnPorts: 64 }));
    if (hv.toolstack(o.dom0Events).domainCreate({ domid: 0, name: 'dom0', memoryPages: 256, privileged: true }) !== 0) throw new Error('dom0 create failed');
    const dom0 = hv.client(0, o.dom0Events);
    const gid = dom0.domainCreate({ name: 'guest', memoryPages: o.dataPages + 16 });
    if (gid <= 0) throw new Error(`guest create failed: ${gid}`);
    const guest = hv.client(gid, o.guestEvents);
    const clock = o.clock;
    const kernel = new Kernel({ client: dom0, pages: createPageTableSpec(0, 1024), clock, events: o.dom0Events });
    const store = new XenStore();
    const xs = (dom: number, events: EventEmitter) => {
      const c = new LocalXsClient(store, dom, { events });
      cleanups.push(() => c.close());
      return c;
    };
    const dirs = await xenbusAddDevice(xs(0, o.dom0Events), { type: 'vbd', frontDom: gid, backDom: 0, devid: VDEV });
    const disk = new MemoryDisk((o.diskMiB * 1024 * 1024) / 512);
    // Fault every page of the disk in now (a fresh ArrayBuffer is lazily zeroed memory): the
    // timed window measures a resident memory disk, not the OS's first-touch page faults.
    for (let i = 0; i < disk.bytes.length; i += 4096) disk.bytes[i] = 0;
    let front: Blkfront | null = null;
    const dev = new BlkbackDevice({
      client: routeEvtchnSend(dom0, () => front?.interrupt()),
      kernel,
      clock,
      events: o.dom0Events,
      disk,
      policy: o.policy,
      batchMax: o.batchMax,
      ringMapper: kernelRingMapper(kernel),
    });
    const back = await runBlkbackXenbus(xs(0, o.dom0Events), dirs, dev, gid, { clock });
    cleanups.push(() => back.stop());
    const nPages = 1 + o.dataPages;
    front = await Blkfront.start({
      client: routeEvtchnSend(guest, () => dev.kick()),
      xs: xs(gid, o.guestEvents),
      clock,
      events: o.guestEvents,
      frontDir: dirs.frontDir,
      backDir: dirs.backDir,
      backendDomid: 0,
      vdev: VDEV,
      gfns: Array.from({ length: nPages }, (_, i) => i),
      grantRefs: Array.from({ length: nPages }, (_, i) => 8 + i),
    });
    const f = front;
    cleanups.push(() => f.stopTimers());
    await f.waitConnected(5000);
    if (!dev.connected) throw new Error('blkback not connected after the handshake');

    const teardown = async (): Promise<string[]> => {
      const problems: string[] = [];
      try {
        await f.close(5000);
        for (let i = 0; i < 500 && dev.connected; i++) await new Promise((r) => setTimeout(r, 2));
        if (dev.connected) problems.push('blkback still connected after close');
        const st = f.stats();
        if (st.inFlight !== 0 || st.waiting !== 0) problems.push(`blkfront: ${st.inFlight} in flight, ${st.waiting} waiting at close`);
        // The ring page's end of access is deferred while blkback still maps it (it unmaps after
        // our Closing): retried on blkfront's 1 s timer, not waited for here. Data pages: never.
        if (st.deferredGrants > 1) problems.push(`blkfront: ${st.deferredGrants} grants still deferred at close (1 = the ring page is expected)`);
        const held = dom0.mappingsHeld();
        if (held !== 0) problems.push(`dom0 still holds ${held} grant mappings at the end`);
        if (dev.inflight !== 0) problems.push(`blkback: ${dev.inflight} requests in flight at the end`);
        const rc = dom0.domainDestroy(gid);
        if (rc !== 0) problems.push(`domainDestroy(guest) = ${rc}`);
      } finally {
        await cleanup();
      }
      return problems;
    };
    return { front: f, dev, disk, teardown };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
