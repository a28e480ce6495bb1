import { describe, expect, it } from 'vitest';
import { routeEvtchnSend } from './inprocess.js';

describe('routeEvtchnSend', () => {
  it('sends as usual, then runs the handler in a microtask; other members are the client own, bound once', async () => {
    class C {
      sent: number[] = [];
      evtchnSend(port: number): number {
        this.sent.push(port);
        return port === 99 ? -22 : 0;
      }
      count(): number {
        return this.sent.length;
      }
    }
    const c = new C();
    const calls: number[] = [];
    const r = routeEvtchnSend(c, () => calls.push(c.sent.length));
    expect(r.evtchnSend(3)).toBe(0);
    expect(r.evtchnSend(99)).toBe(-22);
    expect(calls).toEqual([]); // not yet: a microtask
    await Promise.resolve();
    expect(calls).toEqual([2, 2]);
    expect(c.sent).toEqual([3, 99]);
    expect(r.count()).toBe(2);
    expect(r.count).toBe(r.count);
    expect(r.sent).toBe(c.sent);
  });
});
