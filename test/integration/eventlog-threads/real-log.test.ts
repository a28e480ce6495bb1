/**
 * A real run — sink thread, three daemon threads with live state — then everything a person
 * does with its log: replay equals state, replay finds a silent state change, and the `pvsim`
 * CLI (log show, stats, timeline, replay --check) on that log.
 */
import { Worker } from 'node:worker_threads';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  keyedProjection,
  readEvents,
  replay,
  startSinkWorker,
  writeSnapshotFile,
  type StateSnapshot,
} from '@pvsim/eventlog';

const emitter = fileURLToPath(new URL('./emitter.mjs', import.meta.url));
const pvsim = fileURLToPath(new URL('../../../packages/cli/bin/pvsim.js', import.meta.url));
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// The kinds emitter.mjs declares at run time (declareEvent), as the log reads them back.
declare module '@pvsim/eventlog' {
  interface EventPayloads {
    'test.kv.set': { key: string; value: unknown };
    'test.kv.del': { key: string };
  }
}

const kv = keyedProjection<unknown>({
  name: 'test.kv',
  on: {
    'test.kv.set': (e, m) => m.set(e.payload.key, e.payload.value),
    'test.kv.del': (e, m) => m.delete(e.payload.key),
  },
});

type Live = [string, { value: unknown; seq: number }][];

async function run(silentAt: number) {
  const root = mkdtempSync(join(tmpdir(), 'pvsim-real-'));
  dirs.push(root);
  const dir = join(root, 'events');
  const log = await startSinkWorker({ dir, header: { runId: 'real', seed: 11, topology: { name: 'synthetic' } } });
  const specs = await Promise.all([1, 2, 3].map((d) => log.channel(`daemon${d}`, d)));
  const results = await Promise.all(
    specs.map(
      (spec, i) =>
        new Promise<{ live: Live; emitted: number }>((resolve, reject) => {
          const w = new Worker(emitter, { workerData: { spec, mode: 'state', count: 5000, seed: 100 + i, silentAt: i === 1 ? silentAt : -1 } });
          w.once('message', (m) => resolve(m));
          w.once('error', reject);
        }),
    ),
  );
  const stats = await log.close();
  const entries: StateSnapshot['entries'] = {};
  for (const r of results) for (const [k, v] of r.live) entries[k] = v;
  const snapshot: StateSnapshot = { projection: 'test.kv', atSeq: stats.lastSeq, entries };
  await writeSnapshotFile(join(root, 'snapshot.msgpack'), [snapshot]);
  return { root, dir, snapshot, stats };
}

const cli = (...args: string[]) => spawnSync(process.execPath, [pvsim, ...args], { encoding: 'utf8' });

describe('a real multi-thread run and its log', () => {
  it('replays to exactly the live state, and the CLI reads the log', async () => {
    const { dir, snapshot } = await run(-1);
    const r = await replay(readEvents(dir), { projections: [kv], snapshots: [snapshot] });
    expect(r.snapshotsCompared).toBe(1);
    expect(r.divergences).toEqual([]);
    expect(r.violations).toEqual([]);
    expect(r.states.get('test.kv')!.size).toBe(Object.keys(snapshot.entries).length);

    const stats = JSON.parse(execFileSync(process.execPath, [pvsim, 'log', 'stats', dir, '--json'], { encoding: 'utf8' }));
    expect(JSON.stringify(stats)).toContain('test.kv.set');
    const shown = cli('log', 'show', dir, '--kind', 'test.kv.*', '--dom', '2', '--limit', '5', '--json');
    expect(shown.status).toBe(0);
    const lines = shown.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(5);
    expect(lines.every((e) => e.dom === 2 && e.kind.startsWith('test.kv.'))).toBe(true);
    const tl = cli('log', 'timeline', dir, '--gref', '9', '--dom', '3');
    expect(tl.status).toBe(0);
    expect(tl.stdout).toMatch(/test\.map/);
    expect(tl.stdout).not.toMatch(/granter=1\b|granter=2\b/);
    const rep = cli('replay', dir, '--check');
    expect(rep.status).toBe(0);
  }, 60_000);

  it('finds the event where live state and the log part ways', async () => {
    const { dir, snapshot } = await run(4999); // the last change: nothing later overwrites it
    const r = await replay(readEvents(dir), { projections: [kv], snapshots: [snapshot] });
    expect(r.divergences).toHaveLength(1);
    const d = r.divergences[0]!;
    expect(d.entries).toHaveLength(1);
    const key = d.entries[0]!.key;
    expect(key.startsWith('d2/')).toBe(true);
    // The first diverging event is the last one the log has for that key: the live side
    // changed the key after it without saying so.
    expect(d.entries[0]!.live?.value).toMatchObject({ silent: true });
    expect(d.firstSeq).toBe(d.entries[0]!.live?.seq);
    expect(d.firstEvent?.kind).toBe('test.kv.set');
    expect(d.firstEvent?.dom).toBe(2);
    expect((d.firstEvent?.payload as { key: string }).key).toBe(key);
  }, 60_000);
});
