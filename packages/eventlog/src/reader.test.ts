import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtemp, mkdir, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Unpackr } from 'msgpackr';
import {
  FRAME_HEADER_BYTES,
  LOG_FORMAT_VERSION,
  LogCorruptError,
  SegmentWriter,
  segmentName,
  encodeSegmentPrefix,
  writeFrame,
  type SegmentHeader,
} from './format.js';
import {
  KIND_DEF_ID,
  KindCodec,
  REC_BYTES_MAX,
  REC_ENC,
  REC_HEADER_BYTES,
  REC_KIND,
  REC_LEN,
  REC_SEQ,
  REC_TS,
  encodeKindDef,
  encodeRecordInto,
  type KindDef,
} from './record.js';
import { declareEvent, type EventRecord } from './schema.js';
import { LogOpenError, matchesFilter, openLog, readEventBatches, readEvents, type LogFilter, type LogWarning, type ReadOptions } from './reader.js';

const unpackr = new Unpackr({ useRecords: false });
let root: string;
let n = 0;
const freshDir = (): string => join(root, `log-${n++}`);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'pvsim-reader-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

// Kinds with declared fields are written as binary structs when the payload fits them exactly,
// as msgpack maps otherwise; both must read back the same.
declareEvent({
  kind: 'test.fields',
  version: 1,
  fields: [['a', 'u8'], ['b', 'u16'], ['c', 'u32'], ['d', 'i32'], ['e', 'f64'], ['f', 'bool'], ['g', 'str']],
});
declareEvent({ kind: 'test.small', version: 1, fields: [['x', 'u32'], ['y', 'bool']] });

function ev(seq: number, tsNs: number, dom: number, thread: number, kind: string, payload: Record<string, unknown>): EventRecord {
  return { seq, tsNs, dom, thread, kind, v: 1, payload } as EventRecord;
}

interface WriteOpts {
  segmentBytes?: number;
  /** Seal a block once it holds this many bytes (default 64 KiB): small values give many blocks. */
  blockBytes?: number;
  close?: boolean;
}

/** Write `events` with SegmentWriter; `close: false` leaves the last segment unclosed (as a crash would). */
async function writeLog(dir: string, events: readonly EventRecord[], opts: WriteOpts = {}): Promise<void> {
  const w = new SegmentWriter(dir, { runId: 'run-test', seed: 7, topology: { name: 'two-guests' } }, opts.segmentBytes, { blockBytes: opts.blockBytes });
  for (const e of events) w.addEvent(e);
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

interface BlockAt {
  /** File offset of the block's frame header. */
  offset: number;
  /** Bytes of records in the block (the frame's length word). */
  bytes: number;
  /** Index (among event records, in file order) of the block's first event, and how many it holds. */
  firstEvent: number;
  events: number;
  /** Kind definitions in the block. */
  defs: { offset: number; def: KindDef }[];
}

interface SegmentLayout {
  recordsOffset: number;
  /** Where the blocks end: the footer of a closed segment, else the end of the file. */
  end: number;
  blocks: BlockAt[];
  /** Every event record in file order: its offset, its block, and its header fields. */
  records: { offset: number; block: number; kindId: number; seq: number; tsNs: number }[];
}

/**
 * Where every block and record of one (intact) segment file lies, walked independently of the
 * reader from the format's definition.
 */
async function layout(file: string): Promise<SegmentLayout> {
  const seg = (await openLog(file)).segments[0]!;
  const b = await readFile(file);
  const end = seg.footerOffset ?? b.length;
  const blocks: BlockAt[] = [];
  const records: SegmentLayout['records'] = [];
  let p = seg.recordsOffset;
  while (p < end) {
    const bytes = b.readUInt32LE(p);
    const blockEnd = p + FRAME_HEADER_BYTES + bytes;
    const block: BlockAt = { offset: p, bytes, firstEvent: records.length, events: 0, defs: [] };
    let q = p + FRAME_HEADER_BYTES;
    while (q < blockEnd) {
      const len = b.readUInt16LE(q + REC_LEN);
      const kindId = b.readUInt16LE(q + REC_KIND);
      if (kindId === KIND_DEF_ID) block.defs.push({ offset: q, def: unpackr.unpack(b.subarray(q + REC_HEADER_BYTES, q + len)) as KindDef });
      else {
        records.push({ offset: q, block: blocks.length, kindId, seq: b.readDoubleLE(q + REC_SEQ), tsNs: b.readDoubleLE(q + REC_TS) });
        block.events++;
      }
      q += len;
    }
    expect(q).toBe(blockEnd);
    blocks.push(block);
    p = blockEnd;
  }
  expect(p).toBe(end);
  return { recordsOffset: seg.recordsOffset, end, blocks, records };
}

// ---------------------------------------------------------------------------------------------
// Hand-laid segments, for what SegmentWriter refuses to write.

const RAW_HEADER: SegmentHeader = { format: LOG_FORMAT_VERSION, runId: 'r', segment: 0, createdAt: new Date(0).toISOString() };
const DEF_AB: KindDef = { id: 1, kind: 'a.b', version: 1, fields: null };
const DEF_FIELDS: KindDef = { id: 2, kind: 'a.fields', version: 1, fields: [['n', 'u32']] };
const CODEC_AB = new KindCodec(DEF_AB);
const CODEC_FIELDS = new KindCodec(DEF_FIELDS);

/** One binary record. */
function rec(codec: KindCodec, seq: number, tsNs: number, payload: unknown): Uint8Array {
  const out = new Uint8Array(REC_BYTES_MAX);
  const n = encodeRecordInto(out, new DataView(out.buffer), 0, codec, { seq, tsNs, dom: 0, thread: 0, payload });
  return out.slice(0, n);
}

/** A copy of a record with some bytes changed. */
function patched(r: Uint8Array, f: (dv: DataView, b: Uint8Array) => void): Uint8Array {
  const c = r.slice();
  f(new DataView(c.buffer), c);
  return c;
}

/** An unclosed segment: the prefix and header, then one frame per block of records. */
function rawSegment(blocks: Uint8Array[][], header: SegmentHeader = RAW_HEADER): Buffer {
  const prefix = encodeSegmentPrefix(header);
  const bodies = blocks.map((rs) => Buffer.concat(rs));
  const out = Buffer.alloc(prefix.length + bodies.reduce((a, x) => a + FRAME_HEADER_BYTES + x.length, 0));
  prefix.copy(out, 0);
  bodies.reduce((off, x) => writeFrame(out, off, x), prefix.length);
  return out;
}

/** File offset of record `r` of block `b` in `rawSegment(blocks)`. */
function rawOffset(blocks: Uint8Array[][], b: number, r: number, header: SegmentHeader = RAW_HEADER): number {
  let off = encodeSegmentPrefix(header).length;
  for (let i = 0; i < b; i++) off += FRAME_HEADER_BYTES + blocks[i]!.reduce((a, x) => a + x.length, 0);
  off += FRAME_HEADER_BYTES;
  for (let i = 0; i < r; i++) off += blocks[b]![i]!.length;
  return off;
}

async function writeRaw(dir: string, segments: Buffer[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (let i = 0; i < segments.length; i++) await writeFile(join(dir, segmentName(i)), segments[i]!);
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
    expect(info.header).toMatchObject({ runId: 'run-test', seed: 7, topology: { name: 'two-guests' }, segment: 0, format: LOG_FORMAT_VERSION });
    expect(info.truncatedTail).toBeNull();
    const total = info.segments.reduce((a, s) => a + s.footer!.records, 0);
    expect(total).toBe(events.length);
    expect(info.segments[0]!.footer!.firstSeq).toBe(events[0]!.seq);
    expect(info.segments.at(-1)!.footer!.lastSeq).toBe(events.at(-1)!.seq);
    expect(info.bytes).toBe(info.segments.reduce((a, s) => a + s.bytes, 0));
  });

  it('a closed segment’s footer: its ranges, one index entry per block, and every kind it defines', async () => {
    const dir = freshDir();
    // Times that run backwards now and then, as threads' clocks do: min/max differ from first/last.
    const events = makeEvents(3000, 2).map((e, i) => (i % 7 === 3 ? ev(e.seq, e.tsNs - 5000, e.dom, e.thread, e.kind, e.payload) : e));
    await writeLog(dir, events, { segmentBytes: 64 << 10, blockBytes: 2048 });
    const info = await openLog(dir);
    expect(info.segments.length).toBeGreaterThan(2);
    let next = 0;
    let minDiffersFromFirst = 0;
    for (const seg of info.segments) {
      const f = seg.footer!;
      const l = await layout(seg.file);
      const mine = events.slice(next, next + f.records);
      next += f.records;
      expect(l.blocks.length).toBeGreaterThan(10);
      expect(l.records.map((r) => r.seq)).toEqual(mine.map((e) => e.seq));
      const ts = mine.map((e) => e.tsNs);
      expect(f).toMatchObject({
        firstSeq: mine[0]!.seq,
        lastSeq: mine.at(-1)!.seq,
        firstTsNs: ts[0],
        lastTsNs: ts.at(-1),
        minTsNs: Math.min(...ts),
        maxTsNs: Math.max(...ts),
      });
      if (f.minTsNs !== f.firstTsNs) minDiffersFromFirst++;
      // [first seq, offset, first time] of every block, in order.
      expect(f.index).toEqual(l.blocks.map((b) => [l.records[b.firstEvent]!.seq, b.offset, l.records[b.firstEvent]!.tsNs]));
      expect(l.blocks.every((b) => b.events > 0)).toBe(true);
      // Each kind is defined once in this segment, before its first use, under the id its records
      // carry; the footer lists exactly those definitions.
      const defs = l.blocks.flatMap((b) => b.defs);
      const byId = new Map(defs.map((d) => [d.def.id, d]));
      expect(byId.size).toBe(defs.length);
      l.records.forEach((r, i) => {
        const d = byId.get(r.kindId)!;
        expect(d.offset).toBeLessThan(r.offset);
        expect(d.def.kind).toBe(mine[i]!.kind);
      });
      expect(new Set(l.records.map((r) => r.kindId))).toEqual(new Set(byId.keys()));
      const byIdOrder = (a: KindDef, b: KindDef): number => a.id - b.id;
      expect([...f.kinds].sort(byIdOrder)).toEqual(defs.map((d) => d.def).sort(byIdOrder));
    }
    expect(next).toBe(events.length);
    expect(minDiffersFromFirst).toBeGreaterThan(0);
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

    const good = encodeSegmentPrefix(RAW_HEADER);
    await writeFile(file, good);
    expect((await openLog(dir)).segments).toHaveLength(1);

    const wrongVersion = Buffer.from(good);
    wrongVersion.writeUInt32LE(9, 8);
    await writeFile(file, wrongVersion);
    await expect(openLog(dir)).rejects.toMatchObject({ name: 'LogCorruptError', offset: 8, reason: expect.stringMatching(/version 9/) });

    // A format-1 file (msgpack-array frames) is refused by its version word, not misread.
    const v1 = Buffer.from(good);
    v1.writeUInt32LE(1, 8);
    await writeFile(file, v1);
    await expect(openLog(dir)).rejects.toMatchObject({ name: 'LogCorruptError', offset: 8, reason: expect.stringMatching(/version 1 is not supported/) });

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

  it('round-trips payloads of kinds with declared fields, binary where they fit and msgpack where not', async () => {
    const dir = freshDir();
    const fits = { a: 255, b: 65535, c: 0xffff_ffff, d: -(2 ** 31), e: -1.5e300, f: true, g: 'Grüße, 世界 🙂' };
    const events = [
      ev(1, 10, 1, 1, 'test.fields', fits),
      ev(2, 20, 1, 1, 'test.fields', { ...fits, a: 256 }), // out of range: msgpack
      ev(3, 30, 1, 1, 'test.fields', { ...fits, extra: [1, 2] }), // an extra field: msgpack
      ev(4, 40, 1, 1, 'test.fields', { a: 1 }), // missing fields: msgpack
      ev(5, 50, 1, 1, 'test.small', { x: 7, y: false }),
      ev(6, 60, 1, 1, 'test.small', { x: -7, y: false }), // not a u32: msgpack
      ev(7, 70, 1, 1, 'test.fields', { ...fits, g: '' }),
    ];
    await writeLog(dir, events);
    expect(await readAll(dir)).toEqual(events);
    // And the binary form was really used for the payloads that fit.
    const l = await layout(join(dir, segmentName(0)));
    const bytes = await readFile(join(dir, segmentName(0)));
    expect(l.records.map((r) => bytes[r.offset + REC_ENC])).toEqual([0, 1, 1, 1, 0, 1, 0]);
  });

  it('reads a log much larger than the chunk size, blocks and records straddling chunk borders', async () => {
    const events = makeEvents(3000, 5);
    // Records longer than a chunk, too, one of them near the 64 KiB record limit.
    events[100] = ev(events[100]!.seq, events[100]!.tsNs, 1, 1, 'blob.big', { data: 'x'.repeat(5000), n: 1 });
    events[2000] = ev(events[2000]!.seq, events[2000]!.tsNs, 1, 1, 'blob.big', { data: 'y'.repeat(65_000), n: 2 });
    // Default (64 KiB) blocks, each longer than any chunk; and one block per record.
    for (const blockBytes of [undefined, 1]) {
      const dir = freshDir();
      await writeLog(dir, events, { segmentBytes: 96 << 10, blockBytes });
      for (const chunkBytes of [64, 100, 257, 4096]) expect(await readAll(dir, {}, { chunkBytes })).toEqual(events);
    }
  });

  it('SegmentWriter refuses an event larger than a record can be, and goes on writing', async () => {
    const dir = freshDir();
    const w = new SegmentWriter(dir, { runId: 'r' });
    const events = [ev(1, 10, 0, 0, 'blob.big', { n: 1 }), ev(3, 30, 0, 0, 'blob.big', { n: 3 })];
    w.addEvent(events[0]!);
    expect(() => w.addEvent(ev(2, 20, 0, 0, 'blob.big', { data: 'z'.repeat(70_000) }))).toThrow(/more than 65535/);
    w.addEvent(events[1]!);
    await w.close();
    expect(await readAll(dir)).toEqual(events);
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

  it('every segment reads on its own, closed or not: each defines the kinds it uses', async () => {
    const dir = freshDir();
    const events = makeEvents(2000, 8);
    await writeLog(dir, events, { segmentBytes: 16 << 10, blockBytes: 2048, close: false });
    const info = await openLog(dir);
    expect(info.segments.length).toBeGreaterThan(3);
    expect(info.segments.at(-1)!.footer).toBeNull();
    const pieces: EventRecord[][] = [];
    for (const seg of info.segments) pieces.push(await readAll(seg.file));
    expect(pieces.every((p) => p.length > 0)).toBe(true);
    expect(pieces.flat()).toEqual(events);
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
  // Many small blocks in one segment. The block holding the last kind definition is damaged: a
  // reader that really skips to a later block never sees it, and takes the kinds from the footer.
  const events = makeEvents(3000, 3);
  let dir: string;
  let l: SegmentLayout;
  let damaged: BlockAt;
  beforeAll(async () => {
    dir = freshDir();
    await writeLog(dir, events, { segmentBytes: 1 << 30, blockBytes: 1024 });
    const file = join(dir, segmentName(0));
    l = await layout(file);
    damaged = l.blocks.filter((b) => b.defs.length > 0).at(-1)!;
    const bytes = await readFile(file);
    bytes[l.records[damaged.firstEvent + (damaged.events >> 1)]!.offset + REC_SEQ + 3]! ^= 0x01;
    await writeFile(file, bytes);
  });

  it('the segment has many blocks, each in the index, and every kind is defined at or before the damage', async () => {
    const f = (await openLog(dir)).segments[0]!.footer!;
    expect(l.blocks.length).toBeGreaterThan(100);
    expect(f.index.map(([, offset]) => offset)).toEqual(l.blocks.map((b) => b.offset));
    expect(f.kinds.map((k) => k.kind).sort()).toEqual([...KINDS].sort());
    expect(l.blocks.findIndex((b) => b === damaged)).toBeLessThan(10);
  });

  it('a full read hits the damage', async () => {
    const { got, err } = await readUntilError(dir);
    expect(got).toEqual(events.slice(0, damaged.firstEvent));
    expect(err).toBeInstanceOf(LogCorruptError);
    expect(err).toMatchObject({ offset: damaged.offset, reason: 'block CRC mismatch' });
  });

  it('fromSeq enters the segment at the index entry before it', async () => {
    const inGap = events.findIndex((e, i) => i > 1500 && e.seq - events[i - 1]!.seq === 2);
    expect(inGap).toBeGreaterThan(0);
    const blockStart = l.blocks[l.blocks.length >> 1]!.firstEvent;
    for (const from of [events[2005]!.seq, events[blockStart]!.seq, events[blockStart - 1]!.seq, events[inGap]!.seq - 1]) {
      expect(await readAll(dir, { fromSeq: from })).toEqual(events.filter((e) => e.seq >= from));
    }
    const [a, b] = [events[1700]!.seq, events[1750]!.seq];
    expect(await readAll(dir, { fromSeq: a, toSeq: b })).toEqual(events.slice(1700, 1751));
  });

  it('fromNs does the same with the disorder margin', async () => {
    const from = events[2500]!.tsNs;
    expect(await readAll(dir, { fromNs: from }, { tsDisorderNs: 1000 })).toEqual(events.filter((e) => e.tsNs >= from));
    // A margin that reaches back before the damaged block makes the reader start there.
    const near = events[damaged.firstEvent + damaged.events + 2]!.tsNs;
    await expect(readAll(dir, { fromNs: near }, { tsDisorderNs: 1e12 })).rejects.toMatchObject({ offset: damaged.offset });
  });

  it('skips whole segments by their footers', async () => {
    const d = freshDir();
    const evs = makeEvents(3000, 9);
    await writeLog(d, evs, { segmentBytes: 16 << 10 });
    const info = await openLog(d);
    // Wreck every block of the first segment; reads that start later never open it.
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

  it('toSeq and toNs stop reading: damage in blocks after the range is never reached', async () => {
    const d = freshDir();
    const evs = makeEvents(200, 4);
    await writeLog(d, evs, { blockBytes: 1024 });
    const file = join(d, segmentName(0));
    const sl = await layout(file);
    // The reader decodes the first record past the range (evs[101]), so its block must be intact.
    const from = sl.blocks[sl.records[150]!.block]!;
    const to = sl.blocks[sl.records[160]!.block]!;
    expect(from.offset).toBeGreaterThan(sl.blocks[sl.records[101]!.block]!.offset);
    const bytes = await readFile(file);
    bytes.fill(0, from.offset, to.offset + FRAME_HEADER_BYTES + to.bytes);
    await writeFile(file, bytes);
    await expect(readAll(d)).rejects.toMatchObject({ name: 'LogCorruptError', offset: from.offset });
    expect(await readAll(d, { toSeq: evs[100]!.seq })).toEqual(evs.slice(0, 101));
    expect(await readAll(d, { toNs: evs[100]!.tsNs }, { tsDisorderNs: 0 })).toEqual(evs.slice(0, 101));
  });
});

describe('corruption and truncation', () => {
  it('a flipped byte mid-file is a LogCorruptError at that block, after the records of the blocks before it', async () => {
    const dir = freshDir();
    const events = makeEvents(400);
    await writeLog(dir, events, { blockBytes: 2048 });
    const file = join(dir, segmentName(0));
    const l = await layout(file);
    expect(l.blocks.length).toBeGreaterThan(5);
    // Damage the middle record of the middle block: none of that block is believed.
    const block = l.blocks[l.blocks.length >> 1]!;
    expect(block.events).toBeGreaterThan(2);
    const bytes = await readFile(file);
    bytes[l.records[block.firstEvent + (block.events >> 1)]!.offset + 5]! ^= 0x10;
    await writeFile(file, bytes);
    const { got, err } = await readUntilError(dir);
    expect(got).toEqual(events.slice(0, block.firstEvent));
    expect(err).toBeInstanceOf(LogCorruptError);
    expect(err).toMatchObject({ file, offset: block.offset, reason: 'block CRC mismatch' });
    expect((err as Error).message).toBe(`${file}: corrupt log at byte offset ${block.offset}: block CRC mismatch`);
  });

  it('a damaged length word is a LogCorruptError at that block', async () => {
    const dir = freshDir();
    const events = makeEvents(50);
    await writeLog(dir, events, { blockBytes: 512 });
    const file = join(dir, segmentName(0));
    const l = await layout(file);
    const block = l.blocks[2]!;
    const bytes = await readFile(file);
    bytes.writeUInt32LE(0, block.offset);
    await writeFile(file, bytes);
    const { got, err } = await readUntilError(dir);
    expect(got).toEqual(events.slice(0, block.firstEvent));
    expect(got.length).toBeGreaterThan(0);
    expect(err).toMatchObject({ name: 'LogCorruptError', offset: block.offset, reason: expect.stringMatching(/frame length 0/) });
    bytes.writeUInt32LE(0x7fff_0000, block.offset);
    await writeFile(file, bytes);
    await expect(readAll(dir)).rejects.toMatchObject({ offset: block.offset, reason: expect.stringMatching(/frame length 2147418112 is out of range/) });
  });

  it('a valid block holding a malformed record is a LogCorruptError naming the record problem, at the record', async () => {
    // A closed segment written by SegmentWriter, which copies binary records as they are.
    const dir = freshDir();
    const w = new SegmentWriter(dir, { runId: 'r' });
    w.defineKind(DEF_AB);
    const good = rec(CODEC_AB, 1, 10, {});
    const bad = rec(CODEC_AB, 2, 20, [1, 2]);
    w.addRecord(good, 0, good.length);
    w.addRecord(bad, 0, bad.length);
    await w.close();
    const info = await openLog(dir);
    expect(info.segments[0]!.footer!.records).toBe(2);
    const { got, err } = await readUntilError(dir);
    expect(got).toEqual([ev(1, 10, 0, 0, 'a.b', {})]);
    const at = info.segments[0]!.recordsOffset + FRAME_HEADER_BYTES + encodeKindDef(DEF_AB).length + good.length;
    expect(err).toMatchObject({ name: 'LogCorruptError', offset: at, reason: 'bad record: payload is not a map' });
  });

  // Block 0: both definitions and a record; block 1: a good record, then the bad one.
  const r3 = rec(CODEC_AB, 3, 30, { k: 'v' });
  const malformed: [string, Uint8Array, string | RegExp][] = [
    ['a payload that is not a map', rec(CODEC_AB, 3, 30, [1, 2]), 'bad record: payload is not a map'],
    ['a payload that is not msgpack', patched(r3, (_, b) => b.fill(0xc1, REC_HEADER_BYTES)), /^bad record: payload does not decode: /],
    ['a kind id never defined', patched(r3, (dv) => dv.setUint16(REC_KIND, 9, true)), 'bad record: record of undefined kind id 9'],
    ['a length shorter than a record header', patched(r3, (dv) => dv.setUint16(REC_LEN, 20, true)), 'bad record: record length 20 does not fit its block'],
    ['a length running past its block', patched(r3, (dv) => dv.setUint16(REC_LEN, r3.length + 1, true)), `bad record: record length ${r3.length + 1} does not fit its block`],
    ['an unknown payload encoding', patched(r3, (_, b) => (b[REC_ENC] = 7)), 'bad record: unknown payload encoding 7'],
    ['a fields payload too short for its fields', patched(rec(CODEC_FIELDS, 3, 30, { n: 5 }), (dv) => dv.setUint16(REC_LEN, 30, true)).slice(0, 30), "bad record: payload does not match the fields of 'a.fields'"],
    ['a fields payload longer than its fields', (() => { const r = rec(CODEC_FIELDS, 3, 30, { n: 5 }); const x = new Uint8Array(r.length + 1); x.set(r); new DataView(x.buffer).setUint16(REC_LEN, x.length, true); return x; })(), "bad record: payload does not match the fields of 'a.fields'"],
    ['a seq that is not an integer', patched(r3, (dv) => dv.setFloat64(REC_SEQ, 3.5, true)), 'bad record: bad seq'],
    ['a timestamp that is not finite', patched(r3, (dv) => dv.setFloat64(REC_TS, NaN, true)), 'bad record: bad timestamp'],
    ['a kind definition with a bad id', encodeKindDef({ ...DEF_AB, id: 0 }), 'bad record: kind definition: bad id'],
    ['a kind definition that does not decode', patched(encodeKindDef(DEF_AB), (_, b) => b.fill(0xc1, REC_HEADER_BYTES)), /^bad record: kind definition does not decode: /],
  ];
  it.each(malformed)('a block holding %s: the records before it, then an error at the record', async (_, bad, reason) => {
    const dir = freshDir();
    const blocks = [
      [encodeKindDef(DEF_AB), encodeKindDef(DEF_FIELDS), rec(CODEC_AB, 1, 10, { i: 1 })],
      [rec(CODEC_FIELDS, 2, 20, { n: 2 }), bad],
    ];
    await writeRaw(dir, [rawSegment(blocks)]);
    const { got, err } = await readUntilError(dir);
    expect(got).toEqual([ev(1, 10, 0, 0, 'a.b', { i: 1 }), ev(2, 20, 0, 0, 'a.fields', { n: 2 })]);
    expect(err).toMatchObject({ name: 'LogCorruptError', file: join(dir, segmentName(0)), offset: rawOffset(blocks, 1, 1), reason });
  });

  it('the same block and records with the bad one fixed read cleanly (the cases above are not rejected for another reason)', async () => {
    const dir = freshDir();
    const blocks = [
      [encodeKindDef(DEF_AB), encodeKindDef(DEF_FIELDS), rec(CODEC_AB, 1, 10, { i: 1 })],
      [rec(CODEC_FIELDS, 2, 20, { n: 2 }), r3],
    ];
    await writeRaw(dir, [rawSegment(blocks)]);
    expect(await readAll(dir)).toEqual([ev(1, 10, 0, 0, 'a.b', { i: 1 }), ev(2, 20, 0, 0, 'a.fields', { n: 2 }), ev(3, 30, 0, 0, 'a.b', { k: 'v' })]);
  });

  it('sequence numbers going backwards or repeating are corruption: within a block, across blocks, across segments', async () => {
    const def = encodeKindDef(DEF_AB);
    const r = (seq: number, ts: number): Uint8Array => rec(CODEC_AB, seq, ts, {});
    // SegmentWriter refuses to write these, so lay the blocks by hand.
    const cases: { blocks: Uint8Array[][]; at: [number, number]; why: RegExp }[] = [
      { blocks: [[def, r(1, 5), r(5, 10), r(4, 20)]], at: [0, 3], why: /seq 4 follows seq 5/ },
      { blocks: [[def, r(1, 5), r(5, 10)], [r(4, 20)]], at: [1, 0], why: /seq 4 follows seq 5/ },
      { blocks: [[def, r(1, 5), r(5, 10)], [r(5, 20)]], at: [1, 0], why: /seq 5 follows seq 5: sequence numbers must increase/ },
    ];
    for (const c of cases) {
      const dir = freshDir();
      await writeRaw(dir, [rawSegment(c.blocks)]);
      const { got, err } = await readUntilError(dir);
      expect(got.map((e) => e.seq)).toEqual([1, 5]);
      expect(err).toMatchObject({ name: 'LogCorruptError', offset: rawOffset(c.blocks, ...c.at), reason: expect.stringMatching(c.why) });
    }
    // Two unclosed segments: the second starts below where the first ended.
    const dir = freshDir();
    const seg1Blocks = [[def, r(4, 20)]];
    const seg1Header = { ...RAW_HEADER, segment: 1 };
    await writeRaw(dir, [rawSegment([[def, r(1, 5), r(5, 10)]]), rawSegment(seg1Blocks, seg1Header)]);
    const warnings: LogWarning[] = [];
    const { got, err } = await readUntilError(dir, { onWarning: (w) => warnings.push(w) });
    expect(got.map((e) => e.seq)).toEqual([1, 5]);
    expect(err).toMatchObject({ file: join(dir, segmentName(1)), offset: rawOffset(seg1Blocks, 0, 1, seg1Header), reason: expect.stringMatching(/seq 4 follows seq 5/) });
    expect(warnings).toMatchObject([{ file: join(dir, segmentName(0)), reason: expect.stringMatching(/not closed/) }]);
  });

  it('a file cut in the middle of its last block: an error naming the block, or all records of complete blocks and one warning', async () => {
    const dir = freshDir();
    const events = makeEvents(300);
    await writeLog(dir, events, { blockBytes: 2048 });
    const file = join(dir, segmentName(0));
    const l = await layout(file);
    const last = l.blocks.at(-1)!;
    expect(last.firstEvent).toBeGreaterThan(0);
    for (const cut of [1, 11, FRAME_HEADER_BYTES + (last.bytes >> 1), FRAME_HEADER_BYTES + last.bytes - 1]) {
      await truncate(file, last.offset + cut);
      expect((await openLog(dir)).segments[0]!.footer).toBeNull();

      const { got, err } = await readUntilError(dir);
      expect(got).toEqual(events.slice(0, last.firstEvent));
      expect(err).toMatchObject({ name: 'LogCorruptError', file, offset: last.offset, reason: expect.stringMatching(/^truncated: last frame is cut off/) });

      const warnings: LogWarning[] = [];
      expect(await readAll(dir, {}, { tolerateTruncatedTail: true, onWarning: (w) => warnings.push(w) })).toEqual(events.slice(0, last.firstEvent));
      expect(warnings).toEqual([{ file, offset: last.offset, reason: expect.stringMatching(/^truncated/) }]);
    }
  });

  it('a file cut inside a block header, and inside the footer, are truncated tails too', async () => {
    const dir = freshDir();
    const events = makeEvents(30);
    await writeLog(dir, events, { blockBytes: 256 });
    const file = join(dir, segmentName(0));
    const l = await layout(file);
    const footerOffset = l.end;
    await truncate(file, footerOffset + 20);
    const warnings: LogWarning[] = [];
    expect(await readAll(dir, {}, { tolerateTruncatedTail: true, onWarning: (w) => warnings.push(w) })).toEqual(events);
    expect(warnings).toMatchObject([{ offset: footerOffset, reason: expect.stringMatching(/footer or trailer/) }]);
    const last = l.blocks.at(-1)!;
    await truncate(file, last.offset + 3);
    await expect(readAll(dir)).rejects.toMatchObject({ offset: last.offset, reason: expect.stringMatching(/truncated/) });
    expect(await readAll(dir, {}, { tolerateTruncatedTail: true })).toEqual(events.slice(0, last.firstEvent));
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
  const noNegZero = (x: number): number => (Object.is(x, -0) ? 0 : x); // msgpack keeps no -0
  const payloadArb = fc.dictionary(
    fc.stringMatching(/^[a-z][a-zA-Z0-9]{0,7}$/),
    fc.oneof(fc.integer({ min: -1e9, max: 1e12 }), fc.string({ maxLength: 40 }), fc.boolean(), fc.array(fc.nat(1000), { maxLength: 5 })),
    { maxKeys: 5 },
  );
  const fieldsArb = fc.record({
    a: fc.integer({ min: 0, max: 0xff }),
    b: fc.integer({ min: 0, max: 0xffff }),
    c: fc.integer({ min: 0, max: 0xffff_ffff }),
    d: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
    e: fc.double().map(noNegZero),
    f: fc.boolean(),
    g: fc.string({ unit: 'grapheme', maxLength: 20 }),
  });
  // Payloads of the declared kinds: fitting the fields, or not quite (then written as msgpack).
  const fieldsPayloadArb: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
    fieldsArb,
    fieldsArb.map((p) => ({ ...p, a: p.a + 256 })),
    fieldsArb.map((p) => ({ ...p, d: 1.5 })),
    fieldsArb.map((p) => ({ ...p, more: 1 })),
    fieldsArb.map(({ g: _, ...p }) => p),
    payloadArb,
  );
  const smallPayloadArb: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
    fc.record({ x: fc.integer({ min: 0, max: 0xffff_ffff }), y: fc.boolean() }),
    fc.record({ x: fc.integer({ min: -5, max: -1 }), y: fc.boolean() }),
    payloadArb,
  );
  const eventArb = fc.record({
    dSeq: fc.integer({ min: 1, max: 3 }),
    tsNs: fc.integer({ min: 0, max: 2 ** 40 }),
    dom: fc.integer({ min: 0, max: 0xffff }),
    thread: fc.nat(64),
    kp: fc.oneof(
      { weight: 4, arbitrary: fc.record({ kind: fc.constantFrom(...KINDS), payload: payloadArb }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('test.fields'), payload: fieldsPayloadArb }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('test.small'), payload: smallPayloadArb }) },
    ),
  });
  const eventsArb = fc.array(eventArb, { minLength: 0, maxLength: 300 }).map((xs) => {
    let seq = 0;
    return xs.map((x) => ev((seq += x.dSeq), x.tsNs, x.dom, x.thread, x.kp.kind, x.kp.payload));
  });
  // Up to the default: one record per block, a few per block, a whole segment in one.
  const blockBytesArb = fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 1, max: 64 << 10 }));

  it('whatever is written reads back equal, across segment, chunk and block sizes', async () => {
    await fc.assert(
      fc.asyncProperty(eventsArb, fc.integer({ min: 512, max: 64 << 10 }), fc.integer({ min: 64, max: 8192 }), blockBytesArb, fc.boolean(), async (events, segmentBytes, chunkBytes, blockBytes, close) => {
        const dir = freshDir();
        await writeLog(dir, events, { segmentBytes, blockBytes, close });
        expect(await readAll(dir, {}, { chunkBytes })).toEqual(events);
        await rm(dir, { recursive: true });
      }),
      { seed: 20240611, numRuns: 80 },
    );
  });

  it('a log cut anywhere yields the records of the complete blocks, then an error or a warning — never a wrong record', async () => {
    await fc.assert(
      fc.asyncProperty(eventsArb, fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 64, max: 4096 }), blockBytesArb, fc.boolean(), async (events, cutAt, chunkBytes, blockBytes, close) => {
        const dir = freshDir();
        await writeLog(dir, events, { close, blockBytes });
        const file = join(dir, segmentName(0));
        const l = await layout(file);
        const size = (await readFile(file)).length;
        const cut = Math.floor(cutAt * size);
        await truncate(file, cut);
        // The records of every block wholly before the cut survive; a cut anywhere but between
        // blocks (or at the very end) is a truncated tail.
        const whole = l.blocks.filter((b) => b.offset + FRAME_HEADER_BYTES + b.bytes <= cut);
        const survive = whole.reduce((a, b) => a + b.events, 0);
        const clean = cut === size || cut === l.recordsOffset || (cut <= l.end && whole.length > 0 && whole.at(-1)!.offset + FRAME_HEADER_BYTES + whole.at(-1)!.bytes === cut);

        const strict = await readUntilError(dir, { chunkBytes });
        expect(strict.got).toEqual(events.slice(0, survive));
        if (clean) expect(strict.err).toBeNull();
        else expect(strict.err).toBeInstanceOf(LogCorruptError);

        const warnings: LogWarning[] = [];
        const lenient = await readUntilError(dir, { chunkBytes, tolerateTruncatedTail: true, onWarning: (w) => warnings.push(w) });
        expect(lenient.err).toBeNull();
        expect(lenient.got).toEqual(strict.got);
        // Exactly one warning unless the cut fell on a block boundary (then no error either).
        expect(warnings.length).toBe(strict.err === null ? 0 : 1);
        if (cut === size && close) expect(lenient.got).toEqual(events);
        await rm(dir, { recursive: true });
      }),
      { seed: 42, numRuns: 150 },
    );
  });

  it('a flipped bit anywhere in the blocks: the records of the blocks before it, then an error at its block', async () => {
    await fc.assert(
      fc.asyncProperty(
        eventsArb.filter((xs) => xs.length > 0),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        fc.nat(7),
        fc.integer({ min: 64, max: 4096 }),
        blockBytesArb,
        fc.boolean(),
        async (events, at, bit, chunkBytes, blockBytes, close) => {
          const dir = freshDir();
          await writeLog(dir, events, { close, blockBytes });
          const file = join(dir, segmentName(0));
          const l = await layout(file);
          const pos = l.recordsOffset + Math.floor(at * (l.end - l.recordsOffset));
          const block = l.blocks.filter((b) => b.offset <= pos).at(-1)!;
          const bytes = await readFile(file);
          bytes[pos]! ^= 1 << bit;
          await writeFile(file, bytes);
          const { got, err } = await readUntilError(dir, { chunkBytes });
          expect(got).toEqual(events.slice(0, block.firstEvent));
          expect(err).toBeInstanceOf(LogCorruptError);
          expect(err).toMatchObject({ file, offset: block.offset });
          await rm(dir, { recursive: true });
        },
      ),
      { seed: 7, numRuns: 100 },
    );
  });
});
