import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SegmentWriter } from './format.js';
import { readEvents } from './reader.js';
import type { EventRecord } from './schema.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
const fresh = () => {
  const d = mkdtempSync(join(tmpdir(), 'pvsim-fmt-'));
  dirs.push(d);
  return d;
};
async function all(dir: string): Promise<EventRecord[]> {
  const out: EventRecord[] = [];
  for await (const e of readEvents(dir)) out.push(e);
  return out;
}

describe('SegmentWriter', () => {
  it('writes blocks larger than the default limit intact', async () => {
    const dir = fresh();
    const w = new SegmentWriter(dir, { runId: 'r' }, undefined, { blockBytes: 256 << 10 });
    for (let i = 1; i <= 20_000; i++) w.addEvent({ seq: i, tsNs: i, dom: 0, thread: 0, kind: 'a.b', payload: { i, s: 'x'.repeat(i % 40) } });
    await w.close();
    const got = await all(dir);
    expect(got).toHaveLength(20_000);
    expect(got.every((e, k) => (e.payload as { i: number }).i === k + 1)).toBe(true);
  });

  it('keeps each event’s payload version when one kind appears with several', async () => {
    const dir = fresh();
    const w = new SegmentWriter(dir, { runId: 'r' });
    w.addEvent({ seq: 1, tsNs: 1, dom: 0, thread: 0, kind: 'a.b', payload: { x: 1 }, v: 1 });
    w.addEvent({ seq: 2, tsNs: 2, dom: 0, thread: 0, kind: 'a.b', payload: { x: 2 }, v: 3 });
    w.addEvent({ seq: 3, tsNs: 3, dom: 0, thread: 0, kind: 'a.b', payload: { x: 3 }, v: 1 });
    await w.close();
    expect((await all(dir)).map((e) => [e.kind, e.v])).toEqual([
      ['a.b', 1],
      ['a.b', 3],
      ['a.b', 1],
    ]);
  });
});
