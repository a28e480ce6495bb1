/**
 * The benchmark registry. Adding a benchmark = one entry here plus its module, which exports a
 * `Benchmark`. Modules are imported lazily, so running `ring` does not load `blk`'s dependencies.
 */

/** A benchmark-specific option, set on the command line with `-o name=value`. */
export interface OptionSpec {
  description: string;
  /** Default value (also fixes the type: options are numbers for now). */
  default: number;
  /** Smallest value accepted (inclusive). */
  min?: number;
  /** Largest value accepted (inclusive). */
  max?: number;
  /** Must the value be an integer? */
  integer?: boolean;
}

export interface BenchContext {
  /** `--quick`: a short run, for smoke tests; numbers are noisier. */
  quick: boolean;
  /** `--rounds N`, when given; otherwise the benchmark picks (fewer with `quick`). */
  rounds: number | undefined;
  /** Values of the benchmark's declared options (defaults filled in). */
  options: Record<string, number>;
  /** A progress line for stderr (stdout carries only the report). */
  progress(line: string): void;
}

export interface ReportTable {
  title: string;
  head: string[];
  rows: string[][];
}

export interface TargetResult {
  /** What the target says, e.g. "msgpack ring throughput ≥ 3× postMessage". */
  name: string;
  /** The measured value, in the target's terms (a ratio of medians for ring). */
  measured: number;
  comparison: '>=' | '<=';
  threshold: number;
  pass: boolean;
}

export interface BenchReport {
  name: string;
  title: string;
  tables: ReportTable[];
  targets: TargetResult[];
  /** Lines printed under the tables: method, spin budget, noise caveats. */
  notes: string[];
  /** The machine-readable results (goes into the JSON document under `benchmarks.<name>`). */
  data: Record<string, unknown>;
}

export interface Benchmark {
  readonly name: string;
  readonly description: string;
  readonly options: Readonly<Record<string, OptionSpec>>;
  run(ctx: BenchContext): Promise<BenchReport>;
}

export interface RegistryEntry {
  description: string;
  load(): Promise<Benchmark>;
}

export type Registry = Readonly<Record<string, RegistryEntry>>;

export const BENCHMARKS: Registry = {
  ring: {
    description: 'shared ring (msgpack / raw slots) vs MessagePort vs piscina: throughput and ping-pong latency',
    load: async () => (await import('./ring/bench.js')).ringBenchmark,
  },
  eventlog: {
    description: 'event log: emitters → sink → disk (events/s, ns/emit), ring with the log on vs off, reading a log back',
    load: async () => (await import('./eventlog/bench.js')).eventlogBenchmark,
  },
  grant: {
    description: 'grant tables from two threads at once: map+unmap batches of 11, 4 KiB grant copy vs Uint8Array.set, log on vs off',
    load: async () => (await import('./grant/bench.js')).grantBenchmark,
  },
  blk: {
    description: "blkfront → blkback on the launcher's threads (or one thread): 4 KiB random writes+reads at queue depth 32, IOPS and p50/p99 latency per unmap policy (sync, replace, async), log on vs off",
    load: async () => (await import('./blk/bench.js')).blkBenchmark,
  },
};

/** Check that an option value fits its spec; returns an error message or null. */
export function checkOption(name: string, spec: OptionSpec, value: number): string | null {
  if (!Number.isFinite(value)) return `option ${name}: not a number`;
  if (spec.integer && !Number.isInteger(value)) return `option ${name}: must be an integer, got ${value}`;
  if (spec.min !== undefined && value < spec.min) return `option ${name}: must be ≥ ${spec.min}, got ${value}`;
  if (spec.max !== undefined && value > spec.max) return `option ${name}: must be ≤ ${spec.max}, got ${value}`;
  return null;
}
