/**
 * `pvsim replay FILE [--check] [--snapshot PATH] [--json]`: rebuild every registered projection
 * from a log, run the generic auditors over it, and compare with the run's saved live state
 * (`<FILE>/../snapshot.msgpack`, or --snapshot) — "replay equals state".
 *
 * Exit status, as main.ts has them: 0 when the replay ran (with --check: and found nothing);
 * 1 with --check when there is any violation or divergence, and always when the log or the
 * snapshot cannot be read (a log corrupt part-way is replayed up to the bad frame, summarised,
 * then reported); 2 for bad arguments (commander). A log that cannot be opened at all is thrown
 * to main.ts, which words it like every other command.
 */
import { access } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import {
  LogCorruptError,
  SNAPSHOT_FILE_NAME,
  formatValue,
  registeredAuditors,
  readEvents,
  readSnapshotFile,
  registeredProjections,
  replay,
  type Divergence,
  type EventRecord,
  type LogWarning,
  type ReplayResult,
  type StateSnapshot,
  type Violation,
} from '@pvsim/eventlog';

export interface ReplayCommandOptions {
  check?: boolean;
  snapshot?: string;
  json?: boolean;
}

/** Where the command writes; the real streams by default, captured in tests. */
export interface ReplayIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

const stdio: ReplayIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** Violations and divergences printed in text mode; the rest are counted (JSON has them all). */
const LISTED_MAX = 50;
/** Differing keys printed per divergence in text mode. */
const KEYS_LISTED_MAX = 10;

export function registerReplay(program: Command): void {
  program
    .command('replay')
    .description('rebuild projections from a log, run the auditors, and compare with the saved end-of-run state')
    .argument('<file>', 'log directory (or a single segment file)')
    .option('--check', 'exit 1 when there is any violation or divergence')
    .option('--snapshot <path>', `live-state snapshot to compare with (default: ${SNAPSHOT_FILE_NAME} beside the log, when present)`)
    .option('--json', 'print the result as one JSON document')
    .action(async (file: string, opts: ReplayCommandOptions) => {
      // main.ts keeps a status the command sets (and overrides it only for failures it catches).
      process.exitCode = await runReplay(file, opts);
    });
}

/** The command's body; returns the exit status. Throws `LogOpenError` when FILE is not a log. */
export async function runReplay(file: string, opts: ReplayCommandOptions, io: ReplayIo = stdio): Promise<number> {
  const logPath = resolve(file);
  const warnings: LogWarning[] = [];

  let snapshotPath: string | null = null;
  let snapshots: StateSnapshot[] = [];
  if (opts.snapshot !== undefined) snapshotPath = resolve(opts.snapshot);
  else {
    const beside = join(dirname(logPath), SNAPSHOT_FILE_NAME);
    if (await exists(beside)) snapshotPath = beside;
  }
  if (snapshotPath !== null) {
    try {
      snapshots = await readSnapshotFile(snapshotPath);
    } catch (err) {
      io.err(`pvsim: cannot read snapshot ${snapshotPath}: ${message(err)}`);
      return 1;
    }
  }

  let corrupt: LogCorruptError | null = null;
  async function* events(): AsyncGenerator<EventRecord> {
    try {
      yield* readEvents(logPath, undefined, {
        tolerateTruncatedTail: true,
        onWarning: (w) => {
          warnings.push(w);
          if (!opts.json) io.err(`warning: ${w.file} at byte ${w.offset}: ${w.reason}`);
        },
      });
    } catch (err) {
      // Records before a bad frame were replayed; report what was read and where it stopped.
      if (err instanceof LogCorruptError) corrupt = err;
      else throw err;
    }
  }

  const auditors = registeredAuditors();
  const auditorNames = auditors.map((a) => a.name);
  const result = await replay(events(), { projections: registeredProjections(), auditors, snapshots });
  const dirty = result.violations.length + result.violationsSuppressed + result.divergences.length > 0;

  if (opts.json) io.out(JSON.stringify({ ...toJson(logPath, snapshotPath, result, warnings, corrupt), auditors: auditorNames }, jsonReplacer, 2));
  else printText(io, logPath, snapshotPath, result, corrupt, auditorNames);

  const bad = corrupt as LogCorruptError | null;
  if (bad) {
    io.err(`pvsim: ${bad.message}`);
    return 1;
  }
  return opts.check && dirty ? 1 : 0;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

function printText(io: ReplayIo, logPath: string, snapshotPath: string | null, r: ReplayResult, corrupt: LogCorruptError | null, auditorNames: readonly string[]): void {
  io.out(`log         ${logPath}`);
  io.out(`events      ${r.events}${r.lastSeq !== null ? ` (last seq ${r.lastSeq})` : ''}`);
  if (corrupt) io.out(`corrupt     ${corrupt.message}: replay stopped there`);
  const skipped = r.skippedSnapshots.length > 0 ? `, ${r.skippedSnapshots.length} skipped (${[...new Set(r.skippedSnapshots.map((s) => s.projection))].join(', ')}: no such projection)` : '';
  io.out(`snapshot    ${snapshotPath === null ? 'none' : `${snapshotPath}: ${r.snapshotsCompared} compared${skipped}`}`);
  io.out('projections');
  const width = Math.max(0, ...[...r.states.keys()].map((n) => n.length));
  for (const [name, entries] of r.states) io.out(`  ${name.padEnd(width)}  ${entries.size} entr${entries.size === 1 ? 'y' : 'ies'}`);

  io.out(`auditors    ${auditorNames.join(', ') || 'none'}`);
  const nViolations = r.violations.length + r.violationsSuppressed;
  io.out(`violations  ${nViolations}`);
  for (const v of r.violations.slice(0, LISTED_MAX)) io.out(`  ${violationLine(v)}`);
  if (nViolations > LISTED_MAX) io.out(`  … and ${nViolations - LISTED_MAX} more (--json lists ${r.violations.length})`);

  io.out(`divergences ${r.divergences.length}`);
  for (const d of r.divergences.slice(0, LISTED_MAX)) {
    io.out(`  ${d.explanation}`);
    if (d.firstEvent) io.out(`    first diverging event: ${eventLine(d.firstEvent)}`);
    for (const x of d.entries.slice(0, KEYS_LISTED_MAX)) {
      const side = (e: { value: unknown; seq: number } | undefined) => (e ? `${formatValue(e.value, 60)} @seq ${e.seq}` : 'absent');
      io.out(`    ${JSON.stringify(x.key)}: live ${side(x.live)} | replay ${side(x.replayed)}`);
    }
    if (d.entries.length > KEYS_LISTED_MAX) io.out(`    … and ${d.entries.length - KEYS_LISTED_MAX} more keys`);
  }
  if (r.divergences.length > LISTED_MAX) io.out(`  … and ${r.divergences.length - LISTED_MAX} more`);

  const clean = nViolations === 0 && r.divergences.length === 0 && !corrupt;
  io.out(clean ? 'result      clean' : `result      ${nViolations} violation(s), ${r.divergences.length} divergence(s)${corrupt ? ', log corrupt' : ''}`);
}

function violationLine(v: Violation): string {
  return `${v.rule} [${v.auditor}] seqs ${v.seqs.join(',')}${v.dom !== undefined ? ` dom ${v.dom}` : ''}: ${v.message}`;
}

function eventLine(e: EventRecord): string {
  return `seq ${e.seq} ${e.kind} v${e.v} dom ${e.dom} thread ${e.thread} t=${e.tsNs}ns ${formatValue(e.payload, 100)}`;
}

function toJson(logPath: string, snapshotPath: string | null, r: ReplayResult, warnings: LogWarning[], corrupt: LogCorruptError | null) {
  return {
    log: logPath,
    events: r.events,
    lastSeq: r.lastSeq,
    corrupt: corrupt ? { file: corrupt.file, offset: corrupt.offset, reason: corrupt.reason } : null,
    warnings,
    snapshot: snapshotPath === null ? null : { path: snapshotPath, compared: r.snapshotsCompared, skipped: r.skippedSnapshots },
    projections: Object.fromEntries([...r.states].map(([name, entries]) => [name, { entries: entries.size }])),
    violations: r.violations,
    violationsSuppressed: r.violationsSuppressed,
    divergences: r.divergences.map((d: Divergence) => ({
      projection: d.projection,
      atSeq: d.atSeq,
      firstSeq: d.firstSeq,
      firstKey: d.firstKey,
      firstEvent: d.firstEvent ?? null,
      explanation: d.explanation,
      entries: d.entries.map((x) => ({ key: x.key, live: x.live ?? null, replayed: x.replayed ?? null })),
    })),
    clean: r.violations.length + r.violationsSuppressed + r.divergences.length === 0 && !corrupt,
  };
}

/** JSON has no bigint, bytes or undefined: render them so nothing vanishes silently. */
function jsonReplacer(_key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return { $bigint: v.toString() };
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex') };
  if (v === undefined) return { $undefined: true };
  return v;
}
