import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { SegmentWriter, openLog, stateSnapshot, writeSnapshotFile, type StateSnapshot } from '@pvsim/eventlog';

/** The built CLI, as users run it. */
const PVSIM = fileURLToPath(new URL('../bin/pvsim.js', import.meta.url));

type Rec = [seq: number, tsNs: number, dom: number, thread: number, kind: string, version: number, payload: Record<string, unknown>];

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * A run directory: `<run>/log/seg-*.pvlog` and, if given, `<run>/snapshot.msgpack`.
 * `blockBytes: 1` puts every record in a block (a CRC-guarded frame) of its own.
 */
async function writeRun(records: Rec[], opts: { snapshots?: StateSnapshot[]; close?: boolean; blockBytes?: number } = {}): Promise<{ run: string; log: string }> {
  const run = mkdtempSync(join(tmpdir(), 'pvsim-cli-replay-'));
  dirs.push(run);
  const log = join(run, 'log');
  const w = new SegmentWriter(log, { runId: 'replay-test', seed: 7 }, undefined, { blockBytes: opts.blockBytes });
  for (const [seq, tsNs, dom, thread, kind, v, payload] of records) w.addEvent({ seq, tsNs, dom, thread, kind, v, payload });
  if (opts.close ?? true) await w.close();
  else await w.flush();
  if (opts.snapshots) await writeSnapshotFile(join(run, 'snapshot.msgpack'), opts.snapshots);
  return { run, log };
}

function pvsim(...args: string[]) {
  const r = spawnSync(process.execPath, [PVSIM, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const writer = (seq: number, id: number, name: string, dom: number): Rec => [seq, seq * 1000, 0, 0, 'log.writer', 1, { writer: id, name, dom }];
const tick = (seq: number, dom: number): Rec => [seq, seq * 1000, dom, dom, 'test.tick', 1, { n: seq }];
const end = (seq: number, events: number): Rec => [seq, seq * 1000, 0, 0, 'log.end', 1, { lastSeq: seq, events }];

const CLEAN: Rec[] = [writer(0, 1, 'xenstored', 0), writer(1, 2, 'blkfront', 3), tick(2, 0), tick(3, 3), end(4, 5)];
const LIVE_WRITERS = stateSnapshot('log.writers', 4, [
  ['1', { value: { name: 'xenstored', dom: 0 }, seq: 0 }],
  ['2', { value: { name: 'blkfront', dom: 3 }, seq: 1 }],
]);

describe('pvsim replay', () => {
  it('replays a clean log against the snapshot beside it: summary, exit 0 with --check', async () => {
    const { log, run } = await writeRun(CLEAN, { snapshots: [LIVE_WRITERS, stateSnapshot('not.here', 4, [])] });
    const r = pvsim('replay', log, '--check');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain('events      5 (last seq 4)');
    expect(r.out).toContain(`snapshot    ${join(run, 'snapshot.msgpack')}: 1 compared, 1 skipped (not.here: no such projection)`);
    expect(r.out).toMatch(/^ {2}log\.writers +2 entries$/m);
    expect(r.out).toContain('violations  0');
    expect(r.out).toContain('divergences 0');
    expect(r.out).toContain('result      clean');
  });

  it('reports violations with their seqs and the first diverging event; exit 1 only with --check', async () => {
    // seq 2 never arrived; dom 3's writer is remembered by live state under another name.
    const records = CLEAN.filter((r) => r[0] !== 2);
    const live = stateSnapshot('log.writers', 4, [
      ['1', { value: { name: 'xenstored', dom: 0 }, seq: 0 }],
      ['2', { value: { name: 'netfront', dom: 3 }, seq: 1 }],
    ]);
    const { log } = await writeRun(records, { snapshots: [live] });
    const checked = pvsim('replay', log, '--check');
    expect(checked.code).toBe(1);
    expect(checked.out).toContain('events      4 (last seq 4)');
    expect(checked.out).toContain('violations  1');
    expect(checked.out).toContain('  sequence-gap [sequence] seqs 1,3: 1 event(s) missing between seq 1 and 3 (seq 2), and no log.gap record explains them');
    expect(checked.out).toContain('divergences 1');
    expect(checked.out).toContain('first diverging event seq 1 (log.writer from dom 0)');
    expect(checked.out).toContain('    first diverging event: seq 1 log.writer v1 dom 0 thread 0 t=1000ns {"dom":3,"name":"blkfront","writer":2}');
    expect(checked.out).toContain('    "2": live {"dom":3,"name":"netfront"} @seq 1 | replay {"dom":3,"name":"blkfront"} @seq 1');
    expect(checked.out).toContain('result      1 violation(s), 1 divergence(s)');
    expect(pvsim('replay', log).code).toBe(0);
  });

  it('--json prints one document with everything, and --snapshot names the file to compare with', async () => {
    const { log, run } = await writeRun(CLEAN);
    const other = join(run, 'elsewhere.msgpack');
    await writeSnapshotFile(other, [stateSnapshot('log.writers', 1, [['1', { value: { name: 'xenstored', dom: 0 }, seq: 0 }]])]);
    const r = pvsim('replay', log, '--json', '--check', '--snapshot', other);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.out);
    expect(doc).toMatchObject({
      events: 5,
      lastSeq: 4,
      corrupt: null,
      snapshot: { path: other, compared: 1, skipped: [] },
      projections: { 'log.writers': { entries: 2 } },
      violations: [],
      clean: false,
    });
    // The snapshot was taken at seq 1 (writer 2 announced at seq 1 is included): live misses it.
    expect(doc.divergences).toEqual([
      expect.objectContaining({
        projection: 'log.writers',
        atSeq: 1,
        firstSeq: 1,
        firstKey: '2',
        firstEvent: expect.objectContaining({ seq: 1, kind: 'log.writer' }),
        entries: [{ key: '2', live: null, replayed: { value: { name: 'blkfront', dom: 3 }, seq: 1 } }],
      }),
    ]);
  });

  it('runs without a snapshot, tolerating a truncated tail with a warning', async () => {
    const { log } = await writeRun(CLEAN, { close: false });
    const seg = join(log, readdirSync(log)[0]!);
    appendFileSync(seg, Buffer.from([200, 0, 0, 0, 1, 2, 3, 4, 5])); // a frame cut off mid-write
    const r = pvsim('replay', log, '--check');
    expect(r.code).toBe(0);
    expect(r.out).toContain('snapshot    none');
    expect(r.out).toContain('events      5 (last seq 4)');
    expect(r.err).toMatch(/^warning: .*seg-000000\.pvlog at byte \d+: /m);
  });

  it('exits 1 when the log or the snapshot cannot be read', async () => {
    const { log, run } = await writeRun(CLEAN);
    const missing = pvsim('replay', join(run, 'nope'));
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^pvsim: .*nope/);
    writeFileSync(join(run, 'bad.msgpack'), 'not msgpack at all');
    const bad = pvsim('replay', log, '--snapshot', join(run, 'bad.msgpack'));
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/^pvsim: cannot read snapshot .*bad\.msgpack: /);
    expect(pvsim('replay', log, '--snapshot', join(run, 'absent.msgpack')).code).toBe(1);
  });

  it('a log corrupt part-way: replays what precedes the bad block, summarises, and exits 1', async () => {
    const { log } = await writeRun(CLEAN, { blockBytes: 1 });
    const seg = join(log, readdirSync(log)[0]!);
    const [lastSeq, lastBlock] = (await openLog(log)).segments[0]!.footer!.index.at(-1)!;
    expect(lastSeq).toBe(4);
    const bytes = readFileSync(seg);
    // Flip a byte inside the last block, which holds only the last record (the footer and trailer follow it).
    const at = bytes.indexOf(Buffer.from('log.end', 'latin1'), lastBlock);
    expect(at).toBeGreaterThan(lastBlock);
    bytes[at] = bytes[at]! ^ 0xff;
    writeFileSync(seg, bytes);
    const r = pvsim('replay', log);
    expect(r.code).toBe(1);
    expect(r.out).toContain('events      4 (last seq 3)');
    expect(r.out).toMatch(new RegExp(`^corrupt {5}.*corrupt log at byte offset ${lastBlock}: block CRC mismatch: replay stopped there$`, 'm'));
    expect(r.out).toContain('log corrupt');
    expect(r.err).toMatch(/^pvsim: .*seg-000000\.pvlog: corrupt log at byte offset \d+/);
  });

  it('--help describes the command', () => {
    const r = pvsim('replay', '--help');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Usage: pvsim replay \[options\] <file>/);
    expect(r.out).toMatch(/--check .*exit 1 when there is any violation or divergence/);
  });
});
