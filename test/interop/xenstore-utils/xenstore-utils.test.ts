/**
 * Interop: Debian's xenstore-utils (the real `xenstore-*` tools, linked against libxenstore
 * 4.17) talking to our xenstored socket.
 *
 * libxenstore's xs_open() connects to `xs_daemon_socket()`, which is `$XENSTORED_PATH` when set
 * (else `$XENSTORED_RUNDIR/socket`, default /var/run/xenstored/socket); get_handle() stat()s it
 * and, being a socket, connects to it (tools/libs/store/xs.c, xs_lib.c; the strings of
 * libxenstore.so.4 carry XENSTORED_PATH). So each tool runs with XENSTORED_PATH=<our socket>.
 *
 * The server runs inside this test process with a real XenStore, so the tools must be run
 * asynchronously (a synchronous spawn would block the server they are talking to).
 *
 * Without the binaries the suite is skipped locally and fails under CI.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startXenstoredInProcess } from '../../../packages/xenstore/dist/daemon.js';
import { startXsSocketServer, type XsSocketServer } from '../../../packages/xenstore/dist/server.js';
import { XenStore } from '../../../packages/xenstore/dist/store.js';
import { XsRingPeer } from '../../../packages/xenstore/dist/testing.js';
import { XS_SET_PERMS, XS_WATCH, XS_WRITE, type XsConnection } from '../../../packages/xenstore/dist/types.js';

const TOOLS = ['xenstore-ls', 'xenstore-read', 'xenstore-write', 'xenstore-rm', 'xenstore-list', 'xenstore-watch', 'xenstore-exists', 'xenstore-chmod'];
const BIN = '/usr/bin';
const MISSING = TOOLS.filter((t) => !existsSync(join(BIN, t)));
const CI = process.env.CI;
const IN_CI = CI !== undefined && CI !== '' && CI !== '0' && CI.toLowerCase() !== 'false';
const SKIP = MISSING.length > 0 && !IN_CI;
const SKIP_REASON = `xenstore-utils not installed (missing ${MISSING.join(', ')}; apt-get install xenstore-utils); skipping the xenstore-utils interop test`;
if (SKIP) console.warn(`[xenstore-utils] ${SKIP_REASON}`);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let dir: string;
let sock: string;
let store: XenStore;
let server: XsSocketServer;
/** The test's own view of the store (dom0). */
let me: XsConnection;

/** Run one tool against our socket (asynchronously: the server lives in this process). */
function xs(tool: string, ...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(join(BIN, tool), args, { env: { ...process.env, XENSTORED_PATH: sock }, timeout: 15_000, encoding: 'latin1' }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`${tool} ${args.join(' ')}: ${err.message}\n${stderr}`));
        return;
      }
      resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}

/** Run and expect success; the stdout. */
async function ok(tool: string, ...args: string[]): Promise<string> {
  const r = await xs(tool, ...args);
  if (r.code !== 0) throw new Error(`${tool} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

const value = (path: string): string | null => {
  const r = store.read(me, path);
  return r.ok ? r.value.toString('latin1') : null;
};

describe.skipIf(SKIP)('xenstore-utils against the pvsim xenstored socket', () => {
  beforeAll(async () => {
    if (MISSING.length > 0) throw new Error(`xenstore-utils missing under CI: ${MISSING.join(', ')} (apt-get install -y xenstore-utils)`);
    dir = mkdtempSync(join(tmpdir(), 'pvsim-xs-utils-'));
    sock = join(dir, 'socket');
    store = new XenStore();
    server = await startXsSocketServer(store, sock);
    me = store.connect(0, () => {});
  });

  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  afterEach(() => {
    vi.restoreAllMocks();
    store.rm(me, '/pvsim');
  });

  it('the tools are installed', () => {
    expect(MISSING).toEqual([]);
  });

  it('xenstore-write then xenstore-read (one pair; several pairs in a transaction)', async () => {
    expect(await ok('xenstore-write', '/pvsim/vm/name', 'guest-1')).toBe('');
    expect(value('/pvsim/vm/name')).toBe('guest-1');
    expect(await ok('xenstore-read', '/pvsim/vm/name')).toBe('guest-1\n');

    const txStart = vi.spyOn(store, 'transactionStart');
    const txEnd = vi.spyOn(store, 'transactionEnd');
    await ok('xenstore-write', '/pvsim/vm/a', 'one', '/pvsim/vm/b', 'two words');
    expect(txStart).toHaveBeenCalledTimes(1);
    expect(txEnd).toHaveBeenCalledTimes(1);
    expect(txEnd.mock.calls[0]![2]).toBe(true);
    expect(txEnd.mock.results[0]!.value).toEqual({ ok: true, value: undefined });
    expect([value('/pvsim/vm/a'), value('/pvsim/vm/b')]).toEqual(['one', 'two words']);
    expect(await ok('xenstore-read', '-p', '/pvsim/vm/a', '/pvsim/vm/b')).toBe('/pvsim/vm/a: one\n/pvsim/vm/b: two words\n');
    expect(txStart).toHaveBeenCalledTimes(2);
  });

  it('values with bytes that are not printable: escaped by default, raw with -R; written unescaped', async () => {
    store.write(me, '/pvsim/bin', Buffer.from([0x41, 0x01, 0x0a, 0x5c, 0xff]));
    // sanitise_value(): bytes below 010 in octal, other non-printables as \xNN.
    expect(await ok('xenstore-read', '/pvsim/bin')).toBe('A\\001\\n\\\\\\xff\n');
    const raw = await ok('xenstore-read', '-R', '/pvsim/bin');
    expect(Buffer.from(raw, 'latin1')).toEqual(Buffer.from([0x41, 0x01, 0x0a, 0x5c, 0xff]));
    await ok('xenstore-write', '/pvsim/esc', 'tab\\there\\x00nul');
    expect(store.read(me, '/pvsim/esc')).toEqual({ ok: true, value: Buffer.from('tab\there\0nul', 'latin1') });
    // An empty value.
    await ok('xenstore-write', '/pvsim/empty', '');
    expect(await ok('xenstore-read', '/pvsim/empty')).toBe('\n');
  });

  it('errors: reading a missing node, a bad path', async () => {
    const r = await xs('xenstore-read', '/pvsim/missing');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("couldn't read path /pvsim/missing");
    const w = await xs('xenstore-write', '/pvsim//bad', 'x');
    expect(w.code).toBe(1);
    expect(w.stderr).toContain('could not write path /pvsim//bad');
  });

  it('xenstore-exists (in a transaction)', async () => {
    store.write(me, '/pvsim/here', 'x');
    expect((await xs('xenstore-exists', '/pvsim/here')).code).toBe(0);
    expect((await xs('xenstore-exists', '/pvsim/not-here')).code).toBe(1);
  });

  it('xenstore-list (with -p) in creation order', async () => {
    for (const k of ['zeta', 'alpha', 'mid']) store.write(me, `/pvsim/list/${k}`, k);
    expect(await ok('xenstore-list', '/pvsim/list')).toBe('zeta\nalpha\nmid\n');
    expect(await ok('xenstore-list', '-p', '/pvsim/list')).toBe('/pvsim/list/zeta\n/pvsim/list/alpha\n/pvsim/list/mid\n');
    const r = await xs('xenstore-list', '/pvsim/nope');
    expect(r.code).toBe(1);
  });

  it('xenstore-list of a directory too big for one reply (DIRECTORY → E2BIG → DIRECTORY_PART)', async () => {
    const names = Array.from({ length: 300 }, (_, i) => `a-rather-long-child-name-${String(i).padStart(3, '0')}`);
    for (const n of names) store.write(me, `/pvsim/big/${n}`, '');
    expect(names.join('\0').length).toBeGreaterThan(4096);
    const dirCalls = vi.spyOn(store, 'directory');
    expect(await ok('xenstore-list', '/pvsim/big')).toBe(names.map((n) => `${n}\n`).join(''));
    // One DIRECTORY (answered E2BIG), then several DIRECTORY_PARTs.
    expect(dirCalls.mock.calls.length).toBeGreaterThanOrEqual(3);
    const ls = await ok('xenstore-ls', '/pvsim/big');
    expect(ls.split('\n').filter(Boolean)).toEqual(names.map((n) => `${n} = ""`));
  });

  it('xenstore-ls prints the tree with values, and permissions with -p', async () => {
    await ok('xenstore-write', '/pvsim/ls/backend/vif/1/0/state', '4', '/pvsim/ls/backend/vif/1/0/mac', '00:16:3e:00:00:01', '/pvsim/ls/top', 'v');
    expect(await ok('xenstore-ls', '/pvsim/ls')).toBe(
      [
        'backend = ""',
        ' vif = ""',
        '  1 = ""',
        '   0 = ""',
        '    state = "4"',
        '    mac = "00:16:3e:00:00:01"',
        'top = "v"',
        '',
      ].join('\n'),
    );
    expect(await ok('xenstore-ls', '-f', '/pvsim/ls/backend/vif/1')).toBe(
      ['/pvsim/ls/backend/vif/1/0 = ""', '/pvsim/ls/backend/vif/1/0/state = "4"', '/pvsim/ls/backend/vif/1/0/mac = "00:16:3e:00:00:01"', ''].join('\n'),
    );
    store.setPerms(me, '/pvsim/ls/top', [
      { dom: 0, mode: 'n' },
      { dom: 3, mode: 'r' },
    ]);
    const withPerms = await ok('xenstore-ls', '-p', '/pvsim/ls');
    expect(withPerms).toMatch(/^top = "v" {2}[. ]+ {2}\(n0,r3\)$/m);
    expect(withPerms).toMatch(/^ {4}state = "4" {2}[. ]+ {2}\(n0\)$/m);
    // The whole store from the root, as `xenstore-ls` with no argument.
    const all = await ok('xenstore-ls');
    expect(all).toMatch(/^local = ""\n domain = ""\n/);
    expect(all).toContain('\npvsim = ""\n ls = ""\n');
  });

  it('xenstore-rm (in a transaction), recursive, and -t tidying empty parents', async () => {
    await ok('xenstore-write', '/pvsim/rm/a/b/c', '1', '/pvsim/rm/keep', 'k');
    const txEnd = vi.spyOn(store, 'transactionEnd');
    await ok('xenstore-rm', '/pvsim/rm/a/b');
    expect(txEnd).toHaveBeenCalledTimes(1);
    expect(value('/pvsim/rm/a/b/c')).toBeNull();
    expect(value('/pvsim/rm/a')).toBe('');
    await ok('xenstore-write', '/pvsim/rm/a/b/c', '1');
    await ok('xenstore-rm', '-t', '/pvsim/rm/a/b/c');
    expect(value('/pvsim/rm/a')).toBeNull();
    expect(value('/pvsim/rm/keep')).toBe('k');
    // Removing what is not there, under an existing parent, is fine; under a missing one, not.
    expect((await xs('xenstore-rm', '/pvsim/rm/nothing')).code).toBe(0);
    const r = await xs('xenstore-rm', '/pvsim/none/nothing');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('could not remove path /pvsim/none/nothing');
  });

  it('xenstore-chmod sets permissions (owner first), -r recursively, -u up to the root', async () => {
    await ok('xenstore-write', '/pvsim/perm/dev/a', '1', '/pvsim/perm/dev/b', '2');
    await ok('xenstore-chmod', '/pvsim/perm/dev/a', 'b5', 'r7', 'n9');
    expect(store.getPerms(me, '/pvsim/perm/dev/a')).toEqual({
      ok: true,
      value: [
        { dom: 5, mode: 'b' },
        { dom: 7, mode: 'r' },
        { dom: 9, mode: 'n' },
      ],
    });
    await ok('xenstore-chmod', '-r', '/pvsim/perm/dev', 'n3', 'r4');
    for (const p of ['/pvsim/perm/dev', '/pvsim/perm/dev/a', '/pvsim/perm/dev/b']) {
      expect(store.getPerms(me, p)).toEqual({ ok: true, value: [{ dom: 3, mode: 'n' }, { dom: 4, mode: 'r' }] });
    }
    expect(await ok('xenstore-ls', '-p', '/pvsim/perm/dev')).toMatch(/^a = "1" {2}[. ]+ {2}\(n3,r4\)\nb = "2" {2}[. ]+ {2}\(n3,r4\)\n$/);

    // The permissions are enforced for a guest.
    const guest = store.connect(4, () => {});
    expect(store.read(guest, '/pvsim/perm/dev/a')).toEqual({ ok: true, value: Buffer.from('1') });
    expect(store.write(guest, '/pvsim/perm/dev/a', 'x')).toEqual({ ok: false, error: 'EACCES' });
    store.disconnect(guest);

    await ok('xenstore-chmod', '-u', '/pvsim/perm/dev/b', 'b0');
    expect(store.getPerms(me, '/pvsim/perm')).toEqual({ ok: true, value: [{ dom: 0, mode: 'b' }] });
    expect(store.getPerms(me, '/pvsim/perm/dev/a')).toEqual({ ok: true, value: [{ dom: 3, mode: 'n' }, { dom: 4, mode: 'r' }] });
    // Restore the root's own permissions (-u went all the way up).
    store.setPerms(me, '/pvsim', [{ dom: 0, mode: 'n' }]);

    const bad = await xs('xenstore-chmod', '/pvsim/perm/missing', 'r1');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("Error occurred setting permissions on '/pvsim/perm/missing'");
  });

  it('a transaction the store answers EAGAIN is retried by the tool (xs_transaction_end → goto again)', async () => {
    store.write(me, '/pvsim/retry/x', 'old');
    const real = store.transactionEnd.bind(store);
    let calls = 0;
    vi.spyOn(store, 'transactionEnd').mockImplementation((conn, tx, commit) => {
      calls++;
      if (calls === 1) {
        // Someone else changes what the transaction read, so its commit conflicts for real.
        store.write(me, '/pvsim/retry/x', 'changed-meanwhile');
      }
      return real(conn, tx, commit);
    });
    const txStart = vi.spyOn(store, 'transactionStart');
    await ok('xenstore-write', '/pvsim/retry/x', 'mine', '/pvsim/retry/y', 'also');
    expect(calls).toBe(2);
    expect(txStart).toHaveBeenCalledTimes(2);
    expect([value('/pvsim/retry/x'), value('/pvsim/retry/y')]).toEqual(['mine', 'also']);
  });

  it('relative paths are under /local/domain/0 for a dom0 socket client', async () => {
    await ok('xenstore-write', 'pvsim-rel', 'here');
    expect(value('/local/domain/0/pvsim-rel')).toBe('here');
    expect(await ok('xenstore-read', 'pvsim-rel')).toBe('here\n');
    await ok('xenstore-rm', 'pvsim-rel');
    expect(value('/local/domain/0/pvsim-rel')).toBeNull();
  });

  describe('xenstore-watch', () => {
    const children: ChildProcess[] = [];
    afterEach(() => {
      for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    });

    /** Spawn xenstore-watch; lines of its stdout as they come. */
    function watch(...args: string[]) {
      const child = spawn(join(BIN, 'xenstore-watch'), args, { env: { ...process.env, XENSTORED_PATH: sock }, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      const lines: string[] = [];
      let partial = '';
      let stderr = '';
      const waiters: (() => void)[] = [];
      child.stdout!.setEncoding('latin1');
      child.stdout!.on('data', (s: string) => {
        const parts = (partial + s).split('\n');
        partial = parts.pop()!;
        lines.push(...parts);
        for (const w of waiters.splice(0)) w();
      });
      child.stderr!.on('data', (s: Buffer) => (stderr += s.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.once('exit', () => {
        for (const w of waiters.splice(0)) w();
      });
      const until = async (pred: () => boolean, what: string, ms = 10_000) => {
        const deadline = Date.now() + ms;
        while (!pred()) {
          if (child.exitCode !== null) throw new Error(`xenstore-watch exited ${child.exitCode} waiting for ${what}: ${stderr}`);
          const left = deadline - Date.now();
          if (left <= 0) throw new Error(`timed out waiting for ${what}; lines ${JSON.stringify(lines)}; stderr ${stderr}`);
          await new Promise<void>((r) => {
            const t = setTimeout(r, left);
            waiters.push(() => {
              clearTimeout(t);
              r();
            });
          });
        }
      };
      return { child, lines, until, exited };
    }

    it('prints the initial event, then the changed paths; killed afterwards', async () => {
      store.write(me, '/pvsim/w/dev', 'x');
      const w = watch('/pvsim/w');
      await w.until(() => w.lines.length >= 1, 'the initial watch event');
      expect(w.lines).toEqual(['/pvsim/w']);
      await ok('xenstore-write', '/pvsim/w/dev/state', '4');
      await w.until(() => w.lines.includes('/pvsim/w/dev/state'), 'the change');
      await ok('xenstore-rm', '/pvsim/w/dev');
      await w.until(() => w.lines.includes('/pvsim/w/dev'), 'the removal');
      // Changes elsewhere are not seen.
      await ok('xenstore-write', '/pvsim/elsewhere', '1');
      store.write(me, '/pvsim/w/last', '1');
      await w.until(() => w.lines.includes('/pvsim/w/last'), 'a change made through the store API');
      expect(w.lines).not.toContain('/pvsim/elsewhere');
      expect(server.connections).toBeGreaterThanOrEqual(1);
      const before = server.connections;
      w.child.kill('SIGTERM');
      await w.exited;
      // Its connection (and its watch) is dropped.
      const deadline = Date.now() + 5000;
      while (server.connections >= before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(server.connections).toBe(before - 1);
    });

    it('-n N exits by itself after N events; several paths', async () => {
      const w = watch('-n', '4', '/pvsim/n1', '/pvsim/n2');
      await w.until(() => w.lines.length >= 2, 'the two initial events');
      expect([...w.lines].sort()).toEqual(['/pvsim/n1', '/pvsim/n2']);
      await ok('xenstore-write', '/pvsim/n2/x', '1');
      await ok('xenstore-write', '/pvsim/n1', 'v');
      expect(await w.exited).toBe(0);
      expect(w.lines.slice(2)).toEqual(['/pvsim/n2/x', '/pvsim/n1']);
    });

    it('@introduceDomain fires when a domain is introduced', async () => {
      const w = watch('@introduceDomain');
      await w.until(() => w.lines.length >= 1, 'the initial event');
      store.introduceDomain(12);
      await w.until(() => w.lines.length >= 2, 'the introduction');
      expect(w.lines).toEqual(['@introduceDomain', '@introduceDomain']);
    });
  });
});

/**
 * The tools on the socket of a xenstored that also serves rings (as the launcher runs it): both
 * transports reach one dispatcher and one store, and a change made over either wakes watchers
 * on the other.
 */
describe.skipIf(SKIP)('xenstore-utils beside ring clients of one xenstored', () => {
  let xsd: ReturnType<typeof startXenstoredInProcess>;
  let sockDir: string;

  beforeAll(async () => {
    sockDir = mkdtempSync(join(tmpdir(), 'pvsim-xs-utils-rings-'));
    sock = join(sockDir, 'socket');
    xsd = startXenstoredInProcess();
    server = await startXsSocketServer(xsd.daemon.store, sock, { hooks: xsd.daemon.hooks });
  });

  afterAll(async () => {
    await server?.close();
    await xsd?.stop();
    if (sockDir) rmSync(sockDir, { recursive: true, force: true });
  });

  /** Poll `take` until it yielded `n` items (at most 10 s). */
  async function collect(take: () => string[], n: number): Promise<string[]> {
    const got: string[] = [];
    const end = Date.now() + 10_000;
    while (got.length < n && Date.now() < end) {
      got.push(...take());
      if (got.length < n) await new Promise((r) => setTimeout(r, 5));
    }
    return got;
  }

  it('xenstore-write wakes a ring watcher; what a guest writes over its ring, xenstore-read and xenstore-ls -p show', async () => {
    const dom0 = new XsRingPeer(await xsd.connect(0));
    const guest = new XsRingPeer(await xsd.connect(3));
    try {
      expect(await dom0.request(XS_WATCH, 0, ['/local/domain/3/device', 'dev'])).toBe('OK');
      await ok('xenstore-write', '/local/domain/3/device/vbd/51712/state', '1');
      expect(await collect(() => dom0.takeEvents(), 2)).toEqual(['/local/domain/3/device|dev', '/local/domain/3/device/vbd/51712/state|dev']);

      // The guest's home, as the toolstack makes it; then the guest writes over its ring.
      await ok('xenstore-chmod', '/local/domain/3', 'n3');
      expect(await guest.request(XS_WRITE, 0, ['data/name', 'guest-3'])).toBe('OK');
      expect(await guest.request(XS_SET_PERMS, 0, ['data/name', 'n3', 'r0'])).toBe('OK');
      expect(await ok('xenstore-read', '/local/domain/3/data/name')).toBe('guest-3\n');
      expect(await ok('xenstore-ls', '-p', '/local/domain/3/data')).toMatch(/^name = "guest-3" [. ]+ {2}\(n3,r0\)\n$/);
      await ok('xenstore-rm', '/local/domain/3');
    } finally {
      dom0.close();
      guest.close();
    }
  });

  it('xenstore-watch prints a change a ring client makes', async () => {
    const writer = new XsRingPeer(await xsd.connect(0));
    const child = spawn(join(BIN, 'xenstore-watch'), ['-n', '2', '/pvsim-rings'], { env: { ...process.env, XENSTORED_PATH: sock }, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let out = '';
      child.stdout!.setEncoding('latin1');
      child.stdout!.on('data', (s: string) => (out += s));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const end = Date.now() + 10_000;
      while (!out.includes('/pvsim-rings\n') && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
      expect(await writer.request(XS_WRITE, 0, ['/pvsim-rings/k', 'v'])).toBe('OK');
      expect(await exited).toBe(0);
      expect(out).toBe('/pvsim-rings\n/pvsim-rings/k\n');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      writer.close();
    }
  });
});

if (SKIP) {
  describe('xenstore-utils interop', () => {
    it.skip(SKIP_REASON, () => {});
  });
}
