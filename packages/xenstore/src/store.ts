/**
 * The store engine: a tree of nodes with values and permissions, transactions with conflict
 * detection, watches, per-domain quotas — the semantics of docs/misc/xenstore.txt as
 * cxenstored implements them. Transport-independent: the xs_wire socket server and the ring
 * transport both call it with a connection (the domain a request speaks for).
 *
 * Every change is emitted as an event (`xs.node` with the node's whole value and permissions,
 * `xs.rm`), so a projection of the log rebuilds the tree exactly; transaction outcomes and watch
 * firings are events too. Requests from guests never throw: every failure is an `XsError`.
 */
import type { EventEmitter } from '@pvsim/eventlog';
import { nullEmitter } from '@pvsim/eventlog';
import {
  XENSTORE_ABS_PATH_MAX,
  XENSTORE_REL_PATH_MAX,
  XS_QUOTA_DEFAULT,
  type PermMode,
  type WatchEvent,
  type XsConnection,
  type XsError,
  type XsPerm,
  type XsQuota,
  type XsResult,
} from './types.js';
import './events.js';

const ok = <T>(value: T): XsResult<T> => ({ ok: true, value });
const fail = <T = never>(error: XsError): XsResult<T> => ({ ok: false, error });
const OK_VOID = ok(undefined);

class Node {
  value: Buffer = Buffer.alloc(0);
  perms: XsPerm[];
  readonly children = new Map<string, Node>();
  /** Bumped on every change to the node (value, permissions, children): conflict detection. */
  gen = 0;
  /** Seq of the event that last changed it (replay-equals-state). */
  seq = -1;

  constructor(perms: XsPerm[]) {
    this.perms = perms;
  }

  clone(): Node {
    const n = new Node(this.perms.map((p) => ({ ...p })));
    n.value = this.value;
    n.gen = this.gen;
    n.seq = this.seq;
    for (const [k, c] of this.children) n.children.set(k, c.clone());
    return n;
  }
}

type Op =
  | { t: 'write'; path: string; value: Buffer }
  | { t: 'mkdir'; path: string }
  | { t: 'rm'; path: string }
  | { t: 'perms'; path: string; perms: XsPerm[] };

interface Transaction {
  id: number;
  conn: Conn;
  root: Node;
  /**
   * Absolute paths the transaction accessed, with the generation each had when first seen
   * (-1: absent). Ancestors of a changed path are recorded as EXISTS (-2): only their existence
   * matters, as in cxenstored (a sibling created meanwhile is no conflict).
   */
  seen: Map<string, number>;
  /** Paths the transaction itself changed: what it sees there is its own doing, not a conflict. */
  dirty: Set<string>;
  /** The store generation when the transaction started: a node of its copy with a higher
   * generation was changed by the transaction itself. */
  startGen: number;
  /** Nodes owned per domain as the transaction sees them (quota inside the transaction). */
  owned: Map<number, number>;
  ops: Op[];
}

/** A watch trigger: the path, its permissions (for the read check), and whether only watches
 * on exactly that path fire (nodes removed below the removed root). */
type Fired = [path: string, perms: XsPerm[], exact: boolean];

interface Watch {
  /** Absolute path, or a special `@…` path. */
  abs: string;
  /** As registered (relative paths are reported relative). */
  given: string;
  token: string;
}

interface Conn extends XsConnection {
  watches: Watch[];
  txs: Set<number>;
}

export interface XenStoreOptions {
  quota?: Partial<XsQuota>;
  events?: EventEmitter;
}

const PATH_CHARS = /^[A-Za-z0-9\-/_@]+$/;
/** In a transaction's `seen`: the path existed (its generation is not compared). */
const EXISTS = -2;

/** The whole permission list as the wire prints it, e.g. `b0,r1`. */
export const permsToString = (perms: readonly XsPerm[]): string => perms.map((p) => `${p.mode}${p.dom}`).join(',');

/** Parse one `w0`/`r1`/`b2`/`n3` entry; null when malformed. */
export function parsePerm(s: string): XsPerm | null {
  const m = /^([nrwb])(\d{1,5})$/.exec(s);
  if (!m) return null;
  const dom = Number(m[2]);
  return dom <= 0xffff ? { mode: m[1] as PermMode, dom } : null;
}

export class XenStore {
  private root: Node;
  private readonly quota: XsQuota;
  private readonly events: EventEmitter;
  private readonly conns = new Map<number, Conn>();
  private readonly txs = new Map<number, Transaction>();
  private readonly introduced = new Set<number>();
  /** Permissions of the special watch paths: who receives their events. */
  private readonly specials = new Map<string, XsPerm[]>([
    ['@introduceDomain', [{ dom: 0, mode: 'n' }]],
    ['@releaseDomain', [{ dom: 0, mode: 'r' }]],
  ]);
  /** Nodes owned per domain (quota). */
  private readonly owned = new Map<number, number>();
  private nextConn = 1;
  private nextTx = 1;
  private gen = 0;

  constructor(opts: XenStoreOptions = {}) {
    this.quota = { ...XS_QUOTA_DEFAULT, ...opts.quota };
    this.events = opts.events ?? nullEmitter();
    const dom0 = [{ dom: 0, mode: 'n' as const }];
    this.root = new Node(dom0);
    this.owned.set(0, 1);
    // The skeleton every Xen host has.
    for (const p of ['/local', '/local/domain', '/tool']) this.apply(this.root, 0, { t: 'mkdir', path: p }, null);
  }

  // ─────────────────────────── connections ───────────────────────────

  connect(dom: number, deliver: (ev: WatchEvent) => void): XsConnection {
    const c: Conn = { id: this.nextConn++, dom, deliver, watches: [], txs: new Set() };
    this.conns.set(c.id, c);
    return c;
  }

  disconnect(conn: XsConnection): void {
    const c = this.conns.get(conn.id);
    if (!c) return;
    this.dropAll(c, 'disconnected');
    this.conns.delete(c.id);
  }

  /** End a connection's transactions and watches, each with its event. */
  private dropAll(c: Conn, why: string): void {
    for (const tx of c.txs) {
      this.txs.delete(tx);
      this.events.emit('xs.tx', { dom: c.dom, conn: c.id, tx, outcome: why });
    }
    c.txs.clear();
    for (const w of c.watches) this.events.emit('xs.watch', { dom: c.dom, conn: c.id, path: w.given, token: w.token, on: false });
    c.watches.length = 0;
  }

  getDomainPath(dom: number): string {
    return `/local/domain/${dom}`;
  }

  // ─────────────────────────── requests ───────────────────────────

  read(conn: XsConnection, path: string, tx = 0): XsResult<Buffer> {
    const n = this.readable(conn, path, tx);
    return n.ok ? ok(Buffer.from(n.value.value)) : n;
  }

  directory(conn: XsConnection, path: string, tx = 0): XsResult<string[]> {
    const n = this.readable(conn, path, tx);
    return n.ok ? ok([...n.value.children.keys()]) : n;
  }

  getPerms(conn: XsConnection, path: string, tx = 0): XsResult<XsPerm[]> {
    const special = this.specials.get(path);
    if (special) {
      const ctx = this.context(conn, tx);
      return ctx.ok ? ok(special.map((p) => ({ ...p }))) : ctx;
    }
    const n = this.readable(conn, path, tx);
    return n.ok ? ok(n.value.perms.map((p) => ({ ...p }))) : n;
  }

  /** The node at `path` as the connection (and its transaction) sees it, if it may read it. */
  private readable(conn: XsConnection, path: string, tx: number): XsResult<Node> {
    const ctx = this.context(conn, tx);
    if (!ctx.ok) return ctx;
    const abs = this.absolute(conn, path);
    if (!abs.ok) return abs;
    const { root, t } = ctx.value;
    const n = this.lookup(root, abs.value, t);
    if (!n) return fail(this.missing(root, abs.value, conn.dom));
    if (!this.canRead(conn.dom, n)) return fail('EACCES');
    return ok(n);
  }

  write(conn: XsConnection, path: string, value: Buffer | string, tx = 0): XsResult<void> {
    const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    if (conn.dom !== 0 && v.length > this.quota.entryBytes) return fail('ENOSPC');
    return this.change(conn, path, tx, (abs) => ({ t: 'write', path: abs, value: Buffer.from(v) }));
  }

  mkdir(conn: XsConnection, path: string, tx = 0): XsResult<void> {
    return this.change(conn, path, tx, (abs) => ({ t: 'mkdir', path: abs }));
  }

  rm(conn: XsConnection, path: string, tx = 0): XsResult<void> {
    return this.change(conn, path, tx, (abs) => ({ t: 'rm', path: abs }));
  }

  setPerms(conn: XsConnection, path: string, perms: XsPerm[], tx = 0): XsResult<void> {
    if (perms.length === 0) return fail('EINVAL');
    for (const p of perms) if (!Number.isInteger(p.dom) || p.dom < 0 || p.dom > 0xffff || !'nrwb'.includes(p.mode)) return fail('EINVAL');
    if (this.specials.has(path)) {
      // Special watch paths carry permissions too: who receives their events (dom0 only).
      if (conn.dom !== 0) return fail('EACCES');
      this.specials.set(path, perms.map((p) => ({ dom: p.dom, mode: p.mode })));
      return OK_VOID;
    }
    return this.change(conn, path, tx, (abs) => ({ t: 'perms', path: abs, perms: perms.map((p) => ({ dom: p.dom, mode: p.mode })) }));
  }

  transactionStart(conn: XsConnection): XsResult<number> {
    const c = this.conns.get(conn.id);
    if (!c) return fail('EINVAL');
    if (c.dom !== 0 && c.txs.size >= this.quota.transactionsPerConnection) return fail('ENOSPC');
    const id = this.nextTx++;
    this.txs.set(id, { id, conn: c, root: this.root.clone(), seen: new Map(), dirty: new Set(), startGen: this.gen, owned: new Map(this.owned), ops: [] });
    c.txs.add(id);
    this.events.emit('xs.tx', { dom: c.dom, conn: c.id, tx: id, outcome: 'start' });
    return ok(id);
  }

  /** Whether `tx` is one of the connection's open transactions (cxenstored's transaction_lookup). */
  hasTransaction(conn: XsConnection, tx: number): boolean {
    return this.txs.get(tx)?.conn.id === conn.id;
  }

  /**
   * End a transaction. Committing fails with EAGAIN when anything it read or wrote changed
   * since it started; then nothing of it is applied and the client retries.
   */
  transactionEnd(conn: XsConnection, tx: number, commit: boolean): XsResult<void> {
    const t = this.txs.get(tx);
    if (!t || t.conn.id !== conn.id) return fail('ENOENT');
    this.txs.delete(tx);
    t.conn.txs.delete(tx);
    if (!commit) {
      this.events.emit('xs.tx', { dom: conn.dom, conn: conn.id, tx, outcome: 'abort' });
      return OK_VOID;
    }
    for (const [path, gen] of t.seen) {
      const n = this.lookup(this.root, path, null);
      const now = n ? (gen === EXISTS ? EXISTS : n.gen) : -1;
      if (now !== gen) {
        this.events.emit('xs.tx', { dom: conn.dom, conn: conn.id, tx, outcome: 'EAGAIN' });
        return fail('EAGAIN');
      }
    }
    // Try the ops in order on a copy of today's tree first (quota counts are today's): all of
    // the transaction applies, or none of it.
    const trial = this.root.clone();
    const trialOwned = new Map(this.owned);
    for (const op of t.ops) {
      const r = this.apply(trial, conn.dom, op, null, false, true, trialOwned);
      if (!r.ok) {
        this.events.emit('xs.tx', { dom: conn.dom, conn: conn.id, tx, outcome: r.error });
        return r;
      }
    }
    const fired: Fired[] = [];
    for (const op of t.ops) this.apply(this.root, conn.dom, op, fired);
    this.events.emit('xs.tx', { dom: conn.dom, conn: conn.id, tx, outcome: 'commit' });
    this.fire(fired);
    return OK_VOID;
  }

  watch(conn: XsConnection, path: string, token: string): XsResult<void> {
    const c = this.conns.get(conn.id);
    if (!c) return fail('EINVAL');
    let abs: string;
    if (path.startsWith('@')) {
      // Any special path may be watched; only the two known ones ever fire after registration.
      if (path.length > XENSTORE_REL_PATH_MAX || !PATH_CHARS.test(path)) return fail('EINVAL');
      abs = path;
    } else {
      const a = this.absolute(conn, path);
      if (!a.ok) return a;
      abs = a.value;
    }
    if (c.watches.some((w) => w.abs === abs && w.token === token)) return fail('EEXIST');
    if (c.dom !== 0 && c.watches.length >= this.quota.watchesPerConnection) return fail('E2BIG');
    c.watches.push({ abs, given: path, token });
    this.events.emit('xs.watch', { dom: c.dom, conn: c.id, path, token, on: true });
    // A watch fires once when it is registered.
    this.deliver(c, path, token);
    return OK_VOID;
  }

  unwatch(conn: XsConnection, path: string, token: string): XsResult<void> {
    const c = this.conns.get(conn.id);
    if (!c) return fail('EINVAL');
    const abs = path.startsWith('@') ? ok(path) : this.absolute(conn, path);
    if (!abs.ok) return abs;
    const i = c.watches.findIndex((w) => w.abs === abs.value && w.token === token);
    if (i < 0) return fail('ENOENT');
    c.watches.splice(i, 1);
    this.events.emit('xs.watch', { dom: c.dom, conn: c.id, path, token, on: false });
    return OK_VOID;
  }

  /** `XS_RESET_WATCHES`: drop all of the connection's watches and transactions. */
  resetWatches(conn: XsConnection): void {
    const c = this.conns.get(conn.id);
    if (c) this.dropAll(c, 'reset');
  }

  /** `XS_INTRODUCE` done by the toolstack: the domain exists; `@introduceDomain` watches fire. */
  introduceDomain(dom: number): void {
    this.introduced.add(dom);
    this.events.emit('xs.domain', { dom, introduced: true });
    this.fireSpecial('@introduceDomain');
  }

  /** `XS_RELEASE`: the domain is gone; its watches and transactions die, `@releaseDomain` fires. */
  releaseDomain(dom: number): void {
    this.introduced.delete(dom);
    this.events.emit('xs.domain', { dom, introduced: false });
    for (const c of [...this.conns.values()]) if (c.dom === dom) this.disconnect(c);
    if (dom !== 0) {
      // Nodes the domain owned go, with their children; its entries leave other nodes' lists.
      const owned: string[] = [];
      const listed: [string, XsPerm[]][] = [];
      const walk = (n: Node, path: string) => {
        if (path !== '/' && n.perms[0]!.dom === dom) return void owned.push(path);
        if (n.perms.some((p, i) => i > 0 && p.dom === dom)) listed.push([path, n.perms.filter((p, i) => i === 0 || p.dom !== dom)]);
        for (const [k, c] of n.children) walk(c, path === '/' ? `/${k}` : `${path}/${k}`);
      };
      walk(this.root, '/');
      const fired: Fired[] = [];
      for (const path of owned) this.apply(this.root, 0, { t: 'rm', path }, fired);
      for (const [path, perms] of listed) this.apply(this.root, 0, { t: 'perms', path, perms }, fired);
      this.fire(fired);
    }
    this.fireSpecial('@releaseDomain');
  }

  isDomainIntroduced(dom: number): boolean {
    return dom === 0 || this.introduced.has(dom);
  }

  // ─────────────────────────── state for replay ───────────────────────────

  /** Every node as `path → {value, perms}` stamped with the seq that last changed it. */
  entries(): Map<string, { value: XsNodeValue; seq: number }> {
    const out = new Map<string, { value: XsNodeValue; seq: number }>();
    const walk = (n: Node, path: string) => {
      out.set(path, { value: nodeValue(n), seq: n.seq });
      for (const [k, c] of n.children) walk(c, path === '/' ? `/${k}` : `${path}/${k}`);
    };
    walk(this.root, '/');
    return out;
  }

  // ─────────────────────────── internals ───────────────────────────

  private context(conn: XsConnection, tx: number): XsResult<{ root: Node; t: Transaction | null }> {
    if (!this.conns.has(conn.id)) return fail('EINVAL');
    if (tx === 0) return ok({ root: this.root, t: null });
    const t = this.txs.get(tx);
    if (!t || t.conn.id !== conn.id) return fail('ENOENT');
    return ok({ root: t.root, t });
  }

  /** Validate and make absolute (relative paths are under the connection's domain path). */
  private absolute(conn: XsConnection, path: string): XsResult<string> {
    if (typeof path !== 'string' || path.length === 0) return fail('EINVAL');
    const rel = !path.startsWith('/');
    if (path.length > (rel ? XENSTORE_REL_PATH_MAX : XENSTORE_ABS_PATH_MAX)) return fail('EINVAL');
    if (!PATH_CHARS.test(path) || path.includes('//') || (path.length > 1 && path.endsWith('/')) || path.startsWith('@')) return fail('EINVAL');
    const abs = rel ? `${this.getDomainPath(conn.dom)}/${path}` : path;
    if (abs.length > XENSTORE_ABS_PATH_MAX) return fail('EINVAL');
    return ok(abs);
  }

  private lookup(root: Node, abs: string, t: Transaction | null): Node | null {
    let n: Node | undefined = root;
    if (abs !== '/') {
      for (const part of abs.slice(1).split('/')) {
        n = n.children.get(part);
        if (!n) break;
      }
    }
    if (t) this.remember(t, abs, n ?? null, false);
    return n ?? null;
  }

  /**
   * Record what a transaction saw at `abs` for the conflict check at commit (cxenstored: every
   * node accessed is generation-checked unless the transaction wrote it). `existence`: only that
   * the node exists matters (ancestors of a changed node), unless it was accessed for itself.
   */
  private remember(t: Transaction, abs: string, n: Node | null, existence: boolean): void {
    const prev = t.seen.get(abs);
    if (prev !== undefined && !(prev === EXISTS && !existence)) return;
    if (n) {
      if (n.gen > t.startGen) return; // the transaction's own doing
      t.seen.set(abs, existence ? EXISTS : n.gen);
    } else {
      // Absent in the copy because the transaction removed it (or an ancestor): its own doing.
      if (ancestry(abs).some((p) => t.dirty.has(p))) return;
      t.seen.set(abs, -1);
    }
  }

  private change(conn: XsConnection, path: string, tx: number, make: (abs: string) => Op): XsResult<void> {
    const ctx = this.context(conn, tx);
    if (!ctx.ok) return ctx;
    const abs = this.absolute(conn, path);
    if (!abs.ok) return abs;
    const op = make(abs.value);
    const { root, t } = ctx.value;
    if (t) {
      // What the op depends on: the node itself; the existence of its ancestors; and the
      // deepest existing one in full when the op creates below it (it is read for the new
      // node's permissions, as cxenstored's construct_node does).
      const chain = ancestry(abs.value);
      let deepest = 0;
      for (let i = 0; i < chain.length - 1; i++) {
        const n = this.lookup(root, chain[i]!, null);
        if (n) deepest = i;
        this.remember(t, chain[i]!, n, true);
      }
      const self = this.lookup(root, abs.value, t);
      if (!self && op.t !== 'rm') this.remember(t, chain[deepest]!, this.lookup(root, chain[deepest]!, null), false);
      const r = this.apply(root, conn.dom, op, null, false, true, t.owned);
      if (r.ok) {
        t.ops.push(op);
        t.dirty.add(abs.value);
      }
      return r;
    }
    const fired: Fired[] = [];
    const r = this.apply(root, conn.dom, op, fired);
    if (r.ok) this.fire(fired);
    return r;
  }

  /** ENOENT, or EACCES when the caller may not read the nearest existing ancestor (cxenstored's
   * errno_from_parents: a missing node does not reveal what the caller may not see). */
  private missing(root: Node, abs: string, dom: number): XsError {
    let n = root;
    if (abs !== '/') {
      for (const part of abs.slice(1).split('/')) {
        const c = n.children.get(part);
        if (!c) break;
        n = c;
      }
    }
    return this.canRead(dom, n) ? 'ENOENT' : 'EACCES';
  }

  private canRead(dom: number, n: Node): boolean {
    return permOf(dom, n.perms, 'r');
  }

  private canWrite(dom: number, n: Node): boolean {
    return permOf(dom, n.perms, 'w');
  }

  /**
   * Apply one op to a tree (the real one, or a transaction's copy when `shadow`). `fired`
   * collects watch triggers (path, node or null if removed, perms for the read check).
   * `dryRun` checks without changing anything.
   */
  private apply(root: Node, dom: number, op: Op, fired: Fired[] | null, dryRun = false, shadow = false, counts: Map<number, number> = this.owned): XsResult<void> {
    const parts = op.path === '/' ? [] : op.path.slice(1).split('/');
    // Walk to the deepest existing node.
    let n = root;
    let depth = 0;
    while (depth < parts.length) {
      const c = n.children.get(parts[depth]!);
      if (!c) break;
      n = c;
      depth++;
    }
    const exists = depth === parts.length;
    const real = !shadow && !dryRun;
    switch (op.t) {
      case 'write':
      case 'mkdir': {
        if (exists) {
          if (!this.canWrite(dom, n)) return fail('EACCES');
          if (op.t === 'mkdir') return OK_VOID;
          if (dryRun) return OK_VOID;
          n.value = op.value;
          this.touched(n, op.path, real, fired);
          return OK_VOID;
        }
        if (!this.canWrite(dom, n)) return fail('EACCES');
        // New nodes inherit the parent's permissions; a guest owns what it creates.
        // cxenstored's construct_node: the parent's list, with the creator as owner.
        const inherit = n.perms;
        const perms = dom === 0 ? inherit.map((p) => ({ ...p })) : [{ dom, mode: inherit[0]!.mode }, ...inherit.slice(1).map((p) => ({ ...p }))];
        const creating = parts.length - depth;
        const owner = perms[0]!.dom;
        // The creating connection's quota (dom0 is not limited).
        if (dom !== 0 && (counts.get(dom) ?? 0) + creating > this.quota.nodesPerDomain) return fail('ENOSPC');
        if (dryRun) return OK_VOID;
        this.touched(n, pathOf(parts, depth), real, null);
        let path = pathOf(parts, depth);
        for (let i = depth; i < parts.length; i++) {
          const c = new Node(perms.map((p) => ({ ...p })));
          n.children.set(parts[i]!, c);
          n = c;
          path = path === '/' ? `/${parts[i]}` : `${path}/${parts[i]}`;
          if (i === parts.length - 1 && op.t === 'write') c.value = op.value;
          if (real || shadow) counts.set(owner, (counts.get(owner) ?? 0) + 1);
          // Watches fire for the path written, not for parents created on the way (cxenstored).
          this.touched(c, path, real, i === parts.length - 1 ? fired : null);
        }
        return OK_VOID;
      }
      case 'rm': {
        if (!exists) {
          // Removing a missing node is fine if its parent exists and may be written
          // (ENOENT otherwise; EACCES rather than revealing what the caller may not see).
          if (!this.canWrite(dom, n)) return fail('EACCES');
          return depth === parts.length - 1 ? OK_VOID : fail('ENOENT');
        }
        if (!this.canWrite(dom, n)) return fail('EACCES');
        if (parts.length === 0) return fail('EINVAL');
        if (dryRun) return OK_VOID;
        const parent = this.lookupPlain(root, parts.slice(0, -1));
        parent!.children.delete(parts[parts.length - 1]!);
        const removed: [string, Node][] = [];
        const walk = (x: Node, p: string) => {
          removed.push([p, x]);
          for (const [k, c] of x.children) walk(c, `${p}/${k}`);
        };
        walk(n, op.path);
        if (real || shadow) for (const [, x] of removed) counts.set(x.perms[0]!.dom, (counts.get(x.perms[0]!.dom) ?? 1) - 1);
        if (real) {
          const seq = this.events.emit('xs.rm', { path: op.path, dom, nodes: removed.length });
          void seq;
        }
        this.touched(parent!, pathOf(parts, parts.length - 1), real, null);
        // The removed root fires every watch at or above it; nodes below it, exact watches only.
        if (fired) removed.forEach(([p, x], i) => fired.push([p, x.perms, i > 0]));
        return OK_VOID;
      }
      case 'perms': {
        if (!exists) return fail(this.canWrite(dom, n) ? 'ENOENT' : 'EACCES');
        // Only the owner (or dom0) may change permissions, and only dom0 may change the owner.
        if (dom !== 0 && n.perms[0]!.dom !== dom) return fail('EACCES');
        if (dom !== 0 && op.perms[0]!.dom !== dom) return fail('EPERM');
        if (dryRun) return OK_VOID;
        if (real || shadow) {
          const before = n.perms[0]!.dom;
          const after = op.perms[0]!.dom;
          if (before !== after) {
            counts.set(before, (counts.get(before) ?? 1) - 1);
            counts.set(after, (counts.get(after) ?? 0) + 1);
          }
        }
        n.perms = op.perms.map((p) => ({ ...p }));
        this.touched(n, op.path, real, fired);
        return OK_VOID;
      }
    }
  }

  private lookupPlain(root: Node, parts: string[]): Node | null {
    let n: Node | undefined = root;
    for (const p of parts) {
      n = n.children.get(p);
      if (!n) return null;
    }
    return n;
  }

  /** A node changed: bump its generation; on the real tree, emit it and queue its watches. */
  private touched(n: Node, path: string, real: boolean, fired: Fired[] | null): void {
    n.gen = ++this.gen;
    if (!real) return;
    n.seq = this.events.emit('xs.node', { path, ...nodeValue(n) });
    if (fired) fired.push([path, n.perms, false]);
  }

  private fire(fired: Fired[]): void {
    if (fired.length === 0) return;
    for (const c of this.conns.values()) {
      for (const w of c.watches) {
        if (w.abs.startsWith('@')) continue;
        for (const [path, perms, exact] of fired) {
          if (exact ? path !== w.abs : !isUnder(path, w.abs)) continue;
          if (!permOf(c.dom, perms, 'r')) continue;
          // A watch registered relative reports relative paths.
          const rel = !w.given.startsWith('/');
          const base = this.getDomainPath(c.dom);
          const shown = rel && path.startsWith(base + '/') ? path.slice(base.length + 1) : path;
          this.deliver(c, shown, w.token);
        }
      }
    }
  }

  private fireSpecial(special: string): void {
    const perms = this.specials.get(special)!;
    for (const c of this.conns.values()) {
      if (!permOf(c.dom, perms, 'r')) continue;
      for (const w of c.watches) if (w.abs === special) this.deliver(c, special, w.token);
    }
  }

  private deliver(c: Conn, path: string, token: string): void {
    this.events.emit('xs.watch_fire', { dom: c.dom, conn: c.id, path, token });
    try {
      c.deliver({ path, token });
    } catch {
      // A broken transport is the transport's problem; the store goes on.
    }
  }
}

/** A node's state as events and snapshots carry it. */
export interface XsNodeValue {
  /** The value: UTF-8 text, or base64 when the bytes are not valid UTF-8. */
  value: string;
  enc: 'utf8' | 'base64';
  perms: string;
}

function nodeValue(n: Node): XsNodeValue {
  const text = n.value.toString('utf8');
  const exact = Buffer.byteLength(text, 'utf8') === n.value.length && Buffer.from(text, 'utf8').equals(n.value);
  return { value: exact ? text : n.value.toString('base64'), enc: exact ? 'utf8' : 'base64', perms: permsToString(n.perms) };
}

/** Does `dom` have `want` on a node with these permissions? dom0 always; the owner always. */
function permOf(dom: number, perms: readonly XsPerm[], want: 'r' | 'w'): boolean {
  if (dom === 0) return true;
  const owner = perms[0]!;
  if (owner.dom === dom) return true;
  const mine = perms.find((p, i) => i > 0 && p.dom === dom);
  const mode = (mine ?? owner).mode;
  return mode === 'b' || mode === want;
}

const isUnder = (path: string, watched: string): boolean =>
  watched === '/' || path === watched || path.startsWith(watched + '/');

function ancestry(abs: string): string[] {
  const out = ['/'];
  if (abs === '/') return out;
  let p = '';
  for (const part of abs.slice(1).split('/')) {
    p += `/${part}`;
    out.push(p);
  }
  return out;
}

const pathOf = (parts: readonly string[], n: number): string => (n === 0 ? '/' : `/${parts.slice(0, n).join('/')}`);
