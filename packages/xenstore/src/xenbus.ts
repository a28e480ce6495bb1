/**
 * xenbus for drivers: the device state machine of `io/xenbus.h`, the XenStore paths of a split
 * device, `xenbus_switch_state`, and a reference handshake as two small driver skeletons that
 * blkfront/blkback (and netfront/netback) build on.
 *
 * The handshake (blkif.h's diagram; Linux's blkfront `blkback_changed` and blkback
 * `frontend_changed`):
 *
 *   toolstack   both ends' nodes created in Initialising
 *   backend     publish features → InitWait
 *   frontend    read features, set up the ring, publish ring-ref + event-channel (one
 *               transaction) → Initialised            (may skip waiting for InitWait)
 *   backend     read the frontend's keys, connect, publish device properties → Connected
 *   frontend    read the device properties → Connected
 *   teardown    frontend → Closing → Closed; the backend follows (Closing, Closed)
 *   reconnect   frontend Closed → Initialising; the backend, Closed, sees it and goes InitWait
 *
 * Each end is level-triggered: on every watch event it reads the other end's state now and acts
 * on the pair (its own, the other's), so a state it never saw (the other end went Closed and
 * InitWait between two reads) cannot wedge it. Handlers of one end never overlap. Peer data never
 * throws: a missing key is waited for (the other end's directory is watched), a state that is not
 * a number reads as Unknown, and a failed connect is recorded in `errors` and closes the device —
 * the driver lives on.
 */
import { registerAuditor, type Auditor } from '@pvsim/eventlog';
import { RealClock, type Clock } from '@pvsim/runtime';
import type { XsClient, XsOps } from './client.js';
import './events.js';

// ─────────────────────────── states ───────────────────────────

/** `enum xenbus_state` of `io/xenbus.h`. */
export const XenbusState = {
  Unknown: 0,
  Initialising: 1,
  /** Finished early initialisation, waiting for information from the peer or hotplug scripts. */
  InitWait: 2,
  /** Waiting for a connection from the peer. */
  Initialised: 3,
  Connected: 4,
  /** Being closed due to an error or an unplug event. */
  Closing: 5,
  Closed: 6,
  Reconfiguring: 7,
  Reconfigured: 8,
} as const;
export type XenbusState = (typeof XenbusState)[keyof typeof XenbusState];

export const XenbusStateUnknown = XenbusState.Unknown;
export const XenbusStateInitialising = XenbusState.Initialising;
export const XenbusStateInitWait = XenbusState.InitWait;
export const XenbusStateInitialised = XenbusState.Initialised;
export const XenbusStateConnected = XenbusState.Connected;
export const XenbusStateClosing = XenbusState.Closing;
export const XenbusStateClosed = XenbusState.Closed;
export const XenbusStateReconfiguring = XenbusState.Reconfiguring;
export const XenbusStateReconfigured = XenbusState.Reconfigured;

const NAMES = ['Unknown', 'Initialising', 'InitWait', 'Initialised', 'Connected', 'Closing', 'Closed', 'Reconfiguring', 'Reconfigured'] as const;

/** Linux's `xenbus_strstate`: 'InitWait', … ('INVALID' for a number that is not a state). */
export const xenbusStrState = (s: number): string => NAMES[s] ?? 'INVALID';

export const isXenbusState = (n: number): n is XenbusState => Number.isInteger(n) && n >= 0 && n <= 8;

/** `<dir>/state` as written by the other end (a peer): not a decimal state → Unknown, as Linux's `xenbus_read_driver_state`. */
export function parseXenbusState(v: string | null): XenbusState {
  if (v === null || !/^\d{1,3}$/.test(v)) return XenbusState.Unknown;
  const n = Number(v);
  return isXenbusState(n) ? n : XenbusState.Unknown;
}

export type XenbusRole = 'frontend' | 'backend';

/**
 * Is `from → to` a transition a well-behaved `role` end makes? Linux-like tolerance: any state
 * may go to Closing or Closed; a frontend may go Initialised (or, netfront-style, Connected)
 * without waiting for the backend's InitWait; a backend may go Initialised without InitWait; a
 * Closed end may start over (frontend → Initialising, backend → InitWait or Initialising).
 * Staying in the same state is not a transition (false).
 */
export function xenbusTransitionLegal(role: XenbusRole, from: XenbusState, to: XenbusState): boolean {
  if (from === to) return false;
  if (to === XenbusState.Closing || to === XenbusState.Closed) return true;
  const S = XenbusState;
  switch (from) {
    case S.Unknown:
      return to === S.Initialising;
    case S.Initialising:
      return role === 'frontend' ? to === S.Initialised || to === S.Connected : to === S.InitWait || to === S.Initialised;
    case S.InitWait:
      return role === 'backend' && (to === S.Initialised || to === S.Connected);
    case S.Initialised:
      return to === S.Connected;
    case S.Connected:
      return to === S.Reconfiguring;
    case S.Reconfiguring:
      return to === S.Reconfigured;
    case S.Reconfigured:
      return to === S.Connected;
    case S.Closing:
      return false;
    case S.Closed:
      return role === 'frontend' ? to === S.Initialising : to === S.InitWait || to === S.Initialising;
  }
  return false;
}

// ─────────────────────────── paths ───────────────────────────

/** A frontend's directory: `/local/domain/<dom>/device/<type>/<devid>`. */
export const frontendPath = (dom: number, type: string, devid: number | string): string => `/local/domain/${dom}/device/${type}/${devid}`;

/** A backend's directory: `/local/domain/<backDom>/backend/<type>/<frontDom>/<devid>`. */
export const backendPath = (backDom: number, type: string, frontDom: number, devid: number | string): string =>
  `/local/domain/${backDom}/backend/${type}/${frontDom}/${devid}`;

/** Which end a directory is, from its path (the auditor's view of a `xenbus.state` event). */
export function xenbusRoleOf(dir: string): XenbusRole | null {
  if (/^\/local\/domain\/\d+\/backend\/[^/]+\/\d+\/[^/]+$/.test(dir)) return 'backend';
  if (/^\/local\/domain\/\d+\/device\/[^/]+\/[^/]+$/.test(dir)) return 'frontend';
  return null;
}

export interface XenbusDeviceId {
  type: string;
  frontDom: number;
  backDom: number;
  devid: number;
}

export const xenbusDirs = (d: XenbusDeviceId) => ({ frontDir: frontendPath(d.frontDom, d.type, d.devid), backDir: backendPath(d.backDom, d.type, d.frontDom, d.devid) });

/**
 * What the toolstack (libxl's device add) does before either driver runs: both directories,
 * each owned by its end and readable by the other, cross-linked, both in Initialising. Not one
 * transaction: children inherit the permissions set on their directory first.
 */
export async function xenbusAddDevice(
  toolstack: XsClient,
  d: XenbusDeviceId,
  extra: { frontend?: Record<string, string>; backend?: Record<string, string> } = {},
): Promise<{ frontDir: string; backDir: string }> {
  const { frontDir, backDir } = xenbusDirs(d);
  await toolstack.rm(frontDir).catch(() => {});
  await toolstack.rm(backDir).catch(() => {});
  await toolstack.mkdir(frontDir);
  await toolstack.setPerms(frontDir, [
    { dom: d.frontDom, mode: 'n' },
    { dom: d.backDom, mode: 'r' },
  ]);
  await toolstack.mkdir(backDir);
  await toolstack.setPerms(backDir, [
    { dom: d.backDom, mode: 'n' },
    { dom: d.frontDom, mode: 'r' },
  ]);
  const front = { 'backend-id': String(d.backDom), backend: backDir, state: String(XenbusState.Initialising), ...extra.frontend };
  const back = { 'frontend-id': String(d.frontDom), frontend: frontDir, online: '1', state: String(XenbusState.Initialising), ...extra.backend };
  await toolstack.transaction(async (tx) => {
    for (const [k, v] of Object.entries(front)) await tx.write(`${frontDir}/${k}`, v);
    for (const [k, v] of Object.entries(back)) await tx.write(`${backDir}/${k}`, v);
  });
  return { frontDir, backDir };
}

/** The toolstack's device removal: both directories go. */
export async function xenbusRemoveDevice(toolstack: XsClient, d: XenbusDeviceId): Promise<void> {
  const { frontDir, backDir } = xenbusDirs(d);
  await toolstack.rm(frontDir);
  await toolstack.rm(backDir);
}

// ─────────────────────────── switching state ───────────────────────────

/** `<dir>/state`, Unknown when missing or not a state. */
export async function xenbusReadState(ops: XsOps, dir: string): Promise<XenbusState> {
  return parseXenbusState(await ops.tryRead(`${dir}/state`));
}

export interface XenbusSwitch {
  from: XenbusState;
  to: XenbusState;
  /** The state was written (and a `xenbus.state` event emitted). */
  changed: boolean;
  /** `<dir>/state` did not exist: the device is being removed, nothing was written. */
  removed: boolean;
}

/**
 * `xenbus_switch_state`: in a transaction (retried on EAGAIN), read `<dir>/state` and, if it
 * exists and differs, write `to` in decimal. As Linux, a missing state node means the device is
 * going away and nothing is written. Emits `xenbus.state` {path, dom, from, to, name} on the
 * client's event log after the commit.
 */
export async function xenbusSwitchState(client: XsClient, dir: string, to: XenbusState): Promise<XenbusSwitch> {
  const out: XenbusSwitch = { from: XenbusState.Unknown, to, changed: false, removed: false };
  await client.transaction(async (tx) => {
    out.changed = false;
    out.removed = false;
    const cur = await tx.tryRead(`${dir}/state`);
    if (cur === null) {
      out.removed = true;
      return;
    }
    out.from = parseXenbusState(cur);
    if (out.from === to) return;
    await tx.write(`${dir}/state`, String(to));
    out.changed = true;
  });
  if (out.changed) client.events.emit('xenbus.state', { path: dir, dom: client.dom, from: out.from, to, name: xenbusStrState(to) });
  return out;
}

// ─────────────────────────── the auditor ───────────────────────────

/**
 * Every `xenbus.state` event must be a legal transition for its end (by path: `…/backend/…` or
 * `…/device/…`). Catches a driver that skips the handshake, e.g. a backend Connected before
 * InitWait, or a frontend that leaves Closed for anything but Initialising.
 */
export function xenbusStateAuditor(): Auditor {
  return {
    name: 'xenbus.state',
    onEvent(e, report) {
      if (e.kind !== 'xenbus.state') return;
      const p = e.payload as { path?: unknown; from?: unknown; to?: unknown };
      if (typeof p.path !== 'string' || typeof p.from !== 'number' || typeof p.to !== 'number') return;
      const role = xenbusRoleOf(p.path);
      if (!role || !isXenbusState(p.from) || !isXenbusState(p.to)) return;
      if (!xenbusTransitionLegal(role, p.from, p.to)) {
        report({
          auditor: 'xenbus.state',
          rule: 'illegal-transition',
          message: `${role} ${p.path} went ${xenbusStrState(p.from)} → ${xenbusStrState(p.to)}`,
          seqs: [e.seq],
          dom: e.dom,
        });
      }
    },
    finish() {},
  };
}

registerAuditor('xenbus.state', xenbusStateAuditor);

// ─────────────────────────── driver skeletons ───────────────────────────

/** How long a frontend's `close()` waits for the backend to follow to Closing, by default. */
export const XENBUS_CLOSE_WAIT_MS = 5000;
/** Problems remembered per end (the oldest are dropped). */
const ERRORS_MAX = 64;

/** One end of a device as its driver sees it. */
export interface XenbusEnd {
  readonly dir: string;
  readonly otherDir: string;
  /** This end's state, as it last wrote it. */
  readonly state: XenbusState;
  /** The other end's state, as last read. */
  readonly otherState: XenbusState;
  /** Keys of the other end still awaited (a key read before it was written), if any. */
  readonly waitingFor: string | null;
  /** Problems met (the peer's doing, or a driver hook that failed), newest last. */
  readonly errors: readonly string[];
  /** Resolves when this end is in `state` (at once if it is); rejects after `timeoutMs`. */
  waitForState(state: XenbusState, timeoutMs?: number): Promise<void>;
  /** Stop reacting (unwatch); the device stays as it is. */
  stop(): Promise<void>;
}

export interface XenbusEndOptions {
  clock?: Clock;
}

abstract class XenbusEndBase implements XenbusEnd {
  state: XenbusState = XenbusState.Unknown;
  otherState: XenbusState = XenbusState.Unknown;
  waitingFor: string | null = null;
  readonly errors: string[] = [];
  protected stopped = false;
  /** The device's state node is gone: it is being removed. */
  protected gone = false;
  private chain: Promise<void> = Promise.resolve();
  private queued = false;
  private readonly listeners = new Set<() => void>();
  private readonly token: string;
  protected readonly clock: Clock;

  constructor(
    protected readonly client: XsClient,
    readonly dir: string,
    readonly otherDir: string,
    readonly role: XenbusRole,
    opts: XenbusEndOptions,
  ) {
    this.token = `xenbus:${role}:${dir}`;
    this.clock = opts.clock ?? new RealClock();
  }

  /** Run `fn` after every earlier handler of this end: handlers never overlap. */
  protected serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  /** Something changed: evaluate once more (coalesced with an evaluation already queued). */
  protected kick(): void {
    if (this.stopped || this.queued) return;
    this.queued = true;
    void this.serial(async () => {
      this.queued = false;
      if (this.stopped) return;
      try {
        this.otherState = await xenbusReadState(this.client, this.otherDir);
        this.notify();
        if (!this.gone) await this.evaluate(this.otherState);
      } catch (e) {
        this.note(`${this.role} ${this.dir}: ${e instanceof Error ? e.message : String(e)}`);
      }
    });
  }

  protected abstract evaluate(other: XenbusState): Promise<void>;

  protected note(msg: string): void {
    this.errors.push(msg);
    if (this.errors.length > ERRORS_MAX) this.errors.shift();
  }

  protected async begin(): Promise<void> {
    this.state = await xenbusReadState(this.client, this.dir);
  }

  protected async watchOther(): Promise<void> {
    await this.client.watch(this.otherDir, this.token, () => this.kick());
  }

  protected async switchTo(to: XenbusState): Promise<boolean> {
    const r = await xenbusSwitchState(this.client, this.dir, to);
    if (r.removed) {
      this.gone = true;
      this.note(`${this.role} ${this.dir}: state node gone (device removed); not switching to ${xenbusStrState(to)}`);
      this.notify();
      return false;
    }
    this.state = to;
    this.notify();
    return true;
  }

  /** Read the other end's `keys`; null (and `waitingFor` set) if one is not written yet. */
  protected async gather(keys: readonly string[]): Promise<Record<string, string> | null> {
    const out: Record<string, string> = {};
    for (const k of keys) {
      const v = await this.client.tryRead(`${this.otherDir}/${k}`);
      if (v === null) {
        // Key read before written: the watch on the other directory brings us back.
        this.waitingFor = k;
        return null;
      }
      out[k] = v;
    }
    this.waitingFor = null;
    return out;
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  /** Resolves when `pred()` holds (checked now and after every change this end sees). */
  protected until(pred: () => boolean, what: string, timeoutMs: number): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!pred()) return;
        this.listeners.delete(check);
        timer.cancel();
        resolve();
      };
      const timer = this.clock.setTimer(timeoutMs, () => {
        this.listeners.delete(check);
        reject(new Error(`${this.role} ${this.dir}: timed out after ${timeoutMs} ms waiting for ${what} (this end ${xenbusStrState(this.state)}, other end ${xenbusStrState(this.otherState)}${this.waitingFor ? `, waiting for key ${this.waitingFor}` : ''}${this.errors.length ? `; errors: ${this.errors.join('; ')}` : ''})`));
      });
      this.listeners.add(check);
    });
  }

  waitForState(state: XenbusState, timeoutMs = 10_000): Promise<void> {
    return this.until(() => this.state === state, xenbusStrState(state), timeoutMs);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.client.unwatch(this.otherDir, this.token).catch(() => {});
    await this.chain;
  }
}

// ── backend ──

export interface BackendDriver {
  /** Features and transport limits, written before InitWait (e.g. `feature-flush-cache`). */
  features?(): Record<string, string> | Promise<Record<string, string>>;
  /** Frontend keys needed to connect (default `ring-ref`, `event-channel`); a missing one is waited for. */
  frontendKeys?: readonly string[];
  /**
   * Also connect to a frontend that says Connected without passing Initialised (netfront
   * does). Off by default: a backend that restarted must not attach to its predecessor's ring.
   */
  connectOnFrontendConnected?: boolean;
  /**
   * Map the ring and bind the event channel from the frontend's keys (untrusted: validate
   * them); returns the device properties to publish (one transaction) before Connected. A throw
   * fails the device: recorded in `errors`, the backend goes Closing.
   */
  connect(front: Record<string, string>): Promise<Record<string, string> | void>;
  /** Undo `connect`. */
  disconnect?(): Promise<void>;
}

export interface BackendEnd extends XenbusEnd {
  /** How many times `connect` succeeded (reconnects count). */
  readonly connects: number;
  /** A backend restart: disconnect, Closed, then InitWait again (features rewritten). */
  restart(): Promise<void>;
}

class BackendHandshake extends XenbusEndBase implements BackendEnd {
  connects = 0;
  private connected = false;

  constructor(
    client: XsClient,
    dir: string,
    frontDir: string,
    private readonly driver: BackendDriver,
    opts: XenbusEndOptions,
  ) {
    super(client, dir, frontDir, 'backend', opts);
  }

  async start(): Promise<void> {
    await this.serial(async () => {
      await this.begin();
      await this.initWait();
    });
    await this.watchOther();
  }

  restart(): Promise<void> {
    return this.serial(async () => {
      await this.down(XenbusState.Closed);
      await this.initWait();
    }).finally(() => this.kick());
  }

  private async initWait(): Promise<void> {
    const features = (await this.driver.features?.()) ?? {};
    await this.client.transaction(async (tx) => {
      for (const [k, v] of Object.entries(features)) await tx.write(`${this.dir}/${k}`, v);
    });
    await this.switchTo(XenbusState.InitWait);
  }

  private async down(to: XenbusState): Promise<void> {
    if (this.connected) {
      this.connected = false;
      try {
        await this.driver.disconnect?.();
      } catch (e) {
        this.note(`backend ${this.dir}: disconnect failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (this.state !== to) await this.switchTo(to);
  }

  protected async evaluate(fe: XenbusState): Promise<void> {
    const S = XenbusState;
    const me = this.state;
    switch (fe) {
      case S.Initialising:
        // blkback: a Closed backend sees the frontend start over → InitWait. A backend that is
        // further along missed the frontend's Closed: it closes first.
        if (me === S.Closed) await this.initWait();
        else if (me === S.Initialised || me === S.Connected || me === S.Closing) {
          await this.down(S.Closed);
          await this.initWait();
        }
        return;
      case S.Initialised:
      case S.Connected: {
        if (me === S.Connected || me === S.Initialising) return;
        if (fe === S.Connected && !this.driver.connectOnFrontendConnected) return;
        // The frontend published while we were closed (it restarted, or we did): start over first.
        if (me === S.Closing) await this.down(S.Closed);
        if (this.state === S.Closed) await this.initWait();
        const keys = await this.gather(this.driver.frontendKeys ?? ['ring-ref', 'event-channel']);
        if (!keys) return;
        let props: Record<string, string> | void;
        try {
          props = await this.driver.connect(keys);
        } catch (e) {
          this.note(`backend ${this.dir}: connect failed: ${e instanceof Error ? e.message : String(e)}`);
          await this.down(S.Closing);
          return;
        }
        this.connected = true;
        this.connects++;
        const p = props ?? {};
        await this.client.transaction(async (tx) => {
          for (const [k, v] of Object.entries(p)) await tx.write(`${this.dir}/${k}`, v);
        });
        await this.switchTo(S.Connected);
        return;
      }
      case S.Closing:
        if (me !== S.Closing && me !== S.Closed) await this.down(S.Closing);
        return;
      case S.Closed:
        await this.down(S.Closed);
        return;
      case S.Unknown:
        // The frontend's directory went away (or holds garbage) while we talked to it.
        if (me === S.Initialised || me === S.Connected || me === S.Closing) await this.down(S.Closed);
        return;
      default:
        return;
    }
  }
}

/**
 * Run a backend's side of the handshake on `backDir`, watching the frontend's `frontDir`.
 * Resolves once the backend has published its features and is in InitWait; from then on it
 * follows the frontend (connect, teardown, reconnect) until `stop()`.
 */
export async function runBackendHandshake(client: XsClient, dev: { backDir: string; frontDir: string }, driver: BackendDriver, opts: XenbusEndOptions = {}): Promise<BackendEnd> {
  const b = new BackendHandshake(client, dev.backDir, dev.frontDir, driver, opts);
  await b.start();
  return b;
}

// ── frontend ──

export interface FrontendDriver {
  /**
   * Set up the ring and event channel; returns the keys to publish (`ring-ref`,
   * `event-channel`, `protocol`, …), written in one transaction before Initialised. `backend`
   * reads the backend's features (null: not published, use the default).
   */
  setup(backend: { read(key: string): Promise<string | null> }): Promise<Record<string, string>>;
  /** Device properties the frontend needs (e.g. `sectors`, `info`, `sector-size`); waited for. */
  backendKeys?: readonly string[];
  /** The backend is Connected and published `props`: finish connecting (a throw fails the device). */
  connect?(props: Record<string, string>): Promise<void>;
  /** Tear down what `setup`/`connect` made. */
  disconnect?(): Promise<void>;
}

export interface FrontendOptions extends XenbusEndOptions {
  /** Wait for the backend's InitWait before publishing (default true; false takes blkif.h's shortcut). */
  waitForInitWait?: boolean;
  /** After the backend goes away (Closing, Closed, a restart), start over at Initialising (default true). */
  reconnect?: boolean;
}

export interface FrontendEnd extends XenbusEnd {
  /** How many times the frontend reached Connected. */
  readonly connects: number;
  /** Teardown: Closing, wait (bounded) for the backend to follow, Closed. Stays Closed. */
  close(timeoutMs?: number): Promise<void>;
  /** From Closed, start over: Initialising, and the handshake repeats. */
  reconnect(): Promise<void>;
}

const isAlive = (s: XenbusState): boolean =>
  s === XenbusState.Initialising || s === XenbusState.InitWait || s === XenbusState.Initialised || s === XenbusState.Connected;

class FrontendHandshake extends XenbusEndBase implements FrontendEnd {
  connects = 0;
  private ringUp = false;
  /** A `close()` in progress or done: no automatic reconnect. */
  private closing = false;
  /**
   * The backend was seen alive (not Closing/Closed) since we published. A backend already
   * Closing when we published (a reconnect racing its teardown) is not closing *us*: it will
   * see us Initialised and start over.
   */
  private backendAlive = false;

  constructor(
    client: XsClient,
    dir: string,
    backDir: string,
    private readonly driver: FrontendDriver,
    private readonly opts: FrontendOptions,
  ) {
    super(client, dir, backDir, 'frontend', opts);
  }

  async start(): Promise<void> {
    await this.serial(async () => {
      await this.begin();
      // A frontend left Closed by an earlier life starts over.
      if (this.state === XenbusState.Closed) await this.switchTo(XenbusState.Initialising);
    });
    await this.watchOther();
  }

  async close(timeoutMs = XENBUS_CLOSE_WAIT_MS): Promise<void> {
    await this.serial(async () => {
      this.closing = true;
      await this.teardown();
      if (this.state !== XenbusState.Closed) await this.switchTo(XenbusState.Closing);
    });
    const S = XenbusState;
    try {
      await this.until(() => this.otherState === S.Closing || this.otherState === S.Closed || this.otherState === S.Unknown, 'the backend to close', timeoutMs);
    } catch (e) {
      this.note(e instanceof Error ? e.message : String(e));
    }
    await this.serial(async () => {
      if (this.state !== XenbusState.Closed) await this.switchTo(XenbusState.Closed);
    });
  }

  async reconnect(): Promise<void> {
    await this.serial(async () => {
      this.closing = false;
      this.backendAlive = false;
      if (this.state !== XenbusState.Closed) {
        await this.teardown();
        await this.switchTo(XenbusState.Closed);
      }
      await this.switchTo(XenbusState.Initialising);
    });
    this.kick();
  }

  private async teardown(): Promise<void> {
    if (!this.ringUp) return;
    this.ringUp = false;
    try {
      await this.driver.disconnect?.();
    } catch (e) {
      this.note(`frontend ${this.dir}: disconnect failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** The backend went away under us: close (Linux's `xenbus_frontend_closed`), then start over. */
  private async lost(): Promise<void> {
    await this.teardown();
    await this.switchTo(XenbusState.Closed);
    if (this.opts.reconnect === false || this.closing) return;
    if (await this.switchTo(XenbusState.Initialising)) this.kick();
  }

  protected async evaluate(be: XenbusState): Promise<void> {
    if (this.closing) return;
    const S = XenbusState;
    switch (this.state) {
      case S.Initialising: {
        if (be !== S.InitWait && this.opts.waitForInitWait !== false) return;
        // talk_to_blkback: read features, set up, publish in one transaction, then Initialised.
        const keys = await this.driver.setup({ read: (k) => this.client.tryRead(`${this.otherDir}/${k}`) });
        this.ringUp = true;
        this.backendAlive = isAlive(be);
        await this.client.transaction(async (tx) => {
          for (const [k, v] of Object.entries(keys)) await tx.write(`${this.dir}/${k}`, v);
        });
        if (await this.switchTo(S.Initialised)) this.kick();
        return;
      }
      case S.Initialised: {
        // Our ring is published. A backend that is Closed comes back to it by itself (it sees
        // us Initialised and connects), so we wait; one that is Closing is tearing the device
        // down and waits for us to close (blkfront_closing).
        if (isAlive(be)) this.backendAlive = true;
        else if (be === S.Closing && this.backendAlive) return this.lost();
        if (be !== S.Connected) return;
        const props = await this.gather(this.driver.backendKeys ?? []);
        if (!props) return;
        try {
          await this.driver.connect?.(props);
        } catch (e) {
          this.note(`frontend ${this.dir}: connect failed: ${e instanceof Error ? e.message : String(e)}`);
          await this.teardown();
          await this.switchTo(S.Closing);
          this.closing = true;
          return;
        }
        if (await this.switchTo(S.Connected)) this.connects++;
        return;
      }
      case S.Connected:
        if (be === S.Connected || be === S.Reconfiguring || be === S.Reconfigured) return;
        // Closing, Closed, or a restarted backend seen already back in Initialising/InitWait.
        return this.lost();
      default:
        return;
    }
  }
}

/**
 * Run a frontend's side of the handshake on `frontDir`, watching the backend's `backDir`.
 * Resolves once it watches the backend; the handshake proceeds as the backend moves.
 */
export async function runFrontendHandshake(client: XsClient, dev: { frontDir: string; backDir: string }, driver: FrontendDriver, opts: FrontendOptions = {}): Promise<FrontendEnd> {
  const f = new FrontendHandshake(client, dev.frontDir, dev.backDir, driver, opts);
  await f.start();
  return f;
}

