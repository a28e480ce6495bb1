/**
 * One (round, variant) of `blk` on threads, the way `pvsim up` runs: `launch()` a topology with
 * one guest and one memory disk (its own run directory, log on or off), then a load job in the
 * guest's thread (blkfront there; blkback in dom0's thread; hypercalls on the calling thread;
 * the sink in its own), a read-back of every written block, and a clean shutdown. Returns the
 * same shape as the one-thread variant, plus each thread's busy share during the job.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openLog, readEventBatches } from '@pvsim/eventlog';
import { launch, makeJob, parseTopology, formatTopologyErrors, type ThreadSample } from '@pvsim/launcher';
import type { Variant } from './load.js';
import type { RunParams, VariantResult } from './run.js';

export interface ThreadBusy {
  name: string;
  /** Share of the job's wall time the thread's event loop was busy (0..1). */
  busy: number;
}

export interface ThreadVariantResult extends VariantResult {
  threads: ThreadBusy[];
  /**
   * Log on: µs from an `evtchn.send` of the block path to the receiving thread's next event (the
   * notification's wake-up as the log sees it: futex wake + scheduling + the upcall), percentiles.
   */
  wakeUs: { n: number; p50: number; p90: number; p99: number } | null;
  /** Process CPU time during the job / its wall time (cores in use, at most the machine's). */
  cores: number;
}

const GUEST = 'guest';

export function topologyYaml(policy: string, log: boolean, diskMiB: number, ringOrder: number): string {
  return [
    'run:',
    '  seed: 1',
    `  memory: ${Math.max(256, 2 * diskMiB)}MiB`,
    `  log: ${log}`,
    'dom0:',
    '  memory: 64MiB',
    '  blkback:',
    `    unmap-policy: ${policy}`,
    `    max-ring-page-order: ${ringOrder}`,
    'domains:',
    `  - name: ${GUEST}`,
    '    memory: 64MiB',
    '    vcpus: 1',
    '    disks:',
    `      - "target=mem:${diskMiB}MiB, vdev=xvda, access=rw"`,
    '',
  ].join('\n');
}

const busyShare = (a: ThreadSample[], b: ThreadSample[]): ThreadBusy[] =>
  b.map((x) => {
    const y = a.find((s) => s.name === x.name);
    const idle = x.idle - (y?.idle ?? 0);
    const active = x.active - (y?.active ?? 0);
    return { name: x.name, busy: idle + active > 0 ? active / (idle + active) : 0 };
  });

export async function runThreadVariant(v: Variant, p: RunParams & { ringOrder: number }, round: number): Promise<ThreadVariantResult> {
  const tWall = performance.now();
  const problems: string[] = [];
  const dir = await mkdtemp(join(tmpdir(), 'pvsim-bench-blk-threads-'));
  try {
    const file = join(dir, 'bench.yaml');
    const text = topologyYaml(v.policy, v.log === 'on', p.diskMiB, p.ringOrder);
    await writeFile(file, text);
    const parsed = parseTopology(text, file);
    if (!parsed.ok) throw new Error(formatTopologyErrors(parsed.errors));
    const run = await launch(parsed.topology, { runDir: join(dir, 'run') });
    const setupMs = performance.now() - tWall;
    let res;
    let threads: ThreadBusy[] = [];
    let cores = Number.NaN;
    try {
      const jr = makeJob({
        name: `${v.policy}-${v.log}-r${round}`,
        rw: 'randrw',
        bs: 4096,
        iodepth: p.qd,
        rwmixwrite: p.writePct,
        runtimeMs: p.measureMs,
        rampMs: p.warmMs,
        seed: p.seed + round * 7919 + ['sync', 'replace', 'async'].indexOf(v.policy) * 131 + (v.log === 'on' ? 17 : 0),
        verify: true,
        assumeZeroed: true,
        readBack: true,
        fullCheckEvery: p.fullCheckEvery,
      });
      if (!jr.ok) throw new Error(jr.error);
      const t0 = run.threads();
      const c0 = process.cpuUsage();
      const w0 = performance.now();
      const loads = await run.load(GUEST, jr.job);
      const wallMs = performance.now() - w0;
      const c = process.cpuUsage(c0);
      cores = (c.user + c.system) / 1000 / wallMs;
      threads = busyShare(t0, run.threads());
      res = loads[0]!.result;
    } finally {
      await run.shutdown().catch((e: unknown) => problems.push(`shutdown: ${e instanceof Error ? e.message : String(e)}`));
    }
    if (res.error) problems.push(`job: ${res.error}`);
    if (res.verify.mismatches > 0) problems.push(`${res.verify.mismatches} reads returned other data than last written`);
    const rb = res.verify.readBack;
    if (!rb) problems.push('no read-back pass');
    else if (rb.mismatches > 0) problems.push(`${rb.mismatches} of ${rb.blocks} blocks read back differ from their last write`);
    if (res.lat.count === 0) problems.push('no I/O completed in the timed window');

    // The log: events per I/O, and the memory contract (no mem.fault / mem.leak under async).
    let eventsPerIo = Number.NaN;
    let memFault = 0;
    let memLeak = 0;
    let logStats: VariantResult['logStats'];
    let wakeUs: ThreadVariantResult['wakeUs'] = null;
    if (run.logDir) {
      const info = await openLog(run.logDir);
      let records = 0;
      let dropped = 0;
      let gaps = 0;
      // Wake-ups: each evtchn.send of the guest or dom0 thread, then the first block-path event of
      // another thread after it. Events arrive in seq order, which is the order of the changes.
      const pendingSend = new Map<number, number>(); // sender thread → ts of its oldest unanswered send
      const wakes: number[] = [];
      for await (const batch of readEventBatches(info)) {
        records += batch.length;
        for (const e of batch) {
          if (e.kind === 'evtchn.send') {
            if (!pendingSend.has(e.thread)) pendingSend.set(e.thread, e.tsNs);
          } else if (e.kind.startsWith('blk.') && pendingSend.size > 0) {
            for (const [th, ts] of pendingSend) {
              if (th !== e.thread) {
                wakes.push((e.tsNs - ts) / 1000);
                pendingSend.delete(th);
              }
            }
          }
          if (e.kind === 'mem.fault') memFault++;
          else if (e.kind === 'mem.leak') memLeak++;
          else if (e.kind === 'log.dropped') dropped += Number((e.payload as { count?: number }).count ?? 1);
          else if (e.kind === 'log.gap') gaps++;
        }
      }
      eventsPerIo = records / Math.max(1, res.total + (rb?.blocks ?? 0));
      if (wakes.length > 0) {
        wakes.sort((a, b) => a - b);
        const q = (x: number) => wakes[Math.min(wakes.length - 1, Math.floor(x * wakes.length))]!;
        wakeUs = { n: wakes.length, p50: q(0.5), p90: q(0.9), p99: q(0.99) };
      }
      if (gaps > 0) problems.push(`log: ${gaps} gaps`);
      logStats = { emitted: records + dropped, dropped, records, closeMs: Number.NaN };
      if (v.policy === 'async' && (memFault > 0 || memLeak > 0)) problems.push(`async: ${memFault} mem.fault, ${memLeak} mem.leak`);
    }
    return {
      ...v,
      iops: res.iops,
      lat: { count: res.lat.count, minUs: res.lat.minUs, meanUs: res.lat.meanUs, p50Us: res.lat.p50Us, p99Us: res.lat.p99Us, p999Us: res.lat.p999Us, maxUs: res.lat.maxUs },
      measured: res.ios,
      total: res.total,
      reads: res.reads,
      writes: res.writes,
      readsChecked: res.verify.checked,
      readsFullChecked: res.verify.fullChecked,
      readMismatches: res.verify.mismatches,
      diskBlocksChecked: rb?.blocks ?? 0,
      diskMismatches: rb?.mismatches ?? 0,
      ioErrors: res.error ? 1 : 0,
      memFault,
      memLeak,
      eventsPerIo,
      logStats,
      setupMs,
      wallMs: performance.now() - tWall,
      problems,
      threads,
      cores,
      wakeUs,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
