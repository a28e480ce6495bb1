/**
 * Worker for kernel-threads.test.ts: one daemon thread of dom0 with its own Kernel over the
 * domain's shared page table (the built package). It answers commands from the test:
 *   map {gid, ref}          → {gfn, handle}: gnttab_alloc_pages(1) + gnttab_map_refs
 *   get/put/count {gfn}     → {count}
 *   unmapAsync {gfn, handle}→ {first: 'deferred' | 'done'} at once, later {done: result, foreign, p2m}
 */
import { parentPort, workerData } from 'node:worker_threads';
import { GNTMAP_host_map } from '@pvsim/abi';
import { Hypervisor } from '@pvsim/hypervisor';
import { Kernel, PageForeign, get_page, page_count, put_page } from '@pvsim/kernel';
import { RealClock } from '@pvsim/runtime';

const { hvSpec, pageSpec, epochMs } = workerData;
const deferred = [];
const events = {
  emit(kind, payload) {
    if (kind === 'grant.unmap.deferred') deferred.push(payload);
    return 0;
  },
};
const hv = new Hypervisor(hvSpec);
const client = hv.client(0, events);
const k = new Kernel({ client, pages: pageSpec, clock: new RealClock(epochMs), events });

parentPort.on('message', (m) => {
  const reply = (r) => parentPort.postMessage({ id: m.id, ...r });
  switch (m.op) {
    case 'map': {
      const pages = k.gnttab_alloc_pages(1);
      const op = { hostGfn: pages[0].gfn, flags: GNTMAP_host_map, ref: m.ref, dom: m.gid };
      k.gnttab_map_refs([op], pages);
      return reply({ gfn: pages[0].gfn, handle: op.handle, status: op.status });
    }
    case 'get':
      return reply({ count: get_page(k.pfn_to_page(m.gfn)) });
    case 'put':
      return reply({ count: put_page(k.pfn_to_page(m.gfn)) });
    case 'count':
      return reply({ count: page_count(k.pfn_to_page(m.gfn)) });
    case 'unmapAsync': {
      const page = k.pfn_to_page(m.gfn);
      let first = 'deferred';
      let sync = true;
      k.gnttab_unmap_refs_async({
        unmapOps: [{ hostGfn: m.gfn, handle: m.handle }],
        pages: [page],
        count: 1,
        data: null,
        done: (result) => {
          if (sync) first = 'done';
          parentPort.postMessage({ id: m.id, event: 'done', result, foreign: PageForeign(page), p2m: client.p2mEntry(m.gfn), deferred: deferred.length, ages: deferred.map((d) => d.age) });
        },
      });
      sync = false;
      return reply({ first });
    }
    default:
      throw new Error(`unknown command ${m.op}`);
  }
});
parentPort.postMessage({ ready: true });
