import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { XenStore } from './store.js';
import {
  XENSTORE_PAYLOAD_MAX,
  XSD_SOCKMSG_BYTES,
  XS_CONTROL,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_ERROR,
  XS_GET_DOMAIN_PATH,
  XS_GET_FEATURE,
  XS_GET_PERMS,
  XS_INTRODUCE,
  XS_INVALID,
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
  type WatchEvent,
  type XsConnection,
} from './types.js';
import {
  XS_MESSAGE_MAX,
  XsWireDecoder,
  directoryPart,
  encodeError,
  encodeMessage,
  encodeReply,
  encodeWatchEvent,
  errorName,
  handleMessage,
  splitStrings,
  type XsMessage,
} from './wire.js';

const SEED = 20240917;

const msg = (type: number, payload: Buffer | string, reqId = 7, txId = 0): XsMessage => ({
  type,
  reqId,
  txId,
  payload: typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload,
});

/** Decode exactly one message from bytes (a reply). */
function decodeOne(bytes: Buffer): XsMessage {
  const d = new XsWireDecoder();
  d.push(bytes);
  const m = d.next();
  expect(m).not.toBeNull();
  expect(d.next()).toBeNull();
  expect(d.bufferedBytes).toBe(0);
  return m!;
}

/** A store, a dom0 and a domU connection, and a request helper returning the decoded reply. */
function setup() {
  const store = new XenStore();
  const events = new Map<number, WatchEvent[]>();
  const connect = (dom: number) => {
    const list: WatchEvent[] = [];
    const c = store.connect(dom, (ev) => list.push(ev));
    events.set(c.id, list);
    return c;
  };
  const dom0 = connect(0);
  const req = (conn: XsConnection, type: number, payload: Buffer | string, txId = 0, reqId = 7) => {
    const r = decodeOne(handleMessage(store, conn, msg(type, payload, reqId, txId)));
    expect(r.reqId).toBe(reqId);
    expect(r.txId).toBe(txId);
    return r;
  };
  const ok = (conn: XsConnection, type: number, payload: Buffer | string, txId = 0) => {
    const r = req(conn, type, payload, txId);
    if (r.type === XS_ERROR) throw new Error(`type ${type} ${JSON.stringify(payload.toString())}: ${errorName(r.payload)}`);
    expect(r.type).toBe(type);
    return r.payload;
  };
  const error = (conn: XsConnection, type: number, payload: Buffer | string, txId = 0) => {
    const r = req(conn, type, payload, txId);
    expect(r.type).toBe(XS_ERROR);
    expect(r.payload[r.payload.length - 1]).toBe(0);
    return errorName(r.payload);
  };
  const eventsOf = (c: XsConnection) => events.get(c.id)!;
  return { store, dom0, connect, req, ok, error, eventsOf };
}

describe('framing', () => {
  const samples = [
    encodeMessage(XS_WRITE, 1, 0, Buffer.from('/a\0value')),
    encodeMessage(XS_READ, 2, 5, '/a\0'),
    encodeMessage(XS_TRANSACTION_START, 0xffffffff, 0, '\0'),
    encodeMessage(XS_DIRECTORY, 3, 0, Buffer.alloc(0)),
    encodeMessage(XS_WRITE, 4, 0, Buffer.concat([Buffer.from('/big\0'), Buffer.alloc(XENSTORE_PAYLOAD_MAX - 5, 0x61)])),
  ];
  const stream = Buffer.concat(samples);

  it('lays out xsd_sockmsg little-endian: type, req_id, tx_id, len, then the payload', () => {
    const b = encodeMessage(XS_READ, 0x01020304, 0x0a0b0c0d, '/x\0');
    expect([...b.subarray(0, XSD_SOCKMSG_BYTES)]).toEqual([2, 0, 0, 0, 4, 3, 2, 1, 0x0d, 0x0c, 0x0b, 0x0a, 3, 0, 0, 0]);
    expect(b.subarray(16).toString('latin1')).toBe('/x\0');
  });

  it('decodes several messages from one chunk', () => {
    const d = new XsWireDecoder();
    d.push(stream);
    const got = d.drain();
    expect(got.map((m) => m.reqId)).toEqual([1, 2, 0xffffffff, 3, 4]);
    expect(got[1]).toEqual({ type: XS_READ, reqId: 2, txId: 5, payload: Buffer.from('/a\0') });
    expect(got[3]!.payload.length).toBe(0);
    expect(got[4]!.payload.length).toBe(XENSTORE_PAYLOAD_MAX);
    expect(d.bufferedBytes).toBe(0);
  });

  it('reassembles messages split at every possible boundary', () => {
    const show = (ms: XsMessage[]) => ms.map((m) => `${m.type}/${m.reqId}/${m.txId}/${m.payload.toString('hex')}`);
    const whole = new XsWireDecoder();
    whole.push(stream);
    const expected = show(whole.drain());
    expect(expected.length).toBe(samples.length);
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new XsWireDecoder();
      const got: XsMessage[] = [];
      d.push(stream.subarray(0, cut));
      got.push(...d.drain());
      d.push(stream.subarray(cut));
      got.push(...d.drain());
      expect(show(got)).toEqual(expected);
    }
  });

  it('reassembles a stream fed one byte at a time, and random chunkings (fast-check)', () => {
    const d = new XsWireDecoder();
    const got: XsMessage[] = [];
    for (const b of stream) {
      d.push(Buffer.from([b]));
      got.push(...d.drain());
      expect(d.bufferedBytes).toBeLessThanOrEqual(XS_MESSAGE_MAX);
    }
    expect(got.length).toBe(samples.length);

    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 30 }), (sizes) => {
        const dd = new XsWireDecoder();
        const out: XsMessage[] = [];
        let at = 0;
        for (let i = 0; at < stream.length; i++) {
          const n = sizes[i % sizes.length]!;
          dd.push(stream.subarray(at, at + n));
          at += n;
          out.push(...dd.drain());
        }
        expect(out.map((m) => [m.type, m.reqId, m.payload.length])).toEqual(samples.map((s) => [s.readUInt32LE(0), s.readUInt32LE(4), s.length - 16]));
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it('hands out one message at a time and keeps the rest queued', () => {
    const d = new XsWireDecoder();
    d.push(stream);
    expect(d.next()!.reqId).toBe(1);
    expect(d.bufferedBytes).toBe(stream.length - samples[0]!.length);
    expect(d.next()!.reqId).toBe(2);
  });

  it('returns payloads that do not alias the pushed chunk', () => {
    const chunk = Buffer.from(encodeMessage(XS_READ, 1, 0, '/a\0'));
    const d = new XsWireDecoder();
    d.push(chunk);
    const m = d.next()!;
    chunk.fill(0);
    expect(m.payload.toString()).toBe('/a\0');
  });

  it('accepts len = XENSTORE_PAYLOAD_MAX and fails the stream on len = XENSTORE_PAYLOAD_MAX + 1', () => {
    const hdr = Buffer.alloc(16);
    hdr.writeUInt32LE(XS_WRITE, 0);
    hdr.writeUInt32LE(9, 4);
    hdr.writeUInt32LE(XENSTORE_PAYLOAD_MAX + 1, 12);
    for (const split of [false, true]) {
      const d = new XsWireDecoder();
      d.push(samples[1]!);
      if (split) {
        d.push(hdr.subarray(0, 13));
        expect(d.next()!.reqId).toBe(2);
        expect(d.next()).toBeNull();
        expect(d.failure).toBeNull();
        d.push(hdr.subarray(13));
      } else {
        d.push(hdr);
        expect(d.next()!.reqId).toBe(2);
      }
      expect(d.next()).toBeNull();
      expect(d.failure).toEqual({ reason: 'oversize', len: XENSTORE_PAYLOAD_MAX + 1, type: XS_WRITE, reqId: 9 });
      // Dead from then on: nothing else decodes, nothing accumulates.
      d.push(samples[1]!);
      expect(d.next()).toBeNull();
      expect(d.bufferedBytes).toBe(0);
    }
  });

  it('fails on a huge len without waiting for (or buffering) the payload', () => {
    const hdr = Buffer.alloc(16);
    hdr.writeUInt32LE(0xffffffff, 12);
    const d = new XsWireDecoder();
    d.push(hdr);
    expect(d.next()).toBeNull();
    expect(d.failure?.len).toBe(0xffffffff);
  });
});

describe('reply encoding', () => {
  const req = { type: XS_READ, reqId: 42, txId: 3 };

  it('echoes type, req_id and tx_id; errors are XS_ERROR "E…\\0"', () => {
    expect(decodeOne(encodeReply(req, Buffer.from('v')))).toEqual({ type: XS_READ, reqId: 42, txId: 3, payload: Buffer.from('v') });
    expect(decodeOne(encodeError(req, 'ENOENT'))).toEqual({ type: XS_ERROR, reqId: 42, txId: 3, payload: Buffer.from('ENOENT\0') });
  });

  it('turns an over-long reply into E2BIG', () => {
    const r = decodeOne(encodeReply(req, Buffer.alloc(XENSTORE_PAYLOAD_MAX + 1)));
    expect(r.type).toBe(XS_ERROR);
    expect(errorName(r.payload)).toBe('E2BIG');
    expect(decodeOne(encodeReply(req, Buffer.alloc(XENSTORE_PAYLOAD_MAX))).type).toBe(XS_READ);
  });

  it('encodes watch events as type 15, req_id = tx_id = 0, "path\\0token\\0"; drops over-long ones', () => {
    expect(decodeOne(encodeWatchEvent({ path: '/a/b', token: 'tok' })!)).toEqual({
      type: XS_WATCH_EVENT,
      reqId: 0,
      txId: 0,
      payload: Buffer.from('/a/b\0tok\0'),
    });
    expect(encodeWatchEvent({ path: '/a', token: 'x'.repeat(XENSTORE_PAYLOAD_MAX - 4) })).not.toBeNull();
    expect(encodeWatchEvent({ path: '/a', token: 'x'.repeat(XENSTORE_PAYLOAD_MAX - 3) })).toBeNull();
  });
});

describe('handleMessage', () => {
  it('READ / WRITE: value is the raw rest of the payload, any bytes, no terminator', () => {
    const { dom0, ok, error } = setup();
    const value = Buffer.from([0, 1, 2, 0, 255, 0x0a, 0]);
    expect(ok(dom0, XS_WRITE, Buffer.concat([Buffer.from('/vm/x\0'), value])).toString()).toBe('OK\0');
    expect(ok(dom0, XS_READ, '/vm/x\0')).toEqual(value);
    ok(dom0, XS_WRITE, '/vm/empty\0');
    expect(ok(dom0, XS_READ, '/vm/empty\0').length).toBe(0);
    // Parents were created, with empty values.
    expect(ok(dom0, XS_READ, '/vm\0').length).toBe(0);
    expect(error(dom0, XS_READ, '/nope\0')).toBe('ENOENT');
    expect(error(dom0, XS_WRITE, '/no-nul-at-all')).toBe('EINVAL');
    expect(error(dom0, XS_WRITE, '')).toBe('EINVAL');
  });

  it('READ, MKDIR, RM, DIRECTORY, GET_PERMS take exactly one NUL-terminated path', () => {
    const { dom0, ok, error } = setup();
    ok(dom0, XS_WRITE, '/a\0v');
    for (const t of [XS_READ, XS_MKDIR, XS_RM, XS_DIRECTORY, XS_GET_PERMS]) {
      expect(error(dom0, t, '/a'), `type ${t} unterminated`).toBe('EINVAL');
      expect(error(dom0, t, '/a\0extra\0'), `type ${t} two strings`).toBe('EINVAL');
      expect(error(dom0, t, '/a\0junk'), `type ${t} trailing bytes`).toBe('EINVAL');
      expect(error(dom0, t, ''), `type ${t} empty`).toBe('EINVAL');
      expect(error(dom0, t, '\0'), `type ${t} empty path`).toBe('EINVAL');
      expect(error(dom0, t, '/a//b\0'), `type ${t} bad path`).toBe('EINVAL');
      expect(error(dom0, t, '/a/\xe9\0'), `type ${t} bad char`).toBe('EINVAL');
    }
  });

  it('MKDIR, DIRECTORY (each child NUL-terminated), RM', () => {
    const { dom0, ok, error } = setup();
    ok(dom0, XS_MKDIR, '/d/x\0');
    ok(dom0, XS_WRITE, '/d/y\0v');
    ok(dom0, XS_MKDIR, '/d/x\0'); // already there: fine
    expect(ok(dom0, XS_DIRECTORY, '/d\0').toString()).toBe('x\0y\0');
    expect(ok(dom0, XS_DIRECTORY, '/d/x\0').length).toBe(0);
    expect(ok(dom0, XS_RM, '/d/x\0').toString()).toBe('OK\0');
    expect(ok(dom0, XS_DIRECTORY, '/d\0').toString()).toBe('y\0');
    ok(dom0, XS_RM, '/d/gone\0'); // missing, parent exists: fine
    expect(error(dom0, XS_RM, '/nowhere/gone\0')).toBe('ENOENT');
    expect(error(dom0, XS_DIRECTORY, '/nowhere\0')).toBe('ENOENT');
    ok(dom0, XS_RM, '/d\0');
    expect(error(dom0, XS_READ, '/d/y\0')).toBe('ENOENT');
  });

  it('relative paths are under /local/domain/<dom>', () => {
    const { dom0, ok, connect } = setup();
    const dom3 = connect(3);
    ok(dom0, XS_MKDIR, '/local/domain/3\0');
    ok(dom0, XS_SET_PERMS, '/local/domain/3\0b3\0');
    ok(dom3, XS_WRITE, 'data/k\0v');
    expect(ok(dom0, XS_READ, '/local/domain/3/data/k\0').toString()).toBe('v');
  });

  it('GET_PERMS / SET_PERMS: "w0\\0r1\\0…"', () => {
    const { dom0, ok, error } = setup();
    ok(dom0, XS_WRITE, '/p\0v');
    expect(ok(dom0, XS_SET_PERMS, '/p\0w0\0r1\0b2\0n3\0').toString()).toBe('OK\0');
    expect(ok(dom0, XS_GET_PERMS, '/p\0').toString()).toBe('w0\0r1\0b2\0n3\0');
    expect(splitStrings(ok(dom0, XS_GET_PERMS, '/p\0'))).toEqual(['w0', 'r1', 'b2', 'n3']);
    expect(error(dom0, XS_SET_PERMS, '/p\0')).toBe('EINVAL'); // no permission at all
    expect(error(dom0, XS_SET_PERMS, '/p\0x1\0')).toBe('EINVAL');
    expect(error(dom0, XS_SET_PERMS, '/p\0r\0')).toBe('EINVAL');
    expect(error(dom0, XS_SET_PERMS, '/p\0r65536\0')).toBe('EINVAL');
    expect(error(dom0, XS_SET_PERMS, '/p\0r-1\0')).toBe('EINVAL');
    expect(error(dom0, XS_SET_PERMS, '/p\0r1')).toBe('EINVAL'); // unterminated
    expect(error(dom0, XS_SET_PERMS, '/missing\0r1\0')).toBe('ENOENT');
    expect(ok(dom0, XS_GET_PERMS, '/p\0').toString()).toBe('w0\0r1\0b2\0n3\0');
  });

  it('enforces permissions for a guest connection', () => {
    const { dom0, ok, error, connect } = setup();
    const dom1 = connect(1);
    const dom2 = connect(2);
    ok(dom0, XS_WRITE, '/shared\0v');
    ok(dom0, XS_SET_PERMS, '/shared\0n0\0r1\0');
    expect(ok(dom1, XS_READ, '/shared\0').toString()).toBe('v');
    expect(error(dom1, XS_WRITE, '/shared\0w')).toBe('EACCES');
    expect(error(dom2, XS_READ, '/shared\0')).toBe('EACCES');
  });

  it('WATCH / UNWATCH: "path\\0token\\0"; fires at once, then on changes', () => {
    const { dom0, ok, error, eventsOf } = setup();
    const events = eventsOf(dom0);
    expect(ok(dom0, XS_WATCH, '/w\0tok\xff\0').toString()).toBe('OK\0');
    // The token round-trips byte for byte (latin1).
    expect(events).toEqual([{ path: '/w', token: 'tok\xff' }]);
    expect([...encodeWatchEvent(events[0]!)!.subarray(16)]).toEqual([...Buffer.from('/w\0tok\xff\0', 'latin1')]);
    ok(dom0, XS_WRITE, '/w/child\0x');
    expect(events.at(-1)).toEqual({ path: '/w/child', token: 'tok\xff' });
    expect(error(dom0, XS_WATCH, '/w\0tok\xff\0')).toBe('EEXIST');
    expect(error(dom0, XS_WATCH, '/w\0')).toBe('EINVAL');
    expect(error(dom0, XS_WATCH, '/w\0t')).toBe('EINVAL');
    expect(error(dom0, XS_WATCH, '/w\0t\0'.concat('0\0'))).toBe('EINVAL'); // depth: not offered
    expect(error(dom0, XS_WATCH, '/w//x\0t\0')).toBe('EINVAL');
    ok(dom0, XS_UNWATCH, '/w\0tok\xff\0');
    expect(error(dom0, XS_UNWATCH, '/w\0tok\xff\0')).toBe('ENOENT');
    expect(error(dom0, XS_UNWATCH, '/w\0')).toBe('EINVAL');
    const n = events.length;
    ok(dom0, XS_WRITE, '/w/child\0y');
    expect(events.length).toBe(n);
  });

  it('WATCH on @introduceDomain / @releaseDomain, INTRODUCE, RELEASE, IS_DOMAIN_INTRODUCED', () => {
    const { dom0, ok, error, eventsOf } = setup();
    const events = eventsOf(dom0);
    ok(dom0, XS_WATCH, '@introduceDomain\0i\0');
    ok(dom0, XS_WATCH, '@releaseDomain\0r\0');
    events.length = 0;
    expect(ok(dom0, XS_IS_DOMAIN_INTRODUCED, '5\0').toString()).toBe('F\0');
    expect(ok(dom0, XS_INTRODUCE, '5\0' + '123456\0' + '7\0').toString()).toBe('OK\0');
    expect(events).toEqual([{ path: '@introduceDomain', token: 'i' }]);
    expect(ok(dom0, XS_IS_DOMAIN_INTRODUCED, '5\0').toString()).toBe('T\0');
    expect(ok(dom0, XS_IS_DOMAIN_INTRODUCED, '0\0').toString()).toBe('T\0');
    expect(ok(dom0, XS_RELEASE, '5\0').toString()).toBe('OK\0');
    expect(events.at(-1)).toEqual({ path: '@releaseDomain', token: 'r' });
    expect(ok(dom0, XS_IS_DOMAIN_INTRODUCED, '5\0').toString()).toBe('F\0');
    expect(error(dom0, XS_RELEASE, '5\0')).toBe('ENOENT');
    expect(error(dom0, XS_RELEASE, '0\0')).toBe('EINVAL');
    for (const bad of ['x\0', '65536\0', '5', '\0', '5\0\0']) {
      expect(error(dom0, XS_IS_DOMAIN_INTRODUCED, bad)).toBe('EINVAL');
      expect(error(dom0, XS_RELEASE, bad)).toBe('EINVAL');
    }
    expect(error(dom0, XS_INTRODUCE, '5\0' + '1\0')).toBe('EINVAL');
    expect(error(dom0, XS_INTRODUCE, '5\0' + '1\0' + '0\0')).toBe('EINVAL'); // port 0
    expect(error(dom0, XS_INTRODUCE, 'five\0' + '1\0' + '2\0')).toBe('EINVAL');
  });

  it('privileged types from a guest are EACCES, before their payload is looked at', () => {
    const { error, connect } = setup();
    const dom1 = connect(1);
    expect(error(dom1, XS_INTRODUCE, '5\0' + '1\0' + '2\0')).toBe('EACCES');
    expect(error(dom1, XS_RELEASE, '5\0')).toBe('EACCES');
    expect(error(dom1, XS_IS_DOMAIN_INTRODUCED, 'garbage')).toBe('EACCES');
    expect(error(dom1, XS_CONTROL, 'print\0')).toBe('EACCES');
    expect(error(dom1, XS_SET_TARGET, '1\0' + '2\0')).toBe('EACCES');
  });

  it('GET_DOMAIN_PATH: "<domid>\\0" → "/local/domain/<domid>\\0"', () => {
    const { dom0, ok, error, connect } = setup();
    expect(ok(dom0, XS_GET_DOMAIN_PATH, '7\0').toString()).toBe('/local/domain/7\0');
    expect(ok(connect(3), XS_GET_DOMAIN_PATH, '3\0').toString()).toBe('/local/domain/3\0');
    expect(error(dom0, XS_GET_DOMAIN_PATH, '7')).toBe('EINVAL');
    expect(error(dom0, XS_GET_DOMAIN_PATH, '-1\0')).toBe('EINVAL');
    expect(error(dom0, XS_GET_DOMAIN_PATH, '99999\0')).toBe('EINVAL');
  });

  it('transactions: START → "<id>\\0", requests carry tx_id, END "T\\0" commits, "F\\0" aborts', () => {
    const { dom0, ok, error, connect } = setup();
    const other = connect(0);
    const id = Number(ok(dom0, XS_TRANSACTION_START, '\0').toString().replace(/\0$/, ''));
    expect(ok(dom0, XS_TRANSACTION_START, '\0').toString()).toMatch(/^[1-9]\d*\0$/);
    expect(id).toBeGreaterThan(0);
    ok(dom0, XS_WRITE, '/t/a\0in-tx', id);
    expect(ok(dom0, XS_READ, '/t/a\0', id).toString()).toBe('in-tx');
    expect(error(dom0, XS_READ, '/t/a\0')).toBe('ENOENT');
    // Another connection cannot use it.
    expect(error(other, XS_READ, '/t/a\0', id)).toBe('ENOENT');
    expect(error(dom0, XS_TRANSACTION_END, 'X\0', id)).toBe('EINVAL');
    expect(error(dom0, XS_TRANSACTION_END, 'T', id)).toBe('EINVAL');
    expect(error(dom0, XS_TRANSACTION_END, 'T\0T\0', id)).toBe('EINVAL');
    expect(error(dom0, XS_TRANSACTION_END, 'T\0', 0)).toBe('ENOENT');
    expect(error(dom0, XS_TRANSACTION_START, '\0', id)).toBe('EBUSY');
    expect(ok(dom0, XS_TRANSACTION_END, 'T\0', id).toString()).toBe('OK\0');
    expect(ok(dom0, XS_READ, '/t/a\0').toString()).toBe('in-tx');
    expect(error(dom0, XS_TRANSACTION_END, 'T\0', id)).toBe('ENOENT');
    expect(error(dom0, XS_READ, '/t/a\0', 987654)).toBe('ENOENT');

    const id2 = Number(ok(dom0, XS_TRANSACTION_START, '\0').toString().slice(0, -1));
    ok(dom0, XS_WRITE, '/t/a\0aborted', id2);
    ok(dom0, XS_TRANSACTION_END, 'F\0', id2);
    expect(ok(dom0, XS_READ, '/t/a\0').toString()).toBe('in-tx');
  });

  it('a conflicting commit is EAGAIN and changes nothing', () => {
    const { dom0, ok, error, connect } = setup();
    const other = connect(0);
    ok(dom0, XS_WRITE, '/c\0v0');
    const id = Number(ok(dom0, XS_TRANSACTION_START, '\0').toString().slice(0, -1));
    expect(ok(dom0, XS_READ, '/c\0', id).toString()).toBe('v0');
    ok(dom0, XS_WRITE, '/c2\0mine', id);
    ok(other, XS_WRITE, '/c\0theirs');
    expect(error(dom0, XS_TRANSACTION_END, 'T\0', id)).toBe('EAGAIN');
    expect(error(dom0, XS_READ, '/c2\0')).toBe('ENOENT');
    expect(ok(dom0, XS_READ, '/c\0').toString()).toBe('theirs');
  });

  it('RESET_WATCHES drops the connection\'s watches', () => {
    const { dom0, ok, eventsOf } = setup();
    const events = eventsOf(dom0);
    ok(dom0, XS_WATCH, '/r\0t\0');
    expect(ok(dom0, XS_RESET_WATCHES, '').toString()).toBe('OK\0');
    const n = events.length;
    ok(dom0, XS_WRITE, '/r\0x');
    expect(events.length).toBe(n);
    // The watch can be set again (it is gone, not EEXIST).
    ok(dom0, XS_WATCH, '/r\0t\0');
  });

  it('RESET_WATCHES also aborts the connection\'s open transactions (xenstore.txt)', () => {
    const { dom0, ok, error } = setup();
    const id = Number(ok(dom0, XS_TRANSACTION_START, '\0').toString().slice(0, -1));
    ok(dom0, XS_WRITE, '/rt\0v', id);
    ok(dom0, XS_RESET_WATCHES, '');
    expect(error(dom0, XS_READ, '/rt\0', id)).toBe('ENOENT');
    expect(error(dom0, XS_TRANSACTION_END, 'T\0', id)).toBe('ENOENT');
    expect(error(dom0, XS_READ, '/rt\0')).toBe('ENOENT');
  });

  it('an exception from the store is answered EIO, not thrown', () => {
    const { store, dom0 } = setup();
    const broken = Object.create(store) as XenStore;
    broken.read = () => {
      throw new Error('store bug');
    };
    const r = decodeOne(handleMessage(broken, dom0, msg(XS_READ, '/a\0', 3, 0)));
    expect(r).toMatchObject({ type: XS_ERROR, reqId: 3 });
    expect(errorName(r.payload)).toBe('EIO');
  });

  it('unknown types and client-sent WATCH_EVENT / ERROR / unimplemented types are ENOSYS', () => {
    const { dom0, error } = setup();
    for (const t of [XS_WATCH_EVENT, XS_ERROR, 20, 27, 1000, XS_INVALID, 0xffffffff, XS_CONTROL, XS_GET_FEATURE]) {
      expect(error(dom0, t, '/a\0'), `type ${t}`).toBe('ENOSYS');
    }
  });

  it('a reply longer than XENSTORE_PAYLOAD_MAX is E2BIG (DIRECTORY), and DIRECTORY_PART pages it', () => {
    const { store, dom0, ok, error } = setup();
    const names: string[] = [];
    for (let i = 0; i < 400; i++) names.push(`child-number-${String(i).padStart(4, '0')}`);
    for (const n of names) ok(dom0, XS_WRITE, `/big/${n}\0`);
    expect(error(dom0, XS_DIRECTORY, '/big\0')).toBe('E2BIG');

    // libxenstore's xs_directory_part, step by step.
    const fetchAll = () => {
      let strings = Buffer.alloc(0);
      let gen: string | null = null;
      let parts = 0;
      for (let off = 0; ; ) {
        const result = ok(dom0, XS_DIRECTORY_PART, `/big\0${off}\0`);
        parts++;
        expect(result.length).toBeLessThanOrEqual(XENSTORE_PAYLOAD_MAX);
        const g = result.toString('latin1', 0, result.indexOf(0));
        if (gen === null) gen = g;
        expect(g).toBe(gen);
        const rest = result.subarray(result.indexOf(0) + 1);
        strings = Buffer.concat([strings, rest]);
        off += rest.length;
        if (off <= 1 || strings[off - 2] === 0) break;
      }
      return { names: splitStrings(strings.subarray(0, strings.length - 1)), gen: gen!, parts };
    };
    const first = fetchAll();
    expect(first.names).toEqual(names);
    expect(first.parts).toBeGreaterThan(1);
    // The generation is stable while nothing changes, and differs after a change.
    expect(fetchAll().gen).toBe(first.gen);
    store.write(dom0, '/big/zzz', '');
    expect(fetchAll().gen).not.toBe(first.gen);

    // Empty directory and offset past the end: "<gen>\0\0".
    ok(dom0, XS_MKDIR, '/empty\0');
    expect(ok(dom0, XS_DIRECTORY_PART, '/empty\0' + '0\0').toString()).toMatch(/^\d+\0\0$/);
    expect(ok(dom0, XS_DIRECTORY_PART, '/big\0' + '999999\0').toString()).toMatch(/^\d+\0\0$/);
    expect(error(dom0, XS_DIRECTORY_PART, '/big\0')).toBe('EINVAL');
    expect(error(dom0, XS_DIRECTORY_PART, '/big\0x\0')).toBe('EINVAL');
    expect(error(dom0, XS_DIRECTORY_PART, '/nope\0' + '0\0')).toBe('ENOENT');
  });

  it('directoryPart matches cxenstored byte for byte on a small list', () => {
    const children = Buffer.from('a\0bb\0ccc\0');
    expect(directoryPart(children, 0, '5').toString()).toBe('5\0a\0bb\0ccc\0\0');
    expect(directoryPart(children, 2, '5').toString()).toBe('5\0bb\0ccc\0\0');
    expect(directoryPart(children, 9, '5').toString()).toBe('5\0\0');
    expect(directoryPart(Buffer.alloc(0), 0, '12').toString()).toBe('12\0\0');
  });

  it('READ of a value too long for one reply (written through the API) is E2BIG', () => {
    const { store, dom0, error } = setup();
    expect(store.write(dom0, '/huge', Buffer.alloc(XENSTORE_PAYLOAD_MAX + 1, 0x41)).ok).toBe(true);
    expect(error(dom0, XS_READ, '/huge\0')).toBe('E2BIG');
  });

  it('never throws and always answers one well-formed reply, whatever the bytes (fast-check)', () => {
    const { store, dom0, connect } = setup();
    const dom1 = connect(1);
    const types = fc.oneof(fc.integer({ min: 0, max: 30 }), fc.constantFrom(XS_INVALID, 0xffffffff));
    const strs = fc.array(fc.oneof(fc.constantFrom('/a', '/a/b', 'rel', '@introduceDomain', 'T', 'F', '0', '1', 'r1', 'w0', ''), fc.string({ maxLength: 8 })), { maxLength: 4 });
    const payload = fc.oneof(
      fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
      fc.tuple(strs, fc.boolean()).map(([ss, term]) => Buffer.from(ss.join('\0') + (term ? '\0' : ''), 'latin1')),
    );
    fc.assert(
      fc.property(types, payload, fc.integer({ min: 0, max: 5 }), fc.boolean(), fc.nat(), (type, p, tx, guest, reqId) => {
        const conn = guest ? dom1 : dom0;
        const bytes = handleMessage(store, conn, { type, reqId, txId: tx, payload: p });
        const r = decodeOne(bytes);
        expect(r.reqId).toBe(reqId);
        expect(r.txId).toBe(tx);
        expect([type, XS_ERROR]).toContain(r.type);
        expect(r.payload.length).toBeLessThanOrEqual(XENSTORE_PAYLOAD_MAX);
        // EIO would mean the store threw (handleMessage turns exceptions into EIO).
        if (r.type === XS_ERROR) expect(errorName(r.payload)).toMatch(/^E(?!IO$)[A-Z0-9]+$/);
      }),
      { seed: SEED, numRuns: 3000 },
    );
  });

  it('random byte streams never throw through decode + dispatch (fast-check)', () => {
    const { store, dom0 } = setup();
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 0, maxLength: 80 }), { maxLength: 8 }), (chunks) => {
        const d = new XsWireDecoder();
        for (const c of chunks) {
          d.push(Buffer.from(c));
          for (let m = d.next(); m; m = d.next()) decodeOne(handleMessage(store, dom0, m));
          expect(d.bufferedBytes).toBeLessThanOrEqual(80 * 8);
        }
      }),
      { seed: SEED, numRuns: 2000 },
    );
    // Random headers with small lengths, so messages actually complete.
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 30 }), fc.uint8Array({ maxLength: 40 })), { maxLength: 10 }), fc.integer({ min: 1, max: 50 }), (msgs, chunk) => {
        const stream = Buffer.concat(msgs.map(([t, p]) => encodeMessage(t, 1, 0, Buffer.from(p))));
        const d = new XsWireDecoder();
        let replies = 0;
        for (let at = 0; at < stream.length; at += chunk) {
          d.push(stream.subarray(at, at + chunk));
          for (let m = d.next(); m; m = d.next()) {
            decodeOne(handleMessage(store, dom0, m));
            replies++;
          }
        }
        expect(replies).toBe(msgs.length);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
});

/** Store-engine bugs found while testing the wire layer, fixed since: regression tests. */
describe('store engine, via the wire (regressions)', () => {
  // Was: transactionEnd dry-runs every op against the *current* tree, not the tree as the
  // earlier ops of the same transaction left it, so an op on a node the transaction itself
  // created (SET_PERMS here, libxl's usual mkdir + set_permissions in one transaction) fails
  // the commit with ENOENT and the whole transaction is lost.
  it('MKDIR + SET_PERMS on the new node in one transaction commits', () => {
    const { dom0, ok } = setup();
    const id = Number(ok(dom0, XS_TRANSACTION_START, '\0').toString().slice(0, -1));
    ok(dom0, XS_MKDIR, '/local/domain/9/device\0', id);
    ok(dom0, XS_SET_PERMS, '/local/domain/9/device\0n9\0r0\0', id);
    expect(ok(dom0, XS_TRANSACTION_END, 'T\0', id).toString()).toBe('OK\0'); // is ENOENT
    expect(ok(dom0, XS_GET_PERMS, '/local/domain/9/device\0').toString()).toBe('n9\0r0\0');
  });

  // DEVIATION (cxenstored): a transactional change records the generation of every ancestor,
  // and creating a node bumps its parent's generation, so a transaction that only rewrites an
  // existing /x/y gets EAGAIN when anyone creates a sibling /x/z meanwhile. cxenstored only
  // checks the nodes the transaction accessed (the parent only when it creates a child).
  it('a transaction rewriting /x/y does not conflict with the creation of /x/z', () => {
    const { dom0, ok, connect } = setup();
    const other = connect(0);
    ok(dom0, XS_WRITE, '/x/y\0old');
    const id = Number(ok(dom0, XS_TRANSACTION_START, '\0').toString().slice(0, -1));
    ok(dom0, XS_WRITE, '/x/y\0new', id);
    ok(other, XS_WRITE, '/x/z\0unrelated');
    expect(ok(dom0, XS_TRANSACTION_END, 'T\0', id).toString()).toBe('OK\0'); // is EAGAIN
  });
});
