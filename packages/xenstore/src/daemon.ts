/**
 * xenstored as a daemon: owns one `XenStore` and serves each domain's connection over shared
 * rings with event-channel doorbells. Runs in-process (tests, the deterministic mode: drive
 * `poll()` yourself, or `start()` it on the current thread) or in its own worker thread
 * (`startXenstoredWorker`).
 *
 * ## The ring protocol (one connection)
 *
 * A connection is two `io/ring.h` rings of msgpack slots, plus a doorbell each way. The
 * xs_wire byte stream of `xenstore-ring.txt` is replaced by whole messages in fixed slots; the
 * fields and semantics are xs_wire's, and so is the dispatcher: a slot is decoded into the
 * request dispatch.ts carries out for the xs_wire socket too (`xsExecute`), and its reply is
 * encoded back into a response slot. Nothing about an operation is decided here.
 *
 *   request ring   client = FrontRing (requests)   xenstored = BackRing (responses)
 *     request   { id, op, tx, path?, value?, token? }
 *               id u32 ≥ 1 chosen by the client; op is the `XS_*` type of xs_wire.h;
 *               tx the transaction id (0 = none). xs_wire's strings, by field:
 *               path   the node (READ, WRITE, MKDIR, RM, DIRECTORY, DIRECTORY_PART, GET_PERMS,
 *                      SET_PERMS, WATCH, UNWATCH); the domid in decimal (GET_DOMAIN_PATH,
 *                      IS_DOMAIN_INTRODUCED, INTRODUCE, RELEASE);
 *               value  bytes or text (WRITE); the permission list `b0,r1` (SET_PERMS); 'T'
 *                      (commit) / 'F' (abort) (TRANSACTION_END); the byte offset in decimal
 *                      (DIRECTORY_PART); `<gfn>,<port>` (INTRODUCE);
 *               token  WATCH, UNWATCH.
 *     response  { id, ok: true, value? } | { id, ok: false, error: 'E…' }
 *               value: bytes (READ; DIRECTORY_PART: xs_wire's whole payload), string[]
 *               (DIRECTORY), `b0,r1` (GET_PERMS), the transaction id (TRANSACTION_START), a
 *               path (GET_DOMAIN_PATH), a boolean (IS_DOMAIN_INTRODUCED). Exactly one response
 *               per request slot, in order; a slot that does not decode, or carries no usable
 *               id, is answered with id 0.
 *   event ring     xenstored = FrontRing (watch events)   client = BackRing (empty responses)
 *     event     { path, token }   (XS_WATCH_EVENT: unsolicited, so it cannot ride the response
 *               ring, whose slots belong to requests). The client releases slots with empty
 *               responses; xenstored queues at most `XS_WATCH_EVENTS_QUEUED_MAX` events per
 *               connection behind a full ring and counts what it drops.
 *
 * Events published before a response are visible to the client no later than that response
 * (both rings' producer indices are Atomics, stored events-first); the client drains its event
 * ring before it settles responses, so a watch event caused by a request reaches its callback
 * before that request's promise resolves. Across connections there is no order, as in Xen.
 * Events fired from outside a poll (the xs_wire socket sharing this store, a toolstack command)
 * ring xenstored's own control port, so they go out without waiting for a guest's request.
 *
 * Limits are xs_wire's: a request's payload (path plus value, or token) at most
 * `XENSTORE_PAYLOAD_MAX` bytes, else E2BIG; a reply likewise (the dispatcher's E2BIG); an event
 * longer than that is dropped, as cxenstored drops it. Peer data never throws: a malformed
 * request gets an error response, an impossible ring index stops that one connection (counted
 * in `stats`), and a bug in the store is answered EIO and counted, never crashing xenstored.
 */
import { assert } from '@pvsim/abi';
import type { EventEmitter, LogChannelSpec, StateSnapshot } from '@pvsim/eventlog';
import { BackRing, EvtchnDoorbells, FrontRing, SharedRing, allocateRingPages, msgpackSlotCodec, type EvtchnWaiter, type SlotCodec } from '@pvsim/ring';
import { holdEventLoop, startCommandWorker, type KeepAlive } from '@pvsim/runtime';
import { introduceArgs, parseDomid, parseOffset, xsExecute, xsIsOp, type XsBadArgs, type XsHooks, type XsOp, type XsReply, type XsRequest } from './dispatch.js';
import { XenStore, parsePerm, permsToString } from './store.js';
import { xsSnapshot } from './projection.js';
import {
  XENSTORE_PAYLOAD_MAX,
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
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WRITE,
  type WatchEvent,
  type XsConnection,
  type XsError,
  type XsPerm,
  type XsQuota,
} from './types.js';

export { xsOpName } from './dispatch.js';

// ─────────────────────────── protocol ───────────────────────────

/** Ring order of both rings of a connection: 16 pages, 8 slots of `XS_RING_SLOT_BYTES`. */
export const XS_RING_ORDER = 4;
/** One whole xs_wire payload (`XENSTORE_PAYLOAD_MAX`) plus room for the msgpack framing. */
export const XS_RING_SLOT_BYTES = XENSTORE_PAYLOAD_MAX + 256;
/** A watch token: an event (path ≤ 3072 + token) must fit one slot. */
export const XS_WATCH_TOKEN_MAX_BYTES = 1024;
/** Watch events queued behind a full event ring, per connection; more are dropped and counted. */
export const XS_WATCH_EVENTS_QUEUED_MAX = 1024;
/** Requests taken from one connection per pass, so one busy guest cannot starve the others. */
export const XS_REQUESTS_PER_POLL_MAX = 64;
/** Connections one xenstored serves (its doorbell ports; port 0 is its own control port). */
export const XS_CONNECTIONS_MAX = 1023;
/** The doorbell port on which a client hears from xenstored (its own, per-connection table). */
export const XS_CLIENT_PORT = 1;
/** xenstored's control port: `stop()` rings it to wake the loop. */
const CONTROL_PORT = 0;

/** What a client puts in a request slot. */
export interface XsWireRequest {
  id: number;
  op: number;
  tx: number;
  path?: string;
  value?: Uint8Array | string;
  token?: string;
}

export type XsReplyValue = Uint8Array | string | string[] | number | boolean;

export type XsWireResponse = { id: number; ok: true; value?: XsReplyValue } | { id: number; ok: false; error: XsError };

export interface XsWireWatchEvent {
  path: string;
  token: string;
}

/** Both ends construct the codec with these shapes (frozen msgpack structures). */
const XS_STRUCTURES: readonly (readonly string[])[] = [
  ['id', 'op', 'tx', 'path'],
  ['id', 'op', 'tx', 'path', 'value'],
  ['id', 'op', 'tx', 'path', 'token'],
  ['id', 'op', 'tx'],
  ['id', 'ok', 'value'],
  ['id', 'ok'],
  ['id', 'ok', 'error'],
  ['path', 'token'],
];

/** The slot codec of both xenstore rings (one instance per end: it owns scratch state). */
export function xsSlotCodec<T>(): SlotCodec<T> {
  return msgpackSlotCodec<T>({ slotBytes: XS_RING_SLOT_BYTES, structures: XS_STRUCTURES });
}

/**
 * Everything a client thread needs to reach xenstored: postMessage-able (views over
 * SharedArrayBuffers cross threads as the same memory).
 */
export interface XsRingSpec {
  /** xenstored's id of this connection. */
  readonly conn: number;
  /** The domain the connection speaks for (relative paths, permissions). */
  readonly dom: number;
  readonly slotBytes: number;
  /** Requests and responses: the client is the front end. */
  readonly reqPages: Uint8Array[];
  /** Watch events: xenstored is the front end. */
  readonly evtPages: Uint8Array[];
  /** xenstored's doorbells; the client raises `serverPort` after publishing. */
  readonly serverBells: SharedArrayBuffer;
  readonly serverPort: number;
  /** The client's doorbells (waiter 0); xenstored raises `clientPort`. */
  readonly clientBells: SharedArrayBuffer;
  readonly clientPort: number;
}

/** `xsParseRequest`'s result: a request for the dispatcher, or a slot it cannot take (framing). */
export type XsRingParse = { ok: true; id: number; req: XsRequest } | { ok: false; id: number; error: XsError };

const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);
const isU32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
/** Types whose first argument is `path` (a node, or for the domain ops a domid in decimal). */
const PATH_OPS = new Set([XS_READ, XS_WRITE, XS_MKDIR, XS_RM, XS_DIRECTORY, XS_DIRECTORY_PART, XS_GET_PERMS, XS_SET_PERMS, XS_WATCH, XS_UNWATCH, XS_GET_DOMAIN_PATH, XS_IS_DOMAIN_INTRODUCED, XS_INTRODUCE, XS_RELEASE]);

/**
 * Decode one slot's message (own properties only: it comes from a guest). The header — a map
 * with a usable `id`, an integer `op`, a u32 `tx` — is framing: without it the slot is answered
 * EINVAL at once (id 0 when there is no usable id). The arguments are decoded for the
 * dispatcher, which answers their errors (EINVAL; E2BIG beyond xs_wire's payload limit) after
 * its type, privilege and transaction checks, as for xs_wire.
 */
export function xsParseRequest(m: unknown): XsRingParse {
  if (m === null || typeof m !== 'object' || Array.isArray(m) || m instanceof Uint8Array) return { ok: false, id: 0, error: 'EINVAL' };
  const r = m as Record<string, unknown>;
  const id = hasOwn(r, 'id') ? r.id : undefined;
  if (!isU32(id) || id === 0) return { ok: false, id: 0, error: 'EINVAL' };
  const op = hasOwn(r, 'op') ? r.op : undefined;
  if (typeof op !== 'number' || !Number.isInteger(op)) return { ok: false, id, error: 'EINVAL' };
  const tx = hasOwn(r, 'tx') ? r.tx : 0;
  if (!isU32(tx)) return { ok: false, id, error: 'EINVAL' };
  return { ok: true, id, req: { tx, op: ringArgs(op, r) } };
}

function ringArgs(type: number, r: Record<string, unknown>): XsOp | XsBadArgs {
  const bad = (error: XsError = 'EINVAL'): XsBadArgs => ({ type, bad: error });
  if (!xsIsOp(type)) return bad(); // the dispatcher answers these without looking at arguments
  const field = (k: string): unknown => (hasOwn(r, k) ? r[k] : undefined);
  const v = field('value');
  let path = '';
  if (PATH_OPS.has(type)) {
    const p = field('path');
    if (typeof p !== 'string' || p.length === 0) return bad();
    path = p;
  }
  /** The xs_wire payload this request would be: its limit applies to the ring as well. */
  let bytes = Buffer.byteLength(path) + 1;
  let op: XsOp | XsBadArgs;
  switch (type) {
    case XS_READ:
    case XS_DIRECTORY:
    case XS_GET_PERMS:
    case XS_MKDIR:
    case XS_RM:
      op = { type, path };
      break;
    case XS_DIRECTORY_PART: {
      if (typeof v !== 'string') return bad();
      const offset = parseOffset(v);
      if (offset === null) return bad();
      bytes += v.length + 1;
      op = { type, path, offset };
      break;
    }
    case XS_WRITE: {
      let value: Buffer;
      if (typeof v === 'string') value = Buffer.from(v, 'utf8');
      else if (v instanceof Uint8Array) value = Buffer.from(v);
      else return bad();
      bytes += value.length;
      op = { type, path, value };
      break;
    }
    case XS_SET_PERMS: {
      if (typeof v !== 'string' || v.length === 0) return bad();
      bytes += Buffer.byteLength(v);
      if (bytes > XENSTORE_PAYLOAD_MAX) return bad('E2BIG');
      const perms: XsPerm[] = [];
      for (const s of v.split(',')) {
        const p = parsePerm(s);
        if (!p) return bad();
        perms.push(p);
      }
      op = { type, path, perms };
      break;
    }
    case XS_WATCH:
    case XS_UNWATCH: {
      const token = field('token');
      if (typeof token !== 'string') return bad();
      if (Buffer.byteLength(token) > XS_WATCH_TOKEN_MAX_BYTES) return bad('E2BIG');
      bytes += Buffer.byteLength(token) + 1;
      op = { type, path, token };
      break;
    }
    case XS_TRANSACTION_START:
    case XS_RESET_WATCHES:
      op = { type };
      break;
    case XS_TRANSACTION_END:
      if (v !== 'T' && v !== 'F') return bad();
      op = { type, commit: v === 'T' };
      break;
    case XS_GET_DOMAIN_PATH:
    case XS_IS_DOMAIN_INTRODUCED:
    case XS_RELEASE: {
      const dom = parseDomid(path);
      if (dom === null) return bad();
      op = { type, dom };
      break;
    }
    case XS_INTRODUCE: {
      // value "<gfn>,<port>" (xs_wire's second and third strings).
      if (typeof v !== 'string') return bad();
      const rest = v.split(',');
      if (rest.length !== 2) return bad();
      bytes += Buffer.byteLength(v) + 1;
      op = introduceArgs(path, rest[0]!, rest[1]!);
      break;
    }
    default:
      return bad();
  }
  return bytes > XENSTORE_PAYLOAD_MAX ? bad('E2BIG') : op;
}

/** A dispatcher reply as the response slot carries it. */
export function xsRingResponse(id: number, reply: XsReply): XsWireResponse {
  if (!reply.ok) return { id, ok: false, error: reply.error };
  const b = reply.body;
  switch (b.kind) {
    case 'ack':
      return { id, ok: true };
    case 'bytes':
      return { id, ok: true, value: new Uint8Array(b.bytes.buffer, b.bytes.byteOffset, b.bytes.byteLength) };
    case 'names':
      return { id, ok: true, value: [...b.names] };
    case 'perms':
      return { id, ok: true, value: permsToString(b.perms) };
    case 'tx':
      return { id, ok: true, value: b.tx };
    case 'path':
      return { id, ok: true, value: b.path };
    case 'bool':
      return { id, ok: true, value: b.value };
  }
}

/**
 * The ring adapter: one decoded request through the dispatcher, answered as a response slot.
 * The same code serves xenstored's rings and the in-process client.
 */
export function xsDispatch(store: XenStore, conn: XsConnection, id: number, req: XsRequest, hooks?: XsHooks): XsWireResponse {
  return xsRingResponse(id, xsExecute(store, conn, req, hooks));
}

/** Whether a watch event fits one xs_wire payload; cxenstored drops those that do not (send_event). */
export const xsRingEventFits = (ev: WatchEvent): boolean => Buffer.byteLength(ev.path) + Buffer.byteLength(ev.token) + 2 <= XENSTORE_PAYLOAD_MAX;

// ─────────────────────────── the daemon ───────────────────────────

export interface XenstoredOptions {
  events?: EventEmitter;
  quota?: Partial<XsQuota>;
  /** The run's latest seq (for snapshots): the worker reads the log hub's counter. */
  seqNow?: () => number;
  /** Called with what a store bug threw (default: console.error). */
  onBug?: (e: unknown) => void;
}

export interface XenstoredStats {
  connections: number;
  requests: number;
  /** Requests answered with an error. */
  errors: number;
  /** Slots that did not decode or carried no usable request. */
  malformed: number;
  /** Connections stopped because the guest broke a ring. */
  brokenRings: number;
  watchEventsSent: number;
  watchEventsDropped: number;
  /** Store bugs answered EIO. */
  internalErrors: number;
}

interface RingConn {
  readonly spec: XsRingSpec;
  readonly store: XsConnection;
  readonly back: BackRing<unknown, XsWireResponse>;
  readonly evFront: FrontRing<XsWireWatchEvent, unknown>;
  readonly client: EvtchnDoorbells;
  /** Watch events not yet on the ring (bounded). */
  readonly queued: XsWireWatchEvent[];
  dead: boolean;
}

export class XenstoredDaemon {
  readonly store: XenStore;
  private readonly bells: EvtchnDoorbells;
  private readonly waiter: EvtchnWaiter;
  private readonly conns = new Map<number, RingConn>();
  private readonly freePorts: number[] = [];
  private readonly seqNow: (() => number) | undefined;
  private readonly onBug: (e: unknown) => void;
  private readonly st: XenstoredStats = { connections: 0, requests: 0, errors: 0, malformed: 0, brokenRings: 0, watchEventsSent: 0, watchEventsDropped: 0, internalErrors: 0 };
  /**
   * What the dispatcher calls back for: INTRODUCE and RELEASE go through this daemon (a
   * released domain's rings close), store bugs are counted. The xs_wire socket of the same
   * store is handed these too (see xenstored-worker.ts).
   */
  readonly hooks: XsHooks;
  private running = false;
  /** True inside `poll()`: events queued then go out at its end, with no doorbell needed. */
  private polling = false;
  private loop: Promise<void> | null = null;
  private keepAlive: KeepAlive | null = null;

  constructor(opts: XenstoredOptions = {}) {
    this.store = new XenStore({ ...(opts.events ? { events: opts.events } : {}), ...(opts.quota ? { quota: opts.quota } : {}) });
    this.bells = EvtchnDoorbells.create({ maxPorts: XS_CONNECTIONS_MAX + 1, maxWaiters: 1 });
    this.waiter = this.bells.waiter(0);
    this.bells.bind(CONTROL_PORT, 0);
    for (let p = XS_CONNECTIONS_MAX; p >= 1; p--) this.freePorts.push(p);
    this.seqNow = opts.seqNow;
    this.onBug = opts.onBug ?? ((e) => console.error('xenstored: store bug:', e));
    this.hooks = {
      introduceDomain: (dom) => this.introduce(dom),
      releaseDomain: (dom) => this.release(dom),
      onBug: (e) => {
        this.st.internalErrors++;
        this.onBug(e);
      },
    };
  }

  /**
   * A new connection for `dom` (the domain is introduced if it was not): allocates both rings
   * and a doorbell each way, and returns what the client thread needs. A domain may hold
   * several connections (each of dom0's daemons has its own, like separate sockets).
   */
  connect(dom: number): XsRingSpec {
    assert(Number.isInteger(dom) && dom >= 0 && dom <= 0xffff, `domid ${dom} out of range`);
    const port = this.freePorts.pop();
    assert(port !== undefined, `xenstored serves at most ${XS_CONNECTIONS_MAX} connections`);
    if (dom !== 0 && !this.store.isDomainIntroduced(dom)) this.store.introduceDomain(dom);
    const reqPages = allocateRingPages(XS_RING_ORDER);
    const evtPages = allocateRingPages(XS_RING_ORDER);
    const reqRing = new SharedRing(reqPages, XS_RING_SLOT_BYTES);
    const evtRing = new SharedRing(evtPages, XS_RING_SLOT_BYTES);
    // xenstored allocates the pages, so it initialises them (as the toolstack does the
    // xenstore page) before either end attaches.
    reqRing.init();
    evtRing.init();
    const client = EvtchnDoorbells.create({ maxPorts: 32, maxWaiters: 1 });
    client.bind(XS_CLIENT_PORT, 0);
    const queued: XsWireWatchEvent[] = [];
    const storeConn = this.store.connect(dom, (ev: WatchEvent) => {
      if (!xsRingEventFits(ev) || queued.length >= XS_WATCH_EVENTS_QUEUED_MAX) {
        this.st.watchEventsDropped++;
        return;
      }
      queued.push({ path: ev.path, token: ev.token });
      // Fired from outside a poll (the xs_wire socket, a command): wake the loop to flush it.
      if (!this.polling) this.bells.raise(CONTROL_PORT);
    });
    const spec: XsRingSpec = {
      conn: storeConn.id,
      dom,
      slotBytes: XS_RING_SLOT_BYTES,
      reqPages,
      evtPages,
      serverBells: this.bells.sab,
      serverPort: port,
      clientBells: client.sab,
      clientPort: XS_CLIENT_PORT,
    };
    this.conns.set(port, {
      spec,
      store: storeConn,
      back: new BackRing(reqRing, xsSlotCodec<unknown>(), xsSlotCodec<XsWireResponse>()),
      evFront: new FrontRing(evtRing, xsSlotCodec<XsWireWatchEvent>(), xsSlotCodec<unknown>()),
      client,
      queued,
      dead: false,
    });
    this.bells.bind(port, 0);
    this.st.connections++;
    // Introducing the domain fired @introduceDomain watches.
    this.flushAll();
    return spec;
  }

  /** Close one connection (its watches and transactions die with it). */
  disconnect(connId: number): boolean {
    for (const [port, c] of this.conns) {
      if (c.spec.conn !== connId) continue;
      this.drop(port, c);
      return true;
    }
    return false;
  }

  /** `XS_INTRODUCE` from the toolstack: `@introduceDomain` watches fire. */
  introduce(dom: number): void {
    this.store.introduceDomain(dom);
    this.flushAll();
  }

  /** `XS_RELEASE`: the domain is gone; its connections close, `@releaseDomain` watches fire. */
  release(dom: number): void {
    for (const [port, c] of [...this.conns]) if (c.spec.dom === dom) this.drop(port, c);
    this.store.releaseDomain(dom);
    this.flushAll();
  }

  /** The live tree as the 'xs.store' projection's state, as of `atSeq` (default: now). */
  snapshot(atSeq?: number): StateSnapshot {
    let at = atSeq ?? this.seqNow?.();
    if (at === undefined) {
      at = 0;
      for (const e of this.store.entries().values()) if (e.seq > at) at = e.seq;
    }
    return xsSnapshot(this.store, at);
  }

  stats(): XenstoredStats {
    return { ...this.st, connections: this.conns.size };
  }

  /**
   * One pass over every connection: take requests (at most `XS_REQUESTS_PER_POLL_MAX` each),
   * answer them, publish watch events then responses, ring the clients that asked. Returns
   * whether work remains (call again before sleeping). Synchronous: the deterministic mode
   * drives this directly.
   */
  poll(): boolean {
    this.polling = true;
    try {
      return this.pollOnce();
    } finally {
      this.polling = false;
    }
  }

  private pollOnce(): boolean {
    this.waiter.takePending(() => {});
    let more = false;
    for (const [port, c] of this.conns) {
      if (c.dead) continue;
      let n = 0;
      while (n < XS_REQUESTS_PER_POLL_MAX && c.back.unconsumedRequests() > 0) {
        const r = c.back.takeRequest();
        let rsp: XsWireResponse;
        if (!r.ok) {
          if (r.error.kind === 'broken') break;
          this.st.malformed++;
          rsp = { id: 0, ok: false, error: 'EINVAL' };
        } else {
          const parsed = xsParseRequest(r.value);
          if (!parsed.ok) {
            if (parsed.id === 0) this.st.malformed++;
            rsp = { id: parsed.id, ok: false, error: parsed.error };
          } else {
            rsp = xsDispatch(this.store, c.store, parsed.id, parsed.req, this.hooks);
          }
        }
        this.st.requests++;
        if (!rsp.ok) this.st.errors++;
        this.respond(c, rsp);
        n++;
      }
      if (n === XS_REQUESTS_PER_POLL_MAX) more = true;
      if (c.back.broken) this.breakConn(port, c);
    }
    // A request on one connection fires watches on others: events go out after every request.
    if (this.flushAll()) more = true;
    for (const c of this.conns.values()) {
      if (c.dead) continue;
      if (c.back.pushResponsesAndCheckNotify()) c.client.raise(XS_CLIENT_PORT);
      if (c.back.finalCheckForRequests()) more = true;
    }
    return more;
  }

  /** Serve on this thread until `stop()`: `poll`, then sleep on the doorbell (`Atomics.waitAsync`). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.keepAlive = holdEventLoop();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.bells.raise(CONTROL_PORT);
    await this.loop;
    this.loop = null;
    this.keepAlive?.release();
    this.keepAlive = null;
  }

  private async run(): Promise<void> {
    while (this.running) {
      // Read the generation before looking for work: a kick after this read makes the wait
      // return at once (see doorbell.ts), so no request is left sleeping on the ring.
      const gen = this.waiter.generation();
      let more: boolean;
      try {
        more = this.poll();
      } catch (e) {
        // Only our own bug can get here (peer data never throws); keep serving the others.
        this.st.internalErrors++;
        this.onBug(e);
        more = false;
      }
      if (!this.running) break;
      if (more) await new Promise<void>((r) => setImmediate(r));
      else await this.waiter.wait(gen);
    }
  }

  private respond(c: RingConn, rsp: XsWireResponse): void {
    const r = c.back.pushResponse(rsp);
    if (r.ok) return;
    if (r.error.kind === 'too-large') {
      // A value or listing larger than a slot (dom0 may write one in-process): xs_wire would
      // need XS_DIRECTORY_PART; we answer E2BIG.
      const again = c.back.pushResponse({ id: rsp.id, ok: false, error: 'E2BIG' });
      assert(again.ok, 'an error response always fits a slot');
      return;
    }
    assert(r.error.kind === 'broken', `response refused: ${r.error.kind}`);
  }

  /** Move queued watch events onto every event ring; returns whether some are still waiting for room. */
  private flushAll(): boolean {
    let waiting = false;
    for (const [port, c] of this.conns) {
      if (c.dead || c.queued.length === 0) continue;
      const f = c.evFront;
      f.discardResponses(f.size);
      let k = 0;
      while (k < c.queued.length && !f.full()) {
        const r = f.pushRequest(c.queued[k]!);
        if (!r.ok && r.error.kind === 'broken') break;
        if (!r.ok) this.st.watchEventsDropped++;
        else this.st.watchEventsSent++;
        k++;
      }
      c.queued.splice(0, k);
      if (f.pushRequestsAndCheckNotify()) c.client.raise(XS_CLIENT_PORT);
      if (f.broken) {
        this.breakConn(port, c);
        continue;
      }
      // The client frees slots with empty responses; ask to be rung when it does.
      if (c.queued.length > 0 && f.finalCheckForResponses()) waiting = true;
    }
    return waiting;
  }

  private breakConn(port: number, c: RingConn): void {
    this.st.brokenRings++;
    this.drop(port, c);
  }

  private drop(port: number, c: RingConn): void {
    c.dead = true;
    this.store.disconnect(c.store);
    this.bells.unbind(port);
    this.conns.delete(port);
    this.freePorts.push(port);
  }
}

// ─────────────────────────── runners ───────────────────────────

export type XsdCommand =
  | { type: 'connect'; dom: number }
  | { type: 'disconnect'; conn: number }
  | { type: 'introduce'; dom: number }
  | { type: 'release'; dom: number }
  | { type: 'snapshot'; atSeq?: number }
  | { type: 'stats' }
  | { type: 'stop' };

export type XsdReply =
  | { ok: true; spec?: XsRingSpec; snapshot?: StateSnapshot; stats?: XenstoredStats; done?: boolean }
  | { ok: false; error: string };

/** Carry out one toolstack command; never throws for a bad one (answered with an error). */
export function xsdHandle(d: XenstoredDaemon, cmd: XsdCommand): XsdReply {
  const domOk = (dom: unknown): dom is number => typeof dom === 'number' && Number.isInteger(dom) && dom >= 0 && dom <= 0xffff;
  switch (cmd.type) {
    case 'connect':
      if (!domOk(cmd.dom)) return { ok: false, error: `bad domid ${String(cmd.dom)}` };
      return { ok: true, spec: d.connect(cmd.dom) };
    case 'disconnect':
      return d.disconnect(cmd.conn) ? { ok: true } : { ok: false, error: `no connection ${cmd.conn}` };
    case 'introduce':
      if (!domOk(cmd.dom)) return { ok: false, error: `bad domid ${String(cmd.dom)}` };
      d.introduce(cmd.dom);
      return { ok: true };
    case 'release':
      if (!domOk(cmd.dom)) return { ok: false, error: `bad domid ${String(cmd.dom)}` };
      d.release(cmd.dom);
      return { ok: true };
    case 'snapshot':
      return { ok: true, snapshot: d.snapshot(cmd.atSeq) };
    case 'stats':
      return { ok: true, stats: d.stats() };
    case 'stop':
      return { ok: true, done: true };
    default:
      return { ok: false, error: `unknown command ${JSON.stringify((cmd as { type?: unknown }).type)}` };
  }
}

/** The narrow interface of a running xenstored, whichever runner it is on. */
export interface XenstoredHandle {
  /** A new connection for `dom` (introducing the domain): hand the spec to the client's thread. */
  connect(dom: number): Promise<XsRingSpec>;
  disconnect(conn: number): Promise<void>;
  introduce(dom: number): Promise<void>;
  release(dom: number): Promise<void>;
  /** The live tree as a 'xs.store' snapshot (default atSeq: the run's latest seq). */
  snapshot(atSeq?: number): Promise<StateSnapshot>;
  stats(): Promise<XenstoredStats>;
  stop(): Promise<void>;
}

const unwrap = (r: XsdReply): Extract<XsdReply, { ok: true }> => {
  if (!r.ok) throw new Error(`xenstored: ${r.error}`);
  return r;
};

function handleOver(request: (cmd: XsdCommand) => Promise<XsdReply>, stop: () => Promise<void>): XenstoredHandle {
  return {
    connect: async (dom) => unwrap(await request({ type: 'connect', dom })).spec!,
    disconnect: async (conn) => void unwrap(await request({ type: 'disconnect', conn })),
    introduce: async (dom) => void unwrap(await request({ type: 'introduce', dom })),
    release: async (dom) => void unwrap(await request({ type: 'release', dom })),
    snapshot: async (atSeq) => unwrap(await request(atSeq === undefined ? { type: 'snapshot' } : { type: 'snapshot', atSeq })).snapshot!,
    stats: async () => unwrap(await request({ type: 'stats' })).stats!,
    stop,
  };
}

/** xenstored on this thread, serving real rings (tests; clients may be here or in workers). */
export function startXenstoredInProcess(opts: XenstoredOptions = {}): XenstoredHandle & { readonly daemon: XenstoredDaemon } {
  const daemon = new XenstoredDaemon(opts);
  daemon.start();
  return { daemon, ...handleOver(async (cmd) => xsdHandle(daemon, cmd), () => daemon.stop()) };
}

export interface XenstoredWorkerData {
  log: LogChannelSpec | null;
  quota?: Partial<XsQuota>;
  /** Also serve xs_wire on this Unix socket (for dom0 tools: `XENSTORED_PATH=…`). */
  socketPath?: string;
}

/** The thread's entry point, for launchers that drive it with `startCommandWorker`. */
export const XENSTORED_WORKER_URL = new URL('./xenstored-worker.js', import.meta.url);

/** xenstored in its own thread; toolstack commands travel over a MessagePort. */
export async function startXenstoredWorker(opts: { log?: LogChannelSpec | null; quota?: Partial<XsQuota>; socketPath?: string } = {}): Promise<XenstoredHandle> {
  const data: XenstoredWorkerData = { log: opts.log ?? null, ...(opts.quota ? { quota: opts.quota } : {}), ...(opts.socketPath ? { socketPath: opts.socketPath } : {}) };
  const w = await startCommandWorker<XsdCommand, XsdReply>(new URL('./xenstored-worker.js', import.meta.url), data, 'pvsim-xenstored');
  const worker = w.worker;
  const request = (cmd: XsdCommand): Promise<XsdReply> => w.request(cmd);
  return handleOver(request, async () => {
    if (!w.failure) await request({ type: 'stop' });
    await worker.terminate();
  });
}
