export { prng, fillBlock, checkBlock, pickFreeBlock, perSecond } from './pattern.js';
export {
  DEFAULT_JOB,
  RW_MODES,
  SECTOR_BYTES,
  latencyStats,
  newLatencyHistogram,
  makeJob,
  mergedLatency,
  runJob,
  type BlockJob,
  type BlockTarget,
  type JobResult,
  type LatencyStats,
  type RunJobOptions,
  type RwMode,
  type SeriesPoint,
} from './job.js';
