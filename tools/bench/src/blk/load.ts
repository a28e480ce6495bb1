/**
 * The pure parts of the `blk` benchmark: the random workload (PRNG, aligned 4 KiB blocks, the
 * write pattern and its check), the order of variants per round, and IOPS. No I/O here.
 */

export const BLOCK_BYTES = 4096;
export const SECTOR_BYTES = 512;
export const SECTORS_PER_BLOCK = BLOCK_BYTES / SECTOR_BYTES;

export const POLICIES = ['sync', 'replace', 'async'] as const;
export type Policy = (typeof POLICIES)[number];
export type LogMode = 'on' | 'off';

export interface Variant {
  policy: Policy;
  log: LogMode;
}

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

/** 4 KiB blocks on a disk of `diskMiB` MiB. */
export function blocksOf(diskMiB: number): number {
  if (!Number.isInteger(diskMiB) || diskMiB < 1) throw new RangeError(`disk of ${diskMiB} MiB`);
  return (diskMiB * 1024 * 1024) / BLOCK_BYTES;
}

/**
 * The 4 KiB pattern written as generation `gen` (≥ 1) of block `block`: 1024 little-endian u32
 * words, word i = hash(block, gen) + i·0x9e3779b9. Generation 0 is the zeros of a fresh disk.
 */
export function fillBlock(words: Uint32Array, block: number, gen: number): void {
  if (gen === 0) {
    words.fill(0);
    return;
  }
  const h = (Math.imul(block, 0x85ebca6b) ^ Math.imul(gen, 0xc2b2ae35)) >>> 0;
  for (let i = 0; i < words.length; i++) words[i] = (h + Math.imul(i, 0x9e3779b9)) >>> 0;
}

/**
 * Does `bytes` (one 4 KiB block) hold generation `gen` of `block`? `full`: every word, else the
 * first, a middle and the last word (cheap enough for every read).
 */
export function checkBlock(bytes: Uint8Array, block: number, gen: number, full: boolean): boolean {
  if (bytes.length !== BLOCK_BYTES) return false;
  const w = new Uint32Array(bytes.buffer, bytes.byteOffset, BLOCK_BYTES / 4);
  const h = gen === 0 ? 0 : (Math.imul(block, 0x85ebca6b) ^ Math.imul(gen, 0xc2b2ae35)) >>> 0;
  const want = (i: number) => (gen === 0 ? 0 : (h + Math.imul(i, 0x9e3779b9)) >>> 0);
  if (full) {
    for (let i = 0; i < w.length; i++) if (w[i] !== want(i)) return false;
    return true;
  }
  return w[0] === want(0) && w[511] === want(511) && w[1023] === want(1023);
}

/**
 * The variants of round `round` (1-based): every policy, log on and off, rotated by the round and
 * reversed in even rounds, so that each variant runs early in some rounds and late in others, and
 * after different neighbours (the machine drifts; a variant's garbage lands on the next one).
 */
export function variantOrder(round: number, logs: readonly LogMode[] = ['off', 'on']): Variant[] {
  const all: Variant[] = [];
  for (const policy of POLICIES) for (const log of logs) all.push({ policy, log });
  const k = ((round - 1) * (all.length - 1)) % all.length; // n - 1 is coprime with n
  const rotated = [...all.slice(k), ...all.slice(0, k)];
  return round % 2 === 0 ? rotated.reverse() : rotated;
}

/** I/Os per second; NaN when the window is empty. */
export function iops(completed: number, ms: number): number {
  if (!(ms > 0) || !Number.isFinite(completed)) return Number.NaN;
  return (completed / ms) * 1000;
}

/** Pick a block that is not in flight (`busy[b] !== 0`); -1 if `tries` picks all hit busy blocks. */
export function pickFreeBlock(rnd: () => number, nBlocks: number, busy: Uint8Array, tries = 64): number {
  for (let t = 0; t < tries; t++) {
    const b = Math.floor(rnd() * nBlocks);
    if (busy[b] === 0) return b;
  }
  return -1;
}
