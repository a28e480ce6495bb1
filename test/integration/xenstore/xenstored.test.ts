/**
 * xenstored in its own thread with the event log on; a dom0 backend thread and a guest frontend
 * thread do the xenbus handshake over real rings to Connected, then tear down. The log then
 * tells the whole story, and replaying it rebuilds exactly the tree xenstored holds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { EventWriter, deepEqual, readEvents, replay, startSinkWorker, type EventRecord } from '@pvsim/eventlog';
import { RealClock } from '@pvsim/runtime';
import {
  XS_STORE_PROJECTION,
  XsRingClient,
  startXenstoredWorker,
  xenbusAddDevice,
  xenbusRoleOf,
  xenbusStateAuditor,
  xsStoreProjection,
  type XsRingSpec,
} from '@pvsim/xenstore';

const dirs: string[] = [];
const workers: Worker[] = [];
afterAll(async () => {
  await Promise.all(workers.map((w) => w.terminate()));
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

type Msg = { type: 'connected' | 'closed'; report: string[]; state?: number; errors?: string[] } | { type: 'error'; error: string };

/** A daemon thread, and its messages in order. */
function spawn(file: string, workerData: unknown) {
  const w = new Worker(new URL(file, import.meta.url), { workerData, name: file });
  workers.push(w);
  const inbox: Msg[] = [];
  const waiters: ((m: Msg) => void)[] = [];
  let failure: Error | null = null;
  w.on('message', (m: Msg) => {
    if (m.type === 'error') failure = new Error(`${file}: ${m.error}`);
    const next = waiters.shift();
    if (next) next(m);
    else inbox.push(m);
  });
  w.on('error', (e) => (failure = e));
  return {
    worker: w,
    async next(type: 'connected' | 'closed', timeoutMs = 20_000): Promise<Extract<Msg, { type: 'connected' | 'closed' }>> {
      const m =
        inbox.shift() ??
        (await new Promise<Msg>((resolve, reject) => {
          const t = setTimeout(() => reject(failure ?? new Error(`${file}: no '${type}' within ${timeoutMs} ms`)), timeoutMs);
          waiters.push((x) => {
            clearTimeout(t);
            resolve(x);
          });
        }));
      if (m.type === 'error') throw new Error(`${file}: ${m.error}`);
      expect(m.type).toBe(type);
      return m as Extract<Msg, { type: 'connected' | 'closed' }>;
    },
  };
}

describe('xenstored thread + a backend and a frontend thread over rings', () => {
  it('handshake to Connected, teardown, and the log replays to the live tree', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvsim-xs-'));
    dirs.push(dir);
    const log = await startSinkWorker({ dir, header: { runId: 'xenstore', seed: 1 } });
    const xs = await startXenstoredWorker({ log: await log.channel('xenstored', 0) });
    const clock = new RealClock(log.hub.epochMs);

    // The toolstack (this thread): the guest's home and the device's two directories.
    const toolstack = new XsRingClient(await xs.connect(0), { events: new EventWriter(await log.channel('toolstack', 0), clock) });
    await toolstack.mkdir('/local/domain/1');
    await toolstack.setPerms('/local/domain/1', [{ dom: 1, mode: 'n' }]);
    await toolstack.write('/local/domain/1/name', 'guest1');
    const dev = { type: 'vbd', frontDom: 1, backDom: 0, devid: 51712 };
    const { frontDir, backDir } = await xenbusAddDevice(toolstack, dev);
    const seen: string[] = [];
    await toolstack.watch(`${backDir}/state`, 'toolstack-watch', (ev) => seen.push(ev.path));

    const backSpec: XsRingSpec = await xs.connect(0);
    const frontSpec: XsRingSpec = await xs.connect(1);
    const back = spawn('./backend.mjs', { spec: backSpec, log: await log.channel('blkback', 0), frontDir, backDir });
    const front = spawn('./frontend.mjs', { spec: frontSpec, log: await log.channel('blkfront', 1), frontDir, backDir });

    const [fc, bc] = await Promise.all([front.next('connected'), back.next('connected')]);
    expect(fc.report).toEqual(['name guest1', 'backend features: flush-cache 1, persistent 1', 'disk of 2097152 sectors of 512 bytes']);
    expect(bc.report).toEqual(['map ring-ref 8, bind event-channel 5']);
    expect(await toolstack.read(`${backDir}/state`)).toBe('4');
    expect(await toolstack.read(`${frontDir}/state`)).toBe('4');

    // Teardown: the frontend closes, the backend follows to Closed.
    front.worker.postMessage({ type: 'close' });
    const [fcl, bcl] = await Promise.all([front.next('closed'), back.next('closed')]);
    expect([fcl.state, bcl.state]).toEqual([6, 6]);
    expect(fcl.errors).toEqual([]);
    expect(bcl.errors).toEqual([]);
    expect(fcl.report.at(-1)).toBe('free ring');
    expect(bcl.report.at(-1)).toBe('unmap, unbind');
    expect(seen[0]).toBe(`${backDir}/state`);

    // More tree history for the replay: a removal and a transaction.
    await toolstack.rm(frontDir);
    await toolstack.transaction(async (tx) => {
      await tx.write(`${backDir}/hotplug-status`, 'disconnected');
      await tx.rm(`${backDir}/sectors`);
    });
    const snapshot = await xs.snapshot();
    const stats = await xs.stats();
    expect(stats.malformed).toBe(0);
    expect(stats.internalErrors).toBe(0);
    expect(stats.requests).toBeGreaterThan(20);
    toolstack.close();
    await xs.stop();
    await log.close();

    const events: EventRecord[] = [];
    for await (const e of readEvents(dir)) events.push(e);
    const kinds = new Set(events.map((e) => e.kind));
    for (const k of ['xs.node', 'xs.rm', 'xs.tx', 'xs.watch', 'xs.watch_fire', 'xenbus.state']) expect(kinds).toContain(k);

    // The handshake's order, as the store saw it: xenstored's own writes of the two state nodes
    // (one thread, the store's order). Each end's `xenbus.state` record is emitted by that end's
    // thread after its write was answered, so across ends those records may swap (the backend
    // can react to the frontend's Closing watch before the frontend's reply arrives); per end,
    // they follow the store.
    const stateName = ['Unknown', 'Initialising', 'InitWait', 'Initialised', 'Connected', 'Closing', 'Closed', 'Reconfiguring', 'Reconfigured'];
    const storeOrder = events
      .filter((e) => e.kind === 'xs.node')
      .map((e) => e.payload as { path: string; value: string })
      .filter((p) => p.path === `${frontDir}/state` || p.path === `${backDir}/state`)
      .map((p) => `${p.path === backDir + '/state' ? 'backend' : 'frontend'}:${stateName[Number(p.value)] ?? p.value}`);
    // The toolstack creates both nodes (Initialising); then the handshake.
    expect(storeOrder.filter((x) => !x.endsWith(':Initialising'))).toEqual([
      'backend:InitWait',
      'frontend:Initialised',
      'backend:Connected',
      'frontend:Connected',
      'frontend:Closing',
      'backend:Closing',
      'frontend:Closed',
      'backend:Closed',
    ]);
    const transitions = events
      .filter((e) => e.kind === 'xenbus.state')
      .map((e) => {
        const p = e.payload as { path: string; name: string; dom: number };
        return `${xenbusRoleOf(p.path)}(d${e.dom}):${p.name}`;
      });
    expect(transitions.filter((t) => t.startsWith('backend'))).toEqual(['backend(d0):InitWait', 'backend(d0):Connected', 'backend(d0):Closing', 'backend(d0):Closed']);
    expect(transitions.filter((t) => t.startsWith('frontend'))).toEqual(['frontend(d1):Initialised', 'frontend(d1):Connected', 'frontend(d1):Closing', 'frontend(d1):Closed']);
    // The frontend published its ring in one transaction, before it said Initialised.
    const ringRef = events.find((e) => e.kind === 'xs.node' && (e.payload as { path: string }).path === `${frontDir}/ring-ref`)!;
    const initialised = events.find((e) => e.kind === 'xenbus.state' && (e.payload as { name: string }).name === 'Initialised')!;
    expect(ringRef.seq).toBeLessThan(initialised.seq);
    expect(events.filter((e) => e.kind === 'xs.tx' && (e.payload as { outcome: string }).outcome === 'commit').length).toBeGreaterThan(5);

    // Replay equals state: the projection rebuilds exactly the tree xenstored holds.
    const r = await replay(events, { projections: [xsStoreProjection], snapshots: [snapshot], auditors: [xenbusStateAuditor()] });
    expect(r.snapshotsCompared).toBe(1);
    expect(r.divergences.map((d) => d.explanation)).toEqual([]);
    expect(r.violations).toEqual([]);
    const replayed = r.states.get(XS_STORE_PROJECTION)!;
    const live = new Map(Object.entries(snapshot.entries));
    expect([...replayed.keys()].sort()).toEqual([...live.keys()].sort());
    for (const [k, v] of live) expect(deepEqual(replayed.get(k), v), k).toBe(true);
    expect(live.has(frontDir)).toBe(false);
    expect(live.get(`${backDir}/state`)!.value).toMatchObject({ value: '6' });
  }, 60_000);
});
