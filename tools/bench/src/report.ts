/** Rendering of benchmark reports: cli-table3 tables for people, one JSON document for tools. */
import Table from 'cli-table3';
import os from 'node:os';
import type { BenchReport, ReportTable } from './registry.js';

export function renderTable(t: ReportTable): string {
  const table = new Table({
    head: t.head,
    style: { head: [], border: [] }, // no colours: the output is often piped or pasted
    colAligns: t.head.map((_, i) => (i === 0 ? 'left' : 'right')),
  });
  for (const r of t.rows) table.push(r);
  return `${t.title}\n${table.toString()}`;
}

export function renderReport(r: BenchReport): string {
  const parts = [`== ${r.name}: ${r.title}`];
  for (const t of r.tables) parts.push(renderTable(t));
  if (r.targets.length > 0) {
    parts.push(
      renderTable({
        title: 'Targets',
        head: ['target', 'measured', 'threshold', 'result'],
        rows: r.targets.map((t) => [
          t.name,
          Number.isFinite(t.measured) ? t.measured.toFixed(3) : 'n/a',
          `${t.comparison} ${t.threshold}`,
          t.pass ? 'PASS' : 'FAIL',
        ]),
      }),
    );
  }
  if (r.notes.length > 0) parts.push(r.notes.map((n) => `  * ${n}`).join('\n'));
  return parts.join('\n\n');
}

export interface JsonDocument {
  tool: '@pvsim/bench';
  schema: 1;
  startedAt: string;
  durationMs: number;
  quick: boolean;
  host: { node: string; platform: string; arch: string; cpus: number; cpuModel: string; loadavg: number[] };
  benchmarks: Record<string, BenchReport['data'] & { targets: BenchReport['targets'] }>;
  allTargetsPass: boolean;
}

export function jsonDocument(reports: readonly BenchReport[], startedAt: Date, durationMs: number, quick: boolean): JsonDocument {
  const cpus = os.cpus();
  const benchmarks: JsonDocument['benchmarks'] = {};
  for (const r of reports) benchmarks[r.name] = { ...r.data, targets: r.targets };
  return {
    tool: '@pvsim/bench',
    schema: 1,
    startedAt: startedAt.toISOString(),
    durationMs: Math.round(durationMs),
    quick,
    host: {
      node: process.version,
      platform: process.platform,
      arch: process.arch,
      cpus: cpus.length,
      cpuModel: cpus[0]?.model ?? 'unknown',
      loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    },
    benchmarks,
    allTargetsPass: reports.every((r) => r.targets.every((t) => t.pass)),
  };
}

/** JSON.stringify with non-finite numbers as null (JSON has no NaN). */
export function toJson(doc: unknown, indent?: number): string {
  return JSON.stringify(doc, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), indent);
}
