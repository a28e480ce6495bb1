/**
 * Command-line parsing: pure, so it is unit-tested (main.test.ts). Usage errors are `CliError`s
 * with exit code 2; `main.ts` prints them.
 */
import { parseArgs } from 'node:util';
import { checkOption, type OptionSpec } from './registry.js';

export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

export type CliCommand =
  | { kind: 'help' }
  | {
      kind: 'run';
      /** Benchmarks to run, in order, deduplicated (`all` expands to every known one). */
      names: string[];
      quick: boolean;
      /** `--json FILE`: also write the JSON document there. */
      jsonFile: string | undefined;
      rounds: number | undefined;
      /** `--strict`: exit 1 when a target fails. */
      strict: boolean;
      /** `-o key=value` pairs, in order; `key` may be `bench.key` to address one benchmark. */
      options: [string, string][];
    };

/** The line prefix of the JSON document on stdout. */
export const JSON_LINE_PREFIX = 'JSON: ';

export function unknownNameMessage(name: string, known: readonly string[]): string {
  return `unknown benchmark '${name}'; known benchmarks: ${known.join(', ')} (or 'all')`;
}

export function parseCli(argv: readonly string[], known: readonly string[]): CliCommand {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        quick: { type: 'boolean', short: 'q' },
        strict: { type: 'boolean' },
        json: { type: 'string' },
        rounds: { type: 'string' },
        option: { type: 'string', short: 'o', multiple: true },
      },
    });
  } catch (e) {
    throw new CliError(e instanceof Error ? e.message : String(e));
  }
  const v = parsed.values;
  if (v.help) return { kind: 'help' };
  if (parsed.positionals.length === 0) {
    throw new CliError(`no benchmark named; known benchmarks: ${known.join(', ')} (or 'all'); see --help`);
  }
  const names: string[] = [];
  for (const p of parsed.positionals) {
    const expanded = p === 'all' ? known : [p];
    for (const n of expanded) {
      if (!known.includes(n)) throw new CliError(unknownNameMessage(n, known));
      if (!names.includes(n)) names.push(n);
    }
  }
  let rounds: number | undefined;
  if (v.rounds !== undefined) {
    rounds = Number(v.rounds);
    if (!/^\d+$/.test(v.rounds) || rounds < 1 || rounds > 1000) throw new CliError(`--rounds must be an integer 1..1000, got '${v.rounds}'`);
  }
  if (v.json !== undefined && v.json === '') throw new CliError('--json needs a file name');
  const options: [string, string][] = [];
  for (const o of v.option ?? []) {
    const eq = o.indexOf('=');
    if (eq <= 0) throw new CliError(`-o expects key=value, got '${o}'`);
    options.push([o.slice(0, eq), o.slice(eq + 1)]);
  }
  return { kind: 'run', names, quick: v.quick ?? false, jsonFile: v.json, rounds, strict: v.strict ?? false, options };
}

/**
 * The option values for one benchmark: its defaults, overridden by `key=value` or
 * `bench.key=value` pairs. A key that none of `allBenches` declares is an error.
 */
export function resolveOptions(
  bench: { name: string; options: Readonly<Record<string, OptionSpec>> },
  pairs: readonly [string, string][],
  allBenches: readonly { name: string; options: Readonly<Record<string, OptionSpec>> }[],
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, spec] of Object.entries(bench.options)) out[k] = spec.default;
  for (const [rawKey, rawValue] of pairs) {
    const dot = rawKey.indexOf('.');
    const target = dot >= 0 ? rawKey.slice(0, dot) : undefined;
    const key = dot >= 0 ? rawKey.slice(dot + 1) : rawKey;
    const declaredBy = allBenches.filter((b) => (target === undefined || b.name === target) && Object.hasOwn(b.options, key));
    if (declaredBy.length === 0) {
      const where = target ?? allBenches.map((b) => b.name).join(', ');
      throw new CliError(`unknown option '${rawKey}' for ${where}; see --help`);
    }
    if (target !== undefined && target !== bench.name) continue;
    const spec = bench.options[key];
    if (!spec || !Object.hasOwn(bench.options, key)) continue;
    const value = rawValue.trim() === '' ? Number.NaN : Number(rawValue);
    const problem = checkOption(key, spec, value);
    if (problem) throw new CliError(problem);
    out[key] = value;
  }
  return out;
}

export function helpText(benches: readonly { name: string; description: string; options: Readonly<Record<string, OptionSpec>> }[]): string {
  const lines = [
    'usage: node tools/bench/dist/main.js [options] <benchmark...|all>',
    '       npm run bench -- <benchmark> [options]',
    '',
    'options:',
    '  -q, --quick          short run (fewer rounds and messages; noisier)',
    '  --rounds N           rounds per variant (default 5, 3 with --quick); variants are interleaved per round',
    '  --json FILE          also write the JSON document to FILE (pretty-printed)',
    '  -o, --option K=V     set a benchmark option (K or bench.K); repeatable',
    '  --strict             exit 1 if any target fails (default: report only)',
    '  -h, --help           this text',
    '',
    'output: progress lines go to stderr; stdout has the tables, then exactly one line',
    `  '${JSON_LINE_PREFIX}{...}' holding the whole result document (one JSON object, no newlines).`,
    `  Extract it with:  node tools/bench/dist/main.js ring | sed -n 's/^${JSON_LINE_PREFIX}//p'`,
    '',
    'exit codes: 0 ok, 1 benchmark failure (or a failed target with --strict), 2 usage error',
    '',
    'benchmarks:',
  ];
  for (const b of benches) {
    lines.push(`  ${b.name.padEnd(10)} ${b.description}`);
    for (const [k, s] of Object.entries(b.options)) {
      lines.push(`      -o ${`${k}=N`.padEnd(16)} ${s.description} (default ${s.default})`);
    }
  }
  return lines.join('\n');
}
