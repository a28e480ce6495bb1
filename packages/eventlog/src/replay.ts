/**
 * Replay: rebuild projections from a log (or any event stream), run auditors over it, and check
 * "replay equals state" against snapshots a run saved of its live state.
 *
 * Snapshots may be taken mid-run: each is compared when the stream first passes its `atSeq`
 * (the next event has a larger seq), so exactly the events with seq <= atSeq have been applied.
 * Memory stays proportional to state, never to log length: to name the first diverging event,
 * replay keeps per key the record that last changed it (inside keyed projections) plus the
 * records that snapshots cite (known before the stream starts), not the log.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { Packr } from 'msgpackr';
import { assert } from '@pvsim/abi';
import type { EventRecord } from './schema.js';
import { runAuditors, type AuditRun, type Auditor, type Violation } from './audit.js';
import { diffEntries, formatValue, type EntryDiff, type ProjectedEntry, type Projection, type StateSnapshot } from './projection.js';

/** Progress is reported every this many events (and once at the end). */
export const PROGRESS_EVERY_EVENTS_DEFAULT = 1 << 16;

export interface ReplayProgress {
  readonly events: number;
  readonly lastSeq: number | null;
}

export interface ReplayOptions {
  readonly projections: readonly Projection<any>[];
  readonly auditors?: readonly Auditor[];
  /** Live state saved by the run; compared at each one's `atSeq`. */
  readonly snapshots?: readonly StateSnapshot[];
  readonly onProgress?: (p: ReplayProgress) => void;
  readonly progressEveryEvents?: number;
  /** Each violation as it is found. */
  readonly onViolation?: (v: Violation) => void;
}

/** Live and replayed state disagree. */
export interface Divergence {
  readonly projection: string;
  /** The snapshot's `atSeq`. */
  readonly atSeq: number;
  /** Every differing key (value or seq), sorted by key; a side without the key has no entry. */
  readonly entries: readonly EntryDiff[];
  /**
   * The first diverging event: the smallest seq among the differing entries' live and replayed
   * seqs. No differing entry was last changed before it on either side, so it is the earliest
   * event to look at; where an entry's two seqs differ, the disagreement lies between them.
   */
  readonly firstSeq: number;
  /** The differing key that `firstSeq` comes from. */
  readonly firstKey: string;
  /** The record at `firstSeq`, if the stream had it (a lost or dropped event has none). */
  readonly firstEvent?: EventRecord;
  /** One line for people. */
  readonly explanation: string;
}

export interface SkippedSnapshot {
  readonly projection: string;
  readonly atSeq: number;
  readonly reason: string;
}

export interface ReplayResult {
  readonly events: number;
  /** The highest seq seen (null for an empty stream). */
  readonly lastSeq: number | null;
  /** Each projection's final state, in canonical form. */
  readonly states: Map<string, Map<string, ProjectedEntry>>;
  readonly violations: readonly Violation[];
  /** Violations found beyond the kept maximum. */
  readonly violationsSuppressed: number;
  readonly divergences: readonly Divergence[];
  /** Snapshots compared (equal or not). */
  readonly snapshotsCompared: number;
  /** Snapshots of projections this replay does not have. */
  readonly skippedSnapshots: readonly SkippedSnapshot[];
}

interface PendingSnapshot {
  snap: StateSnapshot;
  proj: Projection<any>;
  state: unknown;
}

/**
 * Replay as a push interface: feed events with `push`, end with `finish`. `replay` drives it
 * from a stream; the sink may drive it live.
 */
export class Replayer {
  private readonly states: { proj: Projection<any>; state: unknown }[] = [];
  private readonly audit: AuditRun;
  private readonly pending: PendingSnapshot[] = [];
  private next = 0;
  private readonly skipped: SkippedSnapshot[] = [];
  private readonly divergences: Divergence[] = [];
  /** Seqs that live snapshot entries cite → how many entries cite them, and the record once seen. */
  private readonly cited = new Map<number, { refs: number; rec: EventRecord | null }>();
  private events = 0;
  private highest: number | null = null;
  private compared = 0;
  private finished = false;
  private readonly progressEvery: number;

  constructor(private readonly opts: ReplayOptions) {
    const names = new Set<string>();
    for (const p of opts.projections) {
      assert(!names.has(p.name), `replay given two projections named '${p.name}'`);
      names.add(p.name);
      this.states.push({ proj: p, state: p.init() });
    }
    this.audit = runAuditors(opts.auditors ?? [], opts.onViolation ? { onViolation: opts.onViolation } : {});
    this.progressEvery = opts.progressEveryEvents ?? PROGRESS_EVERY_EVENTS_DEFAULT;
    const snaps = [...(opts.snapshots ?? [])].sort((a, b) => a.atSeq - b.atSeq);
    for (const snap of snaps) {
      const s = this.states.find((x) => x.proj.name === snap.projection);
      if (!s) {
        this.skipped.push({ projection: snap.projection, atSeq: snap.atSeq, reason: 'no such projection in this replay' });
        continue;
      }
      this.pending.push({ snap, proj: s.proj, state: s.state });
      for (const e of Object.values(snap.entries)) {
        const c = this.cited.get(e.seq);
        if (c) c.refs++;
        else this.cited.set(e.seq, { refs: 1, rec: null });
      }
    }
  }

  push(e: EventRecord): void {
    assert(!this.finished, 'Replayer.push after finish');
    while (this.next < this.pending.length && e.seq > this.pending[this.next]!.snap.atSeq) this.compare(this.pending[this.next++]!);
    for (const s of this.states) s.proj.apply(s.state, e);
    this.audit.onEvent(e);
    const c = this.cited.get(e.seq);
    if (c && !c.rec) c.rec = e;
    this.events++;
    if (this.highest === null || e.seq > this.highest) this.highest = e.seq;
    if (this.opts.onProgress && this.events % this.progressEvery === 0) this.opts.onProgress({ events: this.events, lastSeq: this.highest });
  }

  finish(): ReplayResult {
    assert(!this.finished, 'Replayer.finish called twice');
    while (this.next < this.pending.length) this.compare(this.pending[this.next++]!);
    this.finished = true;
    const violations = this.audit.finish();
    this.opts.onProgress?.({ events: this.events, lastSeq: this.highest });
    const states = new Map<string, Map<string, ProjectedEntry>>();
    for (const s of this.states) states.set(s.proj.name, s.proj.entries(s.state));
    return {
      events: this.events,
      lastSeq: this.highest,
      states,
      violations,
      violationsSuppressed: this.audit.suppressed,
      divergences: this.divergences,
      snapshotsCompared: this.compared,
      skippedSnapshots: this.skipped,
    };
  }

  private compare({ snap, proj, state }: PendingSnapshot): void {
    this.compared++;
    const replayed = proj.entries(state);
    const diffs = diffEntries(snap.entries, replayed);
    if (diffs.length > 0) this.divergences.push(this.divergence(snap, proj, state, diffs));
    // Records this snapshot cited are no longer needed on its behalf.
    for (const e of Object.values(snap.entries)) {
      const c = this.cited.get(e.seq);
      if (c && --c.refs === 0) this.cited.delete(e.seq);
    }
  }

  private divergence(snap: StateSnapshot, proj: Projection<any>, state: unknown, diffs: EntryDiff[]): Divergence {
    let first: { seq: number; diff: EntryDiff; side: 'live' | 'replayed' } | null = null;
    for (const d of diffs) {
      for (const side of ['live', 'replayed'] as const) {
        const entry = d[side];
        if (entry && (!first || entry.seq < first.seq)) first = { seq: entry.seq, diff: d, side };
      }
    }
    assert(first !== null, 'a differing entry has at least one side');
    let rec: EventRecord | undefined;
    // The replayed side remembers the record that set each key; the live side's cited records were kept as they passed.
    for (const d of diffs) {
      if (d.replayed?.seq === first.seq) {
        const r = proj.lastEvent?.(state, d.key);
        if (r?.seq === first.seq) rec = r;
      }
      if (rec) break;
    }
    rec ??= this.cited.get(first.seq)?.rec ?? undefined;

    const side = (x: ProjectedEntry | undefined): string => (x ? `${formatValue(x.value, 60)} @seq ${x.seq}` : 'absent');
    const n = diffs.length;
    const what = rec ? `${rec.kind} from dom ${rec.dom}` : 'not in the stream: lost, dropped or never emitted';
    const truncated = this.highest !== null && this.highest < snap.atSeq ? ` (the log ends at seq ${this.highest}, before it)` : this.highest === null ? ' (the log is empty)' : '';
    const explanation =
      `${snap.projection}: ${n} entr${n === 1 ? 'y differs' : 'ies differ'} from the live snapshot at seq ${snap.atSeq}${truncated}; ` +
      `first diverging event seq ${first.seq} (${what}): key ${JSON.stringify(first.diff.key)} live ${side(first.diff.live)}, replay ${side(first.diff.replayed)}`;
    return {
      projection: snap.projection,
      atSeq: snap.atSeq,
      entries: diffs,
      firstSeq: first.seq,
      firstKey: first.diff.key,
      ...(rec ? { firstEvent: rec } : {}),
      explanation,
    };
  }
}

/** Replay an in-memory stream synchronously. */
export function replaySync(source: Iterable<EventRecord>, opts: ReplayOptions): ReplayResult {
  const r = new Replayer(opts);
  for (const e of source) r.push(e);
  return r.finish();
}

/** Replay a stream (a log reader's, or in memory). */
export async function replay(source: Iterable<EventRecord> | AsyncIterable<EventRecord>, opts: ReplayOptions): Promise<ReplayResult> {
  if (!(Symbol.asyncIterator in source)) return replaySync(source, opts);
  const r = new Replayer(opts);
  for await (const e of source) r.push(e);
  return r.finish();
}

// ─── Snapshot files ─────────────────────────────────────────────────────────────────────────

/** The launcher saves snapshots here, beside the log directory: `<log>/../snapshot.msgpack`. */
export const SNAPSHOT_FILE_NAME = 'snapshot.msgpack';
export const SNAPSHOT_FORMAT = 'pvsim-snapshot';
export const SNAPSHOT_FORMAT_VERSION = 1;

/** A snapshot file that is not one (it is input: never trusted). */
export class SnapshotFormatError extends Error {
  override name = 'SnapshotFormatError';
}

const snapshotPackr = new Packr({ useRecords: false });

/** msgpack map { format: 'pvsim-snapshot', version: 1, snapshots: StateSnapshot[] }. */
export function encodeSnapshot(snapshots: readonly StateSnapshot[]): Uint8Array {
  return snapshotPackr.pack({
    format: SNAPSHOT_FORMAT,
    version: SNAPSHOT_FORMAT_VERSION,
    snapshots: snapshots.map((s) => ({ projection: s.projection, atSeq: s.atSeq, entries: { ...s.entries } })),
  });
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && [Object.prototype, null].includes(Object.getPrototypeOf(v));

/** Decode and check a snapshot file's bytes; throws `SnapshotFormatError` saying what is wrong. */
export function decodeSnapshot(bytes: Uint8Array): StateSnapshot[] {
  let doc: unknown;
  try {
    doc = snapshotPackr.unpack(bytes);
  } catch (err) {
    throw new SnapshotFormatError(`not msgpack: ${(err as Error).message}`);
  }
  if (!isPlainObject(doc) || doc.format !== SNAPSHOT_FORMAT) throw new SnapshotFormatError(`not a ${SNAPSHOT_FORMAT} document`);
  if (doc.version !== SNAPSHOT_FORMAT_VERSION) throw new SnapshotFormatError(`unsupported snapshot version ${String(doc.version)}`);
  if (!Array.isArray(doc.snapshots)) throw new SnapshotFormatError('snapshots is not an array');
  return doc.snapshots.map((s: unknown, i: number): StateSnapshot => {
    if (!isPlainObject(s)) throw new SnapshotFormatError(`snapshot ${i} is not a map`);
    const { projection, atSeq, entries } = s;
    if (typeof projection !== 'string' || projection.length === 0) throw new SnapshotFormatError(`snapshot ${i}: bad projection name`);
    if (!Number.isSafeInteger(atSeq) || (atSeq as number) < 0) throw new SnapshotFormatError(`snapshot ${i} (${projection}): bad atSeq`);
    if (!isPlainObject(entries)) throw new SnapshotFormatError(`snapshot ${i} (${projection}): entries is not a map`);
    const out: Record<string, ProjectedEntry> = Object.create(null) as Record<string, ProjectedEntry>;
    for (const [k, e] of Object.entries(entries)) {
      if (!isPlainObject(e) || !Object.prototype.hasOwnProperty.call(e, 'value') || !Number.isSafeInteger(e.seq) || (e.seq as number) < 0)
        throw new SnapshotFormatError(`snapshot ${i} (${projection}): entry ${JSON.stringify(k)} is not { value, seq }`);
      out[k] = { value: e.value, seq: e.seq as number };
    }
    return { projection, atSeq: atSeq as number, entries: out };
  });
}

export async function readSnapshotFile(path: string): Promise<StateSnapshot[]> {
  const bytes = await readFile(path);
  try {
    return decodeSnapshot(bytes);
  } catch (err) {
    if (err instanceof SnapshotFormatError) throw new SnapshotFormatError(`${path}: ${err.message}`);
    throw err;
  }
}

/** Write atomically (a temporary file renamed over `path`): a reader never sees half a file. */
export async function writeSnapshotFile(path: string, snapshots: readonly StateSnapshot[]): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, encodeSnapshot(snapshots));
  await rename(tmp, path);
}
