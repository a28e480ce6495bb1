/**
 * The log file format. A log is a directory of segment files `seg-000000.pvlog`,
 * `seg-000001.pvlog`, … (a new one each time a segment reaches its size limit). Every segment:
 *
 *   offset 0   'PVSIMLOG' (8 bytes), u32 LE format version, u32 LE header length H
 *   offset 16  header: msgpack map of H bytes (`SegmentHeader`)
 *   then       frames: u32 LE length L, u32 LE CRC-32 of the L bytes, L bytes = one msgpack record
 *              array [seq, tsNs, dom, thread, kind, version, payload]
 *   on close   footer frame: u32 FOOTER_MARK, u32 CRC-32, u32 length F, F bytes msgpack
 *              `SegmentFooter` (counts, first/last seq and time, a sparse seq/time → offset index)
 *   last 16    trailer: u32 LE footer offset, u32 0, 'PVSIMEND'
 *
 * A segment without a valid trailer was not closed (the process died): readers scan it and
 * report a truncated last frame by its offset instead of misreading it. CRC-32 (zlib's, native
 * in Node) guards every frame.
 */
import { crc32 } from 'node:zlib';
import { open, mkdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { assert } from '@pvsim/abi';

export const LOG_MAGIC = Buffer.from('PVSIMLOG', 'latin1');
export const LOG_END_MAGIC = Buffer.from('PVSIMEND', 'latin1');
export const LOG_FORMAT_VERSION = 1;
export const SEGMENT_PREFIX_BYTES = 16;
export const FRAME_HEADER_BYTES = 8;
export const TRAILER_BYTES = 16;
/** Marks the footer frame: no record is this long. */
export const FOOTER_MARK = 0xffff_ffff;
/** The longest record frame a reader accepts; anything longer is corruption. */
export const FRAME_MAX_BYTES = 1 << 20;
/** Default segment size limit. */
export const SEGMENT_BYTES_DEFAULT = 64 << 20;
/** One index entry per this many records (and at least one per segment). */
export const INDEX_EVERY_RECORDS = 4096;

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
  /** Sparse index: [seq, byte offset of its frame, tsNs]. */
  index: [number, number, number][];
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

/** Append one frame for `record` (msgpack bytes) at `out[off]`; returns the new offset. */
export function writeFrame(out: Buffer, off: number, record: Uint8Array): number {
  out.writeUInt32LE(record.length, off);
  out.writeUInt32LE(crc32(record), off + 4);
  out.set(record, off + FRAME_HEADER_BYTES);
  return off + FRAME_HEADER_BYTES + record.length;
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

/** A segment as the writer sees it: its projected size is exact, so index offsets are final at `add`. */
interface OpenSegment {
  n: number;
  prefix: Buffer;
  footer: SegmentFooter;
  sinceIndex: number;
  /** Bytes of the segment so far, counting frames not yet written. */
  bytes: number;
  /** Frames queued for writing. */
  pending: Buffer;
  pendingBytes: number;
  fh: FileHandle | null;
  written: number;
}

/**
 * Writes a log directory: frames appended in order, segments rolled at a size limit, each
 * closed with its footer. Used by the sink (and by tests that need a log). `add` is synchronous
 * and cheap; `flush` does the (async) I/O. One writer per directory.
 */
export class SegmentWriter {
  private segs: OpenSegment[] = [];
  private lastSeq = -1;
  private next = 0;
  private totalRecords = 0;

  constructor(
    readonly dir: string,
    private readonly header: Omit<SegmentHeader, 'segment' | 'createdAt' | 'format'>,
    private readonly segmentBytes = SEGMENT_BYTES_DEFAULT,
  ) {
    // Footer offsets are u32; keep every segment, footer included, well inside that.
    assert(segmentBytes >= 256 && segmentBytes <= 2 ** 31, `segment size must be 256 B..2 GiB, got ${segmentBytes}`);
  }

  get records(): number {
    return this.totalRecords;
  }

  /** Segments started so far. */
  get segments(): number {
    return this.next;
  }

  /** Queue one record (msgpack bytes) with its seq and time; it reaches the file at `flush`. */
  add(seq: number, tsNs: number, record: Uint8Array): void {
    // Readers reject what breaks these; refuse to write it in the first place.
    assert(seq > this.lastSeq, `log records must have increasing seqs: ${seq} after ${this.lastSeq}`);
    assert(record.length > 0 && record.length <= FRAME_MAX_BYTES, `log record of ${record.length} bytes (1..${FRAME_MAX_BYTES})`);
    this.lastSeq = seq;
    const need = FRAME_HEADER_BYTES + record.length;
    let seg = this.segs[this.segs.length - 1];
    if (!seg || (seg.footer.records > 0 && seg.bytes + need > this.segmentBytes)) seg = this.startSegment();
    const f = seg.footer;
    if (f.firstSeq === null || seg.sinceIndex >= INDEX_EVERY_RECORDS) {
      f.index.push([seq, seg.bytes, tsNs]);
      seg.sinceIndex = 0;
    }
    if (f.firstSeq === null) {
      f.firstSeq = seq;
      f.firstTsNs = tsNs;
    }
    f.lastSeq = seq;
    f.lastTsNs = tsNs;
    f.records++;
    seg.sinceIndex++;
    this.totalRecords++;
    if (seg.pendingBytes + need > seg.pending.length) {
      const bigger = Buffer.allocUnsafe(Math.max(seg.pending.length * 2, seg.pendingBytes + need));
      seg.pending.copy(bigger, 0, 0, seg.pendingBytes);
      seg.pending = bigger;
    }
    seg.pendingBytes = writeFrame(seg.pending, seg.pendingBytes, record);
    seg.bytes += need;
  }

  /** Write everything queued; segments that filled up are closed with their footers. */
  async flush(): Promise<void> {
    if (this.segs.length === 0) this.startSegment();
    while (this.segs.length > 0) {
      const seg = this.segs[0]!;
      if (!seg.fh) {
        await mkdir(this.dir, { recursive: true });
        seg.fh = await open(join(this.dir, segmentName(seg.n)), 'wx');
        await seg.fh.write(seg.prefix, 0, seg.prefix.length, 0);
        seg.written = seg.prefix.length;
      }
      if (seg.pendingBytes > 0) {
        await seg.fh.write(seg.pending, 0, seg.pendingBytes, seg.written);
        seg.written += seg.pendingBytes;
        seg.pendingBytes = 0;
      }
      if (this.segs.length === 1) break;
      await this.closeSegment(seg);
      this.segs.shift();
    }
  }

  /** Flush, then close the last segment with its footer. */
  async close(): Promise<void> {
    await this.flush();
    const seg = this.segs.shift();
    if (seg) await this.closeSegment(seg);
  }

  private startSegment(): OpenSegment {
    const n = this.next++;
    const prefix = encodeSegmentPrefix({ format: LOG_FORMAT_VERSION, ...this.header, segment: n, createdAt: new Date().toISOString() });
    const seg: OpenSegment = {
      n,
      prefix,
      footer: { records: 0, firstSeq: null, lastSeq: null, firstTsNs: null, lastTsNs: null, index: [] },
      sinceIndex: 0,
      bytes: prefix.length,
      pending: Buffer.allocUnsafe(256 << 10),
      pendingBytes: 0,
      fh: null,
      written: 0,
    };
    this.segs.push(seg);
    return seg;
  }

  private async closeSegment(seg: OpenSegment): Promise<void> {
    const fh = seg.fh!;
    const tail = encodeFooterAndTrailer(seg.footer, seg.written);
    await fh.write(tail, 0, tail.length, seg.written);
    await fh.sync();
    await fh.close();
    seg.fh = null;
  }
}
