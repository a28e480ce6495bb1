import { describe, expect, it } from 'vitest';
import { BENCHMARKS, checkOption } from '../registry.js';
import { parseCli, resolveOptions } from '../cli.js';
import { BLOCK_BYTES, POLICIES, blocksOf, checkBlock, fillBlock, iops, pickFreeBlock, prng, variantOrder } from './load.js';

describe('blk workload helpers', () => {
  it('prng is deterministic per seed and stays in [0, 1)', () => {
    const a = prng(7);
    const b = prng(7);
    const c = prng(8);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(Array.from({ length: 1000 }, () => b())).toEqual(xs);
    expect(Array.from({ length: 1000 }, () => c())).not.toEqual(xs);
    for (const x of xs) expect(x >= 0 && x < 1).toBe(true);
  });

  it('blocksOf counts 4 KiB blocks and refuses silly sizes', () => {
    expect(blocksOf(64)).toBe(16384);
    expect(blocksOf(256)).toBe(65536);
    expect(() => blocksOf(0)).toThrow(RangeError);
    expect(() => blocksOf(1.5)).toThrow(RangeError);
  });

  it('fillBlock / checkBlock: a pattern checks as its own (block, gen) only', () => {
    const buf = new Uint8Array(BLOCK_BYTES);
    const words = new Uint32Array(buf.buffer);
    fillBlock(words, 123, 4);
    expect(checkBlock(buf, 123, 4, true)).toBe(true);
    expect(checkBlock(buf, 123, 4, false)).toBe(true);
    expect(checkBlock(buf, 123, 3, true)).toBe(false);
    expect(checkBlock(buf, 124, 4, false)).toBe(false);
    expect(checkBlock(buf, 123, 0, false)).toBe(false);
    // Generation 0 is a fresh disk's zeros.
    expect(checkBlock(new Uint8Array(BLOCK_BYTES), 9, 0, true)).toBe(true);
    fillBlock(words, 9, 0);
    expect(checkBlock(buf, 9, 0, true)).toBe(true);
    // One byte off in the middle: only the full check sees it.
    fillBlock(words, 5, 1);
    buf[1000] = buf[1000]! ^ 1;
    expect(checkBlock(buf, 5, 1, false)).toBe(true);
    expect(checkBlock(buf, 5, 1, true)).toBe(false);
    // A view at an offset and a wrong length.
    const big = new Uint8Array(3 * BLOCK_BYTES);
    fillBlock(new Uint32Array(big.buffer, BLOCK_BYTES, 1024), 77, 2);
    expect(checkBlock(big.subarray(BLOCK_BYTES, 2 * BLOCK_BYTES), 77, 2, true)).toBe(true);
    expect(checkBlock(big.subarray(0, 100), 77, 2, false)).toBe(false);
  });

  it('variantOrder: every policy × log once per round, a different order in consecutive rounds', () => {
    for (let round = 1; round <= 6; round++) {
      const vs = variantOrder(round);
      expect(vs).toHaveLength(POLICIES.length * 2);
      expect(new Set(vs.map((v) => `${v.policy}/${v.log}`)).size).toBe(6);
    }
    const key = (r: number) => variantOrder(r).map((v) => `${v.policy}/${v.log}`).join(',');
    for (let round = 1; round < 6; round++) expect(key(round)).not.toBe(key(round + 1));
    // Each variant comes first in some round of the first six.
    const firsts = new Set(Array.from({ length: 6 }, (_, i) => key(i + 1).split(',')[0]));
    expect(firsts.size).toBeGreaterThan(2);
    expect(variantOrder(1, ['on']).every((v) => v.log === 'on')).toBe(true);
  });

  it('iops: completions per second, NaN for an empty window', () => {
    expect(iops(50_000, 500)).toBe(100_000);
    expect(iops(10, 0)).toBeNaN();
    expect(iops(10, -1)).toBeNaN();
  });

  it('pickFreeBlock skips busy blocks, -1 when every try hits one', () => {
    const busy = new Uint8Array(4);
    busy[0] = busy[1] = busy[2] = 1;
    expect(pickFreeBlock(prng(1), 4, busy)).toBe(3);
    busy[3] = 1;
    expect(pickFreeBlock(prng(1), 4, busy, 10)).toBe(-1);
  });
});

describe('blk registration', () => {
  it('is in the registry and loads a benchmark of the same name with valid option defaults', async () => {
    expect(Object.keys(BENCHMARKS)).toContain('blk');
    const b = await BENCHMARKS.blk!.load();
    expect(b.name).toBe('blk');
    expect(b.description).toBe(BENCHMARKS.blk!.description);
    for (const [k, spec] of Object.entries(b.options)) expect(checkOption(k, spec, spec.default)).toBeNull();
    expect(parseCli(['blk', '--quick'], Object.keys(BENCHMARKS))).toMatchObject({ names: ['blk'], quick: true });
    expect(resolveOptions(b, [['qd', '16']], [b])).toMatchObject({ qd: 16, writePct: 50, batchMax: 64 });
    expect(() => resolveOptions(b, [['qd', '513']], [b])).toThrow(/≤ 512/);
  });
});
