import { afterEach, describe, expect, it } from 'vitest';
import { runAuditors, type EventEmitter, type EventRecord } from '@pvsim/eventlog';
import { LocalXsClient, XsRingClient, isXsError, type XsClient } from './client.js';
import { XenStore } from './store.js';
import { startXenstoredInProcess } from './daemon.js';
import {
  XenbusState,
  backendPath,
  frontendPath,
  parseXenbusState,
  runBackendHandshake,
  runFrontendHandshake,
  xenbusAddDevice,
  xenbusReadState,
  xenbusRoleOf,
  xenbusStateAuditor,
  xenbusStrState,
  xenbusSwitchState,
  xenbusTransitionLegal,
  type BackendDriver,
  type FrontendDriver,
  type XenbusEnd,
} from './xenbus.js';

const S = XenbusState;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

function recorder(): EventEmitter & { events: EventRecord[] } {
  const events: EventRecord[] = [];
  return {
    events,
    emit(kind, payload, dom = 0) {
      const seq = events.length;
      events.push({ seq, tsNs: seq, dom, thread: 0, kind, v: 1, payload } as EventRecord);
      return seq;
    },
  };
}

async function until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

const DEV = { type: 'vbd', frontDom: 1, backDom: 0, devid: 768 };

type Transport = 'rings' | 'in-process';

/**
 * The toolstack, a dom0 backend and a guest, each with its own connection: to xenstored over
 * real rings (default), or straight to a store in this thread (other timing: events as microtasks).
 */
async function world(transport: Transport = 'rings') {
  const rec = recorder();
  let client: (dom: number) => Promise<XsClient>;
  if (transport === 'rings') {
    const xs = startXenstoredInProcess();
    cleanups.push(() => xs.stop());
    client = async (dom) => {
      const c = new XsRingClient(await xs.connect(dom), { events: rec });
      cleanups.push(() => c.close());
      return c;
    };
  } else {
    const store = new XenStore();
    client = async (dom) => {
      const c = new LocalXsClient(store, dom, { events: rec });
      cleanups.push(() => c.close());
      return c;
    };
  }
  const toolstack = await client(0);
  const dirs = await xenbusAddDevice(toolstack, DEV);
  const back = await client(0);
  const guest = await client(1);
  const ends: XenbusEnd[] = [];
  cleanups.push(async () => {
    for (const e of ends) await e.stop();
  });
  return {
    rec,
    toolstack,
    back,
    guest,
    ...dirs,
    /** The xenbus.state events so far, as `f:Initialised` / `b:Connected`. */
    transitions: () =>
      rec.events
        .filter((e) => e.kind === 'xenbus.state')
        .map((e) => {
          const p = e.payload as { path: string; name: string };
          return `${xenbusRoleOf(p.path) === 'backend' ? 'b' : 'f'}:${p.name}`;
        }),
    startBackend: async (driver: BackendDriver) => {
      const b = await runBackendHandshake(back, dirs, driver);
      ends.push(b);
      return b;
    },
    startFrontend: async (driver: FrontendDriver, opts: Parameters<typeof runFrontendHandshake>[3] = {}) => {
      const f = await runFrontendHandshake(guest, dirs, driver, opts);
      ends.push(f);
      return f;
    },
    /** Every transition the drivers made is legal for its end. */
    audit: () => {
      const run = runAuditors([xenbusStateAuditor()]);
      rec.events.forEach((e) => run.onEvent(e));
      return run.finish();
    },
  };
}

/** A blkback-shaped backend: features, then validate the frontend's keys and publish the disk. */
function blkback(props: Record<string, string> = { sectors: '2048', info: '0', 'sector-size': '512' }) {
  const log: string[] = [];
  const driver: BackendDriver = {
    features: () => ({ 'feature-flush-cache': '1', 'max-ring-page-order': '0' }),
    async connect(front) {
      const ref = front['ring-ref']!;
      if (!/^\d+$/.test(ref)) throw new Error(`guest gave us ring-ref ${JSON.stringify(ref)}`);
      log.push(`connect ring-ref=${ref} event-channel=${front['event-channel']}`);
      return props;
    },
    async disconnect() {
      log.push('disconnect');
    },
  };
  return { driver, log };
}

/** A blkfront-shaped frontend: a fresh ring-ref per setup. */
function blkfront() {
  const log: string[] = [];
  let ref = 8;
  const driver: FrontendDriver = {
    async setup(backend) {
      log.push(`setup flush=${await backend.read('feature-flush-cache')}`);
      ref++;
      return { 'ring-ref': String(ref), 'event-channel': '5', protocol: 'x86_64-abi' };
    },
    backendKeys: ['sectors', 'info', 'sector-size'],
    async connect(p) {
      log.push(`connect sectors=${p.sectors}`);
    },
    async disconnect() {
      log.push('disconnect');
    },
  };
  return { driver, log };
}

describe('XenbusState', () => {
  it("has Xen's numbers and Linux's names", () => {
    expect(Object.entries(XenbusState).map(([k, v]) => `${v}:${k}`)).toEqual([
      '0:Unknown',
      '1:Initialising',
      '2:InitWait',
      '3:Initialised',
      '4:Connected',
      '5:Closing',
      '6:Closed',
      '7:Reconfiguring',
      '8:Reconfigured',
    ]);
    expect(xenbusStrState(2)).toBe('InitWait');
    expect(xenbusStrState(9)).toBe('INVALID');
    expect(['4', '06', '9', '', 'banana', '-1', '4 ', null].map((v) => parseXenbusState(v))).toEqual([4, 6, 0, 0, 0, 0, 0, 0]);
  });

  it('knows which transitions each end may make (Linux-like tolerance)', () => {
    const legal = (role: 'frontend' | 'backend', from: XenbusState, to: XenbusState) => xenbusTransitionLegal(role, from, to);
    // The handshake.
    expect(legal('backend', S.Initialising, S.InitWait)).toBe(true);
    expect(legal('frontend', S.Initialising, S.Initialised)).toBe(true);
    expect(legal('backend', S.InitWait, S.Connected)).toBe(true);
    expect(legal('frontend', S.Initialised, S.Connected)).toBe(true);
    // Shortcuts: a frontend need not wait for InitWait (nor, netfront, for Initialised); a backend may skip InitWait.
    expect(legal('frontend', S.Initialising, S.Connected)).toBe(true);
    expect(legal('backend', S.Initialising, S.Initialised)).toBe(true);
    // Anything may close, even straight to Closed; a Closed end may start over.
    for (let s = 0; s <= 8; s++) {
      if (s !== S.Closed) expect(legal('frontend', s as XenbusState, S.Closed)).toBe(true);
      if (s !== S.Closing) expect(legal('backend', s as XenbusState, S.Closing)).toBe(true);
    }
    expect(legal('frontend', S.Closed, S.Initialising)).toBe(true);
    expect(legal('backend', S.Closed, S.InitWait)).toBe(true);
    // Not allowed.
    expect(legal('backend', S.Initialising, S.Connected)).toBe(false);
    expect(legal('frontend', S.Initialising, S.InitWait)).toBe(false);
    expect(legal('frontend', S.Closed, S.Connected)).toBe(false);
    expect(legal('backend', S.Connected, S.InitWait)).toBe(false);
    expect(legal('frontend', S.Closing, S.Initialising)).toBe(false);
    expect(legal('frontend', S.Connected, S.Connected)).toBe(false);
  });

  it('builds the device paths', () => {
    expect(frontendPath(1, 'vbd', 768)).toBe('/local/domain/1/device/vbd/768');
    expect(backendPath(0, 'vbd', 1, 768)).toBe('/local/domain/0/backend/vbd/1/768');
    expect(xenbusRoleOf('/local/domain/0/backend/vif/3/0')).toBe('backend');
    expect(xenbusRoleOf('/local/domain/3/device/vif/0')).toBe('frontend');
    expect(xenbusRoleOf('/tool/x')).toBeNull();
  });

  it('the auditor flags an illegal transition', () => {
    const ev = (seq: number, path: string, from: number, to: number) =>
      ({ seq, tsNs: seq, dom: 0, thread: 0, kind: 'xenbus.state', v: 1, payload: { path, dom: 0, from, to, name: xenbusStrState(to) } }) as EventRecord;
    const run = runAuditors([xenbusStateAuditor()]);
    run.onEvent(ev(1, backendPath(0, 'vbd', 1, 1), S.Initialising, S.InitWait));
    run.onEvent(ev(2, backendPath(0, 'vbd', 1, 1), S.InitWait, S.Connected));
    run.onEvent(ev(3, backendPath(0, 'vbd', 1, 2), S.Initialising, S.Connected));
    const v = run.finish();
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({ rule: 'illegal-transition', seqs: [3] });
    expect(v[0]!.message).toMatch(/Initialising → Connected/);
  });
});

describe('xenbusSwitchState', () => {
  it('writes the state in decimal, emits xenbus.state, and does nothing when already there', async () => {
    const w = await world();
    const r = await xenbusSwitchState(w.back, w.backDir, S.InitWait);
    expect(r).toEqual({ from: S.Initialising, to: S.InitWait, changed: true, removed: false });
    expect(await w.toolstack.read(`${w.backDir}/state`)).toBe('2');
    expect((await xenbusSwitchState(w.back, w.backDir, S.InitWait)).changed).toBe(false);
    const evs = w.rec.events.filter((e) => e.kind === 'xenbus.state');
    expect(evs).toHaveLength(1);
    expect(evs[0]!.payload).toEqual({ path: w.backDir, dom: 0, from: 1, to: 2, name: 'InitWait' });
  });

  it('writes nothing for a device being removed (no state node)', async () => {
    const w = await world();
    await w.toolstack.rm(w.backDir);
    const r = await xenbusSwitchState(w.back, w.backDir, S.InitWait);
    expect(r).toMatchObject({ changed: false, removed: true });
    expect(await w.toolstack.tryRead(w.backDir)).toBeNull();
  });

  it("a guest cannot write the backend's state", async () => {
    const w = await world();
    await expect(w.guest.write(`${w.backDir}/state`, '4')).rejects.toSatisfy((e) => isXsError(e, 'EACCES'));
    expect(await xenbusReadState(w.guest, w.backDir)).toBe(S.Initialising);
  });
});

describe.each(['rings', 'in-process'] as Transport[])('the handshake (%s)', (transport) => {
  it('goes Initialising → InitWait → Initialised → Connected → Connected, tears down, and reconnects', async () => {
    const w = await world(transport);
    const bb = blkback();
    const bf = blkfront();
    const back = await w.startBackend(bb.driver);
    expect(back.state).toBe(S.InitWait);
    expect(await w.toolstack.read(`${w.backDir}/feature-flush-cache`)).toBe('1');
    const front = await w.startFrontend(bf.driver);
    await front.waitForState(S.Connected);
    await back.waitForState(S.Connected);
    expect(w.transitions()).toEqual(['b:InitWait', 'f:Initialised', 'b:Connected', 'f:Connected']);
    expect(bf.log).toEqual(['setup flush=1', 'connect sectors=2048']);
    expect(bb.log).toEqual(['connect ring-ref=9 event-channel=5']);
    expect(await w.toolstack.read(`${w.frontDir}/protocol`)).toBe('x86_64-abi');

    // Teardown, frontend first; the backend follows.
    await front.close();
    await back.waitForState(S.Closed);
    expect(w.transitions().slice(4)).toEqual(['f:Closing', 'b:Closing', 'f:Closed', 'b:Closed']);
    expect(bf.log.at(-1)).toBe('disconnect');
    expect(bb.log.at(-1)).toBe('disconnect');

    // Reconnect: the frontend starts over; the Closed backend goes InitWait; the handshake repeats.
    await front.reconnect();
    await front.waitForState(S.Connected);
    await back.waitForState(S.Connected);
    expect(w.transitions().slice(8)).toEqual(['f:Initialising', 'b:InitWait', 'f:Initialised', 'b:Connected', 'f:Connected']);
    expect(bb.log.at(-1)).toBe('connect ring-ref=10 event-channel=5');
    expect([front.connects, back.connects]).toEqual([2, 2]);
    expect(front.errors).toEqual([]);
    expect(back.errors).toEqual([]);
    expect(w.audit()).toEqual([]);
  });

  it('takes the shortcut: a frontend that does not wait for InitWait, started before its backend', async () => {
    const w = await world(transport);
    const bf = blkfront();
    const front = await w.startFrontend(bf.driver, { waitForInitWait: false });
    await front.waitForState(S.Initialised);
    expect(bf.log).toEqual(['setup flush=null']); // no features yet: defaults
    const back = await w.startBackend(blkback().driver);
    await front.waitForState(S.Connected);
    await back.waitForState(S.Connected);
    expect(w.transitions()).toEqual(['f:Initialised', 'b:InitWait', 'b:Connected', 'f:Connected']);
    expect(w.audit()).toEqual([]);
  });

  it('survives a frontend that goes straight to Closed, and connects once it starts over', async () => {
    const w = await world(transport);
    const bb = blkback();
    const back = await w.startBackend(bb.driver);
    // The guest's driver gave up during probe: Initialising → Closed, no Closing.
    await xenbusSwitchState(w.guest, w.frontDir, S.Closed);
    await back.waitForState(S.Closed);
    expect(bb.log).toEqual([]); // never connected, nothing to undo
    await xenbusSwitchState(w.guest, w.frontDir, S.Initialising);
    await back.waitForState(S.InitWait);
    const front = await w.startFrontend(blkfront().driver);
    await front.waitForState(S.Connected);
    await back.waitForState(S.Connected);
    expect(w.transitions()).toEqual(['b:InitWait', 'f:Closed', 'b:Closed', 'f:Initialising', 'b:InitWait', 'f:Initialised', 'b:Connected', 'f:Connected']);
    expect(w.audit()).toEqual([]);
  });

  it('reconnects the frontend after a backend restart (Closed, then InitWait again)', async () => {
    const w = await world(transport);
    const bb = blkback();
    const bf = blkfront();
    const back = await w.startBackend(bb.driver);
    const front = await w.startFrontend(bf.driver);
    await front.waitForState(S.Connected);
    await back.restart();
    await until(() => front.connects === 2 && front.state === S.Connected && back.state === S.Connected, 'both ends connected again');
    expect(back.connects).toBe(2);
    // The frontend tore its ring down once and set up a new one for the new backend.
    expect(bf.log.filter((l) => l === 'disconnect')).toHaveLength(1);
    expect(bb.log.at(-1)).toBe('connect ring-ref=10 event-channel=5');
    const t = w.transitions().slice(4);
    // The backend restarts; the frontend sees it go, closes, and starts over (the backend may
    // follow the frontend's Closed once more before both meet again).
    expect(t[0]).toBe('b:Closed');
    expect(t.indexOf('b:InitWait')).toBeGreaterThan(0);
    expect(t.indexOf('f:Closed')).toBeGreaterThan(0);
    expect(t.indexOf('f:Initialising')).toBeGreaterThan(t.indexOf('f:Closed'));
    expect(t.slice(-2)).toEqual(['b:Connected', 'f:Connected']);
    expect(front.errors).toEqual([]);
    expect(w.audit()).toEqual([]);
  });

  it('waits for a key read before it is written, never failing on it (backend side)', async () => {
    const w = await world(transport);
    const bb = blkback();
    const back = await w.startBackend(bb.driver);
    // A frontend that announces Initialised before publishing its ring.
    await xenbusSwitchState(w.guest, w.frontDir, S.Initialised);
    await until(() => back.waitingFor === 'ring-ref', 'the backend to wait for ring-ref');
    expect(back.state).toBe(S.InitWait);
    await w.guest.write(`${w.frontDir}/event-channel`, '7');
    await w.guest.write(`${w.frontDir}/ring-ref`, '33');
    await back.waitForState(S.Connected);
    expect(back.waitingFor).toBeNull();
    expect(bb.log).toEqual(['connect ring-ref=33 event-channel=7']);
    expect(back.errors).toEqual([]);
  });

  it('waits for device properties the backend has not written yet (frontend side)', async () => {
    const w = await world(transport);
    const back = await w.startBackend(blkback({}).driver); // Connected without publishing the disk
    const front = await w.startFrontend(blkfront().driver);
    await back.waitForState(S.Connected);
    await until(() => front.waitingFor === 'sectors', 'the frontend to wait for sectors');
    expect(front.state).toBe(S.Initialised);
    await w.back.transaction(async (tx) => {
      await tx.write(`${w.backDir}/sectors`, '64');
      await tx.write(`${w.backDir}/info`, '4');
      await tx.write(`${w.backDir}/sector-size`, '4096');
    });
    await front.waitForState(S.Connected);
    expect(front.errors).toEqual([]);
  });

  it('lives through a hostile frontend: garbage state, a bad ring-ref; recovers when it behaves', async () => {
    const w = await world(transport);
    const bb = blkback();
    const back = await w.startBackend(bb.driver);
    await w.guest.write(`${w.frontDir}/state`, 'banana');
    await w.guest.write(`${w.frontDir}/ring-ref`, 'abc');
    await w.guest.write(`${w.frontDir}/event-channel`, '5');
    expect(back.state).toBe(S.InitWait); // garbage reads as Unknown: nothing to do
    await w.guest.write(`${w.frontDir}/state`, String(S.Initialised));
    await back.waitForState(S.Closing);
    expect(back.errors.join('\n')).toMatch(/connect failed: guest gave us ring-ref "abc"/);
    await xenbusSwitchState(w.guest, w.frontDir, S.Closed);
    await back.waitForState(S.Closed);
    await xenbusSwitchState(w.guest, w.frontDir, S.Initialising);
    await back.waitForState(S.InitWait);
    const front = await w.startFrontend(blkfront().driver);
    await front.waitForState(S.Connected);
    await back.waitForState(S.Connected);
    expect(w.audit()).toEqual([]);
  });
});
