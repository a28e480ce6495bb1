import { describe, expect, it } from 'vitest';
import { CliError, helpText, JSON_LINE_PREFIX, parseCli, resolveOptions } from './cli.js';
import { BENCHMARKS, checkOption, type OptionSpec } from './registry.js';
import { fmtRate, fmtRatio, fmtUs, latencySummary, max, median, min, ratio, summarize } from './stats.js';
import { toJson } from './report.js';
import { main } from './main.js';

const known = ['ring', 'eventlog'];

function usageError(argv: string[]): CliError {
  try {
    parseCli(argv, known);
  } catch (e) {
    expect(e).toBeInstanceOf(CliError);
    return e as CliError;
  }
  throw new Error(`expected a usage error for ${JSON.stringify(argv)}`);
}

describe('parseCli', () => {
  it('parses a benchmark name and the common flags', () => {
    expect(parseCli(['ring', '--quick', '--json', 'out.json', '--rounds', '3', '-o', 'spinUs=50', '--option', 'ring.burst=16'], known)).toEqual({
      kind: 'run',
      names: ['ring'],
      quick: true,
      jsonFile: 'out.json',
      rounds: 3,
      strict: false,
      options: [
        ['spinUs', '50'],
        ['ring.burst', '16'],
      ],
    });
  });

  it('defaults: not quick, no JSON file, rounds chosen by the benchmark', () => {
    expect(parseCli(['ring'], known)).toMatchObject({ kind: 'run', names: ['ring'], quick: false, jsonFile: undefined, rounds: undefined, strict: false });
  });

  it('expands all and removes duplicates, keeping order', () => {
    expect(parseCli(['eventlog', 'all', 'ring'], known)).toMatchObject({ names: ['eventlog', 'ring'] });
  });

  it('answers --help before anything else', () => {
    expect(parseCli(['--help'], known)).toEqual({ kind: 'help' });
    expect(parseCli(['nonsense', '-h'], known)).toEqual({ kind: 'help' });
  });

  it('rejects an unknown benchmark with exit code 2, listing the known ones', () => {
    const e = usageError(['rign']);
    expect(e.exitCode).toBe(2);
    expect(e.message).toContain("unknown benchmark 'rign'");
    expect(e.message).toContain('ring, eventlog');
  });

  it('rejects a missing name, unknown flags and bad values with exit code 2', () => {
    expect(usageError([]).message).toMatch(/no benchmark named; known benchmarks: ring, eventlog/);
    expect(usageError(['ring', '--fast']).exitCode).toBe(2);
    expect(usageError(['ring', '--rounds', '0']).message).toMatch(/--rounds/);
    expect(usageError(['ring', '--rounds', '2.5']).message).toMatch(/--rounds/);
    expect(usageError(['ring', '-o', 'novalue']).message).toMatch(/key=value/);
    expect(usageError(['ring', '--json']).exitCode).toBe(2);
  });

  it('main() exits 2 on an unknown name without running anything', async () => {
    const writes: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => (writes.push(String(chunk)), true)) as typeof process.stderr.write;
    try {
      expect(await main(['no-such-bench'])).toBe(2);
    } finally {
      process.stderr.write = orig;
    }
    expect(writes.join('')).toMatch(/unknown benchmark 'no-such-bench'; known benchmarks: ring/);
  });

  it('the real registry knows ring', () => {
    expect(Object.keys(BENCHMARKS)).toContain('ring');
    expect(parseCli(['ring'], Object.keys(BENCHMARKS))).toMatchObject({ names: ['ring'] });
  });
});

describe('resolveOptions', () => {
  const spinUs: OptionSpec = { description: 'spin', default: 200, min: 0, integer: true };
  const ring = { name: 'ring', description: 'rings', options: { spinUs, scale: { description: 'scale', default: 1, min: 0.01 } } };
  const blk = { name: 'blk', description: 'block', options: { depth: { description: 'queue depth', default: 32, min: 1, integer: true } } };

  it('fills defaults and applies plain and qualified overrides', () => {
    expect(resolveOptions(ring, [], [ring])).toEqual({ spinUs: 200, scale: 1 });
    expect(resolveOptions(ring, [['spinUs', '50'], ['ring.scale', '0.5']], [ring])).toEqual({ spinUs: 50, scale: 0.5 });
  });

  it("ignores another benchmark's options but rejects options nobody declares", () => {
    expect(resolveOptions(ring, [['blk.depth', '8'], ['depth', '4']], [ring, blk])).toEqual({ spinUs: 200, scale: 1 });
    expect(resolveOptions(blk, [['depth', '4']], [ring, blk])).toEqual({ depth: 4 });
    expect(() => resolveOptions(ring, [['spinMs', '1']], [ring, blk])).toThrow(/unknown option 'spinMs'/);
    expect(() => resolveOptions(ring, [['blk.spinUs', '1']], [ring, blk])).toThrow(CliError);
  });

  it('validates values against the spec', () => {
    expect(() => resolveOptions(ring, [['spinUs', '-1']], [ring])).toThrow(/≥ 0/);
    expect(() => resolveOptions(ring, [['spinUs', '1.5']], [ring])).toThrow(/integer/);
    expect(() => resolveOptions(ring, [['spinUs', 'abc']], [ring])).toThrow(/not a number/);
    expect(() => resolveOptions(ring, [['spinUs', '']], [ring])).toThrow(/not a number/);
    expect(checkOption('x', spinUs, 10)).toBeNull();
  });

  it('help lists every benchmark, its options and the JSON line format', () => {
    const text = helpText([ring, blk]);
    expect(text).toContain('ring');
    expect(text).toContain('-o spinUs=N');
    expect(text).toContain('-o depth=N');
    expect(text).toContain(JSON_LINE_PREFIX);
  });
});

describe('statistics', () => {
  it('min / median / max', () => {
    expect(min([3, 1, 2])).toBe(1);
    expect(max([3, 1, 2])).toBe(3);
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
  });

  it('does not reorder its input', () => {
    const xs = [3, 1, 2];
    median(xs);
    expect(xs).toEqual([3, 1, 2]);
  });

  it('refuses empty or non-finite input', () => {
    expect(() => median([])).toThrow(RangeError);
    expect(() => min([])).toThrow(RangeError);
    expect(() => max([1, Number.NaN])).toThrow(RangeError);
  });

  it('handles many values (no spread-argument limit surprises at bench sizes)', () => {
    const xs = Array.from({ length: 10_001 }, (_, i) => i);
    expect(summarize(xs)).toEqual({ n: 10_001, min: 0, median: 5_000, max: 10_000 });
  });

  it('ratio is NaN rather than Infinity for a zero or missing baseline', () => {
    expect(ratio(6, 2)).toBe(3);
    expect(ratio(1, 0)).toBeNaN();
    expect(ratio(Number.NaN, 2)).toBeNaN();
  });

  it('latency percentiles come from an HDR histogram (ms in, µs out)', () => {
    // 1000 samples of 1..1000 µs.
    const samples = Array.from({ length: 1000 }, (_, i) => (i + 1) / 1000);
    const s = latencySummary(samples);
    expect(s.count).toBe(1000);
    expect(s.p50Us).toBeCloseTo(500, -1);
    expect(s.p99Us).toBeCloseTo(990, -1);
    expect(s.p999Us).toBeCloseTo(999, -1);
    expect(s.minUs).toBeCloseTo(1, 1);
    expect(s.maxUs).toBeCloseTo(1000, -1);
    expect(() => latencySummary([])).toThrow(RangeError);
  });

  it('formats rates, microseconds and ratios', () => {
    expect(fmtRate(2_170_000)).toBe('2.17 M/s');
    expect(fmtRate(708_000)).toBe('708 k/s');
    expect(fmtRate(15_200)).toBe('15.2 k/s');
    expect(fmtRate(Number.NaN)).toBe('n/a');
    expect(fmtUs(1.944)).toBe('1.94');
    expect(fmtUs(59.3)).toBe('59.3');
    expect(fmtUs(1027.4)).toBe('1027');
    expect(fmtRatio(3.066)).toBe('3.07×');
    expect(fmtRatio(0.033)).toBe('0.033×');
    expect(fmtRatio(Number.NaN)).toBe('n/a');
  });

  it('JSON output turns NaN into null', () => {
    expect(toJson({ a: Number.NaN, b: 1 })).toBe('{"a":null,"b":1}');
  });
});
