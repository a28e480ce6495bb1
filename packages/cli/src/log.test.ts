/**
 * `pvsim log …` end to end: the built binary (bin/pvsim.js → dist/main.js) run as a child process
 * against logs written with SegmentWriter. Paths are resolved from this file, so the suite runs
 * from the package root or the repository root alike. Build first (`npx tsc -b packages/cli`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SegmentWriter, openLog, segmentName } from '@pvsim/eventlog';

const BIN = fileURLToPath(new URL('../bin/pvsim.js', import.meta.url));
const DIST_MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

interface Ev {
  seq: number;
  tsNs: number;
  dom: number;
  thread: number;
  kind: string;
  v: number;
  payload: Record<string, unknown>;
}

function run(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const lines = (s: string): string[] => s.split('\n').filter((l) => l.length > 0);

/** `blockBytes` small gives many blocks (CRC-guarded frames of records) per segment. */
async function writeLog(dir: string, events: readonly Ev[], segmentBytes?: number, blockBytes?: number): Promise<void> {
  const w = new SegmentWriter(dir, { runId: 'cli-test', seed: 99 }, segmentBytes, { blockBytes });
  for (const e of events) w.addEvent(e);
  await w.close();
}

/** Index of the block (footer index entry) of the only segment that holds `seq`. */
const blockOf = (index: readonly [number, number, number][], seq: number): number => index.findLastIndex(([first]) => first <= seq);

/** A small run: writers announced, grants mapped and unmapped, event-channel sends, a gap, drops. */
function runEvents(): Ev[] {
  const out: Ev[] = [];
  let seq = 0;
  const add = (tsNs: number, dom: number, thread: number, kind: string, payload: Record<string, unknown>): void => {
    out.push({ seq: ++seq, tsNs, dom, thread, kind, v: 1, payload });
  };
  add(1_000, 0, 0, 'log.writer', { writer: 0, name: 'sink', dom: 0 });
  add(2_000, 0, 0, 'log.writer', { writer: 1, name: 'blkback', dom: 0 });
  add(3_000, 0, 0, 'log.writer', { writer: 2, name: 'blkfront', dom: 3 });
  for (let i = 0; i < 20; i++) {
    const t = 1_000_000 * (i + 1);
    add(t, 3, 2, 'grant.grant', { gref: 40 + (i % 2), domid: 0 });
    add(t + 1_000, 0, 1, 'grant.map', { gref: 40 + (i % 2), granter: 3, handle: i, ro: false });
    add(t + 2_000, 3, 2, 'evtchn.send', { port: 5, remoteDom: 0, remotePort: 9 });
    add(t + 3_000, 0, 1, 'blkback.request', { reqId: i, op: 'read', grefs: [40 + (i % 2), 60] });
    add(t + 4_000, 0, 1, 'grant.unmap', { gref: 40 + (i % 2), granter: 3, handle: i });
    add(t + 5_000, 0, 1, 'grant.map', { gref: 40 + (i % 2), granter: 4, handle: 100 + i, ro: true }); // another granter's gref 40/41
    if (i === 10) seq += 3; // seqs 70..72 never arrived
  }
  add(30_000_000, 0, 0, 'log.gap', { from: 70, to: 72, reason: 'writer died' });
  add(30_001_000, 0, 0, 'log.dropped', { writer: 1, count: 7, total: 7 });
  add(30_002_000, 0, 0, 'log.end', { lastSeq: seq + 1, events: out.length + 1 });
  return out;
}

let root: string;
let logDir: string;
const events = runEvents();

beforeAll(async () => {
  if (!existsSync(DIST_MAIN)) throw new Error(`${DIST_MAIN} is missing: build first (npx tsc -b packages/cli)`);
  root = await mkdtemp(join(tmpdir(), 'pvsim-cli-'));
  logDir = join(root, 'run');
  await writeLog(logDir, events, 2048);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('pvsim log show', () => {
  it('prints aligned human lines with the payload as key=value', () => {
    const r = run('log', 'show', logDir);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const ls = lines(r.stdout);
    expect(ls).toHaveLength(events.length);
    expect(ls[4]).toMatch(/^#5\s+\+1\.001000ms {2}d0 t1\s+grant\.map\s+gref=40 granter=3 handle=0 ro=false$/);
    expect(ls[6]).toMatch(/ blkback\.request\s+reqId=0 op=read grefs=\[40,60\]$/);
    // Columns line up: the kind starts at the same place on every line.
    const kindAt = new Set(ls.map((l) => l.search(/ [a-z]+\.[a-z.]+ /)));
    expect(kindAt.size).toBe(1);
  });

  it('--json prints one object per line with seq, tsNs, dom, thread, kind, v, payload', () => {
    const r = run('log', 'show', logDir, '--json');
    expect(r.code).toBe(0);
    expect(lines(r.stdout).map((l) => JSON.parse(l) as Ev)).toEqual(events);
  });

  it('filters by kind, dom, thread, seq, time and payload keys; --limit stops early', () => {
    const show = (...args: string[]): Ev[] => {
      const r = run('log', 'show', logDir, '--json', ...args);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      return lines(r.stdout).map((l) => JSON.parse(l) as Ev);
    };
    expect(show('--kind', 'grant.*', '--dom', '3')).toEqual(events.filter((e) => e.kind.startsWith('grant.') && e.dom === 3));
    expect(show('--kind', 'grant.map,evtchn.send')).toEqual(events.filter((e) => e.kind === 'grant.map' || e.kind === 'evtchn.send'));
    expect(show('--thread', '0', '--thread', '2')).toEqual(events.filter((e) => e.thread === 0 || e.thread === 2));
    expect(show('--from-seq', '10', '--to-seq', '20')).toEqual(events.filter((e) => e.seq >= 10 && e.seq <= 20));
    expect(show('--since', '5ms', '--until', '7.002ms')).toEqual(events.filter((e) => e.tsNs >= 5_000_000 && e.tsNs <= 7_002_000));
    expect(show('--since', '29999us')).toEqual(events.filter((e) => e.tsNs >= 29_999_000));
    expect(show('--gref', '41', '--kind', 'blkback.*')).toEqual(events.filter((e) => e.kind === 'blkback.request' && (e.payload.grefs as number[]).includes(41)));
    expect(show('--req-id', '7')).toEqual(events.filter((e) => e.payload.reqId === 7));
    expect(show('--port', '5')).toEqual(events.filter((e) => e.payload.port === 5));
    expect(show('--key', 'ro=true', '--key', 'granter=4')).toEqual(events.filter((e) => e.payload.ro === true && e.payload.granter === 4));
    expect(show('--key', 'name=blkfront')).toEqual(events.filter((e) => e.payload.name === 'blkfront'));
    expect(show('--limit', '3')).toEqual(events.slice(0, 3));
  });

  it('does not crash when the reader closes the pipe', async () => {
    const big = join(root, 'big');
    const many: Ev[] = [];
    for (let i = 1; i <= 40_000; i++) many.push({ seq: i, tsNs: i * 1000, dom: 3, thread: 2, kind: 'grant.map', v: 1, payload: { gref: i, granter: 3, handle: i, ro: false } });
    await writeLog(big, many);
    const r = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${BIN}" log show "${big}" | head -n 2`], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(lines(r.stdout)).toHaveLength(2);
  });
});

describe('pvsim log stats', () => {
  it('prints tables: summary, segments, kinds, domains, threads with names, gaps, drops', () => {
    const r = run('log', 'stats', logDir);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/│ records\s+│ 126\s+│/);
    expect(r.stdout).toMatch(/│ run\s+│ cli-test\s+│/);
    expect(r.stdout).toMatch(/│ grant\.map\s+│\s+40 │/);
    expect(r.stdout).toMatch(/│ t1\s+│ blkback\s+│ d0\s+│\s+80 │/);
    expect(r.stdout).toMatch(/│ 70 \.\. 72\s+│\s+3 │ yes: writer died/);
    expect(r.stdout).toMatch(/│ t1 \(blkback\)\s+│\s+7 │/);
  });

  it('--json gives the same facts to tools', () => {
    const r = run('log', 'stats', logDir, '--json');
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout) as Record<string, unknown>;
    expect((s.segments as unknown[]).length).toBeGreaterThan(2);
    expect(s).toMatchObject({
      runId: 'cli-test',
      seed: 99,
      records: events.length,
      firstSeq: 1,
      lastSeq: events.at(-1)!.seq,
      firstTsNs: 1_000,
      lastTsNs: 30_002_000,
      durationNs: 30_001_000,
      cleanEnd: true,
      kinds: { 'grant.map': 40, 'grant.grant': 20, 'log.writer': 3 },
      doms: { '0': 86, '3': 40 },
      gapEvents: [{ from: 70, to: 72, reason: 'writer died' }],
      seqGaps: { count: 1, missingSeqs: 3, listed: [{ from: 70, to: 72 }] },
      dropped: { total: 7, byWriter: { '1': 7 } },
      truncatedTail: null,
    });
    expect(s.threads).toEqual([
      { thread: 0, name: 'sink', dom: 0, events: 6 },
      { thread: 1, name: 'blkback', dom: 0, events: 80 },
      { thread: 2, name: 'blkfront', dom: 3, events: 40 },
    ]);
  });
});

describe('pvsim log timeline', () => {
  it('--gref N --dom D follows one grant in order, with deltas', () => {
    const r = run('log', 'timeline', logDir, '--gref', '41', '--dom', '3');
    expect(r.code).toBe(0);
    const ls = lines(r.stdout);
    expect(ls[0]).toBe('timeline of grant 41 of d3');
    const want = events.filter((e) => [e.payload.gref, ...((e.payload.grefs as number[] | undefined) ?? [])].includes(41) && ('granter' in e.payload ? e.payload.granter === 3 : e.dom === 3));
    expect(want.some((e) => e.kind === 'grant.grant')).toBe(true);
    expect(want.some((e) => e.payload.granter === 4)).toBe(false);
    const body = ls.slice(1, -1);
    expect(body.map((l) => Number(/^#(\d+)/.exec(l)![1]))).toEqual(want.map((e) => e.seq));
    expect(body[0]).toMatch(/Δ —/);
    expect(body[1]).toMatch(/Δ\+1\.0us/);
    expect(ls.at(-1)).toMatch(new RegExp(`^${want.length} events over `));
  });

  it('--port N --dom D follows an event-channel port from either end; --json has deltas', () => {
    const r = run('log', 'timeline', logDir, '--port', '9', '--dom', '0', '--json');
    expect(r.code).toBe(0);
    const got = lines(r.stdout).map((l) => JSON.parse(l) as Ev & { deltaNs: number | null; sinceFirstNs: number });
    expect(got.map((e) => e.seq)).toEqual(events.filter((e) => e.kind === 'evtchn.send').map((e) => e.seq));
    expect(got[0]!.deltaNs).toBeNull();
    expect(got[1]!.deltaNs).toBe(1_000_000);
    expect(got[2]!.sinceFirstNs).toBe(2_000_000);
    const mine = run('log', 'timeline', logDir, '--port', '5', '--dom', '3', '--json');
    expect(lines(mine.stdout)).toHaveLength(20);
    const none = run('log', 'timeline', logDir, '--port', '5', '--dom', '0');
    expect(lines(none.stdout).at(-1)).toBe('no events');
  });
});

describe('errors', () => {
  it('a corrupt log: the records of the blocks before the damage, then one line naming the block’s byte offset, exit 1', async () => {
    const dir = join(root, 'corrupt');
    await writeLog(dir, events, undefined, 512);
    const file = join(dir, segmentName(0));
    const index = (await openLog(dir)).segments[0]!.footer!.index;
    // Damage the last byte of the block holding the 31st record: none of that block is shown.
    const b = blockOf(index, events[30]!.seq);
    expect(b).toBeGreaterThan(0);
    expect(b).toBeLessThan(index.length - 1);
    const [firstSeq, off] = index[b]!;
    const bytes = await readFile(file);
    bytes[index[b + 1]![1] - 1]! ^= 0x40;
    await writeFile(file, bytes);
    const r = run('log', 'show', dir, '--json');
    expect(r.code).toBe(1);
    const before = events.filter((e) => e.seq < firstSeq);
    expect(before.length).toBeGreaterThan(0);
    expect(lines(r.stdout).map((l) => JSON.parse(l) as Ev)).toEqual(before);
    expect(r.stderr).toBe(`pvsim: ${file}: corrupt log at byte offset ${off}: block CRC mismatch\n`);
    expect(run('log', 'stats', dir).code).toBe(1);
  });

  it('a truncated log: every record of the complete blocks, a warning on stderr, exit 0', async () => {
    const dir = join(root, 'truncated');
    await writeLog(dir, events, undefined, 512);
    const file = join(dir, segmentName(0));
    const info = await openLog(dir);
    const [lastFirstSeq, lastOffset] = info.segments[0]!.footer!.index.at(-1)!;
    await truncate(file, info.segments[0]!.footerOffset! - 5);
    const complete = events.filter((e) => e.seq < lastFirstSeq);
    expect(complete.length).toBeGreaterThan(events.length / 2);
    const r = run('log', 'show', dir, '--json');
    expect(r.code).toBe(0);
    expect(lines(r.stdout).map((l) => JSON.parse(l) as Ev)).toEqual(complete);
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(new RegExp(`^pvsim: warning: .*seg-000000\\.pvlog: at byte offset ${lastOffset}: truncated: last frame is cut off`));
    const s = run('log', 'stats', dir, '--json');
    expect(s.code).toBe(0);
    expect(JSON.parse(s.stdout)).toMatchObject({ records: complete.length, cleanEnd: false, truncatedTail: { file } });
  });

  it('a missing file or an empty directory: one clear line, exit 1', async () => {
    const r = run('log', 'show', join(root, 'nope'));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`pvsim: ${join(root, 'nope')}: no such file or directory\n`);
    const e = run('log', 'stats', root);
    expect(e.code).toBe(1);
    expect(e.stderr).toBe(`pvsim: ${root}: no log segments (seg-NNNNNN.pvlog) in this directory\n`);
  });

  it('bad arguments: commander says why, exit 2', () => {
    for (const args of [
      ['log', 'show', logDir, '--dom', 'x'],
      ['log', 'show', logDir, '--since', '5'],
      ['log', 'show', logDir, '--key', 'nonsense'],
      ['log', 'show', logDir, '--no-such-option'],
      ['log', 'show'],
      ['log', 'timeline', logDir, '--dom', '3'],
      ['log', 'timeline', logDir, '--gref', '1', '--port', '2', '--dom', '3'],
      ['log', 'timeline', logDir, '--gref', '1'],
      ['log', 'frobnicate'],
      ['log'],
    ]) {
      const r = run(...args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr.length).toBeGreaterThan(0);
      expect(r.stdout).toBe('');
    }
    expect(run('--help').code).toBe(0);
    expect(run('log', 'show', '--help').stdout).toMatch(/--req-id <n>/);
  });
});
