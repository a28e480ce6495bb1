/**
 * A daemon thread's upcall loop: wait on its domain's doorbells (its own waiter index), take the
 * pending ports and call each device's handler. Never blocks the event loop: the sleep is
 * `Atomics.waitAsync` (through `EvtchnWaiter.wait`), bounded so newly connected ports get bound.
 */
import type { EvtchnDoorbells } from '@pvsim/ring';

export interface UpcallLoop {
  stop(): Promise<void>;
}

/**
 * `ports()` returns the live port → handler map (ports appear as devices connect); each new port
 * is bound to this waiter before the scan. A port that fired with no handler is ignored.
 */
export function runUpcallLoop(bells: EvtchnDoorbells, index: number, ports: () => Map<number, () => void>, onError: (e: unknown) => void): UpcallLoop {
  const waiter = bells.waiter(index);
  const bound = new Set<number>();
  let running = true;
  const loop = (async () => {
    while (running) {
      const gen = waiter.generation();
      const live = ports();
      for (const p of live.keys()) {
        if (!bound.has(p)) {
          bells.bind(p, index);
          bound.add(p);
        }
      }
      try {
        waiter.takePending((p) => live.get(p)?.());
      } catch (e) {
        onError(e);
      }
      const r = waiter.wait(gen, { timeoutMs: 20 });
      if (typeof r === 'string') await new Promise<void>((res) => setImmediate(res));
      else await r;
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
    },
  };
}
