/**
 * XenStore clients: what a daemon thread of domain D is handed to talk to xenstored, scoped to
 * D (relative paths are under /local/domain/D; permissions are D's).
 *
 * - `XsRingClient`: over a connection's rings and doorbells (daemon.ts documents the protocol);
 *   never blocks its thread — it sleeps in `Atomics.waitAsync` and holds the event loop open only
 *   while a request is outstanding or a watch is set.
 * - `LocalXsClient`: the same interface straight on a `XenStore` in this thread (tests, the
 *   deterministic mode); requests go through the ring's decoding and the one dispatcher
 *   (dispatch.ts) that also serves the rings and the xs_wire socket.
 *
 * `transaction(fn)` is Linux's `xenbus_transaction_start` … `xenbus_transaction_end` with its
 * `-EAGAIN → goto again`: `fn` runs with a transaction handle and is run again (at most
 * `XS_TRANSACTION_ATTEMPTS_MAX` times) when the commit meets a conflicting change. A throw from
 * `fn` aborts the transaction and is rethrown. Errors are `XsClientError` with xs_wire's name.
 */
import { nullEmitter, type EventEmitter } from '@pvsim/eventlog';
import { BackRing, EvtchnDoorbells, FrontRing, SharedRing, type EvtchnWaiter } from '@pvsim/ring';
import { holdEventLoop, type KeepAlive } from '@pvsim/runtime';
import type { XenStore } from './store.js';
import { parsePerm, permsToString } from './store.js';
import {
  XS_DIRECTORY,
  XS_GET_DOMAIN_PATH,
  XS_GET_PERMS,
  XS_MKDIR,
  XS_READ,
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
} from './types.js';
import { xsOpName } from './dispatch.js';
import { xsDispatch, xsParseRequest, xsRingEventFits, xsSlotCodec, type XsReplyValue, type XsRingSpec, type XsWireRequest, type XsWireResponse, type XsWireWatchEvent } from './daemon.js';

/** Commit attempts of one `transaction(fn)` before it gives up with EAGAIN. */
export const XS_TRANSACTION_ATTEMPTS_MAX = 100;
/** Requests a ring client queues behind a full ring; more are refused with EBUSY. */
export const XS_CLIENT_BACKLOG_MAX = 1024;
/** Watch events taken per pass of the client's loop. */
const EVENTS_PER_PASS_MAX = 64;
/** Passes without sleeping before the loop yields to the thread's other work. */
const PASSES_BEFORE_YIELD = 64;

/** A request xenstored refused (or the connection failed: EIO). */
export class XsClientError extends Error {
  override name = 'XsClientError';
  constructor(
    /** xs_wire's error name. */
    readonly error: XsError,
    readonly op: string,
    readonly path?: string,
  ) {
    super(`${op}${path !== undefined ? ` ${path}` : ''}: ${error}`);
  }
}

export const isXsError = (e: unknown, name?: XsError): e is XsClientError => e instanceof XsClientError && (name === undefined || e.error === name);

/** The operations on nodes, with or without a transaction. */
export interface XsOps {
  /** The value as UTF-8 text. */
  read(path: string): Promise<string>;
  readBytes(path: string): Promise<Buffer>;
  /** The value, or null when the node does not exist (ENOENT). */
  tryRead(path: string): Promise<string | null>;
  write(path: string, value: string | Uint8Array): Promise<void>;
  mkdir(path: string): Promise<void>;
  rm(path: string): Promise<void>;
  directory(path: string): Promise<string[]>;
  getPerms(path: string): Promise<XsPerm[]>;
  setPerms(path: string, perms: readonly XsPerm[]): Promise<void>;
}

export interface XsTransaction extends XsOps {
  readonly id: number;
  /** Which attempt this is (1-based): `fn` is run again after EAGAIN. */
  readonly attempt: number;
}

export interface XsTransactionOptions {
  attemptsMax?: number;
}

export interface XsClient extends XsOps {
  /** The domain this client speaks for. */
  readonly dom: number;
  /** This thread's event log (drivers emit `xenbus.state` on it). */
  readonly events: EventEmitter;
  /**
   * Set a watch; `cb` runs for every event with this token (once at once, as xenstored fires a
   * new watch). Tokens are unique per client. `cb` must not throw (a throw is swallowed).
   */
  watch(path: string, token: string, cb: (ev: WatchEvent) => void): Promise<void>;
  unwatch(path: string, token: string): Promise<void>;
  transaction<T>(fn: (tx: XsTransaction) => Promise<T>, opts?: XsTransactionOptions): Promise<T>;
  getDomainPath(dom?: number): Promise<string>;
  /** Stop: outstanding requests fail with EIO, watches stop firing. */
  close(): void;
}

export interface XsClientOptions {
  events?: EventEmitter;
}

/** The request/watch bookkeeping both clients share; subclasses only move messages. */
abstract class XsClientBase implements XsClient {
  readonly events: EventEmitter;
  protected readonly watches = new Map<string, { path: string; cb: (ev: WatchEvent) => void }>();
  protected closed = false;

  constructor(
    readonly dom: number,
    opts: XsClientOptions,
  ) {
    this.events = opts.events ?? nullEmitter();
  }

  /** Send one request; resolves with the reply's value or rejects with `XsClientError`. */
  protected abstract call(req: Omit<XsWireRequest, 'id'>): Promise<XsReplyValue | undefined>;

  abstract close(): void;

  protected onWatchesChanged(): void {}

  protected dispatchWatch(ev: WatchEvent): void {
    const w = this.watches.get(ev.token);
    if (!w) return; // a late event for a watch just removed: xenstored may fire spuriously
    try {
      w.cb(ev);
    } catch {
      // A watch callback must not throw; the client lives on.
    }
  }

  private ops(tx: number): XsOps {
    const call = (op: number, path: string, extra: Partial<XsWireRequest> = {}) => this.call({ op, tx, path, ...extra });
    const bytes = async (path: string): Promise<Buffer> => {
      const v = await call(XS_READ, path);
      return v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : Buffer.alloc(0);
    };
    return {
      readBytes: bytes,
      read: async (path) => (await bytes(path)).toString('utf8'),
      tryRead: async (path) => {
        try {
          return (await bytes(path)).toString('utf8');
        } catch (e) {
          if (isXsError(e, 'ENOENT')) return null;
          throw e;
        }
      },
      write: async (path, value) => void (await call(XS_WRITE, path, { value })),
      mkdir: async (path) => void (await call(XS_MKDIR, path)),
      rm: async (path) => void (await call(XS_RM, path)),
      directory: async (path) => {
        const v = await call(XS_DIRECTORY, path);
        return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
      },
      getPerms: async (path) => {
        const v = await call(XS_GET_PERMS, path);
        return typeof v === 'string' ? v.split(',').map(parsePerm).filter((p): p is XsPerm => p !== null) : [];
      },
      setPerms: async (path, perms) => void (await call(XS_SET_PERMS, path, { value: permsToString(perms) })),
    };
  }

  private readonly direct = this.ops(0);
  read = (path: string) => this.direct.read(path);
  readBytes = (path: string) => this.direct.readBytes(path);
  tryRead = (path: string) => this.direct.tryRead(path);
  write = (path: string, value: string | Uint8Array) => this.direct.write(path, value);
  mkdir = (path: string) => this.direct.mkdir(path);
  rm = (path: string) => this.direct.rm(path);
  directory = (path: string) => this.direct.directory(path);
  getPerms = (path: string) => this.direct.getPerms(path);
  setPerms = (path: string, perms: readonly XsPerm[]) => this.direct.setPerms(path, perms);

  async getDomainPath(dom = this.dom): Promise<string> {
    const v = await this.call({ op: XS_GET_DOMAIN_PATH, tx: 0, path: String(dom) });
    return String(v);
  }

  async watch(path: string, token: string, cb: (ev: WatchEvent) => void): Promise<void> {
    if (this.watches.has(token)) throw new XsClientError('EEXIST', 'XS_WATCH', path);
    // Registered before the request: the event xenstored fires at registration may arrive first.
    this.watches.set(token, { path, cb });
    this.onWatchesChanged();
    try {
      await this.call({ op: XS_WATCH, tx: 0, path, token });
    } catch (e) {
      if (this.watches.get(token)?.cb === cb) this.watches.delete(token);
      this.onWatchesChanged();
      throw e;
    }
  }

  async unwatch(path: string, token: string): Promise<void> {
    try {
      await this.call({ op: XS_UNWATCH, tx: 0, path, token });
    } finally {
      this.watches.delete(token);
      this.onWatchesChanged();
    }
  }

  async transaction<T>(fn: (tx: XsTransaction) => Promise<T>, opts: XsTransactionOptions = {}): Promise<T> {
    const attemptsMax = opts.attemptsMax ?? XS_TRANSACTION_ATTEMPTS_MAX;
    for (let attempt = 1; attempt <= attemptsMax; attempt++) {
      const id = Number(await this.call({ op: XS_TRANSACTION_START, tx: 0 }));
      let result: T;
      try {
        result = await fn({ id, attempt, ...this.ops(id) });
      } catch (e) {
        await this.call({ op: XS_TRANSACTION_END, tx: id, value: 'F' }).catch(() => {});
        throw e;
      }
      try {
        await this.call({ op: XS_TRANSACTION_END, tx: id, value: 'T' });
        return result;
      } catch (e) {
        if (!isXsError(e, 'EAGAIN')) throw e;
      }
    }
    throw new XsClientError('EAGAIN', 'XS_TRANSACTION_END');
  }
}

function settle(req: Omit<XsWireRequest, 'id'>, rsp: XsWireResponse): XsReplyValue | undefined {
  if (!rsp.ok) throw new XsClientError(rsp.error, xsOpName(req.op), req.path);
  return rsp.value;
}

// ─────────────────────────── in-process ───────────────────────────

/** A client straight on a store in this thread; watch events are delivered as microtasks. */
export class LocalXsClient extends XsClientBase {
  private readonly conn: XsConnection;
  private readonly pending: WatchEvent[] = [];
  private nextId = 1;

  constructor(
    private readonly store: XenStore,
    dom: number,
    opts: XsClientOptions = {},
  ) {
    super(dom, opts);
    // The store delivers inside its own loops: queue, and hand out after the request returns.
    this.conn = store.connect(dom, (ev) => {
      if (!xsRingEventFits(ev)) return; // as xenstored drops it
      if (this.pending.push(ev) === 1) queueMicrotask(() => this.flush());
    });
  }

  private flush(): void {
    for (const ev of this.pending.splice(0)) if (!this.closed) this.dispatchWatch(ev);
  }

  protected call(req: Omit<XsWireRequest, 'id'>): Promise<XsReplyValue | undefined> {
    if (this.closed) return Promise.reject(new XsClientError('EIO', xsOpName(req.op), req.path));
    const id = this.nextId++;
    const parsed = xsParseRequest({ id, ...req });
    const rsp: XsWireResponse = parsed.ok ? xsDispatch(this.store, this.conn, id, parsed.req) : { id, ok: false, error: parsed.error };
    try {
      return Promise.resolve(settle(req, rsp));
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.store.disconnect(this.conn);
  }
}

// ─────────────────────────── over the rings ───────────────────────────

interface Outstanding {
  req: Omit<XsWireRequest, 'id'>;
  resolve: (v: XsReplyValue | undefined) => void;
  reject: (e: Error) => void;
}

export class XsRingClient extends XsClientBase {
  readonly spec: XsRingSpec;
  private readonly front: FrontRing<XsWireRequest, unknown>;
  private readonly evBack: BackRing<unknown, unknown>;
  private readonly server: EvtchnDoorbells;
  private readonly mine: EvtchnDoorbells;
  private readonly waiter: EvtchnWaiter;
  private readonly outstanding = new Map<number, Outstanding>();
  /** Requests waiting for a free slot (ring full). */
  private readonly backlog: XsWireRequest[] = [];
  private nextId = 1;
  private keepAlive: KeepAlive | null = null;
  private loop: Promise<void>;
  /** Responses that named no outstanding request (a confused or hostile xenstored; counted). */
  strayResponses = 0;
  /** Event slots that did not decode (counted, skipped). */
  badEvents = 0;

  constructor(spec: XsRingSpec, opts: XsClientOptions = {}) {
    super(spec.dom, opts);
    this.spec = spec;
    this.front = new FrontRing(new SharedRing(spec.reqPages, spec.slotBytes), xsSlotCodec<XsWireRequest>(), xsSlotCodec<unknown>());
    this.evBack = new BackRing(new SharedRing(spec.evtPages, spec.slotBytes), xsSlotCodec<unknown>(), xsSlotCodec<unknown>());
    this.server = EvtchnDoorbells.attach(spec.serverBells);
    this.mine = EvtchnDoorbells.attach(spec.clientBells);
    this.waiter = this.mine.waiter(0);
    this.loop = this.run();
  }

  /** Resolves once the client's loop has ended (after `close`). */
  get done(): Promise<void> {
    return this.loop;
  }

  protected call(req: Omit<XsWireRequest, 'id'>): Promise<XsReplyValue | undefined> {
    const what = () => new XsClientError('EIO', xsOpName(req.op), req.path);
    if (this.closed || this.front.broken) return Promise.reject(what());
    if (this.backlog.length >= XS_CLIENT_BACKLOG_MAX) return Promise.reject(new XsClientError('EBUSY', xsOpName(req.op), req.path));
    let id = this.nextId;
    this.nextId = this.nextId >= 0xffff_fffe ? 1 : this.nextId + 1;
    while (this.outstanding.has(id)) id = id >= 0xffff_fffe ? 1 : id + 1;
    const msg: XsWireRequest = { id, ...req };
    return new Promise((resolve, reject) => {
      this.outstanding.set(id, { req, resolve, reject });
      this.updateKeepAlive();
      this.backlog.push(msg);
      this.send();
    });
  }

  protected override onWatchesChanged(): void {
    this.updateKeepAlive();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.failAll('EIO');
    this.watches.clear();
    this.mine.raise(this.spec.clientPort); // wake the loop so it sees `closed`
    this.updateKeepAlive();
  }

  /** Hold the thread open while anything can still arrive for someone waiting on it. */
  private updateKeepAlive(): void {
    const busy = !this.closed && (this.outstanding.size > 0 || this.watches.size > 0);
    if (busy && !this.keepAlive) this.keepAlive = holdEventLoop();
    else if (!busy && this.keepAlive) {
      this.keepAlive.release();
      this.keepAlive = null;
    }
  }

  private failAll(error: XsError): void {
    for (const o of this.outstanding.values()) o.reject(new XsClientError(error, xsOpName(o.req.op), o.req.path));
    this.outstanding.clear();
    this.backlog.length = 0;
  }

  /** Put what fits of the backlog on the ring and ring xenstored if it asked. */
  private send(): void {
    let n = 0;
    while (this.backlog.length > 0 && !this.front.full()) {
      const msg = this.backlog[0]!;
      const r = this.front.pushRequest(msg);
      this.backlog.shift();
      if (!r.ok) {
        const o = this.outstanding.get(msg.id);
        this.outstanding.delete(msg.id);
        o?.reject(new XsClientError(r.error.kind === 'too-large' ? 'E2BIG' : 'EIO', xsOpName(msg.op), msg.path));
        continue;
      }
      n++;
    }
    if (n > 0 && this.front.pushRequestsAndCheckNotify()) this.server.raise(this.spec.serverPort);
    this.updateKeepAlive();
  }

  /** One synchronous pass: events first (see daemon.ts on ordering), then responses, then the backlog. */
  private pass(): void {
    for (;;) {
      let events = 0;
      while (events < EVENTS_PER_PASS_MAX && this.evBack.unconsumedRequests() > 0) {
        const r = this.evBack.takeRequest();
        events++;
        if (!r.ok) {
          if (r.error.kind === 'broken') break;
          this.badEvents++;
          continue;
        }
        const ev = r.value as Partial<XsWireWatchEvent> | null;
        if (ev === null || typeof ev !== 'object' || typeof ev.path !== 'string' || typeof ev.token !== 'string') {
          this.badEvents++;
          continue;
        }
        this.dispatchWatch({ path: ev.path, token: ev.token });
      }
      if (events > 0) {
        this.evBack.pushEmptyResponses(events);
        if (this.evBack.pushResponsesAndCheckNotify()) this.server.raise(this.spec.serverPort);
      }
      let responses = 0;
      while (this.front.unconsumedResponses() > 0) {
        const r = this.front.takeResponse();
        responses++;
        if (!r.ok) {
          if (r.error.kind === 'broken') break;
          this.strayResponses++;
          continue;
        }
        const rsp = r.value as Partial<XsWireResponse> | null;
        const id = rsp !== null && typeof rsp === 'object' ? rsp.id : undefined;
        const o = typeof id === 'number' ? this.outstanding.get(id) : undefined;
        if (!o || id === undefined) {
          this.strayResponses++;
          continue;
        }
        this.outstanding.delete(id);
        try {
          o.resolve(settle(o.req, rsp as XsWireResponse));
        } catch (e) {
          o.reject(e as Error);
        }
      }
      if (responses > 0) this.send();
      if (this.front.broken || this.evBack.broken) {
        // xenstored broke a ring: nothing more will come.
        this.failAll('EIO');
        return;
      }
      if (events === 0 && responses === 0) return;
      // An event published before a response just taken may have missed this pass's scan.
    }
  }

  private async run(): Promise<void> {
    let passes = 0;
    while (!this.closed) {
      // Generation first, then work: a kick after this read makes the wait return at once.
      const gen = this.waiter.generation();
      this.waiter.takePending(() => {});
      this.pass();
      if (this.closed || this.front.broken || this.evBack.broken) break;
      if (this.evBack.finalCheckForRequests() || this.front.finalCheckForResponses()) {
        if (++passes % PASSES_BEFORE_YIELD === 0) await new Promise<void>((r) => setImmediate(r));
        else await Promise.resolve();
        continue;
      }
      passes = 0;
      await this.waiter.wait(gen);
    }
    this.updateKeepAlive();
  }
}

/** A client over a connection spec (what a daemon thread is handed). */
export function xsConnect(spec: XsRingSpec, opts: XsClientOptions = {}): XsRingClient {
  return new XsRingClient(spec, opts);
}
