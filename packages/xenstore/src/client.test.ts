import { afterEach, describe, expect, it } from 'vitest';
import { EvtchnDoorbells, FrontRing, REQ_PROD, SharedRing } from '@pvsim/ring';
import { XenStore } from './store.js';
import { LocalXsClient, XsClientError, XsRingClient, isXsError, type XsClient } from './client.js';
import {
  XS_RING_SLOT_BYTES,
  XS_WATCH_TOKEN_MAX_BYTES,
  startXenstoredInProcess,
  xsSlotCodec,
  type XenstoredHandle,
  type XenstoredDaemon,
  type XsRingSpec,
  type XsWireResponse,
} from './daemon.js';
import { XENSTORE_PAYLOAD_MAX, XS_DIRECTORY, XS_INTRODUCE, XS_READ, XS_TRANSACTION_END, XS_WRITE, type WatchEvent } from './types.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

interface World {
  /** A client for `dom` (dom0's are privileged). */
  client(dom: number): Promise<XsClient>;
}

function localWorld(): World {
  const store = new XenStore();
  return {
    client: async (dom) => {
      const c = new LocalXsClient(store, dom);
      cleanups.push(() => c.close());
      return c;
    },
  };
}

function ringWorld(): World & { xs: XenstoredHandle & { daemon: XenstoredDaemon } } {
  const xs = startXenstoredInProcess();
  cleanups.push(() => xs.stop());
  return {
    xs,
    client: async (dom) => {
      const c = new XsRingClient(await xs.connect(dom));
      cleanups.push(() => c.close());
      return c;
    },
  };
}

const flavours: [string, () => World][] = [
  ['in-process', localWorld],
  ['over rings', ringWorld],
];

async function rejection(p: Promise<unknown>): Promise<XsClientError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(XsClientError);
    return e as XsClientError;
  }
  throw new Error('expected a rejection');
}

/** Wait (bounded) until `pred` holds, letting the loops run. */
async function until(pred: () => boolean, what = 'condition', ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

describe.each(flavours)('XsClient %s', (_name, make) => {
  it('reads, writes, lists, removes, with errors as XsClientError', async () => {
    const w = make();
    const dom0 = await w.client(0);
    await dom0.write('/tool/a/b', 'hello');
    expect(await dom0.read('/tool/a/b')).toBe('hello');
    expect(await dom0.directory('/tool/a')).toEqual(['b']);
    await dom0.mkdir('/tool/a/c');
    expect((await dom0.directory('/tool/a')).sort()).toEqual(['b', 'c']);
    expect(await dom0.read('/tool/a/c')).toBe('');
    const bytes = Buffer.from([0, 255, 1, 254]);
    await dom0.write('/tool/bin', bytes);
    const got = await dom0.readBytes('/tool/bin');
    expect(got.equals(bytes)).toBe(true);
    got.fill(7); // the caller's copy, not the node
    expect((await dom0.readBytes('/tool/bin')).equals(bytes)).toBe(true);
    expect(await dom0.tryRead('/tool/missing')).toBeNull();
    const e = await rejection(dom0.read('/tool/missing'));
    expect(e.error).toBe('ENOENT');
    expect(e.op).toBe('XS_READ');
    expect(e.message).toMatch(/XS_READ \/tool\/missing: ENOENT/);
    expect((await rejection(dom0.write('no//good', 'x'))).error).toBe('EINVAL');
    await dom0.rm('/tool/a');
    expect(await dom0.tryRead('/tool/a/b')).toBeNull();
    expect(await dom0.getDomainPath(7)).toBe('/local/domain/7');
  });

  it('scopes a guest to its domain: relative paths and permissions', async () => {
    const w = make();
    const dom0 = await w.client(0);
    await dom0.mkdir('/local/domain/3');
    await dom0.setPerms('/local/domain/3', [{ dom: 3, mode: 'n' }]);
    expect(await dom0.getPerms('/local/domain/3')).toEqual([{ dom: 3, mode: 'n' }]);
    await dom0.write('/tool/secret', 's');
    const g = await w.client(3);
    await g.write('data/x', '1');
    expect(await dom0.read('/local/domain/3/data/x')).toBe('1');
    expect(await g.read('/local/domain/3/data/x')).toBe('1');
    expect((await rejection(g.read('/tool/secret'))).error).toBe('EACCES');
    expect((await rejection(g.write('/tool/secret', 'mine'))).error).toBe('EACCES');
    // A guest's nodes are its own; dom0 keeps read access through the inherited list.
    expect(await g.getPerms('data/x')).toEqual([{ dom: 3, mode: 'n' }]);
  });

  it('watches fire at registration and on every change below, until unwatched', async () => {
    const w = make();
    const dom0 = await w.client(0);
    const other = await w.client(0);
    const seen: WatchEvent[] = [];
    await dom0.watch('/tool/w', 'tok', (ev) => seen.push(ev));
    await until(() => seen.length === 1, 'the registration event');
    expect(seen[0]).toEqual({ path: '/tool/w', token: 'tok' });
    await other.write('/tool/w/k', 'v');
    await until(() => seen.length === 2, 'the change event');
    expect(seen[1]).toEqual({ path: '/tool/w/k', token: 'tok' });
    expect((await rejection(dom0.watch('/tool/elsewhere', 'tok', () => {}))).error).toBe('EEXIST');
    await dom0.unwatch('/tool/w', 'tok');
    await other.write('/tool/w/k', 'v2');
    await other.read('/tool/w/k');
    await dom0.read('/tool/w/k');
    expect(seen).toHaveLength(2);
  });

  it('delivers a watch event caused by a request before that request resolves', async () => {
    const w = make();
    const c = await w.client(0);
    const seen: string[] = [];
    await c.watch('/tool/o', 'o', (ev) => seen.push(ev.path));
    await c.write('/tool/o/x', '1');
    expect(seen).toEqual(['/tool/o', '/tool/o/x']);
  });

  it('commits a transaction, aborts it when fn throws', async () => {
    const w = make();
    const c = await w.client(0);
    const r = await c.transaction(async (tx) => {
      await tx.write('/tool/t/a', '1');
      await tx.write('/tool/t/b', '2');
      // Inside, the transaction sees its own writes; outside, nothing yet.
      expect(await tx.read('/tool/t/a')).toBe('1');
      expect(await c.tryRead('/tool/t/a')).toBeNull();
      return 42;
    });
    expect(r).toBe(42);
    expect(await c.read('/tool/t/b')).toBe('2');
    await expect(
      c.transaction(async (tx) => {
        await tx.write('/tool/t/a', 'changed');
        throw new Error('driver gave up');
      }),
    ).rejects.toThrow('driver gave up');
    expect(await c.read('/tool/t/a')).toBe('1');
  });

  it('retries on EAGAIN (xenbus_transaction_end → -EAGAIN → again), bounded', async () => {
    const w = make();
    const c = await w.client(0);
    const rival = await w.client(0);
    await c.write('/tool/n', '0');
    const attempts: number[] = [];
    await c.transaction(async (tx) => {
      attempts.push(tx.attempt);
      const n = Number(await tx.read('/tool/n'));
      // A rival changes what we read, twice: our first two commits must fail.
      if (tx.attempt <= 2) await rival.write('/tool/n', String(n + 100));
      await tx.write('/tool/n', String(Number(await tx.read('/tool/n')) + 1));
    });
    expect(attempts).toEqual([1, 2, 3]);
    expect(await c.read('/tool/n')).toBe('201');
    const e = await rejection(
      c.transaction(
        async (tx) => {
          await tx.read('/tool/n');
          await rival.write('/tool/n', `r${tx.attempt}`);
          await tx.write('/tool/n', 'never');
        },
        { attemptsMax: 5 },
      ),
    );
    expect(e.error).toBe('EAGAIN');
    expect(await c.read('/tool/n')).toBe('r5');
  });
});

describe('XsClient over rings', () => {
  it('queues requests beyond the ring size and answers each one', async () => {
    const w = ringWorld();
    const c = await w.client(0);
    const n = 300;
    await Promise.all(Array.from({ length: n }, (_, i) => c.write(`/tool/many/k${i}`, `v${i}`)));
    const got = await Promise.all(Array.from({ length: n }, (_, i) => c.read(`/tool/many/k${i}`)));
    expect(got).toEqual(Array.from({ length: n }, (_, i) => `v${i}`));
    expect((await c.directory('/tool/many')).length).toBe(n);
  });

  it('delivers every watch event, in order, past a full event ring', async () => {
    const w = ringWorld();
    const watcher = await w.client(0);
    const writer = await w.client(0);
    const seen: string[] = [];
    await watcher.watch('/tool/flood', 'f', (ev) => seen.push(ev.path));
    const n = 200;
    for (let i = 0; i < n; i++) void writer.write(`/tool/flood/k${i}`, '');
    await writer.read('/tool');
    await until(() => seen.length === n + 1, `${n + 1} events (got ${seen.length})`);
    expect(seen).toEqual(['/tool/flood', ...Array.from({ length: n }, (_, i) => `/tool/flood/k${i}`)]);
    expect((await w.xs.stats()).watchEventsDropped).toBe(0);
  });

  it('refuses a payload over XENSTORE_PAYLOAD_MAX with E2BIG, and an oversized token', async () => {
    const w = ringWorld();
    const c = await w.client(0);
    expect((await rejection(c.write('/tool/big', 'x'.repeat(XENSTORE_PAYLOAD_MAX)))).error).toBe('E2BIG');
    expect((await rejection(c.watch('/tool', 't'.repeat(XS_WATCH_TOKEN_MAX_BYTES + 1), () => {}))).error).toBe('E2BIG');
    await c.write('/tool/ok', 'x'.repeat(2000));
    expect((await c.read('/tool/ok')).length).toBe(2000);
  });

  it('answers a response too large for a slot with E2BIG (a listing dom0 made huge)', async () => {
    const w = ringWorld();
    const c = await w.client(0);
    // 400 children of 20 characters: the listing is ~8 KiB, more than one slot.
    await c.transaction(async (tx) => {
      for (let i = 0; i < 400; i++) await tx.write(`/tool/wide/${'n'.repeat(15)}${String(i).padStart(5, '0')}`, '');
    });
    expect((await rejection(c.directory('/tool/wide'))).error).toBe('E2BIG');
    expect(await c.read('/tool/wide')).toBe('');
  });

  it('fires @introduceDomain and @releaseDomain; a released domain loses its connection', async () => {
    const w = ringWorld();
    const dom0 = await w.client(0);
    const seen: string[] = [];
    await dom0.watch('@introduceDomain', 'intro', (ev) => seen.push(ev.path));
    await dom0.watch('@releaseDomain', 'rel', (ev) => seen.push(ev.path));
    await until(() => seen.length === 2, 'registration events');
    const g = await w.client(5);
    await until(() => seen.length === 3, '@introduceDomain');
    await w.xs.release(5);
    await until(() => seen.length === 4, '@releaseDomain');
    expect(seen).toEqual(['@introduceDomain', '@releaseDomain', '@introduceDomain', '@releaseDomain']);
    expect((await w.xs.stats()).connections).toBe(1);
    g.close();
  });
});

/** A guest that writes whatever it likes into its request ring. */
function rawGuest(spec: XsRingSpec) {
  const sring = new SharedRing(spec.reqPages, spec.slotBytes);
  const front = new FrontRing(sring, xsSlotCodec<unknown>(), xsSlotCodec<XsWireResponse>());
  const server = EvtchnDoorbells.attach(spec.serverBells);
  const kick = () => {
    front.pushRequestsAndCheckNotify();
    server.raise(spec.serverPort); // unconditionally: a hostile guest rings when it likes
  };
  return {
    sring,
    front,
    kick,
    /** Ring xenstored's doorbell without publishing anything. */
    ring: () => server.raise(spec.serverPort),
    /** Push each message (or raw slot bytes) and collect one response per slot, a ring's worth at a time. */
    async exchange(msgs: (unknown | { raw: number[] })[]): Promise<XsWireResponse[]> {
      const out: XsWireResponse[] = [];
      for (let i = 0; i < msgs.length; ) {
        const batch = msgs.slice(i, i + front.freeRequests());
        i += batch.length;
        for (const m of batch) {
          if (m !== null && typeof m === 'object' && 'raw' in m) {
            const raw = Buffer.alloc(spec.slotBytes);
            raw.set((m as { raw: number[] }).raw);
            sring.copyIn(front.reqProdPvt, raw, raw.length);
            front.advanceRequests(1);
          } else {
            expect(front.pushRequest(m).ok).toBe(true);
          }
        }
        kick();
        const want = out.length + batch.length;
        await until(() => {
          while (front.unconsumedResponses() > 0) {
            const r = front.takeResponse();
            if (r.ok) out.push(r.value);
          }
          return out.length === want;
        }, 'responses');
      }
      return out;
    },
  };
}

describe('xenstored and a hostile guest', () => {
  let w: ReturnType<typeof ringWorld>;

  it('answers every malformed message with an error and keeps serving', async () => {
    w = ringWorld();
    const dom0 = await w.client(0);
    await dom0.mkdir('/local/domain/7');
    await dom0.setPerms('/local/domain/7', [{ dom: 7, mode: 'n' }]);
    const spec = await w.xs.connect(7);
    const guest = rawGuest(spec);
    const body = [0x81, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa1, 0x78, 0x01];
    const proto = [body.length, 0x00, ...body];
    const rsps = await guest.exchange([
      { raw: [0x05, 0x00, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1] }, // not msgpack
      { raw: [0xff, 0xff] }, // a length beyond the slot
      { raw: proto }, // a foreign prototype
      [1, 2, 3], // not a map
      { op: XS_READ, tx: 0, path: 'x' }, // no id
      { id: -4, op: XS_READ, path: 'x' }, // a bad id
      { id: 10, op: 'read', path: 'x' }, // op not a number
      { id: 11, op: 99, path: 'x' }, // unknown op
      { id: 12, op: XS_INTRODUCE, path: '1' }, // a toolstack op from a guest
      { id: 13, op: XS_READ, tx: 0 }, // no path
      { id: 14, op: XS_READ, tx: 1.5, path: 'x' }, // a bad transaction id
      { id: 15, op: XS_WRITE, tx: 0, path: 'x', value: 12 }, // a value that is not bytes
      { id: 16, op: XS_TRANSACTION_END, tx: 0, value: 'maybe' },
      { id: 17, op: XS_READ, tx: 0, path: '../../etc' },
      { id: 18, op: XS_DIRECTORY, tx: 99, path: '/' }, // a transaction that is not ours
      { id: 19, op: XS_WRITE, tx: 0, path: 'ok', value: 'fine' },
    ]);
    expect(rsps.map((r) => [r.id, r.ok ? 'OK' : r.error])).toEqual([
      [0, 'EINVAL'],
      [0, 'EINVAL'],
      [0, 'EINVAL'],
      [0, 'EINVAL'],
      [0, 'EINVAL'],
      [0, 'EINVAL'],
      [10, 'EINVAL'],
      [11, 'ENOSYS'],
      [12, 'EACCES'],
      [13, 'EINVAL'],
      [14, 'EINVAL'],
      [15, 'EINVAL'],
      [16, 'EINVAL'],
      [17, 'EINVAL'],
      [18, 'ENOENT'],
      [19, 'OK'],
    ]);
    const st = await w.xs.stats();
    expect(st.malformed).toBe(6);
    expect(st.internalErrors).toBe(0);
    // Others are served as before.
    expect(await dom0.read('/local/domain/7/ok')).toBe('fine');
  });

  it('refuses a record definition, and later requests read as their bytes say', async () => {
    // Record 0x41 is the frozen ['id', 'op', 'tx', 'path', 'value']. Had xenstored's decoder kept
    // this definition (path and value swapped), the honest write after it would read as a write of
    // 'ok' to the node 'fine'.
    w = ringWorld();
    const dom0 = await w.client(0);
    await dom0.mkdir('/local/domain/7');
    await dom0.setPerms('/local/domain/7', [{ dom: 7, mode: 'n' }]);
    const guest = rawGuest(await w.xs.connect(7));
    const str = (k: string) => [0xa0 | k.length, ...Buffer.from(k)];
    const def = [0xd4, 0x72, 0x41, 0x95, ...['id', 'op', 'tx', 'value', 'path'].flatMap(str), 20, XS_WRITE, 0, ...str('x'), ...str('y')];
    const rsps = await guest.exchange([{ raw: [def.length, 0, ...def] }, { id: 21, op: XS_WRITE, tx: 0, path: 'ok', value: 'fine' }]);
    expect((await rejection(dom0.read('/local/domain/7/fine'))).error).toBe('ENOENT');
    expect(await dom0.read('/local/domain/7/ok')).toBe('fine');
    expect(rsps.map((r) => [r.id, r.ok ? 'OK' : r.error])).toEqual([
      [0, 'EINVAL'],
      [21, 'OK'],
    ]);
    expect((await w.xs.stats()).malformed).toBe(1);
  });

  it('stops only the connection whose ring the guest broke', async () => {
    w = ringWorld();
    const spec = await w.xs.connect(8);
    const guest = rawGuest(spec);
    Atomics.store(guest.sring.header, REQ_PROD, 1000); // far beyond the ring size
    guest.ring();
    await until(() => w.xs.daemon.stats().brokenRings === 1, 'the broken ring to be noticed');
    const dom0 = new XsRingClient(await w.xs.connect(0));
    cleanups.push(() => dom0.close());
    await dom0.write('/tool/alive', 'yes');
    expect(await dom0.read('/tool/alive')).toBe('yes');
    expect(w.xs.daemon.stats().connections).toBe(1);
  });

  it('xs slots hold a whole xs_wire payload', () => {
    expect(XS_RING_SLOT_BYTES).toBeGreaterThan(XENSTORE_PAYLOAD_MAX);
    const codec = xsSlotCodec<unknown>();
    const dst = new Uint8Array(XS_RING_SLOT_BYTES);
    expect(codec.encode({ id: 1, op: XS_WRITE, tx: 0, path: 'p'.repeat(2000), value: Buffer.alloc(2095) }, dst)).toBeGreaterThan(0);
    expect(isXsError(new XsClientError('EIO', 'XS_READ'), 'EIO')).toBe(true);
  });
});
