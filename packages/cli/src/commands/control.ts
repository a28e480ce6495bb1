/**
 * The control socket of a running `pvsim up` (`<run-dir>/control.sock`): one JSON request per
 * line, one JSON reply per line, so that `pvsim ps` shows live status the way `xl list` asks
 * the toolstack rather than reading a file. Requests: `{"cmd":"status"}`.
 */
import { createConnection, createServer, type Server } from 'node:net';
import { rmSync } from 'node:fs';

export const CONTROL_SOCKET_NAME = 'control.sock';
/** Longest request line accepted (a line longer than this closes the connection). */
const MAX_LINE = 4096;

export type ControlRequest = { cmd: 'status' };
export type ControlReply = { ok: true; [k: string]: unknown } | { ok: false; error: string };

export interface ControlServer {
  close(): Promise<void>;
}

/** Serve `handle` at `path` (an old socket file there is replaced). */
export async function serveControl(path: string, handle: (req: ControlRequest) => Promise<ControlReply>): Promise<ControlServer> {
  rmSync(path, { force: true });
  const server: Server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => sock.destroy());
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE && !buf.includes('\n')) {
        sock.end(`${JSON.stringify({ ok: false, error: `request longer than ${MAX_LINE} bytes` })}\n`);
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let req: unknown;
        try {
          req = JSON.parse(line);
        } catch {
          sock.write(`${JSON.stringify({ ok: false, error: 'not a JSON line' })}\n`);
          continue;
        }
        const cmd = (req as { cmd?: unknown } | null)?.cmd;
        if (cmd !== 'status') {
          sock.write(`${JSON.stringify({ ok: false, error: `unknown command ${JSON.stringify(cmd)} (known: status)` })}\n`);
          continue;
        }
        handle({ cmd }).then(
          (r) => sock.writable && sock.write(`${JSON.stringify(r)}\n`),
          (e: unknown) => sock.writable && sock.write(`${JSON.stringify({ ok: false, error: e instanceof Error ? e.message : String(e) })}\n`),
        );
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.unref();
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        rmSync(path, { force: true });
      }),
  };
}

/** One request to the control socket at `path`; null when nobody answers within `timeoutMs`. */
export function queryControl(path: string, req: ControlRequest, timeoutMs = 3000): Promise<ControlReply | null> {
  return new Promise((resolve) => {
    let buf = '';
    let done = false;
    const finish = (r: ControlReply | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    const sock = createConnection(path);
    sock.setEncoding('utf8');
    sock.on('error', () => finish(null));
    sock.on('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      try {
        finish(JSON.parse(buf.slice(0, nl)) as ControlReply);
      } catch {
        finish({ ok: false, error: 'the run answered something that is not JSON' });
      }
    });
  });
}
