import { mkdtempSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { queryControl, serveControl } from './commands/control.js';

const raw = (path: string, bytes: string) =>
  new Promise<string>((resolve) => {
    let got = '';
    const s = createConnection(path, () => s.write(bytes));
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      got += d;
      if (got.split('\n').length > 2 || got.includes('longer than')) s.end();
    });
    s.on('close', () => resolve(got));
    s.on('error', () => resolve(got));
    setTimeout(() => s.destroy(), 2000).unref();
  });

describe('control socket', () => {
  it('answers status; refuses bad lines with a clear error and keeps serving', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'pvsim-ctl-')), 'control.sock');
    let n = 0;
    const srv = await serveControl(path, async () => ({ ok: true, n: ++n }));
    try {
      expect(await queryControl(path, { cmd: 'status' })).toEqual({ ok: true, n: 1 });
      const two = await raw(path, 'not json\n{"cmd":"reboot"}\n');
      expect(two.split('\n').filter(Boolean).map((l) => JSON.parse(l))).toEqual([
        { ok: false, error: 'not a JSON line' },
        { ok: false, error: 'unknown command "reboot" (known: status)' },
      ]);
      expect(await raw(path, 'x'.repeat(5000))).toContain('request longer than 4096 bytes');
      expect(await queryControl(path, { cmd: 'status' })).toEqual({ ok: true, n: 2 });
    } finally {
      await srv.close();
    }
    // Nobody there: null, not a throw.
    expect(await queryControl(path, { cmd: 'status' }, 500)).toBeNull();
  });
});
