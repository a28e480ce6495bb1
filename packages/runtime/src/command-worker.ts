/**
 * The parent's side of a daemon thread driven by a small command protocol: start the worker,
 * wait for its `ready`, then send `{type: 'command', id, cmd}` and match `{type: 'reply', id,
 * reply}`. If the thread fails or exits with requests outstanding, they are rejected (never left
 * hanging). Used by the hypervisor and xenstored daemons.
 */
import { Worker, type MessagePort } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';

export interface CommandWorker<Cmd, Reply> {
  readonly worker: Worker;
  request(cmd: Cmd): Promise<Reply>;
  /** The error that ended the thread, if any. */
  readonly failure: Error | null;
}

export type CommandWorkerMessage<Reply> =
  | { type: 'ready' }
  | { type: 'error'; error: string }
  | { type: 'reply'; id: number; reply: Reply };

export async function startCommandWorker<Cmd, Reply>(script: URL, workerData: unknown, name: string): Promise<CommandWorker<Cmd, Reply>> {
  const worker = new Worker(fileURLToPath(script), { workerData, name });
  let nextId = 1;
  const waiting = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  let failure: Error | null = null;
  const fail = (e: Error) => {
    failure = e;
    for (const w of waiting.values()) w.reject(e);
    waiting.clear();
  };
  await new Promise<void>((resolve, reject) => {
    worker.once('message', (m: CommandWorkerMessage<Reply>) => (m.type === 'ready' ? resolve() : reject(new Error(m.type === 'error' ? m.error : `${name} failed to start`))));
    worker.once('error', reject);
  });
  worker.on('message', (m: CommandWorkerMessage<Reply>) => {
    if (m.type !== 'reply') return;
    const w = waiting.get(m.id);
    if (w) {
      waiting.delete(m.id);
      w.resolve(m.reply);
    }
  });
  worker.on('error', fail);
  worker.on('exit', (code) => waiting.size > 0 && fail(new Error(`${name} thread exited (${code})`)));
  return {
    worker,
    get failure() {
      return failure;
    },
    request(cmd) {
      if (failure) return Promise.reject(failure);
      const id = nextId++;
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        worker.postMessage({ type: 'command', id, cmd });
      });
    },
  };
}

/**
 * The worker's side: answer each `{type: 'command', id, cmd}` with `handle(cmd)`'s reply (a
 * thrown error becomes `errorReply(message)`), then announce `ready`.
 */
export function serveCommands<Cmd, Reply>(port: MessagePort, handle: (cmd: Cmd) => Promise<Reply>, errorReply: (message: string) => Reply): void {
  port.on('message', (m: { type: 'command'; id: number; cmd: Cmd }) => {
    if (m?.type !== 'command') return;
    handle(m.cmd).then(
      (reply) => port.postMessage({ type: 'reply', id: m.id, reply }),
      (e: unknown) => port.postMessage({ type: 'reply', id: m.id, reply: errorReply(e instanceof Error ? e.message : String(e)) }),
    );
  });
  port.postMessage({ type: 'ready' });
}
