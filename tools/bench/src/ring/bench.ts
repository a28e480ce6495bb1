/**
 * `ring`: this repository's shared ring against Node's own ways of moving a message between
 * threads, in one run, rounds interleaved to spread the noise of a shared 2-core machine:
 *
 *   (a) msgpack ring   SharedRing + msgpackSlotCodec (64-byte slots, shared structures)
 *   (b) raw ring       SharedRing + rawSlotCodec, the message as a fixed little-endian struct
 *   (c) postMessage    MessagePort between the same two worker threads
 *   (d) piscina        a 1-thread pool; one task = one request answered with a small object
 *
 * Metrics: one-way throughput (bursts; the ring backend answers every request, as Xen rings are
 * 1:1, batching responses behind push-and-check-notify) and ping-pong round-trip latency.
 */
import { once } from 'node:events';
import { MessageChannel, Worker, type TransferListItem } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { Packr } from 'msgpackr';
import { EvtchnDoorbells, SharedRing, MSGPACK_SLOT_HEADER_BYTES } from '@pvsim/ring';
import type { Benchmark, BenchContext, BenchReport, TargetResult } from '../registry.js';
import { fmtRate, fmtRatio, fmtUs, latencySummary, median, ratio, summarize, type LatencySummary, type Summary } from '../stats.js';
import {
  BACK_PORT,
  BACK_WAITER,
  FRONT_PORT,
  FRONT_WAITER,
  makeReq,
  makeRsp,
  RAW_REQ_BYTES,
  RAW_RSP_BYTES,
  SLOT_BYTES,
  STRUCTURES,
  type BlkReq,
  type BlkRsp,
} from './protocol.js';
import { planTotal, type BackResult, type FrontResult, type Plan, type RingShared, type Tuning, type Variant, type WakeStats, type WorkerConfig, type WorkerMessage } from './worker.js';

type VariantId = Variant | 'piscina';
const VARIANTS: readonly VariantId[] = ['msgpack', 'raw', 'port', 'piscina'];
const LABEL: Record<VariantId, string> = {
  msgpack: '(a) ring, msgpack slots',
  raw: '(b) ring, raw struct',
  port: '(c) MessagePort.postMessage',
  piscina: '(d) piscina task (1 thread)',
};

/**
 * Messages per phase and round. Warm-ups are sized for ~0.1–0.2 s each (a fresh worker's JIT and
 * heap need that much before the msgpack path reaches its steady speed), timed phases for
 * ~0.3–0.6 s on the reference machine; ping-pong also stops after `pingBudgetMs`.
 */
const PLANS: Record<VariantId, Plan> = {
  msgpack: { tputWarm: 200_000, tputN: 1_000_000, pingWarm: 5_000, pingN: 20_000, pingBudgetMs: 1_500 },
  raw: { tputWarm: 500_000, tputN: 2_500_000, pingWarm: 5_000, pingN: 20_000, pingBudgetMs: 1_500 },
  port: { tputWarm: 40_000, tputN: 250_000, pingWarm: 500, pingN: 5_000, pingBudgetMs: 1_500 },
  piscina: { tputWarm: 2_000, tputN: 6_000, pingWarm: 300, pingN: 3_000, pingBudgetMs: 1_500 },
};
const QUICK_DIVISOR = 5;
const PAIR_TIMEOUT_MS = 60_000;
const PISCINA_WINDOW = 256;

const workerUrl = new URL('./worker.js', import.meta.url);
const piscinaTaskUrl = new URL('./piscina-task.js', import.meta.url);

interface RoundResult {
  tputPerSec: number;
  latency: LatencySummary;
  tputWake?: { front: WakeStats; back: WakeStats };
  /** Wall-clock breakdown of the round, ms (for spotting where a slow round lost its time). */
  timing: Record<string, number>;
}

/**
 * `--quick` divides the measured counts by 5 but the warm-ups only by 2: a fresh worker's msgpack
 * path needs ~100 k messages to reach its steady speed (1.1 M/s after 1 k, 1.5 M/s after 20 k,
 * 2.0 M/s after 100 k on the reference machine), and a cold measurement would mislead.
 */
function scalePlan(p: Plan, quick: boolean, scale: number): Plan {
  const d = quick ? QUICK_DIVISOR : 1;
  const n = (x: number, floor: number, div = d) => Math.max(floor, Math.round((x * scale) / div));
  return {
    tputWarm: n(p.tputWarm, 100, quick ? 2 : 1),
    tputN: n(p.tputN, 1000),
    pingWarm: n(p.pingWarm, 50, quick ? 2 : 1),
    pingN: n(p.pingN, 200),
    pingBudgetMs: Math.max(100, Math.round((p.pingBudgetMs * Math.min(1, scale)) / (quick ? 3 : 1))),
  };
}

/** Start a worker and collect its messages; `ready` / `result` / `exited` settle from them. */
function spawn(cfg: WorkerConfig, transfer: TransferListItem[]) {
  const worker = new Worker(workerUrl, { workerData: cfg, transferList: transfer });
  let onReady!: () => void;
  let onFail!: (e: unknown) => void;
  const ready = new Promise<void>((res, rej) => {
    onReady = res;
    onFail = rej;
  });
  const result = new Promise<FrontResult | BackResult>((resolve, reject) => {
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'ready') onReady();
      else if (m.type === 'error') reject(new Error(`${cfg.variant} ${cfg.role} worker: ${m.message}`));
      else resolve(m);
    });
    worker.on('error', (e) => reject(new Error(`${cfg.variant} ${cfg.role} worker crashed: ${e.message}`)));
    worker.on('exit', (code) => reject(new Error(`${cfg.variant} ${cfg.role} worker exited (code ${code}) without a result`)));
  });
  const exited = once(worker, 'exit').then(([code]) => code as number);
  // A worker that fails before 'ready' must not leave us waiting for it. (This also marks a
  // rejection of `result` as handled when nobody awaits it any more.)
  result.catch(onFail);
  ready.catch(() => {});
  return { worker, ready, result, exited };
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string, onTimeout: () => Promise<unknown>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void onTimeout().finally(() => reject(new Error(`${what}: no result after ${ms} ms`)));
    }, ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** One round of a two-worker variant: back first (attached and waiting), then front. */
export async function runPair(variant: Variant, plan: Plan, tuning: Tuning, ringOrder: number): Promise<RoundResult> {
  const base = { variant, plan, tuning };
  let backCfg: WorkerConfig;
  let frontCfg: WorkerConfig;
  let backTransfer: TransferListItem[] = [];
  let frontTransfer: TransferListItem[] = [];
  if (variant === 'port') {
    const { port1, port2 } = new MessageChannel();
    frontCfg = { ...base, role: 'front', port: port1 };
    backCfg = { ...base, role: 'back', port: port2 };
    frontTransfer = [port1];
    backTransfer = [port2];
  } else {
    // The toolstack's part: allocate and initialise the ring, create the doorbells, bind ports.
    const sring = SharedRing.allocate(ringOrder, SLOT_BYTES);
    sring.init();
    const db = EvtchnDoorbells.create({ maxPorts: 32, maxWaiters: 2 });
    db.bind(BACK_PORT, BACK_WAITER);
    db.bind(FRONT_PORT, FRONT_WAITER);
    const control = new SharedArrayBuffer(4);
    new Int32Array(control)[0] = planTotal(plan);
    const ring: RingShared = { sab: sring.pages[0]!.buffer as SharedArrayBuffer, order: ringOrder, doorbells: db.sab, control };
    frontCfg = { ...base, role: 'front', ring };
    backCfg = { ...base, role: 'back', ring };
  }
  const tStart = performance.now();
  const back = spawn(backCfg, backTransfer);
  let front: ReturnType<typeof spawn> | undefined;
  const killAll = async () => {
    await Promise.all([back.worker.terminate(), front?.worker.terminate()]);
  };
  try {
    await withTimeout(back.ready, PAIR_TIMEOUT_MS, `${variant} back start`, killAll);
    const tReady = performance.now();
    front = spawn(frontCfg, frontTransfer);
    const [f, b] = (await withTimeout(Promise.all([front.result, back.result]), PAIR_TIMEOUT_MS, `${variant} round`, killAll)) as [
      FrontResult,
      BackResult,
    ];
    if (b.served !== f.sent) throw new Error(`${variant}: back served ${b.served}, front sent ${f.sent}`);
    // Both must leave on their own (no stray handle left open); terminate only as a fallback.
    const tResult = performance.now();
    const codes = await withTimeout(Promise.all([front.exited, back.exited]), 5_000, `${variant} workers exit`, killAll);
    if (codes.some((c) => c !== 0)) throw new Error(`${variant}: workers exited with codes ${codes.join(', ')}`);
    const [pw, pt, ppw, pp] = f.phasesMs;
    const r1 = (x: number) => Math.round(x * 10) / 10;
    return {
      tputPerSec: (f.tputN / f.tputMs) * 1000,
      latency: latencySummary(f.pingMs),
      tputWake: { front: f.tputWake, back: b.tputWake },
      timing: {
        backStart: r1(tReady - tStart),
        frontRun: r1(tResult - tReady),
        tputWarm: r1(pw),
        tput: r1(pt),
        pingWarm: r1(ppw),
        ping: r1(pp),
        exit: r1(performance.now() - tResult),
      },
    };
  } catch (e) {
    await killAll();
    throw e;
  }
}

/** One round of piscina: throughput with a window of tasks in flight, then single round trips. */
export async function runPiscina(plan: Plan): Promise<RoundResult> {
  const pool = new Piscina<BlkReq, BlkRsp>({ filename: piscinaTaskUrl.href, minThreads: 1, maxThreads: 1, idleTimeout: 60_000 });
  try {
    let seq = 0;
    const windowed = (n: number) =>
      new Promise<void>((resolve, reject) => {
        let launched = 0;
        let done = 0;
        const launch = () => {
          const id = seq++;
          launched++;
          pool.run(makeReq(id)).then((r) => {
            if (r.id !== id) return reject(new Error(`piscina: response id ${r.id}, expected ${id}`));
            if (++done === n) resolve();
            else if (launched < n) launch();
          }, reject);
        };
        for (let i = 0; i < Math.min(PISCINA_WINDOW, n); i++) launch();
      });
    const tw = performance.now();
    await windowed(plan.tputWarm);
    const t0 = performance.now();
    await windowed(plan.tputN);
    const tputMs = performance.now() - t0;
    const t1 = performance.now();
    const samples = new Float64Array(plan.pingN);
    let taken = 0;
    let deadline = Infinity;
    for (let i = 0; i < plan.pingWarm + plan.pingN; i++) {
      const id = seq++;
      const t = performance.now();
      if (i === plan.pingWarm) deadline = t + plan.pingBudgetMs;
      else if (t > deadline) break;
      const r = await pool.run(makeReq(id));
      const dt = performance.now() - t;
      if (r.id !== id) throw new Error(`piscina: response id ${r.id}, expected ${id}`);
      if (i >= plan.pingWarm) samples[taken++] = dt;
    }
    const r1 = (x: number) => Math.round(x * 10) / 10;
    const timing = { tputWarm: r1(t0 - tw), tput: r1(tputMs), ping: r1(performance.now() - t1) };
    return { tputPerSec: (plan.tputN / tputMs) * 1000, latency: latencySummary(samples.subarray(0, taken)), timing };
  } finally {
    await pool.destroy();
  }
}

function encodedSizes(): { req: number; rsp: number } {
  // The same Packr setup as msgpackSlotCodec (frozen shared structures), for the notes.
  const p = new Packr({ useRecords: true, structures: STRUCTURES.map((s) => [...s]), maxSharedStructures: STRUCTURES.length, shouldShareStructure: () => false });
  return { req: p.pack(makeReq(1_000_000)).length, rsp: p.pack(makeRsp(1_000_000, 1)).length };
}

interface VariantSummary {
  label: string;
  tput: Summary & { rounds: number[]; vsPostMessage: number };
  latency: {
    rounds: LatencySummary[];
    p50Us: Summary;
    p99Us: Summary;
    p999Us: Summary;
    p50VsPostMessage: number;
  };
  /** Per round: where the wall-clock time went, ms. */
  timingMs: Record<string, number>[];
  wake?: {
    /** Per 1000 requests of the timed throughput phase, medians over rounds. */
    tputPer1k: { frontSleeps: number; backSleeps: number; frontRaises: number; backRaises: number };
  };
}

const per1k = (n: number, msgs: number) => (n / msgs) * 1000;

export const ringBenchmark: Benchmark = {
  name: 'ring',
  description: 'shared ring (msgpack / raw slots) vs MessagePort vs piscina: throughput and ping-pong latency',
  options: {
    spinUs: { description: 'ring waiters spin this long (µs) before Atomics.waitAsync', default: 200, min: 0, integer: true },
    burst: { description: 'front: requests pushed per push-and-check-notify', default: 32, min: 1, integer: true },
    batch: { description: 'back: requests answered per push-and-check-notify', default: 32, min: 1, integer: true },
    order: { description: 'ring order (2^order pages; 64-byte slots: order 0 = 32 slots, 2 = 128)', default: 2, min: 0, max: 4, integer: true },
    scale: { description: 'multiply message counts (e.g. 0.5 for a shorter run)', default: 1, min: 0.01 },
    only: { description: 'bitmask of variants to run: 1 msgpack, 2 raw, 4 postMessage, 8 piscina', default: 15, min: 1, max: 15, integer: true },
  },

  async run(ctx: BenchContext): Promise<BenchReport> {
    const o = ctx.options as { spinUs: number; burst: number; batch: number; order: number; scale: number; only: number };
    const rounds = ctx.rounds ?? (ctx.quick ? 3 : 5);
    const tuning: Tuning = { spinUs: o.spinUs, burst: o.burst, batch: o.batch };
    const variants = VARIANTS.filter((_, i) => o.only & (1 << i));
    const plans = Object.fromEntries(VARIANTS.map((v) => [v, scalePlan(PLANS[v], ctx.quick, o.scale)])) as Record<VariantId, Plan>;
    const results: Record<VariantId, RoundResult[]> = { msgpack: [], raw: [], port: [], piscina: [] };
    const t0 = performance.now();

    for (let round = 1; round <= rounds; round++) {
      const line: string[] = [];
      for (const v of variants) {
        const tv = performance.now();
        const r = v === 'piscina' ? await runPiscina(plans[v]) : await runPair(v, plans[v], tuning, o.order);
        r.timing.wall = Math.round(performance.now() - tv);
        results[v].push(r);
        line.push(`${v} ${fmtRate(r.tputPerSec)} p50 ${fmtUs(r.latency.p50Us)}µs [${r.timing.wall} ms]`);
      }
      ctx.progress(`round ${round}/${rounds} (${((performance.now() - t0) / 1000).toFixed(1)} s): ${line.join(' | ')}`);
    }

    const summaries = {} as Record<VariantId, VariantSummary>;
    for (const v of variants) {
      const rs = results[v];
      const tputRounds = rs.map((r) => r.tputPerSec);
      const s: VariantSummary = {
        label: LABEL[v],
        tput: { ...summarize(tputRounds), rounds: tputRounds, vsPostMessage: Number.NaN },
        latency: {
          rounds: rs.map((r) => r.latency),
          p50Us: summarize(rs.map((r) => r.latency.p50Us)),
          p99Us: summarize(rs.map((r) => r.latency.p99Us)),
          p999Us: summarize(rs.map((r) => r.latency.p999Us)),
          p50VsPostMessage: Number.NaN,
        },
        timingMs: rs.map((r) => r.timing),
      };
      if (rs[0]?.tputWake) {
        const n = plans[v].tputN;
        s.wake = {
          tputPer1k: {
            frontSleeps: median(rs.map((r) => per1k(r.tputWake!.front.sleeps, n))),
            frontRaises: median(rs.map((r) => per1k(r.tputWake!.front.raises, n))),
            backSleeps: median(rs.map((r) => per1k(r.tputWake!.back.sleeps, n))),
            backRaises: median(rs.map((r) => per1k(r.tputWake!.back.raises, n))),
          },
        };
      }
      summaries[v] = s;
    }
    const pm = summaries.port;
    for (const v of variants) {
      const s = summaries[v];
      s.tput.vsPostMessage = pm ? ratio(s.tput.median, pm.tput.median) : Number.NaN;
      s.latency.p50VsPostMessage = pm ? ratio(s.latency.p50Us.median, pm.latency.p50Us.median) : Number.NaN;
    }

    const targets: TargetResult[] = [];
    const target = (name: string, measured: number, comparison: '>=' | '<=', threshold: number) =>
      targets.push({ name, measured, comparison, threshold, pass: Number.isFinite(measured) && (comparison === '>=' ? measured >= threshold : measured <= threshold) });
    const a = summaries.msgpack;
    const b = summaries.raw;
    if (a && pm) target('msgpack ring throughput / postMessage throughput', ratio(a.tput.median, pm.tput.median), '>=', 3);
    if (a && b) target('raw ring throughput / msgpack ring throughput', ratio(b.tput.median, a.tput.median), '<=', 5);
    if (a && pm) target('msgpack ring ping-pong p50 / postMessage p50', ratio(a.latency.p50Us.median, pm.latency.p50Us.median), '<=', 0.2);

    const sizes = encodedSizes();
    const sring = SharedRing.allocate(o.order, SLOT_BYTES);
    const notes = [
      `${rounds} rounds, variants interleaved (${variants.join(', ')}) in each round; each round runs a fresh pair of worker threads (or a fresh piscina pool) with its own warm-up; medians are of per-round values.`,
      `Ring: order ${o.order} (${sring.size} slots of ${SLOT_BYTES} B); front pushes bursts of ≤${o.burst}, back answers every request and pushes responses per ≤${o.batch}; doorbells raised only when push-and-check-notify says so.`,
      `Spin budget: ring waiters spin ≤${o.spinUs} µs on the doorbell generation before Atomics.waitAsync (both sides, both metrics). postMessage and piscina do not spin (event loop / piscina's own Atomics.wait).`,
      `Message: blkif-like {op,id,sector,handle,nr} → {id,op,status}; msgpack with shared structures ${sizes.req} / ${sizes.rsp} B (+${MSGPACK_SLOT_HEADER_BYTES} B length) per request / response; raw structs ${RAW_REQ_BYTES} / ${RAW_RSP_BYTES} B.`,
      `Throughput: ring = requests/s, timed from the first push until every response is back; postMessage = N objects posted in one burst, timed until the consumer's ack of the last; piscina = tasks/s with ${PISCINA_WINDOW} in flight.`,
      `Latency: one request, wait for its response, repeat (after a warm-up; up to ${plans.msgpack.pingN} ring / ${plans.port.pingN} postMessage / ${plans.piscina.pingN} piscina samples or ${plans.msgpack.pingBudgetMs} ms per round); percentiles from an HDR histogram (ns resolution, 3 significant digits) per round.`,
      'The machine is shared and noisy: compare ratios, not absolute values.',
    ];

    const tputRows = variants.map((v) => {
      const s = summaries[v].tput;
      return [LABEL[v], fmtRate(s.min), fmtRate(s.median), fmtRate(s.max), fmtRatio(s.vsPostMessage)];
    });
    const latRows = variants.map((v) => {
      const l = summaries[v].latency;
      return [LABEL[v], fmtUs(l.p50Us.min), fmtUs(l.p50Us.median), fmtUs(l.p50Us.max), fmtUs(l.p99Us.median), fmtUs(l.p999Us.median), fmtRatio(l.p50VsPostMessage)];
    });
    const wakeRows = variants
      .filter((v) => summaries[v].wake)
      .map((v) => {
        const w = summaries[v].wake!.tputPer1k;
        return [LABEL[v], w.frontRaises.toFixed(1), w.frontSleeps.toFixed(2), w.backRaises.toFixed(1), w.backSleeps.toFixed(2)];
      });

    return {
      name: 'ring',
      title: 'moving a blkif-like message between two threads',
      tables: [
        {
          title: `One-way throughput, messages/s (min / median / max of ${rounds} rounds)`,
          head: ['variant', 'min', 'median', 'max', 'median vs (c)'],
          rows: tputRows,
        },
        {
          title: `Ping-pong round trip, µs (p50 min / median / max of ${rounds} rounds; p99, p99.9: median of rounds)`,
          head: ['variant', 'p50 min', 'p50 median', 'p50 max', 'p99', 'p99.9', 'p50 vs (c)'],
          rows: latRows,
        },
        ...(wakeRows.length > 0
          ? [
              {
                title: 'Ring doorbells during the timed throughput phase, per 1000 requests (median of rounds)',
                head: ['variant', 'front raises', 'front sleeps', 'back raises', 'back sleeps'],
                rows: wakeRows,
              },
            ]
          : []),
      ],
      targets,
      notes,
      data: {
        params: { rounds, quick: ctx.quick, ...o, ringSlots: sring.size, slotBytes: SLOT_BYTES, plans: Object.fromEntries(variants.map((v) => [v, plans[v]])) },
        encodedBytes: { msgpackReq: sizes.req, msgpackRsp: sizes.rsp, rawReq: RAW_REQ_BYTES, rawRsp: RAW_RSP_BYTES },
        units: { tput: 'messages/s', latency: 'µs' },
        variants: summaries,
        durationMs: Math.round(performance.now() - t0),
      },
    };
  },
};
