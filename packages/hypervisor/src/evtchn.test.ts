/**
 * Event channels against xen/common/event_channel.c (xen-semantics.md 2.5): alloc_unbound,
 * bind_interdomain (sets the new local port pending), send (interdomain → remote pending;
 * unbound → silently dropped; anything else -EINVAL), close (the remote end goes back to
 * unbound), status, unmask, and what a domain's destruction does to its peers. Delivery goes
 * through the domain's doorbells (its shared_info pending/mask bits and waiters).
 */
import { DOMID_SELF, EINVAL, EPERM, ESRCH, EVTCHNSTAT_closed, EVTCHNSTAT_interdomain, EVTCHNSTAT_unbound } from '@pvsim/abi';
import type { EventEmitter, EventKind, EventPayloads } from '@pvsim/eventlog';
import { describe, expect, it } from 'vitest';
import { Hypervisor, createHypervisorSpec, type HypercallClient } from './index.js';

function setup() {
  const events: { kind: string; payload: unknown }[] = [];
  let seq = 0;
  const emitter: EventEmitter = {
    emit(kind, payload) {
      events.push({ kind, payload });
      return ++seq;
    },
  };
  const of = <K extends EventKind>(kind: K): EventPayloads[K][] => events.filter((e) => e.kind === kind).map((e) => e.payload as EventPayloads[K]);
  const hv = new Hypervisor(createHypervisorSpec({ frames: 128, maxDomains: 8, gfnsPerDomain: 16, grantEntries: 16, maptrackEntries: 4, evtchnPorts: 64 }));
  const ts = hv.toolstack(emitter);
  ts.domainCreate({ domid: 0, name: 'dom0', memoryPages: 2, privileged: true });
  const dom0 = hv.client(0, emitter);
  const guest = (name: string) => hv.client(dom0.domainCreate({ name, memoryPages: 2 }), emitter);
  return { hv, events, of, dom0, guest, clear: () => void (events.length = 0) };
}

/** Ports that fired for waiter 0 of `c`. */
function take(c: HypercallClient): number[] {
  const fired: number[] = [];
  c.doorbells.waiter(0).takePending((p) => fired.push(p));
  return fired;
}

/** A connected channel: `front` allocates, `back` binds. */
function connect(front: HypercallClient, back: HypercallClient) {
  const fp = front.evtchnAllocUnbound(back.domid);
  expect(fp).toBeGreaterThan(0);
  const bp = back.evtchnBindInterdomain(front.domid, fp);
  expect(bp).toBeGreaterThan(0);
  return { fp, bp };
}

describe('event channels', () => {
  it('alloc_unbound gives a port > 0 that the named remote may bind; status shows it', () => {
    const { guest, of } = setup();
    const a = guest('a');
    const b = guest('b');
    const p = a.evtchnAllocUnbound(b.domid);
    expect(p).toBeGreaterThan(0);
    expect(a.evtchnStatus(p)).toEqual({ state: EVTCHNSTAT_unbound, remoteDom: b.domid, remotePort: 0 });
    expect(of('evtchn.alloc_unbound')).toEqual([{ dom: a.domid, port: p, remoteDom: b.domid }]);
    const p2 = a.evtchnAllocUnbound(b.domid);
    expect(p2).not.toBe(p);
    // Port 0 is never handed out; unused ports are closed.
    expect(a.evtchnStatus(0)).toBe(-EINVAL);
    expect(a.evtchnStatus(40)).toEqual({ state: EVTCHNSTAT_closed, remoteDom: 0, remotePort: 0 });
    expect(a.evtchnStatus(64)).toBe(-EINVAL);
  });

  it('bind_interdomain connects both ends and sets the new local port pending', () => {
    const { guest, of } = setup();
    const a = guest('a');
    const b = guest('b');
    const fp = a.evtchnAllocUnbound(b.domid);
    const bp = b.evtchnBindInterdomain(a.domid, fp);
    expect(bp).toBeGreaterThan(0);
    expect(a.evtchnStatus(fp)).toEqual({ state: EVTCHNSTAT_interdomain, remoteDom: b.domid, remotePort: bp });
    expect(b.evtchnStatus(bp)).toEqual({ state: EVTCHNSTAT_interdomain, remoteDom: a.domid, remotePort: fp });
    expect(b.doorbells.isPending(bp)).toBe(true); // "always sets the local event channel pending"
    expect(a.doorbells.isPending(fp)).toBe(false);
    expect(of('evtchn.bind')).toEqual([{ dom: b.domid, port: bp, remoteDom: a.domid, remotePort: fp }]);
    // The pending event is delivered once the port is bound to a waiter.
    b.doorbells.bind(bp, 0);
    expect(take(b)).toEqual([bp]);
    expect(take(b)).toEqual([]);
  });

  it('bind_interdomain refuses: a port not offered to the caller, a bound or closed port, bad ports, dead domains', () => {
    const { guest, dom0 } = setup();
    const a = guest('a');
    const b = guest('b');
    const c = guest('c');
    const fp = a.evtchnAllocUnbound(b.domid);
    expect(c.evtchnBindInterdomain(a.domid, fp)).toBe(-EINVAL); // offered to b, not c
    expect(b.evtchnBindInterdomain(a.domid, 40)).toBe(-EINVAL); // closed port
    expect(b.evtchnBindInterdomain(a.domid, 0)).toBe(-EINVAL);
    expect(b.evtchnBindInterdomain(a.domid, 64)).toBe(-EINVAL);
    expect(b.evtchnBindInterdomain(a.domid, -1)).toBe(-EINVAL);
    expect(b.evtchnBindInterdomain(7, fp)).toBe(-ESRCH); // no such domain
    expect(b.evtchnBindInterdomain(0x7fff, fp)).toBe(-ESRCH);
    const bp = b.evtchnBindInterdomain(a.domid, fp);
    expect(bp).toBeGreaterThan(0);
    expect(b.evtchnBindInterdomain(a.domid, fp)).toBe(-EINVAL); // already bound
    const d = guest('d');
    const dp = d.evtchnAllocUnbound(b.domid);
    expect(dom0.domainDestroy(d.domid)).toBe(0);
    expect(b.evtchnBindInterdomain(d.domid, dp)).toBe(-ESRCH);
  });

  it('send raises the remote port and rings its waiter; sends coalesce while pending', () => {
    const { guest, of, clear } = setup();
    const a = guest('a');
    const b = guest('b');
    const { fp, bp } = connect(a, b);
    a.doorbells.bind(fp, 0);
    b.doorbells.bind(bp, 0);
    expect(take(b)).toEqual([bp]); // the bind's own pending event
    const wb = b.doorbells.waiter(0);
    const g0 = wb.generation();
    clear();
    expect(a.evtchnSend(fp)).toBe(0);
    expect(b.doorbells.isPending(bp)).toBe(true);
    expect(wb.generation()).toBe(g0 + 1);
    expect(a.evtchnSend(fp)).toBe(0); // coalesced: one pending bit
    expect(wb.generation()).toBe(g0 + 1);
    expect(take(b)).toEqual([bp]);
    expect(take(b)).toEqual([]);
    expect(of('evtchn.send')).toEqual([
      { dom: a.domid, port: fp, remoteDom: b.domid, remotePort: bp, delivered: true },
      { dom: a.domid, port: fp, remoteDom: b.domid, remotePort: bp, delivered: true },
    ]);
    // And the other way.
    expect(b.evtchnSend(bp)).toBe(0);
    expect(take(a)).toEqual([fp]);
    expect(take(b)).toEqual([]);
  });

  it('send on an unbound port is dropped (0, nothing delivered); on a closed or invalid port it is -EINVAL', () => {
    const { guest, of, clear } = setup();
    const a = guest('a');
    const b = guest('b');
    const fp = a.evtchnAllocUnbound(b.domid);
    a.doorbells.bind(fp, 0);
    clear();
    expect(a.evtchnSend(fp)).toBe(0);
    expect(a.doorbells.isPending(fp)).toBe(false);
    expect(of('evtchn.send')).toEqual([]);
    for (const p of [40, 0, 64, -1, 1.5, 0xffffffff]) expect(a.evtchnSend(p)).toBe(-EINVAL);
    // The notification sent while unbound is not stored for the binder beyond the bind's own pending bit.
    const bp = b.evtchnBindInterdomain(a.domid, fp);
    b.doorbells.bind(bp, 0);
    expect(take(b)).toEqual([bp]);
    expect(take(b)).toEqual([]);
  });

  it('a masked port stays pending without a wake-up; unmask delivers it', () => {
    const { guest } = setup();
    const a = guest('a');
    const b = guest('b');
    const { fp, bp } = connect(a, b);
    b.doorbells.bind(bp, 0);
    take(b);
    b.doorbells.mask(bp);
    const wb = b.doorbells.waiter(0);
    const g0 = wb.generation();
    expect(a.evtchnSend(fp)).toBe(0);
    expect(b.doorbells.isPending(bp)).toBe(true);
    expect(wb.generation()).toBe(g0);
    expect(take(b)).toEqual([]);
    expect(b.evtchnUnmask(bp)).toBe(0);
    expect(b.doorbells.isMasked(bp)).toBe(false);
    expect(wb.generation()).toBe(g0 + 1);
    expect(take(b)).toEqual([bp]);
    // Unmask with nothing pending does nothing.
    expect(b.evtchnUnmask(bp)).toBe(0);
    expect(wb.generation()).toBe(g0 + 1);
    expect(b.evtchnUnmask(64)).toBe(-EINVAL);
    expect(b.evtchnUnmask(-3)).toBe(-EINVAL);
  });

  it('close: the local port is closed (pending cleared), the remote end goes back to unbound and may be bound again', () => {
    const { guest, of } = setup();
    const a = guest('a');
    const b = guest('b');
    const { fp, bp } = connect(a, b);
    expect(b.doorbells.isPending(bp)).toBe(true);
    expect(b.evtchnClose(bp)).toBe(0);
    expect(of('evtchn.close')).toEqual([{ dom: b.domid, port: bp, remoteDom: a.domid, remotePort: fp }]);
    expect(b.evtchnStatus(bp)).toEqual({ state: EVTCHNSTAT_closed, remoteDom: 0, remotePort: 0 });
    expect(b.doorbells.isPending(bp)).toBe(false);
    expect(a.evtchnStatus(fp)).toEqual({ state: EVTCHNSTAT_unbound, remoteDom: b.domid, remotePort: 0 });
    // The survivor's sends are now dropped; the closer's port is invalid for send and close.
    expect(a.evtchnSend(fp)).toBe(0);
    expect(b.doorbells.isPending(bp)).toBe(false);
    expect(b.evtchnSend(bp)).toBe(-EINVAL);
    expect(b.evtchnClose(bp)).toBe(-EINVAL);
    expect(b.evtchnClose(0)).toBe(-EINVAL);
    expect(b.evtchnClose(64)).toBe(-EINVAL);
    // b may reconnect to the same remote port.
    const bp2 = b.evtchnBindInterdomain(a.domid, fp);
    expect(bp2).toBeGreaterThan(0);
    expect(a.evtchnStatus(fp)).toEqual({ state: EVTCHNSTAT_interdomain, remoteDom: b.domid, remotePort: bp2 });
    // Closing an unbound port just frees it.
    const p3 = a.evtchnAllocUnbound(b.domid);
    expect(a.evtchnClose(p3)).toBe(0);
    expect(a.evtchnStatus(p3)).toMatchObject({ state: EVTCHNSTAT_closed });
    expect(b.evtchnBindInterdomain(a.domid, p3)).toBe(-EINVAL);
  });

  it('closing an unbound port offered to a domid outside the domain table returns 0 (it throws a RangeError)', () => {
    // alloc_unbound accepts any remote domid up to 0xffff (Xen does not check it either), but
    // closePort() locks the recorded remote domain with lockPair(ld, rd0) before looking at the
    // state: an rd0 >= maxDomains indexes past the domain table and Atomics throws. The same
    // port makes domainDestroy() throw half-way (state DYING, frames never freed).
    const { guest, dom0 } = setup();
    const a = guest('a');
    const p = a.evtchnAllocUnbound(500);
    expect(p).toBeGreaterThan(0);
    expect(a.evtchnStatus(p)).toEqual({ state: EVTCHNSTAT_unbound, remoteDom: 500, remotePort: 0 });
    expect(() => a.evtchnClose(p)).not.toThrow();
    expect(a.evtchnStatus(p)).toMatchObject({ state: EVTCHNSTAT_closed });
    expect(a.evtchnAllocUnbound(0x7fef)).toBeGreaterThan(0);
    expect(() => dom0.domainDestroy(a.domid)).not.toThrow();
    expect(dom0.domainInfo(a.domid)).toBeNull();
  });

  it('loopback: a port offered to DOMID_SELF is bound by the same domain, and send raises the other end', () => {
    const { guest } = setup();
    const a = guest('a');
    const p = a.evtchnAllocUnbound(DOMID_SELF);
    expect(a.evtchnStatus(p)).toEqual({ state: EVTCHNSTAT_unbound, remoteDom: a.domid, remotePort: 0 });
    const q = a.evtchnBindInterdomain(DOMID_SELF, p);
    expect(q).toBeGreaterThan(0);
    expect(q).not.toBe(p);
    a.doorbells.bind(p, 0);
    a.doorbells.bind(q, 1);
    a.doorbells.waiter(1).takePending(() => {});
    expect(a.evtchnSend(q)).toBe(0);
    expect(take(a)).toEqual([p]);
    expect(a.evtchnSend(p)).toBe(0);
    const got: number[] = [];
    a.doorbells.waiter(1).takePending((x) => got.push(x));
    expect(got).toEqual([q]);
  });

  it('only a privileged domain allocates on behalf of another; status of another domain needs privilege', () => {
    const { guest, dom0 } = setup();
    const a = guest('a');
    const b = guest('b');
    expect(a.evtchnAllocUnbound(b.domid, b.domid)).toBe(-EPERM);
    expect(a.evtchnStatus(1, b.domid)).toBe(-EPERM);
    const p = dom0.evtchnAllocUnbound(a.domid, b.domid);
    expect(p).toBeGreaterThan(0);
    expect(b.evtchnStatus(p)).toEqual({ state: EVTCHNSTAT_unbound, remoteDom: a.domid, remotePort: 0 });
    expect(dom0.evtchnStatus(p, b.domid)).toEqual({ state: EVTCHNSTAT_unbound, remoteDom: a.domid, remotePort: 0 });
    expect(dom0.evtchnAllocUnbound(a.domid, 7)).toBe(-ESRCH);
    expect(a.evtchnBindInterdomain(b.domid, p)).toBeGreaterThan(0);
  });

  it("destroying a domain closes its ports: its peers' ends become unbound and their sends are dropped", () => {
    const { guest, dom0, of, clear } = setup();
    const a = guest('a');
    const b = guest('b');
    const c = guest('c');
    const ab = connect(a, b);
    const ca = connect(c, a);
    const lone = a.evtchnAllocUnbound(c.domid);
    b.doorbells.bind(ab.bp, 0);
    take(b);
    clear();
    expect(dom0.domainDestroy(a.domid)).toBe(0);
    expect(of('domain.destroy')).toEqual([expect.objectContaining({ domid: a.domid, portsClosed: 3 })]);
    expect(of('evtchn.close').map((e) => e.port).sort()).toEqual([ab.fp, ca.bp, lone].sort());
    expect(b.evtchnStatus(ab.bp)).toEqual({ state: EVTCHNSTAT_unbound, remoteDom: a.domid, remotePort: 0 });
    expect(c.evtchnStatus(ca.fp)).toEqual({ state: EVTCHNSTAT_unbound, remoteDom: a.domid, remotePort: 0 });
    expect(b.evtchnSend(ab.bp)).toBe(0);
    expect(c.evtchnSend(ca.fp)).toBe(0);
    expect(of('evtchn.send')).toEqual([]);
    expect(c.evtchnBindInterdomain(a.domid, lone)).toBe(-ESRCH);
    // A new domain that reuses the domid starts with no ports and nothing pending.
    const a2 = guest('a2');
    expect(a2.domid).toBe(a.domid);
    expect(a2.evtchnStatus(ab.fp)).toMatchObject({ state: EVTCHNSTAT_closed });
    expect(a2.doorbells.isPending(ab.fp)).toBe(false);
  });

  it('a send to a peer destroyed after the bind is dropped (its end was closed by the destroy)', () => {
    const { guest, dom0, of, clear } = setup();
    const a = guest('a');
    const b = guest('b');
    const { fp } = connect(a, b);
    expect(dom0.domainDestroy(b.domid)).toBe(0);
    clear();
    expect(a.evtchnSend(fp)).toBe(0);
    expect(of('evtchn.send')).toEqual([]);
  });
});

describe('toolstack privilege', () => {
  it('a guest client gets -EPERM for domain lifecycle operations', () => {
    const { guest, dom0 } = setup();
    const a = guest('a');
    expect(a.domainCreate({ name: 'x', memoryPages: 1 })).toBe(-EPERM);
    expect(a.domainCreate({ name: 'x', memoryPages: 1, privileged: true })).toBe(-EPERM);
    expect(a.domainDestroy(a.domid)).toBe(-EPERM);
    expect(a.domainPause(a.domid, false)).toBe(-EPERM);
    expect(dom0.domainPause(a.domid, false)).toBe(0);
    expect(dom0.domainInfo(a.domid)).toMatchObject({ paused: false, privileged: false });
  });
});
