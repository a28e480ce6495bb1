import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtemp, mkdir, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { FRAME_HEADER_BYTES, INDEX_EVERY_RECORDS, LogCorruptError, SegmentWriter, segmentName, encodeSegmentPrefix, writeFrame } from './format.js';
import type { EventRecord } from './schema.js';
import { LogOpenError, matchesFilter, openLog, readEventBatches, readEvents, type LogFilter, type LogWarning, type ReadOptions } from './reader.js';

const packr = new Packr({ useRecords: false });
let root: string;
let n = 0;
const freshDir = (): string => join(root, `log-${n++}`);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'pvsim-reader-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function ev(seq: number, tsNs: number, dom: number, thread: number, kind: string, payload: Record<string, unknown>): EventRecord {
  return { seq, tsNs, dom, thread, kind, v: 1, payload } as EventRecord;
}

const encode = (e: EventRecord): Buffer => packr.pack([e.seq, e.tsNs, e.dom, e.thread, e.kind, e.v, e.payload]);

/** Write `events` with SegmentWriter; `close: false` leaves the last segment unclosed (as a crash would). */
async function writeLog(dir: string, events: readonly EventRecord[], opts: { segmentBytes?: number; close?: boolean } = {}): Promise<void> {
  const w = new SegmentWriter(dir, { runId: 'run-test', seed: 7, topology: { name: 'two-guests' } }, opts.segmentBytes);
  for (const e of events) w.add(e.seq, e.tsNs, encode(e));
  if (opts.close === false) await w.flush();
  else await w.close();
}

async function readAll(path: string, filter?: LogFilter, opts?: ReadOptions): Promise<EventRecord[]> {
  const out: EventRecord[] = [];
  for await (const e of readEvents(path, filter, opts)) out.push(e);
  return out;
}

/** Read until the reader throws; returns what was yielded and the error. */
async function readUntilError(path: string, opts?: ReadOptions): Promise<{ got: EventRecord[]; err: unknown }> {
  const got: EventRecord[] = [];
  try {
    for await (const e of readEvents(path, {}, opts)) got.push(e);
  } catch (err) {
    return { got, err };
  }
  return { got, err: null };
}

/** Byte offset of each record's frame in a single-segment log, from the encoded sizes. */
async function frameOffsets(file: string, events: readonly EventRecord[]): Promise<number[]> {
  const info = await openLog(file);
  let off = info.segments[0]!.recordsOffset;
  return events.map((e) => {
    const at = off;
    off += FRAME_HEADER_BYTES + encode(e).length;
    return at;
  });
}

const KINDS = ['grant.map', 'grant.unmap', 'grant.unmap.deferred', 'evtchn.send', 'xenbus.state', 'page.get'];

/** A run-like stream: increasing seqs with an occasional gap, nearly increasing times. */
function makeEvents(count: number, seed = 1): EventRecord[] {
  let x = seed;
  const rnd = (m: number): number => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return (x >>> 8) % m;
  };
  const out: EventRecord[] = [];
  let seq = 1;
  let ts = 1000;
  for (let i = 0; i < count; i++) {
    seq += rnd(50) === 0 ? 2 : 1;
    ts += 100 + rnd(1000);
    const kind = KINDS[rnd(KINDS.length)]!;
    const dom = rnd(4);
    const payload: Record<string, unknown> =
      kind.startsWith('grant.')
        ? { gref: rnd(64), granter: rnd(4), handle: rnd(512), ro: rnd(2) === 1 }
        : kind === 'evtchn.send'
          ? { port: rnd(16), remoteDom: rnd(4), remotePort: rnd(16) }
          : kind === 'page.get'
            ? { grefs: [rnd(64), rnd(64)], count: rnd(9) }
            : { state: 'Connected', path: `/local/domain/${dom}/device/vbd/51712` };
    out.push(ev(seq, ts, dom, rnd(5), kind, payload));
  }
  return out;
}

describe('openLog', () => {
  it('lists segments in numeric order with headers, footers and sizes', async () => {
    const dir = freshDir();
    const events = makeEvents(3000);
    await writeLog(dir, events, { segmentBytes: 32 << 10 });
    const info = await openLog(dir);
    expect(info.isDirectory).toBe(true);
    expect(info.segments.length).toBeGreaterThan(3);
    expect(info.segments.map((s) => s.number)).toEqual(info.segments.map((_, i) => i));
    expect(info.header).toMatchObject({ runId: 'run-test', seed: 7, topology: { name: 'two-guests' }, segment: 0 });
    expect(info.truncatedTail).toBeNull();
    const total = info.segments.reduce((a, s) => a + s.footer!.records, 0);
    expect(total).toBe(events.length);
    expect(info.segments[0]!.footer!.firstSeq).toBe(events[0]!.seq);
    expect(info.segments.at(-1)!.footer!.lastSeq).toBe(events.at(-1)!.seq);
    expect(info.bytes).toBe(info.segments.reduce((a, s) => a + s.bytes, 0));
  });

  it('opens one segment file on its own', async () => {
    const dir = freshDir();
    await writeLog(dir, makeEvents(10));
    const info = await openLog(join(dir, segmentName(0)));
    expect(info.isDirectory).toBe(false);
    expect(info.segments).toHaveLength(1);
    expect(info.segments[0]!.footer!.records).toBe(10);
  });

  it('reports an unclosed segment with a null footer', async () => {
    const dir = freshDir();
    await writeLog(dir, makeEvents(10), { close: false });
    const info = await openLog(dir);
    expect(info.segments[0]!.footer).toBeNull();
    expect(info.segments[0]!.footerOffset).toBeNull();
  });

  it('names an empty directory and a missing path clearly', async () => {
    const dir = freshDir();
    await mkdir(dir);
    await writeFile(join(dir, 'notes.txt'), 'hello');
    await expect(openLog(dir)).rejects.toThrow(LogOpenError);
    await expect(openLog(dir)).rejects.toThrow(/no log segments \(seg-NNNNNN\.pvlog\) in this directory/);
    await expect(openLog(join(dir, 'nope'))).rejects.toThrow(/nope: no such file or directory/);
  });

  it('rejects a garbage header at offset 0, a wrong version at 8, an undecodable header at 16', async () => {
    const dir = freshDir();
    await mkdir(dir);
    const file = join(dir, segmentName(0));
    await writeFile(file, Buffer.from('this is not a pvsim log, just some text that is long enough'));
    await expect(openLog(dir)).rejects.toMatchObject({ name: 'LogCorruptError', file, offset: 0 });

    const good = encodeSegmentPrefix({ format: 1, runId: 'r', segment: 0, createdAt: 'now' });
    const wrongVersion = Buffer.from(good);
    wrongVersion.writeUInt32LE(9, 8);
    await writeFile(file, wrongVersion);
    await expect(openLog(dir)).rejects.toMatchObject({ name: 'LogCorruptError', offset: 8, reason: expect.stringMatching(/version 9/) });

    const badHeader = Buffer.from(good);
    badHeader.fill(0xc1, 16); // 0xc1 is never used in msgpack
    await writeFile(file, badHeader);
    await expect(openLog(dir)).rejects.toMatchObject({ name: 'LogCorruptError', offset: 16 });

    const notAHeader = Buffer.concat([Buffer.from(good.subarray(0, 12)), Buffer.from([1, 0, 0, 0, 0x2a])]);
    await writeFile(file, notAHeader);
    await expect(openLog(dir)).rejects.toMatchObject({ name: 'LogCorruptError', offset: 16, reason: 'segment header is not a map' });
  });

  it('rejects a missing segment in the middle of a log', async () => {
    const dir = freshDir();
    await writeLog(dir, makeEvents(2000), { segmentBytes: 16 << 10 });
    await rm(join(dir, segmentName(1)));
    await expect(openLog(dir)).rejects.toMatchObject({ name: 'LogCorruptError', reason: expect.stringMatching(/segment 1 is missing/) });
  });

  it('rejects a damaged footer of a closed segment', async () => {
    const dir = freshDir();
    await writeLog(dir, makeEvents(100));
    const file = join(dir, segmentName(0));
    const info = await openLog(dir);
    const footerOffset = info.segments[0]!.footerOffset!;
    const bytes = await readFile(file);
    bytes[footerOffset + 14]! ^= 0x55;
    await writeFile(file, bytes);
    await expect(openLog(dir)).rejects.toMatchObject({ name: 'LogCorruptError', offset: footerOffset, reason: 'footer CRC mismatch' });
  });
});

describe('readEventBatches / readEvents', () => {
  it('round-trips through SegmentWriter across several segments', async () => {
    const dir = freshDir();
    const events = makeEvents(5000);
    await writeLog(dir, events, { segmentBytes: 24 << 10 });
    expect((await openLog(dir)).segments.length).toBeGreaterThan(5);
    expect(await readAll(dir)).toEqual(events);
    let batches = 0;
    let total = 0;
    for await (const b of readEventBatches(dir)) {
      expect(b.length).toBeGreaterThan(0);
      batches++;
      total += b.length;
    }
    expect(total).toBe(events.length);
    expect(batches).toBeGreaterThanOrEqual(5);
  });

  it('reads a log much larger than the chunk size, frames straddling chunk borders', async () => {
    const dir = freshDir();
    const events = makeEvents(3000, 5);
    // Frames longer than a chunk, too: one read is not enough to hold them.
    events[100] = ev(events[100]!.seq, events[100]!.tsNs, 1, 1, 'blob.big', { data: 'x'.repeat(5000), n: 1 });
    events[2000] = ev(events[2000]!.seq, events[2000]!.tsNs, 1, 1, 'blob.big', { data: 'y'.repeat(70_000), n: 2 });
    await writeLog(dir, events, { segmentBytes: 96 << 10 });
    for (const chunkBytes of [64, 100, 257, 4096]) expect(await readAll(dir, {}, { chunkBytes })).toEqual(events);
  });

  it('reads an unclosed last segment in full', async () => {
    const dir = freshDir();
    const events = makeEvents(2000);
    await writeLog(dir, events, { segmentBytes: 20 << 10, close: false });
    const info = await openLog(dir);
    expect(info.segments.at(-1)!.footer).toBeNull();
    expect(info.segments[0]!.footer).not.toBeNull();
    expect(await readAll(dir)).toEqual(events);
  });

  it('stops early when the consumer breaks', async () => {
    const dir = freshDir();
    await writeLog(dir, makeEvents(500));
    let k = 0;
    for await (const _ of readEvents(dir)) if (++k === 3) break;
    expect(k).toBe(3);
  });
});

describe('filters', () => {
  const events = makeEvents(4000, 11);
  let dir: string;
  beforeAll(async () => {
    dir = freshDir();
    await writeLog(dir, events, { segmentBytes: 40 << 10 });
  });
  const check = async (f: LogFilter): Promise<EventRecord[]> => {
    const got = await readAll(dir, f);
    expect(got).toEqual(events.filter((e) => matchesFilter(e, f)));
    return got;
  };

  it('by exact kind and by prefix pattern', async () => {
    const exact = await check({ kinds: ['grant.map'] });
    expect(exact.length).toBeGreaterThan(0);
    expect(exact.every((e) => e.kind === 'grant.map')).toBe(true);
    const prefix = await check({ kinds: ['grant.*'] });
    expect(new Set(prefix.map((e) => e.kind))).toEqual(new Set(['grant.map', 'grant.unmap', 'grant.unmap.deferred']));
    const mixed = await check({ kinds: ['grant.unmap.*', 'page.get'] });
    expect(new Set(mixed.map((e) => e.kind))).toEqual(new Set(['grant.unmap.deferred', 'page.get']));
    expect(await readAll(dir, { kinds: ['*'] })).toHaveLength(events.length);
  });

  it('by domain and by thread', async () => {
    const d = await check({ doms: [2, 3] });
    expect(d.length).toBeGreaterThan(0);
    expect(d.every((e) => e.dom === 2 || e.dom === 3)).toBe(true);
    const t = await check({ threads: [4] });
    expect(t.length).toBeGreaterThan(0);
    expect(t.every((e) => e.thread === 4)).toBe(true);
  });

  it('by sequence range and by time range (inclusive)', async () => {
    const a = events[1234]!;
    const b = events[3456]!;
    const bySeq = await check({ fromSeq: a.seq, toSeq: b.seq });
    expect(bySeq[0]).toEqual(a);
    expect(bySeq.at(-1)).toEqual(b);
    const byTime = await check({ fromNs: a.tsNs, toNs: b.tsNs });
    expect(byTime[0]).toEqual(a);
    expect(byTime.at(-1)).toEqual(b);
    expect(await check({ fromSeq: events.at(-1)!.seq + 1 })).toEqual([]);
    expect(await check({ toNs: 0 })).toEqual([]);
  });

  it('by key: a scalar field, a plural array field, an array field', async () => {
    const g = await check({ keys: { gref: 42 } });
    expect(g.some((e) => e.kind === 'page.get')).toBe(true); // matched through payload.grefs
    expect(g.some((e) => e.kind === 'grant.map')).toBe(true);
    expect(g.every((e) => e.payload.gref === 42 || (e.payload.grefs as number[]).includes(42))).toBe(true);
    await check({ keys: { grefs: 7 } });
    await check({ keys: { port: 3, remoteDom: 1 } });
    await check({ keys: { state: 'Connected' } });
    await check({ keys: { ro: true }, kinds: ['grant.map'], doms: [1] });
    expect(await readAll(dir, { keys: { constructor: 1 } })).toEqual([]);
  });

  it('matchesFilter follows the documented rules', () => {
    const e = ev(5, 500, 3, 2, 'grant.map', { gref: 42, grefs: [1, 2], tags: ['a', 'b'], granter: 3 });
    expect(matchesFilter(e, {})).toBe(true);
    expect(matchesFilter(e, { kinds: ['grant.*'] })).toBe(true);
    expect(matchesFilter(e, { kinds: ['grant'] })).toBe(false);
    expect(matchesFilter(e, { kinds: ['gran*'] })).toBe(true);
    expect(matchesFilter(e, { keys: { gref: 42 } })).toBe(true);
    expect(matchesFilter(e, { keys: { gref: 2 } })).toBe(true);
    expect(matchesFilter(e, { keys: { gref: 3 } })).toBe(false);
    expect(matchesFilter(e, { keys: { tags: 'b' } })).toBe(true);
    expect(matchesFilter(e, { keys: { gref: '42' } })).toBe(false);
    expect(matchesFilter(e, { fromSeq: 5, toSeq: 5, fromNs: 500, toNs: 500 })).toBe(true);
    expect(matchesFilter(e, { fromSeq: 6 })).toBe(false);
    expect(matchesFilter(e, { doms: [3], threads: [1] })).toBe(false);
  });
});

describe('seeking', () => {
  // Damage a record early in the log: a reader that really skips never sees it.
  const events = makeEvents(5 * INDEX_EVERY_RECORDS, 3);
  let dir: string;
  beforeAll(async () => {
    dir = freshDir();
    await writeLog(dir, events, { segmentBytes: 1 << 30 });
    const file = join(dir, segmentName(0));
    const offsets = await frameOffsets(file, events);
    const fh = await open(file, 'r+');
    await fh.write(Buffer.from([0xff]), 0, 1, offsets[10]! + FRAME_HEADER_BYTES + 2);
    await fh.close();
  });

  it('a full read hits the damage', async () => {
    const { got, err } = await readUntilError(dir);
    expect(got).toEqual(events.slice(0, 10));
    expect(err).toBeInstanceOf(LogCorruptError);
  });

  it('fromSeq enters the segment at the index entry before it', async () => {
    const from = events[2 * INDEX_EVERY_RECORDS + 5]!.seq;
    expect(await readAll(dir, { fromSeq: from })).toEqual(events.filter((e) => e.seq >= from));
  });

  it('fromNs does the same with the disorder margin', async () => {
    const from = events[3 * INDEX_EVERY_RECORDS + 100]!.tsNs;
    expect(await readAll(dir, { fromNs: from }, { tsDisorderNs: 1000 })).toEqual(events.filter((e) => e.tsNs >= from));
  });

  it('skips whole segments by their footers', async () => {
    const d = freshDir();
    const evs = makeEvents(3000, 9);
    await writeLog(d, evs, { segmentBytes: 16 << 10 });
    const info = await openLog(d);
    // Wreck every frame of the first segment; reads that start later never open it.
    const first = info.segments[0]!;
    const bytes = await readFile(first.file);
    bytes.fill(0x5a, first.recordsOffset, first.footerOffset!);
    await writeFile(first.file, bytes);
    const from = info.segments[2]!.footer!.firstSeq!;
    expect(await readAll(d, { fromSeq: from })).toEqual(evs.filter((e) => e.seq >= from));
    const fromNs = info.segments[2]!.footer!.firstTsNs!;
    expect(await readAll(d, { fromNs }, { tsDisorderNs: 0 })).toEqual(evs.filter((e) => e.tsNs >= fromNs));
    await expect(readAll(d)).rejects.toMatchObject({ name: 'LogCorruptError', file: first.file, offset: first.recordsOffset });
  });

  it('toSeq stops reading: damage after the range is never reached', async () => {
    const d = freshDir();
    const evs = makeEvents(200, 4);
    await writeLog(d, evs);
    const file = join(d, segmentName(0));
    const offsets = await frameOffsets(file, evs);
    const bytes = await readFile(file);
    bytes.fill(0, offsets[150]!, offsets[160]!);
    await writeFile(file, bytes);
    expect(await readAll(d, { toSeq: evs[100]!.seq })).toEqual(evs.slice(0, 101));
  });
});

describe('corruption and truncation', () => {
  it('a flipped byte mid-file is a LogCorruptError at that frame, after the records before it', async () => {
    const dir = freshDir();
    const events = makeEvents(400);
    await writeLog(dir, events);
    const file = join(dir, segmentName(0));
    const offsets = await frameOffsets(file, events);
    const bytes = await readFile(file);
    bytes[offsets[200]! + FRAME_HEADER_BYTES + 5]! ^= 0x10;
    await writeFile(file, bytes);
    const { got, err } = await readUntilError(dir);
    expect(got).toEqual(events.slice(0, 200));
    expect(err).toBeInstanceOf(LogCorruptError);
    expect(err).toMatchObject({ file, offset: offsets[200], reason: 'frame CRC mismatch' });
    expect((err as Error).message).toBe(`${file}: corrupt log at byte offset ${offsets[200]}: frame CRC mismatch`);
  });

  it('a damaged length word is a LogCorruptError at that frame', async () => {
    const dir = freshDir();
    const events = makeEvents(50);
    await writeLog(dir, events);
    const file = join(dir, segmentName(0));
    const offsets = await frameOffsets(file, events);
    const bytes = await readFile(file);
    bytes.writeUInt32LE(0, offsets[20]!);
    await writeFile(file, bytes);
    const { got, err } = await readUntilError(dir);
    expect(got).toEqual(events.slice(0, 20));
    expect(err).toMatchObject({ name: 'LogCorruptError', offset: offsets[20], reason: expect.stringMatching(/frame length 0/) });
  });

  it('a valid frame holding a malformed record is a LogCorruptError naming the record problem', async () => {
    const dir = freshDir();
    const w = new SegmentWriter(dir, { runId: 'r' });
    w.add(1, 10, encode(ev(1, 10, 0, 0, 'a.b', {})));
    w.add(2, 20, packr.pack([2, 20, 0, 0, 'a.b', 1, [1, 2]]));
    await w.close();
    const { got, err } = await readUntilError(dir);
    expect(got).toHaveLength(1);
    expect(err).toMatchObject({ name: 'LogCorruptError', reason: 'bad record: payload is not a map' });
  });

  it('sequence numbers going backwards are corruption', async () => {
    const dir = freshDir();
    // SegmentWriter refuses to write this, so lay the frames by hand.
    const recs = [ev(1, 5, 0, 0, 'a.b', {}), ev(5, 10, 0, 0, 'a.b', {}), ev(4, 20, 0, 0, 'a.b', {})].map(encode);
    const prefix = encodeSegmentPrefix({ format: 1, runId: 'r', segment: 0, createdAt: new Date(0).toISOString() });
    const body = Buffer.alloc(recs.reduce((n, r) => n + 8 + r.length, 0));
    recs.reduce((off, r) => writeFrame(body, off, r), 0);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, segmentName(0)), Buffer.concat([prefix, body]));
    await expect(readAll(dir)).rejects.toMatchObject({ name: 'LogCorruptError', reason: expect.stringMatching(/seq 4 follows seq 5/) });
  });

  it('a file cut in the middle of its last frame: an error naming the offset, or all complete records and one warning', async () => {
    const dir = freshDir();
    const events = makeEvents(300);
    await writeLog(dir, events);
    const file = join(dir, segmentName(0));
    const offsets = await frameOffsets(file, events);
    await truncate(file, offsets[299]! + 11);
    expect((await openLog(dir)).segments[0]!.footer).toBeNull();

    const { got, err } = await readUntilError(dir);
    expect(got).toEqual(events.slice(0, 299));
    expect(err).toMatchObject({ name: 'LogCorruptError', file, offset: offsets[299], reason: expect.stringMatching(/^truncated: last frame is cut off/) });

    const warnings: LogWarning[] = [];
    expect(await readAll(dir, {}, { tolerateTruncatedTail: true, onWarning: (w) => warnings.push(w) })).toEqual(events.slice(0, 299));
    expect(warnings).toEqual([{ file, offset: offsets[299], reason: expect.stringMatching(/^truncated/) }]);
  });

  it('a file cut inside a frame header, and inside the footer, are truncated tails too', async () => {
    const dir = freshDir();
    const events = makeEvents(30);
    await writeLog(dir, events);
    const file = join(dir, segmentName(0));
    const offsets = await frameOffsets(file, events);
    const info = await openLog(dir);
    const footerOffset = info.segments[0]!.footerOffset!;
    await truncate(file, footerOffset + 20);
    const warnings: LogWarning[] = [];
    expect(await readAll(dir, {}, { tolerateTruncatedTail: true, onWarning: (w) => warnings.push(w) })).toEqual(events);
    expect(warnings).toMatchObject([{ offset: footerOffset, reason: expect.stringMatching(/footer or trailer/) }]);
    await truncate(file, offsets[29]! + 3);
    await expect(readAll(dir)).rejects.toMatchObject({ offset: offsets[29], reason: expect.stringMatching(/truncated/) });
  });

  it('a last segment cut inside its header is a truncated tail', async () => {
    const dir = freshDir();
    const events = makeEvents(2000);
    await writeLog(dir, events, { segmentBytes: 20 << 10 });
    const info = await openLog(dir);
    const last = info.segments.at(-1)!;
    await truncate(last.file, 20);
    const after = await openLog(dir);
    expect(after.truncatedTail).toMatchObject({ file: last.file, offset: 16 });
    await expect(readAll(dir)).rejects.toMatchObject({ name: 'LogCorruptError', file: last.file, offset: 16 });
    const warnings: LogWarning[] = [];
    const got = await readAll(dir, {}, { tolerateTruncatedTail: true, onWarning: (w) => warnings.push(w) });
    expect(got).toEqual(events.filter((e) => e.seq < last.footer!.firstSeq!));
    expect(warnings).toHaveLength(1);
  });

  it('a truncated segment that is not the last is always an error', async () => {
    const dir = freshDir();
    await writeLog(dir, makeEvents(2000), { segmentBytes: 20 << 10 });
    const info = await openLog(dir);
    const seg = info.segments[1]!;
    await truncate(seg.file, seg.recordsOffset + 100);
    await expect(readAll(dir, {}, { tolerateTruncatedTail: true })).rejects.toMatchObject({ file: seg.file, reason: expect.stringMatching(/not the last segment/) });
  });
});

describe('properties', () => {
  const payloadArb = fc.dictionary(
    fc.stringMatching(/^[a-z][a-zA-Z0-9]{0,7}$/),
    fc.oneof(fc.integer({ min: -1e9, max: 1e12 }), fc.string({ maxLength: 40 }), fc.boolean(), fc.array(fc.nat(1000), { maxLength: 5 })),
    { maxKeys: 5 },
  );
  const eventArb = fc.record({
    dSeq: fc.integer({ min: 1, max: 3 }),
    tsNs: fc.integer({ min: 0, max: 2 ** 40 }),
    dom: fc.integer({ min: 0, max: 0xffff }),
    thread: fc.nat(64),
    kind: fc.constantFrom(...KINDS),
    payload: payloadArb,
  });
  const eventsArb = fc.array(eventArb, { minLength: 0, maxLength: 300 }).map((xs) => {
    let seq = 0;
    return xs.map((x) => ev((seq += x.dSeq), x.tsNs, x.dom, x.thread, x.kind, x.payload));
  });

  it('whatever is written reads back equal, across segment sizes and chunk sizes', async () => {
    await fc.assert(
      fc.asyncProperty(eventsArb, fc.integer({ min: 512, max: 64 << 10 }), fc.integer({ min: 64, max: 8192 }), fc.boolean(), async (events, segmentBytes, chunkBytes, close) => {
        const dir = freshDir();
        await writeLog(dir, events, { segmentBytes, close });
        expect(await readAll(dir, {}, { chunkBytes })).toEqual(events);
        await rm(dir, { recursive: true });
      }),
      { seed: 20240611, numRuns: 60 },
    );
  });

  it('a log cut anywhere yields a prefix of what was written, then an error or a warning — never a wrong record', async () => {
    await fc.assert(
      fc.asyncProperty(eventsArb, fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 64, max: 4096 }), fc.boolean(), async (events, cutAt, chunkBytes, close) => {
        const dir = freshDir();
        await writeLog(dir, events, { close });
        const file = join(dir, segmentName(0));
        const size = (await readFile(file)).length;
        const cut = Math.floor(cutAt * size);
        await truncate(file, cut);

        const strict = await readUntilError(dir, { chunkBytes });
        expect(events.slice(0, strict.got.length)).toEqual(strict.got);
        if (strict.err !== null) expect(strict.err).toBeInstanceOf(LogCorruptError);

        const warnings: LogWarning[] = [];
        const lenient = await readUntilError(dir, { chunkBytes, tolerateTruncatedTail: true, onWarning: (w) => warnings.push(w) });
        expect(lenient.err).toBeNull();
        expect(events.slice(0, lenient.got.length)).toEqual(lenient.got);
        expect(lenient.got).toEqual(strict.got);
        // Exactly one warning unless the cut fell on a frame boundary (then no error either).
        expect(warnings.length).toBe(strict.err === null ? 0 : 1);
        if (cut === size && close) expect(lenient.got).toEqual(events);
        await rm(dir, { recursive: true });
      }),
      { seed: 42, numRuns: 150 },
    );
  });
});
