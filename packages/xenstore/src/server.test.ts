import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startXsSocketServer, type XsSocketServer } from './server.js';
import { XenStore } from './store.js';
import {
  XENSTORE_PAYLOAD_MAX,
  XS_DIRECTORY,
  XS_ERROR,
  XS_GET_DOMAIN_PATH,
  XS_GET_PERMS,
  XS_INTRODUCE,
  XS_READ,
  XS_RM,
  XS_SET_PERMS,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
  type WatchEvent,
} from './types.js';
import { XsWireDecoder, encodeMessage, errorName, splitStrings, type XsMessage } from './wire.js';

/** A client speaking raw xs_wire bytes over the socket. */
class WireClient {
  readonly received: XsMessage[] = [];
  readonly events: WatchEvent[] = [];
  readonly closed: Promise<void>;
  isClosed = false;
  private readonly decoder = new XsWireDecoder();
  private readonly waiters: (() => void)[] = [];
  private nextReq = 1;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk);
      for (let m = this.decoder.next(); m; m = this.decoder.next()) {
        this.received.push(m);
        if (m.type === XS_WATCH_EVENT) {
          const [path, token] = splitStrings(m.payload) as [string, string];
          this.events.push({ path, token });
        }
      }
      this.wake();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.wake();
        resolve();
      }),
    );
  }

  static open(path: string): Promise<WireClient> {
    return new Promise((resolve, reject) => {
      const s = connect(path, () => resolve(new WireClient(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolve once `pred` holds (checked on every arrival), or fail after `ms`. */
  async until(pred: () => boolean, what: string, ms = 3000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (this.isClosed) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  async request(type: number, payload: Buffer | string, tx = 0): Promise<XsMessage> {
    const reqId = this.nextReq++;
    this.send(encodeMessage(type, reqId, tx, typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload));
    return this.reply(reqId);
  }

  async reply(reqId: number): Promise<XsMessage> {
    const find = () => this.received.find((m) => m.type !== XS_WATCH_EVENT && m.reqId === reqId);
    await this.until(() => find() !== undefined, `reply to req ${reqId}`);
    return find()!;
  }

  /** The reply payload, or throw with the error name. */
  async ok(type: number, payload: Buffer | string, tx = 0): Promise<Buffer> {
    const r = await this.request(type, payload, tx);
    if (r.type === XS_ERROR) throw new Error(errorName(r.payload));
    expect(r.type).toBe(type);
    expect(r.txId).toBe(tx);
    return r.payload;
  }

  async error(type: number, payload: Buffer | string, tx = 0): Promise<string> {
    const r = await this.request(type, payload, tx);
    expect(r.type).toBe(XS_ERROR);
    expect(r.txId).toBe(tx);
    return errorName(r.payload);
  }

  close(): Promise<void> {
    this.socket.destroy();
    return this.closed;
  }
}

/** Poll until `pred` holds (server-side effects of a client closing land a little later). */
async function eventually(pred: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

let dir: string;
let sock: string;
let store: XenStore;
let server: XsSocketServer;
const clients: WireClient[] = [];
const open = async () => {
  const c = await WireClient.open(sock);
  clients.push(c);
  return c;
};

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pvsim-xs-'));
  sock = join(dir, 'socket');
  store = new XenStore();
  server = await startXsSocketServer(store, sock);
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.socket.destroy();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('xenstored socket', () => {
  it('serves READ / WRITE / DIRECTORY / RM / GET_PERMS / SET_PERMS / GET_DOMAIN_PATH as dom0', async () => {
    const c = await open();
    expect((await c.ok(XS_WRITE, '/vm/1/name\0guest-one')).toString()).toBe('OK\0');
    expect((await c.ok(XS_READ, '/vm/1/name\0')).toString()).toBe('guest-one');
    await c.ok(XS_WRITE, '/vm/1/uuid\0abc');
    expect(splitStrings(await c.ok(XS_DIRECTORY, '/vm/1\0'))).toEqual(['name', 'uuid']);
    await c.ok(XS_SET_PERMS, '/vm/1/name\0n0\0r1\0');
    expect((await c.ok(XS_GET_PERMS, '/vm/1/name\0')).toString()).toBe('n0\0r1\0');
    await c.ok(XS_RM, '/vm/1/uuid\0');
    expect(splitStrings(await c.ok(XS_DIRECTORY, '/vm/1\0'))).toEqual(['name']);
    expect((await c.ok(XS_GET_DOMAIN_PATH, '4\0')).toString()).toBe('/local/domain/4\0');
    // A socket connection is privileged.
    expect((await c.ok(XS_INTRODUCE, '4\0' + '1\0' + '1\0')).toString()).toBe('OK\0');
    // Relative paths of a dom0 connection are under /local/domain/0.
    await c.ok(XS_WRITE, 'rel\0x');
    expect(store.read(store.connect(0, () => {}), '/local/domain/0/rel')).toEqual({ ok: true, value: Buffer.from('x') });
  });

  it('answers errors with XS_ERROR, echoing req_id and tx_id', async () => {
    const c = await open();
    const r = await c.request(XS_READ, '/missing\0');
    expect(r).toMatchObject({ type: XS_ERROR, reqId: 1, txId: 0 });
    expect(r.payload.toString()).toBe('ENOENT\0');
    expect(await c.error(XS_READ, '/missing')).toBe('EINVAL');
    expect(await c.error(XS_WRITE, '/bad//path\0v')).toBe('EINVAL');
    expect(await c.error(999, '')).toBe('ENOSYS');
    expect(await c.error(XS_READ, '/a\0', 12345)).toBe('ENOENT'); // no such transaction
  });

  it('reassembles a request sent one byte at a time, and answers several sent in one write', async () => {
    const c = await open();
    const bytes = encodeMessage(XS_WRITE, 77, 0, '/slow\0drip');
    for (const b of bytes) {
      c.send(Buffer.from([b]));
      await new Promise((r) => setImmediate(r));
    }
    expect((await c.reply(77)).payload.toString()).toBe('OK\0');
    c.send(Buffer.concat([101, 102, 103].map((id) => encodeMessage(XS_READ, id, 0, '/slow\0'))));
    for (const id of [101, 102, 103]) expect((await c.reply(id)).payload.toString()).toBe('drip');
  });

  it('writes watch events: the WATCH reply first, then the initial event, then changes by others', async () => {
    const watcher = await open();
    const writer = await open();
    await writer.ok(XS_WRITE, '/backend/vif/1/0/state\0' + '1');
    const r = await watcher.request(XS_WATCH, '/backend\0tok\0');
    expect(r.payload.toString()).toBe('OK\0');
    await watcher.until(() => watcher.events.length === 1, 'initial event');
    const replyAt = watcher.received.indexOf(r);
    const initialAt = watcher.received.findIndex((m) => m.type === XS_WATCH_EVENT);
    expect(initialAt).toBeGreaterThan(replyAt);
    expect(watcher.events[0]).toEqual({ path: '/backend', token: 'tok' });
    const ev = watcher.received[initialAt]!;
    expect([ev.reqId, ev.txId]).toEqual([0, 0]);

    await writer.ok(XS_WRITE, '/backend/vif/1/0/state\0' + '4');
    await watcher.until(() => watcher.events.length === 2, 'change event');
    expect(watcher.events[1]).toEqual({ path: '/backend/vif/1/0/state', token: 'tok' });
    await writer.ok(XS_WRITE, '/elsewhere\0x');
    await writer.ok(XS_RM, '/backend/vif\0');
    await watcher.until(() => watcher.events.length >= 3, 'rm event');
    expect(watcher.events.slice(2)[0]).toEqual({ path: '/backend/vif', token: 'tok' });
    expect(watcher.events.some((e) => e.path === '/elsewhere')).toBe(false);
  });

  it('a write on the watching connection itself: reply first, then its event', async () => {
    const c = await open();
    await c.ok(XS_WATCH, '/self\0t\0');
    await c.until(() => c.events.length === 1, 'initial event');
    const r = await c.request(XS_WRITE, '/self/x\0' + '1');
    await c.until(() => c.events.length === 2, 'own change');
    const at = c.received.lastIndexOf(c.received.filter((m) => m.type === XS_WATCH_EVENT).at(-1)!);
    expect(at).toBeGreaterThan(c.received.indexOf(r));
  });

  it('transactions over the socket, with EAGAIN on a conflict', async () => {
    const a = await open();
    const b = await open();
    await a.ok(XS_WRITE, '/tx/counter\0' + '1');
    const id = Number((await a.ok(XS_TRANSACTION_START, '\0')).toString().slice(0, -1));
    expect(id).toBeGreaterThan(0);
    expect((await a.ok(XS_READ, '/tx/counter\0', id)).toString()).toBe('1');
    await a.ok(XS_WRITE, '/tx/counter\0' + '2', id);
    // Not visible outside the transaction, nor usable from another connection.
    expect((await b.ok(XS_READ, '/tx/counter\0')).toString()).toBe('1');
    expect(await b.error(XS_READ, '/tx/counter\0', id)).toBe('ENOENT');
    await a.ok(XS_TRANSACTION_END, 'T\0', id);
    expect((await b.ok(XS_READ, '/tx/counter\0')).toString()).toBe('2');

    const id2 = Number((await a.ok(XS_TRANSACTION_START, '\0')).toString().slice(0, -1));
    await a.ok(XS_READ, '/tx/counter\0', id2);
    await a.ok(XS_WRITE, '/tx/counter\0' + '3', id2);
    await b.ok(XS_WRITE, '/tx/counter\0' + '99');
    expect(await a.error(XS_TRANSACTION_END, 'T\0', id2)).toBe('EAGAIN');
    expect((await b.ok(XS_READ, '/tx/counter\0')).toString()).toBe('99');
  });

  it('closes a connection that sends len > XENSTORE_PAYLOAD_MAX, after answering what came before; others go on', async () => {
    const bad = await open();
    const good = await open();
    await good.ok(XS_WATCH, '/after\0g\0');
    const hdr = Buffer.alloc(16);
    hdr.writeUInt32LE(XS_WRITE, 0);
    hdr.writeUInt32LE(2, 4);
    hdr.writeUInt32LE(XENSTORE_PAYLOAD_MAX + 1, 12);
    bad.send(Buffer.concat([encodeMessage(XS_WRITE, 1, 0, '/before\0ok'), hdr, Buffer.alloc(100)]));
    await bad.closed;
    expect(bad.received.map((m) => [m.reqId, m.payload.toString()])).toEqual([[1, 'OK\0']]);
    expect((await good.ok(XS_READ, '/before\0')).toString()).toBe('ok');
    // The closed connection's watches are gone with it; the server keeps serving.
    await eventually(() => server.connections === 1, 'the server to drop the bad client');
    const third = await open();
    await third.ok(XS_WRITE, '/after/x\0' + '1');
    await good.until(() => good.events.some((e) => e.path === '/after/x'), 'event after the bad client');
  });

  it('answers a maximal request and closes on an oversize one split across writes', async () => {
    const c = await open();
    const path = '/max';
    const value = Buffer.alloc(XENSTORE_PAYLOAD_MAX - path.length - 1, 0x7a);
    expect((await c.ok(XS_WRITE, Buffer.concat([Buffer.from(`${path}\0`), value]))).toString()).toBe('OK\0');
    expect((await c.ok(XS_READ, `${path}\0`)).equals(value)).toBe(true);
    const hdr = Buffer.alloc(16);
    hdr.writeUInt32LE(0xffffffff, 12);
    c.send(hdr.subarray(0, 14));
    await new Promise((r) => setTimeout(r, 20));
    expect(c.isClosed).toBe(false);
    c.send(hdr.subarray(14));
    await c.closed;
  });

  it('survives garbage and half-sent messages from clients that then vanish', async () => {
    for (let i = 0; i < 5; i++) {
      const c = await open();
      c.send(Buffer.from([0xde, 0xad, 0xbe, 0xef, 1, 2, 3]));
      await c.close();
    }
    const c = await open();
    c.send(encodeMessage(XS_WRITE, 1, 0, '/half\0-sent').subarray(0, 20));
    await c.close();
    const d = await open();
    expect(await d.error(XS_READ, '/half\0')).toBe('ENOENT');
    await eventually(() => server.connections === 1, 'the server to drop the vanished clients');
  });

  it('stops reading from a client that does not read its replies, and resumes when it does', async () => {
    await server.close();
    server = await startXsSocketServer(store, sock, { highWaterBytes: 16 * 1024, maxQueuedBytes: 64 * 1024 * 1024 });
    const c = await open();
    await c.ok(XS_WRITE, Buffer.concat([Buffer.from('/fat\0'), Buffer.alloc(4000, 0x41)]));
    c.socket.pause();
    // 2000 reads of a 4000-byte value (~8 MB of replies, far beyond socket buffers), then a
    // write: the server must stop reading before it gets to the write.
    const n = 2000;
    const reqs = Array.from({ length: n }, (_, i) => encodeMessage(XS_READ, 1000 + i, 0, '/fat\0'));
    c.send(Buffer.concat([...reqs, encodeMessage(XS_WRITE, 9999, 0, '/marker\0' + 'done')]));
    const probe = store.connect(0, () => {});
    await new Promise((r) => setTimeout(r, 300));
    expect(store.read(probe, '/marker').ok).toBe(false);
    c.socket.resume();
    expect((await c.reply(9999)).payload.toString()).toBe('OK\0');
    const replies = c.received.filter((m) => m.reqId >= 1000 && m.reqId < 9999);
    expect(replies.length).toBe(n);
    expect(replies.every((m) => m.payload.length === 4000)).toBe(true);
    expect(store.read(probe, '/marker').ok).toBe(true);
  });

  it('disconnects a client whose unread watch events exceed the outgoing bound; others are unaffected', async () => {
    await server.close();
    server = await startXsSocketServer(store, sock, { maxQueuedBytes: 64 * 1024 });
    const sleeper = await open();
    const awake = await open();
    const writer = await open();
    await sleeper.ok(XS_WATCH, '/flood\0s\0');
    await awake.ok(XS_WATCH, '/flood\0a\0');
    sleeper.socket.pause();
    // Events carry a long path: ~2 KB each; a few MB in total outgrow socket buffers + 64 KiB.
    const long = `/flood/${'p'.repeat(2000)}`;
    let i = 0;
    for (; i < 3000 && server.connections === 3; i++) await writer.ok(XS_WRITE, `${long}\0${i}`);
    expect(server.connections).toBe(2);
    expect(i).toBeLessThan(3000);
    // The sleeper sees what was sent before the cut, then the end of the connection.
    sleeper.socket.resume();
    await sleeper.closed;
    expect((await writer.ok(XS_READ, `${long}\0`)).toString()).toBe(String(i - 1));
    await awake.until(() => awake.events.length === i + 1, 'every event on the reading client');
  });

  it('drops the connection\'s transactions when it closes', async () => {
    const a = await open();
    const id = Number((await a.ok(XS_TRANSACTION_START, '\0')).toString().slice(0, -1));
    await a.ok(XS_WRITE, '/gone\0v', id);
    await a.close();
    await eventually(() => server.connections === 0, 'the server to see the close');
    const b = await open();
    expect(await b.error(XS_READ, '/gone\0')).toBe('ENOENT');
  });

  it('close() drops clients and removes the socket; a stale socket file is replaced on start', async () => {
    const c = await open();
    await server.close();
    await c.closed;
    expect(existsSync(sock)).toBe(false);

    // Leave a stale socket behind: a process that exits while listening does not unlink it.
    execFileSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.exit(0))`]);
    expect(lstatSync(sock).isSocket()).toBe(true);
    writeFileSync(join(dir, 'not-a-socket'), 'x');
    server = await startXsSocketServer(store, sock);
    const d = await open();
    await d.ok(XS_WRITE, '/fresh\0' + '1');
    await expect(startXsSocketServer(store, join(dir, 'not-a-socket'))).rejects.toThrow();
  });
});
