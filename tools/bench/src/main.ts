/**
 * pvsim benchmarks. `node tools/bench/dist/main.js <name...> [--quick] [--json FILE]`; see --help.
 * The pure parts (argument parsing, statistics) live in cli.ts and stats.ts.
 */
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { CliError, helpText, JSON_LINE_PREFIX, parseCli, resolveOptions } from './cli.js';
import { BENCHMARKS, type Benchmark, type BenchReport, type Registry } from './registry.js';
import { jsonDocument, renderReport, toJson } from './report.js';

export { BENCHMARKS } from './registry.js';

async function loadAll(registry: Registry, names: readonly string[]): Promise<Benchmark[]> {
  return Promise.all(names.map((n) => registry[n]!.load()));
}

/** Run the CLI; resolves to the process exit code. */
export async function main(argv: readonly string[], registry: Registry = BENCHMARKS): Promise<number> {
  const known = Object.keys(registry);
  let cmd;
  try {
    cmd = parseCli(argv, known);
  } catch (e) {
    if (e instanceof CliError) {
      process.stderr.write(`bench: ${e.message}\n`);
      return e.exitCode;
    }
    throw e;
  }
  if (cmd.kind === 'help') {
    process.stdout.write(`${helpText(await loadAll(registry, known))}\n`);
    return 0;
  }
  const benches = await loadAll(registry, cmd.names);
  let options: Record<string, number>[];
  try {
    options = benches.map((b) => resolveOptions(b, cmd.options, benches));
  } catch (e) {
    if (e instanceof CliError) {
      process.stderr.write(`bench: ${e.message}\n`);
      return e.exitCode;
    }
    throw e;
  }
  const startedAt = new Date();
  const t0 = performance.now();
  const reports: BenchReport[] = [];
  for (const [i, b] of benches.entries()) {
    const progress = (line: string) => process.stderr.write(`[${b.name}] ${line}\n`);
    reports.push(await b.run({ quick: cmd.quick, rounds: cmd.rounds, options: options[i]!, progress }));
  }
  const doc = jsonDocument(reports, startedAt, performance.now() - t0, cmd.quick);
  process.stdout.write(`${reports.map(renderReport).join('\n\n')}\n\n`);
  process.stdout.write(`${JSON_LINE_PREFIX}${toJson(doc)}\n`);
  if (cmd.jsonFile !== undefined) writeFileSync(cmd.jsonFile, `${toJson(doc, 2)}\n`);
  return cmd.strict && !doc.allTargetsPass ? 1 : 0;
}

const isEntryPoint = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isEntryPoint) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`bench: failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
