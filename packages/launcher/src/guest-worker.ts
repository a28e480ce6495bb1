/**
 * A guest's thread: its kernel-side drivers — one blkfront per disk, each ring and data page in
 * the guest's own frames, granted to dom0 — over the guest's own xenstored ring connection, and
 * one upcall loop on the guest's doorbells calling each device's interrupt handler.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Blkfront } from '@pvsim/blkfront';
import { EventWriter, nullEmitter } from '@pvsim/eventlog';
import { Hypervisor } from '@pvsim/hypervisor';
import { RealClock, serveCommands } from '@pvsim/runtime';
import { makeJob, runJob, type BlockTarget } from '@pvsim/loadgen';
import { XsRingClient } from '@pvsim/xenstore';
import { runUpcallLoop } from './evtloop.js';
import type { DeviceCommand, DeviceReply, GuestWorkerData } from './protocol.js';

const data = workerData as GuestWorkerData;
const port = parentPort!;

/** Sectors each disk reads once connected (the data path end to end: grants, maps, the gate). */
const PROBE_SECTORS = 8;

try {
  const clock = new RealClock(data.log ? data.log.hub.epochMs : undefined);
  const events = data.log ? new EventWriter(data.log, clock) : nullEmitter();
  const hv = new Hypervisor(data.spec);
  const client = hv.client(data.domid, events);
  const xs = new XsRingClient(data.xs, { events });
  const fronts: { front: Blkfront; devid: number; vdevName: string }[] = [];
  let loading = false;
  /** Set by shutdown: a running load stops after its I/Os in flight complete. */
  let stopLoad = false;
  const errors: string[] = [];
  const ports = () => {
    const m = new Map<number, () => void>();
    for (const f of fronts) if (f.front.eventChannel >= 0) m.set(f.front.eventChannel, () => f.front.interrupt());
    return m;
  };
  const loop = runUpcallLoop(client.doorbells, data.waiter, ports, (e) => errors.push(String(e)));
  for (const d of data.disks) {
    const front = await Blkfront.start({
      client,
      xs,
      clock,
      events,
      frontDir: d.frontDir,
      backDir: d.backDir,
      backendDomid: d.backDom,
      vdev: d.devid,
      gfns: d.gfns,
      grantRefs: d.grantRefs,
      ringPageOrder: d.ringPageOrder,
    });
    fronts.push({ front, devid: d.devid, vdevName: d.vdevName });
  }

  const handle = async (cmd: DeviceCommand): Promise<DeviceReply> => {
    switch (cmd.type) {
      case 'wait-connected':
        await Promise.all(fronts.map((f) => f.front.waitConnected(cmd.timeoutMs)));
        // One read on each disk: the whole path (grants, backend maps, gate, responses).
        await Promise.all(fronts.map((f) => f.front.read(0, PROBE_SECTORS)));
        return { ok: true };
      case 'status':
        return {
          ok: true,
          devices: fronts.map((f) => {
            const st = f.front.stats();
            return { frontDom: data.domid, devid: f.devid, state: f.front.xenbusState, port: f.front.eventChannel, inflight: st.inFlight + st.waiting, completed: st.completed, error: f.front.error };
          }),
        };
      case 'load': {
        const chosen = cmd.devid === undefined ? fronts : fronts.filter((f) => f.devid === cmd.devid);
        if (chosen.length === 0) return { ok: false, error: `${data.name} has no disk ${cmd.devid}` };
        if (loading) return { ok: false, error: `${data.name}: a load is already running` };
        if (stopLoad) return { ok: false, error: `${data.name}: shutting down` };
        // The job crossed a thread boundary: check it again (a caller may not have used makeJob).
        const jr = makeJob(cmd.job);
        if (!jr.ok) return { ok: false, error: jr.error };
        const job = jr.job;
        loading = true;
        try {
          const loads = await Promise.all(
            chosen.map(async (f, i) => {
              const dev = f.front.device;
              if (!dev || f.front.phase !== 'connected') throw new Error(`${data.name} ${f.vdevName}: device is ${f.front.phase}`);
              const target: BlockTarget = {
                sectors: dev.sectors,
                read: (s, n) => f.front.read(s, n),
                write: (s, d) => f.front.write(s, d),
                describe: () => `${f.vdevName} ${f.front.phase}${f.front.error ? ` (${f.front.error})` : ''} ${JSON.stringify(f.front.stats())}`,
              };
              return { devid: f.devid, vdevName: f.vdevName, result: await runJob(target, { ...job, seed: job.seed + i }, { cancelled: () => stopLoad }) };
            }),
          );
          return { ok: true, loads };
        } finally {
          loading = false;
        }
      }
      case 'shutdown': {
        // Stop a running load (its I/Os in flight complete), drain, then close each device (the
        // backend follows to Closed).
        stopLoad = true;
        await Promise.all(fronts.map((f) => f.front.drained()));
        await Promise.all(fronts.map((f) => f.front.close(cmd.timeoutMs)));
        // Grants still mapped by the backend at close (the ring) are deferred and retried every
        // second; give the backend's unmap time to land so the guest ends them itself.
        const deadline = Date.now() + Math.min(cmd.timeoutMs, 3000);
        while (fronts.some((f) => f.front.deferredGrefs().length > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        for (const f of fronts) f.front.stopTimers();
        await loop.stop();
        xs.close();
        const bad = [...errors, ...fronts.flatMap((f) => f.front.xenbusErrors)];
        return bad.length ? { ok: false, error: bad.join('; ') } : { ok: true };
      }
    }
  };
  serveCommands<DeviceCommand, DeviceReply>(port, handle, (error) => ({ ok: false, error }));
} catch (e) {
  port.postMessage({ type: 'error', error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
}
