/**
 * A pending `Atomics.waitAsync` does not keep a worker thread alive: a daemon whose only pending
 * work is such a wait exits silently. Every daemon runner holds one of these for its lifetime.
 */
export interface KeepAlive {
  release(): void;
}

export function holdEventLoop(): KeepAlive {
  const t = setInterval(() => {}, 1 << 30);
  return { release: () => clearInterval(t) };
}
