/**
 * No daemon reaches machine memory directly. In Xen a domain touches memory only through its own
 * page tables; here that is its hypercall client (`frameView` of its own gfns, the memory gate's
 * `read`/`write`). The hypervisor's frame table (`HvState.frame`, `.memory`) reaches every frame
 * of every domain, so no package but the hypervisor may name it outside its tests. (tools/bench's
 * grant benchmark keeps a raw-copy baseline on purpose; it is no daemon.)
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
/** `hv.s.frame(…)`, `hv.s.memory`, the state's prepared `frameViews`. */
const MACHINE_MEMORY = /\.s\.(frame|memory|frameViews)\b|\bframeViews\[/;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (/\.(ts|mts|mjs|js)$/.test(name) && !/\.test\.[mc]?[tj]s$/.test(name) && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

it('no package outside the hypervisor names its frame table in non-test code', () => {
  const offenders: string[] = [];
  const pkgs = join(ROOT, 'packages');
  let scanned = 0;
  for (const pkg of readdirSync(pkgs)) {
    if (pkg === 'hypervisor') continue;
    const src = join(pkgs, pkg, 'src');
    try {
      if (!statSync(src).isDirectory()) continue;
    } catch {
      continue;
    }
    for (const file of sources(src)) {
      scanned++;
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (MACHINE_MEMORY.test(line)) offenders.push(`${relative(ROOT, file)}:${i + 1}: ${line.trim()}`);
        });
    }
  }
  // The one-thread blk world of the benchmarks plays daemons too.
  const world = join(ROOT, 'tools/bench/src/blk/world.ts');
  readFileSync(world, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (MACHINE_MEMORY.test(line)) offenders.push(`${relative(ROOT, world)}:${i + 1}: ${line.trim()}`);
    });
  expect(scanned).toBeGreaterThan(20);
  expect(offenders).toEqual([]);
});
