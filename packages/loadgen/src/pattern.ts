/**
 * The pieces of a load job that do no I/O: a seeded PRNG, the write pattern of a block and its
 * check, picking a block that is not in flight.
 */

/** Deterministic PRNG (mulberry32): floats in [0, 1). */
export function prng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const patternSeed = (block: number, gen: number) => (Math.imul(block, 0x85ebca6b) ^ Math.imul(gen, 0xc2b2ae35)) >>> 0;

/**
 * The pattern written as generation `gen` (≥ 1) of block `block`: little-endian u32 words,
 * word i = hash(block, gen) + i·0x9e3779b9 (so a block holding another block's or another
 * generation's data, or shifted data, does not check). Generation 0 is zeros (a fresh disk).
 */
export function fillBlock(words: Uint32Array, block: number, gen: number): void {
  if (gen === 0) {
    words.fill(0);
    return;
  }
  const h = patternSeed(block, gen);
  for (let i = 0; i < words.length; i++) words[i] = (h + Math.imul(i, 0x9e3779b9)) >>> 0;
}

/**
 * Does `bytes` (one block of `blockBytes`, a multiple of 4) hold generation `gen` of `block`?
 * `full`: every word; otherwise the first, a middle and the last word (cheap enough for every
 * read, and still catches a block from the wrong place or time).
 */
export function checkBlock(bytes: Uint8Array, block: number, gen: number, full: boolean, blockBytes = 4096): boolean {
  if (bytes.length !== blockBytes || blockBytes % 4 !== 0) return false;
  const n = blockBytes / 4;
  const w = bytes.byteOffset % 4 === 0 ? new Uint32Array(bytes.buffer, bytes.byteOffset, n) : new Uint32Array(bytes.slice().buffer);
  const h = gen === 0 ? 0 : patternSeed(block, gen);
  const want = (i: number) => (gen === 0 ? 0 : (h + Math.imul(i, 0x9e3779b9)) >>> 0);
  if (full) {
    for (let i = 0; i < n; i++) if (w[i] !== want(i)) return false;
    return true;
  }
  const mid = n >>> 1;
  return w[0] === want(0) && w[mid] === want(mid) && w[n - 1] === want(n - 1);
}

/** A block in `[0, nBlocks)` with `busy[b] === 0`, or -1 when `tries` picks all hit busy ones. */
export function pickFreeBlock(rnd: () => number, nBlocks: number, busy: Uint8Array, tries = 64): number {
  for (let t = 0; t < tries; t++) {
    const b = Math.floor(rnd() * nBlocks);
    if (busy[b] === 0) return b;
  }
  return -1;
}

/** I/Os per second; NaN when the window is empty. */
export function perSecond(count: number, ms: number): number {
  if (!(ms > 0) || !Number.isFinite(count)) return Number.NaN;
  return (count / ms) * 1000;
}
