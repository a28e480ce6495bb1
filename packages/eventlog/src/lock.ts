/** A short spinlock on an Int32 word (0 free, 1 held), for rare table updates. */
export function spinLock(a: Int32Array, i: number): void {
  let spins = 0;
  while (Atomics.compareExchange(a, i, 0, 1) !== 0) {
    if (++spins > 1000) Atomics.wait(a, i, 1, 1);
  }
}

export function spinUnlock(a: Int32Array, i: number): void {
  Atomics.store(a, i, 0);
  Atomics.notify(a, i, 1);
}
