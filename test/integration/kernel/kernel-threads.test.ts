/**
 * struct page across real threads (kernel-thread.mjs, the built package): two daemon threads of
 * dom0 share the domain's page table. Thread A takes a reference on a page thread B mapped;
 * B sees count 2, and B's gnttab_unmap_refs_async defers (no unmap) until A puts the page,
 * then unmaps on a retry and calls done once.
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Hypervisor, P2M_FOREIGN, P2M_INVALID, createHypervisorSpec } from '@pvsim/hypervisor';
import { Kernel, PageForeign, createPageTableSpec, page_count, xen_page_foreign } from '@pvsim/kernel';
import { VirtualClock } from '@pvsim/runtime';
import { afterEach, describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('./kernel-thread.mjs', import.meta.url));

type Msg = Record<string, unknown> & { id?: number; event?: string };

class Thread {
  private nextId = 1;
  private waiters = new Map<string, (m: Msg) => void>();
  private backlog: Msg[] = [];
  readonly w: Worker;
  readonly ready: Promise<void>;

  constructor(workerData: unknown) {
    this.w = new Worker(script, { workerData });
    let onReady!: () => void;
    this.ready = new Promise((r) => (onReady = r));
    this.w.on('message', (m: Msg) => {
      if (m.ready) return onReady();
      const key = `${m.id}:${m.event ?? 'reply'}`;
      const w = this.waiters.get(key);
      if (w) {
        this.waiters.delete(key);
        w(m);
      } else this.backlog.push(m);
    });
    this.w.on('error', (e) => {
      throw e;
    });
  }

  private wait(id: number, event = 'reply'): Promise<Msg> {
    const i = this.backlog.findIndex((m) => m.id === id && (m.event ?? 'reply') === event);
    if (i >= 0) return Promise.resolve(this.backlog.splice(i, 1)[0]!);
    return new Promise((r) => this.waiters.set(`${id}:${event}`, r));
  }

  /** Send a command; returns its id and reply. */
  async call(op: string, args: Record<string, unknown> = {}): Promise<{ id: number; reply: Msg }> {
    const id = this.nextId++;
    this.w.postMessage({ id, op, ...args });
    return { id, reply: await this.wait(id) };
  }

  event(id: number, event: string): Promise<Msg> {
    return this.wait(id, event);
  }
}

const threads: Thread[] = [];
afterEach(async () => {
  await Promise.all(threads.splice(0).map((t) => t.w.terminate()));
});

describe('struct page shared by two threads of a domain', () => {
  it('A get_page → B sees count 2; B’s async unmap waits until A put_page', async () => {
    const hvSpec = createHypervisorSpec({ frames: 256, maxDomains: 4, gfnsPerDomain: 64, grantEntries: 16, maptrackEntries: 16, evtchnPorts: 32 });
    const hv = new Hypervisor(hvSpec);
    const emitter = { emit: () => 0 };
    const ts = hv.toolstack(emitter);
    expect(ts.domainCreate({ domid: 0, name: 'dom0', memoryPages: 8, privileged: true })).toBe(0);
    const dom0 = hv.client(0, emitter);
    const gid = dom0.domainCreate({ name: 'guest', memoryPages: 8 });
    const guest = hv.client(gid, emitter);
    expect(guest.grantForeignAccess(2, 0, 2, false)).toBe(0);
    const pageSpec = createPageTableSpec(0, 64);
    // The test thread's own view of dom0's pages (to observe, not to act).
    const view = new Kernel({ client: dom0, pages: pageSpec, clock: new VirtualClock(), events: emitter });

    const epochMs = performance.timeOrigin + performance.now();
    const A = new Thread({ hvSpec, pageSpec, epochMs });
    const B = new Thread({ hvSpec, pageSpec, epochMs });
    threads.push(A, B);
    await Promise.all([A.ready, B.ready]);

    const { reply: mapped } = await B.call('map', { gid, ref: 2 });
    expect(mapped.status).toBe(0);
    const gfn = mapped.gfn as number;
    const page = view.pfn_to_page(gfn);
    expect(xen_page_foreign(page)).toEqual({ domid: gid, gref: 2 });

    expect((await A.call('get', { gfn })).reply.count).toBe(2);
    expect((await B.call('count', { gfn })).reply.count).toBe(2);

    const { id, reply } = await B.call('unmapAsync', { gfn, handle: mapped.handle });
    expect(reply.first).toBe('deferred');
    const done = B.event(id, 'done');
    let finished = false;
    void done.then(() => (finished = true));
    await new Promise((r) => setTimeout(r, 60)); // several retries (5, 10, 15, 20 ms)
    expect(finished).toBe(false);
    expect(PageForeign(page)).toBe(true);
    expect(dom0.p2mEntry(gfn) & P2M_FOREIGN).toBe(P2M_FOREIGN);
    expect(dom0.mappingsHeld()).toBe(1);

    expect((await A.call('put', { gfn })).reply.count).toBe(1);
    const d = await done;
    expect(d.result).toBe(0);
    expect(d.foreign).toBe(false);
    expect(d.p2m).toBe(P2M_INVALID);
    expect(d.deferred as number).toBeGreaterThanOrEqual(3);
    expect((d.ages as number[]).slice(0, 3)).toEqual([0, 1, 2]);
    expect(PageForeign(page)).toBe(false);
    expect(page_count(page)).toBe(1);
    expect(dom0.mappingsHeld()).toBe(0);
    expect(guest.endForeignAccess(2)).toBe(true);
  });
});
