/**
 * The store engine against docs/misc/xenstore.txt and cxenstored (tools/xenstored/core.c,
 * watch.c, transaction.c, domain.c): paths, node creation and permissions, transactions under
 * conflict, watches, quotas, error names, and the events a projection replays.
 *
 * A test whose name starts with a parenthesised rule — "(cxenstored …)" or "(xenstore.txt …)" —
 * pins a rule the store did not follow when it was first written (a regression test now).
 */
import type { EventEmitter } from '@pvsim/eventlog';
import { describe, expect, it } from 'vitest';
import { XenStore } from './store.js';
import type { WatchEvent, XsConnection, XsPerm, XsQuota, XsResult } from './types.js';

// ───────────────────────────── harness ─────────────────────────────

interface Recorded {
  kind: string;
  payload: Record<string, unknown>;
  seq: number;
}

function recorder(): { log: Recorded[]; emitter: EventEmitter } {
  const log: Recorded[] = [];
  let seq = 0;
  const emitter: EventEmitter = {
    emit(kind, payload) {
      const s = seq++;
      log.push({ kind, payload: payload as unknown as Record<string, unknown>, seq: s });
      return s;
    },
  };
  return { log, emitter };
}

interface Client {
  c: XsConnection;
  /** Watch events delivered to this connection, in order. */
  got: WatchEvent[];
  /** Take (and forget) what was delivered so far. */
  take(): WatchEvent[];
}

function world(quota?: Partial<XsQuota>) {
  const rec = recorder();
  const xs = quota ? new XenStore({ quota, events: rec.emitter }) : new XenStore({ events: rec.emitter });
  const open = (dom: number): Client => {
    const got: WatchEvent[] = [];
    const c = xs.connect(dom, (ev) => {
      got.push(ev);
    });
    return { c, got, take: () => got.splice(0, got.length) };
  };
  const d0 = open(0);
  /** What a toolstack does for a new guest: its home, owned by it, closed to other guests. */
  const home = (dom: number, perms: XsPerm[] = [{ dom, mode: 'n' }]) => {
    expect(xs.mkdir(d0.c, `/local/domain/${dom}`)).toEqual(OK);
    expect(xs.setPerms(d0.c, `/local/domain/${dom}`, perms)).toEqual(OK);
  };
  return { xs, rec, open, d0, home };
}

const OK = { ok: true, value: undefined };
const E = (error: string) => ({ ok: false, error });
/** `value as text` or the error name: compact for comparisons. */
const txt = (r: XsResult<Buffer>): string => (r.ok ? r.value.toString('utf8') : r.error);
const res = <T>(r: XsResult<T>): T | string => (r.ok ? r.value : r.error);
const P = (s: string): XsPerm[] =>
  s.split(',').map((e) => ({ mode: e[0] as XsPerm['mode'], dom: Number(e.slice(1)) }));
const ps = (r: XsResult<XsPerm[]>): string => (r.ok ? r.value.map((p) => `${p.mode}${p.dom}`).join(',') : r.error);
const sorted = (r: XsResult<string[]>): string[] | string => (r.ok ? [...r.value].sort() : r.error);
const evs = (...pairs: [string, string][]): WatchEvent[] => pairs.map(([path, token]) => ({ path, token }));
const byPath = (a: WatchEvent[]) => [...a].sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : x.token < y.token ? -1 : 1));

// ───────────────────────────── paths ─────────────────────────────

describe('paths (xenstore.txt: alphanumerics and -/_@, no //, no trailing /, length limits)', () => {
  const bad = ['', 'a b', 'a.b', 'x:y', 'a//b', '/a//b', '//', '/a/', 'a/', '/a\u0000b', '/caf\u00e9', '@foo', '/a/b\n', '~'];

  it('rejects malformed paths with EINVAL on every request', () => {
    const { xs, d0 } = world();
    for (const p of bad) {
      expect(xs.read(d0.c, p), p).toEqual(E('EINVAL'));
      expect(xs.write(d0.c, p, 'v'), p).toEqual(E('EINVAL'));
      expect(xs.mkdir(d0.c, p), p).toEqual(E('EINVAL'));
      expect(xs.rm(d0.c, p), p).toEqual(E('EINVAL'));
      expect(xs.directory(d0.c, p), p).toEqual(E('EINVAL'));
      // GET_PERMS, SET_PERMS and WATCH also take special @ paths (canonicalize(…, true)).
      if (p === '@foo') continue;
      expect(xs.getPerms(d0.c, p), p).toEqual(E('EINVAL'));
      expect(xs.setPerms(d0.c, p, P('b0')), p).toEqual(E('EINVAL'));
      expect(xs.watch(d0.c, p, 'tok'), p).toEqual(E('EINVAL'));
    }
  });

  it('accepts the whole character set, and "/" itself', () => {
    const { xs, d0 } = world();
    const p = '/Az09-_@/x-Y_9@z';
    expect(xs.write(d0.c, p, 'v')).toEqual(OK);
    expect(txt(xs.read(d0.c, p))).toBe('v');
    expect(txt(xs.read(d0.c, '/'))).toBe('');
    expect(sorted(xs.directory(d0.c, '/'))).toEqual(['Az09-_@', 'local', 'tool']);
  });

  it('resolves relative paths under /local/domain/<domid> of the caller', () => {
    const { xs, d0, open, home } = world();
    home(3);
    const g = open(3);
    expect(xs.write(g.c, 'data/x', 'rel')).toEqual(OK);
    expect(txt(xs.read(d0.c, '/local/domain/3/data/x'))).toBe('rel');
    expect(txt(xs.read(g.c, '/local/domain/3/data/x'))).toBe('rel');
    expect(sorted(xs.directory(g.c, 'data'))).toEqual(['x']);
    // dom0's relative paths are under /local/domain/0.
    expect(xs.write(d0.c, 'name', 'Domain-0')).toEqual(OK);
    expect(txt(xs.read(d0.c, '/local/domain/0/name'))).toBe('Domain-0');
  });

  it('limits absolute paths to XENSTORE_ABS_PATH_MAX (3072) and relative ones to XENSTORE_REL_PATH_MAX (2048)', () => {
    const { xs, d0, open, home } = world();
    const abs3072 = '/' + 'a'.repeat(3071);
    expect(abs3072.length).toBe(3072);
    expect(xs.write(d0.c, abs3072, 'v')).toEqual(OK);
    expect(txt(xs.read(d0.c, abs3072))).toBe('v');
    expect(xs.write(d0.c, abs3072 + 'a', 'v')).toEqual(E('EINVAL'));
    expect(xs.read(d0.c, abs3072 + 'a')).toEqual(E('EINVAL'));

    home(1);
    const g = open(1);
    const rel2048 = 'r'.repeat(2048);
    expect(xs.write(g.c, rel2048, 'v')).toEqual(OK);
    expect(txt(xs.read(g.c, rel2048))).toBe('v');
    expect(xs.write(g.c, rel2048 + 'r', 'v')).toEqual(E('EINVAL'));
    expect(xs.read(g.c, 'r'.repeat(2049))).toEqual(E('EINVAL'));
  });
});

// ───────────────────────────── nodes ─────────────────────────────

describe('write, mkdir, read, directory, rm', () => {
  it('WRITE creates missing parents with empty values, inheriting permissions, the guest as owner', () => {
    const { xs, d0, open, home } = world();
    home(1, P('n1,r2'));
    const g = open(1);
    expect(xs.write(g.c, 'device/vif/0/state', '1')).toEqual(OK);
    for (const p of ['device', 'device/vif', 'device/vif/0']) {
      expect(txt(xs.read(d0.c, `/local/domain/1/${p}`)), p).toBe('');
      expect(ps(xs.getPerms(d0.c, `/local/domain/1/${p}`)), p).toBe('n1,r2');
    }
    expect(txt(xs.read(g.c, 'device/vif/0/state'))).toBe('1');
    expect(ps(xs.getPerms(g.c, 'device/vif/0/state'))).toBe('n1,r2');

    // Under a dom0-owned directory the guest may write to, the guest owns what it creates.
    expect(xs.write(d0.c, '/shared', '')).toEqual(OK);
    expect(xs.setPerms(d0.c, '/shared', P('r0,w1,n3'))).toEqual(OK);
    expect(xs.write(g.c, '/shared/a/b', 'x')).toEqual(OK);
    for (const p of ['/shared/a', '/shared/a/b']) {
      const got = xs.getPerms(d0.c, p);
      // Owner replaced by the guest, default mode and the other domains' entries kept.
      expect(got.ok && got.value[0], p).toEqual({ dom: 1, mode: 'r' });
      expect(got.ok && got.value.slice(1), p).toContainEqual({ dom: 3, mode: 'n' });
    }
    expect(txt(xs.read(g.c, '/shared/a/b'))).toBe('x');
    expect(xs.write(g.c, '/shared/a/b', 'y')).toEqual(OK);
  });

  it('(cxenstored: construct_node copies the parent list and only replaces the owner id) inherited list keeps the guest entry', () => {
    const { xs, d0, open } = world();
    const g = open(1);
    expect(xs.write(d0.c, '/shared', '')).toEqual(OK);
    expect(xs.setPerms(d0.c, '/shared', P('r0,w1,n3'))).toEqual(OK);
    expect(xs.write(g.c, '/shared/a', 'x')).toEqual(OK);
    // node->perms = parent->perms; node->perms[0].id = conn->id  →  r1,w1,n3
    expect(ps(xs.getPerms(d0.c, '/shared/a'))).toBe('r1,w1,n3');
  });

  it('dom0 creating nodes keeps the inherited owner (only unprivileged domains own what they create)', () => {
    const { xs, d0, home } = world();
    home(1, P('n1,r0'));
    expect(xs.write(d0.c, '/local/domain/1/control/shutdown', '')).toEqual(OK);
    expect(ps(xs.getPerms(d0.c, '/local/domain/1/control'))).toBe('n1,r0');
    expect(ps(xs.getPerms(d0.c, '/local/domain/1/control/shutdown'))).toBe('n1,r0');
    expect(ps(xs.getPerms(d0.c, '/local'))).toBe('n0');
  });

  it('WRITE replaces the value of an existing node and keeps its permissions; values are raw bytes', () => {
    const { xs, d0 } = world();
    expect(xs.write(d0.c, '/v', 'one')).toEqual(OK);
    expect(xs.setPerms(d0.c, '/v', P('b0,r5'))).toEqual(OK);
    const bin = Buffer.from([0, 255, 1, 0x80, 0]);
    expect(xs.write(d0.c, '/v', bin)).toEqual(OK);
    const r = xs.read(d0.c, '/v');
    expect(r.ok && r.value.equals(bin)).toBe(true);
    expect(ps(xs.getPerms(d0.c, '/v'))).toBe('b0,r5');
    expect(xs.write(d0.c, '/v', '')).toEqual(OK);
    expect(txt(xs.read(d0.c, '/v'))).toBe('');
  });

  it('MKDIR creates the path and its parents empty, and leaves an existing value alone', () => {
    const { xs, d0 } = world();
    expect(xs.mkdir(d0.c, '/m/a/b')).toEqual(OK);
    expect(txt(xs.read(d0.c, '/m'))).toBe('');
    expect(txt(xs.read(d0.c, '/m/a/b'))).toBe('');
    expect(xs.write(d0.c, '/m/a', 'keep')).toEqual(OK);
    expect(xs.mkdir(d0.c, '/m/a')).toEqual(OK);
    expect(txt(xs.read(d0.c, '/m/a'))).toBe('keep');
    expect(sorted(xs.directory(d0.c, '/m/a'))).toEqual(['b']);
  });

  it('READ and DIRECTORY of a missing node are ENOENT; DIRECTORY lists leaf names only', () => {
    const { xs, d0 } = world();
    expect(xs.read(d0.c, '/nope')).toEqual(E('ENOENT'));
    expect(xs.directory(d0.c, '/nope')).toEqual(E('ENOENT'));
    expect(xs.getPerms(d0.c, '/nope')).toEqual(E('ENOENT'));
    for (const k of ['b', 'a', 'c/d', 'c/e']) expect(xs.write(d0.c, `/dir/${k}`, k)).toEqual(OK);
    expect(sorted(xs.directory(d0.c, '/dir'))).toEqual(['a', 'b', 'c']);
    expect(sorted(xs.directory(d0.c, '/dir/c'))).toEqual(['d', 'e']);
    expect(xs.directory(d0.c, '/dir/a')).toEqual({ ok: true, value: [] });
  });

  it('RM removes the whole subtree; a missing node is fine if its parent exists, ENOENT otherwise; "/" is EINVAL', () => {
    const { xs, d0 } = world();
    for (const k of ['a/b/c', 'a/d', 'x']) expect(xs.write(d0.c, `/r/${k}`, k)).toEqual(OK);
    expect(xs.rm(d0.c, '/r/a')).toEqual(OK);
    for (const k of ['a', 'a/b', 'a/b/c', 'a/d']) expect(xs.read(d0.c, `/r/${k}`), k).toEqual(E('ENOENT'));
    expect(sorted(xs.directory(d0.c, '/r'))).toEqual(['x']);
    expect(xs.rm(d0.c, '/r/a')).toEqual(OK);
    expect(xs.rm(d0.c, '/r/never')).toEqual(OK);
    expect(xs.rm(d0.c, '/r/a/b')).toEqual(E('ENOENT'));
    expect(xs.rm(d0.c, '/none/at/all')).toEqual(E('ENOENT'));
    expect(xs.rm(d0.c, '/')).toEqual(E('EINVAL'));
    expect(sorted(xs.directory(d0.c, '/'))).toEqual(['local', 'r', 'tool']);
  });

  it('requests on a connection the store does not know are EINVAL', () => {
    const { xs, open } = world();
    const g = open(0);
    xs.disconnect(g.c);
    expect(xs.read(g.c, '/local')).toEqual(E('EINVAL'));
    expect(xs.write(g.c, '/x', 'v')).toEqual(E('EINVAL'));
    expect(xs.transactionStart(g.c)).toEqual(E('EINVAL'));
    expect(xs.watch(g.c, '/x', 't')).toEqual(E('EINVAL'));
  });
});

// ───────────────────────────── permissions ─────────────────────────────

describe('permissions (first entry: owner and default for everyone else; dom0 has all)', () => {
  function setupPerms() {
    const w = world();
    const { xs, d0 } = w;
    expect(xs.write(d0.c, '/p/node', 'secret')).toEqual(OK);
    expect(xs.setPerms(d0.c, '/p', P('r0'))).toEqual(OK);
    return w;
  }

  it('the owner has full access even with mode n; others get the default mode', () => {
    const { xs, d0, open } = setupPerms();
    expect(xs.setPerms(d0.c, '/p/node', P('n1'))).toEqual(OK);
    const g1 = open(1);
    const g2 = open(2);
    expect(txt(xs.read(g1.c, '/p/node'))).toBe('secret');
    expect(xs.write(g1.c, '/p/node', 'mine')).toEqual(OK);
    expect(xs.write(g1.c, '/p/node/child', 'c')).toEqual(OK);
    expect(sorted(xs.directory(g1.c, '/p/node'))).toEqual(['child']);
    expect(ps(xs.getPerms(g1.c, '/p/node'))).toBe('n1');
    expect(xs.read(g2.c, '/p/node')).toEqual(E('EACCES'));
    expect(xs.directory(g2.c, '/p/node')).toEqual(E('EACCES'));
    expect(xs.getPerms(g2.c, '/p/node')).toEqual(E('EACCES'));
    expect(xs.write(g2.c, '/p/node', 'x')).toEqual(E('EACCES'));
    expect(xs.write(g2.c, '/p/node/new', 'x')).toEqual(E('EACCES'));
    expect(xs.mkdir(g2.c, '/p/node/new')).toEqual(E('EACCES'));
    expect(xs.rm(g2.c, '/p/node/child')).toEqual(E('EACCES'));
    expect(xs.rm(g2.c, '/p/node')).toEqual(E('EACCES'));
    expect(txt(xs.read(d0.c, '/p/node'))).toBe('mine');
    expect(txt(xs.read(d0.c, '/p/node/child'))).toBe('c');

    // Default r: everyone else may read, not write.
    expect(xs.setPerms(g1.c, '/p/node', P('r1'))).toEqual(OK);
    expect(txt(xs.read(g2.c, '/p/node'))).toBe('mine');
    expect(xs.write(g2.c, '/p/node', 'x')).toEqual(E('EACCES'));
    // Default w: write, no read.
    expect(xs.setPerms(g1.c, '/p/node', P('w1'))).toEqual(OK);
    expect(xs.read(g2.c, '/p/node')).toEqual(E('EACCES'));
    expect(xs.write(g2.c, '/p/node', 'from2')).toEqual(OK);
    expect(txt(xs.read(g1.c, '/p/node'))).toBe('from2');
    // Default b: both (the child dom1 created is its own, n1: dom2 may not remove it).
    expect(xs.setPerms(g1.c, '/p/node', P('b1'))).toEqual(OK);
    expect(txt(xs.read(g2.c, '/p/node'))).toBe('from2');
    expect(xs.rm(g2.c, '/p/node/child')).toEqual(E('EACCES'));
    expect(xs.write(g2.c, '/p/node/two', '2')).toEqual(OK);
    expect(ps(xs.getPerms(g2.c, '/p/node/two'))).toBe('b2');
    expect(xs.rm(g2.c, '/p/node/two')).toEqual(OK);
  });

  it('per-domain entries override the default, for that domain only', () => {
    const { xs, d0, open } = setupPerms();
    expect(xs.setPerms(d0.c, '/p/node', P('n1,b2,r3,w4,n5'))).toEqual(OK);
    const [g2, g3, g4, g5, g6] = [open(2), open(3), open(4), open(5), open(6)];
    expect(xs.write(g2.c, '/p/node', 'two')).toEqual(OK);
    expect(txt(xs.read(g2.c, '/p/node'))).toBe('two');
    expect(txt(xs.read(g3.c, '/p/node'))).toBe('two');
    expect(xs.write(g3.c, '/p/node', 'x')).toEqual(E('EACCES'));
    expect(xs.read(g4.c, '/p/node')).toEqual(E('EACCES'));
    expect(xs.write(g4.c, '/p/node', 'four')).toEqual(OK);
    expect(xs.read(g5.c, '/p/node')).toEqual(E('EACCES'));
    expect(xs.write(g5.c, '/p/node', 'x')).toEqual(E('EACCES'));
    expect(xs.read(g6.c, '/p/node')).toEqual(E('EACCES'));
    expect(txt(xs.read(d0.c, '/p/node'))).toBe('four');
    // The first matching entry after the owner wins.
    expect(xs.setPerms(d0.c, '/p/node', P('n1,r2,n2'))).toEqual(OK);
    expect(txt(xs.read(g2.c, '/p/node'))).toBe('four');
  });

  it('dom0 bypasses every permission', () => {
    const { xs, d0 } = setupPerms();
    expect(xs.setPerms(d0.c, '/p/node', P('n7'))).toEqual(OK);
    expect(txt(xs.read(d0.c, '/p/node'))).toBe('secret');
    expect(xs.write(d0.c, '/p/node', 'x')).toEqual(OK);
    expect(xs.write(d0.c, '/p/node/a', 'x')).toEqual(OK);
    expect(xs.setPerms(d0.c, '/p/node', P('r8'))).toEqual(OK);
    expect(xs.rm(d0.c, '/p/node')).toEqual(OK);
  });

  it('SET_PERMS only by the owner or dom0, else EACCES; malformed lists are EINVAL', () => {
    const { xs, d0, open } = setupPerms();
    expect(xs.setPerms(d0.c, '/p/node', P('n1,b2'))).toEqual(OK);
    const [g1, g2] = [open(1), open(2)];
    expect(xs.setPerms(g2.c, '/p/node', P('b2'))).toEqual(E('EACCES'));
    expect(xs.setPerms(g2.c, '/p/node', P('n1,b2,b3'))).toEqual(E('EACCES'));
    expect(ps(xs.getPerms(d0.c, '/p/node'))).toBe('n1,b2');
    expect(xs.setPerms(g1.c, '/p/node', P('r1,n2'))).toEqual(OK);
    expect(xs.getPerms(g2.c, '/p/node')).toEqual(E('EACCES'));
    expect(ps(xs.getPerms(d0.c, '/p/node'))).toBe('r1,n2');
    expect(xs.setPerms(d0.c, '/p/node', [])).toEqual(E('EINVAL'));
    expect(xs.setPerms(d0.c, '/p/node', [{ dom: 70000, mode: 'r' }])).toEqual(E('EINVAL'));
    expect(xs.setPerms(d0.c, '/p/node', [{ dom: -1, mode: 'r' }])).toEqual(E('EINVAL'));
    expect(xs.setPerms(d0.c, '/p/node', [{ dom: 1, mode: 'x' as XsPerm['mode'] }])).toEqual(E('EINVAL'));
    expect(xs.setPerms(d0.c, '/p/missing', P('r0'))).toEqual(E('ENOENT'));
    // A returned list is a copy.
    const got = xs.getPerms(d0.c, '/p/node');
    if (got.ok) got.value[0]!.mode = 'b';
    expect(ps(xs.getPerms(d0.c, '/p/node'))).toBe('r1,n2');
  });

  it('(cxenstored do_set_perms: "Unprivileged domains may not change the owner") a guest giving its node away is EPERM', () => {
    const { xs, d0, open } = setupPerms();
    expect(xs.setPerms(d0.c, '/p/node', P('n1'))).toEqual(OK);
    const g1 = open(1);
    expect(xs.setPerms(g1.c, '/p/node', P('b2'))).toEqual(E('EPERM'));
    expect(ps(xs.getPerms(d0.c, '/p/node'))).toBe('n1');
    // xenstore.txt: "the owner can only be modified by the control domain".
    expect(xs.setPerms(d0.c, '/p/node', P('b2'))).toEqual(OK);
  });

  it('(cxenstored errno_from_parents) a missing node under an unreadable parent is EACCES, not ENOENT', () => {
    const { xs, d0, open, home } = world();
    home(1);
    expect(xs.write(d0.c, '/local/domain/1/exists', 'x')).toEqual(OK);
    const g2 = open(2);
    // /local/domain/1 is n1: dom2 may not learn which of its children exist.
    expect(xs.read(g2.c, '/local/domain/1/exists')).toEqual(E('EACCES'));
    expect(xs.read(g2.c, '/local/domain/1/missing')).toEqual(E('EACCES'));
    expect(xs.directory(g2.c, '/local/domain/1/missing')).toEqual(E('EACCES'));
    expect(xs.getPerms(g2.c, '/local/domain/1/missing/deeper')).toEqual(E('EACCES'));
    // RM needs write permission on the nearest existing ancestor before "missing is fine".
    expect(xs.rm(g2.c, '/local/domain/1/missing')).toEqual(E('EACCES'));
    expect(xs.rm(g2.c, '/local/domain/1/missing/deeper')).toEqual(E('EACCES'));
  });

  it('(cxenstored do_mkdir: get_node(…, XS_PERM_WRITE) first) MKDIR of an existing node needs write permission', () => {
    const { xs, open } = world();
    const g1 = open(1);
    expect(xs.mkdir(g1.c, '/local')).toEqual(E('EACCES'));
    expect(xs.mkdir(g1.c, '/local/domain')).toEqual(E('EACCES'));
  });
});

// ───────────────────────────── transactions ─────────────────────────────

describe('transactions', () => {
  it('a transaction sees its own writes; nobody else sees them before the commit', () => {
    const { xs, d0, open } = world();
    const other = open(0);
    expect(xs.write(d0.c, '/t/x', 'old')).toEqual(OK);
    const t = res(xs.transactionStart(d0.c)) as number;
    expect(typeof t).toBe('number');
    expect(t).toBeGreaterThan(0);
    expect(xs.write(d0.c, '/t/x', 'new', t)).toEqual(OK);
    expect(xs.write(d0.c, '/t/y/z', 'created', t)).toEqual(OK);
    expect(xs.rm(d0.c, '/t/gone', t)).toEqual(OK);
    expect(txt(xs.read(d0.c, '/t/x', t))).toBe('new');
    expect(txt(xs.read(d0.c, '/t/y/z', t))).toBe('created');
    expect(sorted(xs.directory(d0.c, '/t', t))).toEqual(['x', 'y']);
    // Outside the transaction, the same connection and another one see the old tree.
    expect(txt(xs.read(d0.c, '/t/x'))).toBe('old');
    expect(txt(xs.read(other.c, '/t/x'))).toBe('old');
    expect(xs.read(other.c, '/t/y/z')).toEqual(E('ENOENT'));
    expect(sorted(xs.directory(other.c, '/t'))).toEqual(['x']);
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(OK);
    expect(txt(xs.read(other.c, '/t/x'))).toBe('new');
    expect(txt(xs.read(other.c, '/t/y/z'))).toBe('created');
    expect(txt(xs.read(other.c, '/t/y'))).toBe('');
  });

  it('a commit after a conflicting write answers EAGAIN and applies nothing', () => {
    const { xs, d0, open } = world();
    const other = open(0);
    expect(xs.write(d0.c, '/t/x', '1')).toEqual(OK);
    const t = res(xs.transactionStart(d0.c)) as number;
    expect(txt(xs.read(d0.c, '/t/x', t))).toBe('1');
    expect(xs.write(d0.c, '/t/y', 'from-tx', t)).toEqual(OK);
    expect(xs.write(other.c, '/t/x', '2')).toEqual(OK);
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(E('EAGAIN'));
    expect(xs.read(d0.c, '/t/y')).toEqual(E('ENOENT'));
    expect(txt(xs.read(d0.c, '/t/x'))).toBe('2');
    // The transaction is over either way.
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(E('ENOENT'));
    expect(xs.read(d0.c, '/t/x', t)).toEqual(E('ENOENT'));
  });

  it('conflicts: a node read, then created, removed, re-permissioned outside; both transactions writing one node', () => {
    const { xs, d0, open } = world();
    const other = open(0);
    expect(xs.write(d0.c, '/c/a', 'a')).toEqual(OK);
    const start = () => res(xs.transactionStart(d0.c)) as number;

    // A node the transaction found missing, created meanwhile.
    let t = start();
    expect(xs.read(d0.c, '/c/new', t)).toEqual(E('ENOENT'));
    expect(xs.write(other.c, '/c/new', 'n')).toEqual(OK);
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(E('EAGAIN'));

    // A node it read, removed meanwhile.
    t = start();
    expect(txt(xs.read(d0.c, '/c/new', t))).toBe('n');
    expect(xs.rm(other.c, '/c/new')).toEqual(OK);
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(E('EAGAIN'));

    // Permissions changed meanwhile.
    t = start();
    expect(ps(xs.getPerms(d0.c, '/c/a', t))).toBe('n0');
    expect(xs.setPerms(other.c, '/c/a', P('r0'))).toEqual(OK);
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(E('EAGAIN'));

    // Two transactions write the same node: the second commit loses.
    const t1 = start();
    const t2 = res(xs.transactionStart(other.c)) as number;
    expect(xs.write(d0.c, '/c/a', 't1', t1)).toEqual(OK);
    expect(xs.write(other.c, '/c/a', 't2', t2)).toEqual(OK);
    expect(xs.transactionEnd(d0.c, t1, true)).toEqual(OK);
    expect(xs.transactionEnd(other.c, t2, true)).toEqual(E('EAGAIN'));
    expect(txt(xs.read(d0.c, '/c/a'))).toBe('t1');

    // Unrelated changes elsewhere do not conflict.
    expect(xs.write(d0.c, '/elsewhere', '')).toEqual(OK);
    t = start();
    expect(txt(xs.read(d0.c, '/c/a', t))).toBe('t1');
    expect(xs.write(d0.c, '/c/a/sub', 's', t)).toEqual(OK);
    expect(xs.write(other.c, '/elsewhere', 'e')).toEqual(OK);
    expect(xs.write(other.c, '/c/b', 'sibling')).toEqual(OK);
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(OK);
    expect(txt(xs.read(other.c, '/c/a/sub'))).toBe('s');
  });

  it('(cxenstored checks only the nodes a transaction accessed) a new sibling of an ancestor is no conflict', () => {
    const { xs, d0, open, home } = world();
    home(1);
    const g = open(1);
    expect(xs.write(g.c, 'device/vif/0/state', '1')).toEqual(OK);
    const t = res(xs.transactionStart(g.c)) as number;
    expect(txt(xs.read(g.c, 'device/vif/0/state', t))).toBe('1');
    expect(xs.write(g.c, 'device/vif/0/state', '2', t)).toEqual(OK);
    // The toolstack creates another domain meanwhile: /local/domain gains a child.
    expect(xs.mkdir(d0.c, '/local/domain/2')).toEqual(OK);
    // cxenstored: the transaction read and wrote only .../state (and nothing it accessed changed).
    expect(xs.transactionEnd(g.c, t, true)).toEqual(OK);
  });

  it('(cxenstored transaction.c: every node read is generation-checked unless the transaction wrote it) a read below a node the transaction wrote is still checked', () => {
    const { xs, d0, open } = world();
    const other = open(0);
    expect(xs.write(d0.c, '/iso/a', '')).toEqual(OK);
    expect(xs.write(d0.c, '/iso/a/b', '1')).toEqual(OK);
    const t = res(xs.transactionStart(d0.c)) as number;
    expect(xs.write(d0.c, '/iso/a', 'x', t)).toEqual(OK);
    expect(txt(xs.read(d0.c, '/iso/a/b', t))).toBe('1');
    expect(xs.write(d0.c, '/iso/copy', '1', t)).toEqual(OK);
    expect(xs.write(other.c, '/iso/a/b', '2')).toEqual(OK);
    // The transaction read /iso/a/b = 1, which changed before the commit.
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(E('EAGAIN'));
    expect(xs.read(d0.c, '/iso/copy')).toEqual(E('ENOENT'));
  });

  it('(cxenstored construct_node reads the parent: generation-checked) creating a node conflicts with a permission change of its parent', () => {
    const { xs, d0, open } = world();
    const other = open(0);
    expect(xs.mkdir(d0.c, '/pp')).toEqual(OK);
    const t = res(xs.transactionStart(d0.c)) as number;
    expect(xs.write(d0.c, '/pp/new', 'v', t)).toEqual(OK);
    // What the transaction saw: the node inherits n0.
    expect(ps(xs.getPerms(d0.c, '/pp/new', t))).toBe('n0');
    expect(xs.setPerms(other.c, '/pp', P('r0,b5'))).toEqual(OK);
    // Committing now would create a node with r0,b5, which the transaction never saw.
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(E('EAGAIN'));
    expect(xs.read(d0.c, '/pp/new')).toEqual(E('ENOENT'));
  });

  it('(cxenstored transaction.c: every node read is generation-checked) reading a node after writing below it is still checked', () => {
    const { xs, d0, open } = world();
    const other = open(0);
    expect(xs.write(d0.c, '/rd/a', '1')).toEqual(OK);
    const t = res(xs.transactionStart(d0.c)) as number;
    expect(xs.write(d0.c, '/rd/a/child', 'c', t)).toEqual(OK);
    expect(txt(xs.read(d0.c, '/rd/a', t))).toBe('1');
    expect(xs.write(d0.c, '/rd/copy', '1', t)).toEqual(OK);
    expect(xs.write(other.c, '/rd/a', '2')).toEqual(OK);
    // The transaction read /rd/a = 1, changed before the commit.
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(E('EAGAIN'));
    expect(xs.read(d0.c, '/rd/copy')).toEqual(E('ENOENT'));
  });

  it('(cxenstored: the parent was read, so EAGAIN) a guest whose write permission went away meanwhile gets EAGAIN from the commit', () => {
    const { xs, d0, open } = world();
    const g = open(1);
    expect(xs.mkdir(d0.c, '/drop')).toEqual(OK);
    expect(xs.setPerms(d0.c, '/drop', P('n0,b1'))).toEqual(OK);
    const t = res(xs.transactionStart(g.c)) as number;
    expect(xs.write(g.c, '/drop/mine', 'v', t)).toEqual(OK);
    expect(xs.setPerms(d0.c, '/drop', P('n0,r1'))).toEqual(OK);
    // Linux xenbus_transaction_end retries on EAGAIN; any other error ends the attempt.
    expect(xs.transactionEnd(g.c, t, true)).toEqual(E('EAGAIN'));
    expect(xs.write(g.c, '/drop/mine', 'v')).toEqual(E('EACCES'));
  });

  it('aborting applies nothing and fires nothing', () => {
    const { xs, d0, open } = world();
    const w = open(0);
    expect(xs.watch(w.c, '/ab', 'tok')).toEqual(OK);
    w.take();
    const t = res(xs.transactionStart(d0.c)) as number;
    expect(xs.write(d0.c, '/ab/x', 'v', t)).toEqual(OK);
    expect(xs.transactionEnd(d0.c, t, false)).toEqual(OK);
    expect(xs.read(d0.c, '/ab/x')).toEqual(E('ENOENT'));
    expect(w.got).toEqual([]);
    expect(xs.transactionEnd(d0.c, t, false)).toEqual(E('ENOENT'));
  });

  it('a retry loop on EAGAIN makes concurrent increments all count', () => {
    const { xs, d0, open } = world();
    const a = d0;
    const b = open(0);
    expect(xs.write(d0.c, '/cnt', '0')).toEqual(OK);
    let attempts = 0;
    /** One step of the classic loop: start, read, write+1; the commit is returned as a thunk. */
    const begin = (cl: Client) => {
      attempts++;
      const t = res(xs.transactionStart(cl.c)) as number;
      const v = Number(txt(xs.read(cl.c, '/cnt', t)));
      expect(xs.write(cl.c, '/cnt', String(v + 1), t)).toEqual(OK);
      return () => xs.transactionEnd(cl.c, t, true);
    };
    const incrementWith = (cl: Client, interleave: () => void) => {
      for (let i = 0; i < 10; i++) {
        const commit = begin(cl);
        interleave();
        const r = commit();
        if (r.ok) return;
        expect(r).toEqual(E('EAGAIN'));
      }
      throw new Error('no progress');
    };
    for (let round = 0; round < 5; round++) {
      // a's first attempt is overtaken by a whole increment of b; its retry succeeds.
      let once = true;
      incrementWith(a, () => {
        if (once) {
          once = false;
          incrementWith(b, () => {});
        }
      });
    }
    expect(txt(xs.read(d0.c, '/cnt'))).toBe('10');
    expect(attempts).toBe(15);
  });

  it('watches fire for a transaction\'s changes only when it commits', () => {
    const { xs, d0, open } = world();
    const w = open(0);
    expect(xs.watch(w.c, '/wt', 'tok')).toEqual(OK);
    w.take();
    const t = res(xs.transactionStart(d0.c)) as number;
    expect(xs.write(d0.c, '/wt/a', '1', t)).toEqual(OK);
    expect(xs.mkdir(d0.c, '/wt/b', t)).toEqual(OK);
    expect(w.got).toEqual([]);
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(OK);
    expect(byPath(w.take())).toEqual(evs(['/wt/a', 'tok'], ['/wt/b', 'tok']));
    // A failed commit fires nothing.
    const t2 = res(xs.transactionStart(d0.c)) as number;
    expect(txt(xs.read(d0.c, '/wt/a', t2))).toBe('1');
    expect(xs.write(d0.c, '/wt/c', '1', t2)).toEqual(OK);
    expect(xs.write(d0.c, '/wt/a', '2')).toEqual(OK);
    expect(w.take()).toEqual(evs(['/wt/a', 'tok']));
    expect(xs.transactionEnd(d0.c, t2, true)).toEqual(E('EAGAIN'));
    expect(w.got).toEqual([]);
  });

  it('transaction ids belong to their connection: another connection\'s id, or an unknown one, is ENOENT', () => {
    const { xs, d0, open } = world();
    const other = open(0);
    const t = res(xs.transactionStart(d0.c)) as number;
    expect(xs.read(other.c, '/local', t)).toEqual(E('ENOENT'));
    expect(xs.write(other.c, '/x', 'v', t)).toEqual(E('ENOENT'));
    expect(xs.mkdir(other.c, '/x', t)).toEqual(E('ENOENT'));
    expect(xs.rm(other.c, '/local', t)).toEqual(E('ENOENT'));
    expect(xs.directory(other.c, '/', t)).toEqual(E('ENOENT'));
    expect(xs.getPerms(other.c, '/', t)).toEqual(E('ENOENT'));
    expect(xs.setPerms(other.c, '/local', P('n0'), t)).toEqual(E('ENOENT'));
    expect(xs.transactionEnd(other.c, t, true)).toEqual(E('ENOENT'));
    expect(xs.read(d0.c, '/local', 9999)).toEqual(E('ENOENT'));
    expect(xs.transactionEnd(d0.c, 9999, true)).toEqual(E('ENOENT'));
    // Still usable by its owner.
    expect(xs.write(d0.c, '/x', 'v', t)).toEqual(OK);
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(OK);
    expect(txt(xs.read(other.c, '/x'))).toBe('v');
  });

  it('releaseDomain drops the domain\'s transactions (and its connections)', () => {
    const { xs, d0, open, home } = world();
    home(4);
    xs.introduceDomain(4);
    const g = open(4);
    const t = res(xs.transactionStart(g.c)) as number;
    expect(xs.write(g.c, 'pending', 'v', t)).toEqual(OK);
    xs.releaseDomain(4);
    expect(xs.transactionEnd(g.c, t, true)).toEqual(E('ENOENT'));
    expect(xs.read(d0.c, '/local/domain/4/pending')).toEqual(E('ENOENT'));
    expect(xs.read(g.c, '/local/domain/4')).toEqual(E('EINVAL'));
    expect(xs.isDomainIntroduced(4)).toBe(false);
  });

  it('a transaction may create a node and set its permissions (what a toolstack does for a new device)', () => {
    const { xs, d0 } = world();
    const t = res(xs.transactionStart(d0.c)) as number;
    expect(xs.mkdir(d0.c, '/local/domain/0/backend/vif/7/0', t)).toEqual(OK);
    expect(xs.setPerms(d0.c, '/local/domain/0/backend/vif/7/0', P('n0,r7'), t)).toEqual(OK);
    expect(xs.write(d0.c, '/local/domain/7/device/vif/0/state', '1', t)).toEqual(OK);
    expect(xs.setPerms(d0.c, '/local/domain/7/device/vif/0', P('n7,r0'), t)).toEqual(OK);
    // Nothing else happened meanwhile: the commit must succeed (cxenstored commits it).
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(OK);
    expect(ps(xs.getPerms(d0.c, '/local/domain/0/backend/vif/7/0'))).toBe('n0,r7');
    expect(ps(xs.getPerms(d0.c, '/local/domain/7/device/vif/0'))).toBe('n7,r0');
  });

  it('a transaction may create a subtree and remove part of it again', () => {
    const { xs, d0 } = world();
    const t = res(xs.transactionStart(d0.c)) as number;
    expect(xs.write(d0.c, '/tmp/a/b/c', 'v', t)).toEqual(OK);
    expect(xs.rm(d0.c, '/tmp/a/b', t)).toEqual(OK);
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(OK);
    expect(sorted(xs.directory(d0.c, '/tmp/a'))).toEqual([]);
  });
});

// ───────────────────────────── watches ─────────────────────────────

describe('watches', () => {
  it('fire once at registration with the path as given (absolute, relative, special)', () => {
    const { xs, open, home } = world();
    home(1);
    const g = open(1);
    expect(xs.watch(g.c, '/local/domain/1/x', 'abs')).toEqual(OK);
    expect(xs.watch(g.c, 'device', 'rel')).toEqual(OK);
    expect(xs.watch(g.c, '/does/not/exist', 'missing')).toEqual(OK);
    expect(xs.watch(g.c, '@releaseDomain', 'rel-dom')).toEqual(OK);
    expect(g.take()).toEqual(
      evs(['/local/domain/1/x', 'abs'], ['device', 'rel'], ['/does/not/exist', 'missing'], ['@releaseDomain', 'rel-dom']),
    );
  });

  it('a relative watch reports relative paths; an absolute one absolute paths', () => {
    const { xs, d0, open, home } = world();
    home(1);
    const g = open(1);
    expect(xs.watch(g.c, 'device', 'rel')).toEqual(OK);
    expect(xs.watch(g.c, '/local/domain/1/device', 'abs')).toEqual(OK);
    g.take();
    expect(xs.write(d0.c, '/local/domain/1/device/vif/0', '4')).toEqual(OK);
    expect(byPath(g.take())).toEqual(evs(['/local/domain/1/device/vif/0', 'abs'], ['device/vif/0', 'rel']));
    expect(xs.write(g.c, 'device', 'self')).toEqual(OK);
    expect(byPath(g.take())).toEqual(evs(['/local/domain/1/device', 'abs'], ['device', 'rel']));
  });

  it('a write fires one event, for the written path (not for parents created on the way)', () => {
    const { xs, d0, open } = world();
    const w = open(0);
    expect(xs.watch(w.c, '/w', 'sub')).toEqual(OK);
    expect(xs.watch(w.c, '/', 'root')).toEqual(OK);
    expect(xs.watch(w.c, '/w/a', 'parent')).toEqual(OK);
    expect(xs.watch(w.c, '/w/a/b/c/d', 'below')).toEqual(OK);
    expect(xs.watch(w.c, '/other', 'other')).toEqual(OK);
    w.take();
    expect(xs.write(d0.c, '/w/a/b/c', 'v')).toEqual(OK);
    expect(byPath(w.take())).toEqual(evs(['/w/a/b/c', 'parent'], ['/w/a/b/c', 'root'], ['/w/a/b/c', 'sub']));
    expect(xs.write(d0.c, '/w/a/b/c', 'v2')).toEqual(OK);
    expect(w.take()).toHaveLength(3);
    // mkdir fires for a created path only.
    expect(xs.mkdir(d0.c, '/w/m')).toEqual(OK);
    expect(byPath(w.take())).toEqual(evs(['/w/m', 'root'], ['/w/m', 'sub']));
    expect(xs.mkdir(d0.c, '/w/m')).toEqual(OK);
    expect(w.take()).toEqual([]);
    // setPerms fires; a prefix that is not a path component does not match.
    expect(xs.setPerms(d0.c, '/w/m', P('r0'))).toEqual(OK);
    expect(byPath(w.take())).toEqual(evs(['/w/m', 'root'], ['/w/m', 'sub']));
    expect(xs.write(d0.c, '/wx', 'v')).toEqual(OK);
    expect(w.take()).toEqual(evs(['/wx', 'root']));
    // Failed requests fire nothing.
    expect(xs.rm(d0.c, '/w/none/x')).toEqual(E('ENOENT'));
    expect(xs.rm(d0.c, '/w/none')).toEqual(OK);
    expect(w.take()).toEqual([]);
  });

  it('rm fires for the removed root on watches at or above it, and on exact watches of removed descendants', () => {
    const { xs, d0, open } = world();
    for (const k of ['a/b/c', 'a/d']) expect(xs.write(d0.c, `/r/${k}`, 'v')).toEqual(OK);
    const w = open(0);
    const tokens: [string, string][] = [
      ['/r', 'ancestor'],
      ['/r/a', 'root'],
      ['/r/a/b', 'desc'],
      ['/r/a/b/c', 'leaf'],
      ['/r/a/b/zzz', 'never-existed'],
      ['/r/x', 'sibling'],
    ];
    for (const [p, t] of tokens) expect(xs.watch(w.c, p, t)).toEqual(OK);
    w.take();
    expect(xs.rm(d0.c, '/r/a')).toEqual(OK);
    expect(byPath(w.take())).toEqual(
      evs(['/r/a', 'ancestor'], ['/r/a', 'root'], ['/r/a/b', 'desc'], ['/r/a/b/c', 'leaf']),
    );
  });

  it('no event to a domain that may not read the node; a removed readable node is reported even under an unreadable parent', () => {
    const { xs, d0, open } = world();
    const g = open(2);
    expect(xs.write(d0.c, '/priv/pub', 'p')).toEqual(OK);
    expect(xs.setPerms(d0.c, '/priv/pub', P('r0'))).toEqual(OK);
    expect(xs.watch(g.c, '/priv', 'sub')).toEqual(OK);
    expect(xs.watch(g.c, '/priv/pub', 'pub')).toEqual(OK);
    g.take();
    // /priv and / are n0: dom2 may not read /priv/secret nor its parent.
    expect(xs.write(d0.c, '/priv/secret', 's')).toEqual(OK);
    expect(xs.write(d0.c, '/priv', 'v')).toEqual(OK);
    expect(g.take()).toEqual([]);
    expect(xs.write(d0.c, '/priv/pub', 'p2')).toEqual(OK);
    expect(byPath(g.take())).toEqual(evs(['/priv/pub', 'pub'], ['/priv/pub', 'sub']));
    // xenstore.txt: a watcher may rely on an event when a path it can read is deleted,
    // even if that leaves only an unreadable parent.
    expect(xs.rm(d0.c, '/priv')).toEqual(OK);
    expect(g.take()).toEqual(evs(['/priv/pub', 'pub']));
  });

  it('@introduceDomain and @releaseDomain fire on introduce and release only', () => {
    const { xs, d0, open } = world();
    const w = open(0);
    expect(xs.watch(w.c, '@introduceDomain', 'in')).toEqual(OK);
    expect(xs.watch(w.c, '@releaseDomain', 'out')).toEqual(OK);
    expect(xs.watch(w.c, '/', 'all')).toEqual(OK);
    w.take();
    xs.introduceDomain(5);
    expect(w.take()).toEqual(evs(['@introduceDomain', 'in']));
    expect(xs.isDomainIntroduced(5)).toBe(true);
    expect(xs.write(d0.c, '/local/domain/5/x', 'v')).toEqual(OK);
    expect(w.take()).toEqual(evs(['/local/domain/5/x', 'all']));
    xs.releaseDomain(5);
    expect(w.take()).toEqual(evs(['@releaseDomain', 'out']));
    expect(xs.unwatch(w.c, '@introduceDomain', 'in')).toEqual(OK);
    xs.introduceDomain(6);
    expect(w.take()).toEqual([]);
  });

  it('(xenstore.txt: "<wspecial> may have any syntax but it matches only the following special events") WATCH of another @ path is accepted and fires once', () => {
    const { xs, d0, open } = world();
    const w = open(0);
    expect(xs.watch(w.c, '@other', 't')).toEqual(OK);
    expect(w.take()).toEqual(evs(['@other', 't']));
    xs.introduceDomain(5);
    expect(xs.write(d0.c, '/x', 'v')).toEqual(OK);
    expect(w.take()).toEqual([]);
  });

  it('(xenstore.txt: "<wspecial> events are sent to privileged callers or explicitly via SET_PERMS enabled domains only") a guest gets no @introduceDomain events', () => {
    const { xs, open } = world();
    const g = open(3);
    expect(xs.watch(g.c, '@introduceDomain', 'in')).toEqual(OK);
    expect(g.take()).toEqual(evs(['@introduceDomain', 'in']));
    xs.introduceDomain(9);
    // cxenstored: @introduceDomain is created n0 (manual_node), so watch_permitted() refuses dom3.
    expect(g.take()).toEqual([]);
  });

  it('(xenstore.txt: "It is possible to set permissions for the special watch paths") SET_PERMS on @introduceDomain enables a guest', () => {
    const { xs, d0, open } = world();
    const g = open(3);
    expect(ps(xs.getPerms(d0.c, '@introduceDomain'))).toBe('n0');
    expect(xs.setPerms(d0.c, '@introduceDomain', P('n0,r3'))).toEqual(OK);
    expect(xs.watch(g.c, '@introduceDomain', 'in')).toEqual(OK);
    g.take();
    xs.introduceDomain(9);
    expect(g.take()).toEqual(evs(['@introduceDomain', 'in']));
  });

  it('unwatch stops events; unknown watches are ENOENT; a duplicate (path, token) is EEXIST', () => {
    const { xs, d0, open, home } = world();
    home(1);
    const g = open(1);
    expect(xs.watch(g.c, 'data', 'a')).toEqual(OK);
    expect(xs.watch(g.c, 'data', 'a')).toEqual(E('EEXIST'));
    expect(xs.watch(g.c, '/local/domain/1/data', 'a')).toEqual(E('EEXIST'));
    expect(xs.watch(g.c, 'data', 'b')).toEqual(OK);
    expect(xs.watch(g.c, 'data2', 'a')).toEqual(OK);
    g.take();
    expect(xs.write(d0.c, '/local/domain/1/data', 'v')).toEqual(OK);
    expect(byPath(g.take())).toEqual(evs(['data', 'a'], ['data', 'b']));
    expect(xs.unwatch(g.c, 'data', 'a')).toEqual(OK);
    expect(xs.unwatch(g.c, 'data', 'a')).toEqual(E('ENOENT'));
    expect(xs.unwatch(g.c, 'data', 'zzz')).toEqual(E('ENOENT'));
    expect(xs.unwatch(g.c, 'a//b', 'a')).toEqual(E('EINVAL'));
    expect(xs.write(d0.c, '/local/domain/1/data', 'v')).toEqual(OK);
    expect(g.take()).toEqual(evs(['data', 'b']));
    // Watches are per connection: another connection of the same domain has its own.
    const g2 = open(1);
    expect(xs.watch(g2.c, 'data', 'b')).toEqual(OK);
    expect(g2.take()).toEqual(evs(['data', 'b']));
    // An unwatch by absolute path removes a relative registration (both canonicalise alike).
    expect(xs.unwatch(g.c, '/local/domain/1/data', 'b')).toEqual(OK);
    expect(xs.write(d0.c, '/local/domain/1/data', 'v')).toEqual(OK);
    expect(g.take()).toEqual([]);
    expect(g2.take()).toEqual(evs(['data', 'b']));
  });

  it('resetWatches drops every watch and transaction of the connection; releaseDomain drops the domain\'s watches', () => {
    const { xs, d0, open, home } = world();
    home(1);
    const g = open(1);
    expect(xs.watch(g.c, 'a', 't')).toEqual(OK);
    expect(xs.watch(g.c, 'b', 't')).toEqual(OK);
    g.take();
    const t = res(xs.transactionStart(g.c)) as number;
    xs.resetWatches(g.c);
    expect(xs.write(d0.c, '/local/domain/1/a', 'v')).toEqual(OK);
    expect(g.got).toEqual([]);
    // xenstore.txt RESET_WATCHES: "Reset all watches and transactions of the caller".
    expect(xs.transactionEnd(g.c, t, true)).toEqual(E('ENOENT'));
    expect(xs.watch(g.c, 'a', 't')).toEqual(OK);
    g.take();
    xs.introduceDomain(1);
    xs.releaseDomain(1);
    expect(xs.write(d0.c, '/local/domain/1/a', 'w')).toEqual(OK);
    expect(g.got).toEqual([]);
  });

  it('(xenstore.txt: "nodes owned by that domain will be removed together with all of those nodes\' children") releaseDomain removes orphaned nodes', () => {
    const { xs, d0, home } = world();
    home(8);
    xs.introduceDomain(8);
    expect(xs.write(d0.c, '/local/domain/8/name', 'guest')).toEqual(OK);
    expect(xs.write(d0.c, '/shared/keep', 'k')).toEqual(OK);
    expect(xs.setPerms(d0.c, '/shared/keep', P('n0,r8,b9'))).toEqual(OK);
    xs.releaseDomain(8);
    // cxenstored domain_tree_remove(): owned nodes go, entries naming the domain are dropped.
    expect(xs.read(d0.c, '/local/domain/8')).toEqual(E('ENOENT'));
    expect(ps(xs.getPerms(d0.c, '/shared/keep'))).toBe('n0,b9');
  });

  it('a throwing deliver callback does not break the store', () => {
    const { xs, d0 } = world();
    const c = xs.connect(0, () => {
      throw new Error('broken transport');
    });
    expect(xs.watch(c, '/thr', 't')).toEqual(OK);
    expect(xs.write(d0.c, '/thr', 'v')).toEqual(OK);
    expect(txt(xs.read(c, '/thr'))).toBe('v');
  });
});

// ───────────────────────────── quotas ─────────────────────────────

describe('quotas (small config; dom0 unlimited)', () => {
  const quota = { nodesPerDomain: 5, entryBytes: 16, watchesPerConnection: 2, transactionsPerConnection: 2 };

  it('nodes per domain: ENOSPC past the limit, nothing half-created; removing frees', () => {
    const { xs, d0, open, home } = world(quota);
    home(1); // the guest owns /local/domain/1: 1 node
    const g = open(1);
    for (const k of ['a', 'b', 'c', 'd']) expect(xs.write(g.c, k, k), k).toEqual(OK); // 5 nodes
    expect(xs.write(g.c, 'e', 'e')).toEqual(E('ENOSPC'));
    expect(xs.mkdir(g.c, 'e')).toEqual(E('ENOSPC'));
    expect(xs.rm(g.c, 'd')).toEqual(OK); // 4
    expect(xs.write(g.c, 'x/y', 'v')).toEqual(E('ENOSPC')); // would be 6
    expect(xs.read(g.c, 'x')).toEqual(E('ENOENT'));
    expect(xs.write(g.c, 'x', 'v')).toEqual(OK); // 5
    // Overwriting an existing node costs nothing.
    expect(xs.write(g.c, 'a', 'again')).toEqual(OK);
    expect(sorted(xs.directory(d0.c, '/local/domain/1'))).toEqual(['a', 'b', 'c', 'x']);
    // dom0 is not limited.
    for (let i = 0; i < 20; i++) expect(xs.write(d0.c, `/dom0/n${i}`, 'v')).toEqual(OK);
    // Another guest has its own count.
    home(2);
    const g2 = open(2);
    for (const k of ['a', 'b', 'c', 'd']) expect(xs.write(g2.c, k, k), k).toEqual(OK);
  });

  it('(cxenstored create_node checks the quota of the creating connection) dom0 writing below a full guest\'s home is not limited', () => {
    const { xs, d0, open, home } = world(quota);
    home(1);
    const g = open(1);
    for (const k of ['a', 'b', 'c', 'd']) expect(xs.write(g.c, k, k)).toEqual(OK);
    expect(xs.write(d0.c, '/local/domain/1/from-toolstack', 'v')).toEqual(OK);
  });

  it('(cxenstored acc_fix_domains at commit) a transaction cannot create more nodes than the quota', () => {
    const { xs, d0, open, home } = world(quota);
    home(1);
    const g = open(1);
    const t = res(xs.transactionStart(g.c)) as number;
    const results: string[] = [];
    for (let i = 0; i < 8; i++) results.push(String(res(xs.write(g.c, `n${i}`, 'v', t)) ?? 'OK'));
    const end = xs.transactionEnd(g.c, t, true);
    results.push(end.ok ? 'OK' : end.error);
    expect(results).toContain('ENOSPC');
    const owned = [...xs.entries().values()].filter((e) => /^[nrwb]1(,|$)/.test(e.value.perms));
    expect(owned.length).toBeLessThanOrEqual(quota.nodesPerDomain);
    expect(sorted(xs.directory(d0.c, '/local/domain/1')).length).toBeLessThanOrEqual(quota.nodesPerDomain - 1);
  });

  it('entry size: a guest value over entryBytes is ENOSPC and changes nothing; dom0 is not limited', () => {
    const { xs, d0, open, home } = world(quota);
    home(1);
    const g = open(1);
    expect(xs.write(g.c, 'v', 'x'.repeat(16))).toEqual(OK);
    expect(xs.write(g.c, 'v', 'y'.repeat(17))).toEqual(E('ENOSPC'));
    expect(xs.write(g.c, 'w', Buffer.alloc(17))).toEqual(E('ENOSPC'));
    expect(txt(xs.read(g.c, 'v'))).toBe('x'.repeat(16));
    expect(xs.read(g.c, 'w')).toEqual(E('ENOENT'));
    const t = res(xs.transactionStart(g.c)) as number;
    expect(xs.write(g.c, 'v', 'z'.repeat(17), t)).toEqual(E('ENOSPC'));
    expect(xs.transactionEnd(g.c, t, false)).toEqual(OK);
    expect(xs.write(d0.c, '/local/domain/1/v', 'D'.repeat(4000))).toEqual(OK);
    expect(txt(xs.read(g.c, 'v'))).toBe('D'.repeat(4000));
  });

  it('watches per connection: E2BIG past the limit; unwatch frees; dom0 is not limited', () => {
    const { xs, d0, open, home } = world(quota);
    home(1);
    const g = open(1);
    expect(xs.watch(g.c, 'a', 't')).toEqual(OK);
    expect(xs.watch(g.c, 'b', 't')).toEqual(OK);
    expect(xs.watch(g.c, 'c', 't')).toEqual(E('E2BIG'));
    expect(xs.watch(g.c, 'a', 't')).toEqual(E('EEXIST'));
    expect(g.take()).toEqual(evs(['a', 't'], ['b', 't']));
    expect(xs.unwatch(g.c, 'a', 't')).toEqual(OK);
    expect(xs.watch(g.c, 'c', 't')).toEqual(OK);
    // Per connection: a second connection of the same domain has its own allowance.
    const g2 = open(1);
    expect(xs.watch(g2.c, 'a', 't')).toEqual(OK);
    for (let i = 0; i < 10; i++) expect(xs.watch(d0.c, `/w${i}`, 't')).toEqual(OK);
  });

  it('open transactions per connection: ENOSPC past the limit; ending one frees; dom0 is not limited', () => {
    const { xs, d0, open, home } = world(quota);
    home(1);
    const g = open(1);
    expect(xs.write(g.c, 'x', '1')).toEqual(OK);
    const t1 = res(xs.transactionStart(g.c)) as number;
    const t2 = res(xs.transactionStart(g.c)) as number;
    expect(typeof t1).toBe('number');
    expect(typeof t2).toBe('number');
    expect(t1).not.toBe(t2);
    expect(xs.transactionStart(g.c)).toEqual(E('ENOSPC'));
    expect(xs.transactionEnd(g.c, t1, false)).toEqual(OK);
    expect(xs.transactionStart(g.c).ok).toBe(true);
    // An EAGAIN ends the transaction too.
    expect(txt(xs.read(g.c, 'x', t2))).toBe('1');
    expect(xs.write(g.c, 'x', '2')).toEqual(OK);
    expect(xs.transactionEnd(g.c, t2, true)).toEqual(E('EAGAIN'));
    expect(xs.transactionStart(g.c).ok).toBe(true);
    for (let i = 0; i < 12; i++) expect(xs.transactionStart(d0.c).ok).toBe(true);
  });
});

// ───────────────────────────── events ─────────────────────────────

describe('events: whole nodes, so a projection rebuilds the tree', () => {
  it('xs.node carries the whole value and permission list; entries() carries the same with its seq', () => {
    const { xs, rec, d0 } = world();
    rec.log.length = 0;
    expect(xs.write(d0.c, '/ev/a', 'hello')).toEqual(OK);
    const nodes = rec.log.filter((e) => e.kind === 'xs.node');
    expect(nodes.map((e) => e.payload)).toEqual(
      expect.arrayContaining([
        { path: '/ev', value: '', enc: 'utf8', perms: 'n0' },
        { path: '/ev/a', value: 'hello', enc: 'utf8', perms: 'n0' },
      ]),
    );
    const last = nodes.filter((e) => e.payload['path'] === '/ev/a').at(-1)!;
    expect(xs.entries().get('/ev/a')).toEqual({ value: { value: 'hello', enc: 'utf8', perms: 'n0' }, seq: last.seq });

    rec.log.length = 0;
    expect(xs.setPerms(d0.c, '/ev/a', P('b1,r2'))).toEqual(OK);
    expect(rec.log.filter((e) => e.kind === 'xs.node').map((e) => e.payload)).toEqual([
      { path: '/ev/a', value: 'hello', enc: 'utf8', perms: 'b1,r2' },
    ]);

    rec.log.length = 0;
    const bin = Buffer.from([0xff, 0xfe, 0x00]);
    expect(xs.write(d0.c, '/ev/a', bin)).toEqual(OK);
    expect(rec.log.filter((e) => e.kind === 'xs.node').map((e) => e.payload)).toEqual([
      { path: '/ev/a', value: bin.toString('base64'), enc: 'base64', perms: 'b1,r2' },
    ]);
    expect(xs.entries().get('/ev/a')?.value).toEqual({ value: bin.toString('base64'), enc: 'base64', perms: 'b1,r2' });
  });

  it('xs.rm names the removed root, the remover and the node count', () => {
    const { xs, rec, d0 } = world();
    for (const k of ['a/b', 'a/c', 'a/c/d']) expect(xs.write(d0.c, `/rm/${k}`, 'v')).toEqual(OK);
    rec.log.length = 0;
    expect(xs.rm(d0.c, '/rm/a')).toEqual(OK);
    expect(rec.log.filter((e) => e.kind === 'xs.rm').map((e) => e.payload)).toEqual([{ path: '/rm/a', dom: 0, nodes: 4 }]);
    rec.log.length = 0;
    expect(xs.rm(d0.c, '/rm/a')).toEqual(OK);
    expect(rec.log.filter((e) => e.kind === 'xs.rm' || e.kind === 'xs.node')).toEqual([]);
  });

  it('transactions: node events only at commit; xs.tx outcomes start/commit/abort/EAGAIN', () => {
    const { xs, rec, d0, open } = world();
    const other = open(0);
    expect(xs.write(d0.c, '/tx/a', '1')).toEqual(OK);
    rec.log.length = 0;
    const t = res(xs.transactionStart(d0.c)) as number;
    expect(xs.write(d0.c, '/tx/b', '2', t)).toEqual(OK);
    expect(rec.log.filter((e) => e.kind === 'xs.node')).toEqual([]);
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(OK);
    expect(rec.log.filter((e) => e.kind === 'xs.node').map((e) => e.payload['path'])).toContain('/tx/b');
    const t2 = res(xs.transactionStart(d0.c)) as number;
    expect(xs.transactionEnd(d0.c, t2, false)).toEqual(OK);
    const t3 = res(xs.transactionStart(d0.c)) as number;
    expect(txt(xs.read(d0.c, '/tx/a', t3))).toBe('1');
    expect(xs.write(other.c, '/tx/a', '9')).toEqual(OK);
    expect(xs.transactionEnd(d0.c, t3, true)).toEqual(E('EAGAIN'));
    const tx = rec.log.filter((e) => e.kind === 'xs.tx').map((e) => [e.payload['tx'], e.payload['outcome']]);
    expect(tx).toEqual([
      [t, 'start'],
      [t, 'commit'],
      [t2, 'start'],
      [t2, 'abort'],
      [t3, 'start'],
      [t3, 'EAGAIN'],
    ]);
  });

  it('watch registrations and firings are events', () => {
    const { xs, rec, d0, open, home } = world();
    home(1);
    const g = open(1);
    rec.log.length = 0;
    expect(xs.watch(g.c, 'x', 'tok')).toEqual(OK);
    expect(xs.write(d0.c, '/local/domain/1/x', 'v')).toEqual(OK);
    expect(xs.unwatch(g.c, 'x', 'tok')).toEqual(OK);
    const w = rec.log.filter((e) => e.kind === 'xs.watch' || e.kind === 'xs.watch_fire').map((e) => [e.kind, e.payload]);
    expect(w).toEqual([
      ['xs.watch', { dom: 1, conn: g.c.id, path: 'x', token: 'tok', on: true }],
      ['xs.watch_fire', { dom: 1, conn: g.c.id, path: 'x', token: 'tok' }],
      ['xs.watch_fire', { dom: 1, conn: g.c.id, path: 'x', token: 'tok' }],
      ['xs.watch', { dom: 1, conn: g.c.id, path: 'x', token: 'tok', on: false }],
    ]);
  });

  it('folding every xs.node/xs.rm event from the start rebuilds entries() exactly', () => {
    const { xs, rec, d0, open, home } = world();
    home(1);
    const g = open(1);
    expect(xs.write(g.c, 'a/b/c', 'v')).toEqual(OK);
    expect(xs.setPerms(g.c, 'a', P('r1,b0'))).toEqual(OK);
    const t = res(xs.transactionStart(d0.c)) as number;
    expect(xs.write(d0.c, '/x/y', 'q', t)).toEqual(OK);
    expect(xs.rm(d0.c, '/local/domain/1/a/b', t)).toEqual(OK);
    expect(xs.transactionEnd(d0.c, t, true)).toEqual(OK);
    expect(xs.rm(d0.c, '/x')).toEqual(OK);
    expect(xs.write(d0.c, '/x', Buffer.from([0x80]))).toEqual(OK);
    const folded = new Map<string, { value: unknown; seq: number }>();
    for (const e of rec.log) {
      if (e.kind === 'xs.node') {
        const { path, ...value } = e.payload as { path: string };
        folded.set(path, { value, seq: e.seq });
      } else if (e.kind === 'xs.rm') {
        const root = e.payload['path'] as string;
        for (const k of [...folded.keys()]) if (k === root || k.startsWith(root + '/')) folded.delete(k);
      }
    }
    expect(folded).toEqual(xs.entries());
  });
});
