/**
 * The launcher in-process (its worker threads run the built dist/, so this imports the package
 * by name): one guest up to Connected, status like xl list / xl block-list, clean shutdown.
 */
import { mkdtempSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { formatDeviceIo, formatDevices, formatDomains, launch, makeJob, mergedLatency, parseTopology } from '@pvsim/launcher';

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

it('load: a job in the guest thread on each disk (verified, read back), live I/O counters, a shutdown mid-load drains it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pvsim-launch-load-'));
  dirs.push(dir);
  const text = [
    'run: { seed: 7, memory: 128MiB }',
    'dom0: { memory: 32MiB, blkback: { unmap-policy: async } }',
    'domains:',
    '  - name: g1',
    '    memory: 8MiB',
    '    disks: ["target=mem:4MiB, vdev=xvda", "target=mem:2MiB, vdev=xvdb"]',
  ].join('\n');
  const parsed = parseTopology(text, join(dir, 't.yaml'));
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const run = await launch(parsed.topology, { runDir: join(dir, 'run') });
  let long: Promise<unknown> | undefined;
  try {
    const j = makeJob({ rw: 'randrw', iodepth: 8, runtimeMs: 300, rampMs: 50, assumeZeroed: true, readBack: true, fullCheckEvery: 1 });
    if (!j.ok) throw new Error(j.error);
    const t0 = run.threads();
    const loads = await run.load('g1', j.job);
    expect(loads.map((l) => [l.devid, l.vdevName])).toEqual([
      [51712, 'xvda'],
      [51728, 'xvdb'],
    ]);
    for (const { result: r } of loads) {
      expect(r.error).toBeNull();
      expect(r.ios).toBeGreaterThan(50);
      expect(r.verify.mismatches).toBe(0);
      expect(r.verify.checked).toBeGreaterThan(0);
      expect(r.verify.readBack?.mismatches).toBe(0);
      expect(r.verify.readBack?.blocks).toBeGreaterThan(0);
    }
    expect(mergedLatency(loads.map((l) => l.result)).count).toBe(loads[0]!.result.lat.count + loads[1]!.result.lat.count);
    // The guest's and dom0's threads did the work.
    const busy = Object.fromEntries(run.threads().map((t) => [t.name, t.active - (t0.find((x) => x.name === t.name)?.active ?? 0)]));
    expect(busy['g1']).toBeGreaterThan(0);
    expect(busy['dom0-blkback']).toBeGreaterThan(0);
    const s = await run.status();
    expect(s.devices.map((d) => d.io?.completed ?? 0).every((c) => c > 50)).toBe(true);
    expect(formatDeviceIo(s)).toMatch(/g1\s+51712 \(xvda\)\s+0\s+0\s+\d+/);

    await expect(run.load('nope', j.job)).rejects.toThrow('no guest named "nope" (guests: g1)');
    await expect(run.load('g1', j.job, 1234)).rejects.toThrow('g1 has no disk 1234');
    await expect(run.load('g1', { ...j.job, bs: 1000 })).rejects.toThrow('g1: job.bs: 1000 is not a multiple of 512');
    // A long load, then a shutdown while it runs: the load stops, in-flight I/O drains, clean.
    // (The disks hold the first job's data now: nothing can be assumed zeroed.)
    long = run.load('g1', { ...j.job, runtimeMs: 60_000, readBack: true, assumeZeroed: false });
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    await run.shutdown();
  }
  const r = (await long) as Awaited<ReturnType<typeof run.load>>;
  expect(r.every((l) => l.result.cancelled && l.result.error === null && l.result.verify.mismatches === 0)).toBe(true);
  expect(r.every((l) => l.result.total > 0)).toBe(true);
}, 60_000);
