/** The handshake against an in-process store: InitWait, connect from the frontend's keys, Connected. */
import { BLKIF_SLOT_BYTES, BlkifFrontendPeer } from '@pvsim/blkif';
import type { EventEmitter } from '@pvsim/eventlog';
import { Hypervisor, P2M_MFN_MASK, createHypervisorSpec } from '@pvsim/hypervisor';
import { Kernel, createPageTableSpec } from '@pvsim/kernel';
import { SharedRing } from '@pvsim/ring';
import { VirtualClock } from '@pvsim/runtime';
import { LocalXsClient, XenStore, XenbusState, xenbusAddDevice, xenbusReadState, xenbusSwitchState } from '@pvsim/xenstore';
import { expect, it } from 'vitest';
import { BlkbackDevice, MemoryDisk, kernelRingMapper, runBlkbackXenbus } from './index.js';

it('xenbus: InitWait, connect from ring-ref/event-channel, Connected with sectors; Closing disconnects', async () => {
  const ev: EventEmitter = { emit: () => 0 };
  const hv = new Hypervisor(createHypervisorSpec({ frames: 1024, maxDomains: 4, gfnsPerDomain: 256, grantEntries: 64, maptrackEntries: 64, evtchnPorts: 32 }));
  hv.toolstack(ev).domainCreate({ domid: 0, name: 'dom0', memoryPages: 32, privileged: true });
  const dom0 = hv.client(0, ev);
  const gid = dom0.domainCreate({ name: 'guest', memoryPages: 32 });
  const guest = hv.client(gid, ev);
  guest.grantForeignAccess(0, 0, 0, false);
  const sring = new SharedRing([hv.s.frame(guest.p2mEntry(0) & P2M_MFN_MASK)], BLKIF_SLOT_BYTES);
  sring.init();
  new BlkifFrontendPeer(0, sring);
  const port = guest.evtchnAllocUnbound(0);
  const clock = new VirtualClock();
  const kernel = new Kernel({ client: dom0, pages: createPageTableSpec(0, 256), clock, events: ev });
  const dev = new BlkbackDevice({ client: dom0, kernel, clock, events: ev, disk: new MemoryDisk(128), policy: 'async', ringMapper: kernelRingMapper(kernel, (m) => hv.s.frame(m)) });
  const store = new XenStore();
  const ts = new LocalXsClient(store, 0, { events: ev });
  const d = { type: 'vbd', frontDom: gid, backDom: 0, devid: 51712 };
  const dirs = await xenbusAddDevice(ts, d);
  expect(dev.vdev).toBe(-1);
  const back = await runBlkbackXenbus(new LocalXsClient(store, 0, { events: ev }), dirs, dev, gid);
  // Not told its vdev: it takes the handle from the frontend's node, as Linux's backend_changed.
  expect(dev.vdev).toBe(51712);
  const fx = new LocalXsClient(store, gid, { events: ev });
  expect(await xenbusReadState(fx, dirs.backDir)).toBe(XenbusState.InitWait);
  await fx.write(`${dirs.frontDir}/ring-ref`, '0');
  await fx.write(`${dirs.frontDir}/event-channel`, String(port));
  await xenbusSwitchState(fx, dirs.frontDir, XenbusState.Initialised);
  await back.waitForState(XenbusState.Connected, 2000).catch(() => {});
  expect(back.errors).toEqual([]);
  expect(back.state).toBe(XenbusState.Connected);
  expect(await fx.read(`${dirs.backDir}/sectors`)).toBe('128');
  expect(dev.connected).toBe(true);
  await xenbusSwitchState(fx, dirs.frontDir, XenbusState.Closing);
  for (let i = 0; i < 50 && dev.connected; i++) await new Promise((r) => setTimeout(r, 2));
  expect(dev.connected).toBe(false);
  await back.stop();
});
