/**
 * A worker thread of the ring benchmark: the frontend (producer of requests) or the backend
 * (consumer, answering every request) of one variant, for one round. Started fresh per round and
 * variant by bench.ts, so each variant runs monomorphic, JIT-warmed by its own warm-up phase.
 *
 * The front runs four phases on one channel: throughput warm-up, timed throughput, ping-pong
 * warm-up, ping-pong (at most `pingN` round trips or `pingBudgetMs`, whichever comes first).
 * The back serves requests in order, whatever the phase, until the front's final count is
 * reached; its batching behaviour is the same throughout.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { BackRing, EvtchnDoorbells, FrontRing, SharedRing, type EvtchnWaiter } from '@pvsim/ring';
import type { LogChannelSpec } from '@pvsim/eventlog';
import {
  BACK_PORT,
  BACK_WAITER,
  FRONT_PORT,
  FRONT_WAITER,
  makeReq,
  makeRsp,
  msgpackProtocol,
  rawProtocol,
  SLOT_BYTES,
  type BlkReq,
  type BlkRsp,
  type RingProtocol,
} from './protocol.js';

export type Variant = 'msgpack' | 'raw' | 'port';

export interface Plan {
  tputWarm: number;
  tputN: number;
  pingWarm: number;
  /** Most ping-pong samples... */
  pingN: number;
  /** ...and the most time spent collecting them (a slow, noisy moment must not take minutes). */
  pingBudgetMs: number;
}

export interface Tuning {
  /** Bounded spin on the doorbell generation word before `Atomics.waitAsync`, µs. */
  spinUs: number;
  /** Front: most requests pushed before one push-and-check-notify. */
  burst: number;
  /** Back: most requests answered before one push-and-check-notify of responses. */
  batch: number;
}

export interface RingShared {
  sab: SharedArrayBuffer;
  order: number;
  doorbells: SharedArrayBuffer;
  /** Int32Array[1]: how many requests the back must serve (lowered by the front when it stops early). */
  control: SharedArrayBuffer;
}

export interface WorkerConfig {
  role: 'front' | 'back';
  variant: Variant;
  plan: Plan;
  tuning: Tuning;
  ring?: RingShared;
  port?: MessagePort;
  /**
   * Optional (the eventlog benchmark): an event-log channel this end emits on, one event per
   * request consumed (back) or response taken (front). msgpack variant only. Absent: the worker
   * does exactly what it does for the ring benchmark and never loads the event log.
   */
  log?: LogChannelSpec;
}

/** Events this end emitted / dropped; present only when the config had a `log` channel. */
export interface LogCounts {
  emitted: number;
  dropped: number;
}

/** Wake-up accounting, to see whether anybody is woken needlessly. */
export interface WakeStats {
  /** `raise()` calls made (push-and-check-notify said the peer asked). */
  raises: number;
  /** Waits satisfied during the bounded spin. */
  spinWakes: number;
  /** Waits that went to sleep in `Atomics.waitAsync`. */
  sleeps: number;
}

export interface FrontResult {
  type: 'result';
  role: 'front';
  tputMs: number;
  tputN: number;
  /** Round trips of the measured ping-pong phase, in ms. */
  pingMs: Float64Array;
  /** Requests sent in all phases. */
  sent: number;
  tputWake: WakeStats;
  pingWake: WakeStats;
  /** Wall time of each phase, ms: throughput warm-up, throughput, ping warm-up, ping-pong. */
  phasesMs: [number, number, number, number];
  sink: number;
  log?: LogCounts;
}

export interface BackResult {
  type: 'result';
  role: 'back';
  served: number;
  /** Whole run. */
  wake: WakeStats;
  /** From the end of the throughput warm-up to the end of the timed throughput phase (batch granularity). */
  tputWake: WakeStats;
  sink: number;
  log?: LogCounts;
}

export type WorkerMessage = FrontResult | BackResult | { type: 'ready' } | { type: 'error'; message: string };

const noop = () => {};
const newWake = (): WakeStats => ({ raises: 0, spinWakes: 0, sleeps: 0 });
export const planTotal = (p: Plan) => p.tputWarm + p.tputN + p.pingWarm + p.pingN;

function pagesOf(sab: SharedArrayBuffer, order: number): Uint8Array[] {
  return Array.from({ length: 1 << order }, (_, i) => new Uint8Array(sab, i * 4096, 4096));
}

/** Wait for a doorbell after `gen` was read; counts how the wait ended. */
async function doorbellWait(w: EvtchnWaiter, gen: number, spinUs: number, ws: WakeStats): Promise<void> {
  const r = w.wait(gen, { spinUs });
  if (typeof r === 'string') {
    ws.spinWakes++;
    return;
  }
  ws.sleeps++;
  await r;
}

function unwrap<T>(r: { ok: true; value: T } | { ok: false; error: unknown }, what: string): T {
  if (!r.ok) throw new Error(`${what}: ${JSON.stringify(r.error)}`);
  return r.value;
}

// ---------------------------------------------------------------------------------------------
// Ring frontend

class RingFront<Req, Rsp> {
  seq = 0;
  readonly fr: FrontRing<Req, Rsp>;
  readonly waiter: EvtchnWaiter;
  readonly db: EvtchnDoorbells;

  constructor(
    r: RingShared,
    private readonly proto: RingProtocol<Req, Rsp>,
  ) {
    const sring = new SharedRing(pagesOf(r.sab, r.order), SLOT_BYTES);
    this.fr = new FrontRing(sring, proto.reqCodec, proto.rspCodec);
    this.db = EvtchnDoorbells.attach(r.doorbells);
    this.waiter = this.db.waiter(FRONT_WAITER);
  }

  private takeResponses(expected: number): number {
    const { fr, proto } = this;
    let got = 0;
    for (let avail = fr.unconsumedResponses(); avail > 0; avail = fr.unconsumedResponses()) {
      for (; avail > 0; avail--) {
        const id = proto.readRsp(unwrap(fr.takeResponse(), 'takeResponse'));
        if (id !== expected + got) throw new Error(`response id ${id}, expected ${expected + got}`);
        got++;
      }
    }
    return got;
  }

  /** Stream `n` requests in bursts; resolves when all `n` responses are back. */
  async stream(n: number, tuning: Tuning, ws: WakeStats): Promise<void> {
    const { fr, proto, waiter, db } = this;
    const first = this.seq;
    let sent = 0;
    let got = 0;
    while (got < n) {
      let k = Math.min(tuning.burst, fr.freeRequests(), n - sent);
      if (k > 0) {
        sent += k;
        for (; k > 0; k--) unwrap(fr.pushRequest(proto.encodeReq(this.seq++)), 'pushRequest');
        if (fr.pushRequestsAndCheckNotify()) {
          ws.raises++;
          db.raise(BACK_PORT);
        }
      }
      got += this.takeResponses(first + got);
      if (got === n) break;
      if (sent < n && fr.freeRequests() > 0) continue;
      // Ring full or everything sent: wait for the back. Generation before the final check.
      const gen = waiter.generation();
      waiter.takePending(noop);
      if (fr.finalCheckForResponses()) continue;
      await doorbellWait(waiter, gen, tuning.spinUs, ws);
    }
  }

  /** Up to `n` round trips of one request each, within `budgetMs`; returns their durations (ms). */
  async pingPong(n: number, budgetMs: number, tuning: Tuning, ws: WakeStats): Promise<Float64Array> {
    const { fr, proto, waiter, db } = this;
    const out = new Float64Array(n);
    const deadline = performance.now() + budgetMs;
    let i = 0;
    for (; i < n; i++) {
      const id = this.seq;
      const t0 = performance.now();
      if (t0 > deadline) break;
      unwrap(fr.pushRequest(proto.encodeReq(this.seq++)), 'pushRequest');
      if (fr.pushRequestsAndCheckNotify()) {
        ws.raises++;
        db.raise(BACK_PORT);
      }
      for (;;) {
        const gen = waiter.generation();
        waiter.takePending(noop);
        if (fr.unconsumedResponses() > 0 || fr.finalCheckForResponses()) break;
        await doorbellWait(waiter, gen, tuning.spinUs, ws);
      }
      const got = proto.readRsp(unwrap(fr.takeResponse(), 'takeResponse'));
      out[i] = performance.now() - t0;
      if (got !== id) throw new Error(`response id ${got}, expected ${id}`);
    }
    return i === n ? out : out.slice(0, i);
  }
}

async function ringFront<Req, Rsp>(cfg: WorkerConfig, proto: RingProtocol<Req, Rsp>): Promise<FrontResult> {
  const { plan, tuning } = cfg;
  const r = cfg.ring!;
  const f = new RingFront(r, proto);
  const tputWake = newWake();
  const tw = performance.now();
  await f.stream(plan.tputWarm, tuning, newWake());
  const t0 = performance.now();
  await f.stream(plan.tputN, tuning, tputWake);
  const t1 = performance.now();
  await f.pingPong(plan.pingWarm, Infinity, tuning, newWake());
  const t2 = performance.now();
  const pingWake = newWake();
  const pingMs = await f.pingPong(plan.pingN, plan.pingBudgetMs, tuning, pingWake);
  if (f.seq !== planTotal(plan)) {
    // Stopped early: tell the back how many it gets, then ring its bell so it looks.
    Atomics.store(new Int32Array(r.control), 0, f.seq);
    f.db.raise(BACK_PORT);
  }
  const phasesMs: FrontResult['phasesMs'] = [t0 - tw, t1 - t0, t2 - t1, performance.now() - t2];
  return { type: 'result', role: 'front', tputMs: t1 - t0, tputN: plan.tputN, pingMs, sent: f.seq, tputWake, pingWake, phasesMs, sink: proto.sink };
}

// ---------------------------------------------------------------------------------------------
// Ring backend

async function ringBack<Req, Rsp>(cfg: WorkerConfig, proto: RingProtocol<Req, Rsp>): Promise<BackResult> {
  const { plan, tuning } = cfg;
  const r = cfg.ring!;
  const sring = new SharedRing(pagesOf(r.sab, r.order), SLOT_BYTES);
  const br = unwrap(BackRing.attach(sring, proto.reqCodec, proto.rspCodec), 'BackRing.attach');
  const db = EvtchnDoorbells.attach(r.doorbells);
  const waiter = db.waiter(BACK_WAITER);
  const control = new Int32Array(r.control);
  const ws = newWake();
  const maxBatch = tuning.batch;
  parentPort!.postMessage({ type: 'ready' } satisfies WorkerMessage);
  let served = 0;
  // Snapshots of the counters at the throughput phase's boundaries.
  const marks = [plan.tputWarm, plan.tputWarm + plan.tputN];
  const snaps: WakeStats[] = [];
  for (;;) {
    // Generation first, then the work, then the final check: a raise that lands anywhere after
    // this read bumps the generation and the wait below returns at once (no lost wake-up).
    const gen = waiter.generation();
    waiter.takePending(noop);
    for (let n = br.unconsumedRequests(); n > 0; n = br.unconsumedRequests()) {
      if (n > maxBatch) n = maxBatch;
      for (; n > 0; n--) {
        const id = proto.readReq(unwrap(br.takeRequest(), 'takeRequest'));
        if (id !== served) throw new Error(`request id ${id}, expected ${served}`);
        served++;
        unwrap(br.pushResponse(proto.encodeRsp(id)), 'pushResponse');
      }
      if (br.pushResponsesAndCheckNotify()) {
        ws.raises++;
        db.raise(FRONT_PORT);
      }
      while (snaps.length < marks.length && served >= marks[snaps.length]!) snaps.push({ ...ws });
    }
    if (served >= Atomics.load(control, 0)) break;
    if (br.finalCheckForRequests()) continue;
    await doorbellWait(waiter, gen, tuning.spinUs, ws);
  }
  const [s0, s1] = [snaps[0] ?? newWake(), snaps[1] ?? ws];
  const tputWake = { raises: s1.raises - s0.raises, spinWakes: s1.spinWakes - s0.spinWakes, sleeps: s1.sleeps - s0.sleeps };
  return { type: 'result', role: 'back', served, wake: ws, tputWake, sink: proto.sink };
}

// ---------------------------------------------------------------------------------------------
// MessagePort

type PortMsg = { ack?: number; id?: number };

async function portFront(cfg: WorkerConfig): Promise<FrontResult> {
  const { plan } = cfg;
  const port = cfg.port!;
  let handler: (m: PortMsg) => void = noop;
  port.on('message', (m: PortMsg) => handler(m));
  let seq = 0;
  // Post `n` objects in one burst; the back acks the last one.
  const burstAcked = (n: number): Promise<void> =>
    new Promise((resolve) => {
      const want = seq + n;
      handler = (m) => {
        if (m.ack === want) resolve();
      };
      for (let i = 0; i < n; i++) port.postMessage(makeReq(seq++));
    });
  const tw = performance.now();
  await burstAcked(plan.tputWarm);
  const t0 = performance.now();
  await burstAcked(plan.tputN);
  const t1 = performance.now();
  const samples = new Float64Array(plan.pingN);
  let taken = 0;
  await new Promise<void>((resolve, reject) => {
    let i = 0;
    let t = 0;
    let deadline = Infinity;
    handler = (m) => {
      const now = performance.now();
      if (m.id !== seq - 1) return reject(new Error(`response id ${m.id}, expected ${seq - 1}`));
      if (i >= plan.pingWarm) samples[taken++] = now - t;
      else if (i === plan.pingWarm - 1) deadline = now + plan.pingBudgetMs;
      i++;
      if (taken === plan.pingN || now > deadline) return resolve();
      t = performance.now();
      port.postMessage(makeReq(seq++));
    };
    if (plan.pingWarm === 0) deadline = performance.now() + plan.pingBudgetMs;
    t = performance.now();
    port.postMessage(makeReq(seq++));
  });
  const t3 = performance.now();
  // The back closes the channel once it has served everything; wait for that.
  const closed = new Promise((resolve) => port.once('close', resolve));
  if (seq !== planTotal(plan)) port.postMessage({ stop: seq });
  await closed;
  const none = newWake();
  // The ping warm-up is not timed separately here: it is part of the last phase.
  return {
    type: 'result',
    role: 'front',
    tputMs: t1 - t0,
    tputN: plan.tputN,
    pingMs: taken === plan.pingN ? samples : samples.slice(0, taken),
    sent: seq,
    tputWake: none,
    pingWake: none,
    phasesMs: [t0 - tw, t1 - t0, 0, t3 - t1],
    sink: 0,
  };
}

async function portBack(cfg: WorkerConfig): Promise<BackResult> {
  const { plan } = cfg;
  const port = cfg.port!;
  const ackAt1 = plan.tputWarm;
  const ackAt2 = plan.tputWarm + plan.tputN;
  const total = planTotal(plan);
  let served = 0;
  let sink = 0;
  const done = new Promise<void>((resolve, reject) => {
    const finish = () => {
      port.close();
      resolve();
    };
    port.on('message', (m: BlkReq | { stop: number }) => {
      if ('stop' in m) {
        if (m.stop !== served) reject(new Error(`front stopped at ${m.stop}, back served ${served}`));
        return finish();
      }
      if (m.id !== served) return reject(new Error(`request id ${m.id}, expected ${served}`));
      sink += m.op + m.sector + m.handle + m.nr;
      served++;
      if (served === ackAt1 || served === ackAt2) port.postMessage({ ack: served });
      else if (served > ackAt2) port.postMessage(makeRsp(m.id, m.op) satisfies BlkRsp);
      if (served === total) finish();
    });
  });
  parentPort!.postMessage({ type: 'ready' } satisfies WorkerMessage);
  await done;
  return { type: 'result', role: 'back', served, wake: newWake(), tputWake: newWake(), sink };
}

// ---------------------------------------------------------------------------------------------
// With an event log (the eventlog benchmark)

async function runWithLog(cfg: WorkerConfig, p: RingProtocol<BlkReq, BlkRsp>, spec: LogChannelSpec): Promise<FrontResult | BackResult> {
  const { withEventLog } = await import('../eventlog/ring-hook.js');
  const hook = withEventLog(p, cfg.role, spec);
  const r = cfg.role === 'front' ? await ringFront(cfg, hook.proto) : await ringBack(cfg, hook.proto);
  return { ...r, log: hook.counts() };
}

// ---------------------------------------------------------------------------------------------

function run(cfg: WorkerConfig): Promise<FrontResult | BackResult> {
  if (cfg.log && cfg.variant !== 'msgpack') return Promise.reject(new Error(`a log channel is supported with the msgpack variant only, not ${cfg.variant}`));
  if (cfg.variant === 'port') return cfg.role === 'front' ? portFront(cfg) : portBack(cfg);
  // Separate call sites per protocol; each worker runs one protocol only.
  if (cfg.variant === 'msgpack') {
    const p = msgpackProtocol();
    if (cfg.log) return runWithLog(cfg, p, cfg.log);
    return cfg.role === 'front' ? ringFront(cfg, p) : ringBack(cfg, p);
  }
  const p = rawProtocol();
  return cfg.role === 'front' ? ringFront(cfg, p) : ringBack(cfg, p);
}

if (parentPort) {
  const cfg = workerData as WorkerConfig;
  // A pending Atomics.waitAsync does not keep a worker alive: hold the event loop open with a
  // ref'ed timer while we may wait, and drop it when done so the worker exits by itself.
  const keepAlive = setInterval(noop, 1 << 30);
  run(cfg)
    .then(
      (res) => {
        const transfer = res.role === 'front' ? [res.pingMs.buffer as ArrayBuffer] : [];
        parentPort!.postMessage(res satisfies WorkerMessage, transfer);
      },
      (e: unknown) => {
        parentPort!.postMessage({ type: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) } satisfies WorkerMessage);
      },
    )
    .finally(() => clearInterval(keepAlive));
}
