/**
 * Event-channel delivery for a world whose domains share one thread (tests, the one-thread
 * benchmark, later the deterministic mode): nobody waits on the doorbells, so a send also runs
 * the other side's handler, in a microtask, as an upcall would.
 */

/**
 * `client` with `evtchnSend` routed: the send happens as usual, then `onSend` runs in a microtask.
 * Every other member is the client's own (methods bound once, not per access).
 */
export function routeEvtchnSend<T extends { evtchnSend(port: number): number }>(client: T, onSend: () => void): T {
  const send = (port: number): number => {
    const rc = client.evtchnSend(port);
    queueMicrotask(onSend);
    return rc;
  };
  const bound = new Map<PropertyKey, unknown>();
  return new Proxy(client, {
    get(t, k) {
      if (k === 'evtchnSend') return send;
      const v = Reflect.get(t, k, t) as unknown;
      if (typeof v !== 'function') return v;
      let b = bound.get(k);
      if (b === undefined) bound.set(k, (b = (v as (...a: unknown[]) => unknown).bind(t)));
      return b;
    },
  });
}
