/**
 * The launcher in-process (its worker threads run the built dist/, so this imports the package
 * by name): one guest up to Connected, status like xl list / xl block-list, clean shutdown.
 */
import { mkdtempSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { formatDevices, formatDomains, launch, parseTopology } from '@pvsim/launcher';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

it('launch: one guest with two disks Connected, status, shutdown saves the snapshot', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pvsim-launch-'));
  dirs.push(dir);
  const text = [
    'run: { seed: 7, memory: 128MiB }',
    'dom0: { memory: 32MiB, blkback: { unmap-policy: sync } }',
    'domains:',
    '  - name: g1',
    '    memory: 8MiB',
    '    disks:',
    '      - "target=mem:4MiB, vdev=xvda"',
    '      - { target: "file:img/b.img", vdev: xvdb, access: ro, size: 1MiB }',
  ].join('\n');
  const parsed = parseTopology(text, join(dir, 't.yaml'));
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const lines: string[] = [];
  const run = await launch(parsed.topology, { runDir: join(dir, 'run'), log: (l) => lines.push(l) });
  try {
    expect(lines).toContain('all 2 device(s) Connected');
    const s = await run.status();
    expect(s.domains.map((d) => [d.name, d.id, d.mem, d.state])).toEqual([
      ['Domain-0', 0, 32, 'r-----'],
      ['g1', 1, 8, 'r-----'],
    ]);
    expect(s.devices.map((d) => [d.vdev, d.be, d.state, d.backState])).toEqual([
      [51712, 0, 4, 4],
      [51728, 0, 4, 4],
    ]);
    expect(s.devices.every((d) => d.evtch > 0 && Number(d.ringRef) >= 0)).toBe(true);
    expect(formatDomains(s).split('\n')[0]).toMatch(/^Name\s+ID\s+Mem\s+VCPUs\s+State$/);
    expect(formatDevices(s)).toContain('4 (Connected)');
    expect(existsSync(run.xenstoreSocket)).toBe(true);
    expect(existsSync(join(dir, 'img', 'b.img'))).toBe(true);
  } finally {
    await run.shutdown();
  }
  await run.shutdown(); // idempotent
  expect(existsSync(join(dir, 'run', 'snapshot.msgpack'))).toBe(true);
  expect(readdirSync(join(dir, 'run', 'events')).length).toBeGreaterThan(0);
  expect(existsSync(run.xenstoreSocket)).toBe(false);
}, 60_000);
