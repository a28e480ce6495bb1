/** Worker threads of the eventlog benchmark: start, wait for 'ready' and a result, with timeouts. */
import { once } from 'node:events';
import { Worker, type TransferListItem } from 'node:worker_threads';

export type WorkerReply<R> = { type: 'ready' } | { type: 'error'; message: string } | R;

export interface Spawned<R> {
  worker: Worker;
  ready: Promise<void>;
  result: Promise<R>;
  exited: Promise<number>;
}

/** Start `url` with `data`; `ready` / `result` settle from its messages, or reject if it dies. */
export function spawnWorker<R extends { type: 'result' }>(url: URL, data: unknown, what: string, transfer: TransferListItem[] = []): Spawned<R> {
  const worker = new Worker(url, { workerData: data, transferList: transfer, name: what });
  let onReady!: () => void;
  let onFail!: (e: unknown) => void;
  const ready = new Promise<void>((res, rej) => {
    onReady = res;
    onFail = rej;
  });
  const result = new Promise<R>((resolve, reject) => {
    worker.on('message', (m: WorkerReply<R>) => {
      if (m.type === 'ready') onReady();
      else if (m.type === 'error') reject(new Error(`${what}: ${(m as { message: string }).message}`));
      else resolve(m as R);
    });
    worker.on('error', (e) => reject(new Error(`${what} crashed: ${e.message}`)));
    worker.on('exit', (code) => reject(new Error(`${what} exited (code ${code}) without a result`)));
  });
  const exited = once(worker, 'exit').then(([code]) => code as number);
  result.catch(onFail);
  ready.catch(() => {});
  return { worker, ready, result, exited };
}

export async function withTimeout<T>(p: Promise<T>, ms: number, what: string, onTimeout: () => Promise<unknown> = async () => {}): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void onTimeout().finally(() => reject(new Error(`${what}: nothing after ${ms} ms`)));
    }, ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** Absolute time in ms, comparable across threads (`performance.now()` has a per-thread origin). */
export const absNowMs = (): number => performance.timeOrigin + performance.now();
