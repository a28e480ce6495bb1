import { describe, expect, it } from 'vitest';
import { GNTMAP_host_map, GNTMAP_readonly } from '@pvsim/abi';
import { replaySync, runAuditors, type EventEmitter, type EventRecord } from '@pvsim/eventlog';
import { Hypervisor, type GnttabMapGrantRef } from './client.js';
import { createHypervisorSpec } from './shared.js';
import { GRANTS_PROJECTION, grantsProjection, grantsSnapshot, teardownAuditor } from './projection.js';

/** Records events as the log would hand them back. */
function recorder(): EventEmitter & { events: EventRecord[] } {
  const events: EventRecord[] = [];
  return {
    events,
    emit(kind, payload, dom = 0) {
      const seq = events.length;
      events.push({ seq, tsNs: seq, dom, thread: 0, kind, v: 1, payload } as EventRecord);
      return seq;
    },
  };
}

function machine() {
  const rec = recorder();
  const hv = new Hypervisor(createHypervisorSpec({ frames: 256, maxDomains: 4, gfnsPerDomain: 128, grantEntries: 64, maptrackEntries: 16, evtchnPorts: 64 }));
  expect(hv.toolstack(rec).domainCreate({ domid: 0, name: 'dom0', memoryPages: 16, privileged: true })).toBe(0);
  const dom0 = hv.client(0, rec);
  const guest = dom0.domainCreate({ name: 'guest', memoryPages: 16 });
  const g = hv.client(guest, rec);
  return { hv, rec, dom0, guest, g };
}

describe('grant projection and live snapshot', () => {
  it('replaying the log reproduces the live grant, mapping and port state exactly', () => {
    const { hv, rec, dom0, guest, g } = machine();
    for (let r = 8; r < 14; r++) expect(g.grantForeignAccess(r, 0, r - 8, r % 2 === 0)).toBe(0);
    const hosts = dom0.invalidGfns(16, 6);
    const ops = hosts.map((hostGfn, i): GnttabMapGrantRef => ({ hostGfn, flags: GNTMAP_host_map | (i % 2 === 0 ? GNTMAP_readonly : 0), ref: 8 + i, dom: guest }));
    dom0.mapGrantRef(ops);
    expect(ops.map((o) => o.status)).toEqual([0, 0, 0, 0, 0, 0]);
    dom0.unmapGrantRef([{ handle: ops[1]!.handle!, hostGfn: ops[1]!.hostGfn }]);
    expect(g.endForeignAccess(9)).toBe(true);
    expect(g.endForeignAccess(10)).toBe(false); // still mapped
    const port = g.evtchnAllocUnbound(0);
    expect(dom0.evtchnBindInterdomain(guest, port)).toBeGreaterThan(0);
    const spare = dom0.evtchnAllocUnbound(guest);
    expect(spare).toBeGreaterThan(0);
    const live = grantsSnapshot(hv.s, rec.events.length - 1);
    expect(Object.keys(live.entries).filter((k) => k.startsWith('m/'))).toHaveLength(5);
    const r = replaySync(rec.events, { projections: [grantsProjection], snapshots: [live] });
    expect(r.divergences).toEqual([]);
    expect(r.snapshotsCompared).toBe(1);
    expect(r.states.get(GRANTS_PROJECTION)!.size).toBe(Object.keys(live.entries).length);
  });

  it('a state change the log does not show is found, with the event to look at', () => {
    const { hv, rec, dom0, guest, g } = machine();
    g.grantForeignAccess(8, 0, 1, false);
    const [host] = dom0.invalidGfns(16, 1);
    const op: GnttabMapGrantRef = { hostGfn: host!, flags: GNTMAP_host_map, ref: 8, dom: guest };
    dom0.mapGrantRef([op]);
    // Tamper: the grant becomes read-only behind the log's back.
    const flagsWord = (guest * hv.config.grantEntries + 8) * 2;
    hv.s.grant[flagsWord] = hv.s.grant[flagsWord]! | (1 << 2);
    const r = replaySync(rec.events, { projections: [grantsProjection], snapshots: [grantsSnapshot(hv.s, rec.events.length - 1)] });
    expect(r.divergences).toHaveLength(1);
    expect(r.divergences[0]!.firstKey).toBe(`g/${guest}/8`);
    expect(r.divergences[0]!.firstEvent?.kind).toBe('grant.access');
  });
});

describe('teardown auditor', () => {
  it('is silent on a clean teardown, including ports closed by destroy', () => {
    const { rec, dom0, guest, g } = machine();
    g.grantForeignAccess(8, 0, 1, false);
    const [host] = dom0.invalidGfns(16, 1);
    const op: GnttabMapGrantRef = { hostGfn: host!, flags: GNTMAP_host_map, ref: 8, dom: guest };
    dom0.mapGrantRef([op]);
    const port = g.evtchnAllocUnbound(0);
    dom0.evtchnBindInterdomain(guest, port);
    dom0.unmapGrantRef([{ handle: op.handle! }]);
    expect(dom0.domainDestroy(guest)).toBe(0);
    const run = runAuditors([teardownAuditor()]);
    for (const e of rec.events) run.onEvent(e);
    run.finish();
    expect(run.violations).toEqual([]);
    expect(rec.events.some((e) => e.kind === 'evtchn.close' && (e.payload as { dom: number }).dom === guest)).toBe(true);
  });

  it('reports a mapping of a destroyed domain’s grant that is never unmapped (zombie frame)', () => {
    const { rec, dom0, guest, g } = machine();
    g.grantForeignAccess(8, 0, 1, false);
    const [host] = dom0.invalidGfns(16, 1);
    const op: GnttabMapGrantRef = { hostGfn: host!, flags: GNTMAP_host_map, ref: 8, dom: guest };
    dom0.mapGrantRef([op]);
    dom0.domainDestroy(guest);
    expect(rec.events.some((e) => e.kind === 'domain.released')).toBe(false); // the frame is pinned
    const run = runAuditors([teardownAuditor()]);
    for (const e of rec.events) run.onEvent(e);
    run.finish();
    expect(run.violations.map((v) => v.rule)).toEqual(['zombie-mapping']);
    const mapSeq = rec.events.find((e) => e.kind === 'grant.map')!.seq;
    expect(run.violations[0]!.seqs[0]).toBe(mapSeq);
    // Unmapping releases the zombie; the auditor is then satisfied.
    dom0.unmapGrantRef([{ handle: op.handle! }]);
    expect(rec.events.at(-1)?.kind).toBe('domain.released');
    const again = runAuditors([teardownAuditor()]);
    for (const e of rec.events) again.onEvent(e);
    again.finish();
    expect(again.violations).toEqual([]);
  });

  it('reports mappings and ports a domain still holds when it is destroyed (from a log)', () => {
    const ev = (seq: number, kind: string, payload: Record<string, unknown>, dom = 0) => ({ seq, tsNs: seq, dom, thread: 0, kind, v: 1, payload }) as EventRecord;
    const run = runAuditors([teardownAuditor()]);
    for (const e of [
      ev(0, 'grant.map', { granter: 2, gref: 9, mapper: 1, handle: 3, hostGfn: 50, mfn: 7, ro: false, status: 0 }, 1),
      ev(1, 'evtchn.alloc_unbound', { dom: 1, port: 4, remoteDom: 0 }, 1),
      ev(2, 'domain.destroy', { domid: 1, framesFreed: 1, framesZombie: 0, mappingsReleased: 0, portsClosed: 0 }),
    ]) run.onEvent(e);
    run.finish();
    expect(run.violations.map((v) => [v.rule, v.seqs])).toEqual([
      ['mapping-left-at-destroy', [0, 2]],
      ['port-left-at-destroy', [1, 2]],
    ]);
  });
});
