import { describe, expect, it } from 'vitest';
import { DEFAULT_JOB, makeJob, mergedLatency, runJob, type BlockJob, type BlockTarget } from './index.js';
import { checkBlock, fillBlock, prng } from './pattern.js';

/** A RAM disk answering after a random 0–2 ms delay, optionally misbehaving. */
function ramDisk(sectors: number, o: { corruptEvery?: number; failAt?: number; hangAt?: number } = {}): BlockTarget & { bytes: Uint8Array; ops: number; overlaps: number } {
  const bytes = new Uint8Array(sectors * 512);
  const rnd = prng(99);
  const inflight = new Set<number>();
  const d = {
    sectors,
    bytes,
    ops: 0,
    overlaps: 0,
    async io<T>(sector: number, count: number, f: () => T): Promise<T> {
      const n = ++d.ops;
      if (n === o.hangAt) return new Promise<T>(() => {});
      for (let s = sector; s < sector + count; s++) if (inflight.has(s)) d.overlaps++;
      for (let s = sector; s < sector + count; s++) inflight.add(s);
      await new Promise((r) => setTimeout(r, Math.floor(rnd() * 3)));
      for (let s = sector; s < sector + count; s++) inflight.delete(s);
      if (n === o.failAt) throw new Error('medium error');
      return f();
    },
    read(sector: number, count: number) {
      return d.io(sector, count, () => {
        const out = bytes.slice(sector * 512, (sector + count) * 512);
        if (o.corruptEvery && d.ops % o.corruptEvery === 0) out[100] = out[100]! ^ 1;
        return out;
      });
    },
    write(sector: number, data: Uint8Array) {
      const copy = data.slice(); // taken at submission, as a driver copies into its pages
      return d.io(sector, data.length / 512, () => void bytes.set(copy, sector * 512));
    },
    describe: () => `ops ${d.ops}`,
  };
  return d;
}

const job = (j: Partial<BlockJob>): BlockJob => {
  const r = makeJob({ runtimeMs: 300, rampMs: 50, intervalMs: 50, ...j });
  if (!r.ok) throw new Error(r.error);
  return r.job;
};

describe('makeJob', () => {
  it('fills defaults and names the first bad field', () => {
    expect(makeJob({})).toEqual({ ok: true, job: DEFAULT_JOB });
    expect(makeJob({ bs: 1000 })).toEqual({ ok: false, error: 'job.bs: 1000 is not a multiple of 512' });
    expect(makeJob({ iodepth: 0 })).toEqual({ ok: false, error: 'job.iodepth: 0 is outside 1..4096' });
    expect(makeJob({ rw: 'randwr' })).toMatchObject({ ok: false, error: expect.stringContaining('job.rw: expected one of randrw') });
    expect(makeJob({ qd: 3 })).toMatchObject({ ok: false, error: expect.stringContaining("unknown field 'qd'") });
    expect(makeJob({ verify: 'yes' })).toMatchObject({ ok: false, error: 'job.verify: expected true or false, got "yes"' });
    expect(makeJob({ runtimeMs: 1.5 })).toMatchObject({ ok: false, error: 'job.runtimeMs: expected an integer, got 1.5' });
    expect(makeJob(null)).toEqual({ ok: false, error: 'job: expected an object' });
  });
});

describe('runJob', () => {
  it('randrw with verify on a well-behaved disk: every read checks, no block overlaps, figures add up', async () => {
    const disk = ramDisk(2048);
    const r = await runJob(disk, job({ iodepth: 8, assumeZeroed: true, readBack: true }));
    expect(r.error).toBeNull();
    expect(disk.overlaps).toBe(0);
    expect(r.ios).toBe(r.reads + r.writes);
    expect(r.reads).toBeGreaterThan(20);
    expect(r.writes).toBeGreaterThan(20);
    expect(r.verify.mismatches).toBe(0);
    expect(r.verify.checked).toBeGreaterThan(0);
    expect(r.verify.unchecked).toBe(0);
    expect(r.verify.readBack).toMatchObject({ mismatches: 0 });
    expect(r.verify.readBack!.blocks).toBeGreaterThan(10);
    expect(r.windowMs).toBeGreaterThanOrEqual(300);
    expect(r.iops).toBeCloseTo((r.ios / r.windowMs) * 1000, 6);
    expect(r.bandwidth).toBeCloseTo(r.iops * 4096, 3);
    expect(r.lat.count).toBeLessThanOrEqual(r.ios);
    expect(r.lat.p50Us).toBeLessThanOrEqual(r.lat.p99Us);
    expect(r.series.length).toBeGreaterThanOrEqual(5);
    expect(r.series.every((p, i) => p.tMs === (i + 1) * 50)).toBe(true);
    expect(mergedLatency([r, r]).count).toBe(2 * r.lat.count);
    // The disk holds the last generation of every written block.
    let written = 0;
    for (let b = 0; b < 512; b++) {
      const blk = disk.bytes.subarray(b * 4096, (b + 1) * 4096);
      if (blk.some((x) => x !== 0)) written++;
    }
    expect(written).toBeGreaterThan(0);
  });

  it('catches a corrupted read and reports where', async () => {
    const r = await runJob(ramDisk(2048, { corruptEvery: 5 }), job({ iodepth: 4, assumeZeroed: true, fullCheckEvery: 1 }));
    expect(r.verify.mismatches).toBeGreaterThan(0);
    expect(r.verify.first).not.toBeNull();
    expect(r.verify.first!.offsetBytes % 4096).toBe(0);
  });

  it('the read-back pass catches a block the device changed behind the job', async () => {
    const disk = ramDisk(2048);
    let writes = 0;
    const target = {
      ...disk,
      read: disk.read,
      write: (s: number, d: Uint8Array) => {
        // The 5th write lands one block off: the job's model and the disk disagree.
        return disk.write(++writes === 5 ? (s + 8) % 2048 : s, d);
      },
    };
    const r = await runJob(target, job({ rw: 'randwrite', iodepth: 1, readBack: true, runtimeMs: 100 }));
    expect(r.verify.readBack!.mismatches).toBeGreaterThan(0);
  });

  it('without assumeZeroed, reads of unwritten blocks are counted as unchecked, not as mismatches', async () => {
    const disk = ramDisk(2048);
    disk.bytes.fill(0xa5);
    const r = await runJob(disk, job({ rw: 'randread', iodepth: 4 }));
    expect(r.writes).toBe(0);
    expect(r.verify.mismatches).toBe(0);
    expect(r.verify.unchecked).toBe(r.total);
  });

  it('the first I/O error ends the job, with the error', async () => {
    const r = await runJob(ramDisk(2048, { failAt: 40 }), job({ iodepth: 4 }));
    expect(r.error).toMatch(/at sector \d+: medium error/);
  });

  it('a stall ends the job with the device description', async () => {
    const r = await runJob(ramDisk(2048, { hangAt: 30 }), job({ iodepth: 1, stallMs: 200, runtimeMs: 5000 }));
    expect(r.error).toBe('stalled: no completion for 200 ms (ops 30)');
  });

  it('sequential writes cover the region in order; the region is respected', async () => {
    const disk = ramDisk(4096);
    const r = await runJob(disk, job({ rw: 'write', bs: 8192, iodepth: 2, offsetBytes: 65536, sizeBytes: 65536 * 4, verify: true }));
    expect(r.error).toBeNull();
    expect(disk.bytes.subarray(0, 65536).every((x) => x === 0)).toBe(true);
    expect(disk.bytes.subarray(65536 * 5).every((x) => x === 0)).toBe(true);
    expect(disk.bytes.subarray(65536, 65536 * 5).some((x) => x !== 0)).toBe(true);
  });

  it('cancellation ends the job after the I/Os in flight, skipping the read-back', async () => {
    const disk = ramDisk(2048);
    let calls = 0;
    const r = await runJob(disk, job({ iodepth: 4, runtimeMs: 60_000, rampMs: 0, readBack: true }), { cancelled: () => ++calls > 200 });
    expect(r.cancelled).toBe(true);
    expect(r.error).toBeNull();
    expect(r.total).toBeGreaterThanOrEqual(200);
    expect(r.total).toBeLessThan(210);
    expect(r.verify.readBack).toBeNull();
  });

  it('refuses a region smaller than the queue depth, or beyond the device', async () => {
    await expect(runJob(ramDisk(64), job({ iodepth: 16 }))).rejects.toThrow(/iodepth 16 needs at least as many blocks/);
    await expect(runJob(ramDisk(64), job({ offsetBytes: 64 * 512 }))).rejects.toThrow(/beyond the device/);
  });
});

describe('pattern', () => {
  it('a block checks as its own (block, gen) only, at any size', () => {
    for (const bs of [512, 4096, 65536]) {
      const buf = new Uint8Array(bs);
      fillBlock(new Uint32Array(buf.buffer), 7, 3);
      expect(checkBlock(buf, 7, 3, true, bs)).toBe(true);
      expect(checkBlock(buf, 7, 2, false, bs)).toBe(false);
      expect(checkBlock(buf, 8, 3, false, bs)).toBe(false);
      buf[bs / 2 + 1] = buf[bs / 2 + 1]! ^ 1;
      expect(checkBlock(buf, 7, 3, true, bs)).toBe(false);
    }
    // A view at an odd offset is checked on a copy.
    const big = new Uint8Array(4097);
    fillBlock(new Uint32Array(4096 / 4), 1, 1);
    const src = new Uint8Array(4096);
    fillBlock(new Uint32Array(src.buffer), 1, 1);
    big.set(src, 1);
    expect(checkBlock(big.subarray(1), 1, 1, true)).toBe(true);
  });
});
