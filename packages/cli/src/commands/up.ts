/**
 * `pvsim up FILE [--for DURATION] [--run-dir DIR] [--xenstore-socket PATH]`: start the topology
 * (hypervisor, xenstored with its xs_wire socket, the log sink, dom0's backend thread and one
 * thread per guest), wait for every device to reach Connected, print `xl list` / `xl block-list`
 * style tables, stay up until Ctrl-C or DURATION, then shut down cleanly (drain, disconnect,
 * destroy, snapshot) and say where the log is.
 *
 * `pvsim ps RUN_DIR`: a running `up` answers on RUN_DIR/control.sock with live status (and I/O
 * counters); a finished one left its last status in RUN_DIR/status.json.
 *
 * Exit codes: 0 clean run; 1 the run failed (an image missing, devices not Connected in time, a
 * shutdown problem); 2 bad arguments or a topology with errors (`file:line:col: field: message`).
 * The launcher is imported only when `up` runs, so other commands do not load every driver.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { CONTROL_SOCKET_NAME, queryControl, serveControl, type ControlServer } from './control.js';

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const STATUS_FILE_NAME = 'status.json';

/** `10s`, `500ms`, `2m`, `1h`, or a plain number of seconds. Null when not a duration. */
export function parseDuration(s: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) return null;
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const ms = n * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000);
  return Number.isFinite(ms) ? ms : null;
}

export interface UpOptions {
  for?: string;
  runDir?: string;
  xenstoreSocket?: string;
  connectTimeout?: string;
}

interface SavedStatus {
  pid: number;
  state: 'running' | 'stopped';
  topology: string;
  xenstoreSocket: string;
  logDir: string | null;
  domainsTable: string;
  devicesTable: string;
}

const out = (s: string) => process.stdout.write(`${s}\n`);
const err = (s: string) => process.stderr.write(`${s}\n`);
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

export async function runUp(file: string, opts: UpOptions): Promise<number> {
  const forMs = opts.for === undefined ? null : parseDuration(opts.for);
  if (opts.for !== undefined && forMs === null) {
    err(`pvsim: --for ${opts.for}: not a duration (e.g. 10s, 500ms, 2m)`);
    return EXIT_USAGE;
  }
  const connectMs = opts.connectTimeout === undefined ? 20_000 : parseDuration(opts.connectTimeout);
  if (connectMs === null) {
    err(`pvsim: --connect-timeout ${opts.connectTimeout}: not a duration`);
    return EXIT_USAGE;
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    err(`pvsim: cannot read topology ${file}: ${message(e)}`);
    return EXIT_USAGE;
  }
  const { launch, formatDomains, formatDevices, formatDeviceIo, parseTopology, formatTopologyErrors } = await import('@pvsim/launcher');
  const parsed = parseTopology(text, file);
  if (!parsed.ok) {
    err(formatTopologyErrors(parsed.errors));
    return EXIT_USAGE;
  }
  const runDir = resolve(opts.runDir ?? join('runs', `up-${new Date().toISOString().replace(/[:.]/g, '-')}`));
  out(`pvsim up ${file}: run directory ${runDir}`);
  // Ctrl-C (or SIGTERM) from now on means a clean shutdown — even while starting up (the run
  // then stops as soon as it is up); a second one while shutting down gives up at once.
  let stopRequested: () => void = () => {};
  const stopped = new Promise<void>((r) => (stopRequested = r));
  let signalled = 0;
  const onSignal = () => {
    if (++signalled > 1) {
      err('pvsim: interrupted again: exiting without a clean shutdown');
      process.exit(130);
    }
    stopRequested();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const unhook = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  let run;
  try {
    run = await launch(parsed.topology, {
      runDir,
      ...(opts.xenstoreSocket !== undefined ? { xenstoreSocket: opts.xenstoreSocket } : {}),
      connectTimeoutMs: connectMs,
      log: (l) => out(`  ${l}`),
    });
  } catch (e) {
    err(`pvsim: up failed: ${message(e)}`);
    unhook();
    return EXIT_FAILURE;
  }
  const status = await run.status();
  const saved: SavedStatus = {
    pid: process.pid,
    state: 'running',
    topology: resolve(file),
    xenstoreSocket: run.xenstoreSocket,
    logDir: run.logDir,
    domainsTable: formatDomains(status),
    devicesTable: formatDevices(status),
  };
  const save = () => writeFileSync(join(runDir, STATUS_FILE_NAME), `${JSON.stringify(saved, null, 2)}\n`);
  save();
  // Live status for `pvsim ps` (Unix socket paths are limited to 107 bytes: skip it if longer).
  let control: ControlServer | null = null;
  let stopping = false;
  const controlPath = join(runDir, CONTROL_SOCKET_NAME);
  if (Buffer.byteLength(controlPath) <= 107) {
    try {
      control = await serveControl(controlPath, async () => {
        if (stopping) return { ok: false, error: 'shutting down' };
        const st = await run.status();
        return { ok: true, domainsTable: formatDomains(st), devicesTable: formatDevices(st), ioTable: formatDeviceIo(st) };
      });
    } catch (e) {
      err(`pvsim: no live status for pvsim ps (control socket ${controlPath}: ${message(e)})`);
    }
  }
  out('');
  out(saved.domainsTable);
  out('');
  out(saved.devicesTable);
  out('');
  out(`xenstore: XENSTORED_PATH=${run.xenstoreSocket} xenstore-ls /local/domain`);
  out(forMs === null ? 'running; Ctrl-C to stop' : `running for ${opts.for}; Ctrl-C to stop sooner`);

  // Up until Ctrl-C (or SIGTERM) or --for.
  const timer = forMs === null ? null : setTimeout(stopRequested, forMs);
  await stopped;
  if (timer) clearTimeout(timer);
  stopping = true;
  out('shutting down: draining I/O, disconnecting devices, destroying guests');
  let code = 0;
  try {
    await run.shutdown();
  } catch (e) {
    err(`pvsim: ${message(e)}`);
    code = EXIT_FAILURE;
  }
  await control?.close();
  saved.state = 'stopped';
  save();
  out(run.logDir === null ? 'stopped. (no event log: run.log is false)' : `stopped. log: ${run.logDir} (check it with: pvsim replay ${run.logDir} --check)`);
  unhook();
  return code;
}

export async function runPs(runDir: string): Promise<number> {
  let s: SavedStatus;
  try {
    s = JSON.parse(readFileSync(join(runDir, STATUS_FILE_NAME), 'utf8')) as SavedStatus;
  } catch (e) {
    err(`pvsim: no run status in ${runDir}: ${message(e)}`);
    return EXIT_FAILURE;
  }
  let alive = false;
  try {
    process.kill(s.pid, 0);
    alive = true;
  } catch {
    alive = false;
  }
  const running = s.state === 'running' && alive;
  const live = running ? await queryControl(join(runDir, CONTROL_SOCKET_NAME), { cmd: 'status' }) : null;
  if (live?.ok) {
    out(`run ${resolve(runDir)}: running (pid ${s.pid}); topology ${s.topology}`);
    out('');
    out(String(live.domainsTable));
    out('');
    out(String(live.devicesTable));
    out('');
    out(String(live.ioTable));
    out('');
  } else {
    const why = running ? ` (no live answer${live ? `: ${live.error}` : ''}; status saved at start)` : '';
    out(`run ${resolve(runDir)}: ${running ? `running (pid ${s.pid})` : 'stopped'}${why}; topology ${s.topology}`);
    out('');
    out(s.domainsTable);
    out('');
    out(s.devicesTable);
    out('');
  }
  out(`xenstore ${s.xenstoreSocket}; log ${s.logDir ?? '(off)'}`);
  return 0;
}

export function registerUp(program: Command): void {
  program
    .command('up')
    .description('start a topology, wait for every device to be Connected, show status, run until Ctrl-C or --for')
    .argument('<file>', 'topology file (YAML)')
    .option('--for <duration>', 'stop after this long (e.g. 10s, 500ms, 2m)')
    .option('--run-dir <dir>', 'run directory: events/ (the log), snapshot.msgpack, the socket (default runs/up-<time>)')
    .option('--xenstore-socket <path>', "xenstored's xs_wire socket (default <run-dir>/xenstored.sock)")
    .option('--connect-timeout <duration>', 'how long devices may take to reach Connected', '20s')
    .action(async (file: string, opts: UpOptions) => {
      process.exitCode = await runUp(file, opts);
      // Everything was shut down or unwound; a thread that still holds the process open after
      // that is a bug, and must not turn a finished `pvsim up` into a hang.
      // The timer is unref'd: it fires only if something does hold the process open.
      setTimeout(() => {
        const held = (process as unknown as { _getActiveHandles(): object[] })._getActiveHandles().map((h) => h.constructor.name);
        err(`pvsim: internal error (a bug in pvsim): still held open 3 s after ${process.exitCode === 0 ? 'shutdown' : 'the failure'} by ${held.join(', ') || 'nothing visible'}; exiting`);
        process.exit(process.exitCode === 0 ? EXIT_FAILURE : process.exitCode);
      }, 3000).unref();
    });
  program
    .command('ps')
    .description('status of a run started by `pvsim up` (domains like xl list, devices like xl block-list)')
    .argument('<run-dir>', 'the run directory')
    .action(async (runDir: string) => {
      process.exitCode = await runPs(runDir);
    });
}
