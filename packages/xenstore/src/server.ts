/**
 * xenstored's Unix socket: dom0 tools (libxenstore, `xenstore-*`) speak xs_wire over it. Every
 * connection is a dom0 connection to the store; its watch events are written to the socket.
 *
 * Robustness, per connection:
 *  - input: the decoder assembles at most one message (16 + XENSTORE_PAYLOAD_MAX bytes); a
 *    header with a larger `len` closes the connection (as xenstored does). While replies are
 *    not being read (the outgoing buffer is above `highWaterBytes`) the socket is paused, so
 *    what is held is the rest of one socket read;
 *  - output: replies are bounded by that pause, but watch events fired by others are not; a
 *    client whose unread output exceeds `maxQueuedBytes` is disconnected;
 *  - malformed requests get error replies (see wire.ts); nothing a client sends throws.
 *
 * Requests go through the same dispatcher as the rings' (dispatch.ts, via wire.ts's
 * `handleMessage`); when xenstored serves the socket beside its rings it passes its `hooks`, so
 * an XS_RELEASE here closes the domain's rings too.
 */
import { lstatSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { XsHooks } from './dispatch.js';
import type { XenStore } from './store.js';
import type { XsConnection } from './types.js';
import { XsWireDecoder, encodeWatchEvent, handleMessage } from './wire.js';

export interface XsSocketServerOptions {
  /** Stop reading a connection's requests while this much output is unread. Default 64 KiB. */
  highWaterBytes?: number;
  /** Close a connection with more unread output than this (events pile up). Default 1 MiB. */
  maxQueuedBytes?: number;
  /** The dispatcher's hooks (xenstored's own, when it shares its store with the socket). */
  hooks?: XsHooks;
}

export interface XsSocketServer {
  readonly socketPath: string;
  /** Open connections. */
  readonly connections: number;
  /** Stop listening, drop every connection (and its watches and transactions), remove the socket. */
  close(): Promise<void>;
}

/**
 * Listen on `socketPath` (a stale socket file there is replaced; any other file is an error).
 * Resolves once listening.
 */
export async function startXsSocketServer(store: XenStore, socketPath: string, opts: XsSocketServerOptions = {}): Promise<XsSocketServer> {
  const highWater = opts.highWaterBytes ?? 64 * 1024;
  const maxQueued = opts.maxQueuedBytes ?? 1024 * 1024;
  const sockets = new Set<Socket>();

  removeStaleSocket(socketPath);
  const server: Server = createServer({ allowHalfOpen: false }, (socket) => {
    sockets.add(socket);
    serveConnection(store, socket, highWater, maxQueued, opts.hooks);
    socket.once('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    server.once('error', onError);
    server.listen(socketPath, () => {
      server.off('error', onError);
      resolve();
    });
  });
  // After listening, a server error (rare: EMFILE on accept) must not crash the process.
  server.on('error', () => {});

  let closing: Promise<void> | null = null;
  return {
    socketPath,
    get connections() {
      return sockets.size;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => {
          removeStaleSocket(socketPath);
          resolve();
        });
        for (const s of sockets) s.destroy();
      });
      return closing;
    },
  };
}

function removeStaleSocket(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // Absent: nothing to remove.
  }
}

function serveConnection(store: XenStore, socket: Socket, highWater: number, maxQueued: number, hooks: XsHooks | undefined): void {
  const decoder = new XsWireDecoder();
  /** True while this connection's own request is being handled: its events wait for the reply. */
  let busy = false;
  let deferred: Buffer[] = [];
  let paused = false;
  let dead = false;

  const kill = () => {
    if (dead) return;
    dead = true;
    deferred = [];
    socket.destroy();
  };

  const send = (bytes: Buffer) => {
    if (dead || !socket.writable) return;
    socket.write(bytes);
    if (socket.writableLength > maxQueued) kill();
  };

  const conn: XsConnection = store.connect(0, (ev) => {
    const bytes = encodeWatchEvent(ev);
    if (!bytes) return;
    if (busy) deferred.push(bytes);
    else send(bytes);
  });

  const pump = () => {
    while (!dead) {
      if (socket.writableLength > highWater) {
        // The client is not reading its replies: stop reading its requests until it does.
        if (!paused) {
          paused = true;
          socket.pause();
        }
        return;
      }
      const msg = decoder.next();
      if (!msg) break;
      busy = true;
      let reply: Buffer;
      try {
        reply = handleMessage(store, conn, msg, hooks);
      } finally {
        busy = false;
      }
      send(reply);
      const events = deferred;
      deferred = [];
      for (const e of events) send(e);
    }
    if (decoder.failure && !dead) {
      // A protocol violation: flush what was already answered, then close.
      dead = true;
      socket.pause();
      socket.end(() => socket.destroy());
      setTimeout(() => socket.destroy(), 1000).unref();
    }
  };

  socket.on('data', (chunk: Buffer) => {
    if (dead) return;
    decoder.push(chunk);
    pump();
  });
  socket.on('drain', () => {
    if (!paused || dead) return;
    paused = false;
    socket.resume();
    pump();
  });
  socket.on('error', () => {
    // ECONNRESET and friends: 'close' follows.
  });
  socket.once('close', () => {
    dead = true;
    store.disconnect(conn);
  });
}
