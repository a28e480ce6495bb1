/**
 * One mapping domain of the grant benchmark, in its own thread: its own `Hypervisor` over the
 * shared machine, its own client (acting as `cfg.mapper`), its own event-log channel (or
 * `nullEmitter()` with the log off). Started fresh per round and variant.
 *
 * After 'ready' and the parent's go, each thread warms up A, B and C, then runs the timed phases
 * in step with the other thread (a barrier before each, so both threads are in the same phase
 * at once):
 *
 *   A  one batch of `batch` map ops (GNTMAP_host_map into ballooned gfns), then one batch of
 *      unmaps of those handles; the refs rotate through the thread's granted refs
 *   B  GNTTABOP_copy of 4 KiB, source = the guest's gref, dest = one of the thread's own gfns
 *      (`copyBatch` ops per call), rotating through `copyRefs.length` pairs
 *   C  the floor: `dst.set(src)` between the same two frames' prepared 4 KiB views
 *
 * Each phase is timed per chunk (about `plan.chunkMs`) until `plan.phaseMs` is spent. Every op's
 * status is checked in the loop. Then (untimed) the verification: no mapping held, every granted
 * page mapped once and read through the memory gate equals the guest's pattern, and a fresh
 * grant copy into zeroed frames equals the source.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { DOMID_SELF, GNTCOPY_source_gref, GNTMAP_host_map, GNTST_okay, gntstName } from '@pvsim/abi';
import { EventWriter, nullEmitter, type EventEmitter } from '@pvsim/eventlog';
import { GATE_OK, Hypervisor, type GnttabCopy, type GnttabMapGrantRef, type GnttabUnmapGrantRef } from '@pvsim/hypervisor';
import { RealClock } from '@pvsim/runtime';
import { chunkIters, firstDifference, firstPatternMismatch, PAGE, type PhaseTiming } from './metrics.js';
import { median } from '../stats.js';
import { FULL_WAIT_US, type GrantWorkerConfig, type GrantWorkerResult, type PhaseLog, type Verification, type WorkerReply } from './protocol.js';

/** A loop body: run `n` iterations, return how many ops had a bad status. */
type Body = (n: number) => number;

class Phases {
  bad = 0;
  constructor(private readonly chunkTargetMs: number) {}

  /**
   * Warm-up: chunks of growing size for `ms`; returns the iteration count for a ~chunkTargetMs
   * chunk, from the median per-iteration time of the chunks in the second half (a chunk during
   * which the thread was descheduled must not shrink the chunk size).
   */
  warm(body: Body, ms: number): number {
    let n = 1;
    const late: number[] = [];
    const t0 = performance.now();
    for (;;) {
      const t = performance.now();
      this.bad += body(n);
      const dt = performance.now() - t;
      const spent = performance.now() - t0;
      if (spent > ms / 2) late.push(dt / n);
      if (spent >= ms && late.length >= 3) break;
      if (dt < this.chunkTargetMs) n *= 2;
    }
    return chunkIters(1, median(late), this.chunkTargetMs);
  }

  timed(body: Body, chunk: number, budgetMs: number): PhaseTiming {
    const cap = Math.ceil(budgetMs / this.chunkTargetMs) * 8 + 64;
    const chunkMs = new Float64Array(cap);
    const chunkStartMs = new Float64Array(cap);
    const origin = performance.timeOrigin;
    let chunks = 0;
    let total = 0;
    let iters = 0;
    while (total < budgetMs && chunks < cap) {
      const t = performance.now();
      this.bad += body(chunk);
      const dt = performance.now() - t;
      chunkStartMs[chunks] = origin + t;
      chunkMs[chunks++] = dt;
      total += dt;
      iters += chunk;
    }
    return { iters, ms: total, chunk, chunkMs: chunkMs.slice(0, chunks), chunkStartMs: chunkStartMs.slice(0, chunks) };
  }
}

/** Everyone arrives, then everyone goes on: the counter at `slot` counts arrivals. */
function barrier(sync: Int32Array, slot: number, target: number): void {
  const v = Atomics.add(sync, slot, 1) + 1;
  if (v >= target) {
    Atomics.notify(sync, slot);
    return;
  }
  for (let spins = 0; ; spins++) {
    const cur = Atomics.load(sync, slot);
    if (cur >= target) return;
    if (spins > 1000) Atomics.wait(sync, slot, cur, 20);
  }
}

function run(cfg: GrantWorkerConfig): GrantWorkerResult {
  const hv = new Hypervisor(cfg.spec);
  const writer = cfg.log ? new EventWriter(cfg.log, new RealClock(cfg.log.hub.epochMs), { fullWaitUs: FULL_WAIT_US }) : undefined;
  const events: EventEmitter = writer ?? nullEmitter();
  const c = hv.client(cfg.mapper, events);
  const problems: string[] = [];
  const batch = cfg.batch;

  // ── A: map + unmap batches ──
  const hostGfns = c.invalidGfns(0, batch);
  if (hostGfns.length !== batch) throw new Error(`d${cfg.mapper}: only ${hostGfns.length} ballooned gfns`);
  const mapOps: GnttabMapGrantRef[] = hostGfns.map((g) => ({ hostGfn: g, flags: GNTMAP_host_map, ref: 0, dom: cfg.granter, status: 0, handle: -1, mfn: -1 }));
  const unmapOps: GnttabUnmapGrantRef[] = hostGfns.map((g) => ({ hostGfn: g, handle: -1, status: 0 }));
  const refs = cfg.mapRefs;
  let cursor = 0;
  const mapUnmap: Body = (n) => {
    let bad = 0;
    for (let it = 0; it < n; it++) {
      for (let i = 0; i < batch; i++) {
        mapOps[i]!.ref = refs[cursor]!;
        if (++cursor === refs.length) cursor = 0;
      }
      c.mapGrantRef(mapOps);
      for (let i = 0; i < batch; i++) {
        const m = mapOps[i]!;
        if (m.status !== GNTST_okay) bad++;
        unmapOps[i]!.handle = m.handle!;
      }
      c.unmapGrantRef(unmapOps);
      for (let i = 0; i < batch; i++) if (unmapOps[i]!.status !== GNTST_okay) bad++;
    }
    return bad;
  };

  // ── B: grant copies, C: the floor, over the same frame pairs ──
  const pairs = cfg.copyRefs.length;
  const copyOp = (j: number): GnttabCopy => ({
    source: { ref: cfg.copyRefs[j]!, domid: cfg.granter, offset: 0 },
    dest: { gfn: cfg.dstGfns[j]!, domid: DOMID_SELF, offset: 0 },
    len: PAGE,
    flags: GNTCOPY_source_gref,
    status: 0,
  });
  const copyCalls: GnttabCopy[][] = Array.from({ length: pairs }, (_, k) => Array.from({ length: cfg.copyBatch }, (_, i) => copyOp((k + i) % pairs)));
  let copyCursor = 0;
  const copy: Body = (n) => {
    let bad = 0;
    for (let it = 0; it < n; it++) {
      const ops = copyCalls[copyCursor]!;
      if (++copyCursor === pairs) copyCursor = 0;
      c.copy(ops);
      for (let i = 0; i < ops.length; i++) if (ops[i]!.status !== GNTST_okay) bad++;
    }
    return bad;
  };
  const dstMfns = cfg.dstGfns.map((g) => c.p2mEntry(g));
  const srcViews = cfg.srcMfns.map((m) => hv.s.frame(m));
  const dstViews = dstMfns.map((m) => hv.s.frame(m));
  let floorCursor = 0;
  const floor: Body = (n) => {
    for (let it = 0; it < n; it++) {
      dstViews[floorCursor]!.set(srcViews[floorCursor]!);
      if (++floorCursor === pairs) floorCursor = 0;
    }
    return 0;
  };

  const logMark = () => ({ emitted: writer?.emitted ?? 0, dropped: writer?.dropped ?? 0 });
  const logDelta = (a: { emitted: number; dropped: number }, b: { emitted: number; dropped: number }): PhaseLog => ({
    emitted: b.emitted - a.emitted,
    dropped: b.dropped - a.dropped,
  });

  parentPort!.postMessage({ type: 'ready' } satisfies WorkerReply);
  const sync = new Int32Array(cfg.sync);
  while (Atomics.load(sync, 0) === 0) Atomics.wait(sync, 0, 0, 1000);

  const ph = new Phases(cfg.plan.chunkMs);
  const m0 = logMark();
  const chunkA = ph.warm(mapUnmap, cfg.plan.warmMs);
  const chunkB = ph.warm(copy, cfg.plan.warmMs);
  const chunkC = ph.warm(floor, cfg.plan.warmMs);
  const warmBad = ph.bad;
  if (warmBad > 0) problems.push(`${warmBad} ops with a bad status during the warm-up`);
  const parties = cfg.parties;
  barrier(sync, 1, parties);
  const m1 = logMark();
  const a = ph.timed(mapUnmap, chunkA, cfg.plan.phaseMs);
  const aBad = ph.bad - warmBad;
  const heldAfterA = c.mappingsHeld();
  barrier(sync, 1, 2 * parties);
  const m2 = logMark();
  const b = ph.timed(copy, chunkB, cfg.plan.phaseMs);
  const bBad = ph.bad - warmBad - aBad;
  barrier(sync, 1, 3 * parties);
  const m3 = logMark();
  const cc = ph.timed(floor, chunkC, cfg.plan.phaseMs);
  const m4 = logMark();

  // ── verification (untimed) ──
  if (aBad > 0) problems.push(`A: ${aBad} map/unmap ops with a bad status`);
  if (bBad > 0) problems.push(`B: ${bBad} copy ops with a bad status`);
  if (heldAfterA !== 0) problems.push(`A: ${heldAfterA} mappings held after the phase`);
  // Every granted page, mapped once and read through the gate, is the guest's pattern.
  let mapMismatches = 0;
  const buf = new Uint8Array(PAGE);
  for (let k = 0; k < refs.length; k += batch) {
    const chunk = refs.slice(k, k + batch);
    const ops: GnttabMapGrantRef[] = chunk.map((ref, i) => ({ hostGfn: hostGfns[i]!, flags: GNTMAP_host_map, ref, dom: cfg.granter }));
    c.mapGrantRef(ops);
    for (const [i, op] of ops.entries()) {
      if (op.status !== GNTST_okay) {
        problems.push(`verify: map of d${cfg.granter}/gref ${chunk[i]} → ${gntstName(op.status ?? -99)}`);
        continue;
      }
      if (c.read(op.hostGfn, 0, buf) !== GATE_OK) problems.push(`verify: read through the mapping of gref ${chunk[i]} faulted`);
      else if (firstPatternMismatch(buf, cfg.granter, chunk[i]!) >= 0) mapMismatches++;
    }
    const un: GnttabUnmapGrantRef[] = ops.filter((o) => o.status === GNTST_okay).map((o) => ({ handle: o.handle!, hostGfn: o.hostGfn }));
    c.unmapGrantRef(un);
    for (const u of un) if (u.status !== GNTST_okay) problems.push(`verify: unmap of handle ${u.handle} → ${gntstName(u.status ?? -99)}`);
  }
  if (mapMismatches > 0) problems.push(`verify: ${mapMismatches} mapped pages differ from the guest's data`);
  const mappingsLeft = c.mappingsHeld();
  if (mappingsLeft !== 0) problems.push(`verify: ${mappingsLeft} mappings held at the end`);
  // A fresh grant copy into zeroed frames equals the source, which is still the guest's pattern.
  let copyMismatches = 0;
  for (let j = 0; j < pairs; j++) {
    dstViews[j]!.fill(0);
    const op = copyOp(j);
    c.copy([op]);
    if (op.status !== GNTST_okay) problems.push(`verify: copy of gref ${cfg.copyRefs[j]} → ${gntstName(op.status ?? -99)}`);
    else if (firstDifference(dstViews[j]!, srcViews[j]!) >= 0 || firstPatternMismatch(srcViews[j]!, cfg.granter, cfg.copyRefs[j]!) >= 0) copyMismatches++;
  }
  if (copyMismatches > 0) problems.push(`verify: ${copyMismatches} copied pages differ from their source`);
  const m5 = logMark();

  const verify: Verification = { badStatus: warmBad + aBad + bBad, mappingsLeft, mapMismatches, copyMismatches, problems };
  return {
    type: 'result',
    index: cfg.index,
    a,
    b,
    c: cc,
    chunks: { a: chunkA, b: chunkB, c: chunkC },
    verify,
    log: writer
      ? { total: logDelta({ emitted: 0, dropped: 0 }, m5), warm: logDelta(m0, m1), a: logDelta(m1, m2), b: logDelta(m2, m3), c: logDelta(m3, m4) }
      : undefined,
  };
}

if (parentPort) {
  try {
    const r = run(workerData as GrantWorkerConfig);
    parentPort.postMessage(r satisfies WorkerReply);
  } catch (e) {
    parentPort.postMessage({ type: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) } satisfies WorkerReply);
  }
}
