/**
 * The machine of one round, laid out in the main thread: dom0 (privileged) and a driver domain
 * as the two mapping domains, two guests granting them pages, each granted page filled with a
 * pattern that names (guest, ref). Then one round: the two worker threads, the log on or off,
 * and the checks of the machine's state once they are gone.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GNTTAB_NR_RESERVED_ENTRIES, GTF_reading, GTF_writing } from '@pvsim/abi';
import { EventWriter, nullEmitter, startSinkWorker, type EventEmitter, type SinkStats, type SinkWorkerHandle } from '@pvsim/eventlog';
import { A_PIN, A_WORDS, D_MAPS, Hypervisor, P2M_FOREIGN, P2M_INVALID, createHypervisorSpec, type HypervisorSpec } from '@pvsim/hypervisor';
import { RealClock } from '@pvsim/runtime';
import { accountEvents, type Accounting } from '../eventlog/account.js';
import { spawnWorker, withTimeout, type Spawned } from '../eventlog/spawn.js';
import { fillPattern, PAGE, type Plan } from './metrics.js';
import type { GrantWorkerConfig, GrantWorkerResult } from './protocol.js';

const workerUrl = new URL('./worker.js', import.meta.url);
const TIMEOUT_MS = 60_000;

export interface MachineOptions {
  /** Grants each guest gives each mapping domain it serves. */
  grants: number;
  batch: number;
  copyFrames: number;
  copyBatch: number;
  /** Both threads use guest 1's grants (contending on its lock) instead of one guest each. */
  shared: boolean;
  logOrder: number;
}

/** Own pages of the mapping domains (copy destinations live at gfns 0..copyFrames-1). */
const MAPPER_PAGES = 64;
export const DOM0 = 0;
export const GUEST1 = 1;
export const GUEST2 = 2;
export const DRIVER = 3;

export interface ThreadSetup {
  label: string;
  mapper: number;
  granter: number;
  mapRefs: number[];
  copyRefs: number[];
  dstGfns: number[];
  srcMfns: number[];
}

export interface Machine {
  spec: HypervisorSpec;
  hv: Hypervisor;
  threads: [ThreadSetup, ThreadSetup];
}

export function buildMachine(o: MachineOptions, events: EventEmitter): Machine {
  const perGuest = o.shared ? 2 * o.grants : o.grants;
  const guestPages = perGuest;
  const spec = createHypervisorSpec({
    frames: 2 * MAPPER_PAGES + 2 * guestPages + 64,
    maxDomains: 8,
    gfnsPerDomain: Math.max(1024, guestPages + 64),
    grantEntries: GNTTAB_NR_RESERVED_ENTRIES + perGuest + 8,
    maptrackEntries: Math.max(64, o.batch * 2),
    evtchnPorts: 32,
  });
  const hv = new Hypervisor(spec);
  const ok = (what: string, r: number) => {
    if (r < 0) throw new Error(`setup: ${what} failed (${r})`);
    return r;
  };
  ok('dom0 create', hv.toolstack(events).domainCreate({ domid: DOM0, name: 'dom0', memoryPages: MAPPER_PAGES, privileged: true }));
  const ts = hv.client(DOM0, events);
  if (ok('guest1 create', ts.domainCreate({ name: 'guest1', memoryPages: guestPages })) !== GUEST1) throw new Error('guest1 is not d1');
  if (ok('guest2 create', ts.domainCreate({ name: 'guest2', memoryPages: guestPages })) !== GUEST2) throw new Error('guest2 is not d2');
  if (ok('driver domain create', ts.domainCreate({ name: 'drvdom', memoryPages: MAPPER_PAGES })) !== DRIVER) throw new Error('drvdom is not d3');

  const used = new Map<number, number>();
  const page = new Uint8Array(PAGE);
  const grantTo = (label: string, mapper: number, granter: number): ThreadSetup => {
    const g = hv.client(granter, events);
    const slot = used.get(granter) ?? 0;
    used.set(granter, slot + 1);
    const mapRefs: number[] = [];
    const srcMfnOf = new Map<number, number>();
    for (let i = 0; i < o.grants; i++) {
      const gfn = slot * o.grants + i;
      const ref = GNTTAB_NR_RESERVED_ENTRIES + gfn;
      fillPattern(page, granter, ref);
      ok(`d${granter} write gfn ${gfn}`, g.write(gfn, 0, page));
      ok(`d${granter} grant ref ${ref} to d${mapper}`, g.grantForeignAccess(ref, mapper, gfn, false));
      mapRefs.push(ref);
      srcMfnOf.set(ref, g.p2mEntry(gfn));
    }
    const copyRefs = mapRefs.slice(0, o.copyFrames);
    const dstGfns = copyRefs.map((_, j) => j);
    return { label, mapper, granter, mapRefs, copyRefs, dstGfns, srcMfns: copyRefs.map((r) => srcMfnOf.get(r)!) };
  };
  const t0 = grantTo('dom0 (d0)', DOM0, GUEST1);
  const t1 = grantTo('driver domain (d3)', DRIVER, o.shared ? GUEST1 : GUEST2);
  return { spec, hv, threads: [t0, t1] };
}

export interface MachineCheck {
  problems: string[];
  /** Grant entries (of all threads' granted refs) still GTF_reading/GTF_writing, or pinned in the active table. */
  flagged: number;
  pinned: number;
}

/** After the threads are gone: no pin, no GTF_reading/writing, no frame mapped, no foreign p2m entry. */
export function checkMachine(m: Machine): MachineCheck {
  const s = m.hv.s;
  const problems: string[] = [];
  let flaggedAll = 0;
  let pinnedAll = 0;
  const ge = s.c.grantEntries;
  for (const t of m.threads) {
    const held = Atomics.load(s.domains, s.dw(t.mapper, D_MAPS));
    if (held !== 0) problems.push(`${t.label}: ${held} mappings held`);
    let flagged = 0;
    let pinned = 0;
    let framesMapped = 0;
    for (const ref of t.mapRefs) {
      const w0 = Atomics.load(s.grant, (t.granter * ge + ref) * 2);
      if (w0 & (GTF_reading | GTF_writing)) flagged++;
      if (Atomics.load(s.active, (t.granter * ge + ref) * A_WORDS + A_PIN) !== 0) pinned++;
    }
    for (const mfn of t.srcMfns) if (Atomics.load(s.frameMaps, mfn) !== 0) framesMapped++;
    let foreign = 0;
    for (let g = 0; g < s.c.gfnsPerDomain; g++) {
      const e = Atomics.load(s.p2m, t.mapper * s.c.gfnsPerDomain + g);
      if (e !== P2M_INVALID && e & P2M_FOREIGN) foreign++;
    }
    flaggedAll += flagged;
    pinnedAll += pinned;
    if (flagged) problems.push(`${t.label}: ${flagged} grant entries of d${t.granter} still GTF_reading/GTF_writing`);
    if (pinned) problems.push(`${t.label}: ${pinned} active entries of d${t.granter} still pinned`);
    if (framesMapped) problems.push(`${t.label}: ${framesMapped} source frames still counted as mapped`);
    if (foreign) problems.push(`${t.label}: ${foreign} foreign p2m entries left in d${t.mapper}`);
  }
  return { problems, flagged: flaggedAll, pinned: pinnedAll };
}

export interface GrantRound {
  log: boolean;
  threads: GrantWorkerResult[];
  /** Checks of the machine after the threads left, plus the threads' own problems. */
  problems: string[];
  machine: MachineCheck;
  events?: { emitted: number; dropped: number; stats: SinkStats; accounting: Accounting; closeMs: number };
  wallMs: number;
}

export async function runRound(withLog: boolean, o: MachineOptions, plan: Plan): Promise<GrantRound> {
  const tStart = performance.now();
  let dir: string | undefined;
  let sink: SinkWorkerHandle | undefined;
  const workers: Spawned<GrantWorkerResult>[] = [];
  const killAll = async () => {
    await Promise.all(workers.map((w) => w.worker.terminate()));
  };
  try {
    let events: EventEmitter = nullEmitter();
    let toolstackWriter: EventWriter | undefined;
    if (withLog) {
      dir = await mkdtemp(join(tmpdir(), 'pvsim-bench-grant-'));
      sink = await startSinkWorker({ dir, header: { runId: `bench-grant-${process.pid}-${Date.now()}`, meta: { bench: 'grant', ...o } } });
      toolstackWriter = new EventWriter(await sink.channel('toolstack', DOM0, o.logOrder), new RealClock(sink.hub.epochMs));
      events = toolstackWriter;
    }
    const m = buildMachine(o, events);
    const sync = new SharedArrayBuffer(8);
    for (const [index, t] of m.threads.entries()) {
      const cfg: GrantWorkerConfig = {
        index,
        spec: m.spec,
        mapper: t.mapper,
        granter: t.granter,
        mapRefs: t.mapRefs,
        batch: o.batch,
        copyRefs: t.copyRefs,
        dstGfns: t.dstGfns,
        srcMfns: t.srcMfns,
        copyBatch: o.copyBatch,
        plan,
        sync,
        parties: m.threads.length,
      };
      if (sink) cfg.log = await sink.channel(`d${t.mapper}-backend`, t.mapper, o.logOrder);
      workers.push(spawnWorker<GrantWorkerResult>(workerUrl, cfg, `grant thread ${index} (${t.label})`));
    }
    await withTimeout(Promise.all(workers.map((w) => w.ready)), TIMEOUT_MS, 'grant threads start', killAll);
    const go = new Int32Array(sync);
    Atomics.store(go, 0, 1);
    Atomics.notify(go, 0);
    const results = await withTimeout(Promise.all(workers.map((w) => w.result)), TIMEOUT_MS, 'grant threads', killAll);
    const codes = await withTimeout(Promise.all(workers.map((w) => w.exited)), 5_000, 'grant threads exit', killAll);
    const problems: string[] = [];
    if (codes.some((c) => c !== 0)) problems.push(`threads exited with codes ${codes.join(', ')}`);
    for (const r of results) for (const p of r.verify.problems) problems.push(`${m.threads[r.index]!.label}: ${p}`);
    const machine = checkMachine(m);
    problems.push(...machine.problems);
    const out: GrantRound = { log: withLog, threads: results, problems, machine, wallMs: 0 };
    if (sink) {
      const counts = [
        { emitted: toolstackWriter!.emitted, dropped: toolstackWriter!.dropped },
        ...results.map((r) => {
          if (!r.log) throw new Error('log on, but a thread reported no log counts');
          return r.log.total;
        }),
      ];
      const t = performance.now();
      const stats = await withTimeout(sink.close(), TIMEOUT_MS, 'sink close');
      const closeMs = performance.now() - t;
      sink = undefined;
      const accounting = accountEvents(counts, stats);
      for (const p of accounting.problems) problems.push(`log: ${p}`);
      out.events = {
        emitted: counts.reduce((s, c) => s + c.emitted, 0),
        dropped: counts.reduce((s, c) => s + c.dropped, 0),
        stats,
        accounting,
        closeMs,
      };
    }
    out.wallMs = performance.now() - tStart;
    return out;
  } catch (e) {
    await killAll();
    throw e;
  } finally {
    if (sink) await sink.close().catch(() => {});
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}
