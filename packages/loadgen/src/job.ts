/**
 * A fio-style job against one block device: `iodepth` I/Os kept in flight, each of `bs` bytes at a
 * random (or sequential) `bs`-aligned offset of the region, reads and writes mixed by
 * `rwmixwrite`; a ramp that is not measured, then a timed window: IOPS, bandwidth, HDR latency
 * percentiles (all, reads, writes), a time series per interval, and — with `verify` — every read
 * checked against the last write to its block.
 *
 * Two I/Os never overlap the same block (a block in flight is skipped), so "the last write" is
 * well defined and the check is exact. The first I/O error ends the job (fio's default,
 * `continue_on_error=none`); so does a stall (no completion for `stallMs`).
 */
import { build, decodeFromCompressedBase64, encodeIntoCompressedBase64, type Histogram } from 'hdr-histogram-js';
import { checkBlock, fillBlock, perSecond, pickFreeBlock, prng } from './pattern.js';

export const SECTOR_BYTES = 512;

/** What a job needs of a block device (blkfront's `read`/`write` shape). */
export interface BlockTarget {
  /** Size in 512-byte sectors. */
  readonly sectors: number;
  read(sector: number, count: number): Promise<Uint8Array>;
  /** `data` is not modified by the caller until the promise settles. */
  write(sector: number, data: Uint8Array): Promise<void>;
  /** A line describing the device's state, for a stall report. */
  describe?(): string;
}

export const RW_MODES = ['randrw', 'randread', 'randwrite', 'rw', 'read', 'write'] as const;
export type RwMode = (typeof RW_MODES)[number];

export interface BlockJob {
  /** Shown in reports. */
  name: string;
  /** fio's `rw`: random or sequential; reads, writes, or both (`randrw`/`rw`, mixed by `rwmixwrite`). */
  rw: RwMode;
  /** Block size in bytes: a multiple of 512. */
  bs: number;
  /** I/Os kept in flight. */
  iodepth: number;
  /** Percent writes for `randrw` / `rw`. */
  rwmixwrite: number;
  /** The measured window, ms. */
  runtimeMs: number;
  /** fio's `ramp_time`: run but do not measure, ms. */
  rampMs: number;
  /** Region of the device: `offsetBytes` .. `offsetBytes + sizeBytes` (0: to the end). */
  offsetBytes: number;
  sizeBytes: number;
  seed: number;
  /** Write patterns and check every read against the last write to its block. */
  verify: boolean;
  /** Check all of every n-th verified read (the others: 3 words). */
  fullCheckEvery: number;
  /** The region reads as zeros where this job has not written (a fresh memory disk). */
  assumeZeroed: boolean;
  /** After the window (with `verify`): read back every block written, in full, at `iodepth`. */
  readBack: boolean;
  /** Time-series bucket, ms. */
  intervalMs: number;
  /** No completion for this long ends the job with a stall error, ms. */
  stallMs: number;
}

export const DEFAULT_JOB: BlockJob = {
  name: 'job',
  rw: 'randrw',
  bs: 4096,
  iodepth: 32,
  rwmixwrite: 50,
  runtimeMs: 5000,
  rampMs: 500,
  offsetBytes: 0,
  sizeBytes: 0,
  seed: 1,
  verify: true,
  fullCheckEvery: 8,
  assumeZeroed: false,
  readBack: false,
  intervalMs: 100,
  stallMs: 10_000,
};

const INT_FIELDS = ['bs', 'iodepth', 'rwmixwrite', 'runtimeMs', 'rampMs', 'offsetBytes', 'sizeBytes', 'seed', 'fullCheckEvery', 'intervalMs', 'stallMs'] as const;

/**
 * A complete job from a partial one (defaults filled), or the first problem, naming the field.
 * Accepts unknown input (a file, the CLI, another thread).
 */
export function makeJob(input: unknown): { ok: true; job: BlockJob } | { ok: false; error: string } {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return { ok: false, error: 'job: expected an object' };
  const given = input as Record<string, unknown>;
  for (const k of Object.keys(given)) if (!(k in DEFAULT_JOB)) return { ok: false, error: `job: unknown field '${k}' (known: ${Object.keys(DEFAULT_JOB).join(', ')})` };
  const job = { ...DEFAULT_JOB };
  for (const k of INT_FIELDS) {
    const v = given[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) return { ok: false, error: `job.${k}: expected an integer, got ${JSON.stringify(v)}` };
    job[k] = v;
  }
  if (given.name !== undefined) {
    if (typeof given.name !== 'string' || given.name.length === 0 || given.name.length > 64) return { ok: false, error: 'job.name: expected a string of 1–64 characters' };
    job.name = given.name;
  }
  if (given.rw !== undefined) {
    if (!RW_MODES.includes(given.rw as RwMode)) return { ok: false, error: `job.rw: expected one of ${RW_MODES.join(', ')}, got ${JSON.stringify(given.rw)}` };
    job.rw = given.rw as RwMode;
  }
  for (const k of ['verify', 'assumeZeroed', 'readBack'] as const) {
    const v = given[k];
    if (v === undefined) continue;
    if (typeof v !== 'boolean') return { ok: false, error: `job.${k}: expected true or false, got ${JSON.stringify(v)}` };
    job[k] = v;
  }
  const range = (k: keyof BlockJob, lo: number, hi: number): string | null => {
    const v = job[k] as number;
    return v < lo || v > hi ? `job.${k}: ${v} is outside ${lo}..${hi}` : null;
  };
  const problem =
    range('bs', SECTOR_BYTES, 1 << 24) ??
    (job.bs % SECTOR_BYTES !== 0 ? `job.bs: ${job.bs} is not a multiple of ${SECTOR_BYTES}` : null) ??
    range('iodepth', 1, 4096) ??
    range('rwmixwrite', 0, 100) ??
    range('runtimeMs', 1, 86_400_000) ??
    range('rampMs', 0, 3_600_000) ??
    range('offsetBytes', 0, Number.MAX_SAFE_INTEGER) ??
    (job.offsetBytes % SECTOR_BYTES !== 0 ? `job.offsetBytes: ${job.offsetBytes} is not a multiple of ${SECTOR_BYTES}` : null) ??
    range('sizeBytes', 0, Number.MAX_SAFE_INTEGER) ??
    range('fullCheckEvery', 1, 1 << 30) ??
    range('intervalMs', 1, 3_600_000) ??
    range('stallMs', 1, 3_600_000);
  return problem ? { ok: false, error: problem } : { ok: true, job };
}

export interface LatencyStats {
  count: number;
  minUs: number;
  meanUs: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

export interface SeriesPoint {
  /** End of the bucket, ms since the window started. */
  tMs: number;
  iops: number;
  meanUs: number;
  p99Us: number;
}

export interface JobResult {
  job: BlockJob;
  /** Null when the job ran its whole window; the reason otherwise (first I/O error, a stall). */
  error: string | null;
  /** The caller cancelled the job before the end of its window (the figures cover what ran). */
  cancelled: boolean;
  /** The timed window actually measured, ms. */
  windowMs: number;
  /** Completions in the window (started at any time). */
  ios: number;
  reads: number;
  writes: number;
  iops: number;
  readIops: number;
  writeIops: number;
  /** Bytes per second, reads + writes. */
  bandwidth: number;
  /** Submit → completion of I/Os started and completed in the window. */
  lat: LatencyStats;
  readLat: LatencyStats;
  writeLat: LatencyStats;
  /** The whole window's latency histogram (HdrHistogram, compressed base64, ns): mergeable. */
  histogram: string;
  series: SeriesPoint[];
  /** Completions in the whole job, ramp included. */
  total: number;
  verify: {
    checked: number;
    fullChecked: number;
    /** Reads of blocks never written by this job and not assumed zeroed: not checkable. */
    unchecked: number;
    mismatches: number;
    /** The first mismatching read: byte offset on the device and the generation expected. */
    first: { offsetBytes: number; gen: number } | null;
    /** The read-back pass (`readBack`): blocks read and how many differ from their last write. */
    readBack: { blocks: number; mismatches: number; ms: number } | null;
  };
}

/** An empty latency histogram: nanoseconds, 1 ns to 1 h, 3 significant digits. */
export const newLatencyHistogram = (): Histogram => build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: 3 });

export function latencyStats(h: Histogram): LatencyStats {
  const us = (ns: number) => ns / 1000;
  if (h.totalCount === 0) return { count: 0, minUs: Number.NaN, meanUs: Number.NaN, p50Us: Number.NaN, p90Us: Number.NaN, p99Us: Number.NaN, p999Us: Number.NaN, maxUs: Number.NaN };
  return {
    count: h.totalCount,
    minUs: us(h.minNonZeroValue),
    meanUs: us(h.mean),
    p50Us: us(h.getValueAtPercentile(50)),
    p90Us: us(h.getValueAtPercentile(90)),
    p99Us: us(h.getValueAtPercentile(99)),
    p999Us: us(h.getValueAtPercentile(99.9)),
    maxUs: us(h.maxValue),
  };
}

/** Latency of several results together (e.g. the disks of one run), from their histograms. */
export function mergedLatency(results: readonly Pick<JobResult, 'histogram'>[]): LatencyStats {
  const all = newLatencyHistogram();
  for (const r of results) {
    const h = decodeFromCompressedBase64(r.histogram);
    all.add(h);
    h.destroy();
  }
  const s = latencyStats(all);
  all.destroy();
  return s;
}

export interface RunJobOptions {
  /** Monotonic ms (default `performance.now`); a simulation passes its virtual clock. */
  now?: () => number;
  /** Called once per `intervalMs` bucket of the window, and once per ramp. */
  onProgress?: (p: { phase: 'ramp' | 'run'; elapsedMs: number; ios: number; iops: number }) => void;
  /** Checked at every completion: true ends the job early (as a clean end). */
  cancelled?: () => boolean;
}

/** Runs `job` against `target` to the end of its window, its first error, or a stall. */
export async function runJob(target: BlockTarget, job: BlockJob, opts: RunJobOptions = {}): Promise<JobResult> {
  const now = opts.now ?? (() => performance.now());
  const devBytes = target.sectors * SECTOR_BYTES;
  if (job.offsetBytes >= devBytes) throw new RangeError(`job ${job.name}: offset ${job.offsetBytes} is beyond the device (${devBytes} bytes)`);
  const regionBytes = job.sizeBytes === 0 ? devBytes - job.offsetBytes : Math.min(job.sizeBytes, devBytes - job.offsetBytes);
  const nBlocks = Math.floor(regionBytes / job.bs);
  if (nBlocks < 1) throw new RangeError(`job ${job.name}: the region (${regionBytes} bytes) holds no ${job.bs}-byte block`);
  if (nBlocks < job.iodepth) throw new RangeError(`job ${job.name}: iodepth ${job.iodepth} needs at least as many blocks, the region has ${nBlocks}`);
  const sectorsPerBlock = job.bs / SECTOR_BYTES;
  const firstSector = job.offsetBytes / SECTOR_BYTES;
  const random = job.rw.startsWith('rand');
  const writeFrac = job.rw === 'randread' || job.rw === 'read' ? 0 : job.rw === 'randwrite' || job.rw === 'write' ? 1 : job.rwmixwrite / 100;
  const rnd = prng(job.seed);
  const gens = job.verify ? new Uint32Array(nBlocks) : null;
  const busy = new Uint8Array(nBlocks);
  let cursor = 0;

  const all = newLatencyHistogram();
  const rd = newLatencyHistogram();
  const wr = newLatencyHistogram();
  const bucket = newLatencyHistogram();
  const series: SeriesPoint[] = [];
  let ios = 0;
  let reads = 0;
  let writes = 0;
  let total = 0;
  let bucketIos = 0;
  const v: JobResult['verify'] = { checked: 0, fullChecked: 0, unchecked: 0, mismatches: 0, first: null, readBack: null };
  let error: string | null = null;
  let stop = false;
  let cancelled = false;
  const t0 = now();
  let tStart = job.rampMs === 0 ? t0 : Number.POSITIVE_INFINITY;
  let tEnd = Number.POSITIVE_INFINITY;
  let nextBucket = tStart + job.intervalMs;
  let lastCompletion = t0;

  const closeBuckets = (t: number) => {
    if (!Number.isFinite(tStart)) return;
    while (t >= nextBucket && nextBucket <= tStart + job.runtimeMs + 1e-9) {
      const s = latencyStats(bucket);
      series.push({ tMs: Math.round(nextBucket - tStart), iops: perSecond(bucketIos, job.intervalMs), meanUs: s.meanUs, p99Us: s.p99Us });
      opts.onProgress?.({ phase: 'run', elapsedMs: nextBucket - tStart, ios, iops: perSecond(bucketIos, job.intervalMs) });
      bucket.reset();
      bucketIos = 0;
      nextBucket += job.intervalMs;
    }
  };

  const pick = (slot: number): number => {
    if (!random) {
      for (let t = 0; t < nBlocks; t++) {
        const b = cursor;
        cursor = cursor + 1 === nBlocks ? 0 : cursor + 1;
        if (busy[b] === 0) return b;
      }
      return -1;
    }
    const b = pickFreeBlock(rnd, nBlocks, busy);
    if (b >= 0) return b;
    // Nearly every block in flight (iodepth close to the region's blocks): scan from a point.
    for (let t = 0, s = (slot * 977) % nBlocks; t < nBlocks; t++, s = s + 1 === nBlocks ? 0 : s + 1) if (busy[s] === 0) return s;
    return -1;
  };

  const loop = async (slot: number): Promise<void> => {
    const buf = new Uint8Array(job.bs);
    const words = new Uint32Array(buf.buffer);
    while (!stop) {
      const b = pick(slot);
      if (b < 0) throw new Error(`job ${job.name}: no free block (bug: iodepth ≤ blocks)`);
      busy[b] = 1;
      const isWrite = writeFrac === 1 || (writeFrac > 0 && rnd() < writeFrac);
      const sector = firstSector + b * sectorsPerBlock;
      const ts = now();
      let g = 0;
      try {
        if (isWrite) {
          if (gens) {
            g = gens[b]! + 1;
            fillBlock(words, b, g);
          }
          await target.write(sector, buf);
          if (gens) gens[b] = g;
        } else {
          const got = await target.read(sector, sectorsPerBlock);
          if (gens) {
            const gen = gens[b]!;
            if (gen === 0 && !job.assumeZeroed) v.unchecked++;
            else {
              const full = (v.checked + 1) % job.fullCheckEvery === 0;
              v.checked++;
              if (full) v.fullChecked++;
              if (!checkBlock(got, b, gen, full, job.bs)) {
                v.mismatches++;
                v.first ??= { offsetBytes: sector * SECTOR_BYTES, gen };
              }
            }
          }
        }
      } catch (e) {
        error ??= `${isWrite ? 'write' : 'read'} at sector ${sector}: ${e instanceof Error ? e.message : String(e)}`;
        stop = true;
        busy[b] = 0;
        return;
      }
      busy[b] = 0;
      const te = now();
      lastCompletion = te;
      total++;
      if (tStart === Number.POSITIVE_INFINITY) {
        if (te - t0 >= job.rampMs) {
          tStart = te;
          nextBucket = tStart + job.intervalMs;
          opts.onProgress?.({ phase: 'ramp', elapsedMs: te - t0, ios: total, iops: perSecond(total, te - t0) });
        }
      } else if (te <= tEnd) {
        closeBuckets(te);
        ios++;
        bucketIos++;
        if (isWrite) writes++;
        else reads++;
        if (ts >= tStart) {
          const ns = Math.max(1, Math.round((te - ts) * 1e6));
          (isWrite ? wr : rd).recordValue(ns);
          bucket.recordValue(ns);
        }
        if (te - tStart >= job.runtimeMs) {
          tEnd = te;
          stop = true;
        }
      }
      if (!stop && opts.cancelled?.()) {
        stop = true;
        cancelled = true;
      }
    }
  };

  let watchdog: ReturnType<typeof setInterval> | undefined;
  const stalled = new Promise<void>((resolve) => {
    watchdog = setInterval(() => {
      if (!stop && now() - lastCompletion > job.stallMs) {
        error ??= `stalled: no completion for ${job.stallMs} ms${target.describe ? ` (${target.describe()})` : ''}`;
        stop = true;
        resolve();
      }
    }, Math.min(500, job.stallMs));
    watchdog.unref?.();
  });
  try {
    await Promise.race([Promise.all(Array.from({ length: job.iodepth }, (_, i) => loop(i))), stalled]);
  } finally {
    clearInterval(watchdog);
  }
  const tLast = Math.min(now(), tEnd);
  if (gens && job.readBack && error === null && !cancelled) {
    const tb = now();
    const rb = { blocks: 0, mismatches: 0, ms: 0 };
    let next = 0;
    const reader = async () => {
      while (error === null) {
        while (next < nBlocks && gens[next] === 0) next++;
        if (next >= nBlocks) return;
        const b = next++;
        const sector = firstSector + b * sectorsPerBlock;
        try {
          const got = await target.read(sector, sectorsPerBlock);
          rb.blocks++;
          if (!checkBlock(got, b, gens[b]!, true, job.bs)) {
            rb.mismatches++;
            v.first ??= { offsetBytes: sector * SECTOR_BYTES, gen: gens[b]! };
          }
        } catch (e) {
          error ??= `read-back at sector ${sector}: ${e instanceof Error ? e.message : String(e)}`;
        }
      }
    };
    await Promise.all(Array.from({ length: job.iodepth }, reader));
    rb.ms = now() - tb;
    v.readBack = rb;
  }
  const windowMs = tStart === Number.POSITIVE_INFINITY ? 0 : Math.max(0, tLast - tStart);
  if (windowMs > 0) closeBuckets(tStart + Math.min(windowMs, job.runtimeMs));
  // The whole window: reads and writes together (recorded once per I/O, merged here).
  all.add(rd);
  all.add(wr);
  const bytes = ios * job.bs;
  const result: JobResult = {
    job,
    error,
    cancelled,
    windowMs,
    ios,
    reads,
    writes,
    iops: perSecond(ios, windowMs),
    readIops: perSecond(reads, windowMs),
    writeIops: perSecond(writes, windowMs),
    bandwidth: perSecond(bytes, windowMs),
    lat: latencyStats(all),
    readLat: latencyStats(rd),
    writeLat: latencyStats(wr),
    histogram: encodeIntoCompressedBase64(all),
    series,
    total,
    verify: v,
  };
  for (const h of [all, rd, wr, bucket]) h.destroy();
  return result;
}
