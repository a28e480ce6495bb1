/**
 * Test doubles: peers that speak either transport raw — any type, any transaction id, any
 * arguments — and a script of requests to drive them with, so a test can show that the xs_wire
 * socket and the rings answer alike (they share one dispatcher, dispatch.ts).
 *
 * A script step names xs_wire's strings (`args`); each peer encodes them its own way (NUL
 * separated bytes, or the ring message's fields) and turns the reply into one comparable line:
 * `OK`, `E:ENOENT`, `bytes:"…"` (READ, DIRECTORY_PART), `names:a,b` (DIRECTORY), `perms:n0,r1`,
 * `tx:3`, `path:/local/domain/7`, `bool:T`. Watch events are `path|token`, in arrival order.
 */
import { connect, type Socket } from 'node:net';
import { XsClientError, XsRingClient } from './client.js';
import { xsDispatch, xsParseRequest, xsRingEventFits, type XsRingSpec, type XsWireRequest, type XsWireResponse } from './daemon.js';
import { xsOpName, type XsHooks } from './dispatch.js';
import type { XenStore } from './store.js';
import {
  XS_CONTROL,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_ERROR,
  XS_GET_DOMAIN_PATH,
  XS_GET_FEATURE,
  XS_GET_PERMS,
  XS_INTRODUCE,
  XS_IS_DOMAIN_INTRODUCED,
  XS_MKDIR,
  XS_READ,
  XS_RELEASE,
  XS_RESET_WATCHES,
  XS_RESUME,
  XS_RM,
  XS_SET_PERMS,
  XS_SET_QUOTA,
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
import { XsWireDecoder, encodeMessage, encodeWatchEvent, errorName, handleMessage, splitStrings, type XsMessage } from './wire.js';

/** One end of one connection, as a script drives it. */
export interface XsScriptPeer {
  /** Send one request and resolve with its reply as one comparable line. */
  request(type: number, tx: number, args: readonly string[]): Promise<string>;
  /** Watch events received since the last call, as `path|token`. */
  takeEvents(): string[];
  close(): void;
}

// ─────────────────────────── encoding and normalising ───────────────────────────

const bytesLine = (b: Uint8Array): string => `bytes:${JSON.stringify(Buffer.from(b).toString('latin1'))}`;

/** A step's strings as an xs_wire payload (WRITE: `path\0value`, the value unterminated). */
export function xsScriptWirePayload(type: number, args: readonly string[]): Buffer {
  if (type === XS_WRITE) return Buffer.from(`${args[0] ?? ''}\0${args[1] ?? ''}`, 'latin1');
  return Buffer.from(args.map((s) => `${s}\0`).join(''), 'latin1');
}

/** A step's strings as a ring request's fields (see daemon.ts for which field carries what). */
export function xsScriptRingRequest(type: number, tx: number, args: readonly string[]): Omit<XsWireRequest, 'id'> {
  const [a0, a1, a2] = args;
  switch (type) {
    case XS_WRITE:
      return { op: type, tx, path: a0 ?? '', value: new Uint8Array(Buffer.from(a1 ?? '', 'latin1')) };
    case XS_SET_PERMS:
      return { op: type, tx, path: a0 ?? '', value: args.slice(1).join(',') };
    case XS_WATCH:
    case XS_UNWATCH:
      return { op: type, tx, path: a0 ?? '', token: a1 ?? '' };
    case XS_TRANSACTION_END:
      return { op: type, tx, value: a0 ?? '' };
    case XS_DIRECTORY_PART:
      return { op: type, tx, path: a0 ?? '', value: a1 ?? '' };
    case XS_INTRODUCE:
      return { op: type, tx, path: a0 ?? '', value: `${a1 ?? ''},${a2 ?? ''}` };
    case XS_TRANSACTION_START:
    case XS_RESET_WATCHES:
      return { op: type, tx };
    default:
      return a0 === undefined ? { op: type, tx } : { op: type, tx, path: a0 };
  }
}

/** An xs_wire reply to a request of `type`, as one line. */
export function xsWireReplyLine(type: number, reply: XsMessage): string {
  if (reply.type === XS_ERROR) return `E:${errorName(reply.payload)}`;
  if (reply.type !== type) return `?type ${reply.type}`;
  const first = () => splitStrings(reply.payload)[0] ?? '';
  switch (type) {
    case XS_READ:
    case XS_DIRECTORY_PART:
      return bytesLine(reply.payload);
    case XS_DIRECTORY:
      return `names:${splitStrings(reply.payload).join(',')}`;
    case XS_GET_PERMS:
      return `perms:${splitStrings(reply.payload).join(',')}`;
    case XS_TRANSACTION_START:
      return `tx:${first()}`;
    case XS_GET_DOMAIN_PATH:
      return `path:${first()}`;
    case XS_IS_DOMAIN_INTRODUCED:
      return `bool:${first()}`;
    default:
      return reply.payload.toString('latin1') === 'OK\0' ? 'OK' : `?${JSON.stringify(reply.payload.toString('latin1'))}`;
  }
}

/** A ring response to a request of `type`, as one line. */
export function xsRingReplyLine(type: number, rsp: XsWireResponse): string {
  if (!rsp.ok) return `E:${rsp.error}`;
  const v = rsp.value;
  switch (type) {
    case XS_READ:
    case XS_DIRECTORY_PART:
      return v instanceof Uint8Array ? bytesLine(v) : `?${JSON.stringify(v)}`;
    case XS_DIRECTORY:
      return Array.isArray(v) ? `names:${v.join(',')}` : `?${JSON.stringify(v)}`;
    case XS_GET_PERMS:
      return `perms:${String(v)}`;
    case XS_TRANSACTION_START:
      return `tx:${String(v)}`;
    case XS_GET_DOMAIN_PATH:
      return `path:${String(v)}`;
    case XS_IS_DOMAIN_INTRODUCED:
      return typeof v === 'boolean' ? `bool:${v ? 'T' : 'F'}` : `?${JSON.stringify(v)}`;
    default:
      return v === undefined ? 'OK' : `?${JSON.stringify(v)}`;
  }
}

const eventLine = (ev: WatchEvent): string => `${ev.path}|${ev.token}`;

// ─────────────────────────── peers ───────────────────────────

/** xs_wire bytes through `handleMessage`, straight on a store (what the socket server runs). */
export class XsWireMemoryPeer implements XsScriptPeer {
  private readonly conn: XsConnection;
  private readonly events: string[] = [];
  private reqId = 1;

  constructor(
    private readonly store: XenStore,
    dom: number,
    private readonly hooks?: XsHooks,
  ) {
    // As the socket server: an event too long for xs_wire is dropped.
    this.conn = store.connect(dom, (ev) => void (encodeWatchEvent(ev) && this.events.push(eventLine(ev))));
  }

  request(type: number, tx: number, args: readonly string[]): Promise<string> {
    const bytes = handleMessage(this.store, this.conn, { type, reqId: this.reqId++, txId: tx, payload: xsScriptWirePayload(type, args) }, this.hooks);
    const d = new XsWireDecoder();
    d.push(bytes);
    return Promise.resolve(xsWireReplyLine(type, d.next()!));
  }

  takeEvents(): string[] {
    return this.events.splice(0);
  }

  close(): void {
    this.store.disconnect(this.conn);
  }
}

/** Ring messages through the ring's decoding and dispatch, straight on a store (what xenstored runs per slot). */
export class XsRingMemoryPeer implements XsScriptPeer {
  private readonly conn: XsConnection;
  private readonly events: string[] = [];
  private id = 1;

  constructor(
    private readonly store: XenStore,
    dom: number,
    private readonly hooks?: XsHooks,
  ) {
    this.conn = store.connect(dom, (ev) => void (xsRingEventFits(ev) && this.events.push(eventLine(ev))));
  }

  request(type: number, tx: number, args: readonly string[]): Promise<string> {
    const id = this.id++;
    const p = xsParseRequest({ id, ...xsScriptRingRequest(type, tx, args) });
    const rsp: XsWireResponse = p.ok ? xsDispatch(this.store, this.conn, p.id, p.req, this.hooks) : { id: p.id, ok: false, error: p.error };
    return Promise.resolve(xsRingReplyLine(type, rsp));
  }

  takeEvents(): string[] {
    return this.events.splice(0);
  }

  close(): void {
    this.store.disconnect(this.conn);
  }
}

/** A raw xs_wire client on a Unix socket (one request at a time). */
export class XsWireSocketPeer implements XsScriptPeer {
  private readonly decoder = new XsWireDecoder();
  private readonly events: string[] = [];
  private readonly pending = new Map<number, { type: number; resolve: (line: string) => void }>();
  private reqId = 1;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk);
      for (let m = this.decoder.next(); m; m = this.decoder.next()) {
        if (m.type === XS_WATCH_EVENT) {
          const [path, token] = splitStrings(m.payload);
          this.events.push(`${path}|${token}`);
          continue;
        }
        const p = this.pending.get(m.reqId);
        this.pending.delete(m.reqId);
        p?.resolve(xsWireReplyLine(p.type, m));
      }
    });
    socket.on('error', () => {});
    socket.once('close', () => {
      for (const p of this.pending.values()) p.resolve('E:closed');
      this.pending.clear();
    });
  }

  static open(path: string): Promise<XsWireSocketPeer> {
    return new Promise((resolve, reject) => {
      const s = connect(path, () => resolve(new XsWireSocketPeer(s)));
      s.once('error', reject);
    });
  }

  request(type: number, tx: number, args: readonly string[]): Promise<string> {
    const reqId = this.reqId++;
    return new Promise((resolve) => {
      this.pending.set(reqId, { type, resolve });
      this.socket.write(encodeMessage(type, reqId, tx, xsScriptWirePayload(type, args)));
    });
  }

  takeEvents(): string[] {
    return this.events.splice(0);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A raw client on a connection's rings: `XsRingClient`'s transport, any request, every event recorded. */
export class XsRingPeer extends XsRingClient implements XsScriptPeer {
  private readonly seen: string[] = [];

  constructor(spec: XsRingSpec) {
    super(spec);
  }

  protected override dispatchWatch(ev: WatchEvent): void {
    this.seen.push(eventLine(ev));
  }

  async request(type: number, tx: number, args: readonly string[]): Promise<string> {
    try {
      const value = await this.call(xsScriptRingRequest(type, tx, args));
      return xsRingReplyLine(type, value === undefined ? { id: 0, ok: true } : { id: 0, ok: true, value });
    } catch (e) {
      if (e instanceof XsClientError) return `E:${e.error}`;
      throw e;
    }
  }

  takeEvents(): string[] {
    return this.seen.splice(0);
  }
}

// ─────────────────────────── scripts ───────────────────────────

export interface XsScriptStep {
  /** Which peer sends it. */
  readonly who: string;
  readonly type: number;
  /** xs_wire's strings. */
  readonly args: readonly string[];
  /** A transaction bound earlier in the script (by name), or a literal tx_id; default 0. */
  readonly tx?: string | number;
  /** Bind the transaction id a TRANSACTION_START returns to this name. */
  readonly bind?: string;
  /** The reply cxenstored gives (pinned), when the step is there to show it. */
  readonly want?: string | RegExp;
  /** The events each peer receives because of this step (pinned; peers not named get none). */
  readonly wantEvents?: Readonly<Record<string, readonly string[]>>;
  /** Why the step is there (a behaviour the two transports used to disagree on, …). */
  readonly note?: string;
}

export interface XsScriptResult {
  readonly step: number;
  readonly who: string;
  readonly op: string;
  readonly reply: string;
  /** Events each peer received because of the step (peers with none left out). */
  readonly events: Record<string, string[]>;
}

/** A transaction name no TRANSACTION_START binds: its id is one no connection has. */
const UNBOUND_TX = 987654;

/**
 * Run `script` against `peers` in order and record each reply and the events it caused. With
 * `barrier`, every peer does one round trip after each step, so events still in flight (real
 * sockets and rings) arrive before they are collected.
 */
export async function runXsScript(peers: Readonly<Record<string, XsScriptPeer>>, script: readonly XsScriptStep[], opts: { barrier?: boolean } = {}): Promise<XsScriptResult[]> {
  const bound = new Map<string, number>();
  const out: XsScriptResult[] = [];
  for (const [i, s] of script.entries()) {
    const peer = peers[s.who];
    if (!peer) throw new Error(`step ${i}: no peer '${s.who}'`);
    const tx = typeof s.tx === 'string' ? (bound.get(s.tx) ?? UNBOUND_TX) : (s.tx ?? 0);
    const reply = await peer.request(s.type, tx, s.args);
    if (s.bind && reply.startsWith('tx:')) bound.set(s.bind, Number(reply.slice(3)));
    if (opts.barrier) for (const p of Object.values(peers)) await p.request(XS_GET_DOMAIN_PATH, 0, ['0']);
    const events: Record<string, string[]> = {};
    for (const [who, p] of Object.entries(peers)) {
      const evs = p.takeEvents();
      if (evs.length > 0) events[who] = evs;
    }
    out.push({ step: i, who: s.who, op: xsOpName(s.type), reply, events });
  }
  return out;
}

/** Steps whose reply or events the script pins, with what differs from the pin (empty: all as pinned). */
export function xsScriptMismatches(script: readonly XsScriptStep[], results: readonly XsScriptResult[]): string[] {
  const bad: string[] = [];
  for (const [i, s] of script.entries()) {
    const r = results[i]!;
    const what = `step ${i} ${r.who} ${r.op} ${JSON.stringify(s.args).slice(0, 80)}`;
    if (s.want !== undefined && !(typeof s.want === 'string' ? r.reply === s.want : s.want.test(r.reply))) bad.push(`${what}: reply ${r.reply}, want ${String(s.want)}`);
    if (s.wantEvents !== undefined) {
      const want = Object.fromEntries(Object.entries(s.wantEvents).filter(([, v]) => v.length > 0));
      if (JSON.stringify(r.events) !== JSON.stringify(want)) bad.push(`${what}: events ${JSON.stringify(r.events)}, want ${JSON.stringify(want)}`);
    }
  }
  return bad;
}

/** `script` without `who`'s steps, and without `who` in the events it pins. */
export function xsScriptWithout(script: readonly XsScriptStep[], who: string): XsScriptStep[] {
  return script
    .filter((s) => s.who !== who)
    .map((s) => (s.wantEvents && who in s.wantEvents ? { ...s, wantEvents: Object.fromEntries(Object.entries(s.wantEvents).filter(([k]) => k !== who)) } : s));
}

/**
 * A script over every operation both transports serve, for peers `dom0`, `dom0b` (two dom0
 * connections) and `dom1` (a guest). Replies are pinned where the step shows a cxenstored rule,
 * notably each one the socket and the rings used to answer differently (`note`). Steps of
 * `dom1` only read and write under its own home and its own watches, so dropping them (a socket
 * has no guests) leaves the rest of the script valid.
 */
export function xsDispatchScript(): XsScriptStep[] {
  const S = (who: string, type: number, args: readonly string[], want?: string | RegExp, more: Partial<XsScriptStep> = {}): XsScriptStep => ({
    who,
    type,
    args,
    ...(want !== undefined ? { want } : {}),
    ...more,
  });
  const none = { wantEvents: {} };
  const TX = /^tx:[1-9]\d*$/;
  const longToken = 'T'.repeat(1024);
  const deep = `/long/${'p'.repeat(3072 - '/long/'.length)}`;
  return [
    // Nodes, permissions, watches.
    S('dom0', XS_WRITE, ['/vm/a', 'v1'], 'OK'),
    S('dom0', XS_READ, ['/vm/a'], 'bytes:"v1"'),
    S('dom0', XS_WRITE, ['/vm/bin', '\x00\x01\xff'], 'OK'),
    S('dom0', XS_READ, ['/vm/bin'], `bytes:${JSON.stringify('\x00\x01\xff')}`),
    S('dom0', XS_READ, ['/vm/missing'], 'E:ENOENT'),
    S('dom0', XS_WATCH, ['/vm', 'w0'], 'OK', { wantEvents: { dom0: ['/vm|w0'] } }),
    S('dom0b', XS_WRITE, ['/vm/b', 'x'], 'OK', { wantEvents: { dom0: ['/vm/b|w0'] } }),
    S('dom0', XS_MKDIR, ['/vm/d'], 'OK', { wantEvents: { dom0: ['/vm/d|w0'] } }),
    S('dom0', XS_DIRECTORY, ['/vm'], 'names:a,bin,b,d'),
    S('dom0', XS_DIRECTORY_PART, ['/vm', '0'], /^bytes:"\d+\\u0000a\\u0000bin\\u0000b\\u0000d\\u0000\\u0000"$/),
    S('dom0', XS_DIRECTORY_PART, ['/vm', 'x'], 'E:EINVAL'),
    S('dom0', XS_GET_PERMS, ['/vm/a'], 'perms:n0'),
    S('dom0', XS_SET_PERMS, ['/vm/a', 'n0', 'r1'], 'OK', { wantEvents: { dom0: ['/vm/a|w0'] } }),
    S('dom0', XS_GET_PERMS, ['/vm/a'], 'perms:n0,r1'),
    S('dom0', XS_SET_PERMS, ['/vm/a', 'x1'], 'E:EINVAL'),
    S('dom0', XS_SET_PERMS, ['/vm/nope', 'r1'], 'E:ENOENT'),
    S('dom0', XS_RM, ['/vm/d'], 'OK', { wantEvents: { dom0: ['/vm/d|w0'] } }),
    S('dom0', XS_RM, ['/nowhere/x'], 'E:ENOENT'),
    S('dom0', XS_WRITE, ['/vm//bad', 'x'], 'E:EINVAL'),
    S('dom0', XS_UNWATCH, ['/vm', 'nope'], 'E:ENOENT'),
    S('dom0', XS_WATCH, ['/vm', 'w0'], 'E:EEXIST', none),
    S('dom0', XS_WATCH, ['rel', 'r0'], 'OK', { wantEvents: { dom0: ['rel|r0'] } }),
    S('dom0', XS_WRITE, ['/local/domain/0/rel/k', '1'], 'OK', { wantEvents: { dom0: ['rel/k|r0'] } }),

    // A guest: its home, permissions, and the privileged types (EACCES before anything else).
    S('dom0', XS_MKDIR, ['/local/domain/1'], 'OK'),
    S('dom0', XS_SET_PERMS, ['/local/domain/1', 'n1'], 'OK'),
    S('dom1', XS_WRITE, ['data/x', 'g'], 'OK'),
    S('dom1', XS_READ, ['/local/domain/1/data/x'], 'bytes:"g"'),
    S('dom1', XS_READ, ['/vm/a'], 'bytes:"v1"'),
    S('dom1', XS_WRITE, ['/vm/a', 'mine'], 'E:EACCES'),
    S('dom1', XS_READ, ['/vm/b'], 'E:EACCES'),
    S('dom1', XS_WATCH, ['/vm', 'g0'], 'OK', { wantEvents: { dom1: ['/vm|g0'] } }),
    S('dom0', XS_WRITE, ['/vm/a', 'v2'], 'OK', { wantEvents: { dom0: ['/vm/a|w0'], dom1: ['/vm/a|g0'] } }),
    S('dom0', XS_WRITE, ['/vm/b', 'y'], 'OK', { wantEvents: { dom0: ['/vm/b|w0'] }, note: 'the guest may not read /vm/b: no event' }),
    S('dom1', XS_GET_DOMAIN_PATH, ['1'], 'path:/local/domain/1'),
    S('dom1', XS_INTRODUCE, ['5', '1', '2'], 'E:EACCES'),
    S('dom1', XS_RELEASE, ['5'], 'E:EACCES'),
    S('dom1', XS_IS_DOMAIN_INTRODUCED, ['0'], 'E:EACCES', { note: 'was answered over the ring' }),
    S('dom1', XS_CONTROL, ['print'], 'E:EACCES', { note: 'was ENOSYS over the ring' }),
    S('dom1', XS_SET_TARGET, ['1', '2'], 'E:EACCES'),
    S('dom1', XS_SET_QUOTA, ['1'], 'E:EACCES', { note: 'was ENOSYS over the ring' }),
    S('dom1', XS_GET_FEATURE, ['1'], 'E:ENOSYS'),
    S('dom1', 99, ['x'], 'E:ENOSYS'),
    S('dom1', XS_RESET_WATCHES, [], 'OK'),
    S('dom0', XS_WRITE, ['/vm/a', 'v3'], 'OK', { wantEvents: { dom0: ['/vm/a|w0'] } }),

    // Types we know but do not serve, and ones a client must not send.
    S('dom0', XS_SET_TARGET, ['1', '2'], 'E:ENOSYS', { note: 'was EACCES to dom0 over the ring' }),
    S('dom0', XS_RESUME, ['1'], 'E:ENOSYS', { note: 'was EACCES to dom0 over the ring' }),
    S('dom0', XS_CONTROL, ['print'], 'E:ENOSYS'),
    S('dom0', XS_WATCH_EVENT, ['/vm', 't'], 'E:ENOSYS'),
    S('dom0', XS_ERROR, ['EINVAL'], 'E:ENOSYS'),
    S('dom0', 1000, [], 'E:ENOSYS'),

    // Transactions: the transaction is looked up before the arguments (transaction_lookup).
    S('dom0', XS_TRANSACTION_START, [''], TX, { bind: 't' }),
    S('dom0', XS_WRITE, ['/vm/t', 'in-tx'], 'OK', { tx: 't', ...none }),
    S('dom0', XS_READ, ['/vm/t'], 'bytes:"in-tx"', { tx: 't' }),
    S('dom0', XS_READ, ['/vm/t'], 'E:ENOENT'),
    S('dom0b', XS_READ, ['/vm/t'], 'E:ENOENT', { tx: 't', note: "another connection's transaction" }),
    S('dom0', XS_TRANSACTION_START, [''], 'E:EBUSY', { tx: 't' }),
    S('dom0', XS_TRANSACTION_START, [''], 'E:ENOENT', { tx: 'bogus', note: 'was EBUSY over the socket; the ring started a nested transaction' }),
    S('dom0', XS_GET_DOMAIN_PATH, ['3'], 'E:ENOENT', { tx: 'bogus', note: 'tx_id was ignored by both' }),
    S('dom0', XS_READ, ['/vm//bad'], 'E:ENOENT', { tx: 'bogus' }),
    S('dom0', XS_WATCH, ['/vm/t', 'w1'], 'OK', { tx: 'bogus', wantEvents: { dom0: ['/vm/t|w1'] }, note: 'WATCH ignores tx_id' }),
    S('dom0', XS_TRANSACTION_END, ['X'], 'E:EINVAL', { tx: 't' }),
    S('dom0', XS_TRANSACTION_END, ['T'], 'E:ENOENT'),
    S('dom0', XS_TRANSACTION_END, ['T'], 'OK', { tx: 't', wantEvents: { dom0: ['/vm/t|w0', '/vm/t|w1'] } }),
    S('dom0', XS_TRANSACTION_END, ['T'], 'E:ENOENT', { tx: 't' }),
    S('dom0', XS_TRANSACTION_START, [''], TX, { bind: 'c' }),
    S('dom0', XS_READ, ['/vm/t'], 'bytes:"in-tx"', { tx: 'c' }),
    S('dom0', XS_WRITE, ['/vm/c2', 'mine'], 'OK', { tx: 'c' }),
    S('dom0b', XS_WRITE, ['/vm/t', 'theirs'], 'OK', { wantEvents: { dom0: ['/vm/t|w0', '/vm/t|w1'] } }),
    S('dom0', XS_TRANSACTION_END, ['T'], 'E:EAGAIN', { tx: 'c', ...none }),
    S('dom0', XS_READ, ['/vm/c2'], 'E:ENOENT'),
    S('dom0', XS_TRANSACTION_START, [''], TX, { bind: 'r' }),
    S('dom0', XS_RESET_WATCHES, [], 'OK', { note: 'ends the transactions too' }),
    S('dom0', XS_TRANSACTION_END, ['T'], 'E:ENOENT', { tx: 'r' }),
    S('dom0b', XS_WRITE, ['/vm/a', 'quiet'], 'OK', none),

    // Domains.
    S('dom0', XS_WATCH, ['@introduceDomain', 'in'], 'OK', { wantEvents: { dom0: ['@introduceDomain|in'] } }),
    S('dom0', XS_WATCH, ['@releaseDomain', 'out'], 'OK', { wantEvents: { dom0: ['@releaseDomain|out'] } }),
    S('dom0', XS_IS_DOMAIN_INTRODUCED, ['5'], 'bool:F'),
    S('dom0', XS_INTRODUCE, ['5', '123456', '7'], 'OK', { wantEvents: { dom0: ['@introduceDomain|in'] }, note: 'refused to everyone over the ring' }),
    S('dom0', XS_INTRODUCE, ['5', '123456', '7'], 'OK', { ...none, note: 'a known domain: no second @introduceDomain' }),
    S('dom0', XS_IS_DOMAIN_INTRODUCED, ['00005'], 'bool:T', { note: 'leading zeros (parse_domid) were EINVAL over the ring' }),
    S('dom0', XS_IS_DOMAIN_INTRODUCED, ['32752'], 'bool:T', { note: 'DOMID_SELF' }),
    S('dom0', XS_IS_DOMAIN_INTRODUCED, ['65536'], 'E:EINVAL'),
    S('dom0', XS_INTRODUCE, ['6', '1', '0'], 'E:EINVAL'),
    S('dom0', XS_RELEASE, ['0'], 'E:EINVAL'),
    S('dom0', XS_RELEASE, ['9'], 'E:ENOENT'),
    S('dom0', XS_RELEASE, ['5'], 'OK', { wantEvents: { dom0: ['@releaseDomain|out'] } }),
    S('dom0', XS_IS_DOMAIN_INTRODUCED, ['5'], 'bool:F'),
    S('dom0', XS_GET_DOMAIN_PATH, ['7'], 'path:/local/domain/7'),
    S('dom0', XS_GET_DOMAIN_PATH, ['x'], 'E:EINVAL'),

    // A reply longer than XENSTORE_PAYLOAD_MAX is E2BIG; DIRECTORY_PART pages the list.
    ...Array.from({ length: 150 }, (_, i) => S('dom0', XS_WRITE, [`/big/child-with-a-longer-name-${String(i).padStart(3, '0')}`, ''], 'OK')),
    S('dom0', XS_DIRECTORY, ['/big'], 'E:E2BIG', { note: 'over the ring, only a listing larger than a slot was' }),
    S('dom0', XS_DIRECTORY_PART, ['/big', '0'], /^bytes:"\d+\\u0000child-with-a-longer-name-000\\u0000/),
    S('dom0', XS_DIRECTORY_PART, ['/big', '4000']),

    // A watch event longer than XENSTORE_PAYLOAD_MAX is dropped (send_event).
    S('dom0', XS_WATCH, ['/long', longToken], 'OK', { wantEvents: { dom0: [`/long|${longToken}`] } }),
    S('dom0', XS_WRITE, [deep, ''], 'OK', { ...none, note: 'its event would be 4098 bytes' }),
    S('dom0', XS_WRITE, ['/long/x', ''], 'OK', { wantEvents: { dom0: [`/long/x|${longToken}`] } }),
  ];
}
