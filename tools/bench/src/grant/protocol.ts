/** What the grant benchmark's main thread and its worker threads pass each other. */
import type { LogChannelSpec } from '@pvsim/eventlog';
import type { HypervisorSpec } from '@pvsim/hypervisor';
import type { Plan, PhaseTiming } from './metrics.js';

/** The writers' full-ring wait (`EventWriter`'s `fullWaitUs`, its default too), passed explicitly so the report can price each drop. */
export const FULL_WAIT_US = 500;

export interface GrantWorkerConfig {
  /** 0 or 1: which of the two threads. */
  index: number;
  spec: HypervisorSpec;
  /** Log on: this thread's channel (an `EventWriter` is built on it); off: `nullEmitter()`. */
  log?: LogChannelSpec;
  /** The domain this thread acts as (maps, unmaps, copies). */
  mapper: number;
  /** The guest whose grants it uses. */
  granter: number;
  /** Refs `granter` granted (writable) to `mapper`: A rotates through all of them. */
  mapRefs: number[];
  /** Grants per map batch (and per unmap batch). */
  batch: number;
  /** B/C: the copy sources (a prefix of `mapRefs`), the thread's own destination gfns, and the frames behind the sources. */
  copyRefs: number[];
  dstGfns: number[];
  srcMfns: number[];
  /** Copy ops per GNTTABOP_copy call. */
  copyBatch: number;
  plan: Plan;
  /** Int32Array[2]: [0] go flag (set by the parent), [1] barrier arrivals. */
  sync: SharedArrayBuffer;
  /** Threads taking part in the barriers. */
  parties: number;
}

/** Events one writer emitted / dropped during a part of the run. */
export interface PhaseLog {
  emitted: number;
  dropped: number;
}

export interface Verification {
  /** Ops whose status was not GNTST_okay (warm-up and timed phases). */
  badStatus: number;
  /** Mappings the thread's domain held at the end. */
  mappingsLeft: number;
  /** Granted pages that, mapped and read through the gate, were not the guest's data. */
  mapMismatches: number;
  /** Grant copies whose destination differed from the source afterwards. */
  copyMismatches: number;
  problems: string[];
}

export interface GrantWorkerResult {
  type: 'result';
  index: number;
  a: PhaseTiming;
  b: PhaseTiming;
  c: PhaseTiming;
  /** Iterations per timed chunk, as calibrated by the warm-up. */
  chunks: { a: number; b: number; c: number };
  verify: Verification;
  log?: { total: PhaseLog; warm: PhaseLog; a: PhaseLog; b: PhaseLog; c: PhaseLog };
}

export type WorkerReply = { type: 'ready' } | { type: 'error'; message: string } | GrantWorkerResult;
