import { describe, expect, it } from 'vitest';
import { AssertionFailure, domId, idxAdd, idxSub, ringEntries, roundDownPow2 } from './index.js';

describe('ring layout', () => {
  it('sizes rings as __CONST_RING_SIZE does for the checked protocols', () => {
    // Figures checked with gcc on Xen's public headers (blkif 112-byte request, netif tx 12).
    expect(ringEntries(0, 112)).toBe(32);
    expect(ringEntries(1, 112)).toBe(64);
    expect(ringEntries(4, 112)).toBe(512);
    expect(ringEntries(0, 12)).toBe(256);
    expect(ringEntries(0, 16)).toBe(128);
  });
  it('rounds down to a power of two', () => {
    expect([0, 1, 2, 3, 5, 63, 64, 65].map(roundDownPow2)).toEqual([0, 1, 2, 2, 4, 32, 64, 64]);
  });
});

describe('u32 index arithmetic', () => {
  it('wraps at 2^32', () => {
    expect(idxAdd(0xffff_ffff, 1)).toBe(0);
    expect(idxAdd(0xffff_fffe, 5)).toBe(3);
    expect(idxSub(3, 0xffff_fffe)).toBe(5);
    expect(idxSub(0, 1)).toBe(0xffff_ffff);
  });
});

describe('branded ids', () => {
  it('reject values outside their width as a bug', () => {
    expect(() => domId(0x10000)).toThrow(AssertionFailure);
    expect(() => domId(-1)).toThrow(/pvsim bug/);
    expect(domId(7)).toBe(7);
  });
});
