/**
 * Two real worker threads (threads-worker.mjs, running the built package) map and unmap grants of
 * a third domain tens of thousands of times, concurrently: each as its own mapper domain, both as
 * one shared mapper domain (same maptrack, same active entries), and each hostilely on the
 * entries the other is mapping. No update may be lost: at the end every pin count is zero, the
 * granter's GTF_reading/GTF_writing are clear, both maptracks are whole and free, no frame is
 * counted as mapped, no domain holds a mapping, and successful maps equal unmaps.
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { GTF_reading, GTF_writing } from '@pvsim/abi';
import { describe, expect, it } from 'vitest';
import { A_PIN, A_WORDS, D_LOCK, D_MT_TOP, Hypervisor, MT_FLAGS, MT_WORDS, P2M_INVALID, createHypervisorSpec } from './index.js';

const workerScript = fileURLToPath(new URL('./threads-worker.mjs', import.meta.url));

interface WorkerResult {
  ok: boolean;
  counts: { maps: number; unmaps: number; copies: number; hostileRefused: number; roRefused: number; endRefused: number; dataChecks: number; badHandles: number };
  violations: string[];
  events: number;
  /** When the worker's loop started and ended (ms since the epoch). */
  t0: number;
  t1: number;
}

function runWorker(workerData: Record<string, unknown>): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(workerScript, { workerData });
    w.once('message', (m: WorkerResult) => {
      void w.terminate();
      resolve(m);
    });
    w.once('error', reject);
    w.once('exit', (code) => code !== 0 && reject(new Error(`worker exited with ${code}`)));
  });
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

describe('grant maps from two threads', () => {
  it('no lost update: pins, flags, maptrack, frame map counts and mapping counts all return to zero', async () => {
    const MTE = 64;
    const spec = createHypervisorSpec({ frames: 512, maxDomains: 8, gfnsPerDomain: 128, grantEntries: 64, maptrackEntries: MTE, evtchnPorts: 32 });
    const hv = new Hypervisor(spec);
    let seq = 0;
    const emitter = { emit: () => ++seq };
    const ts = hv.toolstack(emitter);
    expect(ts.domainCreate({ domid: 0, name: 'dom0', memoryPages: 4, privileged: true })).toBe(0);
    const G = ts.domainCreate({ name: 'granter', memoryPages: 32 });
    const M1 = ts.domainCreate({ name: 'mapper1', memoryPages: 4 });
    const M2 = ts.domainCreate({ name: 'mapper2', memoryPages: 4 });
    const S = ts.domainCreate({ name: 'shared-mapper', memoryPages: 4 });
    const g = hv.client(G, emitter);
    // refs 8..15 → M1, 16..23 → M2, 24..35 → S; every third one read-only. Frames overlap on
    // purpose (two refs per gfn), so one frame is mapped through several entries at once.
    const grant = (refs: number[], to: number) => refs.forEach((r) => expect(g.grantForeignAccess(r, to, r % 20, r % 3 === 0)).toBe(0));
    const m1Refs = range(8, 8);
    const m2Refs = range(16, 8);
    const sRefs = range(24, 12);
    grant(m1Refs, M1);
    grant(m2Refs, M2);
    grant(sRefs, S);
    const barrier = new SharedArrayBuffer(4);
    const common = { spec, granter: G, shared: S, sharedRefs: sRefs, iterations: 100_000, barrier };
    // Ballooned gfns: M1/M2 own 4..127; S's are split between the threads.
    const hostsOf = (d: number) => hv.client(d, emitter).invalidGfns(0, 200);
    const sHosts = hostsOf(S);
    const [r1, r2] = await Promise.all([
      runWorker({ ...common, me: M1, ownRefs: m1Refs, hostileRefs: m2Refs, ownHosts: hostsOf(M1).slice(0, 40), sharedHosts: sHosts.slice(0, 30), seed: 12345, tag: 1 }),
      runWorker({ ...common, me: M2, ownRefs: m2Refs, hostileRefs: m1Refs, ownHosts: hostsOf(M2).slice(0, 40), sharedHosts: sHosts.slice(30, 60), seed: 67890, tag: 2 }),
    ]);
    // The loops really ran at the same time (most of each overlaps the other).
    const overlap = Math.min(r1.t1, r2.t1) - Math.max(r1.t0, r2.t0);
    expect(overlap).toBeGreaterThan(0.5 * Math.min(r1.t1 - r1.t0, r2.t1 - r2.t0));
    expect(r1.violations).toEqual([]);
    expect(r2.violations).toEqual([]);
    for (const r of [r1, r2]) {
      expect(r.ok).toBe(true);
      // Real traffic happened, on every path.
      expect(r.counts.maps).toBeGreaterThan(25_000);
      expect(r.counts.hostileRefused).toBeGreaterThan(1000);
      expect(r.counts.roRefused).toBeGreaterThan(100);
      expect(r.counts.endRefused).toBeGreaterThan(100);
      expect(r.counts.dataChecks).toBeGreaterThan(100);
      expect(r.counts.copies).toBeGreaterThan(100);
      expect(r.counts.maps).toBe(r.counts.unmaps);
    }

    const s = hv.s;
    const GE = hv.config.grantEntries;
    // Granter: no pins, no GTF_reading/GTF_writing, every entry can be ended.
    for (const ref of [...m1Refs, ...m2Refs, ...sRefs]) {
      expect(s.active[(G * GE + ref) * A_WORDS + A_PIN], `pin of ref ${ref}`).toBe(0);
      expect(g.grantEntry(ref)!.flags & (GTF_reading | GTF_writing), `flags of ref ${ref}`).toBe(0);
      expect(g.endForeignAccess(ref)).toBe(true);
    }
    for (const d of [M1, M2, S]) {
      // Maptrack: top back at the full count, every entry free, the free stack a permutation.
      expect(Atomics.load(s.domains, s.dw(d, D_MT_TOP)), `maptrack top of d${d}`).toBe(MTE);
      for (let h = 0; h < MTE; h++) expect(s.maptrack[(d * MTE + h) * MT_WORDS + MT_FLAGS]).toBe(0);
      expect(new Set(s.maptrackFree.subarray(d * MTE, (d + 1) * MTE))).toEqual(new Set(range(0, MTE)));
      expect(hv.client(d, emitter).mappingsHeld()).toBe(0);
      // No foreign entry left in its p2m.
      const c = hv.client(d, emitter);
      for (let gfn = 4; gfn < hv.config.gfnsPerDomain; gfn++) expect(c.p2mEntry(gfn)).toBe(P2M_INVALID);
    }
    expect(s.frameMaps.every((n) => n === 0)).toBe(true);
    // Locks all released.
    for (const d of [0, G, M1, M2, S]) expect(Atomics.load(s.domains, s.dw(d, D_LOCK))).toBe(0);
  }, 60_000);
});
