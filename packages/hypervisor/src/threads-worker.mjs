/**
 * Worker for threads.test.ts: one thread acting as two mapper domains (its own, and a domain it
 * shares with the other worker) on the grants of a third domain, mapping and unmapping tens of
 * thousands of times. It checks what it can see locally while the other thread races it:
 *  - every legitimate map and unmap succeeds; every map of an entry granted to somebody else,
 *    and every writable map of a read-only grant, is GNTST_general_error;
 *  - while it holds a mapping, the granter's entry shows GTF_reading (and GTF_writing for a
 *    writable one) and the granter cannot end access;
 *  - data written through a writable mapping reads back through it (its own offset in the page);
 *  - a made-up handle is GNTST_bad_handle.
 * It imports the built package (dist) and posts its counts; the test checks the shared tables.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Hypervisor } from '@pvsim/hypervisor';
import { DOMID_SELF, GNTCOPY_source_gref, GNTMAP_host_map, GNTMAP_readonly, GNTST_bad_handle, GNTST_general_error, GNTST_okay, GTF_readonly, GTF_reading, GTF_writing } from '@pvsim/abi';

const { spec, me, shared, granter, ownRefs, sharedRefs, hostileRefs, ownHosts, sharedHosts, iterations, seed, tag, barrier } = workerData;

let s = seed >>> 0 || 1;
const rand = (n) => {
  s ^= s << 13;
  s >>>= 0;
  s ^= s >>> 17;
  s ^= s << 5;
  s >>>= 0;
  return s % n;
};

let events = 0;
const emitter = { emit: () => ++events };
const hv = new Hypervisor(spec);
const mine = hv.client(me, emitter);
const both = hv.client(shared, emitter);
const gr = hv.client(granter, emitter);
const roGrant = new Map([...ownRefs, ...sharedRefs, ...hostileRefs].map((r) => [r, (gr.grantEntry(r).flags & GTF_readonly) !== 0]));

const held = []; // { c, handle, ref, ro, host, pool }
const pools = { own: [...ownHosts], shared: [...sharedHosts] };
const counts = { maps: 0, unmaps: 0, copies: 0, hostileRefused: 0, roRefused: 0, endRefused: 0, dataChecks: 0, badHandles: 0 };
const violations = [];
const violate = (msg) => {
  if (violations.length < 20) violations.push(msg);
};

function map(c, pool, ref, ro) {
  const host = pools[pool].pop();
  const op = { hostGfn: host, flags: GNTMAP_host_map | (ro ? GNTMAP_readonly : 0), ref, dom: granter };
  c.mapGrantRef([op]);
  if (op.status === GNTST_okay) {
    counts.maps++;
    held.push({ c, handle: op.handle, ref, ro, host, pool });
    return op.status;
  }
  pools[pool].push(host);
  return op.status;
}

function unmapAt(i) {
  const m = held[i];
  held[i] = held[held.length - 1];
  held.pop();
  const op = { handle: m.handle, hostGfn: m.host };
  m.c.unmapGrantRef([op]);
  if (op.status !== GNTST_okay) violate(`unmap d${m.c.domid} handle ${m.handle} ref ${m.ref}: status ${op.status}`);
  else counts.unmaps++;
  pools[m.pool].push(m.host);
}

const buf = new Uint8Array(8);
const pattern = new Uint8Array(8);

// Start together: both workers are loaded before either begins.
const bar = new Int32Array(barrier);
Atomics.add(bar, 0, 1);
Atomics.notify(bar, 0);
for (let v = Atomics.load(bar, 0); v < 2; v = Atomics.load(bar, 0)) Atomics.wait(bar, 0, v, 100);
const t0 = performance.timeOrigin + performance.now();

for (let it = 0; it < iterations; it++) {
  const r = rand(100);
  if (r < 30 && pools.own.length) {
    const ref = ownRefs[rand(ownRefs.length)];
    const ro = roGrant.get(ref) || rand(3) === 0;
    const st = map(mine, 'own', ref, ro);
    if (st !== GNTST_okay) violate(`map own ref ${ref} ro=${ro}: status ${st}`);
  } else if (r < 55 && pools.shared.length) {
    const ref = sharedRefs[rand(sharedRefs.length)];
    const ro = roGrant.get(ref) || rand(2) === 0;
    const st = map(both, 'shared', ref, ro);
    if (st !== GNTST_okay) violate(`map shared ref ${ref} ro=${ro}: status ${st}`);
  } else if (r < 63 && pools.own.length) {
    // Hostile: an entry granted to the other worker's domain, which it maps right now.
    const ref = hostileRefs[rand(hostileRefs.length)];
    const st = map(mine, 'own', ref, rand(2) === 0);
    if (st === GNTST_general_error) counts.hostileRefused++;
    else violate(`hostile map of ref ${ref}: status ${st}`);
  } else if (r < 66 && pools.own.length) {
    // Writable map of a read-only grant.
    const ro = ownRefs.filter((x) => roGrant.get(x));
    if (ro.length) {
      const st = map(mine, 'own', ro[rand(ro.length)], false);
      if (st === GNTST_general_error) counts.roRefused++;
      else violate(`writable map of a r/o grant: status ${st}`);
    }
  } else if (r < 92 && held.length) {
    unmapAt(rand(held.length));
  } else if (r < 94) {
    const op = { handle: hv.config.maptrackEntries + rand(1000) };
    mine.unmapGrantRef([op]);
    if (op.status === GNTST_bad_handle) counts.badHandles++;
    else violate(`made-up handle ${op.handle}: status ${op.status}`);
  } else if (r < 97) {
    // A grant copy races the other thread's maps of the same entries: its transient pin must
    // neither lose nor leave GTF_reading behind (checked on the shared tables at the end).
    const ref = sharedRefs[rand(sharedRefs.length)];
    const op = { source: { ref, domid: granter, offset: tag * 8 }, dest: { gfn: 0, domid: DOMID_SELF, offset: tag * 8 }, len: 8, flags: GNTCOPY_source_gref };
    both.copy([op]);
    if (op.status === GNTST_okay) counts.copies++;
    else violate(`copy from shared ref ${ref}: status ${op.status}`);
  } else if (held.length) {
    const m = held[rand(held.length)];
    const f = gr.grantEntry(m.ref).flags;
    if (!(f & GTF_reading) || (!m.ro && !(f & GTF_writing))) violate(`ref ${m.ref} held ${m.ro ? 'ro' : 'rw'} but flags ${f}`);
    if (gr.endForeignAccess(m.ref)) violate(`ended access to ref ${m.ref} while mapped`);
    else counts.endRefused++;
    if (!m.ro) {
      pattern.fill((it + tag) & 0xff);
      if (m.c.write(m.host, tag * 8, pattern) !== 0) violate(`write through rw mapping of ref ${m.ref} faulted`);
      if (m.c.read(m.host, tag * 8, buf) !== 0 || buf[0] !== pattern[0] || buf[7] !== pattern[7]) violate(`read-back through ref ${m.ref}`);
      counts.dataChecks++;
    }
  }
}
while (held.length) unmapAt(held.length - 1);
const t1 = performance.timeOrigin + performance.now();

parentPort.postMessage({ ok: true, counts, violations, events, t0, t1 });
