/**
 * The hypervisor as it runs in pvsim: its daemon thread owns domain lifecycle, a "backend" in
 * this thread runs hypercalls itself against the same shared tables, and every transition lands
 * in the event log — including the fault and the leak of the seed's bug, with the domain, frame
 * and grant that caused them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { GNTMAP_host_map, GNTMAP_readonly, XEN_PAGE_SIZE } from '@pvsim/abi';
import { EventWriter, readEvents, runAuditors, startSinkWorker, writeSnapshotFile, type EventRecord } from '@pvsim/eventlog';
import {
  GATE_FAULT,
  Hypervisor,
  createHypervisorSpec,
  grantsSnapshot,
  startHypervisorWorker,
  teardownAuditor,
  type GnttabMapGrantRef,
  type GnttabUnmapAndReplace,
} from '@pvsim/hypervisor';
import { RealClock } from '@pvsim/runtime';

const pvsim = fileURLToPath(new URL('../../../packages/cli/bin/pvsim.js', import.meta.url));
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('hypervisor daemon thread + hypercalls on the calling thread', () => {
  it('creates domains, maps and faults, and logs it all', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvsim-hv-'));
    dirs.push(dir);
    const log = await startSinkWorker({ dir, header: { runId: 'hv', seed: 1 } });
    const spec = createHypervisorSpec({ frames: 1024, maxDomains: 8, gfnsPerDomain: 512 });
    const hvd = await startHypervisorWorker({ spec, log: await log.channel('hypervisor', 0), dom0: { memoryPages: 64 } });
    const created = await hvd.request({ type: 'create', opts: { name: 'guest1', memoryPages: 32 } });
    expect(created).toMatchObject({ ok: true, domid: 1 });
    const bad = await hvd.request({ type: 'create', opts: { name: 'huge', memoryPages: 100_000 } });
    expect(bad).toMatchObject({ ok: false });
    const list = await hvd.request({ type: 'list' });
    expect(list.ok && list.domains!.map((d) => [d.domid, d.name, d.memoryPages])).toEqual([
      [0, 'Domain-0', 64],
      [1, 'guest1', 32],
    ]);

    // This thread: the guest's kernel and a dom0 backend, each with its own log channel.
    const hv = new Hypervisor(spec);
    const clock = new RealClock(log.hub.epochMs);
    const guest = hv.client(1, new EventWriter(await log.channel('guest1-kernel', 1), clock));
    const back = hv.client(0, new EventWriter(await log.channel('blkback', 0), clock));
    const data = new Uint8Array(XEN_PAGE_SIZE).map((_, i) => i & 0xff);
    expect(guest.write(5, 0, data)).toBe(0);
    expect(guest.grantForeignAccess(42, 0, 5, false)).toBe(0);
    const [host] = back.invalidGfns(64, 1);
    const op: GnttabMapGrantRef = { hostGfn: host!, flags: GNTMAP_host_map, ref: 42, dom: 1 };
    back.mapGrantRef([op]);
    expect(op.status).toBe(0);
    const stamp = back.stamp(host!)!;
    const got = new Uint8Array(64);
    expect(back.read(host!, 0, got, stamp)).toBe(0);
    expect([...got]).toEqual([...data.subarray(0, 64)]);
    back.unmapGrantRef([{ handle: op.handle! }]);
    // The seed's bug: a retransmit still holds the page and reads it after the unmap.
    expect(back.read(host!, 0, got, stamp)).toBe(GATE_FAULT);
    expect(guest.endForeignAccess(42)).toBe(true);
    // The old gntdev way: unmap_and_replace with a scratch page — a later read through the stale
    // page reference transmits a frame that is no longer granted: a leak.
    expect(guest.grantForeignAccess(44, 0, 7, true)).toBe(0);
    const [host2] = back.invalidGfns(host! + 1, 1);
    const op2: GnttabMapGrantRef = { hostGfn: host2!, flags: GNTMAP_host_map | GNTMAP_readonly, ref: 44, dom: 1 };
    back.mapGrantRef([op2]);
    expect(op2.status).toBe(0);
    const stamp2 = back.stamp(host2!)!;
    const scratchGfn = 3; // one of dom0's own frames
    const replace: GnttabUnmapAndReplace = { hostGfn: host2!, newGfn: scratchGfn, handle: op2.handle! };
    back.unmapAndReplace(replace);
    expect(replace.status).toBe(0);
    expect(back.read(host2!, 0, got, stamp2)).toBe(0); // the bytes go out …
    expect(guest.endForeignAccess(44)).toBe(true); // … though the grant is no longer in use
    // Live state for replay-equals-state, taken while nothing runs: grants, mappings, ports.
    expect(guest.grantForeignAccess(43, 0, 6, true)).toBe(0);
    const port = guest.evtchnAllocUnbound(0);
    expect(back.evtchnBindInterdomain(1, port)).toBeGreaterThan(0);
    const atSeq = Number(Atomics.load(new BigInt64Array(log.hub.seq), 0)) - 1;
    await writeSnapshotFile(join(dir, 'snapshot.msgpack'), [grantsSnapshot(hv.s, atSeq)]);

    expect(await hvd.request({ type: 'destroy', domid: 1 })).toEqual({ ok: true });
    await hvd.stop();
    await log.close();

    const events: EventRecord[] = [];
    for await (const e of readEvents(dir)) events.push(e);
    const kinds = events.map((e) => e.kind);
    for (const k of ['domain.create', 'grant.access', 'grant.map', 'grant.unmap', 'mem.fault', 'grant.unmap_replace', 'mem.leak', 'grant.end', 'domain.destroy', 'domain.released']) expect(kinds).toContain(k);
    const fault = events.find((e) => e.kind === 'mem.fault')!;
    expect(fault.dom).toBe(0);
    expect(fault.payload).toMatchObject({ dom: 0, gfn: host, granter: 1, gref: 42, write: false });
    const leak = events.find((e) => e.kind === 'mem.leak')!;
    expect(leak.payload).toMatchObject({ dom: 0, gfn: host2, granter: 1, gref: 44, owner: 0 });
    const map = events.find((e) => e.kind === 'grant.map')!;
    expect(map.payload).toMatchObject({ granter: 1, gref: 42, mapper: 0, handle: op.handle, status: 0 });
    expect(map.seq).toBeLessThan(fault.seq);

    const audit = runAuditors([teardownAuditor()]);
    events.forEach((e) => audit.onEvent(e));
    audit.finish();
    expect(audit.violations).toEqual([]);

    // The CLI replays the log with the hypervisor's projection and auditors, against the snapshot.
    const rep = spawnSync(process.execPath, [pvsim, 'replay', dir, '--check', '--snapshot', join(dir, 'snapshot.msgpack')], { encoding: 'utf8' });
    expect(rep.stdout + rep.stderr).toMatch(/hv\.grants/);
    expect(rep.stdout).toMatch(/1 compared/);
    expect(rep.stdout).toMatch(/divergences\s+0/);
    expect(rep.status).toBe(0);

    // "What happened to grant 42 of domain 1, and in which order."
    const tl = spawnSync(process.execPath, [pvsim, 'log', 'timeline', dir, '--gref', '42', '--dom', '1'], { encoding: 'utf8' });
    expect(tl.status).toBe(0);
    const order = ['grant.access', 'grant.map', 'grant.unmap', 'mem.fault', 'grant.end'].map((k) => tl.stdout.indexOf(k));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
  }, 60_000);
});
