/**
 * One dispatcher, two transports: the same requests through xs_wire bytes (the socket's
 * `handleMessage`) and through ring messages (xenstored's and the in-process client's decoding)
 * get the same replies, the same watch events and the same log — in memory, and over a real
 * Unix socket against real rings.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { EventEmitter } from '@pvsim/eventlog';
import { startXenstoredInProcess } from './daemon.js';
import { xsBodyBytes, type XsBody } from './dispatch.js';
import { startXsSocketServer } from './server.js';
import { XenStore } from './store.js';
import {
  XsRingMemoryPeer,
  XsRingPeer,
  XsWireMemoryPeer,
  XsWireSocketPeer,
  runXsScript,
  xsDispatchScript,
  xsScriptMismatches,
  xsScriptWithout,
  type XsScriptPeer,
  type XsScriptStep,
} from './testing.js';
import {
  XENSTORE_PAYLOAD_MAX,
  XS_CONTROL,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_GET_DOMAIN_PATH,
  XS_GET_PERMS,
  XS_INTRODUCE,
  XS_IS_DOMAIN_INTRODUCED,
  XS_MKDIR,
  XS_READ,
  XS_RELEASE,
  XS_RESET_WATCHES,
  XS_RM,
  XS_SET_PERMS,
  XS_SET_TARGET,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
} from './types.js';
import { wireBody } from './wire.js';

const SEED = 20240917;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

/** An event log in memory: what the store emitted, in order. */
function recorder(): { events: EventEmitter; log: [string, unknown][] } {
  const log: [string, unknown][] = [];
  return {
    log,
    events: {
      emit(kind, payload) {
        log.push([kind, payload]);
        return log.length;
      },
    },
  };
}

type PeerClass = new (store: XenStore, dom: number) => XsScriptPeer;

/** A fresh store with dom0, dom0b and dom1 connected through `Peer`; the script's results and the log. */
async function inMemory(Peer: PeerClass, script: readonly XsScriptStep[]) {
  const { events, log } = recorder();
  const store = new XenStore({ events });
  const peers = { dom0: new Peer(store, 0), dom0b: new Peer(store, 0), dom1: new Peer(store, 1) };
  const results = await runXsScript(peers, script);
  return { results, log };
}

describe('one dispatcher behind both transports', () => {
  it('the script: xs_wire bytes and ring messages get the same replies, events and log, as cxenstored pins them', async () => {
    const script = xsDispatchScript();
    const wire = await inMemory(XsWireMemoryPeer, script);
    const ring = await inMemory(XsRingMemoryPeer, script);
    expect(xsScriptMismatches(script, wire.results)).toEqual([]);
    expect(xsScriptMismatches(script, ring.results)).toEqual([]);
    expect(ring.results).toEqual(wire.results);
    expect(ring.log).toEqual(wire.log);
    expect(wire.log.length).toBeGreaterThan(200);
  });

  it('the script over a real Unix socket and over real rings of an in-process xenstored (dom0 steps)', async () => {
    const script = xsScriptWithout(xsDispatchScript(), 'dom1');
    const dir = mkdtempSync(join(tmpdir(), 'pvsim-xs-dispatch-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));

    const a = recorder();
    const store = new XenStore({ events: a.events });
    const server = await startXsSocketServer(store, join(dir, 'socket'));
    cleanups.push(() => server.close());
    const socketPeers: Record<string, XsScriptPeer> = {};
    for (const who of ['dom0', 'dom0b']) socketPeers[who] = await XsWireSocketPeer.open(server.socketPath);
    cleanups.push(() => Object.values(socketPeers).forEach((p) => p.close()));

    const b = recorder();
    const xs = startXenstoredInProcess({ events: b.events });
    cleanups.push(() => xs.stop());
    const ringPeers: Record<string, XsScriptPeer> = {};
    for (const who of ['dom0', 'dom0b']) ringPeers[who] = new XsRingPeer(await xs.connect(0));
    cleanups.push(() => Object.values(ringPeers).forEach((p) => p.close()));

    const overSocket = await runXsScript(socketPeers, script, { barrier: true });
    const overRings = await runXsScript(ringPeers, script, { barrier: true });
    expect(xsScriptMismatches(script, overSocket)).toEqual([]);
    expect(overRings).toEqual(overSocket);
    expect(b.log).toEqual(a.log);
    const st = xs.daemon.stats();
    expect([st.malformed, st.internalErrors, st.brokenRings]).toEqual([0, 0, 0]);
    expect(st.watchEventsDropped).toBe(1); // the one longer than XENSTORE_PAYLOAD_MAX
  });

  it('random request sequences get the same replies, events and log through both (fast-check)', async () => {
    const who = fc.constantFrom('dom0', 'dom0b', 'dom1');
    const tx = fc.constantFrom(undefined, 0, 'a', 'b', 'bogus');
    const path = fc.constantFrom('/a', '/a/b', '/a/b/c', '/', '', 'rel', 'rel/x', '/local/domain/1', '/local/domain/1/k', '@introduceDomain', '@releaseDomain', '/a//b', '/é');
    const value = fc.constantFrom('', 'v', '\x00\xff', 'x'.repeat(3000));
    const perm = fc.constantFrom('n0', 'r1', 'b1', 'w2', 'n1', 'x1', '', 'r65536');
    const dom = fc.constantFrom('0', '1', '5', '00005', '65536', 'x', '', '32752');
    const rec = (types: number[], args: fc.Arbitrary<string[]>) => fc.record({ who, type: fc.constantFrom(...types), args, tx });
    const step: fc.Arbitrary<XsScriptStep> = fc.oneof(
      rec([XS_READ, XS_MKDIR, XS_RM, XS_DIRECTORY, XS_GET_PERMS], fc.tuple(path)),
      rec([XS_WRITE], fc.tuple(path, value)),
      rec([XS_DIRECTORY_PART], fc.tuple(path, fc.constantFrom('0', '2', 'x', ''))),
      rec([XS_SET_PERMS], fc.tuple(path, fc.array(perm, { minLength: 1, maxLength: 3 })).map(([p, ps]) => [p, ...ps])),
      rec([XS_WATCH, XS_UNWATCH], fc.tuple(path, fc.constantFrom('t', 'u', ''))),
      fc.record({ who, type: fc.constant(XS_TRANSACTION_START), args: fc.constant(['']), tx, bind: fc.constantFrom('a', 'b') }),
      rec([XS_TRANSACTION_END], fc.tuple(fc.constantFrom('T', 'F', 'X', ''))),
      rec([XS_GET_DOMAIN_PATH, XS_IS_DOMAIN_INTRODUCED, XS_RELEASE], fc.tuple(dom)),
      rec([XS_INTRODUCE], fc.tuple(dom, fc.constantFrom('1', '', 'x'), fc.constantFrom('0', '7', ''))),
      rec([XS_RESET_WATCHES], fc.constant([])),
      rec([XS_CONTROL, XS_SET_TARGET, XS_WATCH_EVENT, 99], fc.tuple(path)),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 30 }), async (script) => {
        const wire = await inMemory(XsWireMemoryPeer, script);
        const ring = await inMemory(XsRingMemoryPeer, script);
        expect(ring.results).toEqual(wire.results);
        expect(ring.log).toEqual(wire.log);
        // EIO would mean the store threw.
        for (const r of wire.results) expect(r.reply).not.toBe('E:EIO');
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('checks in cxenstored order: type (ENOSYS), privilege (EACCES), transaction (ENOENT), then the arguments', async () => {
    for (const Peer of [XsWireMemoryPeer, XsRingMemoryPeer]) {
      const store = new XenStore();
      const dom0 = new Peer(store, 0);
      const guest = new Peer(store, 3);
      const BOGUS = 4242;
      expect(await dom0.request(99, BOGUS, [''])).toBe('E:ENOSYS');
      expect(await guest.request(XS_INTRODUCE, BOGUS, ['x'])).toBe('E:EACCES');
      expect(await dom0.request(XS_INTRODUCE, BOGUS, ['x'])).toBe('E:ENOENT');
      expect(await dom0.request(XS_READ, BOGUS, [''])).toBe('E:ENOENT');
      expect(await dom0.request(XS_SET_TARGET, BOGUS, [])).toBe('E:ENOENT');
      expect(await dom0.request(XS_INTRODUCE, 0, ['x'])).toBe('E:EINVAL');
      expect(await dom0.request(XS_READ, 0, [''])).toBe('E:EINVAL');
      expect(await dom0.request(XS_SET_TARGET, 0, [])).toBe('E:ENOSYS');
      // WATCH and UNWATCH ignore tx_id (XS_FLAG_NOTID): the arguments decide.
      expect(await dom0.request(XS_UNWATCH, BOGUS, ['/a', 't'])).toBe('E:ENOENT');
      expect(await dom0.request(XS_WATCH, BOGUS, ['', 't'])).toBe('E:EINVAL');
    }
  });

  it('a value too long for one reply (written through the API) is E2BIG through both', async () => {
    for (const Peer of [XsWireMemoryPeer, XsRingMemoryPeer]) {
      const store = new XenStore();
      const dom0 = new Peer(store, 0);
      store.write(store.connect(0, () => {}), '/huge', Buffer.alloc(XENSTORE_PAYLOAD_MAX + 1, 0x41));
      store.write(store.connect(0, () => {}), '/fits', Buffer.alloc(XENSTORE_PAYLOAD_MAX, 0x41));
      expect(await dom0.request(XS_READ, 0, ['/huge'])).toBe('E:E2BIG');
      expect(await dom0.request(XS_READ, 0, ['/fits'])).toMatch(/^bytes:"A{4096}"$/);
    }
  });

  it('measures a reply as xs_wire carries it (fast-check)', () => {
    const name = fc.stringMatching(/^[A-Za-z0-9_@-]{0,20}$/);
    const body: fc.Arbitrary<XsBody> = fc.oneof(
      fc.constant({ kind: 'ack' as const }),
      fc.uint8Array({ maxLength: 64 }).map((b) => ({ kind: 'bytes' as const, bytes: Buffer.from(b) })),
      fc.array(name, { maxLength: 10 }).map((names) => ({ kind: 'names' as const, names })),
      fc.array(fc.record({ mode: fc.constantFrom('n' as const, 'r' as const, 'w' as const, 'b' as const), dom: fc.integer({ min: 0, max: 0xffff }) }), { maxLength: 5 }).map((perms) => ({ kind: 'perms' as const, perms })),
      fc.nat().map((tx) => ({ kind: 'tx' as const, tx })),
      name.map((p) => ({ kind: 'path' as const, path: `/local/domain/${p}` })),
      fc.boolean().map((value) => ({ kind: 'bool' as const, value })),
    );
    fc.assert(
      fc.property(body, (b) => {
        expect(xsBodyBytes(b)).toBe(wireBody(b).length);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
});

describe("xenstored's hooks, whichever transport a request comes by", () => {
  it("an XS_RELEASE over the socket or over dom0's ring closes the released domain's rings", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvsim-xs-release-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const xs = startXenstoredInProcess();
    cleanups.push(() => xs.stop());
    const server = await startXsSocketServer(xs.daemon.store, join(dir, 'socket'), { hooks: xs.daemon.hooks });
    cleanups.push(() => server.close());
    const tool = await XsWireSocketPeer.open(server.socketPath);
    cleanups.push(() => tool.close());
    const dom0 = new XsRingPeer(await xs.connect(0));
    cleanups.push(() => dom0.close());
    await xs.connect(5);
    await xs.connect(6);
    expect(xs.daemon.stats().connections).toBe(3);

    expect(await dom0.request(XS_WATCH, 0, ['@releaseDomain', 'out'])).toBe('OK');
    expect(await tool.request(XS_RELEASE, 0, ['5'])).toBe('OK');
    expect(xs.daemon.stats().connections).toBe(2);
    expect(await dom0.request(XS_RELEASE, 0, ['6'])).toBe('OK');
    expect(xs.daemon.stats().connections).toBe(1);
    expect(await dom0.request(XS_IS_DOMAIN_INTRODUCED, 0, ['6'])).toBe('bool:F');
    expect(dom0.takeEvents()).toEqual(['@releaseDomain|out', '@releaseDomain|out', '@releaseDomain|out']);
    // Introducing over the ring, as the toolstack would over its socket.
    expect(await dom0.request(XS_INTRODUCE, 0, ['8', '4660', '3'])).toBe('OK');
    expect(await tool.request(XS_IS_DOMAIN_INTRODUCED, 0, ['8'])).toBe('bool:T');
  });

  it('a change made over the socket wakes a ring watcher that sends nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvsim-xs-wake-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const xs = startXenstoredInProcess();
    cleanups.push(() => xs.stop());
    const server = await startXsSocketServer(xs.daemon.store, join(dir, 'socket'), { hooks: xs.daemon.hooks });
    cleanups.push(() => server.close());
    const tool = await XsWireSocketPeer.open(server.socketPath);
    cleanups.push(() => tool.close());
    const guest = new XsRingPeer(await xs.connect(0));
    cleanups.push(() => guest.close());

    expect(await guest.request(XS_WATCH, 0, ['/tool/x', 'w'])).toBe('OK');
    expect(await tool.request(XS_WRITE, 0, ['/tool/x/y', 'v'])).toBe('OK');
    const until = Date.now() + 5000;
    const seen: string[] = [];
    while (seen.length < 2 && Date.now() < until) {
      seen.push(...guest.takeEvents());
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(seen).toEqual(['/tool/x|w', '/tool/x/y|w']);
    // And the other way: a ring write reaches a socket watcher.
    expect(await tool.request(XS_WATCH, 0, ['/tool/z', 's'])).toBe('OK');
    expect(await guest.request(XS_WRITE, 0, ['/tool/z', '1'])).toBe('OK');
    expect(await tool.request(XS_GET_DOMAIN_PATH, 0, ['0'])).toBe('path:/local/domain/0');
    expect(tool.takeEvents()).toEqual(['/tool/z|s', '/tool/z|s']);
  });
});

it('DIRECTORY_PART over the ring pages a listing DIRECTORY refuses, as libxenstore does over the socket', async () => {
  const store = new XenStore();
  const ring = new XsRingMemoryPeer(store, 0);
  const names = Array.from({ length: 200 }, (_, i) => `n-${'x'.repeat(20)}-${i}`);
  for (const n of names) expect(await ring.request(XS_WRITE, 0, [`/d/${n}`, ''])).toBe('OK');
  expect(await ring.request(XS_DIRECTORY, 0, ['/d'])).toBe('E:E2BIG');
  let all = '';
  for (let off = 0, parts = 0; parts < 10; parts++) {
    const line = await ring.request(XS_DIRECTORY_PART, 0, ['/d', String(off)]);
    const payload = JSON.parse(line.slice('bytes:'.length)) as string;
    const rest = payload.slice(payload.indexOf('\0') + 1);
    all += rest;
    off += rest.length;
    if (rest.endsWith('\0\0') || rest === '\0') break;
  }
  expect(all.split('\0').filter(Boolean)).toEqual(names);
  expect(await ring.request(XS_GET_PERMS, 0, ['/d'])).toBe('perms:n0');
  expect(await ring.request(XS_TRANSACTION_END, 0, ['T'])).toBe('E:ENOENT');
  expect(await ring.request(XS_TRANSACTION_START, 0, [''])).toMatch(/^tx:\d+$/);
});
