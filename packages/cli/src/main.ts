/**
 * The `pvsim` command. Subcommands live in `commands/*.ts`, each exporting `registerX(program)`.
 *
 * Exit codes: 0 success (a truncated log tail is a warning, still 0); 1 the log is missing or
 * corrupt (one line on stderr, naming the byte offset); 2 bad arguments (commander's message).
 * Output to a closed pipe (`pvsim log show … | head`) ends the process quietly.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { LogCorruptError, LogOpenError } from '@pvsim/eventlog';
// Loading a package registers its event kinds, projections and auditors for log and replay.
import '@pvsim/hypervisor';
import '@pvsim/xenstore';
import '@pvsim/blkback';
import { registerLog } from './commands/log.js';
import { registerReplay } from './commands/replay.js';
import { registerUp } from './commands/up.js';

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

function version(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

export function buildProgram(): Command {
  const program = new Command('pvsim')
    .description('pvsim: a Xen host simulated in Node')
    .version(version())
    // Settings before subcommands: commander copies them into each subcommand as it is created.
    .exitOverride()
    .showHelpAfterError('(add --help for usage)');
  registerLog(program);
  registerReplay(program); // replay: owned by commands/replay.ts
  registerUp(program); // up, ps: owned by commands/up.ts
  return program;
}

function onStdoutError(err: NodeJS.ErrnoException): void {
  // The reader went away (`| head`): nothing left to say to anyone.
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
}

export async function main(argv: string[]): Promise<number> {
  process.stdout.on('error', onStdoutError);
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_USAGE; // commander has printed its message
    if (err instanceof LogCorruptError || err instanceof LogOpenError) {
      process.stderr.write(`pvsim: ${err.message}\n`);
      return EXIT_FAILURE;
    }
    const e = err as NodeJS.ErrnoException;
    if (e && typeof e.code === 'string' && typeof e.syscall === 'string') {
      // An operating error from the file system (permissions, EISDIR…): still one clear line.
      process.stderr.write(`pvsim: ${e.message}\n`);
      return EXIT_FAILURE;
    }
    process.stderr.write(`pvsim: internal error (a bug in pvsim): ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return EXIT_FAILURE;
  }
}

// A command may set process.exitCode itself (replay --check does); only failures override it.
const failed = await main(process.argv);
if (failed !== 0) process.exitCode = failed;
