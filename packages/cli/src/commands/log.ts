/**
 * `pvsim log …`: read an event log.
 *
 *   show FILE [filters] [--limit N] [--json]   events, one per line (people) or one JSON object per line
 *   stats FILE [--json]                        segments, counts per kind/domain/thread, gaps, drops
 *   timeline FILE (--gref N | --port N) --dom D  what happened to one grant or event-channel port
 *
 * FILE is a log directory or one segment file. Everything streams: a log larger than memory is
 * fine. A truncated tail (the run died mid-write) is a warning on stderr, not a failure; a
 * corrupt log is one line on stderr naming the byte offset (main.ts maps errors to exit codes).
 */
import { once } from 'node:events';
import { basename } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import Table from 'cli-table3';
import { openLog, readEventBatches, type EventRecord, type LogFilter, type LogInfo, type LogWarning, type ReadOptions } from '@pvsim/eventlog';

// ---------------------------------------------------------------------------------------------
// Argument parsing

function parseUint(value: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new InvalidArgumentError('expected a non-negative integer.');
  return Number(value);
}

const collectUint = (value: string, prev: number[]): number[] => [...prev, parseUint(value)];

const collectKinds = (value: string, prev: string[]): string[] => {
  const kinds = value.split(',').filter((k) => k.length > 0);
  if (kinds.length === 0) throw new InvalidArgumentError('expected an event kind, e.g. grant.map or grant.*');
  return [...prev, ...kinds];
};

const TIME_UNITS_NS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9 };

/** '1.5s', '200ms', '3000ns', '10us' → nanoseconds since the run's epoch. */
export function parseTime(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s)$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError('expected a time with a unit: 3000ns, 10us, 200ms, 1.5s.');
  return Math.round(Number(m[1]) * TIME_UNITS_NS[m[2]!]!);
}

/** 'name=value': integers and true/false are typed, "quoted" values stay strings. */
function parseKey(value: string, prev: Record<string, number | string | boolean>): Record<string, number | string | boolean> {
  const m = /^([A-Za-z_][\w.]*)=(.*)$/.exec(value);
  if (!m) throw new InvalidArgumentError('expected name=value, e.g. gref=42.');
  const [, name, raw] = m as unknown as [string, string, string];
  let v: number | string | boolean = raw;
  if (/^-?\d+$/.test(raw) && Number.isSafeInteger(Number(raw))) v = Number(raw);
  else if (raw === 'true' || raw === 'false') v = raw === 'true';
  else if (raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"')) v = raw.slice(1, -1);
  return { ...prev, [name]: v };
}

// ---------------------------------------------------------------------------------------------
// Output

/** Buffered stdout that respects back-pressure (a slow pager never makes us hold a whole log). */
class Out {
  private parts: string[] = [];
  private bytes = 0;
  private static readonly FLUSH_BYTES = 64 << 10;

  line(s: string): Promise<void> | undefined {
    this.parts.push(s);
    this.bytes += s.length + 1;
    return this.bytes >= Out.FLUSH_BYTES ? this.flush() : undefined;
  }

  async flush(): Promise<void> {
    if (this.parts.length === 0) return;
    const text = this.parts.join('\n') + '\n';
    this.parts = [];
    this.bytes = 0;
    if (!process.stdout.write(text)) await once(process.stdout, 'drain');
  }
}

function warn(w: LogWarning): void {
  process.stderr.write(`pvsim: warning: ${w.file}: at byte offset ${w.offset}: ${w.reason}\n`);
}

const readOptions: ReadOptions = { tolerateTruncatedTail: true, onWarning: warn };

const fmtMs = (ns: number): string => `${(ns / 1e6).toFixed(6)}ms`;

/** A duration for people: 850ns, 12.3us, 4.567ms, 2.345s. */
export function fmtDuration(ns: number): string {
  const a = Math.abs(ns);
  if (a < 1e3) return `${ns}ns`;
  if (a < 1e6) return `${(ns / 1e3).toFixed(1)}us`;
  if (a < 1e9) return `${(ns / 1e6).toFixed(3)}ms`;
  return `${(ns / 1e9).toFixed(3)}s`;
}

const PLAIN_STRING = /^[\w./:@+-]+$/;

function jsonReplacer(_key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data))
    return { hex: Buffer.from((v as { data: number[] }).data).toString('hex') };
  return v;
}

function fmtValue(v: unknown): string {
  if (typeof v === 'string') return PLAIN_STRING.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' || v === null || v === undefined) return String(v);
  if (v instanceof Uint8Array) return `<${v.length} bytes>`;
  return JSON.stringify(v, jsonReplacer);
}

export function fmtPayload(p: Record<string, unknown>): string {
  return Object.entries(p)
    .map(([k, v]) => `${k}=${fmtValue(v)}`)
    .join(' ');
}

/** Column widths for human lines, sized from the footers when the log has them. */
interface Columns {
  seq: number;
  time: number;
  kind: number;
}

function columnsFor(info: LogInfo): Columns {
  let lastSeq = 0;
  let lastTs = 0;
  for (const s of info.segments) {
    lastSeq = Math.max(lastSeq, s.footer?.lastSeq ?? 0);
    lastTs = Math.max(lastTs, s.footer?.lastTsNs ?? 0);
  }
  const unclosed = info.segments.some((s) => !s.footer);
  return {
    seq: 1 + Math.max(String(lastSeq).length, unclosed ? 7 : 1),
    time: 1 + Math.max(fmtMs(lastTs).length, unclosed ? 14 : 1),
    kind: 22,
  };
}

function humanLine(e: EventRecord, c: Columns, extra = ''): string {
  return [
    `#${e.seq}`.padEnd(c.seq),
    `+${fmtMs(e.tsNs)}`.padStart(c.time),
    extra,
    `d${e.dom} t${e.thread}`.padEnd(8),
    e.kind.padEnd(c.kind),
    fmtPayload(e.payload as Record<string, unknown>),
  ]
    .filter((s) => s.length > 0)
    .join('  ')
    .trimEnd();
}

const jsonLine = (e: EventRecord): string => JSON.stringify(e, jsonReplacer);

// ---------------------------------------------------------------------------------------------
// log show

interface ShowOptions {
  kind: string[];
  dom: number[];
  thread: number[];
  fromSeq?: number;
  toSeq?: number;
  since?: number;
  until?: number;
  gref?: number;
  port?: number;
  reqId?: number;
  key: Record<string, number | string | boolean>;
  limit?: number;
  json?: boolean;
}

function filterFrom(o: ShowOptions): LogFilter {
  const f: LogFilter = {};
  if (o.kind.length > 0) f.kinds = o.kind;
  if (o.dom.length > 0) f.doms = o.dom;
  if (o.thread.length > 0) f.threads = o.thread;
  if (o.fromSeq !== undefined) f.fromSeq = o.fromSeq;
  if (o.toSeq !== undefined) f.toSeq = o.toSeq;
  if (o.since !== undefined) f.fromNs = o.since;
  if (o.until !== undefined) f.toNs = o.until;
  const keys = { ...o.key };
  if (o.gref !== undefined) keys.gref = o.gref;
  if (o.port !== undefined) keys.port = o.port;
  if (o.reqId !== undefined) keys.reqId = o.reqId;
  if (Object.keys(keys).length > 0) f.keys = keys;
  return f;
}

async function show(file: string, o: ShowOptions): Promise<void> {
  const info = await openLog(file);
  const cols = columnsFor(info);
  const out = new Out();
  let left = o.limit ?? Infinity;
  try {
    if (left > 0) {
      outer: for await (const batch of readEventBatches(info, filterFrom(o), readOptions)) {
        for (const e of batch) {
          const pending = out.line(o.json ? jsonLine(e) : humanLine(e, cols));
          if (pending) await pending;
          if (--left <= 0) break outer;
        }
      }
    }
  } finally {
    await out.flush(); // the good records before a corrupt frame are shown, then the error
  }
}

// ---------------------------------------------------------------------------------------------
// log stats

/** Seq discontinuities kept for listing; beyond this they are only counted. */
const GAPS_LISTED_MAX = 1000;
const GAPS_PRINTED_MAX = 20;

interface Gap {
  from: number;
  to: number;
  reason?: string;
}

interface Stats {
  log: string;
  runId: string | null;
  createdAt: string | null;
  seed: number | string | null;
  segments: { file: string; records: number | null; firstSeq: number | null; lastSeq: number | null; bytes: number; closed: boolean }[];
  bytes: number;
  records: number;
  firstSeq: number | null;
  lastSeq: number | null;
  firstTsNs: number | null;
  lastTsNs: number | null;
  durationNs: number;
  eventsPerSec: number | null;
  cleanEnd: boolean;
  kinds: Record<string, number>;
  doms: Record<string, number>;
  threads: { thread: number; name: string | null; dom: number | null; events: number }[];
  gapEvents: Gap[];
  seqGaps: { count: number; missingSeqs: number; listed: Gap[] };
  dropped: { total: number; byWriter: Record<string, number> };
  truncatedTail: LogWarning | null;
}

async function collectStats(file: string): Promise<Stats> {
  const info = await openLog(file);
  const kinds = new Map<string, number>();
  const doms = new Map<number, number>();
  const threads = new Map<number, number>();
  const writers = new Map<number, { name: string; dom: number }>();
  const gapEvents: Gap[] = [];
  const seqGaps = { count: 0, missingSeqs: 0, listed: [] as Gap[] };
  const droppedBy = new Map<number, number>();
  let records = 0;
  let firstSeq: number | null = null;
  let lastSeq: number | null = null;
  let minTs = Infinity;
  let maxTs = -Infinity;
  let cleanEnd = false;
  let truncatedTail: LogWarning | null = null;
  const opts: ReadOptions = {
    tolerateTruncatedTail: true,
    onWarning: (w) => {
      if (w.reason.startsWith('truncated') || w.reason.includes('ends inside')) truncatedTail = w;
      warn(w);
    },
  };
  for await (const batch of readEventBatches(info, {}, opts)) {
    for (const e of batch) {
      records++;
      if (lastSeq !== null && e.seq !== lastSeq + 1) {
        seqGaps.count++;
        seqGaps.missingSeqs += e.seq - lastSeq - 1;
        if (seqGaps.listed.length < GAPS_LISTED_MAX) seqGaps.listed.push({ from: lastSeq + 1, to: e.seq - 1 });
      }
      firstSeq ??= e.seq;
      lastSeq = e.seq;
      if (e.tsNs < minTs) minTs = e.tsNs;
      if (e.tsNs > maxTs) maxTs = e.tsNs;
      kinds.set(e.kind, (kinds.get(e.kind) ?? 0) + 1);
      doms.set(e.dom, (doms.get(e.dom) ?? 0) + 1);
      threads.set(e.thread, (threads.get(e.thread) ?? 0) + 1);
      if (e.kind.startsWith('log.')) {
        const p = e.payload as Record<string, unknown>;
        if (e.kind === 'log.writer' && typeof p.writer === 'number')
          writers.set(p.writer, { name: typeof p.name === 'string' ? p.name : '?', dom: typeof p.dom === 'number' ? p.dom : e.dom });
        else if (e.kind === 'log.gap' && typeof p.from === 'number' && typeof p.to === 'number' && gapEvents.length < GAPS_LISTED_MAX)
          gapEvents.push({ from: p.from, to: p.to, reason: typeof p.reason === 'string' ? p.reason : '' });
        else if (e.kind === 'log.dropped' && typeof p.writer === 'number' && typeof p.count === 'number')
          droppedBy.set(p.writer, (droppedBy.get(p.writer) ?? 0) + p.count);
        else if (e.kind === 'log.end') cleanEnd = true;
      }
    }
  }
  const durationNs = records > 0 ? maxTs - minTs : 0;
  const byCount = <K>(m: Map<K, number>): [K, number][] => [...m].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const h = info.header;
  return {
    log: file,
    runId: h?.runId ?? null,
    createdAt: h?.createdAt ?? null,
    seed: h?.seed ?? null,
    segments: info.segments.map((s) => ({
      file: basename(s.file),
      records: s.footer?.records ?? null,
      firstSeq: s.footer?.firstSeq ?? null,
      lastSeq: s.footer?.lastSeq ?? null,
      bytes: s.bytes,
      closed: s.footer !== null,
    })),
    bytes: info.bytes,
    records,
    firstSeq,
    lastSeq,
    firstTsNs: records > 0 ? minTs : null,
    lastTsNs: records > 0 ? maxTs : null,
    durationNs,
    eventsPerSec: durationNs > 0 ? records / (durationNs / 1e9) : null,
    cleanEnd,
    kinds: Object.fromEntries(byCount(kinds)),
    doms: Object.fromEntries(byCount(doms).map(([d, n]) => [String(d), n])),
    threads: [...threads]
      .sort((a, b) => a[0] - b[0])
      .map(([thread, events]) => ({ thread, name: writers.get(thread)?.name ?? null, dom: writers.get(thread)?.dom ?? null, events })),
    gapEvents,
    seqGaps,
    dropped: { total: [...droppedBy.values()].reduce((a, b) => a + b, 0), byWriter: Object.fromEntries([...droppedBy].map(([w, n]) => [String(w), n])) },
    truncatedTail,
  };
}

const table = (head: string[], aligns?: ('left' | 'right')[]): Table.Table =>
  new Table({ head, style: { head: [], border: [], compact: true }, ...(aligns ? { colAligns: aligns } : {}) });

function renderStats(s: Stats): string {
  const parts: string[] = [];
  const summary = table(['log', basename(s.log)]);
  const rows: [string, string][] = [
    ['run', s.runId ?? '-'],
    ['created', s.createdAt ?? '-'],
    ['seed', s.seed === null ? '-' : String(s.seed)],
    ['segments', `${s.segments.length} (${s.segments.filter((x) => !x.closed).length} not closed)`],
    ['bytes', String(s.bytes)],
    ['records', String(s.records)],
    ['seq', s.firstSeq === null ? '-' : `${s.firstSeq} .. ${s.lastSeq}`],
    ['time', s.firstTsNs === null ? '-' : `+${fmtMs(s.firstTsNs)} .. +${fmtMs(s.lastTsNs!)}`],
    ['duration', fmtDuration(s.durationNs)],
    ['events/s', s.eventsPerSec === null ? '-' : s.eventsPerSec.toFixed(0)],
    ['clean end', s.cleanEnd ? 'yes (log.end)' : 'no'],
    ['seq gaps', `${s.seqGaps.count} (${s.seqGaps.missingSeqs} seqs missing); ${s.gapEvents.length} log.gap events`],
    ['dropped', String(s.dropped.total)],
  ];
  if (s.truncatedTail) rows.push(['truncated', `${basename(s.truncatedTail.file)} at byte ${s.truncatedTail.offset}`]);
  summary.push(...rows);
  parts.push(summary.toString());

  const segs = table(['segment', 'records', 'seq', 'bytes', 'closed'], ['left', 'right', 'left', 'right', 'left']);
  for (const x of s.segments)
    segs.push([x.file, x.records === null ? '?' : x.records, x.firstSeq === null ? '-' : `${x.firstSeq} .. ${x.lastSeq}`, x.bytes, x.closed ? 'yes' : 'no']);
  parts.push(segs.toString());

  const kinds = table(['kind', 'events'], ['left', 'right']);
  for (const [k, n] of Object.entries(s.kinds)) kinds.push([k, n]);
  parts.push(kinds.toString());

  const doms = table(['dom', 'events'], ['left', 'right']);
  for (const [d, n] of Object.entries(s.doms)) doms.push([`d${d}`, n]);
  parts.push(doms.toString());

  const threads = table(['thread', 'name', 'dom', 'events'], ['left', 'left', 'left', 'right']);
  for (const t of s.threads) threads.push([`t${t.thread}`, t.name ?? '?', t.dom === null ? '?' : `d${t.dom}`, t.events]);
  parts.push(threads.toString());

  if (s.gapEvents.length > 0 || s.seqGaps.count > 0) {
    // Each discontinuity in the seqs, with the log.gap event that declared it (the sink's word
    // for seqs whose writer died); then declared gaps that match no discontinuity.
    const declared = new Map(s.gapEvents.map((g) => [`${g.from}..${g.to}`, g]));
    const gaps = table(['missing seqs', 'count', 'declared by log.gap'], ['left', 'right', 'left']);
    const rows: [string, number, string][] = [];
    for (const g of s.seqGaps.listed) {
      const d = declared.get(`${g.from}..${g.to}`);
      declared.delete(`${g.from}..${g.to}`);
      rows.push([`${g.from} .. ${g.to}`, g.to - g.from + 1, d ? `yes: ${d.reason ?? ''}` : 'no']);
    }
    for (const d of declared.values()) rows.push([`${d.from} .. ${d.to}`, d.to - d.from + 1, `yes: ${d.reason ?? ''} (but the seqs are not missing)`]);
    gaps.push(...rows.slice(0, GAPS_PRINTED_MAX));
    if (rows.length > GAPS_PRINTED_MAX || s.seqGaps.count > s.seqGaps.listed.length)
      gaps.push([`… ${Math.max(rows.length, s.seqGaps.count) - GAPS_PRINTED_MAX} more`, '', '']);
    parts.push(gaps.toString());
  }
  if (s.dropped.total > 0) {
    const dropped = table(['writer', 'dropped'], ['left', 'right']);
    for (const [w, n] of Object.entries(s.dropped.byWriter)) {
      const name = s.threads.find((t) => String(t.thread) === w)?.name;
      dropped.push([`t${w}${name ? ` (${name})` : ''}`, n]);
    }
    parts.push(dropped.toString());
  }
  return parts.join('\n');
}

// ---------------------------------------------------------------------------------------------
// log timeline

interface TimelineOptions {
  gref?: number;
  port?: number;
  dom: number;
  json?: boolean;
}

async function timeline(file: string, o: TimelineOptions, cmd: Command): Promise<void> {
  if ((o.gref === undefined) === (o.port === undefined)) cmd.error("error: give exactly one of '--gref <n>' and '--port <n>'", { exitCode: 2, code: 'pvsim.usage' });
  const { dom } = o;
  let filter: LogFilter;
  let pick: (e: EventRecord) => boolean;
  let title: string;
  if (o.gref !== undefined) {
    // A grant is named by its granter: events carrying `granter` say whose grant it is; events
    // without it (the granting domain's own bookkeeping) are the emitter's.
    filter = { keys: { gref: o.gref } };
    pick = (e) => {
      const p = e.payload as Record<string, unknown>;
      return Object.hasOwn(p, 'granter') ? p.granter === dom : e.dom === dom;
    };
    title = `grant ${o.gref} of d${dom}`;
  } else {
    const port = o.port!;
    filter = {};
    pick = (e) => {
      const p = e.payload as Record<string, unknown>;
      return (p.port === port && e.dom === dom) || (p.remoteDom === dom && p.remotePort === port);
    };
    title = `event channel d${dom}:${port}`;
  }
  const info = await openLog(file);
  const cols = columnsFor(info);
  const out = new Out();
  if (!o.json) await out.line(`timeline of ${title}`);
  let prevTs: number | null = null;
  let firstTs: number | null = null;
  let n = 0;
  try {
    for await (const batch of readEventBatches(info, filter, readOptions)) {
      for (const e of batch) {
        if (!pick(e)) continue;
        n++;
        firstTs ??= e.tsNs;
        const deltaNs = prevTs === null ? null : e.tsNs - prevTs;
        prevTs = e.tsNs;
        const pending = o.json
          ? out.line(JSON.stringify({ ...e, sinceFirstNs: e.tsNs - firstTs, deltaNs }, jsonReplacer))
          : out.line(humanLine(e, cols, (deltaNs === null ? 'Δ —' : `Δ+${fmtDuration(deltaNs)}`).padEnd(13)));
        if (pending) await pending;
      }
    }
  } finally {
    await out.flush();
  }
  if (!o.json) await out.line(n === 0 ? 'no events' : `${n} events over ${fmtDuration(prevTs! - firstTs!)}`);
  await out.flush();
}

// ---------------------------------------------------------------------------------------------

export function registerLog(program: Command): void {
  const log = program.command('log').description('read an event log (a log directory or one seg-NNNNNN.pvlog file)');

  log
    .command('show')
    .description('print events, one per line')
    .argument('<file>', 'log directory or segment file')
    .option('--kind <kind>', 'keep this kind (exact, or a prefix like grant.*); repeat or comma-separate', collectKinds, [])
    .option('--dom <dom>', 'keep events emitted by this domain; repeatable', collectUint, [])
    .option('--thread <thread>', 'keep events of this writer thread; repeatable', collectUint, [])
    .option('--from-seq <n>', 'first sequence number (inclusive)', parseUint)
    .option('--to-seq <n>', 'last sequence number (inclusive)', parseUint)
    .option('--since <time>', "from this time after the run's epoch (3000ns, 10us, 200ms, 1.5s)", parseTime)
    .option('--until <time>', "up to this time after the run's epoch (inclusive)", parseTime)
    .option('--gref <n>', 'payload gref (or grefs) is n', parseUint)
    .option('--port <n>', 'payload port (or ports) is n', parseUint)
    .option('--req-id <n>', 'payload reqId (or reqIds) is n', parseUint)
    .option('--key <name=value>', 'payload field equals value (or its array contains it); repeatable', parseKey, {})
    .option('--limit <n>', 'stop after n events', parseUint)
    .option('--json', 'one JSON object per line: seq, tsNs, dom, thread, kind, v, payload')
    .action(async (file: string, o: ShowOptions) => show(file, o));

  log
    .command('stats')
    .description('segments, records, time span, counts per kind/domain/thread, sequence gaps and dropped events')
    .argument('<file>', 'log directory or segment file')
    .option('--json', 'one JSON document instead of tables')
    .action(async (file: string, o: { json?: boolean }) => {
      const s = await collectStats(file);
      const out = new Out();
      await out.line(o.json ? JSON.stringify(s, jsonReplacer, 2) : renderStats(s));
      await out.flush();
    });

  log
    .command('timeline')
    .description('what happened to one grant (--gref N --dom D) or one event-channel port (--port N --dom D), in order')
    .argument('<file>', 'log directory or segment file')
    .option('--gref <n>', 'grant reference', parseUint)
    .option('--port <n>', 'event-channel port', parseUint)
    .requiredOption('--dom <dom>', 'the granting domain (with --gref) or the port\u2019s domain (with --port)', parseUint)
    .option('--json', 'one JSON object per line, with sinceFirstNs and deltaNs')
    .action(async (file: string, o: TimelineOptions, cmd: Command) => timeline(file, o, cmd));
}
