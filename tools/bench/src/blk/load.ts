/**
 * The pure parts of the `blk` benchmark: aligned 4 KiB blocks and the order of variants per
 * round. The workload's PRNG, write pattern and check, and IOPS, are @pvsim/loadgen's
 * (re-exported). No I/O here.
 */
export { prng, fillBlock, checkBlock, pickFreeBlock } from '@pvsim/loadgen';
/** I/Os per second; NaN when the window is empty (loadgen's `perSecond`). */
export { perSecond as iops } from '@pvsim/loadgen';

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

/** 4 KiB blocks on a disk of `diskMiB` MiB. */
export function blocksOf(diskMiB: number): number {
  if (!Number.isInteger(diskMiB) || diskMiB < 1) throw new RangeError(`disk of ${diskMiB} MiB`);
  return (diskMiB * 1024 * 1024) / BLOCK_BYTES;
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

