/**
 * The log file format. A log is a directory of segment files `seg-000000.pvlog`,
 * `seg-000001.pvlog`, … (a new one each time a segment reaches its size limit). Every segment:
 *
 *   offset 0   'PVSIMLOG' (8 bytes), u32 LE format version, u32 LE header length H
 *   offset 16  header: msgpack map of H bytes (`SegmentHeader`)
 *   then       blocks: u32 LE length L, u32 LE CRC-32 of the L bytes, then L bytes of binary
 *              records (record.ts) back to back, each starting with its u16 length. A kind's
 *              definition record precedes its first use in every segment, so a segment reads
 *              on its own.
 *   on close   footer frame: u32 FOOTER_MARK, u32 CRC-32, u32 length F, F bytes msgpack
 *              `SegmentFooter` (counts, first/last seq and time, min/max time, and an index
 *              entry [first seq, offset, first time] per block)
 *   last 16    trailer: u32 LE footer offset, u32 0, 'PVSIMEND'
 *
 * A segment without a valid trailer was not closed (the process died): readers scan it and
 * report a truncated last block by its offset instead of misreading it. CRC-32 (zlib's, native
 * in Node) guards every block.
 */
import { crc32 } from 'node:zlib';
import { open, mkdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { KindCodec, REC_BYTES_MAX, REC_HEADER_BYTES, REC_KIND, REC_LEN, REC_SEQ, REC_TS, encodeKindDef, encodeRecordInto, localKindDef, type KindDef } from './record.js';
import { assert } from '@pvsim/abi';

export const LOG_MAGIC = Buffer.from('PVSIMLOG', 'latin1');
export const LOG_END_MAGIC = Buffer.from('PVSIMEND', 'latin1');
export const LOG_FORMAT_VERSION = 2;
export const SEGMENT_PREFIX_BYTES = 16;
export const FRAME_HEADER_BYTES = 8;
export const TRAILER_BYTES = 16;
/** Marks the footer frame: no record is this long. */
export const FOOTER_MARK = 0xffff_ffff;
/** The longest block a reader accepts; anything longer is corruption. */
export const FRAME_MAX_BYTES = 1 << 20;
/** A block is sealed once it holds this many bytes (or at every flush). */
export const BLOCK_BYTES_DEFAULT = 64 << 10;
/** Default segment size limit. */
export const SEGMENT_BYTES_DEFAULT = 64 << 20;

export interface SegmentHeader {
  format: number;
  runId: string;
  /** 0-based position of this segment in the log. */
  segment: number;
  createdAt: string;
  /** Free-form description of what ran (the topology file's contents or name). */
  topology?: unknown;
  /** The run's seed, for reproduction. */
  seed?: number | string;
  /** Anything else the launcher wants people to see. */
  meta?: Record<string, unknown>;
}

export interface SegmentFooter {
  records: number;
  firstSeq: number | null;
  lastSeq: number | null;
  firstTsNs: number | null;
  lastTsNs: number | null;
  /** Smallest and largest timestamps in the segment (threads' clocks interleave). */
  minTsNs: number | null;
  maxTsNs: number | null;
  /** One entry per block: [first seq, byte offset of the block, first tsNs]. */
  index: [number, number, number][];
  /** Every kind defined in the segment, so a reader may start at any block. */
  kinds: KindDef[];
}

/** A corrupt or truncated log: which file, at which byte, and what is wrong. */
export class LogCorruptError extends Error {
  override name = 'LogCorruptError';
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`${file}: corrupt log at byte offset ${offset}: ${reason}`);
  }
}

export const segmentName = (n: number): string => `seg-${String(n).padStart(6, '0')}.pvlog`;
export const SEGMENT_RE = /^seg-(\d{6,})\.pvlog$/;

const headerPackr = new Packr({ useRecords: false });

export function encodeSegmentPrefix(h: SegmentHeader): Buffer {
  const body = headerPackr.pack(h);
  const out = Buffer.alloc(SEGMENT_PREFIX_BYTES + body.length);
  LOG_MAGIC.copy(out, 0);
  out.writeUInt32LE(LOG_FORMAT_VERSION, 8);
  out.writeUInt32LE(body.length, 12);
  body.copy(out, SEGMENT_PREFIX_BYTES);
  return out;
}

/** Append one block frame holding `records` (binary records back to back); returns the new offset. */
export function writeFrame(out: Buffer, off: number, records: Uint8Array): number {
  out.writeUInt32LE(records.length, off);
  out.writeUInt32LE(crc32(records), off + 4);
  out.set(records, off + FRAME_HEADER_BYTES);
  return off + FRAME_HEADER_BYTES + records.length;
}

export function encodeFooterAndTrailer(footer: SegmentFooter, footerOffset: number): Buffer {
  const body = headerPackr.pack(footer);
  const out = Buffer.alloc(12 + body.length + TRAILER_BYTES);
  out.writeUInt32LE(FOOTER_MARK, 0);
  out.writeUInt32LE(crc32(body), 4);
  out.writeUInt32LE(body.length, 8);
  body.copy(out, 12);
  const t = 12 + body.length;
  out.writeUInt32LE(footerOffset, t);
  out.writeUInt32LE(0, t + 4);
  LOG_END_MAGIC.copy(out, t + 8);
  return out;
}

interface OpenSegment {
  n: number;
  prefix: Buffer;
  footer: SegmentFooter;
  /** Bytes of the segment so far, counting blocks not yet written. */
  bytes: number;
  /** Sealed blocks waiting to be written. */
  pending: Buffer;
  pendingBytes: number;
  /** The other of two write buffers (swapped while one is being written). */
  spare: Buffer | null;
  fh: FileHandle | null;
  written: number;
  defined: Set<number>;
}

/**
 * Writes a log directory: records gathered into CRC-guarded blocks, segments rolled at a size
 * limit, each closed with its footer. Used by the sink (and by tests and tools that need a
 * log). `addRecord`/`addEvent` are synchronous and cheap; `flush` does the (async) I/O. One
 * writer per directory.
 */
export class SegmentWriter {
  private segs: OpenSegment[] = [];
  private next = 0;
  private totalRecords = 0;
  private lastSeq = -1;
  /** The block being filled (sized in the constructor: the limit plus one largest record). */
  private block: Buffer;
  private blockBytes = 0;
  private blockFirstSeq = -1;
  private blockFirstTs = 0;
  private readonly kinds = new Map<number, KindDef>();
  private readonly kindsByName = new Map<string, KindCodec>();
  private readonly blockLimit: number;
  private readonly scratch = Buffer.allocUnsafe(REC_BYTES_MAX + 1);
  private readonly scratchDv = new DataView(this.scratch.buffer, this.scratch.byteOffset, this.scratch.length);

  constructor(
    readonly dir: string,
    private readonly header: Omit<SegmentHeader, 'segment' | 'createdAt' | 'format'>,
    private readonly segmentBytes = SEGMENT_BYTES_DEFAULT,
    opts: { blockBytes?: number } = {},
  ) {
    // Footer offsets are u32; keep every segment, footer included, well inside that.
    assert(segmentBytes >= 256 && segmentBytes <= 2 ** 31, `segment size must be 256 B..2 GiB, got ${segmentBytes}`);
    this.blockLimit = Math.max(1, Math.min(opts.blockBytes ?? BLOCK_BYTES_DEFAULT, FRAME_MAX_BYTES - REC_BYTES_MAX - 1024));
    // A block is sealed once it reaches the limit, so it never holds more than the limit plus a
    // kind definition and one record.
    this.block = Buffer.allocUnsafe(this.blockLimit + 2 * REC_BYTES_MAX + 1024);
  }

  get records(): number {
    return this.totalRecords;
  }

  /** Segments started so far. */
  get segments(): number {
    return this.next;
  }

  /** Make a kind id known (the sink, from the run's kind table). */
  defineKind(def: KindDef): void {
    this.kinds.set(def.id, def);
  }

  /**
   * Queue one binary record (record.ts) from `src[off, off+len)`; its kind must be defined.
   * Seqs must increase: readers reject anything else, so it is refused here too.
   */
  addRecord(src: Uint8Array, off: number, len: number, dv?: DataView): void {
    const v = dv ?? new DataView(src.buffer, src.byteOffset, src.byteLength);
    const seq = v.getFloat64(off + REC_SEQ, true);
    const ts = v.getFloat64(off + REC_TS, true);
    const kindId = v.getUint16(off + REC_KIND, true);
    // Messages are built only on failure (this runs for every record).
    if (!(seq > this.lastSeq)) assert(false, `log records must have increasing seqs: ${seq} after ${this.lastSeq}`);
    if (!(len >= REC_HEADER_BYTES && len <= REC_BYTES_MAX && v.getUint16(off + REC_LEN, true) === len)) assert(false, `bad record of ${len} bytes`);
    this.lastSeq = seq;
    let seg = this.segs[this.segs.length - 1];
    const projected = (seg ? seg.bytes : 0) + FRAME_HEADER_BYTES + this.blockBytes + len + 1024;
    if (!seg || (seg.footer.records > 0 && projected > this.segmentBytes)) {
      this.sealBlock();
      seg = this.startSegment();
    }
    if (!seg.defined.has(kindId)) {
      const def = this.kinds.get(kindId);
      assert(def, `record of kind id ${kindId}, which was never defined`);
      const d = encodeKindDef(def);
      this.append(d, 0, d.length);
      seg.defined.add(kindId);
    }
    if (this.blockFirstSeq < 0) {
      this.blockFirstSeq = seq;
      this.blockFirstTs = ts;
    }
    this.append(src, off, len);
    const f = seg.footer;
    if (f.firstSeq === null) {
      f.firstSeq = seq;
      f.firstTsNs = ts;
    }
    f.lastSeq = seq;
    f.lastTsNs = ts;
    if (f.minTsNs === null || ts < f.minTsNs) f.minTsNs = ts;
    if (f.maxTsNs === null || ts > f.maxTsNs) f.maxTsNs = ts;
    f.records++;
    this.totalRecords++;
    if (this.blockBytes >= this.blockLimit) this.sealBlock();
  }

  /** Encode and queue an event (tests, tools). Kind ids are assigned from this writer's own table. */
  addEvent(e: { seq: number; tsNs: number; dom: number; thread: number; kind: string; payload: unknown; v?: number }): void {
    // One id per (kind, version): a tool copying a log with mixed versions keeps each record's.
    const key = e.v === undefined ? e.kind : `${e.kind}@${e.v}`;
    let codec = this.kindsByName.get(key);
    if (!codec) {
      let id = 1;
      while (this.kinds.has(id)) id++;
      const def = { ...localKindDef(e.kind, id), ...(e.v !== undefined ? { version: e.v } : {}) };
      this.defineKind(def);
      codec = new KindCodec(def);
      this.kindsByName.set(key, codec);
    }
    const n = encodeRecordInto(this.scratch, this.scratchDv, 0, codec, e);
    this.addRecord(this.scratch, 0, n, this.scratchDv);
  }

  private append(src: Uint8Array, off: number, len: number): void {
    if (len <= 64) {
      const b = this.block;
      const at = this.blockBytes;
      for (let i = 0; i < len; i++) b[at + i] = src[off + i]!;
    } else this.block.set(src.subarray(off, off + len), this.blockBytes);
    this.blockBytes += len;
  }

  private sealBlock(): void {
    if (this.blockBytes === 0) return;
    const seg = this.segs[this.segs.length - 1]!;
    const need = FRAME_HEADER_BYTES + this.blockBytes;
    if (seg.pendingBytes + need > seg.pending.length) {
      const bigger = Buffer.allocUnsafe(Math.max(seg.pending.length * 2, seg.pendingBytes + need));
      seg.pending.copy(bigger, 0, 0, seg.pendingBytes);
      seg.pending = bigger;
    }
    if (this.blockFirstSeq >= 0) seg.footer.index.push([this.blockFirstSeq, seg.bytes, this.blockFirstTs]);
    seg.pendingBytes = writeFrame(seg.pending, seg.pendingBytes, this.block.subarray(0, this.blockBytes));
    seg.bytes += need;
    this.blockBytes = 0;
    this.blockFirstSeq = -1;
  }

  private flushing: Promise<void> = Promise.resolve();

  /**
   * Seal the open block and write everything queued; segments that filled up are closed.
   * Records may keep arriving while a flush is under way (the sink drains during disk I/O):
   * each write takes the queued bytes out first, and flushes run one after another.
   */
  flush(): Promise<void> {
    const run = this.flushing.then(() => this.flushNow());
    this.flushing = run.catch(() => {});
    return run;
  }

  private async flushNow(): Promise<void> {
    if (this.segs.length === 0) this.startSegment();
    this.sealBlock();
    while (this.segs.length > 0) {
      const seg = this.segs[0]!;
      if (!seg.fh) {
        await mkdir(this.dir, { recursive: true });
        seg.fh = await open(join(this.dir, segmentName(seg.n)), 'wx');
        await seg.fh.write(seg.prefix, 0, seg.prefix.length, 0);
        seg.written = seg.prefix.length;
      }
      if (seg.pendingBytes > 0) {
        const buf = seg.pending;
        const n = seg.pendingBytes;
        seg.pending = seg.spare ?? Buffer.allocUnsafe(buf.length);
        seg.pendingBytes = 0;
        const at = seg.written;
        seg.written += n;
        await seg.fh.write(buf, 0, n, at);
        seg.spare = buf;
      }
      if (this.segs.length === 1) break;
      if (seg.pendingBytes > 0) continue; // more arrived for it during the write
      await this.closeSegment(seg);
      this.segs.shift();
    }
  }

  /** Flush, then close the last segment with its footer. */
  async close(): Promise<void> {
    await this.flush();
    await this.flush(); // anything queued while the first one ran
    const seg = this.segs.shift();
    if (seg) await this.closeSegment(seg);
  }

  private startSegment(): OpenSegment {
    const n = this.next++;
    const prefix = encodeSegmentPrefix({ format: LOG_FORMAT_VERSION, ...this.header, segment: n, createdAt: new Date().toISOString() });
    const seg: OpenSegment = {
      n,
      prefix,
      footer: { records: 0, firstSeq: null, lastSeq: null, firstTsNs: null, lastTsNs: null, minTsNs: null, maxTsNs: null, index: [], kinds: [] },
      bytes: prefix.length,
      pending: Buffer.allocUnsafe(256 << 10),
      pendingBytes: 0,
      spare: null,
      fh: null,
      written: 0,
      defined: new Set(),
    };
    this.segs.push(seg);
    return seg;
  }

  private async closeSegment(seg: OpenSegment): Promise<void> {
    const fh = seg.fh!;
    seg.footer.kinds = [...seg.defined].map((id) => this.kinds.get(id)!);
    const tail = encodeFooterAndTrailer(seg.footer, seg.written);
    await fh.write(tail, 0, tail.length, seg.written);
    await fh.sync();
    await fh.close();
    seg.fh = null;
  }
}
