/**
 * Reading a log back: `openLog` for what a log is (segments, headers, footers), and
 * `readEventBatches` / `readEvents` for its records, filtered.
 *
 * Reading streams: each segment is read in chunks into one reused private buffer (blocks may
 * straddle chunk borders), so memory stays constant however large the log is. Every block is
 * checked before it is believed — length bound, CRC-32 — and every record in it is decoded
 * against the segment's kind definitions (record.ts); anything malformed is a `LogCorruptError`
 * naming the file and the byte offset of the block or record. Records before it have already
 * been handed out.
 *
 * A segment without a valid trailer was not closed (the process died, or the sink is still
 * writing it). A frame of such a segment that runs past the end of the file is a truncated tail:
 * an error by default, or, with `tolerateTruncatedTail`, a warning and a normal end. It is never
 * misread as a record.
 *
 * Seeking relies on the sink's contract that sequence numbers increase in file order (checked
 * while reading). Timestamps come from each emitting thread's clock, so across threads they are
 * only nearly ordered: time seeks assume no record is more than `tsDisorderNs` older than one
 * written before it, and skip conservatively by that margin.
 */
import { crc32 } from 'node:zlib';
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Unpackr } from 'msgpackr';
import type { EventRecord } from './schema.js';
import { REC_HEADER_BYTES, RecordDecoder, kindDefFrom } from './record.js';
import {
  FOOTER_MARK,
  FRAME_HEADER_BYTES,
  FRAME_MAX_BYTES,
  LOG_END_MAGIC,
  LOG_FORMAT_VERSION,
  LOG_MAGIC,
  LogCorruptError,
  SEGMENT_PREFIX_BYTES,
  SEGMENT_RE,
  TRAILER_BYTES,
  type SegmentFooter,
  type SegmentHeader,
} from './format.js';

/** Bytes read from a segment file per read call. */
export const READ_CHUNK_BYTES_DEFAULT = 1 << 20;
/** The largest segment header a reader accepts (a topology description, a seed, metadata). */
export const HEADER_MAX_BYTES = 16 << 20;
/** The largest footer a reader accepts (its sparse index grows by one entry per 4096 records). */
export const FOOTER_MAX_BYTES = 64 << 20;
/** Default bound on how far timestamps run backwards in file order (threads' clocks interleave). */
export const TS_DISORDER_NS_DEFAULT = 1_000_000_000;
/** Footer frame: u32 FOOTER_MARK, u32 CRC-32, u32 length, then the msgpack footer. */
const FOOTER_FRAME_HEADER_BYTES = 12;

/** A log that cannot be opened at all: missing, or not a log. (Corruption is `LogCorruptError`.) */
export class LogOpenError extends Error {
  override name = 'LogOpenError';
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
  }
}

/** Something the reader tolerated: where, and what. */
export interface LogWarning {
  file: string;
  offset: number;
  reason: string;
}

export interface LogSegmentInfo {
  /** Path of the segment file. */
  readonly file: string;
  /** Position of the segment in the log (from its name, or its header for a lone file). */
  readonly number: number;
  readonly header: SegmentHeader;
  /** Byte offset of the first frame (after the prefix and header). */
  readonly recordsOffset: number;
  /** The footer of a closed segment; null when the segment was never closed. */
  readonly footer: SegmentFooter | null;
  /** Byte offset of the footer frame (where records end) of a closed segment; null otherwise. */
  readonly footerOffset: number | null;
  /** File size. */
  readonly bytes: number;
}

export interface LogInfo {
  /** The path given to `openLog`. */
  readonly path: string;
  /** Whether `path` is a log directory (else a single segment file). */
  readonly isDirectory: boolean;
  /** The first segment's header: run id, topology, seed. Null only when no segment has a complete header. */
  readonly header: SegmentHeader | null;
  /** Readable segments, in order. */
  readonly segments: readonly LogSegmentInfo[];
  /** Set when the last segment file ends inside its own prefix or header (it was being created). */
  readonly truncatedTail: LogWarning | null;
  /** Total bytes of all segment files. */
  readonly bytes: number;
}

export interface LogFilter {
  /** Kinds to keep: exact ('grant.map') or prefix patterns ('grant.*'); '*' keeps all. */
  kinds?: readonly string[];
  doms?: readonly number[];
  threads?: readonly number[];
  /** Inclusive sequence range. */
  fromSeq?: number;
  toSeq?: number;
  /** Inclusive time range on `tsNs` (nanoseconds since the run's epoch). */
  fromNs?: number;
  toNs?: number;
  /**
   * Payload fields: each matches when the payload has the field equal to the value, or the field
   * is an array containing it, or the plural field (`name + 's'`) is an array containing it:
   * `{ gref: 42 }` keeps `payload.gref === 42` and `payload.grefs` including 42. All must match.
   */
  keys?: Readonly<Record<string, number | string | boolean>>;
}

export interface ReadOptions {
  /** Treat a frame cut off at the end of the last, unclosed segment as a warning. Default false. */
  tolerateTruncatedTail?: boolean;
  /** Called for each tolerated problem (truncated tail, a segment that was not closed). */
  onWarning?: (w: LogWarning) => void;
  /** Bytes per read call; default 1 MiB. */
  chunkBytes?: number;
  /** Bound on timestamp disorder in file order, used only to seek and stop by time. */
  tsDisorderNs?: number;
}

// ---------------------------------------------------------------------------------------------
// Opening

const headerUnpackr = new Unpackr({ useRecords: false });

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
const isUint = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isSeqOrNull = (v: unknown): v is number | null => v === null || isUint(v);
const isTsOrNull = (v: unknown): v is number | null => v === null || (typeof v === 'number' && Number.isFinite(v));

async function readExactly(fh: FileHandle, length: number, position: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(out, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === length ? out : out.subarray(0, got);
}

function decodeMsgpack(bytes: Buffer): { ok: true; value: unknown } | { ok: false; reason: string } {
  try {
    return { ok: true, value: headerUnpackr.unpack(bytes) as unknown };
  } catch (e) {
    return { ok: false, reason: `undecodable msgpack (${e instanceof Error ? e.message : String(e)})` };
  }
}

function checkHeader(v: unknown): string | null {
  if (!isPlainObject(v)) return 'segment header is not a map';
  if (v.format !== LOG_FORMAT_VERSION) return `segment header format ${String(v.format)} is not ${LOG_FORMAT_VERSION}`;
  if (typeof v.runId !== 'string') return 'segment header has no runId';
  if (!isUint(v.segment)) return 'segment header has no segment number';
  if (typeof v.createdAt !== 'string') return 'segment header has no createdAt';
  return null;
}

function checkFooter(v: unknown, recordsOffset: number, footerOffset: number): string | null {
  if (!isPlainObject(v)) return 'footer is not a map';
  const { records, firstSeq, lastSeq, firstTsNs, lastTsNs, index } = v;
  if (!isUint(records)) return 'footer record count is not a count';
  if (!isSeqOrNull(firstSeq) || !isSeqOrNull(lastSeq)) return 'footer seq range is malformed';
  if (!isTsOrNull(firstTsNs) || !isTsOrNull(lastTsNs)) return 'footer time range is malformed';
  const empty = records === 0;
  if (empty !== (firstSeq === null) || empty !== (lastSeq === null) || empty !== (firstTsNs === null) || empty !== (lastTsNs === null))
    return 'footer ranges disagree with its record count';
  if (!empty && (lastSeq as number) < (firstSeq as number)) return 'footer seq range runs backwards';
  if (!Array.isArray(index)) return 'footer index is not an array';
  let prevOffset = -1;
  let prevSeq = -1;
  for (const entry of index as unknown[]) {
    if (!Array.isArray(entry) || entry.length !== 3) return 'footer index entry is not [seq, offset, tsNs]';
    const [seq, offset, ts] = entry as unknown[];
    if (!isUint(seq) || !isUint(offset) || typeof ts !== 'number' || !Number.isFinite(ts)) return 'footer index entry is malformed';
    if (offset < recordsOffset || offset >= footerOffset) return `footer index entry points at byte ${offset}, outside the records`;
    if (offset <= prevOffset || seq <= prevSeq) return 'footer index entries are not in increasing order';
    prevOffset = offset;
    prevSeq = seq;
  }
  if (!empty && index.length === 0) return 'footer index is empty';
  return null;
}

type Prefix =
  | { kind: 'ok'; header: SegmentHeader; recordsOffset: number }
  | { kind: 'truncated'; offset: number; reason: string };

/** Read and check the 16-byte prefix and the header. Throws LogCorruptError; a short file is 'truncated'. */
async function readPrefix(fh: FileHandle, file: string, size: number): Promise<Prefix> {
  const prefix = await readExactly(fh, SEGMENT_PREFIX_BYTES, 0);
  const magicSeen = prefix.subarray(0, Math.min(prefix.length, LOG_MAGIC.length));
  if (!magicSeen.equals(LOG_MAGIC.subarray(0, magicSeen.length)))
    throw new LogCorruptError(file, 0, "not a pvsim log segment (no 'PVSIMLOG' magic)");
  if (prefix.length < SEGMENT_PREFIX_BYTES) return { kind: 'truncated', offset: 0, reason: `file ends inside the segment prefix (${size} bytes)` };
  const version = prefix.readUInt32LE(8);
  if (version !== LOG_FORMAT_VERSION) throw new LogCorruptError(file, 8, `log format version ${version} is not supported (this reader knows version ${LOG_FORMAT_VERSION})`);
  const headerBytes = prefix.readUInt32LE(12);
  if (headerBytes === 0 || headerBytes > HEADER_MAX_BYTES) throw new LogCorruptError(file, 12, `segment header length ${headerBytes} is out of range`);
  const recordsOffset = SEGMENT_PREFIX_BYTES + headerBytes;
  if (size < recordsOffset) return { kind: 'truncated', offset: SEGMENT_PREFIX_BYTES, reason: `file ends inside the ${headerBytes}-byte segment header` };
  const decoded = decodeMsgpack(await readExactly(fh, headerBytes, SEGMENT_PREFIX_BYTES));
  if (!decoded.ok) throw new LogCorruptError(file, SEGMENT_PREFIX_BYTES, `segment header: ${decoded.reason}`);
  const bad = checkHeader(decoded.value);
  if (bad) throw new LogCorruptError(file, SEGMENT_PREFIX_BYTES, bad);
  return { kind: 'ok', header: decoded.value as unknown as SegmentHeader, recordsOffset };
}

/** Read the trailer and footer of a segment; null when there is no trailer (not closed). */
async function readFooter(fh: FileHandle, file: string, size: number, recordsOffset: number): Promise<{ footer: SegmentFooter; footerOffset: number } | null> {
  if (size < recordsOffset + FOOTER_FRAME_HEADER_BYTES + TRAILER_BYTES) return null;
  const trailerOffset = size - TRAILER_BYTES;
  const trailer = await readExactly(fh, TRAILER_BYTES, trailerOffset);
  if (trailer.length < TRAILER_BYTES || !trailer.subarray(8).equals(LOG_END_MAGIC)) return null;
  const footerOffset = trailer.readUInt32LE(0);
  if (trailer.readUInt32LE(4) !== 0) throw new LogCorruptError(file, trailerOffset + 4, 'trailer reserved word is not zero');
  if (footerOffset < recordsOffset || footerOffset + FOOTER_FRAME_HEADER_BYTES > trailerOffset)
    throw new LogCorruptError(file, trailerOffset, `trailer points at byte ${footerOffset}, outside the segment's records`);
  const footerBytes = trailerOffset - footerOffset - FOOTER_FRAME_HEADER_BYTES;
  if (footerBytes > FOOTER_MAX_BYTES) throw new LogCorruptError(file, footerOffset, `footer of ${footerBytes} bytes is too large`);
  const frame = await readExactly(fh, trailerOffset - footerOffset, footerOffset);
  if (frame.readUInt32LE(0) !== FOOTER_MARK) throw new LogCorruptError(file, footerOffset, 'trailer does not point at a footer frame');
  if (frame.readUInt32LE(8) !== footerBytes) throw new LogCorruptError(file, footerOffset + 8, `footer length ${frame.readUInt32LE(8)} does not reach the trailer (expected ${footerBytes})`);
  const body = frame.subarray(FOOTER_FRAME_HEADER_BYTES);
  if (crc32(body) !== frame.readUInt32LE(4)) throw new LogCorruptError(file, footerOffset, 'footer CRC mismatch');
  const decoded = decodeMsgpack(body);
  if (!decoded.ok) throw new LogCorruptError(file, footerOffset, `footer: ${decoded.reason}`);
  const bad = checkFooter(decoded.value, recordsOffset, footerOffset);
  if (bad) throw new LogCorruptError(file, footerOffset, bad);
  return { footer: decoded.value as unknown as SegmentFooter, footerOffset };
}

/**
 * Open a log — a directory of `seg-NNNNNN.pvlog` segments, or one segment file — and check every
 * segment's prefix, header and (for closed segments) trailer and footer. Record frames are not
 * read. Throws `LogOpenError` (missing, not a log, empty directory) or `LogCorruptError`.
 */
export async function openLog(path: string): Promise<LogInfo> {
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new LogOpenError(path, code === 'ENOENT' ? 'no such file or directory' : `cannot open (${code ?? String(e)})`);
  }
  let files: { file: string; number: number | null }[];
  if (st.isDirectory()) {
    const names = (await readdir(path)).flatMap((name) => {
      const m = SEGMENT_RE.exec(name);
      return m ? [{ file: join(path, name), number: Number(m[1]) }] : [];
    });
    if (names.length === 0) throw new LogOpenError(path, 'no log segments (seg-NNNNNN.pvlog) in this directory');
    names.sort((a, b) => a.number - b.number);
    for (let i = 1; i < names.length; i++) {
      const prev = names[i - 1]!.number;
      const cur = names[i]!;
      if (cur.number !== prev + 1) throw new LogCorruptError(cur.file, 0, `segment ${prev + 1} is missing (segments must be numbered without gaps)`);
    }
    files = names;
  } else if (st.isFile()) {
    const m = SEGMENT_RE.exec(basename(path));
    files = [{ file: path, number: m ? Number(m[1]) : null }];
  } else {
    throw new LogOpenError(path, 'not a file or a directory');
  }

  const segments: LogSegmentInfo[] = [];
  let truncatedTail: LogWarning | null = null;
  let bytes = 0;
  for (let i = 0; i < files.length; i++) {
    const { file, number } = files[i]!;
    const isLast = i === files.length - 1;
    const fh = await open(file, 'r');
    try {
      const size = (await fh.stat()).size;
      bytes += size;
      const prefix = await readPrefix(fh, file, size);
      if (prefix.kind === 'truncated') {
        if (!isLast) throw new LogCorruptError(file, prefix.offset, `${prefix.reason}, and it is not the last segment`);
        truncatedTail = { file, offset: prefix.offset, reason: prefix.reason };
        break;
      }
      const { header, recordsOffset } = prefix;
      if (number !== null && header.segment !== number)
        throw new LogCorruptError(file, SEGMENT_PREFIX_BYTES, `segment header says segment ${header.segment}, file name says ${number}`);
      const first = segments[0];
      if (first && header.runId !== first.header.runId)
        throw new LogCorruptError(file, SEGMENT_PREFIX_BYTES, `segment belongs to run ${header.runId}, not ${first.header.runId}`);
      const closed = await readFooter(fh, file, size, recordsOffset);
      segments.push({
        file,
        number: number ?? header.segment,
        header,
        recordsOffset,
        footer: closed?.footer ?? null,
        footerOffset: closed?.footerOffset ?? null,
        bytes: size,
      });
    } finally {
      await fh.close();
    }
  }
  return { path, isDirectory: st.isDirectory(), header: segments[0]?.header ?? null, segments, truncatedTail, bytes };
}

// ---------------------------------------------------------------------------------------------
// Filtering

type Predicate = (e: EventRecord) => boolean;

function keyMatches(payload: Record<string, unknown>, name: string, want: number | string | boolean): boolean {
  if (Object.hasOwn(payload, name)) {
    const v = payload[name];
    if (v === want) return true;
    if (Array.isArray(v) && v.includes(want)) return true;
  }
  const plural = name + 's';
  if (Object.hasOwn(payload, plural)) {
    const v = payload[plural];
    if (Array.isArray(v) && v.includes(want)) return true;
  }
  return false;
}

/** Compile a filter into a predicate (null when the filter keeps everything). */
export function compileFilter(f: LogFilter | undefined): Predicate | null {
  if (!f) return null;
  const tests: Predicate[] = [];
  if (f.kinds && !f.kinds.includes('*')) {
    const exact = new Set(f.kinds.filter((k) => !k.endsWith('*')));
    const prefixes = f.kinds.filter((k) => k.endsWith('*')).map((k) => k.slice(0, -1));
    tests.push(prefixes.length === 0 ? (e) => exact.has(e.kind) : (e) => exact.has(e.kind) || prefixes.some((p) => e.kind.startsWith(p)));
  }
  if (f.doms) {
    const doms = new Set(f.doms);
    tests.push((e) => doms.has(e.dom));
  }
  if (f.threads) {
    const threads = new Set(f.threads);
    tests.push((e) => threads.has(e.thread));
  }
  const { fromSeq, toSeq, fromNs, toNs } = f;
  if (fromSeq !== undefined) tests.push((e) => e.seq >= fromSeq);
  if (toSeq !== undefined) tests.push((e) => e.seq <= toSeq);
  if (fromNs !== undefined) tests.push((e) => e.tsNs >= fromNs);
  if (toNs !== undefined) tests.push((e) => e.tsNs <= toNs);
  if (f.keys) {
    for (const [name, want] of Object.entries(f.keys)) tests.push((e) => keyMatches(e.payload as Record<string, unknown>, name, want));
  }
  if (tests.length === 0) return null;
  if (tests.length === 1) return tests[0]!;
  return (e) => {
    for (const t of tests) if (!t(e)) return false;
    return true;
  };
}

/** Whether `e` passes filter `f`. (Readers compile the filter once; this is for one-off checks.) */
export function matchesFilter(e: EventRecord, f: LogFilter): boolean {
  const p = compileFilter(f);
  return p === null || p(e);
}

// ---------------------------------------------------------------------------------------------
// CRC-32 (zlib's polynomial), slice-by-8 over a range of a buffer. For the short frames of a
// log this is ~4× cheaper than `zlib.crc32`, whose per-call cost dominates and which would need
// a subarray per frame; long frames still go to zlib.

const CRC_TABLE = new Int32Array(256 * 8);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  CRC_TABLE[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = CRC_TABLE[n]!;
  for (let k = 1; k < 8; k++) {
    c = CRC_TABLE[c & 0xff]! ^ (c >>> 8);
    CRC_TABLE[k * 256 + n] = c;
  }
}
const CRC_NATIVE_FROM_BYTES = 512;

function crc32Range(b: Buffer, start: number, end: number): number {
  if (end - start >= CRC_NATIVE_FROM_BYTES) return crc32(b.subarray(start, end));
  const T = CRC_TABLE;
  let c = -1;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    c ^= b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
    c =
      T[1792 + (c & 0xff)]! ^
      T[1536 + ((c >>> 8) & 0xff)]! ^
      T[1280 + ((c >>> 16) & 0xff)]! ^
      T[1024 + (c >>> 24)]! ^
      T[768 + b[i + 4]!]! ^
      T[512 + b[i + 5]!]! ^
      T[256 + b[i + 6]!]! ^
      T[b[i + 7]!]!;
  }
  for (; i < end; i++) c = T[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Reading

interface ReadState {
  readonly buf: Buffer;
  readonly chunkBytes: number;
  readonly predicate: Predicate | null;
  readonly filter: LogFilter;
  readonly tolerateTruncatedTail: boolean;
  readonly onWarning: ((w: LogWarning) => void) | undefined;
  readonly tsDisorderNs: number;
  /** Last seq handed out of any segment (seqs increase across the whole log). */
  lastSeq: number;
  /** Set once a record beyond `toSeq` / `toNs` is seen: nothing later can match. */
  done: boolean;
}

/** Where to start reading a segment, or null to skip it; sets `st.done` when nothing later can match. */
function planSegment(seg: LogSegmentInfo, st: ReadState): number | null {
  const f = seg.footer;
  if (!f) return seg.recordsOffset;
  if (f.records === 0) return null;
  const { fromSeq, toSeq, fromNs, toNs } = st.filter;
  const slack = st.tsDisorderNs;
  const firstSeq = f.firstSeq!;
  const firstTs = f.firstTsNs!;
  if ((toSeq !== undefined && firstSeq > toSeq) || (toNs !== undefined && firstTs - slack > toNs)) {
    st.done = true;
    return null;
  }
  if (fromSeq !== undefined && f.lastSeq! < fromSeq) return null;
  if (fromNs !== undefined && f.lastTsNs! + slack < fromNs) return null;
  // Every record before index entry [seq, offset, ts] has a smaller seq and a time at most
  // ts + slack, so it can be skipped when either bound says it is before the range.
  let start = seg.recordsOffset;
  for (const [seq, offset, ts] of f.index) {
    if ((fromSeq !== undefined && seq <= fromSeq) || (fromNs !== undefined && ts + slack < fromNs)) start = offset;
  }
  return start;
}

const u32At = (b: Buffer, p: number): number => (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0;

/** Read one segment's records from `start`, yielding filtered batches (one per chunk read). */
async function* readSegment(seg: LogSegmentInfo, start: number, isLast: boolean, st: ReadState): AsyncGenerator<EventRecord[], void, undefined> {
  const { buf, predicate, chunkBytes } = st;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  // Kinds are defined inside each segment; a closed segment also lists them all in its footer,
  // so reading may start at any block.
  const decoder = new RecordDecoder();
  for (const k of seg.footer?.kinds ?? []) {
    const def = kindDefFrom(k);
    if (typeof def === 'string') throw new LogCorruptError(seg.file, seg.footerOffset ?? 0, `footer: ${def}`);
    decoder.define(def);
  }
  const { file } = seg;
  const closed = seg.footerOffset !== null;
  const end = seg.footerOffset ?? seg.bytes;
  const { toSeq, toNs } = st.filter;
  const stopNs = toNs === undefined ? Infinity : toNs + st.tsDisorderNs;
  const stopSeq = toSeq ?? Infinity;
  const fromStart = start === seg.recordsOffset;
  let records = 0;
  let batch: EventRecord[] = [];
  let bufFileOffset = start; // file offset of buf[0]
  let have = 0; // bytes of buf filled
  let p = 0; // parse position in buf
  let lastSeq = st.lastSeq;

  const fh = await open(file, 'r');
  try {
    for (;;) {
      // Parse every complete frame in buf[p, have).
      for (;;) {
        const avail = have - p;
        if (avail < FRAME_HEADER_BYTES) break;
        const len = u32At(buf, p);
        const at = bufFileOffset + p;
        if (len === FOOTER_MARK) {
          if (!closed && avail < FOOTER_FRAME_HEADER_BYTES && bufFileOffset + have < end) break; // read the footer's length first
          if (batch.length > 0) yield batch;
          batch = [];
          if (closed) throw new LogCorruptError(file, at, `footer mark before the footer (which is at byte ${end})`);
          // An unclosed segment whose footer is here: the process died while closing it.
          const footerLen = avail >= FOOTER_FRAME_HEADER_BYTES ? u32At(buf, p + 8) : 0;
          if (avail < FOOTER_FRAME_HEADER_BYTES || at + FOOTER_FRAME_HEADER_BYTES + footerLen + TRAILER_BYTES > seg.bytes) {
            truncatedTail(st, isLast, { file, offset: at, reason: 'segment ends inside its footer or trailer (it was being closed)' });
            return;
          }
          throw new LogCorruptError(file, at, 'footer frame present but the segment has no valid trailer');
        }
        if (len === 0 || len > FRAME_MAX_BYTES) {
          if (batch.length > 0) yield batch;
          throw new LogCorruptError(file, at, `frame length ${len} is out of range (1..${FRAME_MAX_BYTES})`);
        }
        const frameEnd = p + FRAME_HEADER_BYTES + len;
        if (frameEnd > have) break;
        const bodyStart = p + FRAME_HEADER_BYTES;
        if (crc32Range(buf, bodyStart, frameEnd) !== u32At(buf, p + 4)) {
          if (batch.length > 0) yield batch;
          throw new LogCorruptError(file, at, 'block CRC mismatch');
        }
        // The block's binary records, back to back.
        let q = bodyStart;
        let stop = false;
        while (q < frameEnd) {
          const rlen = q + 2 <= frameEnd ? buf[q]! | (buf[q + 1]! << 8) : 0;
          let e: EventRecord | string | null;
          if (rlen < REC_HEADER_BYTES || q + rlen > frameEnd) e = `record length ${rlen} does not fit its block`;
          else e = decoder.decode(buf, dv, q, rlen);
          if (typeof e === 'string' || (e !== null && e.seq <= lastSeq)) {
            if (batch.length > 0) yield batch;
            const why = typeof e === 'string' ? `bad record: ${e}` : `seq ${e!.seq} follows seq ${lastSeq}: sequence numbers must increase`;
            throw new LogCorruptError(file, bufFileOffset + q, why);
          }
          q += rlen;
          if (e === null) continue; // a kind definition
          records++;
          lastSeq = e.seq;
          if (e.seq > stopSeq || e.tsNs > stopNs) {
            st.done = true;
            stop = true;
            break;
          }
          if (predicate === null || predicate(e)) batch.push(e);
        }
        p = frameEnd;
        if (stop) break;
      }
      st.lastSeq = lastSeq;
      if (batch.length > 0) {
        yield batch;
        batch = [];
      }
      if (st.done) return;
      if (bufFileOffset + have >= end) {
        if (p < have) {
          const at = bufFileOffset + p;
          const left = have - p;
          const need = left < FRAME_HEADER_BYTES ? FRAME_HEADER_BYTES : FRAME_HEADER_BYTES + u32At(buf, p);
          const what = `last frame is cut off: ${left} of its ${left < FRAME_HEADER_BYTES ? 'at least ' : ''}${need} bytes are there`;
          if (closed) throw new LogCorruptError(file, at, `frame runs past the footer at byte ${end}`);
          truncatedTail(st, isLast, { file, offset: at, reason: `truncated: ${what}` });
          return;
        }
        break;
      }
      // Keep the partial frame, then read the next chunk behind it. The buffer holds a chunk
      // plus the largest frame, so there is always room for a chunk after a partial frame.
      if (p > 0) {
        buf.copyWithin(0, p, have);
        bufFileOffset += p;
        have -= p;
        p = 0;
      }
      const want = Math.min(chunkBytes, buf.length - have, end - (bufFileOffset + have));
      const { bytesRead } = await fh.read(buf, have, want, bufFileOffset + have);
      if (bytesRead === 0) throw new LogCorruptError(file, bufFileOffset + have, `file is shorter than when it was opened (${seg.bytes} bytes)`);
      have += bytesRead;
    }
  } finally {
    await fh.close();
  }

  if (!closed) {
    if (!isLast) st.onWarning?.({ file, offset: end, reason: 'segment was not closed (no footer), but a later segment exists' });
    return;
  }
  const f = seg.footer!;
  if (fromStart && (records !== f.records || lastSeq !== f.lastSeq))
    throw new LogCorruptError(file, end, `footer says ${f.records} records ending at seq ${f.lastSeq}, the segment holds ${records} ending at seq ${lastSeq}`);
}

function truncatedTail(st: ReadState, isLast: boolean, w: LogWarning): void {
  if (!isLast) throw new LogCorruptError(w.file, w.offset, `${w.reason}, and it is not the last segment`);
  if (!st.tolerateTruncatedTail) throw new LogCorruptError(w.file, w.offset, w.reason);
  st.onWarning?.(w);
}

/**
 * Records of a log in batches (one per chunk read, never empty), in file order, filtered.
 * Constant memory: one buffer of `chunkBytes + FRAME_MAX_BYTES`. Segments wholly outside a
 * seq/time range are skipped by their footers, and a closed segment is entered at the last
 * index entry before the range. Throws `LogOpenError` / `LogCorruptError` (after yielding every
 * good record before the problem).
 */
export async function* readEventBatches(log: string | LogInfo, filter: LogFilter = {}, opts: ReadOptions = {}): AsyncGenerator<EventRecord[], void, undefined> {
  const info = typeof log === 'string' ? await openLog(log) : log;
  const chunkBytes = opts.chunkBytes ?? READ_CHUNK_BYTES_DEFAULT;
  if (!(Number.isInteger(chunkBytes) && chunkBytes >= 64)) throw new RangeError(`chunkBytes must be an integer >= 64, got ${chunkBytes}`);
  const st: ReadState = {
    buf: Buffer.allocUnsafe(chunkBytes + FRAME_HEADER_BYTES + FRAME_MAX_BYTES),
    chunkBytes,
    predicate: compileFilter(filter),
    filter,
    tolerateTruncatedTail: opts.tolerateTruncatedTail ?? false,
    onWarning: opts.onWarning,
    tsDisorderNs: opts.tsDisorderNs ?? TS_DISORDER_NS_DEFAULT,
    lastSeq: -1,
    done: false,
  };
  const n = info.segments.length;
  for (let i = 0; i < n && !st.done; i++) {
    const seg = info.segments[i]!;
    const start = planSegment(seg, st);
    if (start === null) continue;
    yield* readSegment(seg, start, i === n - 1 && !info.truncatedTail, st);
  }
  if (info.truncatedTail && !st.done) truncatedTail(st, true, info.truncatedTail);
}

/**
 * Records of a log one at a time (see `readEventBatches`). A hand-written iterator over the
 * batches: an async generator's `yield*` costs about as much per record as reading it does.
 */
export function readEvents(log: string | LogInfo, filter: LogFilter = {}, opts: ReadOptions = {}): AsyncIterableIterator<EventRecord> {
  const batches = readEventBatches(log, filter, opts);
  let batch: EventRecord[] = [];
  let i = 0;
  let finished = false;
  const end: IteratorResult<EventRecord> = { value: undefined, done: true };
  const refill = async (): Promise<IteratorResult<EventRecord>> => {
    while (i >= batch.length) {
      if (finished) return end;
      const r = await batches.next();
      if (r.done) {
        finished = true;
        batch = [];
        return end;
      }
      batch = r.value;
      i = 0;
    }
    return { value: batch[i++]!, done: false };
  };
  const it: AsyncIterableIterator<EventRecord> = {
    next(): Promise<IteratorResult<EventRecord>> {
      // The common case — a record already in hand — skips the async function machinery.
      return i < batch.length ? Promise.resolve({ value: batch[i++]!, done: false }) : refill();
    },
    async return(): Promise<IteratorResult<EventRecord>> {
      finished = true;
      batch = [];
      await batches.return();
      return { value: undefined, done: true };
    },
    [Symbol.asyncIterator]() {
      return it;
    },
  };
  return it;
}
