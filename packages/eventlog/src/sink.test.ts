import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { VirtualClock } from '@pvsim/runtime';
import { createLogChannel, createLogHub } from './channel.js';
import { declareEvent, type EventRecord } from './schema.js';
import { LogSink } from './sink.js';
import { EventWriter } from './writer.js';

declare module './schema.js' {
  interface EventPayloads {
    'test.tick': { n: number; blob?: string };
  }
}
declareEvent({ kind: 'test.tick', version: 1 });

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(opts: { order?: number; fullWaitUs?: number; writers?: number; gapTimeoutMs?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'pvsim-sink-'));
  dirs.push(dir);
  const clock = new VirtualClock();
  const hub = createLogHub(0);
  const seen: EventRecord[] = [];
  const sink = new LogSink({ dir, hub, clock, header: { runId: 'test-run', seed: 1 }, gapTimeoutMs: opts.gapTimeoutMs ?? 100, onRecord: (e) => seen.push(e) });
  const writers: EventWriter[] = [];
  for (let i = 1; i <= (opts.writers ?? 2); i++) {
    const spec = createLogChannel(hub, i, `w${i}`, i, opts.order ?? 2);
    sink.attach(spec);
    writers.push(new EventWriter(spec, clock, { fullWaitUs: opts.fullWaitUs ?? 0 }));
  }
  return { dir, clock, hub, sink, writers, seen };
}

describe('writers and sink (in-process, virtual time)', () => {
  it('merges several writers into one contiguous order and announces each writer', async () => {
    const { sink, writers, seen, clock, dir } = setup({ writers: 3 });
    for (let i = 0; i < 300; i++) {
      writers[i % 3]!.emit('test.tick', { n: i });
      if (i % 7 === 0) clock.advance(0.001);
      if (i % 50 === 0) sink.drain();
    }
    const stats = await sink.close();
    const ticks = seen.filter((e) => e.kind === 'test.tick');
    expect(ticks.map((e) => (e.payload as { n: number }).n)).toEqual([...Array(300).keys()]);
    expect(seen.map((e) => e.seq)).toEqual([...Array(seen.length).keys()]);
    expect(seen.filter((e) => e.kind === 'log.writer').map((e) => e.payload)).toEqual([
      { writer: 1, name: 'w1', dom: 1 },
      { writer: 2, name: 'w2', dom: 2 },
      { writer: 3, name: 'w3', dom: 3 },
    ]);
    expect(ticks[1]).toMatchObject({ dom: 2, thread: 2, kind: 'test.tick', v: 1 });
    expect(seen.at(-1)).toMatchObject({ kind: 'log.end', payload: { lastSeq: seen.at(-1)!.seq } });
    expect(stats).toMatchObject({ records: seen.length, writers: 3, gaps: 0, dropped: 0, corruptParts: 0 });
    expect(readdirSync(dir)).toEqual(['seg-000000.pvlog']);
  });

  it('carries records larger than a slot across several slots', async () => {
    const { sink, writers, seen } = setup({ writers: 1 });
    const blob = 'x'.repeat(5000) + 'end';
    writers[0]!.emit('test.tick', { n: 1, blob });
    writers[0]!.emit('test.tick', { n: 2 });
    await sink.close();
    const ticks = seen.filter((e) => e.kind === 'test.tick');
    expect(ticks.map((e) => e.payload)).toEqual([{ n: 1, blob }, { n: 2 }]);
  });

  it('drops with a count when the ring stays full, and the sink reports it; no number is lost', async () => {
    const { sink, writers, seen } = setup({ writers: 1, order: 0, fullWaitUs: 0 });
    let ok = 0;
    for (let i = 0; i < 40; i++) if (writers[0]!.emit('test.tick', { n: i }) >= 0) ok++;
    expect(ok).toBe(16); // a one-page ring of 128-byte slots holds 16
    expect(writers[0]!.dropped).toBe(24);
    sink.drain();
    expect(writers[0]!.emit('test.tick', { n: 99 })).toBeGreaterThan(0);
    const stats = await sink.close();
    expect(stats).toMatchObject({ dropped: 24, gaps: 0 });
    expect(seen.filter((e) => e.kind === 'log.dropped').map((e) => e.payload)).toEqual([{ writer: 1, count: 24, total: 24, reason: 'writer buffer full' }]);
    expect(seen.map((e) => e.seq)).toEqual([...Array(seen.length).keys()]);
  });

  it('declares numbers taken but never published lost, after the timeout and at close', async () => {
    const { sink, writers, seen, hub, clock } = setup({ writers: 2, gapTimeoutMs: 100 });
    const seq = new BigInt64Array(hub.seq);
    writers[0]!.emit('test.tick', { n: 0 });
    const lost = Number(Atomics.add(seq, 0, 1n)); // a writer that died mid-emit
    writers[1]!.emit('test.tick', { n: 1 });
    sink.drain();
    expect(seen.some((e) => e.kind === 'log.gap')).toBe(false); // still waiting for it
    clock.advance(50);
    sink.drain();
    expect(seen.some((e) => e.kind === 'log.gap')).toBe(false);
    clock.advance(60);
    sink.drain();
    const gap = seen.find((e) => e.kind === 'log.gap');
    expect(gap?.payload).toMatchObject({ from: lost, to: lost });
    expect(seen.filter((e) => e.kind === 'test.tick').map((e) => (e.payload as { n: number }).n)).toEqual([0, 1]);
    Atomics.add(seq, 0, 2n); // two more never published
    const stats = await sink.close();
    expect(stats.gaps).toBe(2);
    expect(stats.lostSeqs).toBe(3);
    const last = seen.filter((e) => e.kind === 'log.gap').at(-1)!;
    expect((last.payload as { reason: string }).reason).toMatch(/never published/);
  });

  it('keeps the order of a thread’s events even when the sink drains mid-record', async () => {
    const { sink, writers, seen } = setup({ writers: 1, order: 1 });
    for (let i = 0; i < 200; i++) {
      writers[0]!.emit('test.tick', { n: i, blob: i % 10 === 0 ? 'y'.repeat(300) : undefined });
      sink.drain();
    }
    await sink.close();
    expect(seen.filter((e) => e.kind === 'test.tick').map((e) => (e.payload as { n: number }).n)).toEqual([...Array(200).keys()]);
  });
});
