/**
 * `pvsim up` end to end, spawning the built CLI: the two-guest example comes up with every device
 * Connected, xenstore-ls (when installed) reads the live tree over the xs_wire socket, the run
 * shuts down cleanly after --for, and its log passes `pvsim replay --check`. A topology with an
 * error exits 2 naming file:line:col.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const PVSIM = fileURLToPath(new URL('../bin/pvsim.js', import.meta.url));
const EXAMPLE = fileURLToPath(new URL('../../../examples/two-guests.yaml', import.meta.url));

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'pvsim-up-'));
  dirs.push(d);
  return d;
}

function pvsimSync(...args: string[]) {
  const r = spawnSync(process.execPath, [PVSIM, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Run `pvsim …` in the background; `until(re)` resolves once stdout matches. */
function pvsimBg(...args: string[]) {
  const child = spawn(process.execPath, [PVSIM, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const watchers: { re: RegExp; resolve: () => void }[] = [];
  child.stdout.on('data', (b: Buffer) => {
    out += b.toString();
    for (const w of watchers.splice(0)) {
      if (w.re.test(out)) w.resolve();
      else watchers.push(w);
    }
  });
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    exited,
    get out() {
      return out;
    },
    get err() {
      return err;
    },
    until(re: RegExp): Promise<void> {
      if (re.test(out)) return Promise.resolve();
      return new Promise((resolve) => watchers.push({ re, resolve }));
    },
  };
}

/** `xenstore-ls` from xenstore-utils; tests that need it skip without it, unless on CI. */
function hasXenstoreLs(): boolean {
  return spawnSync('sh', ['-c', 'command -v xenstore-ls'], { encoding: 'utf8' }).status === 0;
}

describe('pvsim up', () => {
  it('two guests: all devices Connected, xenstore-ls on the socket, clean shutdown, log replays clean', async () => {
    const dir = tmp();
    // The example's file disk is relative to the topology file: copy it so the image is made here.
    const topo = join(dir, 'two-guests.yaml');
    copyFileSync(EXAMPLE, topo);
    const runDir = join(dir, 'run');
    const sock = join(dir, 'xs.sock');
    const up = pvsimBg('up', topo, '--for', '3s', '--run-dir', runDir, '--xenstore-socket', sock);
    await Promise.race([up.until(/running for 3s/), up.exited]);
    expect(up.err).toBe('');
    expect(up.out).toContain(`XENSTORED_PATH=${sock}`);

    // While it runs: the xs_wire socket serves the live tree to real dom0 tools.
    if (hasXenstoreLs()) {
      const ls = spawnSync('xenstore-ls', ['/local/domain'], { encoding: 'utf8', env: { ...process.env, XENSTORED_PATH: sock }, timeout: 10_000 });
      expect(ls.status).toBe(0);
      expect(ls.stdout).toMatch(/name = "guest1"/);
      expect(ls.stdout).toMatch(/name = "guest2"/);
      expect(ls.stdout).toMatch(/vbd = ""/);
    } else if (process.env.CI) {
      throw new Error('xenstore-ls (xenstore-utils) is required on CI');
    }
    // `pvsim ps` reads the run's status while it runs.
    const ps = pvsimSync('ps', runDir);
    expect(ps.code).toBe(0);
    expect(ps.out).toMatch(/running \(pid \d+\)/);
    expect(ps.out).toMatch(/guest2\s+2\s+32\s+2\s+r-----/);
    // Live, from the run's control socket: I/O counters per device (each disk did its probe read).
    expect(ps.out).toMatch(/Domain\s+Vdev\s+in-flight \(front\)\s+in-flight \(back\)\s+completed/);
    expect(ps.out).toMatch(/guest2\s+51728 \(xvdb\)\s+\d+\s+\d+\s+[1-9]\d*/);

    const code = await up.exited;
    expect({ code, err: up.err, tail: code === 0 ? '' : up.out.slice(-400) }).toEqual({ code: 0, err: '', tail: '' });
    const out = up.out;
    // xl list
    expect(out).toMatch(/Name\s+ID\s+Mem\s+VCPUs\s+State/);
    expect(out).toMatch(/Domain-0\s+0\s+64\s+1\s+r-----/);
    expect(out).toMatch(/guest1\s+1\s+32\s+1\s+r-----/);
    expect(out).toMatch(/guest2\s+2\s+32\s+2\s+r-----/);
    // xl block-list: every device of both guests Connected
    expect(out).toMatch(/Vdev\s+BE\s+handle\s+state\s+evt-ch\s+ring-ref/);
    expect(out).toMatch(/guest1\s+51712 \(xvda\)\s+0\s+51712\s+4 \(Connected\)\s+\d+\s+\d+/);
    expect(out).toMatch(/guest2\s+51712 \(xvda\)\s+0\s+51712\s+4 \(Connected\)\s+\d+\s+\d+/);
    expect(out).toMatch(/guest2\s+51728 \(xvdb\)\s+0\s+51728\s+4 \(Connected\)\s+\d+\s+\d+/);
    expect(out).toContain('all 3 device(s) Connected');
    expect(out).toContain(`stopped. log: ${join(runDir, 'events')}`);

    // The missing file image was created where declared (sparse, its declared size).
    expect(statSync(join(dir, 'images', 'shared.img')).size).toBe(16 * 1024 * 1024);
    // The run directory: the log, the snapshot, and the socket removed.
    expect(readdirSync(join(runDir, 'events')).some((f) => f.endsWith('.pvlog'))).toBe(true);
    expect(existsSync(join(runDir, 'snapshot.msgpack'))).toBe(true);
    expect(existsSync(sock)).toBe(false);
    expect(existsSync(join(runDir, 'control.sock'))).toBe(false);

    const rep = pvsimSync('replay', join(runDir, 'events'), '--check');
    expect(rep.out).toMatch(/hv\.grants/);
    // The block path's auditor ran (registered by loading @pvsim/blkback).
    expect(rep.out).toMatch(/auditors .*blk\.response-after-unmap/);
    expect(rep.out).toMatch(/violations\s+0/);
    expect(rep.out).toMatch(/divergences\s+0/);
    expect(rep.code).toBe(0);

    const after = pvsimSync('ps', runDir);
    expect(after.code).toBe(0);
    expect(after.out).toContain(': stopped;');
  }, 90_000);

  it('Ctrl-C (SIGINT) shuts down cleanly: exit 0, snapshot saved, log replays clean', async () => {
    const dir = tmp();
    const topo = join(dir, 'one.yaml');
    writeFileSync(topo, 'domains:\n  - name: solo\n    memory: 16MiB\n    disks:\n      - "target=mem:8MiB, vdev=xvda, access=rw"\n');
    const runDir = join(dir, 'run');
    const up = pvsimBg('up', topo, '--run-dir', runDir);
    await Promise.race([up.until(/Ctrl-C to stop/), up.exited]);
    expect(up.out).toContain(`XENSTORED_PATH=${join(runDir, 'xenstored.sock')}`);
    expect(up.out).toMatch(/solo\s+51712 \(xvda\)\s+0\s+51712\s+4 \(Connected\)/);
    up.child.kill('SIGINT');
    const code = await up.exited;
    expect({ code, err: up.err, tail: code === 0 ? '' : up.out.slice(-400) }).toEqual({ code: 0, err: '', tail: '' });
    expect(up.out).toContain('shutting down');
    expect(existsSync(join(runDir, 'snapshot.msgpack'))).toBe(true);
    const rep = pvsimSync('replay', join(runDir, 'events'), '--check');
    expect(rep.code).toBe(0);
  }, 60_000);

  it('a topology with an error exits 2 with file:line:col: field: message', () => {
    const dir = tmp();
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'domains:\n  - name: guest1\n    memory: 32MiB\n    disks:\n      - "target=mem:64MiB, vdev=xvzz9, access=rw"\n');
    const r = pvsimSync('up', bad, '--for', '1s', '--run-dir', join(dir, 'run'));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:5:\\d+: domains\\[0\\]\\.disks\\[0\\]`, 'm'));
    expect(existsSync(join(dir, 'run'))).toBe(false);
  });

  it('a file disk whose image is missing and has no size: a clear error, exit 1', () => {
    const dir = tmp();
    const topo = join(dir, 't.yaml');
    writeFileSync(topo, 'domains:\n  - name: g\n    memory: 16MiB\n    disks:\n      - "target=file:nothere.img, vdev=xvda, access=ro"\n');
    const r = pvsimSync('up', topo, '--for', '1s', '--run-dir', join(dir, 'run'));
    expect(r.code).toBe(1);
    expect(r.err).toContain(`disk image ${join(dir, 'nothere.img')} does not exist`);
  });

  it('devices not Connected in time: a clear error, exit 1, nothing left running', () => {
    const dir = tmp();
    const topo = join(dir, 'one.yaml');
    writeFileSync(topo, 'domains:\n  - name: solo\n    memory: 16MiB\n    disks:\n      - "target=mem:8MiB, vdev=xvda, access=rw"\n');
    const r = pvsimSync('up', topo, '--run-dir', join(dir, 'run'), '--connect-timeout', '1ms');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/devices did not all reach Connected within 1 ms: .*timed out/);
  });

  it('run.log: false runs without an event log', () => {
    const dir = tmp();
    const topo = join(dir, 'nolog.yaml');
    writeFileSync(topo, 'run:\n  log: false\ndomains:\n  - name: solo\n    memory: 16MiB\n    disks:\n      - "target=mem:8MiB, vdev=xvda, access=rw"\n');
    const r = pvsimSync('up', topo, '--run-dir', join(dir, 'run'), '--for', '200ms');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/solo\s+51712 \(xvda\)\s+0\s+51712\s+4 \(Connected\)/);
    expect(r.out).toContain('no event log');
    expect(existsSync(join(dir, 'run', 'events'))).toBe(false);
  });

  it('--for must be a duration', () => {
    const r = pvsimSync('up', EXAMPLE, '--for', 'soon');
    expect(r.code).toBe(2);
    expect(r.err).toContain('--for soon: not a duration');
  });
});
